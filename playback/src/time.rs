//! Times on the wire: query parameters such as `start=` and `end=` are RFC 3339
//! (`2026-11-26T03:00:00Z`, fractions allowed) or Unix epoch milliseconds,
//! as everywhere in the agent's HTTP surface and CLI.

use std::time::UNIX_EPOCH;

use fragmenter::Timestamp;

/// A time parameter that is neither form; the message names the parameter
/// and quotes what came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}={value:?}: expected RFC 3339 (2026-11-26T03:00:00Z) or Unix epoch milliseconds")]
pub struct TimeError {
    /// The parameter's name (`start`, `end`).
    pub name: String,
    /// What it held.
    pub value: String,
}

/// Parse `value`, the parameter `name`, as RFC 3339 or epoch milliseconds.
///
/// ```
/// use playback::time::parse_time;
/// assert_eq!(parse_time("start", "1000").unwrap().as_millis(), 1000);
/// assert_eq!(parse_time("start", "1970-01-01T00:00:01.5Z").unwrap().as_millis(), 1500);
/// assert!(parse_time("end", "yesterday").is_err());
/// ```
pub fn parse_time(name: &str, value: &str) -> Result<Timestamp, TimeError> {
    let bad = || TimeError {
        name: name.to_owned(),
        value: value.to_owned(),
    };
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        let ms: u64 = value.parse().map_err(|_| bad())?;
        // Past the year 2554 a u64 of nanoseconds overflows; no recording is there.
        if ms > u64::MAX / 1_000_000 {
            return Err(bad());
        }
        return Ok(Timestamp::from_millis(ms));
    }
    let since_epoch = humantime::parse_rfc3339_weak(value)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .ok_or_else(bad)?;
    u64::try_from(since_epoch.as_nanos())
        .map(Timestamp::from_nanos)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_and_epoch_millis_name_the_same_instant() {
        let a = parse_time("start", "2026-11-26T03:00:00Z").unwrap();
        let b = parse_time("start", "1795662000000").unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_rfc3339(), "2026-11-26T03:00:00.000000000Z");
    }

    #[test]
    fn a_bad_time_names_the_parameter_and_the_value() {
        let e = parse_time("end", "soon").unwrap_err();
        assert!(e.to_string().starts_with("end=\"soon\""), "{e}");
        assert!(parse_time("end", "").is_err());
        assert!(parse_time("end", "99999999999999999999").is_err());
    }
}
