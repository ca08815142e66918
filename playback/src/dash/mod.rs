//! DASH: a live MPD over the live packager's window and on-demand MPDs of
//! recorded spans, with per-track init segments and segments made from the
//! archive.
//!
//! URIs under `/dash/{stream}/`: `live.mpd`, `vod.mpd?start=&end=`,
//! `init-{id}-t{n}.mp4` (track `n` of the tracks fragment `id` was written
//! with), `seg-t{n}-{ms}.m4s` (track `n` of the fragment starting at `ms`
//! milliseconds since the epoch, the MPD's `$Time$`).

pub mod mpd;

#[cfg(test)]
mod tests;

use std::time::Duration;

use fragmenter::{Timestamp, TrackId};
use hyper::StatusCode;

use crate::archive::{Archive, ArchiveError};
use crate::hls::number;
use crate::hls::vod::{recent_bandwidth, runs_for};
use crate::http::reply::{Cache, Reply, MP4, MPD, SEGMENT};
use crate::http::serve::{archive_error, blocking, hold, live_packager};
use crate::http::Playback;
use crate::live::LiveState;
use crate::segments;
use mpd::{Dynamic, Period};

/// Answer `/dash/{stream}/{rest…}`.
pub(crate) async fn route(pb: &Playback, stream: &str, rest: &[&str], query: Option<&str>) -> Reply {
    match rest {
        ["live.mpd"] => live(pb, stream).await,
        ["vod.mpd"] => vod(pb, stream, query).await,
        [file] => {
            if let Some((id, track)) = init_name(file) {
                init(pb, stream, id, track).await
            } else if let Some((track, ms)) = segment_name(file) {
                segment(pb, stream, track, ms).await
            } else {
                not_found(stream, file)
            }
        }
        _ => not_found(stream, &rest.join("/")),
    }
}

fn not_found(stream: &str, what: &str) -> Reply {
    Reply::error(
        StatusCode::NOT_FOUND,
        format!("no DASH resource {what:?} for stream {stream:?}"),
    )
}

fn track_id(s: &str) -> Option<TrackId> {
    TrackId::new(s.strip_prefix('t')?.parse().ok()?).ok()
}

/// `init-{id}-t{n}.mp4`.
fn init_name(file: &str) -> Option<(u64, TrackId)> {
    let (id, track) = file.strip_prefix("init-")?.strip_suffix(".mp4")?.split_once('-')?;
    Some((number(id, "", "")?, track_id(track)?))
}

/// `seg-t{n}-{ms}.m4s`.
fn segment_name(file: &str) -> Option<(TrackId, u64)> {
    let (track, ms) = file.strip_prefix("seg-")?.strip_suffix(".m4s")?.split_once('-')?;
    Some((track_id(track)?, number(ms, "", "")?))
}

fn periods_of_window(state: &LiveState) -> Vec<Period> {
    let mut periods: Vec<Period> = Vec::new();
    let mut spans: Vec<Vec<(Timestamp, Timestamp)>> = Vec::new();
    for seg in state.complete() {
        if periods.last().is_none_or(|p| p.init_id != seg.init_id) {
            let offset_ms = seg.init_start.as_millis();
            periods.push(Period {
                init_id: seg.init_id,
                start: Duration::from_millis(offset_ms),
                offset_ms,
                tracks: seg.tracks.clone(),
                segments: Vec::new(),
            });
            spans.push(Vec::new());
        }
        if let Some(s) = spans.last_mut() {
            s.push((seg.start, seg.end));
        }
    }
    for (p, s) in periods.iter_mut().zip(spans) {
        p.segments = mpd::timeline(&s);
    }
    periods
}

fn now() -> Timestamp {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Timestamp::from_nanos(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
}

/// `GET /dash/{stream}/live.mpd`.
async fn live(pb: &Playback, stream: &str) -> Reply {
    let packager = match live_packager(pb, stream).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limit = hold(&packager.state());
    let found = packager
        .wait_for(limit, |s| {
            let periods = periods_of_window(s);
            if periods.is_empty() {
                return None;
            }
            let first = s.complete().next().map_or(Timestamp::EPOCH, |x| x.start);
            let last = s.complete().last().map_or(Timestamp::EPOCH, |x| x.end);
            let target = Duration::from_secs(crate::hls::playlist::target_duration(s));
            let last_end = Some(last);
            Some((periods, target, last - first, last_end))
        })
        .await;
    let Some((periods, target, depth, last_end)) = found else {
        return Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stream {stream:?} has no complete live segment yet"),
        );
    };
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    let bandwidth = match blocking(move || recent_bandwidth(archive.as_ref(), &name, last_end)).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let dynamic = Dynamic {
        now: now(),
        update: target,
        depth,
        delay: target * 3,
    };
    Reply::text(MPD, Cache::NoCache, mpd::mpd(&periods, Some(dynamic), bandwidth))
}

/// `GET /dash/{stream}/vod.mpd?start=&end=`: one period per recorded run,
/// back to back (gaps are left out of the presentation).
async fn vod(pb: &Playback, stream: &str, query: Option<&str>) -> Reply {
    let runs = match runs_for(pb, stream, query).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let mut periods = Vec::with_capacity(runs.len());
    let mut at = Duration::ZERO;
    for run in &runs {
        let spans: Vec<(Timestamp, Timestamp)> = run.fragments.iter().map(|f| (f.start, f.end)).collect();
        let timeline = mpd::timeline(&spans);
        let offset_ms = timeline.first().map_or(0, |s| s.0);
        let length = Duration::from_millis(timeline.iter().map(|s| s.1).sum());
        periods.push(Period {
            init_id: run.init_id,
            start: at,
            offset_ms,
            tracks: run.tracks.clone(),
            segments: timeline,
        });
        at += length;
    }
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    let last_end = runs.last().map(|r| r.end());
    let bandwidth = match blocking(move || recent_bandwidth(archive.as_ref(), &name, last_end)).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    Reply::text(MPD, Cache::Short, mpd::mpd(&periods, None, bandwidth))
}

/// `init-{id}-t{n}.mp4`.
async fn init(pb: &Playback, stream: &str, id: u64, track: TrackId) -> Reply {
    let in_memory = pb.live.get(stream).and_then(|p| {
        p.state()
            .segments
            .iter()
            .find(|s| s.init_id == id)
            .map(|s| s.tracks.clone())
    });
    let tracks = match in_memory {
        Some(t) => t,
        None => {
            let archive = pb.archive.clone();
            let name = stream.to_owned();
            match blocking(move || archive.read_fragment(&name, id)).await {
                Ok(Ok(f)) => f.tracks,
                Ok(Err(e)) => return archive_error(&e),
                Err(r) => return r,
            }
        }
    };
    match segments::track_init_segment(&tracks, track) {
        Ok(init) => Reply::ok(MP4, Cache::Immutable, vec![init]),
        Err(e) => Reply::error(StatusCode::NOT_FOUND, format!("stream {stream:?}, {track}: {e}")),
    }
}

/// The fragment of `stream` that starts at `ms` (ms since the epoch).
fn fragment_at(archive: &dyn Archive, stream: &str, ms: u64) -> Result<Option<u64>, ArchiveError> {
    let at = Timestamp::from_millis(ms);
    Ok(archive
        .fragments(stream, at, Timestamp::from_millis(ms.saturating_add(1)))?
        .into_iter()
        .find(|f| f.start.as_millis() == ms)
        .map(|f| f.id))
}

/// `seg-t{n}-{ms}.m4s`.
async fn segment(pb: &Playback, stream: &str, track: TrackId, ms: u64) -> Reply {
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    let made = blocking(move || -> Result<Option<_>, ArchiveError> {
        let Some(id) = fragment_at(archive.as_ref(), &name, ms)? else {
            return Ok(None);
        };
        let fragment = archive.read_fragment(&name, id)?;
        Ok(Some(segments::render_track(&fragment, track)))
    })
    .await;
    match made {
        Ok(Ok(Some(Ok(chunks)))) => Reply::ok(SEGMENT, Cache::Immutable, chunks),
        Ok(Ok(Some(Err(e)))) => Reply::error(StatusCode::NOT_FOUND, format!("stream {stream:?}, {track}: {e}")),
        Ok(Ok(None)) => Reply::error(
            StatusCode::NOT_FOUND,
            format!("stream {stream:?} has no fragment starting at {ms} ms"),
        ),
        Ok(Err(e)) => archive_error(&e),
        Err(r) => r,
    }
}
