//! Lots, bays and readings as the components use them. All the database
//! work of a request happens here, inside one transaction where it writes.

use chrono::{DateTime, Utc};
use parking_domain::{
    AlertKind, BatteryAlert, BatteryThresholds, Thresholds, alert_fullness, battery_alert, fullness_alert,
    fullness_from_alerts,
};
use parking_domain::{
    AvailabilityChanged, BayStatus, Counts, DecodeError, Envelope, FrameKind, GroupCount, LotAvailability,
    LotSpec, Observation, Outcome, SensorFrame, SensorModel, SlotChanged, VehicleClass, apply_reading,
    summarise_groups,
};
use serde::Serialize;

use crate::alerts::{self, AlertSubject};
use crate::db::{Database, DbError, Row, Value, from_ms, opt_from_ms, to_ms};

fn status(row: &Row, i: usize) -> Result<BayStatus, DbError> {
    let s = row.text(i)?;
    BayStatus::parse(&s).map_err(|e| DbError::Decode(e.to_string()))
}

fn class(row: &Row, i: usize) -> Result<VehicleClass, DbError> {
    let s = row.text(i)?;
    VehicleClass::parse(&s).map_err(|e| DbError::Decode(e.to_string()))
}

// ---------------------------------------------------------------- lots

/// What a replace did, for the admin API's answer.
#[derive(Debug, Serialize)]
pub struct LotWritten {
    pub lot: String,
    pub name: String,
    pub created: bool,
    pub bays: usize,
    pub removed: usize,
}

/// Creates or replaces a lot's bays. Bays that keep their sensor keep their
/// live state; a bay whose sensor changed starts `unknown`.
pub fn put_lot(db: &Database, lot: &str, spec: &LotSpec, now: DateTime<Utc>) -> Result<LotWritten, DbError> {
    db.transaction(|db| {
        let created = db.query(db.sql.lot_name, &[lot.into()])?.is_empty();
        db.execute(db.sql.upsert_lot, &[lot.into(), spec.name.as_str().into(), to_ms(now).into()])?;

        let existing: Vec<(String, Option<String>)> = db
            .query(db.sql.lot_bay_sensors, &[lot.into()])?
            .iter()
            .map(|r| Ok((r.text(0)?, r.opt_text(1)?)))
            .collect::<Result<_, DbError>>()?;
        db.execute(db.sql.release_lot_sensors, &[lot.into()])?;

        let mut removed = 0;
        for (bay, _) in &existing {
            if !spec.bays.iter().any(|b| &b.id == bay) {
                db.execute(db.sql.delete_bay, &[lot.into(), bay.as_str().into()])?;
                removed += 1;
            }
        }
        for bay in &spec.bays {
            let sensor = bay.sensor.as_deref().map(parking_domain::normalise_device_id);
            let previous_sensor = existing.iter().find(|(id, _)| id == &bay.id).map(|(_, s)| s.clone());
            let statement = match previous_sensor {
                Some(prev) if prev == sensor => db.sql.upsert_bay_keep_state,
                _ => db.sql.upsert_bay_reset_state,
            };
            db.execute(
                statement,
                &[
                    lot.into(),
                    bay.id.as_str().into(),
                    Value::opt_text(bay.zone.as_deref()),
                    bay.class.as_str().into(),
                    Value::opt_text(sensor.as_deref()),
                    Value::opt_text(bay.model.as_deref()),
                    to_ms(now).into(),
                ],
            )
            .map_err(|e| match e {
                DbError::Conflict(_) => DbError::Conflict(format!(
                    "sensor {:?} of bay {:?} is already bound to a bay of another lot; \
                     remove it there first",
                    bay.sensor.as_deref().unwrap_or_default(),
                    bay.id
                )),
                other => other,
            })?;
        }
        Ok(LotWritten {
            lot: lot.to_owned(),
            name: spec.name.clone(),
            created,
            bays: spec.bays.len(),
            removed,
        })
    })
}

/// A lot's name, or `None` for an unknown lot.
pub fn lot_name(db: &Database, lot: &str) -> Result<Option<String>, DbError> {
    db.query(db.sql.lot_name, &[lot.into()])?.first().map(|r| r.text(0)).transpose()
}

/// Whether a lot exists.
pub fn lot_exists(db: &Database, lot: &str) -> Result<bool, DbError> {
    Ok(!db.query(db.sql.lot_name, &[lot.into()])?.is_empty())
}

/// Deletes a lot and its bays (history stays). Answers whether it existed.
pub fn delete_lot(db: &Database, lot: &str) -> Result<bool, DbError> {
    db.transaction(|db| {
        if db.query(db.sql.lot_name, &[lot.into()])?.is_empty() {
            return Ok(false);
        }
        db.execute(db.sql.delete_lot_bays, &[lot.into()])?;
        db.execute(db.sql.delete_lot, &[lot.into()])?;
        Ok(true)
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotSummary {
    pub lot: String,
    pub name: String,
    pub updated_at: Option<DateTime<Utc>>,
    pub classes: std::collections::BTreeMap<VehicleClass, Counts>,
}

/// Every lot with its counts per vehicle class.
pub fn list_lots(db: &Database) -> Result<Vec<LotSummary>, DbError> {
    let mut lots: Vec<LotSummary> = db
        .query(db.sql.list_lots, &[])?
        .iter()
        .map(|r| {
            Ok(LotSummary {
                lot: r.text(0)?,
                name: r.text(1)?,
                updated_at: None,
                classes: Default::default(),
            })
        })
        .collect::<Result<_, DbError>>()?;
    for row in db.query(db.sql.count_all_lots, &[])? {
        let lot_id = row.text(0)?;
        let Some(lot) = lots.iter_mut().find(|l| l.lot == lot_id) else { continue };
        let counts = lot.classes.entry(class(&row, 2)?).or_default();
        *counts = counts.plus(&counts_at(&row, 3)?);
        lot.updated_at = lot.updated_at.max(opt_from_ms(row.opt_int(8)?)?);
    }
    Ok(lots)
}

/// A lot's live availability, or `None` for an unknown lot.
pub fn lot_availability(db: &Database, lot: &str) -> Result<Option<LotAvailability>, DbError> {
    if db.query(db.sql.lot_name, &[lot.into()])?.is_empty() {
        return Ok(None);
    }
    // Kept per group in the counts table: a handful of rows whatever the lot's size.
    let rows = db.query(db.sql.lot_group_counts, &[lot.into()])?;
    let groups: Vec<(String, VehicleClass, Counts, Option<DateTime<Utc>>)> = rows
        .iter()
        .map(|r| Ok((r.text(0)?, class(r, 1)?, counts_at(r, 2)?, opt_from_ms(r.opt_int(7)?)?)))
        .collect::<Result<_, DbError>>()?;
    Ok(Some(summarise_groups(
        lot,
        groups.iter().map(|(zone, class, counts, changed_at)| GroupCount {
            zone: (!zone.is_empty()).then_some(zone.as_str()),
            class,
            counts: *counts,
            changed_at: *changed_at,
        }),
    )))
}

/// Counts from five columns (total, free, occupied, unknown, closed) from `first` on.
fn counts_at(row: &Row, first: usize) -> Result<Counts, DbError> {
    let n = |i: usize| -> Result<u32, DbError> {
        u32::try_from(row.int(first + i)?).map_err(|e| DbError::Decode(format!("a bay count: {e}")))
    };
    let counts = Counts { total: n(0)?, free: n(1)?, occupied: n(2)?, unknown: n(3)?, closed: n(4)? };
    if !counts.is_consistent() {
        return Err(DbError::Decode(format!("inconsistent bay counts {counts:?}")));
    }
    Ok(counts)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BayView {
    pub id: String,
    pub zone: Option<String>,
    pub class: VehicleClass,
    pub sensor: Option<String>,
    pub model: Option<String>,
    pub status: BayStatus,
    pub status_changed_at: Option<DateTime<Utc>>,
    pub observed_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
    pub battery: Option<f64>,
}

/// A lot's definition with each bay's live state, or `None` for an unknown lot.
pub fn lot_bays(db: &Database, lot: &str) -> Result<Option<(String, Vec<BayView>)>, DbError> {
    let Some(name_row) = db.query(db.sql.lot_name, &[lot.into()])?.into_iter().next() else {
        return Ok(None);
    };
    let bays = db
        .query(db.sql.lot_bays, &[lot.into()])?
        .iter()
        .map(|r| {
            Ok(BayView {
                id: r.text(0)?,
                zone: r.opt_text(1)?,
                class: class(r, 2)?,
                sensor: r.opt_text(3)?,
                model: r.opt_text(4)?,
                status: status(r, 5)?,
                status_changed_at: opt_from_ms(r.opt_int(6)?)?,
                observed_at: opt_from_ms(r.opt_int(7)?)?,
                last_seen_at: opt_from_ms(r.opt_int(8)?)?,
                battery: r.opt_real(9)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(Some((name_row.text(0)?, bays)))
}

// ---------------------------------------------------------------- readings

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
    pub alerts: Vec<crate::alerts::Alert>,
}

/// The events a status change derives.
#[derive(Debug)]
pub struct Derived {
    pub slot: SlotChanged,
    pub availability: AvailabilityChanged,
}

/// Applies one uplink, exactly once per `event_key`, ordered by observation
/// time. Raw bytes are decoded here, with the codec of the bay's sensor model.
pub fn apply_uplink(
    db: &Database,
    event_key: &str,
    envelope: &Envelope,
    received_at: DateTime<Utc>,
) -> Result<Uplinked, DbError> {
    // Stored times have millisecond precision: compare like with like.
    let observed_at = from_ms(to_ms(envelope.received_at))?;
    let device = parking_domain::normalise_device_id(&envelope.device);
    let mut alerts = Vec::new();
    let applied = db
        .transaction(|db| {
            if db.query(db.sql.claim_event, &[event_key.into(), to_ms(received_at).into()])?.is_empty() {
                return Ok(Applied::DuplicateEvent);
            }
            let Some(bay) = db.query(db.sql.bay_by_sensor, &[device.as_str().into()])?.into_iter().next()
            else {
                // Rolled back with the claim: a device provisioned later may resend.
                return Err(ApplyError::Refused(Applied::UnknownDevice));
            };
            let (lot, bay_id, zone) = (bay.text(0)?, bay.text(1)?, bay.opt_text(2)?);
            let class = class(&bay, 3)?;
            let current = Observation {
                status: status(&bay, 4)?,
                observed_at: opt_from_ms(bay.opt_int(5)?)?,
                seq: bay.opt_int(6)?.and_then(|s| u32::try_from(s).ok()),
            };
            let model = match bay.opt_text(7)? {
                Some(m) => {
                    Some(SensorModel::parse(&m).map_err(|e| ApplyError::Refused(Applied::Undecodable(e)))?)
                }
                None => None,
            };
            let frame = envelope.frame(model).map_err(|e| ApplyError::Refused(Applied::Undecodable(e)))?;
            let key: [Value; 2] = [lot.as_str().into(), bay_id.as_str().into()];
            if let Some(volts) = frame.battery {
                let about = AlertSubject {
                    lot: Some(&lot),
                    bay: Some(&bay_id),
                    zone: zone.as_deref(),
                    class: Some(class.as_str()),
                    device: Some(&device),
                };
                let subject = format!("{lot}/{bay_id}");
                let thresholds = BatteryThresholds::default();
                match battery_alert(bay.opt_real(8)?, volts, &thresholds) {
                    BatteryAlert::Open => {
                        let detail = format!(
                            "battery at {volts:.2} V, below {:.2} V: replace it soon",
                            thresholds.low_below
                        );
                        alerts.extend(alerts::open_alert(
                            db,
                            AlertKind::BatteryLow,
                            &subject,
                            &about,
                            &detail,
                            received_at,
                            true,
                        )?);
                    }
                    BatteryAlert::Close => {
                        alerts.extend(alerts::close_alert(db, AlertKind::BatteryLow, &subject, received_at)?)
                    }
                    BatteryAlert::Keep => {}
                }
            }
            let Some(occupied) = frame.status() else {
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
                db.execute(
                    db.sql.insert_sensor_frame,
                    &[
                        event_key.into(),
                        device.as_str().into(),
                        key[0].clone(),
                        key[1].clone(),
                        kind.into(),
                        frame.reported_occupancy().map_or(Value::Null, Value::Bool),
                        Value::opt_int(envelope.frame_counter.map(i64::from)),
                        to_ms(observed_at).into(),
                        to_ms(received_at).into(),
                        Value::opt_real(frame.battery),
                        Value::opt_real(frame.temperature),
                        Value::opt_text(detail.as_deref()),
                    ],
                )?;
                touch(db, &key, received_at, &frame)?;
                return Ok(Applied::Alive(kind));
            };
            let outcome = apply_reading(&current, occupied, observed_at, envelope.frame_counter);
            let outcome_name = match &outcome {
                Outcome::Changed(_) => "changed",
                Outcome::Refreshed(_) => "refreshed",
                Outcome::Duplicate => "duplicate",
                Outcome::Stale => "stale",
            };
            db.execute(
                db.sql.insert_reading,
                &[
                    event_key.into(),
                    device.as_str().into(),
                    key[0].clone(),
                    key[1].clone(),
                    Value::Bool(occupied),
                    Value::opt_int(envelope.frame_counter.map(i64::from)),
                    to_ms(observed_at).into(),
                    to_ms(received_at).into(),
                    Value::opt_real(frame.battery),
                    outcome_name.into(),
                    Value::opt_real(frame.temperature),
                ],
            )?;
            let next = match outcome {
                Outcome::Changed(next) | Outcome::Refreshed(next) => next,
                other @ (Outcome::Duplicate | Outcome::Stale) => {
                    touch(db, &key, received_at, &frame)?;
                    return Ok(Applied::Recorded(other));
                }
            };
            db.execute(
                db.sql.set_bay_observation,
                &[
                    key[0].clone(),
                    key[1].clone(),
                    Value::opt_int(next.observed_at.map(to_ms)),
                    Value::opt_int(next.seq.map(i64::from)),
                    to_ms(received_at).into(),
                    Value::opt_real(frame.battery),
                    Value::opt_real(frame.temperature),
                ],
            )?;
            if next.status == current.status {
                return Ok(Applied::Recorded(Outcome::Refreshed(next)));
            }
            db.execute(
                db.sql.set_bay_status,
                &[key[0].clone(), key[1].clone(), next.status.as_str().into(), to_ms(observed_at).into()],
            )?;
            db.execute(
                db.sql.insert_status_change,
                &[
                    lot.as_str().into(),
                    bay_id.as_str().into(),
                    Value::opt_text(zone.as_deref()),
                    class.as_str().into(),
                    current.status.as_str().into(),
                    next.status.as_str().into(),
                    to_ms(observed_at).into(),
                    to_ms(received_at).into(),
                    event_key.into(),
                ],
            )?;
            let (counts, changed_at) = group_counts(db, &lot, zone.as_deref(), &class)?;
            alerts.extend(update_fullness_alerts(db, &lot, &class, received_at)?);
            Ok(Applied::Changed(Box::new(Derived {
                slot: SlotChanged {
                    lot: lot.clone(),
                    bay: bay_id,
                    zone: zone.clone(),
                    class: class.clone(),
                    device: Some(device.clone()),
                    previous: current.status,
                    status: next.status,
                    observed_at,
                },
                availability: AvailabilityChanged {
                    lot,
                    zone,
                    class,
                    counts,
                    changed_at: changed_at.unwrap_or(observed_at),
                },
            })))
        })
        .or_else(|e: ApplyError| match e {
            ApplyError::Refused(applied) => Ok(applied),
            ApplyError::Db(e) => Err(e),
        })?;
    if let Applied::UnknownDevice = applied {
        // Kept although the reading is refused; the next sweep announces it.
        alerts::open_alert(
            db,
            AlertKind::UnknownDevice,
            &device,
            &AlertSubject { device: Some(&device), ..Default::default() },
            "a device reports, but no bay has it as its sensor: provision it or remove it",
            received_at,
            false,
        )?;
    }
    if !matches!(applied, Applied::Changed(_) | Applied::Recorded(_) | Applied::Alive(_)) {
        alerts.clear();
    }
    Ok(Uplinked { applied, alerts })
}

/// Opens and closes the lot-full and lot-almost-full alerts of a (lot,
/// class) as its counts move, with the sign's hysteresis: the open alert is
/// the state the sign showed before.
fn update_fullness_alerts(
    db: &Database,
    lot: &str,
    class: &VehicleClass,
    now: DateTime<Utc>,
) -> Result<Vec<alerts::Alert>, DbError> {
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
fn touch(
    db: &Database,
    key: &[Value; 2],
    received_at: DateTime<Utc>,
    frame: &SensorFrame,
) -> Result<(), DbError> {
    db.execute(
        db.sql.touch_bay,
        &[
            key[0].clone(),
            key[1].clone(),
            to_ms(received_at).into(),
            Value::opt_real(frame.battery),
            Value::opt_real(frame.temperature),
        ],
    )?;
    Ok(())
}

/// Counts for one (lot, zone, class) and when any of its bays last changed.
pub(crate) fn group_counts(
    db: &Database,
    lot: &str,
    zone: Option<&str>,
    class: &VehicleClass,
) -> Result<(Counts, Option<DateTime<Utc>>), DbError> {
    let rows =
        db.query(db.sql.group_counts, &[lot.into(), zone.unwrap_or_default().into(), class.as_str().into()])?;
    match rows.first() {
        Some(row) => Ok((counts_at(row, 0)?, opt_from_ms(row.opt_int(5)?)?)),
        None => Ok((Counts::default(), None)),
    }
}

/// Lets the transaction roll back for a reason that is not a database error.
enum ApplyError {
    /// Refused without storing anything (the claim of the event is rolled back too).
    Refused(Applied),
    Db(DbError),
}

impl From<DbError> for ApplyError {
    fn from(e: DbError) -> Self {
        ApplyError::Db(e)
    }
}
