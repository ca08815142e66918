//! H.265 / HEVC: sequence parameter set parsing (ITU-T H.265 7.3.2.2.1), the
//! HEVCDecoderConfigurationRecord (`hvcC`, ISO/IEC 14496-15 8.3.3.1) and the
//! codecs string of ISO/IEC 14496-15 Annex E.

use bytes::Bytes;

use super::bits::BitReader;
use super::cursor::Cursor;
use super::vui::{self, ColourDescription, VuiHead};
use super::{hex, nal, reduced_fraction, CodecError};

/// nal_unit_type of a video parameter set.
pub const NAL_VPS: u8 = 32;
/// nal_unit_type of a sequence parameter set.
pub const NAL_SPS: u8 = 33;
/// nal_unit_type of a picture parameter set.
pub const NAL_PPS: u8 = 34;
/// nal_unit_type of an access unit delimiter.
pub const NAL_AUD: u8 = 35;
/// nal_unit_type of a prefix SEI message.
pub const NAL_PREFIX_SEI: u8 = 39;

/// The general profile, tier and level of profile_tier_level() (7.3.3),
/// which the SPS, the VPS and hvcC all carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GeneralPtl {
    profile_space: u8,
    tier_flag: bool,
    profile_idc: u8,
    compatibility_flags: u32,
    constraint_indicator_flags: u64,
    level_idc: u8,
}

/// The fields of an H.265 sequence parameter set that a muxer or player
/// needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// general_profile_space (0 in every deployed profile).
    pub general_profile_space: u8,
    /// general_tier_flag: false Main tier, true High tier.
    pub general_tier_flag: bool,
    /// general_profile_idc (1 Main, 2 Main 10, 3 Main Still, 4 RExt, ...).
    pub general_profile_idc: u8,
    /// general_profile_compatibility_flag[0..32], flag 0 in the most
    /// significant bit, as in the bitstream.
    pub general_profile_compatibility_flags: u32,
    /// The 48 bits from general_progressive_source_flag on (progressive,
    /// interlaced, non-packed, frame-only and the 44 constraint bits), in the
    /// low 48 bits.
    pub general_constraint_indicator_flags: u64,
    /// general_level_idc (level × 30, e.g. 93 for 3.1, 120 for 4).
    pub general_level_idc: u8,
    /// sps_video_parameter_set_id.
    pub vps_id: u8,
    /// sps_seq_parameter_set_id.
    pub sps_id: u32,
    /// sps_max_sub_layers_minus1 + 1: the number of temporal layers.
    pub max_sub_layers: u8,
    /// sps_temporal_id_nesting_flag.
    pub temporal_id_nesting: bool,
    /// 0 monochrome, 1 4:2:0, 2 4:2:2, 3 4:4:4.
    pub chroma_format_idc: u32,
    /// separate_colour_plane_flag.
    pub separate_colour_plane: bool,
    /// pic_width_in_luma_samples, before the conformance window.
    pub coded_width: u32,
    /// pic_height_in_luma_samples, before the conformance window.
    pub coded_height: u32,
    /// Width after the conformance window.
    pub width: u32,
    /// Height after the conformance window.
    pub height: u32,
    /// Luma bit depth.
    pub bit_depth_luma: u8,
    /// Chroma bit depth.
    pub bit_depth_chroma: u8,
    /// Sample (pixel) aspect ratio from the VUI, when specified.
    pub sample_aspect_ratio: Option<(u16, u16)>,
    /// video_full_range_flag from the VUI, when signalled.
    pub video_full_range: Option<bool>,
    /// Colour primaries / transfer / matrix from the VUI, when signalled.
    pub colour: Option<ColourDescription>,
    /// Frame rate from the VUI timing info as `(num, den)` reduced:
    /// vui_time_scale / vui_num_units_in_tick. `None` when absent or when
    /// the SPS syntax before the VUI could not be followed.
    pub frame_rate: Option<(u32, u32)>,
}

/// Checks the 2-byte NAL header (7.3.1.2) and returns the payload.
fn check_header<'a>(nal: &'a [u8], expected: u8, what: &'static str) -> Result<&'a [u8], CodecError> {
    let Some(header) = nal.get(..2) else {
        return Err(if nal.is_empty() {
            CodecError::Missing { what }
        } else {
            CodecError::Truncated {
                what,
                offset: 0,
                needed: 2,
                had: nal.len(),
            }
        });
    };
    if header[0] & 0x80 != 0 {
        return Err(CodecError::invalid(
            what,
            format!("forbidden_zero_bit is set in header {}", hex(header)),
        ));
    }
    let t = (header[0] >> 1) & 0x3f;
    if t != expected {
        return Err(CodecError::invalid(
            what,
            format!("expected nal_unit_type {expected}, got {t} (header {})", hex(header)),
        ));
    }
    Ok(&nal[2..])
}

/// profile_tier_level(1, max_sub_layers_minus1) (7.3.3): the general part,
/// with the sub-layer parts skipped.
fn parse_ptl(r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<GeneralPtl, CodecError> {
    let ptl = GeneralPtl {
        profile_space: r.bits(2, "general_profile_space")? as u8,
        tier_flag: r.flag("general_tier_flag")?,
        profile_idc: r.bits(5, "general_profile_idc")? as u8,
        compatibility_flags: r.bits(32, "general_profile_compatibility_flags")?,
        constraint_indicator_flags: r.bits_u64(48, "general_constraint_indicator_flags")?,
        level_idc: r.bits(8, "general_level_idc")? as u8,
    };
    let n = usize::from(max_sub_layers_minus1);
    let mut present = [(false, false); 7];
    for p in present.iter_mut().take(n) {
        *p = (
            r.flag("sub_layer_profile_present_flag")?,
            r.flag("sub_layer_level_present_flag")?,
        );
    }
    if n > 0 {
        r.skip_named(2 * (8 - n), "reserved_zero_2bits")?;
    }
    for &(profile, level) in present.iter().take(n) {
        if profile {
            // space, tier, idc, 32 compatibility flags, 48 constraint bits.
            r.skip_named(88, "sub_layer profile")?;
        }
        if level {
            r.skip_named(8, "sub_layer_level_idc")?;
        }
    }
    Ok(ptl)
}

/// Skips scaling_list_data() (7.3.4).
fn skip_scaling_list_data(r: &mut BitReader<'_>) -> Result<(), CodecError> {
    for size_id in 0..4 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _matrix in (0..6).step_by(step) {
            if !r.flag("scaling_list_pred_mode_flag")? {
                r.ue_max(5, "scaling_list_pred_matrix_id_delta")?;
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.se("scaling_list_dc_coef_minus8")?;
                }
                for _ in 0..coefs {
                    r.se("scaling_list_delta_coef")?;
                }
            }
        }
    }
    Ok(())
}

/// Skips the st_ref_pic_set() structures of an SPS (7.3.7); each one may be
/// predicted from the one before, whose size (NumDeltaPocs) decides how many
/// flags follow, so the counts have to be tracked.
fn skip_short_term_ref_pic_sets(r: &mut BitReader<'_>, count: u32) -> Result<(), CodecError> {
    // Bounded by the 16-entry DPB; checked as each set is read.
    const MAX_DELTA_POCS: u32 = 32;
    let mut num_delta_pocs: Vec<u32> = Vec::with_capacity(count as usize);
    for idx in 0..count as usize {
        let inter = idx != 0 && r.flag("inter_ref_pic_set_prediction_flag")?;
        let n = if inter {
            // delta_idx_minus1 is only coded in slice headers: in the SPS
            // the reference is always the previous set.
            r.flag("delta_rps_sign")?;
            r.ue_max(1 << 15, "abs_delta_rps_minus1")?;
            let reference = num_delta_pocs[idx - 1];
            let mut n = 0;
            for _ in 0..=reference {
                let used = r.flag("used_by_curr_pic_flag")?;
                let use_delta = used || r.flag("use_delta_flag")?;
                n += u32::from(use_delta);
            }
            n
        } else {
            let neg = r.ue_max(16, "num_negative_pics")?;
            let pos = r.ue_max(16, "num_positive_pics")?;
            for _ in 0..neg + pos {
                r.ue_max(1 << 15, "delta_poc_minus1")?;
                r.flag("used_by_curr_pic_flag")?;
            }
            neg + pos
        };
        if n > MAX_DELTA_POCS {
            return Err(CodecError::invalid(
                "st_ref_pic_set",
                format!("set {idx} has {n} pictures, at most {MAX_DELTA_POCS} fit a DPB"),
            ));
        }
        num_delta_pocs.push(n);
    }
    Ok(())
}

impl Sps {
    /// Parses an SPS NAL unit, 2-byte header included (nal_unit_type 33).
    ///
    /// Everything up to the bit depths must be present and valid. The rest
    /// of the SPS is followed only to reach the VUI for the frame rate and
    /// aspect ratio; if that part is truncated those fields stay `None`.
    pub fn parse(nal: &[u8]) -> Result<Sps, CodecError> {
        let payload = check_header(nal, NAL_SPS, "H.265 SPS NAL header")?;
        let layer_id = ((nal[0] & 1) << 5) | (nal[1] >> 3);
        if layer_id != 0 {
            return Err(CodecError::unsupported(
                "H.265 SPS",
                format!("nuh_layer_id {layer_id} (multi-layer SPS syntax differs)"),
            ));
        }
        let data = nal::rbsp(payload);
        let mut r = BitReader::new(&data);

        let vps_id = r.bits(4, "sps_video_parameter_set_id")? as u8;
        let max_sub_layers_minus1 = r.bits(3, "sps_max_sub_layers_minus1")? as u8;
        if max_sub_layers_minus1 > 6 {
            return Err(CodecError::invalid(
                "sps_max_sub_layers_minus1",
                "expected 0..=6, got 7",
            ));
        }
        let temporal_id_nesting = r.flag("sps_temporal_id_nesting_flag")?;
        let ptl = parse_ptl(&mut r, max_sub_layers_minus1)?;
        let sps_id = r.ue_max(15, "sps_seq_parameter_set_id")?;
        let chroma_format_idc = r.ue_max(3, "chroma_format_idc")?;
        let separate_colour_plane = chroma_format_idc == 3 && r.flag("separate_colour_plane_flag")?;
        let coded_width = r.ue("pic_width_in_luma_samples")?;
        let coded_height = r.ue("pic_height_in_luma_samples")?;
        let mut window = [0u64; 4];
        if r.flag("conformance_window_flag")? {
            for (w, name) in window.iter_mut().zip([
                "conf_win_left_offset",
                "conf_win_right_offset",
                "conf_win_top_offset",
                "conf_win_bottom_offset",
            ]) {
                *w = u64::from(r.ue(name)?);
            }
        }
        let bit_depth_luma = 8 + r.ue_max(8, "bit_depth_luma_minus8")? as u8;
        let bit_depth_chroma = 8 + r.ue_max(8, "bit_depth_chroma_minus8")? as u8;

        // Table 6-1: the window counts chroma samples.
        let chroma_array_type = if separate_colour_plane { 0 } else { chroma_format_idc };
        let (sub_width, sub_height) = match chroma_array_type {
            1 => (2, 2),
            2 => (2, 1),
            _ => (1, 1),
        };
        let crop_x = sub_width * (window[0] + window[1]);
        let crop_y = sub_height * (window[2] + window[3]);
        if crop_x >= u64::from(coded_width) || crop_y >= u64::from(coded_height) {
            return Err(CodecError::invalid(
                "H.265 SPS conformance window",
                format!(
                    "cropping {crop_x}x{crop_y} samples (offsets l/r/t/b {window:?}) \
                     leaves nothing of {coded_width}x{coded_height}"
                ),
            ));
        }

        let mut sps = Sps {
            general_profile_space: ptl.profile_space,
            general_tier_flag: ptl.tier_flag,
            general_profile_idc: ptl.profile_idc,
            general_profile_compatibility_flags: ptl.compatibility_flags,
            general_constraint_indicator_flags: ptl.constraint_indicator_flags,
            general_level_idc: ptl.level_idc,
            vps_id,
            sps_id,
            max_sub_layers: max_sub_layers_minus1 + 1,
            temporal_id_nesting,
            chroma_format_idc,
            separate_colour_plane,
            coded_width,
            coded_height,
            // Both are below the coded size, checked above.
            width: coded_width - crop_x as u32,
            height: coded_height - crop_y as u32,
            bit_depth_luma,
            bit_depth_chroma,
            sample_aspect_ratio: None,
            video_full_range: None,
            colour: None,
            frame_rate: None,
        };
        vui::tolerate_truncation(sps.parse_tail(&mut r, max_sub_layers_minus1))?;
        Ok(sps)
    }

    /// The SPS from log2_max_pic_order_cnt_lsb_minus4 to the VUI.
    fn parse_tail(&mut self, r: &mut BitReader<'_>, max_sub_layers_minus1: u8) -> Result<(), CodecError> {
        let log2_max_poc_lsb = 4 + r.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4")?;
        let ordering_all = r.flag("sps_sub_layer_ordering_info_present_flag")?;
        let first = if ordering_all { 0 } else { max_sub_layers_minus1 };
        for _ in first..=max_sub_layers_minus1 {
            r.ue("sps_max_dec_pic_buffering_minus1")?;
            r.ue("sps_max_num_reorder_pics")?;
            r.ue("sps_max_latency_increase_plus1")?;
        }
        r.ue("log2_min_luma_coding_block_size_minus3")?;
        r.ue("log2_diff_max_min_luma_coding_block_size")?;
        r.ue("log2_min_luma_transform_block_size_minus2")?;
        r.ue("log2_diff_max_min_luma_transform_block_size")?;
        r.ue("max_transform_hierarchy_depth_inter")?;
        r.ue("max_transform_hierarchy_depth_intra")?;
        if r.flag("scaling_list_enabled_flag")? && r.flag("sps_scaling_list_data_present_flag")? {
            skip_scaling_list_data(r)?;
        }
        r.flag("amp_enabled_flag")?;
        r.flag("sample_adaptive_offset_enabled_flag")?;
        if r.flag("pcm_enabled_flag")? {
            r.bits(4, "pcm_sample_bit_depth_luma_minus1")?;
            r.bits(4, "pcm_sample_bit_depth_chroma_minus1")?;
            r.ue("log2_min_pcm_luma_coding_block_size_minus3")?;
            r.ue("log2_diff_max_min_pcm_luma_coding_block_size")?;
            r.flag("pcm_loop_filter_disabled_flag")?;
        }
        let sets = r.ue_max(64, "num_short_term_ref_pic_sets")?;
        skip_short_term_ref_pic_sets(r, sets)?;
        if r.flag("long_term_ref_pics_present_flag")? {
            let n = r.ue_max(32, "num_long_term_ref_pics_sps")?;
            for _ in 0..n {
                r.bits(log2_max_poc_lsb, "lt_ref_pic_poc_lsb_sps")?;
                r.flag("used_by_curr_pic_lt_sps_flag")?;
            }
        }
        r.flag("sps_temporal_mvp_enabled_flag")?;
        r.flag("strong_intra_smoothing_enabled_flag")?;
        if r.flag("vui_parameters_present_flag")? {
            self.parse_vui(r)?;
        }
        Ok(())
    }

    /// vui_parameters() (E.2.1) up to the timing info.
    fn parse_vui(&mut self, r: &mut BitReader<'_>) -> Result<(), CodecError> {
        let mut head = VuiHead::default();
        let res = vui::parse_head(r, &mut head);
        self.sample_aspect_ratio = head.sample_aspect_ratio;
        self.video_full_range = head.video_full_range;
        self.colour = head.colour;
        res?;
        r.flag("neutral_chroma_indication_flag")?;
        r.flag("field_seq_flag")?;
        r.flag("frame_field_info_present_flag")?;
        if r.flag("default_display_window_flag")? {
            for name in [
                "def_disp_win_left_offset",
                "def_disp_win_right_offset",
                "def_disp_win_top_offset",
                "def_disp_win_bottom_offset",
            ] {
                r.ue(name)?;
            }
        }
        if r.flag("vui_timing_info_present_flag")? {
            let num_units_in_tick = r.bits(32, "vui_num_units_in_tick")?;
            let time_scale = r.bits(32, "vui_time_scale")?;
            // Unlike H.264, an H.265 tick is a whole picture.
            self.frame_rate = reduced_fraction(u64::from(time_scale), u64::from(num_units_in_tick));
        }
        Ok(())
    }
}

/// One array of same-type NAL units in an hvcC record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NalArray {
    /// array_completeness: all units of this type are here and none appear
    /// in the samples (mandatory for parameter sets under `hvc1`).
    pub completeness: bool,
    /// NAL_unit_type of every unit in the array (32 VPS, 33 SPS, 34 PPS,
    /// 39/40 SEI).
    pub nal_type: u8,
    /// The NAL units, 2-byte headers included.
    pub units: Vec<Bytes>,
}

/// The HEVCDecoderConfigurationRecord carried in MP4 `hvcC` and Matroska
/// CodecPrivate for `V_MPEGH/ISO/HEVC`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HevcDecoderConfig {
    /// general_profile_space.
    pub general_profile_space: u8,
    /// general_tier_flag.
    pub general_tier_flag: bool,
    /// general_profile_idc.
    pub general_profile_idc: u8,
    /// general_profile_compatibility_flags (flag 0 most significant).
    pub general_profile_compatibility_flags: u32,
    /// general_constraint_indicator_flags, low 48 bits.
    pub general_constraint_indicator_flags: u64,
    /// general_level_idc.
    pub general_level_idc: u8,
    /// min_spatial_segmentation_idc (12 bits).
    pub min_spatial_segmentation_idc: u16,
    /// parallelismType (0 unknown/mixed, 1 slices, 2 tiles, 3 wavefront).
    pub parallelism_type: u8,
    /// chromaFormat (chroma_format_idc).
    pub chroma_format_idc: u8,
    /// Luma bit depth (8..=15).
    pub bit_depth_luma: u8,
    /// Chroma bit depth (8..=15).
    pub bit_depth_chroma: u8,
    /// avgFrameRate in frames per 256 seconds; 0 unspecified.
    pub avg_frame_rate: u16,
    /// constantFrameRate (0 unknown, 1 constant, 2 constant per layer).
    pub constant_frame_rate: u8,
    /// numTemporalLayers (0 unknown).
    pub num_temporal_layers: u8,
    /// temporalIdNested.
    pub temporal_id_nested: bool,
    /// Bytes of each NAL unit length prefix in samples: 1, 2 or 4.
    pub nal_length_size: u8,
    /// Parameter set and SEI arrays.
    pub arrays: Vec<NalArray>,
}

impl HevcDecoderConfig {
    /// Parses an HEVCDecoderConfigurationRecord (configurationVersion 1).
    pub fn parse(hvcc: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(hvcc);
        let version = c.u8("hvcC configurationVersion")?;
        if version != 1 {
            return Err(CodecError::invalid(
                "hvcC configurationVersion",
                format!("expected 1, got {version} (record starts {})", hex(hvcc)),
            ));
        }
        let b = c.u8("hvcC general_profile_space")?;
        let compat = c.u32("hvcC general_profile_compatibility_flags")?;
        let constraint = c.array::<6>("hvcC general_constraint_indicator_flags")?;
        let level = c.u8("hvcC general_level_idc")?;
        let min_spatial = c.u16("hvcC min_spatial_segmentation_idc")? & 0x0fff;
        let parallelism = c.u8("hvcC parallelismType")? & 0x03;
        let chroma = c.u8("hvcC chromaFormat")? & 0x03;
        let luma_depth = (c.u8("hvcC bitDepthLumaMinus8")? & 0x07) + 8;
        let chroma_depth = (c.u8("hvcC bitDepthChromaMinus8")? & 0x07) + 8;
        let avg_frame_rate = c.u16("hvcC avgFrameRate")?;
        let flags = c.u8("hvcC lengthSizeMinusOne")?;
        let nal_length_size = (flags & 0x03) + 1;
        if nal_length_size == 3 {
            return Err(CodecError::invalid(
                "hvcC lengthSizeMinusOne",
                "expected 0, 1 or 3, got 2 (3-byte NAL lengths are not allowed)",
            ));
        }
        let num_arrays = c.u8("hvcC numOfArrays")?;
        let mut arrays = Vec::with_capacity(usize::from(num_arrays));
        for _ in 0..num_arrays {
            let head = c.u8("hvcC NAL array header")?;
            let nal_type = head & 0x3f;
            let count = c.u16("hvcC numNalus")?;
            let mut units = Vec::with_capacity(usize::from(count).min(64));
            for i in 0..count {
                let len = usize::from(c.u16("hvcC nalUnitLength")?);
                let at = c.position();
                let unit = c.bytes(len, "hvcC NAL unit")?;
                let got = unit.first().map(|b| (b >> 1) & 0x3f);
                if got != Some(nal_type) {
                    return Err(CodecError::invalid(
                        "hvcC NAL unit",
                        format!(
                            "expected unit {i} at byte {at} of the type {nal_type} array \
                             to have that type, got {} ({})",
                            got.map_or("an empty unit".to_owned(), |g| format!("type {g}")),
                            hex(unit)
                        ),
                    ));
                }
                units.push(Bytes::copy_from_slice(unit));
            }
            arrays.push(NalArray {
                completeness: head & 0x80 != 0,
                nal_type,
                units,
            });
        }
        let mut ci = [0u8; 8];
        ci[2..].copy_from_slice(&constraint);
        Ok(HevcDecoderConfig {
            general_profile_space: b >> 6,
            general_tier_flag: b & 0x20 != 0,
            general_profile_idc: b & 0x1f,
            general_profile_compatibility_flags: compat,
            general_constraint_indicator_flags: u64::from_be_bytes(ci),
            general_level_idc: level,
            min_spatial_segmentation_idc: min_spatial,
            parallelism_type: parallelism,
            chroma_format_idc: chroma,
            bit_depth_luma: luma_depth,
            bit_depth_chroma: chroma_depth,
            avg_frame_rate,
            constant_frame_rate: flags >> 6,
            num_temporal_layers: (flags >> 3) & 0x07,
            temporal_id_nested: flags & 0x04 != 0,
            nal_length_size,
            arrays,
        })
    }

    /// Serializes the record.
    ///
    /// Never fails: out-of-range numbers are masked to their field width and
    /// arrays, units or unit counts the format cannot carry (more than 255
    /// arrays, 65535 units, units over 65535 bytes) are dropped, so the
    /// output always parses. Use [`try_to_bytes`](Self::try_to_bytes) to be
    /// told instead.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.write(false).unwrap_or_default()
    }

    /// Serializes the record, failing on anything
    /// [`to_bytes`](Self::to_bytes) would have to cut.
    pub fn try_to_bytes(&self) -> Result<Vec<u8>, CodecError> {
        self.write(true)
    }

    fn write(&self, strict: bool) -> Result<Vec<u8>, CodecError> {
        if strict {
            self.validate()?;
        }
        let mut out = Vec::with_capacity(
            23 + self
                .arrays
                .iter()
                .map(|a| 3 + a.units.iter().map(|u| 2 + u.len()).sum::<usize>())
                .sum::<usize>(),
        );
        out.push(1);
        out.push(
            (self.general_profile_space & 0x03) << 6
                | u8::from(self.general_tier_flag) << 5
                | (self.general_profile_idc & 0x1f),
        );
        out.extend_from_slice(&self.general_profile_compatibility_flags.to_be_bytes());
        out.extend_from_slice(&self.general_constraint_indicator_flags.to_be_bytes()[2..]);
        out.push(self.general_level_idc);
        out.extend_from_slice(&(0xf000 | (self.min_spatial_segmentation_idc & 0x0fff)).to_be_bytes());
        out.push(0xfc | (self.parallelism_type & 0x03));
        out.push(0xfc | (self.chroma_format_idc & 0x03));
        out.push(0xf8 | (self.bit_depth_luma.wrapping_sub(8) & 0x07));
        out.push(0xf8 | (self.bit_depth_chroma.wrapping_sub(8) & 0x07));
        out.extend_from_slice(&self.avg_frame_rate.to_be_bytes());
        out.push(
            (self.constant_frame_rate & 0x03) << 6
                | (self.num_temporal_layers & 0x07) << 3
                | u8::from(self.temporal_id_nested) << 2
                | (self.nal_length_size.wrapping_sub(1) & 0x03),
        );
        let arrays: Vec<&NalArray> = self.arrays.iter().take(255).collect();
        out.push(arrays.len() as u8);
        for a in arrays {
            // The bit after array_completeness is reserved and 0.
            out.push(u8::from(a.completeness) << 7 | (a.nal_type & 0x3f));
            let units: Vec<&Bytes> = a
                .units
                .iter()
                .filter(|u| u.len() <= usize::from(u16::MAX))
                .take(usize::from(u16::MAX))
                .collect();
            out.extend_from_slice(&(units.len() as u16).to_be_bytes());
            for u in units {
                out.extend_from_slice(&(u.len() as u16).to_be_bytes());
                out.extend_from_slice(u);
            }
        }
        Ok(out)
    }

    fn validate(&self) -> Result<(), CodecError> {
        fn check(ok: bool, what: &'static str, detail: impl FnOnce() -> String) -> Result<(), CodecError> {
            if ok {
                Ok(())
            } else {
                Err(CodecError::invalid(what, detail()))
            }
        }
        check(self.general_profile_space <= 3, "hvcC general_profile_space", || {
            format!("expected 0..=3, got {}", self.general_profile_space)
        })?;
        check(self.general_profile_idc <= 31, "hvcC general_profile_idc", || {
            format!("expected 0..=31, got {}", self.general_profile_idc)
        })?;
        check(
            self.general_constraint_indicator_flags >> 48 == 0,
            "hvcC general_constraint_indicator_flags",
            || format!("expected 48 bits, got {:#x}", self.general_constraint_indicator_flags),
        )?;
        check(
            self.min_spatial_segmentation_idc <= 0x0fff,
            "hvcC min_spatial_segmentation_idc",
            || format!("expected 12 bits, got {}", self.min_spatial_segmentation_idc),
        )?;
        for (value, what) in [
            (self.parallelism_type, "hvcC parallelismType"),
            (self.chroma_format_idc, "hvcC chromaFormat"),
            (self.constant_frame_rate, "hvcC constantFrameRate"),
        ] {
            check(value <= 3, what, || format!("expected 0..=3, got {value}"))?;
        }
        for depth in [self.bit_depth_luma, self.bit_depth_chroma] {
            check((8..=15).contains(&depth), "hvcC bit depth", || {
                format!("expected 8..=15, got {depth}")
            })?;
        }
        check(self.num_temporal_layers <= 7, "hvcC numTemporalLayers", || {
            format!("expected 0..=7, got {}", self.num_temporal_layers)
        })?;
        check(
            matches!(self.nal_length_size, 1 | 2 | 4),
            "hvcC nal_length_size",
            || format!("expected 1, 2 or 4, got {}", self.nal_length_size),
        )?;
        check(self.arrays.len() <= 255, "hvcC numOfArrays", || {
            format!("at most 255 arrays fit, got {}", self.arrays.len())
        })?;
        for a in &self.arrays {
            check(a.nal_type <= 63, "hvcC NAL_unit_type", || {
                format!("expected 0..=63, got {}", a.nal_type)
            })?;
            check(a.units.len() <= usize::from(u16::MAX), "hvcC numNalus", || {
                format!("at most 65535 units fit, got {}", a.units.len())
            })?;
            if let Some(u) = a.units.iter().find(|u| u.len() > usize::from(u16::MAX)) {
                return Err(CodecError::invalid(
                    "hvcC nalUnitLength",
                    format!("a {}-byte unit does not fit a 16-bit length", u.len()),
                ));
            }
        }
        Ok(())
    }

    /// Builds a record from parameter set NAL units (2-byte headers
    /// included). Profile, tier, level, chroma format, bit depths, temporal
    /// layers and nesting come from the first SPS, which must parse;
    /// min_spatial_segmentation, parallelism, avgFrameRate and
    /// constantFrameRate are 0 (unknown) and NAL lengths 4 bytes. Arrays are
    /// VPS, SPS, PPS, each marked complete as `hvc1` requires; an empty
    /// list gives no array.
    pub fn from_parameter_sets(vps: &[&[u8]], sps: &[&[u8]], pps: &[&[u8]]) -> Result<Self, CodecError> {
        let first = sps.first().ok_or(CodecError::Missing { what: "SPS" })?;
        let parsed = Sps::parse(first)?;
        let mut arrays = Vec::with_capacity(3);
        for (units, nal_type, what) in [
            (vps, NAL_VPS, "H.265 VPS NAL header"),
            (sps, NAL_SPS, "H.265 SPS NAL header"),
            (pps, NAL_PPS, "H.265 PPS NAL header"),
        ] {
            for u in units {
                check_header(u, nal_type, what)?;
            }
            if !units.is_empty() {
                arrays.push(NalArray {
                    completeness: true,
                    nal_type,
                    units: units.iter().map(|u| Bytes::copy_from_slice(u)).collect(),
                });
            }
        }
        Ok(HevcDecoderConfig {
            general_profile_space: parsed.general_profile_space,
            general_tier_flag: parsed.general_tier_flag,
            general_profile_idc: parsed.general_profile_idc,
            general_profile_compatibility_flags: parsed.general_profile_compatibility_flags,
            general_constraint_indicator_flags: parsed.general_constraint_indicator_flags,
            general_level_idc: parsed.general_level_idc,
            min_spatial_segmentation_idc: 0,
            parallelism_type: 0,
            // chroma_format_idc is at most 3 once parsed: lossless.
            chroma_format_idc: parsed.chroma_format_idc as u8,
            bit_depth_luma: parsed.bit_depth_luma,
            bit_depth_chroma: parsed.bit_depth_chroma,
            avg_frame_rate: 0,
            constant_frame_rate: 0,
            num_temporal_layers: parsed.max_sub_layers,
            temporal_id_nested: parsed.temporal_id_nesting,
            nal_length_size: 4,
            arrays,
        })
    }

    fn first_of(&self, nal_type: u8) -> Option<&[u8]> {
        self.arrays
            .iter()
            .filter(|a| a.nal_type == nal_type)
            .flat_map(|a| a.units.iter())
            .next()
            .map(|u| u.as_ref())
    }

    /// The first SPS unit.
    pub fn sps(&self) -> Option<&[u8]> {
        self.first_of(NAL_SPS)
    }

    /// The first VPS unit.
    pub fn vps(&self) -> Option<&[u8]> {
        self.first_of(NAL_VPS)
    }

    /// The first PPS unit.
    pub fn pps(&self) -> Option<&[u8]> {
        self.first_of(NAL_PPS)
    }

    /// The codecs string for this record (see [`codec_string`]).
    pub fn codec_string(&self) -> String {
        let mut s = String::from("hvc1.");
        if let Some(letter) = ["", "A", "B", "C"].get(usize::from(self.general_profile_space)) {
            s.push_str(letter);
        }
        s.push_str(&format!(
            "{}.{:X}.{}{}",
            self.general_profile_idc,
            self.general_profile_compatibility_flags.reverse_bits(),
            if self.general_tier_flag { 'H' } else { 'L' },
            self.general_level_idc
        ));
        let bytes = self.general_constraint_indicator_flags.to_be_bytes();
        let constraint = &bytes[2..];
        let used = constraint.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
        for b in &constraint[..used] {
            s.push_str(&format!(".{b:02X}"));
        }
        s
    }
}

/// The codecs string of an hvcC record in the ISO/IEC 14496-15 Annex E form
/// Apple and hls.js expect: `hvc1.[A|B|C]<profile_idc>.<compatibility flags
/// bit-reversed, hex>.<L|H><level_idc>[.<constraint byte hex>...]` with
/// trailing zero constraint bytes left out, e.g. `hvc1.1.6.L93.B0`. Bytes
/// are two upper-case hex digits, as GStreamer writes them. Falls back to
/// `hvc1.1.6.L93.B0` (Main, level 3.1) when the record does not parse.
pub fn codec_string(hvcc: &[u8]) -> String {
    HevcDecoderConfig::parse(hvcc)
        .map(|c| c.codec_string())
        .unwrap_or_else(|_| "hvc1.1.6.L93.B0".to_owned())
}

/// nal_unit_type of a NAL unit (2-byte header included), `None` when the
/// unit is empty.
pub fn nal_type(nal: &[u8]) -> Option<u8> {
    nal.first().map(|b| (b >> 1) & 0x3f)
}

/// Whether a NAL unit type is an IRAP picture (BLA, IDR or CRA, types
/// 16..=23): where decoding can start.
pub fn is_irap(nal_type: u8) -> bool {
    (16..=23).contains(&nal_type)
}

/// Whether a frame holds an IRAP slice. `length_size` is the NAL length
/// prefix size (1, 2 or 4), or 0 for an Annex-B frame.
pub fn is_keyframe(data: &[u8], length_size: usize) -> bool {
    nal::frame_units(data, length_size).any(|u| nal_type(u).is_some_and(is_irap))
}

/// The parameter set NAL units found in a frame; see
/// [`parameter_sets_in`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParameterSets<'a> {
    /// Video parameter sets, in order.
    pub vps: Vec<&'a [u8]>,
    /// Sequence parameter sets, in order.
    pub sps: Vec<&'a [u8]>,
    /// Picture parameter sets, in order.
    pub pps: Vec<&'a [u8]>,
}

/// The VPS, SPS and PPS NAL units in a frame; `length_size` as for
/// [`is_keyframe`].
pub fn parameter_sets_in(data: &[u8], length_size: usize) -> ParameterSets<'_> {
    let mut sets = ParameterSets::default();
    for u in nal::frame_units(data, length_size) {
        match nal_type(u) {
            Some(NAL_VPS) => sets.vps.push(u),
            Some(NAL_SPS) => sets.sps.push(u),
            Some(NAL_PPS) => sets.pps.push(u),
            _ => {}
        }
    }
    sets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::bits::BitWriter;
    use crate::codec::testutil::unhex;
    use proptest::prelude::*;

    // Captured from GStreamer 1.22 x265enc (x265 3.5) with `videotestsrc
    // num-buffers=1 ! video/x-raw,format=...,framerate=... ! x265enc !
    // video/x-h265,stream-format=byte-stream`. x265enc only emits
    // byte-stream, so the HVCC constants are the codec_data h265parse puts
    // in the caps for `x265enc ! h265parse ! video/x-h265,stream-format=hvc1`.

    /// I420 1920x1080 30/1: Main, level 4.
    const X265_MAIN_1080P30_VPS: &str = "40010c01ffff016000000300900000030000030078959809";
    const X265_MAIN_1080P30_SPS: &str =
        "420101016000000300900000030000030078a003c08010e596566924cafff000100016a020202080000003008000000f04";
    const X265_MAIN_1080P30_PPS: &str = "4401c172b46240";
    const X265_MAIN_1080P30_HVCC: &str = "01016000000090000000000078f000fcfdf8f800000f03200001001840010c01ffff0160000003009000000300000300789598092100010031420101016000000300900000030000030078a003c08010e596566924cafff000100016a020202080000003008000000f0422000100074401c172b46240";
    /// I420_10LE 1280x720 25/1: Main 10, level 3.1.
    const X265_MAIN10_720P25_VPS: &str = "40010c01ffff02200000030090000003000003005d959809";
    const X265_MAIN10_720P25_SPS: &str =
        "42010102200000030090000003000003005da00280802d1365959a4932bffc00040005a80808082000000300200000030321";
    const X265_MAIN10_720P25_PPS: &str = "4401c172b46240";
    const X265_MAIN10_720P25_HVCC: &str = "0102200000009000000000005df000fcfdfafa00000f03200001001840010c01ffff02200000030090000003000003005d959809210001003242010102200000030090000003000003005da00280802d1365959a4932bffc00040005a8080808200000030020000003032122000100074401c172b46240";
    /// Y444 1280x720 25/1: RExt (Main 4:4:4), level 3.1.
    const X265_MAIN444_720P25_VPS: &str = "40010c01ffff0408000003009e0800000300005d959809";
    const X265_MAIN444_720P25_SPS: &str =
        "4201010408000003009e0800000300005d9000501005a2cb2b3492657ff80008000b5010101040000003004000000642";
    const X265_MAIN444_720P25_PPS: &str = "4401c172b46240";
    const X265_MAIN444_720P25_HVCC: &str = "0104080000009e08000000005df000fcfff8f800000f03200001001740010c01ffff0408000003009e0800000300005d95980921000100304201010408000003009e0800000300005d9000501005a2cb2b3492657ff80008000b501010104000000300400000064222000100074401c172b46240";

    struct Case {
        vps: &'static str,
        sps: &'static str,
        pps: &'static str,
        hvcc: &'static str,
        /// What GStreamer's pbutils (gst_codec_utils_caps_get_mime_codec)
        /// says for the same caps.
        codec: &'static str,
    }

    const CASES: [Case; 3] = [
        Case {
            vps: X265_MAIN_1080P30_VPS,
            sps: X265_MAIN_1080P30_SPS,
            pps: X265_MAIN_1080P30_PPS,
            hvcc: X265_MAIN_1080P30_HVCC,
            codec: "hvc1.1.6.L120.90",
        },
        Case {
            vps: X265_MAIN10_720P25_VPS,
            sps: X265_MAIN10_720P25_SPS,
            pps: X265_MAIN10_720P25_PPS,
            hvcc: X265_MAIN10_720P25_HVCC,
            codec: "hvc1.2.4.L93.90",
        },
        Case {
            vps: X265_MAIN444_720P25_VPS,
            sps: X265_MAIN444_720P25_SPS,
            pps: X265_MAIN444_720P25_PPS,
            hvcc: X265_MAIN444_720P25_HVCC,
            codec: "hvc1.4.10.L93.9E.08",
        },
    ];

    #[test]
    fn x265_main_1080p30() {
        let sps = Sps::parse(&unhex(X265_MAIN_1080P30_SPS)).unwrap();
        assert_eq!(sps.general_profile_space, 0);
        assert!(!sps.general_tier_flag);
        assert_eq!(sps.general_profile_idc, 1);
        assert_eq!(sps.general_profile_compatibility_flags, 0x6000_0000);
        assert_eq!(sps.general_constraint_indicator_flags, 0x9000_0000_0000);
        assert_eq!(sps.general_level_idc, 120);
        assert_eq!(sps.chroma_format_idc, 1);
        // x265 codes 1080 rows directly (8-sample minimum CU): no window.
        assert_eq!((sps.coded_width, sps.coded_height), (1920, 1080));
        assert_eq!((sps.width, sps.height), (1920, 1080));
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (8, 8));
        assert_eq!((sps.max_sub_layers, sps.temporal_id_nesting), (1, true));
        assert_eq!(sps.frame_rate, Some((30, 1)));
        assert_eq!(sps.sample_aspect_ratio, Some((1, 1)));
    }

    #[test]
    fn x265_main10_and_444() {
        let sps = Sps::parse(&unhex(X265_MAIN10_720P25_SPS)).unwrap();
        assert_eq!((sps.general_profile_idc, sps.general_level_idc), (2, 93));
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!((sps.bit_depth_luma, sps.bit_depth_chroma), (10, 10));
        assert_eq!(sps.frame_rate, Some((25, 1)));

        let sps = Sps::parse(&unhex(X265_MAIN444_720P25_SPS)).unwrap();
        assert_eq!(sps.general_profile_idc, 4);
        assert_eq!(sps.chroma_format_idc, 3);
        assert_eq!((sps.width, sps.height), (1280, 720));
        assert_eq!(sps.frame_rate, Some((25, 1)));
    }

    #[test]
    fn hvcc_matches_gstreamer_except_array_completeness() {
        for case in &CASES {
            let (vps, sps, pps, gst) = (unhex(case.vps), unhex(case.sps), unhex(case.pps), unhex(case.hvcc));
            let cfg = HevcDecoderConfig::from_parameter_sets(&[&vps], &[&sps], &[&pps]).unwrap();
            let ours = cfg.try_to_bytes().unwrap();
            // h265parse leaves array_completeness at 0; 14496-15 8.4.1
            // requires 1 for parameter set arrays under 'hvc1', which is
            // what we write. Everything else is identical.
            let mut expected = gst.clone();
            let theirs = HevcDecoderConfig::parse(&gst).unwrap();
            let mut at = 23;
            for a in &theirs.arrays {
                assert!(!a.completeness);
                expected[at] |= 0x80;
                at += 3 + a.units.iter().map(|u| 2 + u.len()).sum::<usize>();
            }
            assert_eq!(ours, expected, "{}", case.codec);
            assert_eq!(HevcDecoderConfig::parse(&ours).unwrap(), cfg);
            // And GStreamer's own record round-trips exactly.
            assert_eq!(theirs.to_bytes(), gst);
            assert_eq!(theirs.vps(), Some(&vps[..]));
            assert_eq!(theirs.sps(), Some(&sps[..]));
            assert_eq!(theirs.pps(), Some(&pps[..]));
        }
    }

    #[test]
    fn codec_strings_match_gstreamer() {
        for case in &CASES {
            assert_eq!(codec_string(&unhex(case.hvcc)), case.codec);
        }
        assert_eq!(codec_string(&[]), "hvc1.1.6.L93.B0");
        assert_eq!(codec_string(&[0, 1, 2]), "hvc1.1.6.L93.B0");
    }

    #[test]
    fn codec_string_form() {
        let mut cfg = HevcDecoderConfig::parse(&unhex(X265_MAIN_1080P30_HVCC)).unwrap();
        cfg.general_level_idc = 93;
        cfg.general_constraint_indicator_flags = 0xb000_0000_0000;
        assert_eq!(cfg.codec_string(), "hvc1.1.6.L93.B0");
        cfg.general_profile_space = 1;
        cfg.general_tier_flag = true;
        cfg.general_level_idc = 153;
        cfg.general_constraint_indicator_flags = 0xb000_0000_0100;
        assert_eq!(cfg.codec_string(), "hvc1.A1.6.H153.B0.00.00.00.01");
        cfg.general_constraint_indicator_flags = 0;
        assert_eq!(cfg.codec_string(), "hvc1.A1.6.H153");
    }

    #[test]
    fn parse_errors_say_what_and_where() {
        let pps = unhex(X265_MAIN_1080P30_PPS);
        let err = Sps::parse(&pps).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid H.265 SPS NAL header: expected nal_unit_type 33, got 34 (header 44 01)"
        );
        assert_eq!(
            Sps::parse(&[]),
            Err(CodecError::Missing {
                what: "H.265 SPS NAL header"
            })
        );
        assert!(matches!(Sps::parse(&[0x42]), Err(CodecError::Truncated { .. })));
        let sps = unhex(X265_MAIN_1080P30_SPS);
        assert!(matches!(Sps::parse(&sps[..10]), Err(CodecError::BitsExhausted { .. })));
        let mut layered = sps.clone();
        layered[1] |= 0x08;
        assert!(matches!(Sps::parse(&layered), Err(CodecError::Unsupported { .. })));

        let hvcc = unhex(X265_MAIN_1080P30_HVCC);
        let err = HevcDecoderConfig::parse(&hvcc[..40]).unwrap_err();
        assert_eq!(
            err,
            CodecError::Truncated {
                what: "hvcC NAL unit",
                offset: 28,
                needed: 24,
                had: 12
            }
        );
        let mut wrong = hvcc.clone();
        wrong[23] = 0x21; // claims the VPS array holds SPSs
        let err = HevcDecoderConfig::parse(&wrong).unwrap_err();
        assert!(err.to_string().contains("type 33 array"), "{err}");
        assert_eq!(
            HevcDecoderConfig::from_parameter_sets(&[], &[], &[&pps]),
            Err(CodecError::Missing { what: "SPS" })
        );
        assert!(HevcDecoderConfig::from_parameter_sets(&[&pps], &[&sps], &[]).is_err());
    }

    #[test]
    fn truncated_tail_keeps_the_picture_size() {
        let sps = unhex(X265_MAIN_1080P30_SPS);
        let parsed = Sps::parse(&sps[..sps.len() - 6]).unwrap();
        assert_eq!((parsed.width, parsed.height), (1920, 1080));
        assert_eq!(parsed.frame_rate, None);
    }

    #[test]
    fn optional_arrays_and_accessors() {
        let sps = unhex(X265_MAIN_1080P30_SPS);
        let cfg = HevcDecoderConfig::from_parameter_sets(&[], &[&sps], &[]).unwrap();
        assert_eq!(cfg.arrays.len(), 1);
        assert_eq!(cfg.vps(), None);
        assert_eq!(cfg.sps(), Some(&sps[..]));
        let mut cfg2 = cfg.clone();
        cfg2.nal_length_size = 3;
        assert!(cfg2.try_to_bytes().is_err());
        assert_eq!(HevcDecoderConfig::parse(&cfg.to_bytes()).unwrap(), cfg);
    }

    #[test]
    fn frame_helpers() {
        let mut annexb = Vec::new();
        for u in [
            X265_MAIN_1080P30_VPS,
            X265_MAIN_1080P30_SPS,
            X265_MAIN_1080P30_PPS,
            "2801af0a",
        ] {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend(unhex(u));
        }
        assert!(is_keyframe(&annexb, 0));
        let lp = nal::annexb_to_length_prefixed(&annexb, 4).unwrap();
        assert!(is_keyframe(&lp, 4));
        let sets = parameter_sets_in(&lp, 4);
        assert_eq!(sets.vps, [&unhex(X265_MAIN_1080P30_VPS)[..]]);
        assert_eq!(sets.sps, [&unhex(X265_MAIN_1080P30_SPS)[..]]);
        assert_eq!(sets.pps.len(), 1);
        assert!(!is_keyframe(&[0, 0, 0, 3, 0x02, 0x01, 0xd0], 4));
        assert_eq!(nal_type(&[0x26, 0x01]), Some(19));
    }

    /// An SPS with the syntax x265 did not use here: sub-layers with
    /// profile/level info, scaling lists, PCM, inter-predicted short-term
    /// RPS, long-term refs, a 4:2:2 conformance window, extended SAR.
    fn synth_sps() -> Vec<u8> {
        let mut w = BitWriter::new();
        w.write_bits(0, 4); // vps id
        w.write_bits(2, 3); // max_sub_layers_minus1
        w.write_bit(false);
        // general PTL: space 0, tier 1, profile 4
        w.write_bits(0, 2);
        w.write_bit(true);
        w.write_bits(4, 5);
        w.write_bits(0x0800_0000, 32);
        w.write_bits(0x9e08_0000_0000, 48);
        w.write_bits(150, 8);
        w.write_bits(0b11_01, 4); // sub-layer 0 profile+level, 1 level only
        w.write_bits(0, 2 * 6);
        w.write_bits(0, 88);
        w.write_bits(120, 8);
        w.write_bits(90, 8);
        w.write_ue(0); // sps id
        w.write_ue(2); // 4:2:2
        w.write_ue(1920);
        w.write_ue(1088);
        w.write_bit(true);
        for c in [2, 2, 0, 8] {
            w.write_ue(c);
        }
        w.write_ue(2);
        w.write_ue(2);
        w.write_ue(4); // log2_max_poc_lsb = 8
        w.write_bit(true);
        for _ in 0..3 {
            w.write_ue(4);
            w.write_ue(2);
            w.write_ue(0);
        }
        for v in [0, 3, 0, 3, 2, 2] {
            w.write_ue(v);
        }
        w.write_bit(true); // scaling list enabled
        w.write_bit(true); // data present
        for size_id in 0..4 {
            let step = if size_id == 3 { 3 } else { 1 };
            for m in (0..6).step_by(step) {
                let explicit = m % 2 == 0;
                w.write_bit(explicit);
                if !explicit {
                    w.write_ue(1);
                } else {
                    if size_id > 1 {
                        w.write_se(8);
                    }
                    let coefs = 64.min(1 << (4 + (size_id << 1)));
                    for k in 0..coefs {
                        w.write_se(if k % 3 == 0 { 1 } else { 0 });
                    }
                }
            }
        }
        w.write_bit(true);
        w.write_bit(true);
        w.write_bit(true); // pcm
        w.write_bits(7, 4);
        w.write_bits(7, 4);
        w.write_ue(0);
        w.write_ue(1);
        w.write_bit(true);
        w.write_ue(3); // three short-term RPS
                       // set 0: 2 negative, 1 positive
        w.write_ue(2);
        w.write_ue(1);
        for _ in 0..3 {
            w.write_ue(0);
            w.write_bit(true);
        }
        // set 1: predicted from set 0 (3 pics -> 4 flags), keeps 2
        w.write_bit(true);
        w.write_bit(false);
        w.write_ue(0);
        for used in [true, false, true, false] {
            w.write_bit(used);
            if !used {
                w.write_bit(false); // use_delta_flag
            }
        }
        // set 2: predicted from set 1 (2 pics -> 3 flags)
        w.write_bit(true);
        w.write_bit(true);
        w.write_ue(1);
        for _ in 0..3 {
            w.write_bit(true);
        }
        w.write_bit(true); // long-term refs
        w.write_ue(2);
        for _ in 0..2 {
            w.write_bits(17, 8);
            w.write_bit(true);
        }
        w.write_bit(true);
        w.write_bit(true);
        w.write_bit(true); // vui
        w.write_bit(true);
        w.write_bits(255, 8);
        w.write_bits(4, 16);
        w.write_bits(3, 16);
        w.write_bit(false);
        w.write_bit(false);
        w.write_bit(false);
        w.write_bit(false); // neutral chroma
        w.write_bit(false); // field seq
        w.write_bit(false); // frame field info
        w.write_bit(true); // default display window
        for _ in 0..4 {
            w.write_ue(1);
        }
        w.write_bit(true);
        w.write_bits(1001, 32);
        w.write_bits(60000, 32);
        w.write_bit(false); // poc proportional
        w.write_bit(false); // hrd
        w.write_bit(false); // bitstream restriction
        w.write_bit(false); // sps_extension_present
        w.rbsp_trailing_bits();
        let mut nal = vec![0x42, 0x01];
        nal.extend(nal::emulation_prevent(&w.into_bytes()));
        nal
    }

    #[test]
    fn synthetic_sps_full_syntax() {
        let sps = Sps::parse(&synth_sps()).unwrap();
        assert!(sps.general_tier_flag);
        assert_eq!((sps.general_profile_idc, sps.general_level_idc), (4, 150));
        assert_eq!(sps.general_constraint_indicator_flags, 0x9e08_0000_0000);
        assert_eq!(sps.max_sub_layers, 3);
        assert_eq!(sps.chroma_format_idc, 2);
        // 4:2:2: SubWidthC 2, SubHeightC 1.
        assert_eq!((sps.width, sps.height), (1920 - 8, 1088 - 8));
        assert_eq!(sps.sample_aspect_ratio, Some((4, 3)));
        assert_eq!(sps.frame_rate, Some((60000, 1001)));
        let cfg = HevcDecoderConfig::from_parameter_sets(&[], &[&synth_sps()], &[]).unwrap();
        assert_eq!((cfg.num_temporal_layers, cfg.temporal_id_nested), (3, false));
        assert_eq!(cfg.codec_string(), "hvc1.4.10.H150.9E.08");
    }

    proptest! {
        #[test]
        fn sps_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = Sps::parse(&data);
            let mut nal = vec![0x42, 0x01];
            nal.extend_from_slice(&data);
            let _ = Sps::parse(&nal);
        }

        #[test]
        fn mutated_real_sps_never_panics(pos in any::<usize>(), val in any::<u8>(), cut in 2usize..52) {
            let mut sps = unhex(X265_MAIN_1080P30_SPS);
            let at = 2 + pos % (sps.len() - 2);
            sps[at] = val;
            sps.truncate(cut);
            let _ = Sps::parse(&sps);
        }

        #[test]
        fn hvcc_parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = HevcDecoderConfig::parse(&data);
            let _ = codec_string(&data);
        }

        #[test]
        fn mutated_real_hvcc_round_trips_or_fails(pos in any::<usize>(), val in any::<u8>(), cut in 0usize..130) {
            let mut rec = unhex(X265_MAIN_1080P30_HVCC);
            let at = pos % rec.len();
            rec[at] = val;
            rec.truncate(cut);
            if let Ok(cfg) = HevcDecoderConfig::parse(&rec) {
                prop_assert_eq!(HevcDecoderConfig::parse(&cfg.to_bytes()).unwrap(), cfg);
            }
        }
    }
}
