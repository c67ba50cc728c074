//! The model's recent error: its 60-minute forecasts over the last days,
//! replayed from the roll-ups, by a model fitted only on what came before
//! them (so the answer is an out-of-sample error, not a fit).
//!
//! Each replayed forecast starts from one hour's mean occupancy and
//! forecasts the next hour's; the error is the absolute difference in bays.
//! Persistence's error (the next hour as this one) is replayed alongside,
//! so the number has something to be judged against.

use chrono::{DateTime, Duration, Utc};
use jiff::tz::TimeZone;
use serde::Serialize;

use super::{HOUR_MS, HourSample, Model, deviation};

/// The mean absolute error of the replayed 60-minute forecasts.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecentError {
    /// Mean absolute error of the model, in bays.
    pub mean_absolute_error: f64,
    /// The same for persistence ("as many as an hour before"), in bays.
    pub persistence_error: f64,
    /// How many forecasts were replayed.
    pub forecasts: usize,
    /// The window replayed: from this time to now.
    pub since: DateTime<Utc>,
}

/// Replays the last `days` before `now`; `None` when the history before
/// them is too short to fit on, or no two consecutive hours fall in them.
pub fn recent_error(
    history: &[HourSample],
    tz: &TimeZone,
    now: DateTime<Utc>,
    days: i64,
) -> Option<RecentError> {
    let since = now - Duration::days(days);
    let (before, window): (Vec<HourSample>, Vec<HourSample>) =
        history.iter().partition(|h| h.start_ms < since.timestamp_millis());
    let model = Model::fit(&before, tz);
    let rho = model.decay()?;
    let mut window: Vec<(i64, u32, f64)> = window
        .iter()
        .filter(|h| h.start_ms < now.timestamp_millis())
        .filter_map(|h| Some((h.start_ms, h.bays, h.fraction()?)))
        .collect();
    window.sort_by_key(|w| w.0);
    let (mut model_sum, mut persistence_sum, mut count) = (0.0, 0.0, 0usize);
    for pair in window.windows(2) {
        let [(start, _, now_fraction), (next_start, bays, next_fraction)] = *pair else { continue };
        if next_start - start != HOUR_MS {
            continue;
        }
        let (Some(expected_now), Some(expected_next)) =
            (model.profile.at(start + HOUR_MS / 2), model.profile.at(next_start + HOUR_MS / 2))
        else {
            continue;
        };
        let forecast = expected_next + deviation::decay_after(rho, 60.0) * (now_fraction - expected_now);
        model_sum += (next_fraction - forecast).abs() * f64::from(bays);
        persistence_sum += (next_fraction - now_fraction).abs() * f64::from(bays);
        count += 1;
    }
    (count > 0).then(|| RecentError {
        mean_absolute_error: model_sum / count as f64,
        persistence_error: persistence_sum / count as f64,
        forecasts: count,
        since,
    })
}
