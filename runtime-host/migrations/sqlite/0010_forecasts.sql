-- Each lot's forecast per vehicle class, as the public reads show it
-- (issue 13): "how many free in an hour". The retention sweep refits the
-- model every few minutes and keeps its answer here, so a page read by many
-- visitors costs one row read per lot, not one model fit per visitor. The
-- forecast API itself still fits on every request.
--
-- `forecast` is the stored horizon as JSON (its time, free bays and range),
-- `computed_at_ms` when the sweep fitted it; readers ignore a forecast the
-- sweep has not refreshed for a while.

CREATE TABLE lot_forecasts (
    lot_id         TEXT NOT NULL,
    class          TEXT NOT NULL,
    computed_at_ms INTEGER NOT NULL,
    forecast       TEXT NOT NULL,
    PRIMARY KEY (lot_id, class)
);
