//! The forecast of a (lot, class) as the read API answers it: the hourly
//! roll-ups of the last weeks and the present counts, read with the
//! statements the history and availability reads use, and given to the
//! domain's model; and the published forecast the public reads show,
//! refitted by the sweep every few minutes and stored (`lot_forecasts`).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use parking_domain::forecast::{
    Forecast, Horizon, HourSample, Method, Model, NOMINAL_COVERAGE, PUBLISHED_HORIZON,
    PUBLISHED_REFRESH_MINUTES, Present, PublishedForecast, RecentError, TimeZone, recent_error,
};
use parking_domain::{VehicleClass, time_zone};
use serde::Serialize;

use crate::db::{Database, DbError, Row, from_ms, to_ms};

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

/// The model fitted for a (lot, class) at a time, and its forecasts.
struct Fitted {
    zone_name: String,
    present: Present,
    model: Model,
    forecasts: Vec<Forecast>,
    recent: Option<RecentError>,
}

/// Fits the model of `class` in `lot` on its roll-ups and forecasts each horizon from `now`.
fn fit(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    horizons: &[Horizon],
    now: DateTime<Utc>,
) -> Result<Fitted, ForecastError> {
    let Some(lot_row) = db.query(db.sql.lot_name, &[lot.into()])?.into_iter().next() else {
        return Err(ForecastError::UnknownLot);
    };
    let zone_name = lot_row.text(1)?;
    let tz = time_zone(&zone_name).unwrap_or(TimeZone::UTC);
    let present = present_counts(db, lot, class, now)?;
    let history = hourly_history(db, lot, class, now)?;
    let model = Model::fit(&history, &tz);
    let forecasts = horizons.iter().map(|h| model.forecast(&present, *h)).collect();
    let recent = recent_error(&history, &tz, now, RECENT_DAYS);
    Ok(Fitted { zone_name, present, model, forecasts, recent })
}

/// The forecast of `class` in `lot` for each horizon, from `now`.
pub fn lot_forecast(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    horizons: &[Horizon],
    now: DateTime<Utc>,
) -> Result<LotForecast, ForecastError> {
    let Fitted { zone_name, present, model, forecasts, recent } = fit(db, lot, class, horizons, now)?;
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

/// A published forecast as stored: when the sweep fitted it, and what it
/// found worth publishing (`None`: persistence only).
#[derive(Debug)]
pub struct StoredForecast {
    pub lot: String,
    pub class: VehicleClass,
    pub computed_at: DateTime<Utc>,
    pub published: Option<PublishedForecast>,
}

/// Every stored published forecast: one statement.
pub fn stored_forecasts(db: &Database) -> Result<Vec<StoredForecast>, DbError> {
    db.query(db.sql.all_lot_forecasts, &[])?
        .iter()
        .map(|r| {
            let class = VehicleClass::parse(&r.text(1)?).map_err(|e| DbError::Decode(e.to_string()))?;
            let computed_at = from_ms(r.int(2)?)?;
            let published: Option<PublishedForecast> = serde_json::from_str(&r.text(3)?)
                .map_err(|e| DbError::Decode(format!("a stored forecast: {e}")))?;
            // The column says when it was fitted (what refreshing and staleness go by).
            let published = published.map(|p| PublishedForecast { computed_at, ..p });
            Ok(StoredForecast { lot: r.text(0)?, class, computed_at, published })
        })
        .collect()
}

/// What a refresh of the published forecasts did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    /// (lot, class) groups refitted.
    pub fitted: usize,
    /// Groups still due when the run's time was up.
    pub left: usize,
}

/// Refits the published forecast of every (lot, class) whose stored one is
/// older than [`PUBLISHED_REFRESH_MINUTES`] (or missing), oldest first,
/// until `out_of_time` says stop. Each group costs a model fit on its
/// roll-ups; a group fitted recently costs nothing.
pub fn refresh_published(
    db: &Database,
    now: DateTime<Utc>,
    out_of_time: impl Fn() -> bool,
) -> Result<Refreshed, DbError> {
    let now = from_ms(to_ms(now))?; // as stored: whole milliseconds
    let fitted_at: BTreeMap<(String, VehicleClass), DateTime<Utc>> =
        stored_forecasts(db)?.into_iter().map(|s| ((s.lot, s.class), s.computed_at)).collect();
    let mut groups: BTreeMap<(String, VehicleClass), Option<DateTime<Utc>>> = BTreeMap::new();
    for row in db.query(db.sql.count_all_lots, &[])? {
        if row.int(3)? == 0 {
            continue;
        }
        let class = VehicleClass::parse(&row.text(2)?).map_err(|e| DbError::Decode(e.to_string()))?;
        let key = (row.text(0)?, class);
        let at = fitted_at.get(&key).copied();
        groups.insert(key, at);
    }
    let due_before = now - Duration::minutes(PUBLISHED_REFRESH_MINUTES);
    let mut due: Vec<_> = groups.into_iter().filter(|(_, at)| at.is_none_or(|at| at <= due_before)).collect();
    due.sort_by_key(|(_, at)| *at);
    let mut refreshed = Refreshed::default();
    for (i, ((lot, class), _)) in due.iter().enumerate() {
        if out_of_time() {
            refreshed.left = due.len() - i;
            break;
        }
        let published = match fit(db, lot, class, &[PUBLISHED_HORIZON], now) {
            Ok(f) => PublishedForecast::of(&f.forecasts[0], f.recent.map(|r| r.mean_absolute_error), now),
            // Removed or changed since the counts were read: nothing to publish.
            Err(ForecastError::UnknownLot | ForecastError::NoSuchClass(_)) => None,
            Err(ForecastError::Db(e)) => return Err(e),
        };
        let json = serde_json::to_string(&published).expect("plain data serialises");
        db.execute(
            db.sql.upsert_lot_forecast,
            &[lot.as_str().into(), class.as_str().into(), to_ms(now).into(), json.into()],
        )?;
        refreshed.fitted += 1;
    }
    Ok(refreshed)
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
