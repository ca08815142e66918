//! Counters for metrics: plain atomics inside, plain structs out, so the
//! agent can publish them however it likes (Prometheus, `/api/streams`).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::DeleteReason;

/// Upper bounds of the fsync latency buckets.
pub const FSYNC_BUCKETS: [Duration; 12] = [
    Duration::from_millis(1),
    Duration::from_millis(2),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(20),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// Counts by deletion reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByReason {
    /// Older than `max_age_hours`.
    pub age: u64,
    /// Over `max_size_mb` (DELETE_OLDEST_MEDIA).
    pub max_size: u64,
    /// Free disk under `min_free_mb` (DELETE_OLDEST_MEDIA).
    pub min_free: u64,
    /// The disk filled up while writing (DELETE_OLDEST_MEDIA).
    pub disk_full: u64,
    /// Persisted by KVS with `delete_after_upload`.
    pub after_upload: u64,
}

impl ByReason {
    /// The count for one reason.
    pub fn get(&self, r: DeleteReason) -> u64 {
        match r {
            DeleteReason::Age => self.age,
            DeleteReason::MaxSize => self.max_size,
            DeleteReason::MinFree => self.min_free,
            DeleteReason::DiskFull => self.disk_full,
            DeleteReason::AfterUpload => self.after_upload,
        }
    }

    /// All reasons added up.
    pub fn total(&self) -> u64 {
        self.age + self.max_size + self.min_free + self.disk_full + self.after_upload
    }
}

/// fdatasync latency of segment files (one per fragment).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsyncStats {
    /// Calls.
    pub count: u64,
    /// Time spent in all of them.
    pub total: Duration,
    /// The slowest.
    pub max: Duration,
    /// Calls per bucket of [`FSYNC_BUCKETS`] (not cumulative), plus one
    /// last bucket for slower calls.
    pub buckets: Vec<u64>,
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Payload bytes of committed fragments.
    pub bytes_written: u64,
    /// Fragments committed.
    pub fragments_written: u64,
    /// Frames in committed fragments.
    pub frames_written: u64,
    /// Fragments dropped while open (disk full, write errors, writer closed).
    pub fragments_aborted: u64,
    /// Fragments refused because the stream was denied.
    pub fragments_denied: u64,
    /// Fragments deleted, by reason.
    pub deleted_fragments: ByReason,
    /// Payload bytes deleted, by reason.
    pub deleted_bytes: ByReason,
    /// Fragments deleted before KVS persisted them (only ever by an on-full policy).
    pub deleted_not_uploaded: u64,
    /// ENOSPC (or SQLITE_FULL) seen while writing.
    pub disk_full_errors: u64,
    /// Times a cursor fell out of the live tail and went back to disk.
    pub cursor_lags: u64,
    /// Segment bytes on disk.
    pub disk_bytes: u64,
    /// Free bytes on the store's file system, when it could be measured.
    pub free_bytes: Option<u64>,
    /// fdatasync latency.
    pub fsync: FsyncStats,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub bytes_written: AtomicU64,
    pub fragments_written: AtomicU64,
    pub frames_written: AtomicU64,
    pub fragments_aborted: AtomicU64,
    pub fragments_denied: AtomicU64,
    deleted_fragments: [AtomicU64; 5],
    deleted_bytes: [AtomicU64; 5],
    pub deleted_not_uploaded: AtomicU64,
    pub disk_full_errors: AtomicU64,
    pub cursor_lags: AtomicU64,
    pub disk_bytes: AtomicU64,
    fsync_count: AtomicU64,
    fsync_total_ns: AtomicU64,
    fsync_max_ns: AtomicU64,
    fsync_buckets: [AtomicU64; FSYNC_BUCKETS.len() + 1],
}

fn slot(r: DeleteReason) -> usize {
    match r {
        DeleteReason::Age => 0,
        DeleteReason::MaxSize => 1,
        DeleteReason::MinFree => 2,
        DeleteReason::DiskFull => 3,
        DeleteReason::AfterUpload => 4,
    }
}

impl Counters {
    pub fn deleted(&self, r: DeleteReason, fragments: u64, bytes: u64) {
        self.deleted_fragments[slot(r)].fetch_add(fragments, Relaxed);
        self.deleted_bytes[slot(r)].fetch_add(bytes, Relaxed);
    }

    pub fn fsync(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.fsync_count.fetch_add(1, Relaxed);
        self.fsync_total_ns.fetch_add(ns, Relaxed);
        self.fsync_max_ns.fetch_max(ns, Relaxed);
        let b = FSYNC_BUCKETS
            .iter()
            .position(|&u| d <= u)
            .unwrap_or(FSYNC_BUCKETS.len());
        self.fsync_buckets[b].fetch_add(1, Relaxed);
    }

    pub fn snapshot(&self, free_bytes: Option<u64>) -> StoreStats {
        let by = |a: &[AtomicU64; 5]| ByReason {
            age: a[0].load(Relaxed),
            max_size: a[1].load(Relaxed),
            min_free: a[2].load(Relaxed),
            disk_full: a[3].load(Relaxed),
            after_upload: a[4].load(Relaxed),
        };
        StoreStats {
            bytes_written: self.bytes_written.load(Relaxed),
            fragments_written: self.fragments_written.load(Relaxed),
            frames_written: self.frames_written.load(Relaxed),
            fragments_aborted: self.fragments_aborted.load(Relaxed),
            fragments_denied: self.fragments_denied.load(Relaxed),
            deleted_fragments: by(&self.deleted_fragments),
            deleted_bytes: by(&self.deleted_bytes),
            deleted_not_uploaded: self.deleted_not_uploaded.load(Relaxed),
            disk_full_errors: self.disk_full_errors.load(Relaxed),
            cursor_lags: self.cursor_lags.load(Relaxed),
            disk_bytes: self.disk_bytes.load(Relaxed),
            free_bytes,
            fsync: FsyncStats {
                count: self.fsync_count.load(Relaxed),
                total: Duration::from_nanos(self.fsync_total_ns.load(Relaxed)),
                max: Duration::from_nanos(self.fsync_max_ns.load(Relaxed)),
                buckets: self.fsync_buckets.iter().map(|b| b.load(Relaxed)).collect(),
            },
        }
    }
}
