//! `POST /putMedia` on a gateway (`[ingest] enabled = true`): the PutMedia
//! protocol of Kinesis Video Streams, answered by this process. The body is
//! read as it arrives and handed to an [`IngestSession`] on a blocking
//! thread; its ACKs go back as chunks of the response, which starts before
//! the body ends (reference §2.2).

use std::collections::{BTreeMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::Body;
use crate::kvs::ack::{Ack, AckKind};
use crate::kvs::ingest::TimecodeType;
use crate::kvs::session::IngestSession;
use crate::kvs::sigv4::{self, Credential};
use crate::kvs::timestamp;
use crate::store::{validate_stream_name, Store};

/// An IDLE ACK after this long without body bytes (the service sends them
/// while a producer is quiet).
const IDLE_EVERY: Duration = Duration::from_secs(3);
/// The connection is closed after this long without body bytes (the
/// service's 30 s).
const IDLE_LIMIT: Duration = Duration::from_secs(30);

/// Group commit's bounds: a sync at least every this many fragments, ...
const GROUP_COMMIT_FRAGMENTS: usize = 16;
/// ... this many payload bytes (what the live tail holds back meanwhile),
const GROUP_COMMIT_BYTES: u64 = 16 * 1024 * 1024;
/// ... and this long after the oldest waiting fragment arrived.
const GROUP_COMMIT_WAIT: Duration = Duration::from_millis(500);

/// The gateway's PutMedia endpoint and control plane.
pub struct Ingest {
    /// Streams with a PutMedia connection now: one each (reference §2.4.3).
    active: Mutex<HashSet<String>>,
    /// DescribeStream, CreateStream, TagStream, GetDataEndpoint.
    pub control: super::control::ControlPlane,
    /// The keys SigV4 signatures are checked against; `None`: no checks
    /// (`[ingest] auth = "none"`).
    credentials: Option<Vec<Credential>>,
    /// Per KVS stream, since this process started.
    status: Mutex<BTreeMap<String, IngestStatus>>,
}

/// One ingested stream's figures, for `/api/streams` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct IngestStatus {
    /// A PutMedia connection is open now.
    pub connected: bool,
    /// PutMedia connections answered 200.
    pub connections: u64,
    /// Connections refused before the 200 (a second connection, bad
    /// headers naming this stream).
    pub refused: u64,
    /// Body bytes received.
    pub bytes_received: u64,
    /// ACKs sent, by type.
    pub acks: crate::kvs::uploader::AckCounts,
    /// ERROR ACKs sent, by ErrorId.
    pub errors: BTreeMap<u32, u64>,
    /// The last ERROR or refusal, with its reason.
    pub last_error: Option<String>,
}

impl IngestStatus {
    fn count(&mut self, ack: &Ack) {
        match ack.kind {
            AckKind::Buffering => self.acks.buffering += 1,
            AckKind::Received => self.acks.received += 1,
            AckKind::Persisted => self.acks.persisted += 1,
            AckKind::Idle => self.acks.idle += 1,
            AckKind::Error => {
                self.acks.error += 1;
                *self.errors.entry(ack.error_id.unwrap_or(0)).or_default() += 1;
                self.last_error = Some(format!(
                    "ERROR {} {}",
                    ack.error_id.unwrap_or(0),
                    ack.error_code.as_deref().unwrap_or_default()
                ));
            }
            AckKind::Other(_) => {}
        }
    }
}

/// A number per PutMedia connection, for `x-amzn-RequestId` (logs on both
/// ends can then name the connection).
fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// Releases a stream's connection slot when the connection ends.
struct Active {
    ingest: Arc<Ingest>,
    stream: String,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Ok(mut a) = self.ingest.active.lock() {
            a.remove(&self.stream);
        }
    }
}

/// The service's error replies before the 200: a JSON body with the
/// exception name, as its SDKs expect.
pub fn refuse(status: StatusCode, exception: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "message": message, "__type": exception }).to_string();
    let mut r = Response::new(playback::http::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(
        "x-amzn-ErrorType",
        HeaderValue::from_str(exception).unwrap_or(HeaderValue::from_static("Exception")),
    );
    r
}

/// Why a PutMedia is refused before the 200: the status, the exception
/// name and the message of [`refuse`].
struct Refusal(StatusCode, &'static str, String);

/// How long the rest of a body the gateway no longer wants (refused, or
/// after an ERROR) is still read, and how much of it.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Reads and drops what remains of `body`, within [`LINGER`] and
/// [`LINGER_BYTES`]. A connection closed with its body unread is reset
/// (TCP RST), and a producer busy writing sees "connection reset" or "error
/// writing a body" instead of the answer it was sent: a refusal reads as a
/// network failure (it backs off instead of asking again shortly), and an
/// ERROR ACK is lost (a skip ErrorId's fragment is sent again).
async fn drain(body: &mut Incoming) {
    let until = tokio::time::Instant::now() + LINGER;
    let mut read = 0;
    while read < LINGER_BYTES {
        match tokio::time::timeout_at(until, body.frame()).await {
            Ok(Some(Ok(frame))) => read += frame.data_ref().map_or(0, Bytes::len),
            _ => break,
        }
    }
}

/// Sends a refusal while the producer may still be sending its body, which
/// is drained meanwhile.
fn linger(mut body: Incoming, refusal: Response<Body>) -> Response<Body> {
    tokio::spawn(async move { drain(&mut body).await });
    refusal
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

impl Ingest {
    /// A gateway keeping its KVS streams in `store_path/kvs-streams.json`.
    pub fn new(store_path: &std::path::Path, credentials: Option<Vec<Credential>>) -> Self {
        Ingest {
            active: Mutex::default(),
            control: super::control::ControlPlane::open(store_path.join("kvs-streams.json")),
            credentials,
            status: Mutex::default(),
        }
    }

    /// Every stream that had a PutMedia connection (or a refused one).
    pub fn status(&self) -> BTreeMap<String, IngestStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, stream: &str, f: impl FnOnce(&mut IngestStatus)) {
        if let Ok(mut s) = self.status.lock() {
            f(s.entry(stream.to_owned()).or_default());
        }
    }

    /// Checks a request's SigV4 signature; `payload_hash` as signed.
    pub fn authorize<B>(&self, req: &Request<B>, payload_hash: &str) -> Result<(), sigv4::SigV4Error> {
        let Some(credentials) = &self.credentials else {
            return Ok(());
        };
        let hash = req
            .headers()
            .get("x-amz-content-sha256")
            .and_then(|v| v.to_str().ok())
            .unwrap_or(payload_hash);
        sigv4::verify(
            req.method().as_str(),
            req.uri().path(),
            req.uri().query(),
            req.headers(),
            hash,
            credentials,
            std::time::SystemTime::now(),
        )
        .map(|key| debug!(key, "SigV4 verified"))
    }

    /// Answer a PutMedia request.
    pub async fn put_media(self: &Arc<Self>, req: Request<Incoming>, store: Store) -> Response<Body> {
        match self.admit(&req) {
            Ok((name, timecodes, slot)) => self.serve(req.into_body(), store, name, timecodes, slot),
            Err(Refusal(status, exception, message)) => linger(req.into_body(), refuse(status, exception, &message)),
        }
    }

    /// The checks before the 200: the signature, the headers, the stream's
    /// one connection (whose slot it takes).
    fn admit(self: &Arc<Self>, req: &Request<Incoming>) -> Result<(String, TimecodeType, Active), Refusal> {
        // The body streams: PutMedia signs the empty payload (reference §3).
        if let Err(e) = self.authorize(req, sigv4::EMPTY_SHA256) {
            info!(error = %e, "PutMedia refused");
            return Err(Refusal(StatusCode::FORBIDDEN, "NotAuthorizedException", e.to_string()));
        }
        let invalid = |m: String| Err(Refusal(StatusCode::BAD_REQUEST, "InvalidArgumentException", m));
        let name = match (header(req, "x-amzn-stream-name"), header(req, "x-amzn-stream-arn")) {
            (Some(n), None) => n.to_owned(),
            (None, Some(arn)) => match arn.rsplit_once(":stream/") {
                // arn:aws:kinesisvideo:REGION:ACCOUNT:stream/NAME/CREATION-TIME
                Some((_, rest)) => rest.split('/').next().unwrap_or_default().to_owned(),
                None => return invalid(format!("x-amzn-stream-arn {arn:?} is not a stream ARN")),
            },
            (Some(_), Some(_)) => return invalid("give x-amzn-stream-name or x-amzn-stream-arn, not both".into()),
            (None, None) => return invalid("x-amzn-stream-name (or x-amzn-stream-arn) is missing".into()),
        };
        if let Err(e) = validate_stream_name(&name) {
            return invalid(format!("x-amzn-stream-name: {e}"));
        }
        let timecodes = match header(req, "x-amzn-fragment-timecode-type") {
            Some(t) if t.eq_ignore_ascii_case("ABSOLUTE") => TimecodeType::Absolute,
            Some(t) if t.eq_ignore_ascii_case("RELATIVE") => {
                let Some(start) = header(req, "x-amzn-producer-start-timestamp") else {
                    return invalid("RELATIVE timecodes need x-amzn-producer-start-timestamp".into());
                };
                match timestamp::parse(start) {
                    Ok(t) => TimecodeType::Relative(t),
                    Err(e) => return invalid(format!("x-amzn-producer-start-timestamp: {e}")),
                }
            }
            Some(t) => {
                return invalid(format!(
                    "x-amzn-fragment-timecode-type {t:?}: expected ABSOLUTE or RELATIVE"
                ))
            }
            None => return invalid("x-amzn-fragment-timecode-type is missing".into()),
        };
        let slot = {
            let Ok(mut active) = self.active.lock() else {
                return Err(Refusal(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceUnavailableException",
                    "poisoned".into(),
                ));
            };
            if !active.insert(name.clone()) {
                self.update(&name, |s| {
                    s.refused += 1;
                    s.last_error = Some("a second PutMedia connection was refused".into());
                });
                return Err(Refusal(
                    StatusCode::BAD_REQUEST,
                    "ConnectionLimitExceededException",
                    format!("stream {name} already has a PutMedia connection"),
                ));
            }
            Active {
                ingest: self.clone(),
                stream: name.clone(),
            }
        };
        Ok((name, timecodes, slot))
    }

    /// The accepted connection: the 200 at once, ACKs as the body is read.
    fn serve(
        self: &Arc<Self>,
        mut body: Incoming,
        store: Store,
        name: String,
        timecodes: TimecodeType,
        slot: Active,
    ) -> Response<Body> {
        let retention_hours = self.control.ensure(&name);
        self.update(&name, |s| {
            s.connected = true;
            s.connections += 1;
        });
        info!(stream = %name, ?timecodes, retention_hours, "PutMedia connection");

        let (ack_tx, ack_rx) = mpsc::unbounded_channel::<Bytes>();
        let (data_tx, mut data_rx) = mpsc::channel::<Bytes>(16);
        // Set when the body broke off rather than ending.
        let broken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let broken_seen = broken.clone();
        // The session: blocking (store writes, fsync).
        let session_acks = ack_tx.clone();
        let stream = name.clone();
        let counted = self.clone();
        let worker = tokio::task::spawn_blocking(move || {
            let mut session = IngestSession::new(store, stream.clone(), timecodes).with_group_commit();
            if retention_hours == 0 {
                session = session.without_persisted_acks();
            }
            let mut acks = Vec::new();
            let send = |acks: &mut Vec<Ack>| {
                counted.update(&stream, |s| acks.iter().for_each(|a| s.count(a)));
                for a in acks.drain(..) {
                    let _ = session_acks.send(Bytes::from(a.to_line()));
                }
            };
            // Since the oldest fragment waiting for a sync was received.
            let mut waiting_since: Option<std::time::Instant> = None;
            while let Some(chunk) = data_rx.blocking_recv() {
                session.feed(&chunk, &mut acks);
                // Group commit: fragments that arrive while more of the body
                // is already here wait, within bounds, and are made durable
                // together; a live stream (nothing queued) syncs each.
                let (fragments, bytes) = session.waiting();
                if fragments > 0 {
                    let since = *waiting_since.get_or_insert_with(std::time::Instant::now);
                    if data_rx.is_empty()
                        || fragments >= GROUP_COMMIT_FRAGMENTS
                        || bytes >= GROUP_COMMIT_BYTES
                        || since.elapsed() >= GROUP_COMMIT_WAIT
                    {
                        session.sync(&mut acks);
                        waiting_since = None;
                    }
                }
                send(&mut acks);
                if session.failed() {
                    break;
                }
            }
            if broken_seen.load(std::sync::atomic::Ordering::SeqCst) {
                session.abort();
            } else {
                session.finish(&mut acks);
                send(&mut acks);
            }
            debug!(stream = %stream, persisted = session.persisted, "PutMedia session ended");
            // The stream is free before this session's ACK sender goes, so
            // before the response can end: a producer that read the end (or
            // an ERROR) and at once asks again is not refused with
            // ConnectionLimitExceeded by a slot that was about to go. The
            // flag goes first, so it never clears a next connection's.
            counted.update(&stream, |s| s.connected = false);
            drop(slot);
        });
        // The body: read as it comes; IDLE while it does not.
        let ingest = self.clone();
        tokio::spawn(async move {
            let mut quiet = Duration::ZERO;
            let mut refused_rest = false;
            loop {
                match tokio::time::timeout(IDLE_EVERY, body.frame()).await {
                    Ok(Some(Ok(frame))) => {
                        quiet = Duration::ZERO;
                        if let Ok(data) = frame.into_data() {
                            let n = data.len() as u64;
                            ingest.update(&name, |s| s.bytes_received += n);
                            if data_tx.send(data).await.is_err() {
                                refused_rest = true; // the session ended it (ERROR)
                                break;
                            }
                        }
                    }
                    Ok(Some(Err(e))) => {
                        info!(stream = %name, error = %e, "PutMedia body broke off; the fragment in progress is dropped");
                        broken.store(true, std::sync::atomic::Ordering::SeqCst);
                        break;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        quiet += IDLE_EVERY;
                        if quiet >= IDLE_LIMIT {
                            info!(stream = %name, "PutMedia connection idle for 30 s; closing");
                            broken.store(true, std::sync::atomic::Ordering::SeqCst);
                            break;
                        }
                        let idle = Ack {
                            kind: AckKind::Idle,
                            fragment_timecode: None,
                            fragment_number: None,
                            error_id: None,
                            error_code: None,
                        };
                        ingest.update(&name, |s| s.count(&idle));
                        let _ = ack_tx.send(Bytes::from(idle.to_line()));
                    }
                }
            }
            drop(data_tx);
            drop(ack_tx);
            let _ = worker.await;
            // The stream is free for the producer's next connection (the
            // session let it go) while the rest of this body is drained, so
            // that the ERROR (now sent, the response ended) is read rather
            // than reset away.
            if refused_rest {
                drain(&mut body).await;
            }
        });
        let mut r = Response::new(AckBody(ack_rx).boxed());
        r.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        r.headers_mut()
            .insert("x-amzn-RequestId", HeaderValue::from(next_request_id()));
        r
    }
}

/// The ACK stream as a response body: one chunk per ACK, ended when the
/// session and the body reader are both done.
struct AckBody(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for AckBody {
    type Data = playback::http::reply::BodyChunks;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|a| a.map(|b| Ok(Frame::data(playback::http::reply::BodyChunks::from(b)))))
    }
}
