//! Nwave LoRaWAN parking sensor uplink frames (`nwave`).
//!
//! Frames are told apart by FPort only. Bit 0 is the least significant bit.
//!
//! | port | frame | byte | bits | meaning |
//! |---|---|---|---|---|
//! | 1 | parking status | 0 | 0 | 0 free, 1 occupied |
//! | | | 0 | 7..1 | compressed duration of the previous status (not decoded) |
//! | 2 | heartbeat | 0 | 0 | current state: 0 free, 1 occupied |
//! | | | 0 | 7..1 | hardware health flags, 0 = healthy (not decoded) |
//! | | | 1 | 7..0 | battery voltage: 2500 mV + 4 mV × value |
//! | | | 2 | 7..0 | temperature: signed 8-bit value / 2 + 10, °C |
//! | | | 3.. | | not decoded (examples carry 6 bytes in all) |
//! | 3 | start-up (after power-up, reboot, (re)join) | 0, 1, 2 | | firmware version major, minor, patch |
//! | | | 3 | | reset cause: 0 rejoin, 1 watchdog, 2 power-on, 3 user request, 6 brown-out, 7 other |
//! | | | 4 | 0 | current state: 0 free, 1 occupied |
//! | 6 | debug | | | not decoded |
//! | 10 | SDI tag (user) registration | | | not decoded |
//!
//! Sources: Nwave's "Nwave LoRaWAN Parking Sensor – Getting Started"
//! (section 4.2, Uplink messages) gives the ports and the parking status
//! byte. The heartbeat and start-up byte layouts, the battery and
//! temperature formulas and the reset-cause codes are taken from Nwave's
//! payload decoder and its worked examples as published in The Things
//! Network device repository (NPS 405), since the body of the current
//! heartbeat section was not available.
//!
//! Assumptions to check: an older revision of Nwave's page describes a
//! different heartbeat (byte 0 bits 4..0 an error mask, bytes 1 and 2 the
//! last and the mean battery voltage as 2400 mV + 5 mV × value); this codec
//! follows the current decoder, not that revision. A heartbeat shorter than
//! 3 bytes is rejected as not following the layout. Reset causes not listed
//! are kept as [`ResetCause::Unknown`]. Bytes after the layout are ignored.
//! The configuration feedback message is not supported (its port is not
//! known here).

use super::{FirmwareVersion, FrameKind, ResetCause, SensorFrame};
use crate::error::DecodeError;

const CODEC: &str = "nwave";
const PORTS: &str = "1 (parking status), 2 (heartbeat), 3 (start-up), 6 (debug) or 10 (tag registration)";

pub(super) fn decode(port: Option<u8>, bytes: &[u8]) -> Result<SensorFrame, DecodeError> {
    let port = port.ok_or(DecodeError::PortRequired { codec: CODEC, expected: PORTS })?;
    match port {
        1 => {
            need(bytes, port, "parking status", 1, "byte 0 bit 0 is the parking status")?;
            Ok(SensorFrame::new(FrameKind::Status { occupied: bit0(bytes[0]) }))
        }
        2 => {
            need(
                bytes,
                port,
                "heartbeat",
                3,
                "byte 0 bit 0 parking status, byte 1 battery voltage, byte 2 temperature",
            )?;
            let mut frame = SensorFrame::new(FrameKind::Heartbeat { occupied: Some(bit0(bytes[0])) });
            frame.battery = Some(f64::from(2500 + 4 * u32::from(bytes[1])) / 1000.0);
            frame.temperature = Some(f64::from(bytes[2] as i8) / 2.0 + 10.0);
            Ok(frame)
        }
        3 => {
            need(bytes, port, "start-up", 5, "bytes 0-2 firmware version, 3 reset cause, 4 parking status")?;
            Ok(SensorFrame::new(FrameKind::Startup {
                firmware: Some(FirmwareVersion { major: bytes[0], minor: bytes[1], patch: bytes[2] }),
                reset_cause: Some(reset_cause(bytes[3])),
                occupied: Some(bit0(bytes[4])),
            }))
        }
        6 => Ok(SensorFrame::new(FrameKind::Diagnostic { what: "debug".to_owned() })),
        10 => Ok(SensorFrame::new(FrameKind::Diagnostic { what: "tag registration".to_owned() })),
        _ => Err(DecodeError::UnknownPort { codec: CODEC, port, expected: PORTS }),
    }
}

fn bit0(byte: u8) -> bool {
    byte & 0x01 == 0x01
}

fn reset_cause(code: u8) -> ResetCause {
    match code {
        0 => ResetCause::Rejoin,
        1 => ResetCause::Watchdog,
        2 => ResetCause::PowerOn,
        3 => ResetCause::UserRequest,
        6 => ResetCause::Brownout,
        7 => ResetCause::Other,
        other => ResetCause::Unknown(other),
    }
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
        decode_frame(SensorModel::Nwave, Some(port), bytes)
    }

    #[test]
    fn status_frames_ignore_the_previous_duration_bits() {
        // 0x95: occupied, previous status lasted 74 minutes (0x95 >> 1).
        assert_eq!(decode(1, &[0x95]).unwrap(), SensorFrame::new(FrameKind::Status { occupied: true }));
        assert_eq!(decode(1, &[0x94]).unwrap().status(), Some(false));
        assert_eq!(decode(1, &[0x01]).unwrap().status(), Some(true));
        assert_eq!(decode(1, &[0xFE]).unwrap().status(), Some(false));
    }

    #[test]
    fn heartbeat_carries_battery_and_temperature() {
        let frame = decode(2, &[0x00, 0xD3, 0xD8, 0x00, 0x59, 0x0B]).unwrap();
        assert_eq!(frame.kind, FrameKind::Heartbeat { occupied: Some(false) });
        assert_eq!(frame.battery, Some(3.344));
        assert_eq!(frame.temperature, Some(-10.0));
        assert_eq!(frame.status(), None, "a heartbeat never sets status");

        let warm = decode(2, &[0x01, 0xAF, 0x1F]).unwrap();
        assert_eq!(warm.reported_occupancy(), Some(true));
        assert_eq!(warm.battery, Some(3.2)); // 2500 + 4 * 175 mV
        assert_eq!(warm.temperature, Some(25.5)); // 31 / 2 + 10
        // Extremes of both formulas.
        let edge = decode(2, &[0xFF, 0xFF, 0x80]).unwrap();
        assert_eq!((edge.battery, edge.temperature), (Some(3.52), Some(-54.0)));
        let edge = decode(2, &[0x00, 0x00, 0x7F]).unwrap();
        assert_eq!((edge.battery, edge.temperature), (Some(2.5), Some(73.5)));
    }

    #[test]
    fn start_up_frame() {
        let frame = decode(3, &[0x02, 0x04, 0x09, 0x02, 0x00]).unwrap();
        assert_eq!(
            frame,
            SensorFrame::new(FrameKind::Startup {
                firmware: Some(FirmwareVersion { major: 2, minor: 4, patch: 9 }),
                reset_cause: Some(ResetCause::PowerOn),
                occupied: Some(false),
            })
        );
        let cause = |code| match decode(3, &[1, 0, 0, code, 1]).unwrap().kind {
            FrameKind::Startup { reset_cause, .. } => reset_cause.unwrap(),
            other => panic!("{other:?}"),
        };
        assert_eq!(cause(0), ResetCause::Rejoin);
        assert_eq!(cause(1), ResetCause::Watchdog);
        assert_eq!(cause(3), ResetCause::UserRequest);
        assert_eq!(cause(6), ResetCause::Brownout);
        assert_eq!(cause(7), ResetCause::Other);
        assert_eq!(cause(4), ResetCause::Unknown(4));
    }

    #[test]
    fn diagnostic_ports() {
        assert_eq!(decode(6, &[]).unwrap().kind, FrameKind::Diagnostic { what: "debug".into() });
        let tag = decode(10, &[0xD1, 0x1F, 0x34, 0x56, 0x78]).unwrap();
        assert_eq!(tag.kind, FrameKind::Diagnostic { what: "tag registration".into() });
        assert_eq!(tag.status(), None);
    }

    #[test]
    fn short_frames_name_the_missing_bytes() {
        assert_eq!(
            decode(2, &[0x01, 0xD3]).unwrap_err().to_string(),
            "nwave heartbeat frame (port 2) is 2 bytes; expected at least 3: \
             byte 0 bit 0 parking status, byte 1 battery voltage, byte 2 temperature"
        );
        assert_eq!(
            decode(3, &[2, 4, 9, 2]).unwrap_err().to_string(),
            "nwave start-up frame (port 3) is 4 bytes; expected at least 5: \
             bytes 0-2 firmware version, 3 reset cause, 4 parking status"
        );
        assert!(
            decode(1, &[]).unwrap_err().to_string().starts_with("nwave parking status frame (port 1) is 0")
        );
    }

    #[test]
    fn unknown_or_missing_ports_are_rejected() {
        assert_eq!(
            decode(4, &[1]).unwrap_err().to_string(),
            "nwave frame on port 4: not an uplink port of this sensor; expected 1 (parking status), \
             2 (heartbeat), 3 (start-up), 6 (debug) or 10 (tag registration)"
        );
        assert!(matches!(
            decode_frame(SensorModel::Nwave, None, &[1]),
            Err(DecodeError::PortRequired { codec: "nwave", .. })
        ));
    }
}
