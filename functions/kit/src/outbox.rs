//! The outbox: derived events on their way to the event backbone.
//!
//! An event is staged ([`stage`]) in the transaction of the change it
//! reports, so it exists exactly when the change does. It then leaves one of
//! two ways, oldest first, and is deleted once taken:
//!
//! - [`deliver`]: POSTed to a sink (a Knative Broker's ingress, which takes
//!   one event per request), one structured CloudEvent at a time; the first
//!   failure stops the run and leaves it and every later event staged, in
//!   order, for the next run;
//! - [`take`]: handed to the caller, which answers with them (parkd takes a
//!   CloudEvents batch as a reply and routes it in process).
//!
//! Event ids name what the event is about, so delivering one twice (a run
//! that stopped after a POST and before its delete) is a redelivery the
//! subscribers already handle.

use chrono::{DateTime, Utc};
use http::StatusCode;
use serde::Serialize;

use crate::db::{Database, DbError, opt_from_ms, to_ms};
use crate::respond::ApiError;

/// Media type of one event in structured mode.
const STRUCTURED: &str = "application/cloudevents+json";

/// Stages `events` (JSON event format; each has an `id`) in the caller's
/// transaction. An event already staged under its id is left as it is.
pub fn stage(db: &Database, events: &[serde_json::Value], now: DateTime<Utc>) -> Result<(), DbError> {
    for event in events {
        let id = event["id"]
            .as_str()
            .ok_or_else(|| DbError::Query(format!("staging an event without an id: {event}")))?;
        db.execute(db.sql.stage_event, &[id.into(), event.to_string().into(), to_ms(now).into()])?;
    }
    Ok(())
}

/// One staged event.
struct Staged {
    seq: i64,
    event: String,
}

fn pending(db: &Database, limit: u32) -> Result<Vec<Staged>, DbError> {
    db.query(db.sql.pending_events, &[i64::from(limit).into()])?
        .iter()
        .map(|row| Ok(Staged { seq: row.int(0)?, event: row.text(1)? }))
        .collect()
}

/// Takes up to `limit` staged events, oldest first, for the caller to answer
/// with; they leave the outbox in the same transaction.
pub fn take(db: &Database, limit: u32) -> Result<Vec<serde_json::Value>, DbError> {
    db.transaction(|db| {
        let staged = pending(db, limit)?;
        let mut events = Vec::with_capacity(staged.len());
        for s in staged {
            db.execute(db.sql.take_event, &[s.seq.into()])?;
            // A row this module wrote is JSON; one that is not is skipped
            // rather than blocking every event behind it.
            if let Ok(event) = serde_json::from_str(&s.event) {
                events.push(event);
            }
        }
        Ok(events)
    })
}

/// What one delivery run did.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Delivered {
    /// Events the sink took.
    pub delivered: usize,
    /// Events still staged after the run.
    pub pending: u64,
    /// When the oldest of them was staged.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Why the run stopped early: the sink's refusal or the transport error.
    pub error: Option<String>,
}

/// Delivers staged events to `sink`, oldest first, while `in_time` says
/// there is time left; stops at the first failure (the event stays, with the
/// error recorded, and so does every event after it).
pub fn deliver(db: &Database, sink: &str, mut in_time: impl FnMut() -> bool) -> Result<Delivered, DbError> {
    const CHUNK: u32 = 100;
    let mut run = Delivered::default();
    'chunks: while in_time() {
        let staged = pending(db, CHUNK)?;
        let last_chunk = staged.len() < CHUNK as usize;
        for s in staged {
            if !in_time() {
                break 'chunks;
            }
            if let Err(e) = post(sink, s.event.clone().into_bytes()) {
                db.execute(db.sql.event_failed, &[s.seq.into(), e.clone().into()])?;
                run.error = Some(e);
                break 'chunks;
            }
            db.execute(db.sql.take_event, &[s.seq.into()])?;
            run.delivered += 1;
        }
        if last_chunk {
            break;
        }
    }
    let backlog = db.query(db.sql.outbox_backlog, &[])?;
    if let Some(row) = backlog.first() {
        run.pending = u64::try_from(row.int(0)?).unwrap_or_default();
        run.oldest_pending_at = opt_from_ms(row.opt_int(1)?)?;
    }
    Ok(run)
}

/// POSTs one event in structured mode; `Err` names the sink and what went wrong.
fn post(sink: &str, body: Vec<u8>) -> Result<(), String> {
    let request = http::Request::post(sink)
        .header("content-type", STRUCTURED)
        .body(body)
        .map_err(|e| format!("events sink {sink:?} is not a valid URL: {e}"))?;
    let response: spin_sdk::http::Response = spin_sdk::http::run(spin_sdk::http::send(request))
        .map_err(|e| format!("events sink {sink}: {e} (is it reachable, and in allowed_outbound_hosts?)"))?;
    let status = *response.status();
    if (200..300).contains(&status) {
        Ok(())
    } else {
        let body = String::from_utf8_lossy(response.body());
        Err(format!("events sink {sink} answered {status}: {}", body.chars().take(200).collect::<String>()))
    }
}

/// A sink URL from the `events_sink` variable: empty is none.
pub fn sink_from_variable(raw: &str) -> Result<Option<String>, ApiError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match http::Uri::try_from(raw) {
        Ok(uri) if matches!(uri.scheme_str(), Some("http" | "https")) && uri.host().is_some() => {
            Ok(Some(raw.to_owned()))
        }
        _ => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("variable `events_sink` is {raw:?}: expected an http:// or https:// URL, or empty"),
        )),
    }
}
