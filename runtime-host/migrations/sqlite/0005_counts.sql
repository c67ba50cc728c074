-- Availability per (lot, zone, vehicle class), kept by triggers on bays in
-- the same transaction as every change of a bay, whatever makes it (a
-- reading, the sweep, provisioning): reading availability never counts bays.
-- zone is '' for bays without a zone. changed_at_ms is the latest
-- status_changed_at_ms a bay of the group had.

CREATE TABLE availability_counts (
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

INSERT INTO availability_counts (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
SELECT lot_id, COALESCE(zone, ''), class, COUNT(*),
       SUM(status = 'free'), SUM(status = 'occupied'), SUM(status = 'unknown'), SUM(status = 'closed'),
       MAX(status_changed_at_ms)
FROM bays GROUP BY lot_id, COALESCE(zone, ''), class;

CREATE TRIGGER bays_count_insert AFTER INSERT ON bays
BEGIN
    INSERT INTO availability_counts (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
    VALUES (NEW.lot_id, COALESCE(NEW.zone, ''), NEW.class, 1, NEW.status = 'free', NEW.status = 'occupied',
            NEW.status = 'unknown', NEW.status = 'closed', NEW.status_changed_at_ms)
    ON CONFLICT (lot_id, zone, class) DO UPDATE SET
        total = total + 1, free = free + excluded.free, occupied = occupied + excluded.occupied,
        unknown = unknown + excluded.unknown, closed = closed + excluded.closed,
        changed_at_ms = MAX(COALESCE(changed_at_ms, 0), excluded.changed_at_ms);
END;

CREATE TRIGGER bays_count_delete AFTER DELETE ON bays
BEGIN
    UPDATE availability_counts SET
        total = total - 1, free = free - (OLD.status = 'free'), occupied = occupied - (OLD.status = 'occupied'),
        unknown = unknown - (OLD.status = 'unknown'), closed = closed - (OLD.status = 'closed')
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class;
    DELETE FROM availability_counts
    WHERE lot_id = OLD.lot_id AND zone = COALESCE(OLD.zone, '') AND class = OLD.class AND total = 0;
END;

CREATE TRIGGER bays_count_update AFTER UPDATE OF lot_id, zone, class, status ON bays
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
