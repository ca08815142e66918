//! Store tests: real SQLite files and real segment files in temporary
//! directories. The only stand-ins are the test clock and, for disk-full
//! tests, a file layer whose free space is a budget.

mod archive;
mod crash;
mod cursors;
mod disk_full;
mod names;
mod recovery;
mod retention;
mod roundtrip;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fragmenter::fragment::{CloseReason, FragmentSummary, Metadata};
use fragmenter::media::{AudioCodec, AudioTrack, SensorCodecId, SensorKind, SensorTrack, VideoCodec, VideoTrack};
use fragmenter::{FragmentEvent, Frame, Timestamp, Track, TrackId};

use super::*;

/// 2026-11-26T00:00:00Z.
pub const BASE_NS: u64 = 1_795_651_200_000_000_000;

pub fn base() -> Timestamp {
    Timestamp::from_nanos(BASE_NS)
}

/// SplitMix64: small, deterministic, good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Bytes {
        let mut v = Vec::with_capacity(n + 8);
        while v.len() < n {
            v.extend_from_slice(&self.next().to_le_bytes());
        }
        v.truncate(n);
        Bytes::from(v)
    }
}

/// Video (H.264 with an avcC), AAC audio and a LIDAR track: up to `n`.
pub fn tracks(n: u8) -> Vec<Track> {
    let id = |n| TrackId::new(n).unwrap();
    let all = vec![
        Track::new(
            id(1),
            "video",
            VideoTrack {
                codec: VideoCodec::H264 {
                    avcc: Bytes::from_static(&[1, 0x64, 0, 0x28, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x28]),
                },
                width: 1920,
                height: 1080,
            },
        ),
        Track::new(
            id(2),
            "audio",
            AudioTrack {
                codec: AudioCodec::Aac {
                    asc: Bytes::from_static(&[0x11, 0x90]),
                },
                sample_rate: 48_000,
                channels: 2,
            },
        ),
        Track::new(
            id(3),
            "lidar",
            SensorTrack {
                kind: SensorKind::Lidar,
                codec_id: SensorCodecId::new("O_OUSTER/LIDAR_PACKET").unwrap(),
                private: Bytes::from_static(b"{\"model\":\"OS1-64\"}"),
            },
        ),
    ];
    all.into_iter().take(n as usize).collect()
}

/// The shape of one generated fragment.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub frames: usize,
    pub max_len: usize,
    pub tracks: u8,
    pub seed: u64,
}

/// A fragment's frames: decode times evenly spread over 2 s from `start`,
/// reordered presentation times on video, random payloads. Deterministic
/// in (`start`, `shape`).
pub fn frames(start: Timestamp, shape: Shape) -> Vec<Frame> {
    let mut rng = Rng::new(shape.seed ^ start.as_nanos());
    let n = shape.frames.max(1);
    let step = 2_000_000_000 / n as u64;
    (0..n)
        .map(|i| {
            let track = if i == 0 {
                1
            } else {
                1 + rng.below(shape.tracks.into()) as u8
            };
            let dts = start.as_nanos() + i as u64 * step;
            let pts = if i > 0 && track == 1 {
                dts + rng.below(3) * step
            } else {
                dts
            };
            let len = 1 + rng.below(shape.max_len as u64) as usize;
            Frame {
                track: TrackId::new(track).unwrap(),
                pts: Timestamp::from_nanos(pts),
                dts: Timestamp::from_nanos(dts),
                duration: Duration::from_nanos(if rng.below(4) == 0 { 0 } else { step }),
                keyframe: i == 0 || track != 1 || rng.below(10) == 0,
                data: rng.bytes(len),
            }
        })
        .collect()
}

/// Start, frames, End — what the fragmenter would emit.
pub fn events(seq: u64, frames: &[Frame]) -> Vec<FragmentEvent> {
    let start = frames[0].pts;
    let mut track_frames = [0u32; 3];
    for f in frames {
        track_frames[f.track.index()] += 1;
    }
    let metadata = if seq % 3 == 1 {
        vec![Metadata {
            name: "site".into(),
            value: format!("gate {seq}"),
        }]
    } else {
        Vec::new()
    };
    let mut ev = vec![FragmentEvent::Start { seq, start }];
    ev.extend(frames.iter().cloned().map(FragmentEvent::Frame));
    ev.push(FragmentEvent::End(FragmentSummary {
        seq,
        start,
        end: frames.iter().map(|f| f.pts + f.duration).max().unwrap(),
        last_pts: frames.iter().map(|f| f.pts).max().unwrap(),
        frames: frames.len() as u32,
        bytes: frames.iter().map(|f| f.data.len() as u64).sum(),
        track_frames,
        metadata,
        closed_by: CloseReason::KeyFrame,
    }));
    ev
}

/// Write a whole fragment; the committed description.
pub fn write_all(w: &mut StreamWriter, ev: &[FragmentEvent]) -> Result<Option<FragmentMeta>, StoreError> {
    let mut last = None;
    for e in ev {
        last = w.write(e)?;
    }
    Ok(last)
}

/// The start of fragment `i` of a 2-second cadence.
pub fn at(i: u64) -> Timestamp {
    Timestamp::from_nanos(BASE_NS + i * 2_000_000_000)
}

pub fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        max_age_hours: 0,
        min_free_mb: 0,
        ..StoreConfig::new(dir)
    }
}

pub fn test_clock() -> Arc<TestClock> {
    Arc::new(TestClock::new(base()))
}

/// Every log line of this test binary (a global subscriber collects them:
/// thread-local ones miss events whose callsites other threads cached).
static LOGS: std::sync::OnceLock<Arc<Mutex<Vec<u8>>>> = std::sync::OnceLock::new();

fn logs() -> &'static Arc<Mutex<Vec<u8>>> {
    LOGS.get_or_init(|| {
        #[derive(Clone)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Arc::new(Mutex::new(Vec::new()));
        let out = Buf(buf.clone());
        let sub = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        // If another test of this binary installed one first, log
        // assertions fail with the logs they saw: visible, not a panic here.
        let _ = tracing::subscriber::set_global_default(sub);
        buf
    })
}

/// Start collecting logs (call before the code under test runs).
pub fn collect_logs() {
    logs();
}

/// The log lines so far that mention `needle`.
pub fn logs_about(needle: &str) -> String {
    let all = String::from_utf8_lossy(&logs().lock().unwrap()).into_owned();
    all.lines()
        .filter(|l| l.contains(needle))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_second_process_cannot_open_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let _a = Store::open(config(dir.path()), test_clock()).unwrap();
    let err = Store::open(config(dir.path()), test_clock()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err}");
    assert!(err.to_string().contains("LOCK"), "{err}");
}

#[test]
fn an_index_from_a_newer_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(config(dir.path()), test_clock()).unwrap());
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(config(dir.path()), test_clock()).unwrap_err();
    assert!(matches!(err, StoreError::SchemaTooNew { found: 99, .. }), "{err}");
}

#[test]
fn on_full_parses_the_kvs_names_and_names_a_bad_value() {
    assert_eq!("DENY_NEW_MEDIA".parse::<OnFull>().unwrap(), OnFull::DenyNewMedia);
    assert_eq!(
        "DELETE_OLDEST_MEDIA".parse::<OnFull>().unwrap(),
        OnFull::DeleteOldestMedia
    );
    assert!("delete".parse::<OnFull>().unwrap_err().contains("\"delete\""));
}

#[test]
fn ranges_merge_within_tolerance_and_clip_to_the_window() {
    let t = |s: u64| Timestamp::from_nanos(BASE_NS + s * 1_000_000_000);
    let spans = [(t(0), t(2)), (t(2), t(4)), (t(5), t(7)), (t(9), t(11))];
    let r = merge_ranges(&spans, Duration::from_secs(1), t(1), t(10));
    assert_eq!(r, vec![(t(1), t(7)), (t(9), t(10))]);
}
