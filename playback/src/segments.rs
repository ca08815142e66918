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

use crate::archive::ArchivedFragment;

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

/// The tracks of `tracks` that fMP4 carries (video, and AAC or Opus audio),
/// in order. Sensor tracks stay in the store and reach viewers another way;
/// G.711 has no ISO sample entry.
pub fn media_tracks(tracks: &[Track]) -> Vec<Track> {
    tracks
        .iter()
        .filter(|t| match &t.media {
            TrackMedia::Video(_) => true,
            TrackMedia::Audio(a) => !matches!(a.codec, AudioCodec::G711(_)),
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
    ready: Vec<Part>,
}

impl SegmentBuilder {
    /// A builder for a segment of `tracks` (non-media tracks are dropped).
    pub fn new(tracks: &[Track], part_target: Duration) -> Result<Self, SegmentError> {
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
        if let Some((from, _)) = self.timing_span {
            if end.saturating_since(from) > self.part_target {
                self.flush()?;
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
/// it. A frame the writer refuses is skipped with a warning, as live does,
/// so both give the same bytes.
pub fn render_fragment(fragment: &ArchivedFragment, part_target: Duration) -> Result<Segment, SegmentError> {
    let mut builder = SegmentBuilder::new(&fragment.tracks, part_target)?;
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
