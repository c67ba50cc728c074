//! The terminal gateway: relays terminal frames from the MQTT broker to web
//! terminals over Server-Sent Events (and WebSocket), and serves the kiosk page.
//!
//! - `GET /terminals/{id}`: the kiosk page (public; it holds no data);
//! - `GET /terminals/{id}/stream`: SSE; the current frame at once, then every
//!   new one; `Last-Event-ID` resumes; a `ping` event every keep-alive;
//! - `GET /terminals/{id}/ws`: the same frames over a WebSocket.
//!
//! Every replica subscribes to `parking/terminals/+/frame` itself (the
//! broker fans frames out, and hands a new subscriber the retained current
//! frames), keeps the current frame and a short ring per terminal, and serves
//! its own clients. Frame ids are the frames' own `seq`, assigned where they
//! are rendered, so a client may resume on any replica.

pub mod frames;
#[cfg(test)]
mod tests;
pub mod tokens;
mod ws;

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use futures::StreamExt;
use http::{HeaderValue, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::sync::broadcast::error::RecvError;

use self::frames::{Frames, Relayed};
use self::tokens::{Tokens, Verdict};
use crate::database::Database;

/// The body every gateway answer has: a whole page or an endless stream.
pub type Body = BoxBody<Bytes, Infallible>;

/// The kiosk page; `{{KEEP_ALIVE_MS}}` is filled in when served.
const KIOSK_PAGE: &str = include_str!("kiosk.html");

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// The broker frames are published to (`mqtt://[user:pass@]host:port`).
    pub mqtt: String,
    /// How often an idle stream carries a `ping` event.
    pub keep_alive: Duration,
}

impl GatewayConfig {
    pub fn new(mqtt: &str) -> Self {
        Self { mqtt: mqtt.to_owned(), keep_alive: Duration::from_secs(15) }
    }
}

/// What the gateway has done, for `/metrics`, tests and the benchmark.
#[derive(Debug, Default)]
pub struct GatewayStats {
    pub subscribed: AtomicBool,
    pub frames_received: AtomicU64,
    pub clients: AtomicU64,
}

pub struct Gateway {
    pub frames: Arc<Frames>,
    pub stats: Arc<GatewayStats>,
    tokens: Tokens,
    keep_alive: Duration,
    subscriber: tokio::task::JoinHandle<()>,
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
        let frames = Arc::new(Frames::default());
        let stats = Arc::new(GatewayStats::default());
        let subscriber = tokio::spawn(subscribe(options, frames.clone(), stats.clone()));
        let tokens = Tokens::open(database).await?;
        Ok(Arc::new(Self { frames, stats, tokens, keep_alive: config.keep_alive, subscriber }))
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

    /// The gateway's own metrics (Prometheus text format), for `parkd gateway`'s `/metrics`.
    pub fn render_metrics(&self) -> String {
        let stats = &self.stats;
        format!(
            "# HELP parkd_gateway_subscribed whether the gateway holds its frame subscription\n\
             # TYPE parkd_gateway_subscribed gauge\nparkd_gateway_subscribed {}\n\
             # HELP parkd_gateway_frames_received_total terminal frames received from the broker\n\
             # TYPE parkd_gateway_frames_received_total counter\nparkd_gateway_frames_received_total {}\n\
             # HELP parkd_gateway_clients terminal streams and sockets open\n\
             # TYPE parkd_gateway_clients gauge\nparkd_gateway_clients {}\n",
            u8::from(stats.subscribed.load(Ordering::Relaxed)),
            stats.frames_received.load(Ordering::Relaxed),
            stats.clients.load(Ordering::Relaxed),
        )
    }

    /// Whether `path` is the gateway's.
    pub fn owns(path: &str) -> bool {
        path.starts_with("/terminals/")
    }

    /// Answers a request for a gateway path.
    pub async fn handle<B>(self: &Arc<Self>, req: hyper::Request<B>) -> Response<Body>
    where
        B: hyper::body::Body + Send + 'static,
    {
        let path = req.uri().path().to_owned();
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
        let subscription = self.frames.subscribe(terminal, last_seen);
        let client = Client::new(self, terminal, subscription.backlog, subscription.live, last_seen);
        // Tells EventSource how soon to reconnect, and opens the stream at once.
        let hello = futures::stream::once(async { Bytes::from_static(b"retry: 2000\n\n") });
        let keep_alive = self.keep_alive;
        let events = futures::stream::unfold(client, move |mut client| async move {
            let next = client.next(keep_alive).await?;
            let bytes = match next {
                Next::Frame(frame) => frame.sse.clone(),
                Next::Ping(now) => Bytes::from(format!("event: ping\ndata: {now}\n\n")),
            };
            Some((bytes, client))
        });
        let body =
            StreamBody::new(hello.chain(events).map(|b| Ok::<_, Infallible>(hyper::body::Frame::data(b))));
        Response::builder()
            .header("content-type", "text/event-stream")
            .header("cache-control", "no-store")
            // Proxies such as nginx buffer responses unless told not to.
            .header("x-accel-buffering", "no")
            .body(BodyExt::boxed(body))
            .expect("valid response")
    }
}

/// What a client's stream sends next.
enum Next {
    Frame(Arc<Relayed>),
    /// A keep-alive carrying the gateway's clock (ms since the epoch).
    Ping(i64),
}

/// One connected client: what it still has to send, and what it sent last.
struct Client {
    gateway: Arc<Gateway>,
    terminal: String,
    backlog: std::collections::VecDeque<Arc<Relayed>>,
    live: tokio::sync::broadcast::Receiver<Arc<Relayed>>,
    last_sent: u64,
    ping: Option<tokio::time::Interval>,
}

impl Client {
    fn new(
        gateway: &Arc<Gateway>,
        terminal: &str,
        backlog: Vec<Arc<Relayed>>,
        live: tokio::sync::broadcast::Receiver<Arc<Relayed>>,
        last_seen: Option<u64>,
    ) -> Self {
        gateway.stats.clients.fetch_add(1, Ordering::Relaxed);
        Self {
            gateway: gateway.clone(),
            terminal: terminal.to_owned(),
            backlog: backlog.into(),
            live,
            last_sent: last_seen.unwrap_or(0),
            ping: None,
        }
    }

    async fn next(&mut self, keep_alive: Duration) -> Option<Next> {
        let ping = self.ping.get_or_insert_with(|| {
            let mut i = tokio::time::interval_at(tokio::time::Instant::now() + keep_alive, keep_alive);
            i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            i
        });
        loop {
            if let Some(frame) = self.backlog.pop_front() {
                if frame.seq > self.last_sent {
                    self.last_sent = frame.seq;
                    return Some(Next::Frame(frame));
                }
                continue;
            }
            tokio::select! {
                received = self.live.recv() => match received {
                    Ok(frame) => self.backlog.push_back(frame),
                    // Too slow for the fan-out: skip to the current frame (a whole state).
                    Err(RecvError::Lagged(_)) => {
                        if let Some(current) = self.gateway.frames.current(&self.terminal) {
                            self.backlog.push_back(current);
                        }
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = ping.tick() => return Some(Next::Ping(chrono::Utc::now().timestamp_millis())),
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.gateway.stats.clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The terminal's token: `Authorization: Bearer` or `?token=` (a browser's
/// EventSource cannot set headers).
fn presented_token<B>(req: &hyper::Request<B>) -> Option<String> {
    if let Some(bearer) = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        return Some(bearer.trim().to_owned());
    }
    query_param(req, "token")
}

fn query_param<B>(req: &hyper::Request<B>, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// `Last-Event-ID` (sent by EventSource on reconnect) or `?lastEventId=`.
fn last_event_id<B>(req: &hyper::Request<B>) -> Option<u64> {
    req.headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query_param(req, "lastEventId"))
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
async fn subscribe(options: MqttOptions, frames: Arc<Frames>, stats: Arc<GatewayStats>) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                // A clean session forgets subscriptions: subscribe on every connect.
                if let Err(e) = client.subscribe(parking_domain::FRAME_TOPIC_FILTER, QoS::AtLeastOnce).await {
                    tracing::warn!(error = %e, "subscribing to terminal frames failed");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                stats.subscribed.store(true, Ordering::Relaxed);
                tracing::info!(topics = parking_domain::FRAME_TOPIC_FILTER, "terminal gateway subscribed");
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let Some(terminal) = parking_domain::terminal_of_topic(&p.topic) else { continue };
                stats.frames_received.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = frames.accept(terminal, &p.payload) {
                    tracing::warn!(topic = %p.topic, error = %e, "ignoring a malformed terminal frame");
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

/// Serves the gateway alone (`parkd gateway`): its routes, `/healthz` and `/metrics`.
pub async fn serve(gateway: Arc<Gateway>, listener: tokio::net::TcpListener) -> Result<()> {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let gateway = gateway.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let gateway = gateway.clone();
                async move {
                    let response = match req.uri().path() {
                        "/healthz" => Response::new(full(Bytes::from_static(b"ok\n"))),
                        "/metrics" => Response::builder()
                            .header("content-type", "text/plain; version=0.0.4")
                            .body(full(Bytes::from(gateway.render_metrics())))
                            .expect("valid response"),
                        path if Gateway::owns(path) => gateway.handle(req).await,
                        path => error(StatusCode::NOT_FOUND, &format!("no route for {path}")),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}
