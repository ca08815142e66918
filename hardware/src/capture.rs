//! A running capture: start a source's pipeline, pull its frames with
//! absolute timestamps, stop it without losing what the encoder still holds.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use fragmenter::{Frame, Track};
use gstreamer as gst;
use gstreamer::prelude::*;

use crate::bus::BusWatch;
use crate::error::CaptureError;
use crate::frames::{Event, RunningFrame, CHANNEL_CAPACITY};
use crate::pipeline::{file_pipeline, test_pipeline};
use crate::source::{AudioSource, VideoSource};
use crate::timestamps::WallClockMap;
use crate::tracks::track_from_caps;

/// How long `start` waits for PLAYING and negotiated caps on every output.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `stop` waits for the encoder's last frames after EOS.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// Frames `stop` keeps for `next_frame` at most: a source that ignores EOS
/// (a file read as fast as possible) must not fill memory for the whole
/// drain timeout.
const STOP_MAX_FRAMES: usize = 4 * CHANNEL_CAPACITY;
/// Granularity of the start-up wait.
const POLL: Duration = Duration::from_millis(20);

/// How to capture. Encoding options apply to sources we encode ourselves
/// (the test source); files are passed through as they are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Target fragment length; the encoder puts a keyframe at every multiple.
    pub fragment_duration: Duration,
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Encoder target bitrate in kbit/s.
    pub video_bitrate_kbps: u32,
    /// Audio to capture alongside the video; [`AudioSource::FromSource`] is
    /// the test tone for the test source and the file's AAC track for files.
    pub audio: AudioSource,
    /// Test source only: produce frames in real time (`true`) or as fast as
    /// possible (`false`, for tests and benchmarks).
    pub live: bool,
    /// Test source only: end the stream after this many video frames (and
    /// as much audio); `None` runs until stopped.
    pub num_buffers: Option<u32>,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            fragment_duration: Duration::from_secs(2),
            width: 1280,
            height: 720,
            fps: 30,
            video_bitrate_kbps: 2000,
            audio: AudioSource::FromSource,
            live: true,
            num_buffers: None,
        }
    }
}

impl CaptureOptions {
    /// The defaults, with the audio that suits `video`: the test tone for
    /// the test source, the file's own audio for files.
    pub fn for_source(video: &VideoSource) -> Self {
        let audio = match video {
            VideoSource::Test => AudioSource::Test,
            VideoSource::File(_) => AudioSource::FromSource,
        };
        CaptureOptions {
            audio,
            ..CaptureOptions::default()
        }
    }

    fn validate(&self, video: &VideoSource) -> Result<(), CaptureError> {
        let invalid = |field, value: &dyn fmt::Display, expected| {
            Err(CaptureError::InvalidOption {
                field,
                value: value.to_string(),
                expected,
            })
        };
        match video {
            VideoSource::File(_) => {
                if self.audio == AudioSource::Test {
                    return invalid(
                        "audio",
                        &self.audio,
                        "from-source or none for a file source (a test tone cannot be mixed into a file yet)",
                    );
                }
            }
            VideoSource::Test => {
                // x264 refuses odd sizes in 4:2:0.
                if self.width == 0 || self.width % 2 == 1 {
                    return invalid("width", &self.width, "an even number of pixels above 0");
                }
                if self.height == 0 || self.height % 2 == 1 {
                    return invalid("height", &self.height, "an even number of pixels above 0");
                }
                if !(1..=240).contains(&self.fps) {
                    return invalid("fps", &self.fps, "1 to 240 frames per second");
                }
                if !(1..=2_048_000).contains(&self.video_bitrate_kbps) {
                    return invalid(
                        "video_bitrate_kbps",
                        &self.video_bitrate_kbps,
                        "1 to 2048000 kbit/s (x264enc's range)",
                    );
                }
                if self.fragment_duration.is_zero() {
                    return invalid(
                        "fragment_duration",
                        &format_args!("{:?}", self.fragment_duration),
                        "more than zero",
                    );
                }
            }
        }
        Ok(())
    }
}

/// A running capture pipeline and the frames it produced so far.
pub struct Capture {
    /// The video source as written, for messages.
    input: String,
    running: Running,
    /// Frames (and end of stream) taken off the channel before the caller
    /// asked: during start-up, and while draining in `stop`.
    pending: VecDeque<Event>,
    tracks: Vec<Track>,
    clock: WallClockMap,
    ended: bool,
    stopped: bool,
}

/// The pipeline and what feeds from it; torn down in the one order that
/// cannot deadlock, whether capture started or failed half-way.
struct Running {
    pipeline: gst::Pipeline,
    rx: Option<Receiver<Event>>,
    bus: Option<BusWatch>,
}

impl Running {
    fn shutdown(&mut self) {
        // Streaming threads blocked on a full channel wake up with an error
        // once the receiver is gone; only then can the state change to NULL
        // join them.
        self.rx = None;
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!("pipeline did not stop cleanly: {e}");
        }
        self.bus = None;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Capture {
    /// Build and start the pipeline, wait (at most 10 s) until every appsink
    /// has negotiated caps, and return the tracks (video = track 1, audio =
    /// track 2).
    pub fn start(video: &VideoSource, opts: &CaptureOptions) -> Result<Capture, CaptureError> {
        opts.validate(video)?;
        if let VideoSource::File(path) = video {
            check_readable(path)?;
        }
        gst::init().map_err(|e| CaptureError::Init { message: e.to_string() })?;
        let input = video.to_string();
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let built = match video {
            VideoSource::Test => test_pipeline(opts, &tx)?,
            VideoSource::File(path) => file_pipeline(path, opts.audio, &tx)?,
        };
        let bus = built.pipeline.bus().ok_or_else(|| CaptureError::Build {
            description: input.clone(),
            message: "the pipeline has no bus".to_owned(),
        })?;
        let mut running = Running {
            pipeline: built.pipeline,
            rx: Some(rx),
            bus: None,
        };
        running.bus = Some(BusWatch::spawn(bus, tx).map_err(|e| CaptureError::Init {
            message: format!("cannot start the bus thread: {e}"),
        })?);
        let rx = running.rx.as_ref().expect("set above");

        // NoPreroll only comes back from a PAUSED transition; going straight
        // to PLAYING a live pipeline often answers Async, so trust what we
        // built as well.
        let built_live = matches!(video, VideoSource::Test) && opts.live;
        let live = match running.pipeline.set_state(gst::State::Playing) {
            Ok(gst::StateChangeSuccess::NoPreroll) => true,
            Ok(_) => built_live,
            Err(_) => {
                // The element that refused usually posted why.
                let error = match rx.recv_timeout(Duration::from_secs(1)) {
                    Ok(Event::Error(e)) => startup_error(video, e),
                    _ => CaptureError::StateChange {
                        input,
                        state: "PLAYING",
                    },
                };
                return Err(error);
            }
        };

        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending = VecDeque::new();
        let mut clock = None;
        let mut sinks = None;
        let tracks = loop {
            // Past this, leave frames in the channel so the streaming threads
            // block instead of this queue growing while caps are missing.
            if pending.len() < CHANNEL_CAPACITY {
                match rx.recv_timeout(POLL) {
                    Ok(Event::Error(e)) => return Err(startup_error(video, e)),
                    Ok(event) => pending.push_back(event),
                    Err(RecvTimeoutError::Timeout) => {}
                    // Cannot happen while the bus thread holds a sender;
                    // keep the loop from spinning if it ever does.
                    Err(RecvTimeoutError::Disconnected) => std::thread::sleep(POLL),
                }
            } else {
                std::thread::sleep(POLL);
            }
            if sinks.is_none() && running.pipeline.current_state() == gst::State::Playing {
                clock = Some(wall_clock_map(&running.pipeline, live));
                sinks = Some(built.sinks.resolve().map_err(|e| match e {
                    // The pipeline error behind it may still be on its way.
                    CaptureError::Unplayable { .. } => match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(Event::Error(cause)) => startup_error(video, cause),
                        _ => e,
                    },
                    e => e,
                })?);
            }
            let waiting_for = match &sinks {
                None => "the pipeline to reach PLAYING".to_owned(),
                Some(sinks) => {
                    let missing = sinks.iter().find_map(|(track, sink)| {
                        let negotiated = sink.static_pad("sink").is_some_and(|pad| pad.current_caps().is_some());
                        (!negotiated).then(|| format!("caps on the appsink of {track}"))
                    });
                    match missing {
                        Some(m) => m,
                        None => break tracks_of(sinks)?,
                    }
                }
            };
            if Instant::now() >= deadline {
                return Err(CaptureError::StartTimeout {
                    input,
                    timeout: START_TIMEOUT,
                    waiting_for,
                });
            }
        };
        let clock = clock.expect("tracks are only read once PLAYING");
        tracing::info!(%input, live, ?tracks, "capture started");
        Ok(Capture {
            input,
            running,
            pending,
            tracks,
            clock,
            ended: false,
            stopped: false,
        })
    }

    /// The tracks frames belong to: video is track 1, audio (if any) track 2.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Next frame from any track, in arrival order; `Ok(None)` at end of
    /// stream (and after [`Capture::stop`] once drained frames are taken).
    /// An error posted by the pipeline is returned naming the element; the
    /// pipeline has usually stopped by then. No frame within `timeout` is
    /// [`CaptureError::Stalled`].
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        if self.ended {
            return Ok(None);
        }
        let event = match self.pending.pop_front() {
            Some(event) => event,
            None => match &self.running.rx {
                None => {
                    self.ended = true;
                    return Ok(None);
                }
                Some(rx) => match rx.recv_timeout(timeout) {
                    Ok(event) => event,
                    Err(RecvTimeoutError::Timeout) => {
                        return Err(CaptureError::Stalled {
                            input: self.input.clone(),
                            timeout,
                        })
                    }
                    Err(RecvTimeoutError::Disconnected) => {
                        self.ended = true;
                        return Ok(None);
                    }
                },
            },
        };
        match event {
            Event::Frame(frame) => Ok(Some(self.to_frame(frame))),
            Event::Eos => {
                self.ended = true;
                Ok(None)
            }
            Event::Error(e) => Err(e),
        }
    }

    /// Send end of stream, wait (at most 5 s) for the frames still in the
    /// pipeline (an encoder's lookahead, queued audio), keep them for
    /// [`Capture::next_frame`], then stop the pipeline.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let already_ended = self.ended || self.pending.iter().any(|e| matches!(e, Event::Eos));
        if let (false, Some(rx)) = (already_ended, &self.running.rx) {
            self.running.pipeline.send_event(gst::event::Eos::new());
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                if self.pending.len() >= STOP_MAX_FRAMES {
                    tracing::warn!(input = %self.input, "source kept producing after EOS; later frames dropped");
                    break;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(Event::Eos) => {
                        self.pending.push_back(Event::Eos);
                        break;
                    }
                    Ok(event) => self.pending.push_back(event),
                    Err(RecvTimeoutError::Timeout) => {
                        tracing::warn!(input = %self.input, timeout = ?STOP_TIMEOUT, "no end of stream after EOS; stopping anyway");
                        break;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        self.running.shutdown();
        tracing::info!(input = %self.input, "capture stopped");
    }

    fn to_frame(&self, f: RunningFrame) -> Frame {
        Frame {
            track: f.track,
            pts: self.clock.to_utc(f.pts),
            dts: self.clock.to_utc(f.dts),
            duration: f.duration,
            keyframe: f.keyframe,
            data: f.data,
        }
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("input", &self.input)
            .field("tracks", &self.tracks)
            .field("ended", &self.ended)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Refuse a file we cannot open before GStreamer turns it into a vaguer
/// "resource not found" from deep inside a pipeline.
fn check_readable(path: &Path) -> Result<(), CaptureError> {
    let unreadable = |error| CaptureError::FileUnreadable {
        path: path.to_owned(),
        error,
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if meta.is_dir() {
        return Err(unreadable(std::io::Error::other("it is a directory")));
    }
    std::fs::File::open(path).map_err(unreadable)?;
    Ok(())
}

/// Read the wall clock and the running time together. A non-live pipeline
/// runs ahead of real time, so its running time counts from the start.
fn wall_clock_map(pipeline: &gst::Pipeline, live: bool) -> WallClockMap {
    let rt0 = if live {
        pipeline
            .current_running_time()
            .map(|t| Duration::from_nanos(t.nseconds()))
            .unwrap_or_default()
    } else {
        Duration::ZERO
    };
    WallClockMap::at(SystemTime::now(), rt0)
}

fn tracks_of(sinks: &[(fragmenter::TrackId, gstreamer_app::AppSink)]) -> Result<Vec<Track>, CaptureError> {
    sinks
        .iter()
        .map(|(track, sink)| {
            let caps = sink
                .static_pad("sink")
                .and_then(|pad| pad.current_caps())
                .ok_or_else(|| CaptureError::MissingCodecData {
                    caps: format!("(none on the appsink of {track})"),
                })?;
            track_from_caps(*track, &caps)
        })
        .collect()
}

/// While a file is starting, any pipeline error means the file itself
/// could not be read; say which file.
fn startup_error(video: &VideoSource, e: CaptureError) -> CaptureError {
    match (video, e) {
        (VideoSource::File(path), CaptureError::Pipeline { element, message, .. }) => CaptureError::Unplayable {
            path: path.clone(),
            element,
            message,
        },
        (_, e) => e,
    }
}
