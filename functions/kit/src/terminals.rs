//! Terminals as the components use them: provisioning (lot-admin) and the
//! frames terminal-push renders.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use parking_domain::feeds::LotSnapshot;
use parking_domain::{
    AvailabilityChanged, Frame, LotAvailability, TerminalScope, TerminalSpec, Thresholds, VehicleClass,
    render_frame, token_digest,
};
use serde::Serialize;

use crate::db::{Database, DbError, Row, Value};
use crate::db::{from_ms, to_ms};
use crate::repo::lot_availability;

/// A terminal as the admin API shows it (never its token).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TerminalView {
    pub terminal: String,
    pub lot: String,
    pub zones: Option<Vec<String>>,
    pub classes: Option<Vec<VehicleClass>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a PUT did.
#[derive(Debug)]
pub enum TerminalWritten {
    Created(TerminalView),
    Replaced(TerminalView),
    /// The terminal's lot does not exist.
    UnknownLot,
}

fn json_list<T: Serialize>(list: &Option<Vec<T>>) -> Result<Value, DbError> {
    match list {
        None => Ok(Value::Null),
        Some(items) => {
            serde_json::to_string(items).map(Value::Text).map_err(|e| DbError::Decode(e.to_string()))
        }
    }
}

fn parse_list<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> Result<Option<Vec<T>>, DbError> {
    row.opt_text(i)?
        .map(|s| serde_json::from_str(&s).map_err(|e| DbError::Decode(format!("column {i}: {e}"))))
        .transpose()
}

/// Creates or replaces a terminal. A token used by another terminal is a conflict.
pub fn put_terminal(
    db: &Database,
    terminal: &str,
    spec: &TerminalSpec,
    now: DateTime<Utc>,
) -> Result<TerminalWritten, DbError> {
    db.transaction(|db| {
        if db.query(db.sql.lot_name, &[spec.lot.as_str().into()])?.is_empty() {
            return Ok(TerminalWritten::UnknownLot);
        }
        let existing = db.query(db.sql.terminal, &[terminal.into()])?.into_iter().next();
        db.execute(
            db.sql.upsert_terminal,
            &[
                terminal.into(),
                spec.lot.as_str().into(),
                json_list(&spec.zones)?,
                json_list(&spec.classes)?,
                token_digest(&spec.token).into(),
                to_ms(now).into(),
            ],
        )
        .map_err(|e| match e {
            DbError::Conflict(_) => DbError::Conflict(
                "field `token`: this token belongs to another terminal; give each terminal its own".into(),
            ),
            other => other,
        })?;
        let created_at = match &existing {
            Some(row) => from_ms(row.int(3)?)?,
            None => from_ms(to_ms(now))?,
        };
        let view = TerminalView {
            terminal: terminal.to_owned(),
            lot: spec.lot.clone(),
            zones: spec.zones.clone(),
            classes: spec.classes.clone(),
            created_at,
            updated_at: from_ms(to_ms(now))?,
        };
        Ok(if existing.is_some() { TerminalWritten::Replaced(view) } else { TerminalWritten::Created(view) })
    })
}

pub fn get_terminal(db: &Database, terminal: &str) -> Result<Option<TerminalView>, DbError> {
    let Some(row) = db.query(db.sql.terminal, &[terminal.into()])?.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some(TerminalView {
        terminal: terminal.to_owned(),
        lot: row.text(0)?,
        zones: parse_list(&row, 1)?,
        classes: parse_list(&row, 2)?,
        created_at: from_ms(row.int(3)?)?,
        updated_at: from_ms(row.int(4)?)?,
    }))
}

/// Deletes a terminal and its last frame. Answers whether it existed.
pub fn delete_terminal(db: &Database, terminal: &str) -> Result<bool, DbError> {
    db.transaction(|db| {
        if db.query(db.sql.terminal, &[terminal.into()])?.is_empty() {
            return Ok(false);
        }
        db.execute(db.sql.delete_terminal_frame, &[terminal.into()])?;
        db.execute(db.sql.delete_terminal, &[terminal.into()])?;
        Ok(true)
    })
}

/// A terminal's scope in `lot` from its zones and classes (JSON lists) in
/// columns `first` and `first + 1`.
fn scope_at(lot: String, row: &Row, first: usize) -> Result<TerminalScope, DbError> {
    Ok(TerminalScope { lot, zones: parse_list(row, first)?, classes: parse_list(row, first + 1)? })
}

/// A terminal of `lot` from a row of `lot_terminals`' columns: its id, then
/// its scope.
fn lot_terminal(lot: &str, row: &Row) -> Result<(String, TerminalScope), DbError> {
    Ok((row.text(0)?, scope_at(lot.to_owned(), row, 1)?))
}

/// The scope of one terminal, if it exists.
pub fn terminal_scope(db: &Database, terminal: &str) -> Result<Option<TerminalScope>, DbError> {
    let Some(row) = db.query(db.sql.terminal, &[terminal.into()])?.into_iter().next() else {
        return Ok(None);
    };
    scope_at(row.text(0)?, &row, 1).map(Some)
}

/// Renders the frames of `terminals` (all of lot `lot`) from the lot's
/// current counts, counted once for all of them, in one transaction. A render
/// that changes nothing answers the stored frame (same id), so a redelivered
/// event publishes the same frame again instead of a new one. A terminal or
/// lot that is gone gets no frame.
pub fn render_lot_frames(
    db: &Database,
    lot: &str,
    terminals: &[(String, TerminalScope)],
    now: DateTime<Utc>,
) -> Result<Vec<Frame>, DbError> {
    Ok(render_lot(db, lot, terminals, now)?.unwrap_or_default().into_iter().map(|(frame, _)| frame).collect())
}

/// What availability changes of `lot` give the signs and the public page,
/// read in one transaction: the frames of its terminals that show any of the
/// changed (zone, class)s, each rendered once however many of them it shows
/// (see [`render_lot_frames`]), and the lot's public snapshot, the lot
/// counted once for all. `None` for a lot that is gone. Every change is of
/// `lot`.
pub fn render_changes(
    db: &Database,
    lot: &str,
    changes: &[&AvailabilityChanged],
    now: DateTime<Utc>,
) -> Result<(Vec<Frame>, Option<LotSnapshot>), DbError> {
    debug_assert!(changes.iter().all(|c| c.lot == lot), "changes of lot {lot} only");
    db.transaction(|db| {
        let shows = |scope: &TerminalScope| changes.iter().any(|c| scope.shows(c.zone.as_deref(), &c.class));
        let Some(RenderInputs { snapshot, availability, terminals }) = RenderInputs::read(db, lot, shows)?
        else {
            return Ok((Vec::new(), None));
        };
        let mut frames = Vec::with_capacity(terminals.len());
        for (terminal, scope, stored) in terminals {
            frames.push(render_one(db, &terminal, &scope, stored, &availability, now)?.0);
        }
        Ok((frames, Some(snapshot)))
    })
}

/// What a render of a lot's signs reads, in its transaction: the lot's
/// public snapshot and availability, and the terminals it renders with
/// their stored frames, locked so two renders of one terminal take turns.
struct RenderInputs {
    snapshot: LotSnapshot,
    availability: LotAvailability,
    terminals: Vec<(String, TerminalScope, StoredFrame)>,
}

impl RenderInputs {
    /// The lot's terminals whose scope `shows` keeps; `None` when the lot is gone.
    fn read(
        db: &Database,
        lot: &str,
        shows: impl Fn(&TerminalScope) -> bool,
    ) -> Result<Option<Self>, DbError> {
        let Some(statement) = db.sql.render_inputs else { return Self::read_one_by_one(db, lot, shows) };
        let Some(row) = db.query(statement, &[lot.into()])?.into_iter().next() else { return Ok(None) };
        let Some(site) = row.nested_row(1)? else { return Ok(None) };
        let categories = crate::sites::category_counts_of(&row.nested_rows(3)?)?;
        let availability = crate::repo::availability_of(lot, &row.nested_rows(2)?, categories)?;
        let mut terminals = Vec::new();
        for r in row.nested_rows(4)? {
            let (terminal, scope) = lot_terminal(lot, &r)?;
            if shows(&scope) {
                terminals.push((terminal, scope, StoredFrame::at(&r, 3)?));
            }
        }
        let snapshot = crate::sites::snapshot_of(lot, crate::sites::site_of(&site)?, &availability);
        Ok(Some(Self { snapshot, availability, terminals }))
    }

    /// The same, a statement at a time.
    fn read_one_by_one(
        db: &Database,
        lot: &str,
        shows: impl Fn(&TerminalScope) -> bool,
    ) -> Result<Option<Self>, DbError> {
        relax_commit(db)?;
        let mut shown = Vec::new();
        for r in db.query(db.sql.lot_terminals, &[lot.into()])? {
            let terminal = lot_terminal(lot, &r)?;
            if shows(&terminal.1) {
                shown.push(terminal);
            }
        }
        let Some((snapshot, availability)) = crate::sites::lot_snapshot_and_availability(db, lot)? else {
            return Ok(None);
        };
        let mut terminals = Vec::with_capacity(shown.len());
        for (terminal, scope) in shown {
            if let Some(stored) = StoredFrame::read(db, &terminal)? {
                terminals.push((terminal, scope, stored));
            }
        }
        Ok(Some(Self { snapshot, availability, terminals }))
    }
}

/// A terminal's stored frame and its digest (none before its first frame).
struct StoredFrame {
    digest: Option<String>,
    frame: Option<Frame>,
}

impl StoredFrame {
    /// From `terminal_frame`'s columns, from `first` on.
    fn at(row: &Row, first: usize) -> Result<Self, DbError> {
        let frame = row
            .opt_text(first + 2)?
            .map(|s| serde_json::from_str(&s).map_err(|e| DbError::Decode(format!("stored frame: {e}"))))
            .transpose()?;
        Ok(Self { digest: row.opt_text(first + 1)?, frame })
    }

    /// A terminal's, locked; `None` for a terminal that is gone.
    fn read(db: &Database, terminal: &str) -> Result<Option<Self>, DbError> {
        let Some(row) = db.query(db.sql.terminal_frame, &[terminal.into()])?.into_iter().next() else {
            return Ok(None);
        };
        Self::at(&row, 0).map(Some)
    }
}

/// A frame lost with the database's last moments is rendered again by the
/// next change or tick: a render's transaction does not wait for the disk.
fn relax_commit(db: &Database) -> Result<(), DbError> {
    if let Some(relaxed) = db.sql.derived_commit {
        db.execute(relaxed, &[])?;
    }
    Ok(())
}

/// What a sweep's re-render does to the signs.
#[derive(Debug, Default)]
pub struct Rerendered {
    /// The frames that changed.
    pub frames: Vec<Frame>,
    /// Terminals whose lot is gone that still have a stored frame: their
    /// retained frames are to be cleared, then [`forget_frames`] called.
    pub cleared: Vec<String>,
}

/// Every terminal's frame rendered again, answering only those that changed:
/// a sign whose last change never reached terminal-push (its event lost with
/// a crash between the commit and the delivery, or given up after retries)
/// shows the truth again. A frame still right costs a read, not a write. A
/// terminal whose lot was deleted and that still has a stored frame is
/// answered in `cleared`, so its sign stops showing the gone lot's counts.
pub fn rerender_changed(db: &Database, now: DateTime<Utc>) -> Result<Rerendered, DbError> {
    let mut lots: BTreeMap<String, Vec<(String, TerminalScope)>> = BTreeMap::new();
    for r in db.query(db.sql.all_terminals, &[])? {
        let lot = r.text(0)?;
        let scope = scope_at(lot.clone(), &r, 2)?;
        lots.entry(lot).or_default().push((r.text(1)?, scope));
    }
    let mut rerendered = Rerendered::default();
    for (lot, terminals) in &lots {
        match render_lot(db, lot, terminals, now)? {
            Some(frames) => {
                rerendered.frames.extend(frames.into_iter().filter_map(|(f, new)| new.then_some(f)));
            }
            None => {
                for (terminal, _) in terminals {
                    let stored = db.query(db.sql.terminal_frame, &[terminal.as_str().into()])?;
                    if stored.first().map(|row| row.opt_int(0)).transpose()?.flatten().is_some() {
                        rerendered.cleared.push(terminal.clone());
                    }
                }
            }
        }
    }
    Ok(rerendered)
}

/// Removes the stored frames of terminals whose retained frames were
/// cleared: until then a later sweep answers them again.
pub fn forget_frames(db: &Database, terminals: &[String]) -> Result<(), DbError> {
    db.transaction(|db| {
        for terminal in terminals {
            db.execute(db.sql.delete_terminal_frame, &[terminal.as_str().into()])?;
        }
        Ok(())
    })
}

/// The frames of `terminals` of `lot`, each with whether it is new (`false`:
/// the stored frame, unchanged); `None` when the lot is gone.
fn render_lot(
    db: &Database,
    lot: &str,
    terminals: &[(String, TerminalScope)],
    now: DateTime<Utc>,
) -> Result<Option<Vec<(Frame, bool)>>, DbError> {
    if terminals.is_empty() {
        return Ok(Some(Vec::new()));
    }
    db.transaction(|db| {
        relax_commit(db)?;
        let Some(availability) = lot_availability(db, lot)? else { return Ok(None) };
        let mut frames = Vec::with_capacity(terminals.len());
        for (terminal, scope) in terminals {
            if let Some(stored) = StoredFrame::read(db, terminal)? {
                frames.push(render_one(db, terminal, scope, stored, &availability, now)?);
            }
        }
        Ok(Some(frames))
    })
}

/// One terminal's frame from counts already read, inside the caller's
/// transaction (its stored frame read and locked there), with whether it is new.
///
/// A first frame stored by a render this one waited for is not in what this
/// one read (there was no stored frame to lock, so the read kept the
/// statement's snapshot): the write does not go back to an earlier seq, and
/// the stored frame is read again (a new statement sees it) and built on.
fn render_one(
    db: &Database,
    terminal: &str,
    scope: &TerminalScope,
    mut stored: StoredFrame,
    availability: &LotAvailability,
    now: DateTime<Utc>,
) -> Result<(Frame, bool), DbError> {
    for _ in 0..2 {
        let previous = stored.frame;
        let states = previous.as_ref().map(Frame::states).unwrap_or_default();
        let seq = previous.as_ref().map_or(0, |f| f.seq) + 1;
        let frame = render_frame(terminal, scope, availability, &states, &Thresholds::default(), seq, now);
        let digest = frame.content_digest();
        if let Some(previous) = previous
            && stored.digest.as_deref() == Some(digest.as_str())
        {
            return Ok((previous, false));
        }
        let json = serde_json::to_string(&frame).map_err(|e| DbError::Decode(e.to_string()))?;
        let written = db.query(
            db.sql.upsert_terminal_frame,
            &[terminal.into(), Value::Int(seq as i64), digest.into(), json.into(), to_ms(now).into()],
        )?;
        if !written.is_empty() {
            return Ok((frame, true));
        }
        stored = StoredFrame::read(db, terminal)?.ok_or_else(|| frame_moved(terminal))?;
    }
    Err(frame_moved(terminal))
}

/// A terminal whose stored frame moved under a render that holds it (which
/// its lock rules out): the render is tried again.
fn frame_moved(terminal: &str) -> DbError {
    DbError::Unavailable(format!(
        "terminal {terminal}: its stored frame changed during its render; try again"
    ))
}
