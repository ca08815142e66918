//! Pipeline running time to absolute UTC.
//!
//! GStreamer stamps buffers with running time, which starts near zero when
//! the pipeline starts; KVS and HLS need wall-clock time. One pair of
//! readings taken together — the wall clock and the running time — anchors
//! every later frame. Kept apart and pure so that stepping the anchor (NTP
//! corrections) can be added and tested without a pipeline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fragmenter::Timestamp;

/// Maps running time (nanoseconds, signed because reordered video can decode
/// before the segment starts) to UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WallClockMap {
    /// The wall clock when the anchor was read.
    wall0: Timestamp,
    /// The running time at that same instant.
    rt0: i128,
}

impl WallClockMap {
    /// Anchor `rt0` (the running time read at `wall0`) to `wall0`.
    pub(crate) fn new(wall0: Timestamp, rt0: Duration) -> Self {
        WallClockMap {
            wall0,
            rt0: rt0.as_nanos() as i128,
        }
    }

    /// Anchor `rt0` to a system time; a clock set before 1970 (an RTC-less
    /// board before NTP) counts as the epoch rather than failing capture.
    pub(crate) fn at(now: SystemTime, rt0: Duration) -> Self {
        let ns = now
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0);
        Self::new(Timestamp::from_nanos(ns), rt0)
    }

    /// `wall0 + (running_time − rt0)`, clamped to what a [`Timestamp`] holds.
    pub(crate) fn to_utc(self, running_time_ns: i64) -> Timestamp {
        let t = self.wall0.as_nanos() as i128 + (running_time_ns as i128 - self.rt0);
        Timestamp::from_nanos(t.clamp(0, u64::MAX as i128) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WALL0: u64 = 1_764_125_000_000_000_000;

    #[test]
    fn anchor_maps_to_wall0_and_later_times_follow() {
        let map = WallClockMap::new(Timestamp::from_nanos(WALL0), Duration::from_millis(250));
        assert_eq!(map.to_utc(250_000_000).as_nanos(), WALL0);
        assert_eq!(map.to_utc(1_250_000_000).as_nanos(), WALL0 + 1_000_000_000);
    }

    #[test]
    fn running_time_before_the_anchor_maps_earlier() {
        let map = WallClockMap::new(Timestamp::from_nanos(WALL0), Duration::from_millis(250));
        assert_eq!(map.to_utc(0).as_nanos(), WALL0 - 250_000_000);
        // A B-frame's DTS before the segment start is negative running time.
        assert_eq!(map.to_utc(-33_000_000).as_nanos(), WALL0 - 283_000_000);
    }

    #[test]
    fn results_clamp_instead_of_wrapping() {
        let map = WallClockMap::new(Timestamp::from_nanos(5), Duration::ZERO);
        assert_eq!(map.to_utc(-10), Timestamp::EPOCH);
        let map = WallClockMap::new(Timestamp::from_nanos(u64::MAX - 1), Duration::ZERO);
        assert_eq!(map.to_utc(i64::MAX).as_nanos(), u64::MAX);
    }

    #[test]
    fn system_time_anchor_uses_unix_nanoseconds() {
        let now = UNIX_EPOCH + Duration::from_nanos(WALL0);
        let map = WallClockMap::at(now, Duration::from_secs(3));
        assert_eq!(map.to_utc(3_000_000_001).as_nanos(), WALL0 + 1);
        let before_epoch = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(WallClockMap::at(before_epoch, Duration::ZERO).to_utc(7).as_nanos(), 7);
    }
}
