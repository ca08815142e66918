//! `edge-agent bench latency`: the sender's frame-to-wire latency.
//!
//! Frames of the synthetic stream are appended to a store in real time
//! (30 fps video, AAC beside it, 2 s fragments, each fragment closed when
//! the next one's key frame comes, as recording does) while the uploader
//! sends the stream live to the sink. Each payload starts with the
//! CLOCK_REALTIME nanosecond at which it was handed to the store; the sink
//! (another process on the same machine, same clock) subtracts that from
//! the time the whole SimpleBlock has arrived and been parsed.
//!
//! No reference runs beside it: the one that would compare like with like
//! is AWS's kvssink on the same frames, which is not installed here; a
//! GStreamer `appsrc ! matroskamux ! tcpclientsink` would measure a muxer
//! on a raw TCP socket, without a store, HTTP or ACKs, and say little about
//! this path.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fragmenter::{FragmentEvent, Frame, Timestamp};

use super::media::{self, Payloads};
use super::sink::SinkProcess;
use super::{num, procfs, quantile, WorkDir};
use crate::kvs::credentials::CredentialSpec;
use crate::kvs::uploader::{self, UploadSpec, UploadStatusHandle};
use crate::kvs::upstream::UpstreamSpec;
use crate::store::{Store, StoreConfig, SystemClock};

/// `edge-agent bench latency`.
#[derive(Args, Debug)]
pub struct LatencyArgs {
    /// How long to stream (whole 2 s fragments; at least one).
    #[arg(long, default_value_t = 30.0)]
    pub seconds: f64,
    /// The stream's bit rate, megabits per second.
    #[arg(long, default_value_t = 4.0)]
    pub mbps: f64,
    /// Where to put the store. Default: a new directory under the system's
    /// temporary directory, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Also print every figure as one JSON object (last line).
    #[arg(long)]
    pub json: bool,
}

const STREAM: &str = "live";

/// Run the benchmark.
pub fn run(args: &LatencyArgs) -> Result<()> {
    if !super::positive(args.seconds) || !super::positive(args.mbps) {
        bail!("--seconds and --mbps must be positive");
    }
    let load_before = procfs::load();
    let work = WorkDir::new(args.dir.as_deref(), "latency")?;
    let store = Store::open(StoreConfig::new(work.path.join("store")), Arc::new(SystemClock))?;
    let mut writer = store.open_stream(STREAM, &media::tracks(), true)?;
    let mut sink = SinkProcess::start(true)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edge-agent-io")
        .build()
        .context("cannot start the async runtime")?;
    // The defaults of [streams.upload]: live media never meets them.
    let spec = UploadSpec {
        stream: STREAM.into(),
        kvs_stream: "bench-latency".into(),
        upstream: UpstreamSpec {
            region: "us-east-1".into(),
            endpoint: None,
            data_endpoint: Some(sink.url()),
            create: None,
            credentials: CredentialSpec::None,
        },
        rotate_after: Duration::from_secs(2400),
        max_bytes_per_second: 12_500_000,
        max_fragments_per_second: 5,
        schedule: crate::schedule::Schedule::Always,
    };
    let status = UploadStatusHandle::default();
    let stop = Arc::new(AtomicBool::new(false));
    let task = rt.spawn(uploader::run(spec, store.clone(), stop.clone(), status.clone()));
    let deadline = Instant::now() + Duration::from_secs(15);
    while !status.lock().is_ok_and(|s| s.connected) {
        if Instant::now() > deadline {
            bail!(
                "the uploader did not connect to the sink within 15 s: {}",
                status
                    .lock()
                    .ok()
                    .and_then(|s| s.last_error.clone())
                    .unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }

    // Real time: each frame is appended at its presentation time.
    let payloads = Payloads::new(args.mbps);
    let fragments = (args.seconds / media::FRAGMENT.as_secs_f64()).ceil().max(1.0) as u64;
    let base = hardware::now();
    let began = Instant::now();
    let mut appended = 0u64;
    let mut late = Vec::new();
    let mut open: Option<(u64, Timestamp, Vec<Frame>)> = None;
    for k in 0..fragments {
        let start = base + media::FRAGMENT * k as u32;
        for (i, f) in media::fragment_frames(start, &payloads).into_iter().enumerate() {
            let due = began + f.pts.saturating_since(base);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            late.push(Instant::now().saturating_duration_since(due).as_secs_f64() * 1e3);
            if i == 0 {
                // The key frame closes the fragment before it.
                if let Some((seq, s, frames)) = open.take() {
                    writer.write(&FragmentEvent::End(media::summary(seq, s, &frames)))?;
                }
                writer.write(&FragmentEvent::Start { seq: k, start })?;
                open = Some((k, start, Vec::new()));
            }
            let f = Frame {
                data: media::stamped(&f.data, media::realtime_ns()),
                ..f
            };
            writer.write(&FragmentEvent::Frame(f.clone()))?;
            appended += 1;
            if let Some((_, _, frames)) = &mut open {
                frames.push(f);
            }
        }
    }
    if let Some((seq, s, frames)) = open.take() {
        writer.write(&FragmentEvent::End(media::summary(seq, s, &frames)))?;
    }
    writer.close()?;
    // Let the last fragment go, then end the body between fragments.
    let persisted_by = Instant::now() + Duration::from_secs(10);
    while status
        .lock()
        .is_ok_and(|s| s.acks.persisted < fragments.saturating_sub(1))
        && Instant::now() < persisted_by
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
        .context("the uploader did not stop within 30 s")?
        .context("the uploader task failed")?;
    let backlog = store.upload_backlog(STREAM)?.2;
    let reports = sink.reports("bench-latency", Duration::from_secs(30))?;
    let load_after = procfs::load();

    let mut samples: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.latency_ns.iter().map(|&ns| ns as f64 / 1e6))
        .collect();
    samples.sort_by(f64::total_cmp);
    let received: u64 = reports.iter().map(|r| r.received).sum();
    let errors: Vec<String> = reports.iter().flat_map(|r| r.errors.clone()).collect();
    late.sort_by(f64::total_cmp);
    let (p50, p99, max) = (
        quantile(&samples, 0.5),
        quantile(&samples, 0.99),
        samples.last().copied().unwrap_or(f64::NAN),
    );
    println!(
        "bench latency: frame append to arrival at the endpoint p50 {} ms, p99 {} ms, max {} ms (target p99 < 5 ms; {} of {appended} frames arrived, {received} of {fragments} fragments RECEIVED, {} connection(s); no reference runs beside it: README, Benchmarks)",
        num(p50, 2),
        num(p99, 2),
        num(max, 2),
        samples.len(),
        reports.len(),
    );
    println!(
        "bench latency: {:.0} s at {} Mbit/s; frames appended late by p99 {} ms (the clock of this side); {backlog} fragment(s) left to upload; load average before {load_before}, after {load_after}",
        fragments as f64 * media::FRAGMENT.as_secs_f64(),
        args.mbps,
        num(quantile(&late, 0.99), 2),
    );
    if !errors.is_empty() {
        println!("bench latency: errors at the endpoint: {errors:?}");
    }
    if args.json {
        let j = serde_json::json!({
            "bench": "latency",
            "appended": appended,
            "arrived": samples.len(),
            "fragments": fragments,
            "received": received,
            "connections": reports.len(),
            "errors": errors,
            "backlog_after": backlog,
            "p50_ms": p50,
            "p99_ms": p99,
            "max_ms": max,
            "load_before": load_before,
            "load_after": load_after,
        });
        println!("{j}");
    }
    drop(store);
    Ok(())
}
