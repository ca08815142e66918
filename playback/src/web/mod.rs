//! The web UI: one page (`/`) with its script, style sheet and hls.js under
//! `/ui/`, all embedded in the binary so the agent serves them with no files
//! to install next to it.
//!
//! The sources are in `playback/web/`: `index.html`, `app.js` and `app.css`
//! are hand-written; `hls.min.js` comes from npm at build time (pinned in
//! `web/package-lock.json`, fetched by `build.rs`), never from the repository.

#[cfg(test)]
mod tests;

use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::{Response, StatusCode};

use crate::http::{full, Body};

macro_rules! web_file {
    ($name:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $name))
    };
}

/// (path, content type, bytes) of every asset.
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", "text/html; charset=utf-8", web_file!("index.html")),
    ("/ui/app.js", "text/javascript; charset=utf-8", web_file!("app.js")),
    ("/ui/app.css", "text/css; charset=utf-8", web_file!("app.css")),
    (
        "/ui/hls.min.js",
        "text/javascript; charset=utf-8",
        web_file!("node_modules/hls.js/dist/hls.min.js"),
    ),
];

/// The content type and bytes of the asset at `path` (`/`, `/ui/app.js`,
/// `/ui/app.css`, `/ui/hls.min.js`; `/index.html` is `/`), or `None`.
pub fn asset(path: &str) -> Option<(&'static str, &'static [u8])> {
    let path = if path == "/index.html" { "/" } else { path };
    ASSETS
        .iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, bytes)| (*content_type, *bytes))
}

/// The `Cache-Control` for an asset. The page is revalidated every time so
/// a new agent's UI shows at the next load; the files it references keep
/// their URLs across versions, so they are cached briefly rather than
/// forever.
pub fn cache_control(path: &str) -> &'static str {
    if path.starts_with("/ui/") {
        "public, max-age=300"
    } else {
        "no-cache"
    }
}

/// A complete response for `GET` or `HEAD` of `path`, or `None` when `path`
/// is not an asset.
pub fn respond(path: &str, head_only: bool) -> Option<Response<Body>> {
    let (content_type, bytes) = asset(path)?;
    let mut r = Response::new(if head_only {
        full(bytes::Bytes::new())
    } else {
        full(bytes::Bytes::from_static(bytes))
    });
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(CACHE_CONTROL, HeaderValue::from_static(cache_control(path)));
    h.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    // Browsers must take the declared types: app.js only runs as a module
    // script if it is served as JavaScript.
    h.insert(
        hyper::header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Some(r)
}
