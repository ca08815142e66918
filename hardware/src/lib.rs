//! Capture for edge-agent: GStreamer pipelines that turn a video source
//! (and its audio) into [`fragmenter::Frame`]s with absolute UTC timestamps,
//! ready to be cut into fragments.
//!
//! ```no_run
//! use std::time::Duration;
//! use hardware::{Capture, CaptureOptions, VideoSource};
//!
//! let source: VideoSource = "test".parse()?;
//! let mut capture = Capture::start(&source, &CaptureOptions::for_source(&source))?;
//! println!("tracks: {:?}", capture.tracks());
//! while let Some(frame) = capture.next_frame(Duration::from_secs(5))? {
//!     println!("{frame:?}");
//!     # break;
//! }
//! capture.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod bus;
mod capture;
mod error;
mod frames;
mod pipeline;
pub mod sensor;
mod source;
mod timestamps;
mod tracks;

pub use capture::{Capture, CaptureOptions};
pub use error::CaptureError;
pub use source::{AudioSource, SourceError, VideoSource};
