//! The command line: the stable handles tests and users rely on.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Edge media agent: capture, fragment, store, upload to Kinesis Video
/// Streams, serve HLS/DASH/WebRTC.
#[derive(Parser, Debug)]
#[command(name = "edge-agent", version, about)]
pub struct Cli {
    /// Log more (-v debug, -vv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Log only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The tracing filter for the chosen verbosity.
    pub fn log_level(&self) -> &'static str {
        match (self.quiet, self.verbose) {
            (true, _) => "warn",
            (false, 0) => "info",
            (false, 1) => "debug",
            _ => "trace",
        }
    }
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Capture from a source and write fragments straight to a file.
    Capture(CaptureArgs),
    /// Resend the UDP payloads of a pcap capture with their original pacing.
    Replay(ReplayArgs),
    /// Validate a configuration file, naming every bad field.
    CheckConfig(CheckConfigArgs),
}

/// `edge-agent capture`.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Video source: `test` (test camera) or `file:PATH` (any container
    /// GStreamer reads; H.264/H.265/AAC passed through).
    #[arg(long, value_name = "SOURCE")]
    pub source: String,
    /// Audio: `test` (test microphone), `source` (the file's own audio) or
    /// `none`. Default: `test` for the test source, `source` for files.
    #[arg(long, value_name = "AUDIO")]
    pub audio: Option<String>,
    /// How much media to capture, e.g. `10s`, `1m30s`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// Target fragment duration, 1 s to 20 s.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub fragment: Duration,
    /// Test source picture width.
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    /// Test source picture height.
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    /// Test source frames per second.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Test source video bit rate in kbit/s.
    #[arg(long, default_value_t = 2000)]
    pub bitrate: u32,
    /// Output file: `.mkv` (Matroska, the KVS PutMedia layout) or `.mp4`
    /// (fragmented MP4 / CMAF).
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// Also write one CSV line per frame written (fragment, track, pts_ns,
    /// dts_ns, keyframe, bytes): an index to check the file against.
    #[arg(long, value_name = "FILE")]
    pub frame_log: Option<PathBuf>,
}

/// `edge-agent check-config`.
#[derive(Args, Debug)]
pub struct CheckConfigArgs {
    /// The configuration file (see agent.example.toml); without it, the
    /// embedded defaults `edge-agent run` uses are checked.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `edge-agent replay`.
#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// A classic pcap or pcapng capture of UDP sensor traffic.
    pub file: PathBuf,
    /// Where to send: `udp://HOST:PORT`, or `udp://HOST` to keep each
    /// datagram's original destination port.
    #[arg(long, value_name = "udp://HOST[:PORT]")]
    pub to: String,
    /// Only datagrams the capture addressed to this port. Default: the
    /// `--to` port when the capture has datagrams for it, else all.
    #[arg(long, value_name = "PORT")]
    pub from_port: Option<u16>,
    /// Pacing factor: 2 sends twice as fast, 0.5 at half speed.
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Start again at the end, until interrupted.
    #[arg(long = "loop")]
    pub looping: bool,
}

/// `10s`, `1m30s`, `500ms` (humantime), or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Ok(Duration::from_secs_f64(secs));
        }
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration ({e}); examples: 10s, 1m30s, 500ms"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_bare_seconds() {
        assert_eq!(parse_duration("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_duration("ten").unwrap_err().contains("not a duration"));
        assert!(parse_duration("-1").is_err());
    }
}
