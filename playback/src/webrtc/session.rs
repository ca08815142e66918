//! One WHEP viewer: its peer connection and the tasks that feed it video
//! and audio, answer its key-frame requests, play its microphone and run
//! its data channel, until it hangs up, vanishes or the agent stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::opus::OpusPayloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::shared::marshal::Marshal;
use tokio::sync::{broadcast, watch};
use tracing::{debug, info, warn};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceGatheringState, RTCIceServer, RTCPeerConnectionState, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use super::feed::{FeedKind, LivePayload, StreamFeed};
use super::talkback::{TalkbackOutputs, TalkbackPacket};
use super::{random_u64, WebRtcOptions};
use crate::webrtc::rtcp::{KeyFrameRequests, SLOT};

/// RTP payload size: below any path MTU after SRTP and TURN overhead.
const MTU: usize = 1200;
/// Payload types we offer to match. The answer uses the viewer's numbers.
const OPUS_PT: u8 = 111;
/// H.264 profiles a viewer may offer, all packetization-mode 1. The
/// camera's stream is sent as it is (often High); browsers decode any of
/// them whatever profile was negotiated, so the first one the viewer
/// offered is used.
const H264: [(&str, u8); 4] = [("42e01f", 102), ("42001f", 103), ("4d001f", 127), ("640032", 112)];
/// Frames a data channel may have queued before sensor frames are dropped
/// for that viewer (the data channel is reliable: it would grow without
/// bound on a slow link).
const DATA_BACKLOG: usize = 2 * 1024 * 1024;

/// Counters of one session, for `/api/streams`.
#[derive(Debug, Default)]
pub struct SessionStats {
    /// Video frames sent.
    pub video_frames: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// Frames skipped because the viewer fell behind.
    pub lagged: AtomicU64,
    /// Key-frame requests (PLI/FIR, data channel) from this viewer.
    pub key_requests: AtomicU64,
    /// Talkback RTP packets received.
    pub talkback_packets: AtomicU64,
    /// Sensor frames sent on the data channel.
    pub sensor_frames: AtomicU64,
    /// Sensor frames dropped because the data channel was backed up.
    pub sensor_dropped: AtomicU64,
}

/// What a session's tasks share.
pub(crate) struct Shared {
    pub feed: Arc<StreamFeed>,
    pub sensors: Vec<Arc<StreamFeed>>,
    pub talkback: Option<Arc<dyn TalkbackOutputs>>,
    pub stats: Arc<SessionStats>,
    pub stop: watch::Receiver<bool>,
}

struct Events {
    gathered: watch::Sender<bool>,
    state: watch::Sender<RTCPeerConnectionState>,
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Events {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(true);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.state.send(state);
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(run_data_channel(dc, self.shared.clone()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if track.kind().await == RtpCodecKind::Audio {
            tokio::spawn(run_talkback(track, self.shared.clone()));
        }
    }
}

/// Why no answer was made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AnswerError {
    /// The offer cannot be answered (400).
    #[error("{0}")]
    Offer(String),
    /// The agent could not set up the peer (500).
    #[error("{0}")]
    Agent(String),
}

/// A built peer connection with its answer, before it connects.
pub(crate) struct Peer {
    pub pc: Arc<dyn PeerConnection>,
    pub answer: String,
    pub state: watch::Receiver<RTCPeerConnectionState>,
    video: Outbound,
    audio: Option<Outbound>,
}

/// A track we send, with what its RTP headers need.
struct Outbound {
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    ssrc: u32,
}

fn h264_codec(profile: &str) -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: format!("level-asymmetry-allowed=1;packetization-mode=1;profile-level-id={profile}"),
        rtcp_feedback: ["nack", "nack pli", "ccm fir"]
            .iter()
            .map(|f| {
                let (typ, parameter) = f.split_once(' ').unwrap_or((f, ""));
                RTCPFeedback {
                    typ: typ.into(),
                    parameter: parameter.into(),
                }
            })
            .collect(),
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".into(),
        rtcp_feedback: vec![],
    }
}

fn outbound_track(
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
    stream: &str,
) -> webrtc::error::Result<(Arc<TrackLocalStaticRTP>, u32)> {
    let ssrc = random_u64() as u32;
    let name = if kind == RtpCodecKind::Video { "video" } else { "audio" };
    let track = MediaStreamTrack::new(
        format!("edge-agent-{stream}"),
        format!("{stream}-{name}"),
        format!("{stream} {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    );
    Ok((Arc::new(TrackLocalStaticRTP::new(track)), ssrc))
}

/// Build the peer for `offer` and answer it (ICE gathering complete, so the
/// answer carries every candidate and no server-side trickle is needed).
pub(crate) async fn answer(
    offer: &super::offer::Offer,
    shared: Arc<Shared>,
    options: &WebRtcOptions,
) -> Result<Peer, AnswerError> {
    // The agent's side failing (sockets, setup) is not the viewer's fault.
    let fail = |what: &str, e: &dyn std::fmt::Display| AnswerError::Agent(format!("{what}: {e}"));
    let bad = |what: &str, e: &dyn std::fmt::Display| AnswerError::Offer(format!("{what}: {e}"));
    let mut media = MediaEngine::default();
    for (profile, pt) in H264 {
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: h264_codec(profile),
                    payload_type: pt,
                },
                RtpCodecKind::Video,
            )
            .map_err(|e| fail("cannot register H.264", &e))?;
    }
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: OPUS_PT,
            },
            RtpCodecKind::Audio,
        )
        .map_err(|e| fail("cannot register Opus", &e))?;
    let registry = webrtc::peer_connection::register_default_interceptors(Registry::new(), &mut media)
        .map_err(|e| fail("cannot set up interceptors", &e))?
        .with(rtc::interceptor::Slot::from(SLOT), KeyFrameRequests::default());
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(
            options
                .ice_servers
                .iter()
                .map(|s| RTCIceServer {
                    urls: s.urls.clone(),
                    username: s.username.clone(),
                    credential: s.credential.clone(),
                })
                .collect(),
        )
        .build();
    // Consent freshness: a viewer whose checks stop is Disconnected after
    // `disconnect`, and the session ends `disconnect` later unless it
    // comes back (see `supervise`).
    let settings = SettingEngineBuilder::new()
        .with_ice_timeouts(
            Some(options.disconnect),
            Some(options.disconnect * 2),
            Some(Duration::from_secs(1)),
        )
        .build();
    let (gathered_tx, mut gathered) = watch::channel(false);
    let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
    let handler = Arc::new(Events {
        gathered: gathered_tx,
        state: state_tx,
        shared: shared.clone(),
    });
    let pc = PeerConnectionBuilder::new()
        .with_configuration(config)
        .with_media_engine(media)
        .with_setting_engine(settings)
        .with_interceptor_registry(registry)
        .with_handler(handler)
        .with_udp_addrs(options.udp.iter().map(|a| a.to_string()).collect())
        .build()
        .await
        .map_err(|e| fail("cannot create the peer connection", &e))?;
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    let result = async {
        let stream = shared.feed.name().to_owned();
        let profile = offer.h264_profiles.first().map_or("42e01f", String::as_str);
        let (track, ssrc) = outbound_track(RtpCodecKind::Video, h264_codec(profile), &stream)
            .map_err(|e| fail("cannot create the video track", &e))?;
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(|e| fail("cannot add the video track", &e))?;
        let video = Outbound { track, sender, ssrc };
        let audio = if offer.audio && shared.feed.has_opus() {
            let (track, ssrc) = outbound_track(RtpCodecKind::Audio, opus_codec(), &stream)
                .map_err(|e| fail("cannot create the audio track", &e))?;
            let sender = pc
                .add_track(track.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(|e| fail("cannot add the audio track", &e))?;
            Some(Outbound { track, sender, ssrc })
        } else {
            None
        };
        let desc = webrtc::peer_connection::RTCSessionDescription::offer(offer.sdp.clone())
            .map_err(|e| bad("the offer cannot be used", &e))?;
        pc.set_remote_description(desc)
            .await
            .map_err(|e| bad("the offer cannot be used", &e))?;
        let answer = pc
            .create_answer(None)
            .await
            .map_err(|e| bad("cannot answer the offer", &e))?;
        pc.set_local_description(answer)
            .await
            .map_err(|e| bad("cannot answer the offer", &e))?;
        // Host candidates are there at once; STUN/TURN ones may take a
        // round trip. A viewer that needs more can trickle its own.
        let _ = tokio::time::timeout(options.gather, gathered.wait_for(|g| *g)).await;
        let answer = pc
            .local_description()
            .await
            .ok_or_else(|| AnswerError::Agent("no local description after answering".to_owned()))?
            .sdp;
        Ok::<_, AnswerError>(Peer {
            pc: pc.clone(),
            answer,
            state,
            video,
            audio,
        })
    }
    .await;
    if result.is_err() {
        let _ = pc.close().await;
    }
    result
}

/// The payload type negotiated for a sender.
async fn payload_type(sender: &Arc<dyn RtpSender>) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()?
        .rtp_parameters
        .codecs
        .first()
        .map(|c| c.payload_type)
}

/// The RTP timestamp of capture time `pts` at `clock` Hz: derived from the
/// wall clock so a viewer can tell how old each frame is, and so audio and
/// video stay in sync however the frames were delayed on the way.
pub fn rtp_timestamp(pts: fragmenter::Timestamp, clock: u32) -> u32 {
    (u128::from(pts.as_nanos()) * u128::from(clock) / 1_000_000_000) as u32
}

/// Run a connected-or-connecting peer until it ends; returns why.
pub(crate) async fn run(peer: Peer, shared: Arc<Shared>, options: WebRtcOptions) -> &'static str {
    let Peer {
        pc,
        mut state,
        video,
        audio,
        ..
    } = peer;
    let mut stop = shared.stop.clone();
    // Connected within the limit, or the viewer never came.
    let connected = tokio::select! {
        // Failed or Closed end the wait too: the viewer is not coming.
        r = tokio::time::timeout(options.connect, state.wait_for(|s| matches!(
            s,
            RTCPeerConnectionState::Connected | RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ))) => {
            matches!(r, Ok(Ok(s)) if *s == RTCPeerConnectionState::Connected)
        }
        _ = stop.wait_for(|s| *s) => false,
    };
    if !connected {
        let _ = pc.close().await;
        return if *stop.borrow() { "hung up" } else { "never connected" };
    }
    let (Some(vpt), apt) = (
        payload_type(&video.sender).await,
        match &audio {
            Some(a) => payload_type(&a.sender).await,
            None => None,
        },
    ) else {
        let _ = pc.close().await;
        return "no video codec negotiated";
    };
    let media = tokio::spawn(send_media(
        shared.clone(),
        video.track.clone(),
        vpt,
        video.ssrc,
        audio.as_ref().zip(apt).map(|(a, pt)| (a.track.clone(), pt, a.ssrc)),
    ));
    let requests = tokio::spawn(key_frame_requests(video.track.clone(), shared.clone()));
    let why = supervise(&mut state, &mut stop, options.disconnect).await;
    media.abort();
    requests.abort();
    let _ = pc.close().await;
    why
}

/// Until the viewer hangs up, fails, or stays disconnected too long.
async fn supervise(
    state: &mut watch::Receiver<RTCPeerConnectionState>,
    stop: &mut watch::Receiver<bool>,
    disconnect: Duration,
) -> &'static str {
    loop {
        let now = *state.borrow_and_update();
        match now {
            RTCPeerConnectionState::Failed => return "connection failed",
            RTCPeerConnectionState::Closed => return "connection closed",
            RTCPeerConnectionState::Disconnected => {
                // Consent checks stopped: a closed tab or a lost network.
                // Give it a moment to come back, then let it go.
                tokio::select! {
                    r = tokio::time::timeout(disconnect, state.changed()) => match r {
                        Ok(Ok(())) => continue,
                        Ok(Err(_)) => return "connection gone",
                        Err(_) => return "viewer vanished",
                    },
                    _ = stop.wait_for(|s| *s) => return "hung up",
                }
            }
            _ => {}
        }
        tokio::select! {
            r = state.changed() => if r.is_err() { return "connection gone" },
            _ = stop.wait_for(|s| *s) => return "hung up",
        }
    }
}

/// Video and audio from the feed to the viewer.
async fn send_media(
    shared: Arc<Shared>,
    video: Arc<TrackLocalStaticRTP>,
    vpt: u8,
    vssrc: u32,
    audio: Option<(Arc<TrackLocalStaticRTP>, u8, u32)>,
) {
    let feed = &shared.feed;
    let mut rx = feed.subscribe();
    // Start on a fresh key frame rather than wait out the GOP.
    feed.request_key_frame();
    let mut waiting_for_key = true;
    let mut h264 = H264Payloader::default();
    let mut opus = OpusPayloader;
    let (mut vseq, mut aseq) = (random_u64() as u16, random_u64() as u16);
    loop {
        let frame = match rx.recv().await {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                shared.stats.lagged.fetch_add(n, Ordering::Relaxed);
                waiting_for_key = true;
                feed.request_key_frame();
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        match &frame.payload {
            LivePayload::H264 { annexb, key } => {
                if waiting_for_key && !key {
                    continue;
                }
                waiting_for_key = false;
                let Ok(payloads) = h264.payload(MTU, annexb) else {
                    continue;
                };
                let ts = rtp_timestamp(frame.pts, 90_000);
                let last = payloads.len().saturating_sub(1);
                for (i, payload) in payloads.into_iter().enumerate() {
                    let packet = packet(vpt, vseq, ts, vssrc, i == last, payload);
                    vseq = vseq.wrapping_add(1);
                    if video.write_rtp(packet).await.is_err() {
                        return;
                    }
                }
                shared.stats.video_frames.fetch_add(1, Ordering::Relaxed);
            }
            LivePayload::Opus(data) => {
                let Some((track, pt, ssrc)) = &audio else {
                    continue;
                };
                let Ok(payloads) = opus.payload(MTU, data) else {
                    continue;
                };
                let ts = rtp_timestamp(frame.pts, 48_000);
                for payload in payloads {
                    let packet = packet(*pt, aseq, ts, *ssrc, false, payload);
                    aseq = aseq.wrapping_add(1);
                    if track.write_rtp(packet).await.is_err() {
                        return;
                    }
                }
                shared.stats.audio_packets.fetch_add(1, Ordering::Relaxed);
            }
            LivePayload::Points(_) => {}
        }
    }
}

fn packet(pt: u8, seq: u16, ts: u32, ssrc: u32, marker: bool, payload: Bytes) -> rtc::rtp::Packet {
    rtc::rtp::Packet {
        header: rtc::rtp::Header {
            version: 2,
            marker,
            payload_type: pt,
            sequence_number: seq,
            timestamp: ts,
            ssrc,
            ..Default::default()
        },
        payload,
    }
}

/// PLI/FIR from the viewer → a key frame from the encoder (rate-limited in
/// the feed, whoever asks).
async fn key_frame_requests(video: Arc<TrackLocalStaticRTP>, shared: Arc<Shared>) {
    while let Some(event) = video.poll().await {
        if let TrackLocalEvent::OnRtcpPacket(_) = event {
            shared.stats.key_requests.fetch_add(1, Ordering::Relaxed);
            let r = shared.feed.request_key_frame();
            debug!(
                stream = shared.feed.name(),
                request = r.as_str(),
                "viewer asked for a key frame"
            );
        }
    }
}

/// The viewer's microphone to the stream's talkback output.
async fn run_talkback(track: Arc<dyn TrackRemote>, shared: Arc<Shared>) {
    let stream = shared.feed.name().to_owned();
    let Some(outputs) = shared.talkback.clone() else {
        debug!(stream, "viewer sends audio; this stream has no talkback output");
        return;
    };
    let mut output = None;
    let mut stop = shared.stop.clone();
    loop {
        let event = tokio::select! {
            e = track.poll() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        match event {
            Some(TrackRemoteEvent::OnRtpPacket(packet)) => {
                if output.is_none() {
                    match outputs.open(&stream) {
                        Ok(o) => {
                            info!(stream, "talkback started");
                            output = Some(o);
                        }
                        Err(e) => {
                            warn!(stream, error = %e, "talkback refused");
                            return;
                        }
                    }
                }
                if let (Some(o), Ok(rtp)) = (output.as_mut(), packet.marshal()) {
                    shared.stats.talkback_packets.fetch_add(1, Ordering::Relaxed);
                    o.push(TalkbackPacket {
                        rtp: rtp.freeze(),
                        timestamp: packet.header.timestamp,
                        payload: packet.payload.clone(),
                    });
                }
            }
            Some(TrackRemoteEvent::OnEnded | TrackRemoteEvent::OnError) | None => break,
            Some(_) => {}
        }
    }
    if output.is_some() {
        info!(stream, "talkback ended");
    }
}

/// Control messages and sensor frames on the viewer's data channel.
async fn run_data_channel(dc: Arc<dyn DataChannel>, shared: Arc<Shared>) {
    let mut stop = shared.stop.clone();
    let mut forwarders = Vec::new();
    let mut opened = matches!(
        dc.ready_state().await,
        Ok(webrtc::data_channel::RTCDataChannelState::Open)
    );
    if opened {
        forwarders = open_data_channel(&dc, &shared).await;
    }
    loop {
        let event = tokio::select! {
            e = dc.poll() => e,
            _ = stop.wait_for(|s| *s) => None,
        };
        match event {
            Some(DataChannelEvent::OnOpen) if !opened => {
                opened = true;
                forwarders = open_data_channel(&dc, &shared).await;
            }
            Some(DataChannelEvent::OnMessage(msg)) if msg.is_string => {
                let reply = control_reply(&msg.data, &shared);
                if let Some(reply) = reply {
                    if dc.send_text(&reply).await.is_err() {
                        break;
                    }
                }
            }
            Some(DataChannelEvent::OnClose | DataChannelEvent::OnError) | None => break,
            Some(_) => {}
        }
    }
    for f in forwarders {
        f.abort();
    }
}

/// Say hello and start forwarding the selected sensors.
async fn open_data_channel(dc: &Arc<dyn DataChannel>, shared: &Arc<Shared>) -> Vec<tokio::task::JoinHandle<()>> {
    let sensors: Vec<serde_json::Value> = shared
        .sensors
        .iter()
        .map(|s| serde_json::json!({ "index": s.index(), "name": s.name(), "kind": s.kind().as_str() }))
        .collect();
    let hello = serde_json::json!({ "type": "hello", "stream": shared.feed.name(), "sensors": sensors });
    let _ = dc.send_text(&hello.to_string()).await;
    shared
        .sensors
        .iter()
        .map(|s| tokio::spawn(forward_sensor(dc.clone(), s.clone(), shared.stats.clone())))
        .collect()
}

async fn forward_sensor(dc: Arc<dyn DataChannel>, sensor: Arc<StreamFeed>, stats: Arc<SessionStats>) {
    debug_assert_ne!(sensor.kind(), FeedKind::Media);
    let mut rx = sensor.subscribe();
    loop {
        let frame = match rx.recv().await {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                stats.sensor_dropped.fetch_add(n, Ordering::Relaxed);
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let LivePayload::Points(messages) = &frame.payload else {
            continue;
        };
        if dc.outstanding_bytes().await.unwrap_or(0) > DATA_BACKLOG {
            stats.sensor_dropped.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        for m in messages.iter() {
            if let Err(e) = dc.send(BytesMut::from(&m[..])).await {
                debug!(sensor = sensor.name(), error = %e, "data channel closed");
                return;
            }
        }
        stats.sensor_frames.fetch_add(1, Ordering::Relaxed);
    }
}

/// The answer to a text message on the data channel, if it wants one.
fn control_reply(data: &[u8], shared: &Shared) -> Option<String> {
    let v: serde_json::Value = match serde_json::from_slice(data) {
        Ok(v) => v,
        Err(e) => return Some(serde_json::json!({ "type": "error", "error": format!("not JSON: {e}") }).to_string()),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
    match v.get("type").and_then(|t| t.as_str()) {
        Some("ping") => Some(
            serde_json::json!({ "type": "pong", "id": v.get("id"), "t": v.get("t"), "agent_ms": now_ms }).to_string(),
        ),
        Some("keyframe") => {
            shared.stats.key_requests.fetch_add(1, Ordering::Relaxed);
            let r = shared.feed.request_key_frame();
            Some(serde_json::json!({ "type": "keyframe", "ok": r.coming(), "request": r.as_str() }).to_string())
        }
        other => Some(
            serde_json::json!({
                "type": "error",
                "error": format!("unknown message type {other:?}: expected \"ping\" or \"keyframe\""),
            })
            .to_string(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fragmenter::Timestamp;

    #[test]
    fn rtp_timestamps_are_the_capture_clock() {
        // 1 s after the epoch: 90 000 ticks; wraps modulo 2^32.
        assert_eq!(rtp_timestamp(Timestamp::from_millis(1000), 90_000), 90_000);
        assert_eq!(rtp_timestamp(Timestamp::from_millis(20), 48_000), 960);
        let t = Timestamp::from_millis(1_764_000_000_000);
        let ticks = 1_764_000_000_000u128 * 90;
        assert_eq!(rtp_timestamp(t, 90_000), (ticks % (1u128 << 32)) as u32);
    }

    #[test]
    fn control_messages_are_answered() {
        let feeds = super::super::feed::Feeds::new();
        let (_tx, stop) = watch::channel(false);
        let shared = Shared {
            feed: feeds.add("cam", FeedKind::Media),
            sensors: vec![],
            talkback: None,
            stats: Arc::default(),
            stop,
        };
        let pong: serde_json::Value =
            serde_json::from_str(&control_reply(br#"{"type":"ping","id":7,"t":12.5}"#, &shared).unwrap()).unwrap();
        assert_eq!(
            (pong["type"].as_str(), pong["id"].as_u64(), pong["t"].as_f64()),
            (Some("pong"), Some(7), Some(12.5))
        );
        assert!(pong["agent_ms"].as_f64().unwrap() > 1.7e12);
        let k: serde_json::Value =
            serde_json::from_str(&control_reply(br#"{"type":"keyframe"}"#, &shared).unwrap()).unwrap();
        assert_eq!(k["ok"], false, "no source to ask yet");
        let e = control_reply(b"{nope", &shared).unwrap();
        assert!(e.contains("not JSON"), "{e}");
        let e = control_reply(br#"{"type":"dance"}"#, &shared).unwrap();
        assert!(e.contains("dance"), "{e}");
    }
}
