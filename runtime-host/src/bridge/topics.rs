//! Which MQTT topics the bridge reads, and what each says about a message:
//! the device it comes from and the payload format of its data.
//!
//! A mapping is a topic pattern with named segments in braces, e.g.
//! `application/{application}/device/{devEui}/event/up`; `{device}` or
//! `{devEui}` names the device. Each pattern becomes an MQTT subscription
//! filter with `+` for every named segment.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Named(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMapping {
    parts: Vec<Part>,
    /// The `format` extension of the events this topic produces.
    pub format: String,
}

/// What a topic says about its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched {
    pub device: String,
    pub format: String,
}

/// The names that identify the device in a pattern.
const DEVICE_NAMES: &[&str] = &["device", "devEui", "dev_eui"];

impl TopicMapping {
    pub fn new(pattern: &str, format: &str) -> Result<Self> {
        let parts: Vec<Part> = pattern
            .split('/')
            .map(|segment| {
                if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Part::Named(name.to_owned())
                } else {
                    Part::Literal(segment.to_owned())
                }
            })
            .collect();
        if parts.iter().any(|p| matches!(p, Part::Literal(l) if l.contains(['+', '#', '{', '}']))) {
            bail!("topic pattern {pattern:?}: use {{name}} for a variable segment, not MQTT wildcards");
        }
        let devices =
            parts.iter().filter(|p| matches!(p, Part::Named(n) if DEVICE_NAMES.contains(&n.as_str())));
        if devices.count() != 1 {
            bail!("topic pattern {pattern:?} must name the device exactly once, as {{device}} or {{devEui}}");
        }
        Ok(Self { parts, format: format.to_owned() })
    }

    /// Parses `pattern=format`, as given on the command line.
    pub fn parse(spec: &str) -> Result<Self> {
        match spec.rsplit_once('=') {
            Some((pattern, format)) if !format.is_empty() => Self::new(pattern, format),
            _ => bail!(
                "topic mapping {spec:?}: expected PATTERN=FORMAT, e.g. parking/uplink/{{device}}=parking-json"
            ),
        }
    }

    /// The MQTT subscription filter for this pattern.
    pub fn filter(&self) -> String {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(l) => l.as_str(),
                Part::Named(_) => "+",
            })
            .collect::<Vec<_>>()
            .join("/")
    }

    pub fn matches(&self, topic: &str) -> Option<Matched> {
        let segments: Vec<&str> = topic.split('/').collect();
        if segments.len() != self.parts.len() {
            return None;
        }
        let mut device = None;
        for (part, segment) in self.parts.iter().zip(&segments) {
            match part {
                Part::Literal(l) if l != segment => return None,
                Part::Literal(_) => {}
                Part::Named(_) if segment.is_empty() => return None,
                Part::Named(name) if DEVICE_NAMES.contains(&name.as_str()) => device = Some(*segment),
                Part::Named(_) => {}
            }
        }
        device.map(|d| Matched { device: d.to_owned(), format: self.format.clone() })
    }
}

/// The mappings the bridge uses when none are configured: the project's own
/// topic, and the topics The Things Stack and ChirpStack publish uplinks on.
pub fn default_mappings() -> Vec<TopicMapping> {
    [
        ("parking/uplink/{device}", "parking-json"),
        ("v3/{application}/devices/{device}/up", "ttn-v3"),
        ("application/{application}/device/{devEui}/event/up", "chirpstack-v4"),
    ]
    .into_iter()
    .map(|(pattern, format)| TopicMapping::new(pattern, format).expect("built-in patterns are valid"))
    .collect()
}

/// The first mapping that matches `topic`.
pub fn resolve(mappings: &[TopicMapping], topic: &str) -> Option<Matched> {
    mappings.iter().find_map(|m| m.matches(topic))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_topics_map_to_their_formats() {
        let m = default_mappings();
        assert_eq!(
            resolve(&m, "parking/uplink/DEV-1"),
            Some(Matched { device: "DEV-1".into(), format: "parking-json".into() })
        );
        // The Things Stack: `v3/{application id}@{tenant id}/devices/{device id}/up`.
        assert_eq!(
            resolve(&m, "v3/lots@city/devices/pls-0042/up"),
            Some(Matched { device: "pls-0042".into(), format: "ttn-v3".into() })
        );
        assert_eq!(
            resolve(&m, "application/7/device/70b3d5e75e000001/event/up"),
            Some(Matched { device: "70b3d5e75e000001".into(), format: "chirpstack-v4".into() })
        );
        assert_eq!(resolve(&m, "parking/uplink/DEV-1/extra"), None);
        assert_eq!(resolve(&m, "parking/uplink/"), None, "an empty device is no device");
        assert_eq!(resolve(&m, "application/7/device/x/event/join"), None);
    }

    #[test]
    fn filters_use_single_level_wildcards() {
        let m = default_mappings();
        assert_eq!(m[0].filter(), "parking/uplink/+");
        assert_eq!(m[1].filter(), "v3/+/devices/+/up");
        assert_eq!(m[2].filter(), "application/+/device/+/event/up");
    }

    #[test]
    fn bad_patterns_are_refused_with_a_reason() {
        assert!(TopicMapping::new("parking/+/x", "parking-json").is_err());
        assert!(TopicMapping::new("parking/{lot}", "parking-json").is_err(), "no device segment");
        assert!(TopicMapping::parse("parking/uplink/{device}").is_err(), "no format");
        let m = TopicMapping::parse("sensors/{site}/{device}=parking-json").unwrap();
        assert_eq!(m.filter(), "sensors/+/+");
    }
}
