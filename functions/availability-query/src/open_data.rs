//! The public, cacheable reads: the open-data feeds (DATEX II light,
//! ParkAPI), the NGSI-LD entities, and the nearest lots. Each answers with
//! CORS, an ETag (304 on `If-None-Match`), `Last-Modified` and a max-age.

use chrono::{DateTime, Utc};
use http::{Request, Response, StatusCode};
use parking_domain::feeds::{LotSnapshot, datex2, parkapi};
use parking_domain::fiware::{self, SpotSite};
use parking_domain::near::{NearQuery, select_near};
use parking_domain::site::LotKind;
use parking_domain::summary::lot_summary;
use parking_kit::Database;
use parking_kit::public::cacheable;
use parking_kit::respond::{self, ApiError};
use parking_kit::{repo, sites};
use serde_json::{Value, json};

/// When anything in `lots` last changed.
fn modified(lots: &[LotSnapshot]) -> Option<DateTime<Utc>> {
    lots.iter().filter_map(LotSnapshot::modified_at).max()
}

/// `GET /api/v1/lots`: every lot in its public summary (no cache headers:
/// the operator page polls it for live counts), CORS for any origin.
pub fn every_lot() -> Result<Response<Vec<u8>>, ApiError> {
    let lots = sites::lot_sites(&Database::open_configured()?)?;
    let now = Utc::now();
    let lots: Vec<Value> = lots.iter().map(|lot| lot_summary(lot, now)).collect();
    Ok(parking_kit::public::with_cors(respond::json(StatusCode::OK, &json!({ "lots": lots }))))
}

/// `GET /api/v1/feeds/datex2/parking-light`.
pub fn datex2_light(req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let lots = sites::lot_sites(&Database::open_configured()?)?;
    let body = datex2::publication(&lots, Utc::now());
    Ok(cacheable(req, respond::json(StatusCode::OK, &body), modified(&lots)))
}

/// `GET /api/v1/feeds/parkapi/parking-sites`.
pub fn parkapi_sites(req: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    let lots = sites::lot_sites(&Database::open_configured()?)?;
    let body = parkapi::parking_sites(&lots, Utc::now());
    Ok(cacheable(req, respond::json(StatusCode::OK, &body), modified(&lots)))
}

/// `GET /api/v1/lots?near=LAT,LON&radius=M[&class=][&category=]`: the lots
/// within the radius, nearest first, each with its distance, counts per
/// class and category, location and whether it is open.
pub fn nearest(req: &Request<Vec<u8>>, query: &NearQuery) -> Result<Response<Vec<u8>>, ApiError> {
    let lots = sites::lot_sites(&Database::open_configured()?)?;
    let now = Utc::now();
    let found: Vec<Value> = select_near(&lots, query)
        .into_iter()
        .map(|(lot, distance)| {
            let mut entry = lot_summary(lot, now);
            entry["distanceMeters"] = json!((distance * 10.0).round() / 10.0);
            entry
        })
        .collect();
    let body = json!({ "near": query.point, "radiusMeters": query.radius_m, "lots": found });
    Ok(cacheable(req, respond::json(StatusCode::OK, &body), modified(&lots)))
}

/// `GET /api/v1/lots/{lot}/ngsi-ld/{OffStreetParking|OnStreetParking}`:
/// the lot as the entity of its kind (an on-street lot only as
/// `OnStreetParking`, any other only as `OffStreetParking`).
pub fn ngsi_site(req: &Request<Vec<u8>>, lot: &str, entity: &str) -> Result<Response<Vec<u8>>, ApiError> {
    let db = Database::open_configured()?;
    let (Some((name, time_zone, site)), Some(availability)) =
        (sites::lot_site(&db, lot)?, repo::lot_availability(&db, lot)?)
    else {
        return Err(ApiError::not_found(format!("unknown lot {lot:?}")));
    };
    let wanted = fiware::site_type(site.kind);
    if entity != wanted {
        return Err(ApiError::not_found(format!(
            "lot {lot:?} is {}: ask for /api/v1/lots/{lot}/ngsi-ld/{wanted}",
            if site.kind == Some(LotKind::OnStreet) { "on-street" } else { "off-street" }
        )));
    }
    let open = sites::is_open(&time_zone, &site, Utc::now());
    let modified = availability.updated_at;
    let body = fiware::parking_site(&name, &availability, &site, open);
    Ok(cacheable(req, json_ld(&body), modified))
}

/// `GET /api/v1/lots/{lot}/ngsi-ld/ParkingSpot`: the lot's bays.
pub fn ngsi_spots(req: &Request<Vec<u8>>, lot: &str) -> Result<Response<Vec<u8>>, ApiError> {
    let db = Database::open_configured()?;
    let (Some((_, _, site)), Some((_, bays))) = (sites::lot_site(&db, lot)?, repo::lot_bays(&db, lot)?)
    else {
        return Err(ApiError::not_found(format!("unknown lot {lot:?}")));
    };
    let spots: Vec<Value> = bays
        .iter()
        .map(|b| {
            let spot = SpotSite {
                id: &b.id,
                class: &b.class,
                status: b.status,
                status_changed_at: b.status_changed_at,
                location: b.location,
                categories: &b.categories,
            };
            fiware::parking_spot_at(lot, site.kind, &spot)
        })
        .collect();
    let modified = bays.iter().filter_map(|b| b.status_changed_at).max();
    Ok(cacheable(req, json_ld(&Value::Array(spots)), modified))
}

/// An NGSI-LD document (JSON-LD with its @context inline).
fn json_ld(body: &Value) -> Response<Vec<u8>> {
    let mut response = respond::json(StatusCode::OK, body);
    response
        .headers_mut()
        .insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(fiware::MEDIA_TYPE));
    response
}
