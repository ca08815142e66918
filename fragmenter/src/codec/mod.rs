//! Codec helpers: bitstream parsing and the small binary records containers
//! need to describe a track (avcC, hvcC, AudioSpecificConfig, OpusHead,
//! WAVEFORMATEX), plus NAL unit framing conversions.
//!
//! Everything here parses bytes that came over the network from a camera, so
//! no function panics on any input: every read is checked and malformed data
//! comes back as a [`CodecError`] saying what was expected, what came, and
//! where.

pub mod aac;
pub mod bits;
mod cursor;
pub mod g711;
pub mod h264;
pub mod h265;
pub mod nal;
pub mod opus;
pub mod vui;

/// Why codec data could not be parsed or built.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum CodecError {
    /// A required element is absent (e.g. no SPS in a decoder configuration).
    #[error("missing {what}")]
    Missing {
        /// What was looked for.
        what: &'static str,
    },
    /// A byte-aligned structure ended before a field it declares.
    #[error("truncated {what} at byte {offset}: needed {needed} bytes, {had} left")]
    Truncated {
        /// The field or structure being read.
        what: &'static str,
        /// Byte offset of the field within the structure.
        offset: usize,
        /// Bytes the field needs.
        needed: usize,
        /// Bytes that were left.
        had: usize,
    },
    /// A bitstream (SPS, AudioSpecificConfig, ...) ended inside a field.
    #[error("truncated {what} at bit {bit}: needed {needed} bits, {had} left")]
    BitsExhausted {
        /// The syntax element being read.
        what: &'static str,
        /// Bit offset of the element within the (unescaped) payload.
        bit: usize,
        /// Bits the element needs (at least).
        needed: usize,
        /// Bits that were left.
        had: usize,
    },
    /// A field holds a value the specification does not allow.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// The field or structure.
        what: &'static str,
        /// What was expected and what came.
        detail: String,
    },
    /// Valid data using a feature this crate does not handle.
    #[error("unsupported {what}: {detail}")]
    Unsupported {
        /// The feature.
        what: &'static str,
        /// Which value selected it.
        detail: String,
    },
}

impl CodecError {
    /// Shorthand for [`CodecError::Invalid`].
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        CodecError::Invalid {
            what,
            detail: detail.into(),
        }
    }

    /// Shorthand for [`CodecError::Unsupported`].
    pub(crate) fn unsupported(what: &'static str, detail: impl Into<String>) -> Self {
        CodecError::Unsupported {
            what,
            detail: detail.into(),
        }
    }
}

/// Bytes as space-separated hex for error messages; long runs are cut so a
/// hostile multi-megabyte input cannot produce a multi-megabyte message.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const MAX: usize = 16;
    let mut s = String::with_capacity(bytes.len().min(MAX) * 3 + 4);
    for (i, b) in bytes.iter().take(MAX).enumerate() {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(&format!("{b:02x}"));
    }
    if bytes.len() > MAX {
        s.push_str(" ...");
    }
    s
}

/// Greatest common divisor, for reducing frame-rate fractions.
pub(crate) fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// `num/den` reduced, or `None` when either is zero or the reduced terms do
/// not fit `u32` (a frame rate nobody can use anyway).
pub(crate) fn reduced_fraction(num: u64, den: u64) -> Option<(u32, u32)> {
    if num == 0 || den == 0 {
        return None;
    }
    let g = gcd(num, den);
    Some((u32::try_from(num / g).ok()?, u32::try_from(den / g).ok()?))
}

#[cfg(test)]
pub(crate) mod testutil {
    /// Decodes a hex string (whitespace allowed) for embedding captured
    /// bitstreams in tests.
    pub fn unhex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        assert!(digits.len().is_multiple_of(2), "odd hex length");
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_sentences() {
        assert_eq!(
            CodecError::Missing { what: "SPS in avcC" }.to_string(),
            "missing SPS in avcC"
        );
        assert_eq!(
            CodecError::Truncated {
                what: "avcC SPS",
                offset: 8,
                needed: 30,
                had: 4
            }
            .to_string(),
            "truncated avcC SPS at byte 8: needed 30 bytes, 4 left"
        );
    }

    #[test]
    fn hex_is_short() {
        assert_eq!(hex(&[0, 0x1f, 0xab]), "00 1f ab");
        assert!(hex(&[0u8; 100]).ends_with(" ..."));
    }

    #[test]
    fn fractions_reduce() {
        assert_eq!(reduced_fraction(60, 2), Some((30, 1)));
        assert_eq!(reduced_fraction(60000, 2002), Some((30000, 1001)));
        assert_eq!(reduced_fraction(0, 2), None);
        assert_eq!(reduced_fraction(1 << 40, 3), None);
    }
}
