//! Store append throughput for 1080p30 at 4 Mbps (2 s fragments of about
//! 1 MB: a 150 KB key frame, 59 P-frames, 94 AAC frames), against raw
//! sequential writes of the same payloads with the same fdatasync cadence
//! (one per fragment) in the same directory. Both run at steady state under
//! a 256 MB cap (oldest files deleted), so deletion is part of the cost.
//!
//! `cargo bench -p agent --bench store_append` prints criterion's figures
//! and then `store/raw throughput ratio` from 1024 fragments per side,
//! alternating one by one (target ≥ 0.90; see the comment there for why
//! the slowest 5 % of each side are left out, and the ratio with them).
//! STORE_BENCH_DIR picks the directory (default: target/tmp).

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput};
use fragmenter::fragment::{CloseReason, FragmentSummary};
use fragmenter::media::{AudioCodec, AudioTrack, VideoCodec, VideoTrack};
use fragmenter::{FragmentEvent, Frame, Timestamp, Track, TrackId};

use edge_agent::store::{OnFull, Store, StoreConfig, StreamWriter, SystemClock};

const CAP_MB: u64 = 256;
const SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
const BASE_NS: u64 = 1_795_651_200_000_000_000;

fn tracks() -> Vec<Track> {
    vec![
        Track::new(
            TrackId::new(1).unwrap(),
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
            TrackId::new(2).unwrap(),
            "audio",
            AudioTrack {
                codec: AudioCodec::Aac {
                    asc: Bytes::from_static(&[0x11, 0x90]),
                },
                sample_rate: 48_000,
                channels: 2,
            },
        ),
    ]
}

/// One 2-second fragment's frames, interleaved by decode time, starting at
/// fragment number `n`. Payloads are shared, as capture's would be.
fn fragment(n: u64, video_key: &Bytes, video_p: &Bytes, audio: &Bytes) -> Vec<FragmentEvent> {
    let start = BASE_NS + n * 2_000_000_000;
    let mut frames = Vec::with_capacity(160);
    let vstep = 1_000_000_000 / 30;
    let astep = 1_000_000_000u64 * 1024 / 48_000;
    for i in 0..60u64 {
        frames.push(Frame {
            track: TrackId::new(1).unwrap(),
            pts: Timestamp::from_nanos(start + i * vstep),
            dts: Timestamp::from_nanos(start + i * vstep),
            duration: Duration::from_nanos(vstep),
            keyframe: i == 0,
            data: if i == 0 { video_key.clone() } else { video_p.clone() },
        });
    }
    for i in 0..94u64 {
        frames.push(Frame {
            track: TrackId::new(2).unwrap(),
            pts: Timestamp::from_nanos(start + i * astep),
            dts: Timestamp::from_nanos(start + i * astep),
            duration: Duration::from_nanos(astep),
            keyframe: true,
            data: audio.clone(),
        });
    }
    frames.sort_by_key(|f| (f.dts, f.track));
    let mut ev = vec![FragmentEvent::Start {
        seq: n,
        start: Timestamp::from_nanos(start),
    }];
    let bytes = frames.iter().map(|f| f.data.len() as u64).sum();
    let end = frames.iter().map(|f| f.pts + f.duration).max().unwrap();
    let last_pts = frames.iter().map(|f| f.pts).max().unwrap();
    let count = frames.len() as u32;
    ev.extend(frames.into_iter().map(FragmentEvent::Frame));
    ev.push(FragmentEvent::End(FragmentSummary {
        seq: n,
        start: Timestamp::from_nanos(start),
        end,
        last_pts,
        frames: count,
        bytes,
        track_frames: [60, 94, 0],
        metadata: Vec::new(),
        closed_by: CloseReason::KeyFrame,
    }));
    ev
}

struct Input {
    fragments: Vec<Vec<FragmentEvent>>,
    bytes_per_fragment: u64,
}

fn input() -> Input {
    // Incompressible payloads (a disk that compresses must not flatter either side).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |n: usize| {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            v.extend_from_slice(&x.to_le_bytes());
        }
        v.truncate(n);
        Bytes::from(v)
    };
    let (key, p, audio) = (noise(150_000), noise(14_400), noise(380));
    // 1 MB per fragment: 150 000 + 59 × 14 400 + 94 × 380.
    let fragments: Vec<_> = (0..64).map(|n| fragment(n, &key, &p, &audio)).collect();
    let bytes_per_fragment = 150_000 + 59 * 14_400 + 94 * 380;
    Input {
        fragments,
        bytes_per_fragment,
    }
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("STORE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_TARGET_TMPDIR")));
    let d = base.join("store_append");
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).unwrap();
    d
}

/// The store side: one writer, steady state under the cap.
struct StoreSide {
    _store: Store,
    w: StreamWriter,
    next: u64,
}

impl StoreSide {
    fn new(dir: &Path) -> Self {
        let cfg = StoreConfig {
            max_size_mb: CAP_MB,
            on_full: OnFull::DeleteOldestMedia,
            max_age_hours: 0,
            min_free_mb: 0,
            segment_max_bytes: SEGMENT_BYTES,
            segment_max_duration: Duration::from_secs(1 << 30),
            ..StoreConfig::new(dir.join("store"))
        };
        let store = Store::open(cfg, Arc::new(SystemClock)).unwrap();
        let w = store.open_stream("bench", &tracks(), true).unwrap();
        StoreSide {
            _store: store,
            w,
            next: 0,
        }
    }

    fn append(&mut self, input: &Input) {
        // Shift timestamps forward so fragments keep increasing.
        let i = self.next;
        self.next += 1;
        let ev = &input.fragments[(i % input.fragments.len() as u64) as usize];
        let shift = Duration::from_secs(2 * (i - i % input.fragments.len() as u64));
        for e in ev {
            let e = match e {
                FragmentEvent::Start { seq, start } => FragmentEvent::Start {
                    seq: *seq,
                    start: *start + shift,
                },
                FragmentEvent::Frame(f) => {
                    let mut f = f.clone();
                    f.pts = f.pts + shift;
                    f.dts = f.dts + shift;
                    FragmentEvent::Frame(f)
                }
                FragmentEvent::End(s) => FragmentEvent::End(s.clone()),
            };
            self.w.write(&e).unwrap();
        }
    }
}

/// The raw side: the same payloads appended to files with one fdatasync per
/// fragment, the same file size and the same cap.
struct RawSide {
    dir: PathBuf,
    file: Option<(BufWriter<File>, u64)>,
    files: std::collections::VecDeque<(PathBuf, u64)>,
    total: u64,
    n: u64,
}

impl RawSide {
    fn new(dir: &Path) -> Self {
        let dir = dir.join("raw");
        fs::create_dir_all(&dir).unwrap();
        RawSide {
            dir,
            file: None,
            files: Default::default(),
            total: 0,
            n: 0,
        }
    }

    fn append(&mut self, input: &Input) {
        let ev = &input.fragments[(self.n % input.fragments.len() as u64) as usize];
        if self.file.as_ref().is_none_or(|(_, len)| *len >= SEGMENT_BYTES) {
            let path = self.dir.join(format!("{:020}.raw", self.n));
            let f = File::create(&path).unwrap();
            File::open(&self.dir).unwrap().sync_all().unwrap();
            self.files.push_back((path, 0));
            self.file = Some((BufWriter::with_capacity(256 * 1024, f), 0));
        }
        self.n += 1;
        let (w, len) = self.file.as_mut().unwrap();
        for e in ev {
            if let FragmentEvent::Frame(f) = e {
                w.write_all(&f.data).unwrap();
                *len += f.data.len() as u64;
                self.total += f.data.len() as u64;
            }
        }
        w.flush().unwrap();
        w.get_ref().sync_data().unwrap();
        self.files.back_mut().unwrap().1 = *len;
        while self.total > CAP_MB * 1024 * 1024 && self.files.len() > 1 {
            let (p, l) = self.files.pop_front().unwrap();
            fs::remove_file(p).unwrap();
            self.total -= l;
        }
    }
}

fn main() {
    let input = input();
    let dir = bench_dir();
    let full = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    {
        let mut g = c.benchmark_group("append_1080p30_4mbps");
        g.throughput(Throughput::Bytes(input.bytes_per_fragment));
        let mut raw = RawSide::new(&dir);
        g.bench_function("raw_write_fdatasync", |b| b.iter(|| raw.append(&input)));
        let mut st = StoreSide::new(&dir);
        g.bench_function("store_append", |b| b.iter(|| st.append(&input)));
        g.finish();
    }
    c.final_summary();

    // The ratio: fresh directories, one untimed round each, then
    // alternating rounds so both sides see the same disk state.
    let (rounds, per_round) = if full { (16, 64) } else { (1, 4) };
    let ratio_dir = dir.join("ratio");
    let mut raw = RawSide::new(&ratio_dir);
    let mut st = StoreSide::new(&ratio_dir);
    for _ in 0..per_round {
        raw.append(&input);
        st.append(&input);
    }
    // Fragment by fragment, alternating, each append timed. The ratio is
    // of the means with the slowest 5 % of each side left out: this disk
    // (a VM's) now and then takes 20–100 ms over one fdatasync, and each
    // side deletes a 64 MB file every 64 fragments, an unlink of several
    // milliseconds; per-round medians or plain totals swung the ratio from
    // 0.78 to 1.10 between runs with those landing on one side or the
    // other. Both sides lose the same share, so neither is favoured.
    let (mut raw_t, mut st_t) = (Vec::new(), Vec::new());
    for _ in 0..rounds * per_round {
        let t = Instant::now();
        raw.append(&input);
        raw_t.push(t.elapsed());
        let t = Instant::now();
        st.append(&input);
        st_t.push(t.elapsed());
    }
    let mean = |t: &[Duration]| t.iter().sum::<Duration>().as_secs_f64() / t.len() as f64;
    let trimmed_mean = |mut t: Vec<Duration>| {
        t.sort();
        mean(&t[..t.len() - t.len() / 20])
    };
    let untrimmed = mean(&raw_t) / mean(&st_t);
    let mb = input.bytes_per_fragment as f64 / 1e6;
    let raw_mbs = mb / trimmed_mean(raw_t);
    let st_mbs = mb / trimmed_mean(st_t);
    let stats = st._store.stats();
    println!(
        "store_append: raw {raw_mbs:.1} MB/s, store {st_mbs:.1} MB/s, store/raw throughput ratio {:.3} \
         (target >= 0.90; {} fragments each, alternating, slowest 5 % left out; with them {untrimmed:.3}; \
         store fdatasync mean {:.2} ms, max {:.2} ms)",
        st_mbs / raw_mbs,
        rounds * per_round,
        stats.fsync.total.as_secs_f64() * 1e3 / stats.fsync.count.max(1) as f64,
        stats.fsync.max.as_secs_f64() * 1e3,
    );
    drop((raw, st));
    let _ = fs::remove_dir_all(&dir);
}
