//! In-process eventing: what a Knative Broker with Triggers does on a
//! cluster, inside parkd. (The MQTT broker sensors publish to is another
//! thing: `mqtt_broker`.)
//!
//! A CloudEvent POSTed to the events route goes to every component whose
//! `[component.<id>.tool.parkd] subscribes` lists its type, and the caller
//! gets the answer. The events a component answers with (a CloudEvents
//! batch, or one event in binary or structured mode) leave through the
//! derived-event queue (`derived`), as a Knative Broker delivers replies:
//! asynchronously, with retries, never inline behind the reading that
//! caused them.

mod coalesce;
pub mod derived;

use std::sync::Arc;

use bytes::Bytes;
use cloudevents::{AttributesReader, Event};
use http::{HeaderValue, Response, StatusCode};
use http_body_util::Full;

use self::derived::DerivedQueue;
use crate::app::{App, InvokeError, LoadedComponent};
use crate::credentials::Credential;

pub const BATCH: &str = "application/cloudevents-batch+json";
/// What a component answers a batch with: each event's result, in order,
/// and the events they derived (sensor-event's `{"results", "events"}`).
pub const RESULTS: &str = "application/vnd.parking.results+json";
/// What parkd's deliveries accept as a reply: a batch of events too (a
/// component answers a caller that does not say so, such as a Knative
/// Broker, with one event at most).
const REPLIES: &str = "application/cloudevents-batch+json, application/cloudevents+json;q=0.9";
const STRUCTURED: &str = "application/cloudevents+json";

pub struct Eventing {
    app: Arc<App>,
    derived: DerivedQueue,
}

impl Eventing {
    /// Starts the derived-event queue's workers (inside a Tokio runtime).
    pub fn new(app: Arc<App>, config: derived::QueueConfig) -> Arc<Self> {
        let derived = DerivedQueue::start(app.clone(), config);
        Arc::new(Self { app, derived })
    }

    /// Resolves once every derived event queued so far was delivered (or
    /// given up on): tests and a draining shutdown wait on it.
    pub async fn settled(&self) {
        self.derived.settled().await
    }

    /// Derived events queued or being delivered now.
    pub fn outstanding(&self) -> usize {
        self.derived.outstanding()
    }

    /// Handles an event arriving over HTTP. With one subscriber its answer is
    /// passed through (so a caller sees a 400 and its reason, or the derived
    /// events); with several, the worst status wins.
    ///
    /// Every delivery carries the ingest token, as an external sender's must:
    /// the events route checked the sender's before handing it here, and
    /// parkd's own senders (the bridge, the scheduler, replies) are trusted.
    pub async fn ingress(&self, request: http::Request<Bytes>) -> Response<Bytes> {
        let (mut parts, body) = request.into_parts();
        if let Some(authorization) = self.app.credentials.authorization(Credential::Ingest) {
            parts.headers.insert(http::header::AUTHORIZATION, authorization);
        }
        // Unlike a Knative Broker, parkd takes every event of a reply.
        parts.headers.insert(http::header::ACCEPT, HeaderValue::from_static(REPLIES));
        let ty = match event_type(&parts.headers, &body) {
            Ok(ty) => ty,
            Err(reason) => return error(StatusCode::BAD_REQUEST, &reason),
        };
        let subscribers = self.app.subscribers(&ty);
        if subscribers.is_empty() {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("unknown event type {ty:?}: no component subscribes to it"),
            );
        }
        let mut answers = Vec::with_capacity(subscribers.len());
        for component in &subscribers {
            let request = rebuild(&parts, body.clone());
            answers.push(self.deliver_to(component, request).await);
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

    /// Runs one delivery; the events the component answers with join the
    /// derived-event queue (waiting while it is full: back-pressure, never a drop).
    async fn deliver_to(
        &self,
        component: &Arc<LoadedComponent>,
        request: http::Request<Full<Bytes>>,
    ) -> Response<Bytes> {
        let response = match self.app.invoke(component, request).await {
            Ok(response) => response,
            Err(e) => return invoke_error(&e),
        };
        if response.status().is_success() {
            for event in replies(&response) {
                self.derived.push(event, 1).await;
            }
        }
        response
    }
}

/// The type of the event a request carries, or of every event of its batch
/// (a batch goes whole to the subscribers of that one type).
fn event_type(headers: &http::HeaderMap, body: &Bytes) -> Result<String, String> {
    let content_type =
        headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with(BATCH) {
        return cloudevents::binding::http::to_event(headers, body.to_vec())
            .map(|event| event.ty().to_owned())
            .map_err(|e| format!("not a CloudEvent (binary or structured mode): {e}"));
    }
    #[derive(serde::Deserialize)]
    struct Typed {
        #[serde(rename = "type")]
        ty: Option<String>,
    }
    let events: Vec<Typed> = serde_json::from_slice(body)
        .map_err(|e| format!("not a CloudEvents batch (a JSON array of events): {e}"))?;
    let mut types = events.into_iter().map(|e| e.ty.unwrap_or_default());
    let Some(ty) = types.next() else { return Err("an empty CloudEvents batch".to_owned()) };
    if let Some(other) = types.find(|t| *t != ty) {
        return Err(format!("a batch carries events of one type: {ty:?} and {other:?}"));
    }
    Ok(ty)
}

/// The events in a component's answer: a batch, a batch's results (their
/// `events`), or a single event.
pub fn replies(response: &Response<Bytes>) -> Vec<Event> {
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.starts_with(RESULTS) {
        #[derive(serde::Deserialize)]
        struct Results {
            events: Vec<Event>,
        }
        return match serde_json::from_slice::<Results>(response.body()) {
            Ok(results) => results.events,
            Err(e) => {
                tracing::warn!(error = %e, "a component answered a batch with unreadable results");
                Vec::new()
            }
        };
    }
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

/// Derived events as one request, as a Broker delivers them: one event in
/// structured mode, several (a round of a lot's coalesced changes) as a
/// CloudEvents batch; with the ingest token's `authorization` when one is
/// configured.
pub fn delivery_request(
    events: &[&Event],
    authorization: Option<HeaderValue>,
) -> Option<http::Request<Full<Bytes>>> {
    let (content_type, body) = match events {
        [event] => (STRUCTURED, serde_json::to_vec(event).ok()?),
        _ => (BATCH, serde_json::to_vec(events).ok()?),
    };
    let mut request = http::Request::post("/")
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .ok()?;
    if let Some(authorization) = authorization {
        request.headers_mut().insert(http::header::AUTHORIZATION, authorization);
    }
    request.headers_mut().insert(http::header::ACCEPT, HeaderValue::from_static(REPLIES));
    Some(request)
}

/// The events of a batch that a component's answer says it refused alone
/// (their results' status is 4xx or 5xx): each id (when it had one) and reason.
pub fn refused_in_batch(response: &Response<Bytes>) -> Vec<(Option<String>, String)> {
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if !content_type.starts_with(RESULTS) {
        return Vec::new();
    }
    #[derive(serde::Deserialize)]
    struct Result {
        id: Option<String>,
        status: u16,
        error: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Results {
        results: Vec<Result>,
    }
    let Ok(Results { results }) = serde_json::from_slice(response.body()) else { return Vec::new() };
    results
        .into_iter()
        .filter(|r| r.status >= 400)
        .map(|r| (r.id, format!("{}: {}", r.status, r.error.unwrap_or_default())))
        .collect()
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

#[cfg(test)]
mod tests {
    use cloudevents::{EventBuilder, EventBuilderV10};
    use http_body_util::BodyExt;

    use super::*;

    fn change(id: &str) -> Event {
        EventBuilderV10::new()
            .id(id)
            .source("/test")
            .ty("io.parking.availability.changed.v1")
            .subject("north/Z0/four_wheeler")
            .build()
            .unwrap()
    }

    async fn body_of(request: http::Request<Full<Bytes>>) -> serde_json::Value {
        serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes()).unwrap()
    }

    #[tokio::test]
    async fn one_event_goes_in_structured_mode_and_several_as_one_batch() {
        let (a, b) = (change("a"), change("b"));
        let token = HeaderValue::from_static("Bearer t");
        let one = delivery_request(&[&a], Some(token.clone())).unwrap();
        assert_eq!(one.headers()["content-type"], STRUCTURED);
        assert_eq!(one.headers()["authorization"], token);
        assert_eq!(body_of(one).await["id"], "a");
        let two = delivery_request(&[&a, &b], None).unwrap();
        assert_eq!(two.headers()["content-type"], BATCH);
        assert!(!two.headers().contains_key("authorization"));
        let ids: Vec<_> = body_of(two).await.as_array().unwrap().iter().map(|e| e["id"].clone()).collect();
        assert_eq!(ids, [serde_json::json!("a"), serde_json::json!("b")], "in order");
    }

    #[test]
    fn the_events_a_batch_answer_refused_are_named_with_their_reasons() {
        let answer = |content_type: &str, body: serde_json::Value| {
            Response::builder()
                .header("content-type", content_type)
                .body(Bytes::from(body.to_string()))
                .unwrap()
        };
        let results = serde_json::json!({ "results": [
            { "id": "a", "status": 200 },
            { "id": "b", "status": 400, "error": "no counts" },
            { "id": null, "status": 400, "error": "not a CloudEvent" },
        ], "events": [] });
        assert_eq!(
            refused_in_batch(&answer(RESULTS, results.clone())),
            [(Some("b".to_owned()), "400: no counts".to_owned()), (None, "400: not a CloudEvent".to_owned())]
        );
        assert!(refused_in_batch(&answer("application/json", results)).is_empty(), "not a batch's answer");
        assert!(
            refused_in_batch(&answer(RESULTS, serde_json::json!([1]))).is_empty(),
            "unreadable: nothing named"
        );
    }
}
