//! Display terminals: what an operator provisions (which lot, zones and
//! vehicle classes a sign shows, and its read-only token) and the frame a
//! terminal shows.
//!
//! A frame is the whole state of a sign, never a delta: a terminal that
//! missed frames only needs the latest one. Its `seq` is assigned where the
//! frame is rendered and stored, so every gateway replica relays the same
//! frame under the same id (SSE `Last-Event-ID` works across replicas).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::availability::{Counts, Fullness, LotAvailability, Thresholds, next_fullness};
use crate::class::VehicleClass;
use crate::error::{DomainError, render_json};
use crate::lot::validate_id;

/// Shortest token accepted: tokens are bearer secrets, not passwords, and are
/// stored as a fast digest, so they must carry their own entropy.
pub const MIN_TOKEN_CHARS: usize = 16;
const MAX_TOKEN_CHARS: usize = 256;
const MAX_SPEC_BYTES: usize = 64 * 1024;
const MAX_LIST_ITEMS: usize = 256;
const FIELDS: &str = "`lot`, `zones`, `classes`, `token`";

/// The MQTT topic a terminal's frames are published on (retained, QoS 1).
pub fn frame_topic(terminal: &str) -> String {
    format!("parking/terminals/{terminal}/frame")
}

/// The filter that matches every terminal's frames.
pub const FRAME_TOPIC_FILTER: &str = "parking/terminals/+/frame";

/// The terminal id in a frame topic, if `topic` is one.
pub fn terminal_of_topic(topic: &str) -> Option<&str> {
    topic.strip_prefix("parking/terminals/")?.strip_suffix("/frame").filter(|t| !t.contains('/'))
}

/// A terminal as an operator provisions it (`PUT /api/v1/terminals/{id}`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TerminalSpec {
    pub lot: String,
    /// The zones it shows; `None` is every zone of the lot.
    pub zones: Option<Vec<String>>,
    /// The vehicle classes it shows; `None` is every class.
    pub classes: Option<Vec<VehicleClass>>,
    /// The read-only token, in clear: only its digest is stored.
    pub token: String,
}

/// What a terminal shows, as stored (the token is not part of it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalScope {
    pub lot: String,
    pub zones: Option<Vec<String>>,
    pub classes: Option<Vec<VehicleClass>>,
}

impl TerminalScope {
    /// Whether a change of (zone, class) in the terminal's lot concerns it.
    pub fn shows(&self, zone: Option<&str>, class: &VehicleClass) -> bool {
        let zone_ok = match (&self.zones, zone) {
            (None, _) => true,
            (Some(zones), Some(z)) => zones.iter().any(|s| s == z),
            (Some(_), None) => false,
        };
        zone_ok && self.classes.as_ref().is_none_or(|cs| cs.contains(class))
    }

    fn shows_class(&self, class: &VehicleClass) -> bool {
        self.classes.as_ref().is_none_or(|cs| cs.contains(class))
    }
}

fn field_error(field: &str, problem: impl Into<String>) -> DomainError {
    DomainError::InvalidTerminal { field: field.to_owned(), problem: problem.into() }
}

/// Parses and validates a terminal body. Errors name the field at fault.
pub fn parse_terminal_spec(body: &[u8]) -> Result<TerminalSpec, DomainError> {
    if body.len() > MAX_SPEC_BYTES {
        return Err(field_error("(body)", format!("{} bytes; at most {MAX_SPEC_BYTES}", body.len())));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| field_error("(body)", format!("not valid JSON: {e}")))?;
    let Value::Object(root) = value else {
        return Err(field_error(
            "(body)",
            format!("expected a JSON object with {FIELDS}, got {}", render_json(&value)),
        ));
    };
    if let Some(unknown) = root.keys().find(|k| !matches!(k.as_str(), "lot" | "zones" | "classes" | "token"))
    {
        return Err(field_error(unknown, format!("unknown field; allowed fields are {FIELDS}")));
    }
    let text = |field: &str| -> Result<String, DomainError> {
        match root.get(field) {
            None | Some(Value::Null) => Err(field_error(field, "required, but missing")),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(other) => Err(field_error(field, format!("expected a string, got {}", render_json(other)))),
        }
    };
    let lot = text("lot")?;
    validate_id("lot", &lot).map_err(|e| field_error("lot", e.to_string()))?;
    let list = |field: &str| -> Result<Option<Vec<String>>, DomainError> {
        match root.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) if items.is_empty() => {
                Err(field_error(field, "is empty; leave it out to show them all"))
            }
            Some(Value::Array(items)) if items.len() > MAX_LIST_ITEMS => {
                Err(field_error(field, format!("{} items; at most {MAX_LIST_ITEMS}", items.len())))
            }
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| match item {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(field_error(
                        &format!("{field}[{i}]"),
                        format!("expected a string, got {}", render_json(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => {
                Err(field_error(field, format!("expected an array of strings, got {}", render_json(other))))
            }
        }
    };
    let zones = list("zones")?;
    if let Some(zones) = &zones {
        for (i, zone) in zones.iter().enumerate() {
            validate_id("zone", zone).map_err(|e| field_error(&format!("zones[{i}]"), e.to_string()))?;
        }
    }
    let classes = list("classes")?
        .map(|classes| {
            classes
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    VehicleClass::parse(c).map_err(|e| field_error(&format!("classes[{i}]"), e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .transpose()?;
    let token = text("token")?;
    let chars = token.chars().count();
    if !(MIN_TOKEN_CHARS..=MAX_TOKEN_CHARS).contains(&chars) {
        return Err(field_error(
            "token",
            format!(
                "is {chars} characters long; expected {MIN_TOKEN_CHARS} to {MAX_TOKEN_CHARS} (a random secret)"
            ),
        ));
    }
    if let Some(c) = token.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(field_error(
            "token",
            format!(
                "contains {c:?}; expected printable ASCII without spaces (it travels in a URL and a header)"
            ),
        ));
    }
    Ok(TerminalSpec { lot, zones, classes, token })
}

/// The stored form of a token: SHA-256, hex. A fast digest suits a random
/// bearer token (it is not a password to stretch), and lets the gateway find
/// the terminal a token belongs to with one indexed lookup.
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// One vehicle class on a sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassFrame {
    pub class: VehicleClass,
    pub free: u32,
    pub total: u32,
    pub occupied: u32,
    pub unknown: u32,
    pub closed: u32,
    /// Available, almost full or full, with hysteresis against the previous frame.
    pub state: Fullness,
}

/// One zone on a sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZoneFrame {
    pub zone: String,
    pub classes: Vec<ClassFrame>,
}

/// Everything a terminal shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Frame {
    pub terminal: String,
    pub lot: String,
    /// Per terminal, increasing with every new content: the SSE event id.
    pub seq: u64,
    /// When a bay of the lot last changed status: how fresh the counts are.
    pub fresh_at: Option<DateTime<Utc>>,
    /// When this content was rendered.
    pub rendered_at: DateTime<Utc>,
    /// Over the zones shown (the whole lot when the terminal shows every zone).
    pub classes: Vec<ClassFrame>,
    pub zones: Vec<ZoneFrame>,
    /// Lines for an LED sign, one per zone (or one for the lot), e.g.
    /// `L1  CARS 12  BIKES 5`; a full class reads `FULL`.
    pub text: String,
}

impl Frame {
    /// A digest of what the sign shows (not of `seq` or `rendered_at`): equal
    /// digests mean a re-render changed nothing, so the stored frame is
    /// published again under its own id (redelivered events stay idempotent).
    pub fn content_digest(&self) -> String {
        let content = serde_json::json!([self.lot, self.fresh_at, self.classes, self.zones, self.text]);
        token_digest(&content.to_string())
    }

    /// The sign states this frame shows, keyed by `zone/class` (`*/class` for
    /// the totals), for the hysteresis of the next frame.
    pub fn states(&self) -> BTreeMap<String, Fullness> {
        let mut states = BTreeMap::new();
        for c in &self.classes {
            states.insert(format!("*/{}", c.class), c.state);
        }
        for z in &self.zones {
            for c in &z.classes {
                states.insert(format!("{}/{}", z.zone, c.class), c.state);
            }
        }
        states
    }
}

/// The label an LED sign uses for a class.
pub fn class_label(class: &VehicleClass) -> String {
    match class.as_str() {
        "four_wheeler" => "CARS".to_owned(),
        "two_wheeler" => "BIKES".to_owned(),
        other => other.replace('_', " ").to_ascii_uppercase(),
    }
}

fn class_frames(
    classes: &BTreeMap<VehicleClass, Counts>,
    scope: &TerminalScope,
    key_prefix: &str,
    previous: &BTreeMap<String, Fullness>,
    thresholds: &Thresholds,
) -> Vec<ClassFrame> {
    classes
        .iter()
        .filter(|(class, _)| scope.shows_class(class))
        .map(|(class, counts)| {
            let before = previous.get(&format!("{key_prefix}/{class}")).copied().unwrap_or_default();
            ClassFrame {
                class: class.clone(),
                free: counts.free,
                total: counts.total,
                occupied: counts.occupied,
                unknown: counts.unknown,
                closed: counts.closed,
                state: next_fullness(before, counts, thresholds),
            }
        })
        .collect()
}

fn line(label: &str, classes: &[ClassFrame]) -> String {
    let mut line = label.to_owned();
    for c in classes {
        let value = if c.state == Fullness::Full { "FULL".to_owned() } else { c.free.to_string() };
        line.push_str(&format!("  {} {value}", class_label(&c.class)));
    }
    line
}

/// Renders what `terminal` shows of `availability`. `previous` holds the
/// states of the terminal's last frame (see [`Frame::states`]).
pub fn render_frame(
    terminal: &str,
    scope: &TerminalScope,
    availability: &LotAvailability,
    previous: &BTreeMap<String, Fullness>,
    thresholds: &Thresholds,
    seq: u64,
    rendered_at: DateTime<Utc>,
) -> Frame {
    let zones: Vec<ZoneFrame> = availability
        .zones
        .iter()
        .filter(|z| scope.zones.as_ref().is_none_or(|zs| zs.contains(&z.zone)))
        .map(|z| ZoneFrame {
            zone: z.zone.clone(),
            classes: class_frames(&z.classes, scope, &z.zone, previous, thresholds),
        })
        .collect();
    // Totals: the whole lot, or the sum of the zones the terminal shows.
    let totals = match &scope.zones {
        None => availability.classes.clone(),
        Some(_) => {
            let mut sums: BTreeMap<VehicleClass, Counts> = BTreeMap::new();
            for z in availability
                .zones
                .iter()
                .filter(|z| scope.zones.as_ref().is_some_and(|zs| zs.contains(&z.zone)))
            {
                for (class, counts) in &z.classes {
                    let sum = sums.entry(class.clone()).or_default();
                    sum.total += counts.total;
                    sum.free += counts.free;
                    sum.occupied += counts.occupied;
                    sum.unknown += counts.unknown;
                    sum.closed += counts.closed;
                }
            }
            sums
        }
    };
    let classes = class_frames(&totals, scope, "*", previous, thresholds);
    let text = if zones.is_empty() {
        line(&availability.lot.to_ascii_uppercase(), &classes)
    } else {
        zones.iter().map(|z| line(&z.zone, &z.classes)).collect::<Vec<_>>().join("\n")
    };
    Frame {
        terminal: terminal.to_owned(),
        lot: availability.lot.clone(),
        seq,
        fresh_at: availability.updated_at,
        rendered_at,
        classes,
        zones,
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::availability::{BayCount, summarise};
    use crate::status::BayStatus::{self, Free, Occupied, Unknown};
    use chrono::TimeZone;

    fn spec(body: &str) -> Result<TerminalSpec, DomainError> {
        parse_terminal_spec(body.as_bytes())
    }

    #[test]
    fn a_full_spec_and_a_minimal_one_parse() {
        let s = spec(r#"{"lot": "north", "zones": ["L1"], "classes": ["four_wheeler", "two_wheeler"], "token": "0123456789abcdef"}"#).unwrap();
        assert_eq!(s.lot, "north");
        assert_eq!(s.zones, Some(vec!["L1".to_owned()]));
        assert_eq!(s.classes, Some(vec![VehicleClass::four_wheeler(), VehicleClass::two_wheeler()]));
        let s = spec(r#"{"lot": "north", "token": "0123456789abcdef"}"#).unwrap();
        assert_eq!((s.zones, s.classes), (None, None));
    }

    #[test]
    fn bad_specs_name_the_field() {
        for (body, field) in [
            (r#"{"token": "0123456789abcdef"}"#, "`lot`"),
            (r#"{"lot": "a b", "token": "0123456789abcdef"}"#, "`lot`"),
            (r#"{"lot": "n", "zones": [], "token": "0123456789abcdef"}"#, "`zones`"),
            (r#"{"lot": "n", "zones": ["L1", 3], "token": "0123456789abcdef"}"#, "`zones[1]`"),
            (r#"{"lot": "n", "classes": ["Cars"], "token": "0123456789abcdef"}"#, "`classes[0]`"),
            (r#"{"lot": "n", "token": "short"}"#, "`token`"),
            (r#"{"lot": "n", "token": "has a space in it!!"}"#, "`token`"),
            (r#"{"lot": "n", "token": "0123456789abcdef", "zone": "L1"}"#, "`zone`"),
            (r#"[1]"#, "`(body)`"),
        ] {
            let err = spec(body).unwrap_err().to_string();
            assert!(err.contains(field), "{body}: {err}");
        }
    }

    #[test]
    fn digests_are_stable_hex_and_differ_by_token() {
        let d = token_digest("0123456789abcdef");
        assert_eq!(d.len(), 64);
        assert_eq!(d, token_digest("0123456789abcdef"));
        assert_ne!(d, token_digest("0123456789abcdeF"));
    }

    #[test]
    fn topics_name_the_terminal() {
        assert_eq!(frame_topic("T1"), "parking/terminals/T1/frame");
        assert_eq!(terminal_of_topic("parking/terminals/T1/frame"), Some("T1"));
        assert_eq!(terminal_of_topic("parking/terminals/a/b/frame"), None);
        assert_eq!(terminal_of_topic("parking/uplink/x"), None);
    }

    fn lot(statuses: &[(&str, &str, BayStatus)]) -> LotAvailability {
        let classes: Vec<VehicleClass> =
            statuses.iter().map(|(_, c, _)| VehicleClass::parse(c).unwrap()).collect();
        let at = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        summarise(
            "north",
            statuses.iter().zip(&classes).map(|((zone, _, status), class)| BayCount {
                zone: Some(zone),
                class,
                status: *status,
                changed_at: Some(at),
            }),
        )
    }

    #[test]
    fn a_frame_shows_the_terminals_zones_and_classes_with_a_sign_line() {
        let a = lot(&[
            ("L1", "four_wheeler", Free),
            ("L1", "four_wheeler", Occupied),
            ("L1", "two_wheeler", Free),
            ("L2", "four_wheeler", Free),
        ]);
        let scope = TerminalScope { lot: "north".into(), zones: Some(vec!["L1".into()]), classes: None };
        let f = render_frame("T1", &scope, &a, &BTreeMap::new(), &Thresholds::default(), 7, Utc::now());
        assert_eq!(f.text, "L1  CARS 1  BIKES 1");
        assert_eq!(f.zones.len(), 1);
        assert_eq!(
            f.classes.iter().map(|c| (c.class.as_str(), c.free, c.total)).collect::<Vec<_>>(),
            [("four_wheeler", 1, 2), ("two_wheeler", 1, 1)]
        );
        let cars_only = TerminalScope {
            lot: "north".into(),
            zones: None,
            classes: Some(vec![VehicleClass::four_wheeler()]),
        };
        let f = render_frame("T2", &cars_only, &a, &BTreeMap::new(), &Thresholds::default(), 1, Utc::now());
        assert_eq!(f.text, "L1  CARS 1\nL2  CARS 1");
        assert_eq!(f.classes[0].total, 3);
    }

    #[test]
    fn full_reads_full_and_hysteresis_holds_it_until_the_exit_threshold() {
        let full = lot(&[("L1", "four_wheeler", Occupied), ("L1", "four_wheeler", Unknown)]);
        let scope = TerminalScope { lot: "north".into(), zones: None, classes: None };
        let t = Thresholds::default();
        let f = render_frame("T", &scope, &full, &BTreeMap::new(), &t, 1, Utc::now());
        assert_eq!(f.text, "L1  CARS FULL");
        assert_eq!(f.classes[0].state, Fullness::Full);
        // 20 bays, 1 free: 95 % taken is below "full" on the way up but stays
        // full on the way down (exit at 97 % is passed only below it).
        let mut bays = vec![("L1", "four_wheeler", Occupied); 19];
        bays.push(("L1", "four_wheeler", Free));
        let nearly = lot(&bays);
        let fresh = render_frame("T", &scope, &nearly, &BTreeMap::new(), &t, 2, Utc::now());
        assert_eq!(fresh.classes[0].state, Fullness::AlmostFull);
        let after_full = render_frame("T", &scope, &nearly, &f.states(), &t, 2, Utc::now());
        assert_eq!(after_full.classes[0].state, Fullness::AlmostFull);
        let mut was_full = BTreeMap::new();
        was_full.insert("*/four_wheeler".to_owned(), Fullness::Full);
        let mut bays = vec![("L1", "four_wheeler", Occupied); 98];
        bays.extend([("L1", "four_wheeler", Free); 2]);
        let held = render_frame("T", &scope, &lot(&bays), &was_full, &t, 3, Utc::now());
        assert_eq!(held.classes[0].state, Fullness::Full, "98 % taken keeps a full sign full");
    }

    #[test]
    fn the_content_digest_ignores_seq_and_render_time() {
        let a = lot(&[("L1", "four_wheeler", Free)]);
        let scope = TerminalScope { lot: "north".into(), zones: None, classes: None };
        let t = Thresholds::default();
        let one = render_frame("T", &scope, &a, &BTreeMap::new(), &t, 1, Utc::now());
        let two =
            render_frame("T", &scope, &a, &BTreeMap::new(), &t, 9, Utc::now() + chrono::Duration::seconds(5));
        assert_eq!(one.content_digest(), two.content_digest());
        let b = lot(&[("L1", "four_wheeler", Occupied)]);
        assert_ne!(
            one.content_digest(),
            render_frame("T", &scope, &b, &BTreeMap::new(), &t, 1, Utc::now()).content_digest()
        );
    }

    #[test]
    fn scopes_select_the_changes_that_concern_them() {
        let car = VehicleClass::four_wheeler();
        let bike = VehicleClass::two_wheeler();
        let all = TerminalScope { lot: "n".into(), zones: None, classes: None };
        assert!(all.shows(None, &car) && all.shows(Some("L1"), &bike));
        let l1_cars = TerminalScope {
            lot: "n".into(),
            zones: Some(vec!["L1".into()]),
            classes: Some(vec![car.clone()]),
        };
        assert!(l1_cars.shows(Some("L1"), &car));
        assert!(!l1_cars.shows(Some("L2"), &car));
        assert!(!l1_cars.shows(Some("L1"), &bike));
        assert!(!l1_cars.shows(None, &car));
    }
}
