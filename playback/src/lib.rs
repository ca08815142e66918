//! Serving media to viewers: HLS/LL-HLS, DASH, MP4 clips, the web UI and the
//! WebRTC peer.
//!
//! Playback reads media through [`archive::Archive`], the read side of the
//! store, which the `agent` crate implements, so it never depends on `agent`.
#![warn(missing_docs)]

pub mod archive;
pub mod clip;
pub mod dash;
pub mod hls;
pub mod http;
pub mod live;
pub mod mapped;
pub mod recorded;
pub mod segments;
#[cfg(test)]
mod test_media;
pub mod time;
pub mod web;
pub mod webrtc;
