//! The statements for PostgreSQL (production and the cluster).
//!
//! A list passed as JSON reaches its rows as `= ANY (ARRAY(SELECT ...))`, not
//! as a join or `IN (SELECT ...)`: the planner takes a JSON list for a
//! hundred rows whatever its length, and would read a lot of thousands of
//! bays whole for a batch of ten; an array it looks up in the index.

use super::Statements;

pub static STATEMENTS: Statements = Statements {
    begin: "BEGIN",
    derived_commit: Some("SET LOCAL synchronous_commit TO OFF"),

    lot_name: "SELECT name, time_zone, site FROM lots WHERE lot_id = $1",
    upsert_lot: "INSERT INTO lots (lot_id, name, created_at_ms, updated_at_ms, time_zone, site, lat, lon) \
                 VALUES ($1, $2, $3, $3, $4, $5, $6, $7) \
                 ON CONFLICT (lot_id) DO UPDATE SET name = excluded.name, updated_at_ms = excluded.updated_at_ms, \
                 time_zone = excluded.time_zone, site = excluded.site, lat = excluded.lat, lon = excluded.lon",
    list_lots: "SELECT lot_id, name, time_zone, site, lat, lon, updated_at_ms FROM lots ORDER BY lot_id",
    count_all_lots: "SELECT lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms FROM availability_counts ORDER BY lot_id",
    delete_lot_bays: "DELETE FROM bays WHERE lot_id = $1",
    delete_lot: "DELETE FROM lots WHERE lot_id = $1",

    // Locks the lot's bays, so a replace and a reading for the same bay serialise.
    lot_bay_sensors: "SELECT bay_id, sensor FROM bays WHERE lot_id = $1 FOR UPDATE",
    release_lot_sensors: "UPDATE bays SET sensor = NULL WHERE lot_id = $1",
    delete_bay: "DELETE FROM bays WHERE lot_id = $1 AND bay_id = $2",
    upsert_bay_keep_state: "INSERT INTO bays (lot_id, bay_id, zone, class, sensor, model, status, status_changed_at_ms, max_stay_s, \
                            lat, lon, categories) \
                            VALUES ($1, $2, $3, $4, $5, $6, 'unknown', $7, $8, $9, $10, $11) \
                            ON CONFLICT (lot_id, bay_id) DO UPDATE SET zone = excluded.zone, class = excluded.class, \
                            sensor = excluded.sensor, model = excluded.model, max_stay_s = excluded.max_stay_s, \
                            lat = excluded.lat, lon = excluded.lon, categories = excluded.categories",
    upsert_bay_reset_state: "INSERT INTO bays (lot_id, bay_id, zone, class, sensor, model, status, status_changed_at_ms, max_stay_s, \
                            lat, lon, categories) \
                             VALUES ($1, $2, $3, $4, $5, $6, 'unknown', $7, $8, $9, $10, $11) \
                             ON CONFLICT (lot_id, bay_id) DO UPDATE SET zone = excluded.zone, class = excluded.class, \
                             sensor = excluded.sensor, model = excluded.model, max_stay_s = excluded.max_stay_s, \
                            lat = excluded.lat, lon = excluded.lon, categories = excluded.categories, \
                             status = CASE WHEN bays.status = 'closed' THEN 'closed' ELSE 'unknown' END, \
                             status_changed_at_ms = CASE WHEN bays.status IN ('closed', 'unknown') \
                                 THEN bays.status_changed_at_ms ELSE excluded.status_changed_at_ms END, \
                             observed_at_ms = NULL, seq = NULL, last_seen_at_ms = NULL, battery = NULL, \
                             stay_started_at_ms = NULL, stay_resumed_at_ms = NULL, stay_counted_ms = NULL, \
                             stay_limit_ms = NULL, stay_due_at_ms = NULL, overstay_at_ms = NULL",
    lot_bays: "SELECT bay_id, zone, class, sensor, model, status, status_changed_at_ms, observed_at_ms, \
               last_seen_at_ms, battery, max_stay_s, lat, lon, categories FROM bays WHERE lot_id = $1 ORDER BY bay_id",
    lot_category_counts: "SELECT j.value, b.status, COUNT(*) FROM bays b, json_array_elements_text(b.categories::json) AS j(value) \
                          WHERE b.lot_id = $1 AND b.categories IS NOT NULL GROUP BY j.value, b.status",
    all_category_counts: "SELECT b.lot_id, j.value, b.status, COUNT(*) FROM bays b, json_array_elements_text(b.categories::json) AS j(value) \
                          WHERE b.categories IS NOT NULL GROUP BY b.lot_id, j.value, b.status",
    lot_group_counts: "SELECT zone, class, total, free, occupied, unknown, closed, changed_at_ms FROM availability_counts WHERE lot_id = $1",

    // The row locks order concurrent writers: bays first, then counts, each in key order.
    counts_of_sensors: "SELECT lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms, \
                        (SELECT string_agg(a.kind, ',') FROM alerts a WHERE a.kind IN ('lot_full', 'lot_almost_full') \
                         AND a.subject = c.lot_id || '/' || c.class AND a.closed_at_ms IS NULL) \
                        FROM availability_counts c WHERE lot_id IN (SELECT lot_id FROM bays WHERE sensor = ANY \
                        (ARRAY(SELECT json_array_elements_text($1::text::json)))) ORDER BY lot_id, zone, class FOR UPDATE OF c",
    bays_by_sensors: "SELECT b.sensor, b.lot_id, b.bay_id, b.zone, b.class, b.status, b.observed_at_ms, b.seq, \
                      b.model, b.battery, b.max_stay_s, z.max_stay_s, z.grace_s, z.hours, l.time_zone, \
                      b.stay_started_at_ms, b.stay_resumed_at_ms, b.stay_counted_ms, b.stay_limit_ms, \
                      b.stay_due_at_ms, b.overstay_at_ms \
                      FROM bays b JOIN lots l ON l.lot_id = b.lot_id \
                      LEFT JOIN zone_rules z ON z.lot_id = b.lot_id AND z.zone = b.zone WHERE b.sensor = ANY (ARRAY(SELECT json_array_elements_text($1::text::json))) \
                      ORDER BY b.lot_id, b.bay_id FOR UPDATE OF b",
    // The bays first, locked in (lot, bay) order by the first branch before
    // the second claims anything; an event whose device has no bay is not claimed.
    load_batch: Some(
        "WITH locked AS MATERIALIZED (SELECT b.sensor, b.lot_id, b.bay_id, b.zone, b.class, b.status, \
             b.observed_at_ms, b.seq, b.model, b.battery, b.max_stay_s, z.max_stay_s AS zone_max_stay_s, \
             z.grace_s, z.hours, l.time_zone, b.stay_started_at_ms, b.stay_resumed_at_ms, b.stay_counted_ms, \
             b.stay_limit_ms, b.stay_due_at_ms, b.overstay_at_ms \
           FROM bays b JOIN lots l ON l.lot_id = b.lot_id \
           LEFT JOIN zone_rules z ON z.lot_id = b.lot_id AND z.zone = b.zone \
           WHERE b.sensor = ANY (ARRAY(SELECT json_array_elements_text($1::text::json))) \
           ORDER BY b.lot_id, b.bay_id FOR UPDATE OF b), \
         claimed AS (INSERT INTO processed_events (event_key, processed_at_ms) \
           SELECT e.key, $3 FROM json_to_recordset($2::text::json) AS e(key text, device text) \
           WHERE e.device IN (SELECT sensor FROM locked) \
           ON CONFLICT (event_key) DO NOTHING RETURNING event_key) \
         SELECT *, NULL::text FROM locked \
         UNION ALL \
         SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
           NULL, NULL, NULL, NULL, NULL, NULL, event_key FROM claimed",
    ),
    claim_events: "INSERT INTO processed_events (event_key, processed_at_ms) \
                   SELECT k, $2 FROM json_array_elements_text($1::text::json) AS k \
                   ON CONFLICT (event_key) DO NOTHING RETURNING event_key",
    insert_readings: "INSERT INTO readings (event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms, \
                      received_at_ms, battery, outcome, temperature) \
                      SELECT event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms, received_at_ms, \
                      battery, outcome, temperature \
                      FROM json_populate_recordset(NULL::readings, $1::text::json) WITH ORDINALITY ORDER BY ordinality",
    insert_sensor_frames: "INSERT INTO sensor_frames (event_key, device, lot_id, bay_id, kind, reported_occupied, \
                           frame_counter, observed_at_ms, received_at_ms, battery, temperature, detail) \
                           SELECT event_key, device, lot_id, bay_id, kind, reported_occupied, frame_counter, \
                           observed_at_ms, received_at_ms, battery, temperature, detail \
                           FROM json_populate_recordset(NULL::sensor_frames, $1::text::json) WITH ORDINALITY \
                           ORDER BY ordinality",
    update_bays: "UPDATE bays SET status = u.status, \
                  status_changed_at_ms = COALESCE(u.status_changed_at_ms, bays.status_changed_at_ms), \
                  observed_at_ms = u.observed_at_ms, seq = u.seq, \
                  last_seen_at_ms = GREATEST(COALESCE(bays.last_seen_at_ms, 0), u.last_seen_at_ms), \
                  battery = COALESCE(u.battery, bays.battery), temperature = COALESCE(u.temperature, bays.temperature), \
                  stay_started_at_ms = u.stay_started_at_ms, stay_resumed_at_ms = u.stay_resumed_at_ms, \
                  stay_counted_ms = u.stay_counted_ms, stay_limit_ms = u.stay_limit_ms, \
                  stay_due_at_ms = u.stay_due_at_ms, overstay_at_ms = u.overstay_at_ms \
                  FROM json_populate_recordset(NULL::bays, $1::text::json) AS u \
                  WHERE bays.sensor = ANY (ARRAY(SELECT k.sensor FROM json_populate_recordset(NULL::bays, $1::text::json) AS k)) \
                  AND bays.lot_id = u.lot_id AND bays.bay_id = u.bay_id",
    insert_status_changes: "INSERT INTO status_changes (lot_id, bay_id, zone, class, previous, status, changed_at_ms, \
                            recorded_at_ms, event_key, stay_started_at_ms, overstay_at_ms) \
                            SELECT lot_id, bay_id, zone, class, previous, status, changed_at_ms, recorded_at_ms, event_key, \
                            stay_started_at_ms, overstay_at_ms \
                            FROM json_populate_recordset(NULL::status_changes, $1::text::json) WITH ORDINALITY \
                            ORDER BY ordinality",
    write_batch: Some(
        "WITH readings_in AS (INSERT INTO readings (event_key, device, lot_id, bay_id, occupied, seq, \
             observed_at_ms, received_at_ms, battery, outcome, temperature) \
           SELECT event_key, device, lot_id, bay_id, occupied, seq, observed_at_ms, received_at_ms, battery, \
             outcome, temperature \
           FROM json_populate_recordset(NULL::readings, $1::text::json) WITH ORDINALITY ORDER BY ordinality), \
         frames_in AS (INSERT INTO sensor_frames (event_key, device, lot_id, bay_id, kind, reported_occupied, \
             frame_counter, observed_at_ms, received_at_ms, battery, temperature, detail) \
           SELECT event_key, device, lot_id, bay_id, kind, reported_occupied, frame_counter, observed_at_ms, \
             received_at_ms, battery, temperature, detail \
           FROM json_populate_recordset(NULL::sensor_frames, $2::text::json) WITH ORDINALITY ORDER BY ordinality), \
         changes_in AS (INSERT INTO status_changes (lot_id, bay_id, zone, class, previous, status, \
             changed_at_ms, recorded_at_ms, event_key, stay_started_at_ms, overstay_at_ms) \
           SELECT lot_id, bay_id, zone, class, previous, status, changed_at_ms, recorded_at_ms, event_key, \
             stay_started_at_ms, overstay_at_ms \
           FROM json_populate_recordset(NULL::status_changes, $3::text::json) WITH ORDINALITY ORDER BY ordinality), \
         bays_out AS (UPDATE bays SET status = u.status, \
           status_changed_at_ms = COALESCE(u.status_changed_at_ms, bays.status_changed_at_ms), \
           observed_at_ms = u.observed_at_ms, seq = u.seq, \
           last_seen_at_ms = GREATEST(COALESCE(bays.last_seen_at_ms, 0), u.last_seen_at_ms), \
           battery = COALESCE(u.battery, bays.battery), temperature = COALESCE(u.temperature, bays.temperature), \
           stay_started_at_ms = u.stay_started_at_ms, stay_resumed_at_ms = u.stay_resumed_at_ms, \
           stay_counted_ms = u.stay_counted_ms, stay_limit_ms = u.stay_limit_ms, \
           stay_due_at_ms = u.stay_due_at_ms, overstay_at_ms = u.overstay_at_ms \
         FROM json_populate_recordset(NULL::bays, $4::text::json) AS u \
         WHERE bays.sensor = ANY (ARRAY(SELECT k.sensor FROM json_populate_recordset(NULL::bays, $4::text::json) AS k)) \
           AND bays.lot_id = u.lot_id AND bays.bay_id = u.bay_id), \
         unclaimed AS (DELETE FROM processed_events \
           WHERE event_key = ANY (ARRAY(SELECT json_array_elements_text($6::text::json)))) \
         SELECT lot_id, zone, class, total, free, occupied, unknown, closed, changed_at_ms, \
           (SELECT string_agg(a.kind, ',') FROM alerts a WHERE a.kind IN ('lot_full', 'lot_almost_full') \
            AND a.subject = c.lot_id || '/' || c.class AND a.closed_at_ms IS NULL) \
         FROM availability_counts c WHERE lot_id IN (SELECT json_array_elements_text($5::text::json)) \
         ORDER BY lot_id, zone, class FOR UPDATE OF c",
    ),
    set_bay_status: "UPDATE bays SET status = $3, status_changed_at_ms = $4 WHERE lot_id = $1 AND bay_id = $2",
    insert_status_change: "INSERT INTO status_changes (lot_id, bay_id, zone, class, previous, status, \
                           changed_at_ms, recorded_at_ms, event_key) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    group_counts: "SELECT total, free, occupied, unknown, closed, changed_at_ms FROM availability_counts \
                   WHERE lot_id = $1 AND zone = $2 AND class = $3",

    init_rollup_progress: "INSERT INTO rollup_progress (name, rolled_up_to_ms, updated_at_ms) VALUES ($1, $3, $2) \
                           ON CONFLICT (name) DO NOTHING",
    rollup_progress: "SELECT rolled_up_to_ms FROM rollup_progress WHERE name = $1 FOR UPDATE",
    set_rollup_progress: "UPDATE rollup_progress SET rolled_up_to_ms = $2, updated_at_ms = $3 WHERE name = $1",
    first_status_change: "SELECT MIN(changed_at_ms) FROM status_changes",
    bays_at: "SELECT b.lot_id, b.bay_id, b.zone, b.class, \
              COALESCE((SELECT s.previous FROM status_changes s WHERE s.lot_id = b.lot_id AND s.bay_id = b.bay_id \
                        AND s.changed_at_ms >= $1 ORDER BY s.changed_at_ms, s.id LIMIT 1), b.status) \
              FROM bays b",
    changes_between: "SELECT s.lot_id, s.bay_id, s.zone, s.class, s.previous, s.status, s.changed_at_ms, \
                      CASE WHEN s.previous = 'occupied' AND s.status = 'free' THEN \
                        (SELECT MAX(p.changed_at_ms) FROM status_changes p WHERE p.lot_id = s.lot_id \
                         AND p.bay_id = s.bay_id AND p.status = 'occupied' AND p.changed_at_ms <= s.changed_at_ms \
                         AND p.id <> s.id) END, \
                      s.stay_started_at_ms, s.overstay_at_ms \
                      FROM status_changes s WHERE s.changed_at_ms >= $1 AND s.changed_at_ms < $2 \
                      ORDER BY s.changed_at_ms, s.id",
    lot_bays_at: "SELECT b.lot_id, b.bay_id, b.zone, b.class, \
              COALESCE((SELECT s.previous FROM status_changes s WHERE s.lot_id = b.lot_id AND s.bay_id = b.bay_id \
                        AND s.changed_at_ms >= $2 ORDER BY s.changed_at_ms, s.id LIMIT 1), b.status) \
              FROM bays b WHERE b.lot_id = $1",
    lot_changes_between: "SELECT s.lot_id, s.bay_id, s.zone, s.class, s.previous, s.status, s.changed_at_ms, \
                      CASE WHEN s.previous = 'occupied' AND s.status = 'free' THEN \
                        (SELECT MAX(p.changed_at_ms) FROM status_changes p WHERE p.lot_id = s.lot_id \
                         AND p.bay_id = s.bay_id AND p.status = 'occupied' AND p.changed_at_ms <= s.changed_at_ms \
                         AND p.id <> s.id) END, \
                      s.stay_started_at_ms, s.overstay_at_ms \
                      FROM status_changes s WHERE s.lot_id = $1 AND s.changed_at_ms >= $2 AND s.changed_at_ms < $3 \
                      ORDER BY s.changed_at_ms, s.id",
    rolled_up_to: "SELECT rolled_up_to_ms FROM rollup_progress WHERE name = $1",
    upsert_rollup: "INSERT INTO occupancy_hourly (lot_id, hour_start_ms, zone, class, span_ms, bays, occupied_bay_ms, \
                    peak_occupied, min_free, arrivals, departures, dwell_total_ms, dwell_count, computed_at_ms, \
                    stays_started, stays_ended, stay_total_ms, stay_lengths, overstays) \
                    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
                    $15, $16, $17, $18, $19) \
                    ON CONFLICT (lot_id, hour_start_ms, zone, class) DO UPDATE SET span_ms = excluded.span_ms, \
                    bays = excluded.bays, occupied_bay_ms = excluded.occupied_bay_ms, \
                    peak_occupied = excluded.peak_occupied, min_free = excluded.min_free, \
                    arrivals = excluded.arrivals, departures = excluded.departures, \
                    dwell_total_ms = excluded.dwell_total_ms, dwell_count = excluded.dwell_count, \
                    computed_at_ms = excluded.computed_at_ms, stays_started = excluded.stays_started, \
                    stays_ended = excluded.stays_ended, stay_total_ms = excluded.stay_total_ms, \
                    stay_lengths = excluded.stay_lengths, overstays = excluded.overstays",
    lot_rollups: "SELECT zone, class, hour_start_ms, span_ms, bays, occupied_bay_ms, peak_occupied, min_free, \
                  arrivals, departures, dwell_total_ms, dwell_count, stays_started, stays_ended, stay_total_ms, \
                  stay_lengths, overstays FROM occupancy_hourly \
                  WHERE lot_id = $1 AND hour_start_ms >= $2 AND hour_start_ms < $3 AND ($4::text IS NULL OR class = $4) \
                  ORDER BY hour_start_ms, zone, class",

    delete_readings_before: "DELETE FROM readings WHERE id IN \
                             (SELECT id FROM readings WHERE received_at_ms < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1",
    delete_sensor_frames_before: "DELETE FROM sensor_frames WHERE id IN \
                                  (SELECT id FROM sensor_frames WHERE received_at_ms < $1 ORDER BY id LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1",
    delete_status_changes_before: "DELETE FROM status_changes WHERE id IN \
                                   (SELECT id FROM status_changes WHERE changed_at_ms < $1 ORDER BY changed_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
                                   RETURNING 1",
    delete_processed_events_before: "DELETE FROM processed_events WHERE event_key IN \
                                     (SELECT event_key FROM processed_events WHERE processed_at_ms < $1 \
                                      ORDER BY processed_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1",
    delete_rollups_before: "DELETE FROM occupancy_hourly WHERE (lot_id, hour_start_ms, zone, class) IN \
                            (SELECT lot_id, hour_start_ms, zone, class FROM occupancy_hourly \
                             WHERE hour_start_ms < $1 ORDER BY hour_start_ms LIMIT $2 FOR UPDATE SKIP LOCKED) RETURNING 1",

    silent_bay_candidates: "SELECT lot_id, bay_id, zone, class, sensor, model, last_seen_at_ms FROM bays \
                            WHERE sensor IS NOT NULL AND status IN ('free', 'occupied') \
                            AND last_seen_at_ms < $1 ORDER BY last_seen_at_ms LIMIT $2",
    bay_liveness: "SELECT status, last_seen_at_ms, model, zone, class, sensor FROM bays WHERE lot_id = $1 AND bay_id = $2 FOR UPDATE",
    open_alert: "INSERT INTO alerts (kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, \
                 announced_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (kind, subject) WHERE closed_at_ms IS NULL DO NOTHING RETURNING id",
    close_recovered_offline_alerts: "UPDATE alerts SET closed_at_ms = $1 WHERE kind = 'sensor_offline' \
                                     AND closed_at_ms IS NULL AND NOT EXISTS (SELECT 1 FROM bays b \
                                     WHERE b.lot_id = alerts.lot_id AND b.bay_id = alerts.bay_id \
                                     AND COALESCE(b.last_seen_at_ms, 0) <= alerts.opened_at_ms) \
                                     RETURNING id, kind, subject, lot_id, bay_id, zone, class, device, detail, \
                                     opened_at_ms, closed_at_ms",
    open_alerts: "SELECT id, kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, closed_at_ms \
                  FROM alerts WHERE closed_at_ms IS NULL ORDER BY opened_at_ms, id",
    close_alert: "UPDATE alerts SET closed_at_ms = $3 WHERE kind = $1 AND subject = $2 AND closed_at_ms IS NULL \
                  RETURNING id, kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, closed_at_ms",
    announce_alerts: "UPDATE alerts SET announced_at_ms = $1 WHERE announced_at_ms IS NULL \
                      RETURNING id, kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, closed_at_ms",
    close_provisioned_device_alerts: "UPDATE alerts SET closed_at_ms = $1 WHERE kind = 'unknown_device' \
                                      AND closed_at_ms IS NULL AND subject IN (SELECT sensor FROM bays WHERE sensor IS NOT NULL) \
                                      RETURNING id, kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, closed_at_ms",
    upsert_terminal: "INSERT INTO terminals (terminal_id, lot_id, zones, classes, token_sha256, created_at_ms, updated_at_ms) \
                      VALUES ($1, $2, $3, $4, $5, $6, $6) \
                      ON CONFLICT (terminal_id) DO UPDATE SET lot_id = excluded.lot_id, zones = excluded.zones, \
                      classes = excluded.classes, token_sha256 = excluded.token_sha256, updated_at_ms = excluded.updated_at_ms",
    terminal: "SELECT lot_id, zones, classes, created_at_ms, updated_at_ms FROM terminals WHERE terminal_id = $1",
    delete_terminal: "DELETE FROM terminals WHERE terminal_id = $1",
    delete_terminal_frame: "DELETE FROM terminal_frames WHERE terminal_id = $1",
    lot_terminals: "SELECT terminal_id, zones, classes FROM terminals WHERE lot_id = $1 ORDER BY terminal_id",
    all_terminals: "SELECT lot_id, terminal_id, zones, classes FROM terminals ORDER BY lot_id, terminal_id",
    // Locks the terminal's row (which always exists), so two renders of one
    // terminal take turns, then its stored frame, read as the render it
    // waited for left it (as `render_inputs` does).
    terminal_frame: "WITH t AS MATERIALIZED (SELECT terminal_id FROM terminals WHERE terminal_id = $1 FOR UPDATE), \
                     f AS MATERIALIZED (SELECT terminal_id, seq, content_digest, frame FROM terminal_frames \
                       WHERE terminal_id IN (SELECT terminal_id FROM t) FOR UPDATE) \
                     SELECT f.seq, f.content_digest, f.frame FROM t LEFT JOIN f ON f.terminal_id = t.terminal_id",
    upsert_terminal_frame: "INSERT INTO terminal_frames (terminal_id, seq, content_digest, frame, rendered_at_ms) \
                            VALUES ($1, $2, $3, $4, $5) \
                            ON CONFLICT (terminal_id) DO UPDATE SET seq = excluded.seq, \
                            content_digest = excluded.content_digest, frame = excluded.frame, \
                            rendered_at_ms = excluded.rendered_at_ms WHERE terminal_frames.seq < excluded.seq RETURNING seq",
    // The terminals are locked first (as `terminal_frame` locks one), then
    // their stored frames: a locked row is read as the render it waited for
    // left it, where the statement's snapshot would give the one before.
    render_inputs: Some(
        "WITH t AS MATERIALIZED (SELECT terminal_id, zones, classes FROM terminals WHERE lot_id = $1 \
           ORDER BY terminal_id FOR UPDATE), \
         f AS MATERIALIZED (SELECT terminal_id, seq, content_digest, frame FROM terminal_frames \
           WHERE terminal_id IN (SELECT terminal_id FROM t) ORDER BY terminal_id FOR UPDATE) \
         SELECT set_config('synchronous_commit', 'off', true), \
           (SELECT json_build_array(name, time_zone, site) FROM lots WHERE lot_id = $1)::text, \
           (SELECT json_agg(json_build_array(zone, class, total, free, occupied, unknown, closed, changed_at_ms)) \
            FROM availability_counts WHERE lot_id = $1)::text, \
           (SELECT json_agg(json_build_array(c.value, c.status, c.bays)) FROM \
             (SELECT j.value, b.status, COUNT(*) AS bays FROM bays b, json_array_elements_text(b.categories::json) AS j(value) \
              WHERE b.lot_id = $1 AND b.categories IS NOT NULL GROUP BY j.value, b.status) c)::text, \
           (SELECT json_agg(json_build_array(t.terminal_id, t.zones, t.classes, f.seq, f.content_digest, f.frame) \
              ORDER BY t.terminal_id) FROM t LEFT JOIN f ON f.terminal_id = t.terminal_id)::text",
    ),

    // --- time limits and stays ---
    delete_zone_rules: "DELETE FROM zone_rules WHERE lot_id = $1",
    insert_zone_rule: "INSERT INTO zone_rules (lot_id, zone, max_stay_s, grace_s, hours) VALUES ($1, $2, $3, $4, $5)",
    lot_zone_rules: "SELECT zone, max_stay_s, grace_s, hours FROM zone_rules WHERE lot_id = $1 ORDER BY zone",
    lot_stays: "SELECT b.bay_id, b.zone, b.class, b.max_stay_s, z.max_stay_s, z.grace_s, z.hours, l.time_zone, b.stay_started_at_ms, b.stay_resumed_at_ms, b.stay_counted_ms, b.stay_limit_ms, b.stay_due_at_ms, b.overstay_at_ms \
                FROM bays b JOIN lots l ON l.lot_id = b.lot_id LEFT JOIN zone_rules z ON z.lot_id = b.lot_id AND z.zone = b.zone \
                WHERE b.lot_id = $1 AND b.stay_started_at_ms IS NOT NULL ORDER BY b.bay_id FOR UPDATE OF b",
    lot_overstays: "SELECT b.bay_id, b.zone, b.class, b.max_stay_s, z.max_stay_s, z.grace_s, z.hours, l.time_zone, b.stay_started_at_ms, b.stay_resumed_at_ms, b.stay_counted_ms, b.stay_limit_ms, b.stay_due_at_ms, b.overstay_at_ms \
                    FROM bays b JOIN lots l ON l.lot_id = b.lot_id LEFT JOIN zone_rules z ON z.lot_id = b.lot_id AND z.zone = b.zone \
                    WHERE b.lot_id = $1 AND b.overstay_at_ms IS NOT NULL ORDER BY b.bay_id",
    bay_stay: "SELECT b.bay_id, b.zone, b.class, b.max_stay_s, z.max_stay_s, z.grace_s, z.hours, l.time_zone, b.stay_started_at_ms, b.stay_resumed_at_ms, b.stay_counted_ms, b.stay_limit_ms, b.stay_due_at_ms, b.overstay_at_ms, b.observed_at_ms \
               FROM bays b JOIN lots l ON l.lot_id = b.lot_id LEFT JOIN zone_rules z ON z.lot_id = b.lot_id AND z.zone = b.zone \
               WHERE b.lot_id = $1 AND b.bay_id = $2",
    set_bay_stay: "UPDATE bays SET stay_started_at_ms = $3, stay_resumed_at_ms = $4, stay_counted_ms = $5, \
                   stay_limit_ms = $6, stay_due_at_ms = $7, overstay_at_ms = $8 WHERE lot_id = $1 AND bay_id = $2",
    raise_due_overstays: "UPDATE bays SET overstay_at_ms = stay_due_at_ms \
                          WHERE stay_due_at_ms IS NOT NULL AND stay_due_at_ms <= $1 AND overstay_at_ms IS NULL \
                          RETURNING lot_id, bay_id, zone, class, stay_started_at_ms, stay_limit_ms, stay_due_at_ms",
    close_orphan_overstay_alerts: "UPDATE alerts SET closed_at_ms = $2 WHERE kind = 'bay_overstay' AND lot_id = $1 \
                                   AND closed_at_ms IS NULL AND NOT EXISTS (SELECT 1 FROM bays b \
                                   WHERE b.lot_id = alerts.lot_id AND b.bay_id = alerts.bay_id AND b.overstay_at_ms IS NOT NULL) \
                                   RETURNING id, kind, subject, lot_id, bay_id, zone, class, device, detail, opened_at_ms, closed_at_ms",
    stage_event: "INSERT INTO event_outbox (event_id, event, created_at_ms) VALUES ($1, $2, $3) \
                  ON CONFLICT (event_id) DO NOTHING",
    pending_events: "SELECT seq, event FROM event_outbox ORDER BY seq LIMIT $1",
    take_event: "DELETE FROM event_outbox WHERE seq = $1",
    event_failed: "UPDATE event_outbox SET attempts = attempts + 1, last_error = $2 WHERE seq = $1",
    outbox_backlog: "SELECT COUNT(*), MIN(created_at_ms) FROM event_outbox",
    upsert_lot_forecast: "INSERT INTO lot_forecasts (lot_id, class, computed_at_ms, forecast) \
        VALUES ($1, $2, $3, $4) ON CONFLICT (lot_id, class) \
        DO UPDATE SET computed_at_ms = excluded.computed_at_ms, forecast = excluded.forecast",
    all_lot_forecasts: "SELECT lot_id, class, computed_at_ms, forecast FROM lot_forecasts",
    delete_lot_forecasts: "DELETE FROM lot_forecasts WHERE lot_id = $1",
};
