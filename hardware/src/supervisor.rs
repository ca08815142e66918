//! A capture that outlives its pipeline: when a live source errors, stalls
//! or ends (a camera unplugged, an RTSP server restarted), the pipeline is
//! torn down and started again with exponential backoff and jitter, while
//! the caller keeps reading frames from the same [`SupervisedCapture`] with
//! the same tracks and strictly increasing timestamps.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fragmenter::{Frame, Timestamp, Track, TrackId};

use crate::capture::{Capture, CaptureOptions, KeyFrameRequester};
use crate::error::CaptureError;
use crate::source::VideoSource;

/// When and how fast to restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SupervisorOptions {
    /// A live source that delivers no frame for this long is restarted.
    pub stall_timeout: Duration,
    /// The wait before the first restart; doubled after each failed one.
    pub backoff_initial: Duration,
    /// The longest wait between restarts.
    pub backoff_max: Duration,
    /// A pipeline that ran this long was healthy: the next failure starts
    /// the backoff from `backoff_initial` again.
    pub healthy_after: Duration,
}

impl Default for SupervisorOptions {
    fn default() -> Self {
        SupervisorOptions {
            stall_timeout: Duration::from_secs(5),
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(30),
            healthy_after: Duration::from_secs(10),
        }
    }
}

/// Counters of a supervised capture, for logs, the summary and metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Pipelines started again after a failure (successful restarts).
    pub restarts: u64,
    /// Restart attempts that failed to start (source still gone).
    pub failed_starts: u64,
    /// Failures caused by a stall (no frame within the stall timeout).
    pub stalls: u64,
    /// Failures caused by a pipeline error.
    pub errors: u64,
    /// Failures caused by a live source ending its stream.
    pub ends: u64,
    /// Why the source was last restarted.
    pub last_restart_reason: Option<String>,
    /// Frames delivered to the caller.
    pub frames: u64,
    /// Video frames after a restart that came before its first key frame.
    pub dropped_before_key_frame: u64,
    /// Frames at or before the last one delivered on their track (overlap
    /// across a restart); dropped so timestamps stay strictly increasing.
    pub dropped_out_of_order: u64,
    /// Restarts after which a track's codec configuration (SPS/PPS, sample
    /// rate) differed from the first pipeline's.
    pub codec_changes: u64,
    /// Steps of the system clock seen by this process.
    pub clock_steps: u64,
    /// The video encoder element in use; `None` when passed through.
    pub encoder: Option<String>,
}

impl fmt::Display for CaptureStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} restart(s) ({} stall(s), {} error(s), {} end(s), {} failed start(s)), {} frame(s) dropped across \
             restarts, {} clock step(s)",
            self.restarts,
            self.stalls,
            self.errors,
            self.ends,
            self.failed_starts,
            self.dropped_before_key_frame + self.dropped_out_of_order,
            self.clock_steps
        )?;
        if let Some(reason) = &self.last_restart_reason {
            write!(f, "; last restart: {reason}")?;
        }
        Ok(())
    }
}

/// A [`Capture`] that restarts its pipeline when a live source fails.
///
/// Same surface as [`Capture`] (`tracks`, `next_frame`, `stop`) plus
/// [`SupervisedCapture::request_key_frame`] and [`SupervisedCapture::stats`].
/// The first start must succeed (bad input is an error right away); after
/// that, for live sources, errors, stalls and ends of stream are logged,
/// counted and answered with a restart after 250 ms, 500 ms, 1 s … up to
/// 30 s (±20 % jitter, so many cameras behind one switch do not retry in
/// step). Files and other non-live sources end or fail as [`Capture`] does.
///
/// Across restarts the track list stays the first pipeline's, every track's
/// decode times stay strictly increasing (frames at or before the last one
/// delivered are dropped), and video resumes on a key frame.
///
/// Supervision runs inside [`SupervisedCapture::next_frame`], on the
/// caller's thread: a frame crosses one thread boundary (appsink → caller)
/// instead of two, which on a Pi is most of what capture costs beyond
/// GStreamer itself. The price is that a restart (at most the 10 s start
/// timeout of an unreachable camera) holds up that one call.
pub struct SupervisedCapture {
    input: String,
    video: VideoSource,
    opts: CaptureOptions,
    supervision: SupervisorOptions,
    /// The first pipeline's tracks: what the caller was promised.
    tracks: Vec<Track>,
    restartable: bool,
    /// The pipeline running now; `None` while waiting to restart.
    current: Option<Capture>,
    last_frame: Instant,
    started: Instant,
    restart_at: Instant,
    last_dts: [Option<Timestamp>; TrackId::MAX_TRACKS as usize],
    /// After a restart, video waits for a key frame.
    awaiting_key_frame: bool,
    /// Consecutive failures, for the backoff.
    attempt: u32,
    stats: CaptureStats,
    key_frames: KeyFrameRequester,
    /// Frames drained by `stop`, not yet taken.
    pending: VecDeque<Frame>,
    ended: bool,
    stopped: bool,
}

/// Why a pipeline is being replaced.
enum Failure {
    Stall(Duration),
    Error(CaptureError),
    End,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Stall(d) => write!(f, "no frame for {d:?}"),
            Failure::Error(e) => write!(f, "{e}"),
            Failure::End => f.write_str("the source ended its stream"),
        }
    }
}

impl SupervisedCapture {
    /// Start `video` (as [`Capture::start`] does) and supervise it.
    pub fn start(
        video: &VideoSource,
        opts: &CaptureOptions,
        supervision: SupervisorOptions,
    ) -> Result<SupervisedCapture, CaptureError> {
        let capture = Capture::start(video, opts)?;
        Ok(SupervisedCapture::supervise(capture, video, opts, supervision))
    }

    /// Supervise an already started capture of `video`; restarts use
    /// [`Capture::start`] with `opts`.
    pub fn supervise(
        capture: Capture,
        video: &VideoSource,
        opts: &CaptureOptions,
        supervision: SupervisorOptions,
    ) -> SupervisedCapture {
        let key_frames = KeyFrameRequester::default();
        key_frames.retarget(&capture.key_frame_requester());
        let now = Instant::now();
        SupervisedCapture {
            input: video.redacted(),
            video: video.clone(),
            opts: opts.clone(),
            supervision,
            tracks: capture.tracks().to_vec(),
            restartable: capture.is_live() && opts.num_buffers.is_none(),
            stats: CaptureStats {
                encoder: capture.encoder().map(str::to_owned),
                ..CaptureStats::default()
            },
            current: Some(capture),
            last_frame: now,
            started: now,
            restart_at: now,
            last_dts: [None; TrackId::MAX_TRACKS as usize],
            awaiting_key_frame: false,
            attempt: 0,
            key_frames,
            pending: VecDeque::new(),
            ended: false,
            stopped: false,
        }
    }

    /// The tracks of the first pipeline; restarts keep them.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// The next frame, `Ok(None)` at the end (a file's end, or after
    /// [`SupervisedCapture::stop`] once drained frames are taken), an error
    /// only when the source cannot go on (a non-live source failed).
    /// [`CaptureError::Stalled`] means nothing came within `timeout` while
    /// the source is being restarted; call again.
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        if self.ended {
            return Ok(None);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let now = Instant::now();
            let Some(capture) = self.current.as_mut() else {
                if now < self.restart_at {
                    if now >= deadline {
                        return Err(self.stalled(timeout));
                    }
                    std::thread::sleep(self.restart_at.min(deadline) - now);
                    continue;
                }
                self.restart();
                continue;
            };
            // Wake up for the stall timeout even if the caller waits longer.
            let stall_at = self.last_frame + self.supervision.stall_timeout;
            let wait = deadline.min(stall_at).saturating_duration_since(now);
            let failure = match capture.next_frame(wait) {
                Ok(Some(frame)) => {
                    if let Some(frame) = self.accept(frame) {
                        return Ok(Some(frame));
                    }
                    continue;
                }
                Err(CaptureError::Stalled { .. }) => {
                    let quiet = self.last_frame.elapsed();
                    if quiet < self.supervision.stall_timeout {
                        if Instant::now() >= deadline {
                            return Err(self.stalled(timeout));
                        }
                        continue;
                    }
                    Failure::Stall(quiet)
                }
                Ok(None) => Failure::End,
                Err(e) => Failure::Error(e),
            };
            if !self.restartable {
                self.ended = true;
                self.current = None;
                return match failure {
                    Failure::Error(e) => Err(e),
                    Failure::End => Ok(None),
                    Failure::Stall(d) => Err(CaptureError::Stalled {
                        input: self.input.clone(),
                        timeout: d,
                    }),
                };
            }
            self.fail(failure);
        }
    }

    fn stalled(&self, timeout: Duration) -> CaptureError {
        CaptureError::Stalled {
            input: self.input.clone(),
            timeout,
        }
    }

    /// Tear the pipeline down at once (a failed source has nothing left
    /// worth draining, and EOS would only wait out its timeout) and plan
    /// the restart.
    fn fail(&mut self, failure: Failure) {
        self.key_frames.clear();
        self.current = None;
        if self.started.elapsed() >= self.supervision.healthy_after {
            self.attempt = 0;
        }
        let delay = self.backoff();
        self.restart_at = Instant::now() + delay;
        let reason = failure.to_string();
        match failure {
            Failure::Stall(_) => self.stats.stalls += 1,
            Failure::Error(_) => self.stats.errors += 1,
            Failure::End => self.stats.ends += 1,
        }
        self.stats.last_restart_reason = Some(reason.clone());
        tracing::warn!(input = %self.input, %reason, restart_in = ?delay, "source failed; restarting");
    }

    /// Start the source again and check it still carries what the caller
    /// was promised; on failure, plan the next attempt.
    fn restart(&mut self) {
        match self.start_again() {
            Ok(capture) => {
                self.awaiting_key_frame = true;
                self.key_frames.retarget(&capture.key_frame_requester());
                self.stats.restarts += 1;
                self.stats.encoder = capture.encoder().map(str::to_owned);
                tracing::info!(input = %self.input, restarts = self.stats.restarts, "source restarted");
                self.current = Some(capture);
                self.last_frame = Instant::now();
                self.started = Instant::now();
            }
            Err(e) => {
                self.stats.failed_starts += 1;
                let delay = self.backoff();
                tracing::warn!(input = %self.input, error = %e, retry_in = ?delay, "restart failed");
                self.restart_at = Instant::now() + delay;
            }
        }
    }

    fn start_again(&mut self) -> Result<Capture, CaptureError> {
        let capture = Capture::start(&self.video, &self.opts)?;
        for t in capture.tracks() {
            let Some(original) = self.tracks.iter().find(|o| o.id == t.id) else {
                tracing::warn!(input = %self.input, track = t.id.get(), codec = t.mkv_codec_id(), "the restarted source has a track the first did not; its frames are dropped");
                continue;
            };
            if original.mkv_codec_id() != t.mkv_codec_id() {
                // A different codec cannot continue the same track; keep
                // retrying in case the camera comes back as it was.
                return Err(CaptureError::Supervisor {
                    input: self.input.clone(),
                    message: format!(
                        "track {} changed codec from {} to {} on restart",
                        t.id.get(),
                        original.mkv_codec_id(),
                        t.mkv_codec_id()
                    ),
                });
            }
            if original.media != t.media {
                self.stats.codec_changes += 1;
                tracing::warn!(
                    input = %self.input,
                    track = t.id.get(),
                    "codec configuration changed on restart; the track keeps its first one and the new parameter \
                     sets travel in-band before every key frame"
                );
            }
        }
        for o in &self.tracks {
            if !capture.tracks().iter().any(|t| t.id == o.id) {
                tracing::warn!(input = %self.input, track = o.id.get(), "the restarted source lacks a track; it stays silent");
            }
        }
        Ok(capture)
    }

    /// The wait before the next attempt, counting it.
    fn backoff(&mut self) -> Duration {
        let delay = backoff_delay(&self.supervision, self.attempt, random_unit());
        self.attempt = self.attempt.saturating_add(1);
        delay
    }

    /// Pass a frame on unless it would break the promises: a known track,
    /// video resuming on a key frame, strictly increasing decode times.
    fn accept(&mut self, frame: Frame) -> Option<Frame> {
        self.last_frame = Instant::now();
        if !self.tracks.iter().any(|t| t.id == frame.track) {
            return None;
        }
        let i = frame.track.index();
        let is_video = frame.track == self.tracks[0].id;
        if is_video && self.awaiting_key_frame {
            if !frame.keyframe {
                self.stats.dropped_before_key_frame += 1;
                return None;
            }
            self.awaiting_key_frame = false;
        }
        if self.last_dts[i].is_some_and(|last| frame.dts <= last) {
            self.stats.dropped_out_of_order += 1;
            return None;
        }
        self.last_dts[i] = Some(frame.dts);
        self.stats.frames += 1;
        Some(frame)
    }

    /// Ask the current pipeline for a key frame (WebRTC viewers joining or
    /// reporting loss); `false` while restarting or if nothing took it.
    pub fn request_key_frame(&self) -> bool {
        self.key_frames.request()
    }

    /// A handle that asks whichever pipeline is running for key frames,
    /// from any thread, across restarts.
    pub fn key_frame_requester(&self) -> KeyFrameRequester {
        self.key_frames.clone()
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        let mut stats = self.stats.clone();
        stats.clock_steps = crate::timestamps::clock_steps();
        stats
    }

    /// Stop: the running pipeline is drained (its last frames are kept for
    /// [`SupervisedCapture::next_frame`]) and no restart follows.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        self.key_frames.clear();
        if let Some(mut capture) = self.current.take() {
            capture.stop();
            while let Ok(Some(frame)) = capture.next_frame(Duration::from_millis(1)) {
                if let Some(frame) = self.accept(frame) {
                    self.pending.push_back(frame);
                }
            }
        }
        self.ended = true;
        tracing::info!(input = %self.input, stats = %self.stats(), "supervised capture stopped");
    }
}

impl fmt::Debug for SupervisedCapture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SupervisedCapture")
            .field("input", &self.input)
            .field("tracks", &self.tracks)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// initial × 2^attempt, capped at the maximum, times a jitter factor of
/// 0.8 to 1.2 from `unit` (in [0, 1)).
fn backoff_delay(s: &SupervisorOptions, attempt: u32, unit: f64) -> Duration {
    let base = s
        .backoff_initial
        .saturating_mul(1u32 << attempt.min(16))
        .min(s.backoff_max);
    base.mul_f64(0.8 + 0.4 * unit).min(s.backoff_max)
}

/// A number in [0, 1) for jitter; quality hardly matters, independence
/// between processes does, so it mixes the time, the process id and a
/// per-process counter.
fn random_unit() -> f64 {
    use std::sync::atomic::AtomicU64;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    let mut x =
        nanos ^ (u64::from(std::process::id()) << 32) ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    // splitmix64 finaliser.
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^= x >> 31;
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_250_ms_to_a_30_s_cap_with_jitter() {
        let s = SupervisorOptions::default();
        let ms = |attempt, unit| backoff_delay(&s, attempt, unit).as_millis();
        let middle: Vec<u128> = (0..10).map(|a| ms(a, 0.5)).collect();
        assert_eq!(middle, [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(ms(0, 0.0), 200);
        assert_eq!(ms(2, 0.999_999), 1199);
        // Jitter never goes past the cap.
        assert_eq!(ms(40, 0.999), 30000);
    }

    #[test]
    fn jitter_stays_in_the_unit_interval_and_varies() {
        let values: Vec<f64> = (0..1000).map(|_| random_unit()).collect();
        assert!(values.iter().all(|v| (0.0..1.0).contains(v)));
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        assert!((0.4..0.6).contains(&mean), "{mean}");
    }
}
