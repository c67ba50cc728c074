//! Properties of restricted-time arithmetic: the due time of a stay under a
//! limit, weekly hours and a time zone (with its DST changes).

use parking_domain::{HoursSpec, Restriction, Stay, StayPolicy, time_zone};
use proptest::prelude::*;

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const ZONES: [&str; 5] = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"];
/// 2026-01-01T00:00:00Z: starts are spread over a year, so DST changes fall in range.
const BASE_MS: i64 = 1_767_225_600_000;
const YEAR_MS: i64 = 366 * 86_400_000;

fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

fn window() -> impl Strategy<Value = HoursSpec> {
    (prop::collection::vec(any::<bool>(), 7), 0u16..1440, 1u16..=1440)
        .prop_filter("from differs from to", |(_, from, to)| from != to)
        .prop_map(|(days, from, to)| {
            let mut days: Vec<String> =
                days.iter().zip(DAYS).filter(|(on, _)| **on).map(|(_, d)| d.to_string()).collect();
            if days.is_empty() {
                days.push("Wed".into());
            }
            HoursSpec { days, from: clock(from), to: clock(to) }
        })
}

fn restriction() -> impl Strategy<Value = Restriction> {
    (prop::option::of(prop::collection::vec(window(), 1..4)), 0..ZONES.len()).prop_map(|(hours, zone)| {
        Restriction::new(hours.as_deref(), time_zone(ZONES[zone]).unwrap()).unwrap()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Without hours the due time is start + limit + grace, in any time zone.
    #[test]
    fn without_hours_due_is_start_plus_limit_plus_grace(
        start in BASE_MS..BASE_MS + YEAR_MS, limit in 1i64..30 * 86_400, grace in 0i64..86_400, zone in 0..ZONES.len()
    ) {
        let restriction = Restriction::new(None, time_zone(ZONES[zone]).unwrap()).unwrap();
        let policy = StayPolicy { limit_ms: Some(limit * 1000), grace_ms: grace * 1000, restriction };
        prop_assert_eq!(Stay::start(&policy, start).due_at, Some(start + (limit + grace) * 1000));
    }

    /// A longer limit is never due earlier.
    #[test]
    fn due_is_monotone_in_the_limit(
        r in restriction(), start in BASE_MS..BASE_MS + YEAR_MS, a in 1i64..200 * 3_600, b in 1i64..200 * 3_600
    ) {
        let (short, long) = (a.min(b) * 1000, a.max(b) * 1000);
        match (r.due_after(start, short), r.due_after(start, long)) {
            (Some(s), Some(l)) => prop_assert!(s <= l),
            (None, Some(_)) => prop_assert!(false, "a shorter limit was never due"),
            _ => {}
        }
    }

    /// At the due time exactly the needed restricted time has passed, and
    /// never more in between than the wall-clock time.
    #[test]
    fn due_is_where_restricted_time_reaches_the_need(
        r in restriction(), start in BASE_MS..BASE_MS + YEAR_MS, need in 1i64..100 * 3_600
    ) {
        let need = need * 1000;
        if let Some(due) = r.due_after(start, need) {
            prop_assert!(due >= start + need);
            prop_assert_eq!(r.restricted_ms(start, due), need);
            prop_assert!(r.restricted_ms(start, due - 1) < need);
        }
    }

    /// Restricted time adds up over adjacent ranges and is bounded by the range.
    #[test]
    fn restricted_time_is_additive(
        r in restriction(), a in BASE_MS..BASE_MS + YEAR_MS, x in 0i64..20 * 86_400_000, y in 0i64..20 * 86_400_000
    ) {
        let (b, c) = (a + x, a + x + y);
        prop_assert_eq!(r.restricted_ms(a, b) + r.restricted_ms(b, c), r.restricted_ms(a, c));
        prop_assert!(r.restricted_ms(a, c) <= c - a);
    }

    /// A suspended stay reaches its limit as late as the unknown gap, or
    /// later: unknown time never counts against the driver.
    #[test]
    fn suspension_never_brings_the_due_time_forward(
        r in restriction(), start in BASE_MS..BASE_MS + YEAR_MS, seen in 0i64..10 * 3_600_000,
        gap in 0i64..48 * 3_600_000, limit in 1i64..20 * 3_600
    ) {
        let policy = StayPolicy { limit_ms: Some(limit * 1000), grace_ms: 0, restriction: r };
        let plain = Stay::start(&policy, start);
        let mut suspended = plain;
        suspended.suspend(&policy, start + seen);
        suspended.resume(&policy, start + seen + gap);
        match (plain.due_at, suspended.due_at) {
            (Some(p), Some(s)) => prop_assert!(s >= p),
            (None, Some(_)) => prop_assert!(false, "due only once suspended"),
            _ => {}
        }
        if gap == 0 {
            prop_assert_eq!(plain.due_at, suspended.due_at);
        }
    }
}
