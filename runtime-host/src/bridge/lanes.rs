//! The bridge's lanes: workers that each deliver their messages in order.
//!
//! A topic always goes to the same lane, so one device's readings stay in
//! order while different devices proceed in parallel. A lane delivers what
//! is queued on it as one batch. With `take_turns`, a lane whose batch is
//! not full waits until no other such lane is delivering, and then takes
//! what arrived meanwhile too: at ordinary rates the lanes deliver one batch
//! at a time (one commit per batch, the latency of a single lane), while
//! under a backlog, where batches are full, they all deliver at once.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};
use tokio::sync::{Mutex, OwnedMutexGuard, Semaphore};

use super::acks::Acks;
use super::connection::{Client, Message};
use super::sink::Sink;
use super::{BridgeConfig, BridgeStats, handle_batch};

/// A message with its arrival number.
type Numbered = (u64, Box<Message>);

pub(super) type Lane = UnboundedSender<Numbered>;

/// The workers, one per lane: each delivers its messages in order and
/// reports them done (and, with `permits`, gives back one per message).
pub(super) fn spawn_lanes(
    config: &BridgeConfig,
    client: &Client,
    sink: &Arc<Sink>,
    stats: &Arc<BridgeStats>,
    acks: &Acks,
    permits: Option<&Arc<Semaphore>>,
) -> (Vec<Lane>, tokio::task::JoinSet<()>) {
    let turns = Turns::new(config.take_turns);
    let mut lanes = Vec::with_capacity(config.workers);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..config.workers {
        // Unbounded, so the event loop never waits on a worker; the broker's
        // in-flight window (unacknowledged QoS 1 messages), or the inbox's
        // permits, bound it.
        let (tx, mut rx) = unbounded_channel::<Numbered>();
        let (client, config, stats, sink, acks, permits, turns) = (
            client.clone(),
            config.clone(),
            stats.clone(),
            sink.clone(),
            acks.clone(),
            permits.cloned(),
            turns.clone(),
        );
        workers.spawn(async move {
            let mut batch = Vec::new();
            while let Some(first) = rx.recv().await {
                batch.push(first);
                gather(&mut rx, &mut batch, config.batch_size, config.batch_window).await;
                let turn = turns.take(batch.len() >= config.batch_size).await;
                if turn.is_some() {
                    // What arrived while it waited goes along.
                    gather(&mut rx, &mut batch, config.batch_size, Duration::ZERO).await;
                }
                handle_batch(&client, &config, &sink, &stats, &batch).await;
                drop(turn);
                if let Some(permits) = &permits {
                    permits.add_permits(batch.len());
                }
                for (number, _) in batch.drain(..) {
                    stats.done(number);
                    acks.done(number);
                }
            }
        });
        lanes.push(tx);
    }
    (lanes, workers)
}

/// The lane for a topic: stable, so one device's messages keep their order.
pub(super) fn lane_of(topic: &str, lanes: usize) -> usize {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    (hasher.finish() % lanes.max(1) as u64) as usize
}

/// Adds what is queued on the lane to `batch`, up to `size` messages,
/// waiting at most `window` for more.
async fn gather(
    rx: &mut UnboundedReceiver<Numbered>,
    batch: &mut Vec<Numbered>,
    size: usize,
    window: Duration,
) {
    let deadline = tokio::time::Instant::now() + window;
    while batch.len() < size {
        match rx.try_recv() {
            Ok(next) => batch.push(next),
            Err(_) if window.is_zero() => break,
            Err(_) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(next)) => batch.push(next),
                _ => break,
            },
        }
    }
}

/// The turn the lanes' partial batches take, one at a time (or no turns:
/// every lane delivers when it has something).
#[derive(Clone)]
struct Turns(Option<Arc<Mutex<()>>>);

impl Turns {
    fn new(take_turns: bool) -> Self {
        Self(take_turns.then(|| Arc::new(Mutex::new(()))))
    }

    /// Waits for the turn, held until the guard drops; a full batch (or
    /// lanes without turns) goes at once, holding nothing.
    async fn take(&self, full: bool) -> Option<OwnedMutexGuard<()>> {
        match &self.0 {
            Some(turn) if !full => Some(turn.clone().lock_owned().await),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_topic_keeps_its_lane_and_devices_spread_over_them() {
        let lanes: Vec<usize> = (0..100).map(|i| lane_of(&format!("parking/uplink/D{i}"), 8)).collect();
        for (i, lane) in lanes.iter().enumerate() {
            assert_eq!(*lane, lane_of(&format!("parking/uplink/D{i}"), 8));
        }
        let used: std::collections::BTreeSet<_> = lanes.iter().collect();
        assert!(used.len() > 4, "devices spread over the lanes: {used:?}");
        assert_eq!(lane_of("anything", 0), 0, "no lanes configured counts as one");
    }

    #[test]
    fn a_partial_batch_waits_for_the_turn_and_a_full_one_does_not() {
        let turns = Turns::new(true);
        let first = turns.take(false).now_or_never().expect("the turn is free");
        assert!(first.is_some(), "a partial batch holds the turn while it is delivered");
        assert!(
            turns.take(true).now_or_never().expect("a full batch never waits").is_none(),
            "a full batch holds nothing"
        );
        let mut second = Box::pin(turns.take(false));
        assert!((&mut second).now_or_never().is_none(), "another partial batch waits while the turn is held");
        drop(first);
        assert!(second.now_or_never().expect("the turn is free again").is_some());
    }

    #[test]
    fn without_turns_nothing_waits() {
        let turns = Turns::new(false);
        for full in [false, false, true] {
            assert!(turns.take(full).now_or_never().expect("never waits").is_none());
        }
    }

    #[tokio::test]
    async fn gather_takes_what_is_queued_up_to_the_size_in_arrival_order() {
        let (tx, mut rx) = unbounded_channel::<Numbered>();
        let message = |n: u64| {
            let topic = format!("parking/uplink/D{n}");
            (
                n,
                Box::new(Message {
                    topic,
                    payload: Default::default(),
                    user_properties: vec![],
                    content_type: None,
                }),
            )
        };
        for n in 0..3 {
            tx.send(message(n)).unwrap();
        }
        let mut batch = Vec::new();
        gather(&mut rx, &mut batch, 2, Duration::ZERO).await;
        assert_eq!(batch.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1], "up to the size");
        for n in 3..5 {
            tx.send(message(n)).unwrap();
        }
        gather(&mut rx, &mut batch, 4, Duration::ZERO).await;
        assert_eq!(batch.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [0, 1, 2, 3], "in arrival order");
    }
}
