use chrono::TimeZone as _;
use proptest::prelude::*;

use super::*;

const BAYS: u32 = 100;

/// Monday 2026-11-23 00:00 UTC.
fn monday() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
}

/// Weekdays full from 08:00 to 17:00 and a quarter full otherwise; weekends
/// a tenth full. Each day is a little busier or quieter than the profile
/// (the same wobble all day, not repeating weekly), so the residuals persist
/// from hour to hour.
fn typical(day: i64, hour: i64) -> f64 {
    let weekday = day.rem_euclid(7) < 5;
    let base: f64 = match (weekday, hour) {
        (true, 8..=16) => 1.0,
        (true, _) => 0.25,
        (false, _) => 0.1,
    };
    let wobble = [0.0, 0.04, -0.03, 0.05, -0.05, 0.02, -0.02, 0.03, -0.04, 0.01, -0.01]
        [(day * day * 3 + day).rem_euclid(11) as usize];
    (base + wobble).clamp(0.0, 1.0)
}

fn weeks_of_history(weeks: i64) -> Vec<HourSample> {
    (0..weeks * 7 * 24)
        .map(|h| HourSample {
            start_ms: (monday() + chrono::Duration::hours(h)).timestamp_millis(),
            bays: BAYS,
            mean_occupied: typical(h / 24, h % 24) * f64::from(BAYS),
        })
        .collect()
}

fn present(at: DateTime<Utc>, occupied: u32) -> Present {
    Present { at, total: BAYS, free: BAYS - occupied, occupied }
}

fn after(weeks: i64, day: i64, hour: i64, minute: i64) -> DateTime<Utc> {
    monday() + chrono::Duration::minutes(((weeks * 7 + day) * 24 + hour) * 60 + minute)
}

#[test]
fn no_history_is_persistence_claiming_no_range() {
    let model = Model::fit(&[], &TimeZone::UTC);
    let f = model.forecast(&present(monday(), 30), Horizon::minutes(60).unwrap());
    assert_eq!((f.free, f.low, f.high, f.method), (70, 0, 100, Method::Persistence));
}

#[test]
fn two_days_of_history_are_still_persistence() {
    let model = Model::fit(&weeks_of_history(1)[..48], &TimeZone::UTC);
    let f = model.forecast(&present(after(0, 2, 7, 0), 30), Horizon::minutes(60).unwrap());
    assert_eq!(f.method, Method::Persistence);
}

#[test]
fn a_lot_always_full_at_nine_on_weekdays_forecasts_it_full() {
    let model = Model::fit(&weeks_of_history(4), &TimeZone::UTC);
    // Monday of week 5 at 08:00, filling as usual (the middle of 07:00-08:00
    // is a quarter full, of 08:00-09:00 full): at 09:00 it will be full.
    let f = model.forecast(&present(after(4, 0, 8, 0), 62), Horizon::minutes(60).unwrap());
    assert_eq!(f.method, Method::Seasonal);
    assert!(f.free <= 8, "{f:?}");
    // At 07:00 it is a quarter full; by 08:00 it is on its way.
    let early = model.forecast(&present(after(4, 0, 7, 0), 25), Horizon::minutes(60).unwrap());
    assert!(early.free > 25 && early.free < 50, "{early:?}");
}

#[test]
fn a_quiet_saturday_forecasts_free_bays() {
    let model = Model::fit(&weeks_of_history(4), &TimeZone::UTC);
    let f = model.forecast(&present(after(4, 5, 8, 0), 10), Horizon::minutes(60).unwrap());
    assert!(f.free >= 85, "{f:?}");
}

#[test]
fn the_present_deviation_fades_with_the_horizon() {
    let model = Model::fit(&weeks_of_history(4), &TimeZone::UTC);
    // Sunday 02:00, usually a tenth full; now half full (an event that ran late).
    let now = present(after(4, 6, 2, 0), 50);
    let free: Vec<u32> =
        [15, 60, 360].iter().map(|m| model.forecast(&now, Horizon::minutes(*m).unwrap()).free).collect();
    assert!(free[0] < free[1] && free[1] < free[2], "{free:?}");
    assert!(free[0] < 60, "15 minutes on, most of the deviation is still there: {free:?}");
}

#[test]
fn the_profile_follows_the_lots_clock() {
    let berlin = TimeZone::get("Europe/Berlin").unwrap();
    // Full 08:00-17:00 Berlin time, i.e. 07:00-16:00 UTC in winter.
    let history: Vec<HourSample> = weeks_of_history(4)
        .into_iter()
        .map(|mut h| {
            let shifted = h.start_ms + HOUR_MS;
            let day = shifted.div_euclid(24 * HOUR_MS) - monday().timestamp_millis() / (24 * HOUR_MS);
            h.mean_occupied = typical(day, shifted.rem_euclid(24 * HOUR_MS) / HOUR_MS) * f64::from(BAYS);
            h
        })
        .collect();
    let model = Model::fit(&history, &berlin);
    // 07:00 UTC is 08:00 in Berlin, filling; 07:30 UTC is 08:30 there: full by then.
    let f = model.forecast(&present(after(4, 0, 7, 0), 62), Horizon::minutes(30).unwrap());
    assert!(f.free <= 8, "{f:?}");
}

#[test]
fn recent_error_is_out_of_sample_and_beats_persistence_on_a_seasonal_lot() {
    let history = weeks_of_history(4);
    let now = after(4, 0, 0, 0);
    let recent = recent_error(&history, &TimeZone::UTC, now, 7).unwrap();
    assert_eq!(recent.since, now - chrono::Duration::days(7));
    assert_eq!(recent.forecasts, 7 * 24 - 1);
    assert!(recent.mean_absolute_error < recent.persistence_error, "{recent:?}");
    assert!(recent_error(&history[..100], &TimeZone::UTC, now, 7).is_none());
}

fn any_history() -> impl Strategy<Value = Vec<HourSample>> {
    (0usize..800, 1u32..400, prop::collection::vec(0.0f64..1.0, 24 * 7), 0u64..1000).prop_map(
        |(hours, bays, week, seed)| {
            (0..hours)
                .map(|h| {
                    let noise = ((h as u64 * 2_654_435_761 + seed) % 1000) as f64 / 5000.0 - 0.1;
                    let fraction = (week[h % (24 * 7)] + noise).clamp(0.0, 1.0);
                    HourSample {
                        start_ms: monday().timestamp_millis() + h as i64 * HOUR_MS,
                        bays,
                        mean_occupied: fraction * f64::from(bays),
                    }
                })
                .collect()
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn answers_stay_within_the_vouched_bays_and_around_the_forecast(
        history in any_history(),
        total in 0u32..500,
        occupied_share in 0.0f64..=1.0,
        unknown_share in 0.0f64..=1.0,
        offset_minutes in 0i64..(10 * 7 * 24 * 60),
        minutes in 1u32..=MAX_HORIZON_MINUTES,
    ) {
        let model = Model::fit(&history, &TimeZone::UTC);
        let occupied = (f64::from(total) * occupied_share) as u32;
        let unknown = (f64::from(total - occupied) * unknown_share) as u32;
        let now = Present {
            at: monday() + chrono::Duration::minutes(offset_minutes),
            total,
            free: total - occupied - unknown,
            occupied,
        };
        let f = model.forecast(&now, Horizon::minutes(minutes).unwrap());
        prop_assert!(f.low <= f.free && f.free <= f.high, "{f:?}");
        prop_assert!(f.high <= now.vouched() && now.vouched() <= total, "{f:?}");
        if history.is_empty() {
            prop_assert_eq!((f.free, f.method), (now.free, Method::Persistence));
        }
    }
}
