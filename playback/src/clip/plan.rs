//! What a clip is made of, worked out before the first byte is sent.
//!
//! A clip is the fMP4 init segment followed by one `moof` + `mdat` per stored
//! fragment in the range. To send an exact `Content-Length` (and to answer
//! byte ranges) every fragment's encoded length must be known up front, yet
//! the clip must neither be buffered nor spooled to a file. So each fragment
//! is encoded once to learn its length (the encoding is cheap: headers are a
//! few hundred bytes, payloads stay the frames' own `Bytes`) and dropped; the
//! body is encoded again, fragment by fragment, while it is sent.
//!
//! For both passes to yield identical bytes, a fragment's encoding depends
//! on nothing but the fragment and the [`Plan`]: every fragment gets a fresh
//! [`Fmp4Writer`] with the clip's time origin, and its `mfhd` sequence number
//! is patched to its position in the clip (a fresh writer would say 1). A
//! byte range in the middle of a long clip then costs only the fragments it
//! touches.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use fragmenter::fmp4::{Fmp4Error, Fmp4Options, Fmp4Writer};
use fragmenter::media::TrackKind;
use fragmenter::sink::Chunks;
use fragmenter::{Frame, Timestamp, Track, TrackId};

use super::ClipError;
use crate::archive::{Archive, ArchiveError, ArchivedFragment, FragmentSummary};

/// One fragment's place in the clip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// The stored fragment.
    pub id: u64,
    /// Where its `moof` starts in the clip.
    pub offset: u64,
    /// Its encoded length (`moof` + `mdat`).
    pub len: u64,
    /// Its `mfhd` sequence number: its position in the clip, from 1.
    pub sequence: u32,
}

/// Which frames of the stored fragments a clip keeps.
///
/// The clip starts at the last key frame of the key track at or before the
/// requested start (so the first picture decodes), and other tracks from
/// that key frame's presentation time. At the end, video frames decoded at or
/// after `end` go (no kept frame can reference a frame decoded after it) and
/// so do other frames presented at or after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Window {
    start: Timestamp,
    end: Timestamp,
    /// The first video track: the track whose key frame starts the clip.
    key_track: Option<TrackId>,
    /// (dts, pts) of that key frame, when one is at or before `start`.
    key: Option<(Timestamp, Timestamp)>,
}

impl Window {
    fn keeps(&self, f: &Frame, video: bool) -> bool {
        if Some(f.track) == self.key_track {
            return f.dts < self.end && self.key.is_none_or(|(dts, _)| f.dts >= dts);
        }
        let before_end = if video { f.dts < self.end } else { f.pts < self.end };
        let after_start = match self.key {
            Some((_, pts)) => f.pts >= pts,
            None => f.pts + f.duration > self.start,
        };
        before_end && after_start
    }
}

/// Everything needed to send any byte range of a clip.
#[derive(Debug)]
pub struct Plan {
    /// The stream.
    pub stream: String,
    /// `ftyp` + `moov`.
    pub init: Bytes,
    /// The video and audio tracks in the clip, in `moov` order.
    tracks: Vec<Track>,
    /// Kinds of `tracks`, indexed by [`TrackId::index`].
    video: [Option<bool>; TrackId::MAX_TRACKS as usize],
    origin: Timestamp,
    window: Window,
    /// Non-empty fragments in order.
    pub parts: Vec<Part>,
    /// Total length of the clip.
    pub len: u64,
    /// Strong validator: the stream, the requested range and every stored
    /// fragment's identity and size.
    pub etag: String,
}

/// Clips planned recently, so that a player's follow-up range requests
/// (seeking in a `<video>`) do not re-encode the whole clip to learn its
/// layout. Keyed by the archive's address and the ETag hash, which covers
/// every fragment's id, times, frame count and size.
static PLANS: Mutex<VecDeque<(usize, u64, Arc<Plan>)>> = Mutex::new(VecDeque::new());
const PLANS_KEPT: usize = 16;

/// The plan for `stream` between `start` and `end`, from the cache or made
/// now. Blocks (reads the archive): call from the blocking pool.
pub fn plan(archive: &dyn Archive, stream: &str, start: Timestamp, end: Timestamp) -> Result<Arc<Plan>, ClipError> {
    let summaries = archive.fragments(stream, start, end)?;
    if summaries.is_empty() {
        return Err(ClipError::NothingRecorded {
            stream: stream.to_owned(),
            start,
            end,
        });
    }
    let hash = etag_hash(stream, start, end, &summaries);
    let archive_key = archive as *const dyn Archive as *const () as usize;
    let mut cached = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, _, p)) = cached.iter().find(|(a, h, _)| *a == archive_key && *h == hash) {
        return Ok(Arc::clone(p));
    }
    drop(cached);

    let plan = Arc::new(make_plan(archive, stream, start, end, &summaries, hash)?);
    cached = PLANS.lock().unwrap_or_else(|e| e.into_inner());
    if cached.len() >= PLANS_KEPT {
        cached.pop_front();
    }
    cached.push_back((archive_key, hash, Arc::clone(&plan)));
    Ok(plan)
}

fn make_plan(
    archive: &dyn Archive,
    stream: &str,
    start: Timestamp,
    end: Timestamp,
    summaries: &[FragmentSummary],
    hash: u64,
) -> Result<Plan, ClipError> {
    let mut plan: Option<Plan> = None;
    for summary in summaries {
        let fragment = match archive.read_fragment(stream, summary.id) {
            Ok(f) => f,
            // Retention deleted it since `fragments`: the clip goes without.
            Err(ArchiveError::UnknownFragment { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let p = match plan.as_mut() {
            Some(p) => p,
            None => plan.insert(first_part(stream, start, end, &fragment, hash)?),
        };
        if !p.same_tracks(&fragment.tracks) {
            // One MP4 has one set of sample entries: a writer restarted with
            // another codec configuration ends the clip.
            tracing::warn!(
                stream,
                fragment = summary.id,
                "clip ends early: the tracks changed at fragment {} ({})",
                summary.id,
                summary.start
            );
            break;
        }
        let sequence = u32::try_from(p.parts.len() + 1).unwrap_or(u32::MAX);
        let len: u64 = p.encode(&fragment, sequence)?.iter().map(|b| b.len() as u64).sum();
        if len > 0 {
            p.parts.push(Part {
                id: summary.id,
                offset: p.len,
                len,
                sequence,
            });
            p.len += len;
        }
    }
    match plan {
        Some(p) if !p.parts.is_empty() => Ok(p),
        _ => Err(ClipError::NothingRecorded {
            stream: stream.to_owned(),
            start,
            end,
        }),
    }
}

/// The plan's fixed parts, from the clip's first fragment.
fn first_part(
    stream: &str,
    start: Timestamp,
    end: Timestamp,
    fragment: &ArchivedFragment,
    hash: u64,
) -> Result<Plan, ClipError> {
    let tracks = clip_tracks(stream, &fragment.tracks)?;
    let mut video = [None; TrackId::MAX_TRACKS as usize];
    for t in &tracks {
        if let Some(slot) = video.get_mut(t.id.index()) {
            *slot = Some(t.kind() == TrackKind::Video);
        }
    }
    let key_track = tracks.iter().find(|t| t.kind() == TrackKind::Video).map(|t| t.id);
    let key = fragment
        .frames
        .iter()
        .filter(|f| Some(f.track) == key_track && f.keyframe && f.pts <= start)
        .last()
        .map(|f| (f.dts, f.pts));
    let window = Window {
        start,
        end,
        key_track,
        key,
    };
    // Decode time zero is the earliest time of a kept frame: MP4 times
    // cannot be negative. Later fragments start after this one ends.
    let origin = fragment
        .frames
        .iter()
        .filter(|f| {
            video
                .get(f.track.index())
                .copied()
                .flatten()
                .is_some_and(|v| window.keeps(f, v))
        })
        .map(|f| f.dts.min(f.pts))
        .min()
        .unwrap_or(fragment.summary.start);
    let init = Fmp4Writer::new(&tracks, Fmp4Options::new(origin))
        .map_err(|e| ClipError::Encode(stream.to_owned(), e))?
        .init_segment();
    Ok(Plan {
        stream: stream.to_owned(),
        len: init.len() as u64,
        init,
        tracks,
        video,
        origin,
        window,
        parts: Vec::new(),
        etag: format!("\"clip-{hash:016x}\""),
    })
}

/// The video and audio tracks of `tracks` that an fMP4 writer accepts. Sensor tracks are left out (they have no MP4 sample entry
/// here) and so is audio the writer refuses (G.711): a camera with G.711
/// audio still gets a clip of its video.
fn clip_tracks(stream: &str, tracks: &[Track]) -> Result<Vec<Track>, ClipError> {
    let mut av: Vec<Track> = tracks
        .iter()
        .filter(|t| matches!(t.kind(), TrackKind::Video | TrackKind::Audio))
        .cloned()
        .collect();
    loop {
        if av.is_empty() {
            return Err(ClipError::NoAudioVideo(stream.to_owned()));
        }
        match Fmp4Writer::new(&av, Fmp4Options::new(Timestamp::EPOCH)) {
            Ok(_) => return Ok(av),
            Err(Fmp4Error::UnsupportedCodec { track, codec }) => {
                tracing::debug!(stream, %track, codec, "clip leaves out a track fMP4 cannot carry");
                av.retain(|t| t.id != track);
            }
            Err(e) => return Err(ClipError::Encode(stream.to_owned(), e)),
        }
    }
}

impl Plan {
    /// Whether a fragment written with `tracks` fits this clip's init segment.
    fn same_tracks(&self, tracks: &[Track]) -> bool {
        self.tracks.iter().all(|mine| tracks.iter().any(|t| t == mine))
    }

    /// `fragment` as one `moof` + `mdat` with `sequence` in its `mfhd`:
    /// header chunks and the frames' own payloads. Empty when no frame of it
    /// is kept.
    pub fn encode(&self, fragment: &ArchivedFragment, sequence: u32) -> Result<Vec<Bytes>, ClipError> {
        let encode_error = |e| ClipError::Encode(self.stream.clone(), e);
        let mut writer = Fmp4Writer::new(&self.tracks, Fmp4Options::new(self.origin)).map_err(encode_error)?;
        let mut refused: Option<(usize, Fmp4Error)> = None;
        for f in &fragment.frames {
            // Sensor frames and frames outside the window are not in the clip.
            let Some(video) = self.video.get(f.track.index()).copied().flatten() else {
                continue;
            };
            if !self.window.keeps(f, video) {
                continue;
            }
            // A frame the writer refuses (time going backwards in a damaged
            // recording) is left out rather than failing the whole clip. The
            // choice depends only on the fragment, so both passes agree.
            if let Err(e) = writer.push(f) {
                let r = refused.get_or_insert((0, e));
                r.0 += 1;
            }
        }
        if let Some((n, first)) = refused {
            tracing::warn!(
                stream = self.stream,
                fragment = fragment.summary.id,
                "clip leaves out {n} frame(s): {first}"
            );
        }
        let mut sink = Chunks::new();
        if writer.flush_part(&mut sink).map_err(encode_error)?.is_none() {
            return Ok(Vec::new());
        }
        let mut chunks = sink.take();
        if let Some(head) = chunks.first_mut() {
            *head = with_sequence(head, sequence).ok_or_else(|| ClipError::Internal {
                stream: self.stream.clone(),
                reason: format!("fragment {} does not begin with moof/mfhd", fragment.summary.id),
            })?;
        }
        Ok(chunks)
    }
}

/// `head` (a `moof` box first) with the `mfhd` sequence number set
/// (ISO/IEC 14496-12 §8.8.5: moof header, then mfhd: size, type,
/// version/flags, sequence_number). `None` if `head` is not laid out so.
fn with_sequence(head: &Bytes, sequence: u32) -> Option<Bytes> {
    if head.get(4..8)? != b"moof" || head.get(12..16)? != b"mfhd" {
        return None;
    }
    let mut b = BytesMut::from(&head[..]);
    b.get_mut(20..24)?.copy_from_slice(&sequence.to_be_bytes());
    Some(b.freeze())
}

/// FNV-1a over everything that decides the clip's bytes: stable across
/// builds and restarts, unlike `std`'s hasher, so ETags survive them.
fn etag_hash(stream: &str, start: Timestamp, end: Timestamp, fragments: &[FragmentSummary]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    // Bump when the clip layout changes, so old ETags stop matching.
    eat(b"clip v1\0");
    eat(stream.as_bytes());
    eat(&[0]);
    eat(&start.as_nanos().to_le_bytes());
    eat(&end.as_nanos().to_le_bytes());
    for f in fragments {
        eat(&f.id.to_le_bytes());
        eat(&f.start.as_nanos().to_le_bytes());
        eat(&f.end.as_nanos().to_le_bytes());
        eat(&f.frames.to_le_bytes());
        eat(&f.bytes.to_le_bytes());
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sequence_number_is_written_into_mfhd() {
        let mut head = vec![0, 0, 0, 40];
        head.extend_from_slice(b"moof");
        head.extend_from_slice(&[0, 0, 0, 16]);
        head.extend_from_slice(b"mfhd");
        head.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 1, 9, 9]);
        let patched = with_sequence(&Bytes::from(head.clone()), 0x0102_0304).unwrap();
        assert_eq!(&patched[20..24], &[1, 2, 3, 4]);
        assert_eq!(&patched[..20], &head[..20]);
        assert_eq!(&patched[24..], &[9, 9]);
        assert!(with_sequence(&Bytes::from_static(b"\0\0\0\x08mdat"), 1).is_none());
    }

    #[test]
    fn the_etag_changes_with_any_fragment() {
        let f = FragmentSummary {
            id: 7,
            start: Timestamp::from_millis(1),
            end: Timestamp::from_millis(2),
            frames: 3,
            bytes: 4,
        };
        let t = Timestamp::from_millis(1);
        let base = etag_hash("cam", t, t, &[f]);
        assert_eq!(base, etag_hash("cam", t, t, &[f]));
        assert_ne!(base, etag_hash("cam", t, t, &[FragmentSummary { bytes: 5, ..f }]));
        assert_ne!(base, etag_hash("cam2", t, t, &[f]));
        assert_ne!(base, etag_hash("cam", t, Timestamp::from_millis(9), &[f]));
    }
}
