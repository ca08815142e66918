//! Capture for edge-agent: GStreamer pipelines that turn a camera, an RTSP
//! stream, a file or a test source (and a microphone) into
//! [`fragmenter::Frame`]s with absolute UTC timestamps, ready to be cut into
//! fragments; the platform probe and encoder choice behind them; LIDAR and
//! RADAR adapters ([`sensor`]).
//!
//! * [`plan()`]: (source, options, [`Platform`]) → gst-launch text, pure, so
//!   the pipeline chosen for a Raspberry Pi 4, a Jetson or a PC is tested
//!   without the hardware.
//! * [`Capture`]: one running pipeline; [`SupervisedCapture`] restarts it
//!   with backoff when a live source errors, stalls or ends.
//! * [`probe()`]: board, cameras, microphones, working encoders, a suggested
//!   config.
//!
//! | `video =` | what | video | `audio = "source"` |
//! |---|---|---|---|
//! | `test` | SMPTE pattern | encoded | test tone |
//! | `v4l2:/dev/videoN` | USB (UVC) camera | its H.264 passed through, else raw or MJPEG encoded | none |
//! | `libcamera[:NAME]` | Raspberry Pi CSI camera | encoded | none |
//! | `argus:N` | Jetson CSI camera | encoded (NVMM to NVENC) | none |
//! | `rtsp://…` | IP camera | H.264/H.265 passed through | AAC, G.711, Opus passed through |
//! | `file:PATH` | any container GStreamer reads | H.264/H.265 passed through | AAC passed through |
//! | `pipeline:DESC` | a gst-launch description | by what it outputs | its audio output |
//!
//! `audio` may also be `test`, `alsa:hw:N[,D]`, `pulse[:NAME]` or `none`;
//! encoded audio is AAC, Opus or G.711, and one microphone can feed two of
//! them at once (tracks 2 and 3). Encoders are chosen hardware first
//! ([`encoder`]); every frame carries absolute UTC from one process-wide,
//! monotonic mapping of the monotonic clock ([`clock_steps`] counts the
//! system clock's steps it rode out).
//!
//! ```no_run
//! use std::time::Duration;
//! use hardware::{CaptureOptions, SupervisedCapture, SupervisorOptions, VideoSource};
//!
//! let source: VideoSource = "rtsp://192.168.1.64/Streaming/Channels/101".parse()?;
//! let opts = CaptureOptions::for_source(&source);
//! let mut capture = SupervisedCapture::start(&source, &opts, SupervisorOptions::default())?;
//! println!("tracks: {:?}", capture.tracks());
//! while let Some(frame) = capture.next_frame(Duration::from_secs(5))? {
//!     println!("{frame:?}");
//!     # break;
//! }
//! capture.stop();
//! println!("{}", capture.stats());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod bus;
mod capture;
pub mod encoder;
mod error;
mod frames;
mod pipeline;
pub mod plan;
pub mod platform;
pub mod probe;
pub mod sensor;
mod source;
mod supervisor;
pub mod talkback;
mod timestamps;
mod tracks;

pub use capture::{Capture, CaptureOptions, KeyFrameRequester, RtspTransport};
pub use encoder::{EncodeSettings, VideoEncoder};
pub use error::CaptureError;
pub use plan::{plan, PipelinePlan};
pub use platform::{Board, Platform};
pub use probe::{probe, ProbeReport};
pub use source::{redact_url, AudioCodecChoice, AudioSource, SourceError, VideoCodecChoice, VideoSource};
pub use supervisor::{CaptureStats, SupervisedCapture, SupervisorOptions};
pub use timestamps::{clock_steps, now};
