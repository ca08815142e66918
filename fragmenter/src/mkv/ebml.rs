//! EBML primitives: variable-length integers, element IDs and the small
//! encoders the writer needs.

use crate::sink::ByteSink;

/// Element IDs used by the writer and the reader (IDs keep their marker bits,
/// as written on the wire).
pub mod id {
    #![allow(missing_docs)]
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;
    pub const CRC32: u32 = 0xBF;

    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const INFO: u32 = 0x1549_A966;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CHAPTERS: u32 = 0x1043_A770;
    pub const ATTACHMENTS: u32 = 0x1941_A469;
    pub const TAGS: u32 = 0x1254_C367;

    pub const SEGMENT_UID: u32 = 0x73A4;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const DATE_UTC: u32 = 0x4461;
    pub const TITLE: u32 = 0x7BA9;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;

    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const NAME: u32 = 0x536E;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const DEFAULT_DURATION: u32 = 0x23_E383;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const BIT_DEPTH: u32 = 0x6264;

    pub const TIMECODE: u32 = 0xE7;
    pub const POSITION: u32 = 0xA7;
    pub const PREV_SIZE: u32 = 0xAB;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const BLOCK_DURATION: u32 = 0x9B;
    pub const REFERENCE_BLOCK: u32 = 0xFB;

    pub const TAG: u32 = 0x7373;
    pub const TARGETS: u32 = 0x63C0;
    pub const SIMPLE_TAG: u32 = 0x67C8;
    pub const TAG_NAME: u32 = 0x45A3;
    pub const TAG_STRING: u32 = 0x4487;
}

/// The one-byte "unknown size" marker used for the live Segment and Clusters.
pub const UNKNOWN_SIZE: u8 = 0xFF;

/// Append an element ID (its marker bits are part of the value).
#[inline]
pub fn put_id(sink: &mut impl ByteSink, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = (id.leading_zeros() / 8) as usize;
    sink.put_slice(&bytes[skip.min(3)..]);
}

/// Append a size as a vint of exactly `width` bytes (1..=8).
#[inline]
pub fn put_size_fixed(sink: &mut impl ByteSink, size: u64, width: usize) {
    debug_assert!((1..=8).contains(&width) && size < (1u64 << (7 * width)) - 1);
    let marked = size | (1u64 << (7 * width));
    sink.put_slice(&marked.to_be_bytes()[8 - width..]);
}

/// The shortest vint width for `size` (never the all-ones "unknown" value).
pub fn size_width(size: u64) -> usize {
    (1..=8).find(|w| size < (1u64 << (7 * w)) - 1).unwrap_or(8)
}

/// Append a size as the shortest vint.
pub fn put_size(sink: &mut impl ByteSink, size: u64) {
    put_size_fixed(sink, size, size_width(size));
}

/// Append an unsigned-integer element using the fewest bytes.
pub fn put_uint(sink: &mut impl ByteSink, id: u32, v: u64) {
    let len = (8 - v.leading_zeros() as usize / 8).max(1);
    put_id(sink, id);
    put_size(sink, len as u64);
    sink.put_slice(&v.to_be_bytes()[8 - len..]);
}

/// Append an unsigned-integer element of exactly 8 bytes (the KVS SDK's
/// form for TimecodeScale and Cluster Timecode).
pub fn put_uint8(sink: &mut impl ByteSink, id: u32, v: u64) {
    put_id(sink, id);
    put_size(sink, 8);
    sink.put_slice(&v.to_be_bytes());
}

/// Append a 64-bit float element.
pub fn put_float(sink: &mut impl ByteSink, id: u32, v: f64) {
    put_id(sink, id);
    put_size(sink, 8);
    sink.put_slice(&v.to_be_bytes());
}

/// Append a binary or string element.
pub fn put_bytes(sink: &mut impl ByteSink, id: u32, v: &[u8]) {
    put_id(sink, id);
    put_size(sink, v.len() as u64);
    sink.put_slice(v);
}

/// Append a master element whose children were built in `body`.
pub fn put_master(sink: &mut impl ByteSink, id: u32, body: &[u8]) {
    put_bytes(sink, id, body);
}

/// Append a master element with a size field of a fixed width, as the KVS
/// SDK writes Tags (8-byte sizes).
pub fn put_master_fixed(sink: &mut impl ByteSink, id: u32, body: &[u8], width: usize) {
    put_id(sink, id);
    put_size_fixed(sink, body.len() as u64, width);
    sink.put_slice(body);
}

/// What a vint read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vint {
    /// Not enough bytes yet.
    Incomplete,
    /// The first byte is zero: no valid vint (or longer than 8 bytes).
    Invalid,
    /// A value and how many bytes it took; `None` value means "unknown size".
    Value {
        /// The value with its marker removed (None when all value bits are 1).
        value: Option<u64>,
        /// Bytes used.
        len: usize,
    },
}

/// Read a size vint at the start of `b`.
pub fn read_size(b: &[u8]) -> Vint {
    let Some(&first) = b.first() else {
        return Vint::Incomplete;
    };
    if first == 0 {
        return Vint::Invalid;
    }
    let len = first.leading_zeros() as usize + 1;
    if b.len() < len {
        return Vint::Incomplete;
    }
    let mut v = u64::from(first & 0xFFu8.checked_shr(len as u32).unwrap_or(0));
    for &x in &b[1..len] {
        v = (v << 8) | u64::from(x);
    }
    let all_ones = (1u64 << (7 * len)) - 1;
    Vint::Value {
        value: (v != all_ones).then_some(v),
        len,
    }
}

/// Read an element ID (1–4 bytes, marker kept) at the start of `b`.
pub fn read_id(b: &[u8]) -> Vint {
    let Some(&first) = b.first() else {
        return Vint::Incomplete;
    };
    if first == 0 {
        return Vint::Invalid;
    }
    let len = first.leading_zeros() as usize + 1;
    if len > 4 {
        return Vint::Invalid;
    }
    if b.len() < len {
        return Vint::Incomplete;
    }
    let v = b[..len].iter().fold(0u64, |v, &x| (v << 8) | u64::from(x));
    Vint::Value { value: Some(v), len }
}

/// Big-endian unsigned integer of 0–8 bytes.
pub fn be_uint(b: &[u8]) -> Option<u64> {
    (b.len() <= 8).then(|| b.iter().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

/// Big-endian float of 4 or 8 bytes (0 bytes is 0.0).
pub fn be_float(b: &[u8]) -> Option<f64> {
    match b.len() {
        0 => Some(0.0),
        4 => Some(f64::from(f32::from_be_bytes(b.try_into().ok()?))),
        8 => Some(f64::from_be_bytes(b.try_into().ok()?)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_are_written_with_their_marker_bits() {
        let mut v = Vec::new();
        put_id(&mut v, id::CLUSTER);
        put_id(&mut v, id::SIMPLE_BLOCK);
        put_id(&mut v, id::TIMECODE_SCALE);
        assert_eq!(v, [0x1F, 0x43, 0xB6, 0x75, 0xA3, 0x2A, 0xD7, 0xB1]);
    }

    #[test]
    fn unknown_size_reads_as_none() {
        assert_eq!(read_size(&[0xFF]), Vint::Value { value: None, len: 1 });
        assert_eq!(
            read_size(&[0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]),
            Vint::Value { value: None, len: 8 }
        );
        assert_eq!(read_size(&[0x00]), Vint::Invalid);
        assert_eq!(read_size(&[0x40]), Vint::Incomplete);
    }

    proptest! {
        #[test]
        fn sizes_round_trip_at_every_width(v in 0u64..(1u64 << 56) - 1, extra in 0usize..8) {
            let w = (size_width(v) + extra).min(8);
            let mut b = Vec::new();
            put_size_fixed(&mut b, v, w);
            prop_assert_eq!(b.len(), w);
            prop_assert_eq!(read_size(&b), Vint::Value { value: Some(v), len: w });
        }

        #[test]
        fn uints_use_the_fewest_bytes_and_read_back(v: u64) {
            let mut b = Vec::new();
            put_uint(&mut b, id::TRACK_UID, v);
            let Vint::Value { len: idl, .. } = read_id(&b) else { panic!() };
            let Vint::Value { value: Some(n), len: sl } = read_size(&b[idl..]) else { panic!() };
            prop_assert_eq!(be_uint(&b[idl + sl..]), Some(v));
            prop_assert_eq!(n as usize, b.len() - idl - sl);
        }
    }
}
