//! Spacing on average, with one event of slack: how the rate cap spaces a
//! terminal's frames.
//!
//! Each event moves a schedule one interval on (from now, if the schedule
//! had fallen behind), and an event may happen at once unless it comes more
//! than an interval ahead of that schedule (a cell-rate limit, not a least
//! gap). Events paced upstream at the same interval (renders) come with
//! jitter: with a least gap, one that came a millisecond early waited out
//! the rest of the interval, as most did under load. Over any span, at most
//! two events more than the span holds intervals happen.

use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug, Default)]
pub struct Pace {
    /// When the next event is due by the average rate (none: no event yet).
    due: Option<Instant>,
}

impl Pace {
    /// When an event that comes `now` may happen: `None` at once.
    pub fn held_until(&self, now: Instant, interval: Duration) -> Option<Instant> {
        let allowed = self.due?.checked_sub(interval)?;
        (allowed > now).then_some(allowed)
    }

    /// An event happened `now`.
    pub fn happened(&mut self, now: Instant, interval: Duration) {
        self.due = Some(self.due.map_or(now, |due| due.max(now)) + interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn an_event_a_little_early_happens_at_once_and_the_average_holds() {
        let (start, interval) = (Instant::now(), 10 * MS);
        let at = |ms: u32| start + MS * ms;
        let mut pace = Pace::default();
        assert_eq!(pace.held_until(at(0), interval), None, "the first at once");
        pace.happened(at(0), interval);
        assert_eq!(pace.held_until(at(11), interval), None, "on schedule");
        pace.happened(at(11), interval);
        assert_eq!(pace.held_until(at(18), interval), None, "7 ms after the one before, 3 ms early");
        pace.happened(at(18), interval);
        assert_eq!(pace.held_until(at(19), interval), Some(at(21)), "ahead of the average: held");
    }

    #[test]
    fn a_flood_gets_one_event_per_interval_and_two_of_slack() {
        let (start, interval) = (Instant::now(), 10 * MS);
        let mut pace = Pace::default();
        let mut happened = Vec::new();
        // Events wanted every millisecond for a second; each held one waits.
        let mut now = start;
        while now < start + 1000 * MS {
            match pace.held_until(now, interval) {
                None => {
                    pace.happened(now, interval);
                    happened.push(now);
                    now += MS;
                }
                Some(until) => now = until,
            }
        }
        assert!(happened.len() <= 100 + 2, "{} events in 1 s at 10 ms", happened.len());
        assert!(happened.len() >= 100, "{} events: the cap is not stricter than its rate", happened.len());
        assert_eq!(happened[1] - happened[0], MS, "one of slack");
        assert_eq!(happened[2] - happened[0], interval, "then on the schedule the first one began");
        assert!(happened.windows(2).skip(2).all(|w| w[1] - w[0] == interval), "one per interval");
        // After a quiet spell the slack is back, no more.
        let later = start + 5000 * MS;
        assert_eq!(pace.held_until(later, interval), None);
        pace.happened(later, interval);
        assert_eq!(pace.held_until(later, interval), None);
        pace.happened(later, interval);
        assert_eq!(pace.held_until(later, interval), Some(later + interval));
    }
}
