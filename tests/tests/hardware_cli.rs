//! `edge-agent probe` and the capture sources from the command line: what
//! a user sees on a machine without cameras, user pipelines, and the one
//! line that names a bad source.

use std::path::Path;

use edge_agent_tests::*;

#[test]
fn probe_json_reports_a_working_x264_and_exits_0() {
    let o = run_agent(&["probe", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).expect("probe --json prints JSON");
    assert!(
        json["board"]["profile"].is_string() && json["board"]["model"].is_string(),
        "{json}"
    );
    assert!(json["cpu"]["cores"].as_u64().unwrap() >= 1, "{json}");
    assert!(json["memory_mb"].as_u64().unwrap() > 0, "{json}");
    let encoders = json["encoders"].as_array().unwrap();
    let x264 = encoders
        .iter()
        .find(|e| e["name"] == "x264enc")
        .expect("x264enc is listed");
    if have_gst_element("x264enc") {
        assert_eq!(x264["present"], true);
        assert_eq!(x264["works"], true, "{x264}");
        assert_eq!(x264["codec"], "H.264");
        assert_eq!(x264["hardware"], false);
    }
    for e in encoders {
        // Everything listed says whether it is there and works.
        assert!(e["present"].is_boolean() && e["works"].is_boolean(), "{e}");
        if e["works"] == true {
            assert_eq!(e["present"], true, "{e}");
        }
    }
    let no_video_nodes = std::fs::read_dir("/dev")
        .map(|d| {
            !d.flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("video"))
        })
        .unwrap_or(true);
    let config = json["suggested_config"].as_str().unwrap();
    assert!(config.contains("[[streams]]"), "{config}");
    if no_video_nodes && !json["board"]["profile"].as_str().unwrap().starts_with("jetson") {
        assert_eq!(json["cameras"], serde_json::json!([]), "no camera on this machine");
        assert!(config.contains("video = \"test\""), "{config}");
    }
}

#[test]
fn probe_without_json_prints_a_table() {
    let o = run_agent(&["probe"]);
    assert!(o.status.success());
    let text = String::from_utf8_lossy(&o.stdout);
    for heading in [
        "board",
        "cpu",
        "memory",
        "cameras",
        "microphones",
        "encoders",
        "suggested config",
    ] {
        assert!(text.lines().any(|l| l.starts_with(heading)), "no {heading} in:\n{text}");
    }
}

#[test]
fn a_user_pipeline_is_captured_and_encoded() {
    require_tools!("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.mp4");
    let o = run_agent(&[
        "capture",
        "--source",
        "pipeline:videotestsrc is-live=true ! capsfilter caps=video/x-raw,width=320,height=240,framerate=30/1",
        "--width",
        "320",
        "--height",
        "240",
        "--duration",
        "3s",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (json, errors) = ffprobe(&out, &["-show_streams", "-count_packets"]);
    assert_eq!(errors, "");
    let streams = json["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 1, "no audio asked for");
    assert_eq!(streams[0]["codec_name"], "h264");
    assert_eq!(streams[0]["width"], 320);
    let packets: u64 = streams[0]["nb_read_packets"].as_str().unwrap().parse().unwrap();
    // 90 here (pts 0 to 2.967 s); none past the 3 s limit, which would
    // follow a left-out frame that may be a key frame.
    assert!((85..=90).contains(&packets), "{packets} frames in 3 s at 30 fps");
}

/// NAL unit types of an AVC (4-byte length-prefixed) access unit.
fn nal_types(au: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut at = 0;
    while at + 4 <= au.len() {
        let len = u32::from_be_bytes(au[at..at + 4].try_into().unwrap()) as usize;
        if let Some(b) = au.get(at + 4) {
            types.push(b & 0x1f);
        }
        at += 4 + len;
    }
    types
}

#[test]
fn a_passthrough_pipeline_ending_in_h264parse_keeps_sps_and_pps_before_every_idr() {
    // Its own h264parse is told to repeat SPS/PPS (no second parser is
    // added): every key frame must still carry them once, in band. The
    // encoder is told not to repeat them itself, so only the parser can.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.mkv");
    let o = run_agent(&[
        "capture",
        "--source",
        "pipeline:videotestsrc is-live=true ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
         ! x264enc key-int-max=30 tune=zerolatency option-string=repeat-headers=0 ! h264parse",
        "--duration",
        "3s",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let data = std::fs::read(&out).unwrap();
    let mut r = fragmenter::mkv::MkvReader::default();
    r.feed(&data);
    r.finish();
    let mut keys = 0;
    while let Some(e) = r.next_event().unwrap() {
        if let fragmenter::mkv::MkvEvent::Block(b) = e {
            if b.keyframe {
                keys += 1;
                let types = nal_types(&b.data);
                let count = |t: u8| types.iter().filter(|&&x| x == t).count();
                assert_eq!((count(7), count(8)), (1, 1), "key frame {keys}: NAL types {types:?}");
                assert!(types.contains(&5), "key frame {keys} without an IDR slice: {types:?}");
            }
        }
    }
    assert!(keys >= 3, "{keys} key frames in 3 s with one every second");
}

fn one_line_error(args: &[&str]) -> String {
    let o = run_agent(args);
    assert!(!o.status.success(), "expected failure for {args:?}");
    let e = String::from_utf8_lossy(&o.stderr).trim_end().to_owned();
    assert_eq!(e.lines().count(), 1, "expected one line, got:\n{e}");
    e
}

#[test]
fn bad_sources_name_the_option_and_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.mkv");
    let out = out.to_str().unwrap();
    let capture = |source: &str, extra: &[&str]| {
        let mut args = vec!["capture", "--source", source, "--duration", "2s", "-o", out];
        args.extend_from_slice(extra);
        one_line_error(&args)
    };

    let e = capture("webcam:0", &[]);
    assert!(
        e.contains("--source") && e.contains("unknown source kind \"webcam\""),
        "{e}"
    );
    assert!(
        e.contains("v4l2:/dev/videoN") && e.contains("rtsp://"),
        "the kinds are listed: {e}"
    );

    if !Path::new("/dev/video99").exists() {
        let e = capture("v4l2:/dev/video99", &[]);
        assert!(
            e.contains("video = \"v4l2:/dev/video99\"") && e.contains("does not exist"),
            "{e}"
        );
    }
    if !Path::new("/proc/asound/card9").exists() {
        let e = capture("test", &["--audio", "alsa:hw:9"]);
        assert!(
            e.contains("audio = \"alsa:hw:9\"") && e.contains("no ALSA card 9"),
            "{e}"
        );
    }
    let e = capture("argus:x", &[]);
    assert!(e.contains("\"argus:x\"") && e.contains("expected argus:N"), "{e}");

    let e = capture("test", &["--codec", "vp9"]);
    assert!(e.contains("--codec") && e.contains("\"vp9\""), "{e}");
    let e = capture("test", &["--audio", "test", "--audio-codec", "mp3"]);
    assert!(e.contains("--audio-codec") && e.contains("\"mp3\""), "{e}");

    let port = free_tcp_port();
    let e = capture(&format!("rtsp://admin:secret@127.0.0.1:{port}/cam"), &[]);
    assert!(e.contains(&format!("rtsp://admin:***@127.0.0.1:{port}/cam")), "{e}");
    assert!(!e.contains("secret"), "the password stays out of messages: {e}");

    if have_gst_element("vp8enc") {
        let e = capture("pipeline:videotestsrc is-live=true ! vp8enc", &[]);
        assert!(e.contains("video/x-vp8") && e.contains("H.264 or H.265"), "{e}");
    }
    assert!(!Path::new(out).exists(), "nothing written");
}
