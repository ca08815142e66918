//! Playback's HTTP routes, mounted by the agent on its one port:
//! `/hls/…`, `/dash/…`, `/clip/…`, the web UI (`/`, `/ui/…`).
//!
//! [`Playback::handle`] answers the paths it owns and returns `None` for
//! anything else, so the agent keeps `/api`, `/metrics`, `/healthz` and
//! ingest. Archive calls block (SQLite, files): handlers run them on
//! tokio's blocking pool.
//!
//! Routing is one `match` in [`Playback::handle`]; every response goes
//! through [`reply::Reply::finish`] (caching, CORS, gzip, HEAD).

pub mod query;
pub mod reply;
pub(crate) mod serve;

#[cfg(test)]
mod tests;

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};

use crate::archive::cache::CachedArchive;
use crate::archive::Archive;
use crate::live::LiveHub;
use reply::Reply;

/// The body of every playback response: whole buffers or a stream.
pub type Body = BoxBody<reply::BodyChunks, std::io::Error>;

/// A body holding `bytes`.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(reply::BodyChunks::from(bytes.into()))
        .map_err(|never| match never {})
        .boxed()
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
    let body = format!("{{\"error\":{},\"status\":{}}}", json_string(reason), status.as_u16());
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
    /// A stream's live packager thread stops after this long without a
    /// request for its live playlist, parts or segments.
    pub live_idle: std::time::Duration,
    /// Payload bytes of recorded fragments kept in memory for repeated
    /// segment, clip and sensor requests (0: none). Resident memory, so
    /// small on a Pi: 8 MB holds about sixteen 2 s fragments at 2 Mbit/s.
    pub fragment_cache_bytes: usize,
}

impl Default for PlaybackOptions {
    fn default() -> Self {
        PlaybackOptions {
            part_target: std::time::Duration::from_millis(334),
            live_idle: std::time::Duration::from_secs(60),
            fragment_cache_bytes: 8 << 20,
        }
    }
}

/// The playback routes over one archive.
///
/// Creating it starts nothing. The first live request for a stream
/// (`live.m3u8`, `live.mpd`) starts that stream's packager thread
/// (`live-{stream}`), which stops after [`PlaybackOptions::live_idle`]
/// without requests, or when the `Playback` is dropped.
pub struct Playback {
    pub(crate) archive: Arc<dyn Archive>,
    pub(crate) options: PlaybackOptions,
    pub(crate) live: LiveHub,
    cache: Option<Arc<CachedArchive>>,
}

impl Playback {
    /// Routes over `archive`.
    pub fn new(archive: Arc<dyn Archive>, options: PlaybackOptions) -> Self {
        let cache = (options.fragment_cache_bytes > 0)
            .then(|| Arc::new(CachedArchive::new(archive.clone(), options.fragment_cache_bytes)));
        let archive: Arc<dyn Archive> = match &cache {
            Some(c) => c.clone(),
            None => archive,
        };
        let live = LiveHub::new(archive.clone(), options.part_target, options.live_idle);
        Playback {
            archive,
            options,
            live,
            cache,
        }
    }

    /// Drop every fragment read back and cached. Cached payloads map their
    /// segment files, so a file deleted since keeps its disk space until
    /// they go: call this after retention deletes.
    pub fn forget_cached_fragments(&self) {
        if let Some(c) = &self.cache {
            c.clear();
        }
    }

    /// The archive served.
    pub fn archive(&self) -> &Arc<dyn Archive> {
        &self.archive
    }

    /// The options in force.
    pub fn options(&self) -> &PlaybackOptions {
        &self.options
    }

    /// Streams whose live packager is running (for `/api` and metrics).
    pub fn live_streams(&self) -> Vec<String> {
        self.live.running()
    }

    /// Answer `req` if its path is playback's; `None` otherwise.
    pub async fn handle<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let path = req.uri().path();
        let head = req.method() == Method::HEAD;
        let readable = req.method() == Method::GET || head;
        // The web UI: the page and its assets.
        if readable {
            if let Some(r) = crate::web::respond(path, head) {
                return Some(r);
            }
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        // Clips: /clip/{stream}.mp4
        if let ["clip", file] = segments.as_slice() {
            let stream = file.strip_suffix(".mp4").unwrap_or(file);
            return Some(if req.method() == Method::OPTIONS {
                Reply::preflight().finish(req.headers(), false)
            } else if !readable {
                Reply::error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    format!("{} is not allowed on {path}: use GET or HEAD", req.method()),
                )
                .finish(req.headers(), head)
            } else if !file.ends_with(".mp4") || !query::valid_stream_name(stream) {
                Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!("expected /clip/{{stream}}.mp4 with a valid stream name, got {path:?}"),
                )
                .finish(req.headers(), head)
            } else {
                crate::clip::serve(self.archive.clone(), stream, req.uri().query(), req.headers(), head).await
            });
        }
        // The prefixes playback owns. To add routes (clips, web UI), add
        // them here and in `route` below.
        let (kind, stream, rest) = match segments.as_slice() {
            // Nothing after the prefix: no stream named, nothing to serve.
            ["hls" | "dash"] | ["hls" | "dash", ""] => ("", "-", &[][..]),
            [kind @ ("hls" | "dash"), stream, rest @ ..] => (*kind, *stream, rest),
            _ => return None,
        };
        let reply = if req.method() == Method::OPTIONS {
            Reply::preflight()
        } else if req.method() != Method::GET && !head {
            Reply::error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}: use GET or HEAD", req.method()),
            )
        } else if !query::valid_stream_name(stream) {
            Reply::error(
                StatusCode::BAD_REQUEST,
                format!("stream name {stream:?} is invalid: expected [A-Za-z0-9._-], not starting with '.'"),
            )
        } else {
            self.route(kind, stream, rest, req.uri().query()).await
        };
        Some(reply.finish(req.headers(), head))
    }

    async fn route(&self, kind: &str, stream: &str, rest: &[&str], query: Option<&str>) -> Reply {
        match kind {
            "hls" => crate::hls::route(self, stream, rest, query).await,
            "dash" => crate::dash::route(self, stream, rest, query).await,
            _ => Reply::error(StatusCode::NOT_FOUND, "no such playback resource"),
        }
    }
}

impl Drop for Playback {
    fn drop(&mut self) {
        self.live.stop_all();
    }
}
