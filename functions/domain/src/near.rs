//! The nearest-lots search: `near=LAT,LON&radius=METERS` (with optional
//! `class=` and `category=`), lots with a location within the radius,
//! nearest first.

use crate::category::BayCategory;
use crate::class::VehicleClass;
use crate::feeds::LotSnapshot;
use crate::geo::{Point, distance_m};

/// The largest radius asked for: 100 km (a region, not the planet).
pub const MAX_RADIUS_M: f64 = 100_000.0;

/// A validated search.
#[derive(Clone, Debug, PartialEq)]
pub struct NearQuery {
    pub point: Point,
    pub radius_m: f64,
    pub class: Option<VehicleClass>,
    pub category: Option<BayCategory>,
}

/// Reads the query's pairs. `Ok(None)` when `near` is absent (a plain list
/// of lots, which takes no parameters); an error names the parameter.
pub fn parse_near_query<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<Option<NearQuery>, String> {
    let (mut near, mut radius, mut class, mut category) = (None, None, None, None);
    for (key, value) in pairs {
        match key {
            "near" => near = Some(parse_lat_lon(value)?),
            "radius" => radius = Some(parse_radius(value)?),
            "class" => class = Some(VehicleClass::parse(value).map_err(|e| format!("`class`: {e}"))?),
            "category" => category = Some(BayCategory::parse(value).map_err(|e| format!("`category`: {e}"))?),
            other => {
                return Err(format!("unknown query parameter {other:?}: use near, radius, class, category"));
            }
        }
    }
    match (near, radius) {
        (None, None) if class.is_none() && category.is_none() => Ok(None),
        (None, _) => Err("`near` is missing: give near=LAT,LON with radius, class and category".into()),
        (Some(_), None) => Err("`radius` is missing: give radius=METERS (up to 100000) with near".into()),
        (Some(point), Some(radius_m)) => Ok(Some(NearQuery { point, radius_m, class, category })),
    }
}

/// `LAT,LON` in decimal degrees (latitude first, as people write it).
fn parse_lat_lon(text: &str) -> Result<Point, String> {
    let bad = || format!("`near` is {text:?}: expected LAT,LON in decimal degrees, such as 52.5163,13.3777");
    let (lat, lon) = text.split_once(',').ok_or_else(bad)?;
    let (lat, lon): (f64, f64) =
        (lat.trim().parse().map_err(|_| bad())?, lon.trim().parse().map_err(|_| bad())?);
    Point::new(lat, lon)
        .ok_or_else(|| format!("`near` is {text:?}: latitude must be -90 to 90 and longitude -180 to 180"))
}

fn parse_radius(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if r > 0.0 && r <= MAX_RADIUS_M => Ok(r),
        _ => Err(format!("`radius` is {text:?}: expected metres, more than 0 and at most 100000")),
    }
}

/// The lots that match, with their distance, nearest first (then by id).
pub fn select_near<'a>(lots: &'a [LotSnapshot], q: &NearQuery) -> Vec<(&'a LotSnapshot, f64)> {
    let mut found: Vec<(&LotSnapshot, f64)> = lots
        .iter()
        .filter(|l| q.class.as_ref().is_none_or(|c| l.classes.get(c).is_some_and(|n| n.total > 0)))
        .filter(|l| q.category.is_none_or(|c| l.categories.get(&c).is_some_and(|n| n.total > 0)))
        .filter_map(|l| Some((l, distance_m(q.point, l.site.location?))))
        .filter(|(_, d)| *d <= q.radius_m)
        .collect();
    found.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.lot.cmp(&b.0.lot)));
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feeds::tests_support::lot;

    fn q(query: &str) -> Result<Option<NearQuery>, String> {
        let pairs: Vec<(&str, &str)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        parse_near_query(pairs)
    }

    #[test]
    fn parameters_are_checked_by_name() {
        assert_eq!(q(""), Ok(None));
        let near = q("near=52.5,13.4&radius=500&class=four_wheeler&category=accessible").unwrap().unwrap();
        assert_eq!((near.point, near.radius_m), (Point::new(52.5, 13.4).unwrap(), 500.0));
        assert_eq!(near.category, Some(BayCategory::Accessible));
        let cases = [
            ("near=52.5&radius=5", "`near` is \"52.5\": expected LAT,LON"),
            ("near=95,13&radius=5", "latitude must be -90 to 90"),
            ("near=a,b&radius=5", "`near` is \"a,b\""),
            ("near=52.5,13.4", "`radius` is missing"),
            ("near=52.5,13.4&radius=0", "`radius` is \"0\""),
            ("near=52.5,13.4&radius=200000", "at most 100000"),
            ("near=52.5,13.4&radius=NaN", "`radius` is \"NaN\""),
            ("radius=5", "`near` is missing"),
            ("near=52.5,13.4&radius=5&category=ev", "`category`: bay category \"ev\""),
            ("near=52.5,13.4&radius=5&class=Car", "`class`: vehicle class"),
            ("near=52.5,13.4&radius=5&limit=3", "unknown query parameter \"limit\""),
        ];
        for (query, expected) in cases {
            let msg = q(query).unwrap_err();
            assert!(msg.contains(expected), "{query}: {msg}");
        }
    }

    #[test]
    fn nearest_first_within_the_radius_with_filters() {
        let mut far = lot(true);
        far.lot = "far".into();
        far.site.location = Point::new(52.6, 13.4); // about 11.1 km north
        let mut near = lot(true);
        near.lot = "near".into();
        near.site.location = Point::new(52.501, 13.4); // about 111 m north
        near.categories.clear();
        let lots = vec![far, lot(false), near, lot(true)];
        let at = |r: f64| NearQuery {
            point: Point::new(52.5, 13.4).unwrap(),
            radius_m: r,
            class: None,
            category: None,
        };
        let ids =
            |q: &NearQuery| select_near(&lots, q).iter().map(|(l, _)| l.lot.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&at(20_000.0)), ["north", "near", "far"]);
        assert_eq!(ids(&at(1_000.0)), ["north", "near"]);
        let d = select_near(&lots, &at(1_000.0))[1].1;
        assert!((d - 111.2).abs() < 0.5, "{d}");
        let accessible = NearQuery { category: Some(BayCategory::Accessible), ..at(20_000.0) };
        assert_eq!(ids(&accessible), ["north", "far"]);
        let bikes = NearQuery { class: Some(VehicleClass::two_wheeler()), ..at(20_000.0) };
        assert!(ids(&bikes).is_empty());
    }
}
