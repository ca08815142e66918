//! An archive held in memory: for playback's own tests, and for anything
//! that wants to serve frames without a store.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use fragmenter::{Frame, Timestamp, Track};

use super::{Archive, ArchiveError, ArchivedFragment, FragmentSummary, LiveFeed, LiveItem, StreamSummary};

#[derive(Default)]
struct StreamLog {
    tracks: Vec<Track>,
    /// Every item ever written, for live feeds.
    log: Vec<LiveItem>,
    /// Index in `log` of the open fragment's Start.
    open_at: Option<usize>,
    open_frames: Vec<Frame>,
    open: Option<(u64, Timestamp)>,
    complete: Vec<ArchivedFragment>,
}

#[derive(Default)]
struct Inner {
    streams: BTreeMap<String, StreamLog>,
    next_id: u64,
}

/// See the module docs. Cloning shares the archive.
#[derive(Clone, Default)]
pub struct MemoryArchive {
    inner: Arc<(Mutex<Inner>, Condvar)>,
}

impl MemoryArchive {
    /// An empty archive.
    pub fn new() -> Self {
        MemoryArchive::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Add (or replace the tracks of) a stream.
    pub fn add_stream(&self, name: &str, tracks: &[Track]) {
        self.lock().streams.entry(name.to_owned()).or_default().tracks = tracks.to_vec();
    }

    /// Open a fragment starting at `start`; returns its id.
    ///
    /// # Panics
    /// If the stream does not exist or a fragment is already open.
    pub fn begin_fragment(&self, stream: &str, start: Timestamp) -> u64 {
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let s = inner.streams.get_mut(stream).expect("stream exists");
        assert!(s.open.is_none(), "a fragment is already open");
        s.open = Some((id, start));
        s.open_at = Some(s.log.len());
        let tracks: Arc<[Track]> = s.tracks.clone().into();
        s.log.push(LiveItem::Start { id, start, tracks });
        drop(inner);
        self.inner.1.notify_all();
        id
    }

    /// Add a frame to the open fragment.
    pub fn push_frame(&self, stream: &str, frame: Frame) {
        let mut inner = self.lock();
        let s = inner.streams.get_mut(stream).expect("stream exists");
        assert!(s.open.is_some(), "no open fragment");
        s.open_frames.push(frame.clone());
        s.log.push(LiveItem::Frame(frame));
        drop(inner);
        self.inner.1.notify_all();
    }

    /// Close the open fragment: it becomes durable.
    pub fn end_fragment(&self, stream: &str) -> FragmentSummary {
        let mut inner = self.lock();
        let s = inner.streams.get_mut(stream).expect("stream exists");
        let (id, start) = s.open.take().expect("an open fragment");
        s.open_at = None;
        let frames = std::mem::take(&mut s.open_frames);
        let end = frames.iter().map(|f| f.pts + f.duration).max().unwrap_or(start);
        let summary = FragmentSummary {
            id,
            start,
            end,
            frames: frames.len() as u32,
            bytes: frames.iter().map(|f| f.data.len() as u64).sum(),
        };
        s.complete.push(ArchivedFragment {
            summary,
            tracks: s.tracks.clone().into(),
            frames,
        });
        s.log.push(LiveItem::End(summary));
        drop(inner);
        self.inner.1.notify_all();
        summary
    }

    /// Drop the open fragment.
    pub fn abort_fragment(&self, stream: &str) {
        let mut inner = self.lock();
        let s = inner.streams.get_mut(stream).expect("stream exists");
        let (id, _) = s.open.take().expect("an open fragment");
        s.open_at = None;
        s.open_frames.clear();
        s.log.push(LiveItem::Aborted(id));
        drop(inner);
        self.inner.1.notify_all();
    }

    /// A whole fragment at once; `frames` must be non-empty.
    pub fn add_fragment(&self, stream: &str, frames: Vec<Frame>) -> FragmentSummary {
        let start = frames.iter().map(|f| f.pts).min().expect("frames");
        self.begin_fragment(stream, start);
        for f in frames {
            self.push_frame(stream, f);
        }
        self.end_fragment(stream)
    }

    /// Forget a complete fragment (as retention would).
    pub fn delete_fragment(&self, stream: &str, id: u64) {
        if let Some(s) = self.lock().streams.get_mut(stream) {
            s.complete.retain(|f| f.summary.id != id);
        }
    }
}

fn ranges(frags: &[ArchivedFragment]) -> Vec<(Timestamp, Timestamp)> {
    // Fragments further apart than a second leave a gap, as in the store.
    let mut out: Vec<(Timestamp, Timestamp)> = Vec::new();
    for f in frags {
        match out.last_mut() {
            Some(last) if f.summary.start.saturating_since(last.1) <= Duration::from_secs(1) => {
                last.1 = last.1.max(f.summary.end)
            }
            _ => out.push((f.summary.start, f.summary.end)),
        }
    }
    out
}

impl Archive for MemoryArchive {
    fn streams(&self) -> Result<Vec<StreamSummary>, ArchiveError> {
        Ok(self
            .lock()
            .streams
            .iter()
            .map(|(name, s)| StreamSummary {
                name: name.clone(),
                tracks: s.tracks.clone(),
                ranges: ranges(&s.complete),
                recording: s.open.is_some(),
            })
            .collect())
    }

    fn fragments(&self, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<FragmentSummary>, ArchiveError> {
        let inner = self.lock();
        let s = inner
            .streams
            .get(stream)
            .ok_or_else(|| ArchiveError::UnknownStream(stream.to_owned()))?;
        Ok(s.complete
            .iter()
            .map(|f| f.summary)
            .filter(|f| f.end > start && f.start < end)
            .collect())
    }

    fn read_fragment(&self, stream: &str, id: u64) -> Result<ArchivedFragment, ArchiveError> {
        let inner = self.lock();
        let s = inner
            .streams
            .get(stream)
            .ok_or_else(|| ArchiveError::UnknownStream(stream.to_owned()))?;
        s.complete
            .iter()
            .find(|f| f.summary.id == id)
            .cloned()
            .ok_or_else(|| ArchiveError::UnknownFragment {
                stream: stream.to_owned(),
                id,
            })
    }

    fn follow(&self, stream: &str) -> Result<Box<dyn LiveFeed>, ArchiveError> {
        let inner = self.lock();
        let s = inner
            .streams
            .get(stream)
            .ok_or_else(|| ArchiveError::UnknownStream(stream.to_owned()))?;
        let at = s.open_at.unwrap_or(s.log.len());
        Ok(Box::new(MemoryFeed {
            archive: self.clone(),
            stream: stream.to_owned(),
            at,
        }))
    }
}

struct MemoryFeed {
    archive: MemoryArchive,
    stream: String,
    at: usize,
}

impl LiveFeed for MemoryFeed {
    fn next(&mut self, timeout: Duration) -> Result<Option<LiveItem>, ArchiveError> {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.archive.inner;
        let mut inner = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let s = inner
                .streams
                .get(&self.stream)
                .ok_or_else(|| ArchiveError::UnknownStream(self.stream.clone()))?;
            if let Some(item) = s.log.get(self.at) {
                self.at += 1;
                return Ok(Some(item.clone()));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            inner = cvar.wait_timeout(inner, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// A one-track sensor stream's pieces for archive tests: the track, and
/// frame `i` (100 ms apart, `size` bytes of `i`).
#[cfg(test)]
pub(crate) mod test_frames {
    use std::time::Duration;

    use bytes::Bytes;
    use fragmenter::media::{SensorCodecId, SensorKind, SensorTrack};
    use fragmenter::{Frame, Timestamp, Track, TrackId};

    pub fn track() -> Track {
        Track::new(
            TrackId::new(1).unwrap(),
            "lidar",
            SensorTrack {
                kind: SensorKind::Lidar,
                codec_id: SensorCodecId::new("O_TEST").unwrap(),
                private: Bytes::new(),
            },
        )
    }

    pub fn frame_of(i: u64, size: usize) -> Frame {
        let t = Timestamp::from_millis(1_795_651_200_000 + i * 100);
        Frame {
            track: TrackId::new(1).unwrap(),
            pts: t,
            dts: t,
            duration: Duration::from_millis(100),
            keyframe: true,
            data: Bytes::from(vec![i as u8; size]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{frame_of, track};
    use super::*;

    fn frame(i: u64) -> Frame {
        frame_of(i, 10)
    }

    #[test]
    fn a_feed_starts_at_the_open_fragment_and_sees_what_follows() {
        let a = MemoryArchive::new();
        a.add_stream("cam", &[track()]);
        a.add_fragment("cam", (0..10).map(frame).collect());
        a.begin_fragment("cam", frame(10).pts);
        a.push_frame("cam", frame(10));
        let mut feed = a.follow("cam").unwrap();
        assert!(matches!(
            feed.next(Duration::ZERO).unwrap(),
            Some(LiveItem::Start { .. })
        ));
        assert!(matches!(feed.next(Duration::ZERO).unwrap(), Some(LiveItem::Frame(_))));
        assert!(feed.next(Duration::ZERO).unwrap().is_none());
        a.end_fragment("cam");
        assert!(matches!(feed.next(Duration::ZERO).unwrap(), Some(LiveItem::End(_))));
        let all = a
            .fragments("cam", Timestamp::EPOCH, Timestamp::from_nanos(u64::MAX))
            .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].end, frame(10).pts);
        assert_eq!(a.read_fragment("cam", all[1].id).unwrap().frames.len(), 1);
        assert_eq!(a.stream("cam").unwrap().ranges, vec![(frame(0).pts, frame(11).pts)]);
        assert!(matches!(a.follow("nope"), Err(ArchiveError::UnknownStream(_))));
    }
}
