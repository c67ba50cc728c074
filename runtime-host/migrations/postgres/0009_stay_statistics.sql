-- Stay statistics in the roll-ups (issue 13).
--
-- The reading path marks the status changes that start and end a stay:
-- `stay_started_at_ms` is when the stay began (on its starting change, the
-- change's own time), and on the change that ends it, `overstay_at_ms` is
-- when it went past its limit (NULL: it did not). A spell `unknown` that
-- suspends and resumes a stay is neither. Changes recorded before this
-- migration carry no marks and count in no stay statistic.
--
-- Each hourly roll-up then keeps, per (lot, zone, class), the stays started
-- and ended, the ended stays' total length and their lengths by bucket (a
-- JSON array of counts, so days merge exactly and percentiles come from
-- the stays themselves), and how many of them overstayed.

ALTER TABLE status_changes ADD COLUMN stay_started_at_ms BIGINT;
ALTER TABLE status_changes ADD COLUMN overstay_at_ms BIGINT;

ALTER TABLE occupancy_hourly ADD COLUMN stays_started BIGINT NOT NULL DEFAULT 0;
ALTER TABLE occupancy_hourly ADD COLUMN stays_ended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE occupancy_hourly ADD COLUMN stay_total_ms BIGINT NOT NULL DEFAULT 0;
ALTER TABLE occupancy_hourly ADD COLUMN stay_lengths TEXT;
ALTER TABLE occupancy_hourly ADD COLUMN overstays BIGINT NOT NULL DEFAULT 0;
