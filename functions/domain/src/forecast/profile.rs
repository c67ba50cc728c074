//! The seasonal profile: the typical occupancy of a group by weekday and
//! hour of the lot's local time, from the hourly roll-ups.
//!
//! Each of the week's 168 local hours holds the median of the occupancy
//! fractions (mean occupied bays / bays) seen in that hour: the median, not
//! the mean, so one event day does not drag a whole slot (and the absolute
//! error it minimises is the one the forecast is judged by). A slot seen
//! fewer than twice borrows from its day type (Monday to Friday, or the
//! weekend) at the same hour, then from every day at that hour, so a young
//! history still has a shape.
//!
//! An hourly mean stands for the middle of its hour; between two middles the
//! profile is linear, so a forecast for 08:45 sits between 08:00-09:00 and
//! 09:00-10:00 rather than on a step.

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// Hours in a week.
pub const WEEK_HOURS: usize = 168;

/// A slot needs this many samples to stand on its own.
const OWN_SAMPLES: usize = 2;

/// The weekly profile of one group.
#[derive(Clone, Debug)]
pub struct Profile {
    slots: Vec<Option<f64>>,
    tz: TimeZone,
}

impl Profile {
    /// Builds the profile from `(hour start in ms, occupancy fraction)` samples.
    pub fn fit(samples: &[(i64, f64)], tz: &TimeZone) -> Profile {
        let mut by_slot: Vec<Vec<f64>> = vec![Vec::new(); WEEK_HOURS];
        for &(start_ms, fraction) in samples {
            let slot = week_position(start_ms, tz).floor() as usize % WEEK_HOURS;
            by_slot[slot].push(fraction);
        }
        let pooled = |pick: &dyn Fn(usize) -> bool, hour: usize| -> Vec<f64> {
            (0..7).filter(|d| pick(*d)).flat_map(|d| by_slot[d * 24 + hour].iter().copied()).collect()
        };
        let slots = (0..WEEK_HOURS)
            .map(|slot| {
                let (day, hour) = (slot / 24, slot % 24);
                let weekend = day >= 5;
                let own = &by_slot[slot];
                if own.len() >= OWN_SAMPLES {
                    return median(own);
                }
                let same_type = pooled(&|d| (d >= 5) == weekend, hour);
                let parent = median(&same_type).or_else(|| median(&pooled(&|_| true, hour)))?;
                // One own sample counts as much as its day type's median.
                Some(own.first().map_or(parent, |o| (o + parent) / 2.0))
            })
            .collect();
        Profile { slots, tz: tz.clone() }
    }

    /// The typical occupancy fraction at `at_ms`, if the profile knows it.
    pub fn at(&self, at_ms: i64) -> Option<f64> {
        let q = week_position(at_ms, &self.tz) - 0.5;
        let lower = q.floor();
        let weight = q - lower;
        let s0 = (lower as i64).rem_euclid(WEEK_HOURS as i64) as usize;
        let s1 = (s0 + 1) % WEEK_HOURS;
        match (self.slots[s0], self.slots[s1]) {
            (Some(a), Some(b)) => Some(a + (b - a) * weight),
            (a, b) => a.or(b),
        }
    }

    /// How many of the week's hours the profile can answer for.
    pub fn known_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// Hours since Monday 00:00 local time, with the fraction of the hour.
pub fn week_position(at_ms: i64, tz: &TimeZone) -> f64 {
    let instant = Timestamp::from_millisecond(at_ms).unwrap_or(Timestamp::UNIX_EPOCH);
    let local = instant.to_zoned(tz.clone());
    let day = f64::from(local.weekday().to_monday_zero_offset());
    let within =
        f64::from(local.hour()) + f64::from(local.minute()) / 60.0 + f64::from(local.second()) / 3600.0;
    day * 24.0 + within
}

/// The median, or `None` for no values.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 { sorted[mid] } else { (sorted[mid - 1] + sorted[mid]) / 2.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    /// Monday 2026-11-23 00:00 UTC.
    const MONDAY: i64 = 1_795_392_000_000;

    #[test]
    fn monday_midnight_is_position_zero_in_utc() {
        assert_eq!(week_position(MONDAY, &TimeZone::UTC), 0.0);
        assert_eq!(week_position(MONDAY + 6 * 24 * HOUR + 23 * HOUR + 30 * 60_000, &TimeZone::UTC), 167.5);
    }

    #[test]
    fn positions_follow_the_lots_clock() {
        let berlin = TimeZone::get("Europe/Berlin").unwrap();
        // 00:00 UTC on a Monday in November is 01:00 in Berlin.
        assert_eq!(week_position(MONDAY, &berlin), 1.0);
    }

    #[test]
    fn slots_take_the_median_and_interpolate_between_hour_middles() {
        let samples: Vec<(i64, f64)> = (0..3)
            .flat_map(|week| {
                let base = MONDAY + week * 7 * 24 * HOUR;
                [(base + 8 * HOUR, 0.2), (base + 9 * HOUR, if week == 1 { 1.0 } else { 0.6 })]
            })
            .collect();
        let p = Profile::fit(&samples, &TimeZone::UTC);
        // 08:30 is the middle of 08:00-09:00; 09:30 of 09:00-10:00 (median 0.6, not the mean).
        assert!((p.at(MONDAY + 8 * HOUR + HOUR / 2).unwrap() - 0.2).abs() < 1e-9);
        assert!((p.at(MONDAY + 9 * HOUR + HOUR / 2).unwrap() - 0.6).abs() < 1e-9);
        assert!((p.at(MONDAY + 9 * HOUR).unwrap() - 0.4).abs() < 1e-9);
    }

    #[test]
    fn a_slot_never_seen_borrows_from_its_day_type() {
        // Two Mondays at 08:00; Tuesday 08:00 was never seen, Saturday neither.
        let samples = [(MONDAY + 8 * HOUR, 0.5), (MONDAY + 7 * 24 * HOUR + 8 * HOUR, 0.7)];
        let p = Profile::fit(&samples, &TimeZone::UTC);
        let tuesday = MONDAY + 24 * HOUR + 8 * HOUR + HOUR / 2;
        assert!((p.at(tuesday).unwrap() - 0.6).abs() < 1e-9);
        // Saturday has no weekend sample at 08:00, so it takes every day's.
        assert!((p.at(tuesday + 4 * 24 * HOUR).unwrap() - 0.6).abs() < 1e-9);
        assert_eq!(Profile::fit(&[], &TimeZone::UTC).at(tuesday), None);
    }

    #[test]
    fn medians() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
    }
}
