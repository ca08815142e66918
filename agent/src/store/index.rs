//! The index: one SQLite database (WAL) holding streams, track sets, segments
//! and fragments. All SQL of the store lives in this file.
//!
//! Schema versions are numbered (`PRAGMA user_version`); [`UPGRADES`] holds
//! one script per version, applied in order inside a transaction, so an old
//! index is brought forward on open and a newer one is refused.

use std::path::Path;
use std::time::Duration;

use fragmenter::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Transaction};

use super::error::StoreError;
use super::{FragmentId, UploadState};

/// Schema scripts; entry `i` upgrades version `i` to `i + 1`.
const UPGRADES: &[&str] = &[
    // 0 → 1: the first schema.
    r#"
    CREATE TABLE meta (
        key TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE stream (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        dir TEXT NOT NULL UNIQUE,
        uploads INTEGER NOT NULL DEFAULT 0,
        created_ns INTEGER NOT NULL
    );
    CREATE TABLE track_set (
        id INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL REFERENCES stream (id),
        tracks BLOB NOT NULL
    );
    CREATE INDEX track_set_stream ON track_set (stream_id);
    CREATE TABLE segment (
        id INTEGER PRIMARY KEY,
        stream_id INTEGER NOT NULL REFERENCES stream (id),
        path TEXT NOT NULL UNIQUE,   -- relative to the store directory
        len INTEGER NOT NULL,        -- bytes covered by committed records
        start_ns INTEGER NOT NULL    -- start of its first fragment
    );
    CREATE INDEX segment_start ON segment (start_ns);
    CREATE TABLE fragment (
        id INTEGER PRIMARY KEY,      -- allocated by the writer, never reused
        stream_id INTEGER NOT NULL REFERENCES stream (id),
        segment_id INTEGER NOT NULL REFERENCES segment (id),
        track_set_id INTEGER NOT NULL REFERENCES track_set (id),
        seq INTEGER NOT NULL,
        start_ns INTEGER NOT NULL,
        end_ns INTEGER NOT NULL,
        last_pts_ns INTEGER NOT NULL,
        offset INTEGER NOT NULL,     -- record start (its header) in the segment
        payload_len INTEGER NOT NULL,
        record_len INTEGER NOT NULL, -- header + payload + frame index + meta + trailer
        crc INTEGER NOT NULL,        -- CRC-32 of the payload
        frames INTEGER NOT NULL,
        track_frames INTEGER NOT NULL, -- 21 bits per track
        frame_index BLOB NOT NULL,
        metadata BLOB NOT NULL,
        written_ns INTEGER NOT NULL,
        upload_state INTEGER NOT NULL DEFAULT 0,
        upload_error INTEGER,
        kvs_fragment_number TEXT
    );
    CREATE TABLE pending_deletion (
        path TEXT PRIMARY KEY        -- a segment file whose rows are gone
    );
    CREATE INDEX fragment_time ON fragment (stream_id, start_ns, end_ns);
    CREATE INDEX fragment_segment ON fragment (segment_id);
    CREATE INDEX fragment_upload ON fragment (upload_state, stream_id);
    "#,
];

/// The newest schema version this build knows.
pub(crate) const SCHEMA_VERSION: i64 = UPGRADES.len() as i64;

/// Fragments are never longer than this (the fragmenter closes them at 20 s),
/// which lets time queries use the start-time index with a lower bound.
pub(crate) const MAX_FRAGMENT_SPAN: Duration = Duration::from_secs(60);

fn db<T>(context: &str, r: rusqlite::Result<T>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::db(context, e))
}

pub(crate) fn ns(t: Timestamp) -> i64 {
    i64::try_from(t.as_nanos()).unwrap_or(i64::MAX)
}

pub(crate) fn ts(v: i64) -> Timestamp {
    Timestamp::from_nanos(v.max(0) as u64)
}

/// Run `f` in a transaction whose commit is fsync'ed (`synchronous = FULL`
/// for its duration). Fragment commits do without: the segment record,
/// fdatasync'ed first, is what makes a fragment durable, and recovery
/// re-indexes it if its commit was lost. Changes that no segment records
/// (streams, track sets, deletions) use this.
pub(crate) fn durably<T>(
    conn: &mut Connection,
    what: &str,
    f: impl FnOnce(&Transaction) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    db(what, conn.pragma_update(None, "synchronous", "FULL"))?;
    let r = (|| {
        let tx = db(what, conn.transaction())?;
        let v = f(&tx)?;
        db(what, tx.commit())?;
        Ok(v)
    })();
    db(what, conn.pragma_update(None, "synchronous", "NORMAL"))?;
    r
}

/// Page cache per connection, in KiB (SQLite's `cache_size` when negative).
/// SQLite's default, 2 MB per connection, fills over days of recording as
/// the index grows and stays resident; our queries touch a few index pages
/// each (the writer appends, readers look up by time), so a quarter of that
/// is plenty on a device where the whole agent should fit in 20 MB.
const CACHE_KIB: i64 = 512;

/// Open (creating if needed) and bring the schema up to date.
pub(crate) fn open(path: &Path) -> Result<Connection, StoreError> {
    let mut conn = db("open", Connection::open(path))?;
    db(
        "pragmas",
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 10000;",
        ),
    )?;
    db("pragmas", conn.pragma_update(None, "cache_size", -CACHE_KIB))?;
    let version: i64 = db(
        "schema version",
        conn.query_row("PRAGMA user_version", [], |r| r.get(0)),
    )?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for v in version..SCHEMA_VERSION {
        let tx = db("upgrade", conn.transaction())?;
        db(
            &format!("upgrade schema {v} → {}", v + 1),
            tx.execute_batch(UPGRADES[v as usize]),
        )?;
        db("upgrade", tx.pragma_update(None, "user_version", v + 1))?;
        db("upgrade", tx.commit())?;
        tracing::info!(from = v, to = v + 1, "store index schema upgraded");
    }
    Ok(conn)
}

/// A second connection for queries, so readers never hold up the writer.
pub(crate) fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = db("open reader", Connection::open(path))?;
    db(
        "reader pragmas",
        conn.execute_batch("PRAGMA busy_timeout = 10000; PRAGMA query_only = ON;"),
    )?;
    db("reader pragmas", conn.pragma_update(None, "cache_size", -CACHE_KIB))?;
    Ok(conn)
}

// ---- streams and track sets ----

#[derive(Debug, Clone)]
pub(crate) struct StreamRow {
    pub id: i64,
    pub name: String,
    pub dir: String,
    pub uploads: bool,
}

pub(crate) fn streams(conn: &Connection) -> Result<Vec<StreamRow>, StoreError> {
    let mut st = db(
        "streams",
        conn.prepare_cached("SELECT id, name, dir, uploads FROM stream ORDER BY id"),
    )?;
    let rows = db(
        "streams",
        st.query_map([], |r| {
            Ok(StreamRow {
                id: r.get(0)?,
                name: r.get(1)?,
                dir: r.get(2)?,
                uploads: r.get(3)?,
            })
        }),
    )?;
    db("streams", rows.collect())
}

/// The stream's row, created when new; `uploads` is updated either way.
pub(crate) fn upsert_stream(
    conn: &Connection,
    name: &str,
    dir: &str,
    uploads: bool,
    now: Timestamp,
) -> Result<StreamRow, StoreError> {
    db(
        "create stream",
        conn.execute(
            "INSERT INTO stream (name, dir, uploads, created_ns) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (name) DO UPDATE SET uploads = excluded.uploads",
            params![name, dir, uploads, ns(now)],
        ),
    )?;
    db(
        "create stream",
        conn.query_row(
            "SELECT id, name, dir, uploads FROM stream WHERE name = ?1",
            [name],
            |r| {
                Ok(StreamRow {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    dir: r.get(2)?,
                    uploads: r.get(3)?,
                })
            },
        ),
    )
}

/// The id of this exact track set for the stream, inserted when new.
pub(crate) fn track_set_id(conn: &Connection, stream_id: i64, blob: &[u8]) -> Result<i64, StoreError> {
    let found: Option<i64> = db(
        "track set",
        conn.query_row(
            "SELECT id FROM track_set WHERE stream_id = ?1 AND tracks = ?2 ORDER BY id DESC LIMIT 1",
            params![stream_id, blob],
            |r| r.get(0),
        )
        .optional(),
    )?;
    if let Some(id) = found {
        return Ok(id);
    }
    db(
        "track set",
        conn.execute(
            "INSERT INTO track_set (stream_id, tracks) VALUES (?1, ?2)",
            params![stream_id, blob],
        ),
    )?;
    Ok(conn.last_insert_rowid())
}

pub(crate) fn track_set(conn: &Connection, id: i64) -> Result<Vec<u8>, StoreError> {
    db(
        "track set",
        conn.query_row("SELECT tracks FROM track_set WHERE id = ?1", [id], |r| r.get(0)),
    )
}

/// Every track set and its stream.
pub(crate) fn track_set_owners(conn: &Connection) -> Result<std::collections::HashMap<i64, i64>, StoreError> {
    let mut st = db("track sets", conn.prepare_cached("SELECT id, stream_id FROM track_set"))?;
    let rows = db("track sets", st.query_map([], |r| Ok((r.get(0)?, r.get(1)?))))?;
    db("track sets", rows.collect())
}

/// The newest track set of a stream (the one its last writer used).
pub(crate) fn latest_track_set(conn: &Connection, stream_id: i64) -> Result<Option<i64>, StoreError> {
    db(
        "latest track set",
        conn.query_row("SELECT MAX(id) FROM track_set WHERE stream_id = ?1", [stream_id], |r| {
            r.get(0)
        }),
    )
}

// ---- fragment ids ----

/// The next fragment id: above every id ever committed (deleted ones too).
pub(crate) fn next_fragment_id(conn: &Connection) -> Result<u64, StoreError> {
    let stored: Option<i64> = db(
        "next fragment id",
        conn.query_row("SELECT value FROM meta WHERE key = 'next_fragment_id'", [], |r| {
            r.get(0)
        })
        .optional(),
    )?;
    let max: Option<i64> = db(
        "next fragment id",
        conn.query_row("SELECT MAX(id) FROM fragment", [], |r| r.get(0)),
    )?;
    Ok(stored.unwrap_or(1).max(max.map_or(1, |m| m + 1)).max(1) as u64)
}

// ---- committing ----

/// A fragment about to be committed.
#[derive(Debug, Clone)]
pub(crate) struct NewFragment<'a> {
    pub id: u64,
    pub stream_id: i64,
    pub track_set_id: i64,
    pub seq: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub last_pts: Timestamp,
    pub offset: u64,
    pub payload_len: u64,
    pub record_len: u64,
    pub crc: u32,
    pub frames: u32,
    pub track_frames: [u32; 3],
    pub frame_index: &'a [u8],
    pub metadata: &'a [u8],
    pub written: Timestamp,
}

/// The segment a fragment goes into: known, or new with this path.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SegmentRef<'a> {
    Existing(i64),
    New { path: &'a str, start: Timestamp },
}

pub(crate) fn pack_track_frames(t: [u32; 3]) -> i64 {
    let c = |v: u32| i64::from(v.min((1 << 21) - 1));
    c(t[0]) | c(t[1]) << 21 | c(t[2]) << 42
}

fn unpack_track_frames(v: i64) -> [u32; 3] {
    let m = (1 << 21) - 1;
    [(v & m) as u32, ((v >> 21) & m) as u32, ((v >> 42) & m) as u32]
}

/// Insert the fragment (and its segment when new) and move the segment's
/// covered length to the end of the record, in one transaction. Returns the
/// segment id.
pub(crate) fn commit_fragment(conn: &mut Connection, seg: SegmentRef, f: &NewFragment) -> Result<i64, StoreError> {
    let tx = db("commit fragment", conn.transaction())?;
    let seg_id = insert_fragment(&tx, seg, f)?;
    db("commit fragment", tx.commit())?;
    Ok(seg_id)
}

/// [`commit_fragment`] inside a transaction.
pub(crate) fn insert_fragment(tx: &Transaction, seg: SegmentRef, f: &NewFragment) -> Result<i64, StoreError> {
    let seg_id = match seg {
        SegmentRef::Existing(id) => id,
        SegmentRef::New { path, start } => {
            db(
                "insert segment",
                tx.execute(
                    "INSERT INTO segment (stream_id, path, len, start_ns) VALUES (?1, ?2, 0, ?3)",
                    params![f.stream_id, path, ns(start)],
                ),
            )?;
            tx.last_insert_rowid()
        }
    };
    db(
        "insert fragment",
        tx.prepare_cached(
            "INSERT INTO fragment (id, stream_id, segment_id, track_set_id, seq, start_ns, end_ns, last_pts_ns,
                 offset, payload_len, record_len, crc, frames, track_frames, frame_index, metadata, written_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        )
        .and_then(|mut st| {
            st.execute(params![
                f.id as i64,
                f.stream_id,
                seg_id,
                f.track_set_id,
                f.seq as i64,
                ns(f.start),
                ns(f.end),
                ns(f.last_pts),
                f.offset as i64,
                f.payload_len as i64,
                f.record_len as i64,
                i64::from(f.crc),
                i64::from(f.frames),
                pack_track_frames(f.track_frames),
                f.frame_index,
                f.metadata,
                ns(f.written),
            ])
        }),
    )?;
    db(
        "update segment",
        tx.prepare_cached("UPDATE segment SET len = ?2 WHERE id = ?1")
            .and_then(|mut st| st.execute(params![seg_id, (f.offset + f.record_len) as i64])),
    )?;
    Ok(seg_id)
}

// ---- reading ----

/// A fragment's row, with where its record is.
#[derive(Debug, Clone)]
pub(crate) struct FragmentRow {
    pub id: u64,
    pub stream_id: i64,
    pub stream: String,
    pub segment_id: i64,
    pub segment_path: String,
    pub track_set_id: i64,
    pub seq: u64,
    pub start: Timestamp,
    pub end: Timestamp,
    pub last_pts: Timestamp,
    pub offset: u64,
    pub payload_len: u64,
    pub record_len: u64,
    pub crc: u32,
    pub frames: u32,
    pub track_frames: [u32; 3],
    pub frame_index: Vec<u8>,
    pub metadata: Vec<u8>,
    pub written: Timestamp,
    pub upload: UploadState,
    pub kvs_fragment_number: Option<String>,
}

const FRAGMENT_COLUMNS: &str = "f.id, f.stream_id, s.name, f.segment_id, g.path, f.track_set_id, f.seq, f.start_ns,
    f.end_ns, f.last_pts_ns, f.offset, f.payload_len, f.record_len, f.crc, f.frames, f.track_frames, f.frame_index,
    f.metadata, f.written_ns, f.upload_state, f.upload_error, f.kvs_fragment_number
    FROM fragment f JOIN stream s ON s.id = f.stream_id JOIN segment g ON g.id = f.segment_id";

fn fragment_row(r: &rusqlite::Row) -> rusqlite::Result<FragmentRow> {
    Ok(FragmentRow {
        id: r.get::<_, i64>(0)? as u64,
        stream_id: r.get(1)?,
        stream: r.get(2)?,
        segment_id: r.get(3)?,
        segment_path: r.get(4)?,
        track_set_id: r.get(5)?,
        seq: r.get::<_, i64>(6)? as u64,
        start: ts(r.get(7)?),
        end: ts(r.get(8)?),
        last_pts: ts(r.get(9)?),
        offset: r.get::<_, i64>(10)? as u64,
        payload_len: r.get::<_, i64>(11)? as u64,
        record_len: r.get::<_, i64>(12)? as u64,
        crc: r.get::<_, i64>(13)? as u32,
        frames: r.get::<_, i64>(14)? as u32,
        track_frames: unpack_track_frames(r.get(15)?),
        frame_index: r.get(16)?,
        metadata: r.get(17)?,
        written: ts(r.get(18)?),
        upload: UploadState::from_db(r.get(19)?, r.get(20)?),
        kvs_fragment_number: r.get(21)?,
    })
}

pub(crate) fn fragment(conn: &Connection, id: FragmentId) -> Result<Option<FragmentRow>, StoreError> {
    let mut st = db(
        "fragment",
        conn.prepare_cached(&format!("SELECT {FRAGMENT_COLUMNS} WHERE f.id = ?1")),
    )?;
    db("fragment", st.query_row([id.0 as i64], fragment_row).optional())
}

/// The stream's fragment that starts exactly at `start` (the first stored
/// when several do), one of a single instant included, which
/// [`fragments_between`] cannot find by its start.
pub(crate) fn fragment_starting_at(
    conn: &Connection,
    stream_id: i64,
    start: Timestamp,
) -> Result<Option<FragmentRow>, StoreError> {
    let mut st = db(
        "fragment by start",
        conn.prepare_cached(&format!(
            "SELECT {FRAGMENT_COLUMNS} WHERE f.stream_id = ?1 AND f.start_ns = ?2 ORDER BY f.id LIMIT 1"
        )),
    )?;
    db(
        "fragment by start",
        st.query_row(params![stream_id, ns(start)], fragment_row).optional(),
    )
}

/// The first committed fragment of the stream with id ≥ `from`.
///
/// Walks the rowid (`f.id`) from `from`, skipping other streams' rows: the
/// `+` keeps SQLite off the `fragment_time` index, where it read every
/// fragment of the stream and sorted them for each call, so a cursor
/// draining a backlog did O(backlog²) work: uploading an hour of 2 s
/// fragments took 2.0 CPU-s per GB (416 MB/s), ten minutes 0.86; with the
/// rowid, 0.67 for both (945 MB/s; `edge-agent bench upload`).
/// Ids are allocated in write order across streams, so this visits about
/// one row per stream recording beside this one.
pub(crate) fn next_fragment(conn: &Connection, stream_id: i64, from: u64) -> Result<Option<FragmentRow>, StoreError> {
    let mut st = db("next fragment", conn.prepare_cached(&next_fragment_sql()))?;
    db(
        "next fragment",
        st.query_row(params![stream_id, from.min(i64::MAX as u64) as i64], fragment_row)
            .optional(),
    )
}

fn next_fragment_sql() -> String {
    format!("SELECT {FRAGMENT_COLUMNS} WHERE +f.stream_id = ?1 AND f.id >= ?2 ORDER BY f.id LIMIT 1")
}

/// The id of the first fragment of the stream that ends after `t`.
pub(crate) fn first_ending_after(conn: &Connection, stream_id: i64, t: Timestamp) -> Result<Option<u64>, StoreError> {
    let mut st = db(
        "fragment at time",
        conn.prepare_cached(
            "SELECT id FROM fragment WHERE stream_id = ?1 AND start_ns >= ?3 AND end_ns > ?2
             ORDER BY start_ns LIMIT 1",
        ),
    )?;
    let lower = ns(t).saturating_sub(MAX_FRAGMENT_SPAN.as_nanos() as i64);
    let id: Option<i64> = db(
        "fragment at time",
        st.query_row(params![stream_id, ns(t), lower], |r| r.get(0)).optional(),
    )?;
    Ok(id.map(|i| i as u64))
}

/// Fragments of the stream overlapping `[start, end)`, by start time.
pub(crate) fn fragments_between(
    conn: &Connection,
    stream_id: i64,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<FragmentRow>, StoreError> {
    let mut st = db(
        "fragments",
        conn.prepare_cached(&format!(
            "SELECT {FRAGMENT_COLUMNS} WHERE f.stream_id = ?1 AND f.start_ns >= ?4 AND f.start_ns < ?3
             AND f.end_ns > ?2 ORDER BY f.start_ns"
        )),
    )?;
    let lower = ns(start).saturating_sub(MAX_FRAGMENT_SPAN.as_nanos() as i64);
    let rows = db(
        "fragments",
        st.query_map(params![stream_id, ns(start), ns(end), lower], fragment_row),
    )?;
    db("fragments", rows.collect())
}

/// (start, end) of the stream's fragments overlapping `[start, end)`.
pub(crate) fn spans_between(
    conn: &Connection,
    stream_id: i64,
    start: Timestamp,
    end: Timestamp,
) -> Result<Vec<(Timestamp, Timestamp)>, StoreError> {
    let mut st = db(
        "spans",
        conn.prepare_cached(
            "SELECT start_ns, end_ns FROM fragment WHERE stream_id = ?1 AND start_ns >= ?4 AND start_ns < ?3
             AND end_ns > ?2 ORDER BY start_ns",
        ),
    )?;
    let lower = ns(start).saturating_sub(MAX_FRAGMENT_SPAN.as_nanos() as i64);
    let rows = db(
        "spans",
        st.query_map(params![stream_id, ns(start), ns(end), lower], |r| {
            Ok((ts(r.get(0)?), ts(r.get(1)?)))
        }),
    )?;
    db("spans", rows.collect())
}

/// Per-stream totals.
#[derive(Debug, Clone, Default)]
pub(crate) struct StreamTotals {
    pub fragments: u64,
    pub bytes: u64,
    pub oldest: Option<Timestamp>,
    pub newest: Option<Timestamp>,
    pub by_upload: [u64; 6],
    pub disk_bytes: u64,
}

pub(crate) fn stream_totals(conn: &Connection, stream_id: i64) -> Result<StreamTotals, StoreError> {
    let mut t = StreamTotals::default();
    let (n, bytes, oldest, newest): (i64, Option<i64>, Option<i64>, Option<i64>) = db(
        "stream totals",
        conn.query_row(
            "SELECT COUNT(*), SUM(payload_len), MIN(start_ns), MAX(end_ns) FROM fragment WHERE stream_id = ?1",
            [stream_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        ),
    )?;
    t.fragments = n as u64;
    t.bytes = bytes.unwrap_or(0) as u64;
    t.oldest = oldest.map(ts);
    t.newest = newest.map(ts);
    let mut st = db(
        "upload counts",
        conn.prepare_cached("SELECT upload_state, COUNT(*) FROM fragment WHERE stream_id = ?1 GROUP BY upload_state"),
    )?;
    let rows = db(
        "upload counts",
        st.query_map([stream_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))),
    )?;
    for row in rows {
        let (state, n) = db("upload counts", row)?;
        if let Some(slot) = usize::try_from(state).ok().and_then(|s| t.by_upload.get_mut(s)) {
            *slot = n as u64;
        }
    }
    t.disk_bytes = db(
        "stream disk bytes",
        conn.query_row(
            "SELECT COALESCE(SUM(len), 0) FROM segment WHERE stream_id = ?1",
            [stream_id],
            |r| r.get::<_, i64>(0),
        ),
    )? as u64;
    Ok(t)
}

/// Bytes of all segments (what the store occupies on disk, index aside).
pub(crate) fn disk_bytes(conn: &Connection) -> Result<u64, StoreError> {
    Ok(db(
        "disk bytes",
        conn.query_row("SELECT COALESCE(SUM(len), 0) FROM segment", [], |r| r.get::<_, i64>(0)),
    )? as u64)
}

/// The highest committed fragment id per stream.
pub(crate) fn last_committed(conn: &Connection, stream_id: i64) -> Result<Option<u64>, StoreError> {
    let v: Option<i64> = db(
        "last fragment",
        conn.query_row("SELECT MAX(id) FROM fragment WHERE stream_id = ?1", [stream_id], |r| {
            r.get(0)
        }),
    )?;
    Ok(v.map(|v| v as u64))
}

// ---- upload state ----

/// Returns false when no such fragment.
pub(crate) fn set_upload_state(conn: &Connection, id: FragmentId, s: UploadState) -> Result<bool, StoreError> {
    let (code, err) = s.to_db();
    let n = db(
        "set upload state",
        conn.execute(
            "UPDATE fragment SET upload_state = ?2, upload_error = ?3 WHERE id = ?1",
            params![id.0 as i64, code, err],
        ),
    )?;
    Ok(n == 1)
}

/// The oldest fragment of the stream whose upload is not done (neither
/// persisted nor skipped).
pub(crate) fn first_not_uploaded(conn: &Connection, stream_id: i64) -> Result<Option<FragmentId>, StoreError> {
    let v: Option<i64> = db(
        "first not uploaded",
        conn.query_row(
            "SELECT MIN(id) FROM fragment WHERE stream_id = ?1 AND upload_state NOT IN (3, 5)",
            params![stream_id],
            |r| r.get(0),
        ),
    )?;
    Ok(v.map(|v| FragmentId(v as u64)))
}

/// (start of the oldest, payload bytes, fragments) of what the stream has
/// not uploaded yet.
pub(crate) fn upload_backlog(conn: &Connection, stream_id: i64) -> Result<(Option<i64>, u64, u64), StoreError> {
    db(
        "upload backlog",
        conn.query_row(
            "SELECT MIN(start_ns), COALESCE(SUM(payload_len), 0), COUNT(*) FROM fragment
             WHERE stream_id = ?1 AND upload_state NOT IN (3, 5)",
            params![stream_id],
            |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            },
        ),
    )
}

pub(crate) fn set_kvs_fragment_number(conn: &Connection, id: FragmentId, number: &str) -> Result<bool, StoreError> {
    let n = db(
        "set KVS fragment number",
        conn.execute(
            "UPDATE fragment SET kvs_fragment_number = ?2 WHERE id = ?1",
            params![id.0 as i64, number],
        ),
    )?;
    Ok(n == 1)
}

// ---- retention ----

/// A fragment chosen for deletion.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Doomed {
    pub id: u64,
    pub stream_id: i64,
    pub bytes: u64,
    /// Not yet persisted by KVS on a stream that uploads.
    pub not_uploaded: bool,
}

const DONE_STATES: &str = "(3, 5)"; // persisted, skipped

/// Fragments that ended before `cutoff` and may go by age: all of them on
/// streams without upload, only uploaded (or skipped) ones otherwise.
pub(crate) fn aged_fragments(conn: &Connection, cutoff: Timestamp, limit: usize) -> Result<Vec<Doomed>, StoreError> {
    let mut st = db(
        "aged fragments",
        conn.prepare_cached(&format!(
            "SELECT f.id, f.stream_id, f.payload_len FROM fragment f JOIN stream s ON s.id = f.stream_id
             WHERE f.end_ns < ?1 AND (s.uploads = 0 OR f.upload_state IN {DONE_STATES})
             ORDER BY f.start_ns LIMIT ?2"
        )),
    )?;
    let rows = db(
        "aged fragments",
        st.query_map(params![ns(cutoff), limit as i64], |r| {
            Ok(Doomed {
                id: r.get::<_, i64>(0)? as u64,
                stream_id: r.get(1)?,
                bytes: r.get::<_, i64>(2)? as u64,
                not_uploaded: false,
            })
        }),
    )?;
    db("aged fragments", rows.collect())
}

/// Persisted fragments of streams that upload.
pub(crate) fn persisted_fragments(conn: &Connection, limit: usize) -> Result<Vec<Doomed>, StoreError> {
    let mut st = db(
        "persisted fragments",
        conn.prepare_cached(
            "SELECT f.id, f.stream_id, f.payload_len FROM fragment f JOIN stream s ON s.id = f.stream_id
             WHERE f.upload_state = 3 AND s.uploads = 1 ORDER BY f.start_ns LIMIT ?1",
        ),
    )?;
    let rows = db(
        "persisted fragments",
        st.query_map([limit as i64], |r| {
            Ok(Doomed {
                id: r.get::<_, i64>(0)? as u64,
                stream_id: r.get(1)?,
                bytes: r.get::<_, i64>(2)? as u64,
                not_uploaded: false,
            })
        }),
    )?;
    db("persisted fragments", rows.collect())
}

/// Keep the next fragment id above every id ever used, before ids leave
/// the table.
fn keep_next_id(tx: &Transaction) -> Result<(), StoreError> {
    db(
        "next fragment id",
        tx.execute(
            "INSERT INTO meta (key, value) SELECT 'next_fragment_id', COALESCE(MAX(id), 0) + 1 FROM fragment WHERE 1
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
            [],
        ),
    )?;
    Ok(())
}

/// Delete fragment rows (their bytes stay until their segment goes).
pub(crate) fn delete_fragments(conn: &mut Connection, ids: &[u64]) -> Result<(), StoreError> {
    durably(conn, "delete fragments", |tx| {
        keep_next_id(tx)?;
        let mut st = db(
            "delete fragments",
            tx.prepare_cached("DELETE FROM fragment WHERE id = ?1"),
        )?;
        for id in ids {
            db("delete fragments", st.execute([*id as i64]))?;
        }
        Ok(())
    })
}

/// A segment and what deleting it would delete.
#[derive(Debug, Clone)]
pub(crate) struct SegmentRow {
    pub id: i64,
    pub stream_id: i64,
    pub path: String,
    pub len: u64,
    pub start: Timestamp,
    pub fragments: u64,
    pub bytes: u64,
    pub not_uploaded: u64,
}

/// Segments, oldest first.
pub(crate) fn segments(conn: &Connection) -> Result<Vec<SegmentRow>, StoreError> {
    let mut st = db(
        "segments",
        conn.prepare_cached(&format!(
            "SELECT g.id, g.stream_id, g.path, g.len, g.start_ns,
                 (SELECT COUNT(*) FROM fragment f WHERE f.segment_id = g.id),
                 (SELECT COALESCE(SUM(payload_len), 0) FROM fragment f WHERE f.segment_id = g.id),
                 (SELECT COUNT(*) FROM fragment f WHERE f.segment_id = g.id AND s.uploads = 1
                     AND f.upload_state NOT IN {DONE_STATES})
             FROM segment g JOIN stream s ON s.id = g.stream_id ORDER BY g.start_ns, g.id"
        )),
    )?;
    let rows = db(
        "segments",
        st.query_map([], |r| {
            Ok(SegmentRow {
                id: r.get(0)?,
                stream_id: r.get(1)?,
                path: r.get(2)?,
                len: r.get::<_, i64>(3)? as u64,
                start: ts(r.get(4)?),
                fragments: r.get::<_, i64>(5)? as u64,
                bytes: r.get::<_, i64>(6)? as u64,
                not_uploaded: r.get::<_, i64>(7)? as u64,
            })
        }),
    )?;
    db("segments", rows.collect())
}

/// Delete a segment's fragment rows and its row, and note its file as
/// pending deletion, durably; the file goes after.
pub(crate) fn delete_segment(conn: &mut Connection, id: i64, path: &str) -> Result<(), StoreError> {
    durably(conn, "delete segment", |tx| {
        keep_next_id(tx)?;
        db(
            "delete segment",
            tx.execute("INSERT OR IGNORE INTO pending_deletion (path) VALUES (?1)", [path]),
        )?;
        db(
            "delete segment",
            tx.execute("DELETE FROM fragment WHERE segment_id = ?1", [id]),
        )?;
        db("delete segment", tx.execute("DELETE FROM segment WHERE id = ?1", [id]))?;
        Ok(())
    })
}

/// Segment files whose rows are gone but which may still exist.
pub(crate) fn pending_deletions(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut st = db(
        "pending deletions",
        conn.prepare_cached("SELECT path FROM pending_deletion"),
    )?;
    let rows = db("pending deletions", st.query_map([], |r| r.get(0)))?;
    db("pending deletions", rows.collect())
}

/// The files are gone.
pub(crate) fn clear_pending(conn: &Connection, paths: &[String]) -> Result<(), StoreError> {
    let mut st = db(
        "pending deletions",
        conn.prepare_cached("DELETE FROM pending_deletion WHERE path = ?1"),
    )?;
    for p in paths {
        db("pending deletions", st.execute([p]))?;
    }
    Ok(())
}

// ---- recovery ----

/// A committed record's place in its segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordPlace {
    pub id: u64,
    pub offset: u64,
    pub record_len: u64,
    pub payload_len: u64,
    pub crc: u32,
}

/// Segment rows with their lengths (recovery: before any rows are touched).
pub(crate) fn segment_lens(conn: &Connection) -> Result<Vec<(i64, i64, String, u64)>, StoreError> {
    let mut st = db(
        "segments",
        conn.prepare_cached("SELECT id, stream_id, path, len FROM segment ORDER BY id"),
    )?;
    let rows = db(
        "segments",
        st.query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? as u64))
        }),
    )?;
    db("segments", rows.collect())
}

/// A segment's records, by offset.
pub(crate) fn segment_records(conn: &Connection, segment_id: i64) -> Result<Vec<RecordPlace>, StoreError> {
    let mut st = db(
        "segment records",
        conn.prepare_cached(
            "SELECT id, offset, record_len, payload_len, crc FROM fragment WHERE segment_id = ?1 ORDER BY offset",
        ),
    )?;
    let rows = db(
        "segment records",
        st.query_map([segment_id], |r| {
            Ok(RecordPlace {
                id: r.get::<_, i64>(0)? as u64,
                offset: r.get::<_, i64>(1)? as u64,
                record_len: r.get::<_, i64>(2)? as u64,
                payload_len: r.get::<_, i64>(3)? as u64,
                crc: r.get::<_, i64>(4)? as u32,
            })
        }),
    )?;
    db("segment records", rows.collect())
}

pub(crate) fn set_segment_len(conn: &Connection, id: i64, len: u64) -> Result<(), StoreError> {
    db(
        "segment length",
        conn.execute("UPDATE segment SET len = ?2 WHERE id = ?1", params![id, len as i64]),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_fragment_is_found_by_id_not_by_reading_the_whole_stream() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open(&dir.path().join("index.sqlite")).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {}", next_fragment_sql()))
            .unwrap()
            .query_map(params![1, 1], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let plan = plan.join("; ");
        assert!(plan.contains("SEARCH f USING INTEGER PRIMARY KEY (rowid>?)"), "{plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    }
}
