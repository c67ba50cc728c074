//! Forecast: how many bays of a (lot, class) will be free in 15, 30, 60
//! minutes, with a range, from the hourly roll-ups and the present counts.
//!
//! The model has two parts, both fitted on the group's own roll-ups:
//!
//! 1. a seasonal [`profile`]: the typical occupancy by weekday and hour of
//!    the lot's local time (medians per slot, linear between hour middles);
//! 2. the present [`deviation`] from that profile, which decays towards it
//!    as the horizon grows, at the rate the roll-ups' residuals show.
//!
//! `occupancy(now + h) = profile(now + h) + rho^(h/60) * (occupancy(now) - profile(now))`
//!
//! The range is the central [`NOMINAL_COVERAGE`] of the errors the same
//! forecast made when replayed over the history. Answers are clamped to the
//! bays a sensor vouches for (free or occupied now), so never below 0 or
//! above the total. Without enough history (a new lot, or a class with fewer
//! than [`MIN_ERRORS`] replayed forecasts) a horizon falls back to
//! persistence ("as many as now") with the widest honest range: from none to
//! every vouched bay.

pub mod deviation;
pub mod horizon;
pub mod profile;
pub mod replay;

use chrono::{DateTime, Utc};
pub use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};

pub use horizon::{DEFAULT_HORIZONS, Horizon, MAX_HORIZON_MINUTES, MAX_HORIZONS};
pub use profile::Profile;
pub use replay::{RecentError, recent_error};

/// The share of outcomes the stated range aims to hold.
pub const NOMINAL_COVERAGE: f64 = 0.8;

/// A lead time needs at least this many replayed forecasts (about three
/// days of hours) before its range is trusted.
pub const MIN_ERRORS: usize = 72;

const HOUR_MS: i64 = 3_600_000;

/// One hour of a group's history, as the roll-ups keep it (zones summed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HourSample {
    /// Start of the hour, milliseconds since the epoch.
    pub start_ms: i64,
    /// Bays the group had.
    pub bays: u32,
    /// Mean occupied bays over the hour.
    pub mean_occupied: f64,
}

impl HourSample {
    fn fraction(&self) -> Option<f64> {
        (self.bays > 0).then(|| (self.mean_occupied / f64::from(self.bays)).clamp(0.0, 1.0))
    }
}

/// The group's counts now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Present {
    pub at: DateTime<Utc>,
    pub total: u32,
    pub free: u32,
    pub occupied: u32,
}

impl Present {
    /// Bays a sensor vouches for (free or occupied): the most that can be free.
    pub fn vouched(&self) -> u32 {
        self.free.saturating_add(self.occupied).min(self.total)
    }
}

/// How a horizon was forecast.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// Profile plus decaying deviation, range from replayed errors.
    Seasonal,
    /// Too little history: as many as now, range from none to all vouched bays.
    Persistence,
}

/// One horizon's answer, in bays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forecast {
    pub horizon: Horizon,
    pub free: u32,
    pub low: u32,
    pub high: u32,
    pub method: Method,
}

/// The horizon the public reads show: "free in an hour".
pub const PUBLISHED_HORIZON: Horizon = Horizon::HOUR;

/// How old a published forecast must be for the sweep to refit it, minutes:
/// under the five minutes between ticks (parkd's default schedule and the
/// PingSource's), so every tick refits it even when ticks run a little early.
pub const PUBLISHED_REFRESH_MINUTES: i64 = 4;

/// How old a published forecast may be before the public reads leave it
/// out (the sweep has stopped refreshing it), minutes.
pub const PUBLISHED_MAX_AGE_MINUTES: i64 = 15;

/// A (lot, class)'s forecast as the public reads show it: one horizon,
/// fitted by the sweep. Only a seasonal forecast is published; persistence
/// ("as many as now", anything possible) tells a visitor nothing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedForecast {
    /// The horizon, as the forecast API spells it (`"60m"`).
    pub horizon: String,
    /// The time it is a forecast for.
    pub at: DateTime<Utc>,
    pub free: u32,
    pub low: u32,
    pub high: u32,
    /// The model's recent mean absolute error at this horizon, in bays.
    pub recent_error: Option<f64>,
    /// When the sweep fitted it.
    pub computed_at: DateTime<Utc>,
}

impl PublishedForecast {
    /// The published form of `forecast`, fitted at `now`, or `None` when it
    /// is not seasonal.
    pub fn of(
        forecast: &Forecast,
        recent_error: Option<f64>,
        now: DateTime<Utc>,
    ) -> Option<PublishedForecast> {
        (forecast.method == Method::Seasonal).then(|| PublishedForecast {
            horizon: forecast.horizon.to_string(),
            at: now + chrono::Duration::minutes(i64::from(forecast.horizon.as_minutes())),
            free: forecast.free,
            low: forecast.low,
            high: forecast.high,
            recent_error,
            computed_at: now,
        })
    }

    /// Whether it is still worth showing at `now`.
    pub fn is_current(&self, now: DateTime<Utc>) -> bool {
        now - self.computed_at <= chrono::Duration::minutes(PUBLISHED_MAX_AGE_MINUTES)
    }
}

/// A fitted model of one group.
#[derive(Clone, Debug)]
pub struct Model {
    profile: Profile,
    rho: Option<f64>,
    /// Sorted replayed errors (occupancy fractions) per lag of whole hours, from 1.
    errors: Vec<Vec<f64>>,
    hours: usize,
}

impl Model {
    /// Fits the model on a group's hourly history (any order) in the lot's time zone.
    pub fn fit(history: &[HourSample], tz: &TimeZone) -> Model {
        let samples: Vec<(i64, f64)> = history
            .iter()
            .filter_map(|h| Some((h.start_ms.div_euclid(HOUR_MS) * HOUR_MS, h.fraction()?)))
            .collect();
        let profile = Profile::fit(&samples, tz);
        let residuals = residual_series(&samples, &profile);
        let rho = deviation::fit_decay(&residuals);
        let lags = (MAX_HORIZON_MINUTES / 60) as usize;
        let errors = match rho {
            Some(rho) => (1..=lags).map(|lag| deviation::replay_errors(&residuals, rho, lag)).collect(),
            None => Vec::new(),
        };
        Model { profile, rho, errors, hours: samples.len() }
    }

    /// Hours of history the model was fitted on.
    pub fn hours(&self) -> usize {
        self.hours
    }

    /// The fitted hourly persistence of the deviation, if there was enough history.
    pub fn decay(&self) -> Option<f64> {
        self.rho
    }

    /// The same model with another decay (0: the profile alone), for
    /// comparisons; its ranges still come from the fitted decay's errors.
    pub fn with_decay(mut self, rho: f64) -> Model {
        self.rho = self.rho.map(|_| rho.clamp(0.0, 1.0));
        self
    }

    /// The forecast of `horizon` from the present counts.
    pub fn forecast(&self, present: &Present, horizon: Horizon) -> Forecast {
        self.seasonal(present, horizon).unwrap_or_else(|| persistence(present, horizon))
    }

    fn seasonal(&self, present: &Present, horizon: Horizon) -> Option<Forecast> {
        if present.total == 0 {
            return None;
        }
        let rho = self.rho?;
        let minutes = f64::from(horizon.as_minutes());
        let whole_hours = horizon.as_minutes().div_ceil(60) as usize;
        let errors = self.errors.get(whole_hours.checked_sub(1)?)?;
        if errors.len() < MIN_ERRORS {
            return None;
        }
        let now_ms = present.at.timestamp_millis();
        let expected_now = self.profile.at(now_ms)?;
        let expected_then = self.profile.at(now_ms + i64::from(horizon.as_minutes()) * 60_000)?;
        let total = f64::from(present.total);
        let deviation = f64::from(present.occupied) / total - expected_now;
        let occupancy = expected_then + deviation::decay_after(rho, minutes) * deviation;
        let narrow = deviation::spread_ratio(rho, minutes, whole_hours);
        let tail = (1.0 - NOMINAL_COVERAGE) / 2.0;
        let below = deviation::quantile(errors, tail)? * narrow;
        let above = deviation::quantile(errors, 1.0 - tail)? * narrow;
        let vouched = f64::from(present.vouched());
        let free_at = |occupancy: f64| (vouched - occupancy * total).clamp(0.0, vouched);
        let free = free_at(occupancy).round() as u32;
        // More occupied than expected means fewer free: the high error bounds the low count.
        let low = (free_at(occupancy + above).floor() as u32).min(free);
        let high = (free_at(occupancy + below).ceil() as u32).max(free);
        Some(Forecast { horizon, free, low, high, method: Method::Seasonal })
    }
}

/// "As many as now", with a range that claims nothing.
fn persistence(present: &Present, horizon: Horizon) -> Forecast {
    let vouched = present.vouched();
    Forecast { horizon, free: present.free.min(vouched), low: 0, high: vouched, method: Method::Persistence }
}

/// Occupancy minus profile for every hour from the first sample to the last
/// (`None` where an hour is missing), so index differences are hour lags.
fn residual_series(samples: &[(i64, f64)], profile: &Profile) -> Vec<Option<f64>> {
    let (Some(first), Some(last)) = (samples.iter().map(|s| s.0).min(), samples.iter().map(|s| s.0).max())
    else {
        return Vec::new();
    };
    let mut series = vec![None; ((last - first) / HOUR_MS) as usize + 1];
    for &(start, fraction) in samples {
        if let Some(expected) = profile.at(start + HOUR_MS / 2) {
            series[((start - first) / HOUR_MS) as usize] = Some(fraction - expected);
        }
    }
    series
}

#[cfg(test)]
mod tests;
