//! Matroska: the container KVS PutMedia takes.
//!
//! [`MkvWriter`] streams fragments in the layout of the KVS producer SDK;
//! [`MkvReader`] parses such a stream (or any ordinary Matroska file)
//! incrementally, as the gateway receives it.

pub mod ebml;
mod reader;
mod writer;

pub use reader::{Block, MkvEvent, MkvReader, ReaderLimits, SegmentHeader, TrackEntry};
pub use writer::{MkvWriter, MkvWriterOptions};

use crate::media::Timestamp;

/// What went wrong reading or writing Matroska. Offsets are byte offsets in
/// the input; IDs are printed in hex as they appear on the wire.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum MkvError {
    /// Writer: a frame before the header.
    #[error("no header written yet")]
    NoHeader,
    /// Writer: a frame outside a Cluster.
    #[error("frame written outside a cluster")]
    NoCluster,
    /// Writer: a block's offset from its Cluster timecode does not fit int16.
    #[error("frame at {pts} is {relative} ticks from its cluster timecode; a block allows -32768 to 32767")]
    BlockTimecode {
        /// The frame's presentation time.
        pts: Timestamp,
        /// The offset that did not fit.
        relative: i64,
    },
    /// A track number not in Tracks.
    #[error("block for track {0}, which Tracks does not declare")]
    UnknownTrack(u64),
    /// TimecodeScale of zero.
    #[error("TimecodeScale {0} is invalid: expected at least 1 ns")]
    TimecodeScale(u64),
    /// An element ID that is not a valid vint.
    #[error("invalid element ID at byte {offset}")]
    InvalidId {
        /// Where.
        offset: u64,
    },
    /// An element size that is not a valid vint.
    #[error("invalid size of element {id:#X} at byte {offset}")]
    InvalidSize {
        /// The element.
        id: u32,
        /// Where.
        offset: u64,
    },
    /// An element where it may not be.
    #[error("element {id:#X} at byte {offset} is not allowed in {}", parent.map_or("the top level".to_owned(), |p| format!("{p:#X}")))]
    Unexpected {
        /// The element.
        id: u32,
        /// Its parent, `None` at the top level.
        parent: Option<u32>,
        /// Where.
        offset: u64,
    },
    /// Unknown size on an element that must have a size.
    #[error("element {id:#X} at byte {offset} has unknown size; only Segment and Cluster may")]
    UnknownSizeNotAllowed {
        /// The element.
        id: u32,
        /// Where.
        offset: u64,
    },
    /// An element larger than the reader's limit.
    #[error("element {id:#X} at byte {offset} is {size} bytes; the limit is {max}")]
    TooLarge {
        /// The element.
        id: u32,
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
        /// Where.
        offset: u64,
    },
    /// A child element running past its parent's end.
    #[error("element {id:#X} at byte {offset} runs past the end of its parent {parent:#X}")]
    ChildOverrunsParent {
        /// The child.
        id: u32,
        /// The parent (0 when inside a buffered element).
        parent: u32,
        /// Where.
        offset: u64,
    },
    /// Reading went past a known-size element's end.
    #[error("read past the end of element {id:#X} at byte {offset}")]
    Overrun {
        /// The element.
        id: u32,
        /// Where.
        offset: u64,
    },
    /// A Cluster before any Tracks.
    #[error("cluster at byte {offset} before any Tracks element")]
    ClusterBeforeTracks {
        /// Where.
        offset: u64,
    },
    /// Not Matroska or WebM.
    #[error("DocType {0:?} is not matroska or webm")]
    DocType(String),
    /// A value of the wrong form.
    #[error("element {id:#X} near byte {offset}: expected {what}")]
    BadValue {
        /// The element.
        id: u32,
        /// Where.
        offset: u64,
        /// What was expected.
        what: &'static str,
    },
    /// Something required is absent.
    #[error("missing {what} near byte {offset}")]
    Missing {
        /// What.
        what: &'static str,
        /// Where.
        offset: u64,
    },
    /// Laced blocks (several frames per block) are not produced by any KVS
    /// producer and not accepted.
    #[error("laced block near byte {offset}: lacing is not supported")]
    Lacing {
        /// Where.
        offset: u64,
    },
    /// Input ended inside an element.
    #[error("input ended inside an element at byte {offset}")]
    Truncated {
        /// Where the unfinished element starts.
        offset: u64,
    },
}

#[cfg(test)]
mod tests;
