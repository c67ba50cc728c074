//! `terminal-push`: live frames for display terminals.
//!
//! Takes an `io.parking.availability.changed.v1` CloudEvent (binary or
//! structured content mode), renders a frame for every terminal of the lot
//! that shows the changed (zone, vehicle class), from the lot's current
//! counts (counted once for all of them; a lot without such terminals costs
//! no render), and publishes each on `parking/terminals/{terminal}/frame`
//! (QoS 1) through Spin's outbound MQTT.
//!
//! A CloudEvents batch of availability changes
//! (`application/cloudevents-batch+json`: parkd delivers each round of a
//! lot's coalesced changes so) renders each terminal that shows any of them
//! once, in one transaction per lot; the answer says what became of each
//! event (`application/vnd.parking.results+json`). A Knative trigger
//! delivers single events, a batch of one.
//!
//! An `io.parking.terminal.changed.v1` event (lot-admin's answer to a
//! provisioning change; `subject` is the terminal) renders that terminal's
//! frame at once, so a new terminal on a quiet lot shows the truth without
//! waiting for a bay to change; for a deleted terminal it publishes an empty
//! message, which clears the retained frame and ends the gateway's streams.
//! Under parkd the frames are retained (`tool.parkd.mqtt_retain` in
//! spin.toml), so a sign or gateway that connects later gets the current
//! frame at once.
//!
//! Every availability change also publishes the lot's public summary (what
//! `GET /api/v1/lots` shows of it: counts per class and category, open,
//! `updatedAt`; no sensor or device data) on `parking/lots/{lot}/summary`
//! (retained under parkd), which the gateway streams to the public
//! availability page (`GET /find/stream`). That one is best effort: a broker
//! that cannot be reached for it alone is said in the answer
//! (`summaryError`), not retried, since the page reads the whole list every
//! minute too.
//!
//! Each retention sweep's report (`io.parking.sweep.report.v1`, once per
//! tick) renders every terminal again and publishes the frames that changed:
//! a sign whose last change never reached terminal-push (the event lost with
//! a crash between the commit and its delivery, or given up after its
//! retries) is right again within a tick. A frame still right costs a read.
//! The sign of a terminal whose lot was deleted has its retained frame
//! cleared (its streams end), so it never shows the gone lot's counts.
//!
//! The broker is the `mqtt_address` variable (`mqtt://host:port`, with
//! `?client_id=` under Spin, which requires one), with `mqtt_username` and
//! `mqtt_password`. A broker that cannot be reached is a 503: the event is
//! redelivered, and an unchanged re-render publishes the same frame again.

use std::collections::BTreeMap;

use chrono::Utc;
use cloudevents::{AttributesReader, Data, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{AVAILABILITY_CHANGED_V1, SWEEP_REPORT_V1, TERMINAL_CHANGED_V1};
use parking_domain::feeds::LotSnapshot;
use parking_domain::{AvailabilityChanged, Frame, frame_topic, live_summary, summary_topic};
use parking_kit::respond::{self, ApiError};
use parking_kit::terminals;
use parking_kit::{Database, cloudevent};
use serde_json::json;
use spin_sdk::http_component;
use spin_sdk::mqtt::{Connection, Qos};

/// Larger bodies are not events it takes (a sweep's report lists each batch
/// of its run, so it can be far larger than an availability change).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// The most availability changes one batch may carry (parkd's rounds carry
/// one per changed zone and class of a lot, in batches of at most 100).
const MAX_BATCH_EVENTS: usize = 1000;
/// Seconds between MQTT keep-alive pings of the connection.
const KEEP_ALIVE_SECS: u64 = 30;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(if cloudevent::is_batch(&req) { handle_batch(req) } else { handle_event(req) })
}

fn handle_event(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let event = cloudevent::receive_one_of(
        req,
        &[AVAILABILITY_CHANGED_V1, TERMINAL_CHANGED_V1, SWEEP_REPORT_V1],
        MAX_BODY_BYTES,
    )?;
    let db = Database::open_configured()?;
    let rendered = if event.ty() == TERMINAL_CHANGED_V1 {
        render_terminal(&db, &terminal_of(&event)?)?
    } else if event.ty() == SWEEP_REPORT_V1 {
        let rerendered = terminals::rerender_changed(&db, Utc::now())?;
        Rendered { frames: rerendered.frames, cleared: rerendered.cleared, lots: Vec::new() }
    } else {
        render_changes(&db, &[&parse_change(&event)?])?
    };
    let summaries = rendered.publish()?;
    if event.ty() == SWEEP_REPORT_V1 && !rendered.cleared.is_empty() {
        // Cleared: a later sweep need not clear them again.
        terminals::forget_frames(&db, &rendered.cleared)?;
    }
    Ok(respond::json(
        StatusCode::OK,
        &json!({
            "published": rendered.published(), "cleared": rendered.cleared,
            "summary": summaries.published.first(), "summaryError": summaries.errors.first(),
        }),
    ))
}

/// A CloudEvents batch of availability changes (what parkd delivers for a
/// round of a lot's changes): each lot's signs rendered once for all of its
/// readable changes, in one transaction. 200 with what became of each event,
/// in order (`{"results": [...], "events": []}`, and what was published); an
/// unreadable event is refused alone, a fault fails the whole batch as
/// retryable.
fn handle_batch(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let items = cloudevent::receive_batch(req, AVAILABILITY_CHANGED_V1, MAX_BATCH_EVENTS, MAX_BODY_BYTES)?;
    let read: Vec<Result<(Event, AvailabilityChanged), Refused>> = items
        .into_iter()
        .map(|item| {
            let event = item.map_err(|e| (None, e))?;
            let change = parse_change(&event).map_err(|e| (Some(event.id().to_owned()), e))?;
            Ok((event, change))
        })
        .collect();
    let changes: Vec<&AvailabilityChanged> =
        read.iter().filter_map(|r| r.as_ref().ok()).map(|(_, c)| c).collect();
    let rendered = if changes.is_empty() {
        Rendered::default()
    } else {
        render_changes(&Database::open_configured()?, &changes)?
    };
    let summaries = rendered.publish()?;
    let results: Vec<_> = read
        .iter()
        .map(|item| match item {
            Ok((event, _)) => json!({ "id": event.id(), "status": StatusCode::OK.as_u16() }),
            Err((id, e)) => cloudevent::refused(id.as_deref(), e),
        })
        .collect();
    cloudevent::results_response(&json!({
        "results": results, "events": [],
        "published": rendered.published(), "cleared": rendered.cleared,
        "summaries": summaries.published, "summaryErrors": summaries.errors,
    }))
}

/// An event of a batch refused alone, with its id when it had a readable one.
type Refused = (Option<String>, ApiError);

/// What a render gives the signs and the public page.
#[derive(Default)]
struct Rendered {
    frames: Vec<Frame>,
    /// Terminals that are gone, whose retained frame is to be cleared.
    cleared: Vec<String>,
    /// Lots whose summary is to be published, with their snapshot (`None`: the lot is gone).
    lots: Vec<(String, Option<LotSnapshot>)>,
}

/// What became of the summaries of a render's lots.
#[derive(Default)]
struct Summaries {
    published: Vec<String>,
    errors: Vec<String>,
}

impl Rendered {
    /// Publishes the frames and clears, then the summaries. Frames must reach
    /// their signs (a broker that cannot be reached is a 503, and the event
    /// comes again), and go first, so signs never wait for a summary; a
    /// summary is best effort: the public page also reads the whole list
    /// every minute, and with no broker at all (`parkd up --no-mqtt`) there
    /// is no one to publish it to.
    fn publish(&self) -> Result<Summaries, ApiError> {
        let mut summaries = Summaries::default();
        let must_publish = !self.frames.is_empty() || !self.cleared.is_empty();
        if !must_publish && self.lots.is_empty() {
            return Ok(summaries);
        }
        let (connection, unreachable) = match connect() {
            Ok(connection) => (Some(connection), None),
            Err(e) if must_publish => return Err(e),
            Err(e) => (None, Some(e.message)),
        };
        if let Some(connection) = &connection {
            for frame in &self.frames {
                let payload = serde_json::to_vec(frame)
                    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
                publish(connection, &frame.terminal, payload)?;
            }
            for terminal in &self.cleared {
                // Empty and retained: the broker forgets the terminal's frame.
                publish(connection, terminal, Vec::new())?;
            }
        }
        for (lot, snapshot) in &self.lots {
            match (&connection, render_summary(snapshot.as_ref())) {
                (_, Ok(None)) => {}
                (Some(connection), Ok(Some(payload))) => {
                    match connection.publish(&summary_topic(lot), &payload, Qos::AtLeastOnce) {
                        Ok(()) => summaries.published.push(lot.clone()),
                        Err(e) => {
                            summaries.errors.push(format!("publishing the summary of lot {lot:?}: {e}"))
                        }
                    }
                }
                (None, Ok(Some(_))) => summaries.errors.extend(unreachable.clone()),
                (_, Err(e)) => summaries.errors.push(e.message),
            }
        }
        Ok(summaries)
    }

    /// The frames published, as the answer lists them.
    fn published(&self) -> Vec<serde_json::Value> {
        self.frames.iter().map(|f| json!({ "terminal": f.terminal, "seq": f.seq })).collect()
    }
}

/// The frames of every terminal that shows one of `changes`, each rendered
/// once, and each changed lot's snapshot, a lot at a time.
fn render_changes(db: &Database, changes: &[&AvailabilityChanged]) -> Result<Rendered, ApiError> {
    let mut by_lot: BTreeMap<&str, Vec<&AvailabilityChanged>> = BTreeMap::new();
    for change in changes {
        by_lot.entry(change.lot.as_str()).or_default().push(change);
    }
    let mut rendered = Rendered::default();
    for (lot, changes) in by_lot {
        let (frames, snapshot) = terminals::render_changes(db, lot, &changes, Utc::now())?;
        rendered.frames.extend(frames);
        rendered.lots.push((lot.to_owned(), snapshot));
    }
    Ok(rendered)
}

/// The lot's public summary (counts per class and category, open, when a
/// bay last changed; nothing about sensors) as published for the public
/// page, from the snapshot read with the frames, or `None` when the lot is
/// gone.
fn render_summary(snapshot: Option<&LotSnapshot>) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(snapshot) = snapshot else { return Ok(None) };
    // Stamped after the read, so a later read carries a later stamp (two renders
    // overlapping closely may still misorder; the next change sets it right).
    let summary = live_summary(snapshot, Utc::now());
    let payload = serde_json::to_vec(&summary)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Some(payload))
}

/// The frame of one terminal that was provisioned or changed, or, when it is
/// gone, the terminal whose frame to clear.
fn render_terminal(db: &Database, terminal: &str) -> Result<Rendered, ApiError> {
    let Some(scope) = terminals::terminal_scope(db, terminal)? else {
        return Ok(Rendered { cleared: vec![terminal.to_owned()], ..Rendered::default() });
    };
    let lot = scope.lot.clone();
    let frames = terminals::render_lot_frames(db, &lot, &[(terminal.to_owned(), scope)], Utc::now())?;
    Ok(Rendered { frames, ..Rendered::default() })
}

fn publish(connection: &Connection, terminal: &str, payload: Vec<u8>) -> Result<(), ApiError> {
    connection.publish(&frame_topic(terminal), &payload, Qos::AtLeastOnce).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("publishing the frame of terminal {terminal:?}: {e}"),
        )
    })
}

/// Opens the broker connection named by the component's variables.
fn connect() -> Result<Connection, ApiError> {
    let variable = |name: &str| {
        spin_sdk::variables::get(name)
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("variable `{name}`: {e}")))
    };
    let address = variable("mqtt_address")?;
    let (username, password) = (variable("mqtt_username")?, variable("mqtt_password")?);
    Connection::open(&address, &username, &password, KEEP_ALIVE_SECS).map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot reach the MQTT broker for terminal frames (variable `mqtt_address`): {e}"),
        )
    })
}

/// Reads the availability change from the event's data.
fn parse_change(event: &Event) -> Result<AvailabilityChanged, ApiError> {
    let parsed = match event.data() {
        Some(Data::Json(v)) => serde_json::from_value(v.clone()),
        Some(Data::String(s)) => serde_json::from_str(s),
        Some(Data::Binary(b)) => serde_json::from_slice(b),
        None => return Err(ApiError::bad_request("the event has no data: expected the changed counts")),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("{AVAILABILITY_CHANGED_V1} data: {e}")))
}

/// The terminal a `terminal.changed` event is about: its subject.
fn terminal_of(event: &Event) -> Result<String, ApiError> {
    let terminal = event.subject().ok_or_else(|| {
        ApiError::bad_request(format!("{TERMINAL_CHANGED_V1} needs the terminal id as its subject"))
    })?;
    parking_domain::validate_id("terminal", terminal).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(terminal.to_owned())
}
