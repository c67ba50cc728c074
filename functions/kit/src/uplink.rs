//! The reading path: one sensor uplink, or a batch of them, applied to its
//! bay exactly once, in named steps. A batch is one transaction; an event
//! it refuses (unknown device, undecodable payload) is refused before it
//! writes anything, so the others go on without it.

use chrono::{DateTime, Utc};
use parking_domain::{
    AlertKind, AvailabilityChanged, BatteryAlert, BatteryThresholds, BayStatus, Counts, DecodeError,
    Envelope, FrameKind, Observation, Outcome, SensorFrame, SensorModel, SlotChanged, Thresholds,
    VehicleClass, alert_fullness, apply_reading, battery_alert, fullness_alert, fullness_from_alerts,
};

use crate::alerts::{self, Alert, AlertSubject};
use crate::db::{Database, DbError, Row, Value, from_ms, opt_from_ms, to_ms};
use crate::repo::{class, counts_at, group_counts, status};

/// What applying one uplink did.
#[derive(Debug)]
pub enum Applied {
    /// The event was processed before (redelivery): nothing changed.
    DuplicateEvent,
    /// No bay has this device as its sensor: the event is rejected.
    UnknownDevice,
    /// The payload could not be decoded for this bay's sensor: rejected, nothing stored.
    Undecodable(DecodeError),
    /// Stored; the bay's status did not change (duplicate frame, stale, same status).
    Recorded(Outcome),
    /// A frame that proves the sensor alive but carries no status (heartbeat,
    /// start-up, diagnostic): stored, liveness refreshed.
    Alive(&'static str),
    /// The bay changed status: the derived events to publish.
    Changed(Box<Derived>),
}

/// What applying one uplink did, and the alerts it opened or closed.
#[derive(Debug)]
pub struct Uplinked {
    pub applied: Applied,
    pub alerts: Vec<Alert>,
}

/// The events a status change derives.
#[derive(Debug)]
pub struct Derived {
    pub slot: SlotChanged,
    pub availability: AvailabilityChanged,
}

/// One uplink to apply: its dedup key (CloudEvents source and id) and envelope.
#[derive(Debug, Clone)]
pub struct Uplink {
    pub event_key: String,
    pub envelope: Envelope,
}

/// Applies one uplink, exactly once per `event_key`, ordered by observation
/// time. Raw bytes are decoded here, with the codec of the bay's sensor model.
pub fn apply_uplink(
    db: &Database,
    event_key: &str,
    envelope: &Envelope,
    received_at: DateTime<Utc>,
) -> Result<Uplinked, DbError> {
    let uplink = Uplink { event_key: event_key.to_owned(), envelope: envelope.clone() };
    let mut applied = apply_uplinks(db, std::slice::from_ref(&uplink), received_at)?;
    Ok(applied.pop().expect("one result per uplink"))
}

/// Applies uplinks in order in one transaction (one commit for all of them),
/// each exactly as [`apply_uplink`] would: a later reading of a bay sees the
/// earlier ones of the same batch. Answers one result per uplink, in order.
/// A database error fails the whole batch (nothing of it is committed).
pub fn apply_uplinks(
    db: &Database,
    uplinks: &[Uplink],
    received_at: DateTime<Utc>,
) -> Result<Vec<Uplinked>, DbError> {
    let results = db.transaction(|db| {
        if let (Some(lock), true) = (db.sql.lock_counts, uplinks.len() > 1) {
            let devices: Vec<String> =
                uplinks.iter().map(|u| parking_domain::normalise_device_id(&u.envelope.device)).collect();
            db.query(lock, &[devices.join("\u{1f}").into()])?;
        }
        let mut results = Vec::with_capacity(uplinks.len());
        for uplink in uplinks {
            let mut alerts = Vec::new();
            let applied = match apply_one(db, uplink, received_at, &mut alerts) {
                Ok(applied) => applied,
                // Refused before anything was written: the batch goes on.
                Err(ApplyError::Refused(applied)) => applied,
                Err(ApplyError::Db(e)) => return Err(e),
            };
            results.push(Uplinked { applied, alerts });
        }
        Ok(results)
    })?;
    results
        .into_iter()
        .zip(uplinks)
        .map(|(mut uplinked, uplink)| {
            if let Applied::UnknownDevice = uplinked.applied {
                announce_unknown_device(db, &uplink.envelope, received_at)?;
            }
            if !matches!(uplinked.applied, Applied::Changed(_) | Applied::Recorded(_) | Applied::Alive(_)) {
                uplinked.alerts.clear();
            }
            Ok(uplinked)
        })
        .collect()
}

/// The steps of one uplink, inside the caller's transaction. Refusals come
/// first, before any write (the claim included): a device provisioned later
/// may resend the same event.
fn apply_one(
    db: &Database,
    uplink: &Uplink,
    received_at: DateTime<Utc>,
    alerts: &mut Vec<Alert>,
) -> Result<Applied, ApplyError> {
    let envelope = &uplink.envelope;
    // Stored times have millisecond precision: compare like with like.
    let observed_at = from_ms(to_ms(envelope.received_at))?;
    let device = parking_domain::normalise_device_id(&envelope.device);
    let Some(bay) = locate(db, &device)? else {
        return Err(ApplyError::Refused(Applied::UnknownDevice));
    };
    let frame = envelope.frame(bay.model).map_err(|e| ApplyError::Refused(Applied::Undecodable(e)))?;
    if !claim(db, &uplink.event_key, received_at)? {
        return Ok(Applied::DuplicateEvent);
    }
    let now =
        Reading { event_key: &uplink.event_key, device: &device, frame: &frame, observed_at, received_at };
    alerts.extend(battery_alerts(db, &bay, &now)?);
    let Some(occupied) = frame.status() else {
        return Ok(Applied::Alive(record_alive(db, &bay, &now, envelope.frame_counter)?));
    };
    let outcome = apply_reading(&bay.current, occupied, observed_at, envelope.frame_counter);
    record_reading(db, &bay, &now, occupied, envelope.frame_counter, &outcome)?;
    let next = match outcome {
        Outcome::Changed(next) | Outcome::Refreshed(next) => next,
        other @ (Outcome::Duplicate | Outcome::Stale) => {
            touch(db, &bay, received_at, &frame)?;
            return Ok(Applied::Recorded(other));
        }
    };
    observe(db, &bay, &now, &next)?;
    if next.status == bay.current.status {
        return Ok(Applied::Recorded(Outcome::Refreshed(next)));
    }
    let derived = change_status(db, &bay, &now, next.status)?;
    alerts.extend(update_fullness_alerts(db, &bay.lot, &bay.class, received_at)?);
    Ok(Applied::Changed(Box::new(derived)))
}

/// A bay as the reading path sees it (its row locked on PostgreSQL).
struct Bay {
    lot: String,
    id: String,
    zone: Option<String>,
    class: VehicleClass,
    current: Observation,
    model: Option<SensorModel>,
    battery: Option<f64>,
}

impl Bay {
    fn key(&self) -> [Value; 2] {
        [self.lot.as_str().into(), self.id.as_str().into()]
    }
}

/// The reading being applied.
struct Reading<'a> {
    event_key: &'a str,
    device: &'a str,
    frame: &'a SensorFrame,
    observed_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

/// The bay whose sensor is `device`; refused when its sensor model is unknown.
fn locate(db: &Database, device: &str) -> Result<Option<Bay>, ApplyError> {
    let Some(row) = db.query(db.sql.bay_by_sensor, &[device.into()])?.into_iter().next() else {
        return Ok(None);
    };
    bay_from(&row).map(Some)
}

fn bay_from(row: &Row) -> Result<Bay, ApplyError> {
    let model = match row.opt_text(7)? {
        Some(m) => Some(SensorModel::parse(&m).map_err(|e| ApplyError::Refused(Applied::Undecodable(e)))?),
        None => None,
    };
    Ok(Bay {
        lot: row.text(0)?,
        id: row.text(1)?,
        zone: row.opt_text(2)?,
        class: class(row, 3)?,
        current: Observation {
            status: status(row, 4)?,
            observed_at: opt_from_ms(row.opt_int(5)?)?,
            seq: row.opt_int(6)?.and_then(|s| u32::try_from(s).ok()),
        },
        model,
        battery: row.opt_real(8)?,
    })
}

/// Claims the event: false when it was processed before (a redelivery).
fn claim(db: &Database, event_key: &str, received_at: DateTime<Utc>) -> Result<bool, DbError> {
    Ok(!db.query(db.sql.claim_event, &[event_key.into(), to_ms(received_at).into()])?.is_empty())
}

/// Opens or closes the bay's low-battery alert as its voltage crosses the thresholds.
fn battery_alerts(db: &Database, bay: &Bay, now: &Reading<'_>) -> Result<Vec<Alert>, DbError> {
    let Some(volts) = now.frame.battery else { return Ok(Vec::new()) };
    let subject = format!("{}/{}", bay.lot, bay.id);
    let thresholds = BatteryThresholds::default();
    match battery_alert(bay.battery, volts, &thresholds) {
        BatteryAlert::Open => {
            let about = AlertSubject {
                lot: Some(&bay.lot),
                bay: Some(&bay.id),
                zone: bay.zone.as_deref(),
                class: Some(bay.class.as_str()),
                device: Some(now.device),
            };
            let detail =
                format!("battery at {volts:.2} V, below {:.2} V: replace it soon", thresholds.low_below);
            Ok(Vec::from_iter(alerts::open_alert(
                db,
                AlertKind::BatteryLow,
                &subject,
                &about,
                &detail,
                now.received_at,
                true,
            )?))
        }
        BatteryAlert::Close => {
            Ok(Vec::from_iter(alerts::close_alert(db, AlertKind::BatteryLow, &subject, now.received_at)?))
        }
        BatteryAlert::Keep => Ok(Vec::new()),
    }
}

/// Stores a frame without a status (heartbeat, start-up, diagnostic) and
/// refreshes the bay's liveness; answers the frame's kind.
fn record_alive(
    db: &Database,
    bay: &Bay,
    now: &Reading<'_>,
    frame_counter: Option<u32>,
) -> Result<&'static str, DbError> {
    let frame = now.frame;
    let kind = match &frame.kind {
        FrameKind::Heartbeat { .. } => "heartbeat",
        FrameKind::Startup { .. } => "startup",
        FrameKind::Diagnostic { .. } => "diagnostic",
        FrameKind::Status { .. } => "status",
    };
    let detail = match &frame.kind {
        FrameKind::Diagnostic { what } => Some(what.clone()),
        FrameKind::Startup { firmware, reset_cause, .. } => Some(format!(
            "firmware {}, reset cause {}",
            firmware.map(|f| f.to_string()).unwrap_or_else(|| "unknown".into()),
            reset_cause.map(|r| format!("{r:?}")).unwrap_or_else(|| "unknown".into())
        )),
        _ => None,
    };
    let [lot, id] = bay.key();
    db.execute(
        db.sql.insert_sensor_frame,
        &[
            now.event_key.into(),
            now.device.into(),
            lot,
            id,
            kind.into(),
            frame.reported_occupancy().map_or(Value::Null, Value::Bool),
            Value::opt_int(frame_counter.map(i64::from)),
            to_ms(now.observed_at).into(),
            to_ms(now.received_at).into(),
            Value::opt_real(frame.battery),
            Value::opt_real(frame.temperature),
            Value::opt_text(detail.as_deref()),
        ],
    )?;
    touch(db, bay, now.received_at, frame)?;
    Ok(kind)
}

/// Stores the reading with what it did to the bay.
fn record_reading(
    db: &Database,
    bay: &Bay,
    now: &Reading<'_>,
    occupied: bool,
    frame_counter: Option<u32>,
    outcome: &Outcome,
) -> Result<(), DbError> {
    let outcome = match outcome {
        Outcome::Changed(_) => "changed",
        Outcome::Refreshed(_) => "refreshed",
        Outcome::Duplicate => "duplicate",
        Outcome::Stale => "stale",
    };
    let [lot, id] = bay.key();
    db.execute(
        db.sql.insert_reading,
        &[
            now.event_key.into(),
            now.device.into(),
            lot,
            id,
            Value::Bool(occupied),
            Value::opt_int(frame_counter.map(i64::from)),
            to_ms(now.observed_at).into(),
            to_ms(now.received_at).into(),
            Value::opt_real(now.frame.battery),
            outcome.into(),
            Value::opt_real(now.frame.temperature),
        ],
    )?;
    Ok(())
}

/// The bay's newest observation, liveness, battery and temperature.
fn observe(db: &Database, bay: &Bay, now: &Reading<'_>, next: &Observation) -> Result<(), DbError> {
    let [lot, id] = bay.key();
    db.execute(
        db.sql.set_bay_observation,
        &[
            lot,
            id,
            Value::opt_int(next.observed_at.map(to_ms)),
            Value::opt_int(next.seq.map(i64::from)),
            to_ms(now.received_at).into(),
            Value::opt_real(now.frame.battery),
            Value::opt_real(now.frame.temperature),
        ],
    )?;
    Ok(())
}

/// Sets the bay's status, keeps the change in its history and answers the
/// derived events with the counts the triggers keep.
fn change_status(db: &Database, bay: &Bay, now: &Reading<'_>, next: BayStatus) -> Result<Derived, DbError> {
    let [lot, id] = bay.key();
    db.execute(db.sql.set_bay_status, &[lot, id, next.as_str().into(), to_ms(now.observed_at).into()])?;
    db.execute(
        db.sql.insert_status_change,
        &[
            bay.lot.as_str().into(),
            bay.id.as_str().into(),
            Value::opt_text(bay.zone.as_deref()),
            bay.class.as_str().into(),
            bay.current.status.as_str().into(),
            next.as_str().into(),
            to_ms(now.observed_at).into(),
            to_ms(now.received_at).into(),
            now.event_key.into(),
        ],
    )?;
    let (counts, changed_at) = group_counts(db, &bay.lot, bay.zone.as_deref(), &bay.class)?;
    Ok(Derived {
        slot: SlotChanged {
            lot: bay.lot.clone(),
            bay: bay.id.clone(),
            zone: bay.zone.clone(),
            class: bay.class.clone(),
            device: Some(now.device.to_owned()),
            previous: bay.current.status,
            status: next,
            observed_at: now.observed_at,
        },
        availability: AvailabilityChanged {
            lot: bay.lot.clone(),
            zone: bay.zone.clone(),
            class: bay.class.clone(),
            counts,
            changed_at: changed_at.unwrap_or(now.observed_at),
        },
    })
}

/// Kept although the reading is refused; the next sweep announces it.
fn announce_unknown_device(db: &Database, envelope: &Envelope, now: DateTime<Utc>) -> Result<(), DbError> {
    let device = parking_domain::normalise_device_id(&envelope.device);
    alerts::open_alert(
        db,
        AlertKind::UnknownDevice,
        &device,
        &AlertSubject { device: Some(&device), ..Default::default() },
        "a device reports, but no bay has it as its sensor: provision it or remove it",
        now,
        false,
    )?;
    Ok(())
}

/// Opens and closes the lot-full and lot-almost-full alerts of a (lot,
/// class) as its counts move, with the sign's hysteresis: the open alert is
/// the state the sign showed before.
fn update_fullness_alerts(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    now: DateTime<Utc>,
) -> Result<Vec<Alert>, DbError> {
    let row = db.query(db.sql.lot_class_counts, &[lot.into(), class.as_str().into()])?;
    let counts = match row.first() {
        Some(row) => counts_at(row, 0)?,
        None => Counts::default(),
    };
    let subject = format!("{lot}/{class}");
    let previous = fullness_from_alerts(&alerts::open_alert_kinds(db, &subject)?);
    let next = alert_fullness(previous, &counts, &Thresholds::default());
    if next == previous {
        return Ok(Vec::new());
    }
    let mut changed = Vec::new();
    if let Some(kind) = fullness_alert(previous) {
        changed.extend(alerts::close_alert(db, kind, &subject, now)?);
    }
    if let Some(kind) = fullness_alert(next) {
        let detail = format!(
            "{} of {} usable {class} bays taken ({} free)",
            counts.occupied,
            counts.usable(),
            counts.free
        );
        let about = AlertSubject { lot: Some(lot), class: Some(class.as_str()), ..Default::default() };
        changed.extend(alerts::open_alert(db, kind, &subject, &about, &detail, now, true)?);
    }
    Ok(changed)
}

/// Any frame proves the sensor alive, and may carry battery and temperature.
fn touch(db: &Database, bay: &Bay, received_at: DateTime<Utc>, frame: &SensorFrame) -> Result<(), DbError> {
    let [lot, id] = bay.key();
    db.execute(
        db.sql.touch_bay,
        &[
            lot,
            id,
            to_ms(received_at).into(),
            Value::opt_real(frame.battery),
            Value::opt_real(frame.temperature),
        ],
    )?;
    Ok(())
}

/// Lets the transaction roll back for a reason that is not a database error.
enum ApplyError {
    /// Refused without storing anything.
    Refused(Applied),
    Db(DbError),
}

impl From<DbError> for ApplyError {
    fn from(e: DbError) -> Self {
        ApplyError::Db(e)
    }
}
