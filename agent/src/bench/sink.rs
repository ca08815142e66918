//! A KVS-like PutMedia endpoint for the benchmarks (`edge-agent bench
//! sink`, started by them as a separate process): `POST /putMedia` answered
//! 200 at once, the body read with the gateway's own incremental reader
//! ([`MkvReader`]) and rules ([`IngestRules`]), and BUFFERING, RECEIVED and
//! PERSISTED written back per fragment with the gateway's ACK writer while
//! the body arrives. Nothing is stored: PERSISTED follows RECEIVED at once,
//! so what is measured is the sender, not a disk.
//!
//! One thread (a current-thread runtime), so on two cores the sender has
//! the other. It prints `listening on 127.0.0.1:PORT`, then one JSON line
//! ([`ConnectionReport`]) per PutMedia body when it ends.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Args;
use fragmenter::mkv::{MkvEvent, MkvReader};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::media::realtime_ns;
use super::Reaped;
use crate::kvs::ack::{Ack, AckKind};
use crate::kvs::ingest::{IngestRules, Limits, Outcome, TimecodeType};
use crate::kvs::timestamp;

/// `edge-agent bench sink`.
#[derive(Args, Debug)]
pub struct SinkArgs {
    /// Port on 127.0.0.1; 0 picks a free one (the first line printed
    /// names it).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Frame payloads begin with their append time (CLOCK_REALTIME
    /// nanoseconds, little-endian): report arrival minus that per frame.
    #[arg(long)]
    pub frame_clock: bool,
}

/// What the sink saw of one PutMedia body; printed as one JSON line when
/// the body ends.
#[derive(Serialize, Deserialize, Debug, Clone, Default)]
pub struct ConnectionReport {
    /// `x-amzn-stream-name`.
    pub stream: String,
    /// Body bytes.
    pub bytes: u64,
    /// Fragments RECEIVED (and so PERSISTED).
    pub received: u64,
    /// Frames (SimpleBlocks) read.
    pub frames: u64,
    /// ERRORs sent and broken bodies.
    pub errors: Vec<String>,
    /// From the first body byte to the end of the body.
    pub seconds: f64,
    /// At each RECEIVED: body bytes read so far and seconds since the first
    /// byte.
    pub received_at: Vec<(u64, f64)>,
    /// With `--frame-clock`: arrival minus append time of each frame, ns.
    pub latency_ns: Vec<u64>,
}

/// Serve until killed.
pub fn run(args: &SinkArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the sink's runtime")?;
    rt.block_on(serve(args.port, args.frame_clock))
}

async fn serve(port: u16, frame_clock: bool) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    println!("listening on {}", listener.local_addr()?);
    std::io::stdout().flush()?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req| async move { Ok::<_, Infallible>(answer(req, frame_clock)) });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

type SinkBody = BoxBody<Bytes, Infallible>;

fn refuse(status: StatusCode, exception: &str, message: String) -> Response<SinkBody> {
    let body = serde_json::json!({ "message": message, "__type": exception }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).boxed());
    *r.status_mut() = status;
    r
}

fn answer(req: Request<Incoming>, frame_clock: bool) -> Response<SinkBody> {
    if req.method() != hyper::Method::POST || req.uri().path() != "/putMedia" {
        return refuse(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            "POST /putMedia only".into(),
        );
    }
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let Some(stream) = header("x-amzn-stream-name").map(str::to_owned) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidArgumentException",
            "x-amzn-stream-name is missing".into(),
        );
    };
    let timecodes = match header("x-amzn-fragment-timecode-type") {
        Some(t) if t.eq_ignore_ascii_case("ABSOLUTE") => TimecodeType::Absolute,
        Some(t) if t.eq_ignore_ascii_case("RELATIVE") => {
            match header("x-amzn-producer-start-timestamp").map(timestamp::parse) {
                Some(Ok(t)) => TimecodeType::Relative(t),
                _ => {
                    return refuse(
                        StatusCode::BAD_REQUEST,
                        "InvalidArgumentException",
                        "RELATIVE timecodes need a valid x-amzn-producer-start-timestamp".into(),
                    )
                }
            }
        }
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "InvalidArgumentException",
                format!("x-amzn-fragment-timecode-type {other:?}: expected ABSOLUTE or RELATIVE"),
            )
        }
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let body = req.into_body();
    tokio::spawn(async move {
        let report = consume(body, Session::new(stream, timecodes, frame_clock), tx).await;
        match serde_json::to_string(&report) {
            Ok(line) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Err(e) => eprintln!("sink: cannot print the report: {e}"),
        }
    });
    let mut r = Response::new(AckStream(rx).boxed());
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// Reads a body to its end (or its first ERROR); the ACK stream ends when
/// `acks` is dropped, after this returns.
async fn consume(mut body: Incoming, mut s: Session, acks: mpsc::UnboundedSender<Bytes>) -> ConnectionReport {
    let mut out = Vec::new();
    loop {
        match body.frame().await {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    s.feed(&data, &mut out);
                }
            }
            Some(Err(e)) => {
                s.report.errors.push(format!("the body broke off: {e}"));
                break;
            }
            None => {
                s.finish(&mut out);
                break;
            }
        }
        for a in out.drain(..) {
            let _ = acks.send(Bytes::from(a.to_line()));
        }
        if s.failed {
            break;
        }
    }
    for a in out.drain(..) {
        let _ = acks.send(Bytes::from(a.to_line()));
    }
    s.report.seconds = s.first.map_or(0.0, |t| t.elapsed().as_secs_f64());
    s.report
}

/// One body: the reader, the rules, what was seen.
struct Session {
    reader: MkvReader,
    rules: IngestRules,
    outcomes: Vec<Outcome>,
    frame_clock: bool,
    first: Option<Instant>,
    number: u64,
    failed: bool,
    report: ConnectionReport,
}

fn ack(kind: AckKind, timecode: u64, number: u64) -> Ack {
    Ack {
        kind,
        fragment_timecode: Some(timecode),
        fragment_number: Some(format!("9134385233318143239{number:029}")),
        error_id: None,
        error_code: None,
    }
}

impl Session {
    fn new(stream: String, timecodes: TimecodeType, frame_clock: bool) -> Session {
        Session {
            reader: MkvReader::default(),
            rules: IngestRules::new(timecodes, Limits::default()),
            outcomes: Vec::new(),
            frame_clock,
            first: None,
            number: 0,
            failed: false,
            report: ConnectionReport {
                stream,
                ..ConnectionReport::default()
            },
        }
    }

    fn feed(&mut self, data: &[u8], acks: &mut Vec<Ack>) {
        self.first.get_or_insert_with(Instant::now);
        self.report.bytes += data.len() as u64;
        self.reader.feed(data);
        self.drain(acks);
    }

    fn finish(&mut self, acks: &mut Vec<Ack>) {
        self.reader.finish();
        self.drain(acks);
    }

    fn drain(&mut self, acks: &mut Vec<Ack>) {
        while !self.failed {
            match self.reader.next_event() {
                Ok(Some(ev)) => {
                    if let MkvEvent::Block(b) = &ev {
                        self.report.frames += 1;
                        if self.frame_clock && b.data.len() >= 8 {
                            let mut t = [0u8; 8];
                            t.copy_from_slice(&b.data[..8]);
                            let sent = u64::from_le_bytes(t);
                            self.report.latency_ns.push(realtime_ns().saturating_sub(sent));
                        }
                    }
                    self.rules.event(&ev, &mut self.outcomes);
                }
                Ok(None) => break,
                Err(e) => self.rules.mkv_error(&e, &mut self.outcomes),
            }
            self.apply(acks);
        }
    }

    fn apply(&mut self, acks: &mut Vec<Ack>) {
        for o in self.outcomes.drain(..) {
            match o {
                Outcome::Buffering { timecode } => {
                    self.number += 1;
                    acks.push(ack(AckKind::Buffering, timecode, self.number));
                }
                Outcome::Received { timecode, .. } => {
                    self.report.received += 1;
                    let at = self.first.map_or(0.0, |t| t.elapsed().as_secs_f64());
                    self.report.received_at.push((self.reader.position(), at));
                    acks.push(ack(AckKind::Received, timecode, self.number));
                    acks.push(ack(AckKind::Persisted, timecode, self.number));
                }
                Outcome::Error {
                    timecode,
                    error_id,
                    code,
                    detail,
                } => {
                    self.report.errors.push(format!("ERROR {error_id} {code}: {detail}"));
                    acks.push(Ack {
                        kind: AckKind::Error,
                        fragment_timecode: timecode,
                        fragment_number: None,
                        error_id: Some(error_id),
                        error_code: Some(code.to_owned()),
                    });
                    self.failed = true;
                }
            }
        }
    }
}

/// The ACK stream as a response body, one chunk per ACK.
struct AckStream(mpsc::UnboundedReceiver<Bytes>);

impl hyper::body::Body for AckStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|a| a.map(|b| Ok(Frame::data(b))))
    }
}

/// A running sink process, and the reports it printed.
pub(super) struct SinkProcess {
    _child: Reaped,
    /// Its port on 127.0.0.1.
    pub port: u16,
    reports: std::sync::mpsc::Receiver<ConnectionReport>,
    seen: Vec<ConnectionReport>,
}

impl SinkProcess {
    /// Start `edge-agent bench sink`.
    pub fn start(frame_clock: bool) -> Result<SinkProcess> {
        let mut cmd = Command::new(super::this_binary()?);
        cmd.args(["-q", "bench", "sink", "--port", "0"]);
        if frame_clock {
            cmd.arg("--frame-clock");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stdin(Stdio::null())
            .spawn()
            .context("cannot start the sink")?;
        let stdout = child.stdout.take().context("the sink's stdout")?;
        let child = Reaped(child);
        let mut lines = BufReader::new(stdout).lines();
        let first = lines
            .next()
            .context("the sink ended before it listened")?
            .context("reading the sink's output")?;
        let port = first
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the sink said {first:?}, expected `listening on 127.0.0.1:PORT`"))?;
        let (tx, reports) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                match serde_json::from_str::<ConnectionReport>(&line) {
                    Ok(r) => {
                        if tx.send(r).is_err() {
                            break;
                        }
                    }
                    Err(e) => eprintln!("sink printed {line:?}: {e}"),
                }
            }
        });
        Ok(SinkProcess {
            _child: child,
            port,
            reports,
            seen: Vec::new(),
        })
    }

    /// The endpoint's URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Every report for `stream` so far, waiting up to `timeout` for the
    /// first.
    pub fn reports(&mut self, stream: &str, timeout: Duration) -> Result<Vec<ConnectionReport>> {
        let deadline = Instant::now() + timeout;
        loop {
            while let Ok(r) = self.reports.try_recv() {
                self.seen.push(r);
            }
            let (mine, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.seen)
                .into_iter()
                .partition(|r| r.stream == stream);
            self.seen = rest;
            if !mine.is_empty() {
                return Ok(mine);
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("the sink reported no PutMedia body for stream {stream} within {timeout:?}");
            }
            if let Ok(r) = self.reports.recv_timeout(deadline - now) {
                self.seen.push(r);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
    use fragmenter::Timestamp;

    #[test]
    fn each_fragment_is_buffering_received_persisted_and_the_clock_is_read() {
        let payloads = super::super::media::Payloads::new(0.2);
        let tracks = super::super::media::tracks();
        let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default()).unwrap();
        let mut body = Vec::new();
        w.write_header(&mut body);
        let now = realtime_ns();
        for k in 0..3u64 {
            let start = Timestamp::from_millis(1_800_000_000_000 + 2000 * k);
            w.start_cluster(start, &mut body).unwrap();
            for f in super::super::media::fragment_frames(start, &payloads) {
                let f = fragmenter::Frame {
                    data: super::super::media::stamped(&f.data, now),
                    ..f
                };
                w.write_frame(&f, &mut body).unwrap();
            }
        }
        let mut s = Session::new("cam".into(), TimecodeType::Absolute, true);
        let mut acks = Vec::new();
        for piece in body.chunks(1000) {
            s.feed(piece, &mut acks);
        }
        s.finish(&mut acks);
        let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["BUFFERING", "RECEIVED", "PERSISTED"].repeat(3));
        assert_eq!(s.report.received, 3);
        assert_eq!(s.report.frames, 3 * 154);
        assert_eq!(s.report.latency_ns.len(), 3 * 154);
        assert_eq!(s.report.received_at.last().unwrap().0, body.len() as u64);
        assert!(s.report.errors.is_empty());
    }
}
