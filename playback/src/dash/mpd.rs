//! MPD text (ISO/IEC 23009-1), live (`dynamic`) and on demand (`static`).
//!
//! Every track is its own AdaptationSet with its own init segment and
//! segments: players (dash.js, Shaka) handle one track per Representation
//! everywhere, while muxed Representations are a corner they do not all
//! support. Segment times are milliseconds since the Unix epoch (the
//! template timescale is 1000), the same instants as the media's `tfdt`
//! (whose origin is the epoch too), so `$Time$` names a fragment by its
//! start and `availabilityStartTime` is simply 1970-01-01.

use std::fmt::Write;
use std::time::Duration;

use fragmenter::media::TrackMedia;
use fragmenter::{Timestamp, Track};

use crate::segments::{self, Tracks};

/// One Period: a run of segments sharing tracks.
#[derive(Clone, Debug)]
pub struct Period {
    /// The fragment whose tracks make the init segments (names them).
    pub init_id: u64,
    /// Period start on the MPD timeline.
    pub start: Duration,
    /// The media time (ms since the epoch) at the period start.
    pub offset_ms: u64,
    /// The tracks.
    pub tracks: Tracks,
    /// `(t, d)` in ms of each segment, in order.
    pub segments: Vec<(u64, u64)>,
}

/// Segment timeline entries for fragments given as (start, end): `d` stops
/// at the next segment's start so segments never overlap.
pub fn timeline(spans: &[(Timestamp, Timestamp)]) -> Vec<(u64, u64)> {
    spans
        .iter()
        .enumerate()
        .map(|(i, &(start, end))| {
            let t = start.as_millis();
            let mut e = end.as_millis();
            if let Some(&(next, _)) = spans.get(i + 1) {
                e = e.min(next.as_millis());
            }
            (t, e.saturating_sub(t).max(1))
        })
        .collect()
}

/// `PT…S` of a duration.
pub fn iso_duration(d: Duration) -> String {
    format!("PT{:.3}S", d.as_secs_f64())
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn date_time(t: Timestamp) -> String {
    crate::hls::playlist::program_date_time(t)
}

/// Live manifest settings.
#[derive(Clone, Copy, Debug)]
pub struct Dynamic {
    /// Now, as publishTime and the UTC timing value.
    pub now: Timestamp,
    /// How often to reload: the segment target.
    pub update: Duration,
    /// The window's length.
    pub depth: Duration,
    /// How far behind the live edge to play.
    pub delay: Duration,
}

/// The MPD of `periods`: live when `dynamic` is given, else on demand.
pub fn mpd(periods: &[Period], dynamic: Option<Dynamic>, bandwidth: u64) -> String {
    let mut m = String::with_capacity(4096);
    m.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    m.push_str("<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"");
    match dynamic {
        Some(d) => {
            let _ = writeln!(
                m,
                " type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00Z\" publishTime=\"{}\" \
                 minimumUpdatePeriod=\"{}\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"{}\" \
                 minBufferTime=\"{}\">",
                date_time(d.now),
                iso_duration(d.update),
                iso_duration(d.depth),
                iso_duration(d.delay),
                iso_duration(d.update),
            );
        }
        None => {
            let total: Duration = periods
                .iter()
                .map(|p| Duration::from_millis(p.segments.iter().map(|s| s.1).sum()))
                .sum();
            let _ = writeln!(
                m,
                " type=\"static\" mediaPresentationDuration=\"{}\" minBufferTime=\"PT2S\">",
                iso_duration(total)
            );
        }
    }
    for p in periods {
        let _ = writeln!(m, " <Period id=\"p{}\" start=\"{}\">", p.init_id, iso_duration(p.start));
        for (i, track) in segments::media_tracks(&p.tracks).iter().enumerate() {
            adaptation_set(&mut m, p, i, track, bandwidth);
        }
        m.push_str(" </Period>\n");
    }
    if let Some(d) = dynamic {
        let _ = writeln!(
            m,
            " <UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:direct:2014\" value=\"{}\"/>",
            date_time(d.now)
        );
    }
    m.push_str("</MPD>\n");
    m
}

fn adaptation_set(m: &mut String, p: &Period, index: usize, track: &Track, bandwidth: u64) {
    let codecs = segments::track_codec(track).unwrap_or_default();
    let rep = format!("t{}", track.id.get());
    let (open, rep_attrs, inner) = match &track.media {
        TrackMedia::Video(v) => (
            format!(
                "contentType=\"video\" mimeType=\"video/mp4\" maxWidth=\"{}\" maxHeight=\"{}\"",
                v.width, v.height
            ),
            format!(
                "codecs=\"{codecs}\" width=\"{}\" height=\"{}\" bandwidth=\"{bandwidth}\"",
                v.width, v.height
            ),
            String::new(),
        ),
        TrackMedia::Audio(a) => (
            "contentType=\"audio\" mimeType=\"audio/mp4\" lang=\"und\"".to_owned(),
            format!(
                "codecs=\"{codecs}\" audioSamplingRate=\"{}\" bandwidth=\"{}\"",
                a.sample_rate,
                if codecs == "opus" { 64_000 } else { 128_000 }
            ),
            format!(
                "    <AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{}\"/>\n",
                a.channels
            ),
        ),
        TrackMedia::Sensor(_) => return,
    };
    let _ = writeln!(
        m,
        "  <AdaptationSet id=\"{index}\" {open} segmentAlignment=\"true\" startWithSAP=\"1\">"
    );
    let _ = writeln!(
        m,
        "   <SegmentTemplate timescale=\"1000\" presentationTimeOffset=\"{}\" \
         initialization=\"init-{}-$RepresentationID$.mp4\" media=\"seg-$RepresentationID$-$Time$.m4s\">",
        p.offset_ms, p.init_id
    );
    m.push_str("    <SegmentTimeline>\n");
    for (t, d) in &p.segments {
        let _ = writeln!(m, "     <S t=\"{t}\" d=\"{d}\"/>");
    }
    m.push_str("    </SegmentTimeline>\n   </SegmentTemplate>\n");
    let _ = write!(
        m,
        "   <Representation id=\"{rep}\" {rep_attrs}>\n{inner}   </Representation>\n"
    );
    m.push_str("  </AdaptationSet>\n");
}
