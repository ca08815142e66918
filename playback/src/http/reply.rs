//! What every playback response gets on its way out: caching policy, CORS,
//! gzip for playlists, HEAD without a body.
//!
//! Route handlers return a [`Reply`]; [`Reply::finish`] applies the rules in
//! one place so no route can forget one.

use std::collections::VecDeque;
use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, SizeHint};
use hyper::header::{
    HeaderMap, HeaderValue, ACCEPT_ENCODING, ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS,
    ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL,
    CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use hyper::{Response, StatusCode};

use super::{json_string, Body};

/// HLS playlists.
pub const M3U8: &str = "application/vnd.apple.mpegurl";
/// DASH manifests.
pub const MPD: &str = "application/dash+xml";
/// Init segments.
pub const MP4: &str = "video/mp4";
/// Media segments and parts.
pub const SEGMENT: &str = "video/iso.segment";

/// How long a response may be reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cache {
    /// Segments, parts, init segments: a URI always means the same bytes.
    Immutable,
    /// Live playlists and MPDs, errors: ask again every time.
    NoCache,
    /// Recorded-range playlists: stable but retention may shorten them.
    Short,
}

impl Cache {
    fn header(self) -> HeaderValue {
        HeaderValue::from_static(match self {
            Cache::Immutable => "public, max-age=31536000, immutable",
            Cache::NoCache => "no-cache",
            Cache::Short => "public, max-age=10",
        })
    }
}

/// A response before the common rules are applied.
#[derive(Debug)]
pub struct Reply {
    status: StatusCode,
    content_type: &'static str,
    cache: Cache,
    chunks: Vec<Bytes>,
}

impl Reply {
    /// 200 with a body made of `chunks`.
    pub fn ok(content_type: &'static str, cache: Cache, chunks: Vec<Bytes>) -> Self {
        Reply {
            status: StatusCode::OK,
            content_type,
            cache,
            chunks,
        }
    }

    /// 200 with a text body (playlists, manifests).
    pub fn text(content_type: &'static str, cache: Cache, text: String) -> Self {
        Self::ok(content_type, cache, vec![Bytes::from(text)])
    }

    /// An error as JSON: `{"error": reason, "status": n}`.
    pub fn error(status: StatusCode, reason: impl AsRef<str>) -> Self {
        let body = format!(
            "{{\"error\":{},\"status\":{}}}",
            json_string(reason.as_ref()),
            status.as_u16()
        );
        Reply {
            status,
            content_type: "application/json",
            cache: Cache::NoCache,
            chunks: vec![Bytes::from(body)],
        }
    }

    /// 204 for a CORS preflight.
    pub fn preflight() -> Self {
        Reply {
            status: StatusCode::NO_CONTENT,
            content_type: "text/plain",
            cache: Cache::NoCache,
            chunks: Vec::new(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The body's bytes joined (copies; for tests).
    pub fn body_bytes(&self) -> Vec<u8> {
        self.chunks.iter().flat_map(|c| c.iter().copied()).collect()
    }

    /// Apply the common rules: `Cache-Control`, CORS, gzip of playlists and
    /// manifests when `request` accepts it, and no body for HEAD.
    pub fn finish(self, request: &HeaderMap, head: bool) -> Response<Body> {
        let Reply {
            status,
            content_type,
            cache,
            mut chunks,
        } = self;
        let mut headers = HeaderMap::new();
        let text = matches!(content_type, M3U8 | MPD | "application/json");
        if text {
            headers.insert(VARY, HeaderValue::from_static("Accept-Encoding"));
            if accepts_gzip(request) {
                if let Some(z) = gzip(&chunks) {
                    chunks = vec![z];
                    headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                }
            }
        }
        let len: usize = chunks.iter().map(Bytes::len).sum();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(CACHE_CONTROL, cache.header());
        headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        if status == StatusCode::NO_CONTENT {
            headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
            headers.remove(CONTENT_TYPE);
            headers.insert(
                ACCESS_CONTROL_ALLOW_METHODS,
                HeaderValue::from_static("GET, HEAD, OPTIONS"),
            );
            headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("*"));
            headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
        } else {
            allow_any_origin(&mut headers, "Content-Length, Content-Type");
        }
        if head {
            chunks.clear();
        }
        let mut response = Response::new(ChunksBody::new(chunks).boxed());
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// CORS for media that players on other origins read: any origin may, and
/// may see the `expose`d headers (clips add the range headers).
pub fn allow_any_origin(headers: &mut HeaderMap, expose: &'static str) {
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(expose));
}

/// Whether `Accept-Encoding` allows gzip (and does not refuse it with q=0).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut fields = item.split(';').map(str::trim);
            let coding = fields.next().unwrap_or("");
            let refused = fields.any(|p| {
                p.strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && !refused
        })
}

fn gzip(chunks: &[Bytes]) -> Option<Bytes> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for c in chunks {
        z.write_all(c).ok()?;
    }
    z.finish().ok().map(Bytes::from)
}

/// Body data made of shared buffers, handed to hyper as one piece.
///
/// hyper queues at most 16 data frames before it writes, so a segment sent
/// as one frame per `Bytes` (a frame per video or audio sample) went out in
/// a `writev` per 16 samples. As one `Buf` whose `chunks_vectored` fills
/// every slice it is given, the same segment goes out in `writev`s of up
/// to 64 slices, each payload copied once, from where it lies (a mapping
/// of the segment file) into the socket.
#[derive(Debug, Default)]
pub struct BodyChunks {
    chunks: VecDeque<Bytes>,
    remaining: usize,
}

impl BodyChunks {
    /// `chunks`, in order (empty ones dropped).
    pub fn new(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: VecDeque<Bytes> = chunks.into_iter().filter(|c| !c.is_empty()).collect();
        let remaining = chunks.iter().map(Bytes::len).sum();
        BodyChunks { chunks, remaining }
    }
}

impl From<Bytes> for BodyChunks {
    fn from(b: Bytes) -> Self {
        Self::new([b])
    }
}

impl bytes::Buf for BodyChunks {
    fn remaining(&self) -> usize {
        self.remaining
    }

    fn chunk(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| &c[..])
    }

    fn advance(&mut self, mut cnt: usize) {
        assert!(cnt <= self.remaining, "advance past the end of the body");
        self.remaining -= cnt;
        while cnt > 0 {
            let front = self.chunks.front_mut().expect("remaining counts the chunks");
            if cnt < front.len() {
                bytes::Buf::advance(front, cnt);
                return;
            }
            cnt -= front.len();
            self.chunks.pop_front();
        }
    }

    fn chunks_vectored<'a>(&'a self, dst: &mut [std::io::IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (slot, c) in dst.iter_mut().zip(&self.chunks) {
            *slot = std::io::IoSlice::new(c);
            n += 1;
        }
        n
    }
}

/// A body of shared buffers sent as one data frame: segments go out as the
/// frames' own payloads, never joined into a copy.
#[derive(Debug)]
pub struct ChunksBody {
    data: Option<BodyChunks>,
}

impl ChunksBody {
    /// A body of `chunks`, in order.
    pub fn new(chunks: Vec<Bytes>) -> Self {
        let data = BodyChunks::new(chunks);
        ChunksBody {
            data: (data.remaining > 0).then_some(data),
        }
    }
}

impl hyper::body::Body for ChunksBody {
    type Data = BodyChunks;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<BodyChunks>, Self::Error>>> {
        Poll::Ready(self.data.take().map(|d| Ok(Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.remaining as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_used_only_when_accepted() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("br, gzip;q=0.8"));
        assert!(accepts_gzip(&h));
        h.insert(ACCEPT_ENCODING, HeaderValue::from_static("gzip;q=0, identity"));
        assert!(!accepts_gzip(&h));
    }

    #[test]
    fn body_chunks_advance_across_chunks_and_fill_every_slice() {
        use bytes::Buf;
        let mut b = BodyChunks::new([Bytes::from_static(b"abc"), Bytes::new(), Bytes::from_static(b"defg")]);
        assert_eq!(b.remaining(), 7);
        let mut io = [std::io::IoSlice::new(&[]); 4];
        assert_eq!(b.chunks_vectored(&mut io), 2, "the empty chunk is dropped");
        b.advance(4);
        assert_eq!((b.remaining(), b.chunk()), (3, &b"efg"[..]));
        b.advance(3);
        assert_eq!((b.remaining(), b.chunk()), (0, &b""[..]));
    }
}
