//! Supervision against real pipelines: live sources that end or stall are
//! restarted, timestamps stay strictly increasing per track, video resumes
//! on a key frame, and every restart is counted. (RTSP server restarts are
//! in tests/tests/hardware_rtsp.rs, which runs a real server process.)

mod common;

use std::time::{Duration, Instant};

use fragmenter::{Frame, TrackId};
use hardware::{AudioSource, CaptureError, CaptureOptions, SupervisedCapture, SupervisorOptions, VideoSource};

use common::have;

/// Frames for `wall` of real time, riding out restarts.
fn collect_for(capture: &mut SupervisedCapture, wall: Duration) -> Vec<Frame> {
    let until = Instant::now() + wall;
    let mut frames = Vec::new();
    while Instant::now() < until {
        match capture.next_frame(Duration::from_millis(200)) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => break,
            Err(CaptureError::Stalled { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    frames
}

fn assert_strictly_increasing(frames: &[Frame]) {
    for track in 1..=3 {
        let id = TrackId::new(track).unwrap();
        let of: Vec<&Frame> = frames.iter().filter(|f| f.track == id).collect();
        for w in of.windows(2) {
            assert!(w[1].dts > w[0].dts, "track {track}: {:?} then {:?}", w[0], w[1]);
        }
    }
}

fn opts() -> CaptureOptions {
    CaptureOptions {
        width: 320,
        height: 240,
        fragment_duration: Duration::from_secs(1),
        audio: AudioSource::None,
        ..CaptureOptions::default()
    }
}

#[test]
fn a_live_source_that_ends_is_restarted_and_time_runs_on() {
    if !have(
        "ends",
        &["videotestsrc", "x264enc", "audiotestsrc", "avenc_aac", "appsink"],
    ) {
        return;
    }
    // A "camera" that hangs up after one second, every time; with a
    // microphone beside it.
    let source: VideoSource = "pipeline:videotestsrc is-live=true num-buffers=30 \
                               ! capsfilter caps=video/x-raw,width=320,height=240,framerate=30/1 \
                               ! x264enc tune=zerolatency key-int-max=10"
        .parse()
        .unwrap();
    let opts = CaptureOptions {
        audio: AudioSource::Test,
        ..opts()
    };
    let supervision = SupervisorOptions {
        backoff_initial: Duration::from_millis(100),
        ..SupervisorOptions::default()
    };
    let mut capture = SupervisedCapture::start(&source, &opts, supervision).expect("start");
    let tracks = capture.tracks().to_vec();
    assert_eq!(tracks.len(), 2);
    let frames = collect_for(&mut capture, Duration::from_secs(5));
    capture.stop();
    let stats = capture.stats();
    eprintln!("{stats}");
    assert!(stats.restarts >= 2, "{stats}");
    // The last end may not have been followed by its restart before stop.
    assert!(
        stats.ends == stats.restarts || stats.ends == stats.restarts + 1,
        "{stats}"
    );
    assert_eq!(stats.errors + stats.stalls + stats.failed_starts, 0, "{stats}");
    assert_eq!(capture.tracks(), &tracks[..], "restarts keep the track list");
    assert_strictly_increasing(&frames);
    // Every pipeline's video starts on a key frame: a new pipeline is seen
    // as a jump in time of more than one frame interval.
    let video: Vec<&Frame> = frames.iter().filter(|f| f.track.get() == 1).collect();
    assert!(video.len() > 60, "{} video frames", video.len());
    let mut resumed = 0;
    for w in video.windows(2) {
        if w[1].pts.saturating_since(w[0].pts) > Duration::from_millis(60) {
            assert!(w[1].keyframe, "resumed on a delta frame: {:?}", w[1]);
            resumed += 1;
        }
    }
    assert!(resumed >= 2, "{resumed} gaps");
    assert_eq!(stats.frames as usize, frames.len());
}

#[test]
fn a_stalled_source_is_restarted_after_the_stall_timeout() {
    if !have("stall", &["videotestsrc", "x264enc", "identity", "appsink"]) {
        return;
    }
    // One frame every 1.5 s: alive, but stalled by a 1 s timeout.
    let source: VideoSource = "pipeline:videotestsrc is-live=true \
                               ! capsfilter caps=video/x-raw,width=160,height=120,framerate=30/1 \
                               ! identity sleep-time=1500000 ! x264enc tune=zerolatency"
        .parse()
        .unwrap();
    let supervision = SupervisorOptions {
        stall_timeout: Duration::from_secs(1),
        backoff_initial: Duration::from_millis(100),
        ..SupervisorOptions::default()
    };
    let started = Instant::now();
    let mut capture = SupervisedCapture::start(&source, &opts(), supervision).expect("start");
    let _ = collect_for(&mut capture, Duration::from_secs(4));
    let stats = capture.stats();
    capture.stop();
    eprintln!("{stats} in {:?}", started.elapsed());
    assert!(stats.stalls >= 1, "{stats}");
    assert!(stats.restarts >= 1, "{stats}");
    assert!(
        stats
            .last_restart_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("no frame for")),
        "{stats:?}"
    );
}

#[test]
fn stop_drains_and_key_frames_can_be_asked_for_across_restarts() {
    if !have("stop", &["videotestsrc", "x264enc", "appsink"]) {
        return;
    }
    let opts = CaptureOptions {
        fragment_duration: Duration::from_secs(10),
        ..opts()
    };
    let mut capture = SupervisedCapture::start(&VideoSource::Test, &opts, SupervisorOptions::default()).expect("start");
    assert_eq!(capture.stats().encoder.as_deref(), Some("x264enc"));
    let requester = capture.key_frame_requester();
    let first = collect_for(&mut capture, Duration::from_millis(700));
    assert!(first[0].keyframe && first[1..].iter().all(|f| !f.keyframe));
    assert!(requester.request());
    let after = collect_for(&mut capture, Duration::from_millis(700));
    assert!(
        after.iter().take(10).any(|f| f.keyframe),
        "no key frame after the request"
    );
    capture.stop();
    // Whatever the pipeline still held comes out, then the end, for good.
    let mut rest = 0;
    while let Some(_f) = capture.next_frame(Duration::from_secs(1)).unwrap() {
        rest += 1;
    }
    assert!(capture.next_frame(Duration::from_secs(1)).unwrap().is_none());
    eprintln!("{rest} frame(s) after stop");
    assert_eq!(capture.stats().restarts, 0);
}

#[test]
fn a_non_live_source_ends_instead_of_restarting() {
    if !have("non_live", &["videotestsrc", "x264enc", "appsink"]) {
        return;
    }
    let opts = CaptureOptions {
        live: false,
        num_buffers: Some(20),
        ..opts()
    };
    let mut capture = SupervisedCapture::start(&VideoSource::Test, &opts, SupervisorOptions::default()).expect("start");
    let mut n = 0;
    while let Some(_f) = capture.next_frame(Duration::from_secs(5)).unwrap() {
        n += 1;
    }
    assert_eq!(n, 20);
    assert_eq!(capture.stats().restarts, 0);
}

#[test]
fn dropping_a_supervised_capture_is_prompt() {
    if !have("drop", &["videotestsrc", "x264enc", "appsink"]) {
        return;
    }
    let mut capture =
        SupervisedCapture::start(&VideoSource::Test, &opts(), SupervisorOptions::default()).expect("start");
    let _ = collect_for(&mut capture, Duration::from_millis(300));
    // Unread frames pile up behind the hand-off while nobody reads.
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    drop(capture);
    assert!(t.elapsed() < Duration::from_secs(2), "drop took {:?}", t.elapsed());
}
