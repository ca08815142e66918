//! PutMedia uploader (issue 6, first part): one stream's fragments sent from
//! a store cursor to a KVS-compatible endpoint as one chunked MKV body per
//! connection, frame by frame, with the ACKs recorded per fragment in the
//! store and the upload resumed, after any failure, from the oldest fragment
//! not yet PERSISTED.
//!
//! Where the body goes and how it is signed comes from an [`Upstream`]:
//! the control plane's data endpoint (GetDataEndpoint, cached, asked again
//! after a connection to it failed) or a fixed one, `http://` or
//! `https://`, signed with the configured credentials as they are at each
//! connection (temporary ones refreshed).
//!
//! An upload schedule ([`crate::schedule`]) keeps it from connecting
//! outside its windows; a window's end ends the connection between
//! fragments, as rotation does.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::Buf;
use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
use fragmenter::sink::Chunks;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use playback::http::reply::BodyChunks;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::ack::{AckKind, AckReader};
use super::errors::{self, Action};
use super::timestamp;
use super::tls::{self, Origin, TlsError};
use super::upstream::{Upstream, UpstreamSpec};
use crate::schedule::Schedule;
use crate::store::{CursorFrom, CursorItem, FragmentId, Store, StoreError, UploadState};

/// No ACK for this long while fragments are being sent: reconnect. The
/// service and the gateway send IDLE every few seconds, so silence this long
/// means a dead path (a stalled proxy, a blackholed route), not a slow one.
const ACK_TIMEOUT: Duration = Duration::from_secs(20);

/// A TCP connect or the PutMedia response head taking longer than this: a
/// dead path; try again after the backoff.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One stream's upload.
#[derive(Clone, Debug)]
pub struct UploadSpec {
    /// The stream in the store.
    pub stream: String,
    /// The stream name at the endpoint.
    pub kvs_stream: String,
    /// Where it goes and how it signs.
    pub upstream: UpstreamSpec,
    /// End a connection cleanly, between fragments, after this long.
    pub rotate_after: Duration,
    /// Most body bytes per second (the service: 12.5 MB/s per stream).
    pub max_bytes_per_second: u64,
    /// Most fragments started per second (the service: 5).
    pub max_fragments_per_second: u32,
    /// When to upload: outside its windows no connection is made, and one
    /// open when a window closes ends between fragments.
    pub schedule: Schedule,
}

/// The SigV4 headers (authorization, x-amz-date, x-amz-security-token) for
/// a PutMedia carrying `headers`: every header signed, the payload as the
/// empty string (reference §3).
fn sign(
    credentials: &aws_credential_types::Credentials,
    region: &str,
    url: &str,
    headers: &[(&str, String)],
) -> Result<Vec<(String, String)>, UploadError> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("kinesisvideo")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| UploadError::Other(format!("signing: {e}")))?
        .into();
    let signable = SignableRequest::new(
        "POST",
        url,
        headers.iter().map(|(k, v)| (*k, v.as_str())),
        SignableBody::Precomputed(super::sigv4::EMPTY_SHA256.into()),
    )
    .map_err(|e| UploadError::Other(format!("signing: {e}")))?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| UploadError::Other(format!("signing: {e}")))?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect())
}

/// ACKs received, by type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AckCounts {
    /// BUFFERING.
    pub buffering: u64,
    /// RECEIVED.
    pub received: u64,
    /// PERSISTED.
    pub persisted: u64,
    /// ERROR.
    pub error: u64,
    /// IDLE.
    pub idle: u64,
}

/// One stream's upload, for `/api/streams` and `/metrics`.
#[derive(Clone, Debug, Default)]
pub struct UploadStatus {
    /// The stream in the store.
    pub stream: String,
    /// The stream name at the endpoint.
    pub kvs_stream: String,
    /// The control-plane endpoint (or the fixed data endpoint).
    pub endpoint: String,
    /// The PutMedia endpoint in use (GetDataEndpoint's answer, or fixed).
    pub data_endpoint: Option<String>,
    /// Where the credentials come from: `none`, `static`,
    /// `iot-role-alias`, `default-chain`.
    pub credentials: String,
    /// The provider that gave the current credentials (e.g. `Environment`,
    /// `ProfileFile`, `IotRoleAlias`); never a key.
    pub credentials_provider: Option<String>,
    /// When the current credentials expire, seconds since the epoch.
    pub credentials_expire: Option<u64>,
    /// Control-plane calls made.
    pub control_plane: super::control_plane::Calls,
    /// A PutMedia connection is up.
    pub connected: bool,
    /// Connections made (answered 200).
    pub connections: u64,
    /// Why the last connection ended, when it failed.
    pub last_error: Option<String>,
    /// While waiting after a failure: when the next attempt starts,
    /// milliseconds since the epoch.
    pub retry_at_ms: Option<u64>,
    /// ACKs by type.
    pub acks: AckCounts,
    /// ERROR ACKs by ErrorId.
    pub errors: std::collections::BTreeMap<u32, u64>,
    /// Body bytes sent.
    pub bytes_sent: u64,
    /// When it uploads.
    pub schedule: Schedule,
    /// Outside the schedule's windows, waiting for the next to open.
    pub waiting_for_window: bool,
}

/// Shared with the HTTP handlers.
pub type UploadStatusHandle = Arc<Mutex<UploadStatus>>;

fn update(status: &UploadStatusHandle, f: impl FnOnce(&mut UploadStatus)) {
    if let Ok(mut s) = status.lock() {
        f(&mut s);
    }
}

/// The wait before asking again when the endpoint refused a connection
/// because it still holds the stream's previous one.
const CONNECTION_LIMIT_RETRY: Duration = Duration::from_secs(2);

/// The least wait between two attempts.
const MIN_RETRY: Duration = Duration::from_secs(1);

/// How long to wait after a failed attempt that took `took`. The backoff
/// spaces attempts' starts, not the gaps between them: an attempt into a
/// blackhole already spent its timeouts (10 s and more) waiting, and
/// sleeping the whole backoff on top would leave a route that came back
/// unused for up to 30 s more.
fn retry_wait(backoff: Duration, took: Duration, held: bool) -> Duration {
    match held {
        true => CONNECTION_LIMIT_RETRY,
        false => backoff.saturating_sub(took).max(MIN_RETRY),
    }
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
enum UploadError {
    #[error("endpoint {0}")]
    Connect(#[from] TlsError),
    #[error("{0}")]
    Upstream(String),
    #[error("HTTP: {0}")]
    Http(#[from] hyper::Error),
    #[error("the endpoint answered {0}: {1}")]
    Status(u16, String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("ERROR ACK {0} ({1})")]
    Ack(u32, String),
    #[error("no ACK for {0:?}")]
    Silent(Duration),
    #[error("{0} took longer than {1:?}")]
    Timeout(&'static str, Duration),
    #[error("the fragment being sent was dropped by its writer")]
    Aborted,
    #[error("the ACK stream ended")]
    Ended,
    #[error("{0}")]
    Other(String),
}

impl UploadError {
    /// A 400 `ConnectionLimitExceededException`: the stream's previous
    /// connection is still open at the endpoint.
    fn is_connection_limit(&self) -> bool {
        matches!(self, UploadError::Status(400, body) if body.contains("ConnectionLimitExceededException"))
    }
}

/// The request body: MKV bytes as the cursor yields them, a batch of
/// shared buffers per data frame (written with `writev`, never joined).
struct ChannelBody(mpsc::Receiver<BodyChunks>);

impl hyper::body::Body for ChannelBody {
    type Data = BodyChunks;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<BodyChunks>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// Most body bytes gathered from a cursor that has more ready before they
/// are sent. A backlog goes out in batches of this (one `writev` of up to
/// 64 buffers each); a live frame, with nothing behind it, at once.
const BATCH_BYTES: usize = 256 * 1024;

/// Batches queued for the connection: with [`BATCH_BYTES`], at most 1 MB.
const BATCH_QUEUE: usize = 4;

/// Sends what `out` gathered since the last batch as one data frame, counts
/// it, and waits if it ran ahead of the byte rate.
async fn send_batch(
    out: &mut Chunks,
    tx: &mpsc::Sender<BodyChunks>,
    status: &UploadStatusHandle,
    pace: &mut Pace,
    began: tokio::time::Instant,
) -> Result<(), UploadError> {
    let parts = out.take();
    if parts.is_empty() {
        return Ok(());
    }
    let batch = BodyChunks::new(parts);
    let n = batch.remaining() as u64;
    tx.send(batch).await.map_err(|_| UploadError::Ended)?;
    update(status, |s| s.bytes_sent += n);
    let wait = pace.bytes(n, began.elapsed());
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Ok(())
}

/// Upload until `stop`; reconnects with exponential backoff (attempts at
/// least 1 s to 30 s apart, with jitter) after every failure.
pub async fn run(spec: UploadSpec, store: Store, stop: Arc<AtomicBool>, status: UploadStatusHandle) {
    update(&status, |s| {
        s.stream = spec.stream.clone();
        s.kvs_stream = spec.kvs_stream.clone();
        s.endpoint = spec.upstream.endpoint_text();
        s.credentials = spec.upstream.credentials.kind().to_owned();
        s.schedule = spec.schedule.clone();
    });
    let mut backoff = Duration::from_secs(1);
    let skip: SkipSet = Arc::default();
    // Made here, when the upload starts: recording never builds it.
    let mut upstream: Option<Upstream> = None;
    while !stop.load(Ordering::SeqCst) {
        if !spec.schedule.is_open(SystemTime::now()) {
            wait_for_window(&spec, &stop, &status).await;
            continue;
        }
        let attempt = tokio::time::Instant::now();
        let result = match &upstream {
            Some(u) => connection(&spec, u, &store, &stop, &status, &skip).await,
            None => match Upstream::new(&spec.kvs_stream, &spec.upstream).await {
                Ok(u) => {
                    upstream = Some(u);
                    continue;
                }
                Err(e) => Err(UploadError::Upstream(e)),
            },
        };
        update(&status, |s| s.connected = false);
        match result {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                // The endpoint still holds our previous connection (it lets
                // it go after its idle timeout): it is up, so the backoff an
                // outage built up does not apply; ask again shortly.
                let held = e.is_connection_limit();
                let wait = retry_wait(backoff, attempt.elapsed(), held);
                warn!(stream = %spec.stream, error = %e, retry_in = ?wait, "upload connection ended");
                let jitter = Duration::from_millis(u64::from(std::process::id() ^ wait.subsec_nanos()) % 250);
                let retry_at = SystemTime::now() + wait + jitter;
                update(&status, |s| {
                    s.last_error = Some(e.to_string());
                    s.retry_at_ms = retry_at
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_millis() as u64);
                });
                let until = tokio::time::Instant::now() + wait + jitter;
                while tokio::time::Instant::now() < until && !stop.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                update(&status, |s| s.retry_at_ms = None);
                backoff = match held {
                    true => Duration::from_secs(1),
                    false => (backoff * 2).min(Duration::from_secs(30)),
                };
            }
        }
    }
}

/// Outside the upload schedule's windows: no connection until one opens (or
/// `stop`), and the status says so. Media is stored meanwhile; the window
/// drains it oldest first, like any backlog.
async fn wait_for_window(spec: &UploadSpec, stop: &AtomicBool, status: &UploadStatusHandle) {
    info!(stream = %spec.stream, schedule = %spec.schedule, "upload waits for its window");
    update(status, |s| s.waiting_for_window = true);
    while !stop.load(Ordering::SeqCst) && !spec.schedule.is_open(SystemTime::now()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    update(status, |s| s.waiting_for_window = false);
}

/// Paces a connection's body under the per-stream limits: bytes and
/// fragments may not run ahead of their rate since the connection began,
/// beyond a burst of one second's worth. Live media is far below both and
/// is never held; a backlog drains at whichever limit it meets first.
#[derive(Debug)]
struct Pace {
    bytes_per_second: f64,
    fragments_per_second: f64,
    bytes: u64,
    fragments: u64,
}

impl Pace {
    fn new(max_bytes_per_second: u64, max_fragments_per_second: u32) -> Self {
        Pace {
            bytes_per_second: max_bytes_per_second.max(1) as f64,
            fragments_per_second: f64::from(max_fragments_per_second.max(1)),
            bytes: 0,
            fragments: 0,
        }
    }

    /// How long to wait, `elapsed` into the connection, before sending a
    /// fragment's start.
    fn fragment(&mut self, elapsed: Duration) -> Duration {
        // The n-th fragment (from 0) may start at (n - burst) / rate.
        let ahead = (self.fragments as f64 - self.fragments_per_second).max(0.0);
        let due = Duration::from_secs_f64(ahead / self.fragments_per_second);
        self.fragments += 1;
        due.saturating_sub(elapsed)
    }

    /// How long to wait, `elapsed` into the connection, after `n` more
    /// bytes went out.
    fn bytes(&mut self, n: u64, elapsed: Duration) -> Duration {
        self.bytes += n;
        let ahead = (self.bytes as f64 - self.bytes_per_second).max(0.0);
        let due = Duration::from_secs_f64(ahead / self.bytes_per_second);
        due.saturating_sub(elapsed)
    }
}

/// Fragments on the wire: cluster timecode → store id.
type InFlight = Arc<Mutex<HashMap<u64, FragmentId>>>;

/// Fragments an ERROR said to skip. An ERROR often names a fragment still
/// being written (its index row does not exist yet), so the store cannot
/// record Skipped until the cursor reaches its end; until then this set
/// keeps it from being sent again.
type SkipSet = Arc<Mutex<std::collections::HashSet<FragmentId>>>;

async fn connection(
    spec: &UploadSpec,
    upstream: &Upstream,
    store: &Store,
    stop: &Arc<AtomicBool>,
    status: &UploadStatusHandle,
    skip: &SkipSet,
) -> Result<(), UploadError> {
    let from = match store.first_not_uploaded(&spec.stream) {
        Ok(Some(id)) => CursorFrom::Fragment(id),
        Ok(None) => CursorFrom::Live,
        Err(StoreError::UnknownStream(_)) => {
            tokio::time::sleep(Duration::from_secs(1)).await;
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let mut cursor = store.cursor(&spec.stream, from)?;
    if matches!(from, CursorFrom::Live) {
        // A fragment committed between the two calls is behind the live
        // cursor: it would go out later, on another connection, after newer
        // ones. Asked again, it is where this connection starts.
        if let Some(id) = store.first_not_uploaded(&spec.stream)? {
            cursor = store.cursor(&spec.stream, CursorFrom::Fragment(id))?;
        }
    }
    let endpoint = upstream.put_media_endpoint().await;
    update(status, |s| {
        s.control_plane = upstream.calls();
        if let Ok(e) = &endpoint {
            s.data_endpoint = Some(e.clone());
        }
    });
    let endpoint = endpoint.map_err(UploadError::Upstream)?;
    let credentials = upstream.credentials().await.map_err(UploadError::Upstream)?;
    update(status, |s| {
        s.credentials_provider = credentials.as_ref().and_then(super::credentials::provider_name);
        s.credentials_expire = credentials
            .as_ref()
            .and_then(|c| c.expiry())
            .and_then(|e| e.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_secs());
    });
    // Until the service accepts the connection, a failure may mean the
    // endpoint moved: ask the control plane again next time.
    let refused = |e: UploadError| {
        upstream.connection_failed(matches!(e, UploadError::Status(404, _)));
        e
    };
    let origin = Origin::parse(&endpoint).map_err(|e| refused(e.into()))?;
    let connector = match origin.tls {
        true => Some(upstream.tls().map_err(UploadError::Upstream)?),
        false => None,
    };
    let io = tls::connect(&origin, connector, CONNECT_TIMEOUT)
        .await
        .map_err(|e| refused(e.into()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| refused(e.into()))?;
    let conn = tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<BodyChunks>(BATCH_QUEUE);
    let headers: Vec<(&str, String)> = vec![
        ("host", origin.authority()),
        ("x-amzn-stream-name", spec.kvs_stream.clone()),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE".into()),
        ("x-amzn-producer-start-timestamp", timestamp::format(hardware::now())),
        ("x-amzn-fragment-acknowledgment-required", "1".into()),
        ("user-agent", concat!("edge-agent/", env!("CARGO_PKG_VERSION")).into()),
    ];
    let signature = match &credentials {
        Some(c) => sign(c, upstream.region(), &format!("{}/putMedia", origin.url()), &headers)?,
        None => Vec::new(),
    };
    let mut req = hyper::Request::post("/putMedia");
    for (k, v) in &headers {
        req = req.header(*k, v.as_str());
    }
    for (k, v) in &signature {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(ChannelBody(rx))
        .map_err(|e| UploadError::Other(e.to_string()))?;
    let in_flight: InFlight = Arc::default();

    // The body: from the cursor, frame by frame.
    let body_store = store.clone();
    let body_flight = in_flight.clone();
    let body_stop = stop.clone();
    let body_status = status.clone();
    let body_skip = skip.clone();
    let began = tokio::time::Instant::now();
    let rotate_at = began + spec.rotate_after;
    // The upload window's end (never, without a schedule).
    let now = SystemTime::now();
    let window_ends = match spec.schedule.is_open(now) {
        true => spec.schedule.next_change(now),
        false => Some(now),
    };
    let mut pace = Pace::new(spec.max_bytes_per_second, spec.max_fragments_per_second);
    let mut body = tokio::spawn(async move {
        let mut writer: Option<MkvWriter> = None;
        let mut out = Chunks::new();
        let mut current: Option<FragmentId> = None;
        let mut skipping = false;
        // Bytes of `out` already sent.
        let mut sent = 0;
        loop {
            let window_closed = window_ends.is_some_and(|t| SystemTime::now() >= t);
            if current.is_none()
                && (body_stop.load(Ordering::SeqCst) || tokio::time::Instant::now() >= rotate_at || window_closed)
            {
                // Between fragments: end the body cleanly.
                return send_batch(&mut out, &tx, &body_status, &mut pace, began).await;
            }
            // What the cursor has ready is taken without waiting; only when
            // it has nothing does what was gathered go out, and the cursor
            // is waited for.
            let item = match cursor.try_next()? {
                Some(item) => item,
                None => {
                    send_batch(&mut out, &tx, &body_status, &mut pace, began).await?;
                    sent = out.len();
                    match tokio::time::timeout(Duration::from_millis(500), cursor.next()).await {
                        Ok(item) => item?,
                        Err(_) => continue,
                    }
                }
            };
            match item {
                CursorItem::FragmentStart(head) if body_skip.lock().is_ok_and(|s| s.contains(&head.id)) => {
                    skipping = true;
                    current = Some(head.id);
                }
                CursorItem::Frame(_) if skipping => {}
                CursorItem::FragmentEnd(meta) if skipping => {
                    let _ = body_store.set_upload_state(meta.id, UploadState::Skipped);
                    skipping = false;
                    current = None;
                }
                CursorItem::FragmentStart(head) => {
                    skipping = false;
                    let wait = pace.fragment(began.elapsed());
                    if !wait.is_zero() {
                        send_batch(&mut out, &tx, &body_status, &mut pace, began).await?;
                        sent = out.len();
                        tokio::time::sleep(wait).await;
                    }
                    let same = writer.as_ref().is_some_and(|w| w.tracks() == &head.tracks[..]);
                    if !same {
                        let mut w = MkvWriter::new(&head.tracks, MkvWriterOptions::default())
                            .map_err(|e| UploadError::Other(e.to_string()))?;
                        w.write_header(&mut out);
                        writer = Some(w);
                    }
                    let w = writer.as_mut().expect("set above");
                    body_flight
                        .lock()
                        .map_err(|_| UploadError::Other("poisoned".into()))?
                        .insert(w.tick(head.start), head.id);
                    w.start_cluster(head.start, &mut out)
                        .map_err(|e| UploadError::Other(e.to_string()))?;
                    current = Some(head.id);
                }
                CursorItem::Frame(f) => {
                    if let Some(w) = writer.as_mut() {
                        w.write_frame(&f, &mut out)
                            .map_err(|e| UploadError::Other(e.to_string()))?;
                    }
                }
                CursorItem::FragmentEnd(meta) => {
                    if let Some(w) = writer.as_mut() {
                        w.end_cluster(&meta.metadata, &mut out);
                    }
                    let _ = body_store.set_upload_state(meta.id, UploadState::Sent);
                    current = None;
                }
                CursorItem::FragmentAborted(_) => return Err(UploadError::Aborted),
            }
            if out.len() - sent >= BATCH_BYTES {
                send_batch(&mut out, &tx, &body_status, &mut pace, began).await?;
                sent = out.len();
            }
        }
    });

    // A blackholed path accepts the connection and then says nothing; the
    // response head must come within the timeout or the body stops there.
    let response = tokio::select! {
        r = tokio::time::timeout(CONNECT_TIMEOUT, sender.send_request(req)) => match r {
            Ok(r) => r.map_err(|e| refused(e.into()))?,
            Err(_) => {
                body.abort();
                conn.abort();
                return Err(refused(UploadError::Timeout("the PutMedia response", CONNECT_TIMEOUT)));
            }
        },
        r = &mut body => {
            conn.abort();
            return match r { Ok(Ok(())) => Ok(()), Ok(Err(e)) => Err(e), Err(e) => Err(UploadError::Other(e.to_string())) };
        }
    };
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let text = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        body.abort();
        conn.abort();
        return Err(refused(UploadError::Status(
            status,
            String::from_utf8_lossy(&text).into_owned(),
        )));
    }
    info!(stream = %spec.stream, %endpoint, "PutMedia connection up");
    update(status, |s| {
        s.connected = true;
        s.connections += 1;
    });

    // The ACKs.
    let mut acks_body = response.into_body();
    let mut reader = AckReader::new();
    let mut acks = Vec::new();
    let result = loop {
        let frame = tokio::select! {
            f = tokio::time::timeout(ACK_TIMEOUT, acks_body.frame()) => f,
            r = &mut body, if !body.is_finished() => {
                match r {
                    Ok(Ok(())) => continue, // body ended cleanly: read the last ACKs
                    Ok(Err(e)) => break Err(e),
                    Err(e) => break Err(UploadError::Other(e.to_string())),
                }
            }
        };
        let data = match frame {
            Err(_) => break Err(UploadError::Silent(ACK_TIMEOUT)),
            Ok(None) => {
                // An object cut off by the end of the stream is reported.
                reader.finish(&mut acks);
                for e in acks.drain(..).filter_map(Result::err) {
                    warn!(stream = %spec.stream, error = %e, "ACK stream ended inside an ACK");
                }
                break if body.is_finished() {
                    Ok(())
                } else {
                    Err(UploadError::Ended)
                };
            }
            Ok(Some(Err(e))) => break Err(e.into()),
            Ok(Some(Ok(f))) => match f.into_data() {
                Ok(d) => d,
                Err(_) => continue,
            },
        };
        reader.feed(&data, &mut acks);
        let mut failed = None;
        for ack in acks.drain(..) {
            let Ok(ack) = ack else { continue };
            update(status, |s| match &ack.kind {
                AckKind::Buffering => s.acks.buffering += 1,
                AckKind::Received => s.acks.received += 1,
                AckKind::Persisted => s.acks.persisted += 1,
                AckKind::Error => {
                    s.acks.error += 1;
                    *s.errors.entry(ack.error_id.unwrap_or(0)).or_default() += 1;
                }
                AckKind::Idle => s.acks.idle += 1,
                AckKind::Other(_) => {}
            });
            let id = ack
                .fragment_timecode
                .and_then(|t| in_flight.lock().ok().and_then(|m| m.get(&t).copied()));
            match (&ack.kind, id) {
                (AckKind::Received, Some(id)) => {
                    // Retention 0 at the service: no PERSISTED will come,
                    // and a fragment left Received would be sent again
                    // on every connection.
                    let state = if upstream.received_is_final() {
                        UploadState::Persisted
                    } else {
                        UploadState::Received
                    };
                    let _ = store.set_upload_state(id, state);
                }
                (AckKind::Persisted, Some(id)) => {
                    let _ = store.set_upload_state(id, UploadState::Persisted);
                    if let Some(n) = &ack.fragment_number {
                        let _ = store.set_kvs_fragment_number(id, n);
                    }
                    if let Some(t) = ack.fragment_timecode {
                        if let Ok(mut m) = in_flight.lock() {
                            m.remove(&t);
                        }
                    }
                }
                (AckKind::Error, id) => {
                    let error_id = ack.error_id.unwrap_or(0);
                    if let Some(id) = id {
                        let state = match errors::action(error_id) {
                            Action::Skip => {
                                if let Ok(mut s) = skip.lock() {
                                    s.insert(id);
                                }
                                UploadState::Skipped
                            }
                            _ => UploadState::Failed { error_id },
                        };
                        // Fails for a fragment not yet committed; the skip
                        // set covers that one.
                        let _ = store.set_upload_state(id, state);
                    }
                    failed = Some(UploadError::Ack(error_id, ack.error_code.clone().unwrap_or_default()));
                }
                _ => {}
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
    };
    body.abort();
    conn.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_limit_refusal_skips_the_backoff() {
        let held = r#"{"__type":"ConnectionLimitExceededException","message":"stream cam-up already has a PutMedia connection"}"#;
        assert!(UploadError::Status(400, held.into()).is_connection_limit());
        let bad = r#"{"__type":"InvalidArgumentException","message":"x-amzn-stream-name is missing"}"#;
        assert!(!UploadError::Status(400, bad.into()).is_connection_limit());
        assert!(!UploadError::Status(503, held.into()).is_connection_limit());
        assert!(!UploadError::Silent(ACK_TIMEOUT).is_connection_limit());
    }

    #[test]
    fn the_backoff_spaces_attempts_so_time_spent_timing_out_counts() {
        let s = Duration::from_secs;
        // An attempt refused at once waits out the rest of the backoff.
        assert_eq!(
            retry_wait(s(8), Duration::from_millis(3), false),
            s(8) - Duration::from_millis(3)
        );
        // An attempt that spent 21 s in timeouts against a 30 s backoff
        // tries again 9 s later, not 30.
        assert_eq!(retry_wait(s(30), s(21), false), s(9));
        // Never sooner than a second, however long the attempt took (a
        // connection that carried media for an hour, then dropped).
        assert_eq!(retry_wait(s(30), s(3600), false), MIN_RETRY);
        assert_eq!(retry_wait(s(1), Duration::ZERO, false), s(1));
        // A held connection: the endpoint is up, ask again shortly.
        assert_eq!(retry_wait(s(30), Duration::ZERO, true), CONNECTION_LIMIT_RETRY);
    }

    #[test]
    fn a_backlog_is_paced_at_the_first_limit_it_meets_and_live_media_never_waits() {
        // 12.5 MB/s and 5 fragments/s; 1 MB fragments sent back to back.
        let mut p = Pace::new(12_500_000, 5);
        let mut t = Duration::ZERO;
        for _ in 0..50 {
            t += p.fragment(t);
            t += p.bytes(1_000_000, t);
        }
        // Fragments bind (5/s = 5 MB/s < 12.5 MB/s): the 50th starts at
        // (49 - 5 of burst) / 5 = 8.8 s.
        assert!((8.7..8.9).contains(&t.as_secs_f64()), "{t:?}");

        let mut p = Pace::new(12_500_000, 5);
        let mut t = Duration::ZERO;
        for _ in 0..10 {
            t += p.fragment(t);
            t += p.bytes(5_000_000, t);
        }
        // Bytes bind: 50 MB at 12.5 MB/s, less a second's burst.
        assert!((2.9..3.1).contains(&t.as_secs_f64()), "{t:?}");

        // Live: a 0.5 MB fragment every 2 s never waits.
        let mut p = Pace::new(12_500_000, 5);
        for i in 0..100u64 {
            let at = Duration::from_secs(2 * i);
            assert_eq!(p.fragment(at), Duration::ZERO);
            assert_eq!(p.bytes(500_000, at + Duration::from_millis(10)), Duration::ZERO);
        }
    }
}
