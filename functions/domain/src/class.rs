//! Vehicle classes. The set of classes is data (provisioned per bay), not
//! code, so this is a validated name rather than an enum.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::{DomainError, excerpt};

/// Longest class name: short enough for a sign label, a topic level and a key.
const MAX_CLASS_LEN: usize = 32;

/// A vehicle class such as `two_wheeler` or `four_wheeler`.
///
/// Always matches `[a-z][a-z0-9_]{0,31}`, so it is safe in URLs, MQTT topics
/// and JSON keys without escaping.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VehicleClass(String);

impl VehicleClass {
    /// Validates a class name.
    pub fn parse(value: &str) -> Result<VehicleClass, DomainError> {
        let bytes = value.as_bytes();
        let valid = !bytes.is_empty()
            && bytes.len() <= MAX_CLASS_LEN
            && bytes[0].is_ascii_lowercase()
            && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if valid {
            Ok(VehicleClass(value.to_owned()))
        } else {
            Err(DomainError::InvalidVehicleClass { value: excerpt(value) })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn two_wheeler() -> VehicleClass {
        VehicleClass("two_wheeler".to_owned())
    }

    pub fn four_wheeler() -> VehicleClass {
        VehicleClass("four_wheeler".to_owned())
    }
}

impl fmt::Display for VehicleClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for VehicleClass {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl FromStr for VehicleClass {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        VehicleClass::parse(s)
    }
}

impl TryFrom<String> for VehicleClass {
    type Error = DomainError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        VehicleClass::parse(&value)?;
        Ok(VehicleClass(value))
    }
}

impl Serialize for VehicleClass {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for VehicleClass {
    // Validated here too, so a class read from JSON is as trustworthy as one
    // built with `parse`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        VehicleClass::try_from(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_lowercase_names() {
        for ok in ["a", "two_wheeler", "four_wheeler", "ev2", "x_", "a234567890123456789012345678901"] {
            assert_eq!(VehicleClass::parse(ok).unwrap().as_str(), ok);
        }
        let longest = format!("a{}", "b".repeat(31));
        assert!(VehicleClass::parse(&longest).is_ok());
    }

    #[test]
    fn rejects_other_names_with_a_message_naming_the_value() {
        let too_long = format!("a{}", "b".repeat(32));
        for bad in ["", "Car", "1car", "_car", "car-park", "car park", "é", "car\n", too_long.as_str()] {
            let e = VehicleClass::parse(bad).unwrap_err();
            assert!(matches!(e, DomainError::InvalidVehicleClass { .. }), "{bad:?}");
            let msg = e.to_string();
            assert!(msg.starts_with("vehicle class "), "{msg}");
            assert!(msg.contains("a-z, 0-9 and '_'"), "{msg}");
        }
        assert!(VehicleClass::parse("Car").unwrap_err().to_string().contains("\"Car\""));
    }

    #[test]
    fn well_known_classes() {
        assert_eq!(VehicleClass::two_wheeler().as_str(), "two_wheeler");
        assert_eq!(VehicleClass::four_wheeler().to_string(), "four_wheeler");
        assert_eq!("two_wheeler".parse::<VehicleClass>().unwrap(), VehicleClass::two_wheeler());
    }

    #[test]
    fn serde_is_a_plain_validated_string() {
        let json = serde_json::to_string(&VehicleClass::four_wheeler()).unwrap();
        assert_eq!(json, "\"four_wheeler\"");
        let back: VehicleClass = serde_json::from_str(&json).unwrap();
        assert_eq!(back, VehicleClass::four_wheeler());
        let err = serde_json::from_str::<VehicleClass>("\"Four Wheeler\"").unwrap_err();
        assert!(err.to_string().contains("vehicle class \"Four Wheeler\""), "{err}");
        assert!(serde_json::from_str::<VehicleClass>("4").is_err());
    }

    #[test]
    fn works_as_a_json_map_key() {
        let mut map = std::collections::BTreeMap::new();
        map.insert(VehicleClass::two_wheeler(), 1);
        let json = serde_json::to_string(&map).unwrap();
        assert_eq!(json, r#"{"two_wheeler":1}"#);
        let back: std::collections::BTreeMap<VehicleClass, i32> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, map);
        assert!(
            serde_json::from_str::<std::collections::BTreeMap<VehicleClass, i32>>(r#"{"Bad":1}"#).is_err()
        );
    }

    #[test]
    fn orders_by_name() {
        assert!(VehicleClass::four_wheeler() < VehicleClass::two_wheeler());
    }
}
