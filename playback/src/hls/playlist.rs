//! M3U8 text (RFC 8216bis): pure functions of what is in memory or recorded.

use std::fmt::Write;
use std::time::Duration;

use fragmenter::media::TrackMedia;
use fragmenter::{Timestamp, Track};

use crate::live::LiveState;
use crate::recorded::Run;
use crate::segments;

/// Seconds with millisecond-and-better precision, as HLS decimals.
pub fn secs(d: Duration) -> String {
    format!("{:.5}", d.as_secs_f64())
}

/// `EXT-X-PROGRAM-DATE-TIME` text: RFC 3339 UTC with milliseconds, which
/// every player's date parser reads (nanoseconds are not universal).
pub fn program_date_time(t: Timestamp) -> String {
    let full = t.to_rfc3339(); // YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ
    format!("{}Z", full.get(..23).unwrap_or(&full))
}

/// The declared part target: the configured one, or the longest part when
/// a single frame lasted longer (parts must not exceed PART-TARGET).
pub fn part_target(state: &LiveState, configured: Duration) -> Duration {
    configured.max(state.longest_part)
}

/// The target duration in seconds: at least the configured part target's
/// segment (1 s) and every segment rounded, including the open one.
pub fn target_duration(state: &LiveState) -> u64 {
    let open = state.open().map_or(0, |s| s.duration().as_secs_f64().round() as u64);
    state.target_duration.max(open).max(1)
}

/// The LL-HLS media playlist of the live window.
pub fn live(state: &LiveState, configured_part_target: Duration) -> String {
    let part_target = part_target(state, configured_part_target);
    let target = target_duration(state);
    let mut m = String::with_capacity(4096);
    m.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
    let _ = writeln!(m, "#EXT-X-TARGETDURATION:{target}");
    let _ = writeln!(m, "#EXT-X-PART-INF:PART-TARGET={}", secs(part_target));
    let _ = writeln!(
        m,
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={}",
        secs(part_target * 3)
    );
    let first_msn = state.segments.front().map_or(state.next_msn, |s| s.msn);
    let _ = writeln!(m, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
    let _ = writeln!(m, "#EXT-X-DISCONTINUITY-SEQUENCE:{}", state.discontinuity_sequence);
    m.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
    // Parts are listed for the segments ending within three target
    // durations of the live edge (RFC 8216bis 6.2.2), whole segments only
    // before that.
    let edge = state.segments.back().map_or(Timestamp::EPOCH, |s| s.end);
    let parts_from = edge
        .checked_sub(Duration::from_secs(3 * target))
        .unwrap_or(Timestamp::EPOCH);
    let mut init = None;
    for seg in &state.segments {
        if seg.parts.is_empty() {
            // Just opened: nothing to list yet, but its first part is next.
            if !seg.complete {
                let _ = writeln!(m, "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/{}.0.m4s\"", seg.id);
            }
            continue;
        }
        if seg.discontinuity {
            m.push_str("#EXT-X-DISCONTINUITY\n");
        }
        if init != Some(seg.init_id) {
            let _ = writeln!(m, "#EXT-X-MAP:URI=\"init-{}.mp4\"", seg.init_id);
            init = Some(seg.init_id);
        }
        let _ = writeln!(m, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date_time(seg.start));
        if !seg.complete || seg.end > parts_from {
            for (n, p) in seg.parts.iter().enumerate() {
                let _ = write!(
                    m,
                    "#EXT-X-PART:DURATION={},URI=\"part/{}.{n}.m4s\"",
                    secs(p.duration),
                    seg.id
                );
                m.push_str(if p.info.independent { ",INDEPENDENT=YES\n" } else { "\n" });
            }
        }
        if seg.complete {
            let _ = writeln!(m, "#EXTINF:{},\nseg/{}.m4s", secs(seg.duration()), seg.id);
        } else {
            let _ = writeln!(
                m,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/{}.{}.m4s\"",
                seg.id,
                seg.parts.len()
            );
        }
    }
    m
}

/// The on-demand playlist of recorded runs: a discontinuity and a new
/// program date time after every gap.
pub fn vod(runs: &[Run]) -> String {
    let longest = runs
        .iter()
        .flat_map(|r| r.fragments.iter())
        .map(|f| (f.end - f.start).as_secs_f64().round() as u64)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut m = String::with_capacity(64 * runs.iter().map(|r| r.fragments.len()).sum::<usize>() + 256);
    m.push_str("#EXTM3U\n#EXT-X-VERSION:7\n");
    let _ = writeln!(m, "#EXT-X-TARGETDURATION:{longest}");
    m.push_str("#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    for (i, run) in runs.iter().enumerate() {
        if i > 0 {
            m.push_str("#EXT-X-DISCONTINUITY\n");
        }
        let _ = writeln!(m, "#EXT-X-MAP:URI=\"init-{}.mp4\"", run.init_id);
        for f in &run.fragments {
            let _ = writeln!(m, "#EXT-X-PROGRAM-DATE-TIME:{}", program_date_time(f.start));
            let _ = writeln!(m, "#EXTINF:{},\nseg/{}.m4s", secs(f.end - f.start), f.id);
        }
    }
    m.push_str("#EXT-X-ENDLIST\n");
    m
}

/// The multivariant playlist: one variant, the live media playlist, with
/// the codecs of its muxed tracks.
pub fn multivariant(tracks: &[Track], bandwidth: u64) -> String {
    let mut attrs = format!("BANDWIDTH={bandwidth}");
    let codecs = segments::codecs(tracks);
    if !codecs.is_empty() {
        let _ = write!(attrs, ",CODECS=\"{codecs}\"");
    }
    if let Some(v) = tracks.iter().find_map(|t| match &t.media {
        TrackMedia::Video(v) => Some(v),
        _ => None,
    }) {
        let _ = write!(attrs, ",RESOLUTION={}x{}", v.width, v.height);
    }
    format!("#EXTM3U\n#EXT-X-VERSION:9\n#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:{attrs}\nlive.m3u8\n")
}
