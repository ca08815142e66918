//! A small cache of fragments read back, in front of any [`Archive`].
//!
//! Players fetch the same recorded segment many times (several viewers,
//! DASH's per-track requests, clip range requests, retries); each read
//! costs a disk read, a CRC over the payload and an allocation. Fragments
//! are immutable once complete, so the frames read once serve every later
//! request until they are evicted (least recently used first, by bytes).
//! A fragment deleted by retention can still be served from here until it
//! is evicted; playlists, built from the index, no longer name it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fragmenter::Timestamp;

use super::{Archive, ArchiveError, ArchivedFragment, FragmentSummary, LiveFeed, StreamSummary};

struct Entry {
    fragment: ArchivedFragment,
    bytes: usize,
    used: u64,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<(String, u64), Entry>,
    bytes: usize,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// See the module docs.
pub struct CachedArchive {
    inner: Arc<dyn Archive>,
    budget: usize,
    lru: Mutex<Lru>,
}

impl CachedArchive {
    /// Cache up to `budget` payload bytes of fragments read from `inner`.
    pub fn new(inner: Arc<dyn Archive>, budget: usize) -> Self {
        CachedArchive {
            inner,
            budget,
            lru: Mutex::new(Lru::default()),
        }
    }

    /// (hits, misses) so far.
    pub fn hit_counts(&self) -> (u64, u64) {
        let l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        (l.hits, l.misses)
    }

    fn lookup(&self, stream: &str, id: u64) -> Option<ArchivedFragment> {
        let mut l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        l.clock += 1;
        let now = l.clock;
        match l.entries.get_mut(&(stream.to_owned(), id)) {
            Some(e) => {
                e.used = now;
                let f = e.fragment.clone();
                l.hits += 1;
                Some(f)
            }
            None => {
                l.misses += 1;
                None
            }
        }
    }

    fn insert(&self, stream: &str, fragment: &ArchivedFragment) {
        let bytes: usize = fragment.frames.iter().map(|f| f.data.len()).sum();
        // One huge fragment must not flush everything else.
        if bytes > self.budget / 2 {
            return;
        }
        let mut l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        while l.bytes + bytes > self.budget {
            let Some(oldest) = l.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(e) = l.entries.remove(&oldest) {
                l.bytes -= e.bytes;
            }
        }
        l.clock += 1;
        let used = l.clock;
        let key = (stream.to_owned(), fragment.summary.id);
        if let Some(old) = l.entries.insert(
            key,
            Entry {
                fragment: fragment.clone(),
                bytes,
                used,
            },
        ) {
            l.bytes -= old.bytes;
        }
        l.bytes += bytes;
    }
}

impl Archive for CachedArchive {
    fn streams(&self) -> Result<Vec<StreamSummary>, ArchiveError> {
        self.inner.streams()
    }

    fn stream(&self, name: &str) -> Result<StreamSummary, ArchiveError> {
        self.inner.stream(name)
    }

    fn fragments(&self, stream: &str, start: Timestamp, end: Timestamp) -> Result<Vec<FragmentSummary>, ArchiveError> {
        self.inner.fragments(stream, start, end)
    }

    fn read_fragment(&self, stream: &str, id: u64) -> Result<ArchivedFragment, ArchiveError> {
        if let Some(f) = self.lookup(stream, id) {
            return Ok(f);
        }
        let f = self.inner.read_fragment(stream, id)?;
        if self.budget > 0 {
            self.insert(stream, &f);
        }
        Ok(f)
    }

    fn follow(&self, stream: &str) -> Result<Box<dyn LiveFeed>, ArchiveError> {
        self.inner.follow(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::memory::test_frames::{frame_of, track};
    use crate::archive::memory::MemoryArchive;

    fn archive_with(n: u64, size: usize) -> (MemoryArchive, Vec<u64>) {
        let a = MemoryArchive::new();
        a.add_stream("s", &[track()]);
        // Ten frames apart: one fragment each, a second apart.
        let ids = (0..n)
            .map(|i| a.add_fragment("s", vec![frame_of(i * 10, size)]).id)
            .collect();
        (a, ids)
    }

    #[test]
    fn repeated_reads_hit_and_the_budget_evicts_the_least_recently_used() {
        let (mem, ids) = archive_with(4, 100);
        let c = CachedArchive::new(Arc::new(mem.clone()), 250);
        assert_eq!(c.read_fragment("s", ids[0]).unwrap().frames[0].data[0], 0);
        assert_eq!(c.read_fragment("s", ids[1]).unwrap().frames[0].data[0], 10);
        c.read_fragment("s", ids[0]).unwrap();
        assert_eq!(c.hit_counts(), (1, 2));
        // A third fragment exceeds 250 bytes: the least recently used (1) goes.
        c.read_fragment("s", ids[2]).unwrap();
        mem.delete_fragment("s", ids[1]);
        mem.delete_fragment("s", ids[0]);
        assert!(
            c.read_fragment("s", ids[1]).is_err(),
            "1 was evicted, so the deletion shows"
        );
        assert!(
            c.read_fragment("s", ids[0]).is_ok(),
            "0 was used recently and stays cached"
        );
        // Stream boundaries hold in the cache too.
        assert!(c.read_fragment("other", ids[2]).is_err());
    }

    #[test]
    fn fragments_over_half_the_budget_are_not_cached() {
        let (mem, ids) = archive_with(1, 200);
        let c = CachedArchive::new(Arc::new(mem), 300);
        c.read_fragment("s", ids[0]).unwrap();
        c.read_fragment("s", ids[0]).unwrap();
        assert_eq!(c.hit_counts(), (0, 2));
    }
}
