//! The sources this machine can run for real: user pipelines, the test
//! source with every audio codec, encoder fallback, key-frame requests,
//! and the errors for sources that are not there.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fragmenter::codec::g711::Law;
use fragmenter::media::{AudioCodec, TrackMedia, VideoCodec};
use fragmenter::{Frame, TrackId};
use hardware::{
    AudioCodecChoice, AudioSource, Capture, CaptureError, CaptureOptions, Platform, VideoCodecChoice, VideoSource,
};

const FRAME_TIMEOUT: Duration = Duration::from_secs(10);

use common::have;

fn frames(capture: &mut Capture, n: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        match capture.next_frame(FRAME_TIMEOUT).expect("next frame") {
            Some(f) => out.push(f),
            None => break,
        }
    }
    out
}

fn of_track(frames: &[Frame], n: u8) -> Vec<&Frame> {
    let id = TrackId::new(n).unwrap();
    frames.iter().filter(|f| f.track == id).collect()
}

fn small(audio: AudioSource) -> CaptureOptions {
    CaptureOptions {
        width: 320,
        height: 240,
        fragment_duration: Duration::from_secs(1),
        audio,
        ..CaptureOptions::default()
    }
}

#[test]
fn user_pipeline_h264_is_passed_through() {
    if !have("user_h264", &["videotestsrc", "x264enc", "h264parse", "appsink"]) {
        return;
    }
    let source: VideoSource = "pipeline:videotestsrc is-live=true ! video/x-raw,format=I420,width=352,height=288,\
                               framerate=30/1 ! x264enc tune=zerolatency key-int-max=15"
        .parse()
        .unwrap();
    let mut capture = Capture::start(&source, &small(AudioSource::None)).expect("start");
    assert_eq!(capture.encoder(), None, "passed through, not encoded again");
    assert!(capture.is_live());
    match &capture.tracks()[0].media {
        TrackMedia::Video(v) => {
            assert!(matches!(v.codec, VideoCodec::H264 { .. }));
            assert_eq!((v.width, v.height), (352, 288));
        }
        other => panic!("{other:?}"),
    }
    let got = frames(&mut capture, 40);
    assert_eq!(got.len(), 40);
    let keys: Vec<usize> = got
        .iter()
        .enumerate()
        .filter(|(_, f)| f.keyframe)
        .map(|(i, _)| i)
        .collect();
    // The user's key-int-max (15), not ours (one per 1 s fragment = 30);
    // x264 adds scene-cut key frames of its own on the test pattern.
    assert!(
        keys.len() >= 3 && keys.windows(2).all(|w| w[1] - w[0] <= 15),
        "key frames at {keys:?}"
    );
    capture.stop();
}

#[test]
fn user_pipeline_raw_video_is_encoded_and_its_audio_feeds_aac_and_opus() {
    let needed = [
        "videotestsrc",
        "audiotestsrc",
        "x264enc",
        "avenc_aac",
        "opusenc",
        "tee",
        "appsink",
    ];
    if !have("user_raw", &needed) {
        return;
    }
    // Chains end in a capsfilter: gst-launch caps shorthand needs an
    // element on both sides.
    let source: VideoSource = "pipeline:videotestsrc is-live=true \
                               ! capsfilter caps=video/x-raw,width=320,height=240,framerate=30/1  \
                               audiotestsrc is-live=true ! capsfilter caps=audio/x-raw,rate=44100,channels=1"
        .parse()
        .unwrap();
    let opts = CaptureOptions {
        audio_codecs: vec![AudioCodecChoice::Aac, AudioCodecChoice::Opus],
        ..small(AudioSource::FromSource)
    };
    let mut capture = Capture::start(&source, &opts).expect("start");
    assert_eq!(capture.encoder(), Some("x264enc"));
    let codecs: Vec<&str> = capture.tracks().iter().map(|t| t.mkv_codec_id()).collect();
    assert_eq!(codecs, ["V_MPEG4/ISO/AVC", "A_AAC", "A_OPUS"]);
    match &capture.tracks()[2].media {
        TrackMedia::Audio(a) => {
            assert_eq!(a.sample_rate, 48_000);
            assert!(
                matches!(a.codec, AudioCodec::Opus { pre_skip } if pre_skip > 0),
                "{a:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    let got = frames(&mut capture, 200);
    capture.stop();
    let (video, aac, opus) = (of_track(&got, 1), of_track(&got, 2), of_track(&got, 3));
    assert!(
        video.len() > 30 && aac.len() > 30 && opus.len() > 30,
        "{} {} {}",
        video.len(),
        aac.len(),
        opus.len()
    );
    // Both audio tracks carry the same microphone over the same time.
    let span = |f: &[&Frame]| f.last().unwrap().pts.as_nanos() as i64 - f[0].pts.as_nanos() as i64;
    assert!(
        (span(&aac) - span(&opus)).abs() < 100_000_000,
        "{} vs {}",
        span(&aac),
        span(&opus)
    );
}

#[test]
fn test_tone_in_g711() {
    if !have(
        "g711",
        &["videotestsrc", "x264enc", "audiotestsrc", "mulawenc", "appsink"],
    ) {
        return;
    }
    let opts = CaptureOptions {
        audio_codecs: vec![AudioCodecChoice::Mulaw],
        ..small(AudioSource::Test)
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    match &capture.tracks()[1].media {
        TrackMedia::Audio(a) => {
            assert_eq!(a.codec, AudioCodec::G711(Law::MuLaw));
            assert_eq!((a.sample_rate, a.channels), (8000, 1));
        }
        other => panic!("{other:?}"),
    }
    let got = frames(&mut capture, 60);
    capture.stop();
    let audio = of_track(&got, 2);
    assert!(!audio.is_empty());
    // One byte per sample at 8 kHz: durations match sizes.
    for f in audio {
        let samples = f.duration.as_nanos() * 8000 / 1_000_000_000;
        assert!(
            (samples as i64 - f.data.len() as i64).abs() <= 1,
            "{} bytes for {:?}",
            f.data.len(),
            f.duration
        );
    }
}

#[test]
fn h265_test_source() {
    if !have("h265", &["videotestsrc", "x265enc", "h265parse", "appsink"]) {
        return;
    }
    let opts = CaptureOptions {
        video_codec: VideoCodecChoice::H265,
        ..small(AudioSource::None)
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    assert_eq!(capture.encoder(), Some("x265enc"));
    assert_eq!(capture.tracks()[0].mkv_codec_id(), "V_MPEGH/ISO/HEVC");
    let got = frames(&mut capture, 35);
    capture.stop();
    assert!(got[0].keyframe && got[30].keyframe && !got[15].keyframe);
}

#[test]
fn a_hardware_encoder_that_fails_to_start_falls_back_to_x264() {
    if !have("fallback", &["videotestsrc", "x264enc", "appsink"]) {
        return;
    }
    // The platform claims VA-API (a render node and vah264enc), as a
    // machine whose driver is broken would: the pipeline cannot be built
    // with it, and capture moves on to the next encoder.
    let mut platform = Platform::probe_quick();
    platform.elements.insert("vah264enc".to_owned());
    platform.elements.insert("vapostproc".to_owned());
    platform.devices.insert(PathBuf::from("/dev/dri/renderD128"));
    let opts = small(AudioSource::None);
    let plan = hardware::plan(&VideoSource::Test, &opts, &platform).unwrap();
    assert_eq!(plan.encoder_element(VideoCodecChoice::H264), Some("vah264enc"));
    let mut capture = Capture::start_on(&VideoSource::Test, &opts, &platform).expect("falls back");
    assert_eq!(capture.encoder(), Some("x264enc"));
    assert_eq!(frames(&mut capture, 5).len(), 5);
    capture.stop();
}

#[test]
fn a_key_frame_request_gets_one_well_before_the_interval() {
    if !have("key_frame", &["videotestsrc", "x264enc", "appsink"]) {
        return;
    }
    // Key frames every 10 s unless asked.
    let opts = CaptureOptions {
        fragment_duration: Duration::from_secs(10),
        ..small(AudioSource::None)
    };
    let mut capture = Capture::start(&VideoSource::Test, &opts).expect("start");
    let requester = capture.key_frame_requester();
    let first = frames(&mut capture, 20);
    assert!(first[0].keyframe && first[1..].iter().all(|f| !f.keyframe));
    let asked = Instant::now();
    // From another thread, as a WebRTC viewer would.
    let handled = std::thread::spawn(move || requester.request()).join().unwrap();
    assert!(handled, "x264enc takes force-key-unit");
    let after = frames(&mut capture, 30);
    let at = after
        .iter()
        .position(|f| f.keyframe)
        .expect("a key frame within a second");
    eprintln!("key frame {at} frames ({:?}) after the request", asked.elapsed());
    assert!(at <= 10, "key frame only {at} frames after the request");
    capture.stop();
}

#[test]
fn sources_that_are_not_there_name_the_field_and_value() {
    if !have("missing", &["v4l2src", "alsasrc", "videotestsrc"]) {
        return;
    }
    let opts = small(AudioSource::None);
    let err = Capture::start(&"v4l2:/dev/video99".parse().unwrap(), &opts).unwrap_err();
    assert!(
        matches!(&err, CaptureError::MissingDevice { field: "video", value, .. } if value == "v4l2:/dev/video99"),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("video = \"v4l2:/dev/video99\": /dev/video99 does not exist"),
        "{err}"
    );

    let platform = Platform::probe_quick();
    if platform.sound_card("7").is_none() {
        let opts = small(AudioSource::Alsa("hw:7".to_owned()));
        let err = Capture::start(&VideoSource::Test, &opts).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("audio = \"alsa:hw:7\": there is no ALSA card 7"),
            "{err}"
        );
    }

    // A pipeline whose output cannot be captured.
    if have("missing_vp8", &["vp8enc"]) {
        let source: VideoSource = "pipeline:videotestsrc is-live=true ! vp8enc".parse().unwrap();
        let err = Capture::start(&source, &opts).unwrap_err();
        assert!(
            matches!(&err, CaptureError::NoCapturableVideo { offered, .. } if offered == "video/x-vp8"),
            "{err:?}"
        );
    }
    // A description GStreamer cannot parse names the description.
    let source: VideoSource = "pipeline:videotestsrc ! no_such_element".parse().unwrap();
    let err = Capture::start(&source, &opts).unwrap_err();
    assert!(err.to_string().contains("no_such_element"), "{err}");
}

#[test]
fn an_rtsp_server_that_refuses_names_the_url_and_the_reason() {
    if !have("rtsp_refused", &["rtspsrc", "rtph264depay"]) {
        return;
    }
    // A port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let source: VideoSource = format!("rtsp://user:secret@127.0.0.1:{port}/stream").parse().unwrap();
    let err = Capture::start(&source, &CaptureOptions::for_source(&source)).unwrap_err();
    let text = err.to_string();
    eprintln!("{text}");
    assert!(matches!(err, CaptureError::SourceFailed { .. }), "{err:?}");
    assert!(
        text.contains(&format!("rtsp://user:***@127.0.0.1:{port}/stream")),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}
