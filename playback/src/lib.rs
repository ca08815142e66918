//! Serving media to viewers: HLS/LL-HLS, DASH, MP4 clips, the web UI and the
//! WebRTC peer.
//!
//! Nothing is served yet: this crate holds the place the fixed layout gives
//! it. Playback reads media through a read-side trait of the store that the
//! `agent` crate implements, so it never depends on `agent`.
#![warn(missing_docs)]
