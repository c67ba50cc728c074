//! `sensor-event`: applies sensor uplinks to bays.
//!
//! Takes an `io.parking.sensor.uplink.v1` CloudEvent (binary or structured
//! content mode), decodes the uplink its `format` extension names (the
//! project's JSON reading, The Things Stack v3, ChirpStack v4; raw sensor
//! bytes with the codec of the bay's sensor model), applies it to the
//! sensor's bay exactly once, and answers with the derived
//! `io.parking.slot.changed.v1` and `io.parking.availability.changed.v1`
//! events as a CloudEvents batch when the bay changed status, plus
//! `io.parking.sensor.alert.v1` when a battery ran low (or was replaced) or a
//! lot class became full or almost full (or stopped being so).
//!
//! A CloudEvents batch (`application/cloudevents-batch+json`, what parkd's
//! bridge sends under load) is applied in one transaction, each event as if
//! alone and in order; the answer says what became of each
//! (`application/vnd.parking.results+json`). A Knative trigger delivers
//! single events: both paths are first-class. A Knative Broker also takes a
//! single event as a reply: unless the caller accepts a batch (parkd's
//! deliveries do), a changed bay is answered with its
//! `availability.changed` alone (or an alert), in structured mode; slot
//! changes and alerts stay in the database for the history and alert APIs.

use chrono::{DateTime, Utc};
use cloudevents::{AttributesReader, Data, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{
    AVAILABILITY_CHANGED_V1, BAY_OVERSTAY_V1, SENSOR_ALERT_V1, SLOT_CHANGED_V1, UPLINK_V1,
};
use parking_domain::{Envelope, PayloadFormat, parse_envelope};
use parking_kit::Database;
use parking_kit::cloudevent::{self, BATCH};
use parking_kit::respond::{self, ApiError};
use parking_kit::uplink::{self, Applied, Uplink, Uplinked};
use serde_json::{Value, json};
use spin_sdk::http_component;

/// The CloudEvents `source` of the events this function derives.
const SOURCE: &str = "/parking/functions/sensor-event";
/// How far ahead of this host's clock an observation may be.
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;
/// Larger bodies are not sensor readings.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// A batch holds at most this many events ...
const MAX_BATCH_EVENTS: usize = 1000;
/// ... in at most this many bytes.
const MAX_BATCH_BYTES: usize = 1 << 20;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(handle_request(req))
}

fn handle_request(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    parking_kit::auth::require(&req, parking_kit::auth::Credential::Ingest)?;
    if cloudevent::is_batch(&req) { handle_batch(req) } else { handle_event(req) }
}

/// One event (binary or structured mode): 202 with its outcome, 200 with the
/// events it derived as a CloudEvents batch, or 4xx with the reason.
fn handle_event(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let batch_replies = cloudevent::accepts_batch(&req);
    let event = parse_event(req)?;
    let uplink = to_uplink(&event)?;
    let db = Database::open_configured()?;
    let uplinked = uplink::apply_uplink(&db, &uplink.event_key, &uplink.envelope, Utc::now())?;
    let Answer { outcome, events } = answer(&event, &uplink.envelope, uplinked)?;
    if events.is_empty() {
        Ok(accepted(outcome))
    } else if batch_replies {
        derived_batch(outcome, &events)
    } else {
        derived_one(outcome, &events)
    }
}

/// The one derived event a caller that takes a single reply gets: the
/// availability change (what signs and apps show), else the first alert.
/// The rest stay in the database (status changes, alerts).
fn derived_one(outcome: &str, events: &[Value]) -> Result<Response<Vec<u8>>, ApiError> {
    let chosen = events.iter().find(|e| e["type"] == AVAILABILITY_CHANGED_V1).unwrap_or(&events[0]);
    let body = serde_json::to_vec(chosen)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/cloudevents+json")
        .header("parking-outcome", outcome)
        .body(body)
        .expect("static response parts are valid"))
}

/// A CloudEvents batch, applied in one transaction: 200 with what became of
/// each event, in order (`{"results": [...], "events": [...]}`, the events
/// all of them derived). A bad event is refused alone; a database fault
/// fails the whole batch as retryable (nothing of it is committed).
fn handle_batch(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let items = cloudevent::receive_batch(req, UPLINK_V1, MAX_BATCH_EVENTS, MAX_BATCH_BYTES)?;
    // Each event read and decoded on its own; the readable ones applied together.
    let read: Vec<Result<(Event, Uplink), ApiError>> = items
        .into_iter()
        .map(|item| item.and_then(|event| to_uplink(&event).map(|uplink| (event, uplink))))
        .collect();
    let uplinks: Vec<Uplink> = read.iter().filter_map(|r| r.as_ref().ok()).map(|(_, u)| u.clone()).collect();
    let db = Database::open_configured()?;
    let mut applied = uplink::apply_uplinks(&db, &uplinks, Utc::now())?.into_iter();
    let mut results = Vec::with_capacity(read.len());
    let mut events = Vec::new();
    for item in read {
        let result = match item {
            Ok((event, uplink)) => {
                let uplinked = applied.next().expect("one result per applied uplink");
                match answer(&event, &uplink.envelope, uplinked) {
                    Ok(Answer { outcome, events: derived }) => {
                        let status = if derived.is_empty() { StatusCode::ACCEPTED } else { StatusCode::OK };
                        events.extend(derived);
                        json!({ "id": event.id(), "status": status.as_u16(), "outcome": outcome })
                    }
                    Err(e) => cloudevent::refused(Some(event.id()), &e),
                }
            }
            Err(e) => cloudevent::refused(None, &e),
        };
        results.push(result);
    }
    cloudevent::results_response(&json!({ "results": results, "events": events }))
}

/// What one applied event came to: its outcome and the events it derived.
struct Answer {
    outcome: &'static str,
    events: Vec<Value>,
}

/// The answer for one event, or why it is refused (unknown device,
/// undecodable for the bay's sensor).
fn answer(event: &Event, envelope: &Envelope, uplinked: Uplinked) -> Result<Answer, ApiError> {
    let alerts = uplinked
        .alerts
        .iter()
        .map(|a| derived(event, &format!("alert/{}/{}", a.id, a.state), SENSOR_ALERT_V1, &a.subject, a))
        .collect::<Result<Vec<_>, _>>()?;
    let with_alerts = |outcome| Ok(Answer { outcome, events: alerts.clone() });
    match uplinked.applied {
        Applied::UnknownDevice => Err(ApiError::bad_request(format!(
            "unknown device {:?}: no bay has it as its sensor; provision it with PUT /api/v1/lots/{{lot}}",
            envelope.device
        ))),
        Applied::Undecodable(e) => Err(ApiError::bad_request(format!("device {:?}: {e}", envelope.device))),
        Applied::Alive(kind) => with_alerts(kind),
        Applied::DuplicateEvent => with_alerts("duplicate-event"),
        Applied::Recorded(outcome) => with_alerts(match outcome {
            parking_domain::Outcome::Duplicate => "duplicate-frame",
            parking_domain::Outcome::Stale => "stale",
            _ => "refreshed",
        }),
        Applied::Changed(derived_events) => {
            let uplink::Derived { slot, availability, overstay } = *derived_events;
            let slot_subject = format!("{}/{}", slot.lot, slot.bay);
            let availability_subject = format!(
                "{}/{}/{}",
                availability.lot,
                availability.zone.as_deref().unwrap_or("-"),
                availability.class
            );
            let mut events = vec![
                derived(event, "slot", SLOT_CHANGED_V1, &slot_subject, &slot)?,
                derived(
                    event,
                    "availability",
                    AVAILABILITY_CHANGED_V1,
                    &availability_subject,
                    &availability,
                )?,
            ];
            if let Some((id, overstay)) = overstay {
                let subject = format!("{}/{}", overstay.lot, overstay.bay);
                events.push(cloudevent::with_id(&id, SOURCE, BAY_OVERSTAY_V1, &subject, &overstay)?);
            }
            events.extend(alerts);
            Ok(Answer { outcome: "changed", events })
        }
    }
}

/// Derived events as a CloudEvents batch (200), with what the reading did.
fn derived_batch(outcome: &str, events: &[Value]) -> Result<Response<Vec<u8>>, ApiError> {
    let body = serde_json::to_vec(events)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", BATCH)
        .header("parking-outcome", outcome)
        .body(body)
        .expect("static response parts are valid"))
}

fn accepted(outcome: &str) -> Response<Vec<u8>> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header("parking-outcome", outcome)
        .body(Vec::new())
        .expect("static response parts are valid")
}

/// The uplink an event carries, keyed for exactly-once handling:
/// CloudEvents are unique by (source, id).
fn to_uplink(event: &Event) -> Result<Uplink, ApiError> {
    let envelope = decode(event, Utc::now())?;
    Ok(Uplink { event_key: format!("{}\u{1f}{}", event.source(), event.id()), envelope })
}

/// Reads a CloudEvent in binary or structured content mode.
fn parse_event(req: Request<Vec<u8>>) -> Result<Event, ApiError> {
    cloudevent::receive(req, UPLINK_V1, MAX_BODY_BYTES)
}

/// Reads the uplink's envelope in the format the `format` extension names
/// (raw sensor bytes are decoded later, with the codec of the bay's sensor).
fn decode(event: &Event, now: DateTime<Utc>) -> Result<Envelope, ApiError> {
    let format = match event.extension("format") {
        None => PayloadFormat::ParkingJson,
        Some(value) => {
            PayloadFormat::parse(&value.to_string()).map_err(|e| ApiError::bad_request(e.to_string()))?
        }
    };
    let payload: Vec<u8> = match event.data() {
        Some(Data::Binary(bytes)) => bytes.clone(),
        Some(Data::String(s)) => s.clone().into_bytes(),
        Some(Data::Json(v)) => serde_json::to_vec(v).unwrap_or_default(),
        None => return Err(ApiError::bad_request("the event has no data: expected a sensor uplink")),
    };
    let envelope = parse_envelope(format, &payload)
        .map_err(|e| ApiError::bad_request(format!("format {format}: {e}")))?;
    // A clock far ahead would make every later true reading look stale.
    let horizon = now + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES);
    if envelope.received_at > horizon {
        return Err(ApiError::bad_request(format!(
            "observation time {} is more than {MAX_CLOCK_SKEW_MINUTES} minutes in the future: check the sensor's clock",
            envelope.received_at.to_rfc3339()
        )));
    }
    if let Some(subject) = event.subject()
        && !envelope.is_named_by(subject)
    {
        return Err(ApiError::bad_request(format!(
            "the event's subject {subject:?} names another device than its payload ({:?}{})",
            envelope.device,
            envelope.device_name.as_deref().map(|n| format!(", named {n:?}")).unwrap_or_default()
        )));
    }
    Ok(envelope)
}

/// A derived event in JSON event format. Its id is derived from the input
/// event's, so a redelivered input can never yield two different events.
fn derived<T: serde::Serialize>(
    cause: &Event,
    suffix: &str,
    ty: &str,
    subject: &str,
    data: &T,
) -> Result<Value, ApiError> {
    cloudevent::derived(cause, SOURCE, suffix, ty, subject, data)
}
