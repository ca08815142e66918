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
        let offset = self.seg.as_ref().map_or(0, |s| s.committed_len);
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
        self.stream.live.publish(LiveEvent::Start(Arc::new(FragmentHead {
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
        seg.committed_len > 0
            && (requested
                || seg.committed_len >= cfg.segment_max_bytes
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
        self.stream.live.publish(LiveEvent::Frame(f.clone()));
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
        let metadata = tracks::encode_metadata(&summary.metadata);
        let trailer = loop {
            match self.finish_record(&metadata) {
                Ok(t) => break t,
                Err(e) => self.on_write_error(e)?,
            }
        };
        self.commit(trailer, summary, &metadata).map(Some)
    }

    /// Append the frame index, meta block and trailer, patch the header,
    /// make the record durable.
    fn finish_record(&mut self, metadata: &[u8]) -> io::Result<Trailer> {
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
        let inner = &self.store.inner;
        let seg = self.seg.as_mut().expect("a fragment is open");
        seg.file
            .write_at(offset, &segment::encode_header(trailer.record_len()))?;
        let t0 = Instant::now();
        seg.file.sync_data()?;
        inner.counters.fsync(t0.elapsed());
        if !seg.dir_synced {
            inner
                .fs
                .sync_dir(seg.path.parent().expect("segments live in a directory"))?;
            seg.dir_synced = true;
        }
        Ok(trailer)
    }

    fn commit(
        &mut self,
        trailer: Trailer,
        summary: &FragmentSummary,
        metadata: &[u8],
    ) -> Result<FragmentMeta, StoreError> {
        let open = self.open.as_ref().expect("a fragment is open");
        let seg = self.seg.as_ref().expect("a fragment is open");
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
            metadata,
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
        let seg_id = match result {
            Ok(id) => id,
            Err(e) => {
                let e = self.fail(e);
                return Err(e);
            }
        };
        let open = self.open.take().expect("a fragment is open");
        let seg = self.seg.as_mut().expect("a fragment is open");
        seg.row = Some(seg_id);
        seg.committed_len = open.offset + record_len;
        seg.written_len = seg.committed_len;
        self.largest_record = self.largest_record.max(record_len);
        let c = &inner.counters;
        c.bytes_written.fetch_add(open.bytes, Ordering::Relaxed);
        c.fragments_written.fetch_add(1, Ordering::Relaxed);
        c.frames_written.fetch_add(u64::from(open.frames), Ordering::Relaxed);
        c.disk_bytes.fetch_add(record_len, Ordering::Relaxed);
        let meta = FragmentMeta {
            id: FragmentId(open.id),
            stream: self.stream.name.clone(),
            seq: open.seq,
            start: open.start,
            end: open.end,
            last_pts: open.last_pts,
            frames: open.frames,
            bytes: open.bytes,
            track_frames: open.track_frames,
            metadata: summary.metadata.clone(),
            written,
            upload: UploadState::Pending,
            kvs_fragment_number: None,
        };
        self.stream.live.publish(LiveEvent::End(Arc::new(meta.clone())));
        if let Err(e) = retention::after_append(&self.store) {
            warn!(stream = %self.stream.name, error = %e, "retention after a fragment failed");
        }
        Ok(meta)
    }

    // ---- failures ----

    /// A write of the open fragment failed. ENOSPC under DELETE_OLDEST_MEDIA:
    /// make room and rewrite the fragment from memory (`Ok`: carry on).
    /// Otherwise the fragment is dropped and the error returned.
    fn on_write_error(&mut self, e: io::Error) -> Result<(), StoreError> {
        let inner = self.store.inner.clone();
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
                self.truncate_to_committed();
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

    fn truncate_to_committed(&mut self) {
        self.discard_pending();
        if let Some(seg) = self.seg.as_mut() {
            match seg.file.set_len(seg.committed_len) {
                Ok(()) => seg.written_len = seg.committed_len,
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
            self.truncate_to_committed();
            self.store
                .inner
                .counters
                .fragments_aborted
                .fetch_add(1, Ordering::Relaxed);
            self.stream.live.publish(LiveEvent::Abort(FragmentId(open.id)));
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
