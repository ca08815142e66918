//! Writing one stream: fragment events in, durable indexed fragments out.
//!
//! Order of operations for a fragment:
//!
//! 1. `Start`: admission (size cap, free-disk valve, a disk that was full);
//!    roll the segment file when it is big or old enough; allocate the id;
//!    append the record header (length 0: open); publish the start on the
//!    live tail.
//! 2. `Frame`: append the payload (buffered) to the segment, extend the frame
//!    index and CRC, keep a reference to the frame (for a retry after
//!    ENOSPC), publish it on the live tail.
//! 3. `End`: append frame index, meta block and trailer, patch the record
//!    header with the record's length, fdatasync the segment (and fsync its
//!    directory when the file is new), then commit the index row in one
//!    transaction; publish the end; run retention if a limit was crossed.
//!
//! A failed write truncates the segment back to the fragment's start, so
//! the file never holds bytes past its last committed record for long (and
//! recovery cuts any that a crash leaves).
//!
//! Group commit ([`StreamWriter::end_unsynced`], [`StreamWriter::sync`]):
//! a writer fed faster than the disk syncs (a gateway draining a backlog)
//! finishes records without the fdatasync, carries on with the next
//! fragment in the same segment, and makes them all durable with one
//! fdatasync and their rows with one commit each. Until then nothing is
//! indexed, and the live tail holds back what follows the first unsynced
//! fragment, so readers still see Start, Frames, End in order. A crash
//! before the sync leaves complete records after the last indexed one:
//! recovery re-indexes those that reached the disk.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use fragmenter::fragment::FragmentSummary;
use fragmenter::{FragmentEvent, Frame, Timestamp, Track};
use tracing::{info, warn};

use super::error::is_enospc;
use super::frame_index::IndexBuilder;
use super::index::{self, NewFragment, SegmentRef};
use super::live::LiveEvent;
use super::segment::{self, RecordMeta, Trailer};
use super::{
    lock, rel_path, retention, tracks, AppendFile, DeleteReason, DenyReason, FragmentHead, FragmentId, FragmentMeta,
    OnFull, Store, StoreError, StreamShared, StreamState, UploadState, MB,
};

/// Payloads are gathered (as shared `Bytes`, not copied) up to this many
/// bytes before one vectored write.
const BUF_CAP: usize = 256 * 1024;
/// Attempts to make room and rewrite a fragment after ENOSPC.
const DISK_FULL_RETRIES: usize = 3;

/// Writes one stream's fragment events into the store. Dropping it (or
/// [`StreamWriter::close`]) abandons any open fragment and leaves the stream
/// idle.
pub struct StreamWriter {
    store: Store,
    stream: Arc<StreamShared>,
    track_set: i64,
    tracks: Arc<[Track]>,
    seg: Option<ActiveSegment>,
    open: Option<OpenFragment>,
    /// Ignoring events until the next Start (a refused fragment).
    dropping: bool,
    /// Appended but not yet written: the frames' own buffers, so gathering
    /// copies nothing (a copy of every small frame was 4 % of the append
    /// benchmark, and its 256 KB buffer stayed resident).
    pending: Vec<Bytes>,
    pending_len: usize,
    largest_record: u64,
    closed: bool,
    /// Finished records waiting for [`StreamWriter::sync`], oldest first.
    unsynced: Vec<Unsynced>,
    /// Live events held back while records are unsynced (see the module
    /// docs); `None` when events go straight to the live tail.
    held: Option<Vec<Held>>,
    /// Made durable by a segment roll or an `End` behind unsynced records:
    /// handed out by the next [`StreamWriter::sync`].
    settled: Vec<FragmentMeta>,
}

/// A finished record not yet durable nor indexed.
#[derive(Debug)]
struct Unsynced {
    open: OpenFragment,
    trailer: Trailer,
    metadata: Vec<u8>,
    summary_metadata: Vec<fragmenter::fragment::Metadata>,
}

/// A live event held back, or the place of an unsynced fragment's End.
#[derive(Debug)]
enum Held {
    Event(LiveEvent),
    End(u64),
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("stream", &self.stream.name)
            .finish()
    }
}

#[derive(Debug)]
struct ActiveSegment {
    file: Box<dyn AppendFile>,
    rel: String,
    path: PathBuf,
    /// The segment's row, once its first fragment is committed.
    row: Option<i64>,
    /// End of the last committed record.
    committed_len: u64,
    /// End of the last finished record, committed or waiting for a sync.
    finished_len: u64,
    /// Bytes handed to the file (the buffer holds more).
    written_len: u64,
    start: Timestamp,
    dir_synced: bool,
}

#[derive(Debug)]
struct OpenFragment {
    id: u64,
    seq: u64,
    start: Timestamp,
    offset: u64,
    /// Frames so far. Their bytes are not kept: they are in the segment
    /// file (or `pending`), and a rewrite after ENOSPC reads them back
    /// (`payload_so_far`). Holding them cost a fragment of memory — 1 MB at
    /// 4 Mbit/s — on top of the live tail's.
    frames: u32,
    index: IndexBuilder,
    crc: crc32fast::Hasher,
    bytes: u64,
    end: Timestamp,
    last_pts: Timestamp,
    track_frames: [u32; 3],
}

impl StreamWriter {
    pub(crate) fn new(store: Store, stream: Arc<StreamShared>, track_set: i64, tracks: Arc<[Track]>) -> Self {
        StreamWriter {
            store,
            stream,
            track_set,
            tracks,
            seg: None,
            open: None,
            dropping: false,
            pending: Vec::new(),
            pending_len: 0,
            largest_record: 0,
            closed: false,
            unsynced: Vec::new(),
            held: None,
            settled: Vec::new(),
        }
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream.name
    }

    /// The tracks this writer stores.
    pub fn tracks(&self) -> &Arc<[Track]> {
        &self.tracks
    }

    /// The id of the fragment being written, once its Start was stored.
    pub fn open_fragment(&self) -> Option<super::FragmentId> {
        self.open.as_ref().map(|o| super::FragmentId(o.id))
    }

    /// Recording or denied.
    pub fn state(&self) -> StreamState {
        lock(&self.stream.rt).state.clone()
    }

    /// Store one fragment event. Returns the fragment's description when an
    /// `End` made it durable.
    ///
    /// [`StoreError::is_denied`] errors are not fatal: the fragment is
    /// dropped (its remaining events are ignored), the stream shows
    /// `Denied`, and a later `Start` resumes recording once space returns.
    pub fn write(&mut self, ev: &FragmentEvent) -> Result<Option<FragmentMeta>, StoreError> {
        match ev {
            FragmentEvent::Start { seq, start } => self.start(*seq, *start).map(|()| None),
            FragmentEvent::Frame(f) => self.frame(f).map(|()| None),
            FragmentEvent::End(summary) => self.end(summary),
        }
    }

    /// Abandon any open fragment and leave the stream idle.
    pub fn close(mut self) -> Result<(), StoreError> {
        self.shutdown();
        Ok(())
    }

    fn bad_event(&self, detail: String) -> StoreError {
        StoreError::BadEvent {
            stream: self.stream.name.clone(),
            detail,
        }
    }

    // ---- Start ----

    fn start(&mut self, seq: u64, start: Timestamp) -> Result<(), StoreError> {
        if self.open.is_some() {
            warn!(stream = %self.stream.name, seq, "fragment started before the previous one ended; dropping the previous one");
            self.abort();
        }
        self.dropping = false;
        if let Err(reason) = self.admit() {
            return Err(self.deny(reason));
        }
        self.set_state(StreamState::Recording);
        if self.should_roll(start) {
            self.close_segment();
        }
        let id = self.store.inner.next_fragment_id.fetch_add(1, Ordering::SeqCst);
        if self.seg.is_none() {
            if let Err(e) = self.new_segment(id, start) {
                if is_enospc(&e) {
                    self.store
                        .inner
                        .counters
                        .disk_full_errors
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(self.deny(DenyReason::DiskFull { detail: e.to_string() }));
                }
                return Err(self.fail(StoreError::io("cannot create a segment file", e)));
            }
        }
        let offset = self.seg.as_ref().map_or(0, |s| s.finished_len);
        self.open = Some(OpenFragment {
            id,
            seq,
            start,
            offset,
            frames: 0,
            index: IndexBuilder::new(start),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
            end: start,
            last_pts: start,
            track_frames: [0; 3],
        });
        // The record header, its length patched in at the end.
        if let Err(e) = self.append(Bytes::copy_from_slice(&segment::encode_header(0))) {
            self.on_write_error(e)?;
        }
        self.publish(LiveEvent::Start(Arc::new(FragmentHead {
            id: FragmentId(id),
            stream: self.stream.name.clone(),
            seq,
            start,
            tracks: self.tracks.clone(),
        })));
        Ok(())
    }

    /// May a new fragment be written? Makes room first under
    /// DELETE_OLDEST_MEDIA.
    fn admit(&mut self) -> Result<(), DenyReason> {
        let inner = self.store.inner.clone();
        let cfg = &inner.cfg;
        let on_full = cfg.on_full;
        if cfg.max_size_mb > 0 {
            let cap = cfg.max_size_mb * MB;
            let used = self.store.inner.counters.disk_bytes.load(Ordering::Relaxed);
            if used >= cap {
                match on_full {
                    OnFull::DenyNewMedia => return Err(DenyReason::MaxSize { used, cap }),
                    OnFull::DeleteOldestMedia => {
                        self.make_room(DeleteReason::MaxSize);
                    }
                }
            }
        }
        let min_free = cfg.min_free_mb * MB;
        let disk_full = matches!(
            &lock(&self.stream.rt).state,
            StreamState::Denied {
                reason: DenyReason::DiskFull { .. },
                ..
            }
        );
        if min_free > 0 || disk_full {
            // After ENOSPC, wait for room for two fragments beyond the valve.
            let need = min_free + if disk_full { self.headroom() } else { 0 };
            if let Ok(free) = self.store.free_bytes() {
                if free < need {
                    let free = if on_full == OnFull::DeleteOldestMedia {
                        let reason = if disk_full {
                            DeleteReason::DiskFull
                        } else {
                            DeleteReason::MinFree
                        };
                        self.make_room(reason);
                        self.store.free_bytes().unwrap_or(0)
                    } else {
                        free
                    };
                    if free < need {
                        return Err(if disk_full {
                            match &lock(&self.stream.rt).state {
                                StreamState::Denied { reason, .. } => reason.clone(),
                                _ => DenyReason::MinFree { free, min: min_free },
                            }
                        } else {
                            DenyReason::MinFree { free, min: min_free }
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Bytes a fragment may need: twice the largest so far, at least 64 KiB.
    fn headroom(&self) -> u64 {
        (2 * self.largest_record).max(64 * 1024)
    }

    /// Run retention; if this writer's own segment is what keeps it from
    /// freeing enough, close the segment and run it again. Returns the
    /// fragments deleted.
    fn make_room(&mut self, reason: DeleteReason) -> u64 {
        let deleted = match retention::enforce(&self.store) {
            Ok(r) => r.fragments(),
            Err(e) => {
                warn!(stream = %self.stream.name, error = %e, %reason, "retention failed");
                0
            }
        };
        if deleted > 0 || !lock(&self.stream.rt).roll_requested || self.open.is_some() {
            return deleted;
        }
        self.close_segment();
        match retention::enforce(&self.store) {
            Ok(r) => deleted + r.fragments(),
            Err(e) => {
                warn!(stream = %self.stream.name, error = %e, %reason, "retention failed");
                deleted
            }
        }
    }

    fn should_roll(&mut self, start: Timestamp) -> bool {
        let Some(seg) = &self.seg else { return false };
        let cfg = &self.store.inner.cfg;
        let requested = std::mem::take(&mut lock(&self.stream.rt).roll_requested);
        seg.finished_len > 0
            && (requested
                || seg.finished_len >= cfg.segment_max_bytes
                || start.saturating_since(seg.start) >= cfg.segment_max_duration)
    }

    fn new_segment(&mut self, first_id: u64, start: Timestamp) -> io::Result<()> {
        let inner = &self.store.inner;
        let path = segment::stream_dir(&inner.cfg.path, &self.stream.dir).join(segment::file_name(first_id));
        let rel = rel_path(&inner.cfg.path, &path);
        lock(&inner.active_segments).insert(rel.clone());
        match inner.fs.create(&path) {
            Ok(file) => {
                self.seg = Some(ActiveSegment {
                    file,
                    rel,
                    path,
                    row: None,
                    committed_len: 0,
                    finished_len: 0,
                    written_len: 0,
                    start,
                    dir_synced: false,
                });
                Ok(())
            }
            Err(e) => {
                lock(&inner.active_segments).remove(&rel);
                Err(e)
            }
        }
    }

    /// Stop appending to the current segment. A segment that never got a
    /// committed fragment is removed.
    fn close_segment(&mut self) {
        self.settle();
        self.discard_pending();
        if let Some(seg) = self.seg.take() {
            let inner = &self.store.inner;
            drop(seg.file);
            if seg.row.is_none() {
                if let Err(e) = inner.fs.remove(&seg.path) {
                    if e.kind() != io::ErrorKind::NotFound {
                        warn!(path = %seg.path.display(), error = %e, "cannot remove an empty segment; recovery will");
                    }
                }
            }
            lock(&inner.active_segments).remove(&seg.rel);
            lock(&self.stream.rt).roll_requested = false;
        }
    }

    // ---- Frame ----

    fn frame(&mut self, f: &Frame) -> Result<(), StoreError> {
        if self.dropping {
            return Ok(());
        }
        if self.open.is_none() {
            return Err(self.bad_event(format!(
                "frame of {} at {} arrived outside a fragment: expected a Start first",
                f.track, f.pts
            )));
        }
        if f.track.index() >= self.tracks.len() {
            return Err(self.bad_event(format!(
                "frame for {} at {} but the stream has {} track(s)",
                f.track,
                f.pts,
                self.tracks.len()
            )));
        }
        let open = self.open.as_mut().expect("checked above");
        if open.index.push(f).is_none() {
            let d = f.duration;
            return Err(self.bad_event(format!("frame at {} lasts {d:?}, beyond 584 years", f.pts)));
        }
        open.crc.update(&f.data);
        open.bytes += f.data.len() as u64;
        open.end = open.end.max(f.pts + f.duration);
        open.last_pts = open.last_pts.max(f.pts);
        open.track_frames[f.track.index()] += 1;
        open.frames += 1;
        if let Err(e) = self.append(f.data.clone()) {
            self.on_write_error(e)?;
        }
        self.publish(LiveEvent::Frame(f.clone()));
        Ok(())
    }

    fn append(&mut self, data: Bytes) -> io::Result<()> {
        self.pending_len += data.len();
        self.pending.push(data);
        if self.pending_len >= BUF_CAP {
            self.flush_pending()?;
        }
        Ok(())
    }

    fn flush_pending(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let seg = self.seg.as_mut().expect("a fragment is open");
        seg.file.append_all(&self.pending)?;
        seg.written_len += self.pending_len as u64;
        self.discard_pending();
        Ok(())
    }

    fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_len = 0;
    }

    // ---- End ----

    fn end(&mut self, summary: &FragmentSummary) -> Result<Option<FragmentMeta>, StoreError> {
        if !self.unsynced.is_empty() {
            // Behind records waiting for a sync: one sync for all.
            let Some(id) = self.end_unsynced(summary)? else {
                return Ok(None);
            };
            let mut metas = self.sync()?;
            let pos = metas.iter().position(|m| m.id == id);
            let meta = pos.map(|i| metas.remove(i));
            // The others are the caller's at its next sync.
            self.settled = metas;
            return Ok(meta);
        }
        let Some(metadata) = self.check_end(summary)? else {
            return Ok(None);
        };
        let trailer = self.finish_record_retrying(&metadata, true)?;
        let open = self.open.take().expect("a fragment is open");
        let id = open.id;
        let finished = Unsynced {
            open,
            trailer,
            metadata,
            summary_metadata: summary.metadata.clone(),
        };
        match self.commit_row(finished) {
            Ok(meta) => {
                self.publish(LiveEvent::End(Arc::new(meta.clone())));
                if let Err(e) = retention::after_append(&self.store) {
                    warn!(stream = %self.stream.name, error = %e, "retention after a fragment failed");
                }
                Ok(Some(meta))
            }
            Err(e) => {
                // Durable but not indexed: cut, so the file and the index agree.
                self.cut_uncommitted();
                self.publish(LiveEvent::Abort(FragmentId(id)));
                Err(self.fail(e))
            }
        }
    }

    /// Finish the open fragment's record without making it durable: it
    /// waits, unindexed, for [`StreamWriter::sync`], and the next fragment
    /// follows it in the segment. Returns its id (`None`: the fragment was
    /// being dropped).
    pub fn end_unsynced(&mut self, summary: &FragmentSummary) -> Result<Option<FragmentId>, StoreError> {
        let Some(metadata) = self.check_end(summary)? else {
            return Ok(None);
        };
        let trailer = self.finish_record_retrying(&metadata, false)?;
        let open = self.open.take().expect("a fragment is open");
        let record_len = trailer.record_len();
        let seg = self.seg.as_mut().expect("a fragment is open");
        seg.finished_len = open.offset + record_len;
        self.largest_record = self.largest_record.max(record_len);
        let id = open.id;
        self.unsynced.push(Unsynced {
            open,
            trailer,
            metadata,
            summary_metadata: summary.metadata.clone(),
        });
        self.held.get_or_insert_with(Vec::new).push(Held::End(id));
        Ok(Some(FragmentId(id)))
    }

    /// Records finished by [`StreamWriter::end_unsynced`] and not synced.
    pub fn unsynced(&self) -> usize {
        self.unsynced.len()
    }

    /// Make every unsynced record durable (one fdatasync) and index it;
    /// returns their metadata, oldest first, with any that a segment roll
    /// or an `End` made durable since the last call. On an error the
    /// unsynced records are dropped (the error says why).
    pub fn sync(&mut self) -> Result<Vec<FragmentMeta>, StoreError> {
        self.sync_unsynced()?;
        Ok(std::mem::take(&mut self.settled))
    }

    fn sync_unsynced(&mut self) -> Result<(), StoreError> {
        if self.unsynced.is_empty() {
            return Ok(());
        }
        if let Err(e) = self.sync_segment() {
            // fsyncgate: after a failed fdatasync the file's state is
            // unknown; what it held is dropped and a new segment begins.
            let err = StoreError::io(format!("cannot sync a segment of stream {:?}", self.stream.name), e);
            self.drop_unsynced();
            self.abort();
            self.close_segment();
            return Err(self.fail(err));
        }
        let mut failed = None;
        let mut committed = Vec::new();
        for u in std::mem::take(&mut self.unsynced) {
            if failed.is_some() {
                continue;
            }
            match self.commit_row(u) {
                Ok(meta) => committed.push(meta),
                Err(e) => failed = Some(e),
            }
        }
        // What readers were not shown yet, in order; an End that did not
        // commit is an Abort.
        for h in self.held.take().unwrap_or_default() {
            match h {
                Held::Event(e) => self.stream.live.publish(e),
                Held::End(id) => match committed.iter().find(|m| m.id.0 == id) {
                    Some(m) => self.stream.live.publish(LiveEvent::End(Arc::new(m.clone()))),
                    None => self.stream.live.publish(LiveEvent::Abort(FragmentId(id))),
                },
            }
        }
        let any = !committed.is_empty();
        self.settled.extend(committed);
        if let Some(e) = failed {
            // Durable but not indexed: cut them (and the open fragment
            // after them), so the file and the index agree.
            self.abort();
            self.cut_uncommitted();
            return Err(self.fail(e));
        }
        if any {
            if let Err(e) = retention::after_append(&self.store) {
                warn!(stream = %self.stream.name, error = %e, "retention after a fragment failed");
            }
        }
        Ok(())
    }

    /// Unsynced records before the segment changes: synced; on failure
    /// (said by the log) dropped.
    fn settle(&mut self) {
        if let Err(e) = self.sync_unsynced() {
            warn!(stream = %self.stream.name, error = %e, "unsynced fragments dropped");
        }
    }

    /// Forget the unsynced records (a write failed: they are not to be
    /// trusted) and what was held back; readers saw the first one begin.
    fn drop_unsynced(&mut self) {
        let first = self.unsynced.first().map(|u| u.open.id);
        let n = self.unsynced.len() as u64;
        self.unsynced.clear();
        self.held = None;
        // Cut them now: with no fragment open, nothing else would, and a
        // closed segment would keep records its index does not cover.
        self.cut_uncommitted();
        if let Some(id) = first {
            self.store
                .inner
                .counters
                .fragments_aborted
                .fetch_add(n, Ordering::Relaxed);
            self.stream.live.publish(LiveEvent::Abort(FragmentId(id)));
        }
    }

    /// Cut the segment back to its last indexed record.
    fn cut_uncommitted(&mut self) {
        if let Some(seg) = self.seg.as_mut() {
            seg.finished_len = seg.committed_len;
        }
        self.truncate_to_finished();
    }

    /// The checks of an `End`; the record's meta block, or `None` when the
    /// fragment is being dropped.
    fn check_end(&mut self, summary: &FragmentSummary) -> Result<Option<Vec<u8>>, StoreError> {
        if self.dropping {
            self.dropping = false;
            return Ok(None);
        }
        let Some(open) = self.open.as_ref() else {
            return Err(self.bad_event(format!(
                "fragment {} ended but none was open: expected a Start first",
                summary.seq
            )));
        };
        if open.frames == 0 {
            self.abort();
            return Err(self.bad_event(format!("fragment {} ended with no frames", summary.seq)));
        }
        if summary.frames != open.frames || summary.seq != open.seq {
            warn!(stream = %self.stream.name, seq = summary.seq, summary_frames = summary.frames,
                stored_frames = open.frames, "fragment summary disagrees with the frames received; storing what was received");
        }
        Ok(Some(tracks::encode_metadata(&summary.metadata)))
    }

    /// [`Self::finish_record`], after ENOSPC again once room was made (the
    /// fragment rewritten into a new segment).
    fn finish_record_retrying(&mut self, metadata: &[u8], sync: bool) -> Result<Trailer, StoreError> {
        loop {
            match self.finish_record(metadata, sync) {
                Ok(t) => return Ok(t),
                Err(e) => self.on_write_error(e)?,
            }
        }
    }

    /// Append the frame index, meta block and trailer, patch the header,
    /// and, with `sync`, make the record durable.
    fn finish_record(&mut self, metadata: &[u8], sync: bool) -> io::Result<Trailer> {
        let open = self.open.as_ref().expect("a fragment is open");
        let index = open.index.as_bytes();
        let meta = segment::encode_meta(&RecordMeta {
            track_set_id: self.track_set,
            seq: open.seq,
            metadata: metadata.to_vec(),
        });
        let mut h = crc32fast::Hasher::new();
        h.update(index);
        h.update(&meta);
        let trailer = Trailer {
            id: open.id,
            start_ns: open.start.as_nanos(),
            payload_len: open.bytes,
            index_len: index.len() as u32,
            meta_len: meta.len() as u32,
            payload_crc: open.crc.clone().finalize(),
            index_crc: h.finalize(),
        };
        let offset = open.offset;
        let mut tail = Vec::with_capacity(index.len() + meta.len() + segment::TRAILER_LEN);
        tail.extend_from_slice(index);
        tail.extend_from_slice(&meta);
        tail.extend_from_slice(&trailer.encode());
        self.append(Bytes::from(tail))?;
        self.flush_pending()?;
        let seg = self.seg.as_mut().expect("a fragment is open");
        seg.file
            .write_at(offset, &segment::encode_header(trailer.record_len()))?;
        if sync {
            self.sync_segment()?;
        }
        Ok(trailer)
    }

    /// fdatasync the segment (and fsync its directory when it is new).
    fn sync_segment(&mut self) -> io::Result<()> {
        let inner = &self.store.inner;
        let seg = self.seg.as_mut().expect("a segment is open");
        let t0 = Instant::now();
        seg.file.sync_data()?;
        inner.counters.fsync(t0.elapsed());
        if !seg.dir_synced {
            inner
                .fs
                .sync_dir(seg.path.parent().expect("segments live in a directory"))?;
            seg.dir_synced = true;
        }
        Ok(())
    }

    /// Index a durable record.
    fn commit_row(&mut self, f: Unsynced) -> Result<FragmentMeta, StoreError> {
        let Unsynced {
            open,
            trailer,
            metadata,
            summary_metadata,
        } = f;
        let seg = self.seg.as_ref().expect("a record is in a segment");
        let inner = &self.store.inner;
        let written = inner.clock.now();
        let record_len = trailer.record_len();
        let new = NewFragment {
            id: open.id,
            stream_id: self.stream.id,
            track_set_id: self.track_set,
            seq: open.seq,
            start: open.start,
            end: open.end,
            last_pts: open.last_pts,
            offset: open.offset,
            payload_len: open.bytes,
            record_len,
            crc: trailer.payload_crc,
            frames: open.frames,
            track_frames: open.track_frames,
            frame_index: open.index.as_bytes(),
            metadata: &metadata,
            written,
        };
        let seg_ref = match seg.row {
            Some(id) => SegmentRef::Existing(id),
            None => SegmentRef::New {
                path: &seg.rel,
                start: seg.start,
            },
        };
        let mut result = index::commit_fragment(&mut lock(&inner.db), seg_ref, &new);
        if matches!(&result, Err(e) if e.is_disk_full()) && inner.cfg.on_full == OnFull::DeleteOldestMedia {
            inner.counters.disk_full_errors.fetch_add(1, Ordering::Relaxed);
            warn!(stream = %self.stream.name, "index is out of space; deleting oldest media and retrying");
            let _ = retention::free_oldest(&self.store, DeleteReason::DiskFull, 1);
            result = index::commit_fragment(&mut lock(&inner.db), seg_ref, &new);
        }
        let seg_id = result?;
        let seg = self.seg.as_mut().expect("a record is in a segment");
        seg.row = Some(seg_id);
        seg.committed_len = open.offset + record_len;
        seg.finished_len = seg.finished_len.max(seg.committed_len);
        self.largest_record = self.largest_record.max(record_len);
        let c = &inner.counters;
        c.bytes_written.fetch_add(open.bytes, Ordering::Relaxed);
        c.fragments_written.fetch_add(1, Ordering::Relaxed);
        c.frames_written.fetch_add(u64::from(open.frames), Ordering::Relaxed);
        c.disk_bytes.fetch_add(record_len, Ordering::Relaxed);
        Ok(FragmentMeta {
            id: FragmentId(open.id),
            stream: self.stream.name.clone(),
            seq: open.seq,
            start: open.start,
            end: open.end,
            last_pts: open.last_pts,
            frames: open.frames,
            bytes: open.bytes,
            track_frames: open.track_frames,
            metadata: summary_metadata,
            written,
            upload: UploadState::Pending,
            kvs_fragment_number: None,
        })
    }

    /// Publish on the live tail, or hold back behind unsynced records.
    fn publish(&mut self, e: LiveEvent) {
        match self.held.as_mut() {
            Some(held) => held.push(Held::Event(e)),
            None => self.stream.live.publish(e),
        }
    }

    // ---- failures ----

    /// A write of the open fragment failed. ENOSPC under DELETE_OLDEST_MEDIA:
    /// make room and rewrite the fragment from memory (`Ok`: carry on).
    /// Otherwise the fragment is dropped and the error returned.
    fn on_write_error(&mut self, e: io::Error) -> Result<(), StoreError> {
        let inner = self.store.inner.clone();
        if !self.unsynced.is_empty() {
            if is_enospc(&e) {
                // Complete records: durable before room is made.
                self.sync_unsynced()?;
            } else {
                self.drop_unsynced();
            }
        }
        if !is_enospc(&e) {
            // After a failed write or fdatasync the file's state is unknown:
            // drop the fragment and start a fresh segment (fsyncgate).
            let err = StoreError::io(format!("cannot write to a segment of stream {:?}", self.stream.name), e);
            self.abort();
            self.close_segment();
            return Err(self.fail(err));
        }
        inner.counters.disk_full_errors.fetch_add(1, Ordering::Relaxed);
        let path = self
            .seg
            .as_ref()
            .map(|s| s.path.display().to_string())
            .unwrap_or_default();
        let detail = format!("{path}: {e}");
        if inner.cfg.on_full == OnFull::DeleteOldestMedia {
            // Read back before the segment is cut (and maybe deleted).
            let payload = match self.payload_so_far() {
                Ok(p) => p,
                Err(e) => {
                    let err = StoreError::io(
                        format!("cannot read back a segment of stream {:?}", self.stream.name),
                        e,
                    );
                    self.abort();
                    self.close_segment();
                    return Err(self.fail(err));
                }
            };
            for attempt in 1..=DISK_FULL_RETRIES {
                warn!(stream = %self.stream.name, attempt, error = %detail, "disk full while writing; deleting oldest media");
                // Give up the current segment so it can be deleted too, and
                // rewrite the fragment into a new one.
                self.truncate_to_finished();
                self.close_segment();
                let need = inner.cfg.min_free_mb * MB + self.headroom();
                let deleted = retention::free_oldest(&self.store, DeleteReason::DiskFull, need).unwrap_or_else(|e| {
                    warn!(stream = %self.stream.name, error = %e, "cannot delete media to make room");
                    0
                });
                if deleted == 0 {
                    break;
                }
                match self.rewrite_open(&payload) {
                    Ok(()) => return Ok(()),
                    Err(e) if is_enospc(&e) => {
                        inner.counters.disk_full_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    Err(e) => {
                        let err =
                            StoreError::io(format!("cannot write to a segment of stream {:?}", self.stream.name), e);
                        self.abort();
                        self.close_segment();
                        return Err(self.fail(err));
                    }
                }
            }
        }
        self.abort();
        Err(self.deny(DenyReason::DiskFull { detail }))
    }

    /// The open fragment's frame bytes so far: what was handed to the
    /// segment file, read back, then what is still pending; without the
    /// record header, and without the index and trailer a failed
    /// `finish_record` may have left pending.
    fn payload_so_far(&self) -> io::Result<Vec<Bytes>> {
        let Some(open) = self.open.as_ref() else {
            return Ok(Vec::new());
        };
        let Some(seg) = self.seg.as_ref() else {
            return Err(io::Error::other("the open fragment has no segment to read back"));
        };
        let mut chunks = Vec::new();
        if seg.written_len > open.offset {
            let len = usize::try_from(seg.written_len - open.offset).map_err(io::Error::other)?;
            let data = self.store.inner.fs.read_at(&seg.path, open.offset, len)?;
            chunks.push(Bytes::from(data));
        }
        chunks.extend(self.pending.iter().cloned());
        // Skip the header, keep exactly the frames' bytes.
        let (mut skip, mut keep) = (segment::HEADER_LEN, open.bytes as usize);
        let mut out = Vec::new();
        for c in chunks {
            if skip >= c.len() {
                skip -= c.len();
                continue;
            }
            let part = c.slice(skip..c.len().min(skip + keep));
            skip = 0;
            keep -= part.len();
            out.push(part);
            if keep == 0 {
                break;
            }
        }
        if keep > 0 {
            return Err(io::Error::other(format!(
                "{} bytes of the open fragment are neither in the segment nor pending",
                keep
            )));
        }
        // After a failed fdatasync the page cache may no longer hold what
        // was written (fsyncgate): store the fragment only if what came back
        // is what the checksum and index describe.
        let mut crc = crc32fast::Hasher::new();
        out.iter().for_each(|c| crc.update(c));
        if crc.finalize() != open.crc.clone().finalize() {
            return Err(io::Error::other(
                "the open fragment read back from its segment does not match its checksum",
            ));
        }
        Ok(out)
    }

    /// Write the open fragment again, from its first frame, into a new
    /// segment named after it.
    fn rewrite_open(&mut self, payload: &[Bytes]) -> io::Result<()> {
        let (id, start) = {
            let open = self.open.as_ref().expect("a fragment is open");
            (open.id, open.start)
        };
        self.new_segment(id, start)?;
        self.append(Bytes::copy_from_slice(&segment::encode_header(0)))?;
        for chunk in payload {
            self.append(chunk.clone())?;
        }
        self.open.as_mut().expect("a fragment is open").offset = 0;
        Ok(())
    }

    /// Cut the segment after its last finished record.
    fn truncate_to_finished(&mut self) {
        self.discard_pending();
        if let Some(seg) = self.seg.as_mut() {
            match seg.file.set_len(seg.finished_len) {
                Ok(()) => seg.written_len = seg.finished_len,
                Err(e) => {
                    warn!(path = %seg.path.display(), error = %e, "cannot truncate a failed write; starting a new segment");
                    self.close_segment();
                }
            }
        }
    }

    /// Drop the open fragment: cut it from the segment, tell live readers.
    fn abort(&mut self) {
        if let Some(open) = self.open.take() {
            self.truncate_to_finished();
            self.store
                .inner
                .counters
                .fragments_aborted
                .fetch_add(1, Ordering::Relaxed);
            self.publish(LiveEvent::Abort(FragmentId(open.id)));
        }
    }

    /// Refuse the current fragment: drop its events until the next Start.
    fn deny(&mut self, reason: DenyReason) -> StoreError {
        self.abort();
        self.dropping = true;
        self.store
            .inner
            .counters
            .fragments_denied
            .fetch_add(1, Ordering::Relaxed);
        let now = self.store.inner.clock.now();
        {
            let mut rt = lock(&self.stream.rt);
            let same = matches!(&rt.state, StreamState::Denied { reason: r, .. } if std::mem::discriminant(r) == std::mem::discriminant(&reason));
            if !same {
                warn!(stream = %self.stream.name, %reason, "recording stopped: new media refused");
                rt.state = StreamState::Denied {
                    reason: reason.clone(),
                    since: now,
                };
            }
            rt.last_error = Some(reason.to_string());
        }
        StoreError::Denied {
            stream: self.stream.name.clone(),
            reason,
        }
    }

    /// Note an error on the stream and hand it back.
    fn fail(&mut self, e: StoreError) -> StoreError {
        self.abort();
        warn!(stream = %self.stream.name, error = %e, "fragment dropped");
        lock(&self.stream.rt).last_error = Some(e.to_string());
        e
    }

    fn set_state(&self, s: StreamState) {
        let mut rt = lock(&self.stream.rt);
        if matches!(rt.state, StreamState::Denied { .. }) && s == StreamState::Recording {
            info!(stream = %self.stream.name, "recording resumed");
        }
        rt.state = s;
    }

    fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.abort();
        self.close_segment();
        let mut rt = lock(&self.stream.rt);
        rt.writer = false;
        rt.state = StreamState::Idle;
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}
