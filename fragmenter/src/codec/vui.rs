//! The part of the video usability information (VUI) that H.264 (E.1.1) and
//! H.265 (E.2.1) share: sample aspect ratio, overscan, video signal type and
//! chroma location. Each codec parses its own tail (timing, HRD, ...).

use super::bits::BitReader;
use super::CodecError;

/// Colour description from the VUI video signal type (ITU-T H.273 code
/// points).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ColourDescription {
    /// colour_primaries (1 = BT.709).
    pub primaries: u8,
    /// transfer_characteristics (1 = BT.709, 16 = PQ, 18 = HLG).
    pub transfer: u8,
    /// matrix_coeffs (1 = BT.709, 9 = BT.2020 non-constant).
    pub matrix: u8,
}

/// What the shared VUI head says about the picture.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VuiHead {
    pub sample_aspect_ratio: Option<(u16, u16)>,
    pub video_full_range: Option<bool>,
    pub colour: Option<ColourDescription>,
}

/// Sample aspect ratios for aspect_ratio_idc 1..=16 (Table E-1, same in
/// both codecs).
const SAR_TABLE: [(u16, u16); 16] = [
    (1, 1),
    (12, 11),
    (10, 11),
    (16, 11),
    (40, 33),
    (24, 11),
    (20, 11),
    (32, 11),
    (80, 33),
    (18, 11),
    (15, 11),
    (64, 33),
    (160, 99),
    (4, 3),
    (3, 2),
    (2, 1),
];

/// aspect_ratio_idc value that announces an explicit sar_width/sar_height.
const EXTENDED_SAR: u32 = 255;

/// Reads from aspect_ratio_info_present_flag through the chroma location
/// info, filling `out` as it goes so a caller that tolerates a truncated VUI
/// keeps whatever was read before the end.
pub(crate) fn parse_head(r: &mut BitReader<'_>, out: &mut VuiHead) -> Result<(), CodecError> {
    if r.flag("aspect_ratio_info_present_flag")? {
        let idc = r.bits(8, "aspect_ratio_idc")?;
        out.sample_aspect_ratio = if idc == EXTENDED_SAR {
            let w = r.bits(16, "sar_width")? as u16;
            let h = r.bits(16, "sar_height")? as u16;
            // 0:0 means "unspecified" in practice; do not report it.
            (w != 0 && h != 0).then_some((w, h))
        } else {
            // 0 is unspecified and 17..=254 reserved: nothing to report.
            (idc as usize).checked_sub(1).and_then(|i| SAR_TABLE.get(i).copied())
        };
    }
    if r.flag("overscan_info_present_flag")? {
        r.flag("overscan_appropriate_flag")?;
    }
    if r.flag("video_signal_type_present_flag")? {
        r.bits(3, "video_format")?;
        out.video_full_range = Some(r.flag("video_full_range_flag")?);
        if r.flag("colour_description_present_flag")? {
            out.colour = Some(ColourDescription {
                primaries: r.bits(8, "colour_primaries")? as u8,
                transfer: r.bits(8, "transfer_characteristics")? as u8,
                matrix: r.bits(8, "matrix_coefficients")? as u8,
            });
        }
    }
    if r.flag("chroma_loc_info_present_flag")? {
        r.ue_max(5, "chroma_sample_loc_type_top_field")?;
        r.ue_max(5, "chroma_sample_loc_type_bottom_field")?;
    }
    Ok(())
}

/// Runs a VUI parse that may end early: running out of bits inside the VUI
/// is tolerated (some encoders truncate it, and decoders ignore that), any
/// other error is returned.
pub(crate) fn tolerate_truncation(result: Result<(), CodecError>) -> Result<(), CodecError> {
    match result {
        Err(CodecError::BitsExhausted { .. }) | Ok(()) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::bits::BitWriter;

    #[test]
    fn reads_extended_sar_and_colour() {
        let mut w = BitWriter::new();
        w.write_bit(true);
        w.write_bits(255, 8);
        w.write_bits(4, 16);
        w.write_bits(3, 16);
        w.write_bit(true); // overscan info
        w.write_bit(false);
        w.write_bit(true); // video signal
        w.write_bits(5, 3);
        w.write_bit(true); // full range
        w.write_bit(true);
        w.write_bits(9, 8);
        w.write_bits(16, 8);
        w.write_bits(9, 8);
        w.write_bit(true); // chroma loc
        w.write_ue(1);
        w.write_ue(1);
        let bytes = w.into_bytes();
        let mut r = BitReader::new(&bytes);
        let mut head = VuiHead::default();
        parse_head(&mut r, &mut head).unwrap();
        assert_eq!(head.sample_aspect_ratio, Some((4, 3)));
        assert_eq!(head.video_full_range, Some(true));
        assert_eq!(
            head.colour,
            Some(ColourDescription {
                primaries: 9,
                transfer: 16,
                matrix: 9
            })
        );
    }

    #[test]
    fn truncation_keeps_what_was_read() {
        // SAR idc 14 (4:3), then the data ends.
        let bytes = [0b1000_0111, 0b0000_0000];
        let mut r = BitReader::new(&bytes[..1]);
        let mut head = VuiHead::default();
        let res = parse_head(&mut r, &mut head);
        assert!(res.is_err());
        assert!(tolerate_truncation(res).is_ok());
        let mut r = BitReader::new(&bytes);
        parse_head(&mut r, &mut head).unwrap();
        assert_eq!(head.sample_aspect_ratio, Some((4, 3)));
    }
}
