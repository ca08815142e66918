//! Reads back fragmented MP4 written by `Fmp4Writer` from real encoded media.
//!
//! GStreamer encodes a few seconds of H.264 (x264, with B-frames, so samples
//! carry composition offsets) and AAC (avenc_aac); the access units become
//! `Frame`s with absolute timestamps, and the writer turns them into an init
//! segment plus segments of several parts. The file is then checked by three
//! independent readers: ffprobe (streams, every packet's times, size and key
//! flag, nothing on stderr), GStreamer's qtdemux with real decoders (every
//! frame decodes, no error or warning on the bus), and the `mp4` crate (the
//! init segment's tracks). H.265 (x265, hvc1) and Opus files get the ffprobe
//! and decoder checks too.
//!
//! Each test is skipped, with the reason printed, when ffprobe or a needed
//! GStreamer element is missing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use fragmenter::fmp4::{Fmp4Options, Fmp4Writer};
use fragmenter::media::{AudioCodec, AudioTrack, Frame, Timestamp, Track, TrackId, VideoCodec, VideoTrack};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// 2026-01-01T00:00:00Z: the capture epoch of the synthetic recordings and
/// the writers' time origin.
const BASE_NS: u64 = 1_767_225_600_000_000_000;
/// Frames start this long after the time origin, so that the first frames'
/// decode times (before their presentation times with B-frames) stay after it.
const START_NS: i64 = 1_000_000_000;

const VIDEO_FRAMES: usize = 90;
/// Audio buffers fed to the AAC encoder (it drains one more at the end).
const AUDIO_FRAMES: usize = 140;

const H264_PIPELINE: &str = "videotestsrc num-buffers=90 pattern=ball \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x264enc key-int-max=30 bframes=2 speed-preset=ultrafast \
    ! video/x-h264,stream-format=avc,alignment=au,profile=main \
    ! appsink name=sink sync=false";
const AAC_PIPELINE: &str = "audiotestsrc num-buffers=140 samplesperbuffer=1024 \
    ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac ! aacparse \
    ! audio/mpeg,stream-format=raw ! appsink name=sink sync=false";
const H265_PIPELINE: &str = "videotestsrc num-buffers=40 pattern=ball \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x265enc key-int-max=20 speed-preset=ultrafast ! h265parse \
    ! video/x-h265,stream-format=hvc1,alignment=au ! appsink name=sink sync=false";
const OPUS_PIPELINE: &str = "audiotestsrc num-buffers=50 samplesperbuffer=960 \
    ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! opusenc \
    ! appsink name=sink sync=false";

/// One encoded access unit, timed in running time (ns, may be negative).
struct Unit {
    pts: i64,
    dts: i64,
    duration: u64,
    key: bool,
    data: Bytes,
}

/// A sample as the writer was given it, in its track clock, to compare
/// with what readers report.
#[derive(Clone, Debug, PartialEq)]
struct Packet {
    pts: i64,
    dts: i64,
    size: usize,
    key: bool,
}

/// Why a test cannot run here, if it cannot: GStreamer or one of
/// `elements` is missing.
fn gst_missing(elements: &[&str]) -> Option<String> {
    if let Err(e) = gst::init() {
        return Some(format!("GStreamer does not initialise: {e}"));
    }
    let missing: Vec<&str> = elements
        .iter()
        .copied()
        .filter(|e| gst::ElementFactory::find(e).is_none())
        .collect();
    (!missing.is_empty()).then(|| format!("GStreamer elements missing: {missing:?}"))
}

fn signed_ns(t: gst::Signed<gst::ClockTime>) -> i64 {
    match t {
        gst::Signed::Positive(t) => t.nseconds() as i64,
        gst::Signed::Negative(t) => -(t.nseconds() as i64),
    }
}

/// Run an encoding pipeline ending in `appsink name=sink`; return its caps
/// and the access units with running-time timestamps.
fn encode(desc: &str) -> (gst::Structure, Vec<Unit>) {
    let pipeline = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut caps = None;
    let mut units = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if caps.is_none() {
            caps = sample.caps().and_then(|c| c.structure(0)).map(|s| s.to_owned());
        }
        let buffer = sample.buffer().expect("buffer");
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .expect("time segment")
            .clone();
        let pts = buffer.pts().expect("pts");
        // Without reordering encoders may leave dts unset: it is the pts.
        let dts = buffer.dts().unwrap_or(pts);
        units.push(Unit {
            pts: signed_ns(segment.to_running_time_full(pts).expect("pts running time")),
            dts: signed_ns(segment.to_running_time_full(dts).expect("dts running time")),
            duration: buffer.duration().map_or(0, |d| d.nseconds()),
            key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: Bytes::copy_from_slice(&buffer.map_readable().unwrap()),
        });
    }
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("EOS or error");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("encoding pipeline failed: {} ({:?})", e.error(), e.debug());
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (caps.expect("no buffers"), units)
}

fn codec_data(caps: &gst::Structure) -> Bytes {
    let buf = caps.get::<gst::Buffer>("codec_data").expect("codec_data in caps");
    let map = buf.map_readable().unwrap();
    Bytes::copy_from_slice(&map)
}

/// `round((x - origin) * timescale / 1e9)`, the writer's conversion.
fn ticks(abs_ns: u64, timescale: u32) -> i64 {
    ((u128::from(abs_ns - BASE_NS) * u128::from(timescale) + 500_000_000) / 1_000_000_000) as i64
}

fn to_frame(track: TrackId, u: &Unit) -> Frame {
    let abs = |running: i64| (BASE_NS as i64 + START_NS + running) as u64;
    Frame {
        track,
        pts: Timestamp::from_nanos(abs(u.pts)),
        dts: Timestamp::from_nanos(abs(u.dts)),
        duration: Duration::from_nanos(u.duration),
        keyframe: u.key,
        data: u.data.clone(),
    }
}

fn expected(f: &Frame, timescale: u32) -> Packet {
    Packet {
        pts: ticks(f.pts.as_nanos(), timescale),
        dts: ticks(f.dts.as_nanos(), timescale),
        size: f.data.len(),
        key: f.keyframe,
    }
}

fn options() -> Fmp4Options {
    let mut opts = Fmp4Options::new(Timestamp::from_nanos(BASE_NS));
    opts.prft = true;
    opts.creation_time = Some(Timestamp::from_nanos(BASE_NS));
    opts
}

fn temp_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fmp4_readback_{name}.mp4"))
}

/// Run ffprobe on `path`: its `-of flat` output as key -> value (quotes
/// removed), or `None` (test skipped) when ffprobe is not installed. Fails
/// on any complaint on stderr.
fn ffprobe(path: &Path) -> Option<BTreeMap<String, String>> {
    let probe = match Command::new("ffprobe")
        .args(["-v", "error", "-show_streams", "-show_packets", "-of", "flat"])
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: ffprobe does not run: {e}");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&probe.stderr);
    assert!(probe.status.success(), "ffprobe failed: {stderr}");
    assert!(stderr.trim().is_empty(), "ffprobe complained: {stderr}");
    Some(
        String::from_utf8_lossy(&probe.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect(),
    )
}

/// Field `key` of stream `i` in ffprobe's flat output.
fn stream(map: &BTreeMap<String, String>, i: usize, key: &str) -> Option<String> {
    map.get(&format!("streams.stream.{i}.{key}")).cloned()
}

/// ffprobe's packets of stream `index`, in file order.
fn packets(map: &BTreeMap<String, String>, index: usize) -> Vec<Packet> {
    let mut out = Vec::new();
    for n in 0.. {
        let get = |key: &str| map.get(&format!("packets.packet.{n}.{key}"));
        let Some(stream_index) = get("stream_index") else {
            break;
        };
        if *stream_index != index.to_string() {
            continue;
        }
        let num = |key: &str| get(key).unwrap().parse::<i64>().unwrap();
        out.push(Packet {
            pts: num("pts"),
            dts: num("dts"),
            size: num("size") as usize,
            key: get("flags").unwrap().starts_with('K'),
        });
    }
    out
}

/// Play `branches` (each fed by `d.`, the qtdemux of `path`, and ending in
/// an `appsink name=sN`, N = 0, 1, …) to the end; return the presentation
/// times each sink received and every error or warning on the bus.
fn decode(path: &Path, branches: &[&str]) -> (Vec<Vec<Option<gst::ClockTime>>>, Vec<String>) {
    let mut desc = format!("filesrc location={} ! qtdemux name=d ", path.display());
    for (i, branch) in branches.iter().enumerate() {
        desc += &format!("d.{branch} ! appsink name=s{i} sync=false ");
    }
    let pipeline = gst::parse::launch(&desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sinks: Vec<gst_app::AppSink> = (0..branches.len())
        .map(|i| {
            pipeline
                .by_name(&format!("s{i}"))
                .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                .unwrap()
        })
        .collect();
    pipeline.set_state(gst::State::Playing).unwrap();
    // appsink queues without limit by default, so draining one sink at a
    // time cannot stall the other branches.
    let outputs = sinks
        .iter()
        .map(|sink| {
            std::iter::from_fn(|| sink.pull_sample().ok())
                .map(|s| s.buffer().and_then(|b| b.pts()))
                .collect()
        })
        .collect();

    let bus = pipeline.bus().unwrap();
    let mut problems = Vec::new();
    let mut note = |msg: &gst::Message| match msg.view() {
        gst::MessageView::Error(e) => problems.push(format!("error: {} ({:?})", e.error(), e.debug())),
        gst::MessageView::Warning(e) => problems.push(format!("warning: {} ({:?})", e.error(), e.debug())),
        _ => {}
    };
    if let Some(msg) = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(10),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        note(&msg);
    }
    while let Some(msg) = bus.pop() {
        note(&msg);
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (outputs, problems)
}

/// The H.264 + AAC recording, written once and shared by the tests.
struct Muxed {
    path: PathBuf,
    init: Bytes,
    video: Vec<Packet>,
    audio: Vec<Packet>,
    segments: usize,
    parts: usize,
}

fn muxed() -> Option<&'static Muxed> {
    static MUXED: OnceLock<Result<Muxed, String>> = OnceLock::new();
    let elements = [
        "videotestsrc",
        "x264enc",
        "audiotestsrc",
        "audioconvert",
        "avenc_aac",
        "aacparse",
        "appsink",
        "filesrc",
        "qtdemux",
        "queue",
        "h264parse",
        "avdec_h264",
        "avdec_aac",
    ];
    let muxed = MUXED.get_or_init(|| match gst_missing(&elements) {
        Some(reason) => Err(reason),
        None => Ok(write_muxed()),
    });
    match muxed {
        Ok(m) => Some(m),
        Err(reason) => {
            eprintln!("skipped: {reason}");
            None
        }
    }
}

fn write_muxed() -> Muxed {
    let (video_caps, video_units) = encode(H264_PIPELINE);
    let (audio_caps, audio_units) = encode(AAC_PIPELINE);
    assert_eq!(video_units.len(), VIDEO_FRAMES);
    assert!(audio_units.len() >= AUDIO_FRAMES);
    assert!(video_units.iter().any(|u| u.pts != u.dts), "expected reordered video");

    let video_id = TrackId::new(1).unwrap();
    let audio_id = TrackId::new(2).unwrap();
    let tracks = [
        Track::new(
            video_id,
            "camera",
            VideoTrack {
                codec: VideoCodec::H264 {
                    avcc: codec_data(&video_caps),
                },
                width: 320,
                height: 240,
            },
        ),
        Track::new(
            audio_id,
            "microphone",
            AudioTrack {
                codec: AudioCodec::Aac {
                    asc: codec_data(&audio_caps),
                },
                sample_rate: 48_000,
                channels: 2,
            },
        ),
    ];
    let mut writer = Fmp4Writer::new(&tracks, options()).unwrap();
    assert_eq!(writer.timescale(video_id), Some(90_000));
    assert_eq!(writer.timescale(audio_id), Some(48_000));

    let mut frames: Vec<Frame> = video_units
        .iter()
        .map(|u| to_frame(video_id, u))
        .chain(audio_units.iter().map(|u| to_frame(audio_id, u)))
        .collect();
    // Interleave by decode time as a capture pipeline delivers them; the
    // sort is stable, so each track keeps its own order.
    frames.sort_by_key(|f| f.dts);

    let mut file = writer.init_segment().to_vec();
    let (mut segments, mut parts, mut part_video) = (0, 0, 0);
    let (mut video, mut audio) = (Vec::new(), Vec::new());
    for f in &frames {
        if f.track == video_id {
            // A segment starts at each key frame; parts hold ten video frames.
            if f.keyframe || part_video == 10 {
                if let Some(info) = writer.flush_part(&mut file).unwrap() {
                    parts += 1;
                    assert!(info.frames > 0);
                }
                part_video = 0;
            }
            if f.keyframe {
                writer.begin_segment(&mut file);
                segments += 1;
            }
            part_video += 1;
            video.push(expected(f, 90_000));
        } else {
            audio.push(expected(f, 48_000));
        }
        writer.push(f).unwrap();
    }
    if writer.flush_part(&mut file).unwrap().is_some() {
        parts += 1;
    }

    let path = temp_path("h264_aac");
    std::fs::write(&path, &file).unwrap();
    Muxed {
        path,
        init: writer.init_segment(),
        video,
        audio,
        segments,
        parts,
    }
}

/// Write one track's units as a single segment of parts of `per_part`
/// frames; return the file and the packets pushed.
fn write_single(track: Track, units: &[Unit], per_part: usize, name: &str) -> (PathBuf, Vec<Packet>) {
    let id = track.id;
    let mut writer = Fmp4Writer::new(&[track], options()).unwrap();
    let timescale = writer.timescale(id).unwrap();
    let mut file = writer.init_segment().to_vec();
    writer.begin_segment(&mut file);
    let mut pushed = Vec::new();
    for chunk in units.chunks(per_part) {
        for u in chunk {
            let f = to_frame(id, u);
            writer.push(&f).unwrap();
            pushed.push(expected(&f, timescale));
        }
        writer.flush_part(&mut file).unwrap().unwrap();
    }
    let path = temp_path(name);
    std::fs::write(&path, &file).unwrap();
    (path, pushed)
}

#[test]
fn the_recording_is_cut_into_segments_of_several_parts() {
    let Some(m) = muxed() else { return };
    assert_eq!(m.segments, 3);
    assert_eq!(m.parts, 9);
}

#[test]
fn ffprobe_sees_both_streams_and_every_packet_at_its_time() {
    let Some(m) = muxed() else { return };
    let Some(map) = ffprobe(&m.path) else { return };
    assert_eq!(stream(&map, 2, "codec_name"), None, "exactly two streams");
    let (mut v_index, mut a_index) = (None, None);
    for i in 0..2 {
        match stream(&map, i, "codec_name").as_deref() {
            Some("h264") => {
                assert_eq!(stream(&map, i, "width").as_deref(), Some("320"));
                assert_eq!(stream(&map, i, "height").as_deref(), Some("240"));
                assert_eq!(stream(&map, i, "time_base").as_deref(), Some("1/90000"));
                v_index = Some(i);
            }
            Some("aac") => {
                assert_eq!(stream(&map, i, "sample_rate").as_deref(), Some("48000"));
                assert_eq!(stream(&map, i, "channels").as_deref(), Some("2"));
                assert_eq!(stream(&map, i, "time_base").as_deref(), Some("1/48000"));
                a_index = Some(i);
            }
            other => panic!("unexpected stream {i}: {other:?}"),
        }
    }
    let video = packets(&map, v_index.unwrap());
    let audio = packets(&map, a_index.unwrap());
    assert_eq!(video.len(), VIDEO_FRAMES);
    // Presentation and decode times, sizes and key flags exactly as pushed,
    // converted to the track clocks.
    assert_eq!(video, m.video);
    assert_eq!(audio, m.audio);
}

#[test]
fn gstreamer_demuxes_and_decodes_every_frame() {
    let Some(m) = muxed() else { return };
    let (outputs, problems) = decode(
        &m.path,
        &[
            "video_0 ! queue ! h264parse ! avdec_h264",
            "audio_0 ! queue ! aacparse ! avdec_aac",
        ],
    );
    assert!(problems.is_empty(), "{problems:#?}");
    let (video, audio) = (&outputs[0], &outputs[1]);
    assert_eq!(video.len(), VIDEO_FRAMES, "decoded video frames");
    assert_eq!(audio.len(), m.audio.len(), "decoded audio frames");
    // Decoded pictures come out in presentation order.
    assert!(video.iter().all(Option::is_some));
    assert!(video.windows(2).all(|p| p[0] < p[1]));
}

#[test]
fn the_mp4_crate_reads_the_init_segment() {
    let Some(m) = muxed() else { return };
    let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(&m.init[..]), m.init.len() as u64).unwrap();
    assert_eq!(reader.ftyp.major_brand, "iso6".parse().unwrap());
    let tracks = reader.tracks();
    assert_eq!(tracks.len(), 2);

    let video = &tracks[&1];
    assert_eq!(video.media_type().unwrap(), mp4::MediaType::H264);
    assert_eq!((video.width(), video.height()), (320, 240));
    assert_eq!(video.timescale(), 90_000);
    assert!(!video.sequence_parameter_set().unwrap().is_empty());

    let audio = &tracks[&2];
    assert_eq!(audio.media_type().unwrap(), mp4::MediaType::AAC);
    assert_eq!(audio.timescale(), 48_000);
    assert_eq!(audio.sample_freq_index().unwrap(), mp4::SampleFreqIndex::Freq48000);
    assert_eq!(audio.channel_config().unwrap(), mp4::ChannelConfig::Stereo);
    assert_eq!(audio.audio_profile().unwrap(), mp4::AudioObjectType::AacLowComplexity);
}

#[test]
fn hevc_in_hvc1_reads_back_and_decodes() {
    let elements = [
        "videotestsrc",
        "x265enc",
        "h265parse",
        "appsink",
        "filesrc",
        "qtdemux",
        "avdec_h265",
    ];
    if let Some(reason) = gst_missing(&elements) {
        eprintln!("skipped: {reason}");
        return;
    }
    let (caps, units) = encode(H265_PIPELINE);
    let track = Track::new(
        TrackId::new(1).unwrap(),
        "hevc",
        VideoTrack {
            codec: VideoCodec::H265 {
                hvcc: codec_data(&caps),
            },
            width: 320,
            height: 240,
        },
    );
    let (path, pushed) = write_single(track, &units, 10, "h265");

    let (outputs, problems) = decode(&path, &["video_0 ! h265parse ! avdec_h265"]);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(outputs[0].len(), units.len(), "decoded HEVC pictures");

    let Some(map) = ffprobe(&path) else { return };
    assert_eq!(stream(&map, 0, "codec_name").as_deref(), Some("hevc"));
    assert_eq!(stream(&map, 0, "codec_tag_string").as_deref(), Some("hvc1"));
    assert_eq!(stream(&map, 0, "width").as_deref(), Some("320"));
    assert_eq!(stream(&map, 0, "height").as_deref(), Some("240"));
    assert_eq!(packets(&map, 0), pushed);
}

#[test]
fn opus_reads_back_and_decodes() {
    let elements = [
        "audiotestsrc",
        "audioconvert",
        "opusenc",
        "appsink",
        "filesrc",
        "qtdemux",
        "opusdec",
    ];
    if let Some(reason) = gst_missing(&elements) {
        eprintln!("skipped: {reason}");
        return;
    }
    let (caps, units) = encode(OPUS_PIPELINE);
    // The OpusHead is the first stream header: "OpusHead", version,
    // channels, then the pre-skip (little-endian).
    let headers = caps.get::<gst::Array>("streamheader").unwrap();
    let head = headers.as_slice()[0].get::<gst::Buffer>().unwrap();
    let head = head.map_readable().unwrap();
    assert_eq!(&head[..8], b"OpusHead");
    let pre_skip = u16::from_le_bytes([head[10], head[11]]);
    let track = Track::new(
        TrackId::new(1).unwrap(),
        "opus",
        AudioTrack {
            codec: AudioCodec::Opus { pre_skip },
            sample_rate: 48_000,
            channels: 2,
        },
    );
    let (path, pushed) = write_single(track, &units, 15, "opus");

    let (outputs, problems) = decode(&path, &["audio_0 ! opusdec"]);
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(outputs[0].len(), units.len(), "decoded Opus packets");

    let Some(map) = ffprobe(&path) else { return };
    assert_eq!(stream(&map, 0, "codec_name").as_deref(), Some("opus"));
    assert_eq!(stream(&map, 0, "sample_rate").as_deref(), Some("48000"));
    assert_eq!(stream(&map, 0, "channels").as_deref(), Some("2"));
    // Times, sizes and flags exactly as pushed: the pre-skip is the
    // decoder's business (dOps), not the timeline's.
    assert_eq!(packets(&map, 0), pushed);
}
