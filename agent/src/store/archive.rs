//! The store as playback's [`Archive`]: the read side, nothing more.

use std::time::Duration;

use fragmenter::Timestamp;
use playback::archive::{Archive, ArchiveError, ArchivedFragment, FragmentSummary, LiveFeed, LiveItem, StreamSummary};

use super::{Cursor, CursorFrom, CursorItem, FragmentId, FragmentMeta, Store, StoreError, StreamState};

fn archive_error(e: StoreError) -> ArchiveError {
    match e {
        StoreError::UnknownStream(name) => ArchiveError::UnknownStream(name),
        // A bad name cannot be a stream we hold.
        StoreError::BadStreamName { name, .. } => ArchiveError::UnknownStream(name),
        e => ArchiveError::Store(e.to_string()),
    }
}

fn summary(m: &FragmentMeta) -> FragmentSummary {
    FragmentSummary {
        id: m.id.0,
        start: m.start,
        end: m.end,
        frames: m.frames,
        bytes: m.bytes,
    }
}

impl Archive for Store {
    fn streams(&self) -> Result<Vec<StreamSummary>, ArchiveError> {
        Ok(Store::streams(self)
            .map_err(archive_error)?
            .into_iter()
            .map(|s| StreamSummary {
                recording: !matches!(s.state, StreamState::Idle),
                name: s.name,
                tracks: s.tracks,
                ranges: s.ranges,
            })
            .collect())
    }

    fn stream(&self, name: &str) -> Result<StreamSummary, ArchiveError> {
        let s = Store::stream(self, name).map_err(archive_error)?;
        Ok(StreamSummary {
            recording: !matches!(s.state, StreamState::Idle),
            name: s.name,
            tracks: s.tracks,
            ranges: s.ranges,
        })
    }

    fn fragments(&self, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<FragmentSummary>, ArchiveError> {
        Ok(Store::fragments(self, stream, start, end)
            .map_err(archive_error)?
            .iter()
            .map(summary)
            .collect())
    }

    fn read_fragment(&self, stream: &str, id: u64) -> Result<ArchivedFragment, ArchiveError> {
        let unknown = || ArchiveError::UnknownFragment {
            stream: stream.to_owned(),
            id,
        };
        let f = match Store::read_fragment(self, FragmentId(id)) {
            Ok(f) => f,
            Err(StoreError::FragmentNotFound(_)) => return Err(unknown()),
            Err(e) => return Err(archive_error(e)),
        };
        // Ids are store-wide: one stream's URL must not reach another's media.
        if f.meta.stream != stream {
            return Err(unknown());
        }
        Ok(ArchivedFragment {
            summary: summary(&f.meta),
            tracks: f.tracks,
            frames: f.frames,
        })
    }

    fn follow(&self, stream: &str) -> Result<Box<dyn LiveFeed>, ArchiveError> {
        let cursor = self.cursor(stream, CursorFrom::Live).map_err(archive_error)?;
        Ok(Box::new(StoreFeed(cursor)))
    }
}

struct StoreFeed(Cursor);

impl LiveFeed for StoreFeed {
    fn next(&mut self, timeout: Duration) -> Result<Option<LiveItem>, ArchiveError> {
        Ok(self
            .0
            .next_blocking(timeout)
            .map_err(archive_error)?
            .map(|item| match item {
                CursorItem::FragmentStart(h) => LiveItem::Start {
                    id: h.id.0,
                    start: h.start,
                    tracks: h.tracks,
                },
                CursorItem::Frame(f) => LiveItem::Frame(f),
                CursorItem::FragmentEnd(m) => LiveItem::End(summary(&m)),
                CursorItem::FragmentAborted(id) => LiveItem::Aborted(id.0),
            }))
    }
}
