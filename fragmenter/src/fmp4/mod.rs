//! Fragmented MP4 / CMAF writer for HLS, LL-HLS, DASH and MP4 clips.
//!
//! An [`Fmp4Writer`] makes one initialization segment (`ftyp` + `moov`,
//! [`Fmp4Writer::init_segment`]) and then media segments: a `styp`
//! ([`Fmp4Writer::begin_segment`]) followed by one or more movie fragments,
//! each a `moof` + `mdat` pair holding the frames buffered since the last
//! [`Fmp4Writer::flush_part`]. Called every 200–500 ms, each flush is an
//! LL-HLS partial segment; a whole segment is simply all of its parts.
//!
//! Timing: every frame timestamp is converted on its own from
//! [`Fmp4Options::time_origin`] (decode time zero) into the track clock
//! (90 kHz for video, the sample rate for audio, 48 kHz for Opus), so no
//! rounding error accumulates over hours of recording. Payloads are handed to
//! the sink as the frames' own `Bytes` ([`ByteSink::put_bytes`]), never
//! copied. References are to ISO/IEC 14496-12 (ISOBMFF).

mod boxes;
mod init;
mod time;

#[cfg(test)]
mod tests;

use std::time::Duration;

use bytes::Bytes;
use mp4_atom::{Encode, Mfhd, Moof, Prft, ReferenceTime, Tfdt, Tfhd, Traf, Trun, TrunEntry, TrunSamples};

use crate::media::{Frame, Timestamp, Track, TrackId, TrackKind};
use crate::sink::ByteSink;

/// Sample flags of a sync sample (§8.8.3.1): `sample_depends_on` = 2, it
/// depends on no other sample.
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// Sample flags of a non-sync sample: `sample_depends_on` = 1 (it depends on
/// others) and `sample_is_non_sync_sample` set.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Upper bound of the bytes a part may hold: `trun` data offsets are signed
/// 32-bit offsets from the start of the `moof`.
const PART_LIMIT: u64 = i32::MAX as u64;
/// Room kept under [`PART_LIMIT`] for the `moof` itself: its fixed boxes
/// (a few hundred bytes) and 16 bytes of `trun` entry per sample, which
/// [`Fmp4Writer::push`] adds per frame.
const MOOF_RESERVE: u64 = 4096;
const TRUN_ENTRY_BYTES: u64 = 16;

/// How an [`Fmp4Writer`] maps time and what it adds to each fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fmp4Options {
    /// The absolute time that is decode time zero in every track; frames
    /// before it are refused. Usually the first frame's dts, or a fixed
    /// instant shared by all renditions of a stream so their timelines align.
    pub time_origin: Timestamp,
    /// Write a `prft` (ProducerReferenceTimeBox, §8.16.5) before each `moof`
    /// giving the wall-clock (NTP) time of the fragment's first frame, for
    /// DASH latency measurement and clock mapping.
    pub prft: bool,
    /// Creation time recorded in `mvhd`, `tkhd` and `mdhd`; zero when `None`.
    pub creation_time: Option<Timestamp>,
}

impl Fmp4Options {
    /// Options with the given time origin, no `prft` and no creation time.
    pub fn new(time_origin: Timestamp) -> Self {
        Fmp4Options {
            time_origin,
            prft: false,
            creation_time: None,
        }
    }
}

/// What one [`Fmp4Writer::flush_part`] wrote: the facts an HLS or DASH
/// playlist needs about the part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PartInfo {
    /// The earliest decode time of the part's frames (over all tracks).
    pub first_dts: Timestamp,
    /// The earliest presentation time of the part's frames (over all tracks;
    /// with reordered video this need not be the first frame's).
    pub first_pts: Timestamp,
    /// Where the part ends: the latest `dts + duration` of each track's last
    /// frame (a frame without a duration lasts as long as the one before it).
    pub end: Timestamp,
    /// `end - first_dts`.
    pub duration: Duration,
    /// Frames in the part, all tracks together.
    pub frames: usize,
    /// Bytes written to the sink by this call: `prft` (when enabled), `moof`
    /// and `mdat` with its payload, i.e. the part's byte range length.
    pub bytes: usize,
    /// The part can be decoded on its own: every video track in it starts
    /// with a key frame, or it holds no video (LL-HLS `INDEPENDENT=YES`).
    pub independent: bool,
}

/// Errors of the fMP4 writer, saying what was wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fmp4Error {
    /// fMP4 here carries video and audio only; sensor tracks go to Matroska.
    #[error("{track} ({name:?}) is a {kind:?} track: the fMP4 writer takes only video and audio tracks")]
    UnsupportedTrack {
        /// The refused track.
        track: TrackId,
        /// Its name.
        name: String,
        /// What it carries.
        kind: TrackKind,
    },
    /// An audio or video codec that has no sample entry here.
    #[error("{track} uses {codec}, which the fMP4 writer does not support (H.264, H.265, AAC and Opus only)")]
    UnsupportedCodec {
        /// The refused track.
        track: TrackId,
        /// The codec's name.
        codec: &'static str,
    },
    /// [`Fmp4Writer::new`] was given no track.
    #[error("no tracks: an fMP4 init segment needs at least one video or audio track")]
    NoTracks,
    /// The same track number was given twice.
    #[error("{track} is listed twice: MP4 track IDs must be unique")]
    DuplicateTrack {
        /// The repeated track.
        track: TrackId,
    },
    /// A codec configuration record or parameter that cannot be written.
    #[error("{track}: invalid {what}: {reason}")]
    CodecConfig {
        /// The track.
        track: TrackId,
        /// Which part of the configuration (avcC, hvcC, sample rate…).
        what: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// Sample entries store the picture size in 16 bits.
    #[error("{track}: picture size {width}x{height} does not fit the 16-bit width and height of an MP4 sample entry")]
    PictureSize {
        /// The track.
        track: TrackId,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// A frame of a track the writer was not created with.
    #[error("frame of {track}, which is not one of this writer's tracks")]
    UnknownTrack {
        /// The frame's track.
        track: TrackId,
    },
    /// Decode times of a track went backwards.
    #[error("{track}: frame dts {dts} is before the previous frame's dts {previous}; dts must not decrease")]
    DtsDecreased {
        /// The track.
        track: TrackId,
        /// The refused frame's dts.
        dts: Timestamp,
        /// The dts of the frame before it.
        previous: Timestamp,
    },
    /// A frame timestamp before [`Fmp4Options::time_origin`]: MP4 decode
    /// times start at zero.
    #[error("{track}: frame {which} {at} is before the time origin {origin}")]
    BeforeOrigin {
        /// The track.
        track: TrackId,
        /// `"dts"` or `"pts"`.
        which: &'static str,
        /// The refused timestamp.
        at: Timestamp,
        /// The writer's time origin.
        origin: Timestamp,
    },
    /// `pts - dts` does not fit the signed 32-bit `trun` composition offset.
    #[error("{track}: composition offset pts - dts of {ticks} ticks (frame dts {dts}) does not fit a signed 32-bit trun field")]
    CompositionOffset {
        /// The track.
        track: TrackId,
        /// The frame's dts.
        dts: Timestamp,
        /// The offset in track ticks.
        ticks: i64,
    },
    /// A sample longer than a 32-bit `trun` duration can say.
    #[error("{track}: the sample at dts {dts} lasts {ticks} ticks, more than a 32-bit trun duration holds")]
    SampleDuration {
        /// The track.
        track: TrackId,
        /// The sample's dts.
        dts: Timestamp,
        /// Its duration in track ticks (saturated).
        ticks: u64,
    },
    /// A frame larger than a 32-bit `trun` sample size.
    #[error("{track}: frame of {bytes} bytes at dts {dts} exceeds the 32-bit trun sample size")]
    SampleSize {
        /// The track.
        track: TrackId,
        /// The frame's dts.
        dts: Timestamp,
        /// Its size.
        bytes: usize,
    },
    /// The buffered part would exceed what signed 32-bit data offsets reach;
    /// flush more often.
    #[error("{track}: buffering the frame at dts {dts} would make the part exceed 2 GiB, the reach of trun data offsets; flush parts more often")]
    PartTooLarge {
        /// The track of the refused frame.
        track: TrackId,
        /// The refused frame's dts.
        dts: Timestamp,
    },
    /// `mp4-atom` refused to encode a box: a bug or a configuration it does
    /// not support.
    #[error("encoding {what} failed: {reason}")]
    Encode {
        /// The box.
        what: &'static str,
        /// The encoder's error.
        reason: String,
    },
}

/// A buffered frame with its times already in track ticks.
#[derive(Debug)]
struct Sample {
    dts: Timestamp,
    pts: Timestamp,
    duration: Duration,
    /// Decode time in track ticks from the origin.
    t_dts: u64,
    /// Composition offset in ticks: `t(pts) - t(dts)`.
    cts: i32,
    keyframe: bool,
    data: Bytes,
}

#[derive(Debug)]
struct TrackState {
    id: TrackId,
    timescale: u32,
    video: bool,
    pending: Vec<Sample>,
    /// The dts of the last accepted frame, kept across parts.
    last_dts: Option<Timestamp>,
    /// The duration given to the last written sample, for a last frame
    /// without a duration of its own.
    last_duration: Option<u32>,
    /// The `trun` entries, kept between parts to reuse the allocation.
    entries: Vec<TrunEntry>,
}

/// Writes fragmented MP4 / CMAF: an init segment, then media segments of
/// `moof` + `mdat` parts. See the [module documentation](self).
#[derive(Debug)]
pub struct Fmp4Writer {
    opts: Fmp4Options,
    tracks: Vec<TrackState>,
    ids: Vec<TrackId>,
    /// Index into `tracks` by [`TrackId::index`].
    slots: [Option<usize>; TrackId::MAX_TRACKS as usize],
    init: Bytes,
    styp: Vec<u8>,
    /// The next `mfhd` sequence number; starts at 1.
    sequence_number: u32,
    pending_frames: usize,
    /// Payload bytes buffered plus the `trun` bytes they need.
    pending_part_bytes: u64,
    /// Scratch buffer for `prft` + `moof` + `mdat` header, reused per part.
    head: Vec<u8>,
}

impl Fmp4Writer {
    /// A writer for `tracks`, in this order in the `moov`. Video and audio
    /// tracks only: a sensor track is refused with
    /// [`Fmp4Error::UnsupportedTrack`] naming it, G.711 (which has no ISO
    /// sample entry) with [`Fmp4Error::UnsupportedCodec`], and parameters an
    /// MP4 sample entry cannot carry (an avcC/hvcC that is not a decoder
    /// configuration record, an empty AudioSpecificConfig, Opus with more
    /// than two channels, a picture wider than 65535) with the matching
    /// error. The decoder configuration records are written verbatim.
    pub fn new(tracks: &[Track], opts: Fmp4Options) -> Result<Self, Fmp4Error> {
        let (plans, init) = init::build(tracks, &opts)?;
        let styp = init::styp(plans.len())?;
        let mut slots = [None; TrackId::MAX_TRACKS as usize];
        let mut states = Vec::with_capacity(plans.len());
        for (i, plan) in plans.iter().enumerate() {
            if let Some(slot) = slots.get_mut(plan.id.index()) {
                *slot = Some(i);
            }
            states.push(TrackState {
                id: plan.id,
                timescale: plan.timescale,
                video: plan.video,
                pending: Vec::new(),
                last_dts: None,
                last_duration: None,
                entries: Vec::new(),
            });
        }
        Ok(Fmp4Writer {
            opts,
            ids: plans.iter().map(|p| p.id).collect(),
            tracks: states,
            slots,
            init,
            styp,
            sequence_number: 1,
            pending_frames: 0,
            pending_part_bytes: 0,
            head: Vec::with_capacity(1024),
        })
    }

    /// The initialization segment: `ftyp` + `moov` (one `trak` per track
    /// with an empty sample table and its sample entry — avc1/avcC,
    /// hvc1/hvcC, mp4a/esds or Opus/dOps — and an `mvex` with a `trex` per
    /// track). Cheap: built once by [`Fmp4Writer::new`] and shared.
    pub fn init_segment(&self) -> Bytes {
        self.init.clone()
    }

    /// The track IDs in the order of their `trak` boxes in the `moov`.
    pub fn track_ids(&self) -> &[TrackId] {
        &self.ids
    }

    /// The media timescale (ticks per second) of `track`: 90000 for video,
    /// the sample rate for AAC, 48000 for Opus; `None` for a track the writer
    /// does not have.
    pub fn timescale(&self, track: TrackId) -> Option<u32> {
        self.state_index(track)
            .and_then(|i| self.tracks.get(i))
            .map(|t| t.timescale)
    }

    /// The options the writer was created with.
    pub fn options(&self) -> &Fmp4Options {
        &self.opts
    }

    /// Frames buffered for the next part.
    pub fn buffered_frames(&self) -> usize {
        self.pending_frames
    }

    /// Write a `styp` box: the start of a media segment. Call it after the
    /// [`Fmp4Writer::flush_part`] that ended the previous segment: frames
    /// still buffered would become the first part of the new segment.
    pub fn begin_segment(&mut self, sink: &mut impl ByteSink) {
        sink.put_slice(&self.styp);
    }

    /// Buffer a frame for the next part. Keeps the frame's `Bytes` (a
    /// reference count, no copy).
    ///
    /// Refused, leaving the writer unchanged: a frame of a track the writer
    /// does not have, a dts below the track's previous one, a dts or pts
    /// before the time origin, a composition offset or gap that does not fit
    /// the 32-bit `trun` fields, or a part growing past 2 GiB.
    pub fn push(&mut self, frame: &Frame) -> Result<(), Fmp4Error> {
        let track = frame.track;
        let index = self.state_index(track).ok_or(Fmp4Error::UnknownTrack { track })?;
        let origin = self.opts.time_origin;
        let budget = self
            .pending_part_bytes
            .saturating_add(frame.data.len() as u64)
            .saturating_add(TRUN_ENTRY_BYTES);
        let t = self.tracks.get_mut(index).ok_or(Fmp4Error::UnknownTrack { track })?;

        if let Some(previous) = t.last_dts {
            if frame.dts < previous {
                return Err(Fmp4Error::DtsDecreased {
                    track,
                    dts: frame.dts,
                    previous,
                });
            }
        }
        let before = |which, at| Fmp4Error::BeforeOrigin {
            track,
            which,
            at,
            origin,
        };
        let t_dts = time::ticks(frame.dts, origin, t.timescale).ok_or_else(|| before("dts", frame.dts))?;
        let t_pts = time::ticks(frame.pts, origin, t.timescale).ok_or_else(|| before("pts", frame.pts))?;
        // Both are at most u64::MAX, so the difference fits i128 exactly.
        let offset = i128::from(t_pts) - i128::from(t_dts);
        let cts = i32::try_from(offset).map_err(|_| Fmp4Error::CompositionOffset {
            track,
            dts: frame.dts,
            ticks: i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX }),
        })?;
        if u32::try_from(frame.data.len()).is_err() {
            return Err(Fmp4Error::SampleSize {
                track,
                dts: frame.dts,
                bytes: frame.data.len(),
            });
        }
        // The previous sample's duration will be the gap to this one.
        if let Some(prev) = t.pending.last() {
            let gap = t_dts.saturating_sub(prev.t_dts);
            if u32::try_from(gap).is_err() {
                return Err(Fmp4Error::SampleDuration {
                    track,
                    dts: prev.dts,
                    ticks: gap,
                });
            }
        }
        // Should this frame end a part, its own duration is written (rounding
        // may add one tick, hence the margin).
        if !time::span_fits(frame.duration.as_nanos(), t.timescale, u64::from(u32::MAX) - 1) {
            return Err(Fmp4Error::SampleDuration {
                track,
                dts: frame.dts,
                ticks: time::ns_to_ticks(
                    u64::try_from(frame.duration.as_nanos()).unwrap_or(u64::MAX),
                    t.timescale,
                ),
            });
        }
        if budget > PART_LIMIT - MOOF_RESERVE {
            return Err(Fmp4Error::PartTooLarge { track, dts: frame.dts });
        }

        t.pending.push(Sample {
            dts: frame.dts,
            pts: frame.pts,
            duration: frame.duration,
            t_dts,
            cts,
            keyframe: frame.keyframe,
            data: frame.data.clone(),
        });
        t.last_dts = Some(frame.dts);
        self.pending_frames += 1;
        self.pending_part_bytes = budget;
        Ok(())
    }

    /// Write the buffered frames as one movie fragment: a `prft` when
    /// enabled, a `moof` with one `traf` per track that has frames (`tfhd`
    /// with default-base-is-moof, `tfdt` version 1, `trun` version 1 with the
    /// data offset and per-sample duration, size, flags, and signed
    /// composition offsets when any is non-zero), then the `mdat` with the
    /// payloads, track after track.
    ///
    /// Returns `None` (writing nothing) when nothing is buffered. On error
    /// nothing is written and the buffered frames are dropped, so the writer
    /// can go on with the next part.
    pub fn flush_part(&mut self, sink: &mut impl ByteSink) -> Result<Option<PartInfo>, Fmp4Error> {
        if self.pending_frames == 0 {
            return Ok(None);
        }
        let result = self.encode_head();
        let info = match result {
            Ok(info) => info,
            Err(e) => {
                self.drop_pending();
                return Err(e);
            }
        };
        sink.put_slice(&self.head);
        for t in &mut self.tracks {
            for sample in t.pending.drain(..) {
                sink.put_bytes(sample.data);
            }
        }
        self.pending_frames = 0;
        self.pending_part_bytes = 0;
        self.sequence_number = self.sequence_number.checked_add(1).unwrap_or(1);
        Ok(Some(info))
    }

    fn state_index(&self, track: TrackId) -> Option<usize> {
        self.slots.get(track.index()).copied().flatten()
    }

    fn drop_pending(&mut self) {
        for t in &mut self.tracks {
            t.pending.clear();
        }
        self.pending_frames = 0;
        self.pending_part_bytes = 0;
    }

    /// Encode `prft` + `moof` + `mdat` header into `self.head` and describe
    /// the part. Leaves the pending samples in place for the payload write.
    fn encode_head(&mut self) -> Result<PartInfo, Fmp4Error> {
        let mut moof = Moof {
            mfhd: Mfhd {
                sequence_number: self.sequence_number,
            },
            traf: Vec::with_capacity(self.tracks.len()),
        };
        // Payload bytes of each traf, in traf order.
        let mut traf_bytes = [0u64; TrackId::MAX_TRACKS as usize];
        let mut first_dts: Option<Timestamp> = None;
        let mut first_pts: Option<Timestamp> = None;
        let mut end = Timestamp::EPOCH;
        let mut independent = true;
        // prft reference: the first video track with frames, else the first
        // track with frames: (track ID, wall-clock pts of its first frame,
        // that pts in the track clock, is video).
        let mut reference: Option<(u32, Timestamp, u64, bool)> = None;

        for t in &mut self.tracks {
            let (Some(first), Some(last)) = (t.pending.first(), t.pending.last()) else {
                continue;
            };
            let mut entries = std::mem::take(&mut t.entries);
            entries.clear();
            entries.reserve(t.pending.len());
            let with_cts = t.pending.iter().any(|s| s.cts != 0);
            let mut bytes = 0u64;
            let mut previous_duration = t.last_duration;
            for (i, s) in t.pending.iter().enumerate() {
                let duration = match t.pending.get(i + 1) {
                    // Checked by push to fit in 32 bits.
                    Some(next) => u32::try_from(next.t_dts.saturating_sub(s.t_dts)).unwrap_or(u32::MAX),
                    None => last_duration(s, t.timescale, self.opts.time_origin, previous_duration),
                };
                previous_duration = Some(duration);
                // Audio frames are all sync samples whatever the source said:
                // a non-sync audio sample would stop players from starting at
                // the part.
                let sync = s.keyframe || !t.video;
                entries.push(TrunEntry {
                    duration: Some(duration),
                    size: Some(s.data.len() as u32), // checked by push
                    flags: Some(if sync { SYNC_SAMPLE_FLAGS } else { NON_SYNC_SAMPLE_FLAGS }),
                    cts: with_cts.then_some(i64::from(s.cts)),
                });
                bytes += s.data.len() as u64;
                first_pts = Some(first_pts.map_or(s.pts, |p| p.min(s.pts)));
            }
            t.last_duration = previous_duration;

            let last_end = if last.duration.is_zero() {
                last.dts
                    + Duration::from_nanos(time::ticks_to_ns(
                        u64::from(previous_duration.unwrap_or(0)),
                        t.timescale,
                    ))
            } else {
                last.dts + last.duration
            };
            end = end.max(last_end);
            first_dts = Some(first_dts.map_or(first.dts, |d| d.min(first.dts)));
            if t.video {
                independent &= first.keyframe;
            }
            let track_id = u32::from(t.id.get());
            let media_time = first.t_dts.saturating_add_signed(i64::from(first.cts));
            match reference {
                Some((_, _, _, true)) => {}
                Some(_) if !t.video => {}
                _ => reference = Some((track_id, first.pts, media_time, t.video)),
            }
            if let Some(slot) = traf_bytes.get_mut(moof.traf.len()) {
                *slot = bytes;
            }
            moof.traf.push(Traf {
                tfhd: Tfhd {
                    track_id,
                    default_base_is_moof: true,
                    ..Default::default()
                },
                tfdt: Some(Tfdt {
                    base_media_decode_time: first.t_dts,
                }),
                trun: vec![Trun {
                    data_offset: Some(0),
                    samples: TrunSamples::Explicit(entries),
                }],
                ..Default::default()
            });
        }

        self.head.clear();
        if self.opts.prft {
            if let Some((reference_track_id, pts, media_time, _)) = reference {
                Prft {
                    reference_track_id,
                    ntp_timestamp: time::ntp_time(pts),
                    media_time,
                    // The frame times are capture times: when the frame was
                    // input to the encoder.
                    utc_time_semantics: ReferenceTime::Input,
                }
                .encode(&mut self.head)
                .map_err(|e| encode_failed("prft", e))?;
            }
        }
        let moof_start = self.head.len();
        let encoded = moof.encode(&mut self.head);

        // Hand the trun entry vectors back for reuse, whatever happened.
        let mut trafs = moof.traf.into_iter();
        for t in self.tracks.iter_mut().filter(|t| !t.pending.is_empty()) {
            if let Some(traf) = trafs.next() {
                if let Some(Trun {
                    samples: TrunSamples::Explicit(entries),
                    ..
                }) = traf.trun.into_iter().next()
                {
                    t.entries = entries;
                }
            }
        }
        encoded.map_err(|e| encode_failed("moof", e))?;

        // Data offsets count from the first byte of the moof
        // (default-base-is-moof) to each traf's first payload byte.
        let payload: u64 = traf_bytes.iter().sum();
        let moof_len = (self.head.len() - moof_start) as u64;
        let mut offsets = [0i32; TrackId::MAX_TRACKS as usize];
        let mut at = moof_len + boxes::mdat_header_len(payload) as u64;
        let traf_count = self.tracks.iter().filter(|t| !t.pending.is_empty()).count();
        for (offset, bytes) in offsets.iter_mut().zip(traf_bytes).take(traf_count) {
            *offset = i32::try_from(at).map_err(|_| Fmp4Error::Encode {
                what: "trun",
                reason: format!("data offset {at} exceeds 32 bits"),
            })?;
            at += bytes;
        }
        let moof_bytes = self.head.get_mut(moof_start..).unwrap_or_default();
        boxes::patch_trun_data_offsets(moof_bytes, offsets.get(..traf_count).unwrap_or_default()).ok_or_else(|| {
            Fmp4Error::Encode {
                what: "trun",
                reason: "encoded moof does not have the expected traf/trun layout".to_owned(),
            }
        })?;
        boxes::mdat_header(&mut self.head, payload);

        let first_dts = first_dts.unwrap_or(self.opts.time_origin);
        Ok(PartInfo {
            first_dts,
            first_pts: first_pts.unwrap_or(first_dts),
            end,
            duration: end - first_dts,
            frames: self.pending_frames,
            bytes: self.head.len() + payload as usize,
            independent,
        })
    }
}

/// The duration of a track's last buffered sample: up to the end its frame
/// gives, else the previous sample's duration (or zero for a lone first
/// sample).
fn last_duration(s: &Sample, timescale: u32, origin: Timestamp, previous: Option<u32>) -> u32 {
    if s.duration.is_zero() {
        return previous.unwrap_or(0);
    }
    // Converted as an instant like every other time, so the end of this part
    // and the tfdt of the next agree when durations are consistent.
    let end = time::ticks(s.dts + s.duration, origin, timescale).unwrap_or(s.t_dts);
    // push checked the duration fits with a tick to spare.
    u32::try_from(end.saturating_sub(s.t_dts)).unwrap_or(u32::MAX)
}

fn encode_failed(what: &'static str, e: mp4_atom::Error) -> Fmp4Error {
    Fmp4Error::Encode {
        what,
        reason: e.to_string(),
    }
}
