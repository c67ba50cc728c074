//! The derived-event queue: how events a component answers with reach their
//! subscribers, off the path of the request that caused them.
//!
//! - A bounded queue: a full queue makes the producer wait (back-pressure
//!   reaches the bridge, which stops acknowledging), it never drops.
//! - Availability changes are **state**: for each (subscriber, lot) at most
//!   one delivery is in flight, only the newest waiting change of each
//!   (zone, class) is kept, and a lot's rounds of deliveries start at least
//!   the render interval apart ([`coalesce`]), since a subscriber
//!   (terminal-push) renders the lot as it is when it runs. A round is one
//!   request to a subscriber that takes batches
//!   (`tool.parkd.takes_batches`): its changes go as one CloudEvents
//!   batch, so terminal-push renders a sign that shows several changed zones
//!   once for all of them. Any other subscriber gets one event per request,
//!   as from a Knative trigger. A slow or hanging subscriber therefore holds
//!   a few slots per lot, not a backlog, and ingest keeps its pace.
//! - Every other event reaches each subscriber in order, on a lane of its own.
//! - Transient failures (5xx, 429, busy, timeout) are retried with capped
//!   exponential backoff and jitter; what still fails is counted
//!   (`parkd_derived_events_undelivered_total`) and logged with its id. A
//!   subscriber's 4xx is final: logged with the reason.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use cloudevents::{AttributesReader, Event};
use parking_domain::events::AVAILABILITY_CHANGED_V1;
use tokio::sync::{Notify, mpsc};

use super::coalesce::{Coalescer, Offered};
use crate::app::{App, LoadedComponent};
use crate::credentials::Credential;

/// How many hops a chain of derived events may take (a misconfigured loop
/// of subscriptions cannot run forever).
pub const MAX_DEPTH: usize = 4;

#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Events waiting to be dispatched before producers wait.
    pub capacity: usize,
    /// Events waiting on one subscriber's ordered lane.
    pub lane_capacity: usize,
    /// Delivery attempts of one event to one subscriber.
    pub attempts: usize,
    pub first_retry: Duration,
    pub max_retry: Duration,
    /// The least time between two rounds of renders of one lot: the
    /// gateway's frame interval (a terminal shows no more frames than that).
    pub render_interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            lane_capacity: 1024,
            attempts: 6,
            first_retry: Duration::from_millis(100),
            max_retry: Duration::from_secs(5),
            render_interval: crate::gateway::DEFAULT_FRAME_INTERVAL,
        }
    }
}

/// One derived event and how many hops it is from the request that caused it.
struct Derived {
    event: Event,
    depth: usize,
}

pub struct DerivedQueue {
    tx: mpsc::Sender<Derived>,
    outstanding: Arc<Outstanding>,
}

impl DerivedQueue {
    pub fn start(app: Arc<App>, config: QueueConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let outstanding = Arc::new(Outstanding::default());
        let dispatcher = Dispatcher {
            app,
            tx: tx.clone(),
            outstanding: outstanding.clone(),
            lanes: HashMap::new(),
            renders: Arc::new(Coalescer::new(config.render_interval)),
            config,
        };
        tokio::spawn(dispatcher.run(rx));
        Self { tx, outstanding }
    }

    /// Queues an event, waiting while the queue is full.
    pub async fn push(&self, event: Event, depth: usize) {
        self.outstanding.add(1);
        if self.tx.send(Derived { event, depth }).await.is_err() {
            self.outstanding.done(1);
            tracing::error!("the derived-event queue has stopped; an event was not delivered");
        }
    }

    pub async fn settled(&self) {
        self.outstanding.settled().await
    }

    /// Events queued or being delivered (each delivery to a subscriber counts).
    pub fn outstanding(&self) -> usize {
        self.outstanding.count.load(Ordering::SeqCst)
    }
}

/// Events queued or being delivered; `settled` waits for none.
#[derive(Default)]
struct Outstanding {
    count: AtomicUsize,
    idle: Notify,
}

impl Outstanding {
    fn add(&self, n: usize) {
        self.count.fetch_add(n, Ordering::SeqCst);
    }

    fn done(&self, n: usize) {
        if self.count.fetch_sub(n, Ordering::SeqCst) == n {
            self.idle.notify_waiters();
        }
    }

    async fn settled(&self) {
        loop {
            let idle = self.idle.notified();
            if self.count.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    }
}

/// Renders coalesce per lot, and supersede only renders of the same
/// subject (`{lot}/{zone or -}/{class}`): the lot and the subject of an
/// availability change; nothing else coalesces.
fn coalescing_key(event: &Event) -> Option<(String, String)> {
    if event.ty() != AVAILABILITY_CHANGED_V1 {
        return None;
    }
    let subject = event.subject()?;
    Some((subject.split('/').next()?.to_owned(), subject.to_owned()))
}

/// Renders by (subscriber, lot).
type Renders = Arc<Coalescer<(String, String), Derived>>;

struct Dispatcher {
    app: Arc<App>,
    config: QueueConfig,
    tx: mpsc::Sender<Derived>,
    outstanding: Arc<Outstanding>,
    /// Ordered lanes, one per subscriber.
    lanes: HashMap<String, mpsc::Sender<Derived>>,
    /// Coalesced deliveries of availability changes.
    renders: Renders,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Derived>) {
        while let Some(derived) = rx.recv().await {
            self.dispatch(derived).await;
        }
    }

    /// Hands one event to each of its subscribers; the event itself is
    /// done here, each delivery counts on its own.
    async fn dispatch(&mut self, derived: Derived) {
        self.app.metrics.record_derived(&derived.event);
        if derived.depth > MAX_DEPTH {
            tracing::warn!(
                ty = derived.event.ty(),
                id = derived.event.id(),
                "dropping an event past the maximum delivery depth (a loop of subscriptions?)"
            );
            self.outstanding.done(1);
            return;
        }
        let subscribers = self.app.subscribers(derived.event.ty());
        tracing::debug!(
            ty = derived.event.ty(),
            id = derived.event.id(),
            subscribers = subscribers.len(),
            "derived event"
        );
        for component in subscribers {
            self.outstanding.add(1);
            let copy = Derived { event: derived.event.clone(), depth: derived.depth };
            match coalescing_key(&derived.event) {
                Some((lot, subject)) => self.coalesce(component, lot, &subject, copy),
                None => self.lane(&component).send(copy).await.unwrap_or_else(|_| self.outstanding.done(1)),
            }
        }
        self.outstanding.done(1);
    }

    /// An availability change joins its lot's renders: delivered at once
    /// when none runs for (subscriber, lot), else in the next round.
    fn coalesce(&self, component: Arc<LoadedComponent>, lot: String, subject: &str, derived: Derived) {
        let key = (component.id.clone(), lot);
        let first = match self.renders.offer(&key, subject, derived) {
            Offered::Start(first) => first,
            Offered::Queued => return,
            Offered::Superseded(_) => {
                // The superseded one will never be delivered: the newer state covers it.
                self.outstanding.done(1);
                return;
            }
        };
        let delivery = self.delivery();
        let renders = self.renders.clone();
        tokio::spawn(async move {
            let mut round = vec![first];
            loop {
                let started = tokio::time::Instant::now();
                // One request for the round to a subscriber that takes batches
                // (terminal-push renders each sign once for all of it).
                while !round.is_empty() {
                    let rest = round.split_off(round.len().min(MAX_ROUND_BATCH));
                    delivery.deliver(&component, round).await;
                    round = rest;
                }
                match renders.next_round(&key, started).await {
                    Some(next) => round = next,
                    None => break,
                }
            }
        });
    }

    /// The ordered lane of one subscriber, started on first use.
    fn lane(&mut self, component: &Arc<LoadedComponent>) -> mpsc::Sender<Derived> {
        if let Some(lane) = self.lanes.get(&component.id) {
            return lane.clone();
        }
        let (tx, mut rx) = mpsc::channel::<Derived>(self.config.lane_capacity.max(1));
        let delivery = self.delivery();
        let subscriber = component.clone();
        tokio::spawn(async move {
            while let Some(derived) = rx.recv().await {
                delivery.deliver(&subscriber, vec![derived]).await;
            }
        });
        self.lanes.insert(component.id.clone(), tx.clone());
        tx
    }

    fn delivery(&self) -> Delivery {
        Delivery {
            app: self.app.clone(),
            config: self.config.clone(),
            tx: self.tx.clone(),
            outstanding: self.outstanding.clone(),
        }
    }
}

/// The most events of a round delivered in one batch (a round holds one
/// change per changed zone and class of a lot).
const MAX_ROUND_BATCH: usize = 100;

/// Delivers events to one subscriber in one request (one event, or a round
/// of changes as a batch), with retries.
struct Delivery {
    app: Arc<App>,
    config: QueueConfig,
    tx: mpsc::Sender<Derived>,
    outstanding: Arc<Outstanding>,
}

/// How one attempt ended.
enum Attempt {
    Delivered(Vec<Event>),
    Refused(String),
    Retry(String),
}

impl Delivery {
    /// Delivers `batch` in one request to a subscriber that takes batches
    /// (`tool.parkd.takes_batches`), else one event per request.
    async fn deliver(&self, component: &Arc<LoadedComponent>, batch: Vec<Derived>) {
        let requests: Vec<&[Derived]> =
            if component.takes_batches { vec![&batch[..]] } else { batch.chunks(1).collect() };
        for events in requests {
            self.send(component, events).await;
        }
        self.outstanding.done(batch.len());
    }

    /// Sends events in one request, retrying transient failures.
    async fn send(&self, component: &Arc<LoadedComponent>, batch: &[Derived]) {
        let events: Vec<&Event> = batch.iter().map(|d| &d.event).collect();
        let ty = events.first().map(|e| e.ty()).unwrap_or_default();
        let id = events.iter().map(|e| e.id()).collect::<Vec<_>>().join(", ");
        let depth = batch.iter().map(|d| d.depth).max().unwrap_or_default();
        let mut backoff = ExponentialBuilder::default()
            .with_min_delay(self.config.first_retry)
            .with_max_delay(self.config.max_retry)
            .with_max_times(self.config.attempts.saturating_sub(1))
            .with_jitter()
            .build();
        loop {
            match self.attempt(component, &events).await {
                Attempt::Delivered(replies) => {
                    self.forward(replies, depth + 1);
                    return;
                }
                Attempt::Refused(reason) => {
                    tracing::warn!(component = %component.id, %ty, %id, %reason, "a subscriber refused a derived event");
                    return;
                }
                Attempt::Retry(reason) => match backoff.next() {
                    Some(wait) => {
                        tracing::debug!(component = %component.id, %ty, %id, %reason, ?wait, "retrying a derived event");
                        tokio::time::sleep(wait).await;
                    }
                    None => {
                        self.app.metrics.record_undelivered(&component.id, batch.len());
                        tracing::error!(
                            component = %component.id, %ty, %id, %reason, attempts = self.config.attempts,
                            "a derived event could not be delivered; giving up on it"
                        );
                        return;
                    }
                },
            }
        }
    }

    async fn attempt(&self, component: &Arc<LoadedComponent>, events: &[&Event]) -> Attempt {
        let authorization = self.app.credentials.authorization(Credential::Ingest);
        let Some(request) = super::delivery_request(events, authorization) else {
            return Attempt::Refused("the event cannot be serialised".to_owned());
        };
        match self.app.invoke(component, request).await {
            Ok(response) if response.status().is_success() => {
                for (id, reason) in super::refused_in_batch(&response) {
                    let id = id.unwrap_or_default();
                    tracing::warn!(component = %component.id, %id, %reason, "a subscriber refused an event of a batch");
                }
                Attempt::Delivered(super::replies(&response))
            }
            Ok(response) => {
                let status = response.status();
                let reason = format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&response.body()[..response.body().len().min(300)])
                );
                if status.is_client_error() && status != http::StatusCode::TOO_MANY_REQUESTS {
                    Attempt::Refused(reason)
                } else {
                    Attempt::Retry(reason)
                }
            }
            Err(e) => Attempt::Retry(e.to_string()),
        }
    }

    /// A subscriber's own replies join the queue, from a task of their own:
    /// a delivery never waits on the queue it drains.
    fn forward(&self, replies: Vec<Event>, depth: usize) {
        if replies.is_empty() {
            return;
        }
        self.outstanding.add(replies.len());
        let (tx, outstanding) = (self.tx.clone(), self.outstanding.clone());
        tokio::spawn(async move {
            for event in replies {
                if tx.send(Derived { event, depth }).await.is_err() {
                    outstanding.done(1);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(ty: &str, subject: &str) -> Event {
        use cloudevents::EventBuilder;
        cloudevents::EventBuilderV10::new().id("e-1").source("/test").ty(ty).subject(subject).build().unwrap()
    }

    #[test]
    fn availability_changes_coalesce_per_lot_and_nothing_else_does() {
        assert_eq!(
            coalescing_key(&event(AVAILABILITY_CHANGED_V1, "north/L1/four_wheeler")),
            Some(("north".into(), "north/L1/four_wheeler".into()))
        );
        assert_eq!(
            coalescing_key(&event(AVAILABILITY_CHANGED_V1, "north/-/two_wheeler")),
            Some(("north".into(), "north/-/two_wheeler".into()))
        );
        assert_eq!(coalescing_key(&event("io.parking.slot.changed.v1", "north/B1")), None);
    }

    #[tokio::test]
    async fn settled_waits_for_every_outstanding_event() {
        let outstanding = Arc::new(Outstanding::default());
        outstanding.settled().await;
        outstanding.add(2);
        let waiter = tokio::spawn({
            let outstanding = outstanding.clone();
            async move { outstanding.settled().await }
        });
        outstanding.done(1);
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "one event is still outstanding");
        outstanding.done(1);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }
}
