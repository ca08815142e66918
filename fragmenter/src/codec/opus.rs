//! Opus: the `OpusHead` identification header (RFC 7845 §5.1, Matroska
//! `A_OPUS` CodecPrivate), the MP4 `dOps` box payload ("Encapsulation of
//! Opus in ISO Base Media File Format" §4.3.2), and packet durations from
//! the TOC byte (RFC 6716 §3.1).

use super::cursor::Cursor;
use super::{hex, CodecError};

/// Magic signature at the start of an identification header.
const MAGIC: &[u8; 8] = b"OpusHead";
/// Size of an identification header with mapping family 0.
const HEAD_LEN: usize = 19;
/// Longest packet RFC 6716 allows: 120 ms at 48 kHz.
const MAX_PACKET_SAMPLES: u32 = 5760;

/// The Opus identification header, restricted to channel mapping family 0
/// (mono or stereo, no mapping table), which is what cameras send.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OpusHead {
    /// Output channel count (1 or 2 for family 0).
    pub channels: u8,
    /// Samples at 48 kHz to discard from the start of the decoded stream.
    pub pre_skip: u16,
    /// Sample rate of the original input, informational only: Opus always
    /// decodes at 48 kHz.
    pub input_sample_rate: u32,
    /// Gain to apply on output, Q7.8 dB.
    pub output_gain: i16,
    /// Channel mapping family; only 0 is handled.
    pub mapping_family: u8,
}

impl OpusHead {
    /// The 19-byte identification header (version 1, little-endian fields).
    /// A mapping family other than 0 is written as given but without the
    /// mapping table it would need.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(MAGIC);
        out.push(1);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_le_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_le_bytes());
        out.extend_from_slice(&self.output_gain.to_le_bytes());
        out.push(self.mapping_family);
        out
    }

    /// Parses an identification header. Any version with major version 0
    /// is accepted, as RFC 7845 asks; mapping families other than 0 are
    /// refused as unsupported.
    pub fn parse(data: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(data);
        let magic = c.bytes(MAGIC.len(), "OpusHead magic")?;
        if magic != MAGIC {
            return Err(CodecError::invalid(
                "OpusHead magic",
                format!("expected \"OpusHead\" (4f 70 75 73 48 65 61 64), got {}", hex(magic)),
            ));
        }
        let version = c.u8("OpusHead version")?;
        if version & 0xf0 != 0 {
            return Err(CodecError::unsupported(
                "OpusHead version",
                format!("{version} (major version {}; only 0 is defined)", version >> 4),
            ));
        }
        let channels = c.u8("OpusHead channel count")?;
        let pre_skip = u16::from_le_bytes(c.array("OpusHead pre-skip")?);
        let input_sample_rate = u32::from_le_bytes(c.array("OpusHead input sample rate")?);
        let output_gain = i16::from_le_bytes(c.array("OpusHead output gain")?);
        let mapping_family = c.u8("OpusHead channel mapping family")?;
        check_family(mapping_family, channels)?;
        Ok(OpusHead {
            channels,
            pre_skip,
            input_sample_rate,
            output_gain,
            mapping_family,
        })
    }

    /// The `dOps` box payload: Version 0, OutputChannelCount, PreSkip,
    /// InputSampleRate, OutputGain (all big-endian), ChannelMappingFamily.
    pub fn to_dops(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(11);
        out.push(0);
        out.push(self.channels);
        out.extend_from_slice(&self.pre_skip.to_be_bytes());
        out.extend_from_slice(&self.input_sample_rate.to_be_bytes());
        out.extend_from_slice(&self.output_gain.to_be_bytes());
        out.push(self.mapping_family);
        out
    }

    /// Parses a `dOps` box payload (version 0, mapping family 0).
    pub fn from_dops(data: &[u8]) -> Result<Self, CodecError> {
        let mut c = Cursor::new(data);
        let version = c.u8("dOps Version")?;
        if version != 0 {
            return Err(CodecError::unsupported(
                "dOps Version",
                format!("{version}; only 0 is defined"),
            ));
        }
        let channels = c.u8("dOps OutputChannelCount")?;
        let pre_skip = c.u16("dOps PreSkip")?;
        let input_sample_rate = c.u32("dOps InputSampleRate")?;
        let output_gain = i16::from_be_bytes(c.array("dOps OutputGain")?);
        let mapping_family = c.u8("dOps ChannelMappingFamily")?;
        check_family(mapping_family, channels)?;
        Ok(OpusHead {
            channels,
            pre_skip,
            input_sample_rate,
            output_gain,
            mapping_family,
        })
    }
}

fn check_family(family: u8, channels: u8) -> Result<(), CodecError> {
    if family != 0 {
        return Err(CodecError::unsupported(
            "Opus channel mapping family",
            format!("{family}; only family 0 (mono or stereo) is handled"),
        ));
    }
    if !(1..=2).contains(&channels) {
        return Err(CodecError::invalid(
            "Opus channel count",
            format!("expected 1 or 2 for mapping family 0, got {channels}"),
        ));
    }
    Ok(())
}

/// Samples per frame at 48 kHz for a TOC configuration number (RFC 6716
/// Table 2): SILK 10/20/40/60 ms, Hybrid 10/20 ms, CELT 2.5/5/10/20 ms.
fn frame_samples(config: u8) -> u32 {
    match config {
        0..=11 => [480, 960, 1920, 2880][usize::from(config % 4)],
        12..=15 => [480, 960][usize::from(config % 2)],
        _ => [120, 240, 480, 960][usize::from(config % 4)],
    }
}

/// Duration of an Opus packet in samples at 48 kHz, from its TOC byte and
/// frame count (RFC 6716 §3.1). Fails on an empty packet, a code 3 packet
/// without its frame count byte or with zero frames, and packets longer
/// than the 120 ms the RFC allows.
pub fn packet_duration_48k(packet: &[u8]) -> Result<u32, CodecError> {
    let Some(&toc) = packet.first() else {
        return Err(CodecError::Missing { what: "Opus TOC byte" });
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => {
            let Some(&count) = packet.get(1) else {
                return Err(CodecError::Truncated {
                    what: "Opus frame count byte",
                    offset: 1,
                    needed: 1,
                    had: 0,
                });
            };
            let m = u32::from(count & 0x3f);
            if m == 0 {
                return Err(CodecError::invalid(
                    "Opus frame count",
                    format!("code 3 packet with 0 frames (TOC and count {})", hex(&packet[..2])),
                ));
            }
            m
        }
    };
    let samples = frames * frame_samples(toc >> 3);
    if samples > MAX_PACKET_SAMPLES {
        return Err(CodecError::invalid(
            "Opus packet duration",
            format!(
                "{frames} frames of {} samples make {samples}, more than the 120 ms (5760) allowed",
                frame_samples(toc >> 3)
            ),
        ));
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::testutil::unhex;
    use proptest::prelude::*;

    /// First streamheader buffer of GStreamer 1.22 `audiotestsrc !
    /// audio/x-raw,rate=48000,channels=2 ! opusenc` (libopus 1.3).
    const OPUSENC_STEREO_HEAD: &str = "4f707573486561640102380180bb0000000000";
    /// First bytes of the first packet of the same pipeline (20 ms CELT FB
    /// stereo, code 0).
    const OPUSENC_20MS_PACKET: &str = "fcb50d6698c3398ebc70b61e6292368c";
    /// `opusenc frame-size=60`: CELT FB 20 ms frames, code 3, 3 frames VBR.
    const OPUSENC_60MS_PACKET: &str = "fb83fd10a3b50e7d91cc0582757248bf";
    /// `opusenc frame-size=40 bitrate=12000 audio-type=voice
    /// bandwidth=narrowband`: SILK NB 40 ms, code 0.
    const OPUSENC_SILK_40MS_PACKET: &str = "10c22b01680e7ede5c50886cdbd5e17a";
    /// `opusenc frame-size=10` mono: CELT FB 10 ms.
    const OPUSENC_10MS_PACKET: &str = "f0b54647a7e0a16ed4b7cb13202621ae";
    /// `opusenc frame-size=2.5` mono: CELT FB 2.5 ms (a 3-byte packet).
    const OPUSENC_2_5MS_PACKET: &str = "e0fffe";

    #[test]
    fn gstreamer_head() {
        let head = OpusHead::parse(&unhex(OPUSENC_STEREO_HEAD)).unwrap();
        assert_eq!(
            head,
            OpusHead {
                channels: 2,
                pre_skip: 312,
                input_sample_rate: 48000,
                output_gain: 0,
                mapping_family: 0
            }
        );
        assert_eq!(head.to_bytes(), unhex(OPUSENC_STEREO_HEAD));
        assert_eq!(head.to_dops(), [0, 2, 0x01, 0x38, 0, 0, 0xbb, 0x80, 0, 0, 0]);
        assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), head);
    }

    #[test]
    fn gain_and_rate_byte_order() {
        let head = OpusHead {
            channels: 1,
            pre_skip: 3840,
            input_sample_rate: 16000,
            output_gain: -256,
            mapping_family: 0,
        };
        let bytes = head.to_bytes();
        assert_eq!(bytes.len(), 19);
        assert_eq!(&bytes[10..18], [0x00, 0x0f, 0x80, 0x3e, 0, 0, 0x00, 0xff]);
        assert_eq!(&head.to_dops()[2..10], [0x0f, 0x00, 0, 0, 0x3e, 0x80, 0xff, 0x00]);
        assert_eq!(OpusHead::parse(&bytes).unwrap(), head);
    }

    #[test]
    fn head_errors() {
        let good = unhex(OPUSENC_STEREO_HEAD);
        let err = OpusHead::parse(&good[..12]).unwrap_err();
        assert_eq!(
            err,
            CodecError::Truncated {
                what: "OpusHead input sample rate",
                offset: 12,
                needed: 4,
                had: 0
            }
        );
        let mut bad = good.clone();
        bad[0] = b'o';
        assert!(OpusHead::parse(&bad)
            .unwrap_err()
            .to_string()
            .contains("got 6f 70 75 73"));
        let mut v2 = good.clone();
        v2[8] = 0x10;
        assert!(matches!(OpusHead::parse(&v2), Err(CodecError::Unsupported { .. })));
        let mut fam1 = good.clone();
        fam1[18] = 1;
        assert!(matches!(OpusHead::parse(&fam1), Err(CodecError::Unsupported { .. })));
        let mut six = good;
        six[9] = 6;
        assert!(matches!(OpusHead::parse(&six), Err(CodecError::Invalid { .. })));
    }

    #[test]
    fn real_packet_durations() {
        assert_eq!(packet_duration_48k(&unhex(OPUSENC_20MS_PACKET)), Ok(960));
        assert_eq!(packet_duration_48k(&unhex(OPUSENC_60MS_PACKET)), Ok(2880));
        assert_eq!(packet_duration_48k(&unhex(OPUSENC_SILK_40MS_PACKET)), Ok(1920));
        assert_eq!(packet_duration_48k(&unhex(OPUSENC_10MS_PACKET)), Ok(480));
        assert_eq!(packet_duration_48k(&unhex(OPUSENC_2_5MS_PACKET)), Ok(120));
    }

    #[test]
    fn toc_table() {
        // (config << 3) | code
        let cases: [(u8, u32); 8] = [
            (3 << 3, 2880),      // SILK NB 60 ms
            (9 << 3 | 1, 1920),  // SILK WB 20 ms × 2
            (12 << 3, 480),      // Hybrid SWB 10 ms
            (15 << 3 | 2, 1920), // Hybrid FB 20 ms × 2
            (16 << 3, 120),      // CELT NB 2.5 ms
            (21 << 3, 240),      // CELT WB 5 ms
            (26 << 3 | 1, 960),  // CELT SWB 10 ms × 2
            (31 << 3 | 1, 1920), // CELT FB 20 ms × 2
        ];
        for (toc, samples) in cases {
            assert_eq!(packet_duration_48k(&[toc, 0, 0]), Ok(samples), "toc {toc:#04x}");
        }
        assert_eq!(packet_duration_48k(&[16 << 3 | 3, 48]), Ok(5760));
    }

    #[test]
    fn packet_errors() {
        assert_eq!(
            packet_duration_48k(&[]),
            Err(CodecError::Missing { what: "Opus TOC byte" })
        );
        assert!(matches!(
            packet_duration_48k(&[0x03]),
            Err(CodecError::Truncated { .. })
        ));
        assert!(packet_duration_48k(&[0x03, 0x80])
            .unwrap_err()
            .to_string()
            .contains("0 frames"));
        // 3 × 60 ms = 180 ms is over the limit.
        let err = packet_duration_48k(&[3 << 3 | 3, 3]).unwrap_err();
        assert!(err.to_string().contains("5760"), "{err}");
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..32)) {
            let _ = OpusHead::parse(&data);
            let _ = OpusHead::from_dops(&data);
            if let Ok(n) = packet_duration_48k(&data) {
                prop_assert!((120..=MAX_PACKET_SAMPLES).contains(&n));
            }
        }

        #[test]
        fn head_round_trips(channels in 1u8..=2, pre_skip in any::<u16>(), rate in any::<u32>(), gain in any::<i16>()) {
            let head = OpusHead { channels, pre_skip, input_sample_rate: rate, output_gain: gain, mapping_family: 0 };
            prop_assert_eq!(OpusHead::parse(&head.to_bytes()).unwrap(), head);
            prop_assert_eq!(OpusHead::from_dops(&head.to_dops()).unwrap(), head);
        }
    }
}
