//! `edge-agent bench ingest`: how many real-time PutMedia streams the
//! gateway takes on one core.
//!
//! For each N: a fresh gateway (`edge-agent run`, `[ingest] enabled =
//! true`, `auth = "none"`, its store in a new directory) pinned to one core
//! with `taskset`; this process pinned to another, sending N streams of the
//! synthetic 4 Mbit/s stream, each on its own connection under its own name,
//! frame by frame at its presentation time (2 s fragments, the streams'
//! starts spread over one fragment, as independent cameras' are), for the
//! given time. Measured:
//!
//! - the gateway's CPU: utime + stime from `/proc/PID/stat` over the time
//!   every stream is running, divided by that wall time;
//! - ACK latency: from handing the HTTP client the bytes that complete a
//!   fragment to reading its PERSISTED. Clusters have unknown sizes, so a
//!   fragment is complete when the next one's Cluster header arrives (sent
//!   with its key frame), or when the body ends;
//! - fragments PERSISTED against fragments sent, and every error (refused
//!   connections, ERROR ACKs, bodies cut off);
//! - this side's lateness in sending frames, which must stay small for the
//!   rest to mean anything.
//!
//! N is sustained when the gateway's CPU stays under 95 % of its core, every
//! fragment is PERSISTED, nothing fails, and the p99 ACK latency is under
//! 1 s: half a fragment, so each stream has at most the fragment being
//! committed in flight; a gateway that cannot keep up shows latency growing
//! with the run instead.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Command, Stdio};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
use fragmenter::sink::Chunks;
use http_body_util::BodyExt;
use hyper::body::Frame as BodyFrame;
use hyper_util::rt::TokioIo;
use playback::http::reply::BodyChunks;
use tokio::sync::mpsc;

use super::media::{self, Payloads};
use super::{free_port, num, pin_self, procfs, quantile, this_binary, wait_for_port, Reaped, WorkDir};
use crate::kvs::ack::{AckKind, AckReader};

/// `edge-agent bench ingest`.
#[derive(Args, Debug)]
pub struct IngestArgs {
    /// The numbers of concurrent streams to try, in order.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,150,200")]
    pub streams: Vec<u32>,
    /// How long each step streams (whole 2 s fragments, at least two).
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Each stream's bit rate, megabits per second.
    #[arg(long, default_value_t = 4.0)]
    pub mbps: f64,
    /// The gateway's store cap (`[store] max_size_mb`), past which the
    /// oldest media is deleted while streams arrive. Default: room for the
    /// whole step (nothing deleted), at most half the disk's free space.
    /// A cap below streams × 64 MB (a segment per stream) keeps retention
    /// busy in vain: segments being written cannot be deleted.
    #[arg(long, value_name = "MB")]
    pub store_cap_mb: Option<u64>,
    /// Where the gateways' stores go. Default: a new directory under the
    /// system's temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The gateway's CPU (a taskset list).
    #[arg(long, default_value = "0")]
    pub gateway_cpu: String,
    /// The senders' CPU (a taskset list).
    #[arg(long, default_value = "1")]
    pub sender_cpu: String,
    /// Go on to larger N after one the gateway did not sustain.
    #[arg(long)]
    pub keep_going: bool,
    /// Also print every figure as one JSON object (last line).
    #[arg(long)]
    pub json: bool,
}

/// CPU share of its core the gateway may use and still count as keeping up.
const MAX_CPU: f64 = 0.95;
/// p99 ACK latency within which the gateway counts as keeping up.
const MAX_P99: Duration = Duration::from_secs(1);

/// One step's figures.
#[derive(Debug, serde::Serialize)]
struct Step {
    streams: u32,
    store_cap_mb: u64,
    cpu: f64,
    window_s: f64,
    sent: u64,
    persisted: u64,
    errors: Vec<String>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    sender_late_p99_ms: f64,
    sustained: bool,
}

/// Run the benchmark.
pub fn run(args: &IngestArgs) -> Result<()> {
    let fragments = (args.seconds / media::FRAGMENT.as_secs_f64()).floor() as u64;
    if fragments < 2 {
        bail!("--seconds {}: at least 4 (two 2 s fragments per stream)", args.seconds);
    }
    if args.streams.is_empty() || args.streams.contains(&0) {
        bail!("--streams: give one or more positive numbers, e.g. 25,50,100");
    }
    pin_self(&args.sender_cpu)?;
    let load_before = procfs::load();
    let work = WorkDir::new(args.dir.as_deref(), "ingest")?;
    println!(
        "bench ingest: gateway on CPU {}, senders on CPU {}; {} s per step ({fragments} fragments per stream), {} Mbit/s per stream, stores in {} (load average {load_before})",
        args.gateway_cpu,
        args.sender_cpu,
        fragments * 2,
        args.mbps,
        work.path.display()
    );
    let payloads = Payloads::new(args.mbps);
    let mut steps = Vec::new();
    for &n in &args.streams {
        let dir = work.path.join(format!("gateway-{n}"));
        let step = step(args, n, fragments, &payloads, &dir);
        let _ = std::fs::remove_dir_all(&dir);
        let step = step?;
        println!(
            "bench ingest: {n} streams: gateway CPU {:.1} % of one core, ACK latency p50 {} ms, p99 {} ms, max {} ms, {} of {} fragments PERSISTED, {} error(s), senders late by p99 {} ms, store cap {} MB: {}",
            step.cpu * 100.0,
            num(step.p50_ms, 1),
            num(step.p99_ms, 1),
            num(step.max_ms, 1),
            step.persisted,
            step.sent,
            step.errors.len(),
            num(step.sender_late_p99_ms, 1),
            step.store_cap_mb,
            if step.sustained { "sustained" } else { "NOT sustained" },
        );
        for e in step.errors.iter().take(5) {
            println!("bench ingest:   {e}");
        }
        let stop = !step.sustained && !args.keep_going;
        steps.push(step);
        if stop {
            break;
        }
    }
    let best = steps.iter().filter(|s| s.sustained).map(|s| s.streams).max();
    let at_best = steps.iter().find(|s| Some(s.streams) == best);
    let load_after = procfs::load();
    match at_best {
        Some(s) => println!(
            "bench ingest: the gateway sustains {} streams of {} Mbit/s on one core (target >= 100; there: CPU {:.1} %, p99 ACK latency {} ms; sustained = CPU < 95 %, every fragment PERSISTED, no error, p99 < 1 s); load average before {load_before}, after {load_after}",
            s.streams,
            args.mbps,
            s.cpu * 100.0,
            num(s.p99_ms, 1),
        ),
        None => println!(
            "bench ingest: the gateway sustained none of the steps tried (target >= 100); load average before {load_before}, after {load_after}"
        ),
    }
    if args.json {
        let j = serde_json::json!({
            "bench": "ingest",
            "fragments_per_stream": fragments,
            "steps": steps,
            "sustained": best,
            "load_before": load_before,
            "load_after": load_after,
        });
        println!("{j}");
    }
    Ok(())
}

/// One gateway, `n` streams.
fn step(args: &IngestArgs, n: u32, fragments: u64, payloads: &Payloads, dir: &Path) -> Result<Step> {
    std::fs::create_dir_all(dir)?;
    let port = free_port()?;
    let cap_mb = match args.store_cap_mb {
        Some(mb) => mb,
        None => {
            let step = u64::from(n) * fragments * payloads.fragment_bytes() * 12 / 10;
            let free = rustix::fs::statvfs(dir)
                .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
                .unwrap_or(0);
            (step.min(free / 2) / crate::store::MB).max(1024)
        }
    };
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\nmax_size_mb = {}\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\nenabled = true\nauth = \"none\"\n[webrtc]\nenabled = false\n",
            dir.join("store"),
            cap_mb
        ),
    )?;
    let log = std::fs::File::create(dir.join("gateway.log"))?;
    let gateway = Command::new("taskset")
        .args(["-c", &args.gateway_cpu])
        .arg(this_binary()?)
        .args(["run", "-c"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("cannot start the gateway under taskset")?;
    let gateway = Reaped(gateway);
    let pid = gateway.0.id();
    wait_for_port(port, Duration::from_secs(20), "the gateway")
        .with_context(|| format!("see {}", dir.join("gateway.log").display()))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the senders' runtime")?;
    let fragment = media::FRAGMENT;
    let result = rt.block_on(async {
        let began = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..n)
            .map(|i| {
                let start = began + fragment * i / n;
                let name = format!("bench-{n}-{i}");
                tokio::spawn(stream(name, port, start, fragments, payloads.clone()))
            })
            .collect();
        // Every stream runs from the end of the spread to the end of the
        // first one.
        tokio::time::sleep_until(began + fragment).await;
        let cpu0 = procfs::cpu_time(pid);
        let t0 = Instant::now();
        tokio::time::sleep_until(began + fragment * fragments as u32).await;
        let cpu1 = procfs::cpu_time(pid);
        let window = t0.elapsed();
        let mut results = Vec::with_capacity(tasks.len());
        for t in tasks {
            results.push(
                t.await
                    .unwrap_or_else(|e| StreamResult::failed(format!("sender task: {e}"))),
            );
        }
        (cpu0.zip(cpu1).map(|(a, b)| b.saturating_sub(a)), window, results)
    });
    let (cpu, window, results) = result;
    let cpu = cpu.with_context(|| format!("cannot read /proc/{pid}/stat: did the gateway die? See its log"))?;
    let mut latencies: Vec<f64> = results.iter().flat_map(|r| r.latency_ms.iter().copied()).collect();
    latencies.sort_by(f64::total_cmp);
    let mut late: Vec<f64> = results.iter().flat_map(|r| r.late_ms.iter().copied()).collect();
    late.sort_by(f64::total_cmp);
    let errors: Vec<String> = results.iter().flat_map(|r| r.errors.clone()).collect();
    let sent: u64 = results.iter().map(|r| r.sent).sum();
    let persisted: u64 = results.iter().map(|r| r.persisted).sum();
    let cpu = cpu.as_secs_f64() / window.as_secs_f64();
    let p99 = quantile(&latencies, 0.99);
    Ok(Step {
        streams: n,
        store_cap_mb: cap_mb,
        cpu,
        window_s: window.as_secs_f64(),
        sent,
        persisted,
        p50_ms: quantile(&latencies, 0.5),
        p99_ms: p99,
        max_ms: latencies.last().copied().unwrap_or(f64::NAN),
        sender_late_p99_ms: quantile(&late, 0.99),
        sustained: cpu < MAX_CPU
            && persisted == sent
            && sent == u64::from(n) * fragments
            && errors.is_empty()
            && p99 < MAX_P99.as_secs_f64() * 1e3,
        errors,
    })
}

/// What one stream saw.
#[derive(Default)]
struct StreamResult {
    sent: u64,
    persisted: u64,
    latency_ms: Vec<f64>,
    late_ms: Vec<f64>,
    errors: Vec<String>,
}

impl StreamResult {
    fn failed(e: String) -> Self {
        StreamResult {
            errors: vec![e],
            ..Default::default()
        }
    }
}

/// A request body fed batch by batch: what is due at one instant goes out
/// as one data frame.
struct BatchBody(mpsc::Receiver<BodyChunks>);

impl hyper::body::Body for BatchBody {
    type Data = BodyChunks;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<BodyFrame<BodyChunks>, Self::Error>>> {
        self.0.poll_recv(cx).map(|b| b.map(|b| Ok(BodyFrame::data(b))))
    }
}

/// One camera: a PutMedia connection carrying `fragments` fragments in real
/// time from `start`.
async fn stream(
    name: String,
    port: u16,
    start: tokio::time::Instant,
    fragments: u64,
    payloads: Payloads,
) -> StreamResult {
    tokio::time::sleep_until(start).await;
    match send(&name, port, fragments, &payloads).await {
        Ok(r) => r,
        Err(e) => StreamResult::failed(format!("{name}: {e:#}")),
    }
}

async fn send(name: &str, port: u16, fragments: u64, payloads: &Payloads) -> Result<StreamResult> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(conn);
    let (tx, rx) = mpsc::channel::<BodyChunks>(16);
    let req = hyper::Request::post("/putMedia")
        .header("host", format!("127.0.0.1:{port}"))
        .header("x-amzn-stream-name", name)
        .header("x-amzn-fragment-timecode-type", "ABSOLUTE")
        .header(
            "x-amzn-producer-start-timestamp",
            crate::kvs::timestamp::format(hardware::now()),
        )
        .header("x-amzn-fragment-acknowledgment-required", "1")
        .body(BatchBody(rx))?;
    // The ACKs, read as they come: PERSISTED timecodes and when.
    let acks = tokio::spawn(async move {
        let response = sender.send_request(req).await.map_err(|e| format!("PutMedia: {e}"))?;
        if !response.status().is_success() {
            let status = response.status();
            let text = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(format!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&text)
            ));
        }
        let mut body = response.into_body();
        let mut reader = AckReader::new();
        let mut out = Vec::new();
        let mut persisted = Vec::new();
        let mut errors = Vec::new();
        while let Some(frame) = body.frame().await {
            let data = match frame {
                Ok(f) => match f.into_data() {
                    Ok(d) => d,
                    Err(_) => continue,
                },
                Err(e) => {
                    errors.push(format!("the ACK stream broke off: {e}"));
                    break;
                }
            };
            let now = Instant::now();
            reader.feed(&data, &mut out);
            for a in out.drain(..) {
                match a {
                    Ok(a) if a.kind == AckKind::Persisted => persisted.push((a.fragment_timecode.unwrap_or(0), now)),
                    Ok(a) if a.kind == AckKind::Error => errors.push(format!(
                        "ERROR {} {}",
                        a.error_id.unwrap_or(0),
                        a.error_code.unwrap_or_default()
                    )),
                    Ok(_) => {}
                    Err(e) => errors.push(format!("bad ACK: {e}")),
                }
            }
        }
        Ok::<_, String>((persisted, errors))
    });

    let tracks = media::tracks();
    let mut w = MkvWriter::new(&tracks, MkvWriterOptions::default())?;
    let mut out = Chunks::new();
    w.write_header(&mut out);
    let mut result = StreamResult::default();
    // Cluster timecode → when the bytes completing that fragment were sent.
    let mut complete: HashMap<u64, Instant> = HashMap::new();
    let mut previous: Option<u64> = None;
    let mut closing: Option<u64> = None;
    let base = hardware::now();
    let t0 = tokio::time::Instant::now();
    let due = |f: &fragmenter::Frame| t0 + f.pts.saturating_since(base);
    'fragments: for k in 0..fragments {
        let start = base + media::FRAGMENT * k as u32;
        let frames = media::fragment_frames(start, payloads);
        for (j, f) in frames.iter().enumerate() {
            let at = due(f);
            tokio::time::sleep_until(at).await;
            if j == 0 {
                w.start_cluster(start, &mut out)?;
                closing = previous;
            }
            w.write_frame(f, &mut out)?;
            // Send what is due now in one piece.
            if frames.get(j + 1).is_none_or(|g| due(g) > tokio::time::Instant::now()) {
                let batch = BodyChunks::new(out.take());
                result.late_ms.push(at.elapsed().as_secs_f64() * 1e3);
                if tx.send(batch).await.is_err() {
                    result
                        .errors
                        .push(format!("{name}: the connection ended while sending"));
                    break 'fragments;
                }
                if let Some(tc) = closing.take() {
                    complete.insert(tc, Instant::now());
                }
            }
        }
        previous = Some(w.tick(start));
        result.sent += 1;
    }
    drop(tx);
    if let Some(tc) = previous {
        complete.insert(tc, Instant::now());
    }
    match tokio::time::timeout(Duration::from_secs(15), acks).await {
        Ok(Ok(Ok((persisted, errors)))) => {
            result.errors.extend(errors.into_iter().map(|e| format!("{name}: {e}")));
            result.persisted = persisted.len() as u64;
            for (tc, at) in persisted {
                match complete.get(&tc) {
                    Some(sent) => result
                        .latency_ms
                        .push(at.saturating_duration_since(*sent).as_secs_f64() * 1e3),
                    None => result
                        .errors
                        .push(format!("{name}: PERSISTED for timecode {tc}, never sent")),
                }
            }
        }
        Ok(Ok(Err(e))) => result.errors.push(format!("{name}: {e}")),
        Ok(Err(e)) => result.errors.push(format!("{name}: ACK task: {e}")),
        Err(_) => result
            .errors
            .push(format!("{name}: the ACK stream did not end within 15 s of the body")),
    }
    Ok(result)
}
