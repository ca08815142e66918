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
        // The webrtc crate warns on every connection about things that are
        // expected here (no server name for DTLS, no candidate pairs before
        // the offer's candidates are added): kept for -v.
        match (self.quiet, self.verbose) {
            (true, _) => "warn,rtc_dtls::config=error,rtc_ice::agent=error",
            (false, 0) => "info,rtc_dtls::config=error,rtc_ice::agent=error",
            (false, 1) => "debug",
            _ => "trace",
        }
    }
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Record every configured stream and sensor into the store and serve
    /// the web UI and API (defaults: test camera + microphone, ./data,
    /// http://127.0.0.1:8080).
    Run(RunArgs),
    /// Capture from a source and write fragments straight to a file.
    Capture(CaptureArgs),
    /// Open the store (running start-up recovery) and check that its index
    /// and segment files agree; non-zero exit when they do not.
    Verify(VerifyArgs),
    /// Write a time range of a stored stream to an MP4 or MKV file.
    Export(ExportArgs),
    /// Resend the UDP payloads of a pcap capture with their original pacing.
    Replay(ReplayArgs),
    /// Validate a configuration file, naming every bad field.
    CheckConfig(CheckConfigArgs),
    /// Board, CPU, memory, cameras, microphones, which encoders work, and a
    /// suggested config.
    Probe(crate::probe::ProbeArgs),
    /// Issue 6's benchmarks: upload of a stored backlog, gateway ingest of
    /// N streams on one core, frame-to-wire latency; each beside a
    /// reference where there is one.
    Bench(crate::bench::BenchArgs),
}

/// `edge-agent capture`.
#[derive(Args, Debug)]
pub struct CaptureArgs {
    /// Video source: `test` (test camera), `v4l2:/dev/videoN` (USB
    /// camera), `libcamera` (Raspberry Pi camera), `argus:N` (Jetson CSI
    /// camera), `rtsp://…` (IP camera), `file:PATH` (any container
    /// GStreamer reads) or `pipeline:DESC` (a gst-launch description whose
    /// output is taken); H.264/H.265/AAC are passed through, anything else
    /// encoded.
    #[arg(long, value_name = "SOURCE")]
    pub source: String,
    /// Audio: `test` (test microphone), `alsa:hw:N[,D]`, `pulse[:NAME]`,
    /// `source` (the file's, RTSP camera's or pipeline's own audio) or
    /// `none`. Default: `test` for the test source, `none` for cameras,
    /// `source` otherwise.
    #[arg(long, value_name = "AUDIO")]
    pub audio: Option<String>,
    /// Video codec to encode into (sources passed through keep theirs):
    /// `h264` or `h265`.
    #[arg(long, default_value = "h264", value_name = "CODEC")]
    pub codec: String,
    /// Audio codecs for test/ALSA/Pulse audio, comma-separated, at most
    /// two: `aac`, `opus`, `alaw`, `mulaw` (e.g. `aac,opus` for HLS and
    /// WebRTC from one microphone).
    #[arg(long, value_name = "CODECS", value_delimiter = ',')]
    pub audio_codec: Vec<String>,
    /// RTSP jitter buffer in milliseconds.
    #[arg(long, default_value_t = 200, value_name = "MS")]
    pub rtsp_latency: u32,
    /// RTSP transport: `tcp`, `udp` or `auto`.
    #[arg(long, default_value = "tcp", value_name = "PROTO")]
    pub rtsp_transport: String,
    /// A live source that sends nothing for this long is restarted.
    #[arg(long, default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub stall_timeout: Duration,
    /// How much media to capture, e.g. `10s`, `1m30s`.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Duration,
    /// Target fragment duration, 1 s to 20 s.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub fragment: Duration,
    /// Picture width for sources we encode (and the camera mode asked for).
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    /// Picture height for sources we encode.
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    /// Frames per second for sources we encode.
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// Encoder bit rate in kbit/s.
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

/// `edge-agent run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Configuration file (see agent.example.toml); without it, the
    /// embedded defaults.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `edge-agent verify`.
#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The configuration whose store to check (default: the embedded one, ./data).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// `edge-agent export`.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The stream's name.
    #[arg(long)]
    pub stream: String,
    /// Range start: RFC 3339 (2026-11-26T03:00:00Z) or epoch milliseconds.
    #[arg(long)]
    pub start: String,
    /// Range end: RFC 3339 or epoch milliseconds.
    #[arg(long)]
    pub end: String,
    /// Output: `.mp4` or `.mkv`.
    #[arg(short, long, value_name = "FILE")]
    pub output: PathBuf,
    /// The configuration whose store to read (default: the embedded one, ./data).
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet_progress: bool,
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
