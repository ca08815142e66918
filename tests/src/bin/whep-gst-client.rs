//! An independent WHEP viewer for the end-to-end tests: GStreamer's
//! webrtcbin (libnice, its own DTLS/SRTP) receives the agent's stream, so the
//! agent's WebRTC stack is judged by a peer that shares none of its code.
//!
//! ```text
//! whep-gst-client --url http://127.0.0.1:PORT/whep/STREAM [--seconds 8] [--key-frame-every S]
//! ```
//!
//! Offers recvonly H.264 + Opus, POSTs the offer (ICE gathering complete),
//! applies the answer, decodes for `--seconds`, DELETEs the session and
//! prints one JSON line:
//! `{"ok":bool,"status":201,"location":"...","video_frames":N,"width":W,"height":H,
//!   "audio_buffers":N,"delete_status":200,"errors":[...],"reason":null|"..."}`.
//! `ok` = the POST returned 201 and at least one video frame was decoded.
//! Exit code 0 whenever the JSON line was printed, 2 on bad arguments.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_sdp as gst_sdp;
use gstreamer_webrtc as gst_webrtc;

const VIDEO_CAPS: &str = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000,\
    packetization-mode=(string)1,profile-level-id=(string)42e01f";
const AUDIO_CAPS: &str =
    "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2";
/// The agent answers with gathering complete, so ours is the only wait; on
/// loopback host candidates arrive in milliseconds, the cap only guards
/// against a gathering state that never reports complete.
const ICE_GATHER_MAX: Duration = Duration::from_secs(3);
/// The watchdog's slack on top of `--seconds`: covers negotiation, HTTP and
/// teardown, each of which has its own shorter bound.
const WATCHDOG_SLACK: Duration = Duration::from_secs(20);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// What the run has found so far; shared with the watchdog so that a hang
/// still reports everything learnt before it.
#[derive(Default)]
struct Report {
    status: Option<u16>,
    location: Option<String>,
    delete_status: Option<u16>,
    errors: Vec<String>,
    /// Where the run is, so a watchdog reason says what hung.
    stage: &'static str,
}

#[derive(Default)]
struct Counters {
    video_frames: AtomicU64,
    audio_buffers: AtomicU64,
    /// Key-frame requests sent upstream (`--key-frame-every`).
    key_requests: AtomicU64,
    frozen: AtomicBool,
    size: Mutex<Option<(i32, i32)>>,
}

struct Shared {
    report: Mutex<Report>,
    counters: Counters,
    printed: AtomicBool,
}

impl Shared {
    fn stage(&self, stage: &'static str) {
        self.report.lock().unwrap().stage = stage;
    }

    fn error(&self, e: impl Into<String>) {
        self.report.lock().unwrap().errors.push(e.into());
    }

    /// Prints the JSON line once; whichever of main and the watchdog comes
    /// second prints nothing, so stdout never holds two verdicts.
    fn print(&self, forced_reason: Option<String>) -> bool {
        if self.printed.swap(true, Ordering::SeqCst) {
            return false;
        }
        // A poisoned lock (a panicking callback) must not cost the verdict.
        let report = self.report.lock().unwrap_or_else(|e| e.into_inner());
        let video_frames = self.counters.video_frames.load(Ordering::SeqCst);
        let size = *self.counters.size.lock().unwrap_or_else(|e| e.into_inner());
        let ok = forced_reason.is_none() && report.status == Some(201) && video_frames > 0;
        let reason = match forced_reason {
            Some(r) => Some(r),
            None if ok => None,
            None if report.status != Some(201) => Some(match report.status {
                Some(s) => format!("POST returned {s}, expected 201"),
                None => format!("no POST response (stage: {})", report.stage),
            }),
            None => Some("no video frame decoded".to_owned()),
        };
        let line = serde_json::json!({
            "ok": ok,
            "status": report.status,
            "location": report.location,
            "video_frames": video_frames,
            "width": size.map(|s| s.0),
            "height": size.map(|s| s.1),
            "audio_buffers": self.counters.audio_buffers.load(Ordering::SeqCst),
            "key_requests": self.counters.key_requests.load(Ordering::SeqCst),
            "delete_status": report.delete_status,
            "errors": report.errors,
            "reason": reason,
        });
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
        true
    }
}

fn usage(msg: &str) -> ! {
    eprintln!("whep-gst-client: {msg}\nusage: whep-gst-client --url http://HOST:PORT/whep/STREAM [--seconds N] [--key-frame-every S]");
    std::process::exit(2);
}

/// `http://host:port/path` → ("host:port", "/path"); HTTPS is not needed on
/// loopback and would need a TLS crate.
fn split_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return None;
    }
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    Some((authority, path.to_owned()))
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One request on its own connection (`Connection: close`), so the body ends
/// at Content-Length or at EOF, and no chunked decoding is needed unless the
/// server insists on it.
fn http_request(
    authority: &str,
    method: &str,
    path: &str,
    content_type: Option<&str>,
    body: &[u8],
) -> Result<HttpResponse, String> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
        .map_err(|e| format!("resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("resolve {authority}: no address"))?;
    let mut stream =
        TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(|e| format!("connect {authority}: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n");
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    stream
        .write_all(head.as_bytes())
        .and_then(|_| stream.write_all(body))
        .map_err(|e| format!("{method} send: {e}"))?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut head_end = None;
    let mut content_length = None;
    loop {
        if let (Some(h), Some(len)) = (head_end, content_length) {
            if raw.len() >= h + len {
                break;
            }
        }
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                return Err(format!("{method}: no response within {} s", HTTP_TIMEOUT.as_secs()))
            }
            Err(e) => return Err(format!("{method} read: {e}")),
        };
        raw.extend_from_slice(&buf[..n]);
        if head_end.is_none() {
            if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
                head_end = Some(i + 4);
                let head = String::from_utf8_lossy(&raw[..i]);
                content_length = head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    if k.trim().eq_ignore_ascii_case("content-length") {
                        v.trim().parse::<usize>().ok()
                    } else {
                        None
                    }
                });
            }
        }
    }
    let head_end = head_end.ok_or_else(|| format!("{method}: response without a complete header"))?;
    let head = String::from_utf8_lossy(&raw[..head_end - 4]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method}: bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[head_end..].to_vec();
    if let Some(len) = content_length {
        body.truncate(len);
    }
    Ok(HttpResponse { status, headers, body })
}

/// Waits for a promise that webrtcbin answers from its own thread; an
/// `error` field in the reply is how webrtcbin reports a failed operation.
fn await_promise(promise: &gst::Promise, what: &str) -> Result<Option<gst::Structure>, String> {
    match promise.wait() {
        gst::PromiseResult::Replied => {}
        other => return Err(format!("{what}: promise {other:?}")),
    }
    let reply = promise.get_reply().map(|s| s.to_owned());
    if let Some(s) = &reply {
        if let Ok(err) = s.get::<gst::glib::Error>("error") {
            return Err(format!("{what}: {err}"));
        }
    }
    Ok(reply)
}

/// Links a webrtcbin source pad to a decode branch chosen by the pad's
/// media kind; the counting probe sits on the fakesink so only decoded
/// output counts.
fn on_pad_added(pipeline: &gst::Pipeline, pad: &gst::Pad, shared: &Arc<Shared>) {
    if pad.direction() != gst::PadDirection::Src {
        return;
    }
    // The caps are set before pad-added in 1.22, but querying covers a pad
    // that has not had its caps event yet.
    let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
    let s = caps.structure(0);
    let media = s.and_then(|s| s.get::<&str>("media").ok()).unwrap_or("");
    let encoding = s.and_then(|s| s.get::<&str>("encoding-name").ok()).unwrap_or("");
    // None: a stream we did not ask for, drained but not counted.
    let (desc, video) = match (media, encoding.to_ascii_uppercase().as_str()) {
        ("video", "H264") => (
            "rtph264depay ! h264parse ! avdec_h264 ! videoconvert ! fakesink name=sink sync=false",
            Some(true),
        ),
        ("audio", "OPUS") => ("rtpopusdepay ! opusdec ! fakesink name=sink sync=false", Some(false)),
        _ => {
            shared.error(format!("unexpected stream {caps}"));
            ("fakesink name=sink sync=false", None)
        }
    };
    let bin = match gst::parse::bin_from_description(desc, true) {
        Ok(b) => b,
        Err(e) => {
            shared.error(format!("cannot build {desc:?}: {e}"));
            return;
        }
    };
    let sink_pad = bin
        .by_name("sink")
        .and_then(|s| s.static_pad("sink"))
        .expect("fakesink has a sink pad");
    let counters = shared.clone();
    sink_pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::EVENT_DOWNSTREAM,
        move |_, info| {
            match &info.data {
                Some(gst::PadProbeData::Buffer(_)) if !counters.counters.frozen.load(Ordering::SeqCst) => {
                    match video {
                        Some(true) => counters.counters.video_frames.fetch_add(1, Ordering::SeqCst),
                        Some(false) => counters.counters.audio_buffers.fetch_add(1, Ordering::SeqCst),
                        None => 0,
                    };
                }
                Some(gst::PadProbeData::Event(ev)) if video == Some(true) => {
                    if let gst::EventView::Caps(c) = ev.view() {
                        if let Some(s) = c.caps().structure(0) {
                            if let (Ok(w), Ok(h)) = (s.get::<i32>("width"), s.get::<i32>("height")) {
                                *counters.counters.size.lock().unwrap() = Some((w, h));
                            }
                        }
                    }
                }
                _ => {}
            }
            gst::PadProbeReturn::Ok
        },
    );
    if let Err(e) = pipeline.add(&bin) {
        shared.error(format!("add decode bin: {e}"));
        return;
    }
    let _ = bin.sync_state_with_parent();
    let bin_sink = bin.static_pad("sink").expect("ghost sink pad");
    if let Err(e) = pad.link(&bin_sink) {
        shared.error(format!("link {} to decoder: {e:?}", pad.name()));
    }
}

/// webrtcbin writes each gathered candidate into the local description, but
/// the 3 s cap may cut gathering short, so only whatever is there is sent.
fn gather_local_offer(webrtc: &gst::Element) -> Result<String, String> {
    let start = Instant::now();
    while start.elapsed() < ICE_GATHER_MAX {
        let state = webrtc.property::<gst_webrtc::WebRTCICEGatheringState>("ice-gathering-state");
        if state == gst_webrtc::WebRTCICEGatheringState::Complete {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let desc = webrtc
        .property::<Option<gst_webrtc::WebRTCSessionDescription>>("local-description")
        .ok_or("no local description after set-local-description")?;
    desc.sdp().as_text().map_err(|e| format!("offer as text: {e}"))
}

fn run(url: &str, seconds: u64, key_every: u64, shared: &Arc<Shared>) -> Result<(), String> {
    let (authority, path) = split_url(url).ok_or_else(|| format!("not an http:// URL: {url}"))?;
    gst::init().map_err(|e| format!("GStreamer init: {e}"))?;

    shared.stage("pipeline");
    // parse::launch would hand back the lone element, not a pipeline.
    let pipeline = gst::Pipeline::new();
    let webrtc = gst::ElementFactory::make("webrtcbin")
        .name("w")
        .property_from_str("bundle-policy", "max-bundle")
        .property("latency", 200u32)
        .build()
        .map_err(|e| format!("webrtcbin: {e}"))?;
    pipeline.add(&webrtc).map_err(|e| format!("add webrtcbin: {e}"))?;
    // libnice skips loopback when gathering; naming the address makes it
    // gather there (and only there), which is what a loopback test wants.
    let ice = webrtc.property::<gst::glib::Object>("ice-agent");
    if !ice.emit_by_name::<bool>("add-local-ip-address", &[&"127.0.0.1"]) {
        return Err("webrtcbin refused 127.0.0.1 as its ICE address".into());
    }
    for (caps, kind) in [(VIDEO_CAPS, "video"), (AUDIO_CAPS, "audio")] {
        let caps: gst::Caps = caps.parse().map_err(|e| format!("{kind} caps: {e}"))?;
        webrtc.emit_by_name::<gst_webrtc::WebRTCRTPTransceiver>(
            "add-transceiver",
            &[&gst_webrtc::WebRTCRTPTransceiverDirection::Recvonly, &caps],
        );
    }
    {
        let pipeline_weak = pipeline.downgrade();
        let shared = shared.clone();
        webrtc.connect_pad_added(move |_, pad| {
            if let Some(p) = pipeline_weak.upgrade() {
                on_pad_added(&p, pad, &shared);
            }
        });
    }
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| format!("pipeline to PLAYING: {e}"))?;

    shared.stage("create-offer");
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("create-offer", &[&None::<gst::Structure>, &promise]);
    let reply = await_promise(&promise, "create-offer")?.ok_or("create-offer: empty reply")?;
    let offer = reply
        .get::<gst_webrtc::WebRTCSessionDescription>("offer")
        .map_err(|e| format!("create-offer reply {reply}: {e}"))?;

    shared.stage("set-local-description");
    let promise = gst::Promise::new();
    webrtc.emit_by_name::<()>("set-local-description", &[&offer, &promise]);
    await_promise(&promise, "set-local-description")?;

    shared.stage("ice-gathering");
    let offer_sdp = gather_local_offer(&webrtc)?;
    if !offer_sdp.contains("a=candidate:") {
        shared.error("offer sent without candidates (gathering incomplete after 3 s)");
    }

    shared.stage("POST");
    let resp = http_request(&authority, "POST", &path, Some("application/sdp"), offer_sdp.as_bytes())?;
    {
        let mut r = shared.report.lock().unwrap();
        r.status = Some(resp.status);
        r.location = resp.header("location").map(str::to_owned);
    }
    let body = String::from_utf8_lossy(&resp.body).into_owned();
    if resp.status != 201 {
        return Err(format!("POST {}: {}", resp.status, body.trim()));
    }
    let location = resp
        .header("location")
        .ok_or("201 without a Location header")?
        .to_owned();

    shared.stage("set-remote-description");
    let remote_result = gst_sdp::SDPMessage::parse_buffer(body.as_bytes())
        .map_err(|e| format!("answer SDP: {e}"))
        .and_then(|answer| {
            let answer = gst_webrtc::WebRTCSessionDescription::new(gst_webrtc::WebRTCSDPType::Answer, answer);
            let promise = gst::Promise::new();
            webrtc.emit_by_name::<()>("set-remote-description", &[&answer, &promise]);
            await_promise(&promise, "set-remote-description")
        });

    if remote_result.is_ok() {
        shared.stage("receiving");
        let bus = pipeline.bus().expect("pipeline has a bus");
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let mut next_key = (key_every > 0).then(|| Instant::now() + Duration::from_secs(key_every));
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if next_key.is_some_and(|t| Instant::now() >= t) {
                // A decoder asking for a key frame, as after a loss: the
                // upstream event reaches webrtcbin's RTP session, which
                // sends the agent a PLI.
                let event = gst::event::CustomUpstream::new(
                    gst::Structure::builder("GstForceKeyUnit")
                        .field("all-headers", true)
                        .build(),
                );
                // The bin reports false when any sink (the audio one)
                // ignores the event; the video branch still carries it.
                pipeline.send_event(event);
                shared.counters.key_requests.fetch_add(1, Ordering::SeqCst);
                next_key = next_key.map(|t| t + Duration::from_secs(key_every));
            }
            let wait = left.min(Duration::from_millis(200));
            let Some(msg) = bus.timed_pop_filtered(
                gst::ClockTime::from_nseconds(wait.as_nanos() as u64),
                &[gst::MessageType::Error, gst::MessageType::Eos],
            ) else {
                continue;
            };
            match msg.view() {
                gst::MessageView::Error(e) => {
                    let src = msg.src().map(|s| s.path_string().to_string()).unwrap_or_default();
                    let debug = e.debug().map(|d| format!(" ({d})")).unwrap_or_default();
                    shared.error(format!("{src}: {}{debug}", e.error()));
                    break;
                }
                gst::MessageView::Eos(_) => break,
                _ => {}
            }
        }
    }
    // Frames that straggle in during DELETE and teardown would inflate a
    // caller's frames-per-second over --seconds.
    shared.counters.frozen.store(true, Ordering::SeqCst);

    // The session exists on the agent even if our side failed, so it is
    // always deleted.
    shared.stage("DELETE");
    let delete_target = if location.starts_with("http://") {
        split_url(&location)
    } else {
        Some((authority.clone(), location.clone()))
    };
    match delete_target.map(|(a, p)| http_request(&a, "DELETE", &p, None, b"")) {
        Some(Ok(r)) => shared.report.lock().unwrap().delete_status = Some(r.status),
        Some(Err(e)) => shared.error(e),
        None => shared.error(format!("cannot DELETE, bad Location {location:?}")),
    }

    shared.stage("teardown");
    teardown(pipeline, shared);
    remote_result.map(|_| ())
}

/// Going to NULL waits for libnice and DTLS threads; if that wedges, the
/// verdict is already known and matters more than a clean shutdown.
fn teardown(pipeline: gst::Pipeline, shared: &Arc<Shared>) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = pipeline.set_state(gst::State::Null);
        let _ = tx.send(());
    });
    if rx.recv_timeout(Duration::from_secs(5)).is_err() {
        shared.error("pipeline did not reach NULL within 5 s");
    }
}

fn main() {
    let mut url = None;
    let mut seconds = 8u64;
    let mut key_every = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = Some(args.next().unwrap_or_else(|| usage("--url needs a value"))),
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage("--seconds needs a whole number"))
            }
            "--key-frame-every" => {
                key_every = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| usage("--key-frame-every needs a whole number of seconds"))
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown argument {other:?}")),
        }
    }
    let url = url.unwrap_or_else(|| usage("--url is required"));
    if split_url(&url).is_none() {
        usage(&format!("--url must be http://HOST:PORT/PATH, got {url:?}"));
    }

    let shared = Arc::new(Shared {
        report: Mutex::new(Report {
            stage: "start",
            ..Default::default()
        }),
        counters: Counters::default(),
        printed: AtomicBool::new(false),
    });
    {
        let shared = shared.clone();
        let limit = Duration::from_secs(seconds) + WATCHDOG_SLACK;
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            let stage = shared.report.lock().unwrap_or_else(|e| e.into_inner()).stage;
            shared.print(Some(format!(
                "watchdog: no verdict after {} s (stuck in {stage})",
                limit.as_secs()
            )));
            std::process::exit(0);
        });
    }

    let result = run(&url, seconds, key_every, &shared);
    let forced = result.err().inspect(|e| shared.error(e.clone()));
    // A failed POST already explains itself through status; other failures
    // (no answer, bad SDP) become the reason so ok is false even if a stray
    // frame was counted.
    let forced = forced.filter(|_| shared.report.lock().unwrap().status == Some(201));
    shared.print(forced);
    // Skips destructors: GStreamer objects may still be referenced by
    // threads that a wedged teardown left behind.
    std::process::exit(0);
}
