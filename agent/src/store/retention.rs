//! Retention, after the KVS Edge Agent: maximum age, maximum size with an
//! on-full strategy, delete-after-upload, plus a free-disk valve.
//!
//! - **Age** (`max_age_hours`): fragments that ended longer ago go, except
//!   on streams that upload, where only fragments KVS has persisted (or the
//!   uploader skipped) go: media not yet uploaded is never deleted by age.
//! - **Delete after upload**: persisted fragments go at once.
//! - **Size** (`max_size_mb`) and **free disk** (`min_free_mb`): under
//!   DELETE_OLDEST_MEDIA the oldest segments go, those fully uploaded first,
//!   then (logged at warn and counted) those holding media not yet
//!   uploaded. Under DENY_NEW_MEDIA nothing is deleted for space; writers
//!   refuse new fragments until age or upload deletion makes room.
//! - **Disk full** (ENOSPC while writing): as for size, reason `disk_full`.
//!
//! Rows are deleted before files; a file left behind by a crash is removed
//! at the next start. Space is reclaimed a segment at a time: a segment goes
//! when its last fragment does. A segment a writer is appending to is never
//! deleted; when only such segments are left, the writer is asked to start
//! a new one so the old one can go next time.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::index::{self, Doomed, SegmentRow};
use super::{lock, ByReason, DeleteReason, Inner, OnFull, Store, StoreError, MB};

/// What one retention pass deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionReport {
    /// Fragments deleted, by reason.
    pub fragments: ByReason,
    /// Payload bytes deleted, by reason.
    pub bytes: ByReason,
    /// Of those, fragments not yet uploaded (on-full deletions only).
    pub not_uploaded: u64,
    /// Segment files removed.
    pub segments_removed: u64,
    /// Segment bytes freed on disk.
    pub freed_bytes: u64,
    /// Writers asked to start a new segment so theirs can be deleted.
    pub rolls_requested: u64,
}

impl RetentionReport {
    /// All fragments deleted.
    pub fn fragments(&self) -> u64 {
        self.fragments.total()
    }

    fn add(&mut self, reason: DeleteReason, fragments: u64, bytes: u64) {
        let (f, b) = match reason {
            DeleteReason::Age => (&mut self.fragments.age, &mut self.bytes.age),
            DeleteReason::MaxSize => (&mut self.fragments.max_size, &mut self.bytes.max_size),
            DeleteReason::MinFree => (&mut self.fragments.min_free, &mut self.bytes.min_free),
            DeleteReason::DiskFull => (&mut self.fragments.disk_full, &mut self.bytes.disk_full),
            DeleteReason::AfterUpload => (&mut self.fragments.after_upload, &mut self.bytes.after_upload),
        };
        *f += fragments;
        *b += bytes;
    }
}

const BATCH: usize = 512;

/// How often a writer runs a full pass (age, delete-after-upload) on its
/// own; size and free-disk limits are checked after every fragment.
const PERIODIC: Duration = Duration::from_secs(10);

/// After a fragment is committed: a full pass when a limit is crossed or
/// the periodic one is due, nothing otherwise (a pass costs a few queries;
/// a fragment's commit costs about as much).
pub(crate) fn after_append(store: &Store) -> Result<Option<RetentionReport>, StoreError> {
    let inner = &*store.inner;
    let cfg = &inner.cfg;
    let delete = cfg.on_full == OnFull::DeleteOldestMedia;
    let over_cap = delete && cfg.max_size_mb > 0 && inner.counters.disk_bytes.load(Relaxed) > cfg.max_size_mb * MB;
    let low_free =
        delete && cfg.min_free_mb > 0 && inner.fs.free_bytes(&cfg.path).is_ok_and(|f| f < cfg.min_free_mb * MB);
    let due = lock(&inner.last_retention).is_none_or(|t| t.elapsed() >= PERIODIC);
    if over_cap || low_free || due {
        enforce(store).map(Some)
    } else {
        Ok(None)
    }
}

/// One full retention pass.
pub(crate) fn enforce(store: &Store) -> Result<RetentionReport, StoreError> {
    let inner = &*store.inner;
    let _one_at_a_time = lock(&inner.retention);
    *lock(&inner.last_retention) = Some(Instant::now());
    let cfg = &inner.cfg;
    let mut rep = RetentionReport::default();
    let mut dirs = BTreeSet::new();

    if cfg.max_age_hours > 0 {
        let age = Duration::from_secs(u64::from(cfg.max_age_hours) * 3600);
        if let Some(cutoff) = inner.clock.now().checked_sub(age) {
            loop {
                let doomed = index::aged_fragments(&lock(&inner.db), cutoff, BATCH)?;
                delete_fragments(inner, &doomed, DeleteReason::Age, &mut rep)?;
                if doomed.len() < BATCH {
                    break;
                }
            }
        }
    }
    if cfg.delete_after_upload {
        loop {
            let doomed = index::persisted_fragments(&lock(&inner.db), BATCH)?;
            delete_fragments(inner, &doomed, DeleteReason::AfterUpload, &mut rep)?;
            if doomed.len() < BATCH {
                break;
            }
        }
    }
    // Segments whose fragments are all gone.
    let active = lock(&inner.active_segments).clone();
    let segs = index::segments(&lock(&inner.db))?;
    for seg in segs {
        if seg.fragments == 0 && !active.contains(&seg.path) {
            remove_segment(inner, &seg, DeleteReason::Age, &mut rep, &mut dirs)?;
        }
    }
    if cfg.on_full == OnFull::DeleteOldestMedia {
        if cfg.max_size_mb > 0 {
            let cap = cfg.max_size_mb * MB;
            delete_oldest(inner, DeleteReason::MaxSize, 0, &mut rep, &mut dirs, &|i: &Inner| {
                i.counters.disk_bytes.load(Relaxed) <= cap
            })?;
        }
        if cfg.min_free_mb > 0 {
            let min = cfg.min_free_mb * MB;
            delete_oldest(inner, DeleteReason::MinFree, 0, &mut rep, &mut dirs, &|i: &Inner| {
                i.fs.free_bytes(&i.cfg.path).map_or(true, |f| f >= min)
            })?;
        }
    }
    sync_dirs(inner, &dirs);
    if rep.fragments() > 0 || rep.segments_removed > 0 {
        info!(fragments = rep.fragments(), segments = rep.segments_removed, freed_bytes = rep.freed_bytes,
            not_uploaded = rep.not_uploaded, by_reason = ?rep.fragments, "retention deleted media");
    }
    Ok(rep)
}

/// Delete oldest segments (at least one) until `need` bytes are free on
/// disk, whatever the on-full policy says: a writer calls this after ENOSPC
/// under DELETE_OLDEST_MEDIA. Returns the segments removed.
pub(crate) fn free_oldest(store: &Store, reason: DeleteReason, need: u64) -> Result<u64, StoreError> {
    let inner = &*store.inner;
    let _one_at_a_time = lock(&inner.retention);
    let mut rep = RetentionReport::default();
    let mut dirs = BTreeSet::new();
    let n = delete_oldest(inner, reason, 1, &mut rep, &mut dirs, &|i: &Inner| {
        i.fs.free_bytes(&i.cfg.path).is_ok_and(|f| f >= need)
    })?;
    sync_dirs(inner, &dirs);
    Ok(n)
}

fn delete_fragments(
    inner: &Inner,
    doomed: &[Doomed],
    reason: DeleteReason,
    rep: &mut RetentionReport,
) -> Result<(), StoreError> {
    if doomed.is_empty() {
        return Ok(());
    }
    let ids: Vec<u64> = doomed.iter().map(|d| d.id).collect();
    index::delete_fragments(&mut lock(&inner.db), &ids)?;
    let bytes: u64 = doomed.iter().map(|d| d.bytes).sum();
    inner.counters.deleted(reason, doomed.len() as u64, bytes);
    rep.add(reason, doomed.len() as u64, bytes);
    Ok(())
}

/// Delete the oldest segments not being written, fully uploaded ones first,
/// until `done` (and at least `min` of them). When only segments being
/// written are left, ask their writers to roll.
fn delete_oldest(
    inner: &Inner,
    reason: DeleteReason,
    min: u64,
    rep: &mut RetentionReport,
    dirs: &mut BTreeSet<PathBuf>,
    done: &dyn Fn(&Inner) -> bool,
) -> Result<u64, StoreError> {
    if min == 0 && done(inner) {
        return Ok(0);
    }
    let active: HashSet<String> = lock(&inner.active_segments).clone();
    let segs = index::segments(&lock(&inner.db))?;
    let (uploaded, rest): (Vec<&SegmentRow>, Vec<&SegmentRow>) = segs
        .iter()
        .filter(|s| !active.contains(&s.path))
        .partition(|s| s.not_uploaded == 0);
    let mut n = 0;
    for seg in uploaded.into_iter().chain(rest) {
        if n >= min && done(inner) {
            return Ok(n);
        }
        remove_segment(inner, seg, reason, rep, dirs)?;
        n += 1;
    }
    if n >= min && done(inner) {
        return Ok(n);
    }
    // What is left is being written: ask those writers for a new segment.
    let streams = lock(&inner.streams);
    for seg in segs.iter().filter(|s| active.contains(&s.path) && s.fragments > 0) {
        if let Some(s) = streams.values().find(|s| s.id == seg.stream_id) {
            let mut rt = lock(&s.rt);
            if !rt.roll_requested {
                rt.roll_requested = true;
                rep.rolls_requested += 1;
            }
        }
    }
    Ok(n)
}

fn remove_segment(
    inner: &Inner,
    seg: &SegmentRow,
    reason: DeleteReason,
    rep: &mut RetentionReport,
    dirs: &mut BTreeSet<PathBuf>,
) -> Result<(), StoreError> {
    // Rows first: a crash before the file goes leaves an orphan that the
    // next start removes, never a row without its bytes.
    index::delete_segment(&mut lock(&inner.db), seg.id, &seg.path)?;
    let path = inner.path(&seg.path);
    match inner.fs.remove(&path) {
        Ok(()) => index::clear_pending(&lock(&inner.db), std::slice::from_ref(&seg.path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            index::clear_pending(&lock(&inner.db), std::slice::from_ref(&seg.path))?
        }
        Err(e) => warn!(path = %path.display(), error = %e, "cannot remove a deleted segment; the next start will"),
    }
    if let Some(dir) = path.parent() {
        dirs.insert(dir.to_owned());
    }
    let _ = inner
        .counters
        .disk_bytes
        .fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_sub(seg.len)));
    rep.segments_removed += 1;
    rep.freed_bytes += seg.len;
    if seg.fragments > 0 {
        inner.counters.deleted(reason, seg.fragments, seg.bytes);
        rep.add(reason, seg.fragments, seg.bytes);
    }
    if seg.not_uploaded > 0 {
        let stream = lock(&inner.streams)
            .values()
            .find(|s| s.id == seg.stream_id)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        warn!(%stream, fragments = seg.not_uploaded, %reason, segment = %seg.path,
            "deleting media not yet uploaded to make room (on_full = DELETE_OLDEST_MEDIA)");
        inner.counters.deleted_not_uploaded.fetch_add(seg.not_uploaded, Relaxed);
        rep.not_uploaded += seg.not_uploaded;
    }
    Ok(())
}

fn sync_dirs(inner: &Inner, dirs: &BTreeSet<PathBuf>) {
    for d in dirs {
        if let Err(e) = inner.fs.sync_dir(d) {
            warn!(dir = %d.display(), error = %e, "cannot sync a directory after deletions");
        }
    }
}
