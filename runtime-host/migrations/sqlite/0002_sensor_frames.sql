-- Frames that say a sensor is alive without changing its bay's status
-- (heartbeats, start-up and diagnostic frames), and the temperature some
-- sensors report.

ALTER TABLE readings ADD COLUMN temperature REAL;
ALTER TABLE bays ADD COLUMN temperature REAL;

CREATE TABLE sensor_frames (
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
CREATE INDEX sensor_frames_by_bay_time ON sensor_frames (lot_id, bay_id, observed_at_ms);
CREATE INDEX sensor_frames_by_arrival ON sensor_frames (received_at_ms);
