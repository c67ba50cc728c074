//! The in-process broker: what a Knative Broker with Triggers does on a
//! cluster, inside parkd.
//!
//! A CloudEvent POSTed to the events route goes to every component whose
//! `[component.<id>.tool.parkd] subscribes` lists its type. The events a
//! component answers with (a CloudEvents batch, or one event in binary or
//! structured mode) are delivered the same way, to a bounded depth, so a
//! misconfigured loop cannot run forever.

use std::sync::Arc;

use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use crate::app::{App, InvokeError, LoadedComponent};

/// How many hops a chain of derived events may take.
const MAX_DEPTH: usize = 4;
const BATCH: &str = "application/cloudevents-batch+json";
const STRUCTURED: &str = "application/cloudevents+json";

pub struct Broker {
    app: Arc<App>,
    /// What parkd's own senders' events carry: the ingest token.
    authorization: Option<HeaderValue>,
}

impl Broker {
    pub fn new(app: Arc<App>) -> Self {
        Self { app, authorization: None }
    }

    /// The broker of parkd's own senders (the bridge's in-process sink, the
    /// sweep scheduler): their events carry the ingest token, as an external
    /// sender's must.
    pub fn trusted(app: Arc<App>) -> Self {
        let authorization = app.credentials.authorization(crate::credentials::Credential::Ingest);
        Self { app, authorization }
    }

    fn subscribers(&self, ty: &str) -> Vec<Arc<LoadedComponent>> {
        self.app.components.values().filter(|c| c.subscribes.iter().any(|s| s == ty)).cloned().collect()
    }

    /// Handles an event arriving over HTTP. With one subscriber its answer is
    /// passed through (so a caller sees a 400 and its reason, or the derived
    /// events); with several, the worst status wins.
    pub async fn ingress(&self, request: http::Request<Bytes>) -> Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        if let Some(authorization) = &self.authorization {
            parts.headers.insert(http::header::AUTHORIZATION, authorization.clone());
        }
        let event = match cloudevents::binding::http::to_event(&parts.headers, body.to_vec()) {
            Ok(event) => event,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("not a CloudEvent (binary or structured mode): {e}"),
                );
            }
        };
        let subscribers = self.subscribers(event.ty());
        if subscribers.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown event type {:?}: no component subscribes to it", event.ty()),
            );
        }
        let mut answers = Vec::with_capacity(subscribers.len());
        for component in &subscribers {
            let request = rebuild(&parts, body.clone());
            let answer = self.deliver_to(component, request, 0).await;
            answers.push(answer);
        }
        if answers.len() == 1 {
            return answers.pop().expect("one answer");
        }
        let worst =
            answers.iter().map(|a| a.status()).max_by_key(|s| severity(*s)).unwrap_or(StatusCode::ACCEPTED);
        if worst.is_success() {
            Response::builder().status(StatusCode::ACCEPTED).body(Bytes::new()).expect("valid response")
        } else {
            answers.into_iter().find(|a| a.status() == worst).expect("worst answer exists")
        }
    }

    /// Runs one delivery and routes the events the component answers with.
    async fn deliver_to(
        &self,
        component: &Arc<LoadedComponent>,
        request: http::Request<Full<Bytes>>,
        depth: usize,
    ) -> Response<Bytes> {
        let response = match self.app.invoke(component, request).await {
            Ok(response) => response,
            Err(e) => return invoke_error(&e),
        };
        if response.status().is_success() {
            for event in replies(&response) {
                self.route_derived(event, depth + 1).await;
            }
        }
        response
    }

    /// Delivers a derived event to its subscribers (structured mode).
    fn route_derived(&self, event: Event, depth: usize) -> futures::future::BoxFuture<'_, ()> {
        Box::pin(async move {
            self.app.derived_events.record(&event);
            if depth > MAX_DEPTH {
                tracing::warn!(
                    ty = event.ty(),
                    id = event.id(),
                    "dropping an event past the maximum delivery depth"
                );
                return;
            }
            let subscribers = self.subscribers(event.ty());
            tracing::debug!(
                ty = event.ty(),
                id = event.id(),
                subscribers = subscribers.len(),
                "derived event"
            );
            let Ok(body) = serde_json::to_vec(&event) else { return };
            for component in subscribers {
                let request = http::Request::post("/")
                    .header("content-type", STRUCTURED)
                    .body(Full::new(Bytes::from(body.clone())))
                    .expect("valid request");
                let answer = self.deliver_to(&component, request, depth).await;
                if !answer.status().is_success() {
                    tracing::warn!(
                        component = %component.id,
                        ty = event.ty(),
                        id = event.id(),
                        status = answer.status().as_u16(),
                        reason = %String::from_utf8_lossy(&answer.body()[..answer.body().len().min(300)]),
                        "a subscriber refused a derived event"
                    );
                }
            }
        })
    }
}

/// Derived events seen by the broker, counted for Prometheus: per type, and
/// for alerts per kind and state (opened or closed), with the alerts this
/// process saw open as a gauge.
#[derive(Default)]
pub struct DerivedEventCounts {
    by_type: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
    alerts: std::sync::Mutex<std::collections::BTreeMap<(String, String), u64>>,
}

impl DerivedEventCounts {
    pub fn record(&self, event: &Event) {
        let ty = event.ty().to_owned();
        if ty == parking_domain::events::SENSOR_ALERT_V1
            && let Some(cloudevents::Data::Json(data)) = event.data()
        {
            let field = |k: &str| data[k].as_str().unwrap_or("unknown").to_owned();
            let mut alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
            *alerts.entry((field("kind"), field("state"))).or_default() += 1;
        }
        *self.by_type.lock().unwrap_or_else(|p| p.into_inner()).entry(ty).or_default() += 1;
    }

    /// The counters in Prometheus text format.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP parkd_derived_events_total derived CloudEvents the broker routed, by type\n\
             # TYPE parkd_derived_events_total counter\n",
        );
        for (ty, n) in self.by_type.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "parkd_derived_events_total{{type=\"{ty}\"}} {n}");
        }
        let alerts = self.alerts.lock().unwrap_or_else(|p| p.into_inner());
        out.push_str(
            "# HELP parkd_alerts_total alerts opened and closed, by kind\n# TYPE parkd_alerts_total counter\n",
        );
        for ((kind, state), n) in alerts.iter() {
            let _ = writeln!(out, "parkd_alerts_total{{kind=\"{kind}\",state=\"{state}\"}} {n}");
        }
        out.push_str(
            "# HELP parkd_alerts_open alerts this parkd saw open and not yet closed, by kind\n\
             # TYPE parkd_alerts_open gauge\n",
        );
        for kind in parking_domain::AlertKind::ALL.map(|k| k.as_str()) {
            let get = |state: &str| alerts.get(&(kind.to_owned(), state.to_owned())).copied().unwrap_or(0);
            let _ = writeln!(
                out,
                "parkd_alerts_open{{kind=\"{kind}\"}} {}",
                get("open").saturating_sub(get("closed"))
            );
        }
        out
    }
}

/// The events in a component's answer: a batch, or a single event.
pub fn replies(response: &Response<Bytes>) -> Vec<Event> {
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with(BATCH) {
        return match serde_json::from_slice::<Vec<Event>>(response.body()) {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "a component answered with an unreadable CloudEvents batch");
                Vec::new()
            }
        };
    }
    let has_event = content_type.starts_with(STRUCTURED) || response.headers().contains_key("ce-id");
    if has_event
        && let Ok(event) = cloudevents::binding::http::to_event(response.headers(), response.body().to_vec())
    {
        return vec![event];
    }
    Vec::new()
}

fn rebuild(parts: &http::request::Parts, body: Bytes) -> http::Request<Full<Bytes>> {
    let mut request = http::Request::new(Full::new(body));
    *request.method_mut() = parts.method.clone();
    *request.uri_mut() = parts.uri.clone();
    *request.headers_mut() = parts.headers.clone();
    request
}

/// Retryable failures outrank final ones: the caller must retry.
fn severity(status: StatusCode) -> u8 {
    match status.as_u16() {
        500..=599 | 429 => 3,
        400..=499 => 2,
        _ => 1,
    }
}

pub fn error(status: StatusCode, message: &str) -> Response<Bytes> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": message })).unwrap_or_default();
    let mut response = Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .expect("valid response");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
    }
    response
}

/// Busy and timed-out instances are worth a retry; a failed guest is a 500.
pub fn invoke_error(e: &InvokeError) -> Response<Bytes> {
    tracing::warn!(error = %e, "request failed in the host");
    match e {
        InvokeError::Busy | InvokeError::Timeout(..) => {
            error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
        InvokeError::Failed(..) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}
