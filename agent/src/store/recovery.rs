//! Start-up recovery, and a full consistency check.
//!
//! A fragment is durable once its segment record is fdatasync'ed; its index
//! row commits right after, without an fsync of its own (see index.rs). What
//! a crash or power cut can leave, and what recovery does:
//!
//! - segment files whose deletion was committed but not carried out
//!   (`pending_deletion`): removed;
//! - durable records after the last indexed one of a segment (the commit
//!   was lost with the power): re-indexed from the record itself;
//! - a segment file no row references: its durable records are indexed as
//!   a new segment of the stream whose directory holds it; with none, the
//!   file (a fragment that never finished) is removed;
//! - bytes after the last durable record (the fragment that was open):
//!   cut off;
//! - a segment row whose fragments are all gone: row and file removed.
//!
//! Indexed records whose bytes are missing or damaged cannot happen while
//! fdatasync keeps its promise; if they do (a lying disk, a file damaged by
//! hand) they are dropped, logged at error, and reported.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use fragmenter::Timestamp;
use rusqlite::Connection;
use tracing::error;

use super::error::StoreError;
use super::frame_index;
use super::fs::FileLayer;
use super::index::{self, NewFragment, RecordPlace, SegmentRef};
use super::segment::{self, Trailer, HEADER_LEN, TRAILER_LEN};
use super::{lock, rel_path, FragmentId, Store, VerifyReport};

/// What start-up recovery did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments looked at.
    pub segments_checked: u64,
    /// Segment deletions that were committed but not finished, finished.
    pub deletions_finished: u64,
    /// Durable fragments whose index commit was lost, indexed again.
    pub reindexed: Vec<FragmentId>,
    /// Segment files found without a row and indexed from their records.
    pub adopted_segments: u64,
    /// Segment files cut back: (file, length found, length kept).
    pub truncated: Vec<(PathBuf, u64, u64)>,
    /// Bytes cut from segment tails in all.
    pub bytes_truncated: u64,
    /// Files no row referenced and holding no complete record, removed.
    pub orphan_files_removed: Vec<PathBuf>,
    /// Segment rows without fragments, removed with their files.
    pub empty_segments_removed: u64,
    /// Indexed fragments whose bytes were missing or damaged (dropped).
    pub lost_fragments: Vec<FragmentId>,
}

impl RecoveryReport {
    /// Nothing needed doing (the last run stopped cleanly).
    pub fn is_clean(&self) -> bool {
        self.deletions_finished == 0
            && self.reindexed.is_empty()
            && self.adopted_segments == 0
            && self.truncated.is_empty()
            && self.orphan_files_removed.is_empty()
            && self.empty_segments_removed == 0
            && self.lost_fragments.is_empty()
    }
}

fn io_err(what: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::io(format!("recovery: cannot {what} {}", path.display()), e)
}

/// Check a committed record's header and trailer against its row.
fn record_ok(fs: &dyn FileLayer, path: &Path, r: &RecordPlace) -> Result<(), String> {
    let h = fs
        .read_at(path, r.offset, HEADER_LEN)
        .map_err(|e| format!("cannot read header at byte {}: {e}", r.offset))?;
    let len = segment::decode_header(&h).map_err(|e| format!("byte {}: {e}", r.offset))?;
    if len != r.record_len {
        return Err(format!(
            "byte {}: header says {len} bytes, index says {}",
            r.offset, r.record_len
        ));
    }
    let at = r.offset + r.record_len - TRAILER_LEN as u64;
    let b = fs
        .read_at(path, at, TRAILER_LEN)
        .map_err(|e| format!("cannot read trailer at byte {at}: {e}"))?;
    let t = Trailer::decode(&b).map_err(|e| format!("byte {at}: {e}"))?;
    if t.id != r.id || t.payload_len != r.payload_len || t.payload_crc != r.crc || t.record_len() != r.record_len {
        return Err(format!(
            "byte {at}: trailer describes fragment {} ({} bytes, CRC {:08x}), index says fragment {} ({} bytes, CRC {:08x})",
            t.id, t.payload_len, t.payload_crc, r.id, r.payload_len, r.crc
        ));
    }
    Ok(())
}

/// A complete, intact record found by walking a segment.
struct Scanned {
    offset: u64,
    trailer: Trailer,
    index: Vec<u8>,
    meta: segment::RecordMeta,
}

/// Walk records from `pos` while they are complete and intact.
fn scan(fs: &dyn FileLayer, path: &Path, mut pos: u64, size: u64) -> Vec<Scanned> {
    let mut out = Vec::new();
    while pos + (HEADER_LEN + TRAILER_LEN) as u64 <= size {
        let Ok(h) = fs.read_at(path, pos, HEADER_LEN) else {
            break;
        };
        let Ok(len) = segment::decode_header(&h) else { break };
        if len < (HEADER_LEN + TRAILER_LEN) as u64 || pos + len > size {
            break; // 0: the record that was open
        }
        let Ok(tb) = fs.read_at(path, pos + len - TRAILER_LEN as u64, TRAILER_LEN) else {
            break;
        };
        let Ok(t) = Trailer::decode(&tb) else { break };
        if t.record_len() != len {
            break;
        }
        let body_len = (len as usize) - HEADER_LEN - TRAILER_LEN;
        let Ok(body) = fs.read_at(path, pos + HEADER_LEN as u64, body_len) else {
            break;
        };
        let (payload, rest) = body.split_at(t.payload_len as usize);
        if crc32fast::hash(payload) != t.payload_crc || crc32fast::hash(rest) != t.index_crc {
            break;
        }
        let (idx, meta) = rest.split_at(t.index_len as usize);
        let Ok(meta) = segment::decode_meta(meta) else { break };
        out.push(Scanned {
            offset: pos,
            trailer: t,
            index: idx.to_vec(),
            meta,
        });
        pos += len;
    }
    out
}

/// Index a scanned record; `false` if it cannot be (unknown track set, id
/// already taken, undecodable index): the walk stops there.
fn reindex(
    conn: &mut Connection,
    stream_id: i64,
    seg: SegmentRef,
    r: &Scanned,
    track_sets: &HashMap<i64, i64>,
    now: Timestamp,
) -> Result<Option<i64>, StoreError> {
    if track_sets.get(&r.meta.track_set_id) != Some(&stream_id) {
        return Ok(None);
    }
    if index::fragment(conn, FragmentId(r.trailer.id))?.is_some() {
        return Ok(None);
    }
    let start = Timestamp::from_nanos(r.trailer.start_ns);
    let Ok(entries) = frame_index::decode(&r.index, start) else {
        return Ok(None);
    };
    if entries.is_empty() || entries.iter().map(|e| e.len as u64).sum::<u64>() != r.trailer.payload_len {
        return Ok(None);
    }
    let mut track_frames = [0u32; 3];
    for e in &entries {
        track_frames[e.track.index()] += 1;
    }
    let f = NewFragment {
        id: r.trailer.id,
        stream_id,
        track_set_id: r.meta.track_set_id,
        seq: r.meta.seq,
        start,
        end: entries
            .iter()
            .map(|e| e.pts + e.duration)
            .max()
            .unwrap_or(start)
            .max(start),
        last_pts: entries.iter().map(|e| e.pts).max().unwrap_or(start).max(start),
        offset: r.offset,
        payload_len: r.trailer.payload_len,
        record_len: r.trailer.record_len(),
        crc: r.trailer.payload_crc,
        frames: entries.len() as u32,
        track_frames,
        frame_index: &r.index,
        metadata: &r.meta.metadata,
        written: now,
    };
    index::commit_fragment(conn, seg, &f).map(Some)
}

pub(crate) fn recover(
    root: &Path,
    conn: &mut Connection,
    fs: &dyn FileLayer,
    now: Timestamp,
) -> Result<RecoveryReport, StoreError> {
    // Recovery's changes are few and must not be lost: commit them durably.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(|e| StoreError::db("recovery", e))?;
    let r = recover_inner(root, conn, fs, now);
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(|e| StoreError::db("recovery", e))?;
    r
}

fn recover_inner(
    root: &Path,
    conn: &mut Connection,
    fs: &dyn FileLayer,
    now: Timestamp,
) -> Result<RecoveryReport, StoreError> {
    let mut rep = RecoveryReport::default();
    let mut dirs = BTreeSet::new();

    // 1. Deletions committed but not carried out.
    let pending = index::pending_deletions(conn)?;
    for p in &pending {
        let path = root.join(p);
        match fs.remove(&path) {
            Ok(()) => rep.deletions_finished += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove", &path, e)),
        }
        if let Some(d) = path.parent() {
            dirs.insert(d.to_owned());
        }
    }
    index::clear_pending(conn, &pending)?;

    let streams = index::streams(conn)?;
    let by_dir: HashMap<String, i64> = streams.iter().map(|s| (s.dir.clone(), s.id)).collect();
    let track_sets = index::track_set_owners(conn)?;

    // 2. Segments the index knows.
    let mut known = HashSet::new();
    for (seg_id, stream_id, rel, len) in index::segment_lens(conn)? {
        rep.segments_checked += 1;
        known.insert(rel.clone());
        let path = root.join(&rel);
        let size = match fs.len(&path) {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err("stat", &path, e)),
        };
        let mut records = index::segment_records(conn, seg_id)?;
        let mut lost = Vec::new();
        while let Some(r) = records.last() {
            let problem = if r.offset + r.record_len > size {
                Some(format!(
                    "record ends at byte {} but the file has {size}",
                    r.offset + r.record_len
                ))
            } else {
                record_ok(fs, &path, r).err()
            };
            match problem {
                None => break,
                Some(p) => {
                    error!(path = %path.display(), fragment = r.id, problem = %p, "indexed fragment is damaged; dropping it");
                    lost.push(r.id);
                    records.pop();
                }
            }
        }
        if !lost.is_empty() {
            index::delete_fragments(conn, &lost)?;
            rep.lost_fragments.extend(lost.iter().map(|&i| FragmentId(i)));
        }
        // What the row covers (retention may have deleted the newest records
        // and left their bytes), never past what survives.
        let last_end = records.last().map_or(0, |r| r.offset + r.record_len);
        let mut keep = if size >= len { len } else { last_end };
        let mut found = 0;
        let past = if size > keep && made_durable(&path) {
            scan(fs, &path, keep, size)
        } else {
            Vec::new()
        };
        for r in past {
            match reindex(conn, stream_id, SegmentRef::Existing(seg_id), &r, &track_sets, now)? {
                Some(_) => {
                    rep.reindexed.push(FragmentId(r.trailer.id));
                    keep = r.offset + r.trailer.record_len();
                    found += 1;
                }
                None => break,
            }
        }
        if size > keep {
            fs.truncate(&path, keep).map_err(|e| io_err("truncate", &path, e))?;
            rep.truncated.push((path.clone(), size, keep));
            rep.bytes_truncated += size - keep;
        }
        if keep != len {
            index::set_segment_len(conn, seg_id, keep)?;
        }
        if records.is_empty() && found == 0 && index::segment_records(conn, seg_id)?.is_empty() {
            // A deletion that removed the fragments but not yet the segment.
            index::delete_segment(conn, seg_id, &rel)?;
            match fs.remove(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &path, e)),
            }
            index::clear_pending(conn, std::slice::from_ref(&rel))?;
            known.remove(&rel);
            rep.empty_segments_removed += 1;
        }
    }

    // 3. Files no row references: a new segment whose first commit was lost
    //    (index its durable records), or a fragment that never finished.
    let segdir = root.join("segments");
    for dir in fs.list_dir(&segdir).map_err(|e| io_err("list", &segdir, e))? {
        let Ok(files) = fs.list_dir(&dir) else { continue };
        let stream = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| by_dir.get(n))
            .copied();
        for f in files {
            let rel = rel_path(root, &f);
            if f.extension().is_none_or(|e| e != "seg") || known.contains(&rel) {
                continue;
            }
            let size = fs.len(&f).map_err(|e| io_err("stat", &f, e))?;
            let mut seg_id = None;
            let mut keep = 0;
            if let Some(stream_id) = stream {
                let records = if made_durable(&f) {
                    scan(fs, &f, 0, size)
                } else {
                    Vec::new()
                };
                for r in records {
                    let seg = match seg_id {
                        Some(id) => SegmentRef::Existing(id),
                        None => SegmentRef::New {
                            path: &rel,
                            start: Timestamp::from_nanos(r.trailer.start_ns),
                        },
                    };
                    match reindex(conn, stream_id, seg, &r, &track_sets, now)? {
                        Some(id) => {
                            seg_id = Some(id);
                            rep.reindexed.push(FragmentId(r.trailer.id));
                            keep = r.offset + r.trailer.record_len();
                        }
                        None => break,
                    }
                }
            }
            if seg_id.is_some() {
                rep.adopted_segments += 1;
                if size > keep {
                    fs.truncate(&f, keep).map_err(|e| io_err("truncate", &f, e))?;
                    rep.truncated.push((f.clone(), size, keep));
                    rep.bytes_truncated += size - keep;
                }
            } else {
                fs.remove(&f).map_err(|e| io_err("remove", &f, e))?;
                rep.orphan_files_removed.push(f);
                dirs.insert(dir.clone());
            }
        }
    }
    for d in &dirs {
        fs.sync_dir(d).map_err(|e| io_err("sync", d, e))?;
    }
    Ok(rep)
}

pub(crate) fn verify(store: &Store) -> Result<VerifyReport, StoreError> {
    let inner = &store.inner;
    let root = &inner.cfg.path;
    let fs = inner.fs.as_ref();
    let mut rep = VerifyReport::default();
    let segs = index::segments(&lock(&inner.reader))?;
    let active = lock(&inner.active_segments).clone();
    let mut known = HashSet::new();
    for seg in &segs {
        rep.segments += 1;
        known.insert(seg.path.clone());
        let path = root.join(&seg.path);
        match fs.len(&path) {
            Ok(size) if size == seg.len => {}
            // A writer is appending the fragment after the last committed one.
            Ok(size) if size > seg.len && active.contains(&seg.path) => {}
            Ok(size) => rep.problems.push(format!(
                "{}: {size} bytes on disk, index covers {}",
                path.display(),
                seg.len
            )),
            Err(e) => rep.problems.push(format!("{}: {e}", path.display())),
        }
        let records = index::segment_records(&lock(&inner.reader), seg.id)?;
        let mut prev_end = 0;
        for r in &records {
            rep.fragments += 1;
            if r.offset < prev_end {
                rep.problems.push(format!(
                    "{}: fragment {} at byte {} overlaps the record before, which ends at {prev_end}",
                    path.display(),
                    r.id,
                    r.offset
                ));
            }
            prev_end = r.offset + r.record_len;
            if prev_end > seg.len {
                rep.problems.push(format!(
                    "{}: fragment {} ends at byte {prev_end}, past the covered {}",
                    path.display(),
                    r.id,
                    seg.len
                ));
                continue;
            }
            if let Err(p) = record_ok(fs, &path, r) {
                rep.problems.push(format!("{}: fragment {}: {p}", path.display(), r.id));
                continue;
            }
            if let Err(e) = store.read_fragment(FragmentId(r.id)) {
                rep.problems.push(format!("fragment {}: {e}", r.id));
            }
        }
        if seg.fragments > 0 {
            rep.uncovered_bytes += seg.len - prev_end.min(seg.len);
        }
    }
    for p in index::pending_deletions(&lock(&inner.reader))? {
        if fs.len(&root.join(&p)).is_ok() {
            rep.problems
                .push(format!("{p}: deleted from the index but still on disk"));
        }
    }
    let segdir = root.join("segments");
    for dir in fs.list_dir(&segdir).map_err(|e| io_err("list", &segdir, e))? {
        let Ok(files) = fs.list_dir(&dir) else { continue };
        for f in files {
            let rel = rel_path(root, &f);
            if f.extension().is_some_and(|e| e == "seg") && !known.contains(&rel) && !active.contains(&rel) {
                rep.problems
                    .push(format!("{}: no index row references it", f.display()));
            }
        }
    }
    Ok(rep)
}

/// fdatasync a segment before records found past its index are indexed:
/// group commit leaves complete records that were never synced, and a
/// process crash keeps them in the page cache, where they read back whole.
/// Indexed (and then acknowledged to a producer) they must be on the disk.
/// `false` when the sync fails: they are cut instead.
fn made_durable(path: &Path) -> bool {
    match std::fs::File::open(path).and_then(|f| f.sync_data()) {
        Ok(()) => true,
        Err(e) => {
            error!(path = %path.display(), error = %e, "cannot sync a segment before re-indexing it; its unindexed records are cut");
            false
        }
    }
}
