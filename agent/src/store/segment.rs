//! Segment files: per-stream append-only files of self-describing fragment
//! records.
//!
//! A record (all integers little-endian):
//!
//! ```text
//! header   16 B  magic "EAFH" | record length u64 (0 while open) | CRC-32 of the 12 bytes before
//! payload        the frames' payloads back to back
//! index          the frame index (see frame_index.rs)
//! meta           track set id varint | fragmenter seq varint | KVS metadata (length-prefixed)
//! trailer  48 B  magic "EAF2" | fragment id u64 | start ns u64 | payload length u64 |
//!                index length u32 | meta length u32 | payload CRC-32 u32 |
//!                CRC-32 of index+meta u32 | CRC-32 of the 44 bytes before
//! ```
//!
//! The header is written with length 0 when the fragment starts and
//! patched in place before the fdatasync that ends it, so a reader can walk
//! a segment forward record by record and stop at the first one that is
//! open or damaged. A durable record holds everything its index row holds:
//! recovery re-indexes durable records whose index commit did not survive
//! (the index commits without its own fsync — the segment is the record of
//! truth), and the trailer lets any reader prove its bytes are the ones
//! written.

use std::path::{Path, PathBuf};

use super::frame_index::{get_varint, put_varint};

/// Bytes of the record header.
pub(crate) const HEADER_LEN: usize = 16;
/// Bytes of the fixed trailer at the end of every record.
pub(crate) const TRAILER_LEN: usize = 48;
const HEADER_MAGIC: [u8; 4] = *b"EAFH";
const TRAILER_MAGIC: [u8; 4] = *b"EAF2";

/// A record header; `record_len` 0 marks a record still being written.
pub(crate) fn encode_header(record_len: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0..4].copy_from_slice(&HEADER_MAGIC);
    b[4..12].copy_from_slice(&record_len.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..16].copy_from_slice(&crc.to_le_bytes());
    b
}

/// The record length from a header; `Err` says what is wrong.
pub(crate) fn decode_header(b: &[u8]) -> Result<u64, String> {
    if b.len() != HEADER_LEN || b[0..4] != HEADER_MAGIC {
        return Err(format!("no record header (found {:02x?})", &b[..b.len().min(4)]));
    }
    let crc = u32::from_le_bytes(b[12..16].try_into().unwrap());
    if crc != crc32fast::hash(&b[..12]) {
        return Err("record header CRC does not match".into());
    }
    Ok(u64::from_le_bytes(b[4..12].try_into().unwrap()))
}

/// The end of a fragment record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Trailer {
    pub id: u64,
    pub start_ns: u64,
    pub payload_len: u64,
    pub index_len: u32,
    pub meta_len: u32,
    pub payload_crc: u32,
    pub index_crc: u32,
}

impl Trailer {
    pub fn encode(&self) -> [u8; TRAILER_LEN] {
        let mut b = [0u8; TRAILER_LEN];
        b[0..4].copy_from_slice(&TRAILER_MAGIC);
        b[4..12].copy_from_slice(&self.id.to_le_bytes());
        b[12..20].copy_from_slice(&self.start_ns.to_le_bytes());
        b[20..28].copy_from_slice(&self.payload_len.to_le_bytes());
        b[28..32].copy_from_slice(&self.index_len.to_le_bytes());
        b[32..36].copy_from_slice(&self.meta_len.to_le_bytes());
        b[36..40].copy_from_slice(&self.payload_crc.to_le_bytes());
        b[40..44].copy_from_slice(&self.index_crc.to_le_bytes());
        let crc = crc32fast::hash(&b[..44]);
        b[44..48].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parse and check a trailer; `Err` says what is wrong.
    pub fn decode(b: &[u8]) -> Result<Trailer, String> {
        if b.len() != TRAILER_LEN {
            return Err(format!("trailer of {} bytes, expected {TRAILER_LEN}", b.len()));
        }
        if b[0..4] != TRAILER_MAGIC {
            return Err(format!(
                "trailer magic {:02x?}, expected {:02x?}",
                &b[0..4],
                TRAILER_MAGIC
            ));
        }
        let crc = u32::from_le_bytes(b[44..48].try_into().unwrap());
        let want = crc32fast::hash(&b[..44]);
        if crc != want {
            return Err(format!("trailer CRC {crc:08x}, computed {want:08x}"));
        }
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        Ok(Trailer {
            id: u64_at(4),
            start_ns: u64_at(12),
            payload_len: u64_at(20),
            index_len: u32_at(28),
            meta_len: u32_at(32),
            payload_crc: u32_at(36),
            index_crc: u32_at(40),
        })
    }

    /// Header + payload + index + meta + trailer.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_len + u64::from(self.index_len) + u64::from(self.meta_len) + TRAILER_LEN as u64
    }
}

/// What a record's meta block says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordMeta {
    pub track_set_id: i64,
    pub seq: u64,
    /// Encoded KVS metadata (see tracks.rs).
    pub metadata: Vec<u8>,
}

pub(crate) fn encode_meta(m: &RecordMeta) -> Vec<u8> {
    let mut b = Vec::with_capacity(16 + m.metadata.len());
    put_varint(&mut b, m.track_set_id as u64);
    put_varint(&mut b, m.seq);
    put_varint(&mut b, m.metadata.len() as u64);
    b.extend_from_slice(&m.metadata);
    b
}

pub(crate) fn decode_meta(b: &[u8]) -> Result<RecordMeta, String> {
    let mut pos = 0;
    let mut next = || get_varint(b, &mut pos).ok_or_else(|| "record meta is truncated".to_owned());
    let track_set_id = next()? as i64;
    let seq = next()?;
    let len = next()? as usize;
    let metadata = b
        .get(pos..pos.saturating_add(len))
        .ok_or("record meta is truncated")?
        .to_vec();
    Ok(RecordMeta {
        track_set_id,
        seq,
        metadata,
    })
}

/// Where a stream's segments live, relative to the store: `segments/<dir>`.
pub(crate) fn stream_dir(root: &Path, dir: &str) -> PathBuf {
    root.join("segments").join(dir)
}

/// A segment's file name: the id of its first fragment, zero-padded so names
/// sort in write order.
pub(crate) fn file_name(first_fragment: u64) -> String {
    format!("{first_fragment:020}.seg")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailer_and_header_round_trip_and_any_flipped_bit_is_caught() {
        let t = Trailer {
            id: 42,
            start_ns: 1_795_651_200_000_000_000,
            payload_len: 1_000_000,
            index_len: 600,
            meta_len: 9,
            payload_crc: 0xdead_beef,
            index_crc: 7,
        };
        let b = t.encode();
        assert_eq!(Trailer::decode(&b).unwrap(), t);
        assert_eq!(t.record_len(), 16 + 1_000_000 + 600 + 9 + 48);
        for i in 0..TRAILER_LEN * 8 {
            let mut c = b;
            c[i / 8] ^= 1 << (i % 8);
            assert!(Trailer::decode(&c).is_err(), "bit {i}");
        }
        let h = encode_header(1_000_673);
        assert_eq!(decode_header(&h).unwrap(), 1_000_673);
        assert_eq!(decode_header(&encode_header(0)).unwrap(), 0);
        for i in 0..HEADER_LEN * 8 {
            let mut c = h;
            c[i / 8] ^= 1 << (i % 8);
            assert!(decode_header(&c).is_err(), "bit {i}");
        }
        let m = RecordMeta {
            track_set_id: 3,
            seq: 77,
            metadata: vec![1, 2, 3],
        };
        assert_eq!(decode_meta(&encode_meta(&m)).unwrap(), m);
    }
}
