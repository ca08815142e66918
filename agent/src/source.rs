//! One face for every kind of capture the CLI can start: a camera or file
//! through GStreamer, or a LIDAR/RADAR sensor through its adapter.

use std::time::Duration;

use anyhow::{Context, Result};
use fragmenter::{FragmentPolicy, Frame, Track, TrackId};
use hardware::sensor::{SensorCapture, SensorOptions, SensorUri};
use hardware::{AudioSource, Capture, CaptureOptions, SupervisedCapture, SupervisorOptions, VideoSource};

/// What `--source` named.
pub enum SourceSpec {
    /// A camera, file or test source (video, maybe audio).
    Video(VideoSource),
    /// A sensor adapter.
    Sensor(SensorUri),
}

impl SourceSpec {
    /// Sensor URIs are recognised by their scheme; anything else is a video
    /// source (whose parser names what it does not know).
    pub fn parse(s: &str) -> Result<Self> {
        let scheme = s.split(':').next().unwrap_or_default();
        if matches!(scheme, "velodyne" | "ouster" | "mmwave" | "ars408") {
            return Ok(SourceSpec::Sensor(s.parse()?));
        }
        Ok(SourceSpec::Video(s.parse()?))
    }

    /// Whether the source runs in real time (then `--duration` is also a
    /// wall-clock limit: a quiet sensor must not keep the command running).
    pub fn is_live(&self) -> bool {
        !matches!(self, SourceSpec::Video(VideoSource::File(_)))
    }

    /// The fragment policy for this source. A file is demuxed faster than
    /// real time and its tracks reach us from separate streaming threads, so
    /// one track can run seconds ahead of another: waiting for the slower
    /// track without limit costs only the file's own interleave, whereas the
    /// live window would drop its frames as late.
    pub fn fragment_policy(&self, target: Duration) -> Result<FragmentPolicy> {
        let policy = FragmentPolicy::new(target)?;
        Ok(if self.is_live() {
            policy
        } else {
            policy.with_interleave_window(Duration::MAX)
        })
    }
}

/// A started capture of either kind.
pub enum Source {
    /// GStreamer capture of a file: it ends, it is never restarted.
    Video(Capture),
    /// GStreamer capture of a live source, restarted with backoff when it
    /// errors or stalls.
    Supervised(Box<SupervisedCapture>),
    /// Sensor capture.
    Sensor(SensorCapture),
}

impl Source {
    /// Start the capture described by `spec`.
    pub fn start(spec: &SourceSpec, video_opts: &CaptureOptions, stall_timeout: Duration) -> Result<Self> {
        Ok(match spec {
            SourceSpec::Video(v @ VideoSource::File(_)) => Source::Video(Capture::start(v, video_opts)?),
            SourceSpec::Video(v) => {
                let supervision = SupervisorOptions {
                    stall_timeout,
                    ..SupervisorOptions::default()
                };
                Source::Supervised(Box::new(SupervisedCapture::start(v, video_opts, supervision)?))
            }
            SourceSpec::Sensor(uri) => {
                Source::Sensor(SensorCapture::start(uri, &SensorOptions::default()).context("cannot start the sensor")?)
            }
        })
    }

    /// The tracks frames will carry.
    pub fn tracks(&self) -> &[Track] {
        match self {
            Source::Video(c) => c.tracks(),
            Source::Supervised(c) => c.tracks(),
            Source::Sensor(c) => c.tracks(),
        }
    }

    /// The next frame, or `Poll::Quiet` when a sensor sent nothing within
    /// `timeout` (a quiet sensor is normal; a stalled camera is an error).
    pub fn next_frame(&mut self, timeout: Duration) -> Result<Poll> {
        match self {
            Source::Video(c) => {
                if let Some(track) = c.take_ended_track() {
                    return Ok(Poll::TrackEnded(track));
                }
                match c.next_frame(timeout) {
                    Ok(Some(f)) => Ok(Poll::Frame(f)),
                    Ok(None) => Ok(Poll::End),
                    // The caller decides how long silence may last.
                    Err(hardware::CaptureError::Stalled { .. }) => Ok(Poll::Quiet),
                    Err(e) => Err(e.into()),
                }
            }
            Source::Supervised(c) => match c.next_frame(timeout) {
                Ok(Some(f)) => Ok(Poll::Frame(f)),
                Ok(None) => Ok(Poll::End),
                Err(hardware::CaptureError::Stalled { .. }) => Ok(Poll::Quiet),
                Err(e) => Err(e.into()),
            },
            Source::Sensor(c) => match c.next_frame(timeout) {
                Ok(Some(f)) => Ok(Poll::Frame(f)),
                Ok(None) => Ok(Poll::End),
                Err(hardware::sensor::SensorCaptureError::Stalled { .. }) => Ok(Poll::Quiet),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Ask the source to finish: remaining frames still come out of
    /// `next_frame`, then `Poll::End`.
    pub fn stop(&mut self) {
        match self {
            Source::Video(c) => c.stop(),
            Source::Supervised(c) => c.stop(),
            Source::Sensor(c) => c.stop(),
        }
    }

    /// A handle that asks the encoder for key frames from another thread
    /// (WebRTC viewers), when the source has an encoder to ask.
    pub fn key_frame_requester(&self) -> Option<hardware::KeyFrameRequester> {
        match self {
            Source::Video(c) => Some(c.key_frame_requester()),
            Source::Supervised(c) => Some(c.key_frame_requester()),
            Source::Sensor(_) => None,
        }
    }

    /// Ask the encoder for a key frame (when the fragmenter is waiting for
    /// one); a no-op for sources that cannot.
    pub fn request_key_frame(&self) {
        if let Source::Supervised(c) = self {
            c.request_key_frame();
        }
    }

    /// Restarts after failures, for status pages.
    pub fn restarts(&self) -> u64 {
        match self {
            Source::Supervised(c) => c.stats().restarts,
            _ => 0,
        }
    }

    /// A line of counters for the summary, when the source keeps any.
    pub fn summary(&self) -> Option<String> {
        match self {
            Source::Video(_) => None,
            Source::Supervised(c) => {
                let s = c.stats();
                Some(format!(
                    "capture: {} restart(s) ({} stall(s), {} error(s), {} end(s)), {} frame(s) dropped before a key frame after a restart",
                    s.restarts, s.stalls, s.errors, s.ends, s.dropped_before_key_frame
                ))
            }
            Source::Sensor(c) => {
                let s = c.stats();
                let skipped: Vec<String> = s
                    .skipped_by_reason()
                    .into_iter()
                    .map(|(r, n)| format!("{} {n}", r.as_str()))
                    .collect();
                Some(format!(
                    "sensor: {} packet(s), {} frame(s) ({} partial), skipped: {}",
                    s.packets,
                    s.frames,
                    s.partial_frames,
                    if skipped.is_empty() {
                        "none".to_owned()
                    } else {
                        skipped.join(", ")
                    }
                ))
            }
        }
    }
}

/// What a poll of the source found.
pub enum Poll {
    /// A frame.
    Frame(Frame),
    /// Nothing within the timeout (live sensors only).
    Quiet,
    /// One track of a file has no more frames (the others may go on).
    TrackEnded(TrackId),
    /// The source has ended.
    End,
}

/// Audio for a video source when `--audio` is not given.
pub fn default_audio(spec: &SourceSpec) -> AudioSource {
    match spec {
        SourceSpec::Video(VideoSource::Test) => AudioSource::Test,
        _ => AudioSource::FromSource,
    }
}
