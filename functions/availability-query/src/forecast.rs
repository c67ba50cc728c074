//! `GET /api/v1/lots/{lot}/forecast?class=four_wheeler&horizon=15m,30m,60m`:
//! expected free bays of a class per horizon, with a range and the model's
//! recent error (see `parking_kit::forecast`).

use chrono::Utc;
use http::{Method, Request, Response, StatusCode};
use parking_domain::VehicleClass;
use parking_domain::forecast::{DEFAULT_HORIZONS, Horizon};
use parking_kit::Database;
use parking_kit::forecast::{ForecastError, lot_forecast};
use parking_kit::respond::{self, ApiError};

/// Answers the route (any method reaches here; only GET and HEAD are served).
pub fn route(req: &Request<Vec<u8>>, lot: &str) -> Result<Response<Vec<u8>>, ApiError> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(ApiError::method_not_allowed(req.method(), req.uri().path(), "GET"));
    }
    let (class, horizons) = parse_query(req.uri().query().unwrap_or_default())?;
    let db = Database::open_configured()?;
    match lot_forecast(&db, lot, &class, &horizons, Utc::now()) {
        Ok(answer) => Ok(respond::json(StatusCode::OK, &answer)),
        Err(ForecastError::UnknownLot) => Err(ApiError::not_found(format!("unknown lot {lot:?}"))),
        Err(ForecastError::NoSuchClass(classes)) => Err(ApiError::bad_request(format!(
            "`class`: lot {lot:?} has no {class} bays (it has: {})",
            if classes.is_empty() { "none".to_owned() } else { classes.join(", ") }
        ))),
        Err(ForecastError::Db(e)) => Err(e.into()),
    }
}

/// `class` (default `four_wheeler`) and `horizon` (default `15m,30m,60m`).
fn parse_query(query: &str) -> Result<(VehicleClass, Vec<Horizon>), ApiError> {
    let mut class = VehicleClass::four_wheeler();
    let mut horizons = DEFAULT_HORIZONS.to_vec();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "class" => {
                class =
                    VehicleClass::parse(&value).map_err(|e| ApiError::bad_request(format!("`class`: {e}")))?
            }
            "horizon" => {
                horizons = Horizon::parse_list(&value)
                    .map_err(|e| ApiError::bad_request(format!("`horizon`: {e}")))?
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown query parameter {other:?}: use class, horizon"
                )));
            }
        }
    }
    Ok((class, horizons))
}
