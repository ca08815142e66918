//! Capture against real GStreamer: the test source, and files made on the
//! fly with gst-launch-1.0. Each test skips (with the reason printed) when
//! an element it needs is not installed.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fragmenter::media::{AudioCodec, TrackMedia, VideoCodec};
use fragmenter::{Frame, Timestamp, TrackId};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use hardware::{AudioSource, Capture, CaptureError, CaptureOptions, VideoSource};

const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether every element is installed; prints why a test is skipped if not.
fn have(test: &str, elements: &[&str]) -> bool {
    if !common::have(test, elements) {
        return false;
    }
    if Command::new("gst-launch-1.0").arg("--version").output().is_err() {
        eprintln!("skipping {test}: gst-launch-1.0 is not installed");
        return false;
    }
    true
}

fn aac_encoder() -> &'static str {
    if gst::ElementFactory::find("avenc_aac").is_some() {
        "avenc_aac"
    } else {
        "voaacenc"
    }
}

fn have_aac_encoder(test: &str) -> bool {
    let ok = ["avenc_aac", "voaacenc"]
        .iter()
        .any(|e| gst::ElementFactory::find(e).is_some());
    if !ok {
        eprintln!("skipping {test}: neither avenc_aac nor voaacenc is installed");
    }
    ok
}

/// Run a gst-launch-1.0 pipeline (its arguments split on spaces).
fn gst_launch(description: &str) {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(description.split_whitespace())
        .output()
        .expect("gst-launch-1.0 runs");
    assert!(
        out.status.success(),
        "gst-launch-1.0 {description}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 60 frames of 320x240 H.264 at 30 fps with 2 s of AAC, in `muxer`.
fn make_h264_aac_file(dir: &Path, name: &str, muxer: &str) -> PathBuf {
    let path = dir.join(name);
    gst_launch(&format!(
        "videotestsrc num-buffers=60 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc key-int-max=30 ! h264parse ! {muxer} name=m ! filesink location={} \
         audiotestsrc num-buffers=94 ! audio/x-raw,rate=48000,channels=2 ! audioconvert \
         ! {} ! aacparse ! m.",
        path.display(),
        aac_encoder()
    ));
    path
}

fn all_frames(capture: &mut Capture) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Some(frame) = capture.next_frame(FRAME_TIMEOUT).expect("next frame") {
        frames.push(frame);
    }
    frames
}

fn of_track(frames: &[Frame], n: u8) -> Vec<&Frame> {
    let id = TrackId::new(n).unwrap();
    frames.iter().filter(|f| f.track == id).collect()
}

fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    Timestamp::from_nanos(d.as_nanos() as u64)
}

fn assert_near_now(t: Timestamp, within: Duration) {
    let now = now();
    let off = if t > now { t - now } else { now - t };
    assert!(off <= within, "timestamp {t} is {off:?} from now ({now})");
}

fn assert_dts_increasing(frames: &[&Frame], what: &str) {
    for pair in frames.windows(2) {
        assert!(
            pair[1].dts > pair[0].dts,
            "{what}: dts went from {:?} to {:?}",
            pair[0],
            pair[1]
        );
    }
}

/// Each payload is 4-byte length-prefixed NAL units filling it exactly.
fn assert_length_prefixed(data: &[u8]) {
    let mut rest = data;
    while !rest.is_empty() {
        assert!(rest.len() >= 4, "truncated NAL length");
        let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
        assert!(n > 0 && 4 + n <= rest.len(), "NAL length {n} overruns");
        rest = &rest[4 + n..];
    }
}

#[test]
fn test_source_gives_h264_and_aac_with_keyframes_per_fragment() {
    let needed = [
        "videotestsrc",
        "x264enc",
        "h264parse",
        "audiotestsrc",
        "audioconvert",
        "aacparse",
        "appsink",
    ];
    if !have("test_source", &needed) || !have_aac_encoder("test_source") {
        return;
    }
    let opts = CaptureOptions {
        fragment_duration: Duration::from_secs(1),
        width: 320,
        height: 240,
        fps: 30,
        audio: AudioSource::Test,
        live: false,
        num_buffers: Some(95),
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    let tracks = capture.tracks().to_vec();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    assert_eq!(tracks[0].id, TrackId::new(1).unwrap());
    match &tracks[0].media {
        TrackMedia::Video(v) => {
            assert!(matches!(v.codec, VideoCodec::H264 { .. }), "{v:?}");
            assert_eq!((v.width, v.height), (320, 240));
            assert_eq!(v.nal_length_size(), 4);
        }
        other => panic!("track 1 is not video: {other:?}"),
    }
    assert_eq!(tracks[1].id, TrackId::new(2).unwrap());
    match &tracks[1].media {
        TrackMedia::Audio(a) => {
            assert!(matches!(a.codec, AudioCodec::Aac { .. }), "{a:?}");
            assert_eq!((a.sample_rate, a.channels), (48_000, 2));
        }
        other => panic!("track 2 is not audio: {other:?}"),
    }

    let frames = all_frames(&mut capture);
    // End of stream stays the end.
    assert!(capture.next_frame(FRAME_TIMEOUT).unwrap().is_none());
    let video = of_track(&frames, 1);
    let audio = of_track(&frames, 2);
    assert_eq!(video.len(), 95);
    // 95 frames at 30 fps of 1024-sample AAC at 48 kHz, give or take the
    // encoder's priming and flushing.
    assert!((140..=152).contains(&audio.len()), "{} AAC frames", audio.len());
    let keyframes: Vec<usize> = video
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(keyframes, [0, 30, 60, 90]);
    assert!(audio.iter().all(|f| f.keyframe));
    assert_dts_increasing(&video, "video");
    assert_dts_increasing(&audio, "audio");
    for f in &video {
        assert_length_prefixed(&f.data);
        let ns = f.duration.as_nanos();
        assert!((33_333_333..=33_333_334).contains(&ns), "duration {ns} ns");
        assert_eq!(f.pts, f.dts, "zerolatency has no B-frames");
    }
    // Non-live: 3 s of media made in well under that, stamped from start.
    assert_near_now(video[0].pts, Duration::from_secs(5));
    assert_near_now(video[94].pts, Duration::from_secs(5));
    let span = video[94].pts - video[0].pts;
    assert_eq!(span, Duration::from_nanos(94 * 1_000_000_000 / 30));
    capture.stop();
}

#[test]
fn live_test_source_stops_with_frames_drained_then_end() {
    let needed = ["videotestsrc", "x264enc", "h264parse", "appsink"];
    if !have("live_test_source", &needed) {
        return;
    }
    let opts = CaptureOptions {
        width: 320,
        height: 240,
        audio: AudioSource::None,
        live: true,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    assert_eq!(capture.tracks().len(), 1);
    let mut frames = Vec::new();
    while frames.len() < 10 {
        frames.push(capture.next_frame(FRAME_TIMEOUT).unwrap().expect("a frame"));
    }
    capture.stop();
    frames.extend(all_frames(&mut capture));
    assert!(capture.next_frame(FRAME_TIMEOUT).unwrap().is_none());
    assert!(frames[0].keyframe);
    let video = of_track(&frames, 1);
    assert_dts_increasing(&video, "live video");
    // Real time: stamps follow the wall clock closely.
    for f in &video {
        assert_near_now(f.pts, Duration::from_secs(2));
    }
}

/// The file's streams as qtdemux/matroskademux and the same parsers give
/// them: (keyframe, bytes) per frame, video then audio.
type Reference = (Vec<(bool, Vec<u8>)>, Vec<(bool, Vec<u8>)>);

fn reference_frames(path: &Path, demuxer: &str) -> Reference {
    let description = format!(
        "filesrc location={} ! {demuxer} name=d \
         d.video_0 ! queue ! h264parse ! video/x-h264,stream-format=avc,alignment=au \
         ! appsink name=v sync=false wait-on-eos=false \
         d.audio_0 ! queue ! aacparse ! audio/mpeg,stream-format=raw \
         ! appsink name=a sync=false wait-on-eos=false",
        path.display()
    );
    let pipeline = gst::parse::launch(&description)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    let sink = |name| pipeline.by_name(name).unwrap().downcast::<gst_app::AppSink>().unwrap();
    let (v, a) = (sink("v"), sink("a"));
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let msg = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(10),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("reference pipeline finishes");
    assert!(matches!(msg.view(), gst::MessageView::Eos(_)), "{msg:?}");
    let drain = |sink: &gst_app::AppSink| {
        let mut out = Vec::new();
        while let Some(s) = sink.try_pull_sample(gst::ClockTime::ZERO) {
            let b = s.buffer().unwrap();
            let key = !b.flags().contains(gst::BufferFlags::DELTA_UNIT);
            out.push((key, b.map_readable().unwrap().to_vec()));
        }
        out
    };
    let out = (drain(&v), drain(&a));
    pipeline.set_state(gst::State::Null).unwrap();
    out
}

/// `dts_known`: the container stores decode times (MP4 does; Matroska only
/// presentation times, so reordered video comes out with dts = pts).
fn check_file_matches_reference(name: &str, muxer: &str, demuxer: &str, dts_known: bool) {
    let needed = [
        "videotestsrc",
        "x264enc",
        "h264parse",
        "audiotestsrc",
        "audioconvert",
        "aacparse",
        muxer,
        demuxer,
        "filesrc",
        "parsebin",
        "appsink",
    ];
    if !have(name, &needed) || !have_aac_encoder(name) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_h264_aac_file(dir.path(), name, muxer);
    let source = VideoSource::File(path.clone());
    let mut capture = Capture::start(&source, &CaptureOptions::for_source(&source)).expect("start");
    let tracks = capture.tracks().to_vec();
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    assert!(matches!(&tracks[0].media, TrackMedia::Video(v) if (v.width, v.height) == (320, 240)));
    assert!(matches!(&tracks[1].media, TrackMedia::Audio(a) if (a.sample_rate, a.channels) == (48_000, 2)));
    let frames = all_frames(&mut capture);
    capture.stop();
    let video = of_track(&frames, 1);
    let audio = of_track(&frames, 2);
    assert_eq!(video.len(), 60);
    if dts_known {
        assert_dts_increasing(&video, "file video");
    }
    assert_dts_increasing(&audio, "file audio");
    assert_near_now(video[0].dts, Duration::from_secs(5));

    let (ref_video, ref_audio) = reference_frames(&path, demuxer);
    let got =
        |frames: &[&Frame]| -> Vec<(bool, Vec<u8>)> { frames.iter().map(|f| (f.keyframe, f.data.to_vec())).collect() };
    let (got_video, got_audio) = (got(&video), got(&audio));
    assert_eq!(got_video.len(), ref_video.len());
    assert_eq!(got_audio.len(), ref_audio.len());
    let keys = |v: &[(bool, Vec<u8>)]| v.iter().map(|(k, _)| *k).collect::<Vec<_>>();
    assert_eq!(keys(&got_video), keys(&ref_video));
    for (i, (g, r)) in got_video.iter().zip(&ref_video).enumerate() {
        if g != r {
            let head = |v: &[u8]| {
                let mut nals = Vec::new();
                let mut rest = v;
                while rest.len() >= 5 {
                    let n = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
                    nals.push((rest[4] & 0x1f, n));
                    rest = &rest[(4 + n).min(rest.len())..];
                }
                nals
            };
            panic!(
                "video frame {i} differs from {demuxer}'s: {} bytes {:02x?} vs {} bytes {:02x?}",
                g.1.len(),
                head(&g.1),
                r.1.len(),
                head(&r.1)
            );
        }
    }
    assert!(got_audio == ref_audio, "audio payloads differ from {demuxer}'s");
    assert_eq!(keys(&got_video).iter().filter(|k| **k).count(), 2);
}

#[test]
fn mp4_file_passes_through_as_qtdemux_gives_it() {
    check_file_matches_reference("clip.mp4", "mp4mux", "qtdemux", true);
}

#[test]
fn matroska_file_passes_through_as_matroskademux_gives_it() {
    check_file_matches_reference("clip.mkv", "matroskamux", "matroskademux", false);
}

#[test]
fn file_audio_can_be_left_out() {
    let needed = [
        "videotestsrc",
        "x264enc",
        "h264parse",
        "audiotestsrc",
        "audioconvert",
        "aacparse",
        "matroskamux",
        "filesrc",
        "parsebin",
        "appsink",
    ];
    if !have("no_audio", &needed) || !have_aac_encoder("no_audio") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = make_h264_aac_file(dir.path(), "clip.mkv", "matroskamux");
    let opts = CaptureOptions {
        audio: AudioSource::None,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&VideoSource::File(path), &opts).expect("start");
    assert_eq!(capture.tracks().len(), 1);
    let frames = all_frames(&mut capture);
    assert_eq!(frames.len(), 60);
    assert!(frames.iter().all(|f| f.track == TrackId::new(1).unwrap()));
}

#[test]
fn vp8_webm_is_an_unsupported_codec() {
    let needed = ["videotestsrc", "vp8enc", "webmmux", "filesrc", "parsebin"];
    if !have("vp8_webm", &needed) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.webm");
    gst_launch(&format!(
        "videotestsrc num-buffers=10 ! video/x-raw,width=160,height=120 ! vp8enc ! webmmux ! filesink location={}",
        path.display()
    ));
    let err = Capture::start(&VideoSource::File(path.clone()), &CaptureOptions::default()).expect_err("VP8 is refused");
    eprintln!("{err}");
    match &err {
        CaptureError::UnsupportedCodec { path: p, caps } => {
            assert_eq!(p, &path);
            assert_eq!(caps, "video/x-vp8");
        }
        other => panic!("expected UnsupportedCodec, got {other:?}"),
    }
    assert!(err.to_string().contains("video/x-vp8"), "{err}");
}

#[test]
fn audio_only_file_has_no_video() {
    let needed = [
        "audiotestsrc",
        "audioconvert",
        "aacparse",
        "mp4mux",
        "filesrc",
        "parsebin",
    ];
    if !have("audio_only", &needed) || !have_aac_encoder("audio_only") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tone.m4a");
    gst_launch(&format!(
        "audiotestsrc num-buffers=20 ! audioconvert ! {} ! aacparse ! mp4mux ! filesink location={}",
        aac_encoder(),
        path.display()
    ));
    let err = Capture::start(&VideoSource::File(path.clone()), &CaptureOptions::default()).expect_err("no video");
    assert!(
        matches!(&err, CaptureError::NoVideo { path: p } if *p == path),
        "{err:?}"
    );
}

#[test]
fn missing_file_is_named_before_any_pipeline() {
    let path = PathBuf::from("/nonexistent/edge-agent/clip.mp4");
    let err = Capture::start(&VideoSource::File(path.clone()), &CaptureOptions::default()).expect_err("missing file");
    eprintln!("{err}");
    assert!(
        matches!(&err, CaptureError::FileUnreadable { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("/nonexistent/edge-agent/clip.mp4"), "{err}");
}

#[test]
fn garbage_file_names_the_path_and_gstreamers_reason() {
    if !have("garbage", &["filesrc", "parsebin"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("garbage.mp4");
    // xorshift64: no typefinder recognises white noise.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect();
    std::fs::write(&path, noise).unwrap();
    let err = Capture::start(&VideoSource::File(path.clone()), &CaptureOptions::default()).expect_err("garbage");
    eprintln!("{err}");
    match &err {
        CaptureError::Unplayable { path: p, message, .. } => {
            assert_eq!(p, &path);
            assert!(!message.is_empty());
        }
        other => panic!("expected Unplayable, got {other:?}"),
    }
}

#[test]
fn unknown_source_kind_is_refused_by_name() {
    let err = "foo:bar".parse::<VideoSource>().unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"unknown source kind "foo" in "foo:bar": expected test, v4l2:/dev/videoN, libcamera, argus:N, rtsp://…, file:PATH, pipeline:DESC"#
    );
}

#[test]
fn bad_options_name_the_field_and_value() {
    let opts = CaptureOptions {
        width: 321,
        ..CaptureOptions::default()
    };
    let err = Capture::start(&VideoSource::Test, &opts).unwrap_err();
    assert!(
        matches!(err, CaptureError::InvalidOption { field: "width", ref value, .. } if value == "321"),
        "{err:?}"
    );
}

#[test]
fn stopping_a_file_midway_is_prompt() {
    let needed = ["videotestsrc", "x264enc", "h264parse", "mp4mux", "filesrc", "parsebin"];
    if !have("file_stop", &needed) {
        return;
    }
    // Longer than the frame channel holds, so the file is still being read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("long.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=1500 ! video/x-raw,format=I420,width=64,height=48,framerate=30/1 \
         ! x264enc speed-preset=ultrafast ! h264parse ! mp4mux ! filesink location={}",
        path.display()
    ));
    let source = VideoSource::File(path);
    let mut capture = Capture::start(&source, &CaptureOptions::for_source(&source)).expect("start");
    for _ in 0..5 {
        capture.next_frame(FRAME_TIMEOUT).unwrap().expect("a frame");
    }
    let t = std::time::Instant::now();
    capture.stop();
    let took = t.elapsed();
    // What was left is still delivered, then the end.
    let rest = all_frames(&mut capture);
    eprintln!("stop took {took:?}, {} frames after stop", rest.len());
    assert!(took < Duration::from_secs(3), "stop took {took:?}");
    assert!(rest.len() < 1500, "{} frames after stop", rest.len());
}

#[test]
fn dropping_a_capture_with_a_full_channel_does_not_hang() {
    let needed = ["videotestsrc", "x264enc", "h264parse", "appsink"];
    if !have("drop_busy", &needed) {
        return;
    }
    let opts = CaptureOptions {
        width: 160,
        height: 120,
        audio: AudioSource::None,
        live: false,
        ..CaptureOptions::default()
    };
    let capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    // Non-live and unread: the channel fills and the encoder thread blocks.
    std::thread::sleep(Duration::from_millis(1500));
    let t = std::time::Instant::now();
    drop(capture);
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
}

#[test]
fn a_live_source_with_no_frame_in_time_is_stalled() {
    let needed = ["videotestsrc", "x264enc", "h264parse", "appsink"];
    if !have("stalled", &needed) {
        return;
    }
    let opts = CaptureOptions {
        width: 160,
        height: 120,
        fps: 5,
        audio: AudioSource::None,
        live: true,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    // At 5 fps a 1 ms wait soon finds the channel empty.
    let stalled = (0..50).find_map(|_| match capture.next_frame(Duration::from_millis(1)) {
        Err(e @ CaptureError::Stalled { .. }) => Some(e),
        Ok(Some(_)) => None,
        other => panic!("unexpected {other:?}"),
    });
    let err = stalled.expect("a stall within 50 frames at 5 fps");
    assert!(err.to_string().contains("test"), "{err}");
    // A stall is not fatal: frames keep coming.
    assert!(capture.next_frame(FRAME_TIMEOUT).unwrap().is_some());
}

#[test]
fn h265_mp4_gives_an_h265_track() {
    let needed = ["videotestsrc", "x265enc", "h265parse", "mp4mux", "filesrc", "parsebin"];
    if !have("h265", &needed) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mp4");
    gst_launch(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x265enc ! h265parse ! mp4mux ! filesink location={}",
        path.display()
    ));
    let source = VideoSource::File(path);
    let mut capture = Capture::start(&source, &CaptureOptions::for_source(&source)).expect("start");
    match &capture.tracks()[0].media {
        TrackMedia::Video(v) => {
            assert!(matches!(v.codec, VideoCodec::H265 { .. }), "{v:?}");
            assert_eq!((v.width, v.height), (320, 240));
        }
        other => panic!("track 1 is not video: {other:?}"),
    }
    let frames = all_frames(&mut capture);
    assert_eq!(frames.len(), 30);
    assert!(frames[0].keyframe);
    frames.iter().for_each(|f| assert_length_prefixed(&f.data));
}

#[test]
fn opus_audio_in_a_file_is_refused_unless_audio_is_off() {
    let needed = [
        "videotestsrc",
        "x264enc",
        "h264parse",
        "audiotestsrc",
        "opusenc",
        "matroskamux",
        "filesrc",
        "parsebin",
    ];
    if !have("opus_audio", &needed) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("clip.mkv");
    gst_launch(&format!(
        "videotestsrc num-buffers=30 ! video/x-raw,format=I420,width=160,height=120,framerate=30/1 \
         ! x264enc ! h264parse ! matroskamux name=m ! filesink location={} \
         audiotestsrc num-buffers=20 ! audioconvert ! opusenc ! m.",
        path.display()
    ));
    let source = VideoSource::File(path.clone());
    let err = Capture::start(&source, &CaptureOptions::for_source(&source)).expect_err("Opus is not passed through");
    assert!(
        matches!(&err, CaptureError::UnsupportedCodec { path: p, caps } if *p == path && caps == "audio/x-opus"),
        "{err:?}"
    );
    let opts = CaptureOptions {
        audio: AudioSource::None,
        ..CaptureOptions::default()
    };
    let mut capture = Capture::start(&source, &opts).expect("video alone");
    assert_eq!(all_frames(&mut capture).len(), 30);
}
