//! Sensor payload decoders: network-server envelopes and vendor byte frames.
//!
//! An uplink arrives as a CloudEvent whose `format` extension names its
//! envelope ([`PayloadFormat`]). [`parse_envelope`] turns the envelope into an
//! [`Envelope`]: who sent it, its frame counter and port, when it was
//! received, and its payload as raw bytes and/or an object a network server
//! already decoded. Once the device's bay is known, [`Envelope::frame`] turns
//! that payload into a [`SensorFrame`]: raw bytes through the byte codec the
//! bay's sensor model selects ([`decode_frame`]), or else the decoded object
//! ([`interpret_decoded`]).
//!
//! Every decoder bounds its input before looking at it and never panics:
//! payloads come from radios and the internet, and a bad one must be
//! rejected with a reason, not crash the component or touch state.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DecodeError, excerpt};

mod bosch_pls;
mod chirpstack_v4;
mod decoded;
mod json;
mod nwave;
mod parking_json;
mod ttn_v3;

pub use decoded::interpret_decoded;

/// Largest network-server envelope accepted. A The Things Stack uplink
/// heard by many gateways is a few KiB; anything near this is not an uplink,
/// and bounding it bounds the JSON parser's work.
pub const MAX_ENVELOPE_BYTES: usize = 64 * 1024;

/// Largest byte frame accepted. LoRaWAN parking sensors send 1 to 17 bytes.
pub const MAX_FRAME_BYTES: usize = 64;

/// The `format` extension of an `io.parking.sensor.uplink.v1` event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayloadFormat {
    /// The project's own JSON reading (see `decode_parking_json`).
    #[serde(rename = "parking-json")]
    ParkingJson,
    /// The Things Stack v3 uplink message JSON.
    #[serde(rename = "ttn-v3")]
    TtnV3,
    /// ChirpStack v4 uplink event JSON.
    #[serde(rename = "chirpstack-v4")]
    ChirpstackV4,
}

const FORMAT_NAMES: &str = "\"parking-json\", \"ttn-v3\", \"chirpstack-v4\"";

impl PayloadFormat {
    /// Every format, in declaration order.
    pub const ALL: [PayloadFormat; 3] =
        [PayloadFormat::ParkingJson, PayloadFormat::TtnV3, PayloadFormat::ChirpstackV4];

    /// The name used in the `format` extension.
    pub fn as_str(self) -> &'static str {
        match self {
            PayloadFormat::ParkingJson => "parking-json",
            PayloadFormat::TtnV3 => "ttn-v3",
            PayloadFormat::ChirpstackV4 => "chirpstack-v4",
        }
    }

    /// Parses a format name; ASCII case is ignored.
    pub fn parse(value: &str) -> Result<Self, DecodeError> {
        PayloadFormat::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| DecodeError::UnknownFormat { value: excerpt(value), expected: FORMAT_NAMES })
    }
}

impl fmt::Display for PayloadFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PayloadFormat {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PayloadFormat::parse(s)
    }
}

/// A bay sensor whose byte frames this crate can decode; selected by the
/// bay's `model` in the lot spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SensorModel {
    /// Bosch Parking Lot Sensor (PLS, TPS110).
    #[serde(rename = "bosch-pls")]
    BoschPls,
    /// Nwave LoRaWAN parking sensor (NPS 300/400 series).
    #[serde(rename = "nwave")]
    Nwave,
}

const MODEL_NAMES: &str = "\"bosch-pls\", \"nwave\"";

impl SensorModel {
    /// Every model, in declaration order.
    pub const ALL: [SensorModel; 2] = [SensorModel::BoschPls, SensorModel::Nwave];

    /// The name used in a bay's `model`.
    pub fn as_str(self) -> &'static str {
        match self {
            SensorModel::BoschPls => "bosch-pls",
            SensorModel::Nwave => "nwave",
        }
    }

    /// Parses a model name; ASCII case and surrounding whitespace are
    /// ignored, since operators type it.
    pub fn parse(value: &str) -> Result<Self, DecodeError> {
        let name = value.trim();
        SensorModel::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(name))
            .ok_or_else(|| DecodeError::UnknownModel { value: excerpt(value), expected: MODEL_NAMES })
    }
}

impl fmt::Display for SensorModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SensorModel {
    type Err = DecodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SensorModel::parse(s)
    }
}

/// What one sensor frame says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SensorFrame {
    pub kind: FrameKind,
    /// Battery voltage in volts, when the frame carries it.
    pub battery: Option<f64>,
    /// Device temperature in °C, when the frame carries it.
    pub temperature: Option<f64>,
}

/// The kind of a [`SensorFrame`], and what it carries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum FrameKind {
    /// The sensor saw the bay change: this sets the bay's status.
    Status { occupied: bool },
    /// A periodic sign of life. It refreshes liveness only: the occupancy it
    /// may repeat is what the sensor last reported, and must not change the
    /// bay's status (a lost or reordered status frame is not repaired by it).
    Heartbeat { occupied: Option<bool> },
    /// Sent after power-up, reboot or (re)join. The device's frame counter
    /// restarts after a join, so this is where a counter reset is expected.
    /// The occupancy some sensors include is informational, as for a heartbeat.
    #[serde(rename_all = "camelCase")]
    Startup { firmware: Option<FirmwareVersion>, reset_cause: Option<ResetCause>, occupied: Option<bool> },
    /// A frame the vendor documents that carries nothing this system uses
    /// (device information, usage counters, debug records, tag registration).
    /// It proves the device is alive; `what` names it.
    Diagnostic { what: String },
}

impl SensorFrame {
    /// A frame of `kind` without battery or temperature.
    pub fn new(kind: FrameKind) -> Self {
        SensorFrame { kind, battery: None, temperature: None }
    }

    /// The occupancy that sets the bay's status: only a status frame has one.
    pub fn status(&self) -> Option<bool> {
        match self.kind {
            FrameKind::Status { occupied } => Some(occupied),
            _ => None,
        }
    }

    /// Any occupancy the frame mentions, including the informational one of
    /// heartbeats and start-up frames.
    pub fn reported_occupancy(&self) -> Option<bool> {
        match self.kind {
            FrameKind::Status { occupied } => Some(occupied),
            FrameKind::Heartbeat { occupied } | FrameKind::Startup { occupied, .. } => occupied,
            FrameKind::Diagnostic { .. } => None,
        }
    }
}

/// A firmware version as `major.minor.patch`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub patch: u8,
}

impl FirmwareVersion {
    /// Parses `"1.2.3"` (each part 0 to 255); `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('.').map(|p| {
            // u8::from_str accepts a leading '+', which is not a version.
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) { None } else { p.parse::<u8>().ok() }
        });
        let version = FirmwareVersion { major: parts.next()??, minor: parts.next()??, patch: parts.next()?? };
        parts.next().is_none().then_some(version)
    }
}

impl fmt::Display for FirmwareVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a sensor (re)started, as its start-up frame reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ResetCause {
    Watchdog,
    PowerOn,
    /// The firmware reset itself, e.g. after losing the network (Bosch).
    SystemRequest,
    /// Reset requested by a user or a downlink command (Nwave).
    UserRequest,
    /// Not a reset: the device rejoined the network (Nwave).
    Rejoin,
    Brownout,
    Other,
    /// A code the vendor documentation does not list; kept, not rejected, so
    /// newer firmware still proves liveness.
    Unknown(u8),
}

/// A network server's uplink, unwrapped; see [`parse_envelope`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub format: PayloadFormat,
    /// The device: its DevEUI as 16 lower-case hex digits for LoRaWAN
    /// formats (see `normalise_device_id`), the `device` field for
    /// `parking-json`.
    pub device: String,
    /// The network server's own name for the device, if it has one (The
    /// Things Stack `device_id`, ChirpStack `deviceName`).
    pub device_name: Option<String>,
    /// The LoRaWAN uplink frame counter (FCnt); `seq` for `parking-json`.
    pub frame_counter: Option<u32>,
    /// The LoRaWAN FPort; `None` for `parking-json`.
    pub port: Option<u8>,
    /// When the network server received the uplink; for `parking-json`, when
    /// the sensor observed the bay.
    pub received_at: DateTime<Utc>,
    /// The application payload (FRMPayload), base64-decoded.
    pub raw: Option<Vec<u8>>,
    /// The payload as the network server's codec decoded it, if it did.
    pub decoded: Option<Value>,
    /// Strongest signal among the receiving gateways, in dBm.
    pub rssi: Option<f64>,
    /// Best signal-to-noise ratio among the receiving gateways, in dB.
    pub snr: Option<f64>,
}

impl Envelope {
    /// What the uplink's payload says.
    ///
    /// Raw bytes go through the byte codec of `model` when the bay's model is
    /// known, since that decoding follows the vendor documentation and does
    /// not depend on how a network server was configured. Otherwise the
    /// network server's decoded object is interpreted. Raw bytes alone,
    /// without a model, cannot be read.
    pub fn frame(&self, model: Option<SensorModel>) -> Result<SensorFrame, DecodeError> {
        match (&self.raw, model, &self.decoded) {
            (Some(raw), Some(model), _) => decode_frame(model, self.port, raw),
            (_, _, Some(decoded)) => interpret_decoded(decoded),
            (Some(_), None, None) => Err(DecodeError::ModelRequired { expected: MODEL_NAMES }),
            (None, _, None) => Err(DecodeError::NoPayload { format: self.format.as_str() }),
        }
    }

    /// Whether `name` (an event's subject: the device segment of the MQTT
    /// topic it came on) names this uplink's device. A LoRaWAN device is
    /// known by its DevEUI, but a network server's topics carry its own
    /// name for the device (The Things Stack's device ID, chosen by the
    /// operator, e.g. `eui-70b3d57ed0000001` or `bay-17`): either matches.
    pub fn is_named_by(&self, name: &str) -> bool {
        let name = crate::normalise_device_id(name);
        name == crate::normalise_device_id(&self.device) || self.device_name.as_deref() == Some(name.as_str())
    }
}

/// Unwraps an uplink of `format`.
///
/// Rejects payloads over [`MAX_ENVELOPE_BYTES`] (`parking-json`: over
/// `MAX_READING_BYTES`) before parsing. Errors name the field, by its path
/// in the envelope (`uplink_message.f_cnt`), and what was expected.
pub fn parse_envelope(format: PayloadFormat, payload: &[u8]) -> Result<Envelope, DecodeError> {
    match format {
        PayloadFormat::ParkingJson => parking_json::parse(payload),
        PayloadFormat::TtnV3 => ttn_v3::parse(payload),
        PayloadFormat::ChirpstackV4 => chirpstack_v4::parse(payload),
    }
}

/// Decodes one byte frame of a `model` sensor received on LoRaWAN `port`.
///
/// Both supported sensors tell their frames apart by port only, so a frame
/// without a port is rejected. Frames over [`MAX_FRAME_BYTES`] are rejected
/// before decoding. Bytes after a frame's documented layout are ignored, as
/// vendors extend frames at the end between firmware versions.
pub fn decode_frame(model: SensorModel, port: Option<u8>, bytes: &[u8]) -> Result<SensorFrame, DecodeError> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(DecodeError::FrameTooLarge {
            codec: model.as_str(),
            size: bytes.len(),
            max: MAX_FRAME_BYTES,
        });
    }
    match model {
        SensorModel::BoschPls => bosch_pls::decode(port, bytes),
        SensorModel::Nwave => nwave::decode(port, bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    #[test]
    fn formats_parse_by_name_and_unknown_names_list_the_supported_ones() {
        for f in PayloadFormat::ALL {
            assert_eq!(PayloadFormat::parse(f.as_str()).unwrap(), f);
            assert_eq!(f.to_string().parse::<PayloadFormat>().unwrap(), f);
            assert_eq!(serde_json::to_value(f).unwrap(), json!(f.as_str()));
        }
        assert_eq!(PayloadFormat::parse("TTN-v3").unwrap(), PayloadFormat::TtnV3);
        assert_eq!(
            PayloadFormat::parse("lora").unwrap_err().to_string(),
            "payload format \"lora\": unknown; expected one of \"parking-json\", \"ttn-v3\", \"chirpstack-v4\""
        );
        assert!(PayloadFormat::parse("").is_err());
        assert!(PayloadFormat::parse(" ttn-v3").is_err());
    }

    #[test]
    fn models_parse_by_name_and_unknown_names_list_the_known_ones() {
        for m in SensorModel::ALL {
            assert_eq!(SensorModel::parse(m.as_str()).unwrap(), m);
            assert_eq!(m.to_string().parse::<SensorModel>().unwrap(), m);
        }
        assert_eq!(SensorModel::parse(" Bosch-PLS ").unwrap(), SensorModel::BoschPls);
        assert_eq!(
            SensorModel::parse("bosch").unwrap_err().to_string(),
            "sensor model \"bosch\": unknown; expected one of \"bosch-pls\", \"nwave\""
        );
        let long = "m".repeat(500);
        assert!(SensorModel::parse(&long).unwrap_err().to_string().len() < 200);
    }

    #[test]
    fn a_lorawan_device_is_named_by_its_dev_eui_or_its_network_server_name() {
        // The Things Stack: the topic carries the device ID an operator chose.
        let uplink = json!({
            "end_device_ids": { "device_id": "bay-17", "dev_eui": "FCD6BD00001936B0" },
            "uplink_message": { "f_port": 1, "f_cnt": 2, "frm_payload": "AQ==", "received_at": "2026-11-25T10:00:00Z" }
        });
        let envelope = parse_envelope(PayloadFormat::TtnV3, uplink.to_string().as_bytes()).unwrap();
        assert_eq!(envelope.device, "fcd6bd00001936b0");
        for name in ["bay-17", "FCD6BD00001936B0", "fcd6bd00001936b0"] {
            assert!(envelope.is_named_by(name), "{name}");
        }
        for other in ["bay-18", "fcd6bd00001936b1", "", "eui-fcd6bd00001936b0"] {
            assert!(!envelope.is_named_by(other), "{other}");
        }
        // The project's own reading has no second name.
        let reading = br#"{"device": "DEV-1", "occupied": true, "observedAt": "2026-11-25T10:00:00Z"}"#;
        let envelope = parse_envelope(PayloadFormat::ParkingJson, reading).unwrap();
        assert!(envelope.is_named_by("DEV-1"));
        assert!(!envelope.is_named_by("DEV-2"));
    }

    #[test]
    fn firmware_versions() {
        assert_eq!(FirmwareVersion::parse("0.29.2"), Some(FirmwareVersion { major: 0, minor: 29, patch: 2 }));
        assert_eq!(FirmwareVersion { major: 2, minor: 4, patch: 9 }.to_string(), "2.4.9");
        for bad in ["", "1.2", "1.2.3.4", "1.2.256", "1..3", "+1.2.3", "a.b.c", "1.2.3 "] {
            assert_eq!(FirmwareVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn only_status_frames_set_status() {
        let status = SensorFrame::new(FrameKind::Status { occupied: true });
        let heartbeat = SensorFrame::new(FrameKind::Heartbeat { occupied: Some(false) });
        let startup =
            SensorFrame::new(FrameKind::Startup { firmware: None, reset_cause: None, occupied: Some(true) });
        let diagnostic = SensorFrame::new(FrameKind::Diagnostic { what: "debug".into() });
        assert_eq!(status.status(), Some(true));
        assert_eq!(heartbeat.status(), None);
        assert_eq!(heartbeat.reported_occupancy(), Some(false));
        assert_eq!(startup.status(), None);
        assert_eq!(startup.reported_occupancy(), Some(true));
        assert_eq!(diagnostic.reported_occupancy(), None);
    }

    #[test]
    fn frames_serialise_with_a_type_tag() {
        let mut frame = SensorFrame::new(FrameKind::Startup {
            firmware: Some(FirmwareVersion { major: 0, minor: 29, patch: 2 }),
            reset_cause: Some(ResetCause::PowerOn),
            occupied: None,
        });
        frame.battery = Some(3.6);
        let value = serde_json::to_value(&frame).unwrap();
        assert_eq!(
            value,
            json!({
                "kind": {"type": "startup", "firmware": {"major": 0, "minor": 29, "patch": 2},
                         "resetCause": "powerOn", "occupied": null},
                "battery": 3.6, "temperature": null
            })
        );
        assert_eq!(serde_json::from_value::<SensorFrame>(value).unwrap(), frame);
    }

    fn envelope(raw: Option<Vec<u8>>, decoded: Option<Value>) -> Envelope {
        Envelope {
            format: PayloadFormat::TtnV3,
            device: "70b3d5499a1b2c3d".into(),
            device_name: None,
            frame_counter: Some(7),
            port: Some(1),
            received_at: Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap(),
            raw,
            decoded,
            rssi: None,
            snr: None,
        }
    }

    #[test]
    fn envelope_frame_prefers_raw_bytes_when_the_model_is_known() {
        let e = envelope(Some(vec![0x01]), Some(json!({"occupied": false})));
        assert_eq!(e.frame(Some(SensorModel::BoschPls)).unwrap().status(), Some(true));
        // Without a model, the network server's decoding is what there is.
        assert_eq!(e.frame(None).unwrap().status(), Some(false));
    }

    #[test]
    fn envelope_frame_without_a_usable_payload_says_why() {
        let raw_only = envelope(Some(vec![0x01]), None);
        assert_eq!(
            raw_only.frame(None).unwrap_err().to_string(),
            "uplink carries raw bytes but no decoded object, and the bay's sensor has no known model; \
             set the bay's `model` to one of \"bosch-pls\", \"nwave\""
        );
        let empty = envelope(None, None);
        assert_eq!(
            empty.frame(Some(SensorModel::Nwave)).unwrap_err().to_string(),
            "ttn-v3 uplink carries neither payload bytes nor a decoded object"
        );
        let decoded_only = envelope(None, Some(json!({"status": "free"})));
        assert_eq!(decoded_only.frame(Some(SensorModel::Nwave)).unwrap().status(), Some(false));
    }

    #[test]
    fn oversized_frames_are_rejected_before_decoding() {
        for model in SensorModel::ALL {
            let err = decode_frame(model, Some(1), &[0; MAX_FRAME_BYTES + 1]).unwrap_err();
            assert_eq!(err.to_string(), format!("{model} frame is 65 bytes; at most 64 bytes are allowed"));
            assert!(decode_frame(model, Some(1), &[0; MAX_FRAME_BYTES]).is_ok());
        }
    }
}
