//! `vod.m3u8` (a recorded span) and `index.m3u8` (the multivariant
//! playlist).

use std::time::Duration;

use fragmenter::Timestamp;
use hyper::StatusCode;

use super::playlist;
use crate::archive::Archive;
use crate::http::query::{self, BadParam};
use crate::http::reply::{Cache, Reply, M3U8};
use crate::http::serve::{archive_error, blocking, stream_summary};
use crate::http::Playback;
use crate::recorded::{self, RecordedError, Run};
use crate::segments;

/// `start` and `end` of a recorded-span request; absent means the whole
/// recording.
pub fn span(q: &[(String, String)]) -> Result<(Timestamp, Timestamp), BadParam> {
    let start = query::get(q, "start")
        .map(|v| query::time("start", v))
        .transpose()?
        .unwrap_or(Timestamp::EPOCH);
    let end = query::get(q, "end")
        .map(|v| query::time("end", v))
        .transpose()?
        .unwrap_or(Timestamp::from_nanos(u64::MAX));
    if end <= start {
        return Err(BadParam {
            name: "end".to_owned(),
            reason: format!("{end} is not after start {start}"),
        });
    }
    Ok((start, end))
}

/// The recorded runs of a span request, or the error reply.
pub(crate) async fn runs_for(pb: &Playback, stream: &str, query: Option<&str>) -> Result<Vec<Run>, Reply> {
    let (start, end) = span(&query::pairs(query)).map_err(|e| Reply::error(StatusCode::BAD_REQUEST, e.to_string()))?;
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    match blocking(move || recorded::runs(archive.as_ref(), &name, start, end)).await? {
        Ok(runs) if !runs.is_empty() => Ok(runs),
        Ok(_) => Err(Reply::error(
            StatusCode::NOT_FOUND,
            format!("nothing recorded in stream {stream:?} between {start} and {end}"),
        )),
        Err(RecordedError::Archive(e)) => Err(archive_error(&e)),
        Err(e @ RecordedError::Empty { .. }) => Err(Reply::error(StatusCode::NOT_FOUND, e.to_string())),
        Err(e @ RecordedError::TooLong { .. }) => Err(Reply::error(StatusCode::BAD_REQUEST, e.to_string())),
    }
}

/// `GET /hls/{stream}/vod.m3u8?start=&end=`.
pub(crate) async fn playlist(pb: &Playback, stream: &str, query: Option<&str>) -> Reply {
    match runs_for(pb, stream, query).await {
        Ok(runs) => Reply::text(M3U8, Cache::Short, playlist::vod(&runs)),
        Err(r) => r,
    }
}

/// Bits per second of the stream's recent fragments (the busiest one, with
/// a margin), for `BANDWIDTH`; 2 Mbit/s when nothing is recorded.
pub fn recent_bandwidth(archive: &dyn Archive, stream: &str, last_end: Option<Timestamp>) -> u64 {
    const DEFAULT: u64 = 2_000_000;
    let Some(end) = last_end else {
        return DEFAULT;
    };
    let from = end.checked_sub(Duration::from_secs(60)).unwrap_or(Timestamp::EPOCH);
    let peak = archive
        .fragments(stream, from, end + Duration::from_secs(1))
        .unwrap_or_default()
        .iter()
        .filter_map(|f| {
            let secs = (f.end - f.start).as_secs_f64();
            (secs > 0.0).then(|| f.bytes as f64 * 8.0 / secs)
        })
        .fold(0.0f64, f64::max);
    if peak > 0.0 {
        (peak * 1.2) as u64
    } else {
        DEFAULT
    }
}

/// `GET /hls/{stream}/index.m3u8`.
pub(crate) async fn multivariant(pb: &Playback, stream: &str) -> Reply {
    let summary = match stream_summary(pb, stream).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    if segments::media_tracks(&summary.tracks).is_empty() {
        return Reply::error(
            StatusCode::NOT_FOUND,
            format!("stream {stream:?} has no video or audio track HLS can carry"),
        );
    }
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    let last_end = summary.ranges.last().map(|r| r.1);
    let bandwidth = match blocking(move || recent_bandwidth(archive.as_ref(), &name, last_end)).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    Reply::text(M3U8, Cache::NoCache, playlist::multivariant(&summary.tracks, bandwidth))
}
