//! Talkback outputs: a WebRTC viewer's microphone played on the stream's
//! configured sink (`streams[].talkback`) and, with `talkback_record`,
//! stored as stream `{name}.talkback`.
//!
//! One viewer talks at a time per stream: two voices mixed into one
//! speaker (or two writers of one WAV file) help nobody, and the second
//! viewer is told so in the agent's log and `/api/streams`.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fragmenter::media::{AudioCodec, AudioTrack};
use fragmenter::{FragmentPolicy, Fragmenter, Frame, Timestamp, Track, TrackId};
use hardware::talkback::{TalkbackPlayer, TalkbackSink};
use playback::webrtc::talkback::{TalkbackOutput, TalkbackOutputs, TalkbackPacket};
use tracing::{info, warn};

use crate::store::Store;

/// Talkback fragments: short, so a conversation is in the store promptly.
const RECORD_FRAGMENT: Duration = Duration::from_secs(2);
/// Opus frame length browsers send.
const OPUS_FRAME: Duration = Duration::from_millis(20);

/// Per stream: where talkback goes.
#[derive(Clone, Debug)]
pub struct TalkbackConfig {
    /// Played here.
    pub sink: TalkbackSink,
    /// Also stored as `{stream}.talkback`.
    pub record: bool,
}

/// The agent's [`TalkbackOutputs`].
pub struct Talkback {
    streams: HashMap<String, TalkbackConfig>,
    talking: Arc<Mutex<HashSet<String>>>,
    store: Store,
    /// Recorder threads and players finishing: joined at shutdown so the
    /// last talkback fragment is stored and the WAV file complete.
    threads: Threads,
}

type Threads = Arc<Mutex<Vec<JoinHandle<()>>>>;

fn keep(threads: &Threads, t: JoinHandle<()>) {
    let mut all = threads.lock().unwrap_or_else(|e| e.into_inner());
    all.retain(|t| !t.is_finished());
    all.push(t);
}

/// Finish a player off the async runtime (draining takes up to 2 s).
fn finish_player(threads: &Threads, player: TalkbackPlayer) {
    match std::thread::Builder::new()
        .name("talkback-end".into())
        .spawn(move || player.finish())
    {
        Ok(t) => keep(threads, t),
        Err(e) => warn!(error = %e, "cannot start a thread to finish talkback; it is cut short"),
    }
}

impl Talkback {
    /// Outputs for the configured streams.
    pub fn new(streams: HashMap<String, TalkbackConfig>, store: Store) -> Self {
        Talkback {
            streams,
            talking: Arc::default(),
            store,
            threads: Arc::default(),
        }
    }

    /// At shutdown, after every viewer was told to hang up: wait (up to
    /// `timeout`) for the talkers to stop, then for their outputs to finish.
    pub fn finish(&self, timeout: Duration) {
        let until = Instant::now() + timeout;
        while Instant::now() < until && !self.talking.lock().unwrap_or_else(|e| e.into_inner()).is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl TalkbackOutputs for Talkback {
    fn open(&self, stream: &str) -> Result<Box<dyn TalkbackOutput>, String> {
        let config = self
            .streams
            .get(stream)
            .filter(|c| c.sink != TalkbackSink::None || c.record)
            .ok_or_else(|| format!("stream {stream:?} has no talkback output (streams[].talkback = \"none\")"))?;
        if !self
            .talking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(stream.to_owned())
        {
            return Err(format!("another viewer is already talking on stream {stream:?}"));
        }
        let release = Release {
            talking: self.talking.clone(),
            stream: stream.to_owned(),
        };
        let player = match &config.sink {
            TalkbackSink::None => None,
            sink => Some(TalkbackPlayer::start(sink).map_err(|e| e.to_string())?),
        };
        let recorder = if config.record {
            match Recorder::start(self.store.clone(), format!("{stream}.talkback")) {
                Ok((r, t)) => {
                    keep(&self.threads, t);
                    Some(r)
                }
                Err(e) => {
                    if let Some(p) = player {
                        finish_player(&self.threads, p);
                    }
                    return Err(format!("{e:#}"));
                }
            }
        } else {
            None
        };
        Ok(Box::new(Output {
            player,
            recorder,
            threads: self.threads.clone(),
            _release: release,
        }))
    }
}

/// Frees the stream for the next talker when the output goes.
struct Release {
    talking: Arc<Mutex<HashSet<String>>>,
    stream: String,
}

impl Drop for Release {
    fn drop(&mut self) {
        self.talking
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.stream);
    }
}

struct Output {
    player: Option<TalkbackPlayer>,
    recorder: Option<Recorder>,
    threads: Threads,
    _release: Release,
}

impl TalkbackOutput for Output {
    fn push(&mut self, packet: TalkbackPacket) {
        if let Some(p) = self.player.as_mut() {
            p.push_rtp(&packet.rtp);
        }
        if let Some(r) = &self.recorder {
            let _ = r.tx.send((packet.timestamp, packet.payload));
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        // Finishing waits for the sink to drain (a WAV header, the last
        // fragment): not on the async runtime's threads.
        if let Some(p) = self.player.take() {
            finish_player(&self.threads, p);
        }
    }
}

/// Stores talkback RTP as Opus frames, on its own thread (the store's
/// writes and fsyncs block).
struct Recorder {
    /// (RTP timestamp, Opus packet).
    tx: mpsc::Sender<(u32, Bytes)>,
}

impl Recorder {
    fn start(store: Store, name: String) -> anyhow::Result<(Self, JoinHandle<()>)> {
        let track = Track::new(
            TrackId::new(1)?,
            "talkback",
            AudioTrack {
                codec: AudioCodec::Opus { pre_skip: 0 },
                sample_rate: 48_000,
                channels: 2,
            },
        );
        let tracks = vec![track];
        let mut fragmenter = Fragmenter::new(&tracks, FragmentPolicy::new(RECORD_FRAGMENT)?)?;
        let mut writer = store.open_stream(&name, &tracks, false)?;
        let (tx, rx) = mpsc::channel::<(u32, Bytes)>();
        let thread = std::thread::Builder::new().name("talkback-rec".into()).spawn(move || {
            let mut clock = RtpClock::default();
            let mut events = Vec::new();
            let (mut frames, mut refused) = (0u64, 0u64);
            for (ts, payload) in rx {
                let pts = clock.pts(ts);
                let frame = Frame {
                    track: tracks[0].id,
                    pts,
                    dts: pts,
                    duration: OPUS_FRAME,
                    keyframe: true,
                    data: payload,
                };
                match fragmenter.push(frame, &mut events) {
                    Ok(()) => frames += 1,
                    Err(e) => {
                        if refused == 0 {
                            warn!(stream = name, error = %e, "talkback frame refused");
                        }
                        refused += 1;
                    }
                }
                for ev in events.drain(..) {
                    if let Err(e) = writer.write(&ev) {
                        warn!(stream = name, error = %e, "talkback not stored");
                    }
                }
            }
            fragmenter.finish(&mut events);
            for ev in events.drain(..) {
                let _ = writer.write(&ev);
            }
            let _ = writer.close();
            info!(stream = name, frames, refused, "talkback recording closed");
        })?;
        Ok((Recorder { tx }, thread))
    }
}

/// Capture times for talkback frames: the arrival time of the first
/// packet, then the sender's RTP clock, so network jitter does not make
/// the stored timestamps wobble (or go backwards). Each step is measured
/// from the packet before, so the 32-bit clock can wrap any number of
/// times in a long conversation.
#[derive(Default)]
struct RtpClock {
    /// The newest packet's RTP timestamp and time.
    base: Option<(u32, Timestamp)>,
    last: Option<Timestamp>,
}

impl RtpClock {
    fn pts(&mut self, ts: u32) -> Timestamp {
        let (ts0, t0) = *self.base.get_or_insert((ts, hardware::now()));
        // Wrapping difference: a packet a little out of order comes out
        // slightly before its predecessor and is nudged forward.
        let ticks = ts.wrapping_sub(ts0) as i32;
        let ns = i128::from(ticks) * 1_000_000_000 / 48_000;
        let mut t = Timestamp::from_nanos((i128::from(t0.as_nanos()) + ns).max(0) as u64);
        if ticks > 0 {
            self.base = Some((ts, t));
        }
        if let Some(last) = self.last {
            if t <= last {
                t = last + Duration::from_nanos(1);
            }
        }
        self.last = Some(t);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talkback_times_follow_the_rtp_clock_and_never_go_back() {
        let mut c = RtpClock::default();
        let t0 = c.pts(u32::MAX - 479);
        // 960 ticks later across the 32-bit wrap: 20 ms.
        assert_eq!(c.pts(480).saturating_since(t0), Duration::from_millis(20));
        // A late packet from before: nudged after the last.
        let late = c.pts(u32::MAX - 479);
        assert!(late > t0 + Duration::from_millis(20), "a late packet went back in time");
        // Hours of talk: 20 ms steps across more than 2^31 ticks (12.4 h).
        let mut c = RtpClock::default();
        let first = c.pts(0);
        let mut ts = 0u32;
        for _ in 0..(1u64 << 32) / 960 + 10 {
            ts = ts.wrapping_add(960);
            c.pts(ts);
        }
        let steps = (1u64 << 32) / 960 + 10;
        let expected = Duration::from_millis(20 * steps);
        let got = c.last.unwrap().saturating_since(first);
        assert!(
            got.abs_diff(expected) < Duration::from_millis(1),
            "{got:?} vs {expected:?}"
        );
    }
}
