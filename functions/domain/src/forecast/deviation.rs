//! The deviation from the profile: how long it lasts, and how wrong the
//! forecast has been at each lead time.
//!
//! A lot busier than usual now tends to stay busier for a while (a rainy
//! day, an event next door), then returns to its profile. The residuals of
//! the hourly roll-ups (occupancy minus profile) are fitted as a first-order
//! autoregression, `r(k+1) = rho * r(k)`, so the part of today's deviation
//! left after `h` minutes is `rho^(h/60)` (the decay of an Ornstein-Uhlenbeck
//! process observed hourly).
//!
//! The stated range comes from the errors this very forecast made on the
//! history: for each lag of whole hours, the forecast of hour `k + lag` from
//! hour `k` is compared with what the roll-ups saw, and the range is the
//! empirical quantiles of those errors. A horizon between whole hours takes
//! the next whole hour's errors, narrowed by the ratio of the process's
//! spreads at the two horizons (`sqrt(1 - rho^(2h))`), which the backtest
//! checks for 15 and 30 minutes.

/// A residual series of consecutive hours (`None` where an hour is missing).
pub type Residuals = [Option<f64>];

/// The fitted persistence of the deviation, per hour, within [0, 0.99].
pub fn fit_decay(residuals: &Residuals) -> Option<f64> {
    let (mut cross, mut square, mut pairs) = (0.0, 0.0, 0usize);
    for pair in residuals.windows(2) {
        if let [Some(a), Some(b)] = pair {
            cross += a * b;
            square += a * a;
            pairs += 1;
        }
    }
    // No residual at all: the profile is the whole story, nothing to decay.
    (pairs >= MIN_PAIRS).then(|| if square > 0.0 { (cross / square).clamp(0.0, 0.99) } else { 0.0 })
}

/// Fewer consecutive pairs than a day's say nothing about persistence.
const MIN_PAIRS: usize = 24;

/// The part of the present deviation left after `minutes`.
pub fn decay_after(rho: f64, minutes: f64) -> f64 {
    rho.powf(minutes / 60.0)
}

/// The sorted errors (truth minus forecast, as occupancy fractions) of the
/// forecasts of `lag` hours ahead replayed over the residuals.
pub fn replay_errors(residuals: &Residuals, rho: f64, lag: usize) -> Vec<f64> {
    let keep = decay_after(rho, 60.0 * lag as f64);
    let mut errors: Vec<f64> = residuals
        .iter()
        .zip(residuals.iter().skip(lag))
        .filter_map(|(now, later)| Some(later.as_ref()? - keep * now.as_ref()?))
        .collect();
    errors.sort_by(f64::total_cmp);
    errors
}

/// The `q`-quantile of sorted values (linear between order statistics).
pub fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let position = q.clamp(0.0, 1.0) * last as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    Some(sorted[below] + (sorted[above] - sorted[below]) * (position - below as f64))
}

/// How much narrower the errors at `minutes` are than at `whole_hours`.
pub fn spread_ratio(rho: f64, minutes: f64, whole_hours: usize) -> f64 {
    let spread = |m: f64| (1.0 - decay_after(rho, m).powi(2)).max(0.0).sqrt();
    let full = spread(60.0 * whole_hours as f64);
    if full <= 0.0 { 1.0 } else { (spread(minutes) / full).min(1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ar1_series_gives_back_its_coefficient() {
        // r(k+1) = 0.8 r(k) + a deterministic, uncorrelated wobble.
        let (mut r, mut state) = (0.3, 0x2545_f491_4f6c_dd1d_u64);
        let series: Vec<Option<f64>> = (0..5000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                r = 0.8 * r + (state % 1000) as f64 / 10_000.0 - 0.05;
                Some(r)
            })
            .collect();
        let rho = fit_decay(&series).unwrap();
        assert!((rho - 0.8).abs() < 0.05, "rho {rho}");
    }

    #[test]
    fn too_few_pairs_fit_nothing_and_gaps_break_pairs() {
        let short: Vec<Option<f64>> = (0..10).map(|k| Some(f64::from(k))).collect();
        assert_eq!(fit_decay(&short), None);
        let gappy: Vec<Option<f64>> = (0..100).map(|k| (k % 2 == 0).then_some(1.0)).collect();
        assert_eq!(fit_decay(&gappy), None);
        assert_eq!(fit_decay(&vec![Some(0.0); 100]), Some(0.0), "a perfect profile leaves nothing to decay");
    }

    #[test]
    fn decay_is_one_now_and_shrinks_with_time() {
        assert_eq!(decay_after(0.5, 0.0), 1.0);
        assert!((decay_after(0.5, 120.0) - 0.25).abs() < 1e-12);
        assert!((decay_after(0.81, 30.0) - 0.9).abs() < 1e-12);
    }

    #[test]
    fn replayed_errors_are_what_the_decay_missed() {
        let series = [Some(0.2), Some(0.1), None, Some(0.4)];
        assert_eq!(replay_errors(&series, 0.5, 1), vec![0.0]);
        let two = replay_errors(&series, 0.5, 2);
        assert!((two[0] - (0.4 - 0.25 * 0.1)).abs() < 1e-12);
    }

    #[test]
    fn quantiles_interpolate() {
        let sorted = [0.0, 1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&sorted, 0.5), Some(2.0));
        assert_eq!(quantile(&sorted, 0.1), Some(0.4));
        assert_eq!(quantile(&sorted, 1.0), Some(4.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn shorter_horizons_have_narrower_spreads() {
        let r15 = spread_ratio(0.9, 15.0, 1);
        let r30 = spread_ratio(0.9, 30.0, 1);
        assert!(0.0 < r15 && r15 < r30 && r30 < 1.0);
        assert_eq!(spread_ratio(0.9, 60.0, 1), 1.0);
        assert_eq!(spread_ratio(0.0, 15.0, 1), 1.0);
    }
}
