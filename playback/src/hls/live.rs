//! `live.m3u8`: the LL-HLS playlist with blocking reload
//! (`_HLS_msn` / `_HLS_part`, RFC 8216bis 6.2.5.2).

use hyper::StatusCode;

use super::playlist;
use crate::http::query::{self, BadParam};
use crate::http::reply::{Cache, Reply, M3U8};
use crate::http::serve::{hold, live_packager};
use crate::http::Playback;
use crate::live::LiveState;

/// What a blocking reload waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Block {
    /// `_HLS_msn`.
    pub msn: u64,
    /// `_HLS_part`, if given.
    pub part: Option<u64>,
}

/// Read `_HLS_msn` and `_HLS_part`; `_HLS_part` alone is malformed.
pub fn parse_block(q: &[(String, String)]) -> Result<Option<Block>, BadParam> {
    let number = |name: &str| -> Result<Option<u64>, BadParam> {
        query::get(q, name)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| BadParam::new(name, v, "a non-negative integer"))
            })
            .transpose()
    };
    let msn = number("_HLS_msn")?;
    let part = number("_HLS_part")?;
    match (msn, part) {
        (Some(msn), part) => Ok(Some(Block { msn, part })),
        (None, Some(_)) => Err(BadParam {
            name: "_HLS_part".to_owned(),
            reason: "given without _HLS_msn".to_owned(),
        }),
        (None, None) => Ok(None),
    }
}

/// Whether the playlist of `state` answers a request blocked on `b`.
pub fn satisfied(state: &LiveState, b: Block) -> bool {
    // Older than the window: nothing to wait for.
    if state.segments.front().is_some_and(|f| b.msn < f.msn) {
        return true;
    }
    let later_has_parts = state.segments.iter().any(|s| s.msn > b.msn && !s.parts.is_empty());
    match state.by_msn(b.msn) {
        Some(seg) => match b.part {
            None => seg.complete,
            // A part beyond the segment's last means the next segment's first.
            Some(p) => (seg.parts.len() as u64) > p || (seg.complete && later_has_parts),
        },
        None => later_has_parts,
    }
}

/// `GET /hls/{stream}/live.m3u8`.
pub(crate) async fn playlist(pb: &Playback, stream: &str, query: Option<&str>) -> Reply {
    let q = query::pairs(query);
    let block = match parse_block(&q) {
        Ok(b) => b,
        Err(e) => return Reply::error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let packager = match live_packager(pb, stream).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let limit = {
        let state = packager.state();
        if let Some(b) = block {
            let last = state.segments.back().map_or(state.next_msn, |s| s.msn);
            if b.msn > last + 2 {
                return Reply::error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "parameter \"_HLS_msn\": {} is more than two segments past the last one ({last})",
                        b.msn
                    ),
                );
            }
        }
        hold(&state)
    };
    let part_target = pb.options.part_target;
    let text = packager
        .wait_for(limit, |s| {
            let has_media = s.segments.iter().any(|seg| !seg.parts.is_empty());
            let ready = has_media && block.is_none_or(|b| satisfied(s, b));
            ready.then(|| playlist::live(s, part_target))
        })
        .await;
    match text {
        Some(text) => Reply::text(M3U8, Cache::NoCache, text),
        None => Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            match block {
                Some(b) => format!(
                    "segment {} part {:?} of stream {stream:?} did not come within {}s",
                    b.msn,
                    b.part,
                    limit.as_secs()
                ),
                None => format!("stream {stream:?} has no live media yet"),
            },
        ),
    }
}
