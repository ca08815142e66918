//! The few box bytes written by hand rather than through `mp4-atom`: the
//! `mdat` header (whose payload never passes through an encoder, so the
//! zero-copy sink keeps it shared) and the `trun` data offsets, which depend
//! on the size of the `moof` that contains them. References are to
//! ISO/IEC 14496-12.

/// Largest `mdat` size that fits the compact 32-bit size field.
const COMPACT_MAX: u64 = u32::MAX as u64;

/// Append the header of an `mdat` box (§8.1.1) holding `payload` bytes:
/// the 8-byte form `size(32) 'mdat'`, or, when the box would exceed 4 GiB,
/// the 16-byte form `1 'mdat' largesize(64)`. Returns the header length.
pub(crate) fn mdat_header(out: &mut Vec<u8>, payload: u64) -> usize {
    let compact = payload.saturating_add(8);
    if compact <= COMPACT_MAX {
        out.extend_from_slice(&(compact as u32).to_be_bytes());
        out.extend_from_slice(b"mdat");
        8
    } else {
        out.extend_from_slice(&1u32.to_be_bytes());
        out.extend_from_slice(b"mdat");
        out.extend_from_slice(&payload.saturating_add(16).to_be_bytes());
        16
    }
}

/// The header length [`mdat_header`] will use for `payload` bytes.
pub(crate) fn mdat_header_len(payload: u64) -> usize {
    if payload.saturating_add(8) <= COMPACT_MAX {
        8
    } else {
        16
    }
}

/// Read a box header at `pos`: (size, type). Only compact sizes are
/// expected inside a `moof` we encoded ourselves.
fn box_at(buf: &[u8], pos: usize) -> Option<(usize, [u8; 4])> {
    let head = buf.get(pos..pos.checked_add(8)?)?;
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let kind = [head[4], head[5], head[6], head[7]];
    (size >= 8).then_some((size, kind))
}

/// Write `offsets[i]` into the `data_offset` field of the first `trun` of
/// the i-th `traf` of the encoded `moof` in `moof`.
///
/// `mp4-atom` encodes the whole `moof` in one pass, but a `trun`'s
/// data offset (§8.8.8, relative to the `moof` start because tfhd sets
/// default-base-is-moof) depends on the `moof`'s own size. So the `moof` is
/// encoded once with zero offsets and the fields are patched in place: the
/// field follows the box header (8), version and flags (4) and
/// sample_count (4). `None` when the layout is not what we encoded, which
/// would be a bug, reported rather than panicking.
pub(crate) fn patch_trun_data_offsets(moof: &mut [u8], offsets: &[i32]) -> Option<()> {
    let (moof_size, kind) = box_at(moof, 0)?;
    if &kind != b"moof" || moof_size != moof.len() {
        return None;
    }
    let mut next = offsets.iter();
    let mut pos = 8;
    while pos < moof_size {
        let (size, kind) = box_at(moof, pos)?;
        let end = pos.checked_add(size).filter(|&e| e <= moof_size)?;
        if &kind == b"traf" {
            let mut child = pos + 8;
            loop {
                let (child_size, child_kind) = box_at(moof, child)?;
                if &child_kind == b"trun" {
                    let field = moof.get_mut(child + 16..child + 20)?;
                    field.copy_from_slice(&next.next()?.to_be_bytes());
                    break;
                }
                child = child.checked_add(child_size).filter(|&c| c < end)?;
            }
        }
        pos = end;
    }
    // Every offset must have found its trun.
    next.next().is_none().then_some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_mdat_header() {
        let mut v = Vec::new();
        assert_eq!(mdat_header(&mut v, 100), 8);
        assert_eq!(v, [0, 0, 0, 108, b'm', b'd', b'a', b't']);
        assert_eq!(mdat_header_len(100), 8);
    }

    #[test]
    fn large_mdat_header_above_4_gib() {
        let payload = 5u64 << 30;
        let mut v = Vec::new();
        assert_eq!(mdat_header(&mut v, payload), 16);
        assert_eq!(&v[..8], &[0, 0, 0, 1, b'm', b'd', b'a', b't']);
        assert_eq!(u64::from_be_bytes(v[8..16].try_into().unwrap()), payload + 16);
        assert_eq!(mdat_header_len(payload), 16);
        // The boundary: 8 + payload == u32::MAX still fits the compact form.
        assert_eq!(mdat_header_len(u64::from(u32::MAX) - 8), 8);
        assert_eq!(mdat_header_len(u64::from(u32::MAX) - 7), 16);
    }

    #[test]
    fn patching_refuses_garbage_without_panicking() {
        assert!(patch_trun_data_offsets(&mut [], &[1]).is_none());
        assert!(patch_trun_data_offsets(&mut [0, 0, 0, 8, b'm', b'o', b'o', b'f'], &[1]).is_none());
        let mut bogus = *b"\0\0\0\x10moof\0\0\0\x04traf";
        assert!(patch_trun_data_offsets(&mut bogus, &[1]).is_none());
    }
}
