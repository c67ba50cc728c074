//! `retention-sweep`: what a cron tick (`dev.knative.sources.ping`, from a
//! PingSource on the cluster or parkd's scheduler locally) sets off.
//!
//! In order, each step bounded by the run's time budget:
//! 1. closes the offline alerts of sensors heard from again and the
//!    unknown-device alerts of devices since provisioned, and announces the
//!    alerts raised by refused readings (unknown devices);
//! 2. marks bays `unknown` whose sensor has been silent past its heartbeat
//!    window, deriving `slot.changed`, `availability.changed` and
//!    `sensor.alert` (once per outage: the alert stays open until the
//!    sensor is heard again);
//! 3. raises the overstays due by now (through the due-time index: the
//!    stays due, never every bay): an `io.parking.bay.overstay.v1` event
//!    and an open `bay_overstay` alert, once per stay;
//! 4. rolls closed hours of status changes up into `occupancy_hourly`;
//! 5. deletes raw rows past their retention, only in hours already rolled
//!    up, in batches of one short statement each, so ingest never waits
//!    longer than one batch.
//!
//! A run that reaches its budget stops between two steps of work and says
//! so (`complete: false`); the next run continues where it stopped. The
//! answer is a CloudEvents batch: an `io.parking.sweep.report.v1` event with
//! the run's report (each batch and its duration), then the derived events.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use cloudevents::{AttributesReader, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{
    AVAILABILITY_CHANGED_V1, BAY_OVERSTAY_V1, PING, SENSOR_ALERT_V1, SLOT_CHANGED_V1,
};
use parking_domain::{SensorModel, heartbeat_window};
use parking_kit::alerts;
use parking_kit::auth::{self, Credential};
use parking_kit::history::{self, HourRolled, RawTable};
use parking_kit::respond::{self, ApiError};
use parking_kit::{Database, cloudevent};
use serde::Serialize;
use spin_sdk::http_component;

const SOURCE: &str = "/parking/functions/retention-sweep";
const BATCH: &str = "application/cloudevents-batch+json";
/// The type of the run's report.
pub const SWEEP_REPORT_V1: &str = "io.parking.sweep.report.v1";
const MAX_BODY_BYTES: usize = 64 * 1024;

#[http_component]
fn handle(req: Request<Vec<u8>>) -> Response<Vec<u8>> {
    respond::finish(handle_tick(req))
}

/// The sweep's settings, from Spin variables (defaults in spin.toml).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Settings {
    raw_retention_days: i64,
    rollup_retention_days: i64,
    batch_size: u32,
    time_budget_ms: i64,
    rollup_settle_seconds: i64,
    /// One silence window for every sensor model, replacing the per-model
    /// defaults (for sites whose sensors are configured differently).
    offline_after_seconds: Option<i64>,
}

impl Settings {
    fn from_variables() -> Result<Self, ApiError> {
        fn number(name: &str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
            let raw = spin_sdk::variables::get(name).map_err(|e| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("variable `{name}`: {e}"))
            })?;
            let raw = raw.trim();
            if raw.is_empty() {
                return Ok(None);
            }
            match raw.parse::<i64>() {
                Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
                _ => Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("variable `{name}` is {raw:?}: expected a whole number from {min} to {max}"),
                )),
            }
        }
        let required = |name: &str, min, max| {
            number(name, min, max)?.ok_or_else(|| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("variable `{name}` is empty"))
            })
        };
        Ok(Settings {
            raw_retention_days: required("retention_raw_days", 1, 36_500)?,
            rollup_retention_days: required("retention_rollup_days", 1, 36_500)?,
            batch_size: u32::try_from(required("sweep_batch_size", 1, 1_000_000)?).unwrap_or(5000),
            time_budget_ms: required("sweep_time_budget_ms", 1, 3_600_000)?,
            rollup_settle_seconds: required("rollup_settle_seconds", 0, 86_400)?,
            offline_after_seconds: number("offline_after_seconds", 1, 30 * 86_400)?,
        })
    }

    fn window(&self, model: Option<SensorModel>) -> Duration {
        match self.offline_after_seconds {
            Some(secs) => Duration::seconds(secs),
            None => heartbeat_window(model),
        }
    }

    /// The shortest window of any model: bays heard from more recently are not candidates.
    fn shortest_window(&self) -> Duration {
        [None, Some(SensorModel::BoschPls), Some(SensorModel::Nwave)]
            .into_iter()
            .map(|m| self.window(m))
            .min()
            .unwrap_or_else(|| Duration::hours(1))
    }
}

/// One delete statement's work.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct DeleteBatch {
    table: RawTable,
    rows: usize,
    millis: f64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    tick: String,
    now: DateTime<Utc>,
    settings: Settings,
    /// False when the time budget ended the run early; the next run continues.
    complete: bool,
    alerts_closed: usize,
    bays_marked_unknown: usize,
    alerts_opened: usize,
    overstays_raised: usize,
    hours_rolled_up: Vec<HourRolled>,
    rolled_up_to: DateTime<Utc>,
    batches: Vec<DeleteBatch>,
    deleted: std::collections::BTreeMap<&'static str, usize>,
    elapsed_ms: f64,
}

fn handle_tick(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    auth::require(&req, Credential::Ingest)?;
    let tick = cloudevent::receive(req, PING, MAX_BODY_BYTES)?;
    let settings = Settings::from_variables()?;
    let db = Database::open_configured()?;
    let started = Instant::now();
    // The host's clock, not the tick's time: a delayed or replayed tick must
    // not judge silence by a stale clock.
    let now = Utc::now();
    let budget = std::time::Duration::from_millis(settings.time_budget_ms.unsigned_abs());
    let out_of_time = || started.elapsed() >= budget;
    let mut derived: Vec<serde_json::Value> = Vec::new();

    // 1. Sensors heard from again close their offline alerts.
    let mut closed = alerts::close_recovered_offline_alerts(&db, now)?;
    // Devices provisioned since they were reported unknown.
    closed.extend(alerts::close_provisioned_device_alerts(&db, now)?);
    // Alerts raised by refused readings, which could not answer with events.
    for alert in alerts::announce_alerts(&db, now)? {
        derived.push(alert_opened(&tick, &alert)?);
    }
    for alert in &closed {
        derived.push(event(
            &tick,
            &format!("alert/{}/closed", alert.id),
            SENSOR_ALERT_V1,
            &alert.subject,
            alert,
        )?);
    }

    // 2. Silent sensors: their bays become unknown, once per outage.
    let mut marked = 0;
    let mut opened = 0;
    let mut complete = true;
    let candidates = history::silent_candidates(&db, now - settings.shortest_window(), settings.batch_size)?;
    for candidate in candidates {
        if out_of_time() {
            complete = false;
            break;
        }
        let Some(silence) =
            history::mark_silent(&db, &candidate.lot, &candidate.bay, now, |m| settings.window(m))?
        else {
            continue;
        };
        marked += 1;
        let subject = format!("{}/{}", silence.slot.lot, silence.slot.bay);
        let at = now.timestamp_millis();
        derived.push(event(
            &tick,
            &format!("slot/{subject}/{at}"),
            SLOT_CHANGED_V1,
            &subject,
            &silence.slot,
        )?);
        let a = &silence.availability;
        let group = format!("{}/{}/{}", a.lot, a.zone.as_deref().unwrap_or("-"), a.class);
        derived.push(event(
            &tick,
            &format!("availability/{subject}/{at}"),
            AVAILABILITY_CHANGED_V1,
            &group,
            a,
        )?);
        if let Some(alert) = &silence.alert {
            opened += 1;
            derived.push(alert_opened(&tick, alert)?);
        }
    }

    // 3. Overstays due by now, read through the due-time index.
    let raised = parking_kit::stays::raise_due_overstays(&db, now)?;
    for overstay in &raised {
        derived.push(cloudevent::with_id(
            &overstay.event_id,
            SOURCE,
            BAY_OVERSTAY_V1,
            &overstay.subject,
            &overstay.overstay,
        )?);
        if let Some(alert) = &overstay.alert {
            derived.push(alert_opened(&tick, alert)?);
        }
    }

    // 4. Closed hours into the hourly table.
    let settle = Duration::seconds(settings.rollup_settle_seconds);
    let (hours, rolled_up_to) = history::roll_up_closed_hours(&db, now, settle, out_of_time)?;
    if out_of_time() {
        complete = false;
    }

    // 5. Retention, oldest rows first, raw rows only where rolled up.
    let raw_cutoff = (now - Duration::days(settings.raw_retention_days)).min(rolled_up_to);
    let plan = [
        (RawTable::Readings, raw_cutoff),
        (RawTable::SensorFrames, raw_cutoff),
        (RawTable::StatusChanges, raw_cutoff),
        (RawTable::ProcessedEvents, now - Duration::days(settings.raw_retention_days)),
        (RawTable::OccupancyHourly, now - Duration::days(settings.rollup_retention_days)),
    ];
    let mut batches = Vec::new();
    let mut deleted = std::collections::BTreeMap::new();
    'tables: for (table, before) in plan {
        loop {
            if out_of_time() {
                complete = false;
                break 'tables;
            }
            let batch_started = Instant::now();
            let rows = history::delete_batch(&db, table, before, settings.batch_size)?;
            batches.push(DeleteBatch { table, rows, millis: batch_started.elapsed().as_secs_f64() * 1e3 });
            *deleted.entry(table.as_str()).or_insert(0) += rows;
            if rows < settings.batch_size as usize {
                break;
            }
        }
    }

    let report = Report {
        tick: tick.id().to_owned(),
        now,
        settings,
        complete,
        alerts_closed: closed.len(),
        bays_marked_unknown: marked,
        alerts_opened: opened,
        overstays_raised: raised.len(),
        hours_rolled_up: hours,
        rolled_up_to,
        batches,
        deleted,
        elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
    };
    let mut events = vec![event(&tick, "report", SWEEP_REPORT_V1, "sweep", &report)?];
    events.extend(derived);
    let body = serde_json::to_vec(&events)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", BATCH)
        .body(body)
        .expect("static response parts are valid"))
}

/// The event announcing an alert opened.
fn alert_opened(tick: &Event, alert: &parking_kit::alerts::Alert) -> Result<serde_json::Value, ApiError> {
    event(tick, &format!("alert/{}/open", alert.id), SENSOR_ALERT_V1, &alert.subject, alert)
}

/// A derived event; its id derives from the tick's, so a redelivered tick
/// yields the same ids.
fn event<T: Serialize>(
    tick: &Event,
    suffix: &str,
    ty: &str,
    subject: &str,
    data: &T,
) -> Result<serde_json::Value, ApiError> {
    cloudevent::derived(tick, SOURCE, suffix, ty, subject, data)
}
