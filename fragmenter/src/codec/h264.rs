//! H.264 / AVC: sequence parameter set parsing (ITU-T H.264 7.3.2.1.1), the
//! AVCDecoderConfigurationRecord (`avcC`, ISO/IEC 14496-15 5.3.3.1) and the
//! RFC 6381 codecs string.

use bytes::Bytes;

use super::bits::BitReader;
use super::cursor::Cursor;
use super::vui::{self, ColourDescription, VuiHead};
use super::{hex, nal, reduced_fraction, CodecError};

/// nal_unit_type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// nal_unit_type of supplemental enhancement information.
pub const NAL_SEI: u8 = 6;
/// nal_unit_type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// nal_unit_type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// nal_unit_type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// Profiles whose SPS carries chroma_format_idc, bit depths and scaling
/// matrices (7.3.2.1.1); 144 is the High 4:4:4 profile of the 2005 edition,
/// still found in old streams.
const HIGH_PROFILES: [u8; 14] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135, 144];

/// Profiles for which avcC carries the chroma / bit depth extension
/// (ISO/IEC 14496-15 5.3.3.1.2).
const AVCC_EXTENSION_PROFILES: [u8; 4] = [100, 110, 122, 144];

/// The fields of an H.264 sequence parameter set that a muxer or player
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// profile_idc (66 Baseline, 77 Main, 100 High, ...).
    pub profile_idc: u8,
    /// constraint_set0..5 flags and the two reserved bits, as the byte after
    /// profile_idc.
    pub constraint_flags: u8,
    /// level_idc (level × 10, e.g. 31 for 3.1).
    pub level_idc: u8,
    /// seq_parameter_set_id.
    pub sps_id: u32,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4 (1 when not signalled).
    pub chroma_format_idc: u32,
    /// separate_colour_plane_flag (4:4:4 coded as three monochrome planes).
    pub separate_colour_plane: bool,
    /// Luma bit depth (8 when not signalled).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (8 when not signalled).
    pub bit_depth_chroma: u8,
    /// log2 of MaxFrameNum.
    pub log2_max_frame_num: u8,
    /// pic_order_cnt_type (0, 1 or 2).
    pub pic_order_cnt_type: u8,
    /// log2 of MaxPicOrderCntLsb, for pic_order_cnt_type 0.
    pub log2_max_pic_order_cnt_lsb: Option<u8>,
    /// max_num_ref_frames.
    pub max_num_ref_frames: u32,
    /// frame_mbs_only_flag: false when the stream may hold field pictures.
    pub frame_mbs_only: bool,
    /// Width in luma samples before cropping (a multiple of 16).
    pub coded_width: u32,
    /// Height in luma samples before cropping (frame, not field).
    pub coded_height: u32,
    /// Displayed width after the frame cropping rectangle.
    pub width: u32,
    /// Displayed height after the frame cropping rectangle.
    pub height: u32,
    /// Sample (pixel) aspect ratio from the VUI, when specified.
    pub sample_aspect_ratio: Option<(u16, u16)>,
    /// video_full_range_flag from the VUI, when signalled.
    pub video_full_range: Option<bool>,
    /// Colour primaries / transfer / matrix from the VUI, when signalled.
    pub colour: Option<ColourDescription>,
    /// Frame rate from the VUI timing info as `(num, den)` reduced, i.e.
    /// time_scale / (2 × num_units_in_tick).
    pub frame_rate: Option<(u32, u32)>,
    /// fixed_frame_rate_flag from the VUI timing info.
    pub fixed_frame_rate: bool,
}

/// The 1-byte NAL header's nal_unit_type, checked against `expected`.
fn check_header(nal: &[u8], expected: u8, what: &'static str) -> Result<(), CodecError> {
    let Some(&header) = nal.first() else {
        return Err(CodecError::Missing { what });
    };
    if header & 0x80 != 0 {
        return Err(CodecError::invalid(
            what,
            format!("forbidden_zero_bit is set in header byte {header:02x}"),
        ));
    }
    let t = header & 0x1f;
    if t != expected {
        return Err(CodecError::invalid(
            what,
            format!("expected nal_unit_type {expected}, got {t} (header byte {header:02x})"),
        ));
    }
    Ok(())
}

/// Skips a scaling_list() (7.3.2.1.1.1); only its length matters here, but
/// that length depends on the values, so every delta has to be read.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Result<(), CodecError> {
    let mut last: i32 = 8;
    let mut next: i32 = 8;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se("delta_scale")?;
            if !(-128..=127).contains(&delta) {
                return Err(CodecError::invalid(
                    "delta_scale",
                    format!("expected -128..=127, got {delta} at bit {}", r.position()),
                ));
            }
            next = (last + delta + 256) % 256;
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

impl Sps {
    /// Parses an SPS NAL unit, header byte included (nal_unit_type 7).
    pub fn parse(nal: &[u8]) -> Result<Sps, CodecError> {
        check_header(nal, NAL_SPS, "H.264 SPS NAL header")?;
        let data = nal::rbsp(&nal[1..]);
        let mut r = BitReader::new(&data);

        let profile_idc = r.bits(8, "profile_idc")? as u8;
        let constraint_flags = r.bits(8, "constraint_set_flags")? as u8;
        let level_idc = r.bits(8, "level_idc")? as u8;
        let sps_id = r.ue_max(31, "seq_parameter_set_id")?;

        let mut chroma_format_idc = 1;
        let mut separate_colour_plane = false;
        let mut bit_depth_luma = 8;
        let mut bit_depth_chroma = 8;
        if HIGH_PROFILES.contains(&profile_idc) {
            chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.flag("separate_colour_plane_flag")?;
            }
            bit_depth_luma = 8 + r.ue_max(6, "bit_depth_luma_minus8")? as u8;
            bit_depth_chroma = 8 + r.ue_max(6, "bit_depth_chroma_minus8")? as u8;
            r.flag("qpprime_y_zero_transform_bypass_flag")?;
            if r.flag("seq_scaling_matrix_present_flag")? {
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.flag("seq_scaling_list_present_flag")? {
                        skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                    }
                }
            }
        }

        let log2_max_frame_num = 4 + r.ue_max(12, "log2_max_frame_num_minus4")? as u8;
        let pic_order_cnt_type = r.ue_max(2, "pic_order_cnt_type")? as u8;
        let mut log2_max_pic_order_cnt_lsb = None;
        match pic_order_cnt_type {
            0 => {
                log2_max_pic_order_cnt_lsb = Some(4 + r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")? as u8);
            }
            1 => {
                r.flag("delta_pic_order_always_zero_flag")?;
                r.se("offset_for_non_ref_pic")?;
                r.se("offset_for_top_to_bottom_field")?;
                let cycle = r.ue_max(255, "num_ref_frames_in_pic_order_cnt_cycle")?;
                for _ in 0..cycle {
                    r.se("offset_for_ref_frame")?;
                }
            }
            _ => {}
        }
        let max_num_ref_frames = r.ue("max_num_ref_frames")?;
        r.flag("gaps_in_frame_num_value_allowed_flag")?;
        let width_mbs = u64::from(r.ue("pic_width_in_mbs_minus1")?) + 1;
        let height_map_units = u64::from(r.ue("pic_height_in_map_units_minus1")?) + 1;
        let frame_mbs_only = r.flag("frame_mbs_only_flag")?;
        if !frame_mbs_only {
            r.flag("mb_adaptive_frame_field_flag")?;
        }
        r.flag("direct_8x8_inference_flag")?;
        let mut crop = [0u64; 4];
        if r.flag("frame_cropping_flag")? {
            for (c, name) in crop.iter_mut().zip([
                "frame_crop_left_offset",
                "frame_crop_right_offset",
                "frame_crop_top_offset",
                "frame_crop_bottom_offset",
            ]) {
                *c = u64::from(r.ue(name)?);
            }
        }

        // Table 6-1 and 7.4.2.1.1: cropping counts in chroma sample units,
        // and in field pairs when the frame may be coded as two fields.
        let field_factor = if frame_mbs_only { 1 } else { 2 };
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (crop_unit_x, crop_unit_y) = match chroma_array_type {
            1 => (2, 2 * field_factor),
            2 => (2, field_factor),
            _ => (1, field_factor),
        };
        let coded_width = width_mbs * 16;
        let coded_height = height_map_units * field_factor * 16;
        let crop_x = crop_unit_x * (crop[0] + crop[1]);
        let crop_y = crop_unit_y * (crop[2] + crop[3]);
        if crop_x >= coded_width || crop_y >= coded_height {
            return Err(CodecError::invalid(
                "H.264 SPS frame cropping",
                format!(
                    "cropping {crop_x}x{crop_y} samples (offsets l/r/t/b {:?}) \
                     leaves nothing of {coded_width}x{coded_height}",
                    crop
                ),
            ));
        }
        let to_u32 = |v: u64, what: &'static str| {
            u32::try_from(v).map_err(|_| CodecError::invalid(what, format!("{v} samples does not fit 32 bits")))
        };

        let mut sps = Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            sps_id,
            chroma_format_idc,
            separate_colour_plane,
            bit_depth_luma,
            bit_depth_chroma,
            log2_max_frame_num,
            pic_order_cnt_type,
            log2_max_pic_order_cnt_lsb,
            max_num_ref_frames,
            frame_mbs_only,
            coded_width: to_u32(coded_width, "H.264 SPS width")?,
            coded_height: to_u32(coded_height, "H.264 SPS height")?,
            width: to_u32(coded_width - crop_x, "H.264 SPS width")?,
            height: to_u32(coded_height - crop_y, "H.264 SPS height")?,
            sample_aspect_ratio: None,
            video_full_range: None,
            colour: None,
            frame_rate: None,
            fixed_frame_rate: false,
        };
        if r.flag("vui_parameters_present_flag")? {
            vui::tolerate_truncation(sps.parse_vui(&mut r))?;
        }
        Ok(sps)
    }

    /// vui_parameters() (E.1.1) up to the timing info; HRD parameters and
    /// bitstream restrictions follow but nothing here needs them.
    fn parse_vui(&mut self, r: &mut BitReader<'_>) -> Result<(), CodecError> {
        let mut head = VuiHead::default();
        let res = vui::parse_head(r, &mut head);
        self.sample_aspect_ratio = head.sample_aspect_ratio;
        self.video_full_range = head.video_full_range;
        self.colour = head.colour;
        res?;
        if r.flag("timing_info_present_flag")? {
            let num_units_in_tick = r.bits(32, "num_units_in_tick")?;
            let time_scale = r.bits(32, "time_scale")?;
            self.fixed_frame_rate = r.flag("fixed_frame_rate_flag")?;
            // One frame is two ticks (E.2.1: a tick is a field period).
            self.frame_rate = reduced_fraction(u64::from(time_scale), 2 * u64::from(num_units_in_tick));
        }
        Ok(())
    }
}

/// The AVCDecoderConfigurationRecord carried in MP4 `avcC` and Matroska
/// CodecPrivate for `V_MPEG4/ISO/AVC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcDecoderConfig {
    /// AVCProfileIndication (profile_idc of the SPS).
    pub profile_idc: u8,
    /// profile_compatibility (the SPS constraint flags byte).
    pub profile_compat: u8,
    /// AVCLevelIndication.
    pub level_idc: u8,
    /// Bytes of each NAL unit length prefix in samples: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Sequence parameter set NAL units, header included.
    pub sps: Vec<Bytes>,
    /// Picture parameter set NAL units, header included.
    pub pps: Vec<Bytes>,
    /// chroma_format_idc from the High-profile extension, when present.
    pub chroma_format: Option<u8>,
    /// Luma bit depth (8..=15) from the High-profile extension.
    pub bit_depth_luma: Option<u8>,
    /// Chroma bit depth (8..=15) from the High-profile extension.
    pub bit_depth_chroma: Option<u8>,
    /// SPS extension NAL units from the High-profile extension.
    pub sps_ext: Vec<Bytes>,
}

/// Reads `count` units each behind a 16-bit length, checking each is a NAL
/// unit of type `nal_type` (when given).
fn read_units(
    c: &mut Cursor<'_>,
    count: usize,
    nal_type: Option<u8>,
    what: &'static str,
) -> Result<Vec<Bytes>, CodecError> {
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let len = c.u16(what)? as usize;
        let at = c.position();
        let unit = c.bytes(len, what)?;
        if let Some(t) = nal_type {
            let got = unit.first().map(|b| b & 0x1f);
            if got != Some(t) {
                return Err(CodecError::invalid(
                    what,
                    format!(
                        "expected unit {i} at byte {at} to be nal_unit_type {t}, got {} ({})",
                        got.map_or("an empty unit".to_owned(), |g| format!("type {g}")),
                        hex(unit)
                    ),
                ));
            }
        }
        out.push(Bytes::copy_from_slice(unit));
    }
    Ok(out)
}

impl AvcDecoderConfig {
    /// Parses an AVCDecoderConfigurationRecord. The High-profile extension
    /// is read when the profile calls for it and the bytes are there; many
    /// muxers (GStreamer among them) leave it out, so its absence is fine.
    pub fn parse(avcc: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(avcc);
        let version = c.u8("avcC configurationVersion")?;
        if version != 1 {
            return Err(CodecError::invalid(
                "avcC configurationVersion",
                format!("expected 1, got {version} (record starts {})", hex(avcc)),
            ));
        }
        let profile_idc = c.u8("avcC AVCProfileIndication")?;
        let profile_compat = c.u8("avcC profile_compatibility")?;
        let level_idc = c.u8("avcC AVCLevelIndication")?;
        let nal_length_size = (c.u8("avcC lengthSizeMinusOne")? & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::invalid(
                "avcC lengthSizeMinusOne",
                "expected 0, 1 or 3, got 2 (3-byte NAL lengths are not allowed)",
            ));
        }
        let num_sps = usize::from(c.u8("avcC numOfSequenceParameterSets")? & 0x1f);
        let sps = read_units(&mut c, num_sps, Some(NAL_SPS), "avcC SPS")?;
        let num_pps = usize::from(c.u8("avcC numOfPictureParameterSets")?);
        let pps = read_units(&mut c, num_pps, Some(NAL_PPS), "avcC PPS")?;

        let mut cfg = AvcDecoderConfig {
            profile_idc,
            profile_compat,
            level_idc,
            nal_length_size,
            sps,
            pps,
            chroma_format: None,
            bit_depth_luma: None,
            bit_depth_chroma: None,
            sps_ext: Vec::new(),
        };
        // Fewer than the four fixed bytes is padding, not an extension.
        if AVCC_EXTENSION_PROFILES.contains(&profile_idc) && c.remaining() >= 4 {
            cfg.chroma_format = Some(c.u8("avcC chroma_format")? & 0x03);
            cfg.bit_depth_luma = Some((c.u8("avcC bit_depth_luma_minus8")? & 0x07) + 8);
            cfg.bit_depth_chroma = Some((c.u8("avcC bit_depth_chroma_minus8")? & 0x07) + 8);
            let n = usize::from(c.u8("avcC numOfSequenceParameterSetExt")?);
            cfg.sps_ext = read_units(&mut c, n, None, "avcC SPS extension")?;
        }
        Ok(cfg)
    }

    /// Serializes the record, writing the High-profile extension for
    /// profiles 100, 110, 122 and 144 when chroma format and both bit depths
    /// are set.
    ///
    /// Never fails: values the record cannot carry are cut to fit (units
    /// beyond 31 SPS / 255 PPS or longer than 65535 bytes are dropped,
    /// out-of-range numbers masked to their field) so the output always
    /// parses. Use [`try_to_bytes`](Self::try_to_bytes) to be told instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write(false).unwrap_or_default()
    }

    /// Serializes the record, failing on anything [`to_bytes`](Self::to_bytes)
    /// would have to cut.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        self.write(true)
    }

    fn write(&self, strict: bool) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![1, self.profile_idc, self.profile_compat, self.level_idc];
        if strict && !matches!(self.nal_length_size, 1 | 2 | 4) {
            return Err(CodecError::invalid(
                "avcC nal_length_size",
                format!("expected 1, 2 or 4, got {}", self.nal_length_size),
            ));
        }
        out.push(0xfc | (self.nal_length_size.wrapping_sub(1) & 0x03));
        write_units(&mut out, &self.sps, 0x1f, 0xe0, strict, "avcC SPS")?;
        write_units(&mut out, &self.pps, 0xff, 0, strict, "avcC PPS")?;
        if let (true, Some(chroma), Some(luma), Some(chroma_depth)) = (
            AVCC_EXTENSION_PROFILES.contains(&self.profile_idc),
            self.chroma_format,
            self.bit_depth_luma,
            self.bit_depth_chroma,
        ) {
            if strict {
                if chroma > 3 {
                    return Err(CodecError::invalid(
                        "avcC chroma_format",
                        format!("expected 0..=3, got {chroma}"),
                    ));
                }
                for d in [luma, chroma_depth] {
                    if !(8..=15).contains(&d) {
                        return Err(CodecError::invalid(
                            "avcC bit depth",
                            format!("expected 8..=15, got {d}"),
                        ));
                    }
                }
            }
            out.push(0xfc | (chroma & 0x03));
            out.push(0xf8 | (luma.wrapping_sub(8) & 0x07));
            out.push(0xf8 | (chroma_depth.wrapping_sub(8) & 0x07));
            write_units(&mut out, &self.sps_ext, 0xff, 0, strict, "avcC SPS extension")?;
        }
        Ok(out)
    }

    /// Builds a record from parameter set NAL units (headers included):
    /// profile, compatibility and level come from the first SPS, which must
    /// parse; for the profiles with an avcC extension its chroma format and
    /// bit depths are filled in. NAL lengths are 4 bytes.
    pub fn from_parameter_sets(sps: &[&[u8]], pps: &[&[u8]]) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Missing { what: "SPS" })?;
        let parsed = Sps::parse(first)?;
        for s in &sps[1..] {
            check_header(s, NAL_SPS, "H.264 SPS NAL header")?;
        }
        for p in pps {
            check_header(p, NAL_PPS, "H.264 PPS NAL header")?;
        }
        let ext = AVCC_EXTENSION_PROFILES.contains(&parsed.profile_idc);
        Ok(AvcDecoderConfig {
            profile_idc: parsed.profile_idc,
            profile_compat: parsed.constraint_flags,
            level_idc: parsed.level_idc,
            nal_length_size: 4,
            sps: sps.iter().map(|s| Bytes::copy_from_slice(s)).collect(),
            pps: pps.iter().map(|p| Bytes::copy_from_slice(p)).collect(),
            // chroma_format_idc is at most 3 and bit depths at most 14 once
            // parsed, so the narrowing is lossless.
            chroma_format: ext.then_some(parsed.chroma_format_idc as u8),
            bit_depth_luma: ext.then_some(parsed.bit_depth_luma),
            bit_depth_chroma: ext.then_some(parsed.bit_depth_chroma),
            sps_ext: Vec::new(),
        })
    }

    /// The RFC 6381 codecs string for this record, e.g. `avc1.64001f`.
    pub fn codec_string(&self) -> String {
        format!(
            "avc1.{:02x}{:02x}{:02x}",
            self.profile_idc, self.profile_compat, self.level_idc
        )
    }
}

/// Writes a unit count (masked by `count_mask`, OR-ed with the reserved
/// bits) and the units behind 16-bit lengths.
fn write_units(
    out: &mut Vec<u8>,
    units: &[Bytes],
    count_mask: u8,
    reserved: u8,
    strict: bool,
    what: &'static str,
) -> Result<(), CodecError> {
    let max = usize::from(count_mask);
    if strict {
        if units.len() > max {
            return Err(CodecError::invalid(
                what,
                format!("at most {max} units fit the record, got {}", units.len()),
            ));
        }
        if let Some(u) = units.iter().find(|u| u.len() > usize::from(u16::MAX)) {
            return Err(CodecError::invalid(
                what,
                format!("a {}-byte unit does not fit a 16-bit length", u.len()),
            ));
        }
    }
    let fitting: Vec<&Bytes> = units
        .iter()
        .filter(|u| u.len() <= usize::from(u16::MAX))
        .take(max)
        .collect();
    // `take(max)` keeps the count within the mask.
    out.push(reserved | fitting.len() as u8);
    for u in fitting {
        out.extend_from_slice(&(u.len() as u16).to_be_bytes());
        out.extend_from_slice(u);
    }
    Ok(())
}

/// The RFC 6381 codecs string (`avc1.PPCCLL`, lower-case hex) of an avcC
/// record; `avc1.42e01e` (Constrained Baseline 3.0, which every player
/// accepts) when the record does not parse.
pub fn codec_string(avcc: &[u8]) -> String {
    AvcDecoderConfig::parse(avcc)
        .map(|c| c.codec_string())
        .unwrap_or_else(|_| "avc1.42e01e".to_owned())
}

/// nal_unit_type of a NAL unit (header included), `None` for an empty one.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| b & 0x1f)
}

/// Whether a frame holds an IDR slice. `length_size` is the NAL length
/// prefix size (1, 2 or 4), or 0 for an Annex-B frame.
pub fn is_idr_frame(data: &[u8], length_size: usize) -> bool {
    nal::frame_units(data, length_size).any(|u| nal_type(u) == Some(NAL_IDR))
}

/// The SPS and PPS NAL units in a frame, in order. `length_size` is as for
/// [`is_idr_frame`].
pub fn parameter_sets_in(data: &[u8], length_size: usize) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    for u in nal::frame_units(data, length_size) {
        match nal_type(u) {
            Some(NAL_SPS) => sps.push(u),
            Some(NAL_PPS) => pps.push(u),
            _ => {}
        }
    }
    (sps, pps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::bits::BitWriter;
    use crate::codec::testutil::unhex;
    use proptest::prelude::*;

    // Captured from GStreamer 1.22 x264enc (x264 core 164) with
    // `videotestsrc num-buffers=1 ! video/x-raw,... ! x264enc !
    // video/x-h264,stream-format=byte-stream[,profile=...]`; the AVCC
    // constants are the codec_data GStreamer puts in the caps for the same
    // pipeline with `stream-format=avc`.

    /// I420 1920x1080 30/1, default profile (High 4.0).
    const X264_HIGH_1080P30_SPS: &str = "67640028acd940780227e5c05a808080a0000003002000000791e30632c0";
    const X264_HIGH_1080P30_PPS: &str = "68ebecb22c";
    const X264_HIGH_1080P30_AVCC: &str =
        "01640028ffe1001e67640028acd940780227e5c05a808080a0000003002000000791e30632c001000568ebecb22c";
    /// I420 640x360 30/1, profile=baseline.
    const X264_BASELINE_360P30_SPS: &str = "6742c01ed900a02ff97016a0c0c0d4a0000003002000000791e2c5c9";
    const X264_BASELINE_360P30_PPS: &str = "68cb8cb2";
    const X264_BASELINE_360P30_AVCC: &str =
        "0142c01effe1001c6742c01ed900a02ff97016a0c0c0d4a0000003002000000791e2c5c901000468cb8cb2";
    /// I420 1280x720 25/1, profile=main.
    const X264_MAIN_720P25_SPS: &str = "674d401feca02802dd80b501010140000003004000000ca3c60c6580";
    const X264_MAIN_720P25_PPS: &str = "68ebecb2";
    const X264_MAIN_720P25_AVCC: &str =
        "014d401fffe1001c674d401feca02802dd80b501010140000003004000000ca3c60c658001000468ebecb2";
    /// Y444 320x240 30/1 (no I420 caps): High 4:4:4 Predictive.
    const X264_HIGH444_240P30_SPS: &str = "67f4000d919b28283f602d41818190000003001000000303c8f1429960";
    const X264_HIGH444_240P30_PPS: &str = "68ebec448440";
    const X264_HIGH444_240P30_AVCC: &str =
        "01f4000dffe1001d67f4000d919b28283f602d41818190000003001000000303c8f142996001000668ebec448440";
    /// I420_10LE 1280x720 60/1: High 10.
    const X264_HIGH10_720P60_SPS: &str = "676e0020a6cd9405005bb016a0202028000003000800000303c478c18cb0";
    /// I420 720x576 25/1 interlace-mode=interleaved, x264enc interlaced=true.
    const X264_HIGH_576I25_SPS: &str = "6764001eacd940b424d80a5060606a5000000300100000030329f1429960";
    /// I420 1920x1080 30000/1001.
    const X264_HIGH_1080P2997_SPS: &str = "67640028acd940780227e5c05a808080a000007d20001d4c11e30632c0";
    /// I420 640x480 30/1 pixel-aspect-ratio=4/3.
    const X264_HIGH_480P30_PAR4_3_SPS: &str = "6764001eacd940a03db0e6a0c0c0d4a0000003002000000791e2c5b2c0";

    #[test]
    fn x264_high_1080p30() {
        let sps = Sps::parse(&unhex(X264_HIGH_1080P30_SPS)).unwrap();
        assert_eq!(sps.profile_idc, 100);
        assert_eq!(sps.level_idc, 40);
        assert_eq!(sps.constraint_flags, 0);
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!((sps.coded_width, sps.coded_height), (1920, 1088));
        assert_eq!(sps.frame_rate, Some((30, 1)));
        assert_eq!(sps.chroma_format_idc, 1);
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (8, 8));
        assert!(sps.frame_mbs_only);
        assert_eq!(sps.sample_aspect_ratio, Some((1, 1)));
    }

    #[test]
    fn x264_baseline_and_main() {
        let sps = Sps::parse(&unhex(X264_BASELINE_360P30_SPS)).unwrap();
        assert_eq!((sps.profile_idc, sps.constraint_flags, sps.level_idc), (66, 0xc0, 30));
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.frame_rate, Some((30, 1)));
        assert_eq!(sps.pic_order_cnt_type, 2);

        let sps = Sps::parse(&unhex(X264_MAIN_720P25_SPS)).unwrap();
        assert_eq!((sps.profile_idc, sps.constraint_flags, sps.level_idc), (77, 0x40, 31));
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.frame_rate, Some((25, 1)));
    }

    #[test]
    fn x264_high_444_and_10_bit() {
        let sps = Sps::parse(&unhex(X264_HIGH444_240P30_SPS)).unwrap();
        assert_eq!((sps.profile_idc, sps.level_idc), (244, 13));
        assert_eq!(sps.chroma_format_idc, 3);
        assert!(!sps.separate_colour_plane);
        assert_eq!((sps.width, sps.height), (320, 240));
        assert_eq!(sps.frame_rate, Some((30, 1)));

        let sps = Sps::parse(&unhex(X264_HIGH10_720P60_SPS)).unwrap();
        assert_eq!((sps.profile_idc, sps.level_idc), (110, 32));
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.frame_rate, Some((60, 1)));
    }

    #[test]
    fn x264_interlaced_ntsc_and_sar() {
        let sps = Sps::parse(&unhex(X264_HIGH_576I25_SPS)).unwrap();
        assert!(!sps.frame_mbs_only);
        assert_eq!((sps.width, sps.height), (720, 576));
        assert_eq!(sps.frame_rate, Some((25, 1)));

        let sps = Sps::parse(&unhex(X264_HIGH_1080P2997_SPS)).unwrap();
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.frame_rate, Some((30000, 1001)));

        let sps = Sps::parse(&unhex(X264_HIGH_480P30_PAR4_3_SPS)).unwrap();
        assert_eq!((sps.width, sps.height), (640, 480));
        assert_eq!(sps.sample_aspect_ratio, Some((4, 3)));
    }

    #[test]
    fn avcc_matches_gstreamer_byte_for_byte() {
        for (sps, pps, gst) in [
            (
                X264_BASELINE_360P30_SPS,
                X264_BASELINE_360P30_PPS,
                X264_BASELINE_360P30_AVCC,
            ),
            (X264_MAIN_720P25_SPS, X264_MAIN_720P25_PPS, X264_MAIN_720P25_AVCC),
            // 244 has no avcC extension in 14496-15, so none is written.
            (
                X264_HIGH444_240P30_SPS,
                X264_HIGH444_240P30_PPS,
                X264_HIGH444_240P30_AVCC,
            ),
        ] {
            let (sps, pps, gst) = (unhex(sps), unhex(pps), unhex(gst));
            let cfg = AvcDecoderConfig::from_parameter_sets(&[&sps], &[&pps]).unwrap();
            assert_eq!(hex_of(&cfg.to_bytes()), hex_of(&gst));
            assert_eq!(AvcDecoderConfig::parse(&gst).unwrap(), cfg);
        }
    }

    #[test]
    fn high_profile_avcc_adds_the_extension_gstreamer_omits() {
        let (sps, pps, gst) = (
            unhex(X264_HIGH_1080P30_SPS),
            unhex(X264_HIGH_1080P30_PPS),
            unhex(X264_HIGH_1080P30_AVCC),
        );
        let cfg = AvcDecoderConfig::from_parameter_sets(&[&sps], &[&pps]).unwrap();
        assert_eq!(cfg.chroma_format, Some(1));
        assert_eq!((cfg.bit_depth_luma, cfg.bit_depth_chroma), (Some(8), Some(8)));
        let ours = cfg.to_bytes();
        // GStreamer's h264parse writes no High-profile extension; ours is
        // its record plus chroma 4:2:0, 8-bit, 8-bit, no SPS-ext.
        let mut expected = gst.clone();
        expected.extend_from_slice(&[0xfd, 0xf8, 0xf8, 0x00]);
        assert_eq!(hex_of(&ours), hex_of(&expected));
        assert_eq!(AvcDecoderConfig::parse(&ours).unwrap(), cfg);

        // GStreamer's own record parses (extension tolerated as missing) and
        // re-serializes unchanged.
        let theirs = AvcDecoderConfig::parse(&gst).unwrap();
        assert_eq!(theirs.chroma_format, None);
        assert_eq!(theirs.to_bytes(), gst);
        assert_eq!(theirs.sps[0].as_ref(), &sps[..]);
        assert_eq!(theirs.pps[0].as_ref(), &pps[..]);
        assert_eq!(theirs.nal_length_size, 4);
        assert_eq!(
            AvcDecoderConfig {
                chroma_format: None,
                bit_depth_luma: None,
                bit_depth_chroma: None,
                ..cfg
            },
            theirs
        );
    }

    #[test]
    fn ten_bit_record_round_trips_with_extension() {
        let sps = unhex(X264_HIGH10_720P60_SPS);
        let pps = unhex(X264_HIGH_1080P30_PPS);
        let cfg = AvcDecoderConfig::from_parameter_sets(&[&sps], &[&pps]).unwrap();
        let bytes = cfg.try_to_bytes().unwrap();
        assert_eq!(&bytes[bytes.len() - 4..], [0xfd, 0xfa, 0xfa, 0x00]);
        assert_eq!(AvcDecoderConfig::parse(&bytes).unwrap(), cfg);
        assert_eq!(codec_string(&bytes), "avc1.6e0020");
    }

    #[test]
    fn codec_strings() {
        assert_eq!(codec_string(&unhex(X264_HIGH_1080P30_AVCC)), "avc1.640028");
        assert_eq!(codec_string(&unhex(X264_BASELINE_360P30_AVCC)), "avc1.42c01e");
        assert_eq!(codec_string(&unhex(X264_MAIN_720P25_AVCC)), "avc1.4d401f");
        assert_eq!(codec_string(&unhex(X264_HIGH444_240P30_AVCC)), "avc1.f4000d");
        assert_eq!(codec_string(&[]), "avc1.42e01e");
        assert_eq!(codec_string(&[2, 0x64, 0, 0x1f]), "avc1.42e01e");
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        let pps = unhex(X264_HIGH_1080P30_PPS);
        let err = Sps::parse(&pps).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid H.264 SPS NAL header: expected nal_unit_type 7, got 8 (header byte 68)"
        );
        assert_eq!(
            Sps::parse(&[]),
            Err(CodecError::Missing {
                what: "H.264 SPS NAL header"
            })
        );
        let sps = unhex(X264_HIGH_1080P30_SPS);
        let err = Sps::parse(&sps[..6]).unwrap_err();
        assert!(matches!(err, CodecError::BitsExhausted { .. }), "{err}");

        let avcc = unhex(X264_HIGH_1080P30_AVCC);
        let err = AvcDecoderConfig::parse(&avcc[..20]).unwrap_err();
        assert_eq!(
            err,
            CodecError::Truncated {
                what: "avcC SPS",
                offset: 8,
                needed: 30,
                had: 12
            }
        );
        let mut bad = avcc.clone();
        bad[0] = 0;
        assert!(AvcDecoderConfig::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("expected 1, got 0"));
        let mut swapped = avcc.clone();
        swapped[8] = 0x68;
        let err = AvcDecoderConfig::parse(&swapped).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected unit 0 at byte 8 to be nal_unit_type 7, got type 8"),
            "{err}"
        );
        assert_eq!(
            AvcDecoderConfig::from_parameter_sets(&[], &[&pps]),
            Err(CodecError::Missing { what: "SPS" })
        );
        assert!(AvcDecoderConfig::from_parameter_sets(&[&sps], &[&sps]).is_err());
    }

    #[test]
    fn truncated_vui_keeps_the_picture_size() {
        // Cut inside the timing info: size and SAR survive, the frame rate
        // does not.
        let sps = unhex(X264_HIGH_1080P30_SPS);
        let parsed = Sps::parse(&sps[..sps.len() - 8]).unwrap();
        assert_eq!((parsed.width, parsed.height), (1920, 1080));
        assert_eq!(parsed.frame_rate, None);
    }

    #[test]
    fn frame_helpers() {
        let sps = unhex(X264_HIGH_1080P30_SPS);
        let pps = unhex(X264_HIGH_1080P30_PPS);
        let idr = [0x65u8, 0x88, 0x84, 0x00, 0x33];
        let mut annexb = Vec::new();
        for u in [&[0x09, 0xf0][..], &sps, &pps, &idr] {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(u);
        }
        let lp = nal::annexb_to_length_prefixed(&annexb, 4).unwrap();
        assert!(is_idr_frame(&lp, 4));
        assert!(is_idr_frame(&annexb, 0));
        let (s, p) = parameter_sets_in(&lp, 4);
        assert_eq!((s, p), (vec![&sps[..]], vec![&pps[..]]));
        let non_idr = nal::annexb_to_length_prefixed(&[0, 0, 1, 0x41, 0x9a, 0x01], 4).unwrap();
        assert!(!is_idr_frame(&non_idr, 4));
        assert!(!is_idr_frame(&[0, 0, 0, 50, 0x65], 4));
        assert_eq!(nal_type(&idr), Some(NAL_IDR));
        assert_eq!(nal_type(&[]), None);
    }

    fn hex_of(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// What a synthetic SPS should contain.
    struct Synth {
        profile: u8,
        chroma: u32,
        separate_planes: bool,
        scaling: bool,
        poc_type: u32,
        width_mbs: u32,
        height_units: u32,
        frame_mbs_only: bool,
        crop: [u32; 4],
        vui: bool,
    }

    /// Builds an SPS NAL unit exercising the syntax x264 never emits
    /// (scaling lists in the SPS, pic_order_cnt_type 1, 4:2:2 cropping,
    /// extended SAR).
    fn synth_sps(s: &Synth) -> Vec<u8> {
        let mut w = BitWriter::new();
        w.write_bits(u64::from(s.profile), 8);
        w.write_bits(0, 8);
        w.write_bits(41, 8);
        w.write_ue(3);
        if HIGH_PROFILES.contains(&s.profile) {
            w.write_ue(s.chroma);
            if s.chroma == 3 {
                w.write_bit(s.separate_planes);
            }
            w.write_ue(2);
            w.write_ue(2);
            w.write_bit(false);
            w.write_bit(s.scaling);
            if s.scaling {
                let lists = if s.chroma == 3 { 12 } else { 8 };
                for i in 0..lists {
                    let present = i % 3 != 1;
                    w.write_bit(present);
                    if present {
                        let size = if i < 6 { 16 } else { 64 };
                        if i == 0 {
                            // nextScale becomes 0 at once: "use default".
                            w.write_se(-8);
                        } else {
                            for j in 0..size {
                                w.write_se(if j % 2 == 0 { 5 } else { -3 });
                            }
                        }
                    }
                }
            }
        }
        w.write_ue(2);
        w.write_ue(s.poc_type);
        match s.poc_type {
            0 => w.write_ue(6),
            1 => {
                w.write_bit(false);
                w.write_se(-2);
                w.write_se(1);
                w.write_ue(3);
                for v in [1, -1, 200_000] {
                    w.write_se(v);
                }
            }
            _ => {}
        }
        w.write_ue(4);
        w.write_bit(false);
        w.write_ue(s.width_mbs - 1);
        w.write_ue(s.height_units - 1);
        w.write_bit(s.frame_mbs_only);
        if !s.frame_mbs_only {
            w.write_bit(true);
        }
        w.write_bit(true);
        let crop = s.crop.iter().any(|&c| c != 0);
        w.write_bit(crop);
        if crop {
            for c in s.crop {
                w.write_ue(c);
            }
        }
        w.write_bit(s.vui);
        if s.vui {
            w.write_bit(true);
            w.write_bits(255, 8);
            w.write_bits(64, 16);
            w.write_bits(45, 16);
            w.write_bit(false);
            w.write_bit(true);
            w.write_bits(5, 3);
            w.write_bit(true);
            w.write_bit(true);
            w.write_bits(1, 8);
            w.write_bits(1, 8);
            w.write_bits(1, 8);
            w.write_bit(false);
            w.write_bit(true);
            w.write_bits(1001, 32);
            w.write_bits(120_000, 32);
            w.write_bit(true);
            for _ in 0..4 {
                w.write_bit(false); // HRD, pic_struct, restriction
            }
        }
        w.rbsp_trailing_bits();
        let mut nal = vec![0x67];
        nal.extend(nal::emulation_prevent(&w.into_bytes()));
        nal
    }

    const BASE: Synth = Synth {
        profile: 100,
        chroma: 1,
        separate_planes: false,
        scaling: true,
        poc_type: 1,
        width_mbs: 120,
        height_units: 68,
        frame_mbs_only: true,
        crop: [0, 0, 0, 4],
        vui: true,
    };

    #[test]
    fn synthetic_scaling_lists_poc1_and_extended_sar() {
        let sps = Sps::parse(&synth_sps(&BASE)).unwrap();
        assert_eq!(sps.sps_id, 3);
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
        assert_eq!(sps.pic_order_cnt_type, 1);
        assert_eq!(sps.log2_max_pic_order_cnt_lsb, None);
        assert_eq!(sps.max_num_ref_frames, 4);
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!(sps.sample_aspect_ratio, Some((64, 45)));
        assert_eq!(sps.video_full_range, Some(true));
        assert_eq!(
            sps.colour,
            Some(ColourDescription {
                primaries: 1,
                transfer: 1,
                matrix: 1
            })
        );
        assert_eq!(sps.frame_rate, Some((60000, 1001)));
        assert!(sps.fixed_frame_rate);
    }

    #[test]
    fn synthetic_crop_units_follow_chroma_format() {
        // 4:2:2 progressive: CropUnitX 2, CropUnitY 1.
        let s = Sps::parse(&synth_sps(&Synth {
            profile: 122,
            chroma: 2,
            crop: [1, 2, 3, 4],
            ..BASE
        }))
        .unwrap();
        assert_eq!((s.width, s.height), (1920 - 6, 1088 - 7));
        // 4:2:0 interlaced: CropUnitY 4; 34 map units are 68 MB rows.
        let s = Sps::parse(&synth_sps(&Synth {
            poc_type: 0,
            height_units: 34,
            frame_mbs_only: false,
            crop: [0, 0, 0, 2],
            ..BASE
        }))
        .unwrap();
        assert_eq!((s.coded_height, s.height), (1088, 1080));
        assert_eq!(s.log2_max_pic_order_cnt_lsb, Some(10));
        // 4:4:4 uses 12 scaling lists and 1-sample crop units.
        let s = Sps::parse(&synth_sps(&Synth {
            profile: 244,
            chroma: 3,
            crop: [1, 1, 1, 1],
            ..BASE
        }))
        .unwrap();
        assert_eq!((s.chroma_format_idc, s.width, s.height), (3, 1918, 1086));
        // Separate colour planes: ChromaArrayType 0, crop units 1.
        let s = Sps::parse(&synth_sps(&Synth {
            profile: 244,
            chroma: 3,
            separate_planes: true,
            crop: [1, 1, 1, 1],
            ..BASE
        }))
        .unwrap();
        assert!(s.separate_colour_plane);
        assert_eq!((s.width, s.height), (1918, 1086));
        // Monochrome 4:0:0.
        let s = Sps::parse(&synth_sps(&Synth {
            chroma: 0,
            crop: [0, 0, 0, 8],
            vui: false,
            ..BASE
        }))
        .unwrap();
        assert_eq!((s.width, s.height, s.frame_rate), (1920, 1080, None));
        // Baseline: no high-profile fields, poc type 2.
        let s = Sps::parse(&synth_sps(&Synth {
            profile: 66,
            poc_type: 2,
            ..BASE
        }))
        .unwrap();
        assert_eq!((s.chroma_format_idc, s.bit_depth_luma), (1, 8));
        assert_eq!((s.width, s.height), (1920, 1080));
    }

    #[test]
    fn over_cropping_is_an_error() {
        let err = Sps::parse(&synth_sps(&Synth {
            crop: [0, 0, 0, 544],
            ..BASE
        }))
        .unwrap_err();
        assert!(err.to_string().contains("leaves nothing"), "{err}");
    }

    #[test]
    fn record_limits() {
        let sps = Bytes::from(unhex(X264_HIGH_1080P30_SPS));
        let mut cfg = AvcDecoderConfig::parse(&unhex(X264_HIGH_1080P30_AVCC)).unwrap();
        cfg.sps = vec![sps; 40];
        assert!(cfg.try_to_bytes().is_err());
        let lossy = AvcDecoderConfig::parse(&cfg.to_bytes()).unwrap();
        assert_eq!(lossy.sps.len(), 31);
        cfg.sps.truncate(1);
        cfg.nal_length_size = 3;
        assert!(cfg.try_to_bytes().is_err());
        cfg.nal_length_size = 2;
        assert_eq!(AvcDecoderConfig::parse(&cfg.try_to_bytes().unwrap()).unwrap(), cfg);
    }

    proptest! {
        #[test]
        fn sps_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = Sps::parse(&data);
            let mut nal = vec![0x67];
            nal.extend_from_slice(&data);
            let _ = Sps::parse(&nal);
        }

        #[test]
        fn mutated_real_sps_never_panics(pos in any::<usize>(), val in any::<u8>(), cut in 1usize..32) {
            let mut sps = unhex(X264_HIGH_1080P30_SPS);
            let at = 1 + pos % (sps.len() - 1);
            sps[at] = val;
            sps.truncate(cut);
            let _ = Sps::parse(&sps);
        }

        #[test]
        fn avcc_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = AvcDecoderConfig::parse(&data);
            let _ = codec_string(&data);
            let mut rec = vec![1, 100, 0, 31];
            rec.extend_from_slice(&data);
            if let Ok(cfg) = AvcDecoderConfig::parse(&rec) {
                let _ = cfg.to_bytes();
            }
        }

        #[test]
        fn mutated_real_avcc_round_trips_or_fails(pos in any::<usize>(), val in any::<u8>(), cut in 0usize..50) {
            let mut rec = unhex(X264_HIGH_1080P30_AVCC);
            let at = pos % rec.len();
            rec[at] = val;
            rec.truncate(cut);
            if let Ok(cfg) = AvcDecoderConfig::parse(&rec) {
                prop_assert_eq!(AvcDecoderConfig::parse(&cfg.to_bytes()).unwrap(), cfg);
            }
        }
    }
}
