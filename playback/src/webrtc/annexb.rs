//! H.264 access units from the store's AVC form (length-prefixed NAL
//! units) to Annex B (start codes), which the RTP payloader splits on.
//! Done once per frame for all viewers.

use bytes::{BufMut, Bytes, BytesMut};

/// Why an access unit could not be converted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AnnexBError {
    /// A NAL unit's length runs past the end of the access unit.
    #[error("NAL unit at byte {offset} claims {len} bytes, {left} are left")]
    Truncated {
        /// Where its length prefix starts.
        offset: usize,
        /// The length it claims.
        len: usize,
        /// Bytes left after the prefix.
        left: usize,
    },
    /// The avcC's NAL length size is not 1, 2 or 4.
    #[error("NAL length size {0} (expected 1, 2 or 4)")]
    LengthSize(usize),
}

/// The NAL length size an AVCDecoderConfigurationRecord declares (4 when
/// the record is too short to say, which is what every encoder here emits).
pub fn length_size(avcc: &[u8]) -> usize {
    avcc.get(4).map_or(4, |b| usize::from(b & 0x03) + 1)
}

/// `au` (NAL units each prefixed by a `length_size`-byte big-endian length)
/// as Annex B with 4-byte start codes.
pub fn from_avc(au: &[u8], length_size: usize) -> Result<Bytes, AnnexBError> {
    if !matches!(length_size, 1 | 2 | 4) {
        return Err(AnnexBError::LengthSize(length_size));
    }
    // Same size as the input when the prefixes are 4 bytes (the usual case).
    let mut out = BytesMut::with_capacity(au.len() + au.len() / 64);
    let mut at = 0;
    while at < au.len() {
        let Some(prefix) = au.get(at..at + length_size) else {
            return Err(AnnexBError::Truncated {
                offset: at,
                len: length_size,
                left: au.len() - at,
            });
        };
        let len = prefix.iter().fold(0usize, |n, b| (n << 8) | usize::from(*b));
        let body = at + length_size;
        let left = au.len() - body;
        if len > left {
            return Err(AnnexBError::Truncated { offset: at, len, left });
        }
        if len > 0 {
            out.put_slice(&[0, 0, 0, 1]);
            out.put_slice(&au[body..body + len]);
        }
        at = body + len;
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_prefixes_become_start_codes() {
        let au = [0, 0, 0, 2, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 3, 0x65, 1, 2];
        assert_eq!(
            &from_avc(&au, 4).unwrap()[..],
            &[0, 0, 0, 1, 0x67, 0x42, 0, 0, 0, 1, 0x68, 0, 0, 0, 1, 0x65, 1, 2]
        );
        assert_eq!(&from_avc(&[0, 1, 0x41], 2).unwrap()[..], &[0, 0, 0, 1, 0x41]);
        assert!(from_avc(&[], 4).unwrap().is_empty());
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_a_panic() {
        assert_eq!(
            from_avc(&[0, 0, 0, 9, 0x65], 4),
            Err(AnnexBError::Truncated {
                offset: 0,
                len: 9,
                left: 1
            })
        );
        assert!(matches!(from_avc(&[0, 0], 4), Err(AnnexBError::Truncated { .. })));
        assert_eq!(from_avc(&[1], 3), Err(AnnexBError::LengthSize(3)));
    }

    #[test]
    fn the_length_size_comes_from_the_avcc() {
        assert_eq!(length_size(&[1, 0x64, 0, 0x1f, 0xff]), 4);
        assert_eq!(length_size(&[1, 0x64, 0, 0x1f, 0xfd]), 2);
        assert_eq!(length_size(&[]), 4);
    }
}
