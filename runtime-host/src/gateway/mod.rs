//! The terminal gateway: relays terminal frames from the MQTT broker to web
//! terminals over Server-Sent Events (and WebSocket), and serves the kiosk page.
//!
//! - `GET /terminals/{id}`: the kiosk page (public; it holds no data);
//! - `GET /terminals/{id}/stream`: SSE; the current frame at once, then every
//!   new one; `Last-Event-ID` resumes; a `ping` event every keep-alive;
//! - `GET /terminals/{id}/ws`: the same frames over a WebSocket;
//! - `GET /find/stream`: public, no token: every lot's public summary at
//!   once, then each lot's newest as it changes (`event: lot`), for the
//!   public availability page (`GET /find`, [`crate::find`]).
//!
//! Every replica subscribes to `parking/terminals/+/frame` itself (the
//! broker fans frames out, and hands a new subscriber the retained current
//! frames), keeps the newest frame per terminal (a frame is a whole state),
//! and serves its own clients; likewise `parking/lots/+/summary`, the newest
//! summary per lot. Frame ids are the frames' own `seq`, assigned
//! where they are rendered, so a client may resume on any replica.
//!
//! The subscriber, the frame fan-out and the client connections run on the
//! gateway's own runtime threads ([`runtime`]), so a burst of ingest on the
//! main runtime cannot starve them (and the reverse).

mod bare;
mod fanout;
pub mod frames;
pub mod metrics;
mod pace;
#[cfg(test)]
mod tests;
pub mod tokens;
mod ws;

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use prometheus_client::registry::Registry;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

pub use self::bare::Replayed;
use self::frames::{Frames, Latest, Relayed, Taken};
use self::metrics::GatewayMetrics;
use self::tokens::{Tokens, Verdict};
use crate::database::Database;

/// The body every gateway answer has: a whole page or an endless stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// The kiosk page; `{{KEEP_ALIVE_MS}}` is filled in when served.
const KIOSK_PAGE: &str = include_str!("kiosk.html");

/// The time per frame a terminal's clients see at most, on average (see
/// [`frames`]: one frame of slack), unless configured. Measured with
/// `bench-terminals` (clients on bare TCP streams in a process of their own,
/// one terminal, Mosquitto, SQLite, this 2-core machine; a least gap between
/// frames then, not an average), frame p99 in ms at 1,000 clients and 100 /
/// 1,000 readings/s:
/// cap 1 ms 22 / 45, 5 ms 21 / 46, 10 ms 25 / 44, 20 ms 36 / 57, 50 ms
/// 63 / 73; at 10,000 clients and 100 readings/s: 10 ms 165, 20 ms 158,
/// 50 ms 190, 100 ms 223. A slow client already skips to the newest frame,
/// so a short cap costs little; the cap bounds the writes when renders come
/// faster than that. With the slack, 7 ms measured no better than 10 on
/// PostgreSQL at 1,000 readings/s (the renders it adds take the cores the
/// readings need).
pub const DEFAULT_FRAME_INTERVAL: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The broker frames are published to (`mqtt://[user:pass@]host:port`).
    pub mqtt: String,
    /// How often an idle stream carries a `ping` event.
    pub keep_alive: Duration,
    /// The rate cap: a terminal's clients see at most one frame per interval
    /// on average, with one frame of slack (the newest; the last one always).
    pub frame_interval: Duration,
    /// The host's metrics (`parkd up`); none: the gateway keeps a registry of
    /// its own and serves it at `/metrics` (`parkd gateway`).
    pub metrics: Option<GatewayMetrics>,
}

impl GatewayConfig {
    pub fn new(mqtt: &str) -> Self {
        Self {
            mqtt: mqtt.to_owned(),
            keep_alive: Duration::from_secs(15),
            frame_interval: DEFAULT_FRAME_INTERVAL,
            metrics: None,
        }
    }
}

/// Whether the gateway holds its subscription.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub subscribed: AtomicBool,
}

pub struct Gateway {
    pub frames: Arc<Frames>,
    /// The lots' public summaries, keyed by lot.
    pub lots: Arc<Frames>,
    pub stats: Arc<GatewayStats>,
    pub metrics: GatewayMetrics,
    /// Its own registry, when the host has none for it.
    registry: Option<Registry>,
    tokens: Arc<Tokens>,
    keep_alive: Duration,
    /// Writes frames to the terminals' bare streams ([`fanout`]).
    fanouts: Arc<fanout::Fanouts>,
    subscriber: tokio::task::JoinHandle<()>,
    /// Cancelled when the host shuts down: every stream ends (its clients
    /// reconnect, with `Last-Event-ID`, to a replica still running).
    closing: tokio_util::sync::CancellationToken,
}

/// The gateway's own runtime: two worker threads that run the broker
/// subscription, the fan-out and the client connections, apart from the
/// threads that run components and ingest.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("parkd-gateway")
            .enable_all()
            .build()
            .expect("starting the terminal gateway's runtime")
    })
}

/// Raises this process's open-file limit to its hard limit (every client is a
/// socket), and says so when the hard limit is low.
pub fn raise_file_limit() {
    const WANTED: u64 = 20_000;
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) if limit < WANTED => tracing::warn!(
            limit,
            "the open-file limit (hard limit) allows about {limit} terminal clients; raise it (ulimit -Hn, \
             LimitNOFILE=) to hold more"
        ),
        Ok(limit) => tracing::debug!(limit, "open-file limit raised to the hard limit"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot raise the open-file limit; terminal clients are bounded by it")
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.subscriber.abort();
    }
}

impl Gateway {
    /// Subscribes to the broker and opens the token store.
    pub async fn start(config: GatewayConfig, database: &Database) -> Result<Arc<Self>> {
        let url =
            url::Url::parse(&config.mqtt).with_context(|| format!("{:?} is not an MQTT URL", config.mqtt))?;
        if url.scheme() != "mqtt" {
            bail!("{:?}: expected mqtt://host:port", config.mqtt);
        }
        let host = url.host_str().context("the MQTT URL names no host")?.to_owned();
        let mut options = MqttOptions::new(
            format!("parkd-gateway-{}", uuid::Uuid::new_v4().simple()),
            host,
            url.port().unwrap_or(1883),
        );
        // A fresh session each time: on (re)subscribing, the broker sends every
        // terminal's retained current frame, which is exactly the state to rebuild.
        options
            .set_clean_session(true)
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(1 << 20, 1 << 20);
        if !url.username().is_empty() {
            options.set_credentials(url.username(), url.password().unwrap_or_default());
        }
        raise_file_limit();
        let (metrics, registry) = match config.metrics {
            Some(metrics) => (metrics, None),
            None => {
                let (metrics, registry) = GatewayMetrics::standalone();
                (metrics, Some(registry))
            }
        };
        let frames = Frames::new(config.frame_interval);
        let lots = Frames::for_lots(config.frame_interval);
        let stats = Arc::new(GatewayStats::default());
        let tokens = Arc::new(Tokens::open(database).await?);
        let subscriber = runtime().spawn(subscribe(
            options,
            frames.clone(),
            lots.clone(),
            stats.clone(),
            metrics.clone(),
            tokens.clone(),
        ));
        let fanouts = fanout::Fanouts::new(metrics.clone(), config.keep_alive);
        Ok(Arc::new(Self {
            frames,
            lots,
            stats,
            metrics,
            registry,
            tokens,
            keep_alive: config.keep_alive,
            fanouts,
            subscriber,
            closing: Default::default(),
        }))
    }

    /// The gateway's own metrics in Prometheus text format (`parkd gateway`).
    pub fn render_metrics(&self) -> Option<String> {
        self.registry.as_ref().map(crate::metrics::encode)
    }

    /// Database look-ups of terminal tokens so far (merged and cached checks make none).
    pub fn token_lookups(&self) -> u64 {
        self.tokens.lookups()
    }

    /// Waits until the broker confirmed the subscription.
    pub async fn ready(&self, timeout: Duration) -> Result<()> {
        let started = std::time::Instant::now();
        while !self.stats.subscribed.load(Ordering::Relaxed) {
            if started.elapsed() > timeout {
                bail!("the terminal gateway did not subscribe within {timeout:?}: is the broker reachable?");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(())
    }

    /// Ends every stream, SSE and WebSocket, now and from now on (a
    /// draining host would otherwise wait out its grace period on them).
    pub fn close_streams(&self) {
        self.closing.cancel();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> i64 {
        self.metrics.connections.get()
    }

    /// Whether `path` is the gateway's.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/terminals/") || path == LOTS_STREAM_PATH
    }

    /// Answers a request for a gateway path.
    pub async fn handle<B>(self: &Arc<Self>, req: hyper::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body + Send + 'static,
    {
        let path = req.uri().path().to_owned();
        if path == LOTS_STREAM_PATH {
            if req.method() != http::Method::GET {
                return error(StatusCode::METHOD_NOT_ALLOWED, "the lots' stream answers GET only");
            }
            return self.lots_sse();
        }
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let (terminal, what) = match segments.as_slice() {
            ["terminals", id] => (*id, None),
            ["terminals", id, what] => (*id, Some(*what)),
            _ => return error(StatusCode::NOT_FOUND, &format!("no route for {path}")),
        };
        if let Err(e) = parking_domain::validate_id("terminal", terminal) {
            return error(StatusCode::BAD_REQUEST, &e.to_string());
        }
        if req.method() != http::Method::GET {
            return error(StatusCode::METHOD_NOT_ALLOWED, "the terminal gateway answers GET only");
        }
        match what {
            None => kiosk_page(self.keep_alive),
            Some("stream") | Some("ws") => {
                let token = presented_token(&req);
                match self.tokens.check(terminal, token.as_deref()).await {
                    Ok(Verdict::Allowed) => {}
                    Ok(Verdict::Unauthenticated(why)) => {
                        let mut r = error(StatusCode::UNAUTHORIZED, why);
                        r.headers_mut().insert("www-authenticate", HeaderValue::from_static("Bearer"));
                        return r;
                    }
                    Ok(Verdict::Forbidden) => {
                        return error(
                            StatusCode::FORBIDDEN,
                            &format!("this token belongs to another terminal, not {terminal:?}"),
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "terminal token lookup failed");
                        let mut r =
                            error(StatusCode::SERVICE_UNAVAILABLE, "cannot check the token now; retry");
                        r.headers_mut().insert("retry-after", HeaderValue::from_static("2"));
                        return r;
                    }
                }
                let last_seen = last_event_id(&req);
                if what == Some("ws") {
                    self.websocket(req, terminal, last_seen)
                } else {
                    self.sse(terminal, last_seen)
                }
            }
            Some(other) => {
                error(StatusCode::NOT_FOUND, &format!("no {other:?} for a terminal; try stream or ws"))
            }
        }
    }

    fn sse(self: &Arc<Self>, terminal: &str, last_seen: Option<u64>) -> Response<Body> {
        self.event_stream(Watcher::Terminal(Client::new(self, terminal, last_seen)))
    }

    /// `GET /find/stream`: every lot's summary at once, then each lot's
    /// newest as it changes, and the pings.
    fn lots_sse(self: &Arc<Self>) -> Response<Body> {
        self.event_stream(Watcher::Lots(LotsClient::new(self)))
    }

    /// A stream served by hyper: the hello, then what the client watches.
    fn event_stream(&self, watcher: Watcher) -> Response<Body> {
        let hello = futures::stream::once(async { hello() });
        let keep_alive = self.keep_alive;
        let events = futures::stream::unfold(watcher, move |mut watcher| async move {
            let next = watcher.next(keep_alive).await?;
            Some((next.sse(), watcher))
        });
        sse_response(hello.chain(events))
    }
}

/// A stream's client: a terminal's or the lots'.
enum Watcher {
    Terminal(Client),
    Lots(LotsClient),
}

impl Watcher {
    async fn next(&mut self, keep_alive: Duration) -> Option<Next> {
        match self {
            Watcher::Terminal(client) => client.next(keep_alive).await,
            Watcher::Lots(client) => client.next(keep_alive).await,
        }
    }
}

/// The path of the public stream of every lot's summary.
pub const LOTS_STREAM_PATH: &str = "/find/stream";

/// An event stream's answer.
fn sse_response(events: impl futures::Stream<Item = Bytes> + Send + Sync + 'static) -> Response<Body> {
    let body = StreamBody::new(events.map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b))));
    Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-store")
        // Proxies such as nginx buffer responses unless told not to.
        .header("x-accel-buffering", "no")
        .body(BodyExt::boxed(body))
        .expect("valid response")
}

fn ping_event(now_ms: i64) -> String {
    format!("event: ping\ndata: {now_ms}\n\n")
}

/// A stream's first bytes: tells EventSource how soon to reconnect, opens
/// the stream at once, and gives the page the gateway's clock (to tell a
/// frame's age).
fn hello() -> Bytes {
    Bytes::from(format!("retry: 2000\n\n{}", ping_event(now_ms())))
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// What a client's stream sends next.
enum Next {
    Frame(Arc<Relayed>),
    /// A keep-alive carrying the gateway's clock (ms since the epoch).
    Ping(i64),
}

impl Next {
    /// As an SSE event (a frame's is encoded once, shared by every client).
    fn sse(&self) -> Bytes {
        match self {
            Next::Frame(frame) => frame.sse.clone(),
            Next::Ping(now) => Bytes::from(ping_event(*now)),
        }
    }
}

/// One connected client: the terminal's newest frame, and what it sent last.
struct Client {
    metrics: GatewayMetrics,
    latest: Latest,
    /// The version of the frame it sent last (see [`Relayed::version`]).
    sent: Option<u64>,
    /// The seq the client said it has (`Last-Event-ID`), until a frame is sent.
    resumed_at: Option<u64>,
    ping: Option<tokio::time::Interval>,
    closing: tokio_util::sync::CancellationToken,
}

impl Client {
    fn new(gateway: &Arc<Gateway>, terminal: &str, last_seen: Option<u64>) -> Self {
        let mut client = Self::watching(gateway.frames.watch(terminal), gateway.metrics.clone(), last_seen);
        client.closing = gateway.closing.clone();
        client
    }

    fn watching(latest: Latest, metrics: GatewayMetrics, last_seen: Option<u64>) -> Self {
        metrics.connections.inc();
        if last_seen.is_some() {
            metrics.reconnects.inc();
        }
        Self { metrics, latest, sent: None, resumed_at: last_seen, ping: None, closing: Default::default() }
    }

    /// The newest frame once there is one the client has not seen, or a
    /// ping; `None` when the terminal is gone or the host shuts down.
    async fn next(&mut self, keep_alive: Duration) -> Option<Next> {
        if self.ping.is_none() {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            self.ping = Some(i);
        }
        loop {
            if let Some(frame) = self.pending() {
                return Some(Next::Frame(frame));
            }
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                changed = self.latest.changed() => changed.ok()?,
                _ = self.ping.as_mut().expect("set above").tick() => return Some(Next::Ping(now_ms())),
            }
        }
    }

    /// The newest frame if the client has not seen it, counted as sent.
    fn pending(&mut self) -> Option<Arc<Relayed>> {
        let frame = self.latest.borrow_and_update().clone()?;
        if !self.wants(&frame) {
            return None;
        }
        if let Some(sent) = self.sent {
            self.metrics.frames_skipped.inc_by(frame.version.saturating_sub(sent + 1));
        }
        self.sent_up_to(frame.version);
        self.metrics.frames_sent.inc();
        Some(frame)
    }

    /// The version of the newest frame sent, once one was (or the client
    /// resumed at the current one).
    fn sent_version(&self) -> Option<u64> {
        self.sent
    }

    /// The frame of `version` was sent (by a fan-out).
    fn sent_up_to(&mut self, version: u64) {
        self.sent = Some(self.sent.map_or(version, |sent| sent.max(version)));
        self.resumed_at = None;
    }

    /// The terminal's frames as this client watches them.
    fn latest(&self) -> &Latest {
        &self.latest
    }

    /// Whether `frame` is news to this client: newer than what it sent, or,
    /// for a client resuming, not the frame it already has.
    fn wants(&mut self, frame: &Relayed) -> bool {
        match (self.sent, self.resumed_at) {
            (Some(sent), _) => frame.version > sent,
            (None, Some(seq)) if seq == frame.seq => {
                self.sent = Some(frame.version);
                false
            }
            (None, _) => true,
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

/// One client of the lots' stream: what it sent of each lot, and the lots'
/// summaries it is about to send (at most one per lot: the newest when found).
struct LotsClient {
    metrics: GatewayMetrics,
    lots: Arc<Frames>,
    any: tokio::sync::watch::Receiver<u64>,
    sent: std::collections::HashMap<String, (u64, i64)>,
    pending: std::collections::VecDeque<Arc<Relayed>>,
    ping: Option<tokio::time::Interval>,
    closing: tokio_util::sync::CancellationToken,
}

impl LotsClient {
    fn new(gateway: &Arc<Gateway>) -> Self {
        gateway.metrics.connections.inc();
        let mut any = gateway.lots.watch_any();
        any.mark_changed(); // the current summaries at once
        Self {
            metrics: gateway.metrics.clone(),
            lots: gateway.lots.clone(),
            any,
            sent: Default::default(),
            pending: Default::default(),
            ping: None,
            closing: gateway.closing.clone(),
        }
    }

    /// The next lot summary it has not sent, or a ping; `None` when the host
    /// shuts down.
    async fn next(&mut self, keep_alive: Duration) -> Option<Next> {
        if self.ping.is_none() {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            self.ping = Some(i);
        }
        loop {
            if let Some(summary) = self.pending.pop_front() {
                self.metrics.frames_sent.inc();
                return Some(Next::Frame(summary));
            }
            if self.any.has_changed().unwrap_or(false) {
                self.any.borrow_and_update();
                self.pending.extend(self.lots.unsent(&mut self.sent));
                continue;
            }
            tokio::select! {
                _ = self.closing.cancelled() => return None,
                changed = self.any.changed() => {
                    changed.ok()?;
                    self.any.mark_changed();
                }
                _ = self.ping.as_mut().expect("set above").tick() => return Some(Next::Ping(now_ms())),
            }
        }
    }
}

impl Drop for LotsClient {
    fn drop(&mut self) {
        self.metrics.connections.dec();
    }
}

/// The terminal's token: `Authorization: Bearer` or `?token=` (a browser's
/// EventSource cannot set headers).
fn presented_token<B>(req: &hyper::Request<B>) -> Option<String> {
    let authorization = req.headers().get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    token_in(authorization, req.uri().query())
}

/// The token in an `Authorization` header's value or a query string.
fn token_in(authorization: Option<&str>, query: Option<&str>) -> Option<String> {
    if let Some(bearer) = authorization.and_then(|v| v.strip_prefix("Bearer ")) {
        return Some(bearer.trim().to_owned());
    }
    query_param(query?, "token")
}

fn query_param(query: &str, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `Last-Event-ID` (sent by EventSource on reconnect) or `?lastEventId=`.
fn last_event_id<B>(req: &hyper::Request<B>) -> Option<u64> {
    let header = req.headers().get("last-event-id").and_then(|v| v.to_str().ok());
    last_event_id_in(header, req.uri().query())
}

fn last_event_id_in(header: Option<&str>, query: Option<&str>) -> Option<u64> {
    header
        .map(str::to_owned)
        .or_else(|| query_param(query?, "lastEventId"))
        .and_then(|v| v.trim().parse().ok())
}

fn kiosk_page(keep_alive: Duration) -> Response<Body> {
    let page = KIOSK_PAGE.replace("{{KEEP_ALIVE_MS}}", &keep_alive.as_millis().to_string());
    Response::builder()
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(full(Bytes::from(page)))
        .expect("valid response")
}

pub fn full(bytes: Bytes) -> Body {
    BodyExt::boxed(Full::new(bytes))
}

pub fn error(status: StatusCode, message: &str) -> Response<Body> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(full(Bytes::from(body)))
        .expect("valid response")
}

/// Keeps the subscription to every terminal's frames, reconnecting forever.
async fn subscribe(
    options: MqttOptions,
    frames: Arc<Frames>,
    lots: Arc<Frames>,
    stats: Arc<GatewayStats>,
    metrics: GatewayMetrics,
    tokens: Arc<Tokens>,
) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A clean session forgets subscriptions: subscribe on every connect.
                let filters = [parking_domain::FRAME_TOPIC_FILTER, parking_domain::SUMMARY_TOPIC_FILTER]
                    .map(|path| rumqttc::SubscribeFilter::new(path.to_owned(), QoS::AtLeastOnce));
                if let Err(e) = client.subscribe_many(filters).await {
                    tracing::warn!(error = %e, "subscribing to terminal frames and lot summaries failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                stats.subscribed.store(true, Ordering::Relaxed);
                tracing::info!(
                    topics = %format!("{} {}", parking_domain::FRAME_TOPIC_FILTER, parking_domain::SUMMARY_TOPIC_FILTER),
                    "terminal gateway subscribed"
                );
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if let Some(lot) = parking_domain::lot_of_summary_topic(&p.topic) {
                    if let Err(e) = lots.accept(lot, &p.payload, now_ms()) {
                        metrics.frames_refused.inc();
                        tracing::warn!(topic = %p.topic, error = %e, "ignoring a lot summary");
                    }
                    continue;
                }
                let Some(terminal) = parking_domain::terminal_of_topic(&p.topic) else { continue };
                match frames.accept(terminal, &p.payload, now_ms()) {
                    Ok(Taken::Newer) => {
                        metrics.frames_received.inc();
                    }
                    // A terminal appeared, was provisioned again or went away:
                    // its tokens are looked up again.
                    Ok(taken @ (Taken::First | Taken::Repeated | Taken::Cleared)) => {
                        if taken == Taken::First {
                            metrics.frames_received.inc();
                        }
                        tokens.forget_terminal(terminal);
                    }
                    Ok(Taken::Older) => {}
                    Err(e) => {
                        metrics.frames_refused.inc();
                        tracing::warn!(topic = %p.topic, error = %e, "ignoring a terminal frame");
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if stats.subscribed.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "terminal gateway lost the broker; reconnecting");
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Hands an accepted connection to the gateway's runtime: its socket is
/// registered there, so its reads and writes do not wait for busy threads
/// elsewhere. A stream (a terminal's, or the lots') is served on the bare connection
/// ([`bare`]); for anything else `serve` runs the connection (its returned
/// future) with hyper.
pub fn spawn_connection<F, Fut>(
    connections: &mut tokio::task::JoinSet<()>,
    stream: tokio::net::TcpStream,
    gateway: Arc<Gateway>,
    header_timeout: Duration,
    serve: F,
) where
    F: FnOnce(Replayed) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    // Frames are small and latency matters: no Nagle delay.
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
    let stream = match stream.into_std() {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot hand a connection to the gateway's runtime");
            return;
        }
    };
    connections.spawn_on(
        async move {
            let stream = match tokio::net::TcpStream::from_std(stream) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot register a connection on the gateway's runtime");
                    return;
                }
            };
            match bare::read_head(&gateway, stream, header_timeout).await {
                bare::Asked::Stream(stream) => {
                    // What `serve` holds for a request (parkd up: one of its
                    // request slots) is not held for a stream: streams are
                    // bounded by the open-file limit alone.
                    drop(serve);
                    bare::serve(&gateway, stream).await
                }
                bare::Asked::Other(connection) => serve(connection).await,
                bare::Asked::Nothing => {}
            }
        },
        runtime().handle(),
    );
}

/// How long `parkd gateway` waits for a request's head.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the gateway alone (`parkd gateway`): its routes, `/healthz` and
/// `/metrics`, until `stop` is cancelled; then it stops accepting, ends the
/// streams, lets the other requests finish and returns.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (for_streams, gateway) = (gateway.clone(), gateway.clone());
        let stop = stop.clone();
        spawn_connection(
            &mut connections,
            stream,
            for_streams,
            HEADER_READ_TIMEOUT,
            move |stream| async move {
                let service =
                    hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let gateway = gateway.clone();
                        async move {
                            let response = match req.uri().path() {
                                "/healthz" => Response::new(full(Bytes::from_static(b"ok\n"))),
                                "/metrics" => match gateway.render_metrics() {
                                    Some(text) => Response::builder()
                                        .header("content-type", crate::metrics::CONTENT_TYPE)
                                        .body(full(Bytes::from(text)))
                                        .expect("valid response"),
                                    None => error(StatusCode::NOT_FOUND, "the host serves these metrics"),
                                },
                                path if crate::find::owns(path) => {
                                    crate::find::handle(req.method()).map(full)
                                }
                                path if Gateway::owns(path) => gateway.handle(req).await,
                                path => error(StatusCode::NOT_FOUND, &format!("no route for {path}")),
                            };
                            Ok::<_, Infallible>(response)
                        }
                    });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .with_upgrades();
                let _ = crate::server::until_stopped(connection, &stop).await;
            },
        );
    }
    drop(listener);
    gateway.close_streams();
    while connections.join_next().await.is_some() {}
    Ok(())
}
