//! Recorded ranges for on-demand playback: the fragments of a time span,
//! grouped into runs without a gap, each with the tracks it was written with.

use std::time::Duration;

use fragmenter::Timestamp;

use crate::archive::{Archive, ArchiveError, FragmentSummary};
use crate::live::GAP;
use crate::segments::Tracks;

/// The most segments one on-demand playlist lists (24 hours of 2 s
/// fragments): larger ones are refused, asking for a shorter span.
pub const MAX_SEGMENTS: usize = 43_200;

/// A run of fragments without a gap longer than [`GAP`].
#[derive(Clone, Debug)]
pub struct Run {
    /// The fragment whose tracks make the run's init segment (its first).
    pub init_id: u64,
    /// Those tracks.
    pub tracks: Tracks,
    /// The fragments, oldest first.
    pub fragments: Vec<FragmentSummary>,
}

impl Run {
    /// First frame of the run.
    pub fn start(&self) -> Timestamp {
        self.fragments.first().map_or(Timestamp::EPOCH, |f| f.start)
    }

    /// End of its last fragment.
    pub fn end(&self) -> Timestamp {
        self.fragments.last().map_or(Timestamp::EPOCH, |f| f.end)
    }

    /// `end - start`.
    pub fn duration(&self) -> Duration {
        self.end() - self.start()
    }
}

/// Why no runs could be listed.
#[derive(Debug, thiserror::Error)]
pub enum RecordedError {
    /// The archive failed or does not know the stream.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// Nothing recorded in the span.
    #[error("nothing recorded in stream {stream:?} between {start} and {end}")]
    Empty {
        /// The stream.
        stream: String,
        /// Span start.
        start: Timestamp,
        /// Span end.
        end: Timestamp,
    },
    /// Too many fragments for one playlist.
    #[error("{count} fragments between {start} and {end}: at most {MAX_SEGMENTS} fit one playlist; ask for a shorter span with start and end")]
    TooLong {
        /// Fragments found.
        count: usize,
        /// Span start.
        start: Timestamp,
        /// Span end.
        end: Timestamp,
    },
}

/// The runs of `stream` in `[start, end)`. Reads the first fragment of each
/// run for its tracks (a gap is where a writer may have restarted with
/// other tracks). Blocking: call it from the blocking pool.
pub fn runs(archive: &dyn Archive, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<Run>, RecordedError> {
    let fragments = archive.fragments(stream, start, end)?;
    if fragments.is_empty() {
        return Err(RecordedError::Empty {
            stream: stream.to_owned(),
            start,
            end,
        });
    }
    if fragments.len() > MAX_SEGMENTS {
        return Err(RecordedError::TooLong {
            count: fragments.len(),
            start,
            end,
        });
    }
    let mut runs: Vec<Run> = Vec::new();
    for f in fragments {
        match runs.last_mut() {
            Some(run) if f.start.saturating_since(run.end()) <= GAP && f.start >= run.start() => run.fragments.push(f),
            _ => {
                let tracks = match archive.read_fragment(stream, f.id) {
                    Ok(frag) => frag.tracks,
                    // Deleted by retention meanwhile: skip it.
                    Err(ArchiveError::UnknownFragment { .. }) => continue,
                    Err(e) => return Err(e.into()),
                };
                runs.push(Run {
                    init_id: f.id,
                    tracks,
                    fragments: vec![f],
                });
            }
        }
    }
    Ok(runs)
}
