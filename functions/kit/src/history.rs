//! History and retention as the components use them: hourly roll-ups from
//! status changes, the history query, bounded deletes, and silent sensors.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use parking_domain::stay_lengths::StayLengths;
use parking_domain::{
    AlertKind, AvailabilityChanged, BayAtStart, BayStatus, Bucket, GroupKey, Rollup, SensorModel,
    SlotChanged, StatusChange, VehicleClass, hour_floor, roll_up,
};
use serde::Serialize;

use crate::alerts::{Alert, AlertSubject, open_alert};
use crate::db::{Database, DbError, Row, Value, from_ms, to_ms};

/// The one roll-up progress row.
const HOURLY: &str = "occupancy_hourly";

fn status(row: &Row, i: usize) -> Result<BayStatus, DbError> {
    BayStatus::parse(&row.text(i)?).map_err(|e| DbError::Decode(e.to_string()))
}

fn class(row: &Row, i: usize) -> Result<VehicleClass, DbError> {
    VehicleClass::parse(&row.text(i)?).map_err(|e| DbError::Decode(e.to_string()))
}

fn group(row: &Row, lot: usize) -> Result<GroupKey, DbError> {
    Ok(GroupKey { lot: row.text(lot)?, zone: row.opt_text(lot + 2)?, class: class(row, lot + 3)? })
}

fn count(row: &Row, i: usize) -> Result<u32, DbError> {
    u32::try_from(row.int(i)?).map_err(|e| DbError::Decode(format!("column {i}: {e}")))
}

// ---------------------------------------------------------------- roll-ups

/// One hour rolled up, and how long its transaction took.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourRolled {
    pub hour: DateTime<Utc>,
    pub groups: usize,
    pub millis: f64,
}

/// Rolls up, one hour per transaction, every closed hour that ended at least
/// `settle` before `now` and is not rolled up yet, until `deadline`.
///
/// Idempotent and safe to run concurrently: each hour's transaction locks
/// the progress row, re-reads how far the roll-up got, replaces the hour's
/// rows (upsert) and advances the progress; a second sweep waits for the
/// lock and then finds the hour done. Answers the hours rolled up and how
/// far the roll-up has got.
pub fn roll_up_closed_hours(
    db: &Database,
    now: DateTime<Utc>,
    settle: Duration,
    deadline: impl Fn() -> bool,
) -> Result<(Vec<HourRolled>, DateTime<Utc>), DbError> {
    let last_closed = hour_floor(now - settle);
    // Where to start when nothing was ever rolled up: the hour of the oldest change kept.
    let first =
        db.query(db.sql.first_status_change, &[])?.first().map(|r| r.opt_int(0)).transpose()?.flatten();
    let initial = first.map(|ms| from_ms(ms).map(hour_floor)).transpose()?.unwrap_or(last_closed);
    db.execute(db.sql.init_rollup_progress, &[HOURLY.into(), to_ms(now).into(), to_ms(initial).into()])?;
    let mut rolled = Vec::new();
    loop {
        if deadline() {
            break;
        }
        let started = std::time::Instant::now();
        let step = db.transaction(|db| -> Result<Option<(DateTime<Utc>, usize)>, DbError> {
            let progress = db
                .query(db.sql.rollup_progress, &[HOURLY.into()])?
                .first()
                .map(|r| r.int(0))
                .transpose()?
                .ok_or_else(|| DbError::Query("the roll-up progress row is missing".into()))?;
            let hour = from_ms(progress)?;
            if hour >= last_closed {
                return Ok(None);
            }
            let end = hour + Duration::hours(1);
            let groups = roll_up_window(db, hour, end, now)?;
            db.execute(db.sql.set_rollup_progress, &[HOURLY.into(), to_ms(end).into(), to_ms(now).into()])?;
            Ok(Some((hour, groups)))
        })?;
        match step {
            Some((hour, groups)) => {
                rolled.push(HourRolled { hour, groups, millis: started.elapsed().as_secs_f64() * 1e3 })
            }
            None => break,
        }
    }
    let progress = db
        .query(db.sql.rollup_progress, &[HOURLY.into()])?
        .first()
        .map(|r| r.int(0))
        .transpose()?
        .map(from_ms)
        .transpose()?
        .unwrap_or(initial);
    Ok((rolled, progress))
}

/// The bays' statuses at a window's start and the changes in it, read by
/// `bays` and `changes` (the whole database's, or one lot's) with their
/// parameters.
fn read_window(
    db: &Database,
    (bays, bay_params): (&str, &[Value]),
    (changes, change_params): (&str, &[Value]),
) -> Result<(Vec<BayAtStart>, Vec<StatusChange>), DbError> {
    let bays: Vec<BayAtStart> = db
        .query(bays, bay_params)?
        .iter()
        .map(|r| Ok(BayAtStart { group: group(r, 0)?, bay: r.text(1)?, status: status(r, 4)? }))
        .collect::<Result<_, DbError>>()?;
    let changes: Vec<StatusChange> = db
        .query(changes, change_params)?
        .iter()
        .map(|r| {
            Ok(StatusChange {
                group: group(r, 0)?,
                bay: r.text(1)?,
                previous: status(r, 4)?,
                status: status(r, 5)?,
                at: from_ms(r.int(6)?)?,
                occupied_since: r.opt_int(7)?.map(from_ms).transpose()?,
                stay_started_at: r.opt_int(8)?.map(from_ms).transpose()?,
                overstayed: r.opt_int(9)?.is_some(),
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok((bays, changes))
}

/// Replaces the roll-up rows of `[start, end)`; answers how many groups it wrote.
fn roll_up_window(
    db: &Database,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<usize, DbError> {
    let window = [to_ms(start).into(), to_ms(end).into()];
    let (bays, changes) = read_window(db, (db.sql.bays_at, &window[..1]), (db.sql.changes_between, &window))?;
    let rollups = roll_up(start, end, &bays, &changes);
    for (key, r) in &rollups {
        db.execute(
            db.sql.upsert_rollup,
            &[
                key.lot.as_str().into(),
                to_ms(start).into(),
                key.zone.as_deref().unwrap_or_default().into(),
                key.class.as_str().into(),
                r.span_ms.into(),
                i64::from(r.bays).into(),
                r.occupied_bay_ms.into(),
                i64::from(r.peak_occupied).into(),
                i64::from(r.min_free).into(),
                i64::from(r.arrivals).into(),
                i64::from(r.departures).into(),
                r.dwell_total_ms.into(),
                i64::from(r.dwell_count).into(),
                to_ms(now).into(),
                i64::from(r.stays_started).into(),
                i64::from(r.stays_ended).into(),
                r.stay_total_ms.into(),
                serde_json::to_string(r.stay_lengths.counts()).expect("counts serialise").into(),
                i64::from(r.overstays).into(),
            ],
        )?;
    }
    Ok(rollups.len())
}

/// One bucket of one (zone, class) in the history API.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    pub start: DateTime<Utc>,
    pub zone: Option<String>,
    pub class: VehicleClass,
    pub bays: u32,
    pub mean_occupied: f64,
    pub mean_occupancy: f64,
    pub peak_occupied: u32,
    pub min_free: u32,
    pub arrivals: u32,
    pub departures: u32,
    pub mean_dwell_seconds: Option<f64>,
    /// Stays that started and ended in the bucket (a spell `unknown` within
    /// a stay neither ends nor starts one).
    pub stays_started: u32,
    pub stays_ended: u32,
    /// Of the stays that ended: mean and 90th percentile length (the
    /// percentile exact to its length bucket, parking_domain::stay_lengths),
    /// how many went past their limit, and their share.
    pub mean_stay_seconds: Option<f64>,
    pub p90_stay_seconds: Option<f64>,
    pub overstays: u32,
    pub overstay_share: Option<f64>,
    /// Counted from raw changes, not from roll-ups (in part or whole): the
    /// numbers of an hour still running, or of one the sweep has not rolled
    /// up yet.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
}

/// The hours of `[from, to)` (and before `now`) past the roll-ups, counted
/// from the lot's raw changes, hour by hour (the running one up to `now`).
fn present_rollups(
    db: &Database,
    lot: &str,
    rolled_up_to: Option<DateTime<Utc>>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, GroupKey, Rollup)>, DbError> {
    let earliest = hour_floor(now) - Duration::hours(PRESENT_HOURS - 1);
    // Where the sweep will start when it has never run: the hour of the
    // oldest change kept (no change, no roll-up).
    let start = match rolled_up_to {
        Some(rolled) => rolled,
        None => match db.query(db.sql.first_status_change, &[])?.first().map(|r| r.opt_int(0)).transpose()? {
            Some(Some(first)) => hour_floor(from_ms(first)?),
            _ => return Ok(Vec::new()),
        },
    };
    let mut hour = [start, earliest, hour_floor(from)].into_iter().max().expect("three candidates");
    let end = to.min(now);
    let mut out = Vec::new();
    while hour < end {
        let window_end = (hour + Duration::hours(1)).min(end);
        let params = [lot.into(), to_ms(hour).into(), to_ms(window_end).into()];
        let (bays, changes) =
            read_window(db, (db.sql.lot_bays_at, &params[..2]), (db.sql.lot_changes_between, &params))?;
        out.extend(roll_up(hour, window_end, &bays, &changes).into_iter().map(|(key, r)| (hour, key, r)));
        hour += Duration::hours(1);
    }
    Ok(out)
}

fn seconds(d: Duration) -> f64 {
    d.num_milliseconds() as f64 / 1e3
}

/// A roll-up's stay lengths from their JSON column (NULL: none counted).
fn stay_lengths(row: &Row, i: usize) -> Result<StayLengths, DbError> {
    let Some(json) = row.opt_text(i)? else { return Ok(StayLengths::default()) };
    serde_json::from_str::<Vec<u32>>(&json)
        .ok()
        .and_then(|counts| StayLengths::from_counts(&counts))
        .ok_or_else(|| {
            DbError::Decode(format!("stay_lengths {json:?}: not the counts of every length bucket"))
        })
}

/// At most this many hours past the roll-ups are counted from raw changes
/// when history is read (the sweep rolls hours up minutes after they close;
/// one that has not run for longer leaves older hours out until it catches up).
pub const PRESENT_HOURS: i64 = 48;

/// A lot's roll-ups of `[from, to)` in hour or day buckets (UTC), optionally
/// of one class, up to `now`: the hours not rolled up yet (the current one,
/// up to now, and any the sweep has not reached) are counted from the raw
/// changes as the sweep will count them, and their buckets are marked
/// provisional.
pub fn lot_history(
    db: &Database,
    lot: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    class_filter: Option<&VehicleClass>,
    now: DateTime<Utc>,
) -> Result<Vec<HistoryRow>, DbError> {
    // Roll-ups below the progress mark, raw changes from it on: read first,
    // so an hour the sweep rolls up meanwhile is counted once.
    let rolled_up_to =
        db.query(db.sql.rolled_up_to, &[HOURLY.into()])?.first().map(|r| r.int(0)).transpose()?.map(from_ms);
    let rolled_up_to = rolled_up_to.transpose()?;
    let rows = db.query(
        db.sql.lot_rollups,
        &[
            lot.into(),
            to_ms(bucket.floor(from)).into(),
            to_ms(rolled_up_to.map_or(to, |r| r.min(to))).into(),
            Value::opt_text(class_filter.map(VehicleClass::as_str)),
        ],
    )?;
    type Key = (DateTime<Utc>, String, VehicleClass);
    let mut buckets: BTreeMap<Key, Rollup> = BTreeMap::new();
    for r in &rows {
        let rollup = Rollup {
            span_ms: r.int(3)?,
            bays: count(r, 4)?,
            occupied_bay_ms: r.int(5)?,
            peak_occupied: count(r, 6)?,
            min_free: count(r, 7)?,
            arrivals: count(r, 8)?,
            departures: count(r, 9)?,
            dwell_total_ms: r.int(10)?,
            dwell_count: count(r, 11)?,
            stays_started: count(r, 12)?,
            stays_ended: count(r, 13)?,
            stay_total_ms: r.int(14)?,
            stay_lengths: stay_lengths(r, 15)?,
            overstays: count(r, 16)?,
        };
        let start = bucket.floor(from_ms(r.int(2)?)?);
        let entry = buckets.entry((start, r.text(0)?, class(r, 1)?)).or_default();
        *entry = entry.merge(&rollup);
    }
    let mut provisional: std::collections::BTreeSet<Key> = Default::default();
    for (hour, key, rollup) in present_rollups(db, lot, rolled_up_to, bucket.floor(from), to, now)? {
        if class_filter.is_some_and(|c| *c != key.class) {
            continue;
        }
        let bucket_key = (bucket.floor(hour), key.zone.unwrap_or_default(), key.class);
        let entry = buckets.entry(bucket_key.clone()).or_default();
        *entry = entry.merge(&rollup);
        provisional.insert(bucket_key);
    }
    Ok(buckets
        .into_iter()
        .map(|(key, r)| HistoryRow {
            provisional: provisional.contains(&key),
            start: key.0,
            zone: (!key.1.is_empty()).then_some(key.1),
            class: key.2,
            bays: r.bays,
            mean_occupied: r.mean_occupied(),
            mean_occupancy: r.mean_occupancy(),
            peak_occupied: r.peak_occupied,
            min_free: r.min_free,
            arrivals: r.arrivals,
            departures: r.departures,
            mean_dwell_seconds: r.mean_dwell().map(seconds),
            stays_started: r.stays_started,
            stays_ended: r.stays_ended,
            mean_stay_seconds: r.mean_stay().map(seconds),
            p90_stay_seconds: r.p90_stay().map(seconds),
            overstays: r.overstays,
            overstay_share: r.overstay_share(),
        })
        .collect())
}

// ---------------------------------------------------------------- retention

/// The tables retention deletes from, oldest rows first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RawTable {
    Readings,
    SensorFrames,
    StatusChanges,
    ProcessedEvents,
    OccupancyHourly,
}

impl RawTable {
    pub fn as_str(self) -> &'static str {
        match self {
            RawTable::Readings => "readings",
            RawTable::SensorFrames => "sensor_frames",
            RawTable::StatusChanges => "status_changes",
            RawTable::ProcessedEvents => "processed_events",
            RawTable::OccupancyHourly => "occupancy_hourly",
        }
    }
}

/// Deletes up to `limit` rows of `table` older than `before` in one
/// statement (its own short transaction, so ingest waits at most one
/// batch); answers how many it deleted.
pub fn delete_batch(
    db: &Database,
    table: RawTable,
    before: DateTime<Utc>,
    limit: u32,
) -> Result<usize, DbError> {
    let statement = match table {
        RawTable::Readings => db.sql.delete_readings_before,
        RawTable::SensorFrames => db.sql.delete_sensor_frames_before,
        RawTable::StatusChanges => db.sql.delete_status_changes_before,
        RawTable::ProcessedEvents => db.sql.delete_processed_events_before,
        RawTable::OccupancyHourly => db.sql.delete_rollups_before,
    };
    Ok(db.query(statement, &[to_ms(before).into(), i64::from(limit).into()])?.len())
}

// ---------------------------------------------------------------- silence

/// A bay whose sensor may have gone silent.
#[derive(Debug, Clone)]
pub struct SilentCandidate {
    pub lot: String,
    pub bay: String,
    pub model: Option<SensorModel>,
    pub last_seen: DateTime<Utc>,
}

/// Bays showing free or occupied whose sensor was last heard before `seen_before`.
pub fn silent_candidates(
    db: &Database,
    seen_before: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<SilentCandidate>, DbError> {
    db.query(db.sql.silent_bay_candidates, &[to_ms(seen_before).into(), i64::from(limit).into()])?
        .iter()
        .map(|r| {
            Ok(SilentCandidate {
                lot: r.text(0)?,
                bay: r.text(1)?,
                // An unknown model name gets the default window rather than none.
                model: r.opt_text(5)?.and_then(|m| SensorModel::parse(&m).ok()),
                last_seen: from_ms(r.int(6)?)?,
            })
        })
        .collect()
}

/// What marking a silent bay `unknown` derives.
#[derive(Debug)]
pub struct SilenceDerived {
    pub slot: SlotChanged,
    pub availability: AvailabilityChanged,
    /// The new offline alert; `None` when one was open already.
    pub alert: Option<Alert>,
}

/// Marks the bay `unknown` if its sensor is still silent past its window
/// (re-checked under the row lock, so a reading that just arrived wins),
/// records the status change and opens its offline alert, in one
/// transaction. `None` when the bay is no longer silent (or gone).
pub fn mark_silent(
    db: &Database,
    lot: &str,
    bay: &str,
    now: DateTime<Utc>,
    window: impl Fn(Option<SensorModel>) -> Duration,
) -> Result<Option<SilenceDerived>, DbError> {
    db.transaction(|db| {
        let key: [Value; 2] = [lot.into(), bay.into()];
        let Some(row) = db.query(db.sql.bay_liveness, &key)?.into_iter().next() else { return Ok(None) };
        let previous = status(&row, 0)?;
        let last_seen = row.opt_int(1)?.map(from_ms).transpose()?;
        let model = row.opt_text(2)?.and_then(|m| SensorModel::parse(&m).ok());
        let silent = parking_domain::is_silent(last_seen, now, window(model));
        if !silent || !matches!(previous, BayStatus::Free | BayStatus::Occupied) {
            return Ok(None);
        }
        let zone = row.opt_text(3)?;
        let class = class(&row, 4)?;
        let device = row.opt_text(5)?;
        db.execute(
            db.sql.set_bay_status,
            &[key[0].clone(), key[1].clone(), "unknown".into(), to_ms(now).into()],
        )?;
        if previous == BayStatus::Occupied {
            crate::stays::suspend_stay(db, lot, bay)?;
        }
        db.execute(
            db.sql.insert_status_change,
            &[
                lot.into(),
                bay.into(),
                Value::opt_text(zone.as_deref()),
                class.as_str().into(),
                previous.as_str().into(),
                "unknown".into(),
                to_ms(now).into(),
                to_ms(now).into(),
                Value::Null,
            ],
        )?;
        let silent_for = last_seen.map(|seen| (now - seen).num_minutes()).unwrap_or_default();
        let detail = format!(
            "no frame from sensor {} for {silent_for} minutes (window {} minutes for model {})",
            device.as_deref().unwrap_or("?"),
            window(model).num_minutes(),
            model.map(SensorModel::as_str).unwrap_or("unspecified")
        );
        let subject = format!("{lot}/{bay}");
        let about = AlertSubject {
            lot: Some(lot),
            bay: Some(bay),
            zone: zone.as_deref(),
            class: Some(class.as_str()),
            device: device.as_deref(),
        };
        let alert = open_alert(db, AlertKind::SensorOffline, &subject, &about, &detail, now, true)?;
        let (counts, changed_at) = crate::repo::group_counts(db, lot, zone.as_deref(), &class)?;
        Ok(Some(SilenceDerived {
            slot: SlotChanged {
                lot: lot.to_owned(),
                bay: bay.to_owned(),
                zone: zone.clone(),
                class: class.clone(),
                device: None,
                previous,
                status: BayStatus::Unknown,
                observed_at: now,
            },
            availability: AvailabilityChanged {
                lot: lot.to_owned(),
                zone,
                class,
                counts,
                changed_at: changed_at.unwrap_or(now),
            },
            alert,
        }))
    })
}
