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
    changed_at_ms BIGINT,
    PRIMARY KEY (lot_id, zone, class),
    CHECK (free + occupied + unknown + closed = total)
);

INSERT INTO availability_counts (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
SELECT lot_id, COALESCE(zone, ''), class, COUNT(*),
       COUNT(*) FILTER (WHERE status = 'free'), COUNT(*) FILTER (WHERE status = 'occupied'),
       COUNT(*) FILTER (WHERE status = 'unknown'), COUNT(*) FILTER (WHERE status = 'closed'),
       MAX(status_changed_at_ms)
FROM bays GROUP BY lot_id, COALESCE(zone, ''), class;

-- One bay leaves its group.
CREATE FUNCTION availability_uncount(bay bays) RETURNS void LANGUAGE sql AS $$
    UPDATE availability_counts SET
        total = total - 1,
        free = free - (bay.status = 'free')::int,
        occupied = occupied - (bay.status = 'occupied')::int,
        unknown = unknown - (bay.status = 'unknown')::int,
        closed = closed - (bay.status = 'closed')::int
    WHERE lot_id = bay.lot_id AND zone = COALESCE(bay.zone, '') AND class = bay.class;
    DELETE FROM availability_counts
    WHERE lot_id = bay.lot_id AND zone = COALESCE(bay.zone, '') AND class = bay.class AND total = 0;
$$;

-- One bay joins its group.
CREATE FUNCTION availability_count(bay bays) RETURNS void LANGUAGE sql AS $$
    INSERT INTO availability_counts AS c (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
    VALUES (bay.lot_id, COALESCE(bay.zone, ''), bay.class, 1, (bay.status = 'free')::int,
            (bay.status = 'occupied')::int, (bay.status = 'unknown')::int, (bay.status = 'closed')::int,
            bay.status_changed_at_ms)
    ON CONFLICT (lot_id, zone, class) DO UPDATE SET
        total = c.total + 1, free = c.free + excluded.free, occupied = c.occupied + excluded.occupied,
        unknown = c.unknown + excluded.unknown, closed = c.closed + excluded.closed,
        changed_at_ms = GREATEST(c.changed_at_ms, excluded.changed_at_ms);
$$;

CREATE FUNCTION bays_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        PERFORM availability_uncount(OLD);
    END IF;
    IF TG_OP IN ('UPDATE', 'INSERT') THEN
        PERFORM availability_count(NEW);
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER bays_count_insert AFTER INSERT ON bays FOR EACH ROW EXECUTE FUNCTION bays_count();
CREATE TRIGGER bays_count_delete AFTER DELETE ON bays FOR EACH ROW EXECUTE FUNCTION bays_count();
CREATE TRIGGER bays_count_update AFTER UPDATE OF lot_id, zone, class, status ON bays FOR EACH ROW
    WHEN (OLD.lot_id IS DISTINCT FROM NEW.lot_id OR OLD.zone IS DISTINCT FROM NEW.zone
          OR OLD.class IS DISTINCT FROM NEW.class OR OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION bays_count();
