//! MSB-first bit reading and writing, with the Exp-Golomb codes of H.264 and
//! H.265.
//!
//! [`BitReader`] works on an RBSP: run a NAL unit payload through
//! [`nal::rbsp`](super::nal::rbsp) first so emulation-prevention bytes are not
//! read as data. Each read has a plain form (`read_bits`) and a named form
//! (`bits`) whose errors carry the syntax element's name, which is what a
//! parser should use so a bad SPS says which field it broke in.

use super::CodecError;

/// Name used by the unnamed `read_*` methods in errors.
const UNNAMED: &str = "bitstream";

/// Reads bits MSB-first from a byte slice; never reads past the end.
#[derive(Clone, Debug)]
pub struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
}

impl<'a> BitReader<'a> {
    /// A reader positioned at the first bit of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        BitReader { data, pos: 0 }
    }

    /// Bits consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bits not yet read.
    pub fn bits_left(&self) -> usize {
        self.data.len() * 8 - self.pos
    }

    /// Whether the position is on a byte boundary.
    pub fn is_byte_aligned(&self) -> bool {
        self.pos.is_multiple_of(8)
    }

    fn exhausted(&self, what: &'static str, needed: usize) -> CodecError {
        CodecError::BitsExhausted {
            what,
            bit: self.pos,
            needed,
            had: self.bits_left(),
        }
    }

    /// One bit as a flag.
    pub fn read_bit(&mut self) -> Result<bool, CodecError> {
        self.flag(UNNAMED)
    }

    /// One bit as a flag; `what` names the syntax element in errors.
    pub fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        let Some(&byte) = self.data.get(self.pos / 8) else {
            return Err(self.exhausted(what, 1));
        };
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// `n` bits (0 to 32) as an unsigned number, first bit most significant.
    pub fn read_bits(&mut self, n: u32) -> Result<u32, CodecError> {
        self.bits(n, UNNAMED)
    }

    /// `n` bits (0 to 32); `what` names the syntax element in errors.
    pub fn bits(&mut self, n: u32, what: &'static str) -> Result<u32, CodecError> {
        if n > 32 {
            return Err(CodecError::invalid(
                what,
                format!("asked to read {n} bits at once, at most 32 fit"),
            ));
        }
        // At most 32 bits: the u64 path cannot lose anything.
        self.bits_u64(n, what).map(|v| v as u32)
    }

    /// `n` bits (0 to 64) as an unsigned number; for the 48-bit fields of
    /// H.265 profile_tier_level.
    pub fn bits_u64(&mut self, n: u32, what: &'static str) -> Result<u64, CodecError> {
        if n > 64 {
            return Err(CodecError::invalid(
                what,
                format!("asked to read {n} bits at once, at most 64 fit"),
            ));
        }
        let n = n as usize;
        if n > self.bits_left() {
            return Err(self.exhausted(what, n));
        }
        let mut v: u64 = 0;
        let mut left = n;
        while left > 0 {
            // Take as many bits as remain in the current byte, up to `left`.
            let byte = self.data[self.pos / 8];
            let offset = self.pos % 8;
            let avail = 8 - offset;
            let take = avail.min(left);
            let chunk = (byte >> (avail - take)) & (0xffu16 >> (8 - take)) as u8;
            v = (v << take) | u64::from(chunk);
            self.pos += take;
            left -= take;
        }
        Ok(v)
    }

    /// Skips `n` bits.
    pub fn skip(&mut self, n: usize) -> Result<(), CodecError> {
        self.skip_named(n, UNNAMED)
    }

    /// Skips `n` bits; `what` names what was skipped in errors.
    pub fn skip_named(&mut self, n: usize, what: &'static str) -> Result<(), CodecError> {
        if n > self.bits_left() {
            return Err(self.exhausted(what, n));
        }
        self.pos += n;
        Ok(())
    }

    /// An unsigned Exp-Golomb code, ue(v).
    pub fn read_ue(&mut self) -> Result<u32, CodecError> {
        self.ue(UNNAMED)
    }

    /// An unsigned Exp-Golomb code; `what` names the syntax element.
    ///
    /// More than 32 leading zero bits cannot encode a 32-bit value, and a
    /// long run of zeros is what garbage or a hostile stream looks like, so
    /// it is an error rather than a wrapped number.
    pub fn ue(&mut self, what: &'static str) -> Result<u32, CodecError> {
        let start = self.pos;
        let mut zeros = 0u32;
        while !self.flag(what)? {
            zeros += 1;
            if zeros > 32 {
                return Err(CodecError::invalid(
                    what,
                    format!("Exp-Golomb code at bit {start} has more than 32 leading zero bits"),
                ));
            }
        }
        let suffix = self.bits_u64(zeros, what)?;
        let value = (1u64 << zeros) - 1 + suffix;
        u32::try_from(value).map_err(|_| {
            CodecError::invalid(
                what,
                format!("Exp-Golomb code at bit {start} is {value}, beyond 32 bits"),
            )
        })
    }

    /// A signed Exp-Golomb code, se(v).
    pub fn read_se(&mut self) -> Result<i32, CodecError> {
        self.se(UNNAMED)
    }

    /// A signed Exp-Golomb code; `what` names the syntax element.
    pub fn se(&mut self, what: &'static str) -> Result<i32, CodecError> {
        let start = self.pos;
        let k = i64::from(self.ue(what)?);
        // Code numbers map 0, 1, -1, 2, -2, ...
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        i32::try_from(v).map_err(|_| {
            CodecError::invalid(
                what,
                format!("signed Exp-Golomb code at bit {start} is {v}, beyond 32 bits"),
            )
        })
    }

    /// `ue(v)` that must not exceed `max` (the range the specification
    /// allows), so later loops and shifts driven by it stay bounded.
    pub fn ue_max(&mut self, max: u32, what: &'static str) -> Result<u32, CodecError> {
        let start = self.pos;
        let v = self.ue(what)?;
        if v > max {
            return Err(CodecError::invalid(
                what,
                format!("expected at most {max}, got {v} (at bit {start})"),
            ));
        }
        Ok(v)
    }

    /// Skips to the next byte boundary.
    pub fn byte_align(&mut self) {
        self.pos = self.pos.div_ceil(8) * 8;
    }
}

/// Writes bits MSB-first into a growing byte vector.
#[derive(Clone, Debug, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits used in the last byte of `out` (0 when `out` ends on a boundary).
    used: u32,
}

impl BitWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bits written so far.
    pub fn bit_len(&self) -> usize {
        if self.used == 0 {
            self.out.len() * 8
        } else {
            (self.out.len() - 1) * 8 + self.used as usize
        }
    }

    /// Appends one bit.
    pub fn write_bit(&mut self, bit: bool) {
        if self.used == 0 {
            self.out.push(0);
        }
        if bit {
            if let Some(last) = self.out.last_mut() {
                *last |= 0x80 >> self.used;
            }
        }
        self.used = (self.used + 1) % 8;
    }

    /// Appends the low `n` bits of `value`, most significant first; higher
    /// bits of `value` are ignored and bits beyond 64 are zeros.
    pub fn write_bits(&mut self, value: u64, n: u32) {
        for i in (0..n).rev() {
            self.write_bit(i < 64 && (value >> i) & 1 == 1);
        }
    }

    /// Appends an unsigned Exp-Golomb code.
    pub fn write_ue(&mut self, value: u32) {
        let v = u64::from(value) + 1;
        let len = 64 - v.leading_zeros();
        self.write_bits(0, len - 1);
        self.write_bits(v, len);
    }

    /// Appends a signed Exp-Golomb code.
    pub fn write_se(&mut self, value: i32) {
        let v = i64::from(value);
        let k = if v > 0 { 2 * v - 1 } else { -2 * v };
        // |i32::MIN| * 2 = 2^32 does not fit ue(v); such values do not occur
        // in any syntax element this crate writes, so clamp rather than wrap.
        self.write_ue(u32::try_from(k).unwrap_or(u32::MAX));
    }

    /// Pads with zero bits to a byte boundary.
    pub fn byte_align(&mut self) {
        self.used = 0;
    }

    /// Writes rbsp_trailing_bits: a one bit, then zeros to a byte boundary.
    pub fn rbsp_trailing_bits(&mut self) {
        self.write_bit(true);
        self.byte_align();
    }

    /// The bytes written, the last one zero-padded.
    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_across_byte_boundaries() {
        let mut r = BitReader::new(&[0b1010_1100, 0b0101_0011]);
        assert!(r.read_bit().unwrap());
        assert_eq!(r.read_bits(3).unwrap(), 0b010);
        assert_eq!(r.read_bits(8).unwrap(), 0b1100_0101);
        assert_eq!(r.bits_left(), 4);
        assert_eq!(r.read_bits(4).unwrap(), 0b0011);
        assert_eq!(r.read_bits(0).unwrap(), 0);
        assert!(matches!(
            r.read_bit(),
            Err(CodecError::BitsExhausted {
                bit: 16,
                needed: 1,
                had: 0,
                ..
            })
        ));
    }

    #[test]
    fn exp_golomb_known_codes() {
        // 1 | 010 | 011 | 00100 | 00101 -> ue 0,1,2,3,4
        let mut w = BitWriter::new();
        for (code, len) in [(0b1, 1), (0b010, 3), (0b011, 3), (0b00100, 5), (0b00101, 5)] {
            w.write_bits(code, len);
        }
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        let got: Vec<u32> = (0..5).map(|_| r.read_ue().unwrap()).collect();
        assert_eq!(got, [0, 1, 2, 3, 4]);
        let mut r = BitReader::new(&bytes);
        let got: Vec<i32> = (0..5).map(|_| r.read_se().unwrap()).collect();
        assert_eq!(got, [0, 1, -1, 2, -2]);
    }

    #[test]
    fn exp_golomb_extremes() {
        let mut w = BitWriter::new();
        w.write_ue(u32::MAX);
        w.write_se(i32::MIN + 1);
        w.write_se(i32::MAX);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        assert_eq!(r.read_ue().unwrap(), u32::MAX);
        assert_eq!(r.read_se().unwrap(), i32::MIN + 1);
        assert_eq!(r.read_se().unwrap(), i32::MAX);
    }

    #[test]
    fn too_many_leading_zeros_is_an_error_not_a_hang() {
        let zeros = [0u8; 8];
        let err = BitReader::new(&zeros).ue("test_field").unwrap_err();
        assert!(
            matches!(&err, CodecError::Invalid { what: "test_field", detail } if detail.contains("32 leading zero")),
            "{err}"
        );
        // 32 zeros then 1 then 32 ones would be 2^33 - 2: too big.
        let mut w = BitWriter::new();
        w.write_bits(0, 32);
        w.write_bits(1, 1);
        w.write_bits(u64::from(u32::MAX), 32);
        assert!(matches!(
            BitReader::new(&w.into_bytes()).read_ue(),
            Err(CodecError::Invalid { .. })
        ));
    }

    #[test]
    fn named_errors_carry_the_name() {
        let err = BitReader::new(&[0x00]).ue("pic_width_in_mbs_minus1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "truncated pic_width_in_mbs_minus1 at bit 8: needed 1 bits, 0 left"
        );
        assert!(BitReader::new(&[0; 8]).read_bits(33).is_err());
        let err = BitReader::new(&[0x20]).ue_max(1, "x").unwrap_err();
        assert!(err.to_string().contains("at most 1, got 3"), "{err}");
    }

    #[test]
    fn writer_pads_and_aligns() {
        let mut w = BitWriter::new();
        w.write_bits(0b101, 3);
        assert_eq!(w.bit_len(), 3);
        w.rbsp_trailing_bits();
        w.write_bits(0xab, 8);
        assert_eq!(w.bit_len(), 16);
        w.write_bits(u64::MAX, 72);
        assert_eq!(w.bit_len(), 88);
        assert_eq!(
            w.into_bytes(),
            [0b1011_0000, 0xab, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]
        );
    }

    proptest! {
        #[test]
        fn ue_se_round_trip(us in proptest::collection::vec(any::<u32>(), 0..20),
                            ss in proptest::collection::vec(i32::MIN + 1..=i32::MAX, 0..20)) {
            let mut w = BitWriter::new();
            for &u in &us { w.write_ue(u); }
            for &s in &ss { w.write_se(s); }
            let bytes = w.into_bytes();
            let mut r = BitReader::new(&bytes);
            for &u in &us { prop_assert_eq!(r.read_ue().unwrap(), u); }
            for &s in &ss { prop_assert_eq!(r.read_se().unwrap(), s); }
        }

        #[test]
        fn reader_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16),
                               ops in proptest::collection::vec(0u8..6, 0..40)) {
            let mut r = BitReader::new(&data);
            for op in ops {
                let _ = match op {
                    0 => r.read_bit().map(|_| ()),
                    1 => r.read_bits(u32::from(op) * 7).map(|_| ()),
                    2 => r.read_ue().map(|_| ()),
                    3 => r.read_se().map(|_| ()),
                    4 => r.skip(5),
                    _ => { r.byte_align(); Ok(()) }
                };
                prop_assert!(r.position() <= data.len() * 8);
            }
        }
    }
}
