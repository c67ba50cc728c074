//! `availability-query`: the read API for terminals and apps.
//!
//! - `GET /api/v1/lots`: every lot with its counts per vehicle class;
//! - `GET /api/v1/lots/{lot}/availability`: counts per class and per zone.

use http::{Method, Request, Response, StatusCode};
use parking_kit::Database;
use parking_kit::repo;
use parking_kit::respond::{self, ApiError};
use spin_sdk::http_component;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(route(&req))
}

fn route(req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let path = req.uri().path();
    let segments = respond::segments(path);
    let target = match segments.as_slice() {
        ["api", "v1", "lots"] => Target::Lots,
        ["api", "v1", "lots", lot, "availability"] => Target::Availability(lot),
        _ => return Err(ApiError::not_found(format!("no such resource: {path}"))),
    };
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed(req.method(), path, "GET"));
    }
    let db = Database::open_configured()?;
    match target {
        Target::Lots => {
            let lots = repo::list_lots(&db)?;
            Ok(respond::json(StatusCode::OK, &serde_json::json!({ "lots": lots })))
        }
        Target::Availability(lot) => match repo::lot_availability(&db, lot)? {
            Some(availability) => Ok(respond::json(StatusCode::OK, &availability)),
            None => Err(ApiError::not_found(format!("unknown lot {lot:?}"))),
        },
    }
}

enum Target<'a> {
    Lots,
    Availability(&'a str),
}
