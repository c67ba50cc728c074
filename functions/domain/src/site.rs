//! What a lot is, as cities and apps describe it: its kind, where it is,
//! its address, opening hours, height limit, fees and operator, and whether
//! an operator closed it. Every field is optional.
//!
//! A lot is **open** unless an operator closed it (`"closed": true`) or it
//! is outside its `openingHours` in the lot's time zone; without
//! `openingHours` it is always open.

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{DomainError, excerpt, render_json};
use crate::geo::{Point, Polygon, parse_point, parse_polygon};
use crate::stay::{HoursSpec, Restriction, parse_hours};

const MAX_ADDRESS_CHARS: usize = 512;
const MAX_TEXT_CHARS: usize = 1000;
const MAX_URL_CHARS: usize = 2048;
const MAX_EXCEPTIONS: usize = 366;
/// Height limits accepted, in centimetres.
const MIN_HEIGHT_CM: u64 = 100;
const MAX_HEIGHT_CM: u64 = 1000;

/// The top-level lot fields this module reads.
pub const SITE_FIELDS: [&str; 9] =
    ["kind", "location", "outline", "address", "openingHours", "maxHeightCm", "fees", "operator", "closed"];

/// Off-street (car park, open ground, garage) or on-street (a street segment).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LotKind {
    OffStreet,
    OnStreet,
}

/// A lot's descriptive data, as provisioned and stored.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SiteSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<LotKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Point>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline: Option<Polygon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub opening_hours: Option<OpeningHours>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_height_cm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fees: Option<Fees>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operator: Option<Operator>,
    /// Closed by an operator, whatever the hours say.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// `{"weekly": [{"days", "from", "to"}], "exceptions": [{"date", "from"?, "to"?}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpeningHours {
    /// Weekly windows (as a zone's `hours`); absent: open all week.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekly: Option<Vec<HoursSpec>>,
    /// Days that differ from the weekly schedule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exceptions: Vec<HoursException>,
}

/// One local date that differs: closed all day, or open only `from`-`to`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursException {
    /// `YYYY-MM-DD`, in the lot's time zone.
    pub date: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fees {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operator {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

fn invalid(field: &str, problem: impl std::fmt::Display) -> DomainError {
    DomainError::InvalidSite { problem: format!("{field}: {problem}") }
}

fn given<'v>(obj: &'v Map<String, Value>, field: &str) -> Option<&'v Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// Reads the site fields of a lot body (the caller refuses unknown fields).
pub fn parse_site(root: &Map<String, Value>) -> Result<SiteSpec, DomainError> {
    let kind = given(root, "kind")
        .map(|v| match v.as_str() {
            Some("off_street") => Ok(LotKind::OffStreet),
            Some("on_street") => Ok(LotKind::OnStreet),
            _ => {
                Err(invalid("kind", format!("{}; expected \"off_street\" or \"on_street\"", render_json(v))))
            }
        })
        .transpose()?;
    let location = given(root, "location").map(parse_point).transpose().map_err(|e| e.at("location"))?;
    let outline = given(root, "outline").map(parse_polygon).transpose().map_err(|e| e.at("outline"))?;
    let address = given(root, "address").map(|v| text("address", v, MAX_ADDRESS_CHARS)).transpose()?;
    let opening_hours = given(root, "openingHours").map(parse_opening_hours).transpose()?;
    let max_height_cm = given(root, "maxHeightCm")
        .map(|v| match v.as_u64() {
            Some(cm) if (MIN_HEIGHT_CM..=MAX_HEIGHT_CM).contains(&cm) => Ok(cm as u32),
            _ => Err(invalid(
                "maxHeightCm",
                format!(
                    "{}; expected whole centimetres from {MIN_HEIGHT_CM} to {MAX_HEIGHT_CM}",
                    render_json(v)
                ),
            )),
        })
        .transpose()?;
    let fees = given(root, "fees").map(parse_fees).transpose()?;
    let operator = given(root, "operator").map(parse_operator).transpose()?;
    let closed = match given(root, "closed") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => return Err(invalid("closed", format!("{}; expected true or false", render_json(v)))),
    };
    Ok(SiteSpec { kind, location, outline, address, opening_hours, max_height_cm, fees, operator, closed })
}

/// A non-blank string of at most `max` characters without control characters.
fn text(field: &str, value: &Value, max: usize) -> Result<String, DomainError> {
    let Some(s) = value.as_str() else {
        return Err(invalid(field, format!("{}; expected a string", render_json(value))));
    };
    let chars = s.chars().count();
    if s.trim().is_empty() || chars > max || s.chars().any(char::is_control) {
        return Err(invalid(
            field,
            format!("{:?}; expected 1 to {max} characters without control characters", excerpt(s)),
        ));
    }
    Ok(s.to_owned())
}

fn object<'v>(field: &str, value: &'v Value, known: &[&str]) -> Result<&'v Map<String, Value>, DomainError> {
    let Value::Object(obj) = value else {
        return Err(invalid(field, format!("{}; expected an object", render_json(value))));
    };
    if let Some(key) = obj.keys().find(|k| !known.contains(&k.as_str())) {
        return Err(invalid(
            &format!("{field}.{}", excerpt(key)),
            format!("unknown field; allowed: {}", known.join(", ")),
        ));
    }
    Ok(obj)
}

fn parse_fees(value: &Value) -> Result<Fees, DomainError> {
    let obj = object("fees", value, &["description", "url"])?;
    let description =
        given(obj, "description").map(|v| text("fees.description", v, MAX_TEXT_CHARS)).transpose()?;
    let url = given(obj, "url").map(|v| web_url("fees.url", v)).transpose()?;
    Ok(Fees { description, url })
}

fn parse_operator(value: &Value) -> Result<Operator, DomainError> {
    let obj = object("operator", value, &["name", "contact"])?;
    let name = match given(obj, "name") {
        Some(v) => text("operator.name", v, 200)?,
        None => return Err(invalid("operator.name", "required, but missing")),
    };
    let contact = given(obj, "contact").map(|v| text("operator.contact", v, 200)).transpose()?;
    Ok(Operator { name, contact })
}

/// An absolute `http` or `https` URL.
fn web_url(field: &str, value: &Value) -> Result<String, DomainError> {
    let s = text(field, value, MAX_URL_CHARS)?;
    match url::Url::parse(&s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(s),
        _ => Err(invalid(field, format!("{:?}; expected an absolute http or https URL", excerpt(&s)))),
    }
}

fn parse_opening_hours(value: &Value) -> Result<OpeningHours, DomainError> {
    let obj = object("openingHours", value, &["weekly", "exceptions"])?;
    let weekly =
        given(obj, "weekly").map(parse_hours).transpose().map_err(|e| e.at("openingHours.weekly"))?;
    let exceptions = match given(obj, "exceptions") {
        None => Vec::new(),
        Some(Value::Array(items)) if items.len() <= MAX_EXCEPTIONS => items
            .iter()
            .enumerate()
            .map(|(i, item)| parse_exception(item).map_err(|e| e.at(format!("openingHours.exceptions[{i}]"))))
            .collect::<Result<_, _>>()?,
        Some(v) => {
            return Err(invalid(
                "openingHours.exceptions",
                format!("{}; expected an array of at most {MAX_EXCEPTIONS} days", render_json(v)),
            ));
        }
    };
    Ok(OpeningHours { weekly, exceptions })
}

fn parse_exception(value: &Value) -> Result<HoursException, DomainError> {
    let obj = object("exception", value, &["date", "from", "to"])?;
    let date = match given(obj, "date").and_then(Value::as_str) {
        Some(d) if d.len() == 10 && d.parse::<jiff::civil::Date>().is_ok() => d.to_owned(),
        _ => return Err(invalid("date", "expected a date as YYYY-MM-DD")),
    };
    let from = given(obj, "from").and_then(Value::as_str).map(str::to_owned);
    let to = given(obj, "to").and_then(Value::as_str).map(str::to_owned);
    let exception = HoursException { date, from, to };
    match (&exception.from, &exception.to, given(obj, "from"), given(obj, "to")) {
        (None, None, None, None) => Ok(exception),
        (Some(_), Some(_), _, _) => exception.window().map(|_| exception.clone()),
        _ => Err(invalid(
            "from/to",
            "give both `from` and `to` as \"HH:MM\" strings, or neither (closed all day)",
        )),
    }
}

impl HoursException {
    /// Minutes after local midnight `[from, to)`, or `None` when closed all day.
    fn window(&self) -> Result<Option<(u16, u16)>, DomainError> {
        let (Some(from), Some(to)) = (&self.from, &self.to) else { return Ok(None) };
        let minutes = |t: &str, end: bool| crate::stay::clock_minutes(t, end);
        let (f, t) = (minutes(from, false)?, minutes(to, true)?);
        if t <= f {
            return Err(invalid("to", "must be after `from` within the day"));
        }
        Ok(Some((f, t)))
    }
}

/// Whether a lot is open at `now_ms` (see the module doc).
pub fn is_open(site: &SiteSpec, tz: &TimeZone, now_ms: i64) -> bool {
    if site.closed {
        return false;
    }
    let Some(hours) = &site.opening_hours else { return true };
    let local = tz.to_datetime(Timestamp::from_millisecond(now_ms).unwrap_or(Timestamp::UNIX_EPOCH));
    let today = local.date().to_string();
    if let Some(exception) = hours.exceptions.iter().find(|e| e.date == today) {
        let minute = (local.hour() as u16) * 60 + local.minute() as u16;
        return matches!(exception.window(), Ok(Some((f, t))) if f <= minute && minute < t);
    }
    match &hours.weekly {
        None => true,
        Some(weekly) => Restriction::new(Some(weekly), tz.clone())
            .is_ok_and(|r| r.restricted_ms(now_ms, now_ms.saturating_add(1)) > 0),
    }
}

/// [`is_open`] in the time zone named (an unknown name reads as UTC).
pub fn is_open_in(site: &SiteSpec, time_zone: &str, now_ms: i64) -> bool {
    let tz = crate::stay::time_zone(time_zone).unwrap_or(TimeZone::UTC);
    is_open(site, &tz, now_ms)
}

/// The hours in OpenStreetMap's `opening_hours` syntax (what ParkAPI
/// carries): `Mo,Tu 08:00-18:00; 2026 Dec 25 off`; `24/7` without hours.
pub fn osm_opening_hours(hours: Option<&OpeningHours>) -> String {
    const OSM_DAYS: [(&str, &str); 7] = [
        ("Mon", "Mo"),
        ("Tue", "Tu"),
        ("Wed", "We"),
        ("Thu", "Th"),
        ("Fri", "Fr"),
        ("Sat", "Sa"),
        ("Sun", "Su"),
    ];
    const MONTHS: [&str; 12] =
        ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let Some(hours) = hours else { return "24/7".into() };
    let mut rules: Vec<String> = match &hours.weekly {
        None => vec!["24/7".into()],
        Some(weekly) => weekly
            .iter()
            .map(|w| {
                let days: Vec<&str> = OSM_DAYS
                    .iter()
                    .filter(|(ours, _)| w.days.iter().any(|d| d == ours))
                    .map(|(_, osm)| *osm)
                    .collect();
                format!("{} {}-{}", days.join(","), w.from, w.to)
            })
            .collect(),
    };
    for e in &hours.exceptions {
        let (y, m, d) = (&e.date[0..4], e.date[5..7].parse::<usize>().unwrap_or(1), &e.date[8..10]);
        let day = format!("{y} {} {d}", MONTHS[(m.clamp(1, 12)) - 1]);
        rules.push(match (&e.from, &e.to) {
            (Some(from), Some(to)) => format!("{day} {from}-{to}"),
            _ => format!("{day} off"),
        });
    }
    rules.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn site(body: Value) -> Result<SiteSpec, DomainError> {
        parse_site(body.as_object().unwrap())
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn every_field_parses_and_serialises_back() {
        let body = json!({
            "kind": "on_street",
            "location": {"type": "Point", "coordinates": [13.4, 52.5]},
            "outline": {"type": "Polygon", "coordinates": [[[13.4, 52.5], [13.41, 52.5], [13.41, 52.51], [13.4, 52.5]]]},
            "address": "Unter den Linden 1, 10117 Berlin",
            "openingHours": {"weekly": [{"days": ["Mon", "Tue"], "from": "08:00", "to": "18:00"}],
                             "exceptions": [{"date": "2026-12-25"}, {"date": "2026-12-24", "from": "08:00", "to": "12:00"}]},
            "maxHeightCm": 210,
            "fees": {"description": "2 EUR per hour", "url": "https://example.org/fees"},
            "operator": {"name": "City of Berlin", "contact": "parking@example.org"},
            "closed": true
        });
        let spec = site(body.clone()).unwrap();
        assert_eq!(spec.kind, Some(LotKind::OnStreet));
        assert_eq!(spec.max_height_cm, Some(210));
        assert_eq!(serde_json::to_value(&spec).unwrap(), body);
        assert_eq!(serde_json::from_value::<SiteSpec>(body).unwrap(), spec);
        assert_eq!(site(json!({})).unwrap(), SiteSpec::default());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({"kind": "garage"}), "kind: \"garage\"; expected \"off_street\" or \"on_street\""),
            (json!({"location": {"type": "Point", "coordinates": [200, 0]}}), "location: GeoJSON"),
            (
                json!({"outline": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}}),
                "outline: GeoJSON",
            ),
            (json!({"address": ""}), "address: \"\""),
            (json!({"address": 5}), "address: 5; expected a string"),
            (json!({"maxHeightCm": 2.1}), "maxHeightCm: 2.1"),
            (json!({"maxHeightCm": 5000}), "maxHeightCm: 5000"),
            (json!({"fees": {"url": "ftp://example.org"}}), "fees.url: \"ftp://example.org\""),
            (json!({"fees": {"url": "/fees"}}), "fees.url"),
            (json!({"fees": {"price": 2}}), "fees.price: unknown field"),
            (json!({"operator": {"contact": "x"}}), "operator.name: required"),
            (json!({"closed": "yes"}), "closed: \"yes\"; expected true or false"),
            (json!({"openingHours": {"weekly": []}}), "openingHours.weekly: hours"),
            (
                json!({"openingHours": {"exceptions": [{"date": "2026-13-01"}]}}),
                "openingHours.exceptions[0]: date",
            ),
            (
                json!({"openingHours": {"exceptions": [{"date": "2026-12-24", "from": "08:00"}]}}),
                "exceptions[0]: from/to",
            ),
            (
                json!({"openingHours": {"exceptions": [{"date": "2026-12-24", "from": "12:00", "to": "08:00"}]}}),
                "exceptions[0]: to",
            ),
            (json!({"openingHours": {"daily": []}}), "openingHours.daily: unknown field"),
        ];
        for (body, expected) in cases {
            let msg = site(body.clone()).unwrap_err().to_string();
            assert!(msg.contains(expected), "{body}: {msg}");
        }
    }

    #[test]
    fn open_follows_hours_exceptions_and_the_operator() {
        let tz = TimeZone::get("Europe/Berlin").unwrap();
        let spec = site(json!({"openingHours": {
            "weekly": [{"days": ["Mon", "Tue", "Wed", "Thu", "Fri"], "from": "08:00", "to": "18:00"},
                       {"days": ["Sat"], "from": "22:00", "to": "02:00"}],
            "exceptions": [{"date": "2026-12-25"}, {"date": "2026-12-24", "from": "09:00", "to": "12:00"}]}}))
        .unwrap();
        // 2026-12-07 is a Monday; Berlin is UTC+1 in December.
        assert!(is_open(&spec, &tz, at("2026-12-07T07:00:00Z")));
        assert!(!is_open(&spec, &tz, at("2026-12-07T06:59:59Z")));
        assert!(!is_open(&spec, &tz, at("2026-12-07T17:00:00Z")));
        // Saturday night runs past midnight into Sunday.
        assert!(is_open(&spec, &tz, at("2026-12-13T00:30:00Z")));
        assert!(!is_open(&spec, &tz, at("2026-12-13T01:00:00Z")));
        // Friday 25 December: closed all day; Thursday 24th: 09:00 to 12:00 only.
        assert!(!is_open(&spec, &tz, at("2026-12-25T10:00:00Z")));
        assert!(is_open(&spec, &tz, at("2026-12-24T08:00:00Z")));
        assert!(!is_open(&spec, &tz, at("2026-12-24T07:59:00Z")));
        assert!(!is_open(&spec, &tz, at("2026-12-24T11:00:00Z")));
        let closed = SiteSpec { closed: true, ..SiteSpec::default() };
        assert!(!is_open(&closed, &tz, at("2026-12-07T10:00:00Z")));
        assert!(is_open(&SiteSpec::default(), &tz, at("2026-12-07T10:00:00Z")));
        assert_eq!(
            osm_opening_hours(spec.opening_hours.as_ref()),
            "Mo,Tu,We,Th,Fr 08:00-18:00; Sa 22:00-02:00; 2026 Dec 25 off; 2026 Dec 24 09:00-12:00"
        );
        assert_eq!(osm_opening_hours(None), "24/7");
    }
}
