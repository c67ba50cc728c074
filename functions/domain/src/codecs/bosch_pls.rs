//! Bosch Parking Lot Sensor (PLS, TPS110) uplink frames (`bosch-pls`).
//!
//! Layout from Bosch's "Parking Lot Sensor – Communication Interface –
//! Technical Description" v0.23.3 (firmware 0.23.x), section 3.1 "Uplink
//! messages". Frames are told apart by FPort only; the status and heartbeat
//! frames have the same layout. Bit 0 is the least significant bit.
//!
//! | port | frame | byte | bits | meaning |
//! |---|---|---|---|---|
//! | 1 | parking status | 0 | 0 | 0 free, 1 occupied |
//! | | | 0 | 7..1 | reserved (ignored) |
//! | 2 | heartbeat (every 24 h) | 0 | 0 | current state: 0 free, 1 occupied |
//! | | | 0 | 7..1 | reserved (ignored) |
//! | | | 1 | 7..0 | *assumed, firmware 0.29+:* temperature, °C, signed 8-bit (absent on 0.23) |
//! | 3 | start-up (after power-up, reboot, (re)join) | 0..=11 | | debug information (ignored) |
//! | | | 12, 13, 14 | | firmware version major, minor, patch |
//! | | | 15 | | reset cause: 1 watchdog, 2 power-on, 3 system request, 4 other |
//! | | | 16 | 0 | current state: 0 free, 1 occupied (bits 7..1 reserved) |
//! | 4 | *assumed, 0.29+:* device information | | | not decoded |
//! | 5 | *assumed, 0.29+:* device usage | | | not decoded |
//! | 6 | *assumed, 0.29+:* debug | | | not decoded |
//!
//! Assumptions, to check against the newer "PLS Communication Interface –
//! Technical Description rev.1 v0.29.4", whose body was not available: the
//! heartbeat's temperature byte and ports 4 to 6 follow the published
//! payload formatter for firmware 0.29.2 in The Things Network device
//! repository, not the v0.23.3 document. Reset causes outside 1..=4 are
//! kept as [`ResetCause::Unknown`]. The sensor reports no battery voltage.
//! Bytes after the layout above are ignored (frames grew at the end between
//! firmware versions, as the heartbeat did).

use super::{FirmwareVersion, FrameKind, ResetCause, SensorFrame};
use crate::error::DecodeError;

const CODEC: &str = "bosch-pls";
const PORTS: &str = "1 (parking status), 2 (heartbeat), 3 (start-up), 4 (device information), \
                     5 (device usage) or 6 (debug)";

pub(super) fn decode(port: Option<u8>, bytes: &[u8]) -> Result<SensorFrame, DecodeError> {
    let port = port.ok_or(DecodeError::PortRequired { codec: CODEC, expected: PORTS })?;
    match port {
        1 => {
            need(bytes, port, "parking status", 1, "byte 0 bit 0 is the parking status")?;
            Ok(SensorFrame::new(FrameKind::Status { occupied: bit0(bytes[0]) }))
        }
        2 => {
            need(bytes, port, "heartbeat", 1, "byte 0 bit 0 is the parking status")?;
            let mut frame = SensorFrame::new(FrameKind::Heartbeat { occupied: Some(bit0(bytes[0])) });
            frame.temperature = bytes.get(1).map(|&t| f64::from(t as i8));
            Ok(frame)
        }
        3 => {
            need(
                bytes,
                port,
                "start-up",
                17,
                "bytes 0-11 debug, 12-14 firmware version, 15 reset cause, 16 parking status",
            )?;
            let firmware = FirmwareVersion { major: bytes[12], minor: bytes[13], patch: bytes[14] };
            Ok(SensorFrame::new(FrameKind::Startup {
                firmware: Some(firmware),
                reset_cause: Some(reset_cause(bytes[15])),
                occupied: Some(bit0(bytes[16])),
            }))
        }
        4 => Ok(diagnostic("device information")),
        5 => Ok(diagnostic("device usage")),
        6 => Ok(diagnostic("debug")),
        _ => Err(DecodeError::UnknownPort { codec: CODEC, port, expected: PORTS }),
    }
}

fn bit0(byte: u8) -> bool {
    byte & 0x01 == 0x01
}

fn reset_cause(code: u8) -> ResetCause {
    match code {
        1 => ResetCause::Watchdog,
        2 => ResetCause::PowerOn,
        3 => ResetCause::SystemRequest,
        4 => ResetCause::Other,
        other => ResetCause::Unknown(other),
    }
}

fn diagnostic(what: &str) -> SensorFrame {
    SensorFrame::new(FrameKind::Diagnostic { what: what.to_owned() })
}

fn need(
    bytes: &[u8],
    port: u8,
    frame: &'static str,
    min: usize,
    layout: &'static str,
) -> Result<(), DecodeError> {
    if bytes.len() < min {
        return Err(DecodeError::FrameTooShort { codec: CODEC, frame, port, len: bytes.len(), min, layout });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{SensorModel, decode_frame};
    use super::*;

    fn decode(port: u8, bytes: &[u8]) -> Result<SensorFrame, DecodeError> {
        decode_frame(SensorModel::BoschPls, Some(port), bytes)
    }

    #[test]
    fn status_frames() {
        assert_eq!(decode(1, &[0x01]).unwrap(), SensorFrame::new(FrameKind::Status { occupied: true }));
        assert_eq!(decode(1, &[0x00]).unwrap(), SensorFrame::new(FrameKind::Status { occupied: false }));
        // Reserved bits do not change the status.
        assert_eq!(decode(1, &[0xFE]).unwrap().status(), Some(false));
        assert_eq!(decode(1, &[0x81]).unwrap().status(), Some(true));
    }

    #[test]
    fn heartbeat_frames_of_both_firmware_generations() {
        // Firmware 0.23: one byte, the current state only.
        let old = decode(2, &[0x01]).unwrap();
        assert_eq!(old, SensorFrame::new(FrameKind::Heartbeat { occupied: Some(true) }));
        assert_eq!(old.status(), None, "a heartbeat never sets status");
        // Firmware 0.29: a signed temperature byte follows.
        let new = decode(2, &[0x00, 0xFF]).unwrap();
        assert_eq!(new.kind, FrameKind::Heartbeat { occupied: Some(false) });
        assert_eq!(new.temperature, Some(-1.0));
        assert_eq!(decode(2, &[0x01, 0x17]).unwrap().temperature, Some(23.0));
        assert_eq!(decode(2, &[0x01, 0x80]).unwrap().temperature, Some(-128.0));
        assert_eq!(new.battery, None);
    }

    #[test]
    fn start_up_frame() {
        // Debug codes 0x324 and 0x375, firmware 0.29.2, system request reset, occupied.
        let bytes = [0x24, 0x03, 0, 0, 0x75, 0x03, 0, 0, 0, 0, 0, 0, 0, 29, 2, 3, 1];
        let frame = decode(3, &bytes).unwrap();
        assert_eq!(
            frame,
            SensorFrame::new(FrameKind::Startup {
                firmware: Some(FirmwareVersion { major: 0, minor: 29, patch: 2 }),
                reset_cause: Some(ResetCause::SystemRequest),
                occupied: Some(true),
            })
        );
        assert_eq!(frame.status(), None, "a start-up frame never sets status");

        let mut v023 = [0u8; 17];
        v023[12..].copy_from_slice(&[0, 23, 3, 2, 0]);
        let frame = decode(3, &v023).unwrap();
        let FrameKind::Startup { firmware, reset_cause, occupied } = frame.kind else { panic!("{frame:?}") };
        assert_eq!(firmware.unwrap().to_string(), "0.23.3");
        assert_eq!((reset_cause, occupied), (Some(ResetCause::PowerOn), Some(false)));
    }

    #[test]
    fn reset_causes() {
        let cause = |code| {
            let mut bytes = [0u8; 17];
            bytes[15] = code;
            match decode(3, &bytes).unwrap().kind {
                FrameKind::Startup { reset_cause, .. } => reset_cause.unwrap(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(cause(1), ResetCause::Watchdog);
        assert_eq!(cause(2), ResetCause::PowerOn);
        assert_eq!(cause(3), ResetCause::SystemRequest);
        assert_eq!(cause(4), ResetCause::Other);
        assert_eq!(cause(0), ResetCause::Unknown(0));
        assert_eq!(cause(0xC8), ResetCause::Unknown(0xC8));
    }

    #[test]
    fn diagnostic_ports_prove_liveness_without_status() {
        for (port, what) in [(4, "device information"), (5, "device usage"), (6, "debug")] {
            let frame = decode(port, &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).unwrap();
            assert_eq!(frame.kind, FrameKind::Diagnostic { what: what.into() });
            assert_eq!(frame.reported_occupancy(), None);
        }
    }

    #[test]
    fn short_frames_name_the_missing_bytes() {
        assert_eq!(
            decode(1, &[]).unwrap_err().to_string(),
            "bosch-pls parking status frame (port 1) is 0 bytes; expected at least 1: \
             byte 0 bit 0 is the parking status"
        );
        assert_eq!(
            decode(2, &[]).unwrap_err().to_string(),
            "bosch-pls heartbeat frame (port 2) is 0 bytes; expected at least 1: \
             byte 0 bit 0 is the parking status"
        );
        assert_eq!(
            decode(3, &[0; 16]).unwrap_err().to_string(),
            "bosch-pls start-up frame (port 3) is 16 bytes; expected at least 17: \
             bytes 0-11 debug, 12-14 firmware version, 15 reset cause, 16 parking status"
        );
    }

    #[test]
    fn unknown_or_missing_ports_are_rejected() {
        for port in [0, 7, 51, 52, 224, 255] {
            assert_eq!(
                decode(port, &[1]).unwrap_err().to_string(),
                format!(
                    "bosch-pls frame on port {port}: not an uplink port of this sensor; expected 1 (parking \
                     status), 2 (heartbeat), 3 (start-up), 4 (device information), 5 (device usage) or 6 (debug)"
                )
            );
        }
        assert!(
            decode_frame(SensorModel::BoschPls, None, &[1])
                .unwrap_err()
                .to_string()
                .starts_with("bosch-pls frame without a port: its frames are told apart by port (1 (parking")
        );
    }

    #[test]
    fn trailing_bytes_are_ignored() {
        assert_eq!(decode(1, &[0x01, 0xAA, 0xBB]).unwrap().status(), Some(true));
        let mut bytes = [0u8; 20];
        bytes[16] = 1;
        assert!(decode(3, &bytes).is_ok());
    }
}
