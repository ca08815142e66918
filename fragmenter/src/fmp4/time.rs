//! Conversions from absolute nanosecond timestamps to MP4 clocks.
//!
//! Every timestamp is converted on its own from the time origin, never by
//! adding up converted durations: 1024-sample AAC frames last 21 333 333.3 ns,
//! so summing rounded durations would drift by half a millisecond every ten
//! hours, while converting each instant keeps the error under one tick.

use crate::media::Timestamp;

const NANOS_PER_SEC: u64 = 1_000_000_000;

/// Seconds from 1904-01-01 (the MP4 epoch of `mvhd`, `tkhd`, `mdhd`) to
/// 1970-01-01.
const MP4_EPOCH_OFFSET_SECS: u64 = 2_082_844_800;

/// Seconds from 1900-01-01 (the NTP epoch of `prft`) to 1970-01-01.
const NTP_EPOCH_OFFSET_SECS: u64 = 2_208_988_800;

/// The largest timescale a track may use. It keeps `ticks` within `u64` for
/// any timestamp (a tick is never shorter than a nanosecond).
pub(crate) const MAX_TIMESCALE: u32 = 1_000_000_000;

/// `round((x - origin) * timescale / 1e9)`, or `None` when `x` is before
/// `origin`. `timescale` must not exceed [`MAX_TIMESCALE`].
#[inline]
pub(crate) fn ticks(x: Timestamp, origin: Timestamp, timescale: u32) -> Option<u64> {
    let delta = x.as_nanos().checked_sub(origin.as_nanos())?;
    Some(ns_to_ticks(delta, timescale))
}

/// `round(ns * timescale / 1e9)` for a span of nanoseconds.
#[inline]
pub(crate) fn ns_to_ticks(ns: u64, timescale: u32) -> u64 {
    let ts = u64::from(timescale);
    // Fast path: u64 arithmetic is exact while the product fits (about two
    // days at 90 kHz); the benchmark budget is one microsecond per frame and a
    // u128 division costs far more than a u64 one.
    if let Some(scaled) = ns.checked_mul(ts).and_then(|p| p.checked_add(NANOS_PER_SEC / 2)) {
        return scaled / NANOS_PER_SEC;
    }
    let scaled = (u128::from(ns) * u128::from(ts) + u128::from(NANOS_PER_SEC / 2)) / u128::from(NANOS_PER_SEC);
    // With timescale <= 1e9 the quotient is at most `ns`, so it fits; saturate
    // rather than panic should a caller break that rule.
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

/// `round(ticks * 1e9 / timescale)`: a tick count back to nanoseconds
/// (saturating; zero for a zero timescale).
pub(crate) fn ticks_to_ns(ticks: u64, timescale: u32) -> u64 {
    if timescale == 0 {
        return 0;
    }
    let ts = u128::from(timescale);
    let ns = (u128::from(ticks) * u128::from(NANOS_PER_SEC) + ts / 2) / ts;
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// Whether a span of `ns` nanoseconds is at most `limit` ticks long (checked
/// before rounding, so it may refuse a span exactly at the limit).
pub(crate) fn span_fits(ns: u128, timescale: u32, limit: u64) -> bool {
    ns.saturating_mul(u128::from(timescale)) <= u128::from(limit) * u128::from(NANOS_PER_SEC)
}

/// Whole seconds since 1904-01-01, the clock of `mvhd`/`tkhd`/`mdhd`.
pub(crate) fn mp4_time(t: Timestamp) -> u64 {
    t.as_nanos() / NANOS_PER_SEC + MP4_EPOCH_OFFSET_SECS
}

/// The 64-bit NTP time (32.32 fixed-point seconds since 1900) of `t`.
///
/// The seconds wrap modulo 2^32 as NTP's own era numbering does: from
/// 2036-02-07 on the value is in NTP era 1, which is how every NTP reader
/// interprets it.
pub(crate) fn ntp_time(t: Timestamp) -> u64 {
    let ns = t.as_nanos();
    let secs = (ns / NANOS_PER_SEC + NTP_EPOCH_OFFSET_SECS) & 0xFFFF_FFFF;
    let frac = ((ns % NANOS_PER_SEC) << 32) / NANOS_PER_SEC;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_round_to_nearest() {
        let o = Timestamp::from_nanos(1_000);
        assert_eq!(ticks(o, o, 90_000), Some(0));
        assert_eq!(ticks(Timestamp::from_nanos(999), o, 90_000), None);
        // 5555 ns = 0.49995 ticks at 90 kHz -> 0; 5556 ns = 0.50004 -> 1.
        assert_eq!(ticks(Timestamp::from_nanos(1_000 + 5_555), o, 90_000), Some(0));
        assert_eq!(ticks(Timestamp::from_nanos(1_000 + 5_556), o, 90_000), Some(1));
    }

    #[test]
    fn slow_path_agrees_with_fast_path() {
        // 300 years in ns at 48 kHz overflows u64 in the product.
        let ns = 300 * 365 * 86_400 * NANOS_PER_SEC;
        assert!(ns.checked_mul(48_000).is_none());
        assert_eq!(ns_to_ticks(ns, 48_000), 300 * 365 * 86_400 * 48_000);
        assert_eq!(ns_to_ticks(u64::MAX, MAX_TIMESCALE), u64::MAX);
    }

    #[test]
    fn ntp_of_the_unix_epoch_and_a_half_second() {
        assert_eq!(ntp_time(Timestamp::EPOCH), 2_208_988_800u64 << 32);
        assert_eq!(
            ntp_time(Timestamp::from_nanos(500_000_000)),
            (2_208_988_800u64 << 32) | 0x8000_0000
        );
    }

    #[test]
    fn mp4_epoch_is_1904() {
        assert_eq!(mp4_time(Timestamp::EPOCH), 2_082_844_800);
    }
}
