//! `availability-query`: the read API for terminals, apps and reports.
//!
//! - `GET /api/v1/lots`: every lot with its counts per vehicle class and bay
//!   category, location, kind and whether it is open (its public summary);
//! - `GET /api/v1/lots/{lot}/availability`: counts per class and per zone;
//! - `GET /api/v1/lots/{lot}/history?from=&to=&bucket=hour|day&class=`:
//!   roll-ups per (zone, class) and bucket, as JSON or (with
//!   `Accept: text/csv` or `format=csv`) CSV;
//! - `GET /api/v1/lots?near=LAT,LON&radius=M[&class=][&category=]`: the
//!   lots within the radius, nearest first, with `distanceMeters`;
//! - `GET /api/v1/lots/{lot}/ngsi-ld/OffStreetParking` (or `OnStreetParking`
//!   for an on-street lot) and `.../ParkingSpot`: the lot and its bays as
//!   FIWARE Smart Data Models entities (NGSI-LD);
//! - `GET /api/v1/feeds/datex2/parking-light` and
//!   `GET /api/v1/feeds/parkapi/parking-sites`: every located lot as DATEX II
//!   v3 Parking Publication light and as ParkAPI v3-style parking sites;
//! - `GET /api/v1/lots/{lot}/forecast?class=&horizon=15m,30m,60m`: expected
//!   free bays per horizon with a range ([`forecast`]);
//! - `GET /api/v1/alerts`: the open alerts.
//!
//! The nearest lots, the NGSI-LD entities and the feeds are public open
//! data: CORS for any origin (with `OPTIONS` preflight), ETag and
//! `If-None-Match`, `Last-Modified`, `Cache-Control: public, max-age=30`.

mod open_data;

mod forecast;

use chrono::{DateTime, Duration, Utc};
use http::{Method, Request, Response, StatusCode};
use parking_domain::{Bucket, VehicleClass};
use parking_kit::Database;
use parking_kit::alerts;
use parking_kit::history::{self, HistoryRow};
use parking_kit::repo;
use parking_kit::respond::{self, ApiError};
use spin_sdk::http_component;

/// The longest range one history request may cover, per bucket: enough for
/// a quarter in hours and three years in days, small enough to answer fast.
const MAX_HOURLY_RANGE_DAYS: i64 = 93;
const MAX_DAILY_RANGE_DAYS: i64 = 3 * 366;

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
        ["api", "v1", "lots", lot, "history"] => Target::History(lot),
        ["api", "v1", "lots", lot, "forecast"] => return forecast::route(req, lot),
        ["api", "v1", "lots", lot, "ngsi-ld", entity @ ("OffStreetParking" | "OnStreetParking")] => {
            Target::ParkingSite(lot, entity)
        }
        ["api", "v1", "lots", lot, "ngsi-ld", "ParkingSpot"] => Target::ParkingSpots(lot),
        ["api", "v1", "feeds", "datex2", "parking-light"] => Target::Datex2,
        ["api", "v1", "feeds", "parkapi", "parking-sites"] => Target::ParkApi,
        ["api", "v1", "alerts"] => Target::Alerts,
        _ => return Err(ApiError::not_found(format!("no such resource: {path}"))),
    };
    let public = target.is_public(req);
    if public && req.method() == Method::OPTIONS {
        return Ok(parking_kit::public::preflight());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let allowed = if public { "GET or OPTIONS" } else { "GET" };
        return Err(ApiError::method_not_allowed(req.method(), path, allowed));
    }
    let answer = read(req, target);
    if public {
        // A browser app reads why a public read failed only with CORS on the error too.
        Ok(answer.unwrap_or_else(|e| parking_kit::public::with_cors(respond::error(&e))))
    } else {
        answer
    }
}

fn read(req: &Request<Vec<u8>>, target: Target<'_>) -> Result<Response<Vec<u8>>, ApiError> {
    match target {
        Target::Lots => {
            let query = req.uri().query().unwrap_or_default();
            let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            let near =
                parking_domain::near::parse_near_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .map_err(ApiError::bad_request)?;
            if let Some(near) = near {
                return open_data::nearest(req, &near);
            }
            open_data::every_lot()
        }
        Target::Availability(lot) => {
            let db = Database::open_configured()?;
            let Some(availability) = repo::lot_availability(&db, lot)? else {
                return Err(ApiError::not_found(format!("unknown lot {lot:?}")));
            };
            let open = match parking_kit::sites::lot_site(&db, lot)? {
                Some((_, time_zone, site)) => parking_kit::sites::is_open(&time_zone, &site, Utc::now()),
                None => true,
            };
            let availability = parking_domain::LotAvailability { open: Some(open), ..availability };
            Ok(respond::json(StatusCode::OK, &availability))
        }
        Target::History(lot) => {
            let query = HistoryQuery::parse(req, Utc::now())?;
            let db = Database::open_configured()?;
            if !repo::lot_exists(&db, lot)? {
                return Err(ApiError::not_found(format!("unknown lot {lot:?}")));
            }
            let rows = history::lot_history(
                &db,
                lot,
                query.from,
                query.to,
                query.bucket,
                query.class.as_ref(),
                Utc::now(),
            )?;
            if query.csv { csv(&rows) } else { Ok(respond::json(StatusCode::OK, &query.answer(lot, rows))) }
        }
        Target::ParkingSite(lot, entity) => open_data::ngsi_site(req, lot, entity),
        Target::ParkingSpots(lot) => open_data::ngsi_spots(req, lot),
        Target::Datex2 => open_data::datex2_light(req),
        Target::ParkApi => open_data::parkapi_sites(req),
        Target::Alerts => {
            let db = Database::open_configured()?;
            let alerts = alerts::open_alerts(&db)?;
            Ok(respond::json(StatusCode::OK, &serde_json::json!({ "alerts": alerts })))
        }
    }
}

enum Target<'a> {
    Lots,
    Availability(&'a str),
    History(&'a str),
    ParkingSite(&'a str, &'a str),
    ParkingSpots(&'a str),
    Datex2,
    ParkApi,
    Alerts,
}

impl Target<'_> {
    /// The open-data reads: the feeds, the NGSI-LD entities and the nearest
    /// lots (a lot list with a query).
    fn is_public(&self, req: &Request<Vec<u8>>) -> bool {
        match self {
            Target::ParkingSite(..) | Target::ParkingSpots(_) | Target::Datex2 | Target::ParkApi => true,
            Target::Lots => req.uri().query().is_some_and(|q| q.contains("near=")),
            _ => false,
        }
    }
}

/// A validated history request.
#[derive(Debug)]
struct HistoryQuery {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    class: Option<VehicleClass>,
    csv: bool,
}

impl HistoryQuery {
    /// Reads `from`, `to` (RFC 3339; default: the 24 hours before now),
    /// `bucket` (`hour` by default), `class` and `format`.
    fn parse(req: &Request<Vec<u8>>, now: DateTime<Utc>) -> Result<Self, ApiError> {
        let mut from = None;
        let mut to = None;
        let mut bucket = Bucket::Hour;
        let mut class = None;
        let mut csv = req
            .headers()
            .get(http::header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.split(',').any(|m| m.trim().starts_with("text/csv")));
        let time = |name: &str, value: &str| {
            DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|e| {
                ApiError::bad_request(format!(
                    "`{name}` is {value:?}: expected an RFC 3339 time such as 2026-11-25T00:00:00Z ({e})"
                ))
            })
        };
        for (key, value) in form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()) {
            match key.as_ref() {
                "from" => from = Some(time("from", &value)?),
                "to" => to = Some(time("to", &value)?),
                "bucket" => {
                    bucket = Bucket::parse(&value).ok_or_else(|| {
                        ApiError::bad_request(format!("`bucket` is {value:?}: expected `hour` or `day`"))
                    })?
                }
                "class" => {
                    class = Some(
                        VehicleClass::parse(&value)
                            .map_err(|e| ApiError::bad_request(format!("`class`: {e}")))?,
                    )
                }
                "format" => match value.as_ref() {
                    "csv" => csv = true,
                    "json" => csv = false,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "`format` is {other:?}: expected `json` or `csv`"
                        )));
                    }
                },
                other => {
                    return Err(ApiError::bad_request(format!(
                        "unknown query parameter {other:?}: use from, to, bucket, class, format"
                    )));
                }
            }
        }
        let to = to.unwrap_or(now);
        let from = from.unwrap_or(to - Duration::hours(24));
        if from >= to {
            return Err(ApiError::bad_request(format!(
                "`from` ({}) must be before `to` ({})",
                from.to_rfc3339(),
                to.to_rfc3339()
            )));
        }
        let max_days = match bucket {
            Bucket::Hour => MAX_HOURLY_RANGE_DAYS,
            Bucket::Day => MAX_DAILY_RANGE_DAYS,
        };
        if to - from > Duration::days(max_days) {
            return Err(ApiError::bad_request(format!(
                "the range covers {} days; with bucket={} ask for at most {max_days} days per request",
                (to - from).num_days(),
                if bucket == Bucket::Hour { "hour (or use bucket=day)" } else { "day" }
            )));
        }
        Ok(Self { from, to, bucket, class, csv })
    }

    fn answer(&self, lot: &str, rows: Vec<HistoryRow>) -> serde_json::Value {
        serde_json::json!({
            "lot": lot,
            "from": self.from,
            "to": self.to,
            "bucket": self.bucket,
            "class": self.class,
            "rows": rows,
        })
    }
}

/// The rows as CSV with a header line, for spreadsheets and reports.
fn csv(rows: &[HistoryRow]) -> Result<Response<Vec<u8>>, ApiError> {
    let internal = |e: String| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e);
    let mut writer = csv::Writer::from_writer(Vec::new());
    writer
        .write_record([
            "start",
            "zone",
            "class",
            "bays",
            "mean_occupied",
            "mean_occupancy",
            "peak_occupied",
            "min_free",
            "arrivals",
            "departures",
            "mean_dwell_seconds",
            "stays_started",
            "stays_ended",
            "mean_stay_seconds",
            "p90_stay_seconds",
            "overstays",
            "overstay_share",
            "provisional",
        ])
        .map_err(|e| internal(e.to_string()))?;
    for r in rows {
        writer
            .write_record([
                r.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                r.zone.clone().unwrap_or_default(),
                r.class.to_string(),
                r.bays.to_string(),
                format!("{:.3}", r.mean_occupied),
                format!("{:.4}", r.mean_occupancy),
                r.peak_occupied.to_string(),
                r.min_free.to_string(),
                r.arrivals.to_string(),
                r.departures.to_string(),
                r.mean_dwell_seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
                r.stays_started.to_string(),
                r.stays_ended.to_string(),
                r.mean_stay_seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
                r.p90_stay_seconds.map(|s| format!("{s:.1}")).unwrap_or_default(),
                r.overstays.to_string(),
                r.overstay_share.map(|s| format!("{s:.4}")).unwrap_or_default(),
                r.provisional.to_string(),
            ])
            .map_err(|e| internal(e.to_string()))?;
    }
    let body = writer.into_inner().map_err(|e| internal(e.to_string()))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/csv; charset=utf-8")
        .body(body)
        .expect("static response parts are valid"))
}
