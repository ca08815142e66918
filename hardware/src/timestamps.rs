//! Pipeline running time to absolute UTC, monotonic for the whole process.
//!
//! GStreamer stamps buffers with running time; every pipeline runs on the
//! monotonic system clock, so `base_time + running_time` is a reading of
//! CLOCK_MONOTONIC. One process-wide [`Timeline`] maps that clock to UTC:
//! anchored once (the wall clock and the monotonic clock read together),
//! then corrected only by
//!
//! * a bounded slew (at most 500 ppm) towards the wall clock, which follows
//!   slow differences without ever making time run backwards, and
//! * a jump forward when the wall clock steps ahead by more than 100 ms
//!   (NTP fixing an RTC-less board's clock at boot, resume from suspend).
//!
//! A backward step of the wall clock is slewed, never jumped, so frames and
//! fragments stay strictly increasing; every step is logged and counted.
//! Because all pipelines share the mapping, a restarted source continues
//! where the old one stopped instead of re-anchoring on its own.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use fragmenter::Timestamp;
use gstreamer as gst;
use gstreamer::prelude::*;

/// Largest rate at which corrections are slewed in, in parts per million:
/// 0.5 ms per second, what ntpd allows itself.
const MAX_SLEW_PPM: i128 = 500;
/// A change of the wall clock against the monotonic clock larger than this
/// between two checks is a step, not drift.
const STEP_THRESHOLD_NS: i128 = 100_000_000;
/// Differences below this are reading jitter (two clock reads are
/// microseconds apart), not drift: following them would only make frame
/// intervals wobble.
const DEADBAND_NS: i128 = 1_000_000;
/// How often the wall clock is compared with the mapping.
const CHECK_INTERVAL_NS: i128 = 1_000_000_000;

/// The two clocks the timeline compares; injectable for tests.
pub(crate) trait Clocks: Send + Sync {
    /// CLOCK_MONOTONIC in nanoseconds, as GStreamer's system clock reads it.
    fn monotonic_ns(&self) -> i128;
    /// The wall clock (CLOCK_REALTIME) in nanoseconds since the Unix epoch.
    fn wall_ns(&self) -> i128;
}

/// The real clocks.
pub(crate) struct SystemClocks;

impl Clocks for SystemClocks {
    fn monotonic_ns(&self) -> i128 {
        i128::from(gst::SystemClock::obtain().time().nseconds())
    }

    fn wall_ns(&self) -> i128 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            // A clock set before 1970 (an RTC-less board before NTP) counts
            // as the epoch; the forward step NTP makes later is followed.
            Err(_) => 0,
        }
    }
}

/// A detected step of the wall clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ClockStep {
    /// How far the wall clock moved against the monotonic clock (positive:
    /// forward), in nanoseconds.
    pub(crate) by_ns: i128,
}

/// Checks whose correction segments are kept: a frame delivered late (a
/// jitter buffer, an encoder's lookahead) still maps through the segment
/// in force when it was captured, so the same instant always maps to the
/// same UTC.
const SEGMENTS_KEPT: usize = 64;

/// From monotonic time `at` on, the correction starts at `offset` and
/// slews towards `target`.
#[derive(Clone, Copy, Debug)]
struct Segment {
    at: i128,
    offset: i128,
    target: i128,
}

impl Segment {
    fn correction(&self, mono: i128) -> i128 {
        let dt = (mono - self.at).max(0);
        let max = dt * MAX_SLEW_PPM / 1_000_000;
        self.offset + (self.target - self.offset).clamp(-max, max)
    }
}

#[derive(Debug)]
struct State {
    /// Anchor: monotonic and wall readings taken together.
    mono0: i128,
    utc0: i128,
    /// Corrections, oldest first; never empty.
    segments: std::collections::VecDeque<Segment>,
    /// The wall clock minus the uncorrected mapping at the last check.
    prev_raw: i128,
    last_check: i128,
}

impl State {
    fn correction(&self, mono: i128) -> i128 {
        let segment = self
            .segments
            .iter()
            .rev()
            .find(|s| s.at <= mono)
            .or(self.segments.front())
            .expect("at least one segment");
        segment.correction(mono)
    }

    fn map(&self, mono: i128) -> i128 {
        self.utc0 + (mono - self.mono0) + self.correction(mono)
    }
}

/// Monotonic clock → UTC, with step detection (see the module docs).
pub(crate) struct Timeline<C: Clocks> {
    clocks: C,
    state: Mutex<State>,
    steps: AtomicU64,
}

impl<C: Clocks> Timeline<C> {
    /// Anchor the timeline now.
    pub(crate) fn new(clocks: C) -> Self {
        // The wall clock read between two monotonic readings: their middle
        // is the instant it describes, to well under a microsecond.
        let before = clocks.monotonic_ns();
        let utc0 = clocks.wall_ns();
        let mono0 = before + (clocks.monotonic_ns() - before) / 2;
        let first = Segment {
            at: mono0,
            offset: 0,
            target: 0,
        };
        Timeline {
            clocks,
            state: Mutex::new(State {
                mono0,
                utc0,
                segments: std::iter::once(first).collect(),
                prev_raw: 0,
                last_check: mono0,
            }),
            steps: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is plain numbers; a panic elsewhere leaves them usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// UTC for a monotonic clock reading; compares with the wall clock at
    /// most once a second, on the way.
    #[cfg(test)]
    pub(crate) fn to_utc(&self, mono_ns: i128) -> Timestamp {
        self.to_utc_pair(mono_ns, mono_ns).0
    }

    /// Two instants (a frame's PTS and DTS) mapped under one lock, so a
    /// check in between cannot pull them apart.
    pub(crate) fn to_utc_pair(&self, a: i128, b: i128) -> (Timestamp, Timestamp) {
        let due = {
            let s = self.lock();
            a.max(b) - s.last_check >= CHECK_INTERVAL_NS
        };
        if due {
            self.check();
        }
        let s = self.lock();
        let stamp = |t: i128| Timestamp::from_nanos(t.clamp(0, i128::from(u64::MAX)) as u64);
        (stamp(s.map(a)), stamp(s.map(b)))
    }

    /// Compare the wall clock with the mapping now: log and count a step,
    /// jump forward for a forward step, slew towards anything else.
    pub(crate) fn check(&self) -> Option<ClockStep> {
        let before = self.clocks.monotonic_ns();
        let wall = self.clocks.wall_ns();
        let mono = before + (self.clocks.monotonic_ns() - before) / 2;
        let mut s = self.lock();
        s.last_check = mono;
        let raw = wall - (s.utc0 + (mono - s.mono0));
        let jump = raw - s.prev_raw;
        s.prev_raw = raw;
        let step = (jump.abs() > STEP_THRESHOLD_NS).then_some(ClockStep { by_ns: jump });
        // The slew reached so far carries on from now towards the new target.
        let mut offset = s.correction(mono);
        if raw - offset > STEP_THRESHOLD_NS {
            // Ahead: jumping leaves a gap, never a reversal.
            offset = raw;
        }
        let target = if (raw - offset).abs() < DEADBAND_NS {
            offset
        } else {
            raw
        };
        s.segments.push_back(Segment {
            at: mono,
            offset,
            target,
        });
        if s.segments.len() > SEGMENTS_KEPT {
            s.segments.pop_front();
        }
        drop(s);
        if let Some(step) = step {
            self.steps.fetch_add(1, Ordering::Relaxed);
            let ms = step.by_ns as f64 / 1e6;
            if step.by_ns > 0 {
                tracing::warn!(
                    step_ms = ms,
                    "system clock stepped forward; frame timestamps jump ahead with it"
                );
            } else {
                tracing::warn!(
                    step_ms = ms,
                    slew_ppm = MAX_SLEW_PPM as i64,
                    "system clock stepped back; frame timestamps keep increasing and slew towards it"
                );
            }
        }
        step
    }

    /// Steps of the wall clock seen so far.
    pub(crate) fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }
}

/// The process-wide timeline every capture maps through.
pub(crate) fn timeline() -> &'static Timeline<SystemClocks> {
    static TIMELINE: OnceLock<Timeline<SystemClocks>> = OnceLock::new();
    TIMELINE.get_or_init(|| {
        // The monotonic reading is GStreamer's system clock; sensor captures
        // use the timeline without starting a pipeline first.
        let _ = gst::init();
        Timeline::new(SystemClocks)
    })
}

/// Now, in UTC, on the same process-wide timeline video frames are stamped
/// with: what sensor adapters use for arrival times, so LIDAR, RADAR and
/// video line up and share the handling of system clock steps.
pub fn now() -> Timestamp {
    let t = timeline();
    let mono = t.clocks.monotonic_ns();
    t.to_utc_pair(mono, mono).0
}

/// Steps of the system clock this process has seen.
pub fn clock_steps() -> u64 {
    timeline().steps()
}

/// Maps one pipeline's running time to UTC: running time plus the
/// pipeline's base time is a monotonic clock reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct WallClockMap {
    base_mono_ns: i128,
}

impl WallClockMap {
    /// For a live pipeline on the system clock: its base time.
    /// For a non-live one (a file read as fast as possible): the monotonic
    /// clock when it started, so its timeline starts now and runs ahead.
    pub(crate) fn for_pipeline(pipeline: &gst::Pipeline, live: bool) -> Self {
        let base = if live {
            pipeline.base_time().map(|t| i128::from(t.nseconds()))
        } else {
            None
        };
        WallClockMap {
            base_mono_ns: base.unwrap_or_else(|| SystemClocks.monotonic_ns()),
        }
    }

    /// UTC of a frame's PTS and DTS (running time in nanoseconds; negative
    /// before the segment).
    pub(crate) fn to_utc(self, pts_ns: i64, dts_ns: i64) -> (Timestamp, Timestamp) {
        timeline().to_utc_pair(
            self.base_mono_ns + i128::from(pts_ns),
            self.base_mono_ns + i128::from(dts_ns),
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn process_now_is_wall_clock_time_and_never_goes_back() {
        let wall = || {
            let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
            Timestamp::from_nanos(d.as_nanos() as u64)
        };
        let before = wall();
        let mut last = super::now();
        assert!(last.saturating_since(before) < std::time::Duration::from_secs(1));
        assert!(before.saturating_since(last) < std::time::Duration::from_secs(1));
        for _ in 0..1000 {
            let t = super::now();
            assert!(t >= last, "{t} after {last}");
            last = t;
        }
    }

    use super::*;
    use std::sync::atomic::AtomicI64;
    use std::sync::Arc;

    const WALL0: i128 = 1_764_125_000_000_000_000;
    const SEC: i128 = 1_000_000_000;

    /// Clocks the test moves by hand: `advance` moves both, `step_wall` only
    /// the wall clock (what NTP does).
    #[derive(Clone, Default)]
    struct FakeClocks {
        mono: Arc<AtomicI64>,
        wall_offset: Arc<AtomicI64>,
    }

    impl FakeClocks {
        fn advance(&self, ns: i128) {
            self.mono.fetch_add(ns as i64, Ordering::SeqCst);
        }
        fn step_wall(&self, ns: i128) {
            self.wall_offset.fetch_add(ns as i64, Ordering::SeqCst);
        }
    }

    impl Clocks for FakeClocks {
        fn monotonic_ns(&self) -> i128 {
            i128::from(self.mono.load(Ordering::SeqCst))
        }
        fn wall_ns(&self) -> i128 {
            WALL0 + i128::from(self.mono.load(Ordering::SeqCst)) + i128::from(self.wall_offset.load(Ordering::SeqCst))
        }
    }

    fn ns(t: Timestamp) -> i128 {
        i128::from(t.as_nanos())
    }

    #[test]
    fn anchor_maps_monotonic_time_to_the_wall_clock() {
        let clocks = FakeClocks::default();
        clocks.advance(5 * SEC);
        let tl = Timeline::new(clocks.clone());
        assert_eq!(ns(tl.to_utc(5 * SEC)), WALL0 + 5 * SEC);
        assert_eq!(ns(tl.to_utc(5 * SEC + 250)), WALL0 + 5 * SEC + 250);
        // Frames captured before the anchor (a jitter buffer's latency) map
        // earlier.
        assert_eq!(ns(tl.to_utc(4 * SEC)), WALL0 + 4 * SEC);
    }

    #[test]
    fn no_drift_over_hours_when_the_clocks_agree() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks.clone());
        for _ in 0..(6 * 3600) {
            clocks.advance(SEC);
            tl.check();
        }
        let mono = clocks.monotonic_ns();
        assert_eq!(ns(tl.to_utc(mono)), clocks.wall_ns());
        assert_eq!(tl.steps(), 0);
    }

    #[test]
    fn backward_step_is_counted_and_slewed_never_jumped() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks.clone());
        clocks.advance(10 * SEC);
        tl.check();
        let before = tl.to_utc(clocks.monotonic_ns());
        // NTP sets the clock back by 2 s.
        clocks.step_wall(-2 * SEC);
        let step = tl.check().expect("a step");
        assert_eq!(step.by_ns, -2 * SEC);
        assert_eq!(tl.steps(), 1);
        // Frame by frame (30 fps for an hour), time only moves forward.
        let mut last = before;
        for _ in 0..(30 * 3600) {
            clocks.advance(SEC / 30);
            let t = tl.to_utc(clocks.monotonic_ns());
            assert!(t > last, "{t} after {last}");
            last = t;
        }
        // Slewing at 500 ppm takes back 1.8 s in an hour...
        let behind = ns(last) - clocks.wall_ns();
        assert!((190_000_000..=210_000_000).contains(&behind), "{behind}");
        // ...and the step was counted once, not at every check.
        assert_eq!(tl.steps(), 1);
        // Within the next 400 s (0.2 s at 500 ppm) it has caught up, to
        // within the dead band.
        for _ in 0..420 {
            clocks.advance(SEC);
            tl.check();
        }
        let off = ns(tl.to_utc(clocks.monotonic_ns())) - clocks.wall_ns();
        assert!(off.abs() <= DEADBAND_NS, "{off}");
    }

    #[test]
    fn forward_step_jumps_ahead_once() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks.clone());
        clocks.advance(3 * SEC);
        let before = tl.to_utc(clocks.monotonic_ns());
        // An RTC-less board learns the real date an hour later.
        clocks.step_wall(3600 * SEC);
        clocks.advance(SEC);
        let after = tl.to_utc(clocks.monotonic_ns());
        assert_eq!(ns(after), clocks.wall_ns());
        assert!(after > before);
        assert_eq!(tl.steps(), 1);
    }

    #[test]
    fn small_differences_are_slewed_without_counting_a_step() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks.clone());
        clocks.advance(SEC);
        clocks.step_wall(50_000_000);
        assert_eq!(tl.check(), None);
        clocks.advance(SEC);
        // 0.5 ms of the 50 ms after one second.
        let got = ns(tl.to_utc(clocks.monotonic_ns()));
        assert_eq!(got, WALL0 + 2 * SEC + 500_000);
        assert_eq!(tl.steps(), 0);
    }

    #[test]
    fn an_instant_maps_the_same_before_and_after_a_check() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks.clone());
        clocks.advance(SEC);
        clocks.step_wall(-5 * SEC);
        tl.check();
        clocks.advance(SEC / 2);
        let frame = clocks.monotonic_ns() - SEC / 10;
        let first = tl.to_utc(frame);
        clocks.advance(SEC);
        tl.check();
        // Delivered late, after the next check: same timestamp.
        assert_eq!(tl.to_utc(frame), first);
    }

    #[test]
    fn results_clamp_at_the_epoch() {
        let clocks = FakeClocks::default();
        let tl = Timeline::new(clocks);
        assert_eq!(tl.to_utc(-WALL0 - SEC), Timestamp::EPOCH);
    }
}
