//! The forecast of a (lot, class) as the read API answers it: the hourly
//! roll-ups of the last weeks and the present counts, read with the
//! statements the history and availability reads use, and given to the
//! domain's model.

use chrono::{DateTime, Duration, Utc};
use parking_domain::forecast::{
    Forecast, Horizon, HourSample, Method, Model, NOMINAL_COVERAGE, Present, RecentError, TimeZone,
    recent_error,
};
use parking_domain::{VehicleClass, time_zone};
use serde::Serialize;

use crate::db::{Database, DbError, Row, to_ms};

/// How much history the model is fitted on.
const HISTORY_WEEKS: i64 = 8;

/// The window `recentError` replays.
const RECENT_DAYS: i64 = 7;

/// One horizon in the answer.
#[derive(Debug, Serialize)]
pub struct HorizonAnswer {
    pub horizon: String,
    /// When the forecast is for (`at` plus the horizon).
    pub at: DateTime<Utc>,
    pub free: u32,
    pub low: u32,
    pub high: u32,
    pub method: Method,
}

/// What the model was fitted on, so a reader can judge the answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelAnswer {
    /// The share of outcomes `low`..`high` aims to hold.
    pub coverage: f64,
    /// Hours of roll-ups the model was fitted on.
    pub history_hours: usize,
    /// The fitted hourly persistence of the deviation from the profile.
    pub decay_per_hour: Option<f64>,
    pub time_zone: String,
    /// Why a horizon fell back to persistence, if one did.
    pub note: Option<&'static str>,
}

/// `GET /api/v1/lots/{lot}/forecast`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotForecast {
    pub lot: String,
    pub class: VehicleClass,
    pub at: DateTime<Utc>,
    pub forecasts: Vec<HorizonAnswer>,
    /// Mean absolute error in bays of the model's 60-minute forecasts over
    /// the last seven days, replayed from the roll-ups (`null` without enough history).
    pub recent_error: Option<f64>,
    pub recent_error_detail: Option<RecentError>,
    /// The counts the forecast starts from.
    pub present: PresentAnswer,
    pub model: ModelAnswer,
}

#[derive(Debug, Serialize)]
pub struct PresentAnswer {
    pub total: u32,
    pub free: u32,
    pub occupied: u32,
}

/// Why a forecast cannot be given.
#[derive(Debug)]
pub enum ForecastError {
    UnknownLot,
    /// The lot has no bays of this class; the classes it has.
    NoSuchClass(Vec<String>),
    Db(DbError),
}

impl From<DbError> for ForecastError {
    fn from(e: DbError) -> Self {
        ForecastError::Db(e)
    }
}

/// The forecast of `class` in `lot` for each horizon, from `now`.
pub fn lot_forecast(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    horizons: &[Horizon],
    now: DateTime<Utc>,
) -> Result<LotForecast, ForecastError> {
    let Some(lot_row) = db.query(db.sql.lot_name, &[lot.into()])?.into_iter().next() else {
        return Err(ForecastError::UnknownLot);
    };
    let zone_name = lot_row.text(1)?;
    let tz = time_zone(&zone_name).unwrap_or(TimeZone::UTC);
    let present = present_counts(db, lot, class, now)?;
    let history = hourly_history(db, lot, class, now)?;
    let model = Model::fit(&history, &tz);
    let forecasts: Vec<Forecast> = horizons.iter().map(|h| model.forecast(&present, *h)).collect();
    let recent = recent_error(&history, &tz, now, RECENT_DAYS);
    let fell_back = forecasts.iter().any(|f| f.method == Method::Persistence);
    Ok(LotForecast {
        lot: lot.to_owned(),
        class: class.clone(),
        at: now,
        forecasts: forecasts
            .iter()
            .map(|f| HorizonAnswer {
                horizon: f.horizon.to_string(),
                at: now + Duration::minutes(i64::from(f.horizon.as_minutes())),
                free: f.free,
                low: f.low,
                high: f.high,
                method: f.method,
            })
            .collect(),
        recent_error: recent.map(|r| r.mean_absolute_error),
        recent_error_detail: recent,
        present: PresentAnswer { total: present.total, free: present.free, occupied: present.occupied },
        model: ModelAnswer {
            coverage: NOMINAL_COVERAGE,
            history_hours: model.hours(),
            decay_per_hour: model.decay(),
            time_zone: zone_name,
            note: fell_back.then_some(
                "too little history for a seasonal forecast (a few days of hourly roll-ups are needed): \
                 persistence, as many free as now, with a range from none to every bay a sensor vouches for",
            ),
        },
    })
}

/// The class's counts now, summed over the lot's zones.
fn present_counts(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    now: DateTime<Utc>,
) -> Result<Present, ForecastError> {
    let rows = db.query(db.sql.lot_group_counts, &[lot.into()])?;
    let mut present = Present { at: now, total: 0, free: 0, occupied: 0 };
    let mut classes: Vec<String> = Vec::new();
    let mut found = false;
    for row in &rows {
        let name = row.text(1)?;
        if name != class.as_str() {
            classes.push(name);
            continue;
        }
        found = true;
        present.total += count(row, 2)?;
        present.free += count(row, 3)?;
        present.occupied += count(row, 4)?;
    }
    if !found {
        classes.sort();
        classes.dedup();
        return Err(ForecastError::NoSuchClass(classes));
    }
    Ok(present)
}

/// The class's hourly roll-ups of the last weeks, zones summed per hour.
fn hourly_history(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    now: DateTime<Utc>,
) -> Result<Vec<HourSample>, DbError> {
    let from = now - Duration::weeks(HISTORY_WEEKS);
    let rows = db.query(
        db.sql.lot_rollups,
        &[lot.into(), to_ms(from).into(), to_ms(now).into(), class.as_str().into()],
    )?;
    let mut hours: Vec<HourSample> = Vec::new();
    for r in &rows {
        let (start_ms, span_ms) = (r.int(2)?, r.int(3)?);
        let mean = if span_ms > 0 { r.int(5)? as f64 / span_ms as f64 } else { 0.0 };
        match hours.last_mut() {
            Some(last) if last.start_ms == start_ms => {
                last.bays += count(r, 4)?;
                last.mean_occupied += mean;
            }
            _ => hours.push(HourSample { start_ms, bays: count(r, 4)?, mean_occupied: mean }),
        }
    }
    Ok(hours)
}

fn count(row: &Row, i: usize) -> Result<u32, DbError> {
    u32::try_from(row.int(i)?).map_err(|e| DbError::Decode(format!("column {i}: {e}")))
}
