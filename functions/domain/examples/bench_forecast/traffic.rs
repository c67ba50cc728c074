//! Simulated traffic of one lot, minute by minute, from a seed: the
//! occupied bays at the start of every minute.

/// A small, seeded generator (SplitMix64): the same seed, the same weeks.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-12);
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * self.uniform()).cos()
    }

    /// Poisson with a small mean (Knuth).
    pub fn poisson(&mut self, mean: f64) -> u32 {
        let limit = (-mean).exp();
        let (mut k, mut p) = (0, self.uniform());
        while p > limit {
            k += 1;
            p *= self.uniform();
        }
        k
    }

    /// Log-normal with the given median and spread (sigma of the log).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }
}

/// A bell-shaped daily wave: `peak` arrivals per hour at `centre` (hours).
fn wave(hour: f64, centre: f64, width: f64, peak: f64) -> f64 {
    peak * (-0.5 * ((hour - centre) / width).powi(2)).exp()
}

/// One kind of driver: arrivals per hour at a time of day, and stay length.
struct Driver {
    per_hour: f64,
    median_stay_minutes: f64,
}

/// Who arrives at `hour` (0-24, fractional) of a day of the week (0 = Monday).
fn drivers(day_of_week: usize, hour: f64, event: bool) -> [Driver; 3] {
    let weekday = day_of_week < 5;
    let commuters = if weekday { wave(hour, 8.0, 0.8, 48.0) } else { wave(hour, 9.0, 1.2, 6.0) };
    let visitors = match day_of_week {
        0..=4 => wave(hour, 12.5, 2.8, 26.0),
        5 => wave(hour, 13.5, 2.5, 62.0),
        _ => wave(hour, 14.0, 2.2, 34.0),
    };
    let guests = if event { wave(hour, 18.7, 0.6, 110.0) } else { 0.0 };
    [
        Driver { per_hour: commuters, median_stay_minutes: 8.5 * 60.0 },
        Driver { per_hour: visitors, median_stay_minutes: 80.0 },
        Driver { per_hour: guests, median_stay_minutes: 190.0 },
    ]
}

/// The occupied bays at the start of each of `minutes` minutes, starting on
/// a Monday at 00:00.
pub fn simulate(seed: u64, bays: u32, minutes: usize) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    let scale = f64::from(bays) / 200.0;
    let mut leaving = vec![0u32; minutes + 1];
    let mut occupied = 0u32;
    let mut series = Vec::with_capacity(minutes);
    let (mut demand, mut drift, mut event) = (1.0, 0.0, false);
    for minute in 0..minutes {
        let (day, within) = (minute / (24 * 60), minute % (24 * 60));
        if within == 0 {
            // Each day is busier or quieter as a whole; events now and then.
            demand = rng.log_normal(1.0, 0.15);
            event = rng.uniform() < 0.125;
        }
        if within % 60 == 0 {
            // Within the day, demand drifts from hour to hour (weather, traffic).
            drift = 0.85 * drift + 0.06 * rng.normal();
        }
        occupied -= leaving[minute].min(occupied);
        series.push(occupied);
        let hour = within as f64 / 60.0;
        for driver in drivers(day % 7, hour, event) {
            let mean = driver.per_hour / 60.0 * scale * demand * (1.0 + drift).max(0.0);
            for _ in 0..rng.poisson(mean) {
                if occupied >= bays {
                    break; // full: turned away
                }
                occupied += 1;
                let stay = rng.log_normal(driver.median_stay_minutes, 0.45).max(5.0) as usize;
                leaving[(minute + stay).min(minutes)] += 1;
            }
        }
    }
    series
}
