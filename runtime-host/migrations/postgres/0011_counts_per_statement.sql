-- Availability counts kept per statement, not per bay (issue 10). The
-- triggers of 0005 ran two functions for every changed bay: a batch of
-- readings that changed ten bays updated the same counts row twenty times,
-- each while holding its lock. Now every statement that writes bays sums
-- what it did per (lot, zone, class), from its transition tables, and moves
-- each group once. The counts mean what they meant (0005).

CREATE TYPE availability_delta AS (
    lot_id        TEXT,
    zone          TEXT,
    class         TEXT,
    total         INTEGER,
    free          INTEGER,
    occupied      INTEGER,
    unknown       INTEGER,
    closed        INTEGER,
    changed_at_ms BIGINT
);

-- What a bay (its group and status) adds to its group's counts (sign 1) or
-- takes from them (sign -1). Only a bay that joins a group moves its
-- changed_at_ms.
CREATE FUNCTION availability_delta_of(
    lot_id TEXT, zone TEXT, class TEXT, status TEXT, status_changed_at_ms BIGINT, sign INTEGER
) RETURNS availability_delta LANGUAGE sql IMMUTABLE AS $$
    SELECT ROW(lot_id, COALESCE(zone, ''), class, sign,
               sign * (status = 'free')::int, sign * (status = 'occupied')::int,
               sign * (status = 'unknown')::int, sign * (status = 'closed')::int,
               CASE WHEN sign > 0 THEN status_changed_at_ms END)::availability_delta
$$;

-- Moves each group by the sum of its deltas; a group left with no bay is
-- removed. A bay rewritten without a change (its deltas cancel) writes
-- nothing. Existing groups are updated and new ones inserted apart: an
-- inserted row is checked before its conflict is found, so a negative delta
-- cannot ride on an insert. A new group only ever gains bays. (PL/pgSQL
-- keeps its plans for the session; a SQL function would plan every call.)
CREATE FUNCTION availability_apply(deltas availability_delta[]) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(deltas) = 0 THEN
        RETURN;
    END IF;
    WITH sums AS (
        SELECT d.lot_id, d.zone, d.class, SUM(d.total) AS total, SUM(d.free) AS free,
               SUM(d.occupied) AS occupied, SUM(d.unknown) AS unknown, SUM(d.closed) AS closed,
               MAX(d.changed_at_ms) AS changed_at_ms
        FROM unnest(deltas) AS d GROUP BY d.lot_id, d.zone, d.class
    )
    UPDATE availability_counts c SET
        total = c.total + s.total, free = c.free + s.free, occupied = c.occupied + s.occupied,
        unknown = c.unknown + s.unknown, closed = c.closed + s.closed,
        changed_at_ms = GREATEST(c.changed_at_ms, s.changed_at_ms)
    FROM sums s
    WHERE c.lot_id = s.lot_id AND c.zone = s.zone AND c.class = s.class
      AND (s.total <> 0 OR s.free <> 0 OR s.occupied <> 0 OR s.unknown <> 0 OR s.closed <> 0
           OR s.changed_at_ms > COALESCE(c.changed_at_ms, s.changed_at_ms - 1));
    INSERT INTO availability_counts AS c (lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms)
    SELECT d.lot_id, d.zone, d.class, SUM(d.total), SUM(d.free), SUM(d.occupied), SUM(d.unknown), SUM(d.closed),
           MAX(d.changed_at_ms)
    FROM unnest(deltas) AS d
    WHERE NOT EXISTS (SELECT 1 FROM availability_counts e
                      WHERE e.lot_id = d.lot_id AND e.zone = d.zone AND e.class = d.class)
    GROUP BY d.lot_id, d.zone, d.class
    ORDER BY d.lot_id, d.zone, d.class
    -- Created since this statement's snapshot by a concurrent writer.
    ON CONFLICT (lot_id, zone, class) DO UPDATE SET
        total = c.total + excluded.total, free = c.free + excluded.free,
        occupied = c.occupied + excluded.occupied, unknown = c.unknown + excluded.unknown,
        closed = c.closed + excluded.closed,
        changed_at_ms = GREATEST(c.changed_at_ms, excluded.changed_at_ms);
    DELETE FROM availability_counts c
    USING (SELECT DISTINCT d.lot_id, d.zone, d.class FROM unnest(deltas) AS d) AS g
    WHERE c.lot_id = g.lot_id AND c.zone = g.zone AND c.class = g.class AND c.total = 0;
END;
$$;

CREATE FUNCTION bays_count_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM availability_apply(ARRAY(
            SELECT availability_delta_of(n.lot_id, n.zone, n.class, n.status, n.status_changed_at_ms, 1)
            FROM new_bays n));
    ELSIF TG_OP = 'DELETE' THEN
        PERFORM availability_apply(ARRAY(
            SELECT availability_delta_of(o.lot_id, o.zone, o.class, o.status, o.status_changed_at_ms, -1)
            FROM old_bays o));
    ELSE
        PERFORM availability_apply(ARRAY(
            SELECT availability_delta_of(o.lot_id, o.zone, o.class, o.status, o.status_changed_at_ms, -1)
            FROM old_bays o
            UNION ALL
            SELECT availability_delta_of(n.lot_id, n.zone, n.class, n.status, n.status_changed_at_ms, 1)
            FROM new_bays n));
    END IF;
    RETURN NULL;
END;
$$;

DROP TRIGGER bays_count_insert ON bays;
DROP TRIGGER bays_count_delete ON bays;
DROP TRIGGER bays_count_update ON bays;
DROP FUNCTION bays_count();
DROP FUNCTION availability_count(bays);
DROP FUNCTION availability_uncount(bays);

CREATE TRIGGER bays_count_insert AFTER INSERT ON bays REFERENCING NEW TABLE AS new_bays
    FOR EACH STATEMENT EXECUTE FUNCTION bays_count_statement();
CREATE TRIGGER bays_count_delete AFTER DELETE ON bays REFERENCING OLD TABLE AS old_bays
    FOR EACH STATEMENT EXECUTE FUNCTION bays_count_statement();
CREATE TRIGGER bays_count_update AFTER UPDATE ON bays REFERENCING OLD TABLE AS old_bays NEW TABLE AS new_bays
    FOR EACH STATEMENT EXECUTE FUNCTION bays_count_statement();
