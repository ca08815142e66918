//! HLS: LL-HLS live playlists with parts and blocking reload, on-demand
//! playlists of recorded spans, a multivariant playlist, and the fMP4 init
//! segments, segments and parts they name.
//!
//! URIs under `/hls/{stream}/`:
//! `index.m3u8`, `live.m3u8`, `vod.m3u8?start=&end=`, `init-{id}.mp4`
//! (the init segment of the tracks fragment `id` was written with),
//! `seg/{id}.m4s` (fragment `id` as one segment), `part/{id}.{n}.m4s` (its
//! part `n`). Segments and parts come from the live packager's memory while
//! in its window and are rebuilt from the archive otherwise, identically.

pub mod live;
pub mod playlist;
pub mod vod;

#[cfg(test)]
mod tests;

use std::time::Duration;

use hyper::StatusCode;

use crate::archive::Archive;
use crate::http::reply::{Cache, Reply, MP4, SEGMENT};
use crate::http::serve::{archive_error, blocking, hold};
use crate::http::Playback;
use crate::segments;

/// Answer `/hls/{stream}/{rest…}`.
pub(crate) async fn route(pb: &Playback, stream: &str, rest: &[&str], query: Option<&str>) -> Reply {
    match rest {
        ["live.m3u8"] => live::playlist(pb, stream, query).await,
        ["index.m3u8"] => vod::multivariant(pb, stream).await,
        ["vod.m3u8"] => vod::playlist(pb, stream, query).await,
        ["init.mp4"] => current_init(pb, stream).await,
        [file] => match number(file, "init-", ".mp4") {
            Some(id) => init(pb, stream, id).await,
            None => not_found(stream, rest),
        },
        ["seg", file] => match number(file, "", ".m4s") {
            Some(id) => segment(pb, stream, id).await,
            None => not_found(stream, rest),
        },
        ["part", file] => match file
            .strip_suffix(".m4s")
            .and_then(|f| f.split_once('.'))
            .and_then(|(id, n)| Some((id.parse::<u64>().ok()?, n.parse::<usize>().ok()?)))
        {
            Some((id, n)) => part(pb, stream, id, n).await,
            None => not_found(stream, rest),
        },
        _ => not_found(stream, rest),
    }
}

fn not_found(stream: &str, rest: &[&str]) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        format!("no HLS resource {:?} for stream {stream:?}", rest.join("/")),
    )
}

/// `{prefix}{number}{suffix}` → number.
pub(crate) fn number(file: &str, prefix: &str, suffix: &str) -> Option<u64> {
    let n = file.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    n.parse().ok()
}

/// `init.mp4`: the init segment of the stream's current tracks. It changes
/// when the tracks do, so it is not cached; playlists name `init-{id}.mp4`.
async fn current_init(pb: &Playback, stream: &str) -> Reply {
    let summary = match crate::http::serve::stream_summary(pb, stream).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    match segments::init_segment(&summary.tracks) {
        Ok(init) => Reply::ok(MP4, Cache::NoCache, vec![init]),
        Err(e) => Reply::error(StatusCode::NOT_FOUND, format!("stream {stream:?}: {e}")),
    }
}

/// `init-{id}.mp4`.
async fn init(pb: &Playback, stream: &str, id: u64) -> Reply {
    if let Some(p) = pb.live.get(stream) {
        if let Some(init) = p.state().inits.get(&id).cloned() {
            return Reply::ok(MP4, Cache::Immutable, vec![init]);
        }
    }
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    let made = blocking(move || {
        archive
            .read_fragment(&name, id)
            .map(|f| segments::init_segment(&f.tracks))
    })
    .await;
    match made {
        Ok(Ok(Ok(init))) => Reply::ok(MP4, Cache::Immutable, vec![init]),
        Ok(Ok(Err(e))) => Reply::error(StatusCode::NOT_FOUND, format!("stream {stream:?}: {e}")),
        Ok(Err(e)) => archive_error(&e),
        Err(r) => r,
    }
}

/// `seg/{id}.m4s`.
async fn segment(pb: &Playback, stream: &str, id: u64) -> Reply {
    if let Some(p) = pb.live.get(stream) {
        if let Some(seg) = p.state().segment(id).filter(|s| s.complete) {
            return Reply::ok(SEGMENT, Cache::Immutable, seg.chunks());
        }
    }
    match rendered(pb.archive.clone(), stream, id, pb.options.part_target).await {
        Ok(seg) => Reply::ok(SEGMENT, Cache::Immutable, seg.chunks()),
        Err(r) => r,
    }
}

/// `part/{id}.{n}.m4s`: held while it is the open segment's next part.
async fn part(pb: &Playback, stream: &str, id: u64, n: usize) -> Reply {
    if let Some(p) = pb.live.get(stream) {
        let (in_window, limit) = {
            let s = p.state();
            (s.segment(id).is_some(), hold(&s))
        };
        if in_window {
            // Some(Some): the part; Some(None): it will never exist.
            let found = p
                .wait_for(limit, |s| match s.segment(id) {
                    Some(seg) => match seg.parts.get(n) {
                        Some(part) => Some(Some(part.chunks.clone())),
                        None if seg.complete => Some(None),
                        None => None,
                    },
                    None => Some(None),
                })
                .await;
            return match found {
                Some(Some(chunks)) => Reply::ok(SEGMENT, Cache::Immutable, chunks),
                Some(None) => Reply::error(StatusCode::NOT_FOUND, format!("no part {n} of segment {id}")),
                None => Reply::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("part {n} of segment {id} did not come within {}s", limit.as_secs()),
                ),
            };
        }
    }
    match rendered(pb.archive.clone(), stream, id, pb.options.part_target).await {
        Ok(seg) => match seg.parts.get(n) {
            Some(part) => Reply::ok(SEGMENT, Cache::Immutable, part.chunks.clone()),
            None => Reply::error(StatusCode::NOT_FOUND, format!("no part {n} of segment {id}")),
        },
        Err(r) => r,
    }
}

/// Fragment `id` rebuilt from the archive as live would have cut it.
async fn rendered(
    archive: std::sync::Arc<dyn Archive>,
    stream: &str,
    id: u64,
    part_target: Duration,
) -> Result<segments::Segment, Reply> {
    let name = stream.to_owned();
    let made = blocking(move || {
        archive.read_fragment(&name, id).map(|f| {
            let expected = segments::expected_length_in(archive.as_ref(), &name, &f.summary);
            segments::render_fragment(&f, part_target, expected)
        })
    })
    .await?;
    match made {
        Ok(Ok(seg)) => Ok(seg),
        Ok(Err(e)) => Err(Reply::error(StatusCode::NOT_FOUND, format!("stream {stream:?}: {e}"))),
        Err(e) => Err(archive_error(&e)),
    }
}
