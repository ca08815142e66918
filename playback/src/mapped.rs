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
use std::sync::{Arc, LazyLock, RwLock};

use bytes::Bytes;
use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// The file range some `Bytes` map.
#[derive(Clone, Debug)]
pub struct FileSpan {
    /// The open file (kept open while any `Bytes` of the mapping lives).
    pub file: Arc<File>,
    /// Where the span starts in the file.
    pub offset: u64,
    /// Its length.
    pub len: usize,
}

struct Region {
    end: usize,
    file: Arc<File>,
    /// The file offset of the region's first byte.
    offset: u64,
}

/// Live mappings by start address: few (one per cached fragment), looked up
/// once per contiguous run of a response.
static REGIONS: LazyLock<RwLock<BTreeMap<usize, Region>>> = LazyLock::new(Default::default);

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
            tracing::warn!(error = %e, "munmap of a served file range failed");
        }
    }
}

/// Map `len` bytes of `file` at `offset` read-only.
///
/// The caller guarantees the file is at least `offset + len` long and will
/// not be shortened below that while the `Bytes` live (see the module docs).
/// An empty range gives empty `Bytes`.
pub fn map(file: Arc<File>, offset: u64, len: usize) -> io::Result<Bytes> {
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
            &*file,
            aligned,
        )
    }?;
    let start = base as usize + lead;
    REGIONS.write().unwrap_or_else(|e| e.into_inner()).insert(
        start,
        Region {
            end: start + len,
            file,
            offset,
        },
    );
    Ok(Bytes::from_owner(Mapping {
        base,
        map_len,
        start,
        len,
    }))
}

/// The file span behind `bytes`, if they lie inside a live mapping.
pub fn span_of(bytes: &[u8]) -> Option<FileSpan> {
    let addr = bytes.as_ptr() as usize;
    if bytes.is_empty() {
        return None;
    }
    let regions = REGIONS.read().unwrap_or_else(|e| e.into_inner());
    let (&start, region) = regions.range(..=addr).next_back()?;
    (addr + bytes.len() <= region.end).then(|| FileSpan {
        file: region.file.clone(),
        offset: region.offset + (addr - start) as u64,
        len: bytes.len(),
    })
}

/// Whether `bytes` are file-backed (cost no heap).
pub fn is_mapped(bytes: &[u8]) -> bool {
    span_of(bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_mapped_range_reads_as_the_file_and_names_its_span_until_dropped() {
        let mut f = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        f.write_all(&content).unwrap();
        let file = Arc::new(f);
        // An offset off the page grid, to exercise the alignment.
        let b = map(file.clone(), 5_000, 10_000).unwrap();
        assert_eq!(&b[..], &content[5_000..15_000]);
        let part = b.slice(1_000..3_000);
        let span = span_of(&part).expect("a slice of a mapping is file-backed");
        assert_eq!((span.offset, span.len), (6_000, 2_000));
        drop(span);
        assert!(span_of(&content[..10]).is_none(), "heap bytes are not");
        drop(b);
        assert!(is_mapped(&part), "a slice keeps the mapping alive");
        drop(part);
        assert_eq!(
            Arc::strong_count(&file),
            1,
            "the region is forgotten once the last Bytes goes"
        );
        assert!(map(file, 0, 0).unwrap().is_empty());
    }
}
