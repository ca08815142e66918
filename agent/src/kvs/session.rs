//! One PutMedia body arriving at the gateway: the MKV read incrementally,
//! the service's rules applied (BUFFERING, RECEIVED, ERROR), frames written
//! to the store as they arrive, and PERSISTED once the store has committed
//! a fragment.
//!
//! Synchronous: the store blocks (files, SQLite), so the HTTP handler runs a
//! session on a blocking thread and feeds it the body's chunks.
//!
//! With group commit ([`IngestSession::with_group_commit`]) a fragment
//! received is written but made durable, and PERSISTED, only at the next
//! [`IngestSession::sync`]: one fdatasync for every fragment that arrived
//! meanwhile. A producer draining a backlog is then limited by the disk's
//! bandwidth, not by one fdatasync per fragment (150 ms each on a busy
//! disk held a drain to 5 fragments a second).

use std::time::Duration;

use fragmenter::fragment::{CloseReason, FragmentSummary};
use fragmenter::mkv::{MkvEvent, MkvReader, ReaderLimits};
use fragmenter::{FragmentEvent, Frame, Timestamp, TrackId};
use tracing::{debug, warn};

use super::ack::{Ack, AckKind};
use super::ingest::{IngestRules, Limits, Outcome, TimecodeType};
use super::tracks::track_from_entry;
use crate::store::{FragmentId, Store, StoreError, StreamWriter};

/// The fragment being received.
struct OpenFragment {
    timecode: u64,
    start: Timestamp,
    end: Timestamp,
    last_pts: Timestamp,
    frames: u32,
    bytes: u64,
    track_frames: [u32; TrackId::MAX_TRACKS as usize],
    /// The store refused it (disk full, denied): received, never PERSISTED.
    refused: bool,
    /// FragmentNumber: the store's fragment id.
    number: Option<String>,
    /// Already stored (a producer resending what it had no PERSISTED for):
    /// acknowledged again, not stored twice.
    duplicate: bool,
}

impl OpenFragment {
    /// A fragment whose Cluster starts at `timecode` (`start` in producer
    /// time), numbered `number` by the store.
    fn new(timecode: u64, start: Timestamp, number: Option<String>, refused: bool, duplicate: bool) -> Self {
        OpenFragment {
            timecode,
            start,
            end: start,
            last_pts: start,
            frames: 0,
            bytes: 0,
            track_frames: [0; TrackId::MAX_TRACKS as usize],
            refused,
            number,
            duplicate,
        }
    }
}

/// A fragment received and waiting for its Tags (they follow the Cluster).
struct Received {
    timecode: u64,
    number: Option<String>,
    duplicate: bool,
    summary: FragmentSummary,
    refused: bool,
}

/// A fragment whose PERSISTED waits for the next sync.
enum Waiting {
    /// Written, not yet durable.
    Stored { id: FragmentId, timecode: u64 },
    /// Already stored earlier: acknowledged in its turn.
    Duplicate { timecode: u64, number: Option<String> },
    /// The store could not write it.
    Lost { timecode: u64 },
}

/// See the module docs.
pub struct IngestSession {
    store: Store,
    stream: String,
    reader: MkvReader,
    rules: IngestRules,
    timecodes: TimecodeType,
    scale: u64,
    writer: Option<StreamWriter>,
    open: Option<OpenFragment>,
    received: Option<Received>,
    seq: u64,
    failed: bool,
    /// Say PERSISTED for committed fragments: not for a stream whose
    /// DataRetentionInHours is 0, as the service (reference §1.2).
    persisted_acks: bool,
    /// Fragments finished wait for [`IngestSession::sync`].
    group_commit: bool,
    /// Their PERSISTED, in order.
    waiting: Vec<Waiting>,
    /// Payload bytes of the fragments waiting.
    waiting_bytes: u64,
    /// Fragments committed by this session.
    pub persisted: u64,
}

impl IngestSession {
    /// A session storing into stream `stream` (already validated).
    pub fn new(store: Store, stream: String, timecodes: TimecodeType) -> Self {
        IngestSession {
            store,
            stream,
            reader: MkvReader::new(ReaderLimits::default()),
            rules: IngestRules::new(timecodes, Limits::default()),
            timecodes,
            scale: 1_000_000,
            writer: None,
            open: None,
            received: None,
            seq: 0,
            failed: false,
            persisted_acks: true,
            group_commit: false,
            waiting: Vec::new(),
            waiting_bytes: 0,
            persisted: 0,
        }
    }

    /// Fragments received are made durable together at [`Self::sync`]
    /// rather than one by one (see the module docs).
    pub fn with_group_commit(mut self) -> Self {
        self.group_commit = true;
        self
    }

    /// Fragments and payload bytes received and waiting for a sync.
    pub fn waiting(&self) -> (usize, u64) {
        (self.waiting.len(), self.waiting_bytes)
    }

    /// Make the fragments waiting durable (one fdatasync) and say PERSISTED
    /// for them, in order. At the first one the store lost, PERSISTED stops
    /// and the connection ends with ERROR 5000 (retry): a producer (the KVS
    /// SDK) drops from its buffer everything up to the fragment a PERSISTED
    /// names, so none may follow a fragment that was not stored. What was
    /// stored after it is acknowledged when the producer resends it.
    pub fn sync(&mut self, acks: &mut Vec<Ack>) {
        if self.waiting.is_empty() {
            return;
        }
        let committed = match self.writer.as_mut().map(StreamWriter::sync) {
            Some(Ok(metas)) => metas,
            Some(Err(e)) => {
                warn!(stream = %self.stream, error = %e, "committing ingested fragments");
                Vec::new()
            }
            None => Vec::new(),
        };
        self.waiting_bytes = 0;
        let mut lost = None;
        for w in std::mem::take(&mut self.waiting) {
            let (timecode, number) = match w {
                Waiting::Stored { id, timecode } if committed.iter().any(|m| m.id == id) => {
                    (timecode, Some(id.0.to_string()))
                }
                Waiting::Stored { timecode, .. } | Waiting::Lost { timecode } => {
                    lost = Some(timecode);
                    break;
                }
                Waiting::Duplicate { timecode, number } => (timecode, number),
            };
            self.persisted += 1;
            if self.persisted_acks {
                acks.push(ack(AckKind::Persisted, Some(timecode), number));
            }
        }
        if let Some(timecode) = lost {
            warn!(stream = %self.stream, timecode, "a received fragment was not stored; ending the connection");
            acks.push(Ack {
                kind: AckKind::Error,
                fragment_timecode: Some(timecode),
                fragment_number: None,
                error_id: Some(5000),
                error_code: Some("INTERNAL_ERROR".to_owned()),
            });
            self.abandon();
        }
    }

    /// For a stream with no retention at the service: fragments are still
    /// committed to this store, but PERSISTED is never said; RECEIVED is
    /// the producer's last word (reference §4).
    pub fn without_persisted_acks(mut self) -> Self {
        self.persisted_acks = false;
        self
    }

    /// An ERROR was sent: the connection is to end.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// The next piece of the body; ACKs to send are appended to `acks`.
    pub fn feed(&mut self, data: &[u8], acks: &mut Vec<Ack>) {
        if self.failed {
            return;
        }
        self.reader.feed(data);
        self.drain(acks);
    }

    /// The body ended: a fragment still open is complete if the reader
    /// closes it; what was received is committed.
    pub fn finish(&mut self, acks: &mut Vec<Ack>) {
        if !self.failed {
            self.reader.finish();
            self.drain(acks);
        }
        if !self.failed {
            self.commit_received(acks);
            self.sync(acks);
        }
        self.close();
    }

    /// The body broke off (the connection failed): the fragment being
    /// received is incomplete and dropped; a complete one is stored (the
    /// producer, who saw no PERSISTED for it, will resend it, and the resend
    /// is acknowledged without storing it twice).
    pub fn abort(&mut self) {
        if !self.failed {
            let mut acks = Vec::new();
            self.commit_received(&mut acks);
            self.sync(&mut acks);
        }
        self.open = None;
        self.close();
    }

    fn close(&mut self) {
        if let Some(w) = self.writer.take() {
            if let Err(e) = w.close() {
                warn!(stream = %self.stream, error = %e, "closing the ingest writer");
            }
        }
    }

    fn drain(&mut self, acks: &mut Vec<Ack>) {
        let mut outcomes = Vec::new();
        loop {
            let ev = match self.reader.next_event() {
                Ok(Some(ev)) => ev,
                Ok(None) => break,
                Err(e) => {
                    self.rules.mkv_error(&e, &mut outcomes);
                    self.apply(&outcomes, acks);
                    return;
                }
            };
            outcomes.clear();
            self.rules.event(&ev, &mut outcomes);
            let error = outcomes.iter().any(|o| matches!(o, Outcome::Error { .. }));
            if !error {
                if let Err(e) = self.store_event(&ev, acks) {
                    // 5000 (INTERNAL_ERROR): a producer retries it. 45xx
                    // would make it skip the fragment for our failure.
                    self.fail(
                        5000,
                        "INTERNAL_ERROR",
                        &format!("the gateway could not store it: {e}"),
                        acks,
                    );
                    return;
                }
            }
            self.apply(&outcomes, acks);
            if self.failed {
                return;
            }
        }
    }

    fn apply(&mut self, outcomes: &[Outcome], acks: &mut Vec<Ack>) {
        for o in outcomes {
            match o {
                Outcome::Buffering { timecode } => {
                    let number = self.open.as_ref().and_then(|o| o.number.clone());
                    acks.push(ack(AckKind::Buffering, Some(*timecode), number));
                }
                Outcome::Received { timecode, .. } => {
                    let number = self.received.as_ref().and_then(|r| r.number.clone());
                    acks.push(ack(AckKind::Received, Some(*timecode), number));
                }
                Outcome::Error {
                    timecode,
                    error_id,
                    code,
                    detail,
                } => {
                    warn!(stream = %self.stream, error_id, code, detail, "ingest refused the body");
                    if *error_id == 4009 {
                        // Too many tags: on the fragment that waited for them.
                        self.received = None;
                    }
                    // The fragment before the broken one is complete: stored
                    // and PERSISTED before the ERROR, so the producer does not
                    // send it again.
                    self.commit_received(acks);
                    self.sync(acks);
                    if self.failed {
                        return; // the sync's own ERROR ended it
                    }
                    acks.push(Ack {
                        kind: AckKind::Error,
                        fragment_timecode: *timecode,
                        fragment_number: None,
                        error_id: Some(*error_id),
                        error_code: Some((*code).to_owned()),
                    });
                    self.abandon();
                }
            }
        }
    }

    /// Our own failure (the store), reported as the service's internal error.
    fn fail(&mut self, error_id: u32, code: &str, detail: &str, acks: &mut Vec<Ack>) {
        warn!(stream = %self.stream, error_id, detail, "ingest failed");
        self.commit_received(acks);
        self.sync(acks);
        if self.failed {
            return; // the sync's own ERROR ended it
        }
        acks.push(Ack {
            kind: AckKind::Error,
            fragment_timecode: self.open.as_ref().map(|o| o.timecode),
            fragment_number: None,
            error_id: Some(error_id),
            error_code: Some(code.to_owned()),
        });
        self.abandon();
    }

    /// After an ERROR: the open fragment is dropped (closing the writer
    /// aborts it in the store).
    fn abandon(&mut self) {
        self.failed = true;
        self.open = None;
        self.received = None;
        self.close();
    }

    fn store_event(&mut self, ev: &MkvEvent, acks: &mut Vec<Ack>) -> Result<(), StoreError> {
        match ev {
            MkvEvent::Header(h) => {
                self.scale = h.timecode_scale.max(1);
                if self.writer.is_none() {
                    let mut tracks = Vec::with_capacity(h.tracks.len());
                    for t in &h.tracks {
                        match track_from_entry(t) {
                            Ok(t) => tracks.push(t),
                            Err(e) => {
                                self.fail(4006, "INVALID_MKV_DATA", &e.to_string(), acks);
                                return Ok(());
                            }
                        }
                    }
                    self.writer = Some(self.store.open_stream(&self.stream, &tracks, false)?);
                }
            }
            MkvEvent::ClusterStart { timecode, .. } => {
                self.commit_received(acks);
                let start = self.timecodes.producer_time(*timecode, self.scale);
                if self.writer.is_none() {
                    return Ok(()); // the rules refuse a Cluster before Tracks
                }
                if let Some(existing) = self.stored_at(start)? {
                    debug!(stream = %self.stream, timecode, id = existing.0, "fragment already stored; acknowledging it again");
                    self.open = Some(OpenFragment::new(
                        *timecode,
                        start,
                        Some(existing.0.to_string()),
                        false,
                        true,
                    ));
                    return Ok(());
                }
                let Some(writer) = self.writer.as_mut() else {
                    return Ok(());
                };
                let refused = match writer.write(&FragmentEvent::Start { seq: self.seq, start }) {
                    Ok(_) => false,
                    Err(e) if e.is_denied() => true,
                    Err(e) => return Err(e),
                };
                let number = writer.open_fragment().map(|id| id.0.to_string());
                self.open = Some(OpenFragment::new(*timecode, start, number, refused, false));
            }
            MkvEvent::Block(b) => {
                let pts = self.time(b.timecode);
                let duration = b
                    .duration
                    .map_or(Duration::ZERO, |d| Duration::from_nanos(d.saturating_mul(self.scale)));
                let Ok(track) = u8::try_from(b.track)
                    .map_err(|_| ())
                    .and_then(|n| TrackId::new(n).map_err(|_| ()))
                else {
                    return Ok(()); // the rules refuse it (4010)
                };
                let frame = Frame {
                    track,
                    pts,
                    // Matroska carries presentation times only.
                    dts: pts,
                    duration,
                    keyframe: b.keyframe,
                    data: b.data.clone(),
                };
                let (Some(open), Some(writer)) = (self.open.as_mut(), self.writer.as_mut()) else {
                    return Ok(());
                };
                open.frames += 1;
                open.bytes += frame.data.len() as u64;
                open.track_frames[track.index()] += 1;
                open.last_pts = open.last_pts.max(pts);
                open.end = open.end.max(pts + duration);
                if !open.refused && !open.duplicate {
                    match writer.write(&FragmentEvent::Frame(frame)) {
                        Ok(_) => {}
                        Err(e) if e.is_denied() => open.refused = true,
                        Err(e) => return Err(e),
                    }
                }
            }
            MkvEvent::ClusterEnd => {
                if let Some(open) = self.open.take() {
                    if open.frames > 0 {
                        let summary = FragmentSummary {
                            seq: self.seq,
                            start: open.start,
                            end: open.end.max(open.last_pts),
                            last_pts: open.last_pts,
                            frames: open.frames,
                            bytes: open.bytes,
                            track_frames: open.track_frames,
                            metadata: Vec::new(),
                            closed_by: CloseReason::KeyFrame,
                        };
                        self.seq += 1;
                        self.received = Some(Received {
                            timecode: open.timecode,
                            number: open.number,
                            duplicate: open.duplicate,
                            summary,
                            refused: open.refused,
                        });
                    }
                }
            }
            MkvEvent::Tags(tags) => {
                if let Some(r) = self.received.as_mut() {
                    r.summary.metadata.extend(tags.iter().cloned());
                }
            }
        }
        Ok(())
    }

    /// Commits the fragment that waited for its Tags and says PERSISTED.
    fn commit_received(&mut self, acks: &mut Vec<Ack>) {
        let (Some(r), Some(writer)) = (self.received.take(), self.writer.as_mut()) else {
            return;
        };
        if r.refused {
            debug!(stream = %self.stream, timecode = r.timecode, "fragment refused by the store; not PERSISTED");
            return;
        }
        if r.duplicate {
            if !self.waiting.is_empty() {
                // After those waiting, not before.
                self.waiting.push(Waiting::Duplicate {
                    timecode: r.timecode,
                    number: r.number,
                });
                return;
            }
            self.persisted += 1;
            if self.persisted_acks {
                acks.push(ack(AckKind::Persisted, Some(r.timecode), r.number));
            }
            return;
        }
        if self.group_commit {
            match writer.end_unsynced(&r.summary) {
                Ok(Some(id)) => {
                    self.waiting_bytes += r.summary.bytes;
                    self.waiting.push(Waiting::Stored {
                        id,
                        timecode: r.timecode,
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(stream = %self.stream, error = %e, "writing an ingested fragment");
                    self.waiting.push(Waiting::Lost { timecode: r.timecode });
                }
            }
            return;
        }
        match writer.write(&FragmentEvent::End(r.summary)) {
            Ok(Some(meta)) => {
                self.persisted += 1;
                if self.persisted_acks {
                    acks.push(ack(AckKind::Persisted, Some(r.timecode), Some(meta.id.0.to_string())));
                }
            }
            Ok(None) => {}
            Err(e) => warn!(stream = %self.stream, error = %e, "committing an ingested fragment"),
        }
    }

    /// The stored fragment of this stream that starts exactly at `start`.
    fn stored_at(&self, start: Timestamp) -> Result<Option<crate::store::FragmentId>, StoreError> {
        match self.store.fragment_starting_at(&self.stream, start) {
            Ok(found) => Ok(found.map(|m| m.id)),
            Err(StoreError::UnknownStream(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Producer time of `ticks` (a block's may be negative: clamped to 0).
    fn time(&self, ticks: i64) -> Timestamp {
        self.timecodes
            .producer_time(u64::try_from(ticks).unwrap_or(0), self.scale)
    }
}

fn ack(kind: AckKind, timecode: Option<u64>, number: Option<String>) -> Ack {
    Ack {
        kind,
        fragment_timecode: timecode,
        fragment_number: number,
        error_id: None,
        error_code: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{config, test_clock};
    use bytes::Bytes;
    use fragmenter::media::VideoTrack;
    use fragmenter::mkv::{MkvEvent, MkvReader, MkvWriter, MkvWriterOptions};
    use fragmenter::Track;
    use proptest::prelude::*;
    use std::sync::Arc;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// An avcC around a real x264 SPS (baseline, 640×360).
    fn avcc() -> Bytes {
        let sps = hex("6742c01ed900a02ff97016a0c0c0d4a0000003002000000791e2c5c9");
        let pps = hex("68ce3c80");
        let mut v = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
        v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
        v.extend_from_slice(&sps);
        v.push(1);
        v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
        v.extend_from_slice(&pps);
        v.into()
    }

    /// Three 1-second fragments of 10 frames.
    fn body() -> Vec<u8> {
        let track = Track::new(TrackId::new(1).unwrap(), "video", VideoTrack::h264(avcc()).unwrap());
        let mut w = MkvWriter::new(&[track], MkvWriterOptions::default()).unwrap();
        let mut out = Vec::new();
        w.write_header(&mut out);
        for f in 0..3u64 {
            let start = 1_795_000_000_000 + f * 1000;
            w.start_cluster(Timestamp::from_millis(start), &mut out).unwrap();
            for i in 0..10u64 {
                let t = Timestamp::from_millis(start + i * 100);
                let frame = Frame {
                    track: TrackId::new(1).unwrap(),
                    pts: t,
                    dts: t,
                    duration: Duration::from_millis(100),
                    keyframe: i == 0,
                    data: Bytes::from(vec![0, 0, 0, 2, 0x65, (f * 10 + i) as u8]),
                };
                w.write_frame(&frame, &mut out).unwrap();
            }
            w.end_cluster(&[], &mut out);
        }
        out
    }

    fn run(body: &[u8], pieces: &[usize]) -> (Vec<Ack>, Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
        let mut acks = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = pieces.get(i).copied().unwrap_or(97).clamp(1, rest.len());
            s.feed(&rest[..n], &mut acks);
            rest = &rest[n..];
            i += 1;
        }
        s.finish(&mut acks);
        (acks, store, dir)
    }

    #[test]
    fn every_fragment_is_buffering_received_persisted_in_order() {
        let (acks, store, _dir) = run(&body(), &[]);
        let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["BUFFERING", "RECEIVED", "PERSISTED"].repeat(3));
        let info = store.stream("cam").unwrap();
        assert_eq!(info.fragments, 3);
        assert!(store.verify().unwrap().problems.is_empty());
    }

    /// Group commit: fragments received in one piece wait, unindexed and
    /// without PERSISTED, for `sync`, which makes them durable with one
    /// fdatasync and says PERSISTED for each in order; a resend within the
    /// same body's group (the second body here) is acknowledged in its turn.
    #[test]
    fn group_commit_says_persisted_for_all_after_one_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute).with_group_commit();
        let mut acks = Vec::new();
        let b = body();
        s.feed(&b, &mut acks);
        // The third fragment waits for its Tags (or the end of the body).
        assert_eq!(s.waiting().0, 2);
        assert!(acks.iter().all(|a| a.kind != AckKind::Persisted), "{acks:?}");
        assert_eq!(store.stream("cam").unwrap().fragments, 0, "indexed before the sync");
        let fsyncs = store.stats().fsync.count;
        s.sync(&mut acks);
        assert_eq!(store.stats().fsync.count - fsyncs, 1);
        assert_eq!(numbers(&acks).len(), 2);
        s.finish(&mut acks);
        let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(
            kinds,
            [
                "BUFFERING",
                "RECEIVED",
                "BUFFERING",
                "RECEIVED",
                "BUFFERING",
                "PERSISTED",
                "PERSISTED",
                "RECEIVED",
                "PERSISTED"
            ]
        );
        assert_eq!(s.persisted, 3);
        assert_eq!(store.stream("cam").unwrap().fragments, 3);
        assert!(store.verify().unwrap().problems.is_empty());

        // The same body again, grouped: every fragment is a duplicate,
        // acknowledged with the numbers it was stored under.
        let mut again = Vec::new();
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute).with_group_commit();
        s.feed(&b, &mut again);
        s.finish(&mut again);
        assert_eq!(numbers(&again), numbers(&acks));
        assert_eq!(store.stream("cam").unwrap().fragments, 3);
    }

    /// A failing disk under group commit: the sync fails, no PERSISTED is
    /// said for the fragments waiting (a producer would drop them from its
    /// buffer), the connection ends with ERROR 5000 naming the first, and
    /// the store holds nothing it does not index.
    #[test]
    fn a_failed_group_sync_ends_with_error_5000_and_no_persisted() {
        use crate::store::{BudgetFs, SharedBudgetFs};
        let dir = tempfile::tempdir().unwrap();
        let fs = BudgetFs::new();
        let store = Store::open_with(config(dir.path()), test_clock(), Arc::new(SharedBudgetFs(fs.clone()))).unwrap();
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute).with_group_commit();
        let mut acks = Vec::new();
        s.feed(&body(), &mut acks);
        assert_eq!(s.waiting().0, 2);
        fs.fail_syncs.store(true, std::sync::atomic::Ordering::SeqCst);
        s.sync(&mut acks);
        assert!(s.failed());
        assert!(acks.iter().all(|a| a.kind != AckKind::Persisted), "{acks:?}");
        let last = acks.last().unwrap();
        assert_eq!((last.kind.as_str(), last.error_id), ("ERROR", Some(5000)));
        assert_eq!(last.fragment_timecode, Some(1_795_000_000_000));
        s.finish(&mut acks);
        assert_eq!(acks.iter().filter(|a| a.kind == AckKind::Error).count(), 1);
        fs.fail_syncs.store(false, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(store.stream("cam").unwrap().fragments, 0);
        let v = store.verify().unwrap();
        assert!(v.problems.is_empty(), "{:?}", v.problems);
        assert_eq!(v.uncovered_bytes, 0);
    }

    fn numbers(acks: &[Ack]) -> Vec<String> {
        acks.iter()
            .filter(|a| a.kind == AckKind::Persisted)
            .map(|a| a.fragment_number.clone().unwrap())
            .collect()
    }

    #[test]
    fn a_resent_body_is_acknowledged_again_and_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        let send = |body: &[u8]| {
            let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
            let mut acks = Vec::new();
            s.feed(body, &mut acks);
            s.finish(&mut acks);
            acks
        };
        let first = send(&body());
        let again = send(&body());
        assert_eq!(numbers(&first).len(), 3);
        assert_eq!(numbers(&again), numbers(&first), "the same fragment numbers");
        assert_eq!(store.stream("cam").unwrap().fragments, 3);
        assert!(store.verify().unwrap().problems.is_empty());
    }

    #[test]
    fn a_body_that_breaks_off_drops_its_partial_fragment_and_a_resend_is_not_stored_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        let b = body();
        // Cut inside the third fragment: it is dropped, the first two are
        // stored.
        let cut = b.len() - 20;
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
        let mut acks = Vec::new();
        s.feed(&b[..cut], &mut acks);
        s.abort();
        let before = numbers(&acks);
        assert_eq!(before.len(), 2, "{acks:?}");
        assert_eq!(store.stream("cam").unwrap().fragments, 2);
        // The producer resends from the second fragment (a producer whose
        // connection died may not have seen its PERSISTED).
        let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
        let mut acks = Vec::new();
        let second = {
            let mut r = MkvReader::default();
            r.feed(&b);
            let mut n = 0;
            let mut at = 0;
            while let Some(ev) = r.next_event().unwrap() {
                if let MkvEvent::ClusterStart { offset, .. } = ev {
                    n += 1;
                    if n == 2 {
                        at = offset as usize;
                    }
                }
            }
            at
        };
        let header_end = {
            let mut r = MkvReader::default();
            r.feed(&b);
            let mut first = 0;
            while let Some(ev) = r.next_event().unwrap() {
                if let MkvEvent::ClusterStart { offset, .. } = ev {
                    first = offset as usize;
                    break;
                }
            }
            first
        };
        let mut resend = b[..header_end].to_vec();
        resend.extend_from_slice(&b[second..]);
        s.feed(&resend, &mut acks);
        s.finish(&mut acks);
        let after = numbers(&acks);
        assert_eq!(after.len(), 2, "{acks:?}");
        assert_eq!(after[0], before[1], "the resent fragment keeps its number");
        assert_eq!(store.stream("cam").unwrap().fragments, 3);
        assert!(store.verify().unwrap().problems.is_empty());
    }

    /// Found by the ingest fuzz target: a Cluster Timecode whose time does
    /// not fit a timestamp was stored at the saturated time, and the same
    /// body sent again was stored again (a resend could not be recognised).
    #[test]
    fn a_fragment_past_what_the_store_holds_is_refused_and_not_stored() {
        let mut b = body();
        // The first Cluster's Timecode (8 bytes, as the SDK writes it).
        let first = 1_795_000_000_000u64.to_be_bytes();
        let at = b.windows(8).position(|w| w == first).unwrap();
        b[at..at + 8].copy_from_slice(&(u64::MAX / 1_000).to_be_bytes());
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        for _ in 0..2 {
            let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
            let mut acks = Vec::new();
            s.feed(&b, &mut acks);
            s.finish(&mut acks);
            let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
            assert_eq!(kinds, ["ERROR"], "{acks:?}");
            assert_eq!(acks[0].error_id, Some(4007));
        }
        assert_eq!(store.stream("cam").map(|s| s.fragments).unwrap_or(0), 0);
    }

    /// Found by the ingest fuzz target: a fragment whose one frame has no
    /// duration and starts at the Cluster Timecode ends where it starts, so
    /// the lookup by time range (`end > start`) never found it and its
    /// resend was stored a second time; the lookup is by start now.
    #[test]
    fn a_resent_fragment_of_one_instant_is_recognised() {
        let track = Track::new(TrackId::new(1).unwrap(), "video", VideoTrack::h264(avcc()).unwrap());
        let mut w = MkvWriter::new(&[track], MkvWriterOptions::default()).unwrap();
        let mut b = Vec::new();
        w.write_header(&mut b);
        for start in [1_795_000_000_000, 1_795_000_001_000] {
            let t = Timestamp::from_millis(start);
            w.start_cluster(t, &mut b).unwrap();
            let frame = Frame {
                track: TrackId::new(1).unwrap(),
                pts: t,
                dts: t,
                duration: Duration::ZERO,
                keyframe: true,
                data: Bytes::from_static(&[0, 0, 0, 2, 0x65, 0]),
            };
            w.write_frame(&frame, &mut b).unwrap();
            w.end_cluster(&[], &mut b);
        }
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(config(dir.path()), test_clock()).unwrap();
        let send = || {
            let mut s = IngestSession::new(store.clone(), "cam".into(), TimecodeType::Absolute);
            let mut acks = Vec::new();
            s.feed(&b, &mut acks);
            s.finish(&mut acks);
            numbers(&acks)
        };
        let first = send();
        assert_eq!(first.len(), 2);
        assert_eq!(send(), first, "the same fragment numbers");
        assert_eq!(store.stream("cam").unwrap().fragments, 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Mangled bodies in random pieces: no panic, the store stays
        /// consistent, and PERSISTED is said exactly for what was stored.
        #[test]
        fn mangled_bodies_never_corrupt_the_store(
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            pieces in proptest::collection::vec(1usize..400, 0..40),
        ) {
            let mut b = body();
            for (at, byte) in &edits {
                let i = at.index(b.len());
                b[i] = *byte;
            }
            let (acks, store, _dir) = run(&b, &pieces);
            let persisted = acks.iter().filter(|a| a.kind == AckKind::Persisted).count() as u64;
            let stored = store.stream("cam").map(|s| s.fragments).unwrap_or(0);
            prop_assert_eq!(persisted, stored);
            prop_assert!(store.verify().unwrap().problems.is_empty());
            if edits.is_empty() {
                prop_assert_eq!(stored, 3);
            }
        }
    }
}
