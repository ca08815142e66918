//! The service's rules for a PutMedia body, applied fragment by fragment as
//! the incremental MKV reader finds it (reference §2.4, §6, §7.1): what the
//! gateway acknowledges (BUFFERING when a fragment starts, RECEIVED when it
//! is complete) and which ERROR ends the connection when a rule is broken.
//!
//! PERSISTED is not decided here: the gateway sends it once the store has
//! committed the fragment.

use std::time::Duration;

use fragmenter::mkv::{MkvError, MkvEvent};
use fragmenter::Timestamp;

use super::errors;

/// Where producer times end (2262-04-11T23:47:16Z): the store keeps times
/// as signed 64-bit nanoseconds and saturates there, so later fragments
/// would all start at one instant (and a resend of one would not be
/// recognised). A fragment or frame from then on is ERROR 4007.
pub const LAST_TIME: Timestamp = Timestamp::from_nanos(i64::MAX as u64);

/// How cluster timecodes are to be read (`x-amzn-fragment-timecode-type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimecodeType {
    /// Cluster timecodes are the producer time itself.
    Absolute,
    /// Cluster timecodes count from the producer start timestamp.
    Relative(Timestamp),
}

impl TimecodeType {
    /// The producer time of `ticks` of `scale` nanoseconds (saturating:
    /// the rules refuse a fragment whose time does not fit, see
    /// [`checked_producer_time`](Self::checked_producer_time)).
    pub fn producer_time(self, ticks: u64, scale: u64) -> Timestamp {
        self.checked_producer_time(ticks, scale)
            .unwrap_or(Timestamp::from_nanos(u64::MAX))
    }

    /// The producer time of `ticks` of `scale` nanoseconds, `None` from
    /// [`LAST_TIME`] on.
    pub fn checked_producer_time(self, ticks: u64, scale: u64) -> Option<Timestamp> {
        let ns = ticks.checked_mul(scale)?;
        let ns = match self {
            TimecodeType::Absolute => ns,
            TimecodeType::Relative(start) => start.as_nanos().checked_add(ns)?,
        };
        (ns < LAST_TIME.as_nanos()).then_some(Timestamp::from_nanos(ns))
    }
}

/// The service's per-fragment limits (hard quotas).
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest fragment, bytes of frames (50 MB).
    pub fragment_bytes: u64,
    /// Longest fragment (20 s).
    pub fragment_duration: Duration,
    /// Tracks per stream (3).
    pub tracks: usize,
    /// Metadata tags per fragment (10).
    pub tags: usize,
}

impl Default for Limits {
    /// The limits the fragmenter already cuts to, so the gateway accepts
    /// exactly what our own uploader sends.
    fn default() -> Self {
        Limits {
            fragment_bytes: fragmenter::fragment::MAX_FRAGMENT_BYTES as u64,
            fragment_duration: fragmenter::fragment::MAX_FRAGMENT_DURATION,
            tracks: usize::from(fragmenter::TrackId::MAX_TRACKS),
            tags: fragmenter::fragment::MAX_METADATA_PER_FRAGMENT,
        }
    }
}

/// What the gateway tells the producer about a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A fragment began (BUFFERING).
    Buffering {
        /// Its cluster timecode, as sent.
        timecode: u64,
    },
    /// A fragment is complete (RECEIVED); it may now be stored.
    Received {
        /// Its cluster timecode, as sent.
        timecode: u64,
        /// When the producer made it (UTC).
        producer_time: Timestamp,
        /// Frames in it.
        frames: u32,
        /// Bytes of frames.
        bytes: u64,
    },
    /// A rule was broken (ERROR): the connection ends after this.
    Error {
        /// The fragment's cluster timecode, when one was open.
        timecode: Option<u64>,
        /// ErrorId.
        error_id: u32,
        /// ErrorCode.
        code: &'static str,
        /// What exactly, for the gateway's log.
        detail: String,
    },
}

struct Open {
    timecode: u64,
    frames: u32,
    bytes: u64,
    last: Option<i64>,
}

/// Applies the rules to one PutMedia body.
pub struct IngestRules {
    timecodes: TimecodeType,
    limits: Limits,
    /// Nanoseconds per tick, from the Segment header.
    scale: u64,
    tracks: Vec<u64>,
    header: bool,
    open: Option<Open>,
    /// The last frame timecode of the previous fragment (ticks).
    previous_end: Option<i64>,
    /// The fragment whose Tags may still come.
    tagged: Option<u64>,
    failed: bool,
}

impl IngestRules {
    /// Rules for a body whose headers said `timecodes`.
    pub fn new(timecodes: TimecodeType, limits: Limits) -> Self {
        IngestRules {
            timecodes,
            limits,
            scale: 1_000_000,
            tracks: Vec::new(),
            header: false,
            open: None,
            previous_end: None,
            tagged: None,
            failed: false,
        }
    }

    fn error(&mut self, error_id: u32, detail: String, out: &mut Vec<Outcome>) {
        self.failed = true;
        out.push(Outcome::Error {
            timecode: self.open.as_ref().map(|o| o.timecode),
            error_id,
            code: errors::known(error_id).map_or("UNKNOWN", |k| k.code),
            detail,
        });
    }

    /// The reader could not parse the body.
    pub fn mkv_error(&mut self, e: &MkvError, out: &mut Vec<Outcome>) {
        if !self.failed {
            self.error(4006, e.to_string(), out);
        }
    }

    /// One event of the reader.
    pub fn event(&mut self, ev: &MkvEvent, out: &mut Vec<Outcome>) {
        if self.failed {
            return;
        }
        match ev {
            MkvEvent::Header(h) => {
                if h.tracks.len() > self.limits.tracks {
                    let n = h.tracks.len();
                    return self.error(
                        4005,
                        format!("{n} tracks; at most {} are allowed", self.limits.tracks),
                        out,
                    );
                }
                if h.tracks.is_empty() {
                    return self.error(4006, "the Segment declares no track".into(), out);
                }
                if self.header && h.tracks.iter().map(|t| t.number).ne(self.tracks.iter().copied()) {
                    return self.error(4010, "a new Segment in the body declares other tracks".into(), out);
                }
                self.scale = h.timecode_scale.max(1);
                self.tracks = h.tracks.iter().map(|t| t.number).collect();
                self.header = true;
            }
            MkvEvent::ClusterStart { timecode, .. } => {
                if !self.header {
                    return self.error(4006, "a Cluster before the Segment's Tracks".into(), out);
                }
                self.tagged = None;
                self.open = Some(Open {
                    timecode: *timecode,
                    frames: 0,
                    bytes: 0,
                    last: None,
                });
                // Saturated, such fragments would all start at one instant
                // (and a resend of one would not be recognised).
                if self.timecodes.checked_producer_time(*timecode, self.scale).is_none() {
                    return self.error(
                        4007,
                        format!(
                            "cluster timecode {timecode} × {} ns is past 2262-04-11, the last time the store holds",
                            self.scale
                        ),
                        out,
                    );
                }
                out.push(Outcome::Buffering { timecode: *timecode });
            }
            MkvEvent::Block(b) => {
                let Some(open) = self.open.as_mut() else {
                    return self.error(4006, "a frame outside any Cluster".into(), out);
                };
                if !self.tracks.contains(&b.track) {
                    let known = self.tracks.clone();
                    return self.error(
                        4010,
                        format!("a frame of track {} (tracks declared: {known:?})", b.track),
                        out,
                    );
                }
                let t = u64::try_from(b.timecode).unwrap_or(0);
                if self.timecodes.checked_producer_time(t, self.scale).is_none() {
                    let t = b.timecode;
                    return self.error(
                        4007,
                        format!(
                            "frame timecode {t} × {} ns is past 2262-04-11, the last time the store holds",
                            self.scale
                        ),
                        out,
                    );
                }
                open.frames += 1;
                open.bytes += b.data.len() as u64;
                open.last = Some(open.last.map_or(b.timecode, |l| l.max(b.timecode)));
                if open.frames == 1 {
                    if let Some(prev) = self.previous_end {
                        if b.timecode <= prev {
                            let t = b.timecode;
                            return self.error(
                                4004,
                                format!("the fragment starts at timecode {t}, not after the previous fragment's last frame at {prev}"),
                                out,
                            );
                        }
                    }
                }
                let (bytes, timecode) = (open.bytes, open.timecode);
                if bytes > self.limits.fragment_bytes {
                    let limit = self.limits.fragment_bytes;
                    return self.error(4001, format!("the fragment passed {limit} bytes"), out);
                }
                let span = u64::try_from(b.timecode.saturating_sub(timecode as i64)).unwrap_or(0);
                let span = Duration::from_nanos(span.saturating_mul(self.scale));
                if span > self.limits.fragment_duration {
                    let limit = self.limits.fragment_duration;
                    self.error(4002, format!("the fragment runs {span:?}, longer than {limit:?}"), out);
                }
            }
            MkvEvent::ClusterEnd => {
                let Some(open) = self.open.take() else {
                    return;
                };
                if open.frames == 0 {
                    self.open = Some(open);
                    return self.error(4006, "a fragment without frames".into(), out);
                }
                self.previous_end = open.last;
                self.tagged = Some(open.timecode);
                let producer_time = self.timecodes.producer_time(open.timecode, self.scale);
                out.push(Outcome::Received {
                    timecode: open.timecode,
                    producer_time,
                    frames: open.frames,
                    bytes: open.bytes,
                });
            }
            MkvEvent::Tags(tags) => {
                // Tags belong to the fragment before them.
                if self.tagged.is_some() && tags.len() > self.limits.tags {
                    let n = tags.len();
                    self.error(
                        4009,
                        format!("{n} tags on a fragment; at most {} are allowed", self.limits.tags),
                        out,
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use fragmenter::fragment::Metadata;
    use fragmenter::media::{AudioTrack, VideoCodec, VideoTrack};
    use fragmenter::mkv::{MkvReader, MkvWriter, MkvWriterOptions};
    use fragmenter::{Frame, Track, TrackId};

    fn video() -> Track {
        let avcc = Bytes::from_static(&[
            1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee,
        ]);
        Track::new(
            TrackId::new(1).unwrap(),
            "video",
            VideoTrack {
                codec: VideoCodec::H264 { avcc },
                width: 640,
                height: 360,
            },
        )
    }

    fn frame(ms: u64, key: bool, len: usize) -> Frame {
        Frame {
            track: TrackId::new(1).unwrap(),
            pts: Timestamp::from_millis(ms),
            dts: Timestamp::from_millis(ms),
            duration: Duration::from_millis(33),
            keyframe: key,
            data: Bytes::from(vec![0u8; len]),
        }
    }

    /// A body of fragments starting at `starts` (ms), `n` frames 33 ms apart.
    fn body(starts: &[u64], n: u64, tags: usize) -> Vec<u8> {
        let mut w = MkvWriter::new(&[video()], MkvWriterOptions::default()).unwrap();
        let mut out = Vec::new();
        w.write_header(&mut out);
        for &s in starts {
            w.start_cluster(Timestamp::from_millis(s), &mut out).unwrap();
            for i in 0..n {
                w.write_frame(&frame(s + i * 33, i == 0, 100), &mut out).unwrap();
            }
            let meta: Vec<Metadata> = (0..tags)
                .map(|i| Metadata {
                    name: format!("k{i}"),
                    value: "v".into(),
                })
                .collect();
            w.end_cluster(&meta, &mut out);
        }
        out
    }

    fn check(body: &[u8], limits: Limits) -> Vec<Outcome> {
        let mut reader = MkvReader::default();
        let mut rules = IngestRules::new(TimecodeType::Absolute, limits);
        let mut out = Vec::new();
        // Arrives in small pieces, as a network body does.
        for piece in body.chunks(97) {
            reader.feed(piece);
            loop {
                match reader.next_event() {
                    Ok(Some(ev)) => rules.event(&ev, &mut out),
                    Ok(None) => break,
                    Err(e) => {
                        rules.mkv_error(&e, &mut out);
                        return out;
                    }
                }
            }
        }
        reader.finish();
        while let Ok(Some(ev)) = reader.next_event() {
            rules.event(&ev, &mut out);
        }
        out
    }

    fn error_ids(out: &[Outcome]) -> Vec<u32> {
        out.iter()
            .filter_map(|o| match o {
                Outcome::Error { error_id, .. } => Some(*error_id),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn good_fragments_are_buffered_then_received_with_their_producer_time() {
        let out = check(&body(&[1_000_000, 1_002_000], 60, 2), Limits::default());
        assert_eq!(error_ids(&out), Vec::<u32>::new(), "{out:?}");
        assert_eq!(
            out,
            [
                Outcome::Buffering { timecode: 1_000_000 },
                Outcome::Received {
                    timecode: 1_000_000,
                    producer_time: Timestamp::from_millis(1_000_000),
                    frames: 60,
                    bytes: 6000
                },
                Outcome::Buffering { timecode: 1_002_000 },
                Outcome::Received {
                    timecode: 1_002_000,
                    producer_time: Timestamp::from_millis(1_002_000),
                    frames: 60,
                    bytes: 6000
                },
            ]
        );
        // RELATIVE: the start timestamp plus the cluster timecode.
        let mut rules = IngestRules::new(TimecodeType::Relative(Timestamp::from_millis(5_000)), Limits::default());
        let mut reader = MkvReader::default();
        reader.feed(&body(&[100], 3, 0));
        reader.finish();
        let mut out = Vec::new();
        while let Ok(Some(ev)) = reader.next_event() {
            rules.event(&ev, &mut out);
        }
        assert!(
            matches!(out[1], Outcome::Received { producer_time, .. } if producer_time == Timestamp::from_millis(5_100))
        );
    }

    #[test]
    fn each_broken_rule_gets_its_error_id() {
        // Overlapping: the second fragment starts before the first ended.
        assert_eq!(
            error_ids(&check(&body(&[10_000, 11_000], 60, 0), Limits::default())),
            [4004]
        );
        // 25 s in one fragment (frames 33 ms apart: 760 frames).
        assert_eq!(error_ids(&check(&body(&[10_000], 760, 0), Limits::default())), [4002]);
        // Over the size limit (a small one here).
        let small = Limits {
            fragment_bytes: 1000,
            ..Limits::default()
        };
        assert_eq!(error_ids(&check(&body(&[10_000], 20, 0), small)), [4001]);
        // Eleven tags on a fragment.
        assert_eq!(error_ids(&check(&body(&[10_000], 5, 11), Limits::default())), [4009]);
        // Garbage.
        let mut garbage = body(&[10_000], 5, 0);
        garbage.truncate(60);
        garbage.extend_from_slice(&[0xff; 200]);
        assert_eq!(error_ids(&check(&garbage, Limits::default())), [4006]);
        // Nothing after an error counts.
        let out = check(&body(&[10_000, 11_000, 20_000], 60, 0), Limits::default());
        assert!(
            matches!(out.last(), Some(Outcome::Error { error_id: 4004, .. })),
            "{out:?}"
        );
    }

    /// The reader's events for `body`, with `edit` applied to each.
    fn events(body: &[u8], edit: impl Fn(MkvEvent) -> MkvEvent) -> Vec<MkvEvent> {
        let mut r = MkvReader::default();
        r.feed(body);
        r.finish();
        std::iter::from_fn(|| r.next_event().unwrap()).map(edit).collect()
    }

    fn outcomes(timecodes: TimecodeType, events: &[MkvEvent]) -> Vec<Outcome> {
        let mut rules = IngestRules::new(timecodes, Limits::default());
        let mut out = Vec::new();
        for ev in events {
            rules.event(ev, &mut out);
        }
        out
    }

    /// Found by the ingest fuzz target: cluster timecodes whose time
    /// overflows were saturated to one instant, so two fragments "started"
    /// together and a resend of one was stored again. The store saturates
    /// at [`LAST_TIME`], before a timestamp does.
    #[test]
    fn a_timecode_past_what_the_store_holds_is_an_invalid_producer_timestamp() {
        // The last millisecond the store holds, and the one after it.
        let last_ms = (LAST_TIME.as_nanos() - 1) / 1_000_000;
        let at = |tc: u64| {
            move |ev| match ev {
                MkvEvent::ClusterStart { offset, .. } => MkvEvent::ClusterStart { timecode: tc, offset },
                MkvEvent::Block(b) => MkvEvent::Block(fragmenter::mkv::Block {
                    timecode: tc as i64,
                    ..b
                }),
                ev => ev,
            }
        };
        let fine = outcomes(TimecodeType::Absolute, &events(&body(&[1_000], 1, 0), at(last_ms)));
        assert_eq!(error_ids(&fine), Vec::<u32>::new(), "{fine:?}");
        let out = outcomes(TimecodeType::Absolute, &events(&body(&[1_000], 1, 0), at(last_ms + 1)));
        assert_eq!(error_ids(&out), [4007]);
        assert!(
            matches!(out[0], Outcome::Error { timecode: Some(t), .. } if t == last_ms + 1),
            "the ERROR names the fragment: {out:?}"
        );
        // RELATIVE: the start timestamp counts too.
        let late = TimecodeType::Relative(Timestamp::from_nanos(LAST_TIME.as_nanos() - 1_000_000_000));
        assert_eq!(
            late.checked_producer_time(999, 1_000_000),
            Some(Timestamp::from_nanos(LAST_TIME.as_nanos() - 1_000_000))
        );
        assert_eq!(late.checked_producer_time(1_000, 1_000_000), None);
        // A frame pushed past the end (by its block offset) in a fragment
        // that starts in time.
        let frame_late = |ev| match ev {
            MkvEvent::Block(b) => MkvEvent::Block(fragmenter::mkv::Block {
                timecode: i64::MAX,
                ..b
            }),
            ev => ev,
        };
        let out = outcomes(TimecodeType::Absolute, &events(&body(&[1_000], 1, 0), frame_late));
        assert_eq!(error_ids(&out), [4007]);
    }

    #[test]
    fn a_fourth_track_and_a_foreign_track_number_are_refused() {
        let audio = |n| {
            Track::new(
                TrackId::new(n).unwrap(),
                "a",
                AudioTrack {
                    codec: fragmenter::media::AudioCodec::Opus { pre_skip: 0 },
                    sample_rate: 48_000,
                    channels: 2,
                },
            )
        };
        let tracks = [video(), audio(2), audio(3)];
        let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default()).unwrap();
        let mut b = Vec::new();
        w.write_header(&mut b);
        let mut r = MkvReader::default();
        r.feed(&b);
        let Ok(Some(MkvEvent::Header(mut h))) = r.next_event() else {
            panic!("no header")
        };
        let mut rules = IngestRules::new(TimecodeType::Absolute, Limits::default());
        let mut out = Vec::new();
        rules.event(&MkvEvent::Header(h.clone()), &mut out);
        assert!(out.is_empty(), "three tracks are fine: {out:?}");
        h.tracks.push(h.tracks[2].clone());
        let mut rules = IngestRules::new(TimecodeType::Absolute, Limits::default());
        rules.event(&MkvEvent::Header(h.clone()), &mut out);
        assert_eq!(error_ids(&out), [4005]);
        h.tracks.truncate(1);
        let mut out = Vec::new();
        let mut rules = IngestRules::new(TimecodeType::Absolute, Limits::default());
        rules.event(&MkvEvent::Header(h), &mut out);
        rules.event(&MkvEvent::ClusterStart { timecode: 1, offset: 0 }, &mut out);
        let block = fragmenter::mkv::Block {
            track: 7,
            timecode: 1,
            keyframe: true,
            duration: None,
            data: Bytes::from_static(b"x"),
        };
        rules.event(&MkvEvent::Block(block), &mut out);
        assert_eq!(error_ids(&out), [4010]);
    }

    proptest::proptest! {
        // The body faces the network: a mangled body gets an outcome (an
        // ERROR or acknowledgements), never a panic.
        #[test]
        fn a_mangled_body_never_panics(
            flips in proptest::collection::vec((0usize..4000, proptest::prelude::any::<u8>()), 0..12),
            cut in 0usize..4000,
        ) {
            let mut b = body(&[10_000, 12_000], 10, 1);
            for (at, v) in flips {
                let i = at % b.len();
                b[i] = v;
            }
            b.truncate(cut.max(1));
            let _ = check(&b, Limits::default());
        }
    }
}
