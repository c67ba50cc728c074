//! Time limits and stays: when a stay in a bay becomes an overstay.
//!
//! A limit (`maxStay`) counts only *restricted* time: the weekly `hours` in
//! the lot's time zone (all the time when a zone gives none). A stay is due
//! (an overstay) once its restricted time reaches the limit plus the grace
//! period; grace is restricted time too, so nothing falls due outside the
//! hours. Times are milliseconds since the Unix epoch, as stored.
//!
//! Local times are turned into instants with the bundled tz database
//! (`jiff`): a local time that does not exist (the spring-forward gap) is
//! read as the time after the gap, an ambiguous one (the autumn fold) as the
//! earlier of the two, so a window's real length follows the clocks (a
//! 01:00-04:00 window lasts 2 hours on the spring-forward night).

use jiff::Timestamp;
use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{DomainError, excerpt, render_json};

/// Longest limit accepted (`P30D`).
pub const MAX_STAY_SECONDS: i64 = 30 * 86_400;
/// Longest grace period accepted (one day).
pub const MAX_GRACE_SECONDS: i64 = 86_400;
/// A stay that needs more local days than this to reach its limit is never
/// due (hours so sparse that the limit cannot be reached within a year).
pub const MAX_DUE_SEARCH_DAYS: i32 = 400;

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

// ------------------------------------------------------------ durations

/// Parses an ISO 8601 duration of weeks, days, hours, minutes and seconds
/// (`PT2H`, `PT15M`, `P1DT12H`, `P1W`), whole numbers only, into seconds:
/// more than zero, at most [`MAX_STAY_SECONDS`]. Years and months are
/// refused (their length varies); a day is 24 hours of restricted time.
pub fn parse_iso_duration(text: &str) -> Result<i64, DomainError> {
    let bad = |problem: &str| DomainError::InvalidStayRule {
        what: "duration",
        value: excerpt(text),
        problem: format!("{problem}; expected an ISO 8601 duration such as \"PT2H\" or \"PT15M\""),
    };
    let Some(rest) = text.strip_prefix('P') else { return Err(bad("does not start with P")) };
    if rest.is_empty() {
        return Err(bad("has no parts"));
    }
    let mut seconds: i64 = 0;
    let mut in_time = false;
    let mut number = String::new();
    let mut last_unit = 0usize;
    let mut parts = 0;
    for c in rest.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        if c == 'T' {
            if in_time || !number.is_empty() {
                return Err(bad("has a misplaced T"));
            }
            in_time = true;
            continue;
        }
        // Units in their order: W D (date part), H M S (time part).
        let (order, unit_seconds) = match (in_time, c) {
            (false, 'W') => (1, 7 * 86_400),
            (false, 'D') => (2, 86_400),
            (true, 'H') => (3, 3_600),
            (true, 'M') => (4, 60),
            (true, 'S') => (5, 1),
            (false, 'Y' | 'M') => return Err(bad("uses years or months, whose length varies")),
            _ => return Err(bad(&format!("has an unexpected {c:?}"))),
        };
        if number.is_empty() {
            return Err(bad(&format!("has no number before {c:?}")));
        }
        if order <= last_unit {
            return Err(bad("has its parts out of order"));
        }
        last_unit = order;
        parts += 1;
        let n: i64 = number.parse().map_err(|_| bad("has a number too large"))?;
        number.clear();
        seconds = n
            .checked_mul(unit_seconds)
            .and_then(|s| seconds.checked_add(s))
            .ok_or_else(|| bad("is too long"))?;
    }
    if !number.is_empty() {
        return Err(bad("ends with a number without a unit"));
    }
    if in_time && last_unit < 3 {
        return Err(bad("has a T without hours, minutes or seconds"));
    }
    if parts == 0 {
        return Err(bad("has no parts"));
    }
    if seconds == 0 {
        return Err(bad("is zero"));
    }
    if seconds > MAX_STAY_SECONDS {
        return Err(bad(&format!("is longer than {}", format_iso_duration(MAX_STAY_SECONDS))));
    }
    Ok(seconds)
}

/// The canonical ISO 8601 form of a whole number of seconds (`PT2H`, `P1DT30M`).
pub fn format_iso_duration(seconds: i64) -> String {
    let seconds = seconds.max(0);
    let (days, rest) = (seconds / 86_400, seconds % 86_400);
    let (hours, minutes, secs) = (rest / 3_600, rest % 3_600 / 60, rest % 60);
    let mut out = String::from("P");
    if days > 0 {
        out.push_str(&format!("{days}D"));
    }
    if rest > 0 || days == 0 {
        out.push('T');
        if hours > 0 {
            out.push_str(&format!("{hours}H"));
        }
        if minutes > 0 {
            out.push_str(&format!("{minutes}M"));
        }
        if secs > 0 || rest == 0 {
            out.push_str(&format!("{secs}S"));
        }
    }
    out
}

// ------------------------------------------------------------ time zones

/// A time zone by its IANA name, from the bundled database.
pub fn time_zone(name: &str) -> Result<TimeZone, DomainError> {
    if name.is_empty() || name.len() > 64 {
        return Err(DomainError::InvalidStayRule {
            what: "time zone",
            value: excerpt(name),
            problem: "is not an IANA time zone name such as \"Europe/Berlin\"".into(),
        });
    }
    TimeZone::get(name).map_err(|_| DomainError::InvalidStayRule {
        what: "time zone",
        value: excerpt(name),
        problem: "is not an IANA time zone name such as \"Europe/Berlin\"".into(),
    })
}

// ------------------------------------------------------------ hours

/// One weekly window of restricted time, as provisioned:
/// `{"days": ["Mon", "Tue"], "from": "08:00", "to": "18:00"}`. A `to` at or
/// before `from` ends on the next day (`"22:00"` to `"06:00"`); `"24:00"`
/// is the end of the day; `from` equal to `to` is refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HoursSpec {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
}

/// A parsed [`HoursSpec`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Which days it starts on, Monday first.
    pub days: [bool; 7],
    /// Minutes after local midnight, 0..1440.
    pub from: u16,
    /// Minutes after local midnight, 0..=1440; at or before `from`: the next day.
    pub to: u16,
}

impl Window {
    fn parse(spec: &HoursSpec) -> Result<Self, DomainError> {
        let mut days = [false; 7];
        if spec.days.is_empty() {
            return Err(hours_problem(&spec.days.join(","), "days: none given; expected some of Mon..Sun"));
        }
        for day in &spec.days {
            let Some(i) = DAY_NAMES.iter().position(|d| d == day) else {
                return Err(hours_problem(
                    day,
                    "days: not a day; expected Mon, Tue, Wed, Thu, Fri, Sat or Sun",
                ));
            };
            if days[i] {
                return Err(hours_problem(day, "days: given twice"));
            }
            days[i] = true;
        }
        let from = clock_minutes(&spec.from, false)?;
        let to = clock_minutes(&spec.to, true)?;
        if from == to {
            return Err(hours_problem(
                &spec.to,
                "to: equals from; use \"00:00\" to \"24:00\" for a whole day",
            ));
        }
        Ok(Window { days, from, to })
    }
}

fn hours_problem(value: &str, problem: &str) -> DomainError {
    DomainError::InvalidStayRule { what: "hours", value: excerpt(value), problem: problem.to_owned() }
}

/// `HH:MM`, 00:00 to 23:59 (and 24:00 where `end_of_day` is allowed).
pub(crate) fn clock_minutes(text: &str, end_of_day: bool) -> Result<u16, DomainError> {
    let bad = || hours_problem(text, "time: expected HH:MM from 00:00 to 23:59 (24:00 for `to`)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    match (h, m) {
        (24, 0) if end_of_day => Ok(1440),
        (0..=23, 0..=59) => Ok(h * 60 + m),
        _ => Err(bad()),
    }
}

/// Parses and checks a zone's `hours` (a non-empty array of [`HoursSpec`]).
pub fn parse_hours(value: &Value) -> Result<Vec<HoursSpec>, DomainError> {
    let Value::Array(items) = value else {
        return Err(hours_problem(&render_json(value), "expected an array of {\"days\", \"from\", \"to\"}"));
    };
    if items.is_empty() {
        return Err(hours_problem("[]", "no windows; leave `hours` out for a limit that always applies"));
    }
    if items.len() > 50 {
        return Err(hours_problem(&items.len().to_string(), "windows given; at most 50"));
    }
    let mut specs = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let spec: HoursSpec = serde_json::from_value(item.clone()).map_err(|e| {
            hours_problem(&render_json(item), &format!("[{i}]: {e}; expected {{\"days\", \"from\", \"to\"}}"))
        })?;
        Window::parse(&spec).map_err(|e| e.at(format!("[{i}]")))?;
        specs.push(spec);
    }
    Ok(specs)
}

// ------------------------------------------------------------ restricted time

/// When a limit applies: weekly windows in a time zone, or always.
#[derive(Clone, Debug)]
pub struct Restriction {
    windows: Option<Vec<Window>>,
    tz: TimeZone,
}

impl Default for Restriction {
    fn default() -> Self {
        Restriction::always()
    }
}

impl Restriction {
    /// The limit applies at all times.
    pub fn always() -> Self {
        Restriction { windows: None, tz: TimeZone::UTC }
    }

    /// The limit applies within `hours` (all the time when `None`), in `tz`.
    pub fn new(hours: Option<&[HoursSpec]>, tz: TimeZone) -> Result<Self, DomainError> {
        let windows =
            hours.map(|h| h.iter().map(Window::parse).collect::<Result<Vec<_>, _>>()).transpose()?;
        Ok(Restriction { windows, tz })
    }

    /// From stored columns: the hours as JSON text, the time zone's name.
    pub fn from_stored(hours_json: Option<&str>, tz: &str) -> Result<Self, DomainError> {
        let hours: Option<Vec<HoursSpec>> = hours_json
            .map(serde_json::from_str)
            .transpose()
            .map_err(|e| hours_problem(hours_json.unwrap_or_default(), &e.to_string()))?;
        Restriction::new(hours.as_deref(), time_zone(tz)?)
    }

    /// The restricted intervals `[start, end)` in time order, merged, that end
    /// after `from_ms`, for [`MAX_DUE_SEARCH_DAYS`] local days. Only with windows.
    fn intervals(&self, windows: &[Window], from_ms: i64) -> impl Iterator<Item = (i64, i64)> + '_ {
        let instant = Timestamp::from_millisecond(from_ms).unwrap_or(Timestamp::UNIX_EPOCH);
        // The day before: a window that began yesterday may run into today.
        let first = self.tz.to_datetime(instant).date().yesterday().unwrap_or(Date::MIN);
        let windows = windows.to_vec();
        let mut day = 0;
        let mut pending: Vec<(i64, i64)> = Vec::new();
        let mut current: Option<(i64, i64)> = None;
        let mut done = false;
        std::iter::from_fn(move || {
            loop {
                if let Some(next) = pending.pop() {
                    match current {
                        Some((s, e)) if next.0 <= e => current = Some((s, e.max(next.1))),
                        Some(merged) => {
                            current = Some(next);
                            if merged.1 > from_ms {
                                return Some(merged);
                            }
                        }
                        None => current = Some(next),
                    }
                    continue;
                }
                if done {
                    return current.take().filter(|&(_, e)| e > from_ms);
                }
                if day > MAX_DUE_SEARCH_DAYS {
                    done = true;
                    continue;
                }
                let Ok(date) = first.checked_add(jiff::Span::new().days(day)) else {
                    done = true;
                    continue;
                };
                day += 1;
                let weekday = date.weekday().to_monday_zero_offset() as usize;
                for w in windows.iter().filter(|w| w.days[weekday]) {
                    let end_date = if w.to <= w.from { date.tomorrow().unwrap_or(date) } else { date };
                    let (Some(s), Some(e)) = (self.local_ms(date, w.from), self.local_ms(end_date, w.to))
                    else {
                        continue;
                    };
                    if e > s {
                        pending.push((s, e));
                    }
                }
                // Popped from the end: latest first in, earliest out.
                pending.sort_by(|a, b| b.cmp(a));
            }
        })
    }

    /// A local date and minute of the day as an instant (see the module doc
    /// for gaps and folds); 1440 is the next midnight.
    fn local_ms(&self, date: Date, minutes: u16) -> Option<i64> {
        let (date, minutes) = if minutes >= 1440 { (date.tomorrow().ok()?, 0) } else { (date, minutes) };
        let time = Time::new((minutes / 60) as i8, (minutes % 60) as i8, 0, 0).ok()?;
        let zoned = self.tz.to_ambiguous_zoned(date.to_datetime(time)).compatible().ok()?;
        Some(zoned.timestamp().as_millisecond())
    }

    /// Restricted milliseconds in `[from_ms, to_ms)`.
    pub fn restricted_ms(&self, from_ms: i64, to_ms: i64) -> i64 {
        if to_ms <= from_ms {
            return 0;
        }
        let Some(windows) = &self.windows else { return to_ms - from_ms };
        let mut total = 0;
        for (s, e) in self.intervals(windows, from_ms) {
            if s >= to_ms {
                break;
            }
            total += e.min(to_ms) - s.max(from_ms);
        }
        total
    }

    /// The first instant at or after `start_ms` by which `need_ms` of
    /// restricted time has passed since `start_ms`; `None` when not within
    /// [`MAX_DUE_SEARCH_DAYS`].
    pub fn due_after(&self, start_ms: i64, need_ms: i64) -> Option<i64> {
        if need_ms <= 0 {
            return Some(start_ms);
        }
        let Some(windows) = &self.windows else { return start_ms.checked_add(need_ms) };
        let mut need = need_ms;
        for (s, e) in self.intervals(windows, start_ms) {
            let s = s.max(start_ms);
            if e - s >= need {
                return Some(s + need);
            }
            need -= e - s;
        }
        None
    }
}

// ------------------------------------------------------------ stays

/// The rule a bay's stays are judged by: its limit (the bay's own `maxStay`,
/// else its zone's), its zone's grace and hours, its lot's time zone.
#[derive(Clone, Debug, Default)]
pub struct StayPolicy {
    pub limit_ms: Option<i64>,
    pub grace_ms: i64,
    pub restriction: Restriction,
}

/// A bay's current stay: from a turn to `occupied` until it turns `free`
/// (or `closed`). `unknown` suspends it: the time the bay is unknown is not
/// counted, and the stay goes on if the bay comes back occupied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stay {
    /// When the bay turned occupied (observation time).
    pub started_at: i64,
    /// Start of the segment being counted; `None` while suspended.
    pub resumed_at: Option<i64>,
    /// Restricted time counted before `resumed_at`.
    pub counted_ms: i64,
    /// The limit it is judged by, when it has one.
    pub limit_ms: Option<i64>,
    /// When it becomes an overstay: `None` without a limit, while suspended,
    /// or when not within reach.
    pub due_at: Option<i64>,
    /// Set once the overstay was raised: the due time it was raised for.
    pub overstay_at: Option<i64>,
}

impl Stay {
    /// A stay starting at `at`.
    pub fn start(policy: &StayPolicy, at: i64) -> Stay {
        let mut stay = Stay { started_at: at, resumed_at: Some(at), ..Stay::default() };
        stay.rejudge(policy);
        stay
    }

    /// Stops counting at `last_seen` (the bay's last observation before it
    /// went unknown; never before the segment began).
    pub fn suspend(&mut self, policy: &StayPolicy, last_seen: i64) {
        if let Some(resumed) = self.resumed_at.take() {
            self.counted_ms += policy.restriction.restricted_ms(resumed, last_seen.max(resumed));
        }
        self.due_at = None;
    }

    /// Counts again from `at` (the bay was seen occupied again).
    pub fn resume(&mut self, policy: &StayPolicy, at: i64) {
        if self.resumed_at.is_none() {
            self.resumed_at = Some(at);
        }
        self.rejudge(policy);
    }

    /// Takes the policy's limit and recomputes the due time (after a resume
    /// or a change of the rules).
    pub fn rejudge(&mut self, policy: &StayPolicy) {
        self.limit_ms = policy.limit_ms;
        self.due_at = match (self.resumed_at, policy.limit_ms) {
            (Some(resumed), Some(limit)) => {
                policy.restriction.due_after(resumed, limit + policy.grace_ms - self.counted_ms)
            }
            _ => None,
        };
    }

    /// Restricted time of the stay up to `now`.
    pub fn restricted_at(&self, policy: &StayPolicy, now: i64) -> i64 {
        self.counted_ms + self.resumed_at.map_or(0, |r| policy.restriction.restricted_ms(r, now.max(r)))
    }

    /// Restricted time past the limit at `now` (grace included), when it has a limit.
    pub fn over_by_ms(&self, policy: &StayPolicy, now: i64) -> Option<i64> {
        self.limit_ms.map(|limit| (self.restricted_at(policy, now) - limit).max(0))
    }

    /// Whether the stay is an overstay not yet raised at `at`.
    pub fn falls_due(&self, at: i64) -> bool {
        self.overstay_at.is_none() && self.due_at.is_some_and(|due| due <= at)
    }
}

/// Parses a `timeZone`, `maxStay` (either from JSON), for the lot spec parser.
pub(crate) fn check_duration_field(value: &Value) -> Result<(String, i64), DomainError> {
    match value {
        Value::String(text) => parse_iso_duration(text).map(|s| (format_iso_duration(s), s)),
        other => Err(DomainError::InvalidStayRule {
            what: "duration",
            value: render_json(other),
            problem: "is not a string; expected an ISO 8601 duration such as \"PT2H\"".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const M: i64 = 60_000;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn hours(json: &str) -> Vec<HoursSpec> {
        parse_hours(&serde_json::from_str(json).unwrap()).unwrap()
    }

    fn weekdays_8_18(tz: &str) -> Restriction {
        let h = hours(r#"[{"days": ["Mon","Tue","Wed","Thu","Fri","Sat"], "from": "08:00", "to": "18:00"}]"#);
        Restriction::new(Some(&h), time_zone(tz).unwrap()).unwrap()
    }

    #[test]
    fn durations() {
        for (text, secs) in [
            ("PT2H", 7200),
            ("PT15M", 900),
            ("PT90M", 5400),
            ("PT30S", 30),
            ("P1D", 86_400),
            ("P1DT12H", 129_600),
            ("P1W", 604_800),
            ("PT1H30M15S", 5415),
        ] {
            assert_eq!(parse_iso_duration(text).unwrap(), secs, "{text}");
        }
        for bad in [
            "", "P", "PT", "2H", "PT2", "P2H", "PT2D", "P1M", "P1Y", "PT0S", "PT1.5H", "PT2H2H", "PT30M1H",
            "pt2h", "P31D", "PT-1H", "P1DT", "PTH",
        ] {
            let err = parse_iso_duration(bad).unwrap_err().to_string();
            assert!(err.starts_with("duration "), "{bad}: {err}");
        }
        for secs in [1, 59, 60, 900, 5400, 7200, 86_400, 90_061, MAX_STAY_SECONDS] {
            assert_eq!(parse_iso_duration(&format_iso_duration(secs)).unwrap(), secs);
        }
        assert_eq!(format_iso_duration(7200), "PT2H");
        assert_eq!(format_iso_duration(5400), "PT1H30M");
        assert_eq!(format_iso_duration(86_400), "P1D");
        assert_eq!(format_iso_duration(90_000), "P1DT1H");
    }

    #[test]
    fn hours_validation() {
        let bad = [
            (r#"{}"#, "expected an array"),
            (r#"[]"#, "no windows"),
            (r#"[{"days": [], "from": "08:00", "to": "18:00"}]"#, "none given"),
            (r#"[{"days": ["Monday"], "from": "08:00", "to": "18:00"}]"#, "not a day"),
            (r#"[{"days": ["Mon", "Mon"], "from": "08:00", "to": "18:00"}]"#, "given twice"),
            (r#"[{"days": ["Mon"], "from": "8:00", "to": "18:00"}]"#, "expected HH:MM"),
            (r#"[{"days": ["Mon"], "from": "24:00", "to": "18:00"}]"#, "expected HH:MM"),
            (r#"[{"days": ["Mon"], "from": "08:60", "to": "18:00"}]"#, "expected HH:MM"),
            (r#"[{"days": ["Mon"], "from": "08:00", "to": "08:00"}]"#, "equals from"),
            (r#"[{"days": ["Mon"], "from": "08:00"}]"#, "missing field `to`"),
            (r#"[{"days": ["Mon"], "from": "08:00", "to": "18:00", "x": 1}]"#, ""),
        ];
        for (json, problem) in bad.iter().take(10) {
            let err = parse_hours(&serde_json::from_str(json).unwrap()).unwrap_err().to_string();
            assert!(err.contains(problem), "{json}: {err}");
        }
        assert!(
            parse_hours(
                &serde_json::from_str(r#"[{"days": ["Sun"], "from": "22:00", "to": "06:00"}]"#).unwrap()
            )
            .is_ok()
        );
        assert!(
            parse_hours(
                &serde_json::from_str(r#"[{"days": ["Sun"], "from": "00:00", "to": "24:00"}]"#).unwrap()
            )
            .is_ok()
        );
    }

    #[test]
    fn time_zones() {
        assert!(time_zone("Europe/Berlin").is_ok());
        assert!(time_zone("UTC").is_ok());
        assert!(time_zone("America/New_York").is_ok());
        for bad in ["", "Mars/Olympus", "Europe/Berlinn", "../etc/passwd"] {
            assert!(time_zone(bad).unwrap_err().to_string().starts_with("time zone "), "{bad}");
        }
    }

    #[test]
    fn without_hours_due_is_start_plus_limit_plus_grace() {
        let policy =
            StayPolicy { limit_ms: Some(2 * H), grace_ms: 5 * M, restriction: Restriction::always() };
        let stay = Stay::start(&policy, 1_000);
        assert_eq!(stay.due_at, Some(1_000 + 2 * H + 5 * M));
        assert_eq!(stay.over_by_ms(&policy, 1_000 + 3 * H), Some(H));
    }

    #[test]
    fn a_stay_before_the_window_counts_only_restricted_time() {
        // Wednesday 2026-11-25, Berlin (UTC+1): parked 06:00 local, window opens 08:00.
        let r = weekdays_8_18("Europe/Berlin");
        let start = ms("2026-11-25T05:00:00Z");
        assert_eq!(r.restricted_ms(start, ms("2026-11-25T08:00:00Z")), H); // 09:00 local
        assert_eq!(r.due_after(start, 2 * H), Some(ms("2026-11-25T09:00:00Z"))); // 10:00 local
    }

    #[test]
    fn a_stay_across_the_evening_and_sunday_resumes_on_monday() {
        // Saturday 2026-11-28 17:00 Berlin, 2 h limit: 1 h on Saturday, none on Sunday, due Monday 09:00.
        let r = weekdays_8_18("Europe/Berlin");
        assert_eq!(r.due_after(ms("2026-11-28T16:00:00Z"), 2 * H), Some(ms("2026-11-30T08:00:00Z")));
    }

    #[test]
    fn overnight_windows() {
        let h = hours(r#"[{"days": ["Fri"], "from": "22:00", "to": "02:00"}]"#);
        let r = Restriction::new(Some(&h), TimeZone::UTC).unwrap();
        // Friday 2026-11-27 21:00 UTC, 3 h: 22:00-01:00 Saturday.
        assert_eq!(r.due_after(ms("2026-11-27T21:00:00Z"), 3 * H), Some(ms("2026-11-28T01:00:00Z")));
        // Started inside the window just after midnight (the window began on Friday).
        assert_eq!(r.restricted_ms(ms("2026-11-28T00:30:00Z"), ms("2026-11-28T05:00:00Z")), 90 * M);
    }

    #[test]
    fn overlapping_windows_are_counted_once() {
        let h = hours(
            r#"[{"days": ["Mon"], "from": "08:00", "to": "12:00"}, {"days": ["Mon"], "from": "10:00", "to": "14:00"}]"#,
        );
        let r = Restriction::new(Some(&h), TimeZone::UTC).unwrap();
        assert_eq!(r.restricted_ms(ms("2026-11-30T00:00:00Z"), ms("2026-12-01T00:00:00Z")), 6 * H);
    }

    #[test]
    fn dst_changes_follow_the_clocks() {
        // Berlin springs forward on 2026-03-29 (Sunday) 02:00 -> 03:00 and falls back on 2026-10-25 03:00 -> 02:00.
        let all_day = hours(r#"[{"days": ["Sun"], "from": "01:00", "to": "04:00"}]"#);
        let r = Restriction::new(Some(&all_day), time_zone("Europe/Berlin").unwrap()).unwrap();
        let spring = r.restricted_ms(ms("2026-03-28T12:00:00Z"), ms("2026-03-29T12:00:00Z"));
        assert_eq!(spring, 2 * H);
        let autumn = r.restricted_ms(ms("2026-10-24T12:00:00Z"), ms("2026-10-25T12:00:00Z"));
        assert_eq!(autumn, 4 * H);
        // The window 08:00-18:00 local is at 07:00Z before, 06:00Z after the spring change.
        let r = weekdays_8_18("Europe/Berlin");
        assert_eq!(r.due_after(ms("2026-03-27T06:00:00Z"), H), Some(ms("2026-03-27T08:00:00Z")));
        assert_eq!(r.due_after(ms("2026-03-30T05:00:00Z"), H), Some(ms("2026-03-30T07:00:00Z")));
    }

    #[test]
    fn suspension_does_not_count_unknown_time() {
        let policy = StayPolicy { limit_ms: Some(2 * H), grace_ms: 0, restriction: Restriction::always() };
        let mut stay = Stay::start(&policy, 0);
        stay.suspend(&policy, H); // last seen 1 h in
        assert_eq!(stay.due_at, None);
        assert_eq!(stay.counted_ms, H);
        stay.resume(&policy, 5 * H);
        assert_eq!(stay.due_at, Some(6 * H));
        assert_eq!(stay.restricted_at(&policy, 6 * H), 2 * H);
        assert!(stay.falls_due(6 * H) && !stay.falls_due(6 * H - 1));
    }

    #[test]
    fn sparse_hours_are_never_due() {
        let h = hours(r#"[{"days": ["Mon"], "from": "08:00", "to": "08:01"}]"#);
        let r = Restriction::new(Some(&h), TimeZone::UTC).unwrap();
        assert_eq!(r.due_after(0, 30 * 86_400 * 1000), None);
    }
}
