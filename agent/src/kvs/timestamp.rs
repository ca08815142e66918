//! `x-amzn-producer-start-timestamp`: decimal seconds since the epoch, the
//! base of RELATIVE cluster timecodes (reference §2.1).
//!
//! AWS's C++ SDK prints the milliseconds without zero padding (5 ms after a
//! second goes out as `….5`), so a server that reads the digits after the
//! point as milliseconds gets 500 ms. The value is decimal seconds, which is
//! how both sides here read it; ours are always written with three digits.

use fragmenter::Timestamp;

/// A start timestamp that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("x-amzn-producer-start-timestamp {value:?}: {reason}")]
pub struct StartTimestampError {
    /// The header as received.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// The header value for `t`: seconds and zero-padded milliseconds.
pub fn format(t: Timestamp) -> String {
    let ms = t.as_millis();
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Read the header as decimal seconds (up to nanoseconds).
pub fn parse(value: &str) -> Result<Timestamp, StartTimestampError> {
    let bad = |reason| StartTimestampError {
        value: value.chars().take(64).collect(),
        reason,
    };
    let v = value.trim();
    let (secs, frac) = v.split_once('.').unwrap_or((v, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("expected decimal seconds since the epoch, e.g. 1595833960.258"));
    }
    if frac.len() > 9 {
        return Err(bad("more than nine decimal places"));
    }
    let secs: u64 = secs.parse().map_err(|_| bad("the seconds do not fit in 64 bits"))?;
    let nanos: u64 = format!("{frac:0<9}").parse().unwrap_or(0);
    secs.checked_mul(1_000_000_000)
        .and_then(|n| n.checked_add(nanos))
        .map(Timestamp::from_nanos)
        .ok_or_else(|| bad("later than the year 2554"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_with_three_digits_and_read_as_decimal_seconds() {
        assert_eq!(format(Timestamp::from_millis(1_595_833_960_005)), "1595833960.005");
        assert_eq!(
            parse("1595833960.258").unwrap(),
            Timestamp::from_millis(1_595_833_960_258)
        );
        // The C++ SDK's unpadded 5 ms reads as half a second, which is what
        // the digits say; the SDK only uses it for RELATIVE timecodes.
        assert_eq!(
            parse("1595833960.5").unwrap(),
            Timestamp::from_millis(1_595_833_960_500)
        );
        assert_eq!(parse("1595833960").unwrap(), Timestamp::from_millis(1_595_833_960_000));
        assert_eq!(parse(" 1.000000001 ").unwrap(), Timestamp::from_nanos(1_000_000_001));
        for v in [
            "",
            ".5",
            "-1.0",
            "1e9",
            "abc",
            "1.2.3",
            "1.0000000001",
            "99999999999999999999",
        ] {
            assert!(parse(v).is_err(), "{v:?} accepted");
        }
        assert!(parse("nope").unwrap_err().to_string().contains("1595833960.258"));
    }
}
