//! Lots, bays and readings as the components use them. All the database
//! work of a request happens here, inside one transaction where it writes.

use chrono::{DateTime, Utc};
use parking_domain::{
    BayStatus, Counts, GroupCount, LotAvailability, LotSpec, VehicleClass, summarise_groups,
};
use serde::Serialize;

use crate::db::{Database, DbError, Row, Value, opt_from_ms, to_ms};

pub(crate) fn status(row: &Row, i: usize) -> Result<BayStatus, DbError> {
    let s = row.text(i)?;
    BayStatus::parse(&s).map_err(|e| DbError::Decode(e.to_string()))
}

pub(crate) fn class(row: &Row, i: usize) -> Result<VehicleClass, DbError> {
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
        let time_zone = spec.time_zone.as_deref().unwrap_or("UTC");
        let site = crate::sites::site_json(&spec.site);
        let location = spec.site.location;
        db.execute(
            db.sql.upsert_lot,
            &[
                lot.into(),
                spec.name.as_str().into(),
                to_ms(now).into(),
                time_zone.into(),
                Value::opt_text(site.as_deref()),
                Value::opt_real(location.map(|p| p.lat)),
                Value::opt_real(location.map(|p| p.lon)),
            ],
        )?;
        db.execute(db.sql.delete_zone_rules, &[lot.into()])?;
        for (zone, rule) in &spec.zones {
            let hours = rule.hours.as_ref().map(|h| serde_json::to_string(h).expect("plain data serialises"));
            db.execute(
                db.sql.insert_zone_rule,
                &[
                    lot.into(),
                    zone.as_str().into(),
                    Value::opt_int(rule.max_stay_seconds()),
                    i64::from(rule.grace_seconds).into(),
                    Value::opt_text(hours.as_deref()),
                ],
            )?;
        }

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
                    Value::opt_int(bay.max_stay_seconds()),
                    Value::opt_real(bay.location.map(|p| p.lat)),
                    Value::opt_real(bay.location.map(|p| p.lon)),
                    Value::opt_text(crate::sites::categories_json(&bay.categories).as_deref()),
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
        // The rules may have changed: current stays take them (and removed
        // bays' overstay alerts close).
        crate::stays::rejudge_lot(db, lot, now)?;
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
        db.execute(db.sql.delete_zone_rules, &[lot.into()])?;
        db.execute(db.sql.delete_lot_forecasts, &[lot.into()])?;
        db.query(db.sql.close_orphan_overstay_alerts, &[lot.into(), to_ms(Utc::now()).into()])?;
        db.execute(db.sql.delete_lot, &[lot.into()])?;
        Ok(true)
    })
}

/// A lot's live availability, or `None` for an unknown lot.
pub fn lot_availability(db: &Database, lot: &str) -> Result<Option<LotAvailability>, DbError> {
    if db.query(db.sql.lot_name, &[lot.into()])?.is_empty() {
        return Ok(None);
    }
    known_lot_availability(db, lot).map(Some)
}

/// [`lot_availability`] of a lot the caller read already (an unknown one
/// counts no bays).
pub(crate) fn known_lot_availability(db: &Database, lot: &str) -> Result<LotAvailability, DbError> {
    // Kept per group in the counts table: a handful of rows whatever the lot's size.
    let rows = db.query(db.sql.lot_group_counts, &[lot.into()])?;
    let categories = crate::sites::lot_category_counts(db, lot)?;
    availability_of(lot, &rows, categories)
}

/// A lot's availability from `lot_group_counts`' rows and its counts per category.
pub(crate) fn availability_of(
    lot: &str,
    rows: &[Row],
    categories: std::collections::BTreeMap<parking_domain::BayCategory, Counts>,
) -> Result<LotAvailability, DbError> {
    let groups: Vec<(String, VehicleClass, Counts, Option<DateTime<Utc>>)> = rows
        .iter()
        .map(|r| Ok((r.text(0)?, class(r, 1)?, counts_at(r, 2)?, opt_from_ms(r.opt_int(7)?)?)))
        .collect::<Result<_, DbError>>()?;
    let availability = summarise_groups(
        lot,
        groups.iter().map(|(zone, class, counts, changed_at)| GroupCount {
            zone: (!zone.is_empty()).then_some(zone.as_str()),
            class,
            counts: *counts,
            changed_at: *changed_at,
        }),
    );
    Ok(LotAvailability { categories, ..availability })
}

/// Counts from five columns (total, free, occupied, unknown, closed) from `first` on.
pub(crate) fn counts_at(row: &Row, first: usize) -> Result<Counts, DbError> {
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
    /// The bay's own time limit (ISO 8601), over its zone's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_stay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<parking_domain::geo::Point>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<parking_domain::BayCategory>,
}

/// A lot as `GET /api/v1/lots/{lot}` shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LotView {
    pub lot: String,
    pub name: String,
    pub time_zone: String,
    pub zones: std::collections::BTreeMap<String, parking_domain::lot::ZoneSpec>,
    /// Kind, location, hours, fees, operator, ... as provisioned.
    #[serde(flatten)]
    pub site: parking_domain::site::SiteSpec,
    pub bays: Vec<BayView>,
}

/// A lot's definition (with its time limits) and each bay's live state, or
/// `None` for an unknown lot.
pub fn lot_view(db: &Database, lot: &str) -> Result<Option<LotView>, DbError> {
    let Some(row) = db.query(db.sql.lot_name, &[lot.into()])?.into_iter().next() else {
        return Ok(None);
    };
    let Some((name, bays)) = lot_bays(db, lot)? else { return Ok(None) };
    let zones = db
        .query(db.sql.lot_zone_rules, &[lot.into()])?
        .iter()
        .map(|r| {
            let hours = r
                .opt_text(3)?
                .map(|h| serde_json::from_str(&h))
                .transpose()
                .map_err(|e| DbError::Decode(format!("a zone's stored hours: {e}")))?;
            let rule = parking_domain::lot::ZoneSpec {
                max_stay: r.opt_int(1)?.map(parking_domain::format_iso_duration),
                hours,
                grace_seconds: u32::try_from(r.int(2)?).unwrap_or_default(),
            };
            Ok((r.text(0)?, rule))
        })
        .collect::<Result<_, DbError>>()?;
    let site = crate::sites::site_at(&row, 2)?;
    Ok(Some(LotView { lot: lot.to_owned(), name, time_zone: row.text(1)?, zones, site, bays }))
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
                max_stay: r.opt_int(10)?.map(parking_domain::format_iso_duration),
                location: match (r.opt_real(11)?, r.opt_real(12)?) {
                    (Some(lat), Some(lon)) => parking_domain::geo::Point::new(lat, lon),
                    _ => None,
                },
                categories: crate::sites::categories_at(r, 13)?,
            })
        })
        .collect::<Result<_, DbError>>()?;
    Ok(Some((name_row.text(0)?, bays)))
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
