//! The initialization segment (`ftyp` + `moov`) and the `styp` that opens
//! each media segment. Every leaf box is encoded by `mp4-atom`; the
//! containers down to the sample entry are written here (with mp4-atom's
//! `encode_atom` size patching) so that avcC and hvcC go in verbatim.

use bytes::Bytes;
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    u24, Audio, BufMut, Codec, Dinf, Dops, Dref, DrefEntry, Encode, Esds, FixedPoint, FourCC, Ftyp, Hdlr, Matrix, Mdhd,
    Mp4a, Mvex, Mvhd, Opus, Smhd, Stco, Stsc, Stsz, Stts, Styp, Tkhd, Trex, Url, Visual, Vmhd,
};

use super::time::{mp4_time, MAX_TIMESCALE};
use super::{Fmp4Error, Fmp4Options};
use crate::media::{AudioCodec, Track, TrackId, TrackMedia, VideoCodec};

/// The MP4 clock of every video track: 90 kHz, the RTP/MPEG-TS video clock,
/// divides evenly into every common frame rate (24, 25, 29.97, 30, 50, 60).
pub(crate) const VIDEO_TIMESCALE: u32 = 90_000;

/// Opus always decodes at 48 kHz (RFC 7845 §4), whatever the input rate.
pub(crate) const OPUS_TIMESCALE: u32 = 48_000;

/// What the fragment writer needs to know about a track once the `moov` is
/// written.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TrackPlan {
    pub id: TrackId,
    pub timescale: u32,
    pub video: bool,
}

/// Validate the tracks and encode `ftyp` + `moov`.
pub(crate) fn build(tracks: &[Track], opts: &Fmp4Options) -> Result<(Vec<TrackPlan>, Bytes), Fmp4Error> {
    if tracks.is_empty() {
        return Err(Fmp4Error::NoTracks);
    }
    let mut plans: Vec<TrackPlan> = Vec::with_capacity(tracks.len());
    let mut traks = Vec::with_capacity(tracks.len());
    for track in tracks {
        if plans.iter().any(|p| p.id == track.id) {
            return Err(Fmp4Error::DuplicateTrack { track: track.id });
        }
        let trak = trak(track, opts)?;
        plans.push(trak.plan);
        traks.push(trak);
    }

    let created = opts.creation_time.map(mp4_time).unwrap_or(0);
    let next_track_id = plans.iter().map(|p| u32::from(p.id.get())).max().unwrap_or(0) + 1;
    let mvhd = Mvhd {
        creation_time: created,
        modification_time: created,
        // The movie clock only dates the (empty) movie; milliseconds as usual.
        timescale: 1000,
        // Zero: the duration of a fragmented movie is the sum of its fragments.
        duration: 0,
        rate: FixedPoint::new(1, 0),
        volume: FixedPoint::new(1, 0),
        matrix: Matrix::default(),
        next_track_id,
    };
    let mvex = Mvex {
        mehd: None,
        trex: plans
            .iter()
            .map(|p| Trex {
                track_id: u32::from(p.id.get()),
                default_sample_description_index: 1,
                // Every trun carries per-sample duration, size and flags,
                // so the defaults are never used.
                default_sample_duration: 0,
                default_sample_size: 0,
                default_sample_flags: 0,
            })
            .collect(),
    };

    let mut out = Vec::with_capacity(1024);
    ftyp(tracks.len())
        .encode(&mut out)
        .map_err(|e| encode_error("ftyp", e))?;
    // moov (§8.2.1): mvhd, one trak per track, mvex.
    out.encode_atom(FourCC::new(b"moov"), |out| {
        mvhd.encode(out)?;
        for trak in &traks {
            trak.encode(out)?;
        }
        mvex.encode(out)
    })
    .map_err(|e| encode_error("moov", e))?;
    Ok((plans, Bytes::from(out)))
}

/// The file type box.
///
/// `iso6` is the major brand: it includes what the fragments rely on from
/// the earlier ISO brands (version 1 `trun` with signed composition offsets
/// from `iso4`, default-base-is-moof from `iso5`) and is what CMAF builds
/// on. `mp41` says the file also follows the MP4 file format
/// (ISO/IEC 14496-14: `esds`, MPEG-4 audio). `cmfc` (CMAF,
/// ISO/IEC 23000-19) is only claimed for a single track: a CMAF track file
/// holds exactly one track, so a muxed audio+video file must not claim it.
fn ftyp(track_count: usize) -> Ftyp {
    let mut compatible_brands = vec![FourCC::new(b"iso6"), FourCC::new(b"mp41")];
    if track_count == 1 {
        compatible_brands.push(FourCC::new(b"cmfc"));
    }
    Ftyp {
        major_brand: FourCC::new(b"iso6"),
        minor_version: 0,
        compatible_brands,
    }
}

/// The segment type box that starts every media segment: `msdh` (a DASH
/// media segment, ISO/IEC 23009-1 §6.3.4.2: whole movie fragments, no
/// `moov`), with `iso6` for the boxes inside, plus `cmfs` (a CMAF segment)
/// when the init segment claims CMAF.
pub(crate) fn styp(track_count: usize) -> Result<Vec<u8>, Fmp4Error> {
    let mut compatible_brands = vec![FourCC::new(b"msdh"), FourCC::new(b"iso6")];
    if track_count == 1 {
        compatible_brands.push(FourCC::new(b"cmfs"));
    }
    let styp = Styp {
        major_brand: FourCC::new(b"msdh"),
        minor_version: 0,
        compatible_brands,
    };
    let mut out = Vec::with_capacity(32);
    styp.encode(&mut out).map_err(|e| encode_error("styp", e))?;
    Ok(out)
}

fn encode_error(what: &'static str, e: mp4_atom::Error) -> Fmp4Error {
    Fmp4Error::Encode {
        what,
        reason: e.to_string(),
    }
}

fn config_error(track: &Track, what: &'static str, reason: impl ToString) -> Fmp4Error {
    Fmp4Error::CodecConfig {
        track: track.id,
        what,
        reason: reason.to_string(),
    }
}

/// A track's boxes, ready to encode.
struct TrakBoxes<'a> {
    plan: TrackPlan,
    tkhd: Tkhd,
    mdhd: Mdhd,
    hdlr: Hdlr,
    entry: SampleEntry<'a>,
}

impl TrakBoxes<'_> {
    /// trak (§8.3.1) › tkhd, mdia › mdhd, hdlr, minf › vmhd|smhd, dinf,
    /// stbl › stsd, and an empty stts, stsc, stsz and stco: the samples
    /// live in the fragments.
    ///
    /// The leaf boxes are mp4-atom's; the containers are written here
    /// because the sample entry carries the decoder configuration record
    /// verbatim, which mp4-atom's typed `stsd` cannot hold.
    fn encode(&self, out: &mut Vec<u8>) -> mp4_atom::Result<()> {
        out.encode_atom(FourCC::new(b"trak"), |out| {
            self.tkhd.encode(out)?;
            out.encode_atom(FourCC::new(b"mdia"), |out| {
                self.mdhd.encode(out)?;
                self.hdlr.encode(out)?;
                out.encode_atom(FourCC::new(b"minf"), |out| {
                    if self.plan.video {
                        Vmhd::default().encode(out)?;
                    } else {
                        Smhd::default().encode(out)?;
                    }
                    Dinf {
                        dref: Dref {
                            // One self-contained entry: the media is in this file.
                            entries: vec![DrefEntry::Url(Url::default())],
                        },
                    }
                    .encode(out)?;
                    out.encode_atom(FourCC::new(b"stbl"), |out| {
                        // stsd (§8.5.2): a full box (version 0, flags 0)
                        // with one sample entry.
                        out.encode_atom(FourCC::new(b"stsd"), |out| {
                            0u32.encode(out)?;
                            1u32.encode(out)?;
                            self.entry.encode(out)
                        })?;
                        Stts::default().encode(out)?;
                        Stsc::default().encode(out)?;
                        Stsz::default().encode(out)?;
                        Stco::default().encode(out)
                    })
                })
            })
        })
    }
}

/// A sample entry (§8.5.2.2).
enum SampleEntry<'a> {
    /// avc1 + avcC or hvc1 + hvcC: the visual sample entry fields, then the
    /// decoder configuration record exactly as the track gave it, so no
    /// re-encoding can change what the encoder produced.
    Video {
        kind: &'static [u8; 4],
        config_kind: &'static [u8; 4],
        visual: Visual,
        config: &'a [u8],
    },
    /// mp4a + esds or Opus + dOps, entirely mp4-atom's.
    Audio(Codec),
}

impl SampleEntry<'_> {
    fn encode(&self, out: &mut Vec<u8>) -> mp4_atom::Result<()> {
        match self {
            SampleEntry::Video {
                kind,
                config_kind,
                visual,
                config,
            } => out.encode_atom(FourCC::new(kind), |out| {
                visual.encode(out)?;
                out.encode_atom(FourCC::new(config_kind), |out| {
                    out.append_slice(config);
                    Ok(())
                })
            }),
            SampleEntry::Audio(codec) => codec.encode(out),
        }
    }
}

/// A track's header boxes and sample entry.
fn trak<'a>(track: &'a Track, opts: &Fmp4Options) -> Result<TrakBoxes<'a>, Fmp4Error> {
    let track_id = u32::from(track.id.get());
    let created = opts.creation_time.map(mp4_time).unwrap_or(0);
    let (entry, timescale, video) = sample_entry(track)?;

    let (width, height) = match &track.media {
        TrackMedia::Video(v) => (v.width, v.height),
        _ => (0, 0),
    };
    let (handler, default_name) = if video {
        (b"vide", "VideoHandler")
    } else {
        (b"soun", "SoundHandler")
    };
    // The handler name is a C string: an embedded NUL would end it early.
    let name: String = track.name.chars().filter(|&c| c != '\0').collect();
    let name = if name.is_empty() { default_name.to_owned() } else { name };

    Ok(TrakBoxes {
        plan: TrackPlan {
            id: track.id,
            timescale,
            video,
        },
        tkhd: Tkhd {
            creation_time: created,
            modification_time: created,
            track_id,
            duration: 0,
            layer: 0,
            alternate_group: 0,
            enabled: true,
            in_movie: true,
            size_is_aspect_ratio: false,
            // Full volume for sound, zero for pictures (§8.3.2.3).
            volume: FixedPoint::new(u8::from(!video), 0),
            matrix: Matrix::default(),
            // 16.16 fixed point; sample_entry already checked the size fits 16 bits.
            width: FixedPoint::new(u16::try_from(width).unwrap_or(0), 0),
            height: FixedPoint::new(u16::try_from(height).unwrap_or(0), 0),
        },
        mdhd: Mdhd {
            creation_time: created,
            modification_time: created,
            timescale,
            duration: 0,
            language: "und".to_owned(),
        },
        hdlr: Hdlr {
            handler: FourCC::new(handler),
            name,
        },
        entry,
    })
}

/// The sample entry, media timescale and whether the track is video.
fn sample_entry(track: &Track) -> Result<(SampleEntry<'_>, u32, bool), Fmp4Error> {
    match &track.media {
        TrackMedia::Video(v) => {
            let (Ok(width), Ok(height)) = (u16::try_from(v.width), u16::try_from(v.height)) else {
                return Err(Fmp4Error::PictureSize {
                    track: track.id,
                    width: v.width,
                    height: v.height,
                });
            };
            let visual = Visual {
                // Samples refer to the first (only) dref entry.
                data_reference_index: 1,
                width,
                height,
                ..Default::default()
            };
            // hvc1 rather than hev1: parameter sets live in the sample entry,
            // as Apple's HLS players require.
            let (kind, config_kind, config, what) = match &v.codec {
                VideoCodec::H264 { avcc } => (b"avc1", b"avcC", avcc, "avcC"),
                VideoCodec::H265 { hvcc } => (b"hvc1", b"hvcC", hvcc, "hvcC"),
            };
            // The record is the media model's (VideoTrack::h264/h265 parsed
            // it); only check it is a record at all, not Annex B or a bare
            // SPS handed over by mistake: both records start with
            // configurationVersion = 1 (ISO/IEC 14496-15 §5.3.3.1, §8.3.3.1).
            if config.first() != Some(&1) {
                return Err(config_error(
                    track,
                    what,
                    format!("{} bytes not starting with configurationVersion 1", config.len()),
                ));
            }
            let entry = SampleEntry::Video {
                kind,
                config_kind,
                visual,
                config,
            };
            Ok((entry, VIDEO_TIMESCALE, true))
        }
        TrackMedia::Audio(a) => {
            if a.channels == 0 {
                return Err(config_error(track, "channel count", "zero channels"));
            }
            let entry = |rate: u32| Audio {
                data_reference_index: 1,
                channel_count: u16::from(a.channels),
                sample_size: 16,
                // 16.16 fixed point: a rate above 65535 Hz cannot be written
                // and is given as 0; decoders take the rate from the codec
                // configuration anyway.
                sample_rate: FixedPoint::new(u16::try_from(rate).unwrap_or(0), 0),
            };
            match &a.codec {
                AudioCodec::Aac { asc } => {
                    if asc.is_empty() {
                        return Err(config_error(
                            track,
                            "AudioSpecificConfig",
                            "empty: AAC needs its AudioSpecificConfig in the esds",
                        ));
                    }
                    if a.sample_rate == 0 || a.sample_rate > MAX_TIMESCALE {
                        return Err(config_error(
                            track,
                            "sample rate",
                            format!("{} Hz is not a usable AAC sample rate", a.sample_rate),
                        ));
                    }
                    let esds = Esds {
                        es_desc: EsDescriptor {
                            es_id: u16::from(track.id.get()),
                            dec_config: DecoderConfig {
                                // 0x40: Audio ISO/IEC 14496-3 (MPEG-4 AAC).
                                object_type_indication: 0x40,
                                // 0x05: AudioStream.
                                stream_type: 0x05,
                                up_stream: 0,
                                buffer_size_db: u24::from([0; 3]),
                                max_bitrate: 0,
                                avg_bitrate: 0,
                                dec_specific: Some(DecoderSpecific {
                                    // Only used when `raw` is empty.
                                    profile: 0,
                                    freq_index: 0,
                                    chan_conf: 0,
                                    raw: asc.to_vec(),
                                }),
                            },
                            sl_config: SLConfig {},
                            ..Default::default()
                        },
                    };
                    let codec = Codec::Mp4a(Mp4a {
                        audio: entry(a.sample_rate),
                        esds,
                        btrt: None,
                        taic: None,
                    });
                    Ok((SampleEntry::Audio(codec), a.sample_rate, false))
                }
                AudioCodec::Opus { pre_skip } => {
                    // Mapping family 0 (the only one the media model carries)
                    // is defined for mono and stereo only (RFC 7845 §5.1.1.1).
                    if a.channels > 2 {
                        return Err(config_error(
                            track,
                            "Opus channel count",
                            format!(
                                "{} channels need a channel mapping table, which the track does not carry",
                                a.channels
                            ),
                        ));
                    }
                    let codec = Codec::Opus(Opus {
                        audio: entry(OPUS_TIMESCALE),
                        dops: Dops {
                            output_channel_count: a.channels,
                            pre_skip: *pre_skip,
                            input_sample_rate: a.sample_rate,
                            output_gain: 0,
                            channel_mapping: None,
                        },
                        btrt: None,
                    });
                    Ok((SampleEntry::Audio(codec), OPUS_TIMESCALE, false))
                }
                AudioCodec::G711(_) => Err(Fmp4Error::UnsupportedCodec {
                    track: track.id,
                    codec: "G.711",
                }),
            }
        }
        TrackMedia::Sensor(_) => Err(Fmp4Error::UnsupportedTrack {
            track: track.id,
            name: track.name.clone(),
            kind: track.kind(),
        }),
    }
}
