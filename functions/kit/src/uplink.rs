//! The reading path: one sensor uplink, or a batch of them, applied to its
//! bay exactly once, in named steps. A batch is one transaction with
//! set-based statements: a handful for the whole batch, whatever its size.
//! The rules run in memory over rows read (and locked) once; an event the
//! batch refuses (unknown device, undecodable payload) leaves nothing of its
//! own (on PostgreSQL the load's claim of it is given back by the write), so
//! the others go on without it and a redelivery is refused again.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use parking_domain::events::Overstay;
use parking_domain::{
    AlertKind, AvailabilityChanged, BatteryAlert, BatteryThresholds, BayStatus, Counts, DecodeError,
    Envelope, FrameKind, Fullness, Observation, Outcome, SensorFrame, SensorModel, SlotChanged, Stay,
    Thresholds, VehicleClass, alert_fullness, apply_reading, battery_alert, fullness_alert,
    fullness_from_alerts,
};
use serde_json::json;

use crate::alerts::{self, Alert, AlertSubject};
use crate::db::{Database, DbError, Row, from_ms, opt_from_ms, to_ms};
use crate::repo::{class, counts_at, status};
use crate::stays::{self, BayRef, StoredStay};

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
    /// A stay that ended past its limit before a sweep raised it: raised by
    /// this change (with its event id, see [`crate::stays::overstay_event_id`]).
    pub overstay: Option<(String, Overstay)>,
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
        let mut batch = Batch::load(db, uplinks, received_at)?;
        let (mut results, changes) = batch.apply(db, uplinks)?;
        batch.settle(db, changes, &mut results)?;
        Ok::<_, DbError>(results)
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

/// A batch in flight: the rows it read (and locked) once, the state the
/// rules move in memory, and the rows it writes at the end.
///
/// Locks are taken bays first, then counts, each in key order, as every
/// writer of bays does (their triggers take the counts). Counts are shared
/// by every reading of a lot, so they are locked last and only when a bay
/// changes: concurrent batches of one lot serialise only on writing their
/// bays and committing.
struct Batch {
    received_at: DateTime<Utc>,
    /// The batch's devices, as the statement parameter.
    devices: crate::db::Value,
    /// The bays of the batch's devices, by sensor (the normalised device id).
    bays: HashMap<String, BayState>,
    /// The counts of every group of those bays' lots, once locked.
    groups: HashMap<GroupKey, Group>,
    /// What the sign of a (lot, class) shows, by alert subject, once read.
    fullness: HashMap<String, Fullness>,
    /// The event keys the load claimed, where it claims ([`Statements::load_batch`]).
    ///
    /// [`Statements::load_batch`]: crate::sql::Statements::load_batch
    claimed: Option<HashSet<String>>,
    /// Keys the load claimed for events refused after it: given back when the batch writes.
    unclaimed: Vec<String>,
    rows: Rows,
}

/// (lot, zone or '', class), as the counts table keys a group.
type GroupKey = (String, String, String);

struct Group {
    counts: Counts,
    changed_at: Option<DateTime<Utc>>,
}

/// The rows a batch inserts, in its order.
#[derive(Default)]
struct Rows {
    readings: Vec<serde_json::Value>,
    frames: Vec<serde_json::Value>,
    changes: Vec<serde_json::Value>,
}

/// A bay as the reading path sees it (its row locked on PostgreSQL).
struct Bay {
    lot: String,
    id: String,
    zone: Option<String>,
    class: VehicleClass,
    current: Observation,
    /// Its sensor's codec; an unknown model refuses the bay's uplinks.
    model: Result<Option<SensorModel>, DecodeError>,
    battery: Option<f64>,
    /// Its time limit and current stay.
    stay: StoredStay,
}

/// A bay and what the batch did to it.
struct BayState {
    bay: Bay,
    /// A reading reached the bay: its row is written back.
    touched: bool,
    temperature: Option<f64>,
    status_changed_at: Option<DateTime<Utc>>,
}

/// An uplink past the refusals: its bay exists and its frame decoded.
struct Prepared {
    device: String,
    frame: SensorFrame,
    observed_at: DateTime<Utc>,
}

/// The reading being applied.
struct Reading<'a> {
    event_key: &'a str,
    device: &'a str,
    frame: &'a SensorFrame,
    frame_counter: Option<u32>,
    observed_at: DateTime<Utc>,
    received_at: DateTime<Utc>,
}

impl Batch {
    /// Reads and locks the batch's bays, in one statement; where the
    /// dialect can, the same statement claims the events of those bays.
    fn load(db: &Database, uplinks: &[Uplink], received_at: DateTime<Utc>) -> Result<Self, DbError> {
        let mut seen = HashSet::new();
        let devices: Vec<String> = uplinks
            .iter()
            .map(|u| parking_domain::normalise_device_id(&u.envelope.device))
            .filter(|d| seen.insert(d.clone()))
            .collect();
        let devices = json_param(&devices);
        let (rows, claimed) = match db.sql.load_batch {
            Some(load_batch) => {
                let mut seen = HashSet::new();
                let events: Vec<serde_json::Value> = uplinks
                    .iter()
                    .filter(|u| seen.insert(u.event_key.as_str()))
                    .map(|u| {
                        json!({ "key": u.event_key, "device": parking_domain::normalise_device_id(&u.envelope.device) })
                    })
                    .collect();
                let params = [devices.clone(), json_param(&events), to_ms(received_at).into()];
                let (bays, claims): (Vec<Row>, Vec<Row>) = db
                    .query(load_batch, &params)?
                    .into_iter()
                    .partition(|r| !matches!(r.opt_text(0), Ok(None)));
                let claimed = claims.iter().map(|r| r.text(CLAIMED_KEY)).collect::<Result<_, _>>()?;
                (bays, Some(claimed))
            }
            None => (db.query(db.sql.bays_by_sensors, std::slice::from_ref(&devices))?, None),
        };
        let bays = rows
            .iter()
            .map(|r| {
                let state = BayState {
                    bay: bay_from(r)?,
                    touched: false,
                    temperature: None,
                    status_changed_at: None,
                };
                Ok((r.text(0)?, state))
            })
            .collect::<Result<_, DbError>>()?;
        Ok(Batch {
            received_at,
            devices,
            bays,
            groups: HashMap::new(),
            fullness: HashMap::new(),
            claimed,
            unclaimed: Vec::new(),
            rows: Rows::default(),
        })
    }

    /// The batch's uplinks in order: refusals, then one claim for all the
    /// others, then the rules for each one claimed. Answers the results and
    /// the status changes, by result, still to count ([`Batch::settle`]).
    fn apply(&mut self, db: &Database, uplinks: &[Uplink]) -> Result<(Vec<Uplinked>, Vec<Pending>), DbError> {
        let prepared = uplinks.iter().map(|u| self.prepare(u)).collect::<Result<Vec<_>, DbError>>()?;
        let fresh = self.claim(db, uplinks, &prepared)?;
        let mut results = Vec::with_capacity(uplinks.len());
        let mut changes = Vec::new();
        for ((uplink, prepared), fresh) in uplinks.iter().zip(prepared).zip(fresh) {
            let mut alerts = Vec::new();
            let applied = match prepared {
                Err(refused) => refused,
                Ok(_) if !fresh => Applied::DuplicateEvent,
                Ok(prepared) => match self.apply_one(db, uplink, prepared, &mut alerts)? {
                    Step::Done(applied) => applied,
                    Step::Changed(slot, overstay) => {
                        changes.push((results.len(), slot, overstay));
                        // Replaced by the change with its counts when settled.
                        Applied::DuplicateEvent
                    }
                },
            };
            results.push(Uplinked { applied, alerts });
        }
        Ok((results, changes))
    }

    /// Writes what the batch did, then counts its status changes in order,
    /// from the counts as they were before it (locked): each change answers
    /// its group's availability right after it and moves its lot's full and
    /// almost-full alerts. The bays' triggers keep the counts table. Where
    /// the dialect can, the writes and the counts are one statement; else
    /// the history is written, the counts read, then the bays written.
    fn settle(
        &mut self,
        db: &Database,
        changes: Vec<Pending>,
        results: &mut [Uplinked],
    ) -> Result<(), DbError> {
        let mut bays: Vec<(&String, &BayState)> = self.bays.iter().filter(|(_, s)| s.touched).collect();
        bays.sort_by(|(_, a), (_, b)| a.bay.key().cmp(&b.bay.key()));
        let bays: Vec<serde_json::Value> =
            bays.into_iter().map(|(sensor, s)| s.row(sensor, self.received_at)).collect();
        if let Some(write_batch) = db.sql.write_batch {
            let lots: std::collections::BTreeSet<&str> =
                changes.iter().map(|(_, slot, _)| slot.lot.as_str()).collect();
            let Rows { readings, frames, changes: history } = std::mem::take(&mut self.rows);
            let arrays = [readings, frames, history, bays];
            if arrays.iter().any(|rows| !rows.is_empty()) || !self.unclaimed.is_empty() {
                let [readings, frames, history, bays] = arrays.map(|rows| json_param(&rows));
                let lots = json_param(&lots.into_iter().collect::<Vec<_>>());
                let params = [readings, frames, history, bays, lots, json_param(&self.unclaimed)];
                let counts = db.query(write_batch, &params)?;
                self.take_counts(&counts)?;
            }
        } else {
            self.write_history(db)?;
            if !changes.is_empty() {
                let counts = db.query(db.sql.counts_of_sensors, std::slice::from_ref(&self.devices))?;
                self.take_counts(&counts)?;
            }
            if !bays.is_empty() {
                db.execute(db.sql.update_bays, &[json_param(&bays)])?;
            }
        }
        for (index, slot, overstay) in changes {
            let availability = count_change(&mut self.groups, &slot)?;
            let fullness = self.update_fullness_alerts(db, &slot.lot, &slot.class)?;
            let result = &mut results[index];
            result.alerts.extend(fullness);
            let overstay = overstay.map(|o| *o);
            result.applied = Applied::Changed(Box::new(Derived { slot, availability, overstay }));
        }
        Ok(())
    }

    /// Keeps the counts read (and locked) for the batch's lots, with the
    /// state of each (lot, class)'s sign (its open full or almost-full alert).
    fn take_counts(&mut self, rows: &[Row]) -> Result<(), DbError> {
        for row in rows {
            let (lot, zone, class) = (row.text(0)?, row.text(1)?, row.text(2)?);
            let open: Vec<AlertKind> =
                row.opt_text(9)?.unwrap_or_default().split(',').filter_map(AlertKind::parse).collect();
            self.fullness.insert(format!("{lot}/{class}"), fullness_from_alerts(&open));
            let group = Group { counts: counts_at(row, 3)?, changed_at: opt_from_ms(row.opt_int(8)?)? };
            self.groups.insert((lot, zone, class), group);
        }
        Ok(())
    }

    /// Refuses an uplink no bay has the device of, or whose payload does not
    /// decode with its bay's codec.
    fn prepare(&self, uplink: &Uplink) -> Result<Result<Prepared, Applied>, DbError> {
        let envelope = &uplink.envelope;
        let device = parking_domain::normalise_device_id(&envelope.device);
        let Some(state) = self.bays.get(&device) else { return Ok(Err(Applied::UnknownDevice)) };
        let model = match &state.bay.model {
            Ok(model) => *model,
            Err(e) => return Ok(Err(Applied::Undecodable(e.clone()))),
        };
        let frame = match envelope.frame(model) {
            Ok(frame) => frame,
            Err(e) => return Ok(Err(Applied::Undecodable(e))),
        };
        // Stored times have millisecond precision: compare like with like.
        let observed_at = from_ms(to_ms(envelope.received_at))?;
        Ok(Ok(Prepared { device, frame, observed_at }))
    }

    /// Claims the events not refused, in one statement (or takes the claims
    /// the load made, and gives back those of events refused since): true
    /// for the first copy of each event never processed before, false for
    /// redeliveries.
    fn claim(
        &mut self,
        db: &Database,
        uplinks: &[Uplink],
        prepared: &[Result<Prepared, Applied>],
    ) -> Result<Vec<bool>, DbError> {
        let claimed: HashSet<String> = match self.claimed.take() {
            Some(claimed) => {
                let refused = uplinks.iter().zip(prepared).filter(|(_, p)| p.is_err());
                for (uplink, _) in refused {
                    if claimed.contains(&uplink.event_key) && !self.unclaimed.contains(&uplink.event_key) {
                        self.unclaimed.push(uplink.event_key.clone());
                    }
                }
                claimed
            }
            None => {
                let mut keys = Vec::new();
                let mut seen = HashSet::new();
                for (uplink, prepared) in uplinks.iter().zip(prepared) {
                    if prepared.is_ok() && seen.insert(uplink.event_key.as_str()) {
                        keys.push(uplink.event_key.as_str());
                    }
                }
                if keys.is_empty() {
                    HashSet::new()
                } else {
                    db.query(db.sql.claim_events, &[json_param(&keys), to_ms(self.received_at).into()])?
                        .iter()
                        .map(|r| r.text(0))
                        .collect::<Result<_, _>>()?
                }
            }
        };
        let mut taken = HashSet::new();
        Ok(uplinks
            .iter()
            .zip(prepared)
            .map(|(u, p)| p.is_ok() && claimed.contains(&u.event_key) && taken.insert(u.event_key.as_str()))
            .collect())
    }

    /// The rules for one claimed uplink, in memory; rows to write are kept.
    fn apply_one(
        &mut self,
        db: &Database,
        uplink: &Uplink,
        prepared: Prepared,
        alerts: &mut Vec<Alert>,
    ) -> Result<Step, DbError> {
        let Prepared { device, frame, observed_at } = prepared;
        let now = Reading {
            event_key: &uplink.event_key,
            device: &device,
            frame: &frame,
            frame_counter: uplink.envelope.frame_counter,
            observed_at,
            received_at: self.received_at,
        };
        let state = self.bays.get_mut(&device).expect("a prepared uplink has its bay");
        alerts.extend(battery_alerts(db, &state.bay, &now)?);
        state.touch(&frame);
        let Some(occupied) = frame.status() else {
            return Ok(Step::Done(Applied::Alive(self.rows.alive(&state.bay, &now))));
        };
        let outcome = apply_reading(&state.bay.current, occupied, observed_at, now.frame_counter);
        self.rows.reading(&state.bay, &now, occupied, &outcome);
        let next = match outcome {
            Outcome::Changed(next) | Outcome::Refreshed(next) => next,
            other @ (Outcome::Duplicate | Outcome::Stale) => return Ok(Step::Done(Applied::Recorded(other))),
        };
        let previous = state.bay.current.status;
        state.bay.current = next;
        if next.status == previous {
            return Ok(Step::Done(Applied::Recorded(Outcome::Refreshed(next))));
        }
        state.status_changed_at = Some(observed_at);
        let before = state.bay.stay.stay;
        let overstay = move_stay(db, &mut state.bay, previous, &now, alerts)?;
        let mark =
            StayMark::of(before.as_ref(), state.bay.stay.stay.as_ref(), next.status, to_ms(observed_at));
        self.rows.change(&state.bay, previous, &now, mark);
        let bay = &state.bay;
        let slot = SlotChanged {
            lot: bay.lot.clone(),
            bay: bay.id.clone(),
            zone: bay.zone.clone(),
            class: bay.class.clone(),
            device: Some(device.clone()),
            previous,
            status: next.status,
            observed_at,
        };
        Ok(Step::Changed(slot, overstay))
    }

    /// Opens and closes the lot-full and lot-almost-full alerts of a (lot,
    /// class) as its counts move, with the sign's hysteresis: the open alert is
    /// the state the sign showed before.
    fn update_fullness_alerts(
        &mut self,
        db: &Database,
        lot: &str,
        class: &VehicleClass,
    ) -> Result<Vec<Alert>, DbError> {
        let subject = format!("{lot}/{class}");
        let previous = self.fullness.get(&subject).copied().unwrap_or_default();
        let counts = self
            .groups
            .iter()
            .filter(|((l, _, c), _)| l == lot && c == class.as_str())
            .fold(Counts::default(), |sum, (_, group)| sum.plus(&group.counts));
        let next = alert_fullness(previous, &counts, &Thresholds::default());
        self.fullness.insert(subject.clone(), next);
        if next == previous {
            return Ok(Vec::new());
        }
        let now = self.received_at;
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

    /// Writes the history the batch made (readings, frames, status
    /// changes): a statement each, whatever its size.
    fn write_history(&mut self, db: &Database) -> Result<(), DbError> {
        let Rows { readings, frames, changes } = std::mem::take(&mut self.rows);
        for (statement, rows) in [
            (db.sql.insert_readings, readings),
            (db.sql.insert_sensor_frames, frames),
            (db.sql.insert_status_changes, changes),
        ] {
            if !rows.is_empty() {
                db.execute(statement, &[json_param(&rows)])?;
            }
        }
        Ok(())
    }
}

/// A status change still to count, with the index of its uplink's result
/// and the overstay it raised.
type Pending = (usize, SlotChanged, Option<Box<(String, Overstay)>>);

/// What the rules made of one claimed uplink.
enum Step {
    Done(Applied),
    /// The bay changed status: counted when the batch settles.
    Changed(SlotChanged, Option<Box<(String, Overstay)>>),
}

/// Moves the bay's stay with its status change (the bay's new status is
/// `bay.current`, observed at `now.observed_at`):
/// - to `occupied`: a stay starts, or a suspended one (the bay was
///   `unknown`) resumes, counting from this observation;
/// - to `unknown`: the stay is suspended at this observation;
/// - to `free` or `closed`: the stay ends. Its overstay alert, if raised,
///   closes; a stay that fell due before it ended and was not raised yet
///   (no sweep ran in between, or a replay) is raised now and closed at once,
///   so the overstays a stream gives do not depend on when sweeps ran.
fn move_stay(
    db: &Database,
    bay: &mut Bay,
    previous: BayStatus,
    now: &Reading<'_>,
    alerts: &mut Vec<Alert>,
) -> Result<Option<Box<(String, Overstay)>>, DbError> {
    let at = to_ms(now.observed_at);
    match bay.current.status {
        BayStatus::Occupied => {
            let policy = bay.stay.policy()?;
            match &mut bay.stay.stay {
                Some(stay) if previous == BayStatus::Unknown => stay.resume(&policy, at),
                _ => bay.stay.stay = Some(Stay::start(&policy, at)),
            }
            Ok(None)
        }
        BayStatus::Unknown => {
            let policy = bay.stay.policy()?;
            if let Some(stay) = &mut bay.stay.stay {
                stay.suspend(&policy, at);
            }
            Ok(None)
        }
        BayStatus::Free | BayStatus::Closed => {
            let Some(stay) = bay.stay.stay.take() else { return Ok(None) };
            if stay.overstay_at.is_some() {
                alerts.extend(stays::close_overstay_alert(db, &bay.lot, &bay.id, now.received_at)?);
                return Ok(None);
            }
            if !stay.falls_due(at) {
                return Ok(None);
            }
            let raised = Stay { overstay_at: stay.due_at, ..stay };
            let bay_ref = BayRef {
                lot: &bay.lot,
                bay: &bay.id,
                zone: bay.zone.as_deref(),
                class: &bay.class,
                device: Some(now.device),
            };
            let overstay = stays::overstay_of(&bay_ref, &raised)?;
            alerts.extend(stays::open_overstay_alert(db, &bay_ref, &overstay, now.received_at)?);
            alerts.extend(stays::close_overstay_alert(db, &bay.lot, &bay.id, now.received_at)?);
            Ok(Some(Box::new((stays::overstay_event_id(&bay.lot, &bay.id, &raised), overstay))))
        }
    }
}

/// What a status change does to a stay, for the stay statistics of the
/// roll-ups: it starts one, or ends one (and whether that one overstayed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct StayMark {
    /// When the stay started (for a start, the change's own time).
    started_at: i64,
    /// For an end: when the stay went past its limit.
    overstay_at: Option<i64>,
}

impl StayMark {
    /// The mark of a change to `status` at `at`, given the bay's stay before
    /// and after [`move_stay`] moved it: a stay that began at `at` started;
    /// one there before and gone after ended (past its limit if it was
    /// raised, or fell due before it ended). A suspended or resumed stay is
    /// neither.
    fn of(before: Option<&Stay>, after: Option<&Stay>, status: BayStatus, at: i64) -> Option<StayMark> {
        match (before, after) {
            (_, Some(now)) if status == BayStatus::Occupied && now.started_at == at => {
                Some(StayMark { started_at: at, overstay_at: None })
            }
            (Some(ended), None) => Some(StayMark {
                started_at: ended.started_at,
                overstay_at: ended.overstay_at.or_else(|| ended.due_at.filter(|due| *due <= at)),
            }),
            _ => None,
        }
    }
}

/// Moves one bay between statuses in its group's counts, as the counts
/// table's triggers do when the batch writes the bay; answers the group's
/// availability right after this change.
fn count_change(
    groups: &mut HashMap<GroupKey, Group>,
    slot: &SlotChanged,
) -> Result<AvailabilityChanged, DbError> {
    let key = (slot.lot.clone(), slot.zone.clone().unwrap_or_default(), slot.class.as_str().to_owned());
    let out_of_step = |why: String| {
        DbError::Decode(format!(
            "the counts of lot {:?} zone {:?} class {}: {why}; the counts table is out of step with the bays",
            key.0, key.1, key.2
        ))
    };
    let Some(group) = groups.get_mut(&key) else { return Err(out_of_step("no row".into())) };
    group.counts.transition(slot.previous, slot.status).map_err(|e| out_of_step(e.to_string()))?;
    let changed_at = group.changed_at.map_or(slot.observed_at, |at| at.max(slot.observed_at));
    group.changed_at = Some(changed_at);
    Ok(AvailabilityChanged {
        lot: slot.lot.clone(),
        zone: slot.zone.clone(),
        class: slot.class.clone(),
        counts: group.counts,
        changed_at,
    })
}

impl Bay {
    fn key(&self) -> (&str, &str) {
        (&self.lot, &self.id)
    }
}

impl BayState {
    /// Any frame proves the sensor alive, and may carry battery and temperature.
    fn touch(&mut self, frame: &SensorFrame) {
        self.touched = true;
        self.bay.battery = frame.battery.or(self.bay.battery);
        self.temperature = frame.temperature.or(self.temperature);
    }

    /// The bay's row after the batch, for `update_bays`: heard at `received_at`.
    fn row(&self, sensor: &str, received_at: DateTime<Utc>) -> serde_json::Value {
        let bay = &self.bay;
        let mut row = json!({
            "lot_id": bay.lot,
            "bay_id": bay.id,
            "sensor": sensor,
            "status": bay.current.status.as_str(),
            "status_changed_at_ms": self.status_changed_at.map(to_ms),
            "observed_at_ms": bay.current.observed_at.map(to_ms),
            "seq": bay.current.seq,
            "last_seen_at_ms": to_ms(received_at),
            "battery": bay.battery,
            "temperature": self.temperature,
        });
        if let serde_json::Value::Object(fields) = &mut row {
            stays::stay_fields(bay.stay.stay.as_ref(), fields);
        }
        row
    }
}

impl Rows {
    /// Stores a frame without a status (heartbeat, start-up, diagnostic);
    /// answers its kind.
    fn alive(&mut self, bay: &Bay, now: &Reading<'_>) -> &'static str {
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
        self.frames.push(json!({
            "event_key": now.event_key,
            "device": now.device,
            "lot_id": bay.lot,
            "bay_id": bay.id,
            "kind": kind,
            "reported_occupied": frame.reported_occupancy(),
            "frame_counter": now.frame_counter,
            "observed_at_ms": to_ms(now.observed_at),
            "received_at_ms": to_ms(now.received_at),
            "battery": frame.battery,
            "temperature": frame.temperature,
            "detail": detail,
        }));
        kind
    }

    /// Stores the reading with what it did to the bay.
    fn reading(&mut self, bay: &Bay, now: &Reading<'_>, occupied: bool, outcome: &Outcome) {
        let outcome = match outcome {
            Outcome::Changed(_) => "changed",
            Outcome::Refreshed(_) => "refreshed",
            Outcome::Duplicate => "duplicate",
            Outcome::Stale => "stale",
        };
        self.readings.push(json!({
            "event_key": now.event_key,
            "device": now.device,
            "lot_id": bay.lot,
            "bay_id": bay.id,
            "occupied": occupied,
            "seq": now.frame_counter,
            "observed_at_ms": to_ms(now.observed_at),
            "received_at_ms": to_ms(now.received_at),
            "battery": now.frame.battery,
            "outcome": outcome,
            "temperature": now.frame.temperature,
        }));
    }

    /// Keeps the bay's change in its history.
    fn change(&mut self, bay: &Bay, previous: BayStatus, now: &Reading<'_>, stay: Option<StayMark>) {
        self.changes.push(json!({
            "stay_started_at_ms": stay.map(|m| m.started_at),
            "overstay_at_ms": stay.and_then(|m| m.overstay_at),
            "lot_id": bay.lot,
            "bay_id": bay.id,
            "zone": bay.zone,
            "class": bay.class.as_str(),
            "previous": previous.as_str(),
            "status": bay.current.status.as_str(),
            "changed_at_ms": to_ms(now.observed_at),
            "recorded_at_ms": to_ms(now.received_at),
            "event_key": now.event_key,
        }));
    }
}

/// One statement parameter carrying many values: a JSON array.
fn json_param<T: serde::Serialize>(values: &[T]) -> crate::db::Value {
    serde_json::to_string(values).expect("plain data serialises").into()
}

/// The column of `load_batch` that names a claimed key.
const CLAIMED_KEY: usize = 21;

/// A bay from `bays_by_sensors`' columns (the sensor first).
fn bay_from(row: &Row) -> Result<Bay, DbError> {
    Ok(Bay {
        lot: row.text(1)?,
        id: row.text(2)?,
        zone: row.opt_text(3)?,
        class: class(row, 4)?,
        current: Observation {
            status: status(row, 5)?,
            observed_at: opt_from_ms(row.opt_int(6)?)?,
            seq: row.opt_int(7)?.and_then(|s| u32::try_from(s).ok()),
        },
        model: row.opt_text(8)?.map(|m| SensorModel::parse(&m)).transpose(),
        battery: row.opt_real(9)?,
        stay: StoredStay::read(row, 10)?,
    })
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
