//! The synthetic stream the benchmarks send: 1080p30 H.264 and 48 kHz AAC in
//! 2 s fragments, frames sized like a real encoder's (a key frame of 15 % of
//! the fragment's video bytes, then 59 equal P-frames; 94 AAC frames of
//! 380 bytes), payloads incompressible. The same shape as
//! `agent/benches/store_append.rs`.

use std::time::Duration;

use bytes::Bytes;
use fragmenter::fragment::{CloseReason, FragmentSummary};
use fragmenter::media::{AudioCodec, AudioTrack, VideoCodec, VideoTrack};
use fragmenter::{FragmentEvent, Frame, Timestamp, Track, TrackId};

/// Video frames per second.
pub const FPS: u64 = 30;
/// Fragment duration.
pub const FRAGMENT: Duration = Duration::from_secs(2);
/// Video frames per fragment.
const VIDEO_FRAMES: u64 = 60;
/// AAC frames per fragment (1024 samples at 48 kHz: 21.3 ms each).
const AUDIO_FRAMES: u64 = 94;
/// Bytes of one AAC frame (about 143 kbit/s).
const AUDIO_BYTES: usize = 380;

/// The avcC x264 (`bitrate=4000 key-int-max=60`) gives 1080p30 I420: High
/// profile, level 4.0. A gateway parses it as capture would, so it must be
/// real.
const AVCC_1080P: &[u8] = &[
    0x01, 0x64, 0x00, 0x28, 0xff, 0xe1, 0x00, 0x1e, 0x67, 0x64, 0x00, 0x28, 0xac, 0xd9, 0x40, 0x78, 0x02, 0x27, 0xe5,
    0xc0, 0x5a, 0x80, 0x80, 0x80, 0xa0, 0x00, 0x00, 0x03, 0x00, 0x20, 0x00, 0x00, 0x07, 0x91, 0xe3, 0x06, 0x32, 0xc0,
    0x01, 0x00, 0x05, 0x68, 0xeb, 0xec, 0xb2, 0x2c,
];

/// Video and audio track, as capture makes them.
pub fn tracks() -> Vec<Track> {
    vec![
        Track::new(
            TrackId::new(1).expect("1 is a track id"),
            "video",
            VideoTrack {
                codec: VideoCodec::H264 {
                    avcc: Bytes::from_static(AVCC_1080P),
                },
                width: 1920,
                height: 1080,
            },
        ),
        Track::new(
            TrackId::new(2).expect("2 is a track id"),
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

/// The payloads of one fragment's frames at a bit rate: shared, as
/// capture's would be.
#[derive(Clone)]
pub struct Payloads {
    key: Bytes,
    p: Bytes,
    audio: Bytes,
}

impl Payloads {
    /// Frames for `mbps` megabits per second in total (video and audio).
    pub fn new(mbps: f64) -> Payloads {
        let per_fragment = (mbps * 1e6 / 8.0 * FRAGMENT.as_secs_f64()) as usize;
        let audio = AUDIO_FRAMES as usize * AUDIO_BYTES;
        let video = per_fragment.saturating_sub(audio).max(VIDEO_FRAMES as usize * 64);
        let key = video * 15 / 100;
        let p = (video - key) / (VIDEO_FRAMES as usize - 1);
        Payloads {
            key: noise(key, 0x2545_f491_4f6c_dd1d),
            p: noise(p, 0x9e37_79b9_7f4a_7c15),
            audio: noise(AUDIO_BYTES, 0xd1b5_4a32_d192_ed03),
        }
    }

    /// Payload bytes of one fragment.
    pub fn fragment_bytes(&self) -> u64 {
        (self.key.len() + (VIDEO_FRAMES as usize - 1) * self.p.len() + AUDIO_FRAMES as usize * self.audio.len()) as u64
    }
}

/// Incompressible bytes (a disk or link that compresses flatters no one).
fn noise(n: usize, mut x: u64) -> Bytes {
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(n);
    Bytes::from(v)
}

/// One fragment's frames starting at `start`, in decode order (video and
/// audio interleaved).
pub fn fragment_frames(start: Timestamp, payloads: &Payloads) -> Vec<Frame> {
    let vstep = 1_000_000_000 / FPS;
    let astep = 1_000_000_000u64 * 1024 / 48_000;
    let at = |ns: u64| start + Duration::from_nanos(ns);
    let mut frames = Vec::with_capacity((VIDEO_FRAMES + AUDIO_FRAMES) as usize);
    for i in 0..VIDEO_FRAMES {
        frames.push(Frame {
            track: TrackId::new(1).expect("1 is a track id"),
            pts: at(i * vstep),
            dts: at(i * vstep),
            duration: Duration::from_nanos(vstep),
            keyframe: i == 0,
            data: if i == 0 {
                payloads.key.clone()
            } else {
                payloads.p.clone()
            },
        });
    }
    for i in 0..AUDIO_FRAMES {
        frames.push(Frame {
            track: TrackId::new(2).expect("2 is a track id"),
            pts: at(i * astep),
            dts: at(i * astep),
            duration: Duration::from_nanos(astep),
            keyframe: true,
            data: payloads.audio.clone(),
        });
    }
    frames.sort_by_key(|f| (f.dts, f.track));
    frames
}

/// What a writer is told at the end of a fragment of these frames.
pub fn summary(seq: u64, start: Timestamp, frames: &[Frame]) -> FragmentSummary {
    let mut track_frames = [0u32; TrackId::MAX_TRACKS as usize];
    for f in frames {
        track_frames[f.track.index()] += 1;
    }
    FragmentSummary {
        seq,
        start,
        end: frames.iter().map(|f| f.pts + f.duration).max().unwrap_or(start),
        last_pts: frames.iter().map(|f| f.pts).max().unwrap_or(start),
        frames: frames.len() as u32,
        bytes: frames.iter().map(|f| f.data.len() as u64).sum(),
        track_frames,
        metadata: Vec::new(),
        closed_by: CloseReason::KeyFrame,
    }
}

/// A whole fragment as the fragmenter would emit it.
pub fn fragment_events(seq: u64, start: Timestamp, payloads: &Payloads) -> Vec<FragmentEvent> {
    let frames = fragment_frames(start, payloads);
    let end = summary(seq, start, &frames);
    let mut ev = Vec::with_capacity(frames.len() + 2);
    ev.push(FragmentEvent::Start { seq, start });
    ev.extend(frames.into_iter().map(FragmentEvent::Frame));
    ev.push(FragmentEvent::End(end));
    ev
}

/// CLOCK_REALTIME in nanoseconds: what the latency benchmark stamps into
/// payloads and the sink compares with on arrival (one machine, one clock).
pub fn realtime_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A copy of `data` whose first 8 bytes are `ns` (little-endian).
pub fn stamped(data: &Bytes, ns: u64) -> Bytes {
    let mut v = data.to_vec();
    if v.len() < 8 {
        v.resize(8, 0);
    }
    v[..8].copy_from_slice(&ns.to_le_bytes());
    Bytes::from(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_megabits_make_a_megabyte_every_two_seconds() {
        let p = Payloads::new(4.0);
        let b = p.fragment_bytes();
        assert!((990_000..=1_000_000).contains(&b), "{b}");
        let frames = fragment_frames(Timestamp::from_millis(1_000), &p);
        assert_eq!(frames.len(), 154);
        assert!(frames[0].keyframe && frames[0].track.get() == 1);
        assert!(frames.windows(2).all(|w| w[0].dts <= w[1].dts));
        let s = summary(0, Timestamp::from_millis(1_000), &frames);
        assert_eq!(s.track_frames[..2], [60, 94]);
        assert_eq!(s.bytes, b);
        // The next fragment starts after this one's last frame.
        assert!(s.last_pts < Timestamp::from_millis(3_000));
    }

    #[test]
    fn the_gateway_reads_the_tracks_back() {
        let mut w = fragmenter::mkv::MkvWriter::new(&tracks(), Default::default()).unwrap();
        let mut header = Vec::new();
        w.write_header(&mut header);
        let mut r = fragmenter::mkv::MkvReader::default();
        r.feed(&header);
        let Some(fragmenter::mkv::MkvEvent::Header(h)) = r.next_event().unwrap() else {
            panic!("no header")
        };
        let back: Vec<Track> = h
            .tracks
            .iter()
            .map(|t| crate::kvs::tracks::track_from_entry(t).unwrap())
            .collect();
        assert_eq!(back, tracks());
    }
}
