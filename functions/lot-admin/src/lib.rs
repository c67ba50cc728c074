//! `lot-admin`: provisioning of lots and their bays.
//!
//! - `PUT /api/v1/lots/{lot}` creates or replaces a lot's bays;
//! - `GET /api/v1/lots/{lot}` answers the lot with each bay's live state;
//! - `DELETE /api/v1/lots/{lot}` removes it (its history stays);
//! - `GET /api/v1/lots/{lot}/overstays` lists the lot's current overstays
//!   (enforcement data, behind the admin token like the rest);
//! - `PUT`, `GET`, `DELETE /api/v1/terminals/{terminal}` provision the display
//!   terminals of a lot (their token is stored as a digest, never shown). A
//!   write answers with an `io.parking.terminal.changed.v1` CloudEvent in
//!   binary mode (its `ce-*` headers beside the usual body): a broker that
//!   routes replies (parkd's) hands it to terminal-push, which renders the
//!   terminal's frame at once.
//!
//! Every request (reads show sensor ids and battery levels) needs
//! `Authorization: Bearer <admin_token>` when the `admin_token` variable is
//! set (`PARKING_ADMIN_TOKEN` under parkd); an unreadable variable refuses it.

use chrono::Utc;
use http::{Method, Request, Response, StatusCode};
use parking_domain::{parse_lot_spec, parse_terminal_spec, validate_id};
use parking_kit::Database;
use parking_kit::auth::{self, Credential};
use parking_kit::repo;
use parking_kit::respond::{self, ApiError};
use parking_kit::terminals::{self, TerminalWritten};
use spin_sdk::http_component;

/// Lots are provisioned rarely and can be large (20,000 bays).
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

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
            match terminals::put_terminal(&db, terminal, &spec, Utc::now())? {
                TerminalWritten::Created(view) => {
                    Ok(announce(respond::json(StatusCode::CREATED, &view), terminal))
                }
                TerminalWritten::Replaced(view) => {
                    Ok(announce(respond::json(StatusCode::OK, &view), terminal))
                }
                TerminalWritten::UnknownLot => Err(ApiError::not_found(format!(
                    "unknown lot {:?}: provision it first with PUT /api/v1/lots/{{lot}}",
                    spec.lot
                ))),
            }
        }
        Method::GET => match terminals::get_terminal(&db, terminal)? {
            Some(view) => Ok(respond::json(StatusCode::OK, &view)),
            None => Err(ApiError::not_found(format!("unknown terminal {terminal:?}"))),
        },
        Method::DELETE => {
            if terminals::delete_terminal(&db, terminal)? {
                let gone =
                    Response::builder().status(StatusCode::NO_CONTENT).body(Vec::new()).expect("valid");
                Ok(announce(gone, terminal))
            } else {
                Err(ApiError::not_found(format!("unknown terminal {terminal:?}")))
            }
        }
        _ => Err(ApiError::method_not_allowed(method, req.uri().path(), "GET, PUT or DELETE")),
    }
}

/// Makes a terminal write's answer also an `io.parking.terminal.changed.v1`
/// CloudEvent in binary mode, about `terminal` (its subject); its data is the
/// answer's body (the terminal, or none once deleted).
fn announce(mut response: Response<Vec<u8>>, terminal: &str) -> Response<Vec<u8>> {
    let now = Utc::now();
    let attributes = [
        ("ce-specversion", "1.0".to_owned()),
        ("ce-id", format!("terminal/{terminal}/{}", now.timestamp_nanos_opt().unwrap_or_default())),
        ("ce-source", "/parking/lot-admin".to_owned()),
        ("ce-type", parking_domain::events::TERMINAL_CHANGED_V1.to_owned()),
        ("ce-subject", terminal.to_owned()),
        ("ce-time", now.to_rfc3339()),
    ];
    for (name, value) in attributes {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
