//! A running capture: plan and start a source's pipeline (trying the next
//! encoder when a hardware one fails), pull its frames with absolute
//! timestamps, stop it without losing what the encoder still holds.

use std::collections::VecDeque;
use std::fmt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fragmenter::{Frame, Track};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_video::UpstreamForceKeyUnitEvent;

use crate::bus::BusWatch;
use crate::encoder::{encoder_candidates, EncodeSettings};
use crate::error::CaptureError;
use crate::frames::{Event, RunningFrame, CHANNEL_CAPACITY};
use crate::pipeline::build;
use crate::plan::{plan, plan_with_encoder, PipelinePlan, StreamKind};
use crate::platform::Platform;
use crate::source::{AudioCodecChoice, AudioSource, VideoCodecChoice, VideoSource};
use crate::timestamps::WallClockMap;
use crate::tracks::{track_from_caps, video_track_id};

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

/// How RTSP media travels from the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RtspTransport {
    /// Interleaved in the RTSP TCP connection: passes NAT and firewalls,
    /// no loss; the default.
    #[default]
    Tcp,
    /// RTP over UDP: lower latency on a clean LAN, losses become artefacts.
    Udp,
    /// Whatever rtspsrc negotiates (UDP multicast, UDP, then TCP).
    Auto,
}

impl std::str::FromStr for RtspTransport {
    type Err = CaptureError;

    fn from_str(s: &str) -> Result<Self, CaptureError> {
        match s {
            "tcp" => Ok(RtspTransport::Tcp),
            "udp" => Ok(RtspTransport::Udp),
            "auto" => Ok(RtspTransport::Auto),
            _ => Err(CaptureError::InvalidOption {
                field: "rtsp_transport",
                value: s.to_owned(),
                expected: "tcp, udp or auto",
            }),
        }
    }
}

/// How to capture. Encoding options apply to sources we encode (test,
/// cameras without their own H.264, raw user pipelines); streams that are
/// passed through (files, RTSP, H.264 cameras) keep theirs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaptureOptions {
    /// Target fragment length; the encoder puts a key frame at every
    /// multiple.
    pub fragment_duration: Duration,
    /// Picture width in pixels (even); also the camera mode asked for.
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Encoder target bitrate in kbit/s.
    pub video_bitrate_kbps: u32,
    /// The codec to encode video into.
    pub video_codec: VideoCodecChoice,
    /// Audio to capture alongside the video; see [`AudioSource::FromSource`]
    /// for what "the source's own" is for each source.
    pub audio: AudioSource,
    /// Codecs to encode test, ALSA and Pulse audio into: empty means AAC;
    /// two (e.g. AAC and Opus) make two audio tracks from one microphone.
    pub audio_codecs: Vec<AudioCodecChoice>,
    /// RTSP jitter buffer, in milliseconds.
    pub rtsp_latency_ms: u32,
    /// RTSP transport.
    pub rtsp_transport: RtspTransport,
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
            video_codec: VideoCodecChoice::H264,
            audio: AudioSource::FromSource,
            audio_codecs: Vec::new(),
            rtsp_latency_ms: 200,
            rtsp_transport: RtspTransport::Tcp,
            live: true,
            num_buffers: None,
        }
    }
}

impl CaptureOptions {
    /// The defaults, with the audio that suits `video`: the test tone for
    /// the test source, the source's own audio for files, RTSP and user
    /// pipelines, none for cameras (their microphones are ALSA devices).
    pub fn for_source(video: &VideoSource) -> Self {
        let audio = match video {
            VideoSource::Test => AudioSource::Test,
            VideoSource::File(_) | VideoSource::Rtsp(_) | VideoSource::Pipeline(_) => AudioSource::FromSource,
            VideoSource::V4l2(_) | VideoSource::Libcamera(_) | VideoSource::Argus(_) => AudioSource::None,
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
        if self.fragment_duration.is_zero() {
            return invalid(
                "fragment_duration",
                &format_args!("{:?}", self.fragment_duration),
                "more than zero",
            );
        }
        if matches!(video, VideoSource::File(_)) {
            if !matches!(self.audio, AudioSource::FromSource | AudioSource::None) {
                return invalid(
                    "audio",
                    &self.audio,
                    "source or none for a file source (files are read faster than real time; live audio cannot be \
                     mixed in)",
                );
            }
            return Ok(());
        }
        if let VideoSource::Rtsp(_) = video {
            if self.rtsp_latency_ms > 10_000 {
                return invalid("rtsp_latency_ms", &self.rtsp_latency_ms, "0 to 10000 milliseconds");
            }
        }
        // Encoders refuse odd sizes in 4:2:0.
        if self.width == 0 || self.width % 2 == 1 || self.width > 8192 {
            return invalid("width", &self.width, "an even number of pixels from 2 to 8192");
        }
        if self.height == 0 || self.height % 2 == 1 || self.height > 8192 {
            return invalid("height", &self.height, "an even number of pixels from 2 to 8192");
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
        Ok(())
    }
}

/// Asks the video encoder for a key frame: what a WebRTC viewer needs when
/// it joins or loses packets. Cheap to clone; usable from any thread.
///
/// The request is GStreamer's upstream force-key-unit event. Our encoders
/// answer it with the next frame. For video passed through (RTSP, H.264
/// cameras) it travels on towards the source, where an RTP session may turn
/// it into RTCP feedback that many cameras ignore; key frames then come at
/// the camera's own interval.
#[derive(Clone, Default)]
pub struct KeyFrameRequester {
    /// The video appsink's sink pad of the pipeline running now.
    target: Arc<Mutex<Option<gst::Pad>>>,
}

impl KeyFrameRequester {
    /// Send the request upstream from the video appsink; `true` if an
    /// element took it (an encoder, a parser, an RTP session). There is no
    /// answer beyond that: the key frame simply comes sooner.
    pub fn request(&self) -> bool {
        let pad = self.target.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(pad) = pad else {
            return false;
        };
        let event = UpstreamForceKeyUnitEvent::builder().all_headers(true).build();
        let handled = pad.push_event(event);
        tracing::debug!(handled, "key frame requested");
        handled
    }

    pub(crate) fn retarget(&self, other: &KeyFrameRequester) {
        let pad = other.target.lock().unwrap_or_else(|e| e.into_inner()).clone();
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = pad;
    }

    pub(crate) fn clear(&self) {
        *self.target.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl fmt::Debug for KeyFrameRequester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFrameRequester").finish_non_exhaustive()
    }
}

/// A running capture pipeline and the frames it produced so far.
pub struct Capture {
    /// The video source as written (passwords redacted), for messages.
    input: String,
    running: Running,
    /// Frames (and end of stream) taken off the channel before the caller
    /// asked: during start-up, and while draining in `stop`.
    pending: VecDeque<Event>,
    tracks: Vec<Track>,
    clock: WallClockMap,
    live: bool,
    encoder: Option<&'static str>,
    key_frames: KeyFrameRequester,
    ended: bool,
    /// Tracks whose appsink saw end of stream, not yet taken.
    ended_tracks: Vec<fragmenter::TrackId>,
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
        // join them. The bus watcher goes first, while the bus still takes
        // the message that wakes it (it flushes in NULL).
        self.rx = None;
        self.bus = None;
        if let Err(e) = self.pipeline.set_state(gst::State::Null) {
            tracing::warn!("pipeline did not stop cleanly: {e}");
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Capture {
    /// Plan and start the pipeline for `video` on this machine, wait (at
    /// most 10 s) until every appsink has negotiated caps, and return the
    /// tracks (video = track 1, audio = tracks 2 and 3).
    pub fn start(video: &VideoSource, opts: &CaptureOptions) -> Result<Capture, CaptureError> {
        opts.validate(video)?;
        if let VideoSource::File(path) = video {
            check_readable(path)?;
        }
        gst::init().map_err(|e| CaptureError::Init { message: e.to_string() })?;
        let platform = match video {
            VideoSource::V4l2(device) => Platform::probe_for_v4l2(device),
            _ => Platform::probe_quick(),
        };
        Capture::start_on(video, opts, &platform)
    }

    /// [`Capture::start`] on a given platform description: which elements
    /// and devices to plan with. When a hardware encoder fails to start, the
    /// next candidate is tried (ending with the software encoder), and the
    /// failure logged.
    pub fn start_on(video: &VideoSource, opts: &CaptureOptions, platform: &Platform) -> Result<Capture, CaptureError> {
        opts.validate(video)?;
        gst::init().map_err(|e| CaptureError::Init { message: e.to_string() })?;
        let first = plan(video, opts, platform)?;
        let Some(first_encoder) = first.encoder else {
            return Capture::start_plan(video, opts, &first);
        };
        let candidates = encoder_candidates(platform, &EncodeSettings::from_options(opts));
        let mut plan_now = first;
        let mut remaining = candidates.into_iter().skip_while(|e| *e != first_encoder).skip(1);
        loop {
            let encoder = plan_now.encoder;
            match Capture::start_plan(video, opts, &plan_now) {
                Ok(c) => return Ok(c),
                Err(e) if encoder.is_some_and(|e| e.is_hardware()) && is_encoder_failure(&e) => {
                    let Some(next) = remaining.next() else {
                        return Err(e);
                    };
                    tracing::warn!(
                        input = %video.redacted(),
                        failed = ?plan_now.encoder_element(opts.video_codec),
                        next = ?next.element(opts.video_codec),
                        error = %e,
                        "hardware encoder failed to start; trying the next encoder"
                    );
                    plan_now = plan_with_encoder(video, opts, platform, Some(next))?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn start_plan(video: &VideoSource, opts: &CaptureOptions, plan: &PipelinePlan) -> Result<Capture, CaptureError> {
        let input = video.redacted();
        tracing::debug!(%input, "pipeline:\n{}", redact_plan(plan, video));
        let (tx, rx) = sync_channel(CHANNEL_CAPACITY);
        let built = build(video, plan, &tx)?;
        // Every pipeline runs on the monotonic system clock, so running
        // time plus base time is one process-wide timeline (timestamps.rs),
        // whatever clock an audio source would otherwise provide.
        built.pipeline.use_clock(Some(&gst::SystemClock::obtain()));
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
        let explain = |e: CaptureError| built.sinks.explain().unwrap_or_else(|| startup_error(video, opts, e));

        // NoPreroll, the mark of a live pipeline, only comes back from the
        // change to PAUSED; a user pipeline says nothing else about it (a
        // latency query does not help: our appsinks do not sync).
        let refused = |state: &'static str| {
            // The element that refused usually posted why.
            match rx.recv_timeout(Duration::from_secs(1)) {
                Ok(Event::Error(e)) => explain(e),
                _ => CaptureError::StateChange {
                    input: input.clone(),
                    state,
                },
            }
        };
        let live = match running.pipeline.set_state(gst::State::Paused) {
            Ok(gst::StateChangeSuccess::NoPreroll) => true,
            Ok(_) => plan.live.unwrap_or(false),
            Err(_) => return Err(refused("PAUSED")),
        };
        if running.pipeline.set_state(gst::State::Playing).is_err() {
            return Err(refused("PLAYING"));
        }

        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending = VecDeque::new();
        let mut clock = None;
        let mut sinks = None;
        let tracks = loop {
            // Past this, leave frames in the channel so the streaming threads
            // block instead of this queue growing while caps are missing.
            if pending.len() < CHANNEL_CAPACITY {
                match rx.recv_timeout(POLL) {
                    Ok(Event::Error(e)) => return Err(explain(e)),
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
                clock.get_or_insert_with(|| WallClockMap::for_pipeline(&running.pipeline, live));
                sinks = built.sinks.resolve().map_err(|e| match e {
                    // The pipeline error behind it may still be on its way.
                    CaptureError::Unplayable { .. } => match rx.recv_timeout(Duration::from_secs(1)) {
                        Ok(Event::Error(cause)) => startup_error(video, opts, cause),
                        _ => e,
                    },
                    e => e,
                })?;
            }
            let waiting_for = match &sinks {
                None if running.pipeline.current_state() == gst::State::Playing => {
                    "the source to announce its streams".to_owned()
                }
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
        let key_frames = KeyFrameRequester::default();
        let video_sink = sinks
            .as_ref()
            .and_then(|s| s.iter().find(|(t, _)| *t == video_track_id()))
            .and_then(|(_, sink)| sink.static_pad("sink"));
        *key_frames.target.lock().unwrap_or_else(|e| e.into_inner()) = video_sink;
        // A user pipeline uses the encoder only if its output is raw.
        let encoder = match built.video_kind {
            Some(StreamKind::H264 | StreamKind::H265) => None,
            _ => plan.encoder_element(opts.video_codec),
        };
        // Codec IDs and sizes, not the tracks' raw codec bytes.
        let summary: Vec<String> = tracks
            .iter()
            .map(|t| match &t.media {
                fragmenter::media::TrackMedia::Video(v) => format!("{} {}x{}", t.mkv_codec_id(), v.width, v.height),
                fragmenter::media::TrackMedia::Audio(a) => {
                    format!("{} {} Hz {} ch", t.mkv_codec_id(), a.sample_rate, a.channels)
                }
                fragmenter::media::TrackMedia::Sensor(_) => t.mkv_codec_id().to_owned(),
            })
            .collect();
        tracing::info!(%input, live, encoder, tracks = ?summary, "capture started");
        Ok(Capture {
            input,
            running,
            pending,
            tracks,
            clock,
            live,
            encoder,
            key_frames,
            ended: false,
            ended_tracks: Vec::new(),
            stopped: false,
        })
    }

    /// The tracks frames belong to: video is track 1, audio tracks 2 and 3.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// A track that reached its end (after all its frames were returned)
    /// and was not yet taken: a fragmenter need not wait for it any more.
    pub fn take_ended_track(&mut self) -> Option<fragmenter::TrackId> {
        (!self.ended_tracks.is_empty()).then(|| self.ended_tracks.remove(0))
    }

    /// Whether the source runs in real time (cameras, RTSP, live test).
    pub fn is_live(&self) -> bool {
        self.live
    }

    /// The video encoder element in use; `None` when video is passed through.
    pub fn encoder(&self) -> Option<&'static str> {
        self.encoder
    }

    /// Ask for a key frame now; see [`KeyFrameRequester::request`].
    pub fn request_key_frame(&self) -> bool {
        self.key_frames.request()
    }

    /// A handle that asks this capture's encoder for key frames from
    /// another thread.
    pub fn key_frame_requester(&self) -> KeyFrameRequester {
        self.key_frames.clone()
    }

    /// Next frame from any track, in arrival order; `Ok(None)` at end of
    /// stream (and after [`Capture::stop`] once drained frames are taken).
    /// An error posted by the pipeline is returned naming the element; the
    /// pipeline has usually stopped by then. No frame within `timeout` is
    /// [`CaptureError::Stalled`].
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Option<Frame>, CaptureError> {
        let deadline = Instant::now() + timeout;
        loop {
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
                    Some(rx) => match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
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
                Event::Frame(frame) => return Ok(Some(self.to_frame(frame))),
                Event::Eos => {
                    self.ended = true;
                    return Ok(None);
                }
                // A live camera whose video ended is gone, even if a
                // microphone beside it goes on; anything else waits for the
                // whole pipeline's end.
                Event::TrackEos(track) if track == video_track_id() && self.live && !self.stopped => {
                    tracing::info!(input = %self.input, "video ended");
                    self.ended = true;
                    return Ok(None);
                }
                Event::TrackEos(track) => {
                    self.ended_tracks.push(track);
                    continue;
                }
                Event::Error(e) => return Err(e),
            }
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
        self.key_frames.clear();
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
        let (pts, dts) = self.clock.to_utc(f.pts, f.dts);
        Frame {
            track: f.track,
            pts,
            dts,
            duration: f.duration,
            keyframe: f.keyframe,
            data: f.data,
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.key_frames.clear();
    }
}

impl fmt::Debug for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capture")
            .field("input", &self.input)
            .field("tracks", &self.tracks)
            .field("encoder", &self.encoder)
            .field("ended", &self.ended)
            .field("stopped", &self.stopped)
            .finish_non_exhaustive()
    }
}

/// Errors worth trying the next encoder for: anything but bad input.
fn is_encoder_failure(e: &CaptureError) -> bool {
    !matches!(
        e,
        CaptureError::InvalidOption { .. }
            | CaptureError::MissingDevice { .. }
            | CaptureError::UnsupportedCaps { .. }
            | CaptureError::Init { .. }
            | CaptureError::NoCapturableVideo { .. }
    )
}

/// The plan text for logs, without RTSP passwords.
fn redact_plan(plan: &PipelinePlan, video: &VideoSource) -> String {
    let text = plan.to_string();
    match video {
        VideoSource::Rtsp(url) => text.replace(url.as_str(), &video.redacted()),
        _ => text,
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

fn tracks_of(sinks: &[(fragmenter::TrackId, gstreamer_app::AppSink)]) -> Result<Vec<Track>, CaptureError> {
    let mut tracks = sinks
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
        .collect::<Result<Vec<_>, _>>()?;
    tracks.sort_by_key(|t| t.id);
    Ok(tracks)
}

/// While a source is starting, say which file could not be read, which
/// camera mode was refused, or which live source failed.
fn startup_error(video: &VideoSource, opts: &CaptureOptions, e: CaptureError) -> CaptureError {
    let CaptureError::Pipeline {
        element,
        message,
        debug,
    } = e
    else {
        return e;
    };
    match video {
        VideoSource::File(path) => CaptureError::Unplayable {
            path: path.clone(),
            element,
            message,
        },
        _ => {
            let debug = debug.unwrap_or_default();
            let camera = matches!(
                video,
                VideoSource::V4l2(_) | VideoSource::Libcamera(_) | VideoSource::Argus(_)
            );
            if camera && debug.contains("not-negotiated") {
                return CaptureError::UnsupportedCaps {
                    field: "mode",
                    value: format!("{}x{}@{}", opts.width, opts.height, opts.fps),
                    source_name: video.to_string(),
                    offered: "other modes (`edge-agent probe` lists them)".to_owned(),
                };
            }
            // GStreamer's message is generic ("Could not open resource");
            // the debug line's last part says why ("Connection refused").
            let why = debug.rsplit(':').next().map(str::trim).unwrap_or_default();
            let message = if why.is_empty() || message.contains(why) {
                message
            } else {
                format!("{message} ({why})")
            };
            CaptureError::SourceFailed {
                input: video.redacted(),
                element,
                message,
            }
        }
    }
}
