//! Progressive MP4 clips: `GET /clip/{stream}.mp4?start=&end=`.
//!
//! A clip is a fragmented MP4 (`ftyp` + `moov`, then one `moof` + `mdat` per
//! stored fragment in the range) that browsers play in a `<video>`, ffmpeg
//! and VLC open, and `curl -o` saves. It starts at the key frame at or
//! before `start` and ends with the last frame before `end`.
//!
//! The exact length is known before the first byte goes out ([`plan`]), so
//! responses carry `Content-Length`, answer `Range` requests (206, 416),
//! `HEAD`, `If-Range` and `If-None-Match`, and stream fragment by fragment
//! without spooling or buffering the clip ([`body`]).

mod body;
mod plan;
mod range;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use fragmenter::fmp4::Fmp4Error;
use fragmenter::Timestamp;
use http_body_util::BodyExt;
use hyper::header::{
    HeaderValue, ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG,
    IF_NONE_MATCH, IF_RANGE, RANGE,
};
use hyper::{HeaderMap, Response, StatusCode};

pub use range::{interpret as interpret_range, RangeReply};

use crate::archive::{Archive, ArchiveError};
use crate::http::{full, json_error, Body};
use crate::time::{parse_time, TimeError};

/// The longest clip served: a day. Planning reads every fragment in range,
/// which for longer spans is better done by `edge-agent export`.
pub const MAX_CLIP: Duration = Duration::from_secs(24 * 3600);

/// Why a clip cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A query parameter is missing.
    #[error("missing {0} parameter (RFC 3339 or Unix epoch milliseconds)")]
    Missing(&'static str),
    /// A time parameter does not parse.
    #[error(transparent)]
    BadTime(#[from] TimeError),
    /// `end` is not after `start`, or the span is too long.
    #[error("{0}")]
    BadSpan(String),
    /// Nothing recorded in the range.
    #[error("no recording of {stream:?} between {start} and {end}")]
    NothingRecorded {
        /// The stream.
        stream: String,
        /// Requested start.
        start: Timestamp,
        /// Requested end.
        end: Timestamp,
    },
    /// The stream records only sensor data (or audio MP4 cannot carry).
    #[error("stream {0:?} has no video or audio track that MP4 can carry")]
    NoAudioVideo(String),
    /// The archive failed or does not know the stream.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// The recording cannot be written as fMP4.
    #[error("stream {0:?}: {1}")]
    Encode(String, Fmp4Error),
    /// A bug: what the writer produced is not laid out as expected.
    #[error("stream {stream:?}: {reason}")]
    Internal {
        /// The stream.
        stream: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClipError {
    /// The HTTP status that says this to a client.
    pub fn status(&self) -> StatusCode {
        match self {
            ClipError::Missing(_) | ClipError::BadTime(_) | ClipError::BadSpan(_) => StatusCode::BAD_REQUEST,
            ClipError::NothingRecorded { .. }
            | ClipError::NoAudioVideo(_)
            | ClipError::Archive(ArchiveError::UnknownStream(_)) => StatusCode::NOT_FOUND,
            ClipError::Archive(_) | ClipError::Encode(..) | ClipError::Internal { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// Answer `GET` (or `HEAD` when `head_only`) `/clip/{stream}.mp4?{query}`.
/// `stream` is the name without `.mp4`; `query` the raw query string.
///
/// 200 (or 206 for a satisfiable `Range`, 416 otherwise, 304 for a matching
/// `If-None-Match`) with `video/mp4`; 400 JSON naming a missing or bad
/// parameter; 404 JSON for an unknown stream or an empty range.
pub async fn serve(
    archive: Arc<dyn Archive>,
    stream: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    head_only: bool,
) -> Response<Body> {
    let mut response = match serve_inner(archive, stream, query, headers, head_only).await {
        Ok(r) => r,
        Err(e) => {
            let status = e.status();
            if status.is_server_error() {
                tracing::error!(stream, "clip failed: {e}");
            } else {
                tracing::debug!(stream, "clip refused: {e}");
            }
            json_error(status, &e.to_string())
        }
    };
    crate::http::reply::allow_any_origin(
        response.headers_mut(),
        "Content-Length, Content-Range, Accept-Ranges, ETag",
    );
    response
}

async fn serve_inner(
    archive: Arc<dyn Archive>,
    stream: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    head_only: bool,
) -> Result<Response<Body>, ClipError> {
    let (start, end) = span(query)?;
    let task = {
        let archive = Arc::clone(&archive);
        let name = stream.to_owned();
        tokio::task::spawn_blocking(move || plan::plan(archive.as_ref(), &name, start, end))
    };
    let plan = task.await.map_err(|e| ClipError::Internal {
        stream: stream.to_owned(),
        reason: format!("planning task failed: {e}"),
    })??;

    let header = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    let etag = HeaderValue::from_str(&plan.etag).expect("an ETag is hex in quotes");

    if header(IF_NONE_MATCH).is_some_and(|v| etag_matches(v, &plan.etag)) {
        let mut r = Response::new(full(bytes::Bytes::new()));
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r.headers_mut().insert(ETAG, etag);
        return Ok(r);
    }
    // If-Range: the range applies only to the representation the client
    // already has part of; otherwise it gets the whole new one.
    let range_header = match header(IF_RANGE) {
        Some(v) if v.trim() != plan.etag => None,
        _ => header(RANGE),
    };
    let (status, first, last) = match range::interpret(range_header, plan.len) {
        RangeReply::Full => (StatusCode::OK, 0, plan.len - 1),
        RangeReply::Partial { first, last } => (StatusCode::PARTIAL_CONTENT, first, last),
        RangeReply::Unsatisfiable => {
            let mut r = json_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &format!("the clip is {} bytes long", plan.len),
            );
            r.headers_mut().insert(
                CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{}", plan.len)).expect("ASCII"),
            );
            r.headers_mut().insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            return Ok(r);
        }
    };

    let body = if head_only {
        full(bytes::Bytes::new())
    } else {
        body::send(archive, Arc::clone(&plan), first, last)
            .map_frame(|f| f.map_data(crate::http::reply::BodyChunks::from))
            .boxed()
    };
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(CONTENT_LENGTH, HeaderValue::from(last + 1 - first));
    if status == StatusCode::PARTIAL_CONTENT {
        h.insert(
            CONTENT_RANGE,
            HeaderValue::from_str(&format!("bytes {first}-{last}/{}", plan.len)).expect("ASCII"),
        );
    }
    h.insert(ETAG, etag);
    // Revalidate each time: retention may delete fragments, and a range
    // reaching into the future grows while recording goes on.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{}\"", file_name(stream, start))) {
        h.insert(CONTENT_DISPOSITION, v);
    }
    Ok(r)
}

/// `start` and `end` from the query, checked.
fn span(query: Option<&str>) -> Result<(Timestamp, Timestamp), ClipError> {
    let start = param(query, "start").ok_or(ClipError::Missing("start"))?;
    let end = param(query, "end").ok_or(ClipError::Missing("end"))?;
    let start = parse_time("start", &start)?;
    let end = parse_time("end", &end)?;
    if end <= start {
        return Err(ClipError::BadSpan(format!("end {end} is not after start {start}")));
    }
    if end - start > MAX_CLIP {
        return Err(ClipError::BadSpan(format!(
            "start {start} to end {end} is longer than the {} h a clip may span",
            MAX_CLIP.as_secs() / 3600
        )));
    }
    Ok((start, end))
}

/// The value of `name` in a query string, percent-decoded. A `+` stays a
/// `+`: it is the RFC 3339 offset sign far more often than a space here.
fn param<'a>(query: Option<&'a str>, name: &str) -> Option<Cow<'a, str>> {
    let raw = query?
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == name)?
        .1;
    if !raw.contains('%') {
        return Some(Cow::Borrowed(raw));
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: Option<&u8>| b.and_then(|b| (*b as char).to_digit(16));
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(Cow::Owned(String::from_utf8_lossy(&out).into_owned()))
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn etag_matches(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// `{stream}-{start}.mp4` with the start in basic ISO 8601
/// (`20261126T030000Z`): no colons, which some file systems refuse.
fn file_name(stream: &str, start: Timestamp) -> String {
    let rfc = start.to_rfc3339();
    let compact: String = rfc
        .split('.')
        .next()
        .unwrap_or(&rfc)
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let safe: String = stream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{safe}-{compact}Z.mp4")
}
