-- Lots as cities describe them (issue 11).
--
-- A lot's descriptive data (kind, location, outline, address, opening
-- hours, height limit, fees, operator, closed by an operator) is kept as
-- provisioned, one JSON document in `site`; its position is also kept as
-- numbers (`lat`, `lon`) for the nearest-lots search. A bay may have a
-- position and categories (a JSON array of names, such as
-- ["accessible","ev_charging"]): availability per category is counted at
-- read time from the bays, so the reading path writes nothing more.

ALTER TABLE lots ADD COLUMN site TEXT;
ALTER TABLE lots ADD COLUMN lat DOUBLE PRECISION;
ALTER TABLE lots ADD COLUMN lon DOUBLE PRECISION;

ALTER TABLE bays ADD COLUMN lat DOUBLE PRECISION;
ALTER TABLE bays ADD COLUMN lon DOUBLE PRECISION;
ALTER TABLE bays ADD COLUMN categories TEXT;
