//! Writing fragments to a file: Matroska in the KVS layout, or fragmented
//! MP4 with one moof per fragment.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use fragmenter::fmp4::{Fmp4Options, Fmp4Writer};
use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
use fragmenter::sink::ByteSink;
use fragmenter::{FragmentEvent, Timestamp, Track};

/// A container chosen by the output file's extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Container {
    /// `.mkv`, `.mka`, `.webm`-less Matroska.
    Mkv,
    /// `.mp4`, `.m4v`, `.m4a`, `.cmf*`.
    Mp4,
}

impl Container {
    /// From the output path's extension.
    pub fn from_path(path: &Path) -> Result<Self> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "mkv" | "mka" => Ok(Container::Mkv),
            "mp4" | "m4v" | "m4a" | "cmfv" | "cmfa" => Ok(Container::Mp4),
            _ => bail!(
                "output {:?} has extension {ext:?}: expected .mkv (Matroska) or .mp4 (fragmented MP4)",
                path.display().to_string()
            ),
        }
    }
}

/// A sink over a buffered file that keeps the first write error.
struct FileSink {
    file: BufWriter<File>,
    error: Option<std::io::Error>,
    written: u64,
}

impl ByteSink for FileSink {
    fn put_slice(&mut self, bytes: &[u8]) {
        if self.error.is_none() {
            match self.file.write_all(bytes) {
                Ok(()) => self.written += bytes.len() as u64,
                Err(e) => self.error = Some(e),
            }
        }
    }

    fn put_bytes(&mut self, bytes: Bytes) {
        self.put_slice(&bytes);
    }
}

enum Writer {
    Mkv(MkvWriter),
    /// Created at the first frame: its decode-time origin is that frame's
    /// millisecond, so the file's timeline starts near zero.
    Mp4(Option<Fmp4Writer>),
}

/// A file being written from fragmenter events.
pub struct FileOutput {
    path: PathBuf,
    tracks: Vec<Track>,
    writer: Writer,
    sink: FileSink,
    segment_pending: bool,
}

impl FileOutput {
    /// Create the file and write its header (for MKV; MP4 waits for the
    /// first frame).
    pub fn create(path: &Path, tracks: &[Track], start: Timestamp) -> Result<Self> {
        let container = Container::from_path(path)?;
        let file = File::create(path).with_context(|| format!("cannot create output {}", path.display()))?;
        let mut sink = FileSink {
            file: BufWriter::with_capacity(1 << 20, file),
            error: None,
            written: 0,
        };
        let writer = match container {
            Container::Mkv => {
                let mut uid = [0u8; 16];
                uid[..8].copy_from_slice(&start.as_nanos().to_be_bytes());
                uid[8..12].copy_from_slice(&std::process::id().to_be_bytes());
                let mut w = MkvWriter::new(
                    tracks,
                    MkvWriterOptions {
                        segment_uid: uid,
                        title: Some(format!("edge-agent capture {}", start.to_rfc3339())),
                        ..MkvWriterOptions::default()
                    },
                )?;
                w.write_header(&mut sink);
                Writer::Mkv(w)
            }
            Container::Mp4 => Writer::Mp4(None),
        };
        Ok(FileOutput {
            path: path.to_owned(),
            tracks: tracks.to_vec(),
            writer,
            sink,
            segment_pending: false,
        })
    }

    /// Write one fragmenter event.
    pub fn write(&mut self, event: &FragmentEvent) -> Result<()> {
        match &mut self.writer {
            Writer::Mkv(w) => w.write_event(event, &mut self.sink)?,
            Writer::Mp4(slot) => match event {
                FragmentEvent::Start { .. } => self.segment_pending = true,
                FragmentEvent::Frame(f) => {
                    if slot.is_none() {
                        let origin = Timestamp::from_millis(f.dts.as_millis());
                        let w = Fmp4Writer::new(
                            &self.tracks,
                            Fmp4Options {
                                time_origin: origin,
                                prft: true,
                                creation_time: Some(f.pts),
                            },
                        )
                        .with_context(|| format!("cannot write {} as MP4", self.path.display()))?;
                        self.sink.put_slice(&w.init_segment());
                        *slot = Some(w);
                    }
                    let w = slot.as_mut().expect("created above");
                    if self.segment_pending {
                        w.begin_segment(&mut self.sink);
                        self.segment_pending = false;
                    }
                    w.push(f)?;
                }
                FragmentEvent::End(_) => {
                    if let Some(w) = slot.as_mut() {
                        w.flush_part(&mut self.sink)?;
                    }
                }
            },
        }
        self.check()
    }

    fn check(&mut self) -> Result<()> {
        if let Some(e) = self.sink.error.take() {
            return Err(e).with_context(|| format!("cannot write {}", self.path.display()));
        }
        Ok(())
    }

    /// Flush to disk; returns the bytes written.
    pub fn finish(mut self) -> Result<u64> {
        self.check()?;
        self.sink
            .file
            .flush()
            .and_then(|()| self.sink.file.get_ref().sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(self.sink.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_comes_from_the_extension() {
        assert_eq!(Container::from_path(Path::new("a.MKV")).unwrap(), Container::Mkv);
        assert_eq!(Container::from_path(Path::new("x/a.mp4")).unwrap(), Container::Mp4);
        let e = Container::from_path(Path::new("a.avi")).unwrap_err().to_string();
        assert!(e.contains("\"avi\"") && e.contains(".mkv"), "{e}");
    }
}
