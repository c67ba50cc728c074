//! Bay categories beside the vehicle class: who or what a bay is kept for.

use std::fmt;

use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::availability::Counts;
use crate::error::{DomainError, excerpt};
use crate::status::BayStatus;

/// What a bay is kept for; a bay may have several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BayCategory {
    /// For holders of a disabled person's parking badge.
    Accessible,
    /// With a charging point for electric vehicles.
    EvCharging,
    /// For loading and unloading.
    Loading,
    /// For permit holders (residents).
    Permit,
    /// For families (wider bays near the exit).
    Family,
    /// For car-sharing vehicles.
    Carsharing,
}

impl BayCategory {
    pub const ALL: [BayCategory; 6] = [
        BayCategory::Accessible,
        BayCategory::EvCharging,
        BayCategory::Loading,
        BayCategory::Permit,
        BayCategory::Family,
        BayCategory::Carsharing,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BayCategory::Accessible => "accessible",
            BayCategory::EvCharging => "ev_charging",
            BayCategory::Loading => "loading",
            BayCategory::Permit => "permit",
            BayCategory::Family => "family",
            BayCategory::Carsharing => "carsharing",
        }
    }

    pub fn parse(text: &str) -> Result<BayCategory, DomainError> {
        BayCategory::ALL
            .into_iter()
            .find(|c| c.as_str() == text)
            .ok_or_else(|| DomainError::InvalidCategory { value: excerpt(text) })
    }
}

impl fmt::Display for BayCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counts per category from `(category, status, bays)` rows (a grouped
/// query over the bays): each category's counts keep the invariants of
/// [`Counts`] by construction.
pub fn category_counts(
    rows: impl IntoIterator<Item = (BayCategory, BayStatus, u32)>,
) -> BTreeMap<BayCategory, Counts> {
    let mut out: BTreeMap<BayCategory, Counts> = BTreeMap::new();
    for (category, status, bays) in rows {
        let counts = out.entry(category).or_default();
        for _ in 0..bays {
            counts.add(status);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_sum_into_consistent_counts() {
        let counts = category_counts([
            (BayCategory::Accessible, BayStatus::Free, 2),
            (BayCategory::Accessible, BayStatus::Occupied, 1),
            (BayCategory::EvCharging, BayStatus::Closed, 1),
        ]);
        let a = counts[&BayCategory::Accessible];
        assert_eq!((a.total, a.free, a.occupied, a.unknown, a.closed), (3, 2, 1, 0, 0));
        assert!(counts.values().all(Counts::is_consistent));
        assert_eq!(counts[&BayCategory::EvCharging].closed, 1);
        let json = serde_json::to_value(&counts).unwrap();
        assert_eq!(json["ev_charging"]["total"], 1);
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for c in BayCategory::ALL {
            assert_eq!(BayCategory::parse(c.as_str()).unwrap(), c);
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
        let msg = BayCategory::parse("EV").unwrap_err().to_string();
        assert!(msg.starts_with("bay category \"EV\": expected one of"), "{msg}");
    }
}
