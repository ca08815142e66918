//! The local store: one durable log per stream, many cursors.
//!
//! Frame payloads are appended to per-stream segment files
//! (`<path>/segments/<stream>/<first fragment id>.seg`); an SQLite index in
//! WAL mode (`<path>/index.sqlite`) records streams, track sets, segments and
//! fragments (time range, place in the segment, compact frame index, upload
//! state). MKV and fMP4 are generated from these on demand.
//!
//! Durability: a fragment's record (payloads, frame index, a meta block and
//! a CRC'd trailer; see segment.rs) is written and fdatasync'ed (and, for a
//! new segment file, its directory fsync'ed) before the transaction that
//! indexes it commits. That commit skips its own fsync (`synchronous =
//! NORMAL`): the durable record is self-describing, and start-up recovery
//! re-indexes durable records whose commit a power cut lost, cuts tails no
//! complete record covers, and finishes deletions. So one fsync per fragment,
//! and a `kill -9` or a power cut loses at most the fragment that was open.
//! Streams, track sets and deletions commit with an fsync; deletion removes
//! rows first (noting the file in `pending_deletion`), then files.
//!
//! Retention follows the KVS Edge Agent (see [`retention`]); readers hold
//! [`Cursor`]s that read from disk while behind and follow the live tail once
//! caught up; capture never waits for them.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use edge_agent::store::{Store, StoreConfig, SystemClock};
//! # fn f(tracks: &[fragmenter::Track], events: Vec<fragmenter::FragmentEvent>) -> Result<(), Box<dyn std::error::Error>> {
//! let store = Store::open(StoreConfig::new("data"), Arc::new(SystemClock))?;
//! let mut w = store.open_stream("front-door", tracks, true)?;
//! for ev in &events {
//!     match w.write(ev) {
//!         Ok(Some(meta)) => tracing::debug!(id = %meta.id, "fragment stored"),
//!         Ok(None) => {}
//!         Err(e) if e.is_denied() => tracing::warn!("{e}"), // recording resumes by itself
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # Ok(()) }
//! ```

#![allow(dead_code)]

mod archive;
mod clock;
mod cursor;
mod error;
mod frame_index;
mod fs;
mod index;
mod live;
mod recovery;
pub mod retention;
mod segment;
mod stats;
mod tracks;
mod writer;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use fragmenter::fragment::Metadata;
use fragmenter::{Frame, Timestamp, Track};
use rusqlite::Connection;

// The API the agent builds on; not all of it is wired yet.
#[allow(unused_imports)]
pub use clock::{Clock, SystemClock, TestClock};
#[allow(unused_imports)]
pub use cursor::{Cursor, CursorFrom, CursorItem};
pub use error::StoreError;
pub use fs::{AppendFile, FileLayer, RealFs};
#[cfg(test)]
pub use fs::{BudgetFs, SharedBudgetFs};
pub use recovery::RecoveryReport;
pub use retention::RetentionReport;
#[allow(unused_imports)]
pub use stats::{ByReason, FsyncStats, StoreStats, FSYNC_BUCKETS};
pub use writer::StreamWriter;

/// Bytes in one "MB" of the size settings (MiB, as `df -m` counts).
pub const MB: u64 = 1024 * 1024;

/// A fragment's identity in the store: unique across streams, increasing
/// within a stream in write order, never reused.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct FragmentId(pub u64);

impl fmt::Display for FragmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What to do when the store is over `max_size_mb` or under `min_free_mb`
/// (KVS Edge Agent `StrategyOnFullSize`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum OnFull {
    /// Delete the oldest media (already uploaded first) to make room.
    #[default]
    DeleteOldestMedia,
    /// Refuse new fragments until space returns.
    DenyNewMedia,
}

impl FromStr for OnFull {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "DELETE_OLDEST_MEDIA" => Ok(OnFull::DeleteOldestMedia),
            "DENY_NEW_MEDIA" => Ok(OnFull::DenyNewMedia),
            _ => Err(format!(
                "on_full {s:?} is invalid: expected \"DELETE_OLDEST_MEDIA\" or \"DENY_NEW_MEDIA\""
            )),
        }
    }
}

impl fmt::Display for OnFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OnFull::DeleteOldestMedia => "DELETE_OLDEST_MEDIA",
            OnFull::DenyNewMedia => "DENY_NEW_MEDIA",
        })
    }
}

/// How the store is laid out and what it keeps.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// Directory holding `index.sqlite` and `segments/`.
    pub path: PathBuf,
    /// Delete media older than this (by fragment end); 0 = keep forever.
    /// Media not yet uploaded on a stream that uploads is kept regardless.
    pub max_age_hours: u32,
    /// Cap on segment bytes (1 MB = [`MB`]); 0 = none.
    pub max_size_mb: u64,
    /// What to do over `max_size_mb` or under `min_free_mb`.
    pub on_full: OnFull,
    /// Delete a fragment as soon as KVS has persisted it.
    pub delete_after_upload: bool,
    /// Keep at least this much of the disk free; 0 = no valve.
    pub min_free_mb: u64,
    /// Start a new segment file past this size…
    pub segment_max_bytes: u64,
    /// …or when its first fragment is this old (in media time).
    pub segment_max_duration: Duration,
    /// Payload bytes of recent frames kept in memory for live cursors.
    pub live_buffer_bytes: usize,
    /// Fragments further apart than this (end to next start) leave a gap in
    /// the recorded ranges.
    pub gap_tolerance: Duration,
}

impl StoreConfig {
    /// The defaults of `agent.example.toml` at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            path: path.into(),
            max_age_hours: 720,
            max_size_mb: 0,
            on_full: OnFull::DeleteOldestMedia,
            delete_after_upload: false,
            min_free_mb: 512,
            segment_max_bytes: 64 * MB,
            segment_max_duration: Duration::from_secs(300),
            // One second at 4 Mbit/s: readers at the live edge (LL-HLS,
            // the uploader) trail the writer by a few frames; one that falls
            // further behind waits for the commit and reads from disk. Every
            // byte here is resident memory on a 1 GB Pi (it was 4 MB, then
            // 1 MB; 512 KB took 0.7 MB off the 1080p recording's peak RSS).
            live_buffer_bytes: 512 * 1024,
            gap_tolerance: Duration::from_secs(1),
        }
    }
}

/// Where a fragment is in its upload to KVS.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum UploadState {
    /// Not sent yet.
    #[default]
    Pending,
    /// Sent on a PutMedia connection, no ACK yet.
    Sent,
    /// ACK RECEIVED.
    Received,
    /// ACK PERSISTED: KVS has it durably.
    Persisted,
    /// An ERROR ACK (or a failure before one); will be retried.
    Failed {
        /// The KVS ErrorId, 0 when the failure was local.
        error_id: u32,
    },
    /// Given up on deliberately (an ErrorId that retrying cannot fix).
    Skipped,
}

impl UploadState {
    fn to_db(self) -> (i64, Option<i64>) {
        match self {
            UploadState::Pending => (0, None),
            UploadState::Sent => (1, None),
            UploadState::Received => (2, None),
            UploadState::Persisted => (3, None),
            UploadState::Failed { error_id } => (4, Some(error_id.into())),
            UploadState::Skipped => (5, None),
        }
    }

    fn from_db(code: i64, err: Option<i64>) -> Self {
        match code {
            1 => UploadState::Sent,
            2 => UploadState::Received,
            3 => UploadState::Persisted,
            4 => UploadState::Failed {
                error_id: err.unwrap_or(0) as u32,
            },
            5 => UploadState::Skipped,
            _ => UploadState::Pending,
        }
    }

    /// Persisted or skipped: nothing more will be uploaded.
    pub fn is_done(self) -> bool {
        matches!(self, UploadState::Persisted | UploadState::Skipped)
    }
}

/// Why media was deleted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum DeleteReason {
    /// Older than `max_age_hours`.
    Age,
    /// Over `max_size_mb`.
    MaxSize,
    /// Free disk under `min_free_mb`.
    MinFree,
    /// ENOSPC while writing.
    DiskFull,
    /// Persisted, with `delete_after_upload`.
    AfterUpload,
}

impl fmt::Display for DeleteReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeleteReason::Age => "max_age",
            DeleteReason::MaxSize => "max_size",
            DeleteReason::MinFree => "min_free",
            DeleteReason::DiskFull => "disk_full",
            DeleteReason::AfterUpload => "after_upload",
        })
    }
}

/// Why a stream refuses new media.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DenyReason {
    /// The store is at `max_size_mb` and `on_full` is DENY_NEW_MEDIA.
    MaxSize {
        /// Segment bytes in use.
        used: u64,
        /// The cap.
        cap: u64,
    },
    /// Free disk is under `min_free_mb` and nothing more may be deleted.
    MinFree {
        /// Free bytes.
        free: u64,
        /// The minimum.
        min: u64,
    },
    /// Writing failed with ENOSPC and no space could be made.
    DiskFull {
        /// The error, with the file.
        detail: String,
    },
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::MaxSize { used, cap } => write!(
                f,
                "store holds {used} bytes, at its max_size_mb cap of {cap} bytes (on_full = DENY_NEW_MEDIA)"
            ),
            DenyReason::MinFree { free, min } => {
                write!(f, "{free} bytes free on disk, under min_free_mb ({min} bytes)")
            }
            DenyReason::DiskFull { detail } => write!(f, "disk full: {detail}"),
        }
    }
}

/// What a stream is doing now.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum StreamState {
    /// No writer.
    #[default]
    Idle,
    /// A writer is storing fragments.
    Recording,
    /// A writer is open but new fragments are refused; recording resumes by
    /// itself when the reason goes away.
    Denied {
        /// Why.
        reason: DenyReason,
        /// Since when.
        since: Timestamp,
    },
}

/// A stored fragment's description.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FragmentMeta {
    /// Store-wide id.
    pub id: FragmentId,
    /// The stream.
    pub stream: String,
    /// The fragmenter's sequence number (restarts at 0 with each writer).
    pub seq: u64,
    /// The first frame's presentation time.
    pub start: Timestamp,
    /// max(pts + duration).
    pub end: Timestamp,
    /// The greatest presentation time.
    pub last_pts: Timestamp,
    /// Number of frames.
    pub frames: u32,
    /// Payload bytes.
    pub bytes: u64,
    /// Frames per track, indexed by `TrackId::index`.
    pub track_frames: [u32; 3],
    /// KVS metadata tags of the fragment.
    pub metadata: Vec<Metadata>,
    /// When it was committed (store clock).
    pub written: Timestamp,
    /// Upload progress.
    pub upload: UploadState,
    /// The KVS fragment number from its ACKs, once known.
    pub kvs_fragment_number: Option<String>,
}

/// The beginning of a fragment, as a live cursor sees it before it is complete.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct FragmentHead {
    /// Store-wide id.
    pub id: FragmentId,
    /// The stream.
    pub stream: String,
    /// The fragmenter's sequence number.
    pub seq: u64,
    /// The first frame's presentation time.
    pub start: Timestamp,
    /// The tracks its frames belong to.
    pub tracks: Arc<[Track]>,
}

/// A fragment read back: its description, tracks, and frames whose payloads
/// share one buffer.
#[derive(Clone, Debug)]
pub struct StoredFragment {
    /// Description.
    pub meta: FragmentMeta,
    /// The tracks it was written with.
    pub tracks: Arc<[Track]>,
    /// Its frames, in write order.
    pub frames: Vec<Frame>,
}

/// Fragments per upload state.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct UploadCounts {
    /// Not sent.
    pub pending: u64,
    /// Sent, not acknowledged.
    pub sent: u64,
    /// RECEIVED.
    pub received: u64,
    /// PERSISTED.
    pub persisted: u64,
    /// ERROR, to retry.
    pub failed: u64,
    /// Given up.
    pub skipped: u64,
}

/// A stream as `/api/streams` shows it.
#[derive(Clone, Debug)]
pub struct StreamInfo {
    /// Name.
    pub name: String,
    /// Whether it uploads (age retention spares what is not uploaded).
    pub uploads: bool,
    /// The tracks of its latest writer.
    pub tracks: Vec<Track>,
    /// Fragments held.
    pub fragments: u64,
    /// Payload bytes held.
    pub bytes: u64,
    /// Segment bytes on disk (≥ `bytes`: frame indexes, trailers, and
    /// deleted fragments whose segment still holds others).
    pub disk_bytes: u64,
    /// Start of the oldest fragment.
    pub oldest: Option<Timestamp>,
    /// End of the newest fragment.
    pub newest: Option<Timestamp>,
    /// Recording, denied or idle.
    pub state: StreamState,
    /// The last write error, if any.
    pub last_error: Option<String>,
    /// Recorded ranges (gaps between them longer than `gap_tolerance`).
    pub ranges: Vec<(Timestamp, Timestamp)>,
    /// Fragments per upload state.
    pub upload: UploadCounts,
}

/// What [`Store::verify`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segments checked.
    pub segments: u64,
    /// Fragments read back and checked.
    pub fragments: u64,
    /// Segment bytes after the last live record of their segment (left by
    /// retention deleting a segment's newest fragments; 0 otherwise).
    pub uncovered_bytes: u64,
    /// Everything that does not agree; empty when the store is consistent.
    pub problems: Vec<String>,
}

/// The store. Cheap to clone; every clone is the same store.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store").field("path", &self.inner.cfg.path).finish()
    }
}

pub(crate) struct Inner {
    cfg: StoreConfig,
    fs: Arc<dyn FileLayer>,
    clock: Arc<dyn Clock>,
    /// The connection every change goes through.
    db: Mutex<Connection>,
    /// Queries, so readers never hold up the writer.
    reader: Mutex<Connection>,
    streams: Mutex<HashMap<String, Arc<StreamShared>>>,
    next_fragment_id: AtomicU64,
    /// Segment paths (relative) a writer is appending to: never deleted.
    active_segments: Mutex<HashSet<String>>,
    counters: stats::Counters,
    recovery: RecoveryReport,
    /// One retention pass at a time.
    retention: Mutex<()>,
    track_sets: Mutex<HashMap<i64, Arc<[Track]>>>,
    /// When the last full retention pass ran.
    last_retention: Mutex<Option<std::time::Instant>>,
    _lock: File,
}

/// Runtime state of one stream.
pub(crate) struct StreamShared {
    id: i64,
    name: String,
    dir: String,
    live: live::Live,
    rt: Mutex<StreamRuntime>,
}

#[derive(Debug, Default)]
struct StreamRuntime {
    writer: bool,
    uploads: bool,
    state: StreamState,
    last_error: Option<String>,
    /// Retention wants the writer's segment closed so it can be deleted.
    roll_requested: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Check a stream name: `[A-Za-z0-9_.-]{1,256}`, not only dots.
pub fn validate_stream_name(name: &str) -> Result<(), StoreError> {
    let bad = |reason| {
        Err(StoreError::BadStreamName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 256 {
        return bad("it is longer than 256 characters");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return if c == '/' || c == '\\' {
            bad("it contains a path separator")
        } else {
            bad("it contains a character outside A-Z a-z 0-9 _ . -")
        };
    }
    if name.chars().all(|c| c == '.') {
        return bad("it is only dots");
    }
    Ok(())
}

/// The directory under `segments/` for a stream: its name, shortened (with
/// a hash to stay unique) when too long for a file name.
fn stream_dir_name(name: &str) -> String {
    if name.len() <= 200 {
        name.to_owned()
    } else {
        format!("{}~{:08x}", &name[..200], crc32fast::hash(name.as_bytes()))
    }
}

fn check_tracks(stream: &str, tracks: &[Track]) -> Result<(), StoreError> {
    let bad = |detail: String| {
        Err(StoreError::BadTracks {
            stream: stream.to_owned(),
            detail,
        })
    };
    if tracks.is_empty() || tracks.len() > 3 {
        return bad(format!("{} tracks given: expected 1 to 3", tracks.len()));
    }
    for (i, t) in tracks.iter().enumerate() {
        if t.id.index() != i {
            return bad(format!(
                "track at position {} is numbered {}: expected tracks numbered 1, 2, 3 in order",
                i + 1,
                t.id.get()
            ));
        }
    }
    Ok(())
}

impl Store {
    /// Open (creating if needed) the store at `cfg.path` on the real file
    /// system, and recover from whatever the last run left.
    pub fn open(cfg: StoreConfig, clock: Arc<dyn Clock>) -> Result<Store, StoreError> {
        Store::open_with(cfg, clock, Arc::new(RealFs))
    }

    /// [`Store::open`] with another file layer (tests inject ENOSPC).
    pub fn open_with(cfg: StoreConfig, clock: Arc<dyn Clock>, fs: Arc<dyn FileLayer>) -> Result<Store, StoreError> {
        fs.create_dir_all(&cfg.path.join("segments"))
            .map_err(|e| StoreError::io(format!("cannot create {}", cfg.path.join("segments").display()), e))?;
        let lock_path = cfg.path.join("LOCK");
        let lock_file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError::io(format!("cannot open {}", lock_path.display()), e))?;
        // Wait a little: a previous agent may still be exiting (and a child
        // process forked by this one holds the lock until its exec).
        let deadline = std::time::Instant::now() + Duration::from_millis(500);
        while lock_file.try_lock().is_err() {
            if std::time::Instant::now() >= deadline {
                return Err(StoreError::Locked { path: cfg.path.clone() });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let db_path = cfg.path.join("index.sqlite");
        let mut conn = index::open(&db_path)?;
        let recovery = recovery::recover(&cfg.path, &mut conn, fs.as_ref(), clock.now())?;
        if !recovery.is_clean() {
            tracing::warn!(store = %cfg.path.display(), report = ?recovery, "store recovered from an unclean stop");
        }
        let reader = index::open_reader(&db_path)?;
        let next_id = index::next_fragment_id(&conn)?;
        let counters = stats::Counters::default();
        counters.disk_bytes.store(index::disk_bytes(&conn)?, Ordering::Relaxed);
        let mut streams = HashMap::new();
        for s in index::streams(&conn)? {
            let last = index::last_committed(&conn, s.id)?.map(FragmentId);
            streams.insert(
                s.name.clone(),
                Arc::new(StreamShared {
                    id: s.id,
                    live: live::Live::new(cfg.live_buffer_bytes, last),
                    rt: Mutex::new(StreamRuntime {
                        uploads: s.uploads,
                        ..Default::default()
                    }),
                    name: s.name,
                    dir: s.dir,
                }),
            );
        }
        Ok(Store {
            inner: Arc::new(Inner {
                cfg,
                fs,
                clock,
                db: Mutex::new(conn),
                reader: Mutex::new(reader),
                streams: Mutex::new(streams),
                next_fragment_id: AtomicU64::new(next_id),
                active_segments: Mutex::new(HashSet::new()),
                counters,
                recovery,
                retention: Mutex::new(()),
                track_sets: Mutex::new(HashMap::new()),
                last_retention: Mutex::new(None),
                _lock: lock_file,
            }),
        })
    }

    /// What start-up recovery did.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// The configuration in force.
    pub fn config(&self) -> &StoreConfig {
        &self.inner.cfg
    }

    /// Start writing a stream (creating it when new). `tracks` are stored so
    /// readers rebuild them exactly; `uploads` says whether an uploader will
    /// mark its fragments persisted (age retention then spares the rest).
    /// One writer per stream at a time.
    pub fn open_stream(&self, name: &str, tracks: &[Track], uploads: bool) -> Result<StreamWriter, StoreError> {
        validate_stream_name(name)?;
        check_tracks(name, tracks)?;
        let blob = tracks::encode_tracks(tracks);
        let inner = &self.inner;
        let now = inner.clock.now();
        // Durably: recovery re-indexes fragments from segment records, which
        // name their track set but not the stream's row.
        let (row, track_set) = index::durably(&mut lock(&inner.db), "open stream", |tx| {
            let row = index::upsert_stream(tx, name, &stream_dir_name(name), uploads, now)?;
            let ts = index::track_set_id(tx, row.id, &blob)?;
            Ok((row, ts))
        })?;
        let dir = segment::stream_dir(&inner.cfg.path, &row.dir);
        inner
            .fs
            .create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("cannot create {}", dir.display()), e))?;
        inner
            .fs
            .sync_dir(&inner.cfg.path.join("segments"))
            .map_err(|e| StoreError::io("cannot sync the segments directory", e))?;
        let shared = {
            let mut streams = lock(&inner.streams);
            streams
                .entry(name.to_owned())
                .or_insert_with(|| {
                    Arc::new(StreamShared {
                        id: row.id,
                        name: row.name.clone(),
                        dir: row.dir.clone(),
                        live: live::Live::new(inner.cfg.live_buffer_bytes, None),
                        rt: Mutex::new(StreamRuntime::default()),
                    })
                })
                .clone()
        };
        {
            let mut rt = lock(&shared.rt);
            if rt.writer {
                return Err(StoreError::StreamBusy(name.to_owned()));
            }
            rt.writer = true;
            rt.uploads = uploads;
            rt.state = StreamState::Recording;
            rt.last_error = None;
        }
        let tracks: Arc<[Track]> = tracks.to_vec().into();
        lock(&inner.track_sets).insert(track_set, tracks.clone());
        Ok(StreamWriter::new(self.clone(), shared, track_set, tracks))
    }

    fn shared(&self, name: &str) -> Result<Arc<StreamShared>, StoreError> {
        lock(&self.inner.streams)
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::UnknownStream(name.to_owned()))
    }

    fn tracks(&self, track_set: i64) -> Result<Arc<[Track]>, StoreError> {
        if let Some(t) = lock(&self.inner.track_sets).get(&track_set) {
            return Ok(t.clone());
        }
        let blob = index::track_set(&lock(&self.inner.reader), track_set)?;
        let tracks: Arc<[Track]> = tracks::decode_tracks(&blob)
            .map_err(|e| StoreError::db(format!("track set {track_set}: {e}"), rusqlite::Error::InvalidQuery))?
            .into();
        lock(&self.inner.track_sets).insert(track_set, tracks.clone());
        Ok(tracks)
    }

    /// Every stream with its totals, state and recorded ranges.
    pub fn streams(&self) -> Result<Vec<StreamInfo>, StoreError> {
        let mut names: Vec<String> = lock(&self.inner.streams).keys().cloned().collect();
        names.sort();
        names.iter().map(|n| self.stream(n)).collect()
    }

    /// One stream's totals, state and recorded ranges.
    pub fn stream(&self, name: &str) -> Result<StreamInfo, StoreError> {
        let shared = self.shared(name)?;
        let (totals, track_set) = {
            let conn = lock(&self.inner.reader);
            (
                index::stream_totals(&conn, shared.id)?,
                index::latest_track_set(&conn, shared.id)?,
            )
        };
        let tracks = match track_set {
            Some(ts) => self.tracks(ts)?.to_vec(),
            None => Vec::new(),
        };
        let ranges = self.recorded_ranges(name, Timestamp::EPOCH, Timestamp::from_nanos(i64::MAX as u64))?;
        let rt = lock(&shared.rt);
        let u = totals.by_upload;
        Ok(StreamInfo {
            name: shared.name.clone(),
            uploads: rt.uploads,
            tracks,
            fragments: totals.fragments,
            bytes: totals.bytes,
            disk_bytes: totals.disk_bytes,
            oldest: totals.oldest,
            newest: totals.newest,
            state: rt.state.clone(),
            last_error: rt.last_error.clone(),
            ranges,
            upload: UploadCounts {
                pending: u[0],
                sent: u[1],
                received: u[2],
                persisted: u[3],
                failed: u[4],
                skipped: u[5],
            },
        })
    }

    /// Fragments of `stream` overlapping `[start, end)`, oldest first.
    pub fn fragments(&self, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<FragmentMeta>, StoreError> {
        let shared = self.shared(stream)?;
        let rows = index::fragments_between(&lock(&self.inner.reader), shared.id, start, end)?;
        rows.into_iter().map(meta_of).collect()
    }

    /// The fragment of `stream` that starts exactly at `start` (the first
    /// stored when several do), e.g. the one a PutMedia resend repeats.
    pub fn fragment_starting_at(&self, stream: &str, start: Timestamp) -> Result<Option<FragmentMeta>, StoreError> {
        let shared = self.shared(stream)?;
        let row = index::fragment_starting_at(&lock(&self.inner.reader), shared.id, start)?;
        row.map(meta_of).transpose()
    }

    /// One fragment's description.
    pub fn fragment(&self, id: FragmentId) -> Result<FragmentMeta, StoreError> {
        let row = index::fragment(&lock(&self.inner.reader), id)?.ok_or(StoreError::FragmentNotFound(id))?;
        meta_of(row)
    }

    /// Read a fragment back: its payload mapped from the segment file (one
    /// read for the CRC, see `FileLayer::read_shared`), frames exactly as
    /// written.
    pub fn read_fragment(&self, id: FragmentId) -> Result<StoredFragment, StoreError> {
        let row = index::fragment(&lock(&self.inner.reader), id)?.ok_or(StoreError::FragmentNotFound(id))?;
        self.load(row)
    }

    fn load(&self, row: index::FragmentRow) -> Result<StoredFragment, StoreError> {
        let id = FragmentId(row.id);
        let path = self.inner.cfg.path.join(&row.segment_path);
        let corrupt = |detail: String| StoreError::Corrupt {
            path: path.clone(),
            offset: row.offset,
            detail: format!("fragment {id}: {detail}"),
        };
        let len = usize::try_from(row.payload_len).map_err(|_| corrupt("payload length overflows".into()))?;
        let (data, crc) = match self
            .inner
            .fs
            .read_shared(&path, row.offset + segment::HEADER_LEN as u64, len)
        {
            Ok(d) => d,
            // Deleted by retention between the query and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StoreError::FragmentNotFound(id)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(corrupt(format!("segment ends inside the {len}-byte payload")))
            }
            Err(e) => return Err(StoreError::io(format!("cannot read {}", path.display()), e)),
        };
        if crc != row.crc {
            return Err(corrupt(format!("payload CRC {crc:08x}, index says {:08x}", row.crc)));
        }
        let start = row.start;
        let entries = frame_index::decode(&row.frame_index, start).map_err(corrupt)?;
        let total: usize = entries.iter().map(|e| e.len).sum();
        if total != len {
            return Err(corrupt(format!("frame index covers {total} bytes, payload is {len}")));
        }
        let tracks = self.tracks(row.track_set_id)?;
        let frames = frame_index::frames(&entries, &data);
        Ok(StoredFragment {
            meta: meta_of(row)?,
            tracks,
            frames,
        })
    }

    /// Recorded ranges of `stream` within `[start, end)`: runs of fragments
    /// no further apart than `gap_tolerance`, clipped to the window.
    pub fn recorded_ranges(
        &self,
        stream: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<(Timestamp, Timestamp)>, StoreError> {
        let shared = self.shared(stream)?;
        let spans = index::spans_between(&lock(&self.inner.reader), shared.id, start, end)?;
        Ok(merge_ranges(&spans, self.inner.cfg.gap_tolerance, start, end))
    }

    /// The gaps between recorded ranges of `stream` within `[start, end)`.
    pub fn gaps(
        &self,
        stream: &str,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<(Timestamp, Timestamp)>, StoreError> {
        let r = self.recorded_ranges(stream, start, end)?;
        Ok(r.windows(2).map(|w| (w[0].1, w[1].0)).collect())
    }

    /// A reader of `stream` from `from`: fragments from disk while behind,
    /// then the live tail frame by frame.
    pub fn cursor(&self, stream: &str, from: CursorFrom) -> Result<Cursor, StoreError> {
        let shared = self.shared(stream)?;
        Cursor::new(self.clone(), shared, from)
    }

    /// Record a fragment's upload progress.
    pub fn set_upload_state(&self, id: FragmentId, state: UploadState) -> Result<(), StoreError> {
        if !index::set_upload_state(&lock(&self.inner.db), id, state)? {
            return Err(StoreError::FragmentNotFound(id));
        }
        Ok(())
    }

    /// Where an upload resumes: the oldest fragment of `stream` that KVS
    /// has neither persisted nor had skipped.
    pub fn first_not_uploaded(&self, stream: &str) -> Result<Option<FragmentId>, StoreError> {
        let shared = self.shared(stream)?;
        index::first_not_uploaded(&lock(&self.inner.reader), shared.id)
    }

    /// What `stream` has not uploaded yet: the oldest such fragment's start,
    /// payload bytes and fragment count.
    pub fn upload_backlog(&self, stream: &str) -> Result<(Option<Timestamp>, u64, u64), StoreError> {
        let shared = self.shared(stream)?;
        let (start, bytes, n) = index::upload_backlog(&lock(&self.inner.reader), shared.id)?;
        Ok((start.map(|ns| Timestamp::from_nanos(ns.max(0) as u64)), bytes, n))
    }

    /// Record the KVS fragment number from a fragment's ACKs.
    pub fn set_kvs_fragment_number(&self, id: FragmentId, number: &str) -> Result<(), StoreError> {
        if !index::set_kvs_fragment_number(&lock(&self.inner.db), id, number)? {
            return Err(StoreError::FragmentNotFound(id));
        }
        Ok(())
    }

    /// Apply the retention policy now: age, delete-after-upload, size cap,
    /// free-disk valve. The agent calls it periodically; writers call it
    /// after each fragment.
    pub fn enforce_retention(&self) -> Result<RetentionReport, StoreError> {
        retention::enforce(self)
    }

    /// Free bytes on the store's file system.
    pub fn free_bytes(&self) -> Result<u64, StoreError> {
        self.inner
            .fs
            .free_bytes(&self.inner.cfg.path)
            .map_err(|e| StoreError::io(format!("cannot stat {}", self.inner.cfg.path.display()), e))
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> StoreStats {
        self.inner.counters.snapshot(self.free_bytes().ok())
    }

    /// Check that index and segment files agree: every segment file exists
    /// with exactly the length its row covers, every fragment reads back
    /// with a good CRC and trailer, and no file lies outside the index. Reads
    /// everything: for tests and `fsck`-style checks, not the hot path.
    pub fn verify(&self) -> Result<VerifyReport, StoreError> {
        recovery::verify(self)
    }
}

fn meta_of(row: index::FragmentRow) -> Result<FragmentMeta, StoreError> {
    let metadata = tracks::decode_metadata(&row.metadata).map_err(|e| {
        StoreError::db(
            format!("fragment {} metadata: {e}", row.id),
            rusqlite::Error::InvalidQuery,
        )
    })?;
    Ok(FragmentMeta {
        id: FragmentId(row.id),
        stream: row.stream,
        seq: row.seq,
        start: row.start,
        end: row.end,
        last_pts: row.last_pts,
        frames: row.frames,
        bytes: row.payload_len,
        track_frames: row.track_frames,
        metadata,
        written: row.written,
        upload: row.upload,
        kvs_fragment_number: row.kvs_fragment_number,
    })
}

/// Merge time-ordered spans into ranges, joining spans whose gap is at most
/// `tolerance`, clipped to `[lo, hi)`.
pub(crate) fn merge_ranges(
    spans: &[(Timestamp, Timestamp)],
    tolerance: Duration,
    lo: Timestamp,
    hi: Timestamp,
) -> Vec<(Timestamp, Timestamp)> {
    let mut out: Vec<(Timestamp, Timestamp)> = Vec::new();
    for &(s, e) in spans {
        match out.last_mut() {
            Some(last) if s <= last.1 + tolerance => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    for r in &mut out {
        r.0 = r.0.max(lo);
        r.1 = r.1.min(hi);
    }
    out.retain(|r| r.0 < r.1);
    out
}

impl Inner {
    fn path(&self, rel: &str) -> PathBuf {
        self.cfg.path.join(rel)
    }
}

/// A relative path as stored in the index (always `/`-separated).
fn rel_path(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}
