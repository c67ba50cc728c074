//! CloudEvents in and out of a component: the one way every event-driven
//! component reads its trigger and builds the events it derives from it.

use chrono::Utc;
use cloudevents::{AttributesReader, Event, EventBuilder, EventBuilderV10};
use http::{Request, StatusCode};
use serde::Serialize;

use crate::respond::ApiError;

/// Media type of a CloudEvents batch (JSON event format, batched mode).
pub const BATCH: &str = "application/cloudevents-batch+json";
/// Media type of the answer to a batch: what became of each event, in
/// order, and the events they derived (`{"results": [...], "events": [...]}`).
pub const RESULTS: &str = "application/vnd.parking.results+json";

/// Whether the caller takes a CloudEvents batch as a reply (parkd says so;
/// a Knative Broker takes one event).
pub fn accepts_batch(req: &Request<Vec<u8>>) -> bool {
    req.headers().get_all(http::header::ACCEPT).iter().any(|v| v.to_str().is_ok_and(|v| v.contains(BATCH)))
}

/// Whether a request carries a CloudEvents batch.
pub fn is_batch(req: &Request<Vec<u8>>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with(BATCH))
}

/// The events of a POSTed CloudEvents batch, each read on its own: one that
/// is not a CloudEvent of type `accepts` is refused alone (its index keeps
/// its place). The whole batch is refused when it is too large, holds too
/// many events or is not a JSON array.
pub fn receive_batch(
    req: Request<Vec<u8>>,
    accepts: &str,
    max_events: usize,
    max_bytes: usize,
) -> Result<Vec<Result<Event, ApiError>>, ApiError> {
    if req.method() != http::Method::POST {
        return Err(ApiError::method_not_allowed(
            req.method(),
            req.uri().path(),
            "POST with a CloudEvents batch",
        ));
    }
    let body = req.into_body();
    if body.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("batch of {} bytes is over the {max_bytes}-byte limit", body.len()),
        ));
    }
    let items: Vec<serde_json::Value> = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("not a CloudEvents batch (a JSON array of events): {e}"))
    })?;
    if items.len() > max_events {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "batch of {} events is over the limit of {max_events}: send smaller batches",
                items.len()
            ),
        ));
    }
    Ok(items
        .into_iter()
        .map(|item| {
            let event: Event = serde_json::from_value(item)
                .map_err(|e| ApiError::bad_request(format!("not a CloudEvent (JSON event format): {e}")))?;
            if event.ty() != accepts {
                return Err(ApiError::bad_request(format!(
                    "unsupported event type {:?}: this function accepts {accepts}",
                    event.ty()
                )));
            }
            Ok(event)
        })
        .collect())
}

/// What became of one event of a batch that was refused alone: its id (if
/// it was a readable CloudEvent), its status and the reason.
pub fn refused(id: Option<&str>, e: &ApiError) -> serde_json::Value {
    serde_json::json!({ "id": id, "status": e.status.as_u16(), "error": e.message })
}

/// The answer to a batch: 200 with `body` (`{"results": [...], "events":
/// [...]}`, and whatever else the component says) as [`RESULTS`].
pub fn results_response(body: &serde_json::Value) -> Result<http::Response<Vec<u8>>, ApiError> {
    let body = serde_json::to_vec(body)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(http::Response::builder()
        .status(StatusCode::OK)
        .header("content-type", RESULTS)
        .body(body)
        .expect("static response parts are valid"))
}

/// The CloudEvent of a POST (binary or structured mode), refused with a
/// reason when it is too large, not a CloudEvent, or not of type `accepts`
/// (400s: Knative does not retry them).
pub fn receive(req: Request<Vec<u8>>, accepts: &str, max_bytes: usize) -> Result<Event, ApiError> {
    receive_one_of(req, &[accepts], max_bytes)
}

/// [`receive`] for a component that accepts several event types.
pub fn receive_one_of(req: Request<Vec<u8>>, accepts: &[&str], max_bytes: usize) -> Result<Event, ApiError> {
    let names = accepts.join(" or ");
    if req.method() != http::Method::POST {
        return Err(ApiError::method_not_allowed(req.method(), req.uri().path(), "POST with a CloudEvent"));
    }
    let (parts, body) = req.into_parts();
    if body.len() > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("event of {} bytes is over the {max_bytes}-byte limit of {names}", body.len()),
        ));
    }
    let event = cloudevents::binding::http::to_event(&parts.headers, body)
        .map_err(|e| ApiError::bad_request(format!("not a CloudEvent (binary or structured mode): {e}")))?;
    if !accepts.contains(&event.ty()) {
        return Err(ApiError::bad_request(format!(
            "unsupported event type {:?}: this function accepts {names}",
            event.ty()
        )));
    }
    Ok(event)
}

/// An event derived from `cause`, in JSON event format. Its id is the
/// cause's id plus `suffix`, so a redelivered cause can never yield two
/// different events.
pub fn derived<T: Serialize>(
    cause: &Event,
    source: &str,
    suffix: &str,
    ty: &str,
    subject: &str,
    data: &T,
) -> Result<serde_json::Value, ApiError> {
    with_id(&format!("{}/{suffix}", cause.id()), source, ty, subject, data)
}

/// An event in JSON event format with its own id (one that names what it is
/// about, so every path that derives it derives the same id).
pub fn with_id<T: Serialize>(
    id: &str,
    source: &str,
    ty: &str,
    subject: &str,
    data: &T,
) -> Result<serde_json::Value, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let data = serde_json::to_value(data).map_err(|e| internal(e.to_string()))?;
    let event = EventBuilderV10::new()
        .id(id)
        .source(source)
        .ty(ty)
        .subject(subject)
        .time(Utc::now())
        .data("application/json", data)
        .build()
        .map_err(|e| internal(e.to_string()))?;
    serde_json::to_value(&event).map_err(|e| internal(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(headers: &[(&str, &str)], body: &str) -> Request<Vec<u8>> {
        let mut req = Request::post("/");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(body.as_bytes().to_vec()).unwrap()
    }

    const PING: [(&str, &str); 4] = [
        ("ce-specversion", "1.0"),
        ("ce-id", "t-1"),
        ("ce-source", "/ping"),
        ("ce-type", "dev.knative.sources.ping"),
    ];

    #[test]
    fn only_the_accepted_type_within_the_limit_gets_in() {
        let event = receive(post(&PING, ""), "dev.knative.sources.ping", 64).unwrap();
        assert_eq!(event.id(), "t-1");
        let refused = receive(post(&PING, ""), "io.parking.sensor.uplink.v1", 64).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.message.contains("dev.knative.sources.ping"), "{}", refused.message);
        let large = receive(post(&PING, &"x".repeat(65)), "dev.knative.sources.ping", 64).unwrap_err();
        assert_eq!(large.status, StatusCode::PAYLOAD_TOO_LARGE);
        let garbage = receive(post(&[], "{}"), "dev.knative.sources.ping", 64).unwrap_err();
        assert!(garbage.message.contains("not a CloudEvent"), "{}", garbage.message);
    }

    #[test]
    fn derived_ids_follow_the_cause() {
        let cause = receive(post(&PING, ""), "dev.knative.sources.ping", 64).unwrap();
        let a = derived(&cause, "/parking/x", "report", "io.parking.x.v1", "s", &serde_json::json!({"n": 1}))
            .unwrap();
        let b = derived(&cause, "/parking/x", "report", "io.parking.x.v1", "s", &serde_json::json!({"n": 1}))
            .unwrap();
        assert_eq!(a["id"], "t-1/report");
        assert_eq!(a["id"], b["id"]);
        assert_eq!(a["data"]["n"], 1);
        assert_eq!(a["source"], "/parking/x");
    }
}
