//! Serving media to viewers: HLS/LL-HLS, DASH, MP4 clips, the web UI and the
//! WebRTC peer.
//!
//! Playback reads media through [`archive::Archive`], the read side of the
//! store, which the `agent` crate implements, so it never depends on `agent`.
#![warn(missing_docs)]

pub mod archive;
pub mod http;
