-- Frames that say a sensor is alive without changing its bay's status
-- (heartbeats, start-up and diagnostic frames), and the temperature some
-- sensors report.

ALTER TABLE readings ADD COLUMN temperature DOUBLE PRECISION;
ALTER TABLE bays ADD COLUMN temperature DOUBLE PRECISION;

CREATE TABLE sensor_frames (
    id                BIGSERIAL PRIMARY KEY,
    event_key         TEXT NOT NULL,
    device            TEXT NOT NULL,
    lot_id            TEXT NOT NULL,
    bay_id            TEXT NOT NULL,
    kind              TEXT NOT NULL,
    reported_occupied BOOLEAN,
    frame_counter     BIGINT,
    observed_at_ms    BIGINT NOT NULL,
    received_at_ms    BIGINT NOT NULL,
    battery           DOUBLE PRECISION,
    temperature       DOUBLE PRECISION,
    detail            TEXT
);
CREATE INDEX sensor_frames_by_bay_time ON sensor_frames (lot_id, bay_id, observed_at_ms);
CREATE INDEX sensor_frames_by_arrival ON sensor_frames (received_at_ms);
