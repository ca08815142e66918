//! What can go wrong in the store, each error naming what was expected, what
//! came, and where (stream, fragment, file and byte offset).

use std::io;
use std::path::PathBuf;

use super::{DenyReason, FragmentId};

/// An error from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A stream name outside `[A-Za-z0-9_.-]{1,256}` (or `.`/`..`).
    #[error(
        "stream name {name:?} is invalid: {reason}; expected 1 to 256 characters of A-Z a-z 0-9 _ . - (not only dots)"
    )]
    BadStreamName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No stream of that name has been opened in this store.
    #[error("stream {0:?} is not in the store")]
    UnknownStream(String),
    /// A second writer for a stream that already has one.
    #[error("stream {0:?} already has a writer")]
    StreamBusy(String),
    /// Tracks that cannot be recorded (none, more than three, misnumbered).
    #[error("stream {stream:?}: {detail}")]
    BadTracks {
        /// The stream.
        stream: String,
        /// What is wrong.
        detail: String,
    },
    /// A fragment id that is not (or no longer) in the index.
    #[error("fragment {0} is not in the store (never written, or deleted by retention)")]
    FragmentNotFound(FragmentId),
    /// A new fragment was refused: the stream is in the `Denied` state.
    #[error("stream {stream:?}: new media refused: {reason}")]
    Denied {
        /// The stream.
        stream: String,
        /// Why.
        reason: DenyReason,
    },
    /// Fragment events out of order (a frame outside a fragment, an unknown track…).
    #[error("stream {stream:?}: {detail}")]
    BadEvent {
        /// The stream.
        stream: String,
        /// What arrived and what was expected.
        detail: String,
    },
    /// Stored bytes that do not match their index (CRC, trailer, length).
    #[error("{}: corrupt at byte {offset}: {detail}", path.display())]
    Corrupt {
        /// The segment file.
        path: PathBuf,
        /// Byte offset in it.
        offset: u64,
        /// What did not match.
        detail: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path.
        context: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// An index (SQLite) operation failed.
    #[error("index: {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// Another process holds the store.
    #[error("store {} is in use by another process (lock file {})", path.display(), path.join("LOCK").display())]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// The index was written by a newer edge-agent.
    #[error(
        "index schema version {found} is newer than this edge-agent supports ({supported}); refusing to downgrade"
    )]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Latest version known here.
        supported: i64,
    },
}

impl StoreError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn db(context: impl Into<String>, source: rusqlite::Error) -> Self {
        StoreError::Db {
            context: context.into(),
            source,
        }
    }

    /// New media was refused by policy or a full disk; the writer stays
    /// usable and recording resumes by itself when space returns. Keep
    /// feeding events.
    pub fn is_denied(&self) -> bool {
        matches!(self, StoreError::Denied { .. })
    }

    /// The disk (or the index on it) is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io { source, .. } => is_enospc(source),
            StoreError::Db { source, .. } => is_sqlite_full(source),
            StoreError::Denied {
                reason: DenyReason::DiskFull { .. },
                ..
            } => true,
            _ => false,
        }
    }
}

/// ENOSPC or EDQUOT.
pub(crate) fn is_enospc(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
        || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// SQLITE_FULL.
pub(crate) fn is_sqlite_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}
