//! Every statement a parking component issues, one module per dialect.
//!
//! Both dialects fill the same [`Statements`] table, so the repository code is
//! written once and a statement missing from a dialect is a compile error.
//! Times are stored as milliseconds since the Unix epoch (`BIGINT`) in both,
//! so ordering and comparisons behave the same on SQLite and PostgreSQL.
//! Parameters are numbered (`?1` / `$1`) and bound in the order documented
//! on each field.

pub mod postgres;
pub mod sqlite;

pub struct Statements {
    /// Opens a write transaction (SQLite takes the write lock at once, so two
    /// writers never deadlock upgrading a read lock).
    pub begin: &'static str,
    /// Run first in a transaction whose writes are derived and rebuilt by the
    /// next change (a terminal's frame): its commit does not wait for the
    /// disk. PostgreSQL only (SQLite's commits do not wait for it anyway).
    pub derived_commit: Option<&'static str>,

    // --- lots ---
    /// (lot) -> name, time_zone, site (JSON or NULL)
    pub lot_name: &'static str,
    /// (lot, name, now_ms, time_zone, site JSON, lat, lon)
    pub upsert_lot: &'static str,
    /// () -> lot, name, time_zone, site (JSON or NULL), lat, lon, updated_at_ms
    pub list_lots: &'static str,
    /// () -> lot, zone ('' for none), class, total, free, occupied, unknown, closed, changed_at_ms:
    /// every group of every lot (the counts table).
    pub count_all_lots: &'static str,
    /// (lot)
    pub delete_lot_bays: &'static str,
    /// (lot)
    pub delete_lot: &'static str,

    // --- bays ---
    /// (lot) -> bay, sensor
    pub lot_bay_sensors: &'static str,
    /// (lot): frees the lot's sensors so a replace may move them between bays.
    pub release_lot_sensors: &'static str,
    /// (lot, bay)
    pub delete_bay: &'static str,
    /// (lot, bay, zone, class, sensor, model, now_ms, max_stay_s, lat, lon, categories JSON):
    /// keeps the live state (and stay).
    pub upsert_bay_keep_state: &'static str,
    /// (lot, bay, zone, class, sensor, model, now_ms, max_stay_s, lat, lon, categories JSON): a new
    /// sensor starts `unknown`
    /// (a `closed` bay stays closed: that is the operator's decision) and its stay ends.
    pub upsert_bay_reset_state: &'static str,
    /// (lot) -> bay, zone, class, sensor, model, status, status_changed_at_ms,
    /// observed_at_ms, last_seen_at_ms, battery, max_stay_s, lat, lon, categories JSON
    pub lot_bays: &'static str,
    /// (lot) -> category, status, bays: the lot's bays per category and status, counted at read
    /// time (one grouped statement; the reading path keeps no per-category counts).
    pub lot_category_counts: &'static str,
    /// () -> lot, category, status, bays: as `lot_category_counts`, every lot.
    pub all_category_counts: &'static str,
    /// (lot) -> zone ('' for none), class, total, free, occupied, unknown, closed, changed_at_ms
    pub lot_group_counts: &'static str,

    // --- readings, set-based: one statement per step for a whole batch ---
    // A batch's rows travel as one JSON array parameter (objects named by
    // column), so a statement costs the same for one reading as for a
    // thousand. Inserts keep the array's order (history is ordered by id).
    /// (devices: JSON array of strings) -> lot, zone ('' for none), class, total, free, occupied,
    /// unknown, closed, changed_at_ms, open fullness alerts of (lot, class) (kinds joined by ','
    /// or NULL): every group of the lots those devices' bays are in. Locks the rows in one order
    /// (PostgreSQL), after the bays, as the triggers of any bay write do.
    pub counts_of_sensors: &'static str,
    /// (devices: JSON array of strings) -> sensor, lot, bay, zone, class, status, observed_at_ms,
    /// seq, model, battery, then the stay columns (see `lot_stays`); locks the bay rows in
    /// (lot, bay) order.
    pub bays_by_sensors: &'static str,
    /// (devices: JSON array of strings, events: JSON array of distinct {key, device}, now_ms) ->
    /// `bays_by_sensors`' columns and a last one: rows with a sensor are the bays (locked as
    /// there), rows without one name a key claimed (`claim_events`) for an event whose device
    /// has a bay. The load and the claim in one statement, where the dialect can (PostgreSQL);
    /// else they run one after the other.
    pub load_batch: Option<&'static str>,
    /// (event keys: JSON array of distinct strings, now_ms) -> the keys not seen before, now claimed.
    pub claim_events: &'static str,
    /// (JSON array of {event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms,
    /// received_at_ms, battery, outcome, temperature})
    pub insert_readings: &'static str,
    /// (JSON array of {event_key, device, lot_id, bay_id, kind, reported_occupied, frame_counter,
    /// observed_at_ms, received_at_ms, battery, temperature, detail})
    pub insert_sensor_frames: &'static str,
    /// (JSON array of {lot_id, bay_id, sensor, status, status_changed_at_ms (null: unchanged),
    /// observed_at_ms, seq, last_seen_at_ms, battery, temperature}), one object per bay (found
    /// by its sensor, the index a batch's bays are loaded by, and its key): the
    /// bay's state after the batch, with its stay (stay_started_at_ms, stay_resumed_at_ms,
    /// stay_counted_ms, stay_limit_ms, stay_due_at_ms, overstay_at_ms: null clears). Liveness
    /// only moves forward; a null battery or temperature keeps the stored one.
    pub update_bays: &'static str,
    /// (JSON array of {lot_id, bay_id, zone, class, previous, status, changed_at_ms,
    /// recorded_at_ms, event_key, stay_started_at_ms, overstay_at_ms})
    pub insert_status_changes: &'static str,
    /// (readings, frames, status changes, bays: the four JSON arrays above; lots: JSON array of
    /// strings; unclaimed: JSON array of event keys) -> `counts_of_sensors`' columns for every
    /// group of those lots, as they were before this statement, locked in the same order. All of
    /// a batch's writes in one statement, where the dialect can (PostgreSQL), with the claims
    /// of events refused after `load_batch` claimed them given back; else they run one by one
    /// and the counts are read with `counts_of_sensors` before the bays are written.
    pub write_batch: Option<&'static str>,
    /// (lot, bay, status, status_changed_at_ms)
    pub set_bay_status: &'static str,
    /// (lot, bay, zone, class, previous, status, changed_at_ms, recorded_at_ms, event_key)
    pub insert_status_change: &'static str,
    /// (lot, zone or '', class) -> total, free, occupied, unknown, closed, changed_at_ms
    pub group_counts: &'static str,

    // --- history (roll-ups) ---
    /// (name, now_ms, initial_ms): creates the roll-up progress row if missing.
    pub init_rollup_progress: &'static str,
    /// (name) -> rolled_up_to_ms; locks the row, so two sweeps never roll up at once.
    pub rollup_progress: &'static str,
    /// (name, rolled_up_to_ms, now_ms)
    pub set_rollup_progress: &'static str,
    /// () -> MIN(changed_at_ms) of the status changes kept.
    pub first_status_change: &'static str,
    /// (start_ms) -> lot, bay, zone, class, status at start_ms (the `previous`
    /// of its first change since, else its current status).
    pub bays_at: &'static str,
    /// (start_ms, end_ms) -> lot, bay, zone, class, previous, status, changed_at_ms,
    /// occupied_since_ms (departures only), stay_started_at_ms, overstay_at_ms, in time order.
    pub changes_between: &'static str,
    /// (lot, at_ms) -> as `bays_at`, the lot's bays only.
    pub lot_bays_at: &'static str,
    /// (lot, start_ms, end_ms) -> as `changes_between`, the lot's changes only.
    pub lot_changes_between: &'static str,
    /// (name) -> rolled_up_to_ms, without locking the progress row (for readers).
    pub rolled_up_to: &'static str,
    /// (lot, hour_start_ms, zone or '', class, span_ms, bays, occupied_bay_ms, peak_occupied,
    /// min_free, arrivals, departures, dwell_total_ms, dwell_count, now_ms, stays_started,
    /// stays_ended, stay_total_ms, stay_lengths JSON, overstays): replaces the hour.
    pub upsert_rollup: &'static str,
    /// (lot, from_ms, to_ms, class or NULL) -> zone ('' for none), class, hour_start_ms, span_ms,
    /// bays, occupied_bay_ms, peak_occupied, min_free, arrivals, departures, dwell_total_ms, dwell_count,
    /// stays_started, stays_ended, stay_total_ms, stay_lengths JSON (or NULL), overstays
    pub lot_rollups: &'static str,

    // --- retention: each deletes at most `limit` rows and returns one row per row deleted ---
    /// (before_ms, limit): readings received before.
    pub delete_readings_before: &'static str,
    /// (before_ms, limit): sensor frames received before.
    pub delete_sensor_frames_before: &'static str,
    /// (before_ms, limit): status changes that happened before.
    pub delete_status_changes_before: &'static str,
    /// (before_ms, limit): dedup log entries processed before.
    pub delete_processed_events_before: &'static str,
    /// (before_ms, limit): hourly roll-ups of hours starting before.
    pub delete_rollups_before: &'static str,

    // --- silent sensors and alerts ---
    /// (seen_before_ms, limit) -> lot, bay, zone, class, sensor, model, last_seen_at_ms of
    /// bays showing free or occupied whose sensor was last heard before seen_before_ms.
    pub silent_bay_candidates: &'static str,
    /// (lot, bay) -> status, last_seen_at_ms, model, zone, class, sensor; locks the row.
    pub bay_liveness: &'static str,
    /// (kind, subject, lot, bay, zone, class, device, detail, now_ms, announced_at_ms) -> id when
    /// a new alert opened; no row when one is open already.
    pub open_alert: &'static str,
    /// (now_ms) -> id, kind, subject, lot, bay, zone, class, device, detail, opened_at_ms,
    /// closed_at_ms: closes the offline alerts of bays heard from since (or gone).
    pub close_recovered_offline_alerts: &'static str,
    /// () -> id, kind, subject, lot, bay, zone, class, device, detail, opened_at_ms, closed_at_ms
    pub open_alerts: &'static str,
    /// (kind, subject, now_ms) -> the alert's columns as `open_alerts`, when one was open.
    pub close_alert: &'static str,
    /// (now_ms) -> the alert columns of alerts not announced yet, now marked announced.
    pub announce_alerts: &'static str,
    /// (now_ms) -> the alert columns of unknown-device alerts closed because the device is now a bay's sensor.
    pub close_provisioned_device_alerts: &'static str,
    // --- terminals ---
    /// (terminal, lot, zones_json, classes_json, token_sha256, now_ms)
    pub upsert_terminal: &'static str,
    /// (terminal) -> lot, zones_json, classes_json, created_at_ms, updated_at_ms
    pub terminal: &'static str,
    /// (terminal)
    pub delete_terminal: &'static str,
    /// (terminal)
    pub delete_terminal_frame: &'static str,
    /// (lot) -> terminal, zones_json, classes_json
    pub lot_terminals: &'static str,
    /// () -> lot, terminal, zones JSON, classes JSON: every terminal, by lot
    pub all_terminals: &'static str,
    /// (terminal) -> seq, content_digest, frame_json (all NULL before the first frame);
    /// no row for an unknown terminal.
    pub terminal_frame: &'static str,
    /// (terminal, seq, content_digest, frame_json, now_ms) -> seq; writes
    /// nothing (no row) over a stored frame of that seq or later.
    pub upsert_terminal_frame: &'static str,
    /// (lot) -> one row: `derived_commit` done, then as JSON text (see
    /// [`Row::nested_rows`]) `lot_name`'s row (NULL for an unknown lot),
    /// `lot_group_counts`' rows, `lot_category_counts`' rows, and the lot's
    /// terminals (locked in id order, then their stored frames, so a render
    /// that waited reads the frame the one before it stored) as `terminal`,
    /// zones_json, classes_json and `terminal_frame`'s columns. What a render
    /// reads, in one round trip where the dialect can (PostgreSQL); else those
    /// statements run one by one.
    ///
    /// [`Row::nested_rows`]: crate::db::Row::nested_rows
    pub render_inputs: Option<&'static str>,

    // --- time limits and stays ---
    /// (lot)
    pub delete_zone_rules: &'static str,
    /// (lot, zone, max_stay_s, grace_s, hours JSON)
    pub insert_zone_rule: &'static str,
    /// (lot) -> zone, max_stay_s, grace_s, hours JSON
    pub lot_zone_rules: &'static str,
    /// (lot) -> bay, zone, class, then the stay columns: the bay's max_stay_s, its zone's
    /// max_stay_s, grace_s and hours, the lot's time_zone, stay_started_at_ms,
    /// stay_resumed_at_ms, stay_counted_ms, stay_limit_ms, stay_due_at_ms, overstay_at_ms;
    /// the bays with a stay, locked (PostgreSQL).
    pub lot_stays: &'static str,
    /// (lot) -> as `lot_stays`, the bays whose overstay was raised.
    pub lot_overstays: &'static str,
    /// (lot, bay) -> as `lot_stays`, then observed_at_ms.
    pub bay_stay: &'static str,
    /// (lot, bay, stay_started_at_ms, stay_resumed_at_ms, stay_counted_ms, stay_limit_ms,
    /// stay_due_at_ms, overstay_at_ms)
    pub set_bay_stay: &'static str,
    /// (now_ms) -> lot, bay, zone, class, stay_started_at_ms, stay_limit_ms, stay_due_at_ms: marks
    /// the stays due by now and not yet raised as raised (read through the due-time index).
    pub raise_due_overstays: &'static str,
    /// (lot, now_ms) -> alert columns: closes the lot's overstay alerts whose bay has no raised
    /// stay any more (the bay was removed, or its sensor replaced).
    pub close_orphan_overstay_alerts: &'static str,
    // --- the outbox (derived events on their way) ---
    /// (event_id, event JSON, now_ms): stages an event; one already staged is left as it is.
    pub stage_event: &'static str,
    /// (limit) -> seq, event JSON: the oldest staged events first.
    pub pending_events: &'static str,
    /// (seq): an event taken (delivered, or handed over in an answer).
    pub take_event: &'static str,
    /// (seq, error): a delivery that failed.
    pub event_failed: &'static str,
    /// () -> staged events, the oldest one's created_at_ms (NULL when none).
    pub outbox_backlog: &'static str,

    // --- published forecasts (fitted by the sweep, read by the public reads) ---
    /// (lot, class, computed_at_ms, forecast JSON or 'null' for nothing to publish)
    pub upsert_lot_forecast: &'static str,
    /// () -> lot, class, computed_at_ms, forecast JSON (or 'null')
    pub all_lot_forecasts: &'static str,
    /// (lot)
    pub delete_lot_forecasts: &'static str,
}
