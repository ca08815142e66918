//! fMP4 init and media segments made from stored fragments, shared by HLS
//! (live and VOD) and DASH.
//!
//! One stored fragment is one media segment. A segment is a `styp` followed
//! by parts (`moof` + `mdat`) cut at frame boundaries by [`SegmentBuilder`].
//! The cutting depends only on the frame sequence, so a segment built live
//! frame by frame and the same segment rebuilt later from the archive are
//! byte for byte identical: a URI means the same bytes whoever answers it,
//! which is what makes `Cache-Control: immutable` honest.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fragmenter::fmp4::{Fmp4Error, Fmp4Options, Fmp4Writer, PartInfo};
use fragmenter::media::{AudioCodec, TrackMedia};
use fragmenter::sink::Chunks;
use fragmenter::{Frame, Timestamp, Track, TrackId};

use crate::archive::{Archive, ArchivedFragment, FragmentSummary};
// Across a gap (a discontinuity in the playlists) a fragment predicts
// nothing of the next.
use crate::live::GAP;

/// Decode time zero of every track of every stream: the Unix epoch.
///
/// A fixed origin keeps `tfdt` the same for a frame whether its segment was
/// made live or from the archive, and lets DASH put `availabilityStartTime`
/// at the epoch so MPD time is wall-clock time. Ticks since 1970 fit 64-bit
/// `tfdt` easily (90 kHz × 2e9 s ≈ 1.8e14) and stay exact in JavaScript
/// numbers (< 2^53), which players use.
pub const TIME_ORIGIN: Timestamp = Timestamp::EPOCH;

/// Why a segment could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Nothing fMP4 can carry: sensor tracks and G.711 are left out.
    #[error("no H.264, H.265, AAC or Opus track among {0}")]
    NoMediaTracks(String),
    /// The fMP4 writer refused a track or a frame.
    #[error(transparent)]
    Fmp4(#[from] Fmp4Error),
}

/// The tracks of `tracks` that fMP4 carries (video, and the first AAC or
/// Opus audio track), in order. Sensor tracks stay in the store and reach
/// viewers another way; G.711 has no ISO sample entry. A second audio
/// track (a microphone encoded twice, AAC for HLS and Opus for WebRTC) is
/// left out: a player plays one muxed audio track, so a second would only
/// cost every viewer its bytes.
pub fn media_tracks(tracks: &[Track]) -> Vec<Track> {
    let mut audio = false;
    tracks
        .iter()
        .filter(|t| match &t.media {
            TrackMedia::Video(_) => true,
            TrackMedia::Audio(a) if matches!(a.codec, AudioCodec::G711(_)) => false,
            TrackMedia::Audio(_) => !std::mem::replace(&mut audio, true),
            TrackMedia::Sensor(_) => false,
        })
        .cloned()
        .collect()
}

fn writer(tracks: &[Track]) -> Result<Fmp4Writer, SegmentError> {
    let media = media_tracks(tracks);
    if media.is_empty() {
        let names: Vec<String> = tracks.iter().map(|t| format!("{:?}", t.name)).collect();
        return Err(SegmentError::NoMediaTracks(format!("[{}]", names.join(", "))));
    }
    Ok(Fmp4Writer::new(&media, Fmp4Options::new(TIME_ORIGIN))?)
}

/// The init segment (`ftyp` + `moov`) for the media tracks of `tracks`.
pub fn init_segment(tracks: &[Track]) -> Result<Bytes, SegmentError> {
    Ok(writer(tracks)?.init_segment())
}

/// One part: `moof` + `mdat`, as the shared chunks the writer produced.
#[derive(Clone, Debug)]
pub struct Part {
    /// The bytes, in order (payloads are the frames' own `Bytes`).
    pub chunks: Vec<Bytes>,
    /// Times and flags of the part.
    pub info: PartInfo,
    /// The part's length on the playlist timeline: the span of its frames
    /// of the timing track (the first video track, else the first track).
    /// Audio and video frames interleave, so the spans of all frames of
    /// consecutive parts overlap; one track's frames tile exactly, so the
    /// parts' durations add up to the segment's.
    pub duration: Duration,
}

impl Part {
    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    /// Whether it holds no bytes (never, for a written part).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes one media segment from a fragment's frames, pushed in decode order.
///
/// Parts are cut so that none lasts longer than the part target: before a
/// frame of the timing track (see [`Part::duration`]) that would end past
/// it. Cutting only when the next frame shows the part is full costs one
/// frame of latency, but keeps the frames of other tracks that come between
/// two video frames in the part they belong to, so no part is a sliver of
/// audio.
///
/// Given the length the segment is expected to have (see
/// [`expected_length`]), parts are also cut on a grid across it (see
/// [`grid`]), so that the last part is about as long as the others. Cutting parts at
/// the target alone leaves the segment's remainder as its last part — 4
/// frames of a 54-frame GOP, 0.13 s — and hls.js (its
/// `maxFragLookUpTolerance`, 0.25 s by default) counts a segment as loaded
/// once less than that is left of it, moves on to the next segment and
/// stalls over the hole the skipped part leaves (hls.js issue #5028; our
/// browser tests froze one part before a segment's end).
pub struct SegmentBuilder {
    writer: Fmp4Writer,
    styp: Bytes,
    sink: Chunks,
    part_target: Duration,
    /// The timing track's last dts.
    last_dts: Option<Timestamp>,
    /// The timing track's last frame spacing: the length assumed for a
    /// frame without a duration.
    spacing: Duration,
    /// The track whose frames time the parts (see [`Part::duration`]).
    timing: TrackId,
    /// First dts and end of the timing track's frames in the part.
    timing_span: Option<(Timestamp, Timestamp)>,
    /// The part grid (step, lines), when the segment's length is expected.
    grid: Option<(Duration, u32)>,
    /// The segment's first timing-track dts (where the grid starts).
    origin: Option<Timestamp>,
    /// Parts cut so far (the next grid line is `cuts + 1` steps in).
    cuts: u32,
    ready: Vec<Part>,
}

impl SegmentBuilder {
    /// A builder for a segment of `tracks` (non-media tracks are dropped),
    /// expected to last `expected` (see [`expected_length`]; `None` cuts
    /// at the part target only).
    pub fn new(tracks: &[Track], part_target: Duration, expected: Option<Duration>) -> Result<Self, SegmentError> {
        let mut writer = writer(tracks)?;
        let media = media_tracks(tracks);
        let timing = media
            .iter()
            .find(|t| matches!(t.media, TrackMedia::Video(_)))
            .or(media.first())
            .map(|t| t.id)
            // writer() refused a list without media tracks.
            .ok_or_else(|| SegmentError::NoMediaTracks(String::new()))?;
        let mut styp = Vec::new();
        writer.begin_segment(&mut styp);
        Ok(SegmentBuilder {
            writer,
            styp: Bytes::from(styp),
            sink: Chunks::new(),
            part_target,
            last_dts: None,
            spacing: Duration::ZERO,
            timing,
            timing_span: None,
            grid: grid(part_target, expected),
            origin: None,
            cuts: 0,
            ready: Vec::new(),
        })
    }

    /// The `styp` box that opens the segment.
    pub fn styp(&self) -> Bytes {
        self.styp.clone()
    }

    /// Add a frame. Frames of tracks the segment does not carry are
    /// ignored; parts it completes wait in [`SegmentBuilder::take_parts`].
    /// On error the frame is left out (and a part cut before it is kept).
    ///
    /// Only frames of the timing track cut parts, so every part spans whole
    /// frames of that track and lasts at most the part target; other
    /// tracks' frames go to the part open when they come.
    pub fn push(&mut self, frame: &Frame) -> Result<(), SegmentError> {
        if self.writer.timescale(frame.track).is_none() {
            return Ok(());
        }
        if frame.track != self.timing {
            self.writer.push(frame)?;
            return Ok(());
        }
        let length = if frame.duration.is_zero() {
            self.spacing
        } else {
            frame.duration
        };
        let end = frame.dts + length;
        let origin = *self.origin.get_or_insert(frame.dts);
        if let Some((from, _)) = self.timing_span {
            // Half a frame of slack: a grid line that falls inside a frame
            // goes to the nearer edge.
            let past_grid = self.grid.is_some_and(|(step, lines)| {
                self.cuts < lines && end.saturating_since(origin) > step * (self.cuts + 1) + self.spacing / 2
            });
            if end.saturating_since(from) > self.part_target || past_grid {
                self.flush()?;
                self.cuts += 1;
            }
        }
        self.writer.push(frame)?;
        let from = self.timing_span.map_or(frame.dts, |(from, _)| from);
        self.timing_span = Some((from, end));
        if let Some(prev) = self.last_dts {
            self.spacing = frame.dts.saturating_since(prev);
        }
        self.last_dts = Some(frame.dts);
        Ok(())
    }

    /// Write what is buffered as the segment's last part.
    pub fn finish(&mut self) -> Result<(), SegmentError> {
        self.flush()
    }

    /// The parts completed since the last call, in order.
    pub fn take_parts(&mut self) -> Vec<Part> {
        std::mem::take(&mut self.ready)
    }

    fn flush(&mut self) -> Result<(), SegmentError> {
        let span = self.timing_span.take();
        if let Some(info) = self.writer.flush_part(&mut self.sink)? {
            self.ready.push(Part {
                chunks: self.sink.take(),
                info,
                duration: span.map_or(info.duration, |(from, to)| to - from),
            });
        }
        Ok(())
    }
}

/// The part grid for a segment expected to last `expected`: the step and
/// the number of grid lines.
///
/// The lines leave a last part of about 7/8 of the target, so that a
/// segment a frame shorter or longer than expected (GOPs of 54 and 55
/// frames alternate from the test camera) still ends in a part between
/// hls.js's 0.25 s and the target; the parts before it share the rest
/// evenly. `None` when there is no expectation or one part holds it all.
fn grid(part_target: Duration, expected: Option<Duration>) -> Option<(Duration, u32)> {
    let expected = expected?;
    let last = part_target * 7 / 8;
    if part_target.is_zero() || expected <= part_target {
        return None;
    }
    let before_last = expected.checked_sub(last)?;
    let lines = before_last.as_nanos().div_ceil(part_target.as_nanos());
    let step = Duration::from_nanos((before_last.as_nanos() / lines) as u64);
    Some((step, u32::try_from(lines).ok()?))
}

/// The length a segment starting at `start` is expected to have: that of
/// the fragment before it, `previous`, when it runs into this one (GOPs
/// repeat), measured start to start — key frame to key frame, where its
/// `end` would add the audio that runs past the last video frame. The live
/// packager and archive rebuilds both plan from it, so both cut a fragment
/// into the same parts.
pub fn expected_length(previous: Option<&FragmentSummary>, start: Timestamp) -> Option<Duration> {
    let p = previous?;
    (p.start < start && start.saturating_since(p.end) <= GAP).then(|| start - p.start)
}

/// [`expected_length`] for an archived fragment, with its predecessor
/// looked up in `archive`.
pub fn expected_length_in(archive: &dyn Archive, stream: &str, fragment: &FragmentSummary) -> Option<Duration> {
    // Wider than the gap allowed, so the edge case is decided here as
    // for live, not by the query's window.
    let previous = archive.previous(stream, fragment, GAP * 2).ok()?;
    expected_length(previous.as_ref(), fragment.start)
}

/// A whole segment made from an archived fragment.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The `styp`.
    pub styp: Bytes,
    /// Its parts, in order.
    pub parts: Vec<Part>,
}

impl Segment {
    /// `styp` and every part, in order: the segment's bytes.
    pub fn chunks(&self) -> Vec<Bytes> {
        let mut out = vec![self.styp.clone()];
        for p in &self.parts {
            out.extend(p.chunks.iter().cloned());
        }
        out
    }

    /// The sum of the parts' durations.
    pub fn duration(&self) -> Duration {
        self.parts.iter().map(|p| p.duration).sum()
    }
}

/// The segment of an archived fragment, cut into parts as live would cut
/// it (`expected` from [`expected_length`]). A frame the writer refuses is
/// skipped with a warning, as live does, so both give the same bytes.
pub fn render_fragment(
    fragment: &ArchivedFragment,
    part_target: Duration,
    expected: Option<Duration>,
) -> Result<Segment, SegmentError> {
    let mut builder = SegmentBuilder::new(&fragment.tracks, part_target, expected)?;
    for frame in &fragment.frames {
        if let Err(e) = builder.push(frame) {
            skipped_frame(fragment.summary.id, &e);
        }
    }
    if let Err(e) = builder.finish() {
        skipped_frame(fragment.summary.id, &e);
    }
    Ok(Segment {
        styp: builder.styp(),
        parts: builder.take_parts(),
    })
}

/// Log a frame the fMP4 writer refused (bad timestamps from a source).
pub(crate) fn skipped_frame(fragment: u64, e: &SegmentError) {
    tracing::warn!(fragment, error = %e, "frame left out of its fMP4 segment");
}

/// DASH serves each track on its own: the init segment of one track.
pub fn track_init_segment(tracks: &[Track], track: TrackId) -> Result<Bytes, SegmentError> {
    init_segment(&one_track(tracks, track))
}

fn one_track(tracks: &[Track], track: TrackId) -> Vec<Track> {
    tracks.iter().filter(|t| t.id == track).cloned().collect()
}

/// DASH: the segment of one track of an archived fragment, as one `moof`.
pub fn render_track(fragment: &ArchivedFragment, track: TrackId) -> Result<Vec<Bytes>, SegmentError> {
    let mut w = writer(&one_track(&fragment.tracks, track))?;
    let mut sink = Chunks::new();
    w.begin_segment(&mut sink);
    for frame in fragment.frames.iter().filter(|f| f.track == track) {
        if let Err(e) = w.push(frame) {
            skipped_frame(fragment.summary.id, &e.into());
        }
    }
    w.flush_part(&mut sink)?;
    Ok(sink.take())
}

/// Whether two track lists make the same init segment.
pub fn same_media(a: &[Track], b: &[Track]) -> bool {
    media_tracks(a) == media_tracks(b)
}

/// The RFC 6381 codecs of the media tracks, comma separated (`avc1.64001f,mp4a.40.2`).
pub fn codecs(tracks: &[Track]) -> String {
    media_tracks(tracks)
        .iter()
        .filter_map(track_codec)
        .collect::<Vec<_>>()
        .join(",")
}

/// The RFC 6381 codecs string of one track, `None` for a sensor track.
pub fn track_codec(t: &Track) -> Option<String> {
    match &t.media {
        TrackMedia::Video(v) => Some(v.codecs_string()),
        TrackMedia::Audio(a) => Some(a.codecs_string()),
        TrackMedia::Sensor(_) => None,
    }
}

/// Track lists travel shared.
pub type Tracks = Arc<[Track]>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_media::{at_secs, recording};

    const TARGET: Duration = Duration::from_millis(334);

    fn part_lengths(frames: &[Frame], tracks: &[Track], expected: Option<Duration>) -> Vec<Duration> {
        let mut b = SegmentBuilder::new(tracks, TARGET, expected).unwrap();
        for f in frames {
            b.push(f).unwrap();
        }
        b.finish().unwrap();
        b.take_parts().iter().map(|p| p.duration).collect()
    }

    #[test]
    fn fmp4_carries_video_and_the_first_audio_track_only() {
        let rec = recording();
        let mut tracks = rec.tracks.clone();
        let opus = Track::new(
            fragmenter::TrackId::new(3).unwrap(),
            "opus",
            fragmenter::media::AudioTrack {
                codec: AudioCodec::Opus { pre_skip: 312 },
                sample_rate: 48_000,
                channels: 2,
            },
        );
        tracks.push(opus.clone());
        let media = media_tracks(&tracks);
        assert_eq!(media, rec.tracks, "the Opus track (for WebRTC) is not muxed beside AAC");
        // Opus alone is muxed.
        let alone = vec![rec.tracks[0].clone(), opus];
        assert_eq!(media_tracks(&alone), alone);
    }

    #[test]
    fn an_expected_length_spreads_the_parts_so_the_last_is_no_sliver() {
        let rec = recording();
        // A 54-frame GOP at 30 fps (1.8 s), as the test camera makes: cut at
        // the target alone, its last part is the 4-frame remainder.
        let frames: Vec<Frame> = rec.gop_at(0, at_secs(0.0), true).into_iter().take(54).collect();
        let tracks = rec.video_tracks();
        let plain = part_lengths(&frames, &tracks, None);
        assert_eq!(plain.len(), 6, "{plain:?}");
        assert!(plain[5] < Duration::from_millis(250), "{plain:?}");

        // Planned from the previous GOP, of 54, 55 or 53 frames: the last
        // part stays between 0.25 s and the target either way.
        for expected_frames in [53u64, 54, 55] {
            let expected = Duration::from_nanos(expected_frames * 1_000_000_000 / 30);
            let even = part_lengths(&frames, &tracks, Some(expected));
            for d in &even {
                assert!(
                    *d <= TARGET && *d >= Duration::from_millis(250),
                    "planned {expected_frames}: {even:?}"
                );
            }
            // The same frames: the same span, to timestamp rounding.
            let (a, b) = (even.iter().sum::<Duration>(), plain.iter().sum::<Duration>());
            assert!(a.abs_diff(b) < Duration::from_micros(1), "{a:?} against {b:?}");
        }

        // A segment longer than expected goes on at the grid's step, never
        // past the target.
        let long = part_lengths(&frames, &tracks, Some(Duration::from_millis(1000)));
        assert!(long.iter().all(|d| *d <= TARGET), "{long:?}");
    }

    #[test]
    fn the_expected_length_is_the_previous_fragments_when_it_runs_into_this_one() {
        let prev = FragmentSummary {
            id: 7,
            start: at_secs(10.0),
            end: at_secs(11.8),
            frames: 54,
            bytes: 1,
        };
        let len = Duration::from_millis(1800);
        assert_eq!(expected_length(Some(&prev), at_secs(11.8)), Some(len));
        assert_eq!(
            expected_length(Some(&prev), at_secs(12.5)),
            Some(Duration::from_millis(2500)),
            "a short gap"
        );
        assert_eq!(
            expected_length(Some(&prev), at_secs(13.0)),
            None,
            "more than a second apart"
        );
        assert_eq!(expected_length(Some(&prev), at_secs(9.0)), None, "not before this one");
        assert_eq!(expected_length(None, at_secs(11.8)), None);
        assert_eq!(grid(TARGET, Some(Duration::from_millis(300))), None, "one part");
        let (step, lines) = grid(TARGET, Some(len)).unwrap();
        assert_eq!(lines, 5);
        assert!(step <= TARGET, "{step:?}");
    }
}
