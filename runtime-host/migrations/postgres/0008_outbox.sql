-- Derived events on their way to the event backbone (issue 15).
--
-- The retention sweep derives events (bays gone unknown, alerts, overstays)
-- from state it changes. Each is written here in the same transaction as
-- the change it reports, then delivered to the configured sink (a Knative
-- Broker's ingress) or handed over in the sweep's answer, and deleted once
-- taken. An event whose delivery failed stays, oldest first, for the next
-- run: none is lost between a commit and its delivery.

CREATE TABLE event_outbox (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id      TEXT NOT NULL UNIQUE,
    event         TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT
);
