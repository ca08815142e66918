//! The read side of the store, as playback sees it.
//!
//! `playback` never depends on `agent`: the agent implements [`Archive`] for
//! its store, and tests use [`memory::MemoryArchive`]. The trait is
//! synchronous (the store is); HTTP handlers call it from
//! `tokio::task::spawn_blocking`.

pub mod cache;
pub mod memory;

use std::sync::Arc;
use std::time::Duration;

use fragmenter::{Frame, Timestamp, Track};

/// Why the archive could not answer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// No stream of that name.
    #[error("no stream named {0:?}")]
    UnknownStream(String),
    /// No fragment of that id in the stream (never was, or deleted by retention).
    #[error("no fragment {id} in stream {stream:?}")]
    UnknownFragment {
        /// The stream asked for.
        stream: String,
        /// The fragment id asked for.
        id: u64,
    },
    /// The store failed (I/O, corruption); the message names what.
    #[error("store: {0}")]
    Store(String),
}

/// A stream and what is recorded of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamSummary {
    /// Name (the store guarantees it is a safe path component).
    pub name: String,
    /// The tracks of its latest writer.
    pub tracks: Vec<Track>,
    /// Recorded ranges, oldest first (gaps between them are real gaps).
    pub ranges: Vec<(Timestamp, Timestamp)>,
    /// Whether a writer is recording now.
    pub recording: bool,
}

/// A complete, durable fragment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentSummary {
    /// Store-wide id, increasing in time within a stream.
    pub id: u64,
    /// The first frame's presentation time.
    pub start: Timestamp,
    /// max(pts + duration) of its frames.
    pub end: Timestamp,
    /// Number of frames.
    pub frames: u32,
    /// Payload bytes.
    pub bytes: u64,
}

/// A fragment read back.
#[derive(Clone, Debug)]
pub struct ArchivedFragment {
    /// Its description.
    pub summary: FragmentSummary,
    /// The tracks it was written with.
    pub tracks: Arc<[Track]>,
    /// Its frames in write order (interleaved by decode time).
    pub frames: Vec<Frame>,
}

/// What a live feed yields: per fragment a start, its frames, an end.
#[derive(Clone, Debug)]
pub enum LiveItem {
    /// A fragment begins (not yet durable).
    Start {
        /// Its id (its `FragmentSummary::id` once it ends).
        id: u64,
        /// Its first frame's presentation time.
        start: Timestamp,
        /// The tracks its frames belong to.
        tracks: Arc<[Track]>,
    },
    /// A frame of the current fragment.
    Frame(Frame),
    /// The current fragment is complete and durable.
    End(FragmentSummary),
    /// The current fragment was dropped; forget what was received of it.
    Aborted(u64),
}

/// A reader at the live edge of one stream.
pub trait LiveFeed: Send {
    /// The next item, or `Ok(None)` if nothing came within `timeout`.
    fn next(&mut self, timeout: Duration) -> Result<Option<LiveItem>, ArchiveError>;
}

/// The read side of the store.
pub trait Archive: Send + Sync + 'static {
    /// Every stream held.
    fn streams(&self) -> Result<Vec<StreamSummary>, ArchiveError>;

    /// One stream.
    fn stream(&self, name: &str) -> Result<StreamSummary, ArchiveError> {
        self.streams()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ArchiveError::UnknownStream(name.to_owned()))
    }

    /// Complete fragments of `stream` overlapping `[start, end)`, oldest first.
    fn fragments(&self, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<FragmentSummary>, ArchiveError>;

    /// One complete fragment with its frames.
    fn read_fragment(&self, stream: &str, id: u64) -> Result<ArchivedFragment, ArchiveError>;

    /// The complete fragment of `stream` just before `fragment` (the
    /// highest id below its own) that ends less than `within` before it
    /// starts, if any.
    fn previous(
        &self,
        stream: &str,
        fragment: &FragmentSummary,
        within: Duration,
    ) -> Result<Option<FragmentSummary>, ArchiveError> {
        let from = fragment.start.checked_sub(within).unwrap_or(Timestamp::EPOCH);
        let before = self.fragments(stream, from, fragment.start)?;
        Ok(before.into_iter().filter(|f| f.id < fragment.id).max_by_key(|f| f.id))
    }

    /// A feed from the fragment being written now (from its first frame),
    /// then everything after it.
    fn follow(&self, stream: &str) -> Result<Box<dyn LiveFeed>, ArchiveError>;
}
