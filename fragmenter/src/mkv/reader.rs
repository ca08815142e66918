//! An incremental Matroska reader: feed it bytes as they arrive, in any
//! chunking, and take events out.
//!
//! It understands what PutMedia producers send: Segments and Clusters of
//! unknown size (a Cluster then ends at the next level-1 element, a new EBML
//! header, or the end of input), a fresh EBML header and Segment inside the
//! same body, Tags between Clusters, SimpleBlocks and BlockGroups. It keeps
//! only the element being read in memory, and refuses elements larger than
//! a configured limit, so a hostile peer cannot make it buffer without bound.

use bytes::{Buf, Bytes, BytesMut};

use super::ebml::{self, id, Vint};
use super::MkvError;
use crate::fragment::Metadata;

/// Limits that bound memory use on untrusted input.
#[derive(Clone, Copy, Debug)]
pub struct ReaderLimits {
    /// Largest element read into memory (a block, Tracks, Tags…).
    pub max_element: u64,
}

impl Default for ReaderLimits {
    fn default() -> Self {
        // A KVS fragment is at most 50 MB, so no single frame is larger.
        ReaderLimits { max_element: 64 << 20 }
    }
}

/// The Segment's Info and Tracks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SegmentHeader {
    /// Nanoseconds per tick (default 1 000 000).
    pub timecode_scale: u64,
    /// SegmentUID, when present.
    pub segment_uid: Option<Bytes>,
    /// Title, when present.
    pub title: Option<String>,
    /// MuxingApp, when present.
    pub muxing_app: Option<String>,
    /// WritingApp, when present.
    pub writing_app: Option<String>,
    /// The tracks in the order they were declared.
    pub tracks: Vec<TrackEntry>,
}

/// One TrackEntry as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackEntry {
    /// TrackNumber (what blocks refer to).
    pub number: u64,
    /// TrackUID.
    pub uid: u64,
    /// TrackType: 1 video, 2 audio, 3 complex, 33 metadata…
    pub track_type: u64,
    /// CodecID.
    pub codec_id: String,
    /// CodecPrivate (empty when absent).
    pub codec_private: Bytes,
    /// Name, when present.
    pub name: Option<String>,
    /// PixelWidth and PixelHeight, for video.
    pub video: Option<(u64, u64)>,
    /// SamplingFrequency and Channels, for audio.
    pub audio: Option<(f64, u64)>,
    /// CodecDelay in ns, when present.
    pub codec_delay: Option<u64>,
    /// DefaultDuration in ns, when present.
    pub default_duration: Option<u64>,
}

/// A frame as stored in a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    /// The TrackNumber it belongs to.
    pub track: u64,
    /// Absolute timecode in ticks: the Cluster timecode plus the block's
    /// signed 16-bit offset.
    pub timecode: i64,
    /// Key frame (SimpleBlock flag, or a BlockGroup without ReferenceBlock).
    pub keyframe: bool,
    /// BlockDuration in ticks, for a BlockGroup that has one.
    pub duration: Option<u64>,
    /// The frame payload.
    pub data: Bytes,
}

/// What the reader found, in stream order.
#[derive(Clone, Debug, PartialEq)]
pub enum MkvEvent {
    /// Info and Tracks of a Segment were read. A body may hold several
    /// Segments, each starting with its own EBML header.
    Header(SegmentHeader),
    /// A Cluster (a KVS fragment) began; `timecode` in ticks.
    ClusterStart {
        /// Cluster Timecode.
        timecode: u64,
        /// Byte offset of the Cluster element in the input.
        offset: u64,
    },
    /// A frame.
    Block(Block),
    /// The open Cluster ended (a following level-1 element, a new EBML
    /// header, its known size, or the end of input).
    ClusterEnd,
    /// A Tags element: fragment metadata for the Cluster before it.
    Tags(Vec<Metadata>),
}

#[derive(Clone, Copy, Debug)]
struct Open {
    id: u32,
    start: u64,
    end: Option<u64>,
}

/// The incremental reader. See the module documentation.
#[derive(Debug)]
pub struct MkvReader {
    buf: BytesMut,
    offset: u64,
    skip: u64,
    stack: Vec<Open>,
    limits: ReaderLimits,
    header: SegmentHeader,
    cluster_timecode: Option<u64>,
    eof: bool,
    failed: Option<MkvError>,
}

impl Default for MkvReader {
    fn default() -> Self {
        Self::new(ReaderLimits::default())
    }
}

enum Action {
    /// Read the whole element into memory, then handle it.
    Read,
    /// Descend into a master element.
    Enter,
    /// Discard the element's body.
    Skip,
    /// The open unknown-size parent ends here; look again without consuming.
    CloseParent,
}

fn is_level1(id: u32) -> bool {
    matches!(
        id,
        id::SEEK_HEAD | id::INFO | id::TRACKS | id::CLUSTER | id::CUES | id::CHAPTERS | id::ATTACHMENTS | id::TAGS
    )
}

impl MkvReader {
    /// A reader with these limits.
    pub fn new(limits: ReaderLimits) -> Self {
        MkvReader {
            buf: BytesMut::new(),
            offset: 0,
            skip: 0,
            stack: Vec::new(),
            limits,
            header: SegmentHeader::default(),
            cluster_timecode: None,
            eof: false,
            failed: None,
        }
    }

    /// Append input bytes.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Declare the end of input: open Clusters end, and an element cut off
    /// in the middle becomes an error.
    pub fn finish(&mut self) {
        self.eof = true;
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.offset
    }

    /// The most recent Segment header.
    pub fn header(&self) -> &SegmentHeader {
        &self.header
    }

    /// The next event, `Ok(None)` when more input is needed (or, after
    /// [`finish`](Self::finish), at the end). After an error every call
    /// returns the same error: the stream cannot be resynchronised.
    pub fn next_event(&mut self) -> Result<Option<MkvEvent>, MkvError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let r = self.step();
        if let Err(e) = &r {
            self.failed = Some(e.clone());
        }
        r
    }

    fn consume(&mut self, n: usize) {
        self.buf.advance(n);
        self.offset += n as u64;
    }

    fn step(&mut self) -> Result<Option<MkvEvent>, MkvError> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.buf.len() as u64) as usize;
                self.consume(n);
                self.skip -= n as u64;
                if self.skip > 0 {
                    return self.need_more();
                }
            }
            // Close masters whose known size is used up.
            if let Some(top) = self.stack.last().copied() {
                if let Some(end) = top.end {
                    if self.offset >= end {
                        if self.offset > end {
                            return Err(MkvError::Overrun {
                                id: top.id,
                                offset: self.offset,
                            });
                        }
                        // Only a Cluster's end is an event; after any other
                        // element, read on (`Ok(None)` would say the input
                        // is used up, and after `finish` the rest was lost).
                        if let Some(ev) = self.pop() {
                            return Ok(Some(ev));
                        }
                        continue;
                    }
                }
            }
            if self.buf.is_empty() {
                if self.eof {
                    // End of input ends every open element of unknown size.
                    if !self.stack.is_empty() {
                        if let Some(ev) = self.pop() {
                            return Ok(Some(ev));
                        }
                        continue;
                    }
                }
                return Ok(None);
            }
            let (element, id_len) = match ebml::read_id(&self.buf) {
                Vint::Incomplete => return self.need_more(),
                Vint::Invalid => return Err(MkvError::InvalidId { offset: self.offset }),
                Vint::Value { value, len } => (value.unwrap_or(0) as u32, len),
            };
            let (size, size_len) = match ebml::read_size(&self.buf[id_len..]) {
                Vint::Incomplete => return self.need_more(),
                Vint::Invalid => {
                    return Err(MkvError::InvalidSize {
                        id: element,
                        offset: self.offset,
                    })
                }
                Vint::Value { value, len } => (value, len),
            };
            let header_len = id_len + size_len;
            let parent = self.stack.last().copied();
            let action = self.action(parent, element)?;
            match action {
                Action::CloseParent => {
                    if let Some(ev) = self.pop() {
                        return Ok(Some(ev));
                    }
                }
                Action::Enter => {
                    if element == id::CLUSTER && self.header.tracks.is_empty() {
                        return Err(MkvError::ClusterBeforeTracks { offset: self.offset });
                    }
                    let start = self.offset;
                    let end = size.map(|s| start + header_len as u64 + s);
                    self.check_within_parent(parent, element, end)?;
                    self.consume(header_len);
                    self.stack.push(Open {
                        id: element,
                        start,
                        end,
                    });
                    if element == id::CLUSTER {
                        self.cluster_timecode = None;
                    }
                }
                Action::Skip => {
                    let size = size.ok_or(MkvError::UnknownSizeNotAllowed {
                        id: element,
                        offset: self.offset,
                    })?;
                    let end = self.offset + header_len as u64 + size;
                    self.check_within_parent(parent, element, Some(end))?;
                    self.consume(header_len);
                    self.skip = size;
                }
                Action::Read => {
                    let size = size.ok_or(MkvError::UnknownSizeNotAllowed {
                        id: element,
                        offset: self.offset,
                    })?;
                    if size > self.limits.max_element {
                        return Err(MkvError::TooLarge {
                            id: element,
                            size,
                            max: self.limits.max_element,
                            offset: self.offset,
                        });
                    }
                    let total = header_len + size as usize;
                    if self.buf.len() < total {
                        return self.need_more();
                    }
                    let offset = self.offset;
                    self.check_within_parent(parent, element, Some(offset + total as u64))?;
                    let body = self.buf.split_to(total).freeze().slice(header_len..);
                    self.offset += total as u64;
                    if let Some(ev) = self.handle(element, body, offset)? {
                        return Ok(Some(ev));
                    }
                }
            }
        }
    }

    fn need_more(&self) -> Result<Option<MkvEvent>, MkvError> {
        if self.eof {
            Err(MkvError::Truncated { offset: self.offset })
        } else {
            Ok(None)
        }
    }

    fn pop(&mut self) -> Option<MkvEvent> {
        let top = self.stack.pop()?;
        (top.id == id::CLUSTER).then_some(MkvEvent::ClusterEnd)
    }

    fn check_within_parent(&self, parent: Option<Open>, element: u32, end: Option<u64>) -> Result<(), MkvError> {
        if let Some(Open {
            id: pid,
            end: Some(pend),
            ..
        }) = parent
        {
            if end.is_none_or(|e| e > pend) {
                return Err(MkvError::ChildOverrunsParent {
                    id: element,
                    parent: pid,
                    offset: self.offset,
                });
            }
        }
        Ok(())
    }

    fn action(&self, parent: Option<Open>, element: u32) -> Result<Action, MkvError> {
        let unexpected = || MkvError::Unexpected {
            id: element,
            parent: parent.map(|p| p.id),
            offset: self.offset,
        };
        Ok(match parent.map(|p| (p.id, p.end)) {
            None => match element {
                id::EBML => Action::Read,
                id::SEGMENT => Action::Enter,
                id::VOID | id::CRC32 => Action::Skip,
                _ => return Err(unexpected()),
            },
            Some((id::SEGMENT, end)) => match element {
                id::INFO | id::TRACKS | id::TAGS => Action::Read,
                id::CLUSTER => Action::Enter,
                // A producer that reconnects mid-body starts a new Segment.
                id::EBML | id::SEGMENT if end.is_none() => Action::CloseParent,
                id::EBML | id::SEGMENT => return Err(unexpected()),
                _ => Action::Skip,
            },
            Some((id::CLUSTER, end)) => match element {
                id::TIMECODE | id::SIMPLE_BLOCK | id::BLOCK_GROUP => Action::Read,
                e if (is_level1(e) || e == id::EBML || e == id::SEGMENT) && end.is_none() => Action::CloseParent,
                e if is_level1(e) || e == id::EBML || e == id::SEGMENT => return Err(unexpected()),
                _ => Action::Skip,
            },
            Some(_) => Action::Skip,
        })
    }

    fn handle(&mut self, element: u32, body: Bytes, offset: u64) -> Result<Option<MkvEvent>, MkvError> {
        match element {
            id::EBML => {
                let doc_type = children(&body, offset)?
                    .into_iter()
                    .find(|(i, _)| *i == id::DOC_TYPE)
                    .map(|(_, b)| String::from_utf8_lossy(&b).trim_end_matches('\0').to_owned())
                    .unwrap_or_else(|| "matroska".to_owned());
                if doc_type != "matroska" && doc_type != "webm" {
                    return Err(MkvError::DocType(doc_type));
                }
                self.header = SegmentHeader {
                    timecode_scale: 1_000_000,
                    ..SegmentHeader::default()
                };
                Ok(None)
            }
            id::INFO => {
                for (i, b) in children(&body, offset)? {
                    match i {
                        id::TIMECODE_SCALE => {
                            let v = be_uint(&b, i, offset)?;
                            if v == 0 {
                                return Err(MkvError::TimecodeScale(0));
                            }
                            self.header.timecode_scale = v;
                        }
                        id::SEGMENT_UID => self.header.segment_uid = Some(b),
                        id::TITLE => self.header.title = Some(text(&b)),
                        id::MUXING_APP => self.header.muxing_app = Some(text(&b)),
                        id::WRITING_APP => self.header.writing_app = Some(text(&b)),
                        _ => {}
                    }
                }
                Ok(None)
            }
            id::TRACKS => {
                let mut tracks = Vec::new();
                for (i, b) in children(&body, offset)? {
                    if i == id::TRACK_ENTRY {
                        tracks.push(track_entry(&b, offset)?);
                    }
                }
                self.header.tracks = tracks;
                Ok(Some(MkvEvent::Header(self.header.clone())))
            }
            id::TAGS => Ok(Some(MkvEvent::Tags(tags(&body, offset)?))),
            id::TIMECODE => {
                let tc = be_uint(&body, element, offset)?;
                self.cluster_timecode = Some(tc);
                let cluster_offset = self.stack.last().map_or(offset, |o| o.start);
                Ok(Some(MkvEvent::ClusterStart {
                    timecode: tc,
                    offset: cluster_offset,
                }))
            }
            id::SIMPLE_BLOCK => {
                let (track, rel, flags, data) = block_header(&body, offset)?;
                Ok(Some(MkvEvent::Block(Block {
                    track,
                    timecode: self.block_timecode(rel, offset)?,
                    keyframe: flags & 0x80 != 0,
                    duration: None,
                    data,
                })))
            }
            id::BLOCK_GROUP => {
                let mut block = None;
                let mut referenced = false;
                let mut duration = None;
                for (i, b) in children(&body, offset)? {
                    match i {
                        id::BLOCK => block = Some(block_header(&b, offset)?),
                        id::REFERENCE_BLOCK => referenced = true,
                        id::BLOCK_DURATION => duration = Some(be_uint(&b, i, offset)?),
                        _ => {}
                    }
                }
                let (track, rel, _, data) = block.ok_or(MkvError::Missing {
                    what: "Block in BlockGroup",
                    offset,
                })?;
                Ok(Some(MkvEvent::Block(Block {
                    track,
                    timecode: self.block_timecode(rel, offset)?,
                    keyframe: !referenced,
                    duration,
                    data,
                })))
            }
            _ => Ok(None),
        }
    }

    fn block_timecode(&self, rel: i16, offset: u64) -> Result<i64, MkvError> {
        let cluster = self.cluster_timecode.ok_or(MkvError::Missing {
            what: "Cluster Timecode before the first block",
            offset,
        })?;
        i64::try_from(cluster)
            .ok()
            .and_then(|c| c.checked_add(i64::from(rel)))
            .ok_or(MkvError::BadValue {
                id: id::TIMECODE,
                offset,
                what: "a block timecode (Cluster Timecode plus the block's offset) within int64",
            })
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).trim_end_matches('\0').to_owned()
}

fn be_uint(b: &[u8], element: u32, offset: u64) -> Result<u64, MkvError> {
    ebml::be_uint(b).ok_or(MkvError::BadValue {
        id: element,
        offset,
        what: "unsigned integer longer than 8 bytes",
    })
}

/// The direct children of a master element's body (all sizes known).
fn children(body: &Bytes, offset: u64) -> Result<Vec<(u32, Bytes)>, MkvError> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let rest = &body[pos..];
        let at = offset + pos as u64;
        let Vint::Value {
            value: Some(element),
            len: id_len,
        } = ebml::read_id(rest)
        else {
            return Err(MkvError::InvalidId { offset: at });
        };
        let element = element as u32;
        let (size, size_len) = match ebml::read_size(&rest[id_len..]) {
            Vint::Value { value: Some(s), len } => (s, len),
            _ => {
                return Err(MkvError::InvalidSize {
                    id: element,
                    offset: at,
                })
            }
        };
        let start = pos + id_len + size_len;
        let end = start
            .checked_add(usize::try_from(size).unwrap_or(usize::MAX))
            .filter(|&e| e <= body.len())
            .ok_or(MkvError::ChildOverrunsParent {
                id: element,
                parent: 0,
                offset: at,
            })?;
        out.push((element, body.slice(start..end)));
        pos = end;
    }
    Ok(out)
}

fn track_entry(body: &Bytes, offset: u64) -> Result<TrackEntry, MkvError> {
    let mut t = TrackEntry::default();
    for (i, b) in children(body, offset)? {
        match i {
            id::TRACK_NUMBER => t.number = be_uint(&b, i, offset)?,
            id::TRACK_UID => t.uid = be_uint(&b, i, offset)?,
            id::TRACK_TYPE => t.track_type = be_uint(&b, i, offset)?,
            id::CODEC_ID => t.codec_id = text(&b),
            id::CODEC_PRIVATE => t.codec_private = b,
            id::NAME => t.name = Some(text(&b)),
            id::CODEC_DELAY => t.codec_delay = Some(be_uint(&b, i, offset)?),
            id::DEFAULT_DURATION => t.default_duration = Some(be_uint(&b, i, offset)?),
            id::VIDEO => {
                let (mut w, mut h) = (0, 0);
                for (vi, vb) in children(&b, offset)? {
                    match vi {
                        id::PIXEL_WIDTH => w = be_uint(&vb, vi, offset)?,
                        id::PIXEL_HEIGHT => h = be_uint(&vb, vi, offset)?,
                        _ => {}
                    }
                }
                t.video = Some((w, h));
            }
            id::AUDIO => {
                let (mut rate, mut channels) = (8000.0, 1);
                for (ai, ab) in children(&b, offset)? {
                    match ai {
                        id::SAMPLING_FREQUENCY => {
                            rate = ebml::be_float(&ab).ok_or(MkvError::BadValue {
                                id: ai,
                                offset,
                                what: "float of 0, 4 or 8 bytes",
                            })?
                        }
                        id::CHANNELS => channels = be_uint(&ab, ai, offset)?,
                        _ => {}
                    }
                }
                t.audio = Some((rate, channels));
            }
            _ => {}
        }
    }
    if t.number == 0 {
        return Err(MkvError::Missing {
            what: "TrackNumber in TrackEntry",
            offset,
        });
    }
    Ok(t)
}

fn tags(body: &Bytes, offset: u64) -> Result<Vec<Metadata>, MkvError> {
    let mut out = Vec::new();
    for (i, tag) in children(body, offset)? {
        if i != id::TAG {
            continue;
        }
        for (j, simple) in children(&tag, offset)? {
            if j != id::SIMPLE_TAG {
                continue;
            }
            let (mut name, mut value) = (String::new(), String::new());
            for (k, b) in children(&simple, offset)? {
                match k {
                    id::TAG_NAME => name = text(&b),
                    id::TAG_STRING => value = text(&b),
                    _ => {}
                }
            }
            out.push(Metadata { name, value });
        }
    }
    Ok(out)
}

/// Track number, relative timecode, flags and payload of a (Simple)Block.
fn block_header(body: &Bytes, offset: u64) -> Result<(u64, i16, u8, Bytes), MkvError> {
    let (track, len) = match ebml::read_size(body) {
        Vint::Value { value: Some(t), len } => (t, len),
        _ => {
            return Err(MkvError::BadValue {
                id: id::SIMPLE_BLOCK,
                offset,
                what: "track number vint",
            })
        }
    };
    if body.len() < len + 3 {
        return Err(MkvError::BadValue {
            id: id::SIMPLE_BLOCK,
            offset,
            what: "block shorter than its 4-byte header",
        });
    }
    let rel = i16::from_be_bytes([body[len], body[len + 1]]);
    let flags = body[len + 2];
    if flags & 0x06 != 0 {
        return Err(MkvError::Lacing { offset });
    }
    Ok((track, rel, flags, body.slice(len + 3..)))
}
