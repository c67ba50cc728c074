//! The statements for SQLite (the embedded default).

use super::Statements;

pub static STATEMENTS: Statements = Statements {
    begin: "BEGIN IMMEDIATE",

    lot_name: "SELECT name FROM lots WHERE lot_id = ?1",
    upsert_lot: "INSERT INTO lots (lot_id, name, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?3) \
                 ON CONFLICT (lot_id) DO UPDATE SET name = excluded.name, updated_at_ms = excluded.updated_at_ms",
    list_lots: "SELECT lot_id, name FROM lots ORDER BY lot_id",
    count_all_lots: "SELECT lot_id, class, status, COUNT(*), MAX(status_changed_at_ms) FROM bays \
                     GROUP BY lot_id, class, status",
    delete_lot_bays: "DELETE FROM bays WHERE lot_id = ?1",
    delete_lot: "DELETE FROM lots WHERE lot_id = ?1",

    lot_bay_sensors: "SELECT bay_id, sensor FROM bays WHERE lot_id = ?1",
    release_lot_sensors: "UPDATE bays SET sensor = NULL WHERE lot_id = ?1",
    delete_bay: "DELETE FROM bays WHERE lot_id = ?1 AND bay_id = ?2",
    upsert_bay_keep_state: "INSERT INTO bays (lot_id, bay_id, zone, class, sensor, model, status, status_changed_at_ms) \
                            VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'unknown', ?7) \
                            ON CONFLICT (lot_id, bay_id) DO UPDATE SET zone = excluded.zone, class = excluded.class, \
                            sensor = excluded.sensor, model = excluded.model",
    upsert_bay_reset_state: "INSERT INTO bays (lot_id, bay_id, zone, class, sensor, model, status, status_changed_at_ms) \
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'unknown', ?7) \
                             ON CONFLICT (lot_id, bay_id) DO UPDATE SET zone = excluded.zone, class = excluded.class, \
                             sensor = excluded.sensor, model = excluded.model, \
                             status = CASE WHEN bays.status = 'closed' THEN 'closed' ELSE 'unknown' END, \
                             status_changed_at_ms = CASE WHEN bays.status IN ('closed', 'unknown') \
                                 THEN bays.status_changed_at_ms ELSE excluded.status_changed_at_ms END, \
                             observed_at_ms = NULL, seq = NULL, last_seen_at_ms = NULL, battery = NULL",
    lot_bays: "SELECT bay_id, zone, class, sensor, model, status, status_changed_at_ms, observed_at_ms, \
               last_seen_at_ms, battery FROM bays WHERE lot_id = ?1 ORDER BY bay_id",
    lot_group_counts: "SELECT zone, class, status, COUNT(*), MAX(status_changed_at_ms) FROM bays \
                       WHERE lot_id = ?1 GROUP BY zone, class, status",

    claim_event: "INSERT INTO processed_events (event_key, processed_at_ms) VALUES (?1, ?2) \
                  ON CONFLICT (event_key) DO NOTHING RETURNING event_key",
    // SQLite has no row locks: BEGIN IMMEDIATE already serialises writers.
    bay_by_sensor: "SELECT lot_id, bay_id, zone, class, status, observed_at_ms, seq, model FROM bays WHERE sensor = ?1",
    insert_reading: "INSERT INTO readings (event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms, \
                     received_at_ms, battery, outcome, temperature) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    insert_sensor_frame: "INSERT INTO sensor_frames (event_key, device, lot_id, bay_id, kind, reported_occupied, \
                          frame_counter, observed_at_ms, received_at_ms, battery, temperature, detail) \
                          VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
    set_bay_status: "UPDATE bays SET status = ?3, status_changed_at_ms = ?4 WHERE lot_id = ?1 AND bay_id = ?2",
    set_bay_observation: "UPDATE bays SET observed_at_ms = ?3, seq = ?4, \
                          last_seen_at_ms = MAX(COALESCE(last_seen_at_ms, 0), ?5), \
                          battery = COALESCE(?6, battery), temperature = COALESCE(?7, temperature) \
                          WHERE lot_id = ?1 AND bay_id = ?2",
    touch_bay: "UPDATE bays SET last_seen_at_ms = MAX(COALESCE(last_seen_at_ms, 0), ?3), \
                battery = COALESCE(?4, battery), temperature = COALESCE(?5, temperature) \
                WHERE lot_id = ?1 AND bay_id = ?2",
    insert_status_change: "INSERT INTO status_changes (lot_id, bay_id, zone, class, previous, status, \
                           changed_at_ms, recorded_at_ms, event_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    group_counts: "SELECT status, COUNT(*), MAX(status_changed_at_ms) FROM bays \
                   WHERE lot_id = ?1 AND zone IS ?2 AND class = ?3 GROUP BY status",
    upsert_terminal: "INSERT INTO terminals (terminal_id, lot_id, zones, classes, token_sha256, created_at_ms, updated_at_ms) \
                      VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
                      ON CONFLICT (terminal_id) DO UPDATE SET lot_id = excluded.lot_id, zones = excluded.zones, \
                      classes = excluded.classes, token_sha256 = excluded.token_sha256, updated_at_ms = excluded.updated_at_ms",
    terminal: "SELECT lot_id, zones, classes, created_at_ms, updated_at_ms FROM terminals WHERE terminal_id = ?1",
    delete_terminal: "DELETE FROM terminals WHERE terminal_id = ?1",
    delete_terminal_frame: "DELETE FROM terminal_frames WHERE terminal_id = ?1",
    lot_terminals: "SELECT terminal_id, zones, classes FROM terminals WHERE lot_id = ?1 ORDER BY terminal_id",
    // BEGIN IMMEDIATE already serialises renders.
    terminal_frame: "SELECT f.seq, f.content_digest, f.frame FROM terminals t \
                     LEFT JOIN terminal_frames f ON f.terminal_id = t.terminal_id WHERE t.terminal_id = ?1",
    upsert_terminal_frame: "INSERT INTO terminal_frames (terminal_id, seq, content_digest, frame, rendered_at_ms) \
                            VALUES (?1, ?2, ?3, ?4, ?5) \
                            ON CONFLICT (terminal_id) DO UPDATE SET seq = excluded.seq, \
                            content_digest = excluded.content_digest, frame = excluded.frame, \
                            rendered_at_ms = excluded.rendered_at_ms",
};
