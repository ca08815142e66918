//! `edge-agent bench`: issue 6's benchmarks, each beside a reference on the
//! same input where one exists, printed as one line per figure.
//!
//! - `upload`: a stored backlog (default an hour of 4 Mbit/s) uploaded as
//!   fast as it goes by the real uploader to a local KVS-like endpoint
//!   ([`sink`]), beside `curl` posting the same MKV bytes to it; the
//!   uploader's RSS through the run.
//! - `ingest`: the gateway (`edge-agent run` with `[ingest]`) on one core,
//!   N real-time 4 Mbit/s PutMedia streams from the other; its CPU, ACK
//!   latency and what it PERSISTED, stepping N up.
//! - `latency`: frames appended to the store at 30 fps, uploaded live; the
//!   time from each frame's append to its arrival at the endpoint.
//!
//! The endpoint is a separate process (`edge-agent bench sink`, hidden),
//! so the process measured is the uploader alone.

pub mod ingest;
pub mod latency;
mod media;
mod procfs;
pub mod sink;
pub mod upload;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};

/// `edge-agent bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

/// The benchmarks.
#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Upload a stored backlog as fast as possible to a local KVS-like
    /// endpoint, beside curl sending the same bytes: MB/s, the ratio, and
    /// the uploader's RSS at 10/50/90 % of the way.
    Upload(upload::UploadArgs),
    /// The ingest gateway on one core (`taskset -c 0`) against N real-time
    /// 4 Mbit/s PutMedia streams from the other: CPU, ACK latency,
    /// fragments PERSISTED, for each N; the largest N it sustains.
    Ingest(ingest::IngestArgs),
    /// Frame-to-wire latency of a live upload: frames appended to the store
    /// at 30 fps, timed from the append to their arrival at the endpoint.
    Latency(latency::LatencyArgs),
    /// The KVS-like endpoint the benchmarks upload to (started by them).
    #[command(hide = true)]
    Sink(sink::SinkArgs),
}

/// Run one benchmark.
pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::Upload(a) => upload::run(a),
        BenchCommand::Ingest(a) => ingest::run(a),
        BenchCommand::Latency(a) => latency::run(a),
        BenchCommand::Sink(a) => sink::run(a),
    }
}

/// A working directory: made under the system's temporary directory unless
/// one is given, and then removed at the end (a given one is kept).
struct WorkDir {
    path: PathBuf,
    remove: bool,
}

impl WorkDir {
    fn new(given: Option<&Path>, what: &str) -> Result<WorkDir> {
        match given {
            Some(p) => {
                std::fs::create_dir_all(p).with_context(|| format!("--dir {}", p.display()))?;
                Ok(WorkDir {
                    path: p.to_owned(),
                    remove: false,
                })
            }
            None => {
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos());
                let path = std::env::temp_dir().join(format!("edge-agent-bench-{what}-{}-{nanos}", std::process::id()));
                std::fs::create_dir_all(&path).with_context(|| format!("cannot create {}", path.display()))?;
                Ok(WorkDir { path, remove: true })
            }
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if self.remove {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A child process killed (and reaped) when dropped.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `edge-agent` itself, to start the sink and the gateway with.
fn this_binary() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the edge-agent binary")
}

/// A free TCP port on 127.0.0.1.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

/// Wait until something accepts TCP connections on 127.0.0.1:`port`.
fn wait_for_port(port: u16, timeout: Duration, what: &str) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{what} did not listen on 127.0.0.1:{port} within {timeout:?}")
}

/// Pin this process (every thread it has and will have) to `cpus`, a
/// taskset list such as `1`.
fn pin_self(cpus: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("taskset (util-linux) is needed to pin the benchmark to a core")?;
    if !status.success() {
        bail!("taskset -a -p -c {cpus} failed: {status}");
    }
    Ok(())
}

/// A finite number above zero (what every size option must be).
fn positive(v: f64) -> bool {
    v.is_finite() && v > 0.0
}

/// The value at quantile `q` (0–1) of sorted `v`, nearest rank.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `1.23` → `"1.23"`; NaN (no samples) as `-`.
fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{v:.decimals$}")
    } else {
        "-".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), 50.0);
        assert_eq!(quantile(&v, 0.99), 99.0);
        assert_eq!(quantile(&v, 1.0), 100.0);
        assert_eq!(quantile(&[7.0], 0.99), 7.0);
        assert!(quantile(&[], 0.5).is_nan());
    }
}
