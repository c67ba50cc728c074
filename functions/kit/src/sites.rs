//! What a lot is and where (its site data), its availability per bay
//! category, and every lot with both: what the nearest-lots search and the
//! open-data feeds read.

use std::collections::BTreeMap;

use parking_domain::category::category_counts;
use parking_domain::feeds::LotSnapshot;
use parking_domain::site::SiteSpec;
use parking_domain::{BayCategory, Counts, LotAvailability};

use crate::db::{Database, DbError, Row, opt_from_ms};
use crate::repo::{class, counts_at, status};

/// A stored site document (NULL: nothing described).
pub(crate) fn site_at(row: &Row, i: usize) -> Result<SiteSpec, DbError> {
    match row.opt_text(i)? {
        None => Ok(SiteSpec::default()),
        Some(json) => {
            serde_json::from_str(&json).map_err(|e| DbError::Decode(format!("a lot's stored site: {e}")))
        }
    }
}

/// The site as stored: NULL when nothing is described.
pub(crate) fn site_json(site: &SiteSpec) -> Option<String> {
    (site != &SiteSpec::default()).then(|| serde_json::to_string(site).expect("plain data serialises"))
}

/// Bay categories as stored: a JSON array of names, NULL for none.
pub(crate) fn categories_json(categories: &[BayCategory]) -> Option<String> {
    (!categories.is_empty()).then(|| serde_json::to_string(categories).expect("plain data serialises"))
}

pub(crate) fn categories_at(row: &Row, i: usize) -> Result<Vec<BayCategory>, DbError> {
    match row.opt_text(i)? {
        None => Ok(Vec::new()),
        Some(json) => serde_json::from_str(&json)
            .map_err(|e| DbError::Decode(format!("a bay's stored categories: {e}"))),
    }
}

fn category_row(row: &Row, first: usize) -> Result<(BayCategory, parking_domain::BayStatus, u32), DbError> {
    let category = BayCategory::parse(&row.text(first)?).map_err(|e| DbError::Decode(e.to_string()))?;
    let bays =
        u32::try_from(row.int(first + 2)?).map_err(|e| DbError::Decode(format!("a bay count: {e}")))?;
    Ok((category, status(row, first + 1)?, bays))
}

/// A lot's counts per bay category (empty when no bay has one).
pub fn lot_category_counts(db: &Database, lot: &str) -> Result<BTreeMap<BayCategory, Counts>, DbError> {
    category_counts_of(&db.query(db.sql.lot_category_counts, &[lot.into()])?)
}

/// Counts per bay category from `lot_category_counts`' rows.
pub(crate) fn category_counts_of(rows: &[Row]) -> Result<BTreeMap<BayCategory, Counts>, DbError> {
    let rows = rows.iter().map(|r| category_row(r, 0)).collect::<Result<Vec<_>, _>>()?;
    Ok(category_counts(rows))
}

/// Every lot with its site, counts per class and category, and published
/// forecasts: four statements whatever the number of lots.
pub fn lot_sites(db: &Database) -> Result<Vec<LotSnapshot>, DbError> {
    let mut lots: Vec<LotSnapshot> = db
        .query(db.sql.list_lots, &[])?
        .iter()
        .map(|r| {
            Ok(LotSnapshot {
                lot: r.text(0)?,
                name: r.text(1)?,
                time_zone: r.text(2)?,
                site: site_at(r, 3)?,
                defined_at: opt_from_ms(r.opt_int(6)?)?,
                updated_at: None,
                classes: BTreeMap::new(),
                categories: BTreeMap::new(),
                forecasts: BTreeMap::new(),
            })
        })
        .collect::<Result<_, DbError>>()?;
    let index: BTreeMap<String, usize> = lots.iter().enumerate().map(|(i, l)| (l.lot.clone(), i)).collect();
    for row in db.query(db.sql.count_all_lots, &[])? {
        let Some(&i) = index.get(&row.text(0)?) else { continue };
        let lot = &mut lots[i];
        let counts = lot.classes.entry(class(&row, 2)?).or_default();
        *counts = counts.plus(&counts_at(&row, 3)?);
        lot.updated_at = lot.updated_at.max(opt_from_ms(row.opt_int(8)?)?);
    }
    lots.iter_mut().for_each(|l| l.classes.retain(|_, c| c.total > 0));
    let mut per_lot: BTreeMap<usize, Vec<_>> = BTreeMap::new();
    for row in db.query(db.sql.all_category_counts, &[])? {
        let Some(&i) = index.get(&row.text(0)?) else { continue };
        per_lot.entry(i).or_default().push(category_row(&row, 1)?);
    }
    for (i, rows) in per_lot {
        lots[i].categories = category_counts(rows);
    }
    for stored in crate::forecast::stored_forecasts(db)? {
        let (Some(&i), Some(published)) = (index.get(&stored.lot), stored.published) else { continue };
        lots[i].forecasts.insert(stored.class, published);
    }
    Ok(lots)
}

/// A lot's name, time zone and site, or `None` for an unknown lot.
pub fn lot_site(db: &Database, lot: &str) -> Result<Option<(String, String, SiteSpec)>, DbError> {
    let Some(row) = db.query(db.sql.lot_name, &[lot.into()])?.into_iter().next() else { return Ok(None) };
    site_of(&row).map(Some)
}

/// A lot's name, time zone and site from `lot_name`'s row.
pub(crate) fn site_of(row: &Row) -> Result<(String, String, SiteSpec), DbError> {
    Ok((row.text(0)?, row.text(1)?, site_at(row, 2)?))
}

/// Whether a lot with this site is open at `now` (an unknown stored time
/// zone reads as UTC).
pub fn is_open(time_zone: &str, site: &SiteSpec, now: chrono::DateTime<chrono::Utc>) -> bool {
    parking_domain::site::is_open_in(site, time_zone, now.timestamp_millis())
}

/// One lot with its site and counts per class and category (what its public
/// summary shows), or `None` for an unknown lot.
pub fn lot_snapshot(db: &Database, lot: &str) -> Result<Option<LotSnapshot>, DbError> {
    Ok(lot_snapshot_and_availability(db, lot)?.map(|(snapshot, _)| snapshot))
}

/// [`lot_snapshot`] with the availability it was made from (per zone too,
/// as the signs show it): the lot counted once for both.
pub fn lot_snapshot_and_availability(
    db: &Database,
    lot: &str,
) -> Result<Option<(LotSnapshot, LotAvailability)>, DbError> {
    let Some(site) = lot_site(db, lot)? else { return Ok(None) };
    let availability = crate::repo::known_lot_availability(db, lot)?;
    Ok(Some((snapshot_of(lot, site, &availability), availability)))
}

/// The public snapshot of a lot with this site and availability.
pub(crate) fn snapshot_of(
    lot: &str,
    (name, time_zone, site): (String, String, SiteSpec),
    availability: &LotAvailability,
) -> LotSnapshot {
    let mut classes = availability.classes.clone();
    classes.retain(|_, c| c.total > 0);
    LotSnapshot {
        lot: lot.to_owned(),
        name,
        time_zone,
        site,
        defined_at: None,
        updated_at: availability.updated_at,
        classes,
        categories: availability.categories.clone(),
        forecasts: BTreeMap::new(),
    }
}
