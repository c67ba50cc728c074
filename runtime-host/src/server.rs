//! The HTTP listener: host routes (health, the operator page at `/`, the public
//! page at `/find`), the events route (in-process eventing), and
//! the manifest's routes to components.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::app::App;
use crate::bridge::BridgeStats;
use crate::credentials::Credential;
use crate::eventing::{self, Eventing};
use crate::gateway::{self, Gateway};
use crate::operator;
use crate::routes::Router;

/// How the listener guards itself against slow, greedy or too many clients.
#[derive(Debug, Clone)]
pub struct Limits {
    /// A request's head must arrive within this; on a kept-alive connection
    /// the wait for the next request counts too (the idle timeout).
    pub header_read_timeout: Duration,
    /// A request's body must arrive within this.
    pub body_read_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// How long a component may work on one request before it is stopped.
    pub request_deadline: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            max_connections: 1024,
            request_deadline: Duration::from_secs(30),
        }
    }
}

/// The largest body each kind of request may carry, checked before it is
/// read: a lot definition (up to 20,000 bays) is large, an event is small.
pub mod body_limits {
    /// `PUT /api/v1/lots/{lot}`.
    pub const LOT_SPEC: usize = 4 << 20;
    /// The events route (an event, or a bridge's micro-batch of them).
    pub const EVENTS: usize = 1 << 20;
    /// Anything else (terminal definitions, sweep ticks, reads).
    pub const OTHER: usize = 64 << 10;
}

pub struct Server {
    app: Arc<App>,
    router: Router,
    events_route: Option<String>,
    eventing: Arc<Eventing>,
    /// The terminal gateway's routes (`/terminals/...`), when it runs here.
    gateway: Option<Arc<Gateway>>,
    /// The runtime components run on. With a gateway, connections live on the
    /// gateway's runtime and everything but its streams comes back here.
    components_runtime: tokio::runtime::Handle,
    limits: Limits,
    /// One permit per connection served at once.
    slots: Arc<tokio::sync::Semaphore>,
}

/// `parkd bridge`'s own listener: `/healthz` (alive), `/readyz` (503 until
/// the bridge holds its subscriptions) and `/metrics`.
pub async fn serve_bridge_health(listener: TcpListener, stats: Arc<BridgeStats>) -> Result<()> {
    let registry = Arc::new(crate::bridge::metrics::BridgeMetrics::standalone(stats.clone()));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let (stream, _) = listener.accept().await?;
        let (stats, registry) = (stats.clone(), registry.clone());
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let (stats, registry) = (stats.clone(), registry.clone());
                async move {
                    let subscribed = stats.subscribed.load(std::sync::atomic::Ordering::Relaxed);
                    let (status, content_type, body) = match req.uri().path() {
                        "/healthz" => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        "/readyz" if subscribed => (StatusCode::OK, "text/plain", "ok\n".to_owned()),
                        "/readyz" => (
                            StatusCode::SERVICE_UNAVAILABLE,
                            "text/plain",
                            "not subscribed: is the MQTT broker reachable?\n".to_owned(),
                        ),
                        "/metrics" => {
                            (StatusCode::OK, crate::metrics::CONTENT_TYPE, crate::metrics::encode(&registry))
                        }
                        _ => (
                            StatusCode::NOT_FOUND,
                            "text/plain",
                            "try /metrics, /healthz or /readyz\n".to_owned(),
                        ),
                    };
                    let response = Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(Full::new(Bytes::from(body)))
                        .expect("valid response");
                    Ok::<_, Infallible>(response)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs an HTTP/1 connection; once `stop` is cancelled, it finishes the
/// request it is on and closes (an idle one closes at once).
pub async fn until_stopped<I, S, B>(
    connection: hyper::server::conn::http1::UpgradeableConnection<I, S>,
    stop: &CancellationToken,
) -> hyper::Result<()>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // hyper-util's GracefulShutdown watches plain connections only; this one
    // also takes WebSocket upgrades, so it is told directly.
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => result,
        _ = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    }
}

impl Server {
    /// Also serves the terminal gateway's routes.
    pub fn with_gateway(
        eventing: Arc<Eventing>,
        app: Arc<App>,
        router: Router,
        events_route: Option<String>,
        gateway: Option<Arc<Gateway>>,
        limits: Limits,
    ) -> Arc<Self> {
        Arc::new(Self {
            eventing,
            app,
            router,
            events_route,
            gateway,
            components_runtime: tokio::runtime::Handle::current(),
            slots: Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1))),
            limits,
        })
    }

    pub async fn bind(listen: SocketAddr) -> Result<TcpListener> {
        TcpListener::bind(listen).await.with_context(|| {
            format!("cannot listen on {listen}: is another parkd running? pass --listen ADDR to use another address")
        })
    }

    /// Serves until `stop` is cancelled: then it stops accepting (the
    /// listener closes, so new connections are refused), lets each
    /// connection finish the request it is on (hyper's graceful shutdown:
    /// no further request on a kept-alive one) and returns once all have
    /// ended. Dropping the task ends them at once: they live in its JoinSet.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) -> Result<()> {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connections so the set does not grow without bound.
            while connections.try_join_next().is_some() {}
            // At the connection cap, stop accepting until one ends.
            let slot = tokio::select! {
                _ = stop.cancelled() => break,
                slot = self.slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            };
            let (stream, peer) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                },
            };
            let server = self.clone();
            let header_read_timeout = self.limits.header_read_timeout;
            let stop = stop.clone();
            let serve = move |stream: gateway::Replayed| async move {
                let _slot = slot;
                let service = hyper::service::service_fn(move |req| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(req).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    // Slow or idle clients are cut off rather than holding a slot.
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(header_read_timeout)
                    .serve_connection(TokioIo::new(stream), service)
                    // The terminal gateway's WebSocket upgrades.
                    .with_upgrades();
                if let Err(e) = until_stopped(connection, &stop).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            };
            match &self.gateway {
                Some(gateway) => gateway::spawn_connection(
                    &mut connections,
                    stream,
                    gateway.clone(),
                    header_read_timeout,
                    serve,
                ),
                None => {
                    connections.spawn(serve(gateway::Replayed::new(stream)));
                }
            }
        }
        drop(listener);
        if !connections.is_empty() {
            tracing::info!(
                connections = connections.len(),
                "HTTP: no longer accepting; finishing the requests in flight"
            );
        }
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// Connections open now (each holds a slot until it ends).
    pub fn open_connections(&self) -> usize {
        self.limits.max_connections.max(1).saturating_sub(self.slots.available_permits())
    }

    async fn handle(self: Arc<Self>, req: hyper::Request<Incoming>) -> Response<gateway::Body> {
        // Terminal streams are long-lived: they are not request-logged.
        if let Some(gateway) = &self.gateway
            && Gateway::owns(req.uri().path())
        {
            return gateway.handle(req).await;
        }
        // A task of its own, on the components' runtime (with a gateway the
        // connection lives on the gateway's): a client that goes away
        // mid-request (a bridge stopped, a proxy's timeout) must not cancel a
        // component inside its database transaction, which left a SQLite
        // connection in it and the database locked.
        let runtime = self.components_runtime.clone();
        match runtime.spawn(self.handle_request(req)).await {
            Ok(response) => response,
            Err(e) => gateway::error(StatusCode::INTERNAL_SERVER_ERROR, &format!("the request failed: {e}")),
        }
    }

    async fn handle_request(self: Arc<Self>, req: hyper::Request<Incoming>) -> Response<gateway::Body> {
        let started = std::time::Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = self.route(req).await;
        tracing::info!(
            %method,
            %path,
            status = response.status().as_u16(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "request"
        );
        response.map(gateway::full)
    }

    async fn route(&self, req: hyper::Request<Incoming>) -> Response<Bytes> {
        let path = req.uri().path().to_owned();
        if path == "/healthz" {
            return Response::new(Bytes::from_static(b"ok\n"));
        }
        // The operator page, unless the manifest routes `/` to a component
        // (as `parkd serve` does with every path).
        if operator::owns(&path) && self.router.find(&path).is_none() {
            return operator::handle(req.method());
        }
        // The public availability page, likewise.
        if crate::find::owns(&path) && self.router.find(&path).is_none() {
            return crate::find::handle(req.method());
        }
        if path == "/metrics" {
            if !self.app.credentials.allows(req.headers(), Credential::Admin) {
                return unauthorised(Credential::Admin);
            }
            let body = self.app.metrics.render(&self.app.pool_stats());
            return Response::builder()
                .header("content-type", crate::metrics::CONTENT_TYPE)
                .body(Bytes::from(body))
                .expect("valid response");
        }
        if self.events_route.as_deref() == Some(path.as_str()) {
            return self.ingress(req).await;
        }
        let Some(component) = self.router.find(&path).and_then(|id| self.app.components.get(id)) else {
            return eventing::error(StatusCode::NOT_FOUND, &format!("no route for {path}"));
        };
        let limit = body_limit(!component.subscribes.is_empty(), &path, req.method());
        let (parts, body) = match self.read_body(req, limit).await {
            Ok(read) => read,
            Err(refused) => return refused,
        };
        let request = http::Request::from_parts(parts, Full::new(body));
        match self.app.invoke(component, request).await {
            Ok(response) => {
                self.route_replies(&response).await;
                response
            }
            Err(e) => eventing::invoke_error(&e),
        }
    }

    /// Events a component answered an API request with (lot-admin's
    /// `terminal.changed`) go through the in-process broker, as a Knative
    /// Broker routes replies. Their failures are logged: the request itself
    /// succeeded.
    async fn route_replies(&self, response: &Response<Bytes>) {
        if self.events_route.is_none() || !response.status().is_success() {
            return;
        }
        for event in eventing::replies(response) {
            let Ok(body) = serde_json::to_vec(&event) else { continue };
            let request = http::Request::post("/")
                .header("content-type", "application/cloudevents+json")
                .body(Bytes::from(body))
                .expect("valid request");
            let answer = self.eventing.ingress(request).await;
            if !answer.status().is_success() {
                tracing::warn!(
                    status = answer.status().as_u16(),
                    reason = %String::from_utf8_lossy(&answer.body()[..answer.body().len().min(300)]),
                    "an event a component answered with was not delivered"
                );
            }
        }
    }

    /// The events route: the ingest token, then the broker.
    async fn ingress(&self, req: hyper::Request<Incoming>) -> Response<Bytes> {
        if !self.app.credentials.allows(req.headers(), Credential::Ingest) {
            return unauthorised(Credential::Ingest);
        }
        if req.method() != http::Method::POST {
            return eventing::error(StatusCode::METHOD_NOT_ALLOWED, "POST CloudEvents to this route");
        }
        match self.read_body(req, body_limits::EVENTS).await {
            Ok((parts, body)) => self.eventing.ingress(http::Request::from_parts(parts, body)).await,
            Err(refused) => refused,
        }
    }

    /// The whole body, or the answer refusing it: 413 past `limit` (by its
    /// declared length before anything is read), 408 when it arrives too slowly.
    async fn read_body(
        &self,
        req: hyper::Request<Incoming>,
        limit: usize,
    ) -> Result<(http::request::Parts, Bytes), Response<Bytes>> {
        let too_large = || {
            eventing::error(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("this request's body may be at most {limit} bytes"),
            )
        };
        let declared = req
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let (parts, body) = req.into_parts();
        match tokio::time::timeout(self.limits.body_read_timeout, Limited::new(body, limit).collect()).await {
            Ok(Ok(collected)) => Ok((parts, collected.to_bytes())),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
            Ok(Err(e)) => {
                Err(eventing::error(StatusCode::BAD_REQUEST, &format!("request body unreadable: {e}")))
            }
            Err(_) => Err(eventing::error(
                StatusCode::REQUEST_TIMEOUT,
                &format!("the request body did not arrive within {:?}", self.limits.body_read_timeout),
            )),
        }
    }
}

/// The body limit of a request: to an event receiver, or to `path`.
fn body_limit(receives_events: bool, path: &str, method: &http::Method) -> usize {
    let lot =
        matches!(path.split('/').filter(|s| !s.is_empty()).collect::<Vec<_>>()[..], ["api", "v1", "lots", _]);
    if receives_events && method == http::Method::POST {
        body_limits::EVENTS
    } else if lot && method == http::Method::PUT {
        body_limits::LOT_SPEC
    } else {
        body_limits::OTHER
    }
}

/// 401, naming the credential to present.
fn unauthorised(credential: Credential) -> Response<Bytes> {
    let mut response = eventing::error(
        StatusCode::UNAUTHORIZED,
        &format!(
            "this request needs `Authorization: Bearer <token>` with the configured {} ({})",
            credential.variable(),
            credential.environment()
        ),
    );
    response.headers_mut().insert(http::header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    response
}
