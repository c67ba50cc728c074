//! Coalesced, paced deliveries of state changes (availability changes, which
//! terminal-push renders).
//!
//! Deliveries are grouped by a key (subscriber, lot): at most one delivery
//! task runs per key. Changes that arrive while it runs wait, and only the
//! newest waiting change per subject (`{lot}/{zone}/{class}`) is kept: a
//! render reads the lot as it is when it runs, so a newer change of a subject
//! supersedes an older one, but never one of another subject (it renders
//! other terminals). When a round of deliveries ends, the task delivers what
//! waits, in order of arrival, no sooner than `interval` after the round
//! before started: a lot under a burst is rendered at most once per interval
//! per subject (the gateway shows a terminal at most one frame per interval
//! anyway), and a change after a quiet spell is delivered at once.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// What became of an offered change.
#[derive(Debug, PartialEq)]
pub enum Offered<T> {
    /// No delivery runs for the key: the caller starts one with this change
    /// and then takes each next round with [`Coalescer::next_round`].
    Start(T),
    /// Waits for the running delivery's next round.
    Queued,
    /// Waits, and supersedes this older change of the same subject (which
    /// is never delivered).
    Superseded(T),
}

pub struct Coalescer<K, T> {
    slots: Mutex<HashMap<K, Vec<(String, T)>>>,
    interval: Duration,
}

impl<K: Eq + Hash + Clone, T> Coalescer<K, T> {
    /// Rounds of one key start at least `interval` apart.
    pub fn new(interval: Duration) -> Self {
        Self { slots: Mutex::new(HashMap::new()), interval }
    }

    /// Offers a change of `subject` for `key`.
    pub fn offer(&self, key: &K, subject: &str, change: T) -> Offered<T> {
        let mut slots = self.lock();
        let Some(waiting) = slots.get_mut(key) else {
            slots.insert(key.clone(), Vec::new());
            return Offered::Start(change);
        };
        match waiting.iter_mut().find(|(s, _)| s == subject) {
            Some((_, older)) => Offered::Superseded(std::mem::replace(older, change)),
            None => {
                waiting.push((subject.to_owned(), change));
                Offered::Queued
            }
        }
    }

    /// The next round of `key`'s delivery task, whose last round started at
    /// `started`: waits until `interval` after it, then answers what waits
    /// (oldest subject first), or `None` when nothing does: the task ends and
    /// the next change starts a new one.
    pub async fn next_round(&self, key: &K, started: Instant) -> Option<Vec<T>> {
        tokio::time::sleep_until(started + self.interval).await;
        let mut slots = self.lock();
        let waiting = slots.get_mut(key).map(std::mem::take).unwrap_or_default();
        if waiting.is_empty() {
            slots.remove(key);
            return None;
        }
        Some(waiting.into_iter().map(|(_, change)| change).collect())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Vec<(String, T)>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_change_supersedes_only_the_same_subjects() {
        let c = Coalescer::new(Duration::ZERO);
        let lot = "north".to_owned();
        assert_eq!(c.offer(&lot, "north/A/car", 1), Offered::Start(1));
        assert_eq!(c.offer(&lot, "north/B/car", 2), Offered::Queued);
        assert_eq!(c.offer(&lot, "north/A/car", 3), Offered::Queued);
        assert_eq!(c.offer(&lot, "north/B/car", 4), Offered::Superseded(2));
        assert_eq!(c.offer(&"south".to_owned(), "south/A/car", 5), Offered::Start(5), "another key");
        // The round after the first: each subject's newest, oldest subject first.
        assert_eq!(c.next_round(&lot, Instant::now()).await, Some(vec![4, 3]));
        assert_eq!(c.next_round(&lot, Instant::now()).await, None, "nothing waits: the task ends");
        assert_eq!(c.offer(&lot, "north/A/car", 6), Offered::Start(6), "and the next change starts one");
    }

    #[tokio::test]
    async fn rounds_of_a_key_start_an_interval_apart() {
        let interval = Duration::from_millis(100);
        let c = Coalescer::new(interval);
        let lot = "north".to_owned();
        let started = Instant::now();
        assert_eq!(c.offer(&lot, "north/A/car", 1), Offered::Start(1));
        assert_eq!(c.offer(&lot, "north/A/car", 2), Offered::Queued, "came while the first round ran");
        assert_eq!(c.next_round(&lot, started).await, Some(vec![2]));
        assert!(started.elapsed() >= interval, "not before the interval is over: {:?}", started.elapsed());
        // A round that took longer than the interval is followed at once.
        let long = Duration::from_secs(2);
        let c = Coalescer::new(long);
        assert_eq!(c.offer(&lot, "north/A/car", 1), Offered::Start(1));
        assert_eq!(c.offer(&lot, "north/A/car", 2), Offered::Queued);
        let waited = Instant::now();
        assert_eq!(c.next_round(&lot, Instant::now() - 2 * long).await, Some(vec![2]));
        assert!(waited.elapsed() < long / 2, "waited {:?}", waited.elapsed());
    }
}
