//! Bounds-checked little-endian reads.
//!
//! Every read returns `None` past the end instead of panicking, so parsers
//! fed arbitrary bytes turn a short buffer into an error, never a crash.

#[inline]
pub(crate) fn u8_at(b: &[u8], off: usize) -> Option<u8> {
    b.get(off).copied()
}

#[inline]
pub(crate) fn u16_le(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

#[inline]
pub(crate) fn u32_le(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[inline]
pub(crate) fn u64_le(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// An unsigned little-endian integer of `n` ≤ 8 bytes (Ouster's u24 and u40
/// header fields).
#[inline]
pub(crate) fn uint_le(b: &[u8], off: usize, n: usize) -> Option<u64> {
    if n > 8 {
        return None;
    }
    let s = b.get(off..off.checked_add(n)?)?;
    let mut a = [0u8; 8];
    a[..n].copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

#[inline]
pub(crate) fn f32_le(b: &[u8], off: usize) -> Option<f32> {
    u32_le(b, off).map(f32::from_bits)
}

#[inline]
pub(crate) fn i16_le(b: &[u8], off: usize) -> Option<i16> {
    u16_le(b, off).map(|v| v as i16)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_are_none() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(u16_le(&b, 0), Some(0x0201));
        assert_eq!(u16_le(&b, 4), None);
        assert_eq!(u32_le(&b, 1), Some(0x0504_0302));
        assert_eq!(u32_le(&b, 2), None);
        assert_eq!(u64_le(&b, 0), None);
        assert_eq!(uint_le(&b, 0, 3), Some(0x030201));
        assert_eq!(uint_le(&b, 0, 9), None);
        assert_eq!(u16_le(&b, usize::MAX), None);
        assert_eq!(u8_at(&b, 5), None);
    }
}
