//! How long stays lasted, as counts per length bucket: a distribution that
//! merges exactly (hours into days, windows into their whole), so a
//! percentile of a day is computed from the day's stays, never from
//! percentiles of its hours.
//!
//! The buckets follow what limits are made of (5 minutes to a day); a
//! percentile is interpolated within its bucket, so it is exact to the
//! bucket's width (for example a p90 between 2 and 3 hours is within that
//! hour), and at least a day when it falls in the open last bucket.

use chrono::Duration;
use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in minutes; the last bucket is open.
pub const BOUNDS_MINUTES: [i64; 15] = [5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 240, 360, 480, 720, 1440];
const BUCKETS: usize = BOUNDS_MINUTES.len() + 1;

/// Stays counted by length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StayLengths([u32; BUCKETS]);

impl StayLengths {
    /// Counts one stay of `length` (a negative length counts as zero).
    pub fn add(&mut self, length: Duration) {
        let minutes = length.num_milliseconds().max(0) as f64 / 60_000.0;
        let bucket = BOUNDS_MINUTES.iter().position(|&b| minutes < b as f64).unwrap_or(BUCKETS - 1);
        self.0[bucket] += 1;
    }

    /// Both distributions together.
    pub fn merge(&self, other: &StayLengths) -> StayLengths {
        let mut sum = *self;
        for (a, b) in sum.0.iter_mut().zip(other.0) {
            *a += b;
        }
        sum
    }

    /// How many stays are counted.
    pub fn count(&self) -> u32 {
        self.0.iter().sum()
    }

    /// The counts per bucket, shortest first.
    pub fn counts(&self) -> &[u32] {
        &self.0
    }

    /// From counts per bucket as [`StayLengths::counts`] gives them; `None`
    /// when there are not as many as there are buckets.
    pub fn from_counts(counts: &[u32]) -> Option<StayLengths> {
        Some(StayLengths(counts.try_into().ok()?))
    }

    /// The length below which a fraction `q` (0 to 1) of the stays ended,
    /// interpolated within its bucket; `None` without stays.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = q.clamp(0.0, 1.0) * f64::from(total);
        let mut below = 0.0;
        for (i, &n) in self.0.iter().enumerate() {
            let n = f64::from(n);
            if n > 0.0 && below + n >= rank {
                let lower = if i == 0 { 0 } else { BOUNDS_MINUTES[i - 1] };
                let Some(&upper) = BOUNDS_MINUTES.get(i) else {
                    return Some(Duration::minutes(lower));
                };
                let within = ((rank - below) / n).clamp(0.0, 1.0);
                let minutes = lower as f64 + within * (upper - lower) as f64;
                return Some(Duration::milliseconds((minutes * 60_000.0).round() as i64));
            }
            below += n;
        }
        Some(Duration::minutes(BOUNDS_MINUTES[BOUNDS_MINUTES.len() - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(minutes: &[i64]) -> StayLengths {
        let mut s = StayLengths::default();
        for &m in minutes {
            s.add(Duration::minutes(m));
        }
        s
    }

    #[test]
    fn stays_fall_in_the_bucket_below_their_upper_bound() {
        let s = of(&[0, 4, 5, 119, 120, 2000]);
        assert_eq!(s.counts()[0], 2, "0 and 4 minutes");
        assert_eq!(s.counts()[1], 1, "5 minutes is the second bucket");
        assert_eq!(s.counts()[8], 1, "119 minutes: 90 to 120");
        assert_eq!(s.counts()[9], 1, "120 minutes: 120 to 180");
        assert_eq!(s.counts()[15], 1, "over a day");
        assert_eq!(s.count(), 6);
    }

    #[test]
    fn the_p90_is_within_the_bucket_of_the_90th_percent_stay() {
        // Nine short stays and one of two and a half hours.
        let s = of(&[12, 12, 12, 12, 12, 12, 12, 12, 12, 150]);
        let p90 = s.quantile(0.9).unwrap();
        assert!(p90 >= Duration::minutes(10) && p90 <= Duration::minutes(15), "{p90}");
        let p100 = s.quantile(1.0).unwrap();
        assert_eq!(p100, Duration::minutes(180), "the top of the 120-180 bucket");
        // Ninety stays of 100 minutes, ten of 5 hours: the p90 is 90–120 minutes.
        let mut s = StayLengths::default();
        for _ in 0..90 {
            s.add(Duration::minutes(100));
        }
        for _ in 0..10 {
            s.add(Duration::minutes(300));
        }
        let p90 = s.quantile(0.9).unwrap();
        assert_eq!(p90, Duration::minutes(120), "{p90}");
        assert!(s.quantile(0.95).unwrap() > Duration::minutes(240));
    }

    #[test]
    fn no_stays_have_no_percentile_and_long_ones_are_at_least_a_day() {
        assert_eq!(StayLengths::default().quantile(0.9), None);
        assert_eq!(of(&[3000, 4000]).quantile(0.9), Some(Duration::minutes(1440)));
    }

    #[test]
    fn merging_adds_the_counts_and_round_trips_through_its_counts() {
        let (a, b) = (of(&[1, 50, 500]), of(&[50, 3000]));
        let m = a.merge(&b);
        assert_eq!(m.count(), 5);
        assert_eq!(m, of(&[1, 50, 500, 50, 3000]));
        assert_eq!(StayLengths::from_counts(m.counts()), Some(m));
        assert_eq!(StayLengths::from_counts(&[1, 2]), None);
        assert_eq!(serde_json::to_string(&of(&[1])).unwrap(), "[1,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0]");
    }
}
