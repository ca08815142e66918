//! The seed corpus: small, valid PutMedia bodies in the layouts producers
//! send, written by the project's own MKV writer (the KVS SDK's layout:
//! unknown-size Segment and Clusters, SimpleBlocks, Tags after a Cluster)
//! and by hand with the EBML helpers (known sizes, BlockGroups, Void, Cues),
//! each behind the input header of the crate docs. A few hundred bytes to
//! 2 KB each, so that mutations stay cheap.

use std::time::Duration;

use bytes::Bytes;
use fragmenter::codec::g711::Law;
use fragmenter::fragment::Metadata;
use fragmenter::media::{AudioCodec, AudioTrack, SensorCodecId, SensorKind, SensorTrack, VideoTrack};
use fragmenter::mkv::ebml::{self, id};
use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
use fragmenter::{Frame, Timestamp, Track, TrackId};

use crate::{Input, ABORT, GROUP, RELATIVE, RESEND};

/// 2026-11-18T…Z in milliseconds: an ABSOLUTE producer's clock.
const BASE_MS: u64 = 1_795_000_000_000;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// An avcC around a real x264 SPS (baseline, 640×360).
fn avcc() -> Bytes {
    let sps = hex("6742c01ed900a02ff97016a0c0c0d4a0000003002000000791e2c5c9");
    let pps = hex("68ce3c80");
    let mut v = vec![1, sps[1], sps[2], sps[3], 0xff, 0xe1];
    v.extend_from_slice(&(sps.len() as u16).to_be_bytes());
    v.extend_from_slice(&sps);
    v.push(1);
    v.extend_from_slice(&(pps.len() as u16).to_be_bytes());
    v.extend_from_slice(&pps);
    v.into()
}

fn id(n: u8) -> TrackId {
    TrackId::new(n).expect("tracks 1 to 3")
}

fn video(n: u8) -> Track {
    Track::new(id(n), "video", VideoTrack::h264(avcc()).expect("a real avcC"))
}

fn aac(n: u8) -> Track {
    Track::new(
        id(n),
        "audio",
        AudioTrack::aac(Bytes::from_static(&[0x11, 0x90])).expect("AAC-LC 48 kHz stereo"),
    )
}

fn opus(n: u8) -> Track {
    let media = AudioTrack {
        codec: AudioCodec::Opus { pre_skip: 312 },
        sample_rate: 48_000,
        channels: 2,
    };
    Track::new(id(n), "opus", media)
}

fn g711(n: u8) -> Track {
    let media = AudioTrack {
        codec: AudioCodec::G711(Law::MuLaw),
        sample_rate: 8000,
        channels: 1,
    };
    Track::new(id(n), "pcmu", media)
}

fn lidar(n: u8) -> Track {
    let media = SensorTrack {
        kind: SensorKind::Lidar,
        codec_id: SensorCodecId::new("O_OUSTER/LIDAR_PACKET").expect("a sensor codec ID"),
        private: Bytes::from_static(b"{\"model\":\"OS-0-32\"}"),
    };
    Track::new(id(n), "lidar", media)
}

fn frame(track: u8, ms: u64, key: bool, tag: u8) -> Frame {
    let t = Timestamp::from_millis(ms);
    Frame {
        track: id(track),
        pts: t,
        dts: t,
        duration: Duration::from_millis(40),
        keyframe: key,
        data: Bytes::from(vec![0, 0, 0, 2, if key { 0x65 } else { 0x41 }, tag]),
    }
}

/// `fragments` fragments of `ms` milliseconds from `start` (ms), a frame
/// per track every 100 ms, metadata tags on every other fragment.
fn body(tracks: &[Track], start: u64, fragments: u64, ms: u64) -> Vec<u8> {
    let mut w = MkvWriter::new(tracks, MkvWriterOptions::default()).expect("a writer");
    let mut out = Vec::new();
    w.write_header(&mut out);
    for f in 0..fragments {
        let at = start + f * ms;
        w.start_cluster(Timestamp::from_millis(at), &mut out)
            .expect("a cluster");
        for i in 0..ms / 100 {
            for t in tracks {
                let key = i == 0 || t.id.get() != 1;
                w.write_frame(&frame(t.id.get(), at + i * 100, key, (f * 16 + i) as u8), &mut out)
                    .expect("a frame");
            }
        }
        let tags: Vec<Metadata> = if f % 2 == 1 {
            vec![Metadata {
                name: "AWS_KINESISVIDEO_FRAGMENT".into(),
                value: format!("{f}"),
            }]
        } else {
            Vec::new()
        };
        w.end_cluster(&tags, &mut out);
    }
    out
}

fn block(track: u8, rel: i16, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0x80 | track];
    b.extend_from_slice(&rel.to_be_bytes());
    b.push(flags);
    b.extend_from_slice(payload);
    b
}

/// A Matroska file as a muxer writes it: known sizes everywhere, a
/// SeekHead, BlockGroups with durations and references, Void and Cues.
fn known_sizes() -> Vec<u8> {
    let mut out = Vec::new();
    let mut header = Vec::new();
    ebml::put_uint(&mut header, id::EBML_VERSION, 1);
    ebml::put_bytes(&mut header, id::DOC_TYPE, b"webm");
    ebml::put_master(&mut out, id::EBML, &header);

    let mut segment = Vec::new();
    ebml::put_master(&mut segment, id::SEEK_HEAD, &[0xEC, 0x81, 0x00]);
    let mut info = Vec::new();
    ebml::put_uint(&mut info, id::TIMECODE_SCALE, 1_000_000);
    ebml::put_bytes(&mut info, id::TITLE, b"seed");
    ebml::put_master(&mut segment, id::INFO, &info);
    let mut entry = Vec::new();
    ebml::put_uint(&mut entry, id::TRACK_NUMBER, 1);
    ebml::put_uint(&mut entry, id::TRACK_UID, 7);
    ebml::put_uint(&mut entry, id::TRACK_TYPE, 1);
    ebml::put_bytes(&mut entry, id::CODEC_ID, b"V_MPEG4/ISO/AVC");
    ebml::put_bytes(&mut entry, id::CODEC_PRIVATE, &avcc());
    ebml::put_uint(&mut entry, id::DEFAULT_DURATION, 40_000_000);
    let mut v = Vec::new();
    ebml::put_uint(&mut v, id::PIXEL_WIDTH, 640);
    ebml::put_uint(&mut v, id::PIXEL_HEIGHT, 360);
    ebml::put_master(&mut entry, id::VIDEO, &v);
    let mut tracks = Vec::new();
    ebml::put_master(&mut tracks, id::TRACK_ENTRY, &entry);
    ebml::put_master(&mut segment, id::TRACKS, &tracks);
    for c in 0..2u64 {
        let mut cluster = Vec::new();
        ebml::put_uint(&mut cluster, id::TIMECODE, 1_000 + c * 1_000);
        let mut group = Vec::new();
        ebml::put_bytes(&mut group, id::BLOCK, &block(1, 0, 0, &[0, 0, 0, 1, 0x65]));
        ebml::put_uint(&mut group, id::BLOCK_DURATION, 40);
        ebml::put_master(&mut cluster, id::BLOCK_GROUP, &group);
        ebml::put_bytes(&mut cluster, id::VOID, &[0; 3]);
        for i in 1..5i16 {
            let mut group = Vec::new();
            ebml::put_bytes(&mut group, id::BLOCK, &block(1, i * 40, 0, &[0, 0, 0, 1, 0x41]));
            ebml::put_uint(&mut group, id::REFERENCE_BLOCK, 0xD8);
            ebml::put_master(&mut cluster, id::BLOCK_GROUP, &group);
        }
        ebml::put_bytes(&mut cluster, id::SIMPLE_BLOCK, &block(1, 200, 0, &[0, 0, 0, 1, 0x41]));
        ebml::put_master(&mut segment, id::CLUSTER, &cluster);
        let mut simple = Vec::new();
        ebml::put_bytes(&mut simple, id::TAG_NAME, b"EVENT");
        ebml::put_bytes(&mut simple, id::TAG_STRING, b"motion");
        let mut tag = Vec::new();
        ebml::put_master(&mut tag, id::TARGETS, &[]);
        ebml::put_master(&mut tag, id::SIMPLE_TAG, &simple);
        let mut tags = Vec::new();
        ebml::put_master(&mut tags, id::TAG, &tag);
        ebml::put_master(&mut segment, id::TAGS, &tags);
    }
    ebml::put_master(&mut segment, id::CUES, &[0xBB, 0x80]);
    ebml::put_master(&mut out, id::SEGMENT, &segment);
    out
}

/// Every seed: a name and the input bytes.
pub fn all() -> Vec<(&'static str, Vec<u8>)> {
    let h264 = body(&[video(1)], BASE_MS, 3, 1_000);
    // A second Segment in the same body (a producer that restarted its
    // stream): its fragments overlap the first's, which the rules refuse.
    let mut segments = h264.clone();
    segments.extend_from_slice(&body(&[video(1)], BASE_MS + 1_000, 2, 1_000));
    vec![
        ("h264", Input::encode(0, 0, &[], &h264)),
        ("h264-pieces", Input::encode(0, 0, &[1, 13, 97, 400], &h264)),
        ("h264-abort", Input::encode(ABORT, 0, &[300], &h264[..h264.len() - 40])),
        ("h264-segments", Input::encode(0, 0, &[], &segments)),
        ("h264-resend", Input::encode(RESEND, 0, &[], &h264)),
        ("h264-abort-resend", Input::encode(ABORT | RESEND, 0, &[500], &h264)),
        ("h264-group", Input::encode(GROUP, 0, &[700], &h264)),
        (
            "h264-group-abort-resend",
            Input::encode(GROUP | ABORT | RESEND, 0, &[300], &h264),
        ),
        (
            "relative",
            Input::encode(RELATIVE, 1_795_000_000, &[64], &body(&[video(1)], 0, 2, 1_000)),
        ),
        (
            "av",
            Input::encode(0, 0, &[], &body(&[video(1), aac(2), opus(3)], BASE_MS, 2, 500)),
        ),
        (
            "g711-lidar",
            Input::encode(0, 0, &[], &body(&[g711(1), lidar(2)], BASE_MS, 2, 300)),
        ),
        ("known-sizes", Input::encode(0, 0, &[], &known_sizes())),
    ]
}
