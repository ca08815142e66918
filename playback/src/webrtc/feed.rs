//! Live frames for WebRTC viewers: one broadcast per stream, fed by that
//! stream's recorder, shared by every viewer.
//!
//! The recorder converts a frame once into what RTP wants (H.264 in Annex B,
//! Opus as is, sensor frames as packed points) and only while somebody
//! listens, so a stream nobody watches pays one atomic load per frame.
//! Viewers that fall behind lose frames (the broadcast drops the oldest) and
//! wait for the next key frame: capture never waits for a viewer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fragmenter::Timestamp;
use tokio::sync::broadcast;

/// Frames a viewer may lag before it drops to the next key frame: about
/// four seconds of 30 fps video with its audio.
const CAPACITY: usize = 256;
/// Key frames are expensive (a 4 Mbit/s stream's IDR is 10–30 × a P frame):
/// however many viewers ask, the encoder hears at most one request per
/// this interval.
pub const KEY_FRAME_INTERVAL: Duration = Duration::from_millis(500);

/// What a live stream carries, as WebRTC sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    /// A camera stream (video, maybe audio).
    Media,
    /// A LIDAR sensor (points on the data channel).
    Lidar,
    /// A RADAR sensor (points on the data channel).
    Radar,
}

impl FeedKind {
    /// Lower-case name for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedKind::Media => "media",
            FeedKind::Lidar => "lidar",
            FeedKind::Radar => "radar",
        }
    }
}

/// The video codec a media stream carries now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedVideo {
    /// Not known yet (the source is starting).
    Unknown,
    /// H.264: WebRTC passes it through.
    H264,
    /// Something WebRTC here cannot pass through (H.265: browsers do not
    /// decode it over WebRTC).
    Other(&'static str),
    /// No video track.
    None,
}

/// One frame, ready for RTP or the data channel.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    /// Capture time (UTC): RTP timestamps are derived from it, so a viewer
    /// can tell each frame's age.
    pub pts: Timestamp,
    /// The payload.
    pub payload: LivePayload,
}

/// A live frame's payload.
#[derive(Clone, Debug)]
pub enum LivePayload {
    /// One H.264 access unit in Annex B (start codes), SPS/PPS in band
    /// before every IDR.
    H264 {
        /// The access unit.
        annexb: Bytes,
        /// An IDR: a viewer may start here.
        key: bool,
    },
    /// One Opus packet (48 kHz clock).
    Opus(Bytes),
    /// A sensor frame as data-channel messages ([`super::points`]).
    Points(Arc<[Bytes]>),
}

/// What became of a key-frame request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyFrameRequest {
    /// Passed to the encoder now.
    Sent,
    /// Another request went out less than [`KEY_FRAME_INTERVAL`] ago; the
    /// key frame it brings serves this one too.
    Coalesced,
    /// The source has no encoder to ask (a file, or not started), or the
    /// pipeline did not take the request.
    Unsupported,
}

impl KeyFrameRequest {
    /// A key frame is on its way.
    pub fn coming(self) -> bool {
        self != KeyFrameRequest::Unsupported
    }

    /// Lower-case name for JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyFrameRequest::Sent => "sent",
            KeyFrameRequest::Coalesced => "coalesced",
            KeyFrameRequest::Unsupported => "unsupported",
        }
    }
}

/// One stream's live feed.
pub struct StreamFeed {
    name: String,
    kind: FeedKind,
    /// Position in the agent's list of sensors (data-channel messages
    /// carry it instead of the name).
    index: u8,
    tx: broadcast::Sender<LiveFrame>,
    state: RwLock<FeedState>,
    key_request: Mutex<Option<KeyRequest>>,
}

struct FeedState {
    video: FeedVideo,
    opus: bool,
}

struct KeyRequest {
    ask: Box<dyn Fn() -> bool + Send + Sync>,
    last: Option<Instant>,
    sent: u64,
}

impl StreamFeed {
    /// The stream's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What it carries.
    pub fn kind(&self) -> FeedKind {
        self.kind
    }

    /// Index among sensors (0 for media streams).
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The video codec now.
    pub fn video(&self) -> FeedVideo {
        self.state.read().unwrap_or_else(|e| e.into_inner()).video
    }

    /// Whether the stream has an Opus track now.
    pub fn has_opus(&self) -> bool {
        self.state.read().unwrap_or_else(|e| e.into_inner()).opus
    }

    /// Someone is watching: the recorder converts and publishes frames
    /// only then.
    pub fn has_viewers(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// Viewers subscribed now.
    pub fn viewers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// Publish a frame to every viewer (dropped when nobody watches).
    pub fn publish(&self, frame: LiveFrame) {
        let _ = self.tx.send(frame);
    }

    /// Subscribe to the frames published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<LiveFrame> {
        self.tx.subscribe()
    }

    /// A (re)started source says what it carries and how to ask its
    /// encoder for a key frame.
    pub fn set_source(&self, video: FeedVideo, opus: bool, key_frame: Option<Box<dyn Fn() -> bool + Send + Sync>>) {
        *self.state.write().unwrap_or_else(|e| e.into_inner()) = FeedState { video, opus };
        let mut k = self.key_request.lock().unwrap_or_else(|e| e.into_inner());
        let sent = k.as_ref().map_or(0, |k| k.sent);
        *k = key_frame.map(|ask| KeyRequest { ask, last: None, sent });
    }

    /// Ask the encoder for a key frame, at most once per
    /// [`KEY_FRAME_INTERVAL`] whoever asks.
    pub fn request_key_frame(&self) -> KeyFrameRequest {
        let mut guard = self.key_request.lock().unwrap_or_else(|e| e.into_inner());
        let Some(k) = guard.as_mut() else {
            return KeyFrameRequest::Unsupported;
        };
        if k.last.is_some_and(|t| t.elapsed() < KEY_FRAME_INTERVAL) {
            return KeyFrameRequest::Coalesced;
        }
        k.last = Some(Instant::now());
        k.sent += 1;
        if (k.ask)() {
            KeyFrameRequest::Sent
        } else {
            KeyFrameRequest::Unsupported
        }
    }

    /// Key frame requests passed to the encoder so far.
    pub fn key_frames_requested(&self) -> u64 {
        self.key_request
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map_or(0, |k| k.sent)
    }
}

/// Every stream's feed, by name.
#[derive(Default)]
pub struct Feeds {
    feeds: RwLock<BTreeMap<String, Arc<StreamFeed>>>,
}

impl Feeds {
    /// No feeds.
    pub fn new() -> Self {
        Self::default()
    }

    /// The feed of `name`, created on first use. Sensors are numbered in
    /// the order they are added.
    pub fn add(&self, name: &str, kind: FeedKind) -> Arc<StreamFeed> {
        let mut feeds = self.feeds.write().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = feeds.get(name) {
            return f.clone();
        }
        let index = feeds.values().filter(|f| f.kind != FeedKind::Media).count();
        let feed = Arc::new(StreamFeed {
            name: name.to_owned(),
            kind,
            index: u8::try_from(index).unwrap_or(u8::MAX),
            tx: broadcast::channel(CAPACITY).0,
            state: RwLock::new(FeedState {
                video: if kind == FeedKind::Media {
                    FeedVideo::Unknown
                } else {
                    FeedVideo::None
                },
                opus: false,
            }),
            key_request: Mutex::new(None),
        });
        feeds.insert(name.to_owned(), feed.clone());
        feed
    }

    /// The feed of `name`, if the agent has that stream.
    pub fn get(&self, name: &str) -> Option<Arc<StreamFeed>> {
        self.feeds.read().unwrap_or_else(|e| e.into_inner()).get(name).cloned()
    }

    /// Every sensor feed, in index order.
    pub fn sensors(&self) -> Vec<Arc<StreamFeed>> {
        let mut v: Vec<_> = self
            .feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|f| f.kind != FeedKind::Media)
            .cloned()
            .collect();
        v.sort_by_key(|f| f.index);
        v
    }

    /// Every feed.
    pub fn all(&self) -> Vec<Arc<StreamFeed>> {
        self.feeds
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn frames_reach_every_subscriber_and_none_are_kept_without_one() {
        let feeds = Feeds::new();
        let f = feeds.add("cam", FeedKind::Media);
        assert!(!f.has_viewers());
        f.publish(LiveFrame {
            pts: Timestamp::from_millis(1),
            payload: LivePayload::Opus(Bytes::from_static(b"x")),
        });
        let (mut a, mut b) = (f.subscribe(), f.subscribe());
        assert_eq!(f.viewers(), 2);
        f.publish(LiveFrame {
            pts: Timestamp::from_millis(2),
            payload: LivePayload::Opus(Bytes::from_static(b"y")),
        });
        for rx in [&mut a, &mut b] {
            let got = rx.try_recv().unwrap();
            assert_eq!(got.pts, Timestamp::from_millis(2));
            assert!(
                rx.try_recv().is_err(),
                "the frame published before subscribing was kept"
            );
        }
    }

    #[test]
    fn key_frame_requests_are_rate_limited_across_viewers() {
        let feeds = Feeds::new();
        let f = feeds.add("cam", FeedKind::Media);
        assert_eq!(
            f.request_key_frame(),
            KeyFrameRequest::Unsupported,
            "no source yet: nothing to ask"
        );
        let asked = Arc::new(AtomicU32::new(0));
        let a = asked.clone();
        f.set_source(
            FeedVideo::H264,
            true,
            Some(Box::new(move || {
                a.fetch_add(1, Ordering::Relaxed);
                true
            })),
        );
        assert_eq!(f.request_key_frame(), KeyFrameRequest::Sent);
        for _ in 0..10 {
            assert_eq!(f.request_key_frame(), KeyFrameRequest::Coalesced);
        }
        assert_eq!(asked.load(Ordering::Relaxed), 1);
        std::thread::sleep(KEY_FRAME_INTERVAL + Duration::from_millis(20));
        assert_eq!(f.request_key_frame(), KeyFrameRequest::Sent);
        assert_eq!(f.key_frames_requested(), 2);
        assert_eq!((f.video(), f.has_opus()), (FeedVideo::H264, true));
    }

    #[test]
    fn sensors_are_numbered_in_the_order_they_are_added() {
        let feeds = Feeds::new();
        feeds.add("cam", FeedKind::Media);
        let l = feeds.add("lidar", FeedKind::Lidar);
        let r = feeds.add("radar", FeedKind::Radar);
        assert_eq!((l.index(), r.index()), (0, 1));
        assert_eq!(
            feeds.add("lidar", FeedKind::Lidar).index(),
            0,
            "adding again returns the same feed"
        );
        let names: Vec<_> = feeds.sensors().iter().map(|f| f.name().to_owned()).collect();
        assert_eq!(names, ["lidar", "radar"]);
        assert_eq!(feeds.get("cam").unwrap().video(), FeedVideo::Unknown);
        assert!(feeds.get("nope").is_none());
    }
}
