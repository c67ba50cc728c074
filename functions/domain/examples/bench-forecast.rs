//! Backtest of the forecast: eight simulated weeks of one lot, the model
//! fitted on the first six (hourly roll-ups only, as the API sees them),
//! then asked every 15 minutes of the last two for 15, 30 and 60 minutes
//! ahead, against two baselines computed in the same run: persistence ("as
//! many free as now") and the same time last week.
//!
//! ```sh
//! cargo run --release -p parking-domain --example bench-forecast -- [--seed N] [--bays N]
//! ```
//!
//! The traffic, minute by minute: weekday commuters (a morning wave, long
//! stays), visitors (a daytime spread, short stays; more at weekends, fewer
//! on Sundays), an evening event on about one day in eight, each day's demand
//! scaled by a random factor and drifting within the day (weather), and
//! arrivals turned away when the lot is full. Seeded, so a run repeats.

#[path = "bench_forecast/traffic.rs"]
mod traffic;

use chrono::{DateTime, Duration, TimeZone, Utc};
use jiff::tz::TimeZone as Tz;
use parking_domain::forecast::{Horizon, HourSample, Model, NOMINAL_COVERAGE, Present};

const WEEKS: usize = 8;
const FIT_WEEKS: usize = 6;
const HORIZONS: [u32; 3] = [15, 30, 60];
const STEP_MINUTES: usize = 15;

/// Sums of one horizon's results.
#[derive(Default)]
struct Score {
    model: f64,
    profile_only: f64,
    persistence: f64,
    last_week: f64,
    covered: usize,
    width: f64,
    count: usize,
}

fn main() {
    let (seed, bays) = options();
    let start = Utc.with_ymd_and_hms(2026, 9, 7, 0, 0, 0).unwrap(); // a Monday
    eprintln!("simulating {WEEKS} weeks of a {bays}-bay lot (seed {seed})");
    let occupied = traffic::simulate(seed, bays, WEEKS * 7 * 24 * 60);
    let fit_minutes = FIT_WEEKS * 7 * 24 * 60;
    let history = hourly_rollups(&occupied[..fit_minutes], start, bays);
    eprintln!("fitting on {} hourly roll-ups ({FIT_WEEKS} weeks)", history.len());
    let model = Model::fit(&history, &Tz::UTC);
    let profile_only = model.clone().with_decay(0.0);
    eprintln!("forecasting every {STEP_MINUTES} minutes of the last {} weeks", WEEKS - FIT_WEEKS);
    let mut scores: Vec<Score> = HORIZONS.iter().map(|_| Score::default()).collect();
    let free = |minute: usize| f64::from(bays - occupied[minute]);
    for now in (fit_minutes..occupied.len() - 60).step_by(STEP_MINUTES) {
        let present = Present {
            at: start + Duration::minutes(now as i64),
            total: bays,
            free: bays - occupied[now],
            occupied: occupied[now],
        };
        for (score, &minutes) in scores.iter_mut().zip(&HORIZONS) {
            let horizon = Horizon::minutes(minutes).expect("a valid horizon");
            let then = now + minutes as usize;
            let truth = free(then);
            let f = model.forecast(&present, horizon);
            score.model += (f64::from(f.free) - truth).abs();
            score.profile_only += (f64::from(profile_only.forecast(&present, horizon).free) - truth).abs();
            score.persistence += (free(now) - truth).abs();
            score.last_week += (free(then - 7 * 24 * 60) - truth).abs();
            score.covered += usize::from(f64::from(f.low) <= truth && truth <= f64::from(f.high));
            score.width += f64::from(f.high - f.low);
            score.count += 1;
        }
    }
    report(&model, &scores, bays, seed);
}

/// `--seed N` and `--bays N`.
fn options() -> (u64, u32) {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |name: &str, default: u64| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} takes a number, not {v:?}")))
    };
    (value("--seed", 7), u32::try_from(value("--bays", 200)).expect("--bays fits in u32"))
}

/// The hourly roll-ups of a minute-by-minute occupancy series.
fn hourly_rollups(occupied: &[u32], start: DateTime<Utc>, bays: u32) -> Vec<HourSample> {
    occupied
        .chunks(60)
        .enumerate()
        .map(|(hour, minutes)| HourSample {
            start_ms: (start + Duration::hours(hour as i64)).timestamp_millis(),
            bays,
            mean_occupied: minutes.iter().map(|&o| f64::from(o)).sum::<f64>() / minutes.len() as f64,
        })
        .collect()
}

fn report(model: &Model, scores: &[Score], bays: u32, seed: u64) {
    println!(
        "forecast backtest: {bays} bays, seed {seed}, fitted on {FIT_WEEKS} weeks ({} hours, decay per hour {:.3}), \
         tested on {} weeks every {STEP_MINUTES} min",
        model.hours(),
        model.decay().unwrap_or(f64::NAN),
        WEEKS - FIT_WEEKS
    );
    println!(
        "{:>7} {:>9} {:>11} {:>12} {:>11} {:>9} {:>9} {:>9} {:>10}",
        "horizon",
        "forecasts",
        "MAE model",
        "MAE persist",
        "MAE week-1",
        "vs pers.",
        "vs week",
        "coverage",
        "mean width"
    );
    for (score, minutes) in scores.iter().zip(HORIZONS) {
        let n = score.count as f64;
        let (model_mae, persistence, last_week) =
            (score.model / n, score.persistence / n, score.last_week / n);
        println!(
            "{:>6}m {:>9} {:>11.2} {:>12.2} {:>11.2} {:>9.2} {:>9.2} {:>8.1}% {:>10.1}",
            minutes,
            score.count,
            model_mae,
            persistence,
            last_week,
            model_mae / persistence,
            model_mae / last_week,
            100.0 * score.covered as f64 / n,
            score.width / n
        );
    }
    println!(
        "(ratios are the model's MAE over the baseline's: below 1 is better; nominal coverage {:.0}%)",
        NOMINAL_COVERAGE * 100.0
    );
    let profile_only: Vec<String> = scores
        .iter()
        .zip(HORIZONS)
        .map(|(s, m)| format!("{m}m {:.2}", s.profile_only / s.count as f64))
        .collect();
    println!("profile alone, without the present deviation: MAE {}", profile_only.join(", "));
}
