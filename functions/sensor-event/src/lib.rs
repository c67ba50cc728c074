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

use chrono::Utc;
use cloudevents::{AttributesReader, Data, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{AVAILABILITY_CHANGED_V1, SENSOR_ALERT_V1, SLOT_CHANGED_V1, UPLINK_V1};
use parking_domain::{Envelope, PayloadFormat, parse_envelope};
use parking_kit::respond::{self, ApiError};
use parking_kit::uplink::{self, Applied};
use parking_kit::{Database, cloudevent};
use spin_sdk::http_component;

/// The CloudEvents `source` of the events this function derives.
const SOURCE: &str = "/parking/functions/sensor-event";
/// Media type of a CloudEvents batch (JSON event format, batched mode).
const BATCH: &str = "application/cloudevents-batch+json";
/// How far ahead of this host's clock an observation may be.
const MAX_CLOCK_SKEW_MINUTES: i64 = 5;
/// Larger bodies are not sensor readings.
const MAX_BODY_BYTES: usize = 64 * 1024;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(handle_event(req))
}

fn handle_event(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    parking_kit::auth::require(&req, parking_kit::auth::Credential::Ingest)?;
    let event = parse_event(req)?;
    let envelope = decode(&event)?;
    // CloudEvents are unique by (source, id): that pair is the dedup key.
    let event_key = format!("{}\u{1f}{}", event.source(), event.id());

    let db = Database::open_configured()?;
    let uplinked = uplink::apply_uplink(&db, &event_key, &envelope, Utc::now())?;
    let alerts = uplinked
        .alerts
        .iter()
        .map(|a| derived(&event, &format!("alert/{}/{}", a.id, a.state), SENSOR_ALERT_V1, &a.subject, a))
        .collect::<Result<Vec<_>, _>>()?;
    // Alerts turn a 202 into a 200 carrying them as derived events.
    let answer =
        |outcome: &str| if alerts.is_empty() { Ok(accepted(outcome)) } else { batch(outcome, &alerts) };
    match uplinked.applied {
        Applied::UnknownDevice => Err(ApiError::bad_request(format!(
            "unknown device {:?}: no bay has it as its sensor; provision it with PUT /api/v1/lots/{{lot}}",
            envelope.device
        ))),
        Applied::Undecodable(e) => Err(ApiError::bad_request(format!("device {:?}: {e}", envelope.device))),
        Applied::Alive(kind) => answer(kind),
        Applied::DuplicateEvent => answer("duplicate-event"),
        Applied::Recorded(outcome) => answer(match outcome {
            parking_domain::Outcome::Duplicate => "duplicate-frame",
            parking_domain::Outcome::Stale => "stale",
            _ => "refreshed",
        }),
        Applied::Changed(derived_events) => {
            let uplink::Derived { slot, availability } = *derived_events;
            let slot_subject = format!("{}/{}", slot.lot, slot.bay);
            let availability_subject = format!(
                "{}/{}/{}",
                availability.lot,
                availability.zone.as_deref().unwrap_or("-"),
                availability.class
            );
            let mut events = vec![
                derived(&event, "slot", SLOT_CHANGED_V1, &slot_subject, &slot)?,
                derived(
                    &event,
                    "availability",
                    AVAILABILITY_CHANGED_V1,
                    &availability_subject,
                    &availability,
                )?,
            ];
            events.extend(alerts.iter().cloned());
            batch("changed", &events)
        }
    }
}

/// Derived events as a CloudEvents batch (200), with what the reading did.
fn batch(outcome: &str, events: &[serde_json::Value]) -> Result<Response<Vec<u8>>, ApiError> {
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

/// Reads a CloudEvent in binary or structured content mode.
fn parse_event(req: Request<Vec<u8>>) -> Result<Event, ApiError> {
    cloudevent::receive(req, UPLINK_V1, MAX_BODY_BYTES)
}

/// Reads the uplink's envelope in the format the `format` extension names
/// (raw sensor bytes are decoded later, with the codec of the bay's sensor).
fn decode(event: &Event) -> Result<Envelope, ApiError> {
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
    let horizon = Utc::now() + chrono::Duration::minutes(MAX_CLOCK_SKEW_MINUTES);
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
) -> Result<serde_json::Value, ApiError> {
    cloudevent::derived(cause, SOURCE, suffix, ty, subject, data)
}
