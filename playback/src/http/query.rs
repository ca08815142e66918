//! Reading what a request asks for: query parameters, times, stream names.

use fragmenter::Timestamp;

/// A query parameter that is present but unusable: the name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("parameter {name:?}: {reason}")]
pub struct BadParam {
    /// The parameter's name.
    pub name: String,
    /// What was expected and what came.
    pub reason: String,
}

impl BadParam {
    /// `name` was given `value`, which is not `expected`.
    pub fn new(name: &str, value: &str, expected: &str) -> Self {
        BadParam {
            name: name.to_owned(),
            reason: format!("expected {expected}, got {value:?}"),
        }
    }
}

/// The query string's `name=value` pairs, percent-decoded. A `+` stays a
/// `+`: it is the sign of an RFC 3339 offset far more often than a space.
pub fn pairs(query: Option<&str>) -> Vec<(String, String)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// The value of `name`, if given (the first one).
pub fn get<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let hex = |j: usize| b.get(j).and_then(|&h| (h as char).to_digit(16));
        match (c, hex(i + 1), hex(i + 2)) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A time parameter: RFC 3339 (`2026-11-26T02:54:33.5Z`, any offset) or
/// Unix epoch milliseconds (`1795651200000`); see [`crate::time`].
pub fn time(name: &str, value: &str) -> Result<Timestamp, BadParam> {
    crate::time::parse_time(name, value).map_err(|e| BadParam {
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Stream names in URLs: `[A-Za-z0-9._-]`, not starting with a dot, at most
/// 256 bytes. Names never build file paths; this keeps URLs unambiguous.
pub fn valid_stream_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_times_name_the_parameter() {
        assert_eq!(time("start", "1000").unwrap(), Timestamp::from_millis(1000));
        let e = time("end", "yesterday").unwrap_err();
        assert_eq!(e.name, "end");
    }

    #[test]
    fn query_pairs_are_percent_decoded_and_plus_kept() {
        let p = pairs(Some(
            "start=2026-11-26T02%3A00%3A00%2B02:00&end=2026-11-26T02:00:00+02:00&x",
        ));
        assert_eq!(get(&p, "start"), Some("2026-11-26T02:00:00+02:00"));
        assert_eq!(get(&p, "end"), Some("2026-11-26T02:00:00+02:00"));
        assert_eq!(get(&p, "x"), Some(""));
        assert_eq!(get(&p, "y"), None);
    }

    #[test]
    fn stream_names_are_restricted() {
        assert!(valid_stream_name("front-door_2.cam"));
        for bad in ["", ".hidden", "a/b", "a b", "..", "é"] {
            assert!(!valid_stream_name(bad), "{bad}");
        }
    }
}
