//! Bay status, in the FIWARE ParkingSpot vocabulary.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{DomainError, excerpt};

/// The status of one bay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BayStatus {
    Free,
    Occupied,
    /// No trustworthy reading: never observed, or the sensor went silent.
    Unknown,
    /// Taken out of use by an operator; readings do not reopen it.
    Closed,
}

impl BayStatus {
    /// Every status, in declaration order.
    pub const ALL: [BayStatus; 4] =
        [BayStatus::Free, BayStatus::Occupied, BayStatus::Unknown, BayStatus::Closed];

    pub fn as_str(self) -> &'static str {
        match self {
            BayStatus::Free => "free",
            BayStatus::Occupied => "occupied",
            BayStatus::Unknown => "unknown",
            BayStatus::Closed => "closed",
        }
    }

    /// Parses the lowercase name, exactly as `as_str` writes it.
    pub fn parse(value: &str) -> Result<Self, DomainError> {
        BayStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| DomainError::InvalidBayStatus { value: excerpt(value) })
    }
}

impl fmt::Display for BayStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for BayStatus {
    type Err = DomainError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        BayStatus::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_status() {
        for s in BayStatus::ALL {
            assert_eq!(BayStatus::parse(s.as_str()).unwrap(), s);
            assert_eq!(s.to_string(), s.as_str());
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<BayStatus>(&json).unwrap(), s);
        }
    }

    #[test]
    fn rejects_other_names_listing_the_allowed_ones() {
        for bad in ["", "Free", "FREE", "vacant", " free"] {
            let msg = BayStatus::parse(bad).unwrap_err().to_string();
            assert!(msg.starts_with(&format!("bay status {bad:?}")), "{msg}");
            assert!(msg.contains("\"free\", \"occupied\", \"unknown\", \"closed\""), "{msg}");
        }
        assert!(serde_json::from_str::<BayStatus>("\"Free\"").is_err());
    }
}
