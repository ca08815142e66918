//! The WebRTC peer: WHEP viewers (`POST /whep/{stream}`), talkback and a
//! data channel for sensor frames and control.
//!
//! - Video is the camera's H.264 passed through: every viewer gets the same
//!   frames from the stream's [`feed::StreamFeed`]; nothing is encoded per
//!   viewer. Opus audio likewise, when the stream has an Opus track.
//! - RTP timestamps are the capture wall clock ([`session::rtp_timestamp`]),
//!   so a viewer can measure each frame's age.
//! - PLI/FIR and the data channel's `keyframe` message ask the encoder for
//!   a key frame, at most twice a second per stream.
//! - A viewer that hangs up (DELETE), fails, or stops answering consent
//!   checks for `disconnect` twice over is dropped.
//!
//! The protocol, data-channel messages included, is in the README
//! ("WebRTC").

pub mod annexb;
pub mod feed;
pub mod offer;
pub mod points;
mod rtcp;
pub mod session;
pub mod talkback;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::http::{respond, Body};
use feed::{FeedKind, FeedVideo, Feeds};
use session::{SessionStats, Shared};
use talkback::TalkbackOutputs;

/// A STUN or TURN server viewers' connections may use.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:host:port`, `turn:host:port?transport=udp`, …
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: String,
    /// TURN password.
    pub credential: String,
}

/// Settings of the WebRTC peer.
#[derive(Clone, Debug)]
pub struct WebRtcOptions {
    /// Local addresses for ICE host candidates (port 0: any). A wildcard
    /// means every non-loopback interface.
    pub udp: Vec<SocketAddr>,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServer>,
    /// Viewers at once, all streams together.
    pub max_viewers: usize,
    /// How long a silent viewer stays before it is dropped (consent
    /// freshness; the session ends after twice this).
    pub disconnect: Duration,
    /// How long an answered viewer has to connect.
    pub connect: Duration,
    /// How long to gather candidates before answering.
    pub gather: Duration,
}

impl Default for WebRtcOptions {
    fn default() -> Self {
        WebRtcOptions {
            udp: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            ice_servers: Vec::new(),
            max_viewers: 16,
            disconnect: Duration::from_secs(3),
            connect: Duration::from_secs(15),
            gather: Duration::from_secs(2),
        }
    }
}

/// A random 64-bit number (session ids, SSRCs, first sequence numbers).
pub(crate) fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    // RandomState is seeded from the OS per instance; hashing a counter and
    // the time through it gives unpredictable values without a new crate.
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    RandomState::new().hash_one((n, t))
}

struct Session {
    stream: String,
    /// Set once answered (PATCH adds candidates to it).
    pc: Option<Arc<dyn webrtc::peer_connection::PeerConnection>>,
    stop: watch::Sender<bool>,
    stats: Arc<SessionStats>,
    talkback: bool,
    started: Instant,
}

/// Counters of the whole peer.
#[derive(Debug, Default)]
struct Totals {
    sessions: AtomicU64,
    refused: AtomicU64,
}

/// The WHEP endpoint and its sessions.
pub struct Whep {
    feeds: Arc<Feeds>,
    options: WebRtcOptions,
    talkback: Option<Arc<dyn TalkbackOutputs>>,
    sessions: Mutex<HashMap<String, Session>>,
    totals: Totals,
}

/// A refusal: status and reason.
type Refusal = (StatusCode, String);

impl Whep {
    /// A WHEP endpoint serving `feeds`.
    pub fn new(feeds: Arc<Feeds>, options: WebRtcOptions, talkback: Option<Arc<dyn TalkbackOutputs>>) -> Arc<Self> {
        Arc::new(Whep {
            feeds,
            options,
            talkback,
            sessions: Mutex::new(HashMap::new()),
            totals: Totals::default(),
        })
    }

    /// The feeds recorders publish into.
    pub fn feeds(&self) -> &Arc<Feeds> {
        &self.feeds
    }

    /// Answer `/whep/…`; `Err(req)` hands back anything else.
    pub async fn handle(self: &Arc<Self>, req: Request<Incoming>) -> Result<Response<Body>, Request<Incoming>> {
        let path = req.uri().path().to_owned();
        let Some(rest) = path.strip_prefix("/whep/") else {
            return Err(req);
        };
        let parts: Vec<&str> = rest.split('/').collect();
        let method = req.method().clone();
        let response = match (method, parts.as_slice()) {
            (Method::OPTIONS, _) => {
                let mut r = respond(StatusCode::NO_CONTENT, Bytes::new(), "text/plain");
                r.headers_mut()
                    .insert("accept-post", HeaderValue::from_static("application/sdp"));
                r
            }
            (Method::POST, [stream]) => {
                let query = req.uri().query().map(str::to_owned);
                match self.post(stream, query.as_deref(), req).await {
                    Ok(r) => r,
                    Err((status, reason)) => self.refuse(status, &reason),
                }
            }
            (Method::PATCH, [stream, id]) => match self.patch(stream, id, req).await {
                Ok(()) => respond(StatusCode::NO_CONTENT, Bytes::new(), "text/plain"),
                Err((status, reason)) => self.refuse(status, &reason),
            },
            (Method::DELETE, [stream, id]) => match self.delete(stream, id) {
                Ok(()) => respond(StatusCode::OK, "ended\n", "text/plain; charset=utf-8"),
                Err((status, reason)) => self.refuse(status, &reason),
            },
            (_, [_]) => self.refuse(StatusCode::METHOD_NOT_ALLOWED, "POST an SDP offer to /whep/{stream}"),
            (_, [_, _]) => self.refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "PATCH (trickle ICE) or DELETE (hang up) a session",
            ),
            _ => self.refuse(StatusCode::NOT_FOUND, &format!("no such WHEP resource: {path}")),
        };
        Ok(cors(response))
    }

    fn refuse(&self, status: StatusCode, reason: &str) -> Response<Body> {
        self.totals.refused.fetch_add(1, Ordering::Relaxed);
        warn!(status = status.as_u16(), reason, "WHEP request refused");
        respond(status, format!("{reason}\n"), "text/plain; charset=utf-8")
    }

    async fn post(
        self: &Arc<Self>,
        stream: &str,
        query: Option<&str>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, Refusal> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        if !content_type.trim().to_ascii_lowercase().starts_with("application/sdp") {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type is {content_type:?}; a WHEP offer is application/sdp"),
            ));
        }
        let feed = self
            .feeds
            .get(stream)
            .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no stream {stream:?} on this agent")))?;
        match (feed.kind(), feed.video()) {
            (FeedKind::Media, FeedVideo::H264 | FeedVideo::Unknown) => {}
            (FeedKind::Media, FeedVideo::Other(codec)) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!("stream {stream:?} is {codec}; WebRTC viewers get H.264 only (browsers do not decode {codec} over WebRTC)"),
                ))
            }
            (FeedKind::Media, FeedVideo::None) => {
                return Err((StatusCode::BAD_REQUEST, format!("stream {stream:?} has no video")))
            }
            (kind, _) => {
                return Err((
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{stream:?} is a {} sensor: watch a camera stream and select it with ?sensors={stream}",
                        kind.as_str()
                    ),
                ))
            }
        }
        let sensors = self.select_sensors(query)?;
        let body = read_body(req, offer::MAX_OFFER).await?;
        let offer = offer::check(&body).map_err(|e| (StatusCode::BAD_REQUEST, e.to_string()))?;
        let stats = Arc::<SessionStats>::default();
        let (id, stop_rx) = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.len() >= self.options.max_viewers {
                return Err((
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{} viewers already (webrtc.max_viewers)", sessions.len()),
                ));
            }
            let id = format!("{:016x}{:016x}", random_u64(), random_u64());
            let (stop, stop_rx) = watch::channel(false);
            sessions.insert(
                id.clone(),
                Session {
                    stream: stream.to_owned(),
                    pc: None,
                    stop,
                    stats: stats.clone(),
                    talkback: offer.talkback,
                    started: Instant::now(),
                },
            );
            (id, stop_rx)
        };
        let shared = Arc::new(Shared {
            feed,
            sensors,
            talkback: if offer.talkback { self.talkback.clone() } else { None },
            stats,
            stop: stop_rx,
        });
        // Answered in a task of its own: if the viewer's HTTP request goes
        // away mid-answer (the handler future is dropped), the session is
        // still either started or ended, never left holding its slot and
        // a peer connection.
        let (me, sid, name) = (self.clone(), id.clone(), stream.to_owned());
        let task = tokio::spawn(async move { me.answer_and_run(sid, name, offer, shared).await });
        let answer = match task.await {
            Ok(r) => r?,
            Err(e) => {
                self.end(&id);
                return Err((StatusCode::INTERNAL_SERVER_ERROR, format!("answering failed: {e}")));
            }
        };
        let mut r = respond(StatusCode::CREATED, answer, "application/sdp");
        let location = format!("/whep/{stream}/{id}");
        if let Ok(v) = HeaderValue::from_str(&location) {
            r.headers_mut().insert(LOCATION, v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{id}\"")) {
            r.headers_mut().insert("etag", v);
        }
        Ok(r)
    }

    /// Answer `offer` for session `id`, start the session's task, and return
    /// the answer SDP.
    async fn answer_and_run(
        self: Arc<Self>,
        id: String,
        stream: String,
        offer: offer::Offer,
        shared: Arc<Shared>,
    ) -> Result<String, Refusal> {
        let peer = match session::answer(&offer, shared.clone(), &self.options).await {
            Ok(p) => p,
            Err(e) => {
                self.end(&id);
                let status = match e {
                    session::AnswerError::Offer(_) => StatusCode::BAD_REQUEST,
                    session::AnswerError::Agent(_) => StatusCode::INTERNAL_SERVER_ERROR,
                };
                return Err((status, e.to_string()));
            }
        };
        let answer = peer.answer.clone();
        tracing::debug!(offer = %offer.sdp, answer = %answer, "WHEP negotiation");
        let attached = match self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&id) {
            Some(s) => {
                s.pc = Some(peer.pc.clone());
                true
            }
            None => false,
        };
        if !attached {
            // Hung up (or the agent stopping) while answering.
            let _ = peer.pc.close().await;
            return Err((StatusCode::GONE, "the session ended while it was being answered".into()));
        }
        self.totals.sessions.fetch_add(1, Ordering::Relaxed);
        info!(stream, session = %id, talkback = offer.talkback, "WHEP viewer answered");
        let options = self.options.clone();
        tokio::spawn(async move {
            let why = session::run(peer, shared, options).await;
            let lasted = self.end(&id);
            info!(stream, session = %id, why, seconds = lasted.map(|d| d.as_secs_f64()), "WHEP viewer gone");
        });
        Ok(answer)
    }

    fn select_sensors(&self, query: Option<&str>) -> Result<Vec<Arc<feed::StreamFeed>>, Refusal> {
        let pairs = crate::http::query::pairs(query);
        let all = self.feeds.sensors();
        match crate::http::query::get(&pairs, "sensors") {
            None | Some("all") => Ok(all),
            Some("none" | "") => Ok(Vec::new()),
            Some(list) => list
                .split(',')
                .map(|name| {
                    all.iter().find(|s| s.name() == name).cloned().ok_or_else(|| {
                        let known: Vec<&str> = all.iter().map(|s| s.name()).collect();
                        (
                            StatusCode::BAD_REQUEST,
                            format!("sensors: no sensor {name:?} (sensors here: {known:?}; or all, none)"),
                        )
                    })
                })
                .collect(),
        }
    }

    async fn patch(&self, stream: &str, id: &str, req: Request<Incoming>) -> Result<(), Refusal> {
        let pc = self
            .session_of(stream, id, |s| s.pc.clone())?
            .ok_or_else(|| (StatusCode::CONFLICT, "the session is not answered yet".to_owned()))?;
        let body = read_body(req, 16 * 1024).await?;
        let text = std::str::from_utf8(&body).map_err(|_| {
            (
                StatusCode::BAD_REQUEST,
                "the trickle-ICE fragment is not UTF-8".to_owned(),
            )
        })?;
        let candidates: Vec<&str> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .collect();
        let mid = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("a=mid:"))
            .map(str::to_owned);
        for c in candidates {
            let init = webrtc::peer_connection::RTCIceCandidateInit {
                candidate: c.to_owned(),
                sdp_mid: mid.clone().or_else(|| Some("0".to_owned())),
                sdp_mline_index: Some(0),
                ..Default::default()
            };
            pc.add_ice_candidate(init)
                .await
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("candidate {c:?}: {e}")))?;
        }
        Ok(())
    }

    /// `f` of session `id` of `stream`, or 404.
    fn session_of<T>(&self, stream: &str, id: &str, f: impl FnOnce(&Session) -> T) -> Result<T, Refusal> {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        match sessions.get(id) {
            Some(s) if s.stream == stream => Ok(f(s)),
            _ => Err((
                StatusCode::NOT_FOUND,
                format!("no WHEP session {id:?} on stream {stream:?}"),
            )),
        }
    }

    fn delete(&self, stream: &str, id: &str) -> Result<(), Refusal> {
        self.session_of(stream, id, |_| ())?;
        self.end(id);
        Ok(())
    }

    /// End a session (idempotent); how long it lasted if it was there.
    fn end(&self, id: &str) -> Option<Duration> {
        let s = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id)?;
        let _ = s.stop.send(true);
        Some(s.started.elapsed())
    }

    /// Viewers and counters per stream, for `/api/streams` and metrics.
    pub fn status(&self) -> WhepStatus {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let mut streams: HashMap<String, StreamViewers> = HashMap::new();
        for feed in self.feeds.all() {
            let e = streams.entry(feed.name().to_owned()).or_default();
            e.key_frames_requested = feed.key_frames_requested();
        }
        for s in sessions.values() {
            let e = streams.entry(s.stream.clone()).or_default();
            e.viewers += 1;
            e.talking += usize::from(s.talkback);
            e.video_frames += s.stats.video_frames.load(Ordering::Relaxed);
            e.audio_packets += s.stats.audio_packets.load(Ordering::Relaxed);
            e.lagged += s.stats.lagged.load(Ordering::Relaxed);
            e.key_requests += s.stats.key_requests.load(Ordering::Relaxed);
            e.talkback_packets += s.stats.talkback_packets.load(Ordering::Relaxed);
            e.sensor_frames += s.stats.sensor_frames.load(Ordering::Relaxed);
            e.sensor_dropped += s.stats.sensor_dropped.load(Ordering::Relaxed);
        }
        WhepStatus {
            streams,
            sessions_total: self.totals.sessions.load(Ordering::Relaxed),
            refused_total: self.totals.refused.load(Ordering::Relaxed),
        }
    }

    /// Hang up on every viewer (agent shutdown).
    pub fn close_all(&self) {
        let sessions: Vec<Session> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, s)| s)
            .collect();
        for s in sessions {
            let _ = s.stop.send(true);
        }
    }
}

/// What [`Whep::status`] reports.
#[derive(Debug, Default)]
pub struct WhepStatus {
    /// Per stream.
    pub streams: HashMap<String, StreamViewers>,
    /// Sessions answered since start.
    pub sessions_total: u64,
    /// Requests refused since start.
    pub refused_total: u64,
}

/// One stream's viewers now (frame counts are of the current sessions).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamViewers {
    /// Viewers connected or connecting.
    pub viewers: usize,
    /// Of them, sending talkback.
    pub talking: usize,
    /// Video frames sent to the current viewers.
    pub video_frames: u64,
    /// Audio packets sent to the current viewers.
    pub audio_packets: u64,
    /// Frames the current viewers skipped by lagging.
    pub lagged: u64,
    /// Key-frame requests from the current viewers.
    pub key_requests: u64,
    /// Key-frame requests passed to the encoder since start.
    pub key_frames_requested: u64,
    /// Talkback packets received from the current viewers.
    pub talkback_packets: u64,
    /// Sensor frames sent to the current viewers.
    pub sensor_frames: u64,
    /// Sensor frames dropped for the current viewers.
    pub sensor_dropped: u64,
}

async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Refusal> {
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err((StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {limit} bytes")))
        }
        Err(e) => Err((StatusCode::BAD_REQUEST, format!("cannot read the body: {e}"))),
    }
}

fn cors(mut r: Response<Body>) -> Response<Body> {
    let h = r.headers_mut();
    h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    h.insert(
        "access-control-allow-methods",
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        "access-control-allow-headers",
        HeaderValue::from_static("content-type, if-match"),
    );
    h.insert(
        "access-control-expose-headers",
        HeaderValue::from_static("location, etag"),
    );
    r
}
