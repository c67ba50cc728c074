-- History kept past the raw rows, the retention sweep's progress, and alerts.

-- Hourly roll-ups per (lot, zone, vehicle class), built by retention-sweep
-- from status_changes before those are deleted. Sums, not means, so hours
-- add up exactly into days (see functions/domain/src/history.rs). A bay
-- group without a zone has zone '' (a key column cannot be NULL).
CREATE TABLE occupancy_hourly (
    lot_id          TEXT NOT NULL,
    hour_start_ms   INTEGER NOT NULL,
    zone            TEXT NOT NULL,
    class           TEXT NOT NULL,
    span_ms         INTEGER NOT NULL,
    bays            INTEGER NOT NULL,
    occupied_bay_ms INTEGER NOT NULL,
    peak_occupied   INTEGER NOT NULL,
    min_free        INTEGER NOT NULL,
    arrivals        INTEGER NOT NULL,
    departures      INTEGER NOT NULL,
    dwell_total_ms  INTEGER NOT NULL,
    dwell_count     INTEGER NOT NULL,
    computed_at_ms  INTEGER NOT NULL,
    PRIMARY KEY (lot_id, hour_start_ms, zone, class)
);
CREATE INDEX occupancy_hourly_by_time ON occupancy_hourly (hour_start_ms);

-- How far the hourly roll-up has got: every hour before rolled_up_to_ms is
-- in occupancy_hourly. One row; sweeps lock it, so two never roll up at once.
CREATE TABLE rollup_progress (
    name            TEXT PRIMARY KEY,
    rolled_up_to_ms INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

-- Roll-ups look up a bay's next change after an hour starts, and retention
-- deletes by time across lots.
CREATE INDEX status_changes_by_bay_time ON status_changes (lot_id, bay_id, changed_at_ms);
CREATE INDEX status_changes_by_time ON status_changes (changed_at_ms);

-- Alerts: open until what raised them is over. At most one open alert per
-- (kind, subject): raising an open alert again changes nothing.
CREATE TABLE alerts (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    kind         TEXT NOT NULL,
    subject      TEXT NOT NULL,
    lot_id       TEXT,
    bay_id       TEXT,
    zone         TEXT,
    class        TEXT,
    device       TEXT,
    detail       TEXT,
    opened_at_ms INTEGER NOT NULL,
    closed_at_ms INTEGER,
    -- When its opening went out as an event; NULL until then (an alert raised
    -- by a refused request is announced by the next sweep).
    announced_at_ms INTEGER
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (kind, subject) WHERE closed_at_ms IS NULL;
CREATE INDEX alerts_by_opened ON alerts (opened_at_ms);
CREATE INDEX alerts_unannounced ON alerts (id) WHERE announced_at_ms IS NULL;
