//! `edge-agent bench upload`: a stored backlog uploaded as fast as it goes.
//!
//! 1. A store is filled with N minutes of the synthetic stream through the
//!    store's writer (as recording would, an fdatasync per fragment), plus
//!    one more fragment: the uploader's unknown-size Clusters end when the
//!    next one starts, so the last fragment measured is complete at the
//!    endpoint when that extra one begins, not when the body ends.
//! 2. The same fragments are written once as the MKV body the uploader
//!    sends (the same `MkvWriter` calls), for the reference.
//! 3. The real uploader (`kvs::uploader::run`, every limit off) sends the
//!    backlog to the sink (`bench sink`, another process) until every
//!    fragment measured is PERSISTED; then it is stopped, and the store must
//!    say nothing is left to upload. This process's RSS is sampled all the
//!    way.
//! 4. `curl` posts the exported body to the same sink, chunked, with the
//!    same headers.
//!
//! Both rates are measured by the sink the same way: body bytes from the
//! first byte to the moment the last fragment measured was complete there.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use fragmenter::mkv::{MkvWriter, MkvWriterOptions};
use fragmenter::Timestamp;
use indicatif::{ProgressBar, ProgressStyle};

use super::media::{self, Payloads};
use super::procfs;
use super::sink::{ConnectionReport, SinkProcess};
use super::{num, WorkDir};
use crate::kvs::credentials::CredentialSpec;
use crate::kvs::uploader::{self, UploadSpec, UploadStatusHandle};
use crate::kvs::upstream::UpstreamSpec;
use crate::store::{CursorFrom, CursorItem, Store, StoreConfig, SystemClock};

/// `edge-agent bench upload`.
#[derive(Args, Debug)]
pub struct UploadArgs {
    /// Minutes of media in the backlog.
    #[arg(long, default_value_t = 60.0)]
    pub minutes: f64,
    /// The stream's bit rate (video and audio), megabits per second.
    #[arg(long, default_value_t = 4.0)]
    pub mbps: f64,
    /// Where to build the store. Default: a new directory under the
    /// system's temporary directory, removed at the end (a given one is
    /// kept).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Leave out the curl reference.
    #[arg(long)]
    pub no_reference: bool,
    /// Also print every figure as one JSON object (last line).
    #[arg(long)]
    pub json: bool,
}

const STREAM: &str = "bench";

/// Progress through the upload, in fragments PERSISTED, at which RSS is
/// reported.
const MARKS: [f64; 3] = [0.1, 0.5, 0.9];

/// What one uploader run gave.
struct UploadRun {
    /// Uploader start to the last fragment measured PERSISTED.
    elapsed: Duration,
    /// This process's CPU time over that.
    cpu: Duration,
    rss_before: u64,
    rss_peak: u64,
    rss_marks: [u64; 3],
    samples: usize,
    connections: u64,
    backlog_after: u64,
}

/// Run the benchmark.
pub fn run(args: &UploadArgs) -> Result<()> {
    if !super::positive(args.minutes) || !super::positive(args.mbps) {
        bail!("--minutes and --mbps must be positive");
    }
    let load_before = procfs::load();
    let work = WorkDir::new(args.dir.as_deref(), "upload")?;
    let fragments = ((args.minutes * 60.0) / media::FRAGMENT.as_secs_f64()).ceil().max(1.0) as u64;
    let payloads = Payloads::new(args.mbps);
    println!(
        "bench upload: building a store in {} ({} min of {} Mbit/s: {fragments} fragments of 2 s, {:.2} MB of frames)",
        work.path.display(),
        args.minutes,
        args.mbps,
        (fragments * payloads.fragment_bytes()) as f64 / 1e6,
    );
    let store = build_store(&work.path.join("store"), fragments, &payloads)?;

    let body = if args.no_reference {
        None
    } else {
        let path = body_path(&work.path, fragments * payloads.fragment_bytes());
        let bytes = export_body(&store, fragments, &path)?;
        Some(Exported { path, bytes })
    };

    let mut sink = SinkProcess::start(false)?;
    let up = upload(&store, fragments, &sink.url())?;
    let reports = sink.reports("bench-upload", Duration::from_secs(30))?;
    let (up_bytes, up_secs) = measured(&reports, fragments).context("the uploader's body at the sink")?;
    if up.backlog_after != 0 {
        bail!("the store still has {} fragment(s) to upload", up.backlog_after);
    }

    let reference = match &body {
        Some(b) => Some(curl(&mut sink, b, fragments)?),
        None => None,
    };
    let load_after = procfs::load();

    let mb = |b: u64| b as f64 / 1e6;
    let up_rate = mb(up_bytes) / up_secs;
    let ref_rate = reference.as_ref().map(|(bytes, secs, _)| mb(*bytes) / secs);
    let ratio = ref_rate.map_or(f64::NAN, |r| up_rate / r);
    let end_to_end = mb(up_bytes) / up.elapsed.as_secs_f64();
    println!(
        "bench upload: edge-agent {} MB/s, curl {} MB/s, ratio {} (target >= 450 MB/s; AWS kvssink about 227 MB/s on this kind of machine; {:.1} MB each, first body byte to the last fragment complete, timed by the endpoint)",
        num(up_rate, 1),
        num(ref_rate.unwrap_or(f64::NAN), 1),
        num(ratio, 2),
        mb(up_bytes),
    );
    println!(
        "bench upload: all {fragments} fragments PERSISTED {:.2} s after the uploader started ({} MB/s end to end, {} connection(s)); {:.2} CPU-s in the uploader process ({:.2} CPU-s per GB); nothing left to upload",
        up.elapsed.as_secs_f64(),
        num(end_to_end, 1),
        up.connections,
        up.cpu.as_secs_f64(),
        up.cpu.as_secs_f64() / (mb(up_bytes) / 1000.0),
    );
    let m = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "bench upload: uploader RSS at 10/50/90 % of the backlog {:.1}/{:.1}/{:.1} MB, peak {:.1} MB ({} samples; {:.1} MB before the upload)",
        m(up.rss_marks[0]),
        m(up.rss_marks[1]),
        m(up.rss_marks[2]),
        m(up.rss_peak),
        up.samples,
        m(up.rss_before),
    );
    println!("bench upload: load average before {load_before}, after {load_after}");
    drop(store);
    if let Some(b) = body {
        let _ = std::fs::remove_file(&b.path);
    }
    let (path, removed) = (work.path.clone(), work.remove);
    drop(work);
    if removed {
        println!("bench upload: removed {}", path.display());
    }
    if args.json {
        let j = serde_json::json!({
            "bench": "upload",
            "fragments": fragments,
            "uploader": {
                "bytes": up_bytes,
                "seconds": up_secs,
                "mb_per_s": up_rate,
                "persisted_after_s": up.elapsed.as_secs_f64(),
                "cpu_s": up.cpu.as_secs_f64(),
                "connections": up.connections,
                "received": reports.iter().map(|r| r.received).sum::<u64>(),
                "errors": reports.iter().flat_map(|r| r.errors.clone()).collect::<Vec<_>>(),
                "backlog_after": up.backlog_after,
                "rss_before": up.rss_before,
                "rss_peak": up.rss_peak,
                "rss_at_10_50_90": up.rss_marks,
            },
            "curl": reference.as_ref().map(|(bytes, secs, r)| serde_json::json!({
                "bytes": bytes,
                "seconds": secs,
                "mb_per_s": mb(*bytes) / secs,
                "received": r.received,
                "errors": r.errors,
            })),
            "ratio": ratio.is_finite().then_some(ratio),
            "load_before": load_before,
            "load_after": load_after,
        });
        println!("{j}");
    }
    Ok(())
}

/// The store: `fragments` fragments ending now, and one more after them.
fn build_store(path: &Path, fragments: u64, payloads: &Payloads) -> Result<Store> {
    let cfg = StoreConfig {
        max_age_hours: 0,
        ..StoreConfig::new(path)
    };
    let store = Store::open(cfg, Arc::new(SystemClock))
        .with_context(|| format!("cannot open a store in {}", path.display()))?;
    let mut w = store.open_stream(STREAM, &media::tracks(), true)?;
    let total = fragments + 1;
    let step = media::FRAGMENT.as_millis() as u64;
    let first = hardware::now().as_millis().saturating_sub(total * step);
    let bar = ProgressBar::new(total).with_style(
        ProgressStyle::with_template("writing the store {bar:40} {pos}/{len} fragments, {eta} left")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let began = Instant::now();
    for n in 0..total {
        let start = Timestamp::from_millis(first + n * step);
        for ev in media::fragment_events(n, start, payloads) {
            w.write(&ev)
                .with_context(|| format!("writing fragment {n} of {total} into the store"))?;
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    w.close()?;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "bench upload: store written in {secs:.1} s ({:.0} MB/s through the store's writer, an fdatasync per fragment)",
        (total * payloads.fragment_bytes()) as f64 / 1e6 / secs
    );
    Ok(store)
}

struct Exported {
    path: PathBuf,
    bytes: u64,
}

/// Where curl's copy of the body goes: /dev/shm (memory, like the page
/// cache the uploader reads the store from) when it has room, else `dir`.
fn body_path(dir: &Path, bytes: u64) -> PathBuf {
    let shm = Path::new("/dev/shm");
    let room = rustix::fs::statvfs(shm)
        .map(|s| s.f_bavail.saturating_mul(s.f_frsize))
        .unwrap_or(0);
    if room > bytes * 2 {
        shm.join(format!("edge-agent-bench-upload-{}.mkv", std::process::id()))
    } else {
        dir.join("body.mkv")
    }
}

/// The first `fragments` fragments as the MKV body the uploader sends: the
/// same header and the same Cluster and SimpleBlock calls.
fn export_body(store: &Store, fragments: u64, path: &Path) -> Result<u64> {
    let mut cursor = store.cursor(STREAM, CursorFrom::Oldest)?;
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut writer: Option<MkvWriter> = None;
    let mut buf = Vec::with_capacity(2 << 20);
    let mut done = 0;
    let mut bytes = 0u64;
    while done < fragments {
        let Some(item) = cursor.try_next()? else {
            bail!("the store ended after {done} of {fragments} fragments");
        };
        match item {
            CursorItem::FragmentStart(head) => {
                let w = match &mut writer {
                    Some(w) => w,
                    None => {
                        let mut w = MkvWriter::new(&head.tracks, MkvWriterOptions::default())?;
                        w.write_header(&mut buf);
                        writer.insert(w)
                    }
                };
                w.start_cluster(head.start, &mut buf)?;
            }
            CursorItem::Frame(f) => {
                if let Some(w) = &mut writer {
                    w.write_frame(&f, &mut buf)?;
                }
            }
            CursorItem::FragmentEnd(meta) => {
                if let Some(w) = &mut writer {
                    w.end_cluster(&meta.metadata, &mut buf);
                }
                done += 1;
            }
            CursorItem::FragmentAborted(id) => bail!("fragment {id} was aborted"),
        }
        if buf.len() >= 1 << 20 {
            out.write_all(&buf)?;
            bytes += buf.len() as u64;
            buf.clear();
        }
    }
    out.write_all(&buf)?;
    bytes += buf.len() as u64;
    out.flush()?;
    Ok(bytes)
}

/// The uploader, unlimited, until the last fragment measured is PERSISTED;
/// then stopped (the extra fragment goes too when the body ends).
fn upload(store: &Store, fragments: u64, url: &str) -> Result<UploadRun> {
    // The runtime `edge-agent run` uploads on.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edge-agent-io")
        .build()
        .context("cannot start the async runtime")?;
    let spec = UploadSpec {
        stream: STREAM.into(),
        kvs_stream: "bench-upload".into(),
        upstream: UpstreamSpec {
            region: "us-east-1".into(),
            endpoint: None,
            data_endpoint: Some(url.to_owned()),
            create: None,
            credentials: CredentialSpec::None,
        },
        rotate_after: Duration::from_secs(2400),
        max_bytes_per_second: u64::MAX,
        max_fragments_per_second: u32::MAX,
        schedule: crate::schedule::Schedule::Always,
    };
    let status = UploadStatusHandle::default();
    let stop = Arc::new(AtomicBool::new(false));
    let rss = || procfs::rss_bytes("self").unwrap_or(0);
    let rss_before = rss();
    let cpu_before = procfs::cpu_time(std::process::id()).unwrap_or_default();
    let began = Instant::now();
    let task = rt.spawn(uploader::run(spec, store.clone(), stop.clone(), status.clone()));
    let mut run = UploadRun {
        elapsed: Duration::ZERO,
        cpu: Duration::ZERO,
        rss_before,
        rss_peak: 0,
        rss_marks: [0; 3],
        samples: 0,
        connections: 0,
        backlog_after: 0,
    };
    let mut next_mark = 0;
    let mut last_progress = (0u64, Instant::now());
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let (persisted, sent, error) = {
            let s = status.lock().map_err(|_| anyhow::anyhow!("upload status poisoned"))?;
            (s.acks.persisted, s.bytes_sent, s.last_error.clone())
        };
        let now = rss();
        run.samples += 1;
        run.rss_peak = run.rss_peak.max(now);
        while next_mark < MARKS.len() && persisted as f64 >= MARKS[next_mark] * fragments as f64 {
            run.rss_marks[next_mark] = now;
            next_mark += 1;
        }
        if persisted >= fragments {
            run.elapsed = began.elapsed();
            run.cpu = procfs::cpu_time(std::process::id())
                .unwrap_or_default()
                .saturating_sub(cpu_before);
            break;
        }
        if sent != last_progress.0 {
            last_progress = (sent, Instant::now());
        } else if last_progress.1.elapsed() > Duration::from_secs(30) {
            stop.store(true, Ordering::SeqCst);
            bail!(
                "the upload made no progress for 30 s ({persisted} of {fragments} fragments PERSISTED; last error: {})",
                error.as_deref().unwrap_or("none")
            );
        }
    }
    stop.store(true, Ordering::SeqCst);
    rt.block_on(async { tokio::time::timeout(Duration::from_secs(30), task).await })
        .context("the uploader did not stop within 30 s")?
        .context("the uploader task failed")?;
    run.connections = status.lock().map(|s| s.connections).unwrap_or(0);
    run.backlog_after = store.upload_backlog(STREAM)?.2;
    Ok(run)
}

/// Bytes and seconds at the sink up to the `fragments`-th RECEIVED of one
/// body.
fn measured(reports: &[ConnectionReport], fragments: u64) -> Result<(u64, f64)> {
    let [r] = reports else {
        bail!(
            "{} PutMedia bodies reached the sink; the figure needs one (errors: {:?})",
            reports.len(),
            reports.iter().flat_map(|r| &r.errors).collect::<Vec<_>>()
        );
    };
    if !r.errors.is_empty() {
        bail!("the sink reported {:?}", r.errors);
    }
    let i = usize::try_from(fragments).unwrap_or(usize::MAX) - 1;
    r.received_at
        .get(i)
        .copied()
        .with_context(|| format!("the sink RECEIVED {} fragments, expected {fragments}", r.received))
}

/// curl posting the exported body, chunked, with the uploader's headers.
fn curl(sink: &mut SinkProcess, body: &Exported, fragments: u64) -> Result<(u64, f64, ConnectionReport)> {
    let out = Command::new("curl")
        .args(["-sS", "--fail", "-o", "/dev/null", "-X", "POST", "-T"])
        .arg(&body.path)
        .args([
            "-H",
            "Transfer-Encoding: chunked",
            "-H",
            "Expect:",
            "-H",
            "x-amzn-stream-name: bench-curl",
            "-H",
            "x-amzn-fragment-timecode-type: ABSOLUTE",
            "-H",
            &format!(
                "x-amzn-producer-start-timestamp: {}",
                crate::kvs::timestamp::format(hardware::now())
            ),
            "-H",
            "x-amzn-fragment-acknowledgment-required: 1",
        ])
        .arg(format!("{}/putMedia", sink.url()))
        .stdin(Stdio::null())
        .output()
        .context("cannot run curl (the reference); --no-reference leaves it out")?;
    if !out.status.success() {
        bail!("curl failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let reports = sink.reports("bench-curl", Duration::from_secs(30))?;
    let (bytes, secs) = measured(&reports, fragments).context("curl's body at the sink")?;
    if reports[0].bytes != body.bytes {
        bail!(
            "the sink got {} bytes from curl, the body is {}",
            reports[0].bytes,
            body.bytes
        );
    }
    Ok((bytes, secs, reports[0].clone()))
}
