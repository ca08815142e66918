//! Clips of real H.264 (GStreamer's x264) from a [`MemoryArchive`], judged
//! by ffprobe and by comparing every range with the whole.
//!
//! Tests that need encoded media or ffprobe are skipped, with the reason
//! printed, where GStreamer (x264enc) or ffprobe is missing.

use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fragmenter::media::{SensorCodecId, SensorKind, SensorTrack, VideoTrack};
use fragmenter::{Frame, Timestamp, Track, TrackId};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use http_body_util::BodyExt;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{HeaderMap, Response, StatusCode};

use super::*;
use crate::archive::memory::MemoryArchive;

/// 2026-01-01T00:00:00Z: when the synthetic recording starts.
const BASE_MS: u64 = 1_767_225_600_000;
const FRAMES: usize = 90;
const PIPELINE: &str = "videotestsrc num-buffers=90 pattern=ball \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x264enc key-int-max=30 speed-preset=ultrafast \
    ! h264parse ! video/x-h264,stream-format=avc,alignment=au \
    ! appsink name=sink sync=false";

/// The encoded recording: the video track and its access units with
/// absolute times.
struct Recording {
    track: Track,
    frames: Vec<Frame>,
}

fn ms(t: u64) -> Timestamp {
    Timestamp::from_millis(BASE_MS + t)
}

/// x264's 3 s of 320x240 video, encoded once for all tests; `None` (with
/// the reason printed) when GStreamer or x264enc is missing.
fn recording() -> Option<&'static Recording> {
    static REC: OnceLock<Result<Recording, String>> = OnceLock::new();
    match REC.get_or_init(encode) {
        Ok(r) => Some(r),
        Err(why) => {
            eprintln!("skipped: {why}");
            None
        }
    }
}

fn encode() -> Result<Recording, String> {
    gst::init().map_err(|e| format!("GStreamer does not initialise: {e}"))?;
    for e in ["videotestsrc", "x264enc", "h264parse", "appsink"] {
        if gst::ElementFactory::find(e).is_none() {
            return Err(format!("GStreamer element {e} missing"));
        }
    }
    let pipeline = gst::parse::launch(PIPELINE)
        .map_err(|e| e.to_string())?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "not a pipeline")?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or("no appsink")?;
    pipeline.set_state(gst::State::Playing).map_err(|e| e.to_string())?;
    let mut track = None;
    let mut frames = Vec::new();
    let id = TrackId::new(1).expect("track 1");
    while let Ok(sample) = sink.pull_sample() {
        if track.is_none() {
            let caps = sample.caps().and_then(|c| c.structure(0)).ok_or("caps")?;
            let buf = caps.get::<gst::Buffer>("codec_data").map_err(|e| e.to_string())?;
            let avcc = Bytes::copy_from_slice(&buf.map_readable().map_err(|e| e.to_string())?);
            track = Some(Track::new(
                id,
                "video",
                VideoTrack::h264(avcc).map_err(|e| e.to_string())?,
            ));
        }
        let buffer = sample.buffer().ok_or("buffer")?;
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .ok_or("no time segment")?
            .clone();
        // Running time starts at 0 with the first frame; x264 may decode
        // before that (negative dts with B-frames), hence signed.
        let running = |t: gst::ClockTime| match segment.to_running_time_full(t) {
            Some(gst::Signed::Positive(t)) => t.nseconds() as i64,
            Some(gst::Signed::Negative(t)) => -(t.nseconds() as i64),
            None => 0,
        };
        let pts = running(buffer.pts().ok_or("pts")?);
        let dts = buffer.dts().map_or(pts, running);
        let at = |ns: i64| Timestamp::from_nanos((ms(0).as_nanos() as i64 + ns) as u64);
        frames.push(Frame {
            track: id,
            pts: at(pts),
            dts: at(dts),
            duration: Duration::from_nanos(buffer.duration().map_or(0, |d| d.nseconds())),
            keyframe: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: Bytes::copy_from_slice(&buffer.map_readable().map_err(|e| e.to_string())?),
        });
    }
    pipeline.set_state(gst::State::Null).map_err(|e| e.to_string())?;
    if frames.len() != FRAMES {
        return Err(format!("x264 gave {} frames, expected {FRAMES}", frames.len()));
    }
    Ok(Recording {
        track: track.ok_or("no caps")?,
        frames,
    })
}

fn lidar() -> Track {
    Track::new(
        TrackId::new(2).expect("track 2"),
        "lidar",
        SensorTrack {
            kind: SensorKind::Lidar,
            codec_id: SensorCodecId::new("O_TEST").expect("codec id"),
            private: Bytes::new(),
        },
    )
}

/// Stream `cam`: the video plus a LIDAR track (which clips leave out), in
/// three 1 s fragments that each start on a key frame.
fn archive(rec: &Recording) -> Arc<dyn Archive> {
    let a = MemoryArchive::new();
    a.add_stream("cam", &[rec.track.clone(), lidar()]);
    for chunk in rec.frames.chunks(30) {
        assert!(chunk[0].keyframe, "x264 key-int-max=30 puts a key frame every 30");
        let mut frames = Vec::new();
        for f in chunk {
            frames.push(f.clone());
            frames.push(Frame {
                track: lidar().id,
                data: Bytes::from_static(b"points"),
                keyframe: true,
                dts: f.pts,
                ..f.clone()
            });
        }
        a.add_fragment("cam", frames);
    }
    a.add_stream("empty", std::slice::from_ref(&rec.track));
    Arc::new(a)
}

fn query(start_ms: u64, end_ms: u64) -> String {
    format!("start={}&end={}", BASE_MS + start_ms, BASE_MS + end_ms)
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.insert(HeaderName::from_static(k), HeaderValue::from_str(v).unwrap());
    }
    h
}

async fn get(archive: &Arc<dyn Archive>, stream: &str, q: &str, h: &HeaderMap) -> (Response<()>, Bytes) {
    let r = serve(Arc::clone(archive), stream, Some(q), h, false).await;
    let (parts, body) = r.into_parts();
    let bytes = body.collect().await.expect("the body completes").to_bytes();
    (Response::from_parts(parts, ()), bytes)
}

fn header<'a>(r: &'a Response<()>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

/// ffprobe's count of decoded video frames in `mp4`, and what it said on
/// stderr; `None` when ffprobe is missing.
fn ffprobe_frames(mp4: &[u8]) -> Option<(u64, String)> {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        eprintln!("skipped ffprobe check: ffprobe is not installed");
        return None;
    }
    let file = tempfile::Builder::new().suffix(".mp4").tempfile().unwrap();
    std::fs::write(file.path(), mp4).unwrap();
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file.path())
        .output()
        .unwrap();
    let count = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    Some((count, String::from_utf8_lossy(&out.stderr).into_owned()))
}

/// The `mfhd` sequence numbers in `mp4`, in order.
fn sequence_numbers(mp4: &[u8]) -> Vec<u32> {
    mp4.windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"mfhd")
        .map(|(i, _)| u32::from_be_bytes(mp4[i + 8..i + 12].try_into().unwrap()))
        .collect()
}

#[tokio::test]
async fn a_whole_clip_plays_every_frame_and_its_length_is_announced() {
    let Some(rec) = recording() else { return };
    let a = archive(rec);
    let (r, body) = get(&a, "cam", &query(0, 3000), &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(header(&r, "content-type"), "video/mp4");
    assert_eq!(header(&r, "accept-ranges"), "bytes");
    assert_eq!(header(&r, "content-length"), body.len().to_string());
    // Players on other origins may read it and see its range headers.
    assert_eq!(header(&r, "access-control-allow-origin"), "*");
    assert!(header(&r, "access-control-expose-headers").contains("Content-Range"));
    assert_eq!(
        header(&r, "content-disposition"),
        "inline; filename=\"cam-20260101T000000Z.mp4\""
    );
    assert!(header(&r, "etag").starts_with("\"clip-"));
    assert_eq!(&body[4..8], b"ftyp");
    assert_eq!(sequence_numbers(&body), vec![1, 2, 3]);
    // Every payload byte is there once; the sensor frames are not.
    let payload: usize = rec.frames.iter().map(|f| f.data.len()).sum();
    assert!(
        body.len() > payload && body.len() < payload + 8192,
        "{} bytes",
        body.len()
    );
    if let Some((frames, stderr)) = ffprobe_frames(&body) {
        assert_eq!(frames, FRAMES as u64, "ffprobe: {stderr}");
        assert!(stderr.trim().is_empty(), "ffprobe complained: {stderr}");
    }
}

#[tokio::test]
async fn a_clip_starts_at_the_key_frame_before_start_and_stops_before_end() {
    let Some(rec) = recording() else { return };
    let a = archive(rec);
    // Key frames are at 0, 1 and 2 s; 1.5 s starts at the 1 s one, and
    // frames decoded from 2.5 s on are left out: 30 + 15 frames.
    let (r, body) = get(&a, "cam", &query(1500, 2500), &HeaderMap::new()).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(sequence_numbers(&body), vec![1, 2]);
    if let Some((frames, stderr)) = ffprobe_frames(&body) {
        assert_eq!(frames, 45, "ffprobe: {stderr}");
        assert!(stderr.trim().is_empty(), "ffprobe complained: {stderr}");
    }
}

#[tokio::test]
async fn every_byte_range_is_the_same_slice_of_the_whole_clip() {
    let Some(rec) = recording() else { return };
    let a = archive(rec);
    let q = query(0, 3000);
    let (_, whole) = get(&a, "cam", &q, &HeaderMap::new()).await;
    let len = whole.len() as u64;
    // Fragment boundaries, to cut through moof headers and payloads.
    let moofs: Vec<u64> = whole
        .windows(4)
        .enumerate()
        .filter(|(_, w)| w == b"moof")
        .map(|(i, _)| i as u64 - 4)
        .collect();
    let mut cases: Vec<(String, u64, u64)> = vec![
        ("bytes=0-0".into(), 0, 0),
        ("bytes=0-99".into(), 0, 99),
        ("bytes=100-".into(), 100, len - 1),
        ("bytes=-500".into(), len - 500, len - 1),
        (format!("bytes={}-{}", len - 1, len + 100), len - 1, len - 1),
        (format!("bytes=0-{}", len * 2), 0, len - 1),
    ];
    for m in &moofs {
        cases.push((format!("bytes={}-{}", m - 3, m + 40), m - 3, m + 40));
        cases.push((format!("bytes={}-", m + 10), m + 10, len - 1));
    }
    cases.push((
        format!("bytes={}-{}", moofs[0] + 100, moofs[2] + 100),
        moofs[0] + 100,
        moofs[2] + 100,
    ));
    for (range, first, last) in cases {
        let (r, body) = get(&a, "cam", &q, &headers(&[("range", &range)])).await;
        assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            header(&r, "content-range"),
            format!("bytes {first}-{last}/{len}"),
            "{range}"
        );
        assert_eq!(header(&r, "content-length"), body.len().to_string(), "{range}");
        assert!(
            body[..] == whole[first as usize..=last as usize],
            "{range}: bytes differ"
        );
    }
}

#[tokio::test]
async fn a_range_past_the_end_is_416_with_the_length() {
    let Some(rec) = recording() else { return };
    let a = archive(rec);
    let q = query(0, 3000);
    let (_, whole) = get(&a, "cam", &q, &HeaderMap::new()).await;
    let range = format!("bytes={}-", whole.len());
    let (r, _) = get(&a, "cam", &q, &headers(&[("range", &range)])).await;
    assert_eq!(r.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header(&r, "content-range"), format!("bytes */{}", whole.len()));
}

#[tokio::test]
async fn head_and_conditional_requests_send_headers_only() {
    let Some(rec) = recording() else { return };
    let a = archive(rec);
    let q = query(0, 3000);
    let (whole, body) = get(&a, "cam", &q, &HeaderMap::new()).await;
    let etag = header(&whole, "etag").to_owned();

    let r = serve(
        Arc::clone(&a),
        "cam",
        Some(&q),
        &headers(&[("range", "bytes=10-19")]),
        true,
    )
    .await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.headers()["content-length"], "10");
    assert!(r.into_body().collect().await.unwrap().to_bytes().is_empty());

    let (r, empty) = get(&a, "cam", &q, &headers(&[("if-none-match", &etag)])).await;
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert!(empty.is_empty());

    // If-Range with a stale validator: the whole (new) clip, not the range.
    let stale = headers(&[("range", "bytes=10-19"), ("if-range", "\"clip-0\"")]);
    let (r, all) = get(&a, "cam", &q, &stale).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(all, body);
    let fresh = headers(&[("range", "bytes=10-19"), ("if-range", &etag)]);
    let (r, _) = get(&a, "cam", &q, &fresh).await;
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
}

async fn json(archive: &Arc<dyn Archive>, stream: &str, q: &str) -> (StatusCode, String) {
    let (r, body) = get(archive, stream, q, &HeaderMap::new()).await;
    assert_eq!(header(&r, "content-type"), "application/json");
    (r.status(), String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn nothing_recorded_or_no_such_stream_is_404_json() {
    let a: Arc<dyn Archive> = Arc::new(MemoryArchive::new());
    let (status, body) = json(&a, "nope", &query(0, 1000)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no stream named \\\"nope\\\""), "{body}");

    let Some(rec) = recording() else { return };
    let a = archive(rec);
    let (status, body) = json(&a, "cam", &query(60_000, 70_000)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no recording of \\\"cam\\\""), "{body}");
    let (status, _) = json(&a, "empty", &query(0, 3000)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_stream_of_sensor_data_only_has_no_clip() {
    let a = MemoryArchive::new();
    a.add_stream("lidar", &[lidar()]);
    a.add_fragment(
        "lidar",
        vec![Frame {
            track: lidar().id,
            pts: ms(0),
            dts: ms(0),
            duration: Duration::from_millis(100),
            keyframe: true,
            data: Bytes::from_static(b"points"),
        }],
    );
    let a: Arc<dyn Archive> = Arc::new(a);
    let (status, body) = json(&a, "lidar", &query(0, 1000)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body.contains("no video or audio"), "{body}");
}

#[tokio::test]
async fn a_missing_or_bad_time_is_400_naming_the_parameter() {
    let a: Arc<dyn Archive> = Arc::new(MemoryArchive::new());
    for (q, says) in [
        ("end=1000", "missing start"),
        ("start=1000", "missing end"),
        ("start=yesterday&end=1000", "start=\\\"yesterday\\\""),
        ("start=1000&end=2026-13-01T00:00:00Z", "end="),
        ("start=2000&end=1000", "is not after start"),
        ("start=0&end=172800000", "longer than"),
    ] {
        let (status, body) = json(&a, "cam", q).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{q}");
        assert!(body.contains(says), "{q}: {body}");
    }
    let (status, _) = json(&a, "cam", "start=2026-01-01T00%3A00%3A00Z&end=2026-01-01T00%3A00%3A01Z").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "percent-encoded RFC 3339 parses");
}
