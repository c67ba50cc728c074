//! Positions on the WGS84 ellipsoid as GeoJSON (RFC 7946) writes them, and
//! distances between them.
//!
//! A position is `[longitude, latitude]` (longitude first, as GeoJSON has
//! it); latitude is -90..=90, longitude -180..=180. Distances are
//! great-circle distances on a sphere of the Earth's mean radius
//! (haversine): within about 0.5 % of the ellipsoidal distance, which is
//! plenty to sort lots by how far away they are.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{DomainError, render_json};

/// The Earth's mean radius (IUGG), metres.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Most rings one outline may have, and positions one ring may have.
const MAX_RINGS: usize = 16;
const MAX_RING_POSITIONS: usize = 10_000;

/// A WGS84 position.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

impl Point {
    /// A position when both values are in range (and finite).
    pub fn new(lat: f64, lon: f64) -> Option<Point> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some(Point { lat, lon })
    }

    /// As a GeoJSON Point geometry.
    pub fn to_geojson(self) -> Value {
        json!({ "type": "Point", "coordinates": [self.lon, self.lat] })
    }
}

impl Serialize for Point {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_geojson().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Point {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_point(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A GeoJSON Polygon: an outer ring and optional holes, each closed.
#[derive(Clone, Debug, PartialEq)]
pub struct Polygon {
    pub rings: Vec<Vec<Point>>,
}

impl Polygon {
    pub fn to_geojson(&self) -> Value {
        let rings: Vec<Vec<[f64; 2]>> =
            self.rings.iter().map(|ring| ring.iter().map(|p| [p.lon, p.lat]).collect()).collect();
        json!({ "type": "Polygon", "coordinates": rings })
    }
}

impl Serialize for Polygon {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_geojson().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Polygon {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_polygon(&Value::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

fn geo_problem(value: &Value, problem: impl Into<String>) -> DomainError {
    DomainError::InvalidGeometry { value: render_json(value), problem: problem.into() }
}

/// The geometry object's `coordinates`, after checking its `type`.
fn coordinates<'v>(value: &'v Value, kind: &str) -> Result<&'v Value, DomainError> {
    let Value::Object(obj) = value else {
        return Err(geo_problem(value, format!("is not a GeoJSON {kind} object")));
    };
    if let Some(key) = obj.keys().find(|k| !matches!(k.as_str(), "type" | "coordinates" | "bbox")) {
        return Err(geo_problem(value, format!("has an unknown member {key:?}")));
    }
    match obj.get("type") {
        Some(Value::String(t)) if t == kind => {}
        _ => return Err(geo_problem(value, format!("needs \"type\": \"{kind}\""))),
    }
    obj.get("coordinates").ok_or_else(|| geo_problem(value, "has no \"coordinates\""))
}

/// One `[longitude, latitude]` position.
fn position(value: &Value) -> Result<Point, DomainError> {
    let numbers: Option<Vec<f64>> = value.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect());
    match (value.as_array(), numbers) {
        (Some(items), Some(n)) if items.len() == 2 && n.len() == 2 => {
            Point::new(n[1], n[0]).ok_or_else(|| {
                geo_problem(value, "is out of range: longitude must be -180 to 180, latitude -90 to 90")
            })
        }
        _ => Err(geo_problem(value, "is not a position: expected [longitude, latitude] as two numbers")),
    }
}

/// A GeoJSON Point: `{"type": "Point", "coordinates": [lon, lat]}`.
pub fn parse_point(value: &Value) -> Result<Point, DomainError> {
    position(coordinates(value, "Point")?)
}

/// A GeoJSON Polygon: each ring has at least four positions and ends where
/// it starts; every position is in range.
pub fn parse_polygon(value: &Value) -> Result<Polygon, DomainError> {
    let Some(rings) = coordinates(value, "Polygon")?.as_array() else {
        return Err(geo_problem(value, "coordinates: expected an array of rings"));
    };
    if rings.is_empty() || rings.len() > MAX_RINGS {
        return Err(geo_problem(value, format!("has {} rings; expected 1 to {MAX_RINGS}", rings.len())));
    }
    let mut out = Vec::with_capacity(rings.len());
    for (i, ring) in rings.iter().enumerate() {
        let Some(positions) = ring.as_array() else {
            return Err(geo_problem(ring, format!("ring {i}: expected an array of positions")));
        };
        if positions.len() < 4 || positions.len() > MAX_RING_POSITIONS {
            return Err(geo_problem(
                ring,
                format!("ring {i} has {} positions; expected 4 to {MAX_RING_POSITIONS}", positions.len()),
            ));
        }
        let points = positions.iter().map(position).collect::<Result<Vec<_>, _>>()?;
        if points.first() != points.last() {
            return Err(geo_problem(
                ring,
                format!("ring {i} is not closed: its last position must equal its first"),
            ));
        }
        out.push(points);
    }
    Ok(Polygon { rings: out })
}

/// Great-circle distance in metres between two positions (haversine).
pub fn distance_m(a: Point, b: Point) -> f64 {
    let (p1, p2) = (a.lat.to_radians(), b.lat.to_radians());
    let dp = p2 - p1;
    let dl = (b.lon - a.lon).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.clamp(0.0, 1.0).sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(lat: f64, lon: f64) -> Point {
        Point::new(lat, lon).unwrap()
    }

    #[test]
    fn known_distances() {
        let berlin_gate = p(52.516275, 13.377704);
        let eiffel_tower = p(48.858370, 2.294481);
        let d = distance_m(berlin_gate, eiffel_tower);
        // The same sphere computed by an independent implementation: 879,089.8 m.
        assert!((d - 879_089.8).abs() < 1.0, "{d}");
        // The WGS84 ellipsoidal distance (GeographicLib's geodesic): 881,332.0 m.
        assert!((d / 881_332.0 - 1.0).abs() < 0.005, "{d}");
        let marienplatz = p(48.137154, 11.576124);
        let d = distance_m(berlin_gate, marienplatz);
        assert!((d / 503_679.2 - 1.0).abs() < 0.005, "{d}");
        assert_eq!(distance_m(berlin_gate, berlin_gate), 0.0);
        // Across the antimeridian: a short hop, not around the world.
        let d = distance_m(p(0.0, 179.9), p(0.0, -179.9));
        assert!((d - 22_239.0).abs() < 5.0, "{d}");
    }

    #[test]
    fn points_parse_and_name_their_problem() {
        let point = parse_point(&json!({"type": "Point", "coordinates": [13.4, 52.5]})).unwrap();
        assert_eq!(point, p(52.5, 13.4));
        assert_eq!(point.to_geojson(), json!({"type": "Point", "coordinates": [13.4, 52.5]}));
        let cases = [
            (json!({"type": "Point", "coordinates": [13.4, 95.0]}), "out of range"),
            (json!({"type": "Point", "coordinates": [181.0, 0.0]}), "out of range"),
            (json!({"type": "Point", "coordinates": [13.4]}), "not a position"),
            (json!({"type": "Point", "coordinates": [13.4, 52.5, 30.0]}), "not a position"),
            (json!({"type": "Point", "coordinates": ["13.4", "52.5"]}), "not a position"),
            (json!({"type": "Point"}), "no \"coordinates\""),
            (json!({"type": "point", "coordinates": [1, 2]}), "\"type\": \"Point\""),
            (json!({"type": "Point", "coordinates": [1, 2], "crs": 1}), "unknown member \"crs\""),
            (json!([13.4, 52.5]), "not a GeoJSON Point"),
        ];
        for (value, expected) in cases {
            let msg = parse_point(&value).unwrap_err().to_string();
            assert!(msg.contains(expected), "{value}: {msg}");
        }
    }

    #[test]
    fn polygons_are_closed_and_in_range() {
        let square = json!({"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.0]]]});
        let polygon = parse_polygon(&square).unwrap();
        assert_eq!(polygon.rings[0].len(), 4);
        assert_eq!(polygon.to_geojson(), square);
        let cases = [
            (
                json!({"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 52.1], [13.0, 52.1]]]}),
                "not closed",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.0, 52.0]]]}),
                "has 3 positions",
            ),
            (
                json!({"type": "Polygon", "coordinates": [[[13.0, 52.0], [13.1, 52.0], [13.1, 91.0], [13.0, 52.0]]]}),
                "out of range",
            ),
            (json!({"type": "Polygon", "coordinates": []}), "has 0 rings"),
            (json!({"type": "Polygon", "coordinates": [5]}), "ring 0: expected an array"),
            (json!({"type": "Point", "coordinates": [1, 2]}), "\"type\": \"Polygon\""),
        ];
        for (value, expected) in cases {
            let msg = parse_polygon(&value).unwrap_err().to_string();
            assert!(msg.contains(expected), "{value}: {msg}");
        }
    }
}
