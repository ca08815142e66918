//! File-backed `Bytes`: a range of a stored file mapped read-only, and
//! remembered, so that the fragment cache can tell the page cache's bytes
//! from its own heap ([`is_mapped`]).
//!
//! Stored fragments read back for playback are mapped rather than copied:
//! the frames are slices of the mapping, a cached fragment costs no heap for
//! its payload, and a segment goes out with `writev` straight from the
//! mapping, one copy into the socket.
//!
//! Two rules keep mappings safe. A range is mapped only after the file was
//! seen to be long enough, and the store never shortens a file below a
//! complete record while it runs (recovery truncates before anything is
//! served), so no mapped page lies past the end of its file. And the store
//! reads a mapped range once with `pread` to check its CRC before anyone
//! touches the mapping, so an unreadable disk surfaces as an I/O error on
//! that read, not as SIGBUS later.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::sync::{LazyLock, RwLock};

use bytes::Bytes;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// Live mappings: start address → end address. Few (one per fragment read
/// back and still referenced); asked once per frame when a fragment is
/// cached.
static REGIONS: LazyLock<RwLock<BTreeMap<usize, usize>>> = LazyLock::new(Default::default);

struct Mapping {
    /// The page-aligned address and length given to mmap.
    base: *mut std::ffi::c_void,
    map_len: usize,
    /// The requested range inside it.
    start: usize,
    len: usize,
}

// SAFETY: the mapping is read-only and owned by this value alone; the raw
// pointer is only an address to unmap.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl AsRef<[u8]> for Mapping {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: [start, start + len) lies inside a live PROT_READ mapping
        // of a file at least that long (see `map`).
        unsafe { std::slice::from_raw_parts(self.start as *const u8, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        REGIONS.write().unwrap_or_else(|e| e.into_inner()).remove(&self.start);
        // SAFETY: base/map_len are exactly what mmap returned; no `Bytes`
        // of this mapping is alive any more (we are its owner's drop).
        if let Err(e) = unsafe { munmap(self.base, self.map_len) } {
            tracing::warn!(error = %e, "munmap of a stored file range failed");
        }
    }
}

/// Map `len` bytes of `file` at `offset` read-only. The file may be closed
/// afterwards; the mapping keeps what it needs.
///
/// The caller guarantees the file is at least `offset + len` long and will
/// not be shortened below that while the `Bytes` live (see the module docs).
/// An empty range gives empty `Bytes`.
pub fn map(file: &File, offset: u64, len: usize) -> io::Result<Bytes> {
    if len == 0 {
        return Ok(Bytes::new());
    }
    let page = rustix::param::page_size() as u64;
    let aligned = offset - offset % page;
    let lead = (offset - aligned) as usize;
    let map_len = lead + len;
    // SAFETY: a fresh shared read-only mapping chosen by the kernel; it
    // aliases nothing in this process.
    let base = unsafe {
        mmap(
            std::ptr::null_mut(),
            map_len,
            ProtFlags::READ,
            MapFlags::SHARED,
            file,
            aligned,
        )
    }?;
    let start = base as usize + lead;
    REGIONS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(start, start + len);
    Ok(Bytes::from_owner(Mapping {
        base,
        map_len,
        start,
        len,
    }))
}

/// Whether `bytes` lie inside a live mapping (cost no heap).
pub fn is_mapped(bytes: &[u8]) -> bool {
    if bytes.is_empty() {
        return false;
    }
    let addr = bytes.as_ptr() as usize;
    let regions = REGIONS.read().unwrap_or_else(|e| e.into_inner());
    regions
        .range(..=addr)
        .next_back()
        .is_some_and(|(_, &end)| addr + bytes.len() <= end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapped_range_reads_as_the_file_and_is_known_until_dropped() {
        let mut f = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&content).unwrap();
        // An offset off the page grid, to exercise the alignment.
        let b = map(&f, 5_000, 10_000).unwrap();
        drop(f);
        assert_eq!(&b[..], &content[5_000..15_000], "the file may close; the mapping stays");
        let part = b.slice(1_000..3_000);
        assert!(is_mapped(&part));
        assert!(!is_mapped(&content[..10]), "heap bytes are not");
        let (addr, len) = (b.as_ptr() as usize, b.len());
        drop(b);
        assert!(is_mapped(&part), "a slice keeps the mapping alive");
        drop(part);
        let regions = REGIONS.read().unwrap();
        assert!(
            !regions.contains_key(&addr) || regions[&addr] != addr + len,
            "the region is forgotten once the last Bytes goes"
        );
        drop(regions);
        assert!(map(&tempfile::tempfile().unwrap(), 0, 0).unwrap().is_empty());
    }
}
