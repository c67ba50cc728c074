-- Lots, bays, the readings applied to them, and the dedup log.
-- Times are milliseconds since the Unix epoch (see functions/kit/src/sql).

CREATE TABLE lots (
    lot_id        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);

CREATE TABLE bays (
    lot_id               TEXT NOT NULL REFERENCES lots (lot_id) ON DELETE CASCADE,
    bay_id               TEXT NOT NULL,
    zone                 TEXT,
    class                TEXT NOT NULL,
    sensor               TEXT UNIQUE,
    model                TEXT,
    status               TEXT NOT NULL DEFAULT 'unknown'
                         CHECK (status IN ('free', 'occupied', 'unknown', 'closed')),
    status_changed_at_ms BIGINT NOT NULL,
    observed_at_ms       BIGINT,
    seq                  BIGINT,
    last_seen_at_ms      BIGINT,
    battery              DOUBLE PRECISION,
    PRIMARY KEY (lot_id, bay_id)
);
CREATE INDEX bays_by_group ON bays (lot_id, zone, class);

-- One row per CloudEvent (source + id) ever applied: redeliveries stop here.
CREATE TABLE processed_events (
    event_key       TEXT PRIMARY KEY,
    processed_at_ms BIGINT NOT NULL
);
CREATE INDEX processed_events_by_time ON processed_events (processed_at_ms);

-- Every reading, with what it did to its bay.
CREATE TABLE readings (
    id             BIGSERIAL PRIMARY KEY,
    event_key      TEXT NOT NULL,
    device         TEXT NOT NULL,
    lot_id         TEXT NOT NULL,
    bay_id         TEXT NOT NULL,
    occupied       BOOLEAN NOT NULL,
    seq            BIGINT,
    observed_at_ms BIGINT NOT NULL,
    received_at_ms BIGINT NOT NULL,
    battery        DOUBLE PRECISION,
    outcome        TEXT NOT NULL
);
CREATE INDEX readings_by_bay_time ON readings (lot_id, bay_id, observed_at_ms);
CREATE INDEX readings_by_arrival ON readings (received_at_ms);

-- Every status change of a bay.
CREATE TABLE status_changes (
    id             BIGSERIAL PRIMARY KEY,
    lot_id         TEXT NOT NULL,
    bay_id         TEXT NOT NULL,
    zone           TEXT,
    class          TEXT NOT NULL,
    previous       TEXT NOT NULL,
    status         TEXT NOT NULL,
    changed_at_ms  BIGINT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    event_key      TEXT
);
CREATE INDEX status_changes_by_lot_time ON status_changes (lot_id, changed_at_ms);
