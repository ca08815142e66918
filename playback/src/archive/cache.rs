//! A small cache of fragments read back, in front of any [`Archive`].
//!
//! Players fetch the same recorded segment many times (several viewers,
//! DASH's per-track requests, clip range requests, retries); each read
//! costs a disk read, a CRC over the payload and an allocation. Fragments
//! are immutable once complete, so the frames read once serve every later
//! request until they are evicted (least recently used first, by bytes).
//! A fragment deleted by retention can still be served from here until it
//! is evicted or the cache is cleared ([`CachedArchive::clear`]: the agent
//! does so after any deletion, since a mapped file keeps its disk space);
//! playlists, built from the index, no longer name it.
//!
//! The budget counts heap. Frames that map the segment file
//! ([`crate::mapped`], what the store gives) are the kernel's page cache,
//! not heap: they count against a second, larger cap, [`MAPPED_PER_BUDGET`]
//! times the budget, because their pages, once sent, stay mapped and show
//! in the process's RSS (as file pages the kernel can reclaim) while the
//! entry lives. Each entry also holds a mapping, so entries are capped at
//! [`MAX_ENTRIES`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use fragmenter::Timestamp;

use super::{Archive, ArchiveError, ArchivedFragment, FragmentSummary, LiveFeed, StreamSummary};
use crate::mapped;

/// At most this many fragments are cached (each holds a mapping).
pub const MAX_ENTRIES: usize = 256;
/// File-backed payload bytes may reach this many times the heap budget
/// (64 MB for the default 8 MB).
pub const MAPPED_PER_BUDGET: usize = 8;

struct Entry {
    fragment: ArchivedFragment,
    cost: Cost,
    used: u64,
    /// The answer of [`Archive::previous`] for it, once asked: segment
    /// rebuilds ask on every request.
    previous: Option<Option<FragmentSummary>>,
}

/// What an entry holds: heap bytes, file-backed bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Cost {
    heap: usize,
    mapped: usize,
}

#[derive(Default)]
struct Lru {
    entries: HashMap<(String, u64), Entry>,
    held: Cost,
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
    /// Cache fragments read from `inner` within `budget` bytes of heap (and
    /// [`MAPPED_PER_BUDGET`] times that of file-backed payload).
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

    /// Forget every entry (their mappings go with them).
    pub fn clear(&self) {
        let mut l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        l.entries.clear();
        l.held = Cost::default();
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
        let cost = cost(fragment);
        let mapped_budget = self.budget.saturating_mul(MAPPED_PER_BUDGET);
        // One huge fragment must not flush everything else.
        if cost.heap > self.budget / 2 || cost.mapped > mapped_budget / 2 {
            return;
        }
        let mut l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        while l.held.heap + cost.heap > self.budget
            || l.held.mapped + cost.mapped > mapped_budget
            || l.entries.len() >= MAX_ENTRIES
        {
            let Some(oldest) = l.entries.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else {
                break;
            };
            if let Some(e) = l.entries.remove(&oldest) {
                l.held.heap -= e.cost.heap;
                l.held.mapped -= e.cost.mapped;
            }
        }
        l.clock += 1;
        let used = l.clock;
        let key = (stream.to_owned(), fragment.summary.id);
        if let Some(old) = l.entries.insert(
            key,
            Entry {
                fragment: fragment.clone(),
                cost,
                used,
                previous: None,
            },
        ) {
            l.held.heap -= old.cost.heap;
            l.held.mapped -= old.cost.mapped;
        }
        l.held.heap += cost.heap;
        l.held.mapped += cost.mapped;
    }
}

/// What caching a fragment costs: its frame table and in-memory payloads
/// as heap, its file-backed payloads as mapped.
fn cost(fragment: &ArchivedFragment) -> Cost {
    let mut c = Cost::default();
    for f in &fragment.frames {
        c.heap += std::mem::size_of_val(f);
        if mapped::is_mapped(&f.data) {
            c.mapped += f.data.len();
        } else {
            c.heap += f.data.len();
        }
    }
    c
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

    fn previous(
        &self,
        stream: &str,
        fragment: &FragmentSummary,
        within: std::time::Duration,
    ) -> Result<Option<FragmentSummary>, ArchiveError> {
        let key = (stream.to_owned(), fragment.id);
        let known = {
            let l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
            l.entries.get(&key).and_then(|e| e.previous)
        };
        if let Some(p) = known {
            return Ok(p);
        }
        let p = self.inner.previous(stream, fragment, within)?;
        let mut l = self.lru.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = l.entries.get_mut(&key) {
            e.previous = Some(p);
        }
        Ok(p)
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
        let cost = cost(&mem.read_fragment("s", ids[0]).unwrap()).heap;
        let c = CachedArchive::new(Arc::new(mem.clone()), cost * 5 / 2);
        assert_eq!(c.read_fragment("s", ids[0]).unwrap().frames[0].data[0], 0);
        assert_eq!(c.read_fragment("s", ids[1]).unwrap().frames[0].data[0], 10);
        c.read_fragment("s", ids[0]).unwrap();
        assert_eq!(c.hit_counts(), (1, 2));
        // A third fragment exceeds the budget: the least recently used (1) goes.
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
        // Cleared, the deletion shows.
        c.clear();
        assert!(c.read_fragment("s", ids[0]).is_err());
    }

    #[test]
    fn fragments_over_half_the_budget_are_not_cached() {
        let (mem, ids) = archive_with(1, 200);
        let cost = cost(&mem.read_fragment("s", ids[0]).unwrap()).heap;
        let c = CachedArchive::new(Arc::new(mem), cost * 2 - 1);
        c.read_fragment("s", ids[0]).unwrap();
        c.read_fragment("s", ids[0]).unwrap();
        assert_eq!(c.hit_counts(), (0, 2));
    }

    #[test]
    fn file_backed_payloads_count_against_the_mapped_cap_not_the_heap_budget() {
        use std::io::Write;
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&[7u8; 64 * 1024]).unwrap();
        let file = f;
        let mem = MemoryArchive::new();
        mem.add_stream("s", &[track()]);
        let ids: Vec<u64> = (0..3)
            .map(|i| {
                let mut frame = frame_of(i * 10, 0);
                frame.data = mapped::map(&file, 0, 20 * 1024).unwrap();
                mem.add_fragment("s", vec![frame]).id
            })
            .collect();
        let c0 = cost(&mem.read_fragment("s", ids[0]).unwrap());
        assert_eq!(c0.mapped, 20 * 1024);
        assert!(c0.heap < 1024, "a mapped 20 KB frame costs {} bytes of heap", c0.heap);
        // A 6 KB heap budget allows 48 KB mapped: two of the three fit.
        let c = CachedArchive::new(Arc::new(mem), 6 * 1024);
        for &id in &ids {
            c.read_fragment("s", id).unwrap();
        }
        c.read_fragment("s", ids[2]).unwrap();
        c.read_fragment("s", ids[1]).unwrap();
        c.read_fragment("s", ids[0]).unwrap();
        assert_eq!(c.hit_counts(), (2, 4), "the third evicted the first");
    }

    #[test]
    fn the_previous_fragment_is_asked_of_the_archive_once_per_cached_fragment() {
        let (mem, ids) = archive_with(3, 10);
        let c = CachedArchive::new(Arc::new(mem.clone()), 1 << 20);
        let third = c.read_fragment("s", ids[2]).unwrap().summary;
        let within = std::time::Duration::from_secs(2);
        assert_eq!(c.previous("s", &third, within).unwrap().map(|p| p.id), Some(ids[1]));
        // Cached: a deletion since does not change the answer, as it does
        // not change the parts already served.
        mem.delete_fragment("s", ids[1]);
        assert_eq!(c.previous("s", &third, within).unwrap().map(|p| p.id), Some(ids[1]));
        assert_eq!(
            mem.previous("s", &third, within).unwrap().map(|p| p.id),
            Some(ids[0]),
            "uncached, it does"
        );
    }
}
