//! Unit tests of the fMP4 writer: the boxes are read back with `mp4-atom`.

use std::time::Duration;

use bytes::Bytes;
use mp4_atom::{Any, Codec, Decode, Encode, Ftyp, Header, Moof, Moov, Prft, Styp};

use super::*;
use crate::media::{
    AudioCodec, AudioTrack, SensorCodecId, SensorKind, SensorTrack, TrackMedia, VideoCodec, VideoTrack,
};
use crate::sink::Chunks;

/// avcC of x264 (High, level 3.0) for 640x360, from GStreamer's caps.
const AVCC_640X360: &str =
    "0164001effe1001e6764001eacd940a02ff97016a0c0c0d4a0000003002000000791e2c5b2c001000568ebecb22c";
/// hvcC of x265 (Main) for 640x360, from GStreamer's caps.
const HVCC_640X360: &str = "0101600000009000000000003ff000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003f959809210001003142010101600000030090000003000003003fa00502016965959a4932bffc00040005a830303020000003002000000303c122000100074401c172b46240";
/// AudioSpecificConfig of avenc_aac: AAC LC, 44.1 kHz, mono, with the
/// SBR sync extension.
const ASC_44K_MONO: &str = "120856e500";

/// 2026-01-01T00:00:00Z.
const BASE_NS: u64 = 1_767_225_600_000_000_000;

fn hex(s: &str) -> Bytes {
    let bytes = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    Bytes::from(bytes)
}

fn id(n: u8) -> TrackId {
    TrackId::new(n).unwrap()
}

fn h264_track(n: u8) -> Track {
    Track::new(
        id(n),
        "camera",
        VideoTrack {
            codec: VideoCodec::H264 {
                avcc: hex(AVCC_640X360),
            },
            width: 640,
            height: 360,
        },
    )
}

fn aac_track(n: u8) -> Track {
    Track::new(
        id(n),
        "mic",
        AudioTrack {
            codec: AudioCodec::Aac { asc: hex(ASC_44K_MONO) },
            sample_rate: 44_100,
            channels: 1,
        },
    )
}

fn opus_track(n: u8) -> Track {
    Track::new(
        id(n),
        "opus",
        AudioTrack {
            codec: AudioCodec::Opus { pre_skip: 312 },
            sample_rate: 16_000,
            channels: 2,
        },
    )
}

fn sensor_track(n: u8) -> Track {
    Track::new(
        id(n),
        "lidar-front",
        SensorTrack {
            kind: SensorKind::Lidar,
            codec_id: SensorCodecId::new("O_OUSTER/LIDAR_PACKET").unwrap(),
            private: Bytes::new(),
        },
    )
}

fn ts(ns: u64) -> Timestamp {
    Timestamp::from_nanos(ns)
}

fn frame(track: u8, dts: u64, pts: u64, dur: u64, keyframe: bool, data: &[u8]) -> Frame {
    Frame {
        track: id(track),
        pts: ts(pts),
        dts: ts(dts),
        duration: Duration::from_nanos(dur),
        keyframe,
        data: Bytes::copy_from_slice(data),
    }
}

fn opts() -> Fmp4Options {
    Fmp4Options::new(ts(BASE_NS))
}

/// The top-level boxes of `buf`: (type, start, size).
fn top_boxes(buf: &[u8]) -> Vec<([u8; 4], usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let mut cursor = &buf[pos..];
        let before = cursor.len();
        let header = Header::decode(&mut cursor).unwrap();
        let header_len = before - cursor.len();
        let size = header.size.unwrap() + header_len;
        out.push((header.kind.into(), pos, size));
        pos += size;
    }
    out
}

fn decode_moov(init: &[u8]) -> (Ftyp, Moov) {
    let mut cursor = init;
    let ftyp = Ftyp::decode(&mut cursor).unwrap();
    let moov = Moov::decode(&mut cursor).unwrap();
    assert!(cursor.is_empty(), "bytes after moov");
    (ftyp, moov)
}

/// The moofs and their start offsets in `buf`.
fn moofs(buf: &[u8]) -> Vec<(Moof, usize)> {
    top_boxes(buf)
        .into_iter()
        .filter(|(k, _, _)| k == b"moof")
        .map(|(_, start, size)| (Moof::decode(&mut &buf[start..start + size]).unwrap(), start))
        .collect()
}

#[test]
fn init_segment_has_a_trak_per_track_with_its_sample_entry() {
    let w = Fmp4Writer::new(&[h264_track(1), aac_track(2)], opts()).unwrap();
    assert_eq!(w.track_ids(), &[id(1), id(2)]);
    assert_eq!(w.timescale(id(1)), Some(90_000));
    assert_eq!(w.timescale(id(2)), Some(44_100));
    assert_eq!(w.timescale(id(3)), None);

    let init = w.init_segment();
    let (ftyp, moov) = decode_moov(&init);
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert!(ftyp.compatible_brands.contains(&b"iso6".into()));
    // Two tracks in one file is not a CMAF track file.
    assert!(!ftyp.compatible_brands.contains(&b"cmfc".into()));

    assert_eq!(moov.mvhd.next_track_id, 3);
    assert_eq!(moov.trak.len(), 2);
    let mvex = moov.mvex.as_ref().unwrap();
    assert_eq!(mvex.trex.iter().map(|t| t.track_id).collect::<Vec<_>>(), [1, 2]);
    assert!(mvex.trex.iter().all(|t| t.default_sample_description_index == 1));

    let video = &moov.trak[0];
    assert_eq!(video.tkhd.track_id, 1);
    assert_eq!(video.tkhd.width.integer(), 640);
    assert_eq!(video.tkhd.height.integer(), 360);
    assert_eq!(video.mdia.mdhd.timescale, 90_000);
    assert_eq!(video.mdia.hdlr.handler, b"vide".into());
    assert!(video.mdia.minf.vmhd.is_some());
    let stbl = &video.mdia.minf.stbl;
    assert!(stbl.stts.entries.is_empty());
    assert!(stbl.stsc.entries.is_empty());
    assert!(stbl.stco.as_ref().unwrap().entries.is_empty());
    let Codec::Avc1(avc1) = &stbl.stsd.codecs[0] else {
        panic!("not avc1: {:?}", stbl.stsd.codecs);
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (640, 360));
    assert_eq!(avc1.visual.data_reference_index, 1);
    // The avcC box body is the record we were given, byte for byte.
    let mut avcc_box = Vec::new();
    avc1.avcc.encode(&mut avcc_box).unwrap();
    assert_eq!(&avcc_box[8..], &hex(AVCC_640X360)[..]);

    let audio = &moov.trak[1];
    assert_eq!(audio.tkhd.track_id, 2);
    assert_eq!(audio.mdia.mdhd.timescale, 44_100);
    assert_eq!(audio.mdia.hdlr.handler, b"soun".into());
    assert!(audio.mdia.minf.smhd.is_some());
    let Codec::Mp4a(mp4a) = &audio.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("not mp4a");
    };
    assert_eq!(mp4a.audio.channel_count, 1);
    assert_eq!(mp4a.audio.sample_rate.integer(), 44_100);
    let dec = &mp4a.esds.es_desc.dec_config;
    assert_eq!(dec.object_type_indication, 0x40);
    assert_eq!(dec.stream_type, 5);
    assert_eq!(dec.dec_specific.as_ref().unwrap().raw, hex(ASC_44K_MONO).to_vec());
}

#[test]
fn hevc_track_gets_hvc1_with_its_hvcc_unchanged() {
    let track = Track::new(
        id(1),
        "hevc",
        VideoTrack {
            codec: VideoCodec::H265 {
                hvcc: hex(HVCC_640X360),
            },
            width: 640,
            height: 360,
        },
    );
    let w = Fmp4Writer::new(&[track], opts()).unwrap();
    let (ftyp, moov) = decode_moov(&w.init_segment());
    // A single track may claim CMAF.
    assert!(ftyp.compatible_brands.contains(&b"cmfc".into()));
    let Codec::Hvc1(hvc1) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("not hvc1");
    };
    let mut hvcc_box = Vec::new();
    hvc1.hvcc.encode(&mut hvcc_box).unwrap();
    assert_eq!(&hvcc_box[8..], &hex(HVCC_640X360)[..]);
}

#[test]
fn decoder_configuration_records_go_in_verbatim() {
    // A record mp4-atom would not parse (no SPS, a stray byte): the writer
    // does not judge records the media model accepted, it copies them.
    let odd = Bytes::from_static(&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0, 0]);
    let mut track = h264_track(1);
    if let TrackMedia::Video(v) = &mut track.media {
        v.codec = VideoCodec::H264 { avcc: odd.clone() };
    }
    let init = Fmp4Writer::new(&[track], opts()).unwrap().init_segment();
    let at = init.windows(4).position(|w| w == b"avcC").unwrap();
    assert_eq!(&init[at - 4..at], &(8 + odd.len() as u32).to_be_bytes());
    assert_eq!(&init[at + 4..at + 4 + odd.len()], &odd[..]);
}

#[test]
fn opus_track_gets_an_opus_sample_entry_with_dops() {
    let w = Fmp4Writer::new(&[opus_track(1)], opts()).unwrap();
    assert_eq!(w.timescale(id(1)), Some(48_000));
    let init = w.init_segment();
    let (_, moov) = decode_moov(&init);
    assert_eq!(moov.trak[0].mdia.mdhd.timescale, 48_000);
    let Codec::Opus(opus) = &moov.trak[0].mdia.minf.stbl.stsd.codecs[0] else {
        panic!("not Opus");
    };
    assert_eq!(opus.audio.channel_count, 2);
    assert_eq!(opus.audio.sample_rate.integer(), 48_000);
    assert_eq!(opus.dops.output_channel_count, 2);
    assert_eq!(opus.dops.pre_skip, 312);
    assert_eq!(opus.dops.input_sample_rate, 16_000);
    assert_eq!(opus.dops.channel_mapping, None);
    // The raw dOps box (RFC 7845 layout, "Encapsulation of Opus in ISOBMFF"
    // §4.3.2): version 0, 2 channels, pre-skip 312, 16000 Hz, gain 0, family 0.
    let at = init.windows(4).position(|w| w == b"dOps").unwrap();
    assert_eq!(
        &init[at - 4..at + 15],
        &[0, 0, 0, 19, b'd', b'O', b'p', b's', 0, 2, 0x01, 0x38, 0, 0, 0x3e, 0x80, 0, 0, 0]
    );
}

#[test]
fn unsupported_tracks_and_configurations_are_refused() {
    let err = Fmp4Writer::new(&[h264_track(1), sensor_track(2)], opts()).unwrap_err();
    assert_eq!(
        err,
        Fmp4Error::UnsupportedTrack {
            track: id(2),
            name: "lidar-front".into(),
            kind: TrackKind::Lidar,
        }
    );
    assert!(err.to_string().contains("lidar-front"), "{err}");

    let g711 = Track::new(
        id(1),
        "g711",
        AudioTrack {
            codec: AudioCodec::G711(crate::codec::g711::Law::MuLaw),
            sample_rate: 8000,
            channels: 1,
        },
    );
    assert!(matches!(
        Fmp4Writer::new(&[g711], opts()),
        Err(Fmp4Error::UnsupportedCodec { .. })
    ));
    assert_eq!(Fmp4Writer::new(&[], opts()).unwrap_err(), Fmp4Error::NoTracks);
    assert_eq!(
        Fmp4Writer::new(&[h264_track(1), aac_track(1)], opts()).unwrap_err(),
        Fmp4Error::DuplicateTrack { track: id(1) }
    );

    let mut broken = h264_track(1);
    if let TrackMedia::Video(v) = &mut broken.media {
        v.codec = VideoCodec::H264 {
            // Annex B (a start code and an SPS), not an avcC record.
            avcc: Bytes::from_static(&[0, 0, 0, 1, 0x67, 0x64, 0, 0x1e]),
        };
    }
    let err = Fmp4Writer::new(&[broken], opts()).unwrap_err();
    assert!(matches!(err, Fmp4Error::CodecConfig { what: "avcC", .. }), "{err}");

    let mut huge = h264_track(1);
    if let TrackMedia::Video(v) = &mut huge.media {
        v.width = 70_000;
    }
    assert!(matches!(
        Fmp4Writer::new(&[huge], opts()),
        Err(Fmp4Error::PictureSize { .. })
    ));
}

#[test]
fn a_part_is_moof_then_mdat_with_offsets_to_each_payload() {
    let mut w = Fmp4Writer::new(&[h264_track(1), aac_track(2)], opts()).unwrap();
    let frame_ns = 33_333_333;
    let mut out = Vec::new();
    w.begin_segment(&mut out);
    let v: Vec<Frame> = (0..3)
        .map(|i| {
            let t = BASE_NS + i * frame_ns;
            frame(1, t, t, frame_ns, i == 0, &[0xA0 + i as u8; 100])
        })
        .collect();
    let a: Vec<Frame> = (0..4)
        .map(|i| {
            let t = BASE_NS + i * 23_219_955;
            frame(2, t, t, 23_219_955, true, &[0xB0 + i as u8; 10])
        })
        .collect();
    for f in v.iter().chain(&a) {
        w.push(f).unwrap();
    }
    assert_eq!(w.buffered_frames(), 7);
    let info = w.flush_part(&mut out).unwrap().unwrap();
    assert_eq!(w.buffered_frames(), 0);

    let kinds: Vec<[u8; 4]> = top_boxes(&out).iter().map(|b| b.0).collect();
    assert_eq!(kinds, [*b"styp", *b"moof", *b"mdat"]);
    let styp = Styp::decode(&mut &out[..]).unwrap();
    assert_eq!(styp.major_brand, b"msdh".into());
    assert_eq!(info.bytes, out.len() - top_boxes(&out)[0].2);
    assert_eq!(info.frames, 7);
    assert!(info.independent);
    assert_eq!(info.first_dts, ts(BASE_NS));
    assert_eq!(info.first_pts, ts(BASE_NS));
    assert_eq!(info.end, ts(BASE_NS + 3 * frame_ns).max(ts(BASE_NS + 4 * 23_219_955)));
    assert_eq!(info.duration, info.end - info.first_dts);

    let (moof, moof_start) = moofs(&out).remove(0);
    assert_eq!(moof.mfhd.sequence_number, 1);
    assert_eq!(moof.traf.len(), 2);
    for (traf, frames) in moof.traf.iter().zip([&v, &a]) {
        assert!(traf.tfhd.default_base_is_moof);
        assert_eq!(traf.tfdt.as_ref().unwrap().base_media_decode_time, 0);
        let trun = &traf.trun[0];
        let entries: Vec<_> = trun.samples.iter().collect();
        assert_eq!(entries.len(), frames.len());
        // The data offset, from the moof start, lands on the first payload,
        // and the samples follow each other.
        let mut at = moof_start + trun.data_offset.unwrap() as usize;
        for (e, f) in entries.iter().zip(frames.iter()) {
            let size = e.size.unwrap() as usize;
            assert_eq!(&out[at..at + size], &f.data[..]);
            at += size;
            assert_eq!(e.cts, None, "no composition offsets when pts == dts");
        }
    }
    let video: Vec<_> = moof.traf[0].trun[0].samples.iter().collect();
    assert_eq!(video.iter().map(|e| e.duration.unwrap()).collect::<Vec<_>>(), [3000; 3]);
    assert_eq!(
        video.iter().map(|e| e.flags.unwrap()).collect::<Vec<_>>(),
        [0x0200_0000, 0x0101_0000, 0x0101_0000]
    );
    let audio: Vec<_> = moof.traf[1].trun[0].samples.iter().collect();
    // 23219955 ns at 44.1 kHz is 1024 samples (1023.9999 rounded).
    assert_eq!(audio.iter().map(|e| e.duration.unwrap()).collect::<Vec<_>>(), [1024; 4]);
    assert!(audio.iter().all(|e| e.flags == Some(0x0200_0000)));
}

#[test]
fn sequence_numbers_count_moofs_and_an_empty_flush_writes_nothing() {
    let mut w = Fmp4Writer::new(&[aac_track(1)], opts()).unwrap();
    let mut out = Vec::new();
    assert_eq!(w.flush_part(&mut out).unwrap(), None);
    assert!(out.is_empty());
    for i in 0..3u64 {
        w.begin_segment(&mut out);
        let t = BASE_NS + i * 23_219_955;
        w.push(&frame(1, t, t, 23_219_955, true, b"aac")).unwrap();
        w.flush_part(&mut out).unwrap().unwrap();
        assert_eq!(w.flush_part(&mut out).unwrap(), None);
    }
    let seq: Vec<u32> = moofs(&out).iter().map(|(m, _)| m.mfhd.sequence_number).collect();
    assert_eq!(seq, [1, 2, 3]);
}

#[test]
fn timestamps_hours_after_the_origin_convert_without_drift() {
    let mut w = Fmp4Writer::new(&[h264_track(1), aac_track(2)], opts()).unwrap();
    // Ten hours in: a 30 fps frame index and a 1024-sample 44.1 kHz frame
    // index, with timestamps rounded to the nanosecond as a capture clock
    // gives them.
    let hours = 10 * 3600;
    let first_video = hours * 30;
    let first_audio = hours * 44_100 / 1024 + 1; // 1550390.625 -> next frame
    let video_ns = |n: u64| BASE_NS + (n as u128 * 1_000_000_000 / 30) as u64;
    let audio_ns = |k: u64| BASE_NS + ((k as u128 * 1024 * 1_000_000_000 + 22_050) / 44_100) as u64;
    let mut out = Vec::new();
    for part in 0..3u64 {
        for n in 0..10 {
            let i = first_video + part * 10 + n;
            // Durations given as whole nanoseconds (33333333): summing them
            // would lose 1/3 ns per frame.
            w.push(&frame(1, video_ns(i), video_ns(i), 33_333_333, n == 0, b"v"))
                .unwrap();
        }
        for k in 0..15 {
            let i = first_audio + part * 15 + k;
            w.push(&frame(2, audio_ns(i), audio_ns(i), 23_219_954, true, b"a"))
                .unwrap();
        }
        w.flush_part(&mut out).unwrap().unwrap();
    }
    let moofs = moofs(&out);
    let mut expected_video_end = None;
    let mut expected_audio_end = None;
    for (part, (moof, _)) in moofs.iter().enumerate() {
        let part = part as u64;
        let tfdt = |i: usize| moof.traf[i].tfdt.as_ref().unwrap().base_media_decode_time;
        // Exact: n/30 s at 90 kHz is 3000 n, k·1024/44100 s at 44.1 kHz is 1024 k.
        assert_eq!(tfdt(0), (first_video + part * 10) * 3000);
        assert_eq!(tfdt(1), (first_audio + part * 15) * 1024);
        // Each part ends where the next begins.
        if let Some(end) = expected_video_end {
            assert_eq!(tfdt(0), end);
        }
        if let Some(end) = expected_audio_end {
            assert_eq!(tfdt(1), end);
        }
        let sum = |i: usize| -> u64 {
            moof.traf[i].trun[0]
                .samples
                .iter()
                .map(|e| u64::from(e.duration.unwrap()))
                .sum()
        };
        assert!(moof.traf[0].trun[0].samples.iter().all(|e| e.duration == Some(3000)));
        assert!(moof.traf[1].trun[0].samples.iter().all(|e| e.duration == Some(1024)));
        expected_video_end = Some(tfdt(0) + sum(0));
        expected_audio_end = Some(tfdt(1) + sum(1));
    }
}

#[test]
fn composition_offsets_are_signed() {
    let mut w = Fmp4Writer::new(&[h264_track(1)], opts()).unwrap();
    // Decode order I P B B with dts starting at pts: B frames are presented
    // before they are decoded, so their offsets are negative.
    let d = 33_333_333u64;
    let t0 = BASE_NS + 10 * d;
    let order = [(0, 0, true), (1, 3, false), (2, 1, false), (3, 2, false)];
    for (dts_i, pts_i, key) in order {
        w.push(&frame(1, t0 + dts_i * d, t0 + pts_i * d, d, key, b"x")).unwrap();
    }
    let mut out = Vec::new();
    w.flush_part(&mut out).unwrap().unwrap();
    // trun version 1 (signed offsets): the version byte after the header.
    let at = out.windows(4).position(|w| w == b"trun").unwrap();
    assert_eq!(out[at + 4], 1, "trun version");
    let (moof, _) = moofs(&out).remove(0);
    let cts: Vec<i64> = moof.traf[0].trun[0].samples.iter().map(|e| e.cts.unwrap()).collect();
    assert_eq!(cts, [0, 6000, -3000, -3000]);
}

#[test]
fn payloads_reach_a_chunks_sink_without_a_copy() {
    let mut w = Fmp4Writer::new(&[h264_track(1), aac_track(2)], opts()).unwrap();
    let frames = [
        frame(1, BASE_NS, BASE_NS, 33_333_333, true, &[1; 5000]),
        frame(2, BASE_NS, BASE_NS, 23_219_955, true, &[2; 300]),
        frame(
            1,
            BASE_NS + 33_333_333,
            BASE_NS + 33_333_333,
            33_333_333,
            false,
            &[3; 900],
        ),
    ];
    for f in &frames {
        w.push(f).unwrap();
    }
    let mut sink = Chunks::new();
    let info = w.flush_part(&mut sink).unwrap().unwrap();
    assert_eq!(sink.len(), info.bytes);
    let chunks = sink.take();
    // Header chunk, then the payloads in traf order (video, then audio),
    // each the frame's own allocation.
    assert_eq!(chunks.len(), 4);
    let payloads = [&frames[0], &frames[2], &frames[1]];
    for (chunk, f) in chunks[1..].iter().zip(payloads) {
        assert_eq!(chunk.as_ptr(), f.data.as_ptr());
        assert_eq!(chunk.len(), f.data.len());
    }
}

#[test]
fn bad_frames_are_refused_and_leave_the_writer_unchanged() {
    let mut w = Fmp4Writer::new(&[h264_track(1)], opts()).unwrap();
    let t = BASE_NS + 1_000_000_000;
    assert_eq!(
        w.push(&frame(2, t, t, 0, true, b"x")),
        Err(Fmp4Error::UnknownTrack { track: id(2) })
    );
    assert!(matches!(
        w.push(&frame(1, BASE_NS - 1, BASE_NS, 0, true, b"x")),
        Err(Fmp4Error::BeforeOrigin { which: "dts", .. })
    ));
    assert!(matches!(
        w.push(&frame(1, BASE_NS, BASE_NS - 1, 0, true, b"x")),
        Err(Fmp4Error::BeforeOrigin { which: "pts", .. })
    ));
    w.push(&frame(1, t, t, 0, true, b"x")).unwrap();
    let err = w.push(&frame(1, t - 1, t, 0, false, b"x")).unwrap_err();
    assert_eq!(
        err,
        Fmp4Error::DtsDecreased {
            track: id(1),
            dts: ts(t - 1),
            previous: ts(t),
        }
    );
    // Equal dts are allowed; dts ordering holds across parts too.
    w.push(&frame(1, t, t, 0, false, b"x")).unwrap();
    w.flush_part(&mut Vec::new()).unwrap().unwrap();
    assert!(matches!(
        w.push(&frame(1, t - 1, t, 0, false, b"x")),
        Err(Fmp4Error::DtsDecreased { .. })
    ));
    // A composition offset beyond i32 ticks (~6.6 h at 90 kHz).
    assert!(matches!(
        w.push(&frame(1, t, t + 7 * 3600 * 1_000_000_000, 0, false, b"x")),
        Err(Fmp4Error::CompositionOffset { .. })
    ));
    assert_eq!(w.buffered_frames(), 0);
}

#[test]
fn prft_gives_the_wall_clock_of_the_first_frame() {
    let mut o = opts();
    o.prft = true;
    let mut w = Fmp4Writer::new(&[aac_track(1), h264_track(2)], o).unwrap();
    let v0 = BASE_NS + 500_000_000;
    // Audio comes first in the moov, but video is the reference track.
    w.push(&frame(1, BASE_NS + 400_000_000, BASE_NS + 400_000_000, 0, true, b"a"))
        .unwrap();
    w.push(&frame(2, v0, v0 + 66_666_667, 0, true, b"v")).unwrap();
    let mut out = Vec::new();
    w.flush_part(&mut out).unwrap().unwrap();
    let kinds: Vec<[u8; 4]> = top_boxes(&out).iter().map(|b| b.0).collect();
    assert_eq!(kinds, [*b"prft", *b"moof", *b"mdat"]);
    let prft = Prft::decode(&mut &out[..]).unwrap();
    assert_eq!(prft.reference_track_id, 2);
    // media_time is the reference frame's presentation time in its clock.
    assert_eq!(prft.media_time, 45_000 + 6_000);
    let secs = (prft.ntp_timestamp >> 32) - 2_208_988_800;
    let frac = prft.ntp_timestamp & 0xFFFF_FFFF;
    let ns = secs * 1_000_000_000 + ((frac * 1_000_000_000) >> 32);
    let pts = v0 + 66_666_667;
    assert!(pts.abs_diff(ns) <= 1, "ntp {ns} vs pts {pts}");
    // The data offsets still count from the moof, not the prft.
    let (moof, start) = moofs(&out).remove(0);
    let at = start + moof.traf[1].trun[0].data_offset.unwrap() as usize;
    assert_eq!(&out[at..at + 1], b"v");
}

#[test]
fn last_frame_without_duration_lasts_as_long_as_the_one_before() {
    let mut w = Fmp4Writer::new(&[h264_track(1)], opts()).unwrap();
    let d = 40_000_000; // 25 fps: 3600 ticks
    let mut out = Vec::new();
    for i in 0..3 {
        let t = BASE_NS + i * d;
        w.push(&frame(1, t, t, 0, i == 0, b"x")).unwrap();
    }
    let info = w.flush_part(&mut out).unwrap().unwrap();
    assert_eq!(info.end, ts(BASE_NS + 3 * d));
    assert_eq!(info.duration, Duration::from_millis(120));
    // A lone frame without duration in the next part: the last known one.
    let t = BASE_NS + 3 * d;
    w.push(&frame(1, t, t, 0, false, b"x")).unwrap();
    let info = w.flush_part(&mut out).unwrap().unwrap();
    assert!(!info.independent, "starts with a non-key video frame");
    let moofs = moofs(&out);
    let durations = |m: &Moof| -> Vec<u32> { m.traf[0].trun[0].samples.iter().map(|e| e.duration.unwrap()).collect() };
    assert_eq!(durations(&moofs[0].0), [3600; 3]);
    assert_eq!(durations(&moofs[1].0), [3600]);
}

#[test]
fn init_is_all_boxes_and_decodes_as_any() {
    let w = Fmp4Writer::new(&[h264_track(1), opus_track(2)], opts()).unwrap();
    let init = w.init_segment();
    let mut cursor = &init[..];
    let mut kinds = Vec::new();
    while !cursor.is_empty() {
        kinds.push(Any::decode(&mut cursor).unwrap().kind());
    }
    assert_eq!(kinds, [b"ftyp".into(), b"moov".into()]);
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever frames come, push and flush never panic, and every part
        /// reads back as moof + mdat whose samples are the accepted frames.
        #[test]
        fn arbitrary_frames_never_panic_and_read_back(
            frames in proptest::collection::vec(
                (1u8..=3, 0u64..4_000_000_000, 0u64..200_000_000, 0u64..100_000_000, any::<bool>(), 0usize..64),
                0..60,
            ),
            flush_every in 1usize..10,
        ) {
            let mut w = Fmp4Writer::new(&[h264_track(1), aac_track(2)], opts()).unwrap();
            let mut out = Vec::new();
            let mut accepted = 0usize;
            w.begin_segment(&mut out);
            let styp_len = out.len();
            for (i, (track, dts, cts, dur, key, len)) in frames.into_iter().enumerate() {
                // Start a little before the origin so some frames are refused.
                let dts = BASE_NS - 100_000_000 + dts;
                let f = frame(track, dts, dts + cts, dur, key, &vec![7u8; len]);
                if w.push(&f).is_ok() {
                    accepted += 1;
                }
                if i % flush_every == 0 {
                    w.flush_part(&mut out).unwrap();
                }
            }
            w.flush_part(&mut out).unwrap();
            let mut samples = 0;
            for (kind, start, size) in top_boxes(&out[styp_len..]) {
                let bytes = &out[styp_len + start..styp_len + start + size];
                match &kind {
                    b"moof" => {
                        let moof = Moof::decode(&mut &bytes[..]).unwrap();
                        samples += moof.traf.iter().map(|t| t.trun[0].samples.len()).sum::<usize>();
                    }
                    b"mdat" => {}
                    other => prop_assert!(false, "unexpected box {:?}", other),
                }
            }
            prop_assert_eq!(samples, accepted);
        }
    }
}
