-- Time limits and stays (issue 13).
--
-- A lot has a time zone (IANA name) in which its zones' hours are read; a
-- zone may have a limit, weekly hours (JSON, as provisioned) and a grace
-- period; a bay may have its own limit, over its zone's.
--
-- A bay's current stay lives on its row, so the reading path reads and
-- writes it with the bay in the statements it already runs (no statement
-- more per reading): when it began, the segment being counted (NULL while
-- the bay is unknown), the restricted time counted before it, the limit it
-- is judged by, when it falls due, and when its overstay was raised.
-- bays_stay_due is the due-time index the sweep reads: only stays with a
-- due time not yet raised are in it, so a tick reads what is due, never
-- every bay.

ALTER TABLE lots ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';

CREATE TABLE zone_rules (
    lot_id     TEXT NOT NULL,
    zone       TEXT NOT NULL,
    max_stay_s BIGINT CHECK (max_stay_s > 0),
    grace_s    BIGINT NOT NULL DEFAULT 0 CHECK (grace_s >= 0),
    hours      TEXT,
    PRIMARY KEY (lot_id, zone)
);

ALTER TABLE bays ADD COLUMN max_stay_s BIGINT CHECK (max_stay_s > 0);
ALTER TABLE bays ADD COLUMN stay_started_at_ms BIGINT;
ALTER TABLE bays ADD COLUMN stay_resumed_at_ms BIGINT;
ALTER TABLE bays ADD COLUMN stay_counted_ms BIGINT;
ALTER TABLE bays ADD COLUMN stay_limit_ms BIGINT;
ALTER TABLE bays ADD COLUMN stay_due_at_ms BIGINT;
ALTER TABLE bays ADD COLUMN overstay_at_ms BIGINT;

-- Bays occupied now began their stay when they last changed status.
UPDATE bays SET stay_started_at_ms = status_changed_at_ms, stay_resumed_at_ms = status_changed_at_ms,
    stay_counted_ms = 0
WHERE status = 'occupied';

CREATE INDEX bays_stay_due ON bays (stay_due_at_ms)
    WHERE stay_due_at_ms IS NOT NULL AND overstay_at_ms IS NULL;
CREATE INDEX bays_overstays ON bays (lot_id) WHERE overstay_at_ms IS NOT NULL;
