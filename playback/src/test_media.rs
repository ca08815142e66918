//! Real media for tests: GStreamer encodes a few seconds of H.264 (x264,
//! with B-frames) and AAC once per test binary; tests place the GOPs at
//! the wall-clock times they need in a `MemoryArchive`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use fragmenter::media::{AudioTrack, VideoTrack};
use fragmenter::{Frame, Timestamp, Track, TrackId};
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use http_body_util::BodyExt;
use hyper::{Request, Response};

use crate::archive::memory::MemoryArchive;
use crate::http::{Body, Playback, PlaybackOptions};

/// 2026-11-26T00:00:00Z.
pub const BASE_NS: u64 = 1_795_651_200_000_000_000;

/// 4 s of 320x240 30 fps video, a key frame every 2 s (so two fragments of
/// 2 s, as the agent cuts them).
const H264: &str = "videotestsrc num-buffers=120 pattern=ball \
    ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
    ! x264enc key-int-max=60 bframes=2 speed-preset=ultrafast option-string=scenecut=0:min-keyint=60 \
    ! video/x-h264,stream-format=avc,alignment=au,profile=main \
    ! appsink name=sink sync=false";
const AAC: &str = "audiotestsrc num-buffers=190 samplesperbuffer=1024 \
    ! audio/x-raw,rate=48000,channels=2 ! audioconvert ! avenc_aac ! aacparse \
    ! audio/mpeg,stream-format=raw ! appsink name=sink sync=false";

/// The encoded recording: its tracks and GOPs, times relative to zero.
pub struct Recording {
    /// Video (track 1) and, when the encoder exists, AAC audio (track 2).
    pub tracks: Vec<Track>,
    /// Each GOP's frames, video and audio interleaved by dts; a GOP starts
    /// with a video key frame. Times are ns from the recording start.
    pub gops: Vec<Vec<Frame>>,
}

impl Recording {
    /// The video track alone.
    pub fn video_tracks(&self) -> Vec<Track> {
        self.tracks.iter().take(1).cloned().collect()
    }

    /// GOP `i` moved to start at `at`; `video_only` drops the audio.
    pub fn gop_at(&self, i: usize, at: Timestamp, video_only: bool) -> Vec<Frame> {
        let gop = &self.gops[i % self.gops.len()];
        let first = gop.iter().map(|f| f.pts.as_nanos()).min().unwrap();
        gop.iter()
            .filter(|f| !video_only || f.track.get() == 1)
            .map(|f| Frame {
                pts: Timestamp::from_nanos(f.pts.as_nanos() - first + at.as_nanos()),
                dts: Timestamp::from_nanos(f.dts.as_nanos() + at.as_nanos() - first),
                ..f.clone()
            })
            .collect()
    }
}

fn signed_ns(t: gst::Signed<gst::ClockTime>) -> i64 {
    match t {
        gst::Signed::Positive(t) => t.nseconds() as i64,
        gst::Signed::Negative(t) => -(t.nseconds() as i64),
    }
}

struct Unit {
    pts: i64,
    dts: i64,
    duration: u64,
    key: bool,
    data: Bytes,
}

fn encode(desc: &str) -> (Bytes, Vec<Unit>) {
    let pipeline = gst::parse::launch(desc).unwrap().downcast::<gst::Pipeline>().unwrap();
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut codec_data = None;
    let mut units = Vec::new();
    while let Ok(sample) = sink.pull_sample() {
        if codec_data.is_none() {
            let caps = sample.caps().and_then(|c| c.structure(0)).unwrap().to_owned();
            let buf = caps.get::<gst::Buffer>("codec_data").expect("codec_data");
            codec_data = Some(Bytes::copy_from_slice(&buf.map_readable().unwrap()));
        }
        let buffer = sample.buffer().unwrap();
        let segment = sample
            .segment()
            .and_then(|s| s.downcast_ref::<gst::ClockTime>())
            .unwrap()
            .clone();
        let pts = buffer.pts().unwrap();
        let dts = buffer.dts().unwrap_or(pts);
        units.push(Unit {
            pts: signed_ns(segment.to_running_time_full(pts).unwrap()),
            dts: signed_ns(segment.to_running_time_full(dts).unwrap()),
            duration: buffer.duration().map_or(0, |d| d.nseconds()),
            key: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
            data: Bytes::copy_from_slice(&buffer.map_readable().unwrap()),
        });
    }
    pipeline.set_state(gst::State::Null).unwrap();
    (codec_data.expect("no buffers"), units)
}

/// The recording, encoded on first use.
pub fn recording() -> &'static Recording {
    static REC: OnceLock<Recording> = OnceLock::new();
    REC.get_or_init(|| {
        gst::init().unwrap();
        let (avcc, video) = encode(H264);
        let v1 = TrackId::new(1).unwrap();
        let a2 = TrackId::new(2).unwrap();
        let mut tracks = vec![Track::new(v1, "video", VideoTrack::h264(avcc).unwrap())];
        // One second of headroom: with B-frames the first dts is before 0.
        let abs = |ns: i64| Timestamp::from_nanos((1_000_000_000 + ns) as u64);
        let to_frame = |track, u: &Unit| Frame {
            track,
            pts: abs(u.pts),
            dts: abs(u.dts),
            duration: Duration::from_nanos(u.duration),
            keyframe: u.key,
            data: u.data.clone(),
        };
        let mut frames: Vec<Frame> = video.iter().map(|u| to_frame(v1, u)).collect();
        if gst::ElementFactory::find("avenc_aac").is_some() {
            let (asc, audio) = encode(AAC);
            tracks.push(Track::new(a2, "audio", AudioTrack::aac(asc).unwrap()));
            frames.extend(audio.iter().map(|u| to_frame(a2, u)));
        } else {
            eprintln!("avenc_aac missing: test media is video only");
        }
        frames.sort_by_key(|f| (f.dts, f.track));
        let mut gops: Vec<Vec<Frame>> = Vec::new();
        for f in frames {
            if f.track == v1 && f.keyframe {
                gops.push(Vec::new());
            }
            // Audio before the first key frame is dropped, as the fragmenter does.
            if let Some(g) = gops.last_mut() {
                g.push(f);
            }
        }
        let sizes: Vec<usize> = gops
            .iter()
            .map(|g| g.iter().filter(|f| f.track == v1).count())
            .collect();
        assert_eq!(sizes, [60, 60], "GOPs of 2 s expected");
        Recording { tracks, gops }
    })
}

/// Wall-clock time of second `s` of the test day.
pub fn at_secs(s: f64) -> Timestamp {
    Timestamp::from_nanos(BASE_NS + (s * 1e9) as u64)
}

/// A stream `cam` holding complete fragments starting at each of `starts`
/// (seconds), and a Playback over it.
pub fn archive_with(starts: &[f64], options: PlaybackOptions) -> (MemoryArchive, Playback) {
    let rec = recording();
    let archive = MemoryArchive::new();
    archive.add_stream("cam", &rec.tracks);
    for (i, s) in starts.iter().enumerate() {
        archive.add_fragment("cam", rec.gop_at(i, at_secs(*s), false));
    }
    let pb = Playback::new(Arc::new(archive.clone()), options);
    (archive, pb)
}

/// Options with a short idle time, so test packagers do not linger.
pub fn options() -> PlaybackOptions {
    PlaybackOptions {
        live_idle: Duration::from_secs(5),
        ..PlaybackOptions::default()
    }
}

/// A GET (or other method) with optional headers.
pub fn request(method: &str, uri: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut b = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

/// Status, headers and body of a handled request.
pub struct Got {
    /// The response without its body.
    pub head: hyper::http::response::Parts,
    /// The body.
    pub body: Bytes,
}

impl Got {
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.head.status.as_u16()
    }
}

async fn collect(r: Response<Body>) -> Got {
    let (head, body) = r.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    Got { head, body }
}

/// Handle `GET uri`; panics if playback does not own the path.
pub async fn get(pb: &Playback, uri: &str) -> Got {
    send(pb, request("GET", uri, &[])).await
}

/// Handle `req`; panics if playback does not own the path.
pub async fn send(pb: &Playback, req: Request<()>) -> Got {
    collect(pb.handle(&req).await.expect("a playback path")).await
}
