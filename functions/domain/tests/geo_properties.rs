//! Properties of the great-circle distance: a metric on the sphere.

use parking_domain::geo::{EARTH_RADIUS_M, Point, distance_m};
use proptest::prelude::*;

fn point() -> impl Strategy<Value = Point> {
    (-90.0f64..=90.0, -180.0f64..=180.0).prop_map(|(lat, lon)| Point::new(lat, lon).unwrap())
}

proptest! {
    #[test]
    fn zero_to_itself_symmetric_and_bounded(a in point(), b in point()) {
        prop_assert_eq!(distance_m(a, a), 0.0);
        let d = distance_m(a, b);
        prop_assert!(d >= 0.0 && d.is_finite());
        prop_assert!((d - distance_m(b, a)).abs() < 1e-6);
        // Nothing is further than half the circumference.
        prop_assert!(d <= std::f64::consts::PI * EARTH_RADIUS_M + 1e-6);
    }

    #[test]
    fn triangle_inequality(a in point(), b in point(), c in point()) {
        prop_assert!(distance_m(a, c) <= distance_m(a, b) + distance_m(b, c) + 1e-3);
    }

    #[test]
    fn a_degree_of_latitude_is_about_111_km(lat in -89.0f64..=88.0, lon in -180.0f64..=180.0) {
        let d = distance_m(Point::new(lat, lon).unwrap(), Point::new(lat + 1.0, lon).unwrap());
        prop_assert!((d - 111_195.0).abs() < 1.0, "{}", d);
    }
}
