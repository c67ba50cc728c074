//! Provisioning input: a lot and its bays, and the id rules they follow.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::error::{DomainError, excerpt, render_json};
use crate::geo::{Point, parse_point};
use crate::site::{SITE_FIELDS, SiteSpec, parse_site};
use crate::stay::{
    HoursSpec, MAX_GRACE_SECONDS, check_duration_field, parse_hours, parse_iso_duration, time_zone,
};

/// Most bays one lot may have; bounds the work of one provisioning request.
pub const MAX_BAYS_PER_LOT: usize = 20_000;

/// Largest lot spec body accepted. Checked before parsing, so the bay limit
/// cannot be bypassed by a body whose bays are parsed before being counted.
/// 20 000 bays of generous size fit comfortably.
pub const MAX_LOT_SPEC_BYTES: usize = 8 * 1024 * 1024;

const MAX_LOT_NAME_CHARS: usize = 200;
const MAX_ID_CHARS: usize = 64;
const MAX_DEVICE_ID_BYTES: usize = 128;
const MAX_MODEL_CHARS: usize = 128;

const LOT_FIELDS: &str = "`name`, `bays`, `timeZone`, `zones`, `kind`, `location`, `outline`, `address`, \
                          `openingHours`, `maxHeightCm`, `fees`, `operator`, `closed`";
const BAY_FIELDS: &str = "`id`, `zone`, `class`, `sensor`, `model`, `maxStay`, `location`, `categories`";
const ZONE_FIELDS: &str = "`maxStay`, `hours`, `graceSeconds`";
/// Most zones with rules one lot may have.
const MAX_ZONES: usize = 1000;

/// A lot as an operator provisions it. Replaces the lot's bays as a whole.
///
/// Requests are read by [`parse_lot_spec`], which refuses unknown fields;
/// serde's `deny_unknown_fields` cannot be combined with the flattened
/// `site`, so the derive here is for stored and test copies only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LotSpec {
    /// Human-readable name (the lot's id comes from the URL).
    pub name: String,
    pub bays: Vec<BaySpec>,
    /// IANA name of the lot's time zone, in which zone hours are read (UTC when absent).
    #[serde(default, rename = "timeZone", skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// Time limits per zone id.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zones: BTreeMap<String, ZoneSpec>,
    /// What the lot is and where (kind, location, hours, fees, ...).
    #[serde(flatten)]
    pub site: SiteSpec,
}

/// A zone's time limit: `{"maxStay": "PT2H", "hours": [...], "graceSeconds": 300}`.
/// Every field is optional: `maxStay` may come from the bays alone, and
/// without `hours` the limit applies at all times.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneSpec {
    /// Canonical ISO 8601 duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stay: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<Vec<HoursSpec>>,
    #[serde(default)]
    pub grace_seconds: u32,
}

impl ZoneSpec {
    pub fn max_stay_seconds(&self) -> Option<i64> {
        self.max_stay.as_deref().and_then(|d| parse_iso_duration(d).ok())
    }
}

/// One bay of a [`LotSpec`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaySpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    pub class: VehicleClass,
    /// The bound sensor's device id, normalised by [`normalise_device_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensor: Option<String>,
    /// Free-text sensor model, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The bay's own time limit (canonical ISO 8601), over its zone's.
    #[serde(default, rename = "maxStay", skip_serializing_if = "Option::is_none")]
    pub max_stay: Option<String>,
    /// Where the bay is (a GeoJSON Point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Point>,
    /// What the bay is kept for, sorted, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<BayCategory>,
}

impl BaySpec {
    pub fn max_stay_seconds(&self) -> Option<i64> {
        self.max_stay.as_deref().and_then(|d| parse_iso_duration(d).ok())
    }
}

/// Checks a lot, bay or zone id: 1 to 64 characters of `[A-Za-z0-9._-]`,
/// not only dots. `kind` names the id in the message ("lot", "bay", "zone").
///
/// Ids made only of dots are refused because they appear as URL path
/// segments, where `.` and `..` are rewritten by clients and proxies.
pub fn validate_id(kind: &str, id: &str) -> Result<(), DomainError> {
    let problem = if id.is_empty() {
        Some("is empty".to_owned())
    } else if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        Some(format!("contains {c:?}"))
    } else if id.len() > MAX_ID_CHARS {
        // All characters are ASCII here, so bytes are characters.
        Some(format!("is {} characters long", id.len()))
    } else if id.bytes().all(|b| b == b'.') {
        Some("consists only of dots".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(DomainError::InvalidId { kind: kind.to_owned(), value: excerpt(id), problem }),
    }
}

/// Checks a sensor (device) id: 1 to 128 bytes, no control characters, no
/// whitespace. Bytes rather than characters, as device ids are stored and
/// indexed as bytes.
pub fn validate_device_id(id: &str) -> Result<(), DomainError> {
    match device_id_problem(id) {
        None => Ok(()),
        Some(problem) => Err(DomainError::InvalidDeviceId { value: excerpt(id), problem }),
    }
}

pub(crate) fn device_id_problem(id: &str) -> Option<String> {
    if id.is_empty() {
        Some("is empty".to_owned())
    } else if id.len() > MAX_DEVICE_ID_BYTES {
        Some(format!("is {} bytes long", id.len()))
    } else if id.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else if id.chars().any(char::is_whitespace) {
        Some("contains whitespace".to_owned())
    } else {
        None
    }
}

/// The form in which device ids are stored and compared.
///
/// A LoRaWAN DevEUI (exactly 16 hex digits) is written in either case by
/// different network servers, so it is lower-cased; any other id is an
/// opaque, case-sensitive name and is returned unchanged.
pub fn normalise_device_id(id: &str) -> String {
    if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
        id.to_ascii_lowercase()
    } else {
        id.to_owned()
    }
}

/// Parses and validates a lot spec body (JSON).
///
/// Rules: `name` is 1..=200 characters (not blank, no control characters);
/// `bays` is required, and may be empty (that empties the lot) but holds at
/// most [`MAX_BAYS_PER_LOT`]; bay and zone ids follow [`validate_id`]; bay
/// ids are unique; sensors follow [`validate_device_id`], are returned
/// normalised and are bound to one bay at most (compared normalised).
/// Unknown fields are refused: in an admin request a misspelt `sensor`
/// would otherwise silently unbind a sensor.
pub fn parse_lot_spec(body: &[u8]) -> Result<LotSpec, DomainError> {
    if body.len() > MAX_LOT_SPEC_BYTES {
        return Err(DomainError::LotSpecTooLarge { size: body.len(), max: MAX_LOT_SPEC_BYTES });
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| DomainError::LotSpecJson { detail: e.to_string() })?;
    let Value::Object(root) = value else {
        return Err(DomainError::LotSpecNotAnObject { got: render_json(&value) });
    };
    let known: Vec<&str> = ["name", "bays", "timeZone", "zones"].into_iter().chain(SITE_FIELDS).collect();
    refuse_unknown(&root, &known, "", LOT_FIELDS)?;

    let name = match root.get("name") {
        None => {
            return Err(DomainError::MissingField { field: "name".into() });
        }
        Some(Value::String(name)) => name.clone(),
        Some(other) => return Err(wrong_type("name", "a string", other)),
    };
    validate_lot_name(&name)?;

    let raw_bays = match root.get("bays") {
        None => {
            return Err(DomainError::MissingField { field: "bays".into() });
        }
        Some(Value::Array(bays)) => bays,
        Some(other) => return Err(wrong_type("bays", "an array of bays", other)),
    };
    if raw_bays.len() > MAX_BAYS_PER_LOT {
        return Err(DomainError::TooManyBays { count: raw_bays.len(), max: MAX_BAYS_PER_LOT });
    }

    let mut bays = Vec::with_capacity(raw_bays.len());
    let mut ids: HashMap<&str, usize> = HashMap::with_capacity(raw_bays.len());
    let mut sensors: HashMap<String, usize> = HashMap::new();
    for (index, raw) in raw_bays.iter().enumerate() {
        let bay = parse_bay(index, raw)?;
        if let Some(&first_index) = ids.get(bay_id(raw)) {
            return Err(DomainError::DuplicateBayId { id: excerpt(&bay.id), index, first_index });
        }
        ids.insert(bay_id(raw), index);
        if let Some(sensor) = &bay.sensor {
            if let Some(&first) = sensors.get(sensor) {
                let first_bay: &BaySpec = &bays[first];
                return Err(DomainError::DuplicateSensor {
                    sensor: excerpt(sensor),
                    index,
                    first_bay: first_bay.id.clone(),
                });
            }
            sensors.insert(sensor.clone(), index);
        }
        bays.push(bay);
    }
    let time_zone = match root.get("timeZone") {
        None | Some(Value::Null) => None,
        Some(Value::String(tz)) => {
            time_zone(tz).map_err(|e| e.at("timeZone"))?;
            Some(tz.clone())
        }
        Some(other) => return Err(wrong_type("timeZone", "an IANA time zone name", other)),
    };
    let zones = match root.get("zones") {
        None | Some(Value::Null) => BTreeMap::new(),
        Some(Value::Object(zones)) => parse_zones(zones)?,
        Some(other) => return Err(wrong_type("zones", "an object of zone ids", other)),
    };
    let site = parse_site(&root)?;
    Ok(LotSpec { name, bays, time_zone, zones, site })
}

/// The lot's `zones`: `{"L1": {"maxStay": "PT2H", "hours": [...], "graceSeconds": 300}}`.
fn parse_zones(zones: &Map<String, Value>) -> Result<BTreeMap<String, ZoneSpec>, DomainError> {
    if zones.len() > MAX_ZONES {
        return Err(wrong_type("zones", "at most 1000 zones", &Value::from(zones.len())));
    }
    let mut out = BTreeMap::new();
    for (zone, raw) in zones {
        validate_id("zone", zone).map_err(|e| e.at(format!("zones.{}", excerpt(zone))))?;
        let path = |field: &str| format!("zones.{zone}.{field}");
        let Value::Object(obj) = raw else {
            return Err(wrong_type(&format!("zones.{zone}"), "an object", raw));
        };
        refuse_unknown(obj, &["maxStay", "hours", "graceSeconds"], &format!("zones.{zone}."), ZONE_FIELDS)?;
        let max_stay = match obj.get("maxStay") {
            None | Some(Value::Null) => None,
            Some(v) => Some(check_duration_field(v).map_err(|e| e.at(path("maxStay")))?.0),
        };
        let hours = match obj.get("hours") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_hours(v).map_err(|e| e.at(path("hours")))?),
        };
        let grace_seconds = match obj.get("graceSeconds") {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64() {
                Some(g) if g <= MAX_GRACE_SECONDS as u64 => g as u32,
                _ => {
                    return Err(wrong_type(
                        &path("graceSeconds"),
                        "a whole number of seconds from 0 to 86400",
                        v,
                    ));
                }
            },
        };
        out.insert(zone.clone(), ZoneSpec { max_stay, hours, grace_seconds });
    }
    Ok(out)
}

/// The id of a bay already validated by `parse_bay`, borrowed from the JSON
/// so the uniqueness index does not copy every id.
fn bay_id(raw: &Value) -> &str {
    raw.get("id").and_then(Value::as_str).unwrap_or_default()
}

fn validate_lot_name(name: &str) -> Result<(), DomainError> {
    let chars = name.chars().count();
    let problem = if name.trim().is_empty() {
        Some(if name.is_empty() { "is empty".to_owned() } else { "is blank".to_owned() })
    } else if chars > MAX_LOT_NAME_CHARS {
        Some(format!("is {chars} characters long"))
    } else if name.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(DomainError::InvalidLotName { value: excerpt(name), problem }),
    }
}

fn parse_bay(index: usize, raw: &Value) -> Result<BaySpec, DomainError> {
    let path = |field: &str| format!("bays[{index}].{field}");
    let Value::Object(obj) = raw else {
        return Err(wrong_type(&format!("bays[{index}]"), "an object", raw));
    };
    refuse_unknown(
        obj,
        &["id", "zone", "class", "sensor", "model", "maxStay", "location", "categories"],
        &format!("bays[{index}]."),
        BAY_FIELDS,
    )?;

    let id = required_string(obj, "id", &path)?;
    validate_id("bay", id).map_err(|e| e.at(path("id")))?;

    let zone = optional_string(obj, "zone", &path)?;
    if let Some(zone) = zone {
        validate_id("zone", zone).map_err(|e| e.at(path("zone")))?;
    }

    let class =
        VehicleClass::parse(required_string(obj, "class", &path)?).map_err(|e| e.at(path("class")))?;

    let sensor = optional_string(obj, "sensor", &path)?;
    if let Some(sensor) = sensor {
        validate_device_id(sensor).map_err(|e| e.at(path("sensor")))?;
    }

    let model = optional_string(obj, "model", &path)?;
    if let Some(model) = model {
        validate_model(model).map_err(|e| e.at(path("model")))?;
    }

    let max_stay = match obj.get("maxStay") {
        None | Some(Value::Null) => None,
        Some(v) => Some(check_duration_field(v).map_err(|e| e.at(path("maxStay")))?.0),
    };

    let location = match obj.get("location") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_point(v).map_err(|e| e.at(path("location")))?),
    };
    let categories = match obj.get("categories") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => parse_categories(v).map_err(|e| e.at(path("categories")))?,
    };

    Ok(BaySpec {
        id: id.to_owned(),
        zone: zone.map(str::to_owned),
        class,
        sensor: sensor.map(normalise_device_id),
        model: model.map(str::to_owned),
        max_stay,
        location,
        categories,
    })
}

/// A bay's `categories`: an array of category names, returned sorted and
/// without repeats.
fn parse_categories(value: &Value) -> Result<Vec<BayCategory>, DomainError> {
    let Value::Array(items) = value else {
        return Err(DomainError::InvalidCategory { value: render_json(value) });
    };
    let mut out = items
        .iter()
        .map(|item| match item {
            Value::String(s) => BayCategory::parse(s),
            other => Err(DomainError::InvalidCategory { value: render_json(other) }),
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

fn validate_model(model: &str) -> Result<(), DomainError> {
    let chars = model.chars().count();
    let problem = if chars > MAX_MODEL_CHARS {
        Some(format!("is {chars} characters long"))
    } else if model.chars().any(char::is_control) {
        Some("contains a control character".to_owned())
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(DomainError::InvalidModel { value: excerpt(model), problem }),
    }
}

fn refuse_unknown(
    obj: &Map<String, Value>,
    known: &[&str],
    prefix: &str,
    allowed: &'static str,
) -> Result<(), DomainError> {
    match obj.keys().find(|k| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some(key) => Err(DomainError::UnknownField { field: format!("{prefix}{}", excerpt(key)), allowed }),
    }
}

fn required_string<'v>(
    obj: &'v Map<String, Value>,
    field: &str,
    path: &dyn Fn(&str) -> String,
) -> Result<&'v str, DomainError> {
    match obj.get(field) {
        None => Err(DomainError::MissingField { field: path(field) }),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(&path(field), "a string", other)),
    }
}

fn optional_string<'v>(
    obj: &'v Map<String, Value>,
    field: &str,
    path: &dyn Fn(&str) -> String,
) -> Result<Option<&'v str>, DomainError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(&path(field), "a string or null", other)),
    }
}

fn wrong_type(field: &str, expected: &'static str, got: &Value) -> DomainError {
    DomainError::WrongType { field: field.to_owned(), expected, got: render_json(got) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<LotSpec, DomainError> {
        parse_lot_spec(json.as_bytes())
    }

    fn err(json: &str) -> String {
        parse(json).unwrap_err().to_string()
    }

    #[test]
    fn parses_the_documented_body() {
        let spec = parse(
            r#"{"name": "Central", "bays": [
                {"id": "B1", "zone": "L1", "class": "four_wheeler", "sensor": "DEV-1"},
                {"id": "B2", "class": "two_wheeler", "sensor": null, "zone": null, "model": "Nwave NPS"}
            ]}"#,
        )
        .unwrap();
        assert_eq!(spec.name, "Central");
        assert_eq!(
            spec.bays,
            vec![
                BaySpec {
                    id: "B1".into(),
                    zone: Some("L1".into()),
                    class: VehicleClass::four_wheeler(),
                    sensor: Some("DEV-1".into()),
                    model: None,
                    max_stay: None,
                    location: None,
                    categories: Vec::new(),
                },
                BaySpec {
                    id: "B2".into(),
                    zone: None,
                    class: VehicleClass::two_wheeler(),
                    sensor: None,
                    model: Some("Nwave NPS".into()),
                    max_stay: None,
                    location: None,
                    categories: Vec::new(),
                },
            ]
        );
    }

    #[test]
    fn serde_shape_matches_the_parser() {
        let spec =
            parse(r#"{"name":"N","bays":[{"id":"B1","zone":"L1","class":"four_wheeler","sensor":"DEV-1"}]}"#)
                .unwrap();
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"name":"N","bays":[{"id":"B1","zone":"L1","class":"four_wheeler","sensor":"DEV-1"}]}"#
        );
        assert_eq!(serde_json::from_str::<LotSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn time_limits_parse_and_name_their_field() {
        let spec = parse(
            r#"{"name": "N", "timeZone": "Europe/Berlin",
                "zones": {"L1": {"maxStay": "PT120M", "graceSeconds": 300,
                                 "hours": [{"days": ["Mon", "Sat"], "from": "08:00", "to": "18:00"}]}},
                "bays": [{"id": "B1", "zone": "L1", "class": "c", "maxStay": "PT15M"}]}"#,
        )
        .unwrap();
        assert_eq!(spec.time_zone.as_deref(), Some("Europe/Berlin"));
        assert_eq!(spec.zones["L1"].max_stay.as_deref(), Some("PT2H"));
        assert_eq!(spec.zones["L1"].max_stay_seconds(), Some(7200));
        assert_eq!(spec.zones["L1"].grace_seconds, 300);
        assert_eq!(spec.bays[0].max_stay_seconds(), Some(900));
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["zones"]["L1"]["maxStay"], "PT2H");
        assert_eq!(json["bays"][0]["maxStay"], "PT15M");
        let cases = [
            (r#""timeZone": "Mars/Base""#, "timeZone: time zone \"Mars/Base\""),
            (r#""timeZone": 1"#, "`timeZone`: expected an IANA"),
            (r#""zones": {"L1": {"maxStay": "2h"}}"#, "zones.L1.maxStay: duration \"2h\""),
            (r#""zones": {"L1": {"maxStay": 7200}}"#, "zones.L1.maxStay: duration \"7200\" is not a string"),
            (r#""zones": {"L1": {"graceSeconds": -1}}"#, "`zones.L1.graceSeconds`"),
            (r#""zones": {"L1": {"hours": []}}"#, "zones.L1.hours: hours"),
            (
                r#""zones": {"L1": {"hours": [{"days": ["Mo"], "from": "08:00", "to": "18:00"}]}}"#,
                "zones.L1.hours: [0]: hours \"Mo\"",
            ),
            (
                r#""zones": {"L1": {"hours": [{"days": ["Mon"], "from": "8", "to": "18:00"}]}}"#,
                "zones.L1.hours: [0]",
            ),
            (r#""zones": {"L1": {"maxstay": "PT2H"}}"#, "`zones.L1.maxstay`: unknown field"),
            (r#""zones": {"L 1": {}}"#, "zones.L 1: zone id"),
            (r#""zones": []"#, "`zones`: expected an object"),
        ];
        for (field, expected) in cases {
            let msg = err(&format!(r#"{{"name": "N", "bays": [], {field}}}"#));
            assert!(msg.contains(expected), "{field}: {msg}");
        }
        let msg = err(r#"{"name": "N", "bays": [{"id": "B1", "class": "c", "maxStay": "P1M"}]}"#);
        assert!(msg.starts_with("bays[0].maxStay: duration \"P1M\""), "{msg}");
    }

    #[test]
    fn site_and_bay_fields_parse_and_name_their_field() {
        let spec = parse(
            r#"{"name": "N", "kind": "off_street", "location": {"type": "Point", "coordinates": [13.4, 52.5]},
                "closed": false,
                "bays": [{"id": "B1", "class": "c", "categories": ["family", "accessible", "family"],
                          "location": {"type": "Point", "coordinates": [13.4001, 52.5001]}}]}"#,
        )
        .unwrap();
        assert_eq!(spec.site.kind, Some(crate::site::LotKind::OffStreet));
        assert_eq!(spec.bays[0].categories, vec![BayCategory::Accessible, BayCategory::Family]);
        let json = serde_json::to_value(&spec).unwrap();
        assert_eq!(json["location"]["coordinates"], serde_json::json!([13.4, 52.5]));
        assert_eq!(json["bays"][0]["categories"], serde_json::json!(["accessible", "family"]));
        assert!(json.get("closed").is_none(), "{json}");
        assert_eq!(serde_json::from_value::<LotSpec>(json).unwrap(), spec);
        let cases = [
            (r#""kind": "car_park""#, "kind: \"car_park\""),
            (r#""location": {"type": "Point", "coordinates": [13.4, 100]}"#, "location: GeoJSON"),
            (r#""operator": {"name": ""}"#, "operator.name"),
            (
                r#""colour": "red""#,
                "`colour`: unknown field; allowed fields are `name`, `bays`, `timeZone`, `zones`, `kind`",
            ),
        ];
        for (field, expected) in cases {
            let msg = err(&format!(r#"{{"name": "N", "bays": [], {field}}}"#));
            assert!(msg.contains(expected), "{field}: {msg}");
        }
        let bay_cases = [
            (r#""categories": ["ev"]"#, "bays[0].categories: bay category \"ev\""),
            (r#""categories": "accessible""#, "bays[0].categories: bay category"),
            (r#""location": {"type": "Point", "coordinates": [500, 0]}"#, "bays[0].location: GeoJSON"),
            (r#""colour": 1"#, "`location`, `categories`"),
        ];
        for (field, expected) in bay_cases {
            let msg = err(&format!(r#"{{"name": "N", "bays": [{{"id": "B1", "class": "c", {field}}}]}}"#));
            assert!(msg.contains(expected), "{field}: {msg}");
        }
    }

    #[test]
    fn no_bays_is_allowed() {
        assert!(parse(r#"{"name": "Empty", "bays": []}"#).unwrap().bays.is_empty());
    }

    #[test]
    fn bays_are_required() {
        assert_eq!(err(r#"{"name": "N"}"#), "lot spec field `bays`: required, but missing");
        assert!(
            err(r#"{"name": "N", "bays": null}"#).contains("`bays`: expected an array of bays, got null")
        );
    }

    #[test]
    fn name_rules() {
        assert!(err(r#"{"bays": []}"#).contains("`name`: required"));
        assert!(err(r#"{"name": 5, "bays": []}"#).contains("`name`: expected a string, got 5"));
        assert!(err(r#"{"name": "", "bays": []}"#).starts_with("lot name \"\" is empty"));
        assert!(err(r#"{"name": "   ", "bays": []}"#).contains("is blank"));
        assert!(err(r#"{"name": "a\nb", "bays": []}"#).contains("control character"));
        let ok = "é".repeat(200);
        assert!(parse(&format!(r#"{{"name": "{ok}", "bays": []}}"#)).is_ok());
        let long = "é".repeat(201);
        let msg = err(&format!(r#"{{"name": "{long}", "bays": []}}"#));
        assert!(msg.contains("is 201 characters long"), "{msg}");
        assert!(msg.contains("expected 1 to 200 characters"), "{msg}");
    }

    #[test]
    fn too_many_bays() {
        let bay = r#"{"id":"B","class":"c"}"#;
        let body = format!(r#"{{"name":"N","bays":[{}]}}"#, vec![bay; MAX_BAYS_PER_LOT + 1].join(","));
        assert_eq!(err(&body), "bays: 20001 bays given; a lot has at most 20000");
    }

    #[test]
    fn the_limit_itself_is_allowed() {
        let bays: Vec<String> = (0..MAX_BAYS_PER_LOT)
            .map(|i| format!(r#"{{"id":"B{i}","class":"c","sensor":"S{i}"}}"#))
            .collect();
        let body = format!(r#"{{"name":"N","bays":[{}]}}"#, bays.join(","));
        assert_eq!(parse(&body).unwrap().bays.len(), MAX_BAYS_PER_LOT);
    }

    #[test]
    fn oversized_body() {
        let body = vec![b' '; MAX_LOT_SPEC_BYTES + 1];
        assert!(matches!(parse_lot_spec(&body), Err(DomainError::LotSpecTooLarge { .. })));
    }

    #[test]
    fn duplicate_bay_ids() {
        let msg = err(
            r#"{"name":"N","bays":[{"id":"B1","class":"c"},{"id":"B2","class":"c"},{"id":"B1","class":"c"}]}"#,
        );
        assert_eq!(
            msg,
            "bays[2].id: bay id \"B1\" is already used by bays[0]; bay ids are unique within a lot"
        );
    }

    #[test]
    fn a_sensor_on_two_bays() {
        let msg = err(
            r#"{"name":"N","bays":[{"id":"B1","class":"c","sensor":"S1"},{"id":"B2","class":"c","sensor":"S1"}]}"#,
        );
        assert!(msg.starts_with("bays[1].sensor: sensor \"S1\" is already bound to bay \"B1\""), "{msg}");
    }

    #[test]
    fn deveui_sensors_are_compared_and_returned_normalised() {
        let spec =
            parse(r#"{"name":"N","bays":[{"id":"B1","class":"c","sensor":"70B3D5499A1B2C3D"}]}"#).unwrap();
        assert_eq!(spec.bays[0].sensor.as_deref(), Some("70b3d5499a1b2c3d"));
        let msg = err(r#"{"name":"N","bays":[{"id":"B1","class":"c","sensor":"70B3D5499A1B2C3D"},
                {"id":"B2","class":"c","sensor":"70b3d5499a1b2c3d"}]}"#);
        assert!(msg.contains("bays[1].sensor"), "{msg}");
    }

    #[test]
    fn bad_bay_fields_name_their_path() {
        let cases = [
            (r#"{"id":"B 1","class":"c"}"#, "bays[0].id: bay id \"B 1\" contains ' '"),
            (r#"{"id":"","class":"c"}"#, "bays[0].id: bay id \"\" is empty"),
            (r#"{"id":"..","class":"c"}"#, "consists only of dots"),
            (r#"{"class":"c"}"#, "lot spec field `bays[0].id`: required, but missing"),
            (r#"{"id":7,"class":"c"}"#, "lot spec field `bays[0].id`: expected a string, got 7"),
            (r#"{"id":"B1","class":"Car"}"#, "bays[0].class: vehicle class \"Car\""),
            (r#"{"id":"B1"}"#, "`bays[0].class`: required, but missing"),
            (r#"{"id":"B1","class":"c","zone":"L 1"}"#, "bays[0].zone: zone id \"L 1\""),
            (r#"{"id":"B1","class":"c","zone":3}"#, "`bays[0].zone`: expected a string or null, got 3"),
            (r#"{"id":"B1","class":"c","sensor":""}"#, "bays[0].sensor: device id \"\" is empty"),
            (
                r#"{"id":"B1","class":"c","sensor":"DEV 1"}"#,
                "bays[0].sensor: device id \"DEV 1\" contains whitespace",
            ),
            (r#"{"id":"B1","class":"c","sensor":"D\u0001"}"#, "contains a control character"),
            (r#"{"id":"B1","class":"c","model":"m\n"}"#, "bays[0].model: bay model"),
            (
                r#"{"id":"B1","class":"c","sensr":"S1"}"#,
                "`bays[0].sensr`: unknown field; allowed fields are `id`",
            ),
            (r#"[]"#, "lot spec field `bays[0]`: expected an object, got []"),
        ];
        for (bay, expected) in cases {
            let msg = err(&format!(r#"{{"name":"N","bays":[{bay}]}}"#));
            assert!(msg.contains(expected), "{bay}: {msg}");
        }
        let long_sensor = "S".repeat(129);
        let msg =
            err(&format!(r#"{{"name":"N","bays":[{{"id":"B1","class":"c","sensor":"{long_sensor}"}}]}}"#));
        assert!(msg.contains("is 129 bytes long"), "{msg}");
    }

    #[test]
    fn body_level_errors() {
        assert!(err("").starts_with("lot spec is not valid JSON"));
        assert!(err("{").starts_with("lot spec is not valid JSON"));
        assert_eq!(err("[1]"), "lot spec: expected a JSON object with `name` and `bays`, got [1]");
        assert!(err(r#"{"name":"N","bays":[],"colour":"red"}"#).contains("`colour`: unknown field"));
        assert!(parse_lot_spec(&[0xff, 0xfe]).is_err());
    }

    #[test]
    fn id_rules() {
        for ok in ["a", "B1", "lot-7_east.2", "A".repeat(64).as_str(), ".a", "a.."] {
            assert!(validate_id("bay", ok).is_ok(), "{ok}");
        }
        let cases = [
            ("", "is empty"),
            ("a b", "contains ' '"),
            ("a/b", "contains '/'"),
            ("é", "contains 'é'"),
            (".", "consists only of dots"),
            ("...", "consists only of dots"),
        ];
        for (bad, problem) in cases {
            let msg = validate_id("lot", bad).unwrap_err().to_string();
            assert!(msg.starts_with(&format!("lot id {bad:?} {problem}")), "{msg}");
            assert!(msg.contains("expected 1 to 64 characters of A-Z, a-z, 0-9"), "{msg}");
        }
        let msg = validate_id("zone", &"z".repeat(65)).unwrap_err().to_string();
        assert!(msg.contains("zone id") && msg.contains("is 65 characters long"), "{msg}");
    }

    #[test]
    fn device_id_rules() {
        for ok in ["DEV-1", "70B3D5499A1B2C3D", "urn:dev:ow:10e2073a01080063", "capteur-é", &"x".repeat(128)]
        {
            assert!(validate_device_id(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "a b", "a\tb", "a\u{7f}", &"x".repeat(129)] {
            let msg = validate_device_id(bad).unwrap_err().to_string();
            assert!(msg.starts_with("device id "), "{msg}");
            assert!(
                msg.contains("expected 1 to 128 bytes of printable characters without whitespace"),
                "{msg}"
            );
        }
    }

    #[test]
    fn normalises_only_deveuis() {
        assert_eq!(normalise_device_id("70B3D5499A1B2C3D"), "70b3d5499a1b2c3d");
        assert_eq!(normalise_device_id("70b3d5499a1b2c3d"), "70b3d5499a1b2c3d");
        assert_eq!(normalise_device_id("DEV-1"), "DEV-1");
        assert_eq!(normalise_device_id("70B3D5499A1B2C3"), "70B3D5499A1B2C3");
        assert_eq!(normalise_device_id("70B3D5499A1B2C3DE"), "70B3D5499A1B2C3DE");
        assert_eq!(normalise_device_id("70B3D5499A1B2C3G"), "70B3D5499A1B2C3G");
        assert_eq!(normalise_device_id(""), "");
    }
}
