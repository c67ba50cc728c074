//! Forecast horizons as the API names them: `15m`, `60m`, `2h`.

use std::fmt;

/// The furthest a forecast looks ahead, in minutes (a day).
pub const MAX_HORIZON_MINUTES: u32 = 24 * 60;

/// At most this many horizons per request.
pub const MAX_HORIZONS: usize = 12;

/// The horizons asked for when a request names none.
pub const DEFAULT_HORIZONS: [Horizon; 3] = [Horizon(15), Horizon(30), Horizon(60)];

/// How far ahead a forecast looks, in whole minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Horizon(u32);

impl Horizon {
    /// Sixty minutes.
    pub const HOUR: Horizon = Horizon(60);

    /// A horizon of `minutes` (1 to a day).
    pub fn minutes(minutes: u32) -> Option<Horizon> {
        (1..=MAX_HORIZON_MINUTES).contains(&minutes).then_some(Horizon(minutes))
    }

    pub fn as_minutes(self) -> u32 {
        self.0
    }

    /// Reads `15m` or `2h`.
    pub fn parse(text: &str) -> Result<Horizon, String> {
        let problem = || {
            format!(
                "horizon {text:?}: expected minutes or hours such as \"15m\", \"60m\" or \"2h\", \
                 from 1m to {}h",
                MAX_HORIZON_MINUTES / 60
            )
        };
        let (number, per) = match text.as_bytes().last() {
            Some(b'm') => (&text[..text.len() - 1], 1),
            Some(b'h') => (&text[..text.len() - 1], 60),
            _ => return Err(problem()),
        };
        if number.is_empty() || number.len() > 5 || !number.bytes().all(|b| b.is_ascii_digit()) {
            return Err(problem());
        }
        let value: u32 = number.parse().map_err(|_| problem())?;
        Horizon::minutes(value * per).ok_or_else(problem)
    }

    /// Reads a comma-separated list (`15m,30m,60m`), in the order given,
    /// each once.
    pub fn parse_list(text: &str) -> Result<Vec<Horizon>, String> {
        let mut horizons: Vec<Horizon> = Vec::new();
        for part in text.split(',') {
            let horizon = Horizon::parse(part.trim())?;
            if !horizons.contains(&horizon) {
                horizons.push(horizon);
            }
            if horizons.len() > MAX_HORIZONS {
                return Err(format!("horizon: at most {MAX_HORIZONS} horizons per request"));
            }
        }
        Ok(horizons)
    }
}

impl fmt::Display for Horizon {
    /// Minutes as given (`60m`), so an answer names its horizon as asked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}m", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_and_hours() {
        assert_eq!(Horizon::parse("15m"), Ok(Horizon(15)));
        assert_eq!(Horizon::parse("2h"), Ok(Horizon(120)));
        assert_eq!(Horizon::parse("24h"), Ok(Horizon(1440)));
        assert_eq!(Horizon(60).to_string(), "60m");
    }

    #[test]
    fn bad_horizons_are_refused_with_a_reason() {
        for bad in ["", "m", "15", "0m", "-5m", "1.5h", "25h", "15 m", "99999999m", "15s", "１m"] {
            let e = Horizon::parse(bad).unwrap_err();
            assert!(e.contains("expected minutes or hours"), "{bad}: {e}");
        }
    }

    #[test]
    fn lists_keep_their_order_and_drop_repeats() {
        assert_eq!(Horizon::parse_list("60m, 15m,1h").unwrap(), vec![Horizon(60), Horizon(15)]);
        assert!(Horizon::parse_list("15m,,30m").is_err());
        let many = (1..=13).map(|m| format!("{m}m")).collect::<Vec<_>>().join(",");
        assert!(Horizon::parse_list(&many).unwrap_err().contains("at most 12"));
    }
}
