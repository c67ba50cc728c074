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
//! The broker is the `mqtt_address` variable (`mqtt://host:port`, with
//! `?client_id=` under Spin, which requires one), with `mqtt_username` and
//! `mqtt_password`. A broker that cannot be reached is a 503: the event is
//! redelivered, and an unchanged re-render publishes the same frame again.

use chrono::Utc;
use cloudevents::{AttributesReader, Data, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{AVAILABILITY_CHANGED_V1, TERMINAL_CHANGED_V1};
use parking_domain::{AvailabilityChanged, Frame, frame_topic};
use parking_kit::respond::{self, ApiError};
use parking_kit::terminals;
use parking_kit::{Database, cloudevent};
use spin_sdk::http_component;
use spin_sdk::mqtt::{Connection, Qos};

/// Larger bodies are not availability events.
const MAX_BODY_BYTES: usize = 64 * 1024;
/// Seconds between MQTT keep-alive pings of the connection.
const KEEP_ALIVE_SECS: u64 = 30;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(handle_event(req))
}

fn handle_event(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let event =
        cloudevent::receive_one_of(req, &[AVAILABILITY_CHANGED_V1, TERMINAL_CHANGED_V1], MAX_BODY_BYTES)?;
    let (frames, cleared) = if event.ty() == TERMINAL_CHANGED_V1 {
        render_terminal(&terminal_of(&event)?)?
    } else {
        (render_change(&parse_change(&event)?)?, None)
    };
    if !frames.is_empty() || cleared.is_some() {
        let connection = connect()?;
        for frame in &frames {
            let payload = serde_json::to_vec(frame)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            publish(&connection, &frame.terminal, payload)?;
        }
        if let Some(terminal) = &cleared {
            // Empty and retained: the broker forgets the terminal's frame.
            publish(&connection, terminal, Vec::new())?;
        }
    }
    let published: Vec<_> =
        frames.iter().map(|f| serde_json::json!({ "terminal": f.terminal, "seq": f.seq })).collect();
    Ok(respond::json(StatusCode::OK, &serde_json::json!({ "published": published, "cleared": cleared })))
}

/// The frames of the terminals that show a changed (lot, zone, class).
fn render_change(change: &AvailabilityChanged) -> Result<Vec<Frame>, ApiError> {
    let db = Database::open_configured()?;
    let shown = terminals::terminals_showing(&db, &change.lot, change.zone.as_deref(), &change.class)?;
    Ok(terminals::render_lot_frames(&db, &change.lot, &shown, Utc::now())?)
}

/// The frame of one terminal that was provisioned or changed, or, when it is
/// gone, the terminal whose frame to clear.
fn render_terminal(terminal: &str) -> Result<(Vec<Frame>, Option<String>), ApiError> {
    let db = Database::open_configured()?;
    let Some(scope) = terminals::terminal_scope(&db, terminal)? else {
        return Ok((Vec::new(), Some(terminal.to_owned())));
    };
    let lot = scope.lot.clone();
    let frames = terminals::render_lot_frames(&db, &lot, &[(terminal.to_owned(), scope)], Utc::now())?;
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
