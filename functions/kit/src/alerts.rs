//! Alerts as stored, listed and announced (`io.parking.sensor.alert.v1`):
//! opened once per (kind, subject) while open, closed when the cause ends.

use chrono::{DateTime, Utc};
use parking_domain::AlertKind;
use serde::Serialize;

use crate::db::{Database, DbError, Row, Value, from_ms, to_ms};

/// An alert as stored, listed and sent in `io.parking.sensor.alert.v1`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub id: i64,
    pub kind: String,
    pub subject: String,
    pub lot: Option<String>,
    pub bay: Option<String>,
    pub zone: Option<String>,
    pub class: Option<String>,
    pub device: Option<String>,
    pub detail: Option<String>,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    /// `open` or `closed`.
    pub state: &'static str,
}

fn alert(r: &Row) -> Result<Alert, DbError> {
    let closed_at = r.opt_int(10)?.map(from_ms).transpose()?;
    Ok(Alert {
        id: r.int(0)?,
        kind: r.text(1)?,
        subject: r.text(2)?,
        lot: r.opt_text(3)?,
        bay: r.opt_text(4)?,
        zone: r.opt_text(5)?,
        class: r.opt_text(6)?,
        device: r.opt_text(7)?,
        detail: r.opt_text(8)?,
        opened_at: from_ms(r.int(9)?)?,
        closed_at,
        state: if closed_at.is_some() { "closed" } else { "open" },
    })
}

/// What an alert is about, for opening one.
#[derive(Debug, Clone, Default)]
pub struct AlertSubject<'a> {
    pub lot: Option<&'a str>,
    pub bay: Option<&'a str>,
    pub zone: Option<&'a str>,
    pub class: Option<&'a str>,
    pub device: Option<&'a str>,
}

/// Opens an alert of `kind` for `subject` unless one is open; answers the
/// new alert. `announced`: its event goes out with this request's answer
/// (else the next sweep announces it).
pub fn open_alert(
    db: &Database,
    kind: AlertKind,
    subject: &str,
    about: &AlertSubject<'_>,
    detail: &str,
    now: DateTime<Utc>,
    announced: bool,
) -> Result<Option<Alert>, DbError> {
    let id = db
        .query(
            db.sql.open_alert,
            &[
                kind.as_str().into(),
                subject.into(),
                Value::opt_text(about.lot),
                Value::opt_text(about.bay),
                Value::opt_text(about.zone),
                Value::opt_text(about.class),
                Value::opt_text(about.device),
                detail.into(),
                to_ms(now).into(),
                if announced { to_ms(now).into() } else { Value::Null },
            ],
        )?
        .first()
        .map(|r| r.int(0))
        .transpose()?;
    Ok(id.map(|id| Alert {
        id,
        kind: kind.as_str().to_owned(),
        subject: subject.to_owned(),
        lot: about.lot.map(str::to_owned),
        bay: about.bay.map(str::to_owned),
        zone: about.zone.map(str::to_owned),
        class: about.class.map(str::to_owned),
        device: about.device.map(str::to_owned),
        detail: Some(detail.to_owned()),
        opened_at: now,
        closed_at: None,
        state: "open",
    }))
}

/// Closes the open alert of `kind` for `subject`, if there is one.
pub fn close_alert(
    db: &Database,
    kind: AlertKind,
    subject: &str,
    now: DateTime<Utc>,
) -> Result<Option<Alert>, DbError> {
    db.query(db.sql.close_alert, &[kind.as_str().into(), subject.into(), to_ms(now).into()])?
        .first()
        .map(alert)
        .transpose()
}

/// Alerts opened by requests that could not answer with events (a refused
/// reading from an unknown device), marked announced now.
pub fn announce_alerts(db: &Database, now: DateTime<Utc>) -> Result<Vec<Alert>, DbError> {
    db.query(db.sql.announce_alerts, &[to_ms(now).into()])?.iter().map(alert).collect()
}

/// Closes the unknown-device alerts of devices that are now a bay's sensor.
pub fn close_provisioned_device_alerts(db: &Database, now: DateTime<Utc>) -> Result<Vec<Alert>, DbError> {
    db.query(db.sql.close_provisioned_device_alerts, &[to_ms(now).into()])?.iter().map(alert).collect()
}

/// Every open alert, oldest first.
pub fn open_alerts(db: &Database) -> Result<Vec<Alert>, DbError> {
    db.query(db.sql.open_alerts, &[])?.iter().map(alert).collect()
}

/// Closes the offline alerts of sensors heard from since they opened.
pub fn close_recovered_offline_alerts(db: &Database, now: DateTime<Utc>) -> Result<Vec<Alert>, DbError> {
    db.query(db.sql.close_recovered_offline_alerts, &[to_ms(now).into()])?.iter().map(alert).collect()
}
