//! The pure core of edge-agent: what a media frame and a track are, how frames
//! are cut into fragments, and how fragments are written as Matroska (for
//! Kinesis Video Streams PutMedia) or as fragmented MP4 / CMAF (for HLS, DASH
//! and clips).
//!
//! Nothing here does I/O or blocks: writers append to in-memory sinks and the
//! MKV reader is fed bytes as they arrive, so the same code serves a file, a
//! socket, or a test.
#![warn(missing_docs)]

pub mod codec;
pub mod fmp4;
pub mod fragment;
pub mod media;
pub mod mkv;
pub mod sink;
#[cfg(test)]
mod test_support;

pub use fragment::{FragmentEvent, FragmentPolicy, Fragmenter};
pub use media::{Frame, Timestamp, Track, TrackId};
