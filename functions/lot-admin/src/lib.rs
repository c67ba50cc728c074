//! `lot-admin`: provisioning of lots and their bays.
//!
//! - `PUT /api/v1/lots/{lot}` creates or replaces a lot's bays;
//! - `GET /api/v1/lots/{lot}` answers the lot with each bay's live state;
//! - `DELETE /api/v1/lots/{lot}` removes it (its history stays);
//! - `GET /api/v1/lots/{lot}/overstays` lists the lot's current overstays
//!   (enforcement data, behind the admin token like the rest);
//! - `PUT`, `GET`, `DELETE /api/v1/terminals/{terminal}` provision the display
//!   terminals of a lot (their token is stored as a digest, never shown). A
//!   write derives an `io.parking.terminal.changed.v1` CloudEvent, which
//!   terminal-push renders the terminal's frame at once from: in the answer
//!   (parkd routes it), and to the `events_sink` when one is set (the
//!   cluster's Broker), see [`TerminalChanged`].
//!
//! Every request (reads show sensor ids and battery levels) needs
//! `Authorization: Bearer <admin_token>` when the `admin_token` variable is
//! set (`PARKING_ADMIN_TOKEN` under parkd); an unreadable variable refuses it.

use chrono::Utc;
use http::{Method, Request, Response, StatusCode};
use parking_domain::events::TERMINAL_CHANGED_V1;
use parking_domain::{parse_lot_spec, parse_terminal_spec, validate_id};
use parking_kit::auth::{self, Credential};
use parking_kit::db::DbError;
use parking_kit::respond::{self, ApiError};
use parking_kit::terminals::{self, TerminalWritten};
use parking_kit::{Database, outbox, repo};
use spin_sdk::http_component;

/// Lots are provisioned rarely and can be large (20,000 bays).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// How long a terminal write may spend sending staged events to the sink.
const DELIVERY_BUDGET: std::time::Duration = std::time::Duration::from_secs(5);

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(route(&req))
}

fn route(req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let path = req.uri().path();
    let lot = match respond::segments(path).as_slice() {
        ["api", "v1", "lots", lot] => (*lot).to_owned(),
        ["api", "v1", "lots", lot, "overstays"] => return overstays_route(req, lot),
        ["api", "v1", "terminals", terminal] => return terminal_route(req, terminal),
        _ => return Err(ApiError::not_found(format!("no such resource: {path}"))),
    };
    validate_id("lot", &lot).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let method = req.method();
    auth::require(req, Credential::Admin)?;
    let db = Database::open_configured()?;
    match *method {
        Method::PUT => {
            if req.body().len() > MAX_BODY_BYTES {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("lot definition over {MAX_BODY_BYTES} bytes"),
                ));
            }
            let spec = parse_lot_spec(req.body()).map_err(|e| ApiError::bad_request(e.to_string()))?;
            // A model selects the byte codec for the bay's sensor: refuse unknown ones now,
            // not at the first uplink.
            for bay in &spec.bays {
                if let Some(model) = &bay.model {
                    parking_domain::SensorModel::parse(model)
                        .map_err(|e| ApiError::bad_request(format!("bay {:?}: {e}", bay.id)))?;
                }
            }
            let written = repo::put_lot(&db, &lot, &spec, Utc::now())?;
            let status = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond::json(status, &written))
        }
        Method::GET => match repo::lot_view(&db, &lot)? {
            Some(view) => Ok(respond::json(StatusCode::OK, &view)),
            None => Err(ApiError::not_found(format!("unknown lot {lot:?}"))),
        },
        Method::DELETE => {
            if repo::delete_lot(&db, &lot)? {
                Ok(Response::builder().status(StatusCode::NO_CONTENT).body(Vec::new()).expect("valid"))
            } else {
                Err(ApiError::not_found(format!("unknown lot {lot:?}")))
            }
        }
        _ => Err(ApiError::method_not_allowed(method, path, "GET, PUT or DELETE")),
    }
}

/// `/api/v1/lots/{lot}/overstays`: the stays past their limit now, with how
/// far past it (restricted time) they are.
fn overstays_route(req: &Request<Vec<u8>>, lot: &str) -> Result<Response<Vec<u8>>, ApiError> {
    validate_id("lot", lot).map_err(|e| ApiError::bad_request(e.to_string()))?;
    auth::require(req, Credential::Admin)?;
    if req.method() != Method::GET {
        return Err(ApiError::method_not_allowed(req.method(), req.uri().path(), "GET"));
    }
    let db = Database::open_configured()?;
    if !repo::lot_exists(&db, lot)? {
        return Err(ApiError::not_found(format!("unknown lot {lot:?}")));
    }
    let overstays = parking_kit::stays::lot_overstays(&db, lot, Utc::now())?;
    Ok(respond::json(StatusCode::OK, &overstays))
}

/// `/api/v1/terminals/{terminal}`.
fn terminal_route(req: &Request<Vec<u8>>, terminal: &str) -> Result<Response<Vec<u8>>, ApiError> {
    validate_id("terminal", terminal).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let method = req.method();
    auth::require(req, Credential::Admin)?;
    let db = Database::open_configured()?;
    match *method {
        Method::PUT => {
            let spec = parse_terminal_spec(req.body()).map_err(|e| ApiError::bad_request(e.to_string()))?;
            let changed = TerminalChanged::new(terminal)?;
            let written = db.transaction(|db| {
                let written = terminals::put_terminal(db, terminal, &spec, changed.at)?;
                match &written {
                    TerminalWritten::Created(view) | TerminalWritten::Replaced(view) => {
                        changed.stage(db, Some(view))?
                    }
                    TerminalWritten::UnknownLot => {}
                }
                Ok::<_, ApiError>(written)
            })?;
            let (status, view) = match written {
                TerminalWritten::Created(view) => (StatusCode::CREATED, view),
                TerminalWritten::Replaced(view) => (StatusCode::OK, view),
                TerminalWritten::UnknownLot => {
                    return Err(ApiError::not_found(format!(
                        "unknown lot {:?}: provision it first with PUT /api/v1/lots/{{lot}}",
                        spec.lot
                    )));
                }
            };
            changed.deliver(&db);
            Ok(changed.announce(respond::json(status, &view)))
        }
        Method::GET => match terminals::get_terminal(&db, terminal)? {
            Some(view) => Ok(respond::json(StatusCode::OK, &view)),
            None => Err(ApiError::not_found(format!("unknown terminal {terminal:?}"))),
        },
        Method::DELETE => {
            let changed = TerminalChanged::new(terminal)?;
            let deleted = db.transaction(|db| {
                let deleted = terminals::delete_terminal(db, terminal)?;
                if deleted {
                    changed.stage(db, None)?;
                }
                Ok::<_, ApiError>(deleted)
            })?;
            if !deleted {
                return Err(ApiError::not_found(format!("unknown terminal {terminal:?}")));
            }
            changed.deliver(&db);
            let gone = Response::builder().status(StatusCode::NO_CONTENT).body(Vec::new()).expect("valid");
            Ok(changed.announce(gone))
        }
        _ => Err(ApiError::method_not_allowed(method, req.uri().path(), "GET, PUT or DELETE")),
    }
}

/// The `io.parking.terminal.changed.v1` event of one terminal write, about
/// the terminal (its subject); its data is the terminal, none once deleted.
///
/// It leaves two ways. The answer is the event in binary mode (its `ce-*`
/// headers beside the usual body): a broker that routes replies (parkd's)
/// hands it to terminal-push. And with the `events_sink` variable set (on
/// the cluster, where lot-admin is called through the Ingress and its answer
/// goes back to the caller, not to the Broker) it is staged in the write's
/// transaction and sent to the sink after the commit; one the sink does not
/// take stays staged, and the next sweep sends it.
struct TerminalChanged {
    id: String,
    terminal: String,
    at: chrono::DateTime<Utc>,
    sink: Option<String>,
}

impl TerminalChanged {
    fn new(terminal: &str) -> Result<Self, ApiError> {
        let raw = spin_sdk::variables::get("events_sink").map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("variable `events_sink`: {e}"))
        })?;
        let at = Utc::now();
        Ok(TerminalChanged {
            id: format!("terminal/{terminal}/{}", at.timestamp_nanos_opt().unwrap_or_default()),
            terminal: terminal.to_owned(),
            at,
            sink: outbox::sink_from_variable(&raw)?,
        })
    }

    const SOURCE: &str = "/parking/lot-admin";

    /// Stages the event in the caller's transaction, when there is a sink.
    fn stage(&self, db: &Database, data: Option<&terminals::TerminalView>) -> Result<(), DbError> {
        if self.sink.is_none() {
            return Ok(());
        }
        let mut event = serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "source": Self::SOURCE,
            "type": TERMINAL_CHANGED_V1,
            "subject": self.terminal,
            "time": self.at.to_rfc3339(),
        });
        if let Some(view) = data {
            event["datacontenttype"] = "application/json".into();
            event["data"] = serde_json::to_value(view).map_err(|e| DbError::Decode(e.to_string()))?;
        }
        outbox::stage(db, &[event], self.at)
    }

    /// Sends what is staged to the sink, for a few seconds at most; what it
    /// does not take stays for the next sweep (the write itself stands).
    fn deliver(&self, db: &Database) {
        let Some(sink) = &self.sink else { return };
        let until = std::time::Instant::now() + DELIVERY_BUDGET;
        match outbox::deliver(db, sink, || std::time::Instant::now() < until) {
            Ok(run) if run.error.is_none() => {}
            Ok(run) => eprintln!(
                "lot-admin: terminal {:?}: its event stays staged for the next sweep ({} pending): {}",
                self.terminal,
                run.pending,
                run.error.unwrap_or_default()
            ),
            Err(e) => eprintln!(
                "lot-admin: terminal {:?}: its event stays staged for the next sweep: {e}",
                self.terminal
            ),
        }
    }

    /// Makes the answer also the event in binary mode.
    fn announce(&self, mut response: Response<Vec<u8>>) -> Response<Vec<u8>> {
        let attributes = [
            ("ce-specversion", "1.0".to_owned()),
            ("ce-id", self.id.clone()),
            ("ce-source", Self::SOURCE.to_owned()),
            ("ce-type", TERMINAL_CHANGED_V1.to_owned()),
            ("ce-subject", self.terminal.clone()),
            ("ce-time", self.at.to_rfc3339()),
        ];
        for (name, value) in attributes {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}
