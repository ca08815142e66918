//! Synthetic streams for property tests: shapes of real captures (B-frame
//! reordering, timestamp jitter, missing or late audio, long GOPs, sensor-only
//! streams) generated deterministically from a seed.

use std::time::Duration;

use bytes::Bytes;

use crate::codec::g711::Law;
use crate::media::*;

/// 2026-11-26T00:00:00Z: streams start at a real wall-clock time.
pub const BASE_NS: u64 = 1_795_651_200_000_000_000;

pub fn video_track() -> Track {
    Track::new(
        TrackId::new(1).unwrap(),
        "video",
        VideoTrack {
            // A real x264 640x360 avcC is not needed here: writers copy it as-is.
            codec: VideoCodec::H264 {
                avcc: Bytes::from_static(&[1, 0x64, 0, 0x1e, 0xff, 0xe0, 0, 0]),
            },
            width: 640,
            height: 360,
        },
    )
}

pub fn audio_track(n: u8) -> Track {
    Track::new(
        TrackId::new(n).unwrap(),
        "audio",
        AudioTrack {
            codec: AudioCodec::Aac {
                asc: Bytes::from_static(&[0x11, 0x90]),
            },
            sample_rate: 48_000,
            channels: 2,
        },
    )
}

pub fn g711_track(n: u8) -> Track {
    Track::new(
        TrackId::new(n).unwrap(),
        "pcmu",
        AudioTrack {
            codec: AudioCodec::G711(Law::MuLaw),
            sample_rate: 8000,
            channels: 1,
        },
    )
}

pub fn sensor_track(n: u8) -> Track {
    Track::new(
        TrackId::new(n).unwrap(),
        "lidar",
        SensorTrack {
            kind: SensorKind::Lidar,
            codec_id: SensorCodecId::new("O_OUSTER/LIDAR_PACKET").unwrap(),
            private: Bytes::from_static(b"{\"model\":\"test\"}"),
        },
    )
}

/// What the generated stream looks like.
#[derive(Clone, Debug)]
pub struct Shape {
    pub video: bool,
    pub fps: u32,
    pub gop: u32,
    pub bframes: bool,
    pub audio: Audio,
    pub sensor: bool,
    pub jitter_frac: f64,
    pub seconds: u32,
    pub seed: u64,
    /// Round timestamps to whole milliseconds (what survives Matroska).
    pub ms_aligned: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Audio {
    None,
    Present,
    StartsLate(u32),
    DeclaredButSilent,
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Shape {
    pub fn tracks(&self) -> Vec<Track> {
        let mut t = Vec::new();
        if self.video {
            t.push(video_track());
        }
        if self.audio != Audio::None {
            t.push(audio_track(t.len() as u8 + 1));
        }
        if self.sensor {
            t.push(sensor_track(t.len() as u8 + 1));
        }
        t
    }

    fn ts(&self, ns: f64) -> Timestamp {
        let ns = BASE_NS + ns as u64;
        Timestamp::from_nanos(if self.ms_aligned {
            ns / 1_000_000 * 1_000_000
        } else {
            ns
        })
    }

    /// Frames in arrival order: each track in decode order, tracks merged
    /// with a random capture delay of up to 150 ms.
    pub fn frames(&self) -> Vec<Frame> {
        let mut rng = Rng(self.seed);
        let mut per_track: Vec<Vec<(f64, Frame)>> = Vec::new();
        let mut next_id = 1u8;
        let payload = |rng: &mut Rng, len: usize| {
            let b: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            Bytes::from(b)
        };
        if self.video {
            let id = TrackId::new(next_id).unwrap();
            next_id += 1;
            let period = 1e9 / self.fps as f64;
            let n = (self.seconds * self.fps) as usize;
            let mut out = Vec::new();
            // Decode order within each GOP: I, then P B B triples.
            let mut order = Vec::with_capacity(n);
            let mut g = 0;
            while g < n {
                let len = (self.gop as usize).min(n - g);
                order.push(g);
                let mut k = 1;
                while k < len {
                    if self.bframes && k + 2 < len {
                        order.extend([g + k + 2, g + k, g + k + 1]);
                        k += 3;
                    } else {
                        order.push(g + k);
                        k += 1;
                    }
                }
                g += len;
            }
            for (pos, &disp) in order.iter().enumerate() {
                let j = rng.unit() * self.jitter_frac * period / 2.0;
                let dts = pos as f64 * period + j;
                let pts = (disp + usize::from(self.bframes)) as f64 * period + j;
                let key = disp % self.gop as usize == 0;
                let len = if key { 2000 } else { 200 } + (rng.next() % 100) as usize;
                let f = Frame {
                    track: id,
                    pts: self.ts(pts),
                    dts: self.ts(dts),
                    duration: Duration::from_nanos(period as u64),
                    keyframe: key,
                    data: payload(&mut rng, len),
                };
                out.push((dts + rng.unit() * 150e6, f));
            }
            per_track.push(out);
        }
        if self.audio != Audio::None {
            let id = TrackId::new(next_id).unwrap();
            next_id += 1;
            let mut out = Vec::new();
            if self.audio != Audio::DeclaredButSilent {
                let period = 1024.0 / 48_000.0 * 1e9;
                let start = match self.audio {
                    Audio::StartsLate(ms) => ms as f64 * 1e6,
                    _ => 0.0,
                };
                let mut t = start;
                while t < self.seconds as f64 * 1e9 {
                    let j = rng.unit() * self.jitter_frac * period / 2.0;
                    let f = Frame {
                        track: id,
                        pts: self.ts(t + j),
                        dts: self.ts(t + j),
                        duration: Duration::from_nanos(period as u64),
                        keyframe: true,
                        data: payload(&mut rng, 64),
                    };
                    out.push((t + rng.unit() * 150e6, f));
                    t += period;
                }
            }
            per_track.push(out);
        }
        if self.sensor {
            let id = TrackId::new(next_id).unwrap();
            let period = 1e8;
            let mut out = Vec::new();
            let mut t = 0.0;
            while t < self.seconds as f64 * 1e9 {
                let f = Frame {
                    track: id,
                    pts: self.ts(t),
                    dts: self.ts(t),
                    duration: Duration::from_nanos(period as u64),
                    keyframe: true,
                    data: payload(&mut rng, 500),
                };
                out.push((t + rng.unit() * 150e6, f));
                t += period;
            }
            per_track.push(out);
        }
        // Arrival order: merge by arrival time, but never reorder a track.
        for track in &mut per_track {
            let mut latest = f64::MIN;
            for (arrival, _) in track.iter_mut() {
                latest = latest.max(*arrival);
                *arrival = latest;
            }
        }
        let mut all: Vec<(f64, usize, Frame)> = per_track
            .into_iter()
            .enumerate()
            .flat_map(|(i, v)| v.into_iter().map(move |(a, f)| (a, i, f)))
            .collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        all.into_iter().map(|(_, _, f)| f).collect()
    }
}
