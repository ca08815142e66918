//! Recording and upload schedules, the KVS Edge Agent's model
//! (`RecorderConfig.ScheduleConfig`, `UploaderConfig.ScheduleConfig`): either
//! always, or windows that open each time a Quartz cron expression fires
//! and stay open for a fixed duration.
//!
//! - The expression is Quartz's: six or seven fields, `seconds minutes hours
//!   day-of-month month day-of-week [year]`, with `*`, `,`, `-`, `/` (also
//!   `0/10`), `?`, `L`, `W` and `#`; days of the week run 1-7 from Sunday
//!   (or SUN-SAT), as in Quartz. A five-field crontab line is refused rather
//!   than guessed at: its day-of-week numbers mean other days (1 is Monday
//!   there) and it has no seconds.
//! - Day-of-month and day-of-week may not both be restricted (Quartz refuses
//!   that; crontab would OR them). Unlike Quartz, `*` is accepted in both.
//! - Times are UTC: `0 0 8 ? * MON-FRI` opens at 08:00 UTC. There is no
//!   time zone setting (and so no daylight saving shift to think about).
//! - Each firing opens a window `[fire, fire + duration)`. Windows that
//!   overlap or touch are one window; a duration at least as long as the gap
//!   between firings keeps the window open for good.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds};
use croner::Cron;

/// Longest window: a week (the KVS Edge Agent allows 60 to 3600 s; shorter
/// windows help tests, longer ones weekly schedules).
pub const MAX_DURATION_SECONDS: u32 = 7 * 24 * 3600;

/// How far [`Schedule::next_change`] looks: windows that keep joining up
/// for longer than this many firings, or a year, count as open for good.
const MAX_STEPS: usize = 1024;
const HORIZON_SECONDS: i64 = 366 * 24 * 3600;

/// When to record, or upload.
#[derive(Clone, Debug, Default)]
pub enum Schedule {
    /// All the time (no schedule configured).
    #[default]
    Always,
    /// In the windows of a cron expression (boxed: a parsed expression is
    /// large, and most schedules are `Always`).
    Windows(Box<Windows>),
}

/// Windows opened by a cron expression.
#[derive(Clone, Debug)]
pub struct Windows {
    expression: String,
    duration_seconds: u32,
    cron: Cron,
}

/// Why a schedule was refused, for the config check: [`ScheduleError::field`]
/// names the key, [`ScheduleError::value`] quotes it, and `Display` says what
/// would have been accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// The cron expression.
    #[error("{reason}; expected a Quartz cron expression \"seconds minutes hours day-of-month month day-of-week [year]\", e.g. \"0 0/10 * * * ?\" (every 10 minutes)")]
    Cron {
        /// The expression as written.
        expression: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The duration.
    #[error("expected 1 to {MAX_DURATION_SECONDS} seconds")]
    Duration {
        /// The duration as written.
        seconds: u32,
    },
}

impl ScheduleError {
    /// The key at fault: `cron` or `duration_seconds`.
    pub fn field(&self) -> &'static str {
        match self {
            ScheduleError::Cron { .. } => "cron",
            ScheduleError::Duration { .. } => "duration_seconds",
        }
    }

    /// The value as written, quoted like the config check quotes values.
    pub fn value(&self) -> String {
        match self {
            ScheduleError::Cron { expression, .. } => format!("{expression:?}"),
            ScheduleError::Duration { seconds } => seconds.to_string(),
        }
    }
}

const FIELD_NAMES: [&str; 7] = [
    "seconds",
    "minutes",
    "hours",
    "day-of-month",
    "month",
    "day-of-week",
    "year",
];

fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Required)
        // Quartz: 1 = Sunday … 7 = Saturday; `0/10` = from 0 every 10.
        .alternative_weekdays(true)
        .sloppy_ranges(true)
        .build()
}

/// Parse a Quartz expression, naming the field at fault when it fails.
fn parse_quartz(expression: &str) -> Result<Cron, String> {
    let fields: Vec<&str> = expression.split_whitespace().collect();
    if fields.len() == 5 {
        return Err("5 fields: a crontab line, not Quartz (add a seconds field first, and note that Quartz counts days of the week from 1 = Sunday)".into());
    }
    if !(6..=7).contains(&fields.len()) {
        return Err(format!("{} fields", fields.len()));
    }
    let restricted = |f: &str| f != "*" && f != "?";
    if restricted(fields[3]) && restricted(fields[5]) {
        return Err(format!(
            "both day-of-month ({:?}) and day-of-week ({:?}) are given; write one of them as ?",
            fields[3], fields[5]
        ));
    }
    let parser = parser();
    match parser.parse(expression) {
        Ok(cron) => Ok(cron),
        Err(whole) => {
            // Find the field: each alone in an otherwise permissive pattern.
            for (i, f) in fields.iter().enumerate() {
                let mut probe = ["0", "0", "0", "*", "*", "?", "*"];
                probe[i] = f;
                if i == 5 {
                    probe[3] = "?";
                }
                if let Err(e) = parser.parse(&probe[..fields.len()].join(" ")) {
                    return Err(format!("{} field {f:?}: {e}", FIELD_NAMES[i]));
                }
            }
            Err(whole.to_string())
        }
    }
}

fn to_seconds(t: SystemTime) -> i64 {
    // Whole seconds, rounded down (firings are on whole seconds).
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs() as i64,
        Err(e) => {
            let d = e.duration();
            -(d.as_secs() as i64) - i64::from(d.subsec_nanos() > 0)
        }
    }
}

fn to_time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

impl Windows {
    /// The latest firing at or before `t` (seconds since the epoch).
    fn fired_at_or_before(&self, t: i64) -> Option<i64> {
        let at = DateTime::<Utc>::from_timestamp(t, 0)?;
        self.cron
            .find_previous_occurrence(&at, true)
            .ok()
            .map(|d| d.timestamp())
    }

    /// The first firing after `t`.
    fn fires_after(&self, t: i64) -> Option<i64> {
        let at = DateTime::<Utc>::from_timestamp(t, 0)?;
        self.cron.find_next_occurrence(&at, false).ok().map(|d| d.timestamp())
    }

    /// The end of the window open at `t`, if one is.
    fn open_until(&self, t: i64) -> Option<i64> {
        let fired = self.fired_at_or_before(t)?;
        let end = fired + i64::from(self.duration_seconds);
        (t < end).then_some(end)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// How long each window stays open, in seconds.
    pub fn duration_seconds(&self) -> u32 {
        self.duration_seconds
    }
}

impl Schedule {
    /// Windows of `duration_seconds` opened each time `expression` fires.
    pub fn cron(expression: &str, duration_seconds: u32) -> Result<Schedule, ScheduleError> {
        let cron = parse_quartz(expression.trim()).map_err(|reason| ScheduleError::Cron {
            expression: expression.to_owned(),
            reason,
        })?;
        if !(1..=MAX_DURATION_SECONDS).contains(&duration_seconds) {
            return Err(ScheduleError::Duration {
                seconds: duration_seconds,
            });
        }
        let w = Windows {
            expression: expression.to_owned(),
            duration_seconds,
            cron,
        };
        let now = to_seconds(SystemTime::now());
        if w.fires_after(now).is_none() && w.fired_at_or_before(now).is_none() {
            return Err(ScheduleError::Cron {
                expression: expression.to_owned(),
                reason: "it never fires".into(),
            });
        }
        Ok(Schedule::Windows(Box::new(w)))
    }

    /// Whether `now` is inside a window (always, for [`Schedule::Always`]).
    pub fn is_open(&self, now: SystemTime) -> bool {
        match self {
            Schedule::Always => true,
            Schedule::Windows(w) => w.open_until(to_seconds(now)).is_some(),
        }
    }

    /// The first moment after `now` at which [`Schedule::is_open`] changes:
    /// the end of the window `now` is in (overlapping windows joined), or
    /// the opening of the next one. `None`: no change in sight (always; a
    /// window that stays open, joined with the next ones, for over 1024
    /// firings or a year; an expression that never fires again).
    pub fn next_change(&self, now: SystemTime) -> Option<SystemTime> {
        let Schedule::Windows(w) = self else {
            return None;
        };
        let t = to_seconds(now);
        let Some(mut end) = w.open_until(t) else {
            return w.fires_after(t).map(to_time);
        };
        let mut last = w.fired_at_or_before(t)?;
        for _ in 0..MAX_STEPS {
            if end - t > HORIZON_SECONDS {
                return None;
            }
            // The latest firing while this window is open (at its very end
            // included: windows that touch are one).
            match w.fired_at_or_before(end) {
                Some(fired) if fired > last => {
                    last = fired;
                    end = fired + i64::from(w.duration_seconds);
                }
                _ => return Some(to_time(end)),
            }
        }
        None
    }

    /// The windows, when there are any.
    pub fn windows(&self) -> Option<&Windows> {
        match self {
            Schedule::Always => None,
            Schedule::Windows(w) => Some(w),
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Always => f.write_str("always"),
            Schedule::Windows(w) => write!(f, "{:?} for {} s", w.expression, w.duration_seconds),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 2026-11-02 10:00:00 UTC, a Monday.
    const MONDAY_10H: i64 = 1_793_613_600;

    fn at(seconds: i64) -> SystemTime {
        to_time(seconds)
    }

    fn cron(e: &str, d: u32) -> Schedule {
        Schedule::cron(e, d).unwrap_or_else(|err| panic!("{e}: {err}"))
    }

    #[test]
    fn the_clock_in_these_tests_is_a_monday_at_ten_utc() {
        use chrono::{Datelike, Timelike};
        let t = DateTime::<Utc>::from_timestamp(MONDAY_10H, 0).unwrap();
        assert_eq!(
            (
                t.year(),
                t.month(),
                t.day(),
                t.weekday(),
                t.hour(),
                t.minute(),
                t.second()
            ),
            (2026, 11, 2, chrono::Weekday::Mon, 10, 0, 0)
        );
    }

    #[test]
    fn a_window_opens_when_the_expression_fires_and_closes_after_its_duration() {
        // The KVS Edge Agent's example form: every 10 minutes, for 60 s.
        let s = cron("0 0/10 * * * ?", 60);
        assert!(s.is_open(at(MONDAY_10H)));
        assert!(s.is_open(at(MONDAY_10H + 59)));
        assert!(!s.is_open(at(MONDAY_10H + 60)));
        assert!(!s.is_open(at(MONDAY_10H - 1)));
        assert_eq!(s.next_change(at(MONDAY_10H)), Some(at(MONDAY_10H + 60)));
        assert_eq!(s.next_change(at(MONDAY_10H + 60)), Some(at(MONDAY_10H + 600)));
        // Fractions of a second: open up to, not at, the end.
        let just_before_end = at(MONDAY_10H + 59) + Duration::from_millis(999);
        assert!(s.is_open(just_before_end));
        assert_eq!(s.next_change(just_before_end), Some(at(MONDAY_10H + 60)));
    }

    #[test]
    fn always_is_open_and_never_changes() {
        let s = Schedule::Always;
        assert!(s.is_open(at(0)) && s.is_open(at(MONDAY_10H)));
        assert_eq!(s.next_change(at(MONDAY_10H)), None);
        assert_eq!(s.to_string(), "always");
    }

    #[test]
    fn overlapping_and_touching_windows_are_one() {
        // Every 10 s for 15 s: open for good.
        let s = cron("0/10 * * * * ?", 15);
        assert!(s.is_open(at(MONDAY_10H + 3)));
        assert_eq!(s.next_change(at(MONDAY_10H + 3)), None);
        // Every 10 s for exactly 10 s: windows touch, still open for good.
        let s = cron("0/10 * * * * ?", 10);
        assert_eq!(s.next_change(at(MONDAY_10H + 9)), None);
        // Every 10 minutes from 08:00 to 17:50 for 15 minutes: one window,
        // 08:00 to 18:05.
        let s = cron("0 0/10 8-17 * * ?", 900);
        let eight = MONDAY_10H - 2 * 3600;
        assert!(!s.is_open(at(eight - 1)));
        assert_eq!(s.next_change(at(eight - 1)), Some(at(eight)));
        assert_eq!(s.next_change(at(eight)), Some(at(eight + 10 * 3600 + 300)));
        assert!(s.is_open(at(eight + 10 * 3600 + 299)));
        assert!(!s.is_open(at(eight + 10 * 3600 + 300)));
    }

    #[test]
    fn quartz_days_of_the_week_count_from_sunday_and_names_work() {
        // 2 = Monday in Quartz (Monday in crontab is 1).
        let s = cron("0 0 10 ? * 2", 3600);
        assert!(s.is_open(at(MONDAY_10H + 1800)));
        let s = cron("0 0 10 ? * MON-FRI", 3600);
        assert!(s.is_open(at(MONDAY_10H + 1800)));
        let s = cron("0 0 10 ? * SUN", 3600);
        assert!(!s.is_open(at(MONDAY_10H + 1800)));
        assert_eq!(s.next_change(at(MONDAY_10H)), Some(at(MONDAY_10H + 6 * 86_400)));
        // L, # and a year field.
        assert!(Schedule::cron("0 15 10 ? * 6L", 60).is_ok());
        assert!(Schedule::cron("0 15 10 ? * 6#3", 60).is_ok());
        assert!(Schedule::cron("0 15 10 L * ?", 60).is_ok());
        assert!(Schedule::cron("0 15 10 15W * ?", 60).is_ok());
        assert!(Schedule::cron("0 0 12 * * ? 2099", 60).is_ok());
    }

    #[test]
    fn an_expression_that_fired_for_the_last_time_stays_closed() {
        let s = cron("0 0 12 * * ? 2020", 60);
        assert!(!s.is_open(at(MONDAY_10H)));
        assert_eq!(s.next_change(at(MONDAY_10H)), None);
    }

    #[test]
    fn bad_expressions_and_durations_say_which_field_and_why() {
        let e = Schedule::cron("0 61 * * * ?", 60).unwrap_err();
        assert_eq!((e.field(), e.value().as_str()), ("cron", "\"0 61 * * * ?\""));
        assert!(e.to_string().starts_with("minutes field \"61\""), "{e}");
        assert!(e.to_string().contains("0 0/10 * * * ?"), "{e}");
        let e = Schedule::cron("*/5 * * * *", 60).unwrap_err().to_string();
        assert!(e.contains("crontab"), "{e}");
        let e = Schedule::cron("0 0 12 1 * MON", 60).unwrap_err().to_string();
        assert!(e.contains("both day-of-month (\"1\") and day-of-week (\"MON\")"), "{e}");
        let e = Schedule::cron("0 0 12 ? * FUNDAY", 60).unwrap_err().to_string();
        assert!(e.starts_with("day-of-week field \"FUNDAY\""), "{e}");
        let e = Schedule::cron("@hourly", 60).unwrap_err().to_string();
        assert!(e.starts_with("1 fields"), "{e}");
        let e = Schedule::cron("0 0 12 ? * L", 60).unwrap_err().to_string();
        assert!(e.contains("never fires"), "{e}");
        for d in [0, MAX_DURATION_SECONDS + 1] {
            let e = Schedule::cron("0 0/10 * * * ?", d).unwrap_err();
            assert_eq!((e.field(), e.value()), ("duration_seconds", d.to_string()));
            assert!(e.to_string().contains("expected 1 to 604800 seconds"), "{e}");
        }
    }

    /// Open at `t` by the definition: some firing `f <= t < f + d`, found by
    /// walking every firing of the last `d` seconds forwards.
    fn open_by_definition(s: &Schedule, t: i64) -> bool {
        let w = s.windows().unwrap();
        let d = i64::from(w.duration_seconds);
        let mut f = w.fires_after(t - d - 1);
        while let Some(fired) = f {
            if fired > t {
                return false;
            }
            if t < fired + d {
                return true;
            }
            f = w.fires_after(fired);
        }
        false
    }

    const EXPRESSIONS: [&str; 8] = [
        "0/10 * * * * ?",
        "5/7 * * * * ?",
        "0,1,2,30 * * * * ?",
        "0 0/3 * * * ?",
        "0 * 10 * * ?",
        "30 59 9 * * ?",
        "0 0 10,11 ? * MON",
        "0/20 0-2 10 * * ?",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// `is_open` is the definition, it holds still until `next_change`,
        /// and flips there.
        #[test]
        fn is_open_holds_until_next_change_and_flips_there(
            e in 0..EXPRESSIONS.len(),
            d in prop_oneof![1u32..5, 5u32..200, 200u32..4000],
            offset in -7200i64..7200,
            nanos in 0u32..1_000_000_000,
        ) {
            let s = cron(EXPRESSIONS[e], d);
            let t = MONDAY_10H + offset;
            let now = at(t) + Duration::from_nanos(nanos.into());
            let open = s.is_open(now);
            prop_assert_eq!(open, open_by_definition(&s, t));
            match s.next_change(now) {
                Some(change) => {
                    prop_assert!(change > now);
                    let c = to_seconds(change);
                    prop_assert_eq!(at(c), change, "changes fall on whole seconds");
                    // Same state at every second up to the change (sampled
                    // when far), the other state at it.
                    let step = ((c - t) / 500).max(1);
                    let mut u = t + 1;
                    while u < c {
                        prop_assert_eq!(s.is_open(at(u)), open, "at +{} s", u - t);
                        u += step;
                    }
                    prop_assert_eq!(s.is_open(at(c - 1) + Duration::from_nanos(999_999_999)), open);
                    prop_assert_eq!(s.is_open(change), !open);
                }
                None => {
                    // Only an endless window here: these all fire daily.
                    prop_assert!(open);
                    for u in [t + 1, t + 3600, t + 86_400] {
                        prop_assert!(s.is_open(at(u)));
                    }
                }
            }
        }
    }
}
