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
//! 5. refits the published forecast ("free in an hour", shown by the lot
//!    list and the public page) of each (lot, class) whose stored one is
//!    older than a few minutes, so visitors never cost a model fit;
//! 6. deletes raw rows past their retention, only in hours already rolled
//!    up, in batches of one short statement each, so ingest never waits
//!    longer than one batch.
//!
//! A run that reaches its budget stops between two steps of work and says
//! so (`complete: false`); the next run continues where it stopped.
//!
//! Each change of steps 1–3 commits with the events it derives staged in the
//! outbox (kit `outbox`), which this run then empties, oldest first:
//! - with the `events_sink` variable set (on the cluster: the Knative
//!   Broker's ingress, which takes one event per request and would drop a
//!   batch reply), it POSTs them there, before the history work; if the
//!   sink fails, the answer is 503 and the events stay staged for the
//!   redelivered tick;
//! - without it, the answer carries them.
//!
//! The answer is an `io.parking.sweep.report.v1` event with the run's report
//! (each batch and its duration): a CloudEvents batch of the report and the
//! answered events, or the report alone, as one event, to a caller that
//! does not take batches when the events went to the sink.

use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use cloudevents::{AttributesReader, Event};
use http::{Request, Response, StatusCode};
use parking_domain::events::{
    AVAILABILITY_CHANGED_V1, BAY_OVERSTAY_V1, PING, SENSOR_ALERT_V1, SLOT_CHANGED_V1, SWEEP_REPORT_V1,
};
use parking_domain::{SensorModel, heartbeat_window};
use parking_kit::alerts;
use parking_kit::auth::{self, Credential};
use parking_kit::cloudevent::BATCH;
use parking_kit::history::{self, HourRolled, RawTable};
use parking_kit::respond::{self, ApiError};
use parking_kit::{Database, cloudevent, forecast, outbox};
use serde::Serialize;
use spin_sdk::http_component;

const SOURCE: &str = "/parking/functions/retention-sweep";
/// Media type of one event in structured mode.
const STRUCTURED: &str = "application/cloudevents+json";
/// At most this many derived events in one answer (the rest wait for the next run).
const MAX_ANSWERED_EVENTS: u32 = 5000;
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
    /// Where derived events go (a Knative Broker's ingress); `None`: in the answer.
    events_sink: Option<String>,
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
            events_sink: outbox::sink_from_variable(&spin_sdk::variables::get("events_sink").map_err(
                |e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("variable `events_sink`: {e}")),
            )?)?,
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

/// How long each step of a run took, in milliseconds.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
struct StepMillis {
    alerts: f64,
    silent_sensors: f64,
    overstays: f64,
    outbox: f64,
    roll_up: f64,
    forecasts: f64,
    retention: f64,
}

/// Milliseconds since `mark`, and `mark` moved to now.
fn lap(mark: &mut Instant) -> f64 {
    let now = Instant::now();
    let millis = (now - *mark).as_secs_f64() * 1e3;
    *mark = now;
    millis
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
    /// Alerts raised by refused readings, announced now.
    alerts_announced: usize,
    bays_marked_unknown: usize,
    alerts_opened: usize,
    overstays_raised: usize,
    /// The delivery to the events sink, when one is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    outbox: Option<outbox::Delivered>,
    hours_rolled_up: Vec<HourRolled>,
    rolled_up_to: DateTime<Utc>,
    /// (lot, class) groups whose published forecast was refitted.
    forecasts_fitted: usize,
    batches: Vec<DeleteBatch>,
    deleted: std::collections::BTreeMap<&'static str, usize>,
    elapsed_ms: f64,
    step_millis: StepMillis,
}

/// One run: what every step reads, and the report it fills in.
struct Run {
    db: Database,
    tick: Event,
    settings: Settings,
    /// The host's clock, not the tick's time: a delayed or replayed tick
    /// must not judge silence by a stale clock.
    now: DateTime<Utc>,
    started: Instant,
    budget: std::time::Duration,
}

impl Run {
    fn out_of_time(&self) -> bool {
        self.started.elapsed() >= self.budget
    }

    /// 1. Sensors heard from again close their offline alerts; devices
    ///    provisioned since they were reported unknown close theirs; alerts
    ///    raised by refused readings (which could not answer with events)
    ///    are announced. Answers (closed, announced).
    fn alerts(&self) -> Result<(usize, usize), ApiError> {
        let (tick, now) = (&self.tick, self.now);
        self.db.transaction(|db| {
            let mut closed = alerts::close_recovered_offline_alerts(db, now)?;
            closed.extend(alerts::close_provisioned_device_alerts(db, now)?);
            let announced = alerts::announce_alerts(db, now)?;
            let mut events = Vec::with_capacity(closed.len() + announced.len());
            for alert in &announced {
                events.push(alert_opened(tick, alert)?);
            }
            for alert in &closed {
                let suffix = format!("alert/{}/closed", alert.id);
                events.push(event(tick, &suffix, SENSOR_ALERT_V1, &alert.subject, alert)?);
            }
            outbox::stage(db, &events, now)?;
            Ok((closed.len(), announced.len()))
        })
    }

    /// 2. Silent sensors: their bays become unknown, once per outage, each in
    ///    its own transaction. Answers (bays marked, alerts opened, complete).
    fn silent_sensors(&self) -> Result<(usize, usize, bool), ApiError> {
        let (settings, now) = (&self.settings, self.now);
        let (mut marked, mut opened) = (0, 0);
        let cutoff = now - settings.shortest_window();
        for candidate in history::silent_candidates(&self.db, cutoff, settings.batch_size)? {
            if self.out_of_time() {
                return Ok((marked, opened, false));
            }
            let outcome = self.db.transaction(|db| -> Result<_, ApiError> {
                let silence =
                    history::mark_silent(db, &candidate.lot, &candidate.bay, now, |m| settings.window(m))?;
                let Some(silence) = silence else { return Ok(None) };
                outbox::stage(db, &silence_events(&self.tick, &silence, now)?, now)?;
                Ok(Some(silence.alert.is_some()))
            })?;
            if let Some(alert_opened) = outcome {
                marked += 1;
                opened += usize::from(alert_opened);
            }
        }
        Ok((marked, opened, true))
    }

    /// 3. Overstays due by now, read through the due-time index. Answers how many.
    fn overstays(&self) -> Result<usize, ApiError> {
        let (tick, now) = (&self.tick, self.now);
        self.db.transaction(|db| {
            let raised = parking_kit::stays::raise_due_overstays(db, now)?;
            let mut events = Vec::with_capacity(raised.len() * 2);
            for overstay in &raised {
                let (id, subject) = (&overstay.event_id, &overstay.subject);
                events.push(cloudevent::with_id(id, SOURCE, BAY_OVERSTAY_V1, subject, &overstay.overstay)?);
                if let Some(alert) = &overstay.alert {
                    events.push(alert_opened(tick, alert)?);
                }
            }
            outbox::stage(db, &events, now)?;
            Ok(raised.len())
        })
    }

    /// The events staged by this run and any an earlier run could not
    /// deliver: to the sink when one is configured (a Knative Broker takes
    /// one event per request, not a batch), else taken for the answer.
    fn deliver(&self) -> Result<(Option<outbox::Delivered>, Vec<serde_json::Value>), ApiError> {
        Ok(match &self.settings.events_sink {
            Some(sink) => (Some(outbox::deliver(&self.db, sink, || !self.out_of_time())?), Vec::new()),
            None => (None, outbox::take(&self.db, MAX_ANSWERED_EVENTS)?),
        })
    }

    /// 6. Retention, oldest rows first, raw rows only where rolled up, in
    ///    batches of one statement. Answers the batches and whether it finished.
    fn retention(&self, rolled_up_to: DateTime<Utc>) -> Result<(Vec<DeleteBatch>, bool), ApiError> {
        let (settings, now) = (&self.settings, self.now);
        let raw_cutoff = (now - Duration::days(settings.raw_retention_days)).min(rolled_up_to);
        let plan = [
            (RawTable::Readings, raw_cutoff),
            (RawTable::SensorFrames, raw_cutoff),
            (RawTable::StatusChanges, raw_cutoff),
            (RawTable::ProcessedEvents, now - Duration::days(settings.raw_retention_days)),
            (RawTable::OccupancyHourly, now - Duration::days(settings.rollup_retention_days)),
        ];
        let mut batches = Vec::new();
        for (table, before) in plan {
            loop {
                if self.out_of_time() {
                    return Ok((batches, false));
                }
                let started = Instant::now();
                let rows = history::delete_batch(&self.db, table, before, settings.batch_size)?;
                batches.push(DeleteBatch { table, rows, millis: started.elapsed().as_secs_f64() * 1e3 });
                if rows < settings.batch_size as usize {
                    break;
                }
            }
        }
        Ok((batches, true))
    }
}

fn handle_tick(req: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, ApiError> {
    auth::require(&req, Credential::Ingest)?;
    let accepts_batch = cloudevent::accepts_batch(&req);
    let tick = cloudevent::receive(req, PING, MAX_BODY_BYTES)?;
    let settings = Settings::from_variables()?;
    let budget = std::time::Duration::from_millis(settings.time_budget_ms.unsigned_abs());
    let db = Database::open_configured()?;
    let run = Run { db, tick, settings, now: Utc::now(), started: Instant::now(), budget };
    let (mut steps, mut mark) = (StepMillis::default(), run.started);

    // Steps 1–3 change state and derive events: each change commits with its
    // events staged in the outbox, so an event exists exactly when its change
    // does, whatever becomes of this run.
    let (alerts_closed, alerts_announced) = run.alerts()?;
    steps.alerts = lap(&mut mark);
    let (bays_marked_unknown, alerts_opened, mut complete) = run.silent_sensors()?;
    steps.silent_sensors = lap(&mut mark);
    let overstays_raised = run.overstays()?;
    steps.overstays = lap(&mut mark);
    // Before the history work, so signs do not wait for deletes.
    let (delivery, derived) = run.deliver()?;
    steps.outbox = lap(&mut mark);
    // 4. Closed hours into the hourly table.
    let settle = Duration::seconds(run.settings.rollup_settle_seconds);
    let (hours_rolled_up, rolled_up_to) =
        history::roll_up_closed_hours(&run.db, run.now, settle, || run.out_of_time())?;
    complete &= !run.out_of_time();
    steps.roll_up = lap(&mut mark);
    // 5. Published forecasts, on the roll-ups just made.
    let forecasts = forecast::refresh_published(&run.db, run.now, || run.out_of_time())?;
    complete &= forecasts.left == 0;
    steps.forecasts = lap(&mut mark);
    let (batches, finished) = run.retention(rolled_up_to)?;
    complete &= finished;
    steps.retention = lap(&mut mark);

    let mut deleted = std::collections::BTreeMap::new();
    for b in &batches {
        *deleted.entry(b.table.as_str()).or_insert(0) += b.rows;
    }
    let undelivered = delivery.as_ref().and_then(|o| o.error.clone().map(|e| (e, o.pending)));
    let has_sink = run.settings.events_sink.is_some();
    let report = Report {
        tick: run.tick.id().to_owned(),
        now: run.now,
        complete,
        alerts_closed,
        alerts_announced,
        bays_marked_unknown,
        alerts_opened,
        overstays_raised,
        outbox: delivery,
        hours_rolled_up,
        rolled_up_to,
        forecasts_fitted: forecasts.fitted,
        batches,
        deleted,
        elapsed_ms: run.started.elapsed().as_secs_f64() * 1e3,
        step_millis: steps,
        settings: run.settings,
    };
    let report = event(&run.tick, "report", SWEEP_REPORT_V1, "sweep", &report)?;
    if let Some((error, pending)) = undelivered {
        // The run's work is committed and its events are staged; the caller
        // redelivers the tick, and that run delivers them.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{pending} derived events wait in the outbox: {error}"),
        ));
    }
    answer(report, derived, !has_sink || accepts_batch)
}

/// Without a sink the events are in the answer, a batch (parkd routes it);
/// with one, the answer is the report: one event unless the caller takes
/// batches.
fn answer(
    report: serde_json::Value,
    derived: Vec<serde_json::Value>,
    batch: bool,
) -> Result<Response<Vec<u8>>, ApiError> {
    let (content_type, body) = if batch {
        let mut events = vec![report];
        events.extend(derived);
        (BATCH, serde_json::to_vec(&events))
    } else {
        (STRUCTURED, serde_json::to_vec(&report))
    };
    let body = body.map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header("content-type", content_type)
        .body(body)
        .expect("static response parts are valid"))
}

/// What marking a bay silent derives: its slot and availability changes,
/// and its offline alert when one opened.
fn silence_events(
    tick: &Event,
    silence: &history::SilenceDerived,
    now: DateTime<Utc>,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let subject = format!("{}/{}", silence.slot.lot, silence.slot.bay);
    let at = now.timestamp_millis();
    let a = &silence.availability;
    let group = format!("{}/{}/{}", a.lot, a.zone.as_deref().unwrap_or("-"), a.class);
    let mut events = vec![
        event(tick, &format!("slot/{subject}/{at}"), SLOT_CHANGED_V1, &subject, &silence.slot)?,
        event(tick, &format!("availability/{subject}/{at}"), AVAILABILITY_CHANGED_V1, &group, a)?,
    ];
    if let Some(alert) = &silence.alert {
        events.push(alert_opened(tick, alert)?);
    }
    Ok(events)
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
