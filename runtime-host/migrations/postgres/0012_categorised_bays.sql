-- A lot's counts per bay category are read on every render of its signs
-- and public summary. Most bays have no category: this index holds only
-- those that do, so the read visits the categorised bays of the lot and
-- no others (a lot of uncategorised bays costs nothing, whatever its size).
CREATE INDEX bays_categorised ON bays (lot_id) WHERE categories IS NOT NULL;
