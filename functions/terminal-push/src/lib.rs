//! `terminal-push`: live frames for display terminals.
//!
//! Takes an `io.parking.availability.changed.v1` CloudEvent (binary or
//! structured content mode), renders a frame for every terminal of the lot
//! that shows the changed (zone, vehicle class), from the lot's current
//! counts (counted once for all of them; a lot without such terminals costs
//! no render), and publishes each on `parking/terminals/{terminal}/frame`
//! (QoS 1) through Spin's outbound MQTT.
//!
//! An `io.parking.terminal.changed.v1` event (lot-admin's answer to a
//! provisioning change; `subject` is the terminal) renders that terminal's
//! frame at once, so a new terminal on a quiet lot shows the truth without
//! waiting for a bay to change; for a deleted terminal it publishes an empty
//! message, which clears the retained frame and ends the gateway's streams. Under parkd the frames are retained
//! (`tool.parkd.mqtt_retain` in spin.toml), so a sign or gateway that
//! connects later gets the current frame at once.
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

use chrono::Utc;
use cloudevents::{AttributesReader, Data, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{AVAILABILITY_CHANGED_V1, SWEEP_REPORT_V1, TERMINAL_CHANGED_V1};
use parking_domain::feeds::LotSnapshot;
use parking_domain::{AvailabilityChanged, Frame, frame_topic, live_summary, summary_topic};
use parking_kit::respond::{self, ApiError};
use parking_kit::terminals;
use parking_kit::{Database, cloudevent};
use spin_sdk::http_component;
use spin_sdk::mqtt::{Connection, Qos};

/// Larger bodies are not events it takes (a sweep's report lists each batch
/// of its run, so it can be far larger than an availability change).
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Seconds between MQTT keep-alive pings of the connection.
const KEEP_ALIVE_SECS: u64 = 30;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(handle_event(req))
}

fn handle_event(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let event = cloudevent::receive_one_of(
        req,
        &[AVAILABILITY_CHANGED_V1, TERMINAL_CHANGED_V1, SWEEP_REPORT_V1],
        MAX_BODY_BYTES,
    )?;
    let db = Database::open_configured()?;
    let (frames, cleared, changed) = if event.ty() == TERMINAL_CHANGED_V1 {
        let (frames, cleared) = render_terminal(&db, &terminal_of(&event)?)?;
        (frames, Vec::from_iter(cleared), None)
    } else if event.ty() == SWEEP_REPORT_V1 {
        let rerendered = terminals::rerender_changed(&db, Utc::now())?;
        (rerendered.frames, rerendered.cleared, None)
    } else {
        let change = parse_change(&event)?;
        let (frames, snapshot) = terminals::render_change(&db, &change, Utc::now())?;
        (frames, Vec::new(), Some((change.lot, snapshot)))
    };
    // Frames must reach their signs (a broker that cannot be reached is a 503,
    // and the event comes again), and go first, so signs never wait for the
    // summary; a summary is best effort: the public page also reads the whole
    // list every minute, and with no broker at all (`parkd up --no-mqtt`)
    // there is no one to publish it to.
    let must_publish = !frames.is_empty() || !cleared.is_empty();
    let (connection, unreachable) = if !must_publish && changed.is_none() {
        (None, None)
    } else {
        match connect() {
            Ok(connection) => (Some(connection), None),
            Err(e) if must_publish => return Err(e),
            Err(e) => (None, Some(e.message)),
        }
    };
    if let Some(connection) = &connection {
        for frame in &frames {
            let payload = serde_json::to_vec(frame)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            publish(connection, &frame.terminal, payload)?;
        }
        for terminal in &cleared {
            // Empty and retained: the broker forgets the terminal's frame.
            publish(connection, terminal, Vec::new())?;
        }
    }
    if event.ty() == SWEEP_REPORT_V1 && !cleared.is_empty() {
        // Cleared: a later sweep need not clear them again.
        terminals::forget_frames(&db, &cleared)?;
    }
    let (mut summary, mut summary_error) = (None, None);
    if let Some((lot, snapshot)) = &changed {
        match (&connection, render_summary(snapshot.as_ref())) {
            (_, Ok(None)) => {}
            (Some(connection), Ok(Some(payload))) => {
                match connection.publish(&summary_topic(lot), &payload, Qos::AtLeastOnce) {
                    Ok(()) => summary = Some(lot.clone()),
                    Err(e) => summary_error = Some(format!("publishing the summary of lot {lot:?}: {e}")),
                }
            }
            (None, Ok(Some(_))) => summary_error = unreachable,
            (_, Err(e)) => summary_error = Some(e.message),
        }
    }
    let published: Vec<_> =
        frames.iter().map(|f| serde_json::json!({ "terminal": f.terminal, "seq": f.seq })).collect();
    Ok(respond::json(
        StatusCode::OK,
        &serde_json::json!({
            "published": published, "cleared": cleared, "summary": summary, "summaryError": summary_error,
        }),
    ))
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
fn render_terminal(db: &Database, terminal: &str) -> Result<(Vec<Frame>, Option<String>), ApiError> {
    let Some(scope) = terminals::terminal_scope(db, terminal)? else {
        return Ok((Vec::new(), Some(terminal.to_owned())));
    };
    let lot = scope.lot.clone();
    let frames = terminals::render_lot_frames(db, &lot, &[(terminal.to_owned(), scope)], Utc::now())?;
    Ok((frames, None))
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
