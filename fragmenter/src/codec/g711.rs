//! G.711 A-law and µ-law: the WAVEFORMATEX that Matroska `A_MS/ACM`
//! CodecPrivate carries, and single-sample companding (ITU-T G.711, in the
//! widely used Sun reference formulation on 16-bit linear PCM).

use super::{hex, CodecError};

/// WAVE_FORMAT_ALAW.
const FORMAT_ALAW: u16 = 6;
/// WAVE_FORMAT_MULAW.
const FORMAT_MULAW: u16 = 7;

/// Which G.711 companding law.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Law {
    /// A-law (PCMA), used outside North America and Japan.
    ALaw,
    /// µ-law (PCMU).
    MuLaw,
}

impl Law {
    /// The WAVEFORMATEX wFormatTag: 6 for A-law, 7 for µ-law.
    pub fn format_tag(self) -> u16 {
        match self {
            Law::ALaw => FORMAT_ALAW,
            Law::MuLaw => FORMAT_MULAW,
        }
    }

    /// The law for a wFormatTag, if it is a G.711 one.
    pub fn from_format_tag(tag: u16) -> Option<Law> {
        match tag {
            FORMAT_ALAW => Some(Law::ALaw),
            FORMAT_MULAW => Some(Law::MuLaw),
            _ => None,
        }
    }

    /// Decodes one sample to 16-bit linear PCM.
    pub fn decode(self, sample: u8) -> i16 {
        match self {
            Law::ALaw => alaw_to_linear(sample),
            Law::MuLaw => ulaw_to_linear(sample),
        }
    }

    /// Encodes one 16-bit linear PCM sample.
    pub fn encode(self, pcm: i16) -> u8 {
        match self {
            Law::ALaw => linear_to_alaw(pcm),
            Law::MuLaw => linear_to_ulaw(pcm),
        }
    }
}

/// A G.711 audio format: 8-bit companded samples.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct G711 {
    /// A-law or µ-law.
    pub law: Law,
    /// Samples per second (8000 for telephony cameras).
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

impl G711 {
    /// The 18-byte little-endian WAVEFORMATEX: wFormatTag, nChannels,
    /// nSamplesPerSec, nAvgBytesPerSec (rate × channels), nBlockAlign
    /// (channels), wBitsPerSample 8, cbSize 0.
    pub fn waveformatex(&self) -> [u8; 18] {
        let mut out = [0u8; 18];
        let channels = u16::from(self.channels);
        out[0..2].copy_from_slice(&self.law.format_tag().to_le_bytes());
        out[2..4].copy_from_slice(&channels.to_le_bytes());
        out[4..8].copy_from_slice(&self.sample_rate.to_le_bytes());
        // One byte per sample per channel.
        let avg = self.sample_rate.saturating_mul(u32::from(self.channels));
        out[8..12].copy_from_slice(&avg.to_le_bytes());
        out[12..14].copy_from_slice(&channels.to_le_bytes());
        out[14..16].copy_from_slice(&8u16.to_le_bytes());
        // cbSize 0: no extra bytes.
        out
    }

    /// Parses a WAVEFORMATEX (or the 16-byte WAVEFORMAT without cbSize)
    /// describing G.711; see [`parse_waveformatex`].
    pub fn parse_waveformatex(data: &[u8]) -> Result<G711, CodecError> {
        parse_waveformatex(data)
    }
}

/// Parses a WAVEFORMATEX (or the 16-byte WAVEFORMAT without cbSize) that
/// must describe 8-bit A-law or µ-law audio.
pub fn parse_waveformatex(data: &[u8]) -> Result<G711, CodecError> {
    if data.len() < 16 {
        return Err(CodecError::Truncated {
            what: "WAVEFORMATEX",
            offset: 0,
            needed: 16,
            had: data.len(),
        });
    }
    let u16_at = |i: usize| u16::from_le_bytes([data[i], data[i + 1]]);
    let tag = u16_at(0);
    let Some(law) = Law::from_format_tag(tag) else {
        return Err(CodecError::unsupported(
            "WAVEFORMATEX wFormatTag",
            format!("expected 6 (A-law) or 7 (µ-law), got {tag} (bytes {})", hex(&data[..2])),
        ));
    };
    let channels = u16_at(2);
    let channels = u8::try_from(channels)
        .ok()
        .filter(|&c| c > 0)
        .ok_or_else(|| CodecError::invalid("WAVEFORMATEX nChannels", format!("expected 1..=255, got {channels}")))?;
    let sample_rate = u32::from_le_bytes([data[4], data[5], data[6], data[7]]);
    if sample_rate == 0 {
        return Err(CodecError::invalid("WAVEFORMATEX nSamplesPerSec", "0 Hz"));
    }
    let bits = u16_at(14);
    if bits != 8 {
        return Err(CodecError::invalid(
            "WAVEFORMATEX wBitsPerSample",
            format!("expected 8 for G.711, got {bits}"),
        ));
    }
    Ok(G711 {
        law,
        sample_rate,
        channels,
    })
}

/// A-law sign bit (set for positive values).
const SIGN_BIT: u8 = 0x80;
/// Even-bit inversion applied to every A-law code.
const ALAW_XOR: u8 = 0x55;
/// µ-law bias added before segment search.
const ULAW_BIAS: i32 = 0x84;
/// Largest µ-law magnitude in 14-bit units, after which codes saturate.
const ULAW_CLIP: i32 = 8159;

/// Index of the first segment end at or above `v`, or 8 when above all.
fn segment(v: i32, ends: &[i32; 8]) -> u8 {
    ends.iter().position(|&e| v <= e).unwrap_or(8) as u8
}

/// Decodes an A-law code to 16-bit linear PCM (e.g. 0xd5 → 8).
pub fn alaw_to_linear(code: u8) -> i16 {
    let a = code ^ ALAW_XOR;
    let mantissa = i32::from(a & 0x0f) << 4;
    let seg = (a & 0x70) >> 4;
    let magnitude = match seg {
        0 => mantissa + 8,
        1 => mantissa + 0x108,
        _ => (mantissa + 0x108) << (seg - 1),
    };
    // At most 0x1f8 << 6 = 32256: fits i16 either sign.
    (if a & SIGN_BIT != 0 { magnitude } else { -magnitude }) as i16
}

/// Encodes 16-bit linear PCM as A-law.
pub fn linear_to_alaw(pcm: i16) -> u8 {
    const ENDS: [i32; 8] = [0x1f, 0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff];
    // A-law works on 13 bits.
    let mut v = i32::from(pcm) >> 3;
    let mask = if v >= 0 {
        SIGN_BIT | ALAW_XOR
    } else {
        v = -v - 1;
        ALAW_XOR
    };
    let seg = segment(v, &ENDS);
    let code = if seg >= 8 {
        0x7f
    } else {
        let shift = if seg < 2 { 1 } else { seg };
        (seg << 4) | ((v >> shift) & 0x0f) as u8
    };
    code ^ mask
}

/// Decodes a µ-law code to 16-bit linear PCM (e.g. 0xff → 0, 0x00 →
/// -32124).
pub fn ulaw_to_linear(code: u8) -> i16 {
    let u = !code;
    let t = ((i32::from(u & 0x0f) << 3) + ULAW_BIAS) << ((u & 0x70) >> 4);
    // At most (0x78 + 0x84) << 7 = 32256, minus the bias: fits i16.
    (if u & SIGN_BIT != 0 {
        ULAW_BIAS - t
    } else {
        t - ULAW_BIAS
    }) as i16
}

/// Encodes 16-bit linear PCM as µ-law.
pub fn linear_to_ulaw(pcm: i16) -> u8 {
    const ENDS: [i32; 8] = [0x3f, 0x7f, 0xff, 0x1ff, 0x3ff, 0x7ff, 0xfff, 0x1fff];
    // µ-law works on 14 bits.
    let mut v = i32::from(pcm) >> 2;
    let mask = if v < 0 {
        v = -v;
        0x7f
    } else {
        0xff
    };
    v = v.min(ULAW_CLIP) + (ULAW_BIAS >> 2);
    let seg = segment(v, &ENDS);
    let code = if seg >= 8 {
        0x7f
    } else {
        (seg << 4) | ((v >> (seg + 1)) & 0x0f) as u8
    };
    code ^ mask
}

/// Alias of [`ulaw_to_linear`] spelled out.
pub fn mulaw_to_linear(code: u8) -> i16 {
    ulaw_to_linear(code)
}

/// Alias of [`linear_to_ulaw`] spelled out.
pub fn linear_to_mulaw(pcm: i16) -> u8 {
    linear_to_ulaw(pcm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_table_values() {
        assert_eq!(ulaw_to_linear(0xff), 0);
        assert_eq!(ulaw_to_linear(0x7f), 0);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0xfe), 8);
        assert_eq!(ulaw_to_linear(0x7e), -8);
        assert_eq!(ulaw_to_linear(0xef), 132);
        assert_eq!(alaw_to_linear(0xd5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xaa), 32256);
        assert_eq!(alaw_to_linear(0x2a), -32256);
        assert_eq!(alaw_to_linear(0xd4), 24);
        assert_eq!(alaw_to_linear(0xc5), 264);

        assert_eq!(linear_to_ulaw(0), 0xff);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
        assert_eq!(linear_to_alaw(0), 0xd5);
        assert_eq!(linear_to_alaw(-1), 0x55);
        assert_eq!(linear_to_alaw(i16::MAX), 0xaa);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2a);
    }

    #[test]
    fn every_code_survives_decode_encode() {
        for code in 0..=255u8 {
            assert_eq!(linear_to_alaw(alaw_to_linear(code)), code, "A-law {code:#04x}");
            // µ-law has two zeros; 0x7f (-0) comes back as 0xff (+0).
            let expect = if code == 0x7f { 0xff } else { code };
            assert_eq!(linear_to_ulaw(ulaw_to_linear(code)), expect, "µ-law {code:#04x}");
            assert_eq!(Law::MuLaw.decode(code), mulaw_to_linear(code));
        }
    }

    #[test]
    fn waveformatex_layout() {
        let g = G711 {
            law: Law::MuLaw,
            sample_rate: 8000,
            channels: 1,
        };
        assert_eq!(
            g.waveformatex(),
            [7, 0, 1, 0, 0x40, 0x1f, 0, 0, 0x40, 0x1f, 0, 0, 1, 0, 8, 0, 0, 0]
        );
        let a = G711 {
            law: Law::ALaw,
            sample_rate: 16000,
            channels: 2,
        };
        let wfx = a.waveformatex();
        assert_eq!(&wfx[..2], [6, 0]);
        assert_eq!(u32::from_le_bytes(wfx[8..12].try_into().unwrap()), 32000);
        assert_eq!(G711::parse_waveformatex(&wfx).unwrap(), a);
        assert_eq!(parse_waveformatex(&g.waveformatex()[..16]).unwrap(), g);
    }

    #[test]
    fn waveformatex_errors() {
        let g = G711 {
            law: Law::ALaw,
            sample_rate: 8000,
            channels: 1,
        };
        let mut pcm = g.waveformatex();
        pcm[0] = 1;
        let err = parse_waveformatex(&pcm).unwrap_err();
        assert!(err.to_string().contains("got 1 (bytes 01 00)"), "{err}");
        let mut wide = g.waveformatex();
        wide[14] = 16;
        assert!(parse_waveformatex(&wide).is_err());
        let mut none = g.waveformatex();
        none[2] = 0;
        assert!(parse_waveformatex(&none).is_err());
        assert!(matches!(parse_waveformatex(&[6, 0]), Err(CodecError::Truncated { .. })));
    }

    proptest! {
        #[test]
        fn companding_is_monotonic_and_close(a in any::<i16>(), b in any::<i16>()) {
            let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
            for law in [Law::ALaw, Law::MuLaw] {
                prop_assert!(law.decode(law.encode(lo)) <= law.decode(law.encode(hi)));
                // Quantization error stays within half the largest step.
                let err = (i32::from(law.decode(law.encode(a))) - i32::from(a)).abs();
                prop_assert!(err <= 1024, "{:?} {} err {}", law, a, err);
            }
        }

        #[test]
        fn parse_never_panics(data in proptest::collection::vec(any::<u8>(), 0..24)) {
            let _ = parse_waveformatex(&data);
        }
    }
}
