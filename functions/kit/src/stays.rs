//! Stays and overstays as stored: a bay's current stay lives on its row
//! (`stay_*` columns), judged by the rule of its bay, zone and lot. The
//! arithmetic is the domain's ([`parking_domain::stay`]); this module reads
//! and writes it.

use chrono::{DateTime, Utc};
use parking_domain::events::Overstay;
use parking_domain::{AlertKind, Restriction, Stay, StayPolicy, VehicleClass, format_iso_duration};
use serde::Serialize;

use crate::alerts::{self, Alert, AlertSubject};
use crate::db::{Database, DbError, Row, Value, from_ms, to_ms};
use crate::repo::class;

/// The number of stay columns read after a bay's own (see `Statements::lot_stays`).
pub(crate) const STAY_COLUMNS: usize = 11;

/// A bay's rule and stay, from the stay columns starting at `first`.
#[derive(Debug, Clone)]
pub(crate) struct StoredStay {
    bay_limit_s: Option<i64>,
    zone_limit_s: Option<i64>,
    grace_s: i64,
    hours: Option<String>,
    time_zone: String,
    pub stay: Option<Stay>,
}

impl StoredStay {
    pub(crate) fn read(row: &Row, first: usize) -> Result<Self, DbError> {
        let int = |i: usize| row.opt_int(first + i);
        let stay = match int(5)? {
            None => None,
            Some(started_at) => Some(Stay {
                started_at,
                resumed_at: int(6)?,
                counted_ms: int(7)?.unwrap_or_default(),
                limit_ms: int(8)?,
                due_at: int(9)?,
                overstay_at: int(10)?,
            }),
        };
        Ok(StoredStay {
            bay_limit_s: int(0)?,
            zone_limit_s: int(1)?,
            grace_s: int(2)?.unwrap_or_default(),
            hours: row.opt_text(first + 3)?,
            time_zone: row.opt_text(first + 4)?.unwrap_or_else(|| "UTC".to_owned()),
            stay,
        })
    }

    /// The rule the bay's stays are judged by: its own limit over its zone's.
    pub(crate) fn policy(&self) -> Result<StayPolicy, DbError> {
        let restriction = Restriction::from_stored(self.hours.as_deref(), &self.time_zone)
            .map_err(|e| DbError::Decode(format!("a zone's stored hours or time zone: {e}")))?;
        Ok(StayPolicy {
            limit_ms: self.bay_limit_s.or(self.zone_limit_s).map(|s| s * 1000),
            grace_ms: self.grace_s * 1000,
            restriction,
        })
    }
}

/// A stay's columns as statement parameters (all null without a stay), in
/// `set_bay_stay`'s order.
pub(crate) fn stay_params(stay: Option<&Stay>) -> [Value; 6] {
    match stay {
        None => std::array::from_fn(|_| Value::Null),
        Some(s) => [
            s.started_at.into(),
            Value::opt_int(s.resumed_at),
            s.counted_ms.into(),
            Value::opt_int(s.limit_ms),
            Value::opt_int(s.due_at),
            Value::opt_int(s.overstay_at),
        ],
    }
}

/// A stay's columns as the fields of a bay's row in `update_bays`.
pub(crate) fn stay_fields(stay: Option<&Stay>, row: &mut serde_json::Map<String, serde_json::Value>) {
    let fields = [
        ("stay_started_at_ms", stay.map(|s| s.started_at)),
        ("stay_resumed_at_ms", stay.and_then(|s| s.resumed_at)),
        ("stay_counted_ms", stay.map(|s| s.counted_ms)),
        ("stay_limit_ms", stay.and_then(|s| s.limit_ms)),
        ("stay_due_at_ms", stay.and_then(|s| s.due_at)),
        ("overstay_at_ms", stay.and_then(|s| s.overstay_at)),
    ];
    for (name, value) in fields {
        row.insert(name.to_owned(), value.into());
    }
}

/// What identifies a bay in an overstay.
pub struct BayRef<'a> {
    pub lot: &'a str,
    pub bay: &'a str,
    pub zone: Option<&'a str>,
    pub class: &'a VehicleClass,
    pub device: Option<&'a str>,
}

/// The event data of a raised overstay.
pub fn overstay_of(bay: &BayRef<'_>, stay: &Stay) -> Result<Overstay, DbError> {
    Ok(Overstay {
        lot: bay.lot.to_owned(),
        bay: bay.bay.to_owned(),
        zone: bay.zone.map(str::to_owned),
        class: bay.class.clone(),
        since: from_ms(stay.started_at)?,
        max_stay: format_iso_duration(stay.limit_ms.unwrap_or_default() / 1000),
        due_at: from_ms(stay.overstay_at.or(stay.due_at).unwrap_or(stay.started_at))?,
    })
}

/// The CloudEvent id of a stay's overstay: the same whichever path raises it
/// and however often, so a redelivered or replayed one is recognisably the same.
pub fn overstay_event_id(lot: &str, bay: &str, stay: &Stay) -> String {
    format!("overstay/{lot}/{bay}/{}", stay.started_at)
}

/// Opens the bay's overstay alert (once per stay: one open alert per bay).
pub(crate) fn open_overstay_alert(
    db: &Database,
    bay: &BayRef<'_>,
    overstay: &Overstay,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, DbError> {
    let detail = format!(
        "parked since {} past its limit of {} (due {})",
        overstay.since.to_rfc3339(),
        overstay.max_stay,
        overstay.due_at.to_rfc3339()
    );
    let about = AlertSubject {
        lot: Some(bay.lot),
        bay: Some(bay.bay),
        zone: bay.zone,
        class: Some(bay.class.as_str()),
        device: bay.device,
    };
    alerts::open_alert(
        db,
        AlertKind::BayOverstay,
        &format!("{}/{}", bay.lot, bay.bay),
        &about,
        &detail,
        now,
        true,
    )
}

/// Closes the bay's overstay alert, if one is open.
pub(crate) fn close_overstay_alert(
    db: &Database,
    lot: &str,
    bay: &str,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, DbError> {
    alerts::close_alert(db, AlertKind::BayOverstay, &format!("{lot}/{bay}"), now)
}

/// An overstay raised by the sweep: its event data and id, and its alert.
#[derive(Debug)]
pub struct Raised {
    pub event_id: String,
    pub subject: String,
    pub overstay: Overstay,
    pub alert: Option<Alert>,
}

/// Raises every stay due by `now` and not raised yet, through the due-time
/// index: one statement marks them all, then each opens its alert. A stay is
/// raised once: the mark is in the same transaction as the alert.
pub fn raise_due_overstays(db: &Database, now: DateTime<Utc>) -> Result<Vec<Raised>, DbError> {
    db.transaction(|db| {
        let rows = db.query(db.sql.raise_due_overstays, &[to_ms(now).into()])?;
        let mut raised = Vec::with_capacity(rows.len());
        for row in rows {
            let (lot, bay, zone, class) = (row.text(0)?, row.text(1)?, row.opt_text(2)?, class(&row, 3)?);
            let due = row.int(6)?;
            let stay = Stay {
                started_at: row.int(4)?,
                limit_ms: row.opt_int(5)?,
                due_at: Some(due),
                overstay_at: Some(due),
                ..Stay::default()
            };
            let bay_ref = BayRef { lot: &lot, bay: &bay, zone: zone.as_deref(), class: &class, device: None };
            let overstay = overstay_of(&bay_ref, &stay)?;
            let alert = open_overstay_alert(db, &bay_ref, &overstay, now)?;
            raised.push(Raised {
                event_id: overstay_event_id(&lot, &bay, &stay),
                subject: format!("{lot}/{bay}"),
                overstay,
                alert,
            });
        }
        Ok(raised)
    })
}

/// One row of `GET /api/v1/lots/{lot}/overstays`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OverstayView {
    pub bay: String,
    pub zone: Option<String>,
    pub class: VehicleClass,
    pub since: DateTime<Utc>,
    pub max_stay: String,
    pub due_at: DateTime<Utc>,
    /// Restricted time past the limit by now (frozen while the bay is unknown).
    pub over_by_seconds: i64,
    /// False while the bay is unknown (the stay is suspended).
    pub counting: bool,
}

/// The lot's current overstays (raised, bay not freed yet), by bay.
pub fn lot_overstays(db: &Database, lot: &str, now: DateTime<Utc>) -> Result<Vec<OverstayView>, DbError> {
    db.query(db.sql.lot_overstays, &[lot.into()])?
        .iter()
        .filter_map(|row| {
            let view = || -> Result<Option<OverstayView>, DbError> {
                let stored = StoredStay::read(row, 3)?;
                let Some(stay) = stored.stay else { return Ok(None) };
                let policy = stored.policy()?;
                let over_ms = stay.over_by_ms(&policy, to_ms(now)).unwrap_or_default();
                Ok(Some(OverstayView {
                    bay: row.text(0)?,
                    zone: row.opt_text(1)?,
                    class: class(row, 2)?,
                    since: from_ms(stay.started_at)?,
                    max_stay: format_iso_duration(stay.limit_ms.unwrap_or_default() / 1000),
                    due_at: from_ms(stay.overstay_at.unwrap_or(stay.started_at))?,
                    over_by_seconds: over_ms / 1000,
                    counting: stay.resumed_at.is_some(),
                }))
            };
            view().transpose()
        })
        .collect()
}

/// Judges the lot's current stays again after its rules changed: each takes
/// its bay's new limit and due time. A stay already raised stays raised (its
/// alert closes when the bay frees). Then closes the overstay alerts of bays
/// that no longer have a raised stay (removed, or their sensor replaced).
pub(crate) fn rejudge_lot(db: &Database, lot: &str, now: DateTime<Utc>) -> Result<(), DbError> {
    for row in db.query(db.sql.lot_stays, &[lot.into()])? {
        let stored = StoredStay::read(&row, 3)?;
        let Some(mut stay) = stored.stay else { continue };
        if stay.overstay_at.is_some() {
            continue;
        }
        let before = stay;
        stay.rejudge(&stored.policy()?);
        if stay != before {
            let mut params = vec![lot.into(), row.text(0)?.into()];
            params.extend(stay_params(Some(&stay)));
            db.execute(db.sql.set_bay_stay, &params)?;
        }
    }
    db.query(db.sql.close_orphan_overstay_alerts, &[lot.into(), to_ms(now).into()])?;
    Ok(())
}

/// Suspends the stay of a bay going unknown (the sweep's silence): its
/// restricted time is counted up to the bay's last observation, and it
/// leaves the due-time index until the bay is seen occupied again.
pub(crate) fn suspend_stay(db: &Database, lot: &str, bay: &str) -> Result<(), DbError> {
    let Some(row) = db.query(db.sql.bay_stay, &[lot.into(), bay.into()])?.into_iter().next() else {
        return Ok(());
    };
    let stored = StoredStay::read(&row, 3)?;
    let Some(mut stay) = stored.stay else { return Ok(()) };
    let last_seen = row.opt_int(3 + STAY_COLUMNS)?.unwrap_or(stay.started_at);
    stay.suspend(&stored.policy()?, last_seen);
    let mut params = vec![lot.into(), bay.into()];
    params.extend(stay_params(Some(&stay)));
    db.execute(db.sql.set_bay_stay, &params)?;
    Ok(())
}
