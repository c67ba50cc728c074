//! Checks of the open-data feeds against the rules of their formats, written
//! here from the published descriptions (required members, enumerations,
//! types and ranges); each answers the list of rules a document breaks.

use serde_json::Value;

/// DATEX II v3 parking site types.
const DATEX_SITE_TYPES: [&str; 8] = [
    "carPark",
    "motorwayParking",
    "offStreetParkingGround",
    "onStreet",
    "other",
    "restArea",
    "specialLocationParking",
    "temporaryParking",
];
const DATEX_ASSIGNMENT_TYPES: [&str; 4] = ["allowedFor", "onlyFor", "optimisedFor", "prohibitedFor"];
/// The DATEX II user types this project can publish, all in the standard's list.
const DATEX_USER_TYPES: [&str; 8] =
    ["allUsers", "disabled", "families", "handicapped", "residents", "wheelchairUsers", "visitors", "women"];
const DATEX_FUEL_TYPES: [&str; 5] = ["all", "battery", "hydrogen", "other", "unknown"];

const PARKAPI_TYPES: [&str; 5] =
    ["ON_STREET", "OFF_STREET_PARKING_GROUND", "UNDERGROUND", "CAR_PARK", "OTHER"];
const PARKAPI_OPENING_STATUS: [&str; 3] = ["OPEN", "CLOSED", "UNKNOWN"];

fn is_time(v: &Value) -> bool {
    v.as_str().is_some_and(|s| chrono::DateTime::parse_from_rfc3339(s).is_ok())
}

fn count(v: &Value) -> Option<u64> {
    v.as_u64()
}

/// The rules a DATEX II v3 Parking Publication light document breaks.
pub fn datex2_light_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);
    let publication = &doc["parkingPublicationLight"];
    if !publication.is_object() {
        return vec!["no parkingPublicationLight object".into()];
    }
    if let Some(t) = publication.get("publicationTime").filter(|t| !is_time(t)) {
        bad(format!("publicationTime {t} is not a date-time"));
    }
    let Some(sites) = publication["parkingSite"].as_array() else {
        return vec!["parkingPublicationLight.parkingSite is not an array".into()];
    };
    let mut ids = std::collections::BTreeSet::new();
    for (i, s) in sites.iter().enumerate() {
        let at = |m: &str| format!("parkingSite[{i}].{m}");
        match s["_id"].as_str() {
            Some(id) if !id.is_empty() => {
                if !ids.insert(id.to_owned()) {
                    bad(format!("{}: {id:?} used twice", at("_id")));
                }
            }
            _ => bad(format!("{}: required, a non-empty string", at("_id"))),
        }
        if !s["type"].as_str().is_some_and(|t| DATEX_SITE_TYPES.contains(&t)) {
            bad(format!("{}: {} is not a ParkingSiteTypeEnum value", at("type"), s["type"]));
        }
        let c = &s["locationAndDimension"]["coordinatesForDisplay"];
        let lat = c["latitude"].as_f64().filter(|v| (-90.0..=90.0).contains(v));
        let lon = c["longitude"].as_f64().filter(|v| (-180.0..=180.0).contains(v));
        if lat.is_none() || lon.is_none() {
            bad(format!(
                "{}: required, latitude and longitude in range",
                at("locationAndDimension.coordinatesForDisplay")
            ));
        }
        for m in ["numberOfSpaces", "availableSpaces"] {
            if s.get(m).is_some() && count(&s[m]).is_none() {
                bad(format!("{}: {} is not a non-negative integer", at(m), s[m]));
            }
        }
        if let (Some(n), Some(a)) = (count(&s["numberOfSpaces"]), count(&s["availableSpaces"]))
            && a > n
        {
            bad(format!("{}: {a} vacant of {n} spaces", at("availableSpaces")));
        }
        for m in ["isOpenNow", "temporaryClosed"] {
            if s.get(m).is_some_and(|v| !v.is_boolean()) {
                bad(format!("{}: not a boolean", at(m)));
            }
        }
        if s.get("lastUpdate").is_some_and(|t| !is_time(t)) {
            bad(format!("{}: not a date-time", at("lastUpdate")));
        }
        for m in ["openingTimesDescription", "tariffDescription", "operatorInformation"] {
            if s.get(m).is_some_and(|v| !v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
                bad(format!("{}: not an array of strings", at(m)));
            }
        }
        for (j, a) in s["assignedFor"].as_array().into_iter().flatten().enumerate() {
            let at = |m: &str| format!("parkingSite[{i}].assignedFor[{j}].{m}");
            if !a["typeOfAssignment"].as_str().is_some_and(|t| DATEX_ASSIGNMENT_TYPES.contains(&t)) {
                bad(format!("{}: required, an AssignmentTypeEnum value", at("typeOfAssignment")));
            }
            if a.get("user").is_some_and(|u| !u.as_str().is_some_and(|u| DATEX_USER_TYPES.contains(&u))) {
                bad(format!("{}: {} is not a user type", at("user"), a["user"]));
            }
            if a.get("fuelType").is_some_and(|u| !u.as_str().is_some_and(|u| DATEX_FUEL_TYPES.contains(&u))) {
                bad(format!("{}: {} is not a fuel type", at("fuelType"), a["fuelType"]));
            }
            if a.get("availableSpaces").is_some_and(|n| count(n).is_none()) {
                bad(format!("{}: not a non-negative integer", at("availableSpaces")));
            }
        }
    }
    problems
}

/// A ParkAPI decimal position: `[+-]` up to three digits, a point, up to seven decimals.
fn parkapi_decimal(text: &str, limit: f64) -> bool {
    let digits = text.trim_start_matches(['+', '-']);
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    int.len() <= 3
        && frac.len() <= 7
        && int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
        && text.parse::<f64>().is_ok_and(|v| v.abs() <= limit)
}

/// The rules a ParkAPI v3 parking-sites list breaks.
pub fn parkapi_problems(doc: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut bad = |p: String| problems.push(p);
    let Some(items) = doc["items"].as_array() else { return vec!["items is not an array".into()] };
    if doc.get("total_count").is_some_and(|n| n.as_u64() != Some(items.len() as u64)) {
        bad(format!("total_count {} is not the {} items", doc["total_count"], items.len()));
    }
    for (i, s) in items.iter().enumerate() {
        let at = |m: &str| format!("items[{i}].{m}");
        for (m, max) in [("uid", 256), ("name", 256)] {
            if !s[m].as_str().is_some_and(|v| !v.is_empty() && v.chars().count() <= max) {
                bad(format!("{}: required, 1 to {max} characters", at(m)));
            }
        }
        for (m, max) in
            [("address", 512), ("operator_name", 256), ("fee_description", 256), ("opening_hours", 512)]
        {
            if s.get(m).is_some_and(|v| v.as_str().is_none_or(|v| v.chars().count() > max)) {
                bad(format!("{}: not a string of at most {max} characters", at(m)));
            }
        }
        if !s["type"].as_str().is_some_and(|t| PARKAPI_TYPES.contains(&t)) {
            bad(format!("{}: {} is not a ParkingSiteType", at("type"), s["type"]));
        }
        let (lat, lon) = (s["lat"].as_str(), s["lon"].as_str());
        if !lat.is_some_and(|v| parkapi_decimal(v, 90.0)) || !lon.is_some_and(|v| parkapi_decimal(v, 180.0)) {
            bad(format!("{}: required, decimal strings in range", at("lat/lon")));
        } else if lat.and_then(|v| v.parse::<f64>().ok()) == Some(0.0)
            && lon.and_then(|v| v.parse::<f64>().ok()) == Some(0.0)
        {
            bad(format!("{}: both zero", at("lat/lon")));
        }
        if !s["has_realtime_data"].is_boolean() {
            bad(format!("{}: required, a boolean", at("has_realtime_data")));
        }
        if !is_time(&s["static_data_updated_at"]) {
            bad(format!("{}: required, a date-time", at("static_data_updated_at")));
        }
        if count(&s["capacity"]).is_none() {
            bad(format!("{}: required, a non-negative integer", at("capacity")));
        }
        if s.get("realtime_data_updated_at").is_some_and(|t| !is_time(t)) {
            bad(format!("{}: not a date-time", at("realtime_data_updated_at")));
        }
        if s.get("realtime_opening_status")
            .is_some_and(|v| !v.as_str().is_some_and(|v| PARKAPI_OPENING_STATUS.contains(&v)))
        {
            bad(format!("{}: not an OpeningStatus", at("realtime_opening_status")));
        }
        if s.get("public_url").is_some_and(|u| u.as_str().is_none_or(|u| url::Url::parse(u).is_err())) {
            bad(format!("{}: not a URI", at("public_url")));
        }
        let Some(fields) = s.as_object() else { continue };
        for (k, v) in fields {
            let is_count = k.starts_with("capacity")
                || k.starts_with("realtime_capacity")
                || k.starts_with("realtime_free_capacity");
            if (is_count || k == "max_height") && count(v).is_none() {
                bad(format!("{}: not a non-negative integer", at(k)));
            }
            if let Some(group) = k.strip_prefix("realtime_free_capacity") {
                let capacity = fields
                    .get(&format!("realtime_capacity{group}"))
                    .or(fields.get(&format!("capacity{group}")));
                if let (Some(free), Some(cap)) = (count(v), capacity.and_then(count))
                    && free > cap
                {
                    bad(format!("{}: {free} free of {cap}", at(k)));
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_checks_catch_what_they_check() {
        let site = json!({"_id": "a", "type": "carPark", "numberOfSpaces": 2, "availableSpaces": 1,
            "locationAndDimension": {"coordinatesForDisplay": {"latitude": 52.5, "longitude": 13.4}}});
        let doc = |s: Value| json!({"parkingPublicationLight": {"parkingSite": [s]}});
        assert!(datex2_light_problems(&doc(site.clone())).is_empty());
        for (member, value) in [("type", json!("garage")), ("availableSpaces", json!(3)), ("_id", json!(""))]
        {
            let mut s = site.clone();
            s[member] = value;
            assert!(!datex2_light_problems(&doc(s)).is_empty(), "{member}");
        }
        let item = json!({"uid": "a", "name": "A", "type": "CAR_PARK", "lat": "52.5000000", "lon": "13.4000000",
            "has_realtime_data": true, "static_data_updated_at": "2026-12-04T10:00:00Z", "capacity": 2,
            "realtime_free_capacity": 1});
        assert!(parkapi_problems(&json!({"items": [item.clone()]})).is_empty());
        for (member, value) in [
            ("lat", json!(52.5)),
            ("lon", json!("13.40000001")),
            ("type", json!("GARAGE")),
            ("realtime_free_capacity", json!(3)),
            ("capacity", json!(-1)),
        ] {
            let mut s = item.clone();
            s[member] = value;
            assert!(!parkapi_problems(&json!({"items": [s]})).is_empty(), "{member}");
        }
    }
}
