-- Display terminals (signs, kiosk pages) and the last frame each was sent.
-- A terminal's token is stored only as its SHA-256 digest (hex).

CREATE TABLE terminals (
    terminal_id   TEXT PRIMARY KEY,
    lot_id        TEXT NOT NULL,
    -- JSON arrays; NULL shows every zone / class.
    zones         TEXT,
    classes       TEXT,
    token_sha256  TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX terminals_by_lot ON terminals (lot_id);

-- The frame last rendered for a terminal: its sequence (the frame id), a
-- digest of its content (an unchanged re-render reuses the frame) and the
-- frame itself (its sign states feed the next frame's hysteresis).
CREATE TABLE terminal_frames (
    terminal_id    TEXT PRIMARY KEY,
    seq            BIGINT NOT NULL,
    content_digest TEXT NOT NULL,
    frame          TEXT NOT NULL,
    rendered_at_ms BIGINT NOT NULL
);
