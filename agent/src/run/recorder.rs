//! One recorder per stream or sensor: source → fragmenter → store, on its
//! own thread, restarted with backoff when the source fails, so one broken
//! camera never stops the others or the agent.
//!
//! A stream with a recording schedule runs its source only inside the
//! schedule's windows: outside them the camera pipeline is stopped (no
//! capture, no encoding: on a Pi that is the CPU saved). A window opens a
//! fresh pipeline, whose first fragment starts on a key frame like any
//! other; a window's end stops the source and closes the open fragment
//! with the frames still in flight, as a shutdown does.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Context, Result};
use fragmenter::{Fragmenter, Timestamp};
use hardware::CaptureOptions;
use tracing::{error, info, warn};

use crate::schedule::Schedule;
use crate::source::{Poll, Source, SourceSpec};
use crate::store::Store;

/// A live source silent for this long is restarted.
const STALL: Duration = Duration::from_secs(10);
/// Restart backoff bounds.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A run this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// What to record.
pub struct RecorderSpec {
    /// Stream name in the store.
    pub name: String,
    /// The source.
    pub source: SourceSpec,
    /// The source as configured (for messages).
    pub source_text: String,
    /// Options for video sources.
    pub capture: CaptureOptions,
    /// Fragment target.
    pub fragment: Duration,
    /// The stream uploads (retention must spare un-uploaded media).
    pub uploads: bool,
    /// Live frames for WebRTC viewers, when WebRTC is on.
    pub feed: Option<Arc<playback::webrtc::feed::StreamFeed>>,
    /// When to record.
    pub schedule: Schedule,
}

/// A recorder as `/api/streams` and `/metrics` show it.
#[derive(Clone, Debug, Default)]
pub struct RecorderStatus {
    /// Stream name.
    pub name: String,
    /// The source as configured.
    pub source: String,
    /// A capture is running now.
    pub running: bool,
    /// Recorder restarts after errors (the whole chain: source, fragmenter,
    /// store writer).
    pub restarts: u64,
    /// Source pipeline restarts inside a running recorder (stalls, camera
    /// unplugged, RTSP server gone).
    pub source_restarts: u64,
    /// Frames captured.
    pub frames: u64,
    /// Frames the fragmenter refused (bad timestamps…).
    pub refused: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When the current capture started.
    pub since: Option<Timestamp>,
    /// When it records (`/api/streams` shows whether a window is open and
    /// when that changes).
    pub schedule: Schedule,
}

/// A running recorder thread.
pub struct Recorder {
    thread: Option<JoinHandle<()>>,
    status: Arc<Mutex<RecorderStatus>>,
}

impl Recorder {
    /// Start recording `spec` into `store` until `stop` is set.
    pub fn spawn(spec: RecorderSpec, store: Store, stop: Arc<AtomicBool>) -> Result<Recorder> {
        let status = Arc::new(Mutex::new(RecorderStatus {
            name: spec.name.clone(),
            source: spec.source_text.clone(),
            schedule: spec.schedule.clone(),
            ..RecorderStatus::default()
        }));
        let thread = {
            let status = status.clone();
            std::thread::Builder::new()
                .name(format!("rec-{}", spec.name))
                .spawn(move || supervise(&spec, &store, &stop, &status))
                .context("cannot start a recorder thread")?
        };
        Ok(Recorder {
            thread: Some(thread),
            status,
        })
    }

    /// Shared status handle.
    pub fn status_handle(&self) -> Arc<Mutex<RecorderStatus>> {
        self.status.clone()
    }

    /// Wait for the thread (after `stop` was set).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn update(status: &Mutex<RecorderStatus>, f: impl FnOnce(&mut RecorderStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// Sleep up to `d`, waking early when `stop` is set.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let until = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Outside the schedule's windows: wait (the source stopped) until one
/// opens, or `stop`. The wall clock is read again at least once a minute, in
/// case it was set.
fn wait_for_window(schedule: &Schedule, stop: &AtomicBool) {
    loop {
        let now = SystemTime::now();
        if stop.load(Ordering::Relaxed) || schedule.is_open(now) {
            return;
        }
        let opens = schedule.next_change(now).and_then(|t| t.duration_since(now).ok());
        sleep_unless_stopped(opens.unwrap_or(Duration::MAX).min(Duration::from_secs(60)), stop);
    }
}

fn supervise(spec: &RecorderSpec, store: &Store, stop: &AtomicBool, status: &Mutex<RecorderStatus>) {
    let mut backoff = BACKOFF_MIN;
    let mut attempt: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if !spec.schedule.is_open(SystemTime::now()) {
            info!(stream = %spec.name, schedule = %spec.schedule, "outside the recording window: source stopped");
            wait_for_window(&spec.schedule, stop);
            continue;
        }
        let began = Instant::now();
        let result = record(spec, store, stop, status);
        update(status, |s| s.running = false);
        match result {
            Ok(Finished::Stopped) => break,
            Ok(Finished::WindowClosed) => backoff = BACKOFF_MIN,
            Ok(Finished::SourceEnded) => {
                info!(stream = %spec.name, "source ended; recording of this stream is complete");
                break;
            }
            Err(e) => {
                if began.elapsed() >= HEALTHY_RUN {
                    backoff = BACKOFF_MIN;
                }
                attempt += 1;
                // Jitter so cameras behind one switch do not retry in step.
                let jitter = Duration::from_millis((attempt * 7919 + began.elapsed().subsec_nanos() as u64) % 250);
                let wait = backoff + jitter;
                error!(stream = %spec.name, error = %format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "recording failed");
                update(status, |s| {
                    s.restarts += 1;
                    s.last_error = Some(format!("{e:#}"));
                });
                sleep_unless_stopped(wait, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

enum Finished {
    Stopped,
    SourceEnded,
    /// The recording window closed.
    WindowClosed,
}

/// When a recording that starts now must check its window again: at the
/// window's end, or in an hour when no end is in sight (and never with the
/// schedule `Always`).
fn window_check(schedule: &Schedule, now: SystemTime) -> Option<SystemTime> {
    match schedule {
        Schedule::Always => None,
        Schedule::Windows(_) => Some(schedule.next_change(now).unwrap_or(now + Duration::from_secs(3600))),
    }
}

fn record(spec: &RecorderSpec, store: &Store, stop: &AtomicBool, status: &Mutex<RecorderStatus>) -> Result<Finished> {
    let mut source = Source::start(&spec.source, &spec.capture, Duration::from_secs(5))
        .with_context(|| format!("cannot start source {:?}", spec.source_text))?;
    let tracks = source.tracks().to_vec();
    let policy = spec.source.fragment_policy(spec.fragment)?;
    let mut fragmenter = Fragmenter::new(&tracks, policy)?;
    let mut writer = store.open_stream(&spec.name, &tracks, spec.uploads)?;
    let mut viewers = spec
        .feed
        .clone()
        .map(|feed| super::live::LivePublisher::new(feed, &tracks, source.key_frame_requester()));
    info!(stream = %spec.name, source = %spec.source_text, tracks = tracks.len(), "recording");
    update(status, |s| {
        s.running = true;
        s.since = Some(hardware::now());
    });
    let mut events = Vec::new();
    let mut last_frame = Instant::now();
    let mut denied_logged = Instant::now() - Duration::from_secs(3600);
    let live = spec.source.is_live();
    let mut last_key_request = Instant::now();
    let mut check_window = window_check(&spec.schedule, SystemTime::now());

    let mut store_events = |events: &mut Vec<fragmenter::FragmentEvent>| -> Result<()> {
        for ev in events.drain(..) {
            match writer.write(&ev) {
                Ok(_) => {}
                Err(e) if e.is_denied() => {
                    // Recording resumes by itself when space returns; say so
                    // once a minute rather than per frame.
                    if denied_logged.elapsed() >= Duration::from_secs(60) {
                        warn!(stream = %spec.name, error = %e, "new media refused");
                        denied_logged = Instant::now();
                    }
                }
                Err(e) => return Err(e).context("cannot store"),
            }
        }
        Ok(())
    };

    let finished = loop {
        if stop.load(Ordering::Relaxed) {
            break Finished::Stopped;
        }
        if let Some(at) = check_window {
            let now = SystemTime::now();
            if now >= at {
                if !spec.schedule.is_open(now) {
                    info!(stream = %spec.name, "the recording window closed");
                    break Finished::WindowClosed;
                }
                check_window = window_check(&spec.schedule, now);
            }
        }
        match source.next_frame(Duration::from_millis(200))? {
            Poll::Frame(f) => {
                last_frame = Instant::now();
                if let Some(viewers) = viewers.as_mut() {
                    viewers.publish(&f);
                }
                let refused = fragmenter.push(f, &mut events).is_err();
                if fragmenter.wants_key_frame() && last_key_request.elapsed() >= Duration::from_secs(1) {
                    source.request_key_frame();
                    last_key_request = Instant::now();
                }
                let restarts = source.restarts();
                update(status, |s| {
                    s.frames += 1;
                    s.refused += u64::from(refused);
                    s.source_restarts = restarts;
                });
                store_events(&mut events)?;
            }
            Poll::Quiet => {
                if last_frame.elapsed() >= STALL {
                    return Err(anyhow!("no frame for {STALL:?}"));
                }
            }
            Poll::TrackEnded(track) => {
                fragmenter.end_track(track, &mut events);
                store_events(&mut events)?;
            }
            Poll::End if live => return Err(anyhow!("the source ended")),
            Poll::End => break Finished::SourceEnded,
        }
    };
    // Close the open fragment with what the source still has in flight.
    source.stop();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        match source.next_frame(Duration::from_millis(200)) {
            Ok(Poll::Frame(f)) => {
                let _ = fragmenter.push(f, &mut events);
            }
            Ok(Poll::TrackEnded(track)) => fragmenter.end_track(track, &mut events),
            Ok(Poll::Quiet) => {}
            Ok(Poll::End) | Err(_) => break,
        }
    }
    fragmenter.finish(&mut events);
    store_events(&mut events)?;
    writer.close()?;
    Ok(finished)
}
