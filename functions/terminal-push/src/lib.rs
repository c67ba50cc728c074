//! `terminal-push`: live frames for display terminals.
//!
//! Takes an `io.parking.availability.changed.v1` CloudEvent (binary or
//! structured content mode), renders a frame for every terminal of the lot
//! that shows the changed (zone, vehicle class), from the lot's current
//! counts, and publishes each on `parking/terminals/{terminal}/frame` (QoS 1)
//! through Spin's outbound MQTT. Under parkd the frames are retained
//! (`tool.parkd.mqtt_retain` in spin.toml), so a sign or gateway that
//! connects later gets the current frame at once.
//!
//! The broker is the `mqtt_address` variable (`mqtt://host:port`, with
//! `?client_id=` under Spin, which requires one), with `mqtt_username` and
//! `mqtt_password`. A broker that cannot be reached is a 503: the event is
//! redelivered, and an unchanged re-render publishes the same frame again.

use chrono::Utc;
use cloudevents::Data;
use http::{Request, Response, StatusCode};
use parking_domain::events::AVAILABILITY_CHANGED_V1;
use parking_domain::{AvailabilityChanged, frame_topic};
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
    let change = parse_event(req)?;
    let db = Database::open_configured()?;
    let shown = terminals::terminals_showing(&db, &change.lot, change.zone.as_deref(), &change.class)?;
    let now = Utc::now();
    let mut frames = Vec::with_capacity(shown.len());
    for (terminal, scope) in &shown {
        if let Some(frame) = terminals::render_terminal_frame(&db, terminal, scope, now)? {
            frames.push(frame);
        }
    }
    drop(db);
    if !frames.is_empty() {
        let connection = connect()?;
        for frame in &frames {
            let payload = serde_json::to_vec(frame)
                .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
            connection.publish(&frame_topic(&frame.terminal), &payload, Qos::AtLeastOnce).map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("publishing the frame of terminal {:?}: {e}", frame.terminal),
                )
            })?;
        }
    }
    let published: Vec<_> =
        frames.iter().map(|f| serde_json::json!({ "terminal": f.terminal, "seq": f.seq })).collect();
    Ok(respond::json(StatusCode::OK, &serde_json::json!({ "published": published })))
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

/// Reads the availability change from a CloudEvent in binary or structured mode.
fn parse_event(req: Request<Vec<u8>>) -> Result<AvailabilityChanged, ApiError> {
    let event = cloudevent::receive(req, AVAILABILITY_CHANGED_V1, MAX_BODY_BYTES)?;
    let parsed = match event.data() {
        Some(Data::Json(v)) => serde_json::from_value(v.clone()),
        Some(Data::String(s)) => serde_json::from_str(s),
        Some(Data::Binary(b)) => serde_json::from_slice(b),
        None => return Err(ApiError::bad_request("the event has no data: expected the changed counts")),
    };
    parsed.map_err(|e| ApiError::bad_request(format!("{AVAILABILITY_CHANGED_V1} data: {e}")))
}
