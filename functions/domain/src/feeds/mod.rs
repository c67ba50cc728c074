//! Open-data feeds: the lots as DATEX II v3 Parking Publication light and
//! as ParkAPI v3-style parking sites, from one snapshot of every lot.
//!
//! A **closed** lot (closed by an operator, or outside its opening hours in
//! its time zone) is published as closed with no vacant spaces; its
//! capacity stays as provisioned. Lots without a location are left out of
//! both feeds, whose formats require a position for every site.

pub mod datex2;
pub mod parkapi;

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use crate::availability::Counts;
use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::forecast::PublishedForecast;
use crate::site::{SiteSpec, is_open_in};

/// How long a client or cache may reuse a feed, seconds. Counts change with
/// every reading; half a minute keeps them fresh without a request per app
/// per second.
pub const FEED_MAX_AGE_SECONDS: u32 = 30;

/// A lot as the feeds see it: what it is, and its live counts.
#[derive(Clone, Debug)]
pub struct LotSnapshot {
    pub lot: String,
    pub name: String,
    pub time_zone: String,
    pub site: SiteSpec,
    /// When the lot's definition last changed.
    pub defined_at: Option<DateTime<Utc>>,
    /// When a bay last changed status.
    pub updated_at: Option<DateTime<Utc>>,
    pub classes: BTreeMap<VehicleClass, Counts>,
    pub categories: BTreeMap<BayCategory, Counts>,
    /// The published forecast per class, as the sweep last fitted it.
    pub forecasts: BTreeMap<VehicleClass, PublishedForecast>,
}

impl LotSnapshot {
    /// Every bay's counts, over all classes.
    pub fn totals(&self) -> Counts {
        self.classes.values().fold(Counts::default(), |all, c| all.plus(c))
    }

    /// Whether the lot is open at `now` (an unknown stored time zone reads as UTC).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        is_open_in(&self.site, &self.time_zone, now.timestamp_millis())
    }

    /// Vacant bays to publish: none while closed.
    pub fn vacant(&self, counts: &Counts, open: bool) -> u32 {
        if open { counts.free } else { 0 }
    }

    /// When anything published about the lot last changed.
    pub fn modified_at(&self) -> Option<DateTime<Utc>> {
        self.updated_at.max(self.defined_at)
    }
}

/// An RFC 3339 time in UTC, to the second.
pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A strong entity tag for a body: its SHA-256, cut to 128 bits, quoted.
pub fn entity_tag(body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("\"{hex}\"")
}

/// Whether an `If-None-Match` header value matches `etag` (weak comparison,
/// as RFC 9110 asks for `If-None-Match`; `*` matches any).
pub fn none_match(header: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header.split(',').any(|t| t.trim() == "*" || bare(t) == bare(etag))
}

/// An HTTP date (RFC 9110 IMF-fixdate).
pub fn http_date(t: DateTime<Utc>) -> String {
    t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn entity_tags_follow_the_body_and_match_weakly() {
        let a = entity_tag(b"{}");
        assert_eq!(a, entity_tag(b"{}"));
        assert_ne!(a, entity_tag(b"[]"));
        assert_eq!(a.len(), 34);
        assert!(none_match(&a, &a));
        assert!(none_match(&format!("\"x\", W/{a}"), &a));
        assert!(none_match("*", &a));
        assert!(!none_match("\"x\"", &a));
    }

    #[test]
    fn http_dates_are_imf_fixdate() {
        let t = Utc.with_ymd_and_hms(2026, 12, 4, 9, 5, 3).unwrap();
        assert_eq!(http_date(t), "Fri, 04 Dec 2026 09:05:03 GMT");
    }
}

#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;
    use crate::geo::Point;
    use chrono::TimeZone;

    pub fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 7, 10, 0, 0).unwrap()
    }

    /// Three car bays (two free, one occupied), one of them accessible and free.
    pub fn lot(located: bool) -> LotSnapshot {
        let counts = Counts { total: 3, free: 2, occupied: 1, unknown: 0, closed: 0 };
        let accessible = Counts { total: 1, free: 1, occupied: 0, unknown: 0, closed: 0 };
        LotSnapshot {
            lot: if located { "north" } else { "nowhere" }.into(),
            name: "North".into(),
            time_zone: "Europe/Berlin".into(),
            site: SiteSpec {
                kind: Some(crate::site::LotKind::OffStreet),
                location: located.then(|| Point::new(52.5, 13.4).unwrap()),
                ..SiteSpec::default()
            },
            defined_at: Some(now()),
            updated_at: Some(now()),
            classes: [(VehicleClass::four_wheeler(), counts)].into(),
            categories: [(BayCategory::Accessible, accessible)].into(),
            forecasts: BTreeMap::new(),
        }
    }
}
