-- Generated from runtime-host/migrations/sqlite (do not edit): the whole
-- schema for `spin up --sqlite @runtime-host/schema/sqlite.sql`, safe to run
-- on every start. Regenerate: PARKING_BLESS=1 cargo test --lib spin_schema

CREATE TABLE IF NOT EXISTS lots (
    lot_id        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
, time_zone TEXT NOT NULL DEFAULT 'UTC', site TEXT, lat REAL, lon REAL);

CREATE TABLE IF NOT EXISTS bays (
    lot_id               TEXT NOT NULL REFERENCES lots (lot_id) ON DELETE CASCADE,
    bay_id               TEXT NOT NULL,
    zone                 TEXT,
    class                TEXT NOT NULL,
    sensor               TEXT UNIQUE,
    model                TEXT,
    status               TEXT NOT NULL DEFAULT 'unknown'
                         CHECK (status IN ('free', 'occupied', 'unknown', 'closed')),
    status_changed_at_ms INTEGER NOT NULL,
    observed_at_ms       INTEGER,
    seq                  INTEGER,
    last_seen_at_ms      INTEGER,
    battery              REAL, temperature REAL, max_stay_s INTEGER CHECK (max_stay_s > 0), stay_started_at_ms INTEGER, stay_resumed_at_ms INTEGER, stay_counted_ms INTEGER, stay_limit_ms INTEGER, stay_due_at_ms INTEGER, overstay_at_ms INTEGER, lat REAL, lon REAL, categories TEXT,
    PRIMARY KEY (lot_id, bay_id)
);

CREATE INDEX IF NOT EXISTS bays_by_group ON bays (lot_id, zone, class);

CREATE TABLE IF NOT EXISTS processed_events (
    event_key       TEXT PRIMARY KEY,
    processed_at_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS processed_events_by_time ON processed_events (processed_at_ms);

CREATE TABLE IF NOT EXISTS readings (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key      TEXT NOT NULL,
    device         TEXT NOT NULL,
    lot_id         TEXT NOT NULL,
    bay_id         TEXT NOT NULL,
    occupied       INTEGER NOT NULL,
    seq            INTEGER,
    observed_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    battery        REAL,
    outcome        TEXT NOT NULL
, temperature REAL);

CREATE INDEX IF NOT EXISTS readings_by_bay_time ON readings (lot_id, bay_id, observed_at_ms);

CREATE INDEX IF NOT EXISTS readings_by_arrival ON readings (received_at_ms);

CREATE TABLE IF NOT EXISTS status_changes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    lot_id         TEXT NOT NULL,
    bay_id         TEXT NOT NULL,
    zone           TEXT,
    class          TEXT NOT NULL,
    previous       TEXT NOT NULL,
    status         TEXT NOT NULL,
    changed_at_ms  INTEGER NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    event_key      TEXT
, stay_started_at_ms INTEGER, overstay_at_ms INTEGER);

CREATE INDEX IF NOT EXISTS status_changes_by_lot_time ON status_changes (lot_id, changed_at_ms);

CREATE TABLE IF NOT EXISTS sensor_frames (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key         TEXT NOT NULL,
    device            TEXT NOT NULL,
    lot_id            TEXT NOT NULL,
    bay_id            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    reported_occupied INTEGER,
    frame_counter     INTEGER,
    observed_at_ms    INTEGER NOT NULL,
    received_at_ms    INTEGER NOT NULL,
    battery           REAL,
    temperature       REAL,
    detail            TEXT
);

CREATE INDEX IF NOT EXISTS sensor_frames_by_bay_time ON sensor_frames (lot_id, bay_id, observed_at_ms);

CREATE INDEX IF NOT EXISTS sensor_frames_by_arrival ON sensor_frames (received_at_ms);

CREATE TABLE IF NOT EXISTS terminals (
    terminal_id   TEXT PRIMARY KEY,
    lot_id        TEXT NOT NULL,
    -- JSON arrays; NULL shows every zone / class.
    zones         TEXT,
    classes       TEXT,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS terminals_by_lot ON terminals (lot_id);

CREATE TABLE IF NOT EXISTS terminal_frames (
    terminal_id    TEXT PRIMARY KEY,
    seq            INTEGER NOT NULL,
    content_digest TEXT NOT NULL,
    frame          TEXT NOT NULL,
    rendered_at_ms INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS occupancy_hourly (
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
    computed_at_ms  INTEGER NOT NULL, stays_started INTEGER NOT NULL DEFAULT 0, stays_ended INTEGER NOT NULL DEFAULT 0, stay_total_ms INTEGER NOT NULL DEFAULT 0, stay_lengths TEXT, overstays INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (lot_id, hour_start_ms, zone, class)
);

CREATE INDEX IF NOT EXISTS occupancy_hourly_by_time ON occupancy_hourly (hour_start_ms);

CREATE TABLE IF NOT EXISTS rollup_progress (
    name            TEXT PRIMARY KEY,
    rolled_up_to_ms INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL
);

CREATE INDEX IF NOT EXISTS status_changes_by_bay_time ON status_changes (lot_id, bay_id, changed_at_ms);

CREATE INDEX IF NOT EXISTS status_changes_by_time ON status_changes (changed_at_ms);

CREATE TABLE IF NOT EXISTS alerts (
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

CREATE UNIQUE INDEX IF NOT EXISTS alerts_one_open ON alerts (kind, subject) WHERE closed_at_ms IS NULL;

CREATE INDEX IF NOT EXISTS alerts_by_opened ON alerts (opened_at_ms);

CREATE INDEX IF NOT EXISTS alerts_unannounced ON alerts (id) WHERE announced_at_ms IS NULL;

CREATE TABLE IF NOT EXISTS availability_counts (
    lot_id        TEXT NOT NULL,
    zone          TEXT NOT NULL,
    class         TEXT NOT NULL,
    total         INTEGER NOT NULL CHECK (total >= 0),
    free          INTEGER NOT NULL CHECK (free >= 0),
    occupied      INTEGER NOT NULL CHECK (occupied >= 0),
    unknown       INTEGER NOT NULL CHECK (unknown >= 0),
    closed        INTEGER NOT NULL CHECK (closed >= 0),
    changed_at_ms INTEGER,
    PRIMARY KEY (lot_id, zone, class),
    CHECK (free + occupied + unknown + closed = total)
);

CREATE TRIGGER IF NOT EXISTS bays_count_insert AFTER INSERT ON bays
BEGIN
    INSERT INTO availability_counts (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
    VALUES (NEW.lot_id, COALESCE(NEW.zone, ''), NEW.class, 1, NEW.status = 'free', NEW.status = 'occupied',
            NEW.status = 'unknown', NEW.status = 'closed', NEW.status_changed_at_ms)
    ON CONFLICT (lot_id, zone, class) DO UPDATE SET
        total = total + 1, free = free + excluded.free, occupied = occupied + excluded.occupied,
        unknown = unknown + excluded.unknown, closed = closed + excluded.closed,
        changed_at_ms = MAX(COALESCE(changed_at_ms, 0), excluded.changed_at_ms);
END;

CREATE TRIGGER IF NOT EXISTS bays_count_delete AFTER DELETE ON bays
BEGIN
    UPDATE availability_counts SET
        total = total - 1, free = free - (OLD.status = 'free'), occupied = occupied - (OLD.status = 'occupied'),
        unknown = unknown - (OLD.status = 'unknown'), closed = closed - (OLD.status = 'closed')
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class;
    DELETE FROM availability_counts
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class AND total = 0;
END;

CREATE TRIGGER IF NOT EXISTS bays_count_update AFTER UPDATE OF lot_id, zone, class, status ON bays
WHEN OLD.lot_id IS NOT NEW.lot_id OR OLD.zone IS NOT NEW.zone OR OLD.class IS NOT NEW.class
     OR OLD.status IS NOT NEW.status
BEGIN
    UPDATE availability_counts SET
        total = total - 1, free = free - (OLD.status = 'free'), occupied = occupied - (OLD.status = 'occupied'),
        unknown = unknown - (OLD.status = 'unknown'), closed = closed - (OLD.status = 'closed')
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class;
    INSERT INTO availability_counts (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
    VALUES (NEW.lot_id, COALESCE(NEW.zone, ''), NEW.class, 1, NEW.status = 'free', NEW.status = 'occupied',
            NEW.status = 'unknown', NEW.status = 'closed', NEW.status_changed_at_ms)
    ON CONFLICT (lot_id, zone, class) DO UPDATE SET
        total = total + 1, free = free + excluded.free, occupied = occupied + excluded.occupied,
        unknown = unknown + excluded.unknown, closed = closed + excluded.closed,
        changed_at_ms = MAX(COALESCE(changed_at_ms, 0), excluded.changed_at_ms);
    DELETE FROM availability_counts
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class AND total = 0;
END;

CREATE TABLE IF NOT EXISTS zone_rules (
    lot_id     TEXT NOT NULL,
    zone       TEXT NOT NULL,
    max_stay_s INTEGER CHECK (max_stay_s > 0),
    grace_s    INTEGER NOT NULL DEFAULT 0 CHECK (grace_s >= 0),
    hours      TEXT,
    PRIMARY KEY (lot_id, zone)
);

CREATE INDEX IF NOT EXISTS bays_stay_due ON bays (stay_due_at_ms)
    WHERE stay_due_at_ms IS NOT NULL AND overstay_at_ms IS NULL;

CREATE INDEX IF NOT EXISTS bays_overstays ON bays (lot_id) WHERE overstay_at_ms IS NOT NULL;

CREATE TABLE IF NOT EXISTS event_outbox (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id      TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);

CREATE TABLE IF NOT EXISTS lot_forecasts (
    lot_id         TEXT NOT NULL,
    class          TEXT NOT NULL,
    computed_at_ms INTEGER NOT NULL,
    forecast       TEXT NOT NULL,
    PRIMARY KEY (lot_id, class)
);

CREATE INDEX IF NOT EXISTS bays_categorised ON bays (lot_id) WHERE categories IS NOT NULL;
