//! Cutting interleaved frames into fragments.
//!
//! A fragment is what KVS acknowledges and what HLS calls a segment: a run of
//! frames that starts on a video key frame (or on a duration boundary when the
//! stream has no video), is closed at the first key frame after the target
//! duration, is never longer than 20 s nor larger than 50 MB, and whose first
//! timestamp is strictly greater than every timestamp of the fragment before
//! it. Strictness is checked in ticks of the container's time scale (1 ms, the
//! Matroska TimecodeScale KVS uses), because that is the precision at which
//! the service compares fragment timecodes (ErrorId 4004).
//!
//! Up to three tracks arrive from separate capture threads; the fragmenter
//! interleaves them by decode time so that writers can stream frame by frame.
//! A track that has nothing queued is waited for at most an interleave window
//! (in media time), so a silent microphone never stalls the video.

use std::collections::VecDeque;
use std::time::Duration;

use crate::media::{Frame, Timestamp, Track, TrackId, TrackKind};

/// KVS rejects fragments longer than this (ErrorId 4002).
pub const MAX_FRAGMENT_DURATION: Duration = Duration::from_secs(20);
/// KVS rejects fragments larger than this (ErrorId 4001).
pub const MAX_FRAGMENT_BYTES: usize = 50 * 1000 * 1000;
/// KVS allows at most this many metadata tags per fragment (ErrorId 4009).
pub const MAX_METADATA_PER_FRAGMENT: usize = 10;

/// How fragments are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentPolicy {
    target: Duration,
    max_duration: Duration,
    max_bytes: usize,
    interleave_window: Duration,
    tick: Duration,
}

impl Default for FragmentPolicy {
    fn default() -> Self {
        FragmentPolicy {
            target: Duration::from_secs(2),
            max_duration: MAX_FRAGMENT_DURATION,
            max_bytes: MAX_FRAGMENT_BYTES,
            interleave_window: Duration::from_millis(500),
            tick: Duration::from_millis(1),
        }
    }
}

impl FragmentPolicy {
    /// A policy with the given target duration (1 to 20 s) and the KVS limits.
    pub fn new(target: Duration) -> Result<Self, PolicyError> {
        FragmentPolicy::default().with_target(target)
    }

    /// Change the target duration (1 to 20 s).
    pub fn with_target(mut self, target: Duration) -> Result<Self, PolicyError> {
        if target < Duration::from_secs(1) || target > MAX_FRAGMENT_DURATION {
            return Err(PolicyError::Target(target));
        }
        if target > self.max_duration {
            return Err(PolicyError::TargetOverMax {
                target,
                max: self.max_duration,
            });
        }
        self.target = target;
        Ok(self)
    }

    /// Lower the forced-close limits below the KVS ones (never above).
    pub fn with_limits(mut self, max_duration: Duration, max_bytes: usize) -> Result<Self, PolicyError> {
        if max_duration > MAX_FRAGMENT_DURATION || max_duration < self.target {
            return Err(PolicyError::MaxDuration {
                max_duration,
                target: self.target,
            });
        }
        if max_bytes == 0 || max_bytes > MAX_FRAGMENT_BYTES {
            return Err(PolicyError::MaxBytes(max_bytes));
        }
        self.max_duration = max_duration;
        self.max_bytes = max_bytes;
        Ok(self)
    }

    /// How long (in media time) a frame may wait for a silent track before
    /// it is written anyway. Longer tolerates more capture jitter between
    /// tracks; shorter lowers latency.
    pub fn with_interleave_window(mut self, window: Duration) -> Self {
        self.interleave_window = window;
        self
    }

    /// The target fragment duration.
    pub fn target(&self) -> Duration {
        self.target
    }

    /// The forced-close duration.
    pub fn max_duration(&self) -> Duration {
        self.max_duration
    }

    /// The forced-close size.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The precision at which fragment timecodes must strictly increase.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// How much earlier than the target a fragment may be cut: a tenth of
    /// the target, at most 250 ms.
    fn slack(&self) -> Duration {
        (self.target / 10).min(Duration::from_millis(250))
    }

    fn tick_of(&self, t: Timestamp) -> u64 {
        t.as_nanos() / self.tick.as_nanos() as u64
    }
}

/// A policy value out of range.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// Fragment target outside 1–20 s.
    #[error("fragment duration {0:?} is out of range: expected 1 s to 20 s")]
    Target(Duration),
    /// Target above the configured maximum.
    #[error("fragment duration {target:?} is above the maximum {max:?}")]
    TargetOverMax {
        /// The target asked for.
        target: Duration,
        /// The maximum in force.
        max: Duration,
    },
    /// Maximum duration outside target..=20 s.
    #[error("maximum fragment duration {max_duration:?} is out of range: expected {target:?} to 20 s")]
    MaxDuration {
        /// The maximum asked for.
        max_duration: Duration,
        /// The target in force.
        target: Duration,
    },
    /// Maximum size outside 1 B–50 MB.
    #[error("maximum fragment size {0} bytes is out of range: expected 1 to 50000000")]
    MaxBytes(usize),
}

/// A frame the fragmenter refused. The fragmenter stays usable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The frame names a track the stream does not have.
    #[error("frame for {track} but the stream has {count} track(s)")]
    UnknownTrack {
        /// The frame's track.
        track: TrackId,
        /// How many tracks the stream has.
        count: usize,
    },
    /// Decode time went backwards within a track.
    #[error("{track}: decode time went back from {previous} to {got}")]
    DtsWentBack {
        /// The track.
        track: TrackId,
        /// The previous frame's decode time.
        previous: Timestamp,
        /// This frame's decode time.
        got: Timestamp,
    },
    /// Presentation before decode.
    #[error("{track}: presentation time {pts} is before decode time {dts}")]
    PtsBeforeDts {
        /// The track.
        track: TrackId,
        /// Presentation time.
        pts: Timestamp,
        /// Decode time.
        dts: Timestamp,
    },
    /// An empty payload.
    #[error("{track}: empty frame at {pts}")]
    Empty {
        /// The track.
        track: TrackId,
        /// Presentation time.
        pts: Timestamp,
    },
    /// One frame larger than a whole fragment may be.
    #[error("{track}: frame of {len} bytes exceeds the fragment limit of {max} bytes")]
    TooLarge {
        /// The track.
        track: TrackId,
        /// Frame size.
        len: usize,
        /// Fragment size limit.
        max: usize,
    },
    /// The track was ended with [`Fragmenter::end_track`].
    #[error("{track} has ended")]
    TrackEnded {
        /// The track.
        track: TrackId,
    },
}

/// Invalid fragment metadata.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    /// Names starting with "AWS" are reserved by the service.
    #[error("metadata name {0:?} starts with \"AWS\", which is reserved")]
    Reserved(String),
    /// Name empty or over 128 bytes.
    #[error("metadata name {0:?} must be 1 to 128 bytes")]
    Name(String),
    /// Value over 256 bytes.
    #[error("metadata value for {name:?} is {len} bytes: at most 256 allowed")]
    Value {
        /// The name.
        name: String,
        /// The value's length.
        len: usize,
    },
    /// More than 10 items would apply to one fragment.
    #[error("more than 10 metadata items for one fragment (adding {0:?})")]
    TooMany(String),
}

/// A fragment metadata item (a Matroska SimpleTag after the Cluster).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Metadata {
    /// Tag name.
    pub name: String,
    /// Tag value.
    pub value: String,
}

/// Why a fragment was closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// A video key frame arrived after the target duration.
    KeyFrame,
    /// A stream without video reached the target duration.
    Duration,
    /// The next frame would have made the fragment longer than allowed.
    MaxDuration,
    /// The next frame would have made the fragment larger than allowed.
    MaxSize,
    /// The stream ended.
    Finish,
}

/// What a closed fragment held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FragmentSummary {
    /// Sequence number, from 0 for the first fragment of this fragmenter.
    pub seq: u64,
    /// The first frame's presentation time (the Matroska Cluster timecode).
    pub start: Timestamp,
    /// The end of the latest frame: max(pts + duration).
    pub end: Timestamp,
    /// The greatest presentation time of any frame.
    pub last_pts: Timestamp,
    /// Number of frames.
    pub frames: u32,
    /// Payload bytes.
    pub bytes: u64,
    /// Frames per track, indexed by [`TrackId::index`].
    pub track_frames: [u32; TrackId::MAX_TRACKS as usize],
    /// Metadata for this fragment (persistent items included).
    pub metadata: Vec<Metadata>,
    /// Why it was closed.
    pub closed_by: CloseReason,
}

impl FragmentSummary {
    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end - self.start
    }
}

/// The fragmenter's output, in order: a Start, its Frames, an End, the next
/// Start, … Writers turn these into bytes one event at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FragmentEvent {
    /// A fragment begins; its first frame follows.
    Start {
        /// Sequence number.
        seq: u64,
        /// The first frame's presentation time.
        start: Timestamp,
    },
    /// A frame of the open fragment.
    Frame(Frame),
    /// The open fragment is complete.
    End(FragmentSummary),
}

/// What the fragmenter had to leave out, by reason. Counted rather than
/// silently lost so the agent can report them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FragmenterStats {
    /// Frames accepted by [`Fragmenter::push`].
    pub accepted: u64,
    /// Frames emitted in fragments.
    pub emitted: u64,
    /// Frames before the first video key frame, or between a forced close
    /// and the next key frame: a fragment cannot start on them.
    pub dropped_awaiting_key_frame: u64,
    /// Frames that arrived after the interleave window and are older than
    /// the open fragment's start.
    pub dropped_late: u64,
    /// Fragments closed early by the duration or size limit.
    pub forced_closes: u64,
}

#[derive(Debug)]
struct OpenFragment {
    seq: u64,
    start: Timestamp,
    start_tick: u64,
    end: Timestamp,
    last_pts: Timestamp,
    max_tick: u64,
    frames: u32,
    bytes: u64,
    track_frames: [u32; TrackId::MAX_TRACKS as usize],
    metadata: Vec<Metadata>,
}

/// Orders queued frames across tracks: decode tick, then a video key frame
/// before anything else in the same tick (so a key frame starting a fragment
/// is not preceded by same-tick audio that would tie the fragment timecodes),
/// then exact decode time.
type SortKey = (u64, u8, u64);

/// Cuts interleaved frames of up to three tracks into fragments.
pub struct Fragmenter {
    policy: FragmentPolicy,
    kinds: Vec<TrackKind>,
    has_video: bool,
    queues: Vec<VecDeque<Frame>>,
    last_dts: Vec<Option<Timestamp>>,
    ended: Vec<bool>,
    newest_dts: Timestamp,
    last_emitted: Option<SortKey>,
    open: Option<OpenFragment>,
    prev_max_tick: Option<u64>,
    next_seq: u64,
    persistent: Vec<Metadata>,
    pending_metadata: Vec<Metadata>,
    stats: FragmenterStats,
}

impl Fragmenter {
    /// A fragmenter for these tracks (1 to 3, numbered 1, 2, 3 in order).
    pub fn new(tracks: &[Track], policy: FragmentPolicy) -> Result<Self, crate::media::MediaError> {
        for (i, t) in tracks.iter().enumerate() {
            if t.id.index() != i {
                return Err(crate::media::MediaError::TrackNumber(t.id.get()));
            }
        }
        if tracks.is_empty() || tracks.len() > TrackId::MAX_TRACKS as usize {
            return Err(crate::media::MediaError::TrackNumber(tracks.len() as u8));
        }
        let kinds: Vec<TrackKind> = tracks.iter().map(Track::kind).collect();
        Ok(Fragmenter {
            policy,
            has_video: kinds.contains(&TrackKind::Video),
            queues: vec![VecDeque::new(); kinds.len()],
            last_dts: vec![None; kinds.len()],
            ended: vec![false; kinds.len()],
            kinds,
            newest_dts: Timestamp::EPOCH,
            last_emitted: None,
            open: None,
            prev_max_tick: None,
            next_seq: 0,
            persistent: Vec::new(),
            pending_metadata: Vec::new(),
            stats: FragmenterStats::default(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &FragmentPolicy {
        &self.policy
    }

    /// Counters of what was accepted, emitted and left out.
    pub fn stats(&self) -> FragmenterStats {
        self.stats
    }

    /// True when the open fragment has reached its target and is waiting for
    /// a video key frame: the capture layer should ask the encoder for one
    /// (force-key-unit) so fragments do not run to the forced limit.
    pub fn wants_key_frame(&self) -> bool {
        match &self.open {
            Some(open) if self.has_video => open.end - open.start + self.policy.slack() >= self.policy.target,
            _ => false,
        }
    }

    /// Attach metadata to the open fragment (or the next one when none is
    /// open). A persistent item is repeated in every later fragment.
    pub fn add_metadata(&mut self, name: &str, value: &str, persistent: bool) -> Result<(), MetadataError> {
        if name.starts_with("AWS") {
            return Err(MetadataError::Reserved(name.to_owned()));
        }
        if name.is_empty() || name.len() > 128 {
            return Err(MetadataError::Name(name.to_owned()));
        }
        if value.len() > 256 {
            return Err(MetadataError::Value {
                name: name.to_owned(),
                len: value.len(),
            });
        }
        let current = match &self.open {
            Some(open) => open.metadata.len(),
            None => self.persistent.len() + self.pending_metadata.len(),
        };
        if current >= MAX_METADATA_PER_FRAGMENT || (persistent && self.persistent.len() >= MAX_METADATA_PER_FRAGMENT) {
            return Err(MetadataError::TooMany(name.to_owned()));
        }
        let item = Metadata {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        if persistent {
            self.persistent.push(item.clone());
        }
        match &mut self.open {
            Some(open) => open.metadata.push(item),
            None if !persistent => self.pending_metadata.push(item),
            None => {}
        }
        Ok(())
    }

    /// Accept one frame; whatever can now be written is appended to `out`.
    ///
    /// Frames of one track must come in decode order. A refused frame leaves
    /// the fragmenter as it was.
    pub fn push(&mut self, frame: Frame, out: &mut Vec<FragmentEvent>) -> Result<(), FrameError> {
        let i = frame.track.index();
        if i >= self.kinds.len() {
            return Err(FrameError::UnknownTrack {
                track: frame.track,
                count: self.kinds.len(),
            });
        }
        if self.ended[i] {
            return Err(FrameError::TrackEnded { track: frame.track });
        }
        if let Some(previous) = self.last_dts[i] {
            if frame.dts < previous {
                return Err(FrameError::DtsWentBack {
                    track: frame.track,
                    previous,
                    got: frame.dts,
                });
            }
        }
        if frame.pts < frame.dts {
            return Err(FrameError::PtsBeforeDts {
                track: frame.track,
                pts: frame.pts,
                dts: frame.dts,
            });
        }
        if frame.data.is_empty() {
            return Err(FrameError::Empty {
                track: frame.track,
                pts: frame.pts,
            });
        }
        if frame.data.len() > self.policy.max_bytes {
            return Err(FrameError::TooLarge {
                track: frame.track,
                len: frame.data.len(),
                max: self.policy.max_bytes,
            });
        }
        self.last_dts[i] = Some(frame.dts);
        self.newest_dts = self.newest_dts.max(frame.dts);
        self.stats.accepted += 1;
        self.queues[i].push_back(frame);
        self.drain(false, out);
        Ok(())
    }

    /// Declare that a track will send no more frames, so nothing waits for it.
    pub fn end_track(&mut self, track: TrackId, out: &mut Vec<FragmentEvent>) {
        if let Some(e) = self.ended.get_mut(track.index()) {
            *e = true;
            self.drain(false, out);
        }
    }

    /// Write out everything queued and close the open fragment.
    pub fn finish(&mut self, out: &mut Vec<FragmentEvent>) {
        self.drain(true, out);
        self.close(CloseReason::Finish, out);
    }

    fn sort_key(&self, f: &Frame) -> SortKey {
        let video_key = self.kinds[f.track.index()] == TrackKind::Video && f.keyframe;
        (self.policy.tick_of(f.dts), u8::from(!video_key), f.dts.as_nanos())
    }

    fn drain(&mut self, flush: bool, out: &mut Vec<FragmentEvent>) {
        loop {
            let mut best: Option<(usize, SortKey)> = None;
            for (i, q) in self.queues.iter().enumerate() {
                if let Some(f) = q.front() {
                    let key = self.sort_key(f);
                    if best.is_none_or(|(_, k)| key < k) {
                        best = Some((i, key));
                    }
                }
            }
            let Some((i, key)) = best else { return };
            if !flush {
                // Another live track with nothing queued may still deliver an
                // earlier frame; wait for it, but only for the window.
                let waiting_on_silent_track = self
                    .queues
                    .iter()
                    .enumerate()
                    .any(|(j, q)| j != i && q.is_empty() && !self.ended[j]);
                let head_dts = self.queues[i].front().map(|f| f.dts).unwrap_or_default();
                if waiting_on_silent_track && self.newest_dts - head_dts < self.policy.interleave_window {
                    return;
                }
            }
            let frame = self.queues[i].pop_front().expect("head exists");
            self.place(frame, key, out);
        }
    }

    /// Put one frame, in interleaved order, into the open fragment or a new one.
    fn place(&mut self, frame: Frame, key: SortKey, out: &mut Vec<FragmentEvent>) {
        let late = self.last_emitted.is_some_and(|k| key < k);
        if !late {
            self.last_emitted = Some(key);
        }
        let pts_tick = self.policy.tick_of(frame.pts);
        let is_video = self.kinds[frame.track.index()] == TrackKind::Video;
        let can_start = if self.has_video {
            is_video && frame.keyframe
        } else {
            true
        };
        if let Some(open) = &self.open {
            if late && pts_tick < open.start_tick {
                self.stats.dropped_late += 1;
                return;
            }
            // Capture jitter can put a key frame that the encoder placed
            // exactly one target after the last a few ms early; a little
            // slack keeps it from being skipped for a whole extra GOP.
            let slack = if self.has_video {
                self.policy.slack()
            } else {
                Duration::ZERO
            };
            let elapsed = frame.pts.saturating_since(open.start) + slack;
            let new_end = open.end.max(frame.pts + frame.duration);
            let wanted = can_start && !late && elapsed >= self.policy.target && pts_tick > open.max_tick;
            if wanted {
                let reason = if self.has_video {
                    CloseReason::KeyFrame
                } else {
                    CloseReason::Duration
                };
                self.close(reason, out);
            } else if new_end - open.start > self.policy.max_duration {
                self.close(CloseReason::MaxDuration, out);
                self.stats.forced_closes += 1;
            } else if open.bytes as usize + frame.data.len() > self.policy.max_bytes {
                self.close(CloseReason::MaxSize, out);
                self.stats.forced_closes += 1;
            }
        }

        if self.open.is_none() {
            if late {
                self.stats.dropped_late += 1;
                return;
            }
            // Strictly after every tick of the previous fragment (KVS 4004).
            let after_previous = self.prev_max_tick.is_none_or(|prev| pts_tick > prev);
            if !can_start || !after_previous {
                self.stats.dropped_awaiting_key_frame += 1;
                return;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let mut metadata = self.persistent.clone();
            metadata.append(&mut self.pending_metadata);
            out.push(FragmentEvent::Start { seq, start: frame.pts });
            self.open = Some(OpenFragment {
                seq,
                start: frame.pts,
                start_tick: pts_tick,
                end: frame.pts,
                last_pts: frame.pts,
                max_tick: pts_tick,
                frames: 0,
                bytes: 0,
                track_frames: [0; TrackId::MAX_TRACKS as usize],
                metadata,
            });
        }

        let open = self.open.as_mut().expect("a fragment is open");
        open.end = open.end.max(frame.pts + frame.duration);
        open.last_pts = open.last_pts.max(frame.pts);
        open.max_tick = open.max_tick.max(pts_tick);
        open.frames += 1;
        open.bytes += frame.data.len() as u64;
        open.track_frames[frame.track.index()] += 1;
        self.stats.emitted += 1;
        out.push(FragmentEvent::Frame(frame));
    }

    fn close(&mut self, closed_by: CloseReason, out: &mut Vec<FragmentEvent>) {
        if let Some(open) = self.open.take() {
            self.prev_max_tick = Some(open.max_tick);
            out.push(FragmentEvent::End(FragmentSummary {
                seq: open.seq,
                start: open.start,
                end: open.end,
                last_pts: open.last_pts,
                frames: open.frames,
                bytes: open.bytes,
                track_frames: open.track_frames,
                metadata: open.metadata,
                closed_by,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Audio, Shape};
    use proptest::prelude::*;

    /// Run a stream through a fragmenter; return the events and the stats.
    fn run(shape: &Shape, policy: FragmentPolicy) -> (Vec<FragmentEvent>, FragmenterStats, Vec<Frame>) {
        let tracks = shape.tracks();
        let mut f = Fragmenter::new(&tracks, policy).unwrap();
        let frames = shape.frames();
        let mut out = Vec::new();
        for fr in frames.clone() {
            f.push(fr, &mut out).unwrap();
        }
        f.finish(&mut out);
        (out, f.stats(), frames)
    }

    /// Split events into fragments, checking Start/Frame*/End alternate.
    fn fragments(events: &[FragmentEvent]) -> Vec<(Timestamp, Vec<Frame>, FragmentSummary)> {
        let mut out = Vec::new();
        let mut cur: Option<(Timestamp, Vec<Frame>)> = None;
        for e in events {
            match e {
                FragmentEvent::Start { start, seq } => {
                    assert!(cur.is_none(), "Start inside a fragment");
                    assert_eq!(*seq as usize, out.len());
                    cur = Some((*start, Vec::new()));
                }
                FragmentEvent::Frame(f) => cur.as_mut().expect("Frame outside a fragment").1.push(f.clone()),
                FragmentEvent::End(s) => {
                    let (start, frames) = cur.take().expect("End without Start");
                    assert!(!frames.is_empty());
                    out.push((start, frames, s.clone()));
                }
            }
        }
        assert!(cur.is_none(), "fragment left open after finish");
        out
    }

    fn check_invariants(
        shape: &Shape,
        policy: FragmentPolicy,
    ) -> (Vec<(Timestamp, Vec<Frame>, FragmentSummary)>, FragmenterStats) {
        let (events, stats, input) = run(shape, policy);
        let frags = fragments(&events);
        let tick = |t: Timestamp| t.as_nanos() / 1_000_000;
        let has_video = shape.video;
        let mut prev_max_tick: Option<u64> = None;
        let mut prev_track_max: [Option<u64>; 3] = [None; 3];
        for (start, frames, summary) in &frags {
            let first = &frames[0];
            assert_eq!(first.pts, *start);
            assert_eq!(summary.start, *start);
            if has_video {
                assert!(first.track.get() == 1 && first.keyframe, "fragment starts on {first:?}");
            }
            let max_tick = frames.iter().map(|f| tick(f.pts)).max().unwrap();
            if let Some(prev) = prev_max_tick {
                assert!(
                    tick(*start) > prev,
                    "fragment at {start} not after previous max tick {prev}"
                );
            }
            prev_max_tick = Some(max_tick);
            // Within one track fragments do not overlap either (across
            // tracks they may: audio decoded between a key frame's decode
            // and presentation times belongs after it).
            for t in 1..=3u8 {
                let ticks = frames.iter().filter(|f| f.track.get() == t).map(|f| tick(f.pts));
                if let (Some(lo), Some(hi)) = (ticks.clone().min(), ticks.max()) {
                    if let Some(prev_hi) = prev_track_max[t as usize - 1] {
                        assert!(lo >= prev_hi, "track {t} overlaps the previous fragment at {start}");
                    }
                    prev_track_max[t as usize - 1] = Some(hi);
                }
            }
            let end = frames.iter().map(|f| f.pts + f.duration).max().unwrap();
            assert_eq!(summary.end, end);
            assert!(end - *start <= policy.max_duration(), "fragment of {:?}", end - *start);
            let bytes: u64 = frames.iter().map(|f| f.data.len() as u64).sum();
            assert_eq!(summary.bytes, bytes);
            assert!(bytes as usize <= policy.max_bytes());
            assert_eq!(summary.frames as usize, frames.len());
        }
        // Every frame is either written or counted, and track order is kept.
        let written: usize = frags.iter().map(|f| f.1.len()).sum();
        assert_eq!(stats.emitted as usize, written);
        assert_eq!(stats.accepted as usize, input.len());
        assert_eq!(
            stats.accepted,
            stats.emitted + stats.dropped_awaiting_key_frame + stats.dropped_late
        );
        for t in 1..=3u8 {
            let inp: Vec<_> = input.iter().filter(|f| f.track.get() == t).collect();
            let outp: Vec<_> = frags
                .iter()
                .flat_map(|f| f.1.iter())
                .filter(|f| f.track.get() == t)
                .collect();
            let mut it = inp.iter();
            for o in outp {
                assert!(it.any(|i| *i == o), "track {t} reordered or altered");
            }
        }
        (frags, stats)
    }

    fn shape_strategy() -> impl Strategy<Value = Shape> {
        (
            any::<bool>(),
            prop_oneof![Just(25u32), Just(30), Just(15)],
            prop_oneof![Just(1u32), 10u32..90, Just(900)],
            any::<bool>(),
            prop_oneof![
                Just(Audio::None),
                Just(Audio::Present),
                (100u32..5000).prop_map(Audio::StartsLate),
                Just(Audio::DeclaredButSilent)
            ],
            any::<bool>(),
            0.0f64..1.0,
            5u32..45,
            any::<u64>(),
        )
            .prop_map(|(video, fps, gop, bframes, audio, sensor, jitter, seconds, seed)| {
                let audio = if !video && !sensor && audio == Audio::None {
                    Audio::Present
                } else {
                    audio
                };
                Shape {
                    video,
                    fps,
                    gop,
                    bframes,
                    audio,
                    sensor: sensor && !(video && audio != Audio::None),
                    jitter_frac: jitter,
                    seconds,
                    seed,
                    ms_aligned: false,
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn fragments_start_on_key_frames_respect_bounds_and_strictly_increase(
            shape in shape_strategy(),
            target in 1u64..=6,
        ) {
            let policy = FragmentPolicy::new(Duration::from_secs(target)).unwrap();
            check_invariants(&shape, policy);
        }

        #[test]
        fn size_limit_forces_a_close_without_breaking_invariants(
            shape in shape_strategy(),
            max_kb in 20usize..200,
        ) {
            let policy = FragmentPolicy::new(Duration::from_secs(2))
                .unwrap()
                .with_limits(Duration::from_secs(20), max_kb * 1000)
                .unwrap();
            check_invariants(&shape, policy);
        }
    }

    fn shape(video: bool, gop: u32, audio: Audio, seconds: u32) -> Shape {
        Shape {
            video,
            fps: 30,
            gop,
            bframes: false,
            audio,
            sensor: !video,
            jitter_frac: 0.3,
            seconds,
            seed: 7,
            ms_aligned: false,
        }
    }

    #[test]
    fn regular_stream_cuts_at_every_key_frame_after_the_target_and_loses_nothing() {
        let (frags, stats) = check_invariants(&shape(true, 60, Audio::Present, 20), FragmentPolicy::default());
        assert_eq!(frags.len(), 10);
        for (start, _, s) in &frags[..9] {
            assert_eq!(s.closed_by, CloseReason::KeyFrame);
            let next = frags.iter().find(|f| f.0 > *start).unwrap().0;
            assert!(next - *start >= Duration::from_millis(1800), "{:?}", next - *start);
        }
        // Only audio captured before the first key frame can be lost.
        assert!(stats.dropped_awaiting_key_frame <= 2, "{stats:?}");
        assert_eq!(stats.dropped_late, 0);
    }

    #[test]
    fn thirty_second_gop_is_closed_at_twenty_seconds_and_waits_for_the_next_key_frame() {
        let (frags, stats) = check_invariants(&shape(true, 900, Audio::Present, 70), FragmentPolicy::default());
        assert!(frags.iter().any(|f| f.2.closed_by == CloseReason::MaxDuration));
        assert!(stats.forced_closes >= 2);
        assert!(stats.dropped_awaiting_key_frame > 0);
        // Each GOP gives one fragment: 0 s, 30 s, 60 s.
        assert_eq!(frags.len(), 3);
    }

    #[test]
    fn silent_declared_audio_does_not_stall_video() {
        let (frags, _) = check_invariants(
            &shape(true, 30, Audio::DeclaredButSilent, 10),
            FragmentPolicy::default(),
        );
        assert_eq!(frags.len(), 5);
        assert!(frags.iter().all(|f| f.2.track_frames[1] == 0));
    }

    #[test]
    fn late_audio_joins_without_breaking_order() {
        let (frags, stats) = check_invariants(&shape(true, 30, Audio::StartsLate(3000), 10), FragmentPolicy::default());
        assert_eq!(frags[0].2.track_frames[1], 0);
        assert!(frags.last().unwrap().2.track_frames[1] > 0);
        assert_eq!(stats.dropped_late, 0);
    }

    #[test]
    fn streams_without_video_are_cut_by_duration() {
        let (frags, _) = check_invariants(&shape(false, 1, Audio::Present, 10), FragmentPolicy::default());
        assert_eq!(frags.len(), 5);
        assert!(frags[..4].iter().all(|f| f.2.closed_by == CloseReason::Duration));
    }

    #[test]
    fn bad_frames_are_refused_with_a_reason_and_the_stream_goes_on() {
        let s = shape(true, 30, Audio::Present, 2);
        let tracks = s.tracks();
        let mut f = Fragmenter::new(&tracks, FragmentPolicy::default()).unwrap();
        let frames = s.frames();
        let mut out = Vec::new();
        f.push(frames[0].clone(), &mut out).unwrap();
        let mut back = frames[0].clone();
        back.dts = back.dts.checked_sub(Duration::from_millis(5)).unwrap();
        back.pts = back.dts;
        let err = f.push(back, &mut out).unwrap_err();
        assert!(err.to_string().contains("decode time went back"), "{err}");
        let mut empty = frames[1].clone();
        empty.data = bytes::Bytes::new();
        assert!(matches!(f.push(empty, &mut out), Err(FrameError::Empty { .. })));
        let mut stranger = frames[1].clone();
        stranger.track = TrackId::new(3).unwrap();
        assert!(f
            .push(stranger, &mut out)
            .unwrap_err()
            .to_string()
            .contains("2 track(s)"));
        for fr in frames[1..].iter().cloned() {
            f.push(fr, &mut out).unwrap();
        }
        f.finish(&mut out);
        assert_eq!(f.stats().accepted as usize, frames.len());
    }

    #[test]
    fn metadata_rules_follow_kvs() {
        let s = shape(true, 30, Audio::None, 1);
        let mut f = Fragmenter::new(&s.tracks(), FragmentPolicy::default()).unwrap();
        assert!(matches!(
            f.add_metadata("AWS_X", "v", false),
            Err(MetadataError::Reserved(_))
        ));
        assert!(matches!(f.add_metadata("", "v", false), Err(MetadataError::Name(_))));
        assert!(matches!(
            f.add_metadata("n", &"v".repeat(257), false),
            Err(MetadataError::Value { .. })
        ));
        f.add_metadata("site", "a", true).unwrap();
        for i in 0..9 {
            f.add_metadata(&format!("k{i}"), "v", false).unwrap();
        }
        assert!(matches!(
            f.add_metadata("k10", "v", false),
            Err(MetadataError::TooMany(_))
        ));
        let mut out = Vec::new();
        for fr in s.frames() {
            f.push(fr, &mut out).unwrap();
        }
        f.finish(&mut out);
        let FragmentEvent::End(sum) = out.last().unwrap() else {
            panic!()
        };
        assert_eq!(sum.metadata.len(), 10);
        assert_eq!(sum.metadata[0].name, "site");
    }

    #[test]
    fn policy_bounds_are_enforced() {
        assert!(FragmentPolicy::new(Duration::from_millis(999)).is_err());
        assert!(FragmentPolicy::new(Duration::from_secs(21)).is_err());
        assert!(FragmentPolicy::new(Duration::from_secs(20)).is_ok());
        assert!(FragmentPolicy::default()
            .with_limits(Duration::from_secs(30), 1000)
            .is_err());
        assert!(FragmentPolicy::default()
            .with_limits(Duration::from_secs(10), 60_000_000)
            .is_err());
    }
}
