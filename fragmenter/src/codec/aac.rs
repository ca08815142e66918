//! MPEG-4 AAC: the AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1) that MP4
//! `esds` and Matroska `A_AAC` CodecPrivate carry, and ADTS headers (13818-7
//! / 14496-3 1.A.2), which is how cameras usually hand out AAC.

use super::bits::{BitReader, BitWriter};
use super::{hex, CodecError};

/// Sampling rates by samplingFrequencyIndex; 13 and 14 are reserved and 15
/// means an explicit 24-bit rate follows.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// samplingFrequencyIndex escape: an explicit 24-bit rate follows.
const EXPLICIT_RATE: u8 = 15;
/// audioObjectType escape: 6 more bits follow.
const AOT_ESCAPE: u32 = 31;
/// AAC LC.
const AOT_LC: u8 = 2;
/// SBR (HE-AAC) with explicit hierarchical signalling.
const AOT_SBR: u8 = 5;
/// Parametric stereo (HE-AAC v2) with explicit hierarchical signalling.
const AOT_PS: u8 = 29;
/// ER BSAC: has an extensionChannelConfiguration after SBR signalling.
const AOT_ER_BSAC: u8 = 22;
/// Object types whose config is a GASpecificConfig (1.6.2.1, Table 1.15).
const GA_OBJECT_TYPES: [u8; 12] = [1, 2, 3, 4, 6, 7, 17, 19, 20, 21, 22, 23];

/// The decoder configuration of an AAC stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AudioSpecificConfig {
    /// audioObjectType: 2 LC, 5 HE-AAC (SBR), 29 HE-AAC v2 (PS), ...
    pub object_type: u8,
    /// Output sampling rate in Hz (for explicit SBR signalling, the SBR
    /// rate rather than the core rate).
    pub sample_rate: u32,
    /// samplingFrequencyIndex of `sample_rate` when it is one of the
    /// standard rates; `None` when the rate is explicit.
    pub sampling_index: Option<u8>,
    /// Channels the decoder outputs (from the channel configuration, the
    /// program config element, or 2 for parametric stereo).
    pub channels: u8,
    /// channelConfiguration as coded (0 means a program config element
    /// describes the channels).
    pub channel_config: u8,
}

/// Channel count for a channelConfiguration (Table 1.19 and its 2013
/// amendment: 7 is 7.1, 11 6.1, 12 and 14 7.1 variants, 13 22.2).
fn channels_for_config(config: u8) -> Option<u8> {
    match config {
        1..=6 => Some(config),
        7 | 12 | 14 => Some(8),
        11 => Some(7),
        13 => Some(24),
        _ => None,
    }
}

fn read_object_type(r: &mut BitReader<'_>) -> Result<u8, CodecError> {
    let aot = r.bits(5, "audioObjectType")?;
    let aot = if aot == AOT_ESCAPE {
        32 + r.bits(6, "audioObjectTypeExt")?
    } else {
        aot
    };
    // At most 32 + 63 = 95.
    Ok(aot as u8)
}

fn read_sample_rate(r: &mut BitReader<'_>) -> Result<(u32, Option<u8>), CodecError> {
    let at = r.position();
    let index = r.bits(4, "samplingFrequencyIndex")? as u8;
    if index == EXPLICIT_RATE {
        let rate = r.bits(24, "samplingFrequency")?;
        if rate == 0 {
            return Err(CodecError::invalid("samplingFrequency", "explicit rate is 0 Hz"));
        }
        return Ok((rate, None));
    }
    match SAMPLE_RATES.get(usize::from(index)) {
        Some(&rate) => Ok((rate, Some(index))),
        None => Err(CodecError::invalid(
            "samplingFrequencyIndex",
            format!("expected 0..=12 or 15, got reserved {index} at bit {at}"),
        )),
    }
}

/// Channels described by a program_config_element() (Table 4.2).
fn read_pce_channels(r: &mut BitReader<'_>) -> Result<u8, CodecError> {
    r.bits(4, "PCE element_instance_tag")?;
    r.bits(2, "PCE object_type")?;
    r.bits(4, "PCE sampling_frequency_index")?;
    let front = r.bits(4, "num_front_channel_elements")?;
    let side = r.bits(4, "num_side_channel_elements")?;
    let back = r.bits(4, "num_back_channel_elements")?;
    let lfe = r.bits(2, "num_lfe_channel_elements")?;
    r.bits(3, "num_assoc_data_elements")?;
    r.bits(4, "num_valid_cc_elements")?;
    if r.flag("mono_mixdown_present")? {
        r.bits(4, "mono_mixdown_element_number")?;
    }
    if r.flag("stereo_mixdown_present")? {
        r.bits(4, "stereo_mixdown_element_number")?;
    }
    if r.flag("matrix_mixdown_idx_present")? {
        r.bits(3, "matrix_mixdown_idx")?;
    }
    let mut channels = lfe;
    for _ in 0..front + side + back {
        // A channel pair element carries two channels.
        channels += if r.flag("is_cpe")? { 2 } else { 1 };
        r.bits(4, "element_tag_select")?;
    }
    // At most 45 elements of 2 channels plus 3 LFE: fits u8.
    Ok(channels as u8)
}

impl AudioSpecificConfig {
    /// Parses an AudioSpecificConfig. Trailing data (a backward-compatible
    /// SBR sync extension such as FFmpeg's `56 e5 00`) is ignored.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut r = BitReader::new(data);
        let object_type = read_object_type(&mut r)?;
        if object_type == 0 {
            return Err(CodecError::invalid(
                "audioObjectType",
                format!("0 is the null object (config {})", hex(data)),
            ));
        }
        let (mut sample_rate, mut sampling_index) = read_sample_rate(&mut r)?;
        let channel_config = r.bits(4, "channelConfiguration")? as u8;

        // Explicit hierarchical SBR/PS signalling: the output rate and the
        // core object type follow. Keep 5/29 as the object type, since that
        // is what the codecs string must say.
        let mut core_type = object_type;
        if object_type == AOT_SBR || object_type == AOT_PS {
            (sample_rate, sampling_index) = read_sample_rate(&mut r)?;
            core_type = read_object_type(&mut r)?;
            if core_type == AOT_ER_BSAC {
                r.bits(4, "extensionChannelConfiguration")?;
            }
        }

        let channels = if channel_config == 0 {
            if !GA_OBJECT_TYPES.contains(&core_type) {
                return Err(CodecError::unsupported(
                    "AAC channel configuration",
                    format!("channelConfiguration 0 with object type {core_type}"),
                ));
            }
            r.flag("frameLengthFlag")?;
            if r.flag("dependsOnCoreCoder")? {
                r.bits(14, "coreCoderDelay")?;
            }
            r.flag("extensionFlag")?;
            read_pce_channels(&mut r)?
        } else {
            channels_for_config(channel_config).ok_or_else(|| {
                CodecError::invalid(
                    "channelConfiguration",
                    format!("expected 0..=7 or 11..=14, got reserved {channel_config}"),
                )
            })?
        };
        // PS decodes a mono core into stereo.
        let channels = if object_type == AOT_PS && channels == 1 {
            2
        } else {
            channels
        };

        Ok(AudioSpecificConfig {
            object_type,
            sample_rate,
            sampling_index,
            channels,
            channel_config,
        })
    }

    /// An AAC-LC config for a rate and channel count (1..=6 or 8 channels,
    /// which have a channel configuration; other counts would need a
    /// program config element).
    pub fn new_lc(sample_rate: u32, channels: u8) -> Result<Self, CodecError> {
        if sample_rate == 0 || sample_rate >= 1 << 24 {
            return Err(CodecError::invalid(
                "AAC sample rate",
                format!("expected 1..16777216 Hz, got {sample_rate}"),
            ));
        }
        let channel_config = match channels {
            1..=6 => channels,
            8 => 7,
            n => {
                return Err(CodecError::unsupported(
                    "AAC channel count",
                    format!("{n} channels have no channelConfiguration (1..=6 or 8 do)"),
                ))
            }
        };
        Ok(AudioSpecificConfig {
            object_type: AOT_LC,
            sample_rate,
            sampling_index: index_of(sample_rate),
            channels,
            channel_config,
        })
    }

    /// Serializes the config (a 2-byte config for LC at a standard rate).
    ///
    /// For object types 5 and 29 the explicit hierarchical form is written
    /// with an LC core at half the output rate (dual-rate SBR, what encoders
    /// produce). No program config element is written, so a config that
    /// had channelConfiguration 0 does not survive a round trip. Values too
    /// wide for their field are masked.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut w = BitWriter::new();
        write_object_type(&mut w, self.object_type);
        if self.object_type == AOT_SBR || self.object_type == AOT_PS {
            let core_rate = self.sample_rate / 2;
            write_sample_rate(&mut w, core_rate, index_of(core_rate));
            w.write_bits(u64::from(self.channel_config), 4);
            write_sample_rate(&mut w, self.sample_rate, self.sampling_index);
            write_object_type(&mut w, AOT_LC);
        } else {
            write_sample_rate(&mut w, self.sample_rate, self.sampling_index);
            w.write_bits(u64::from(self.channel_config), 4);
        }
        // GASpecificConfig: 1024-sample frames, no core coder, no extension.
        w.write_bits(0, 3);
        w.into_bytes()
    }

    /// The RFC 6381 codecs string, `mp4a.40.<object type>`.
    pub fn codec_string(&self) -> String {
        format!("mp4a.40.{}", self.object_type)
    }

    /// Reads an ADTS header (7 bytes, or 9 with a CRC) and returns the
    /// equivalent config, the header length and the whole frame length
    /// (header included) from the header's aac_frame_length.
    pub fn from_adts(header: &[u8]) -> Result<(Self, usize, usize), CodecError> {
        let Some(h) = header.get(..7) else {
            return Err(CodecError::Truncated {
                what: "ADTS header",
                offset: 0,
                needed: 7,
                had: header.len(),
            });
        };
        if h[0] != 0xff || h[1] & 0xf0 != 0xf0 {
            return Err(CodecError::invalid(
                "ADTS syncword",
                format!("expected fff, got {}", hex(&h[..2])),
            ));
        }
        let layer = (h[1] >> 1) & 0x03;
        if layer != 0 {
            return Err(CodecError::invalid(
                "ADTS layer",
                format!("expected 0, got {layer} (header {})", hex(h)),
            ));
        }
        let header_len = if h[1] & 0x01 == 1 { 7 } else { 9 };
        if header.len() < header_len {
            return Err(CodecError::Truncated {
                what: "ADTS header CRC",
                offset: 7,
                needed: 2,
                had: header.len() - 7,
            });
        }
        let object_type = (h[2] >> 6) + 1;
        let index = (h[2] >> 2) & 0x0f;
        let Some(&sample_rate) = SAMPLE_RATES.get(usize::from(index)) else {
            return Err(CodecError::invalid(
                "ADTS sampling_frequency_index",
                format!("expected 0..=12, got {index} (header {})", hex(h)),
            ));
        };
        let channel_config = ((h[2] & 0x01) << 2) | (h[3] >> 6);
        let Some(channels) = channels_for_config(channel_config) else {
            return Err(CodecError::unsupported(
                "ADTS channel_configuration",
                "0: channels are given by a program config element in the payload",
            ));
        };
        let frame_len = (usize::from(h[3] & 0x03) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        if frame_len < header_len {
            return Err(CodecError::invalid(
                "ADTS aac_frame_length",
                format!(
                    "{frame_len} is shorter than the {header_len}-byte header (header {})",
                    hex(h)
                ),
            ));
        }
        Ok((
            AudioSpecificConfig {
                object_type,
                sample_rate,
                sampling_index: Some(index),
                channels,
                channel_config,
            },
            header_len,
            frame_len,
        ))
    }
}

fn index_of(rate: u32) -> Option<u8> {
    SAMPLE_RATES.iter().position(|&r| r == rate).map(|i| i as u8)
}

fn write_object_type(w: &mut BitWriter, aot: u8) {
    if u32::from(aot) >= AOT_ESCAPE {
        w.write_bits(u64::from(AOT_ESCAPE), 5);
        w.write_bits(u64::from(aot) - 32, 6);
    } else {
        w.write_bits(u64::from(aot), 5);
    }
}

fn write_sample_rate(w: &mut BitWriter, rate: u32, index: Option<u8>) {
    // Trust the index only if it names this rate.
    let index = index
        .filter(|&i| SAMPLE_RATES.get(usize::from(i)) == Some(&rate))
        .or_else(|| index_of(rate));
    match index {
        Some(i) => w.write_bits(u64::from(i), 4),
        None => {
            w.write_bits(u64::from(EXPLICIT_RATE), 4);
            w.write_bits(u64::from(rate), 24);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // codec_data from GStreamer 1.22 caps: `audiotestsrc ! audio/x-raw,
    // rate=R,channels=C ! audioconvert ! voaacenc|avenc_aac ! fakesink -v`.
    const VOAACENC_48K_STEREO: [u8; 2] = [0x11, 0x90];
    const VOAACENC_44K1_MONO: [u8; 2] = [0x12, 0x08];
    /// avenc_aac appends a backward-compatible SBR sync extension (0x2b7,
    /// object type 5, no SBR).
    const AVENC_AAC_48K_STEREO: [u8; 5] = [0x11, 0x90, 0x56, 0xe5, 0x00];
    const AVENC_AAC_44K1_MONO: [u8; 5] = [0x12, 0x08, 0x56, 0xe5, 0x00];
    // First ADTS headers of `voaacenc ! audio/mpeg,stream-format=adts`.
    const VOAACENC_ADTS_48K_STEREO: [u8; 7] = [0xff, 0xf9, 0x4c, 0x80, 0x2a, 0xbf, 0xfc];
    const VOAACENC_ADTS_44K1_MONO: [u8; 7] = [0xff, 0xf9, 0x50, 0x40, 0x2e, 0x7f, 0xfc];

    #[test]
    fn gstreamer_configs() {
        for (bytes, rate, ch) in [
            (&VOAACENC_48K_STEREO[..], 48000, 2),
            (&VOAACENC_44K1_MONO[..], 44100, 1),
            (&AVENC_AAC_48K_STEREO[..], 48000, 2),
            (&AVENC_AAC_44K1_MONO[..], 44100, 1),
        ] {
            let asc = AudioSpecificConfig::parse(bytes).unwrap();
            assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (2, rate, ch));
            assert_eq!(asc.codec_string(), "mp4a.40.2");
            assert_eq!(asc.to_bytes(), bytes[..2]);
            assert_eq!(AudioSpecificConfig::new_lc(rate, ch).unwrap(), asc);
        }
        assert_eq!(
            AudioSpecificConfig::new_lc(48000, 2).unwrap().to_bytes(),
            VOAACENC_48K_STEREO
        );
        assert_eq!(
            AudioSpecificConfig::new_lc(44100, 1).unwrap().to_bytes(),
            VOAACENC_44K1_MONO
        );
    }

    #[test]
    fn adts_headers() {
        let (asc, hlen, flen) = AudioSpecificConfig::from_adts(&VOAACENC_ADTS_48K_STEREO).unwrap();
        assert_eq!(asc.to_bytes(), VOAACENC_48K_STEREO);
        assert_eq!((hlen, flen), (7, 341));
        let (asc, hlen, flen) = AudioSpecificConfig::from_adts(&VOAACENC_ADTS_44K1_MONO).unwrap();
        assert_eq!(asc.to_bytes(), VOAACENC_44K1_MONO);
        assert_eq!((hlen, flen), (7, 371));

        // With CRC (protection_absent 0) the header is 9 bytes.
        let mut crc = VOAACENC_ADTS_48K_STEREO.to_vec();
        crc[1] &= 0xfe;
        assert!(matches!(
            AudioSpecificConfig::from_adts(&crc),
            Err(CodecError::Truncated {
                what: "ADTS header CRC",
                ..
            })
        ));
        crc.extend_from_slice(&[0x12, 0x34]);
        assert_eq!(AudioSpecificConfig::from_adts(&crc).unwrap().1, 9);
    }

    #[test]
    fn adts_errors() {
        let err = AudioSpecificConfig::from_adts(&[0x47, 0x40, 0, 0, 0, 0, 0]).unwrap_err();
        assert_eq!(err.to_string(), "invalid ADTS syncword: expected fff, got 47 40");
        assert!(AudioSpecificConfig::from_adts(&[0xff, 0xf1]).is_err());
        let mut h = VOAACENC_ADTS_48K_STEREO;
        h[2] = (h[2] & !0x3c) | (13 << 2);
        assert!(AudioSpecificConfig::from_adts(&h).is_err());
        let mut h = VOAACENC_ADTS_48K_STEREO;
        h[3] &= 0x3f; // channel config 0
        assert!(matches!(
            AudioSpecificConfig::from_adts(&h),
            Err(CodecError::Unsupported { .. })
        ));
        let mut h = VOAACENC_ADTS_48K_STEREO;
        h[3] &= 0xfc;
        h[4] = 0;
        h[5] &= 0x1f;
        assert!(AudioSpecificConfig::from_adts(&h)
            .unwrap_err()
            .to_string()
            .contains("shorter"));
    }

    #[test]
    fn escapes_and_channel_configs() {
        // Explicit 24-bit rate.
        let asc = AudioSpecificConfig::new_lc(37800, 2).unwrap();
        assert_eq!(asc.sampling_index, None);
        let bytes = asc.to_bytes();
        assert_eq!(bytes.len(), 5);
        assert_eq!(AudioSpecificConfig::parse(&bytes).unwrap(), asc);
        // Channel configuration 7 is 7.1: eight channels.
        let asc = AudioSpecificConfig::new_lc(48000, 8).unwrap();
        assert_eq!(asc.channel_config, 7);
        assert_eq!(AudioSpecificConfig::parse(&asc.to_bytes()).unwrap().channels, 8);
        // Object type escape: 42 (USAC) is 31 then 10.
        let asc = AudioSpecificConfig { object_type: 42, ..asc };
        let bytes = asc.to_bytes();
        assert_eq!(bytes[0] >> 3, 31);
        let back = AudioSpecificConfig::parse(&bytes).unwrap();
        assert_eq!(back.object_type, 42);
        assert_eq!(back.codec_string(), "mp4a.40.42");
        assert!(AudioSpecificConfig::new_lc(48000, 7).is_err());
        assert!(AudioSpecificConfig::new_lc(0, 2).is_err());
    }

    #[test]
    fn he_aac_explicit_signalling() {
        // HE-AAC 44.1 kHz stereo: SBR, core 22.05 kHz, extension 44.1 kHz.
        let he = [0x2b, 0x92, 0x08, 0x00];
        let asc = AudioSpecificConfig::parse(&he).unwrap();
        assert_eq!((asc.object_type, asc.sample_rate, asc.channels), (5, 44100, 2));
        assert_eq!(asc.codec_string(), "mp4a.40.5");
        assert_eq!(asc.to_bytes(), he);
        // HE-AAC v2: mono core, stereo out.
        let v2 = AudioSpecificConfig {
            object_type: 29,
            channel_config: 1,
            channels: 2,
            ..asc
        };
        let back = AudioSpecificConfig::parse(&v2.to_bytes()).unwrap();
        assert_eq!(back, v2);
    }

    #[test]
    fn program_config_element_channels() {
        // LC 48 kHz, channelConfiguration 0, then a PCE with one front SCE,
        // one front CPE, one back CPE and one LFE: 5.1.
        let mut w = BitWriter::new();
        w.write_bits(2, 5);
        w.write_bits(3, 4);
        w.write_bits(0, 4);
        w.write_bits(0, 3); // GASpecificConfig flags
        w.write_bits(0, 4); // tag
        w.write_bits(1, 2); // object type
        w.write_bits(3, 4);
        w.write_bits(2, 4); // front
        w.write_bits(0, 4); // side
        w.write_bits(1, 4); // back
        w.write_bits(1, 2); // lfe
        w.write_bits(0, 3);
        w.write_bits(0, 4);
        w.write_bits(0, 3); // no mixdowns
        for cpe in [false, true, true] {
            w.write_bit(cpe);
            w.write_bits(0, 4);
        }
        w.write_bits(0, 4);
        let asc = AudioSpecificConfig::parse(&w.into_bytes()).unwrap();
        assert_eq!((asc.channel_config, asc.channels), (0, 6));
    }

    #[test]
    fn parse_errors() {
        assert!(matches!(
            AudioSpecificConfig::parse(&[]),
            Err(CodecError::BitsExhausted { .. })
        ));
        assert!(AudioSpecificConfig::parse(&[0x00, 0x00])
            .unwrap_err()
            .to_string()
            .contains("null object"));
        let err = AudioSpecificConfig::parse(&[0x16, 0x90]).unwrap_err();
        assert!(err.to_string().contains("reserved 13"), "{err}");
        let err = AudioSpecificConfig::parse(&[0x11, 0xc0]).unwrap_err();
        assert!(err.to_string().contains("reserved 8"), "{err}");
    }

    proptest! {
        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..24)) {
            if let Ok(asc) = AudioSpecificConfig::parse(&data) {
                let _ = asc.to_bytes();
            }
            let _ = AudioSpecificConfig::from_adts(&data);
        }

        #[test]
        fn lc_round_trips(rate in 1u32..(1 << 24), pick in 0usize..7) {
            let channels = [1, 2, 3, 4, 5, 6, 8][pick];
            let asc = AudioSpecificConfig::new_lc(rate, channels).unwrap();
            prop_assert_eq!(AudioSpecificConfig::parse(&asc.to_bytes()).unwrap(), asc);
        }
    }
}
