//! Playback's HTTP routes, mounted by the agent on its one port:
//! `/hls/…`, `/dash/…`, `/clip/…`, the web UI (`/`, `/ui/…`).
//!
//! [`Playback::handle`] answers the paths it owns and returns `None` for
//! anything else, so the agent keeps `/api`, `/metrics`, `/healthz` and
//! ingest. Archive calls block (SQLite, files): handlers run them on
//! tokio's blocking pool.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};

use crate::archive::Archive;

/// The body of every playback response: whole buffers or a stream.
pub type Body = BoxBody<Bytes, std::io::Error>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

/// A response with a body, a content type and a cache policy.
pub fn respond(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Errors are JSON with a reason: `{"error": "...", "status": 404}`.
pub fn json_error(status: StatusCode, reason: &str) -> Response<Body> {
    let body = format!(
        "{{\"error\":{},\"status\":{}}}",
        json_string(reason),
        status.as_u16()
    );
    let mut r = respond(status, body, "application/json");
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// `s` as a JSON string literal.
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Settings of the playback routes.
#[derive(Clone, Debug)]
pub struct PlaybackOptions {
    /// Target LL-HLS part duration (200–500 ms).
    pub part_target: std::time::Duration,
}

impl Default for PlaybackOptions {
    fn default() -> Self {
        PlaybackOptions {
            part_target: std::time::Duration::from_millis(334),
        }
    }
}

/// The playback routes over one archive.
pub struct Playback {
    archive: Arc<dyn Archive>,
    options: PlaybackOptions,
}

impl Playback {
    /// Routes over `archive`.
    pub fn new(archive: Arc<dyn Archive>, options: PlaybackOptions) -> Self {
        Playback { archive, options }
    }

    /// The archive served.
    pub fn archive(&self) -> &Arc<dyn Archive> {
        &self.archive
    }

    /// The options in force.
    pub fn options(&self) -> &PlaybackOptions {
        &self.options
    }

    /// Answer `req` if its path is playback's; `None` otherwise.
    pub async fn handle<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let _ = req;
        None
    }
}
