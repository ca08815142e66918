use std::time::Duration;

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::fragment::{FragmentEvent, FragmentPolicy, Fragmenter};
use crate::sink::Chunks;
use crate::test_support::{self, Audio, Shape};

/// Fragment a shape and write it as Matroska; return the bytes and the
/// fragmenter's events (what the writer was given).
fn write(shape: &Shape) -> (Vec<u8>, Vec<FragmentEvent>) {
    let tracks = shape.tracks();
    let mut fr = Fragmenter::new(&tracks, FragmentPolicy::default()).unwrap();
    let mut events = Vec::new();
    for f in shape.frames() {
        fr.push(f, &mut events).unwrap();
    }
    fr.add_metadata("site", "roof", true).unwrap();
    fr.finish(&mut events);
    let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default()).unwrap();
    let mut sink = Chunks::new();
    w.write_header(&mut sink);
    for e in &events {
        w.write_event(e, &mut sink).unwrap();
    }
    (sink.to_vec(), events)
}

fn read_in_chunks(data: &[u8], sizes: &[usize]) -> Vec<MkvEvent> {
    let mut r = MkvReader::default();
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let n = sizes[i % sizes.len()].clamp(1, data.len() - pos);
        i += 1;
        r.feed(&data[pos..pos + n]);
        pos += n;
        while let Some(e) = r.next_event().unwrap() {
            out.push(e);
        }
    }
    r.finish();
    while let Some(e) = r.next_event().unwrap() {
        out.push(e);
    }
    out
}

/// The reader's view of what the writer was given.
fn expected(events: &[FragmentEvent]) -> Vec<MkvEvent> {
    let ms = |t: crate::Timestamp| t.as_nanos() / 1_000_000;
    let mut out = Vec::new();
    for e in events {
        match e {
            FragmentEvent::Start { start, .. } => out.push(MkvEvent::ClusterStart {
                timecode: ms(*start),
                offset: 0,
            }),
            FragmentEvent::Frame(f) => out.push(MkvEvent::Block(Block {
                track: f.track.get().into(),
                timecode: ms(f.pts) as i64,
                keyframe: f.keyframe,
                duration: None,
                data: f.data.clone(),
            })),
            FragmentEvent::End(s) => {
                out.push(MkvEvent::ClusterEnd);
                if !s.metadata.is_empty() {
                    out.push(MkvEvent::Tags(s.metadata.clone()));
                }
            }
        }
    }
    out
}

fn without_offsets(events: Vec<MkvEvent>) -> Vec<MkvEvent> {
    events
        .into_iter()
        .filter(|e| !matches!(e, MkvEvent::Header(_)))
        .map(|e| match e {
            MkvEvent::ClusterStart { timecode, .. } => MkvEvent::ClusterStart { timecode, offset: 0 },
            e => e,
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn any_chunking_reads_back_exactly_the_frames_written(
        seed: u64,
        bframes: bool,
        sensor in any::<bool>(),
        sizes in prop::collection::vec(1usize..5000, 1..20),
    ) {
        let shape = Shape {
            video: !sensor,
            fps: 30,
            gop: 30,
            bframes,
            audio: Audio::Present,
            sensor,
            jitter_frac: 0.5,
            seconds: 5,
            seed,
            ms_aligned: true,
        };
        let (bytes, events) = write(&shape);
        let got = read_in_chunks(&bytes, &sizes);
        let MkvEvent::Header(h) = &got[0] else { panic!("first event {:?}", got[0]) };
        prop_assert_eq!(h.timecode_scale, 1_000_000);
        prop_assert_eq!(h.tracks.len(), shape.tracks().len());
        prop_assert_eq!(without_offsets(got), expected(&events));
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_reader(data in prop::collection::vec(any::<u8>(), 0..4000), split in 1usize..100) {
        let mut r = MkvReader::default();
        for c in data.chunks(split) {
            r.feed(c);
            while let Ok(Some(_)) = r.next_event() {}
        }
        r.finish();
        while let Ok(Some(_)) = r.next_event() {}
    }

    #[test]
    fn corrupting_a_valid_stream_never_panics_the_reader(seed: u64, flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let shape = Shape { video: true, fps: 30, gop: 30, bframes: false, audio: Audio::Present, sensor: false, jitter_frac: 0.0, seconds: 3, seed, ms_aligned: true };
        let (mut bytes, _) = write(&shape);
        for (i, b) in flips {
            let i = i.index(bytes.len());
            bytes[i] = b;
        }
        let mut r = MkvReader::default();
        r.feed(&bytes);
        r.finish();
        while let Ok(Some(_)) = r.next_event() {}
    }
}

#[test]
fn header_declares_codecs_sizes_and_the_kvs_timecode_scale() {
    let tracks = vec![
        test_support::video_track(),
        test_support::g711_track(2),
        test_support::sensor_track(3),
    ];
    let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default()).unwrap();
    let mut out = Vec::new();
    w.write_header(&mut out);
    // EBML header first, then a Segment of unknown size.
    assert_eq!(&out[..4], &[0x1A, 0x45, 0xDF, 0xA3]);
    let seg = out.windows(5).position(|w| w == [0x18, 0x53, 0x80, 0x67, 0xFF]);
    assert!(seg.is_some());
    let mut r = MkvReader::default();
    r.feed(&out);
    let Some(MkvEvent::Header(h)) = r.next_event().unwrap() else {
        panic!()
    };
    assert_eq!(h.tracks[0].codec_id, "V_MPEG4/ISO/AVC");
    assert_eq!(h.tracks[0].video, Some((640, 360)));
    assert_eq!(h.tracks[1].codec_id, "A_MS/ACM");
    assert_eq!(h.tracks[1].codec_private.len(), 18);
    assert_eq!(h.tracks[1].audio, Some((8000.0, 1)));
    assert_eq!(h.tracks[2].codec_id, "O_OUSTER/LIDAR_PACKET");
    assert_eq!(h.tracks[2].track_type, 3);
    assert_eq!(&h.tracks[2].codec_private[..], b"{\"model\":\"test\"}");
}

#[test]
fn simple_blocks_use_the_sdk_layout_and_reference_the_payload() {
    let tracks = vec![test_support::video_track()];
    let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default()).unwrap();
    let mut sink = Chunks::new();
    w.write_header(&mut sink);
    let t0 = crate::Timestamp::from_millis(1_795_651_200_000);
    w.start_cluster(t0, &mut sink).unwrap();
    let payload = Bytes::from(vec![7u8; 1000]);
    let frame = crate::Frame {
        track: crate::TrackId::new(1).unwrap(),
        pts: t0 + Duration::from_millis(33),
        dts: t0 + Duration::from_millis(33),
        duration: Duration::ZERO,
        keyframe: true,
        data: payload.clone(),
    };
    let before = sink.take();
    assert!(!before.is_empty());
    w.write_frame(&frame, &mut sink).unwrap();
    let parts = sink.take();
    assert_eq!(parts.len(), 2);
    // A3, 8-byte size, track 0x81, +33 ms, key frame flag.
    assert_eq!(
        &parts[0][..],
        &[0xA3, 0x01, 0, 0, 0, 0, 0, 0x03, 0xEC, 0x81, 0x00, 0x21, 0x80]
    );
    assert_eq!(parts[1].as_ptr(), payload.as_ptr(), "payload was copied");
    // A block more than 32.767 s after its cluster cannot be written.
    let mut far = frame.clone();
    far.pts = t0 + Duration::from_secs(40);
    assert!(matches!(
        w.write_frame(&far, &mut sink),
        Err(MkvError::BlockTimecode { .. })
    ));
}

#[test]
fn unknown_size_cluster_ends_at_tags_and_new_segment() {
    let shape = Shape {
        video: true,
        fps: 30,
        gop: 30,
        bframes: false,
        audio: Audio::None,
        sensor: false,
        jitter_frac: 0.0,
        seconds: 3,
        seed: 1,
        ms_aligned: true,
    };
    let (one, _) = write(&shape);
    // Two PutMedia bodies back to back: a producer reconnecting mid-stream.
    let mut two = one.clone();
    two.extend_from_slice(&one);
    let events = read_in_chunks(&two, &[777]);
    let headers = events.iter().filter(|e| matches!(e, MkvEvent::Header(_))).count();
    let starts = events
        .iter()
        .filter(|e| matches!(e, MkvEvent::ClusterStart { .. }))
        .count();
    let ends = events.iter().filter(|e| matches!(e, MkvEvent::ClusterEnd)).count();
    assert_eq!(headers, 2);
    assert_eq!(starts, ends);
    assert_eq!(starts, 4);
}

#[test]
fn truncated_input_is_an_error_naming_the_offset() {
    let shape = Shape {
        video: true,
        fps: 30,
        gop: 30,
        bframes: false,
        audio: Audio::None,
        sensor: false,
        jitter_frac: 0.0,
        seconds: 1,
        seed: 1,
        ms_aligned: true,
    };
    let (bytes, _) = write(&shape);
    let mut r = MkvReader::default();
    r.feed(&bytes[..bytes.len() - 10]);
    r.finish();
    let err = loop {
        match r.next_event() {
            Ok(Some(_)) => {}
            Ok(None) => panic!("no error"),
            Err(e) => break e,
        }
    };
    assert!(
        err.to_string().contains("input ended inside an element at byte"),
        "{err}"
    );
}

#[test]
fn garbage_is_refused_at_the_top_level() {
    let mut r = MkvReader::default();
    r.feed(b"GET / HTTP/1.1\r\n");
    let err = r.next_event().unwrap_err();
    assert!(err.to_string().contains("not allowed in the top level"), "{err}");
}

/// A file as a muxer writes it: known sizes everywhere, one Cluster at
/// `timecode` with one block.
fn known_size_file(timecode: u64) -> Vec<u8> {
    use super::ebml::{self, id};
    let mut out = Vec::new();
    let mut header = Vec::new();
    ebml::put_bytes(&mut header, id::DOC_TYPE, b"matroska");
    ebml::put_master(&mut out, id::EBML, &header);
    let mut segment = Vec::new();
    let mut info = Vec::new();
    ebml::put_uint(&mut info, id::TIMECODE_SCALE, 1_000_000);
    ebml::put_master(&mut segment, id::INFO, &info);
    let mut entry = Vec::new();
    ebml::put_uint(&mut entry, id::TRACK_NUMBER, 1);
    ebml::put_bytes(&mut entry, id::CODEC_ID, b"V_MPEG4/ISO/AVC");
    let mut tracks = Vec::new();
    ebml::put_master(&mut tracks, id::TRACK_ENTRY, &entry);
    ebml::put_master(&mut segment, id::TRACKS, &tracks);
    let mut cluster = Vec::new();
    ebml::put_uint(&mut cluster, id::TIMECODE, timecode);
    ebml::put_bytes(&mut cluster, id::SIMPLE_BLOCK, &[0x81, 0, 0, 0x80, 1, 2, 3]);
    ebml::put_master(&mut segment, id::CLUSTER, &cluster);
    ebml::put_master(&mut out, id::SEGMENT, &segment);
    out
}

/// Found by the mkv_reader fuzz target: the end of a known-size Segment
/// made `next_event` answer `Ok(None)` ("need more input") with input left,
/// so a body whose last piece held the end of one Segment and another
/// Segment lost the second one at `finish`; in smaller pieces it was read.
#[test]
fn what_follows_a_known_size_segment_is_read_whatever_the_pieces() {
    let mut two = known_size_file(1_000);
    two.extend_from_slice(&known_size_file(2_000));
    let mut r = MkvReader::default();
    r.feed(&two);
    r.finish();
    let events: Vec<MkvEvent> = std::iter::from_fn(|| r.next_event().unwrap()).collect();
    let starts: Vec<u64> = events
        .iter()
        .filter_map(|e| match e {
            MkvEvent::ClusterStart { timecode, .. } => Some(*timecode),
            _ => None,
        })
        .collect();
    assert_eq!(starts, [1_000, 2_000], "{events:?}");
    assert_eq!(r.position(), two.len() as u64);
    assert_eq!(without_offsets(events), without_offsets(read_in_chunks(&two, &[5])));
}

/// Found by the mkv_reader fuzz target: a block's timecode (Cluster
/// Timecode plus its offset) overflowed int64, a panic in debug builds and
/// a negative time in release builds.
#[test]
fn a_block_timecode_past_int64_is_refused() {
    let read = |data: &[u8]| {
        let mut r = MkvReader::default();
        r.feed(data);
        r.finish();
        std::iter::from_fn(|| r.next_event().transpose()).collect::<Result<Vec<_>, _>>()
    };
    let last = read(&known_size_file(i64::MAX as u64)).unwrap();
    assert!(last
        .iter()
        .any(|e| matches!(e, MkvEvent::Block(b) if b.timecode == i64::MAX)));
    let beyond = read(&known_size_file(1 << 63));
    assert!(matches!(beyond, Err(MkvError::BadValue { .. })), "{beyond:?}");
    // i64::MAX plus a block offset of 1.
    let mut data = known_size_file(i64::MAX as u64);
    let at = data.windows(4).position(|w| w == [0x81, 0, 0, 0x80]).unwrap();
    data[at + 2] = 1;
    let over = read(&data);
    assert!(matches!(over, Err(MkvError::BadValue { .. })), "{over:?}");
}
