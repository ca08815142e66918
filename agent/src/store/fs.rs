//! The store's file layer: the few file operations segments need, behind a
//! trait so tests can make the disk fill up at an exact byte.

use bytes::Bytes;
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The read size of the CRC pass over a mapped range.
const CRC_CHUNK: usize = 128 * 1024;

/// File operations used for segment files. The index (SQLite) does its own
/// I/O and is not routed through here.
pub trait FileLayer: Send + Sync + std::fmt::Debug {
    /// Create `path` (truncating any old file) for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Read exactly `len` bytes at `offset`.
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// Exactly `len` bytes at `offset` as shared `Bytes`, with their CRC-32.
    ///
    /// The real file system maps the range (see `playback::mapped`: a
    /// cached fragment then costs no heap) after reading it once with
    /// `pread` for the CRC, so a failing disk is an error here and not a
    /// fault when the mapping is touched. The default reads into memory.
    fn read_shared(&self, path: &Path, offset: u64, len: usize) -> io::Result<(Bytes, u32)> {
        let data = self.read_at(path, offset, len)?;
        let crc = crc32fast::hash(&data);
        Ok((Bytes::from(data), crc))
    }
    /// The file's length.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Cut the file to `len` bytes and make that durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Remove a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Make the directory's entries (creations, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Create a directory and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The entries of a directory (files and directories), full paths.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Bytes available to this process on the file system holding `path`.
    fn free_bytes(&self, path: &Path) -> io::Result<u64>;
}

/// A file being appended to.
pub trait AppendFile: Send + std::fmt::Debug {
    /// Append all of `buf` (a failure may leave part of it written).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Append all of `bufs`, in order (a failure may leave a prefix
    /// written). The real file does it with `writev`.
    fn append_all(&mut self, bufs: &[Bytes]) -> io::Result<()> {
        bufs.iter().try_for_each(|b| self.write_all(b))
    }
    /// Overwrite bytes already written (the record header); the append
    /// position does not move.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// fdatasync.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cut the file to `len` bytes; later appends continue from there.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl AppendFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn append_all(&mut self, bufs: &[Bytes]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = bufs.iter().map(|b| IoSlice::new(b)).collect();
        let mut rest = &mut slices[..];
        while !rest.is_empty() {
            match self.0.write_vectored(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.write_all_at(buf, offset)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)?;
        self.0.seek(SeekFrom::Start(len))?;
        Ok(())
    }
}

impl FileLayer for RealFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        // Read into spare capacity: zeroing a megabyte first only to
        // overwrite it was a tenth of the cost of serving a segment.
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        if buf.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends {} bytes into a {len}-byte read at {offset}",
                    path.display(),
                    buf.len()
                ),
            ));
        }
        Ok(buf)
    }

    fn read_shared(&self, path: &Path, offset: u64, len: usize) -> io::Result<(Bytes, u32)> {
        let file = File::open(path)?;
        let file_len = file.metadata()?.len();
        if file_len < offset + len as u64 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} ends {} bytes into a {len}-byte read at {offset}",
                    path.display(),
                    file_len.saturating_sub(offset)
                ),
            ));
        }
        // Small reads into one reused buffer: the CRC pass costs no heap
        // beyond it, and leaves the range in the page cache for the mapping.
        let mut buf = vec![0u8; len.min(CRC_CHUNK)];
        let mut crc = crc32fast::Hasher::new();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(buf.len());
            file.read_exact_at(&mut buf[..n], offset + done as u64)?;
            crc.update(&buf[..n]);
            done += n;
        }
        let bytes = playback::mapped::map(&file, offset, len)?;
        Ok((bytes, crc.finalize()))
    }

    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir)? {
            out.push(e?.path());
        }
        out.sort();
        Ok(out)
    }

    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        let s = rustix::fs::statvfs(path).map_err(io::Error::from)?;
        Ok(s.f_bavail.saturating_mul(s.f_frsize))
    }
}

/// A real file system whose free space is a budget the test sets: appends
/// past it fail with ENOSPC after writing what fits (as a real full disk
/// does), and removing or truncating files gives space back.
#[cfg(test)]
#[derive(Debug, Default)]
pub struct BudgetFs {
    free: std::sync::Mutex<Option<u64>>,
    /// ENOSPC returned so far.
    pub enospc: std::sync::atomic::AtomicU64,
    /// While set, every fdatasync fails with EIO (a failing disk).
    pub fail_syncs: std::sync::atomic::AtomicBool,
}

#[cfg(test)]
impl BudgetFs {
    /// Unlimited until [`BudgetFs::set_free`].
    pub fn new() -> std::sync::Arc<Self> {
        std::sync::Arc::new(BudgetFs::default())
    }

    /// Pretend this many bytes are free (`None`: the real disk).
    pub fn set_free(&self, free: Option<u64>) {
        *self.free.lock().unwrap() = free;
    }

    fn give_back(&self, n: u64) {
        if let Some(f) = self.free.lock().unwrap().as_mut() {
            *f += n;
        }
    }
}

#[cfg(test)]
#[derive(Debug)]
struct BudgetFile {
    fs: std::sync::Arc<BudgetFs>,
    file: RealFile,
    len: u64,
}

#[cfg(test)]
impl AppendFile for BudgetFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let fits = {
            let mut free = self.fs.free.lock().unwrap();
            match free.as_mut() {
                None => buf.len(),
                Some(f) => {
                    let n = (*f).min(buf.len() as u64);
                    *f -= n;
                    n as usize
                }
            }
        };
        self.file.write_all(&buf[..fits])?;
        self.len += fits as u64;
        if fits < buf.len() {
            self.fs.enospc.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(28));
        }
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        // Overwrites take no new space.
        self.file.write_at(offset, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        if self.fs.fail_syncs.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.file.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        if len < self.len {
            self.fs.give_back(self.len - len);
        }
        self.len = len;
        Ok(())
    }
}

/// An `Arc<BudgetFs>` as a file layer (files keep a handle to the budget).
#[cfg(test)]
#[derive(Debug, Clone)]
pub struct SharedBudgetFs(pub std::sync::Arc<BudgetFs>);

#[cfg(test)]
impl FileLayer for SharedBudgetFs {
    fn create(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        if let Ok(old) = fs::metadata(path) {
            self.0.give_back(old.len());
        }
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(path)?;
        Ok(Box::new(BudgetFile {
            fs: self.0.clone(),
            file: RealFile(f),
            len: 0,
        }))
    }
    fn read_at(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        RealFs.read_at(path, offset, len)
    }
    fn read_shared(&self, path: &Path, offset: u64, len: usize) -> io::Result<(Bytes, u32)> {
        RealFs.read_shared(path, offset, len)
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        RealFs.len(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let old = RealFs.len(path)?;
        RealFs.truncate(path, len)?;
        self.0.give_back(old.saturating_sub(len));
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        let old = RealFs.len(path)?;
        RealFs.remove(path)?;
        self.0.give_back(old);
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.list_dir(dir)
    }
    fn free_bytes(&self, path: &Path) -> io::Result<u64> {
        match *self.0.free.lock().unwrap() {
            Some(f) => Ok(f),
            None => RealFs.free_bytes(path),
        }
    }
}
