//! What capture costs on top of GStreamer: CPU seconds per minute of 1080p30
//! H.264 (4 Mbit/s) passed through, beside gst-launch-1.0 doing the same
//! demux and parse.
//!
//! ```text
//! cargo build --release -p agent
//! cargo test --release -p edge-agent-tests --test hardware_bench -- --ignored --nocapture
//! ```
//!
//! Each comparison is like with like:
//! * as fast as possible (files are read as fast as they go):
//!   `edge-agent capture --source file:…` against `… ! fakesink` and
//!   against `… ! matroskamux ! filesink`, ten runs each (one run is a few
//!   hundredths of a second, near the 10 ms resolution of the counters);
//! * real time, what a camera stream costs: `edge-agent capture --source
//!   "pipeline:… ! identity sync=true"` against `… ! fakesink sync=true`,
//!   and against gst-launch running the very elements capture runs (the
//!   pacing identity and `h264parse config-interval=-1`) into fakesink, which
//!   isolates capture's own work: appsink, hand-off, fragmenter, MKV writer.
//!
//! CPU time is the children's user + system time from /proc/self/stat,
//! read before and after each run (the child has been waited for).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use edge_agent_tests::*;

/// Seconds of video in the test clip.
const CLIP_SECONDS: u32 = 60;

/// (user + system) CPU seconds of this process's waited-for children.
fn children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // Fields after the command name, which is in parentheses.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // stat(5): cutime and cstime are fields 16 and 17; `rest` starts at 3.
    let ticks: f64 = fields[13].parse::<f64>().unwrap() + fields[14].parse::<f64>().unwrap();
    ticks / clock_ticks_per_second()
}

fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Run a command to the end; (CPU seconds, wall seconds).
fn measure(what: &str, cmd: &mut Command) -> (f64, f64) {
    let cpu0 = children_cpu_seconds();
    let t0 = Instant::now();
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    let wall = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (children_cpu_seconds() - cpu0, wall)
}

/// The 1080p30 4 Mbit/s clip, made once and kept in target/.
fn clip() -> PathBuf {
    let dir = edge_agent().parent().unwrap().join("bench-input");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("smpte-1080p30-4mbps-{CLIP_SECONDS}s.mp4"));
    if !path.exists() {
        let partial = path.with_extension("partial.mp4");
        let (ok, text) = gst_launch(&format!(
            "-q videotestsrc num-buffers={} pattern=smpte ! video/x-raw,format=I420,width=1920,height=1080,framerate=30/1 \
             ! timeoverlay ! x264enc bitrate=4000 speed-preset=veryfast key-int-max=60 ! h264parse ! mp4mux \
             ! filesink location={}",
            CLIP_SECONDS * 30,
            partial.display()
        ));
        assert!(ok, "could not make the clip: {text}");
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

fn gst(description: &str) -> Command {
    let mut c = Command::new("gst-launch-1.0");
    c.arg("-q").args(description.split_whitespace());
    c
}

/// Capture the clip, stopping on its last frame: a `pipeline:` source with
/// `identity sync=true` is live, and a live source that ends is restarted.
fn capture(source: &str, out: &Path) -> Command {
    let duration = format!("{}s", f64::from(CLIP_SECONDS) - 0.1);
    let mut c = Command::new(edge_agent());
    c.args([
        "capture",
        "--source",
        source,
        "--audio",
        "none",
        "--duration",
        &duration,
        "-o",
    ])
    .arg(out)
    .env("RUST_LOG", "warn");
    c
}

/// Runs of each as-fast-as-possible command: one takes a few hundredths of
/// a second, close to the 10 ms resolution of the CPU counters.
const FAST_RUNS: u32 = 10;

#[test]
#[ignore = "a benchmark: run with --release -- --ignored --nocapture"]
fn capture_adds_little_to_gstreamers_own_cost() {
    require_tools!("gst-launch-1.0");
    let clip = clip();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.mkv");
    let location = clip.display().to_string();
    let per_minute = |cpu: f64, runs: u32| cpu * 60.0 / f64::from(CLIP_SECONDS * runs);
    let repeat = |what: &str, runs: u32, make: &dyn Fn() -> Command| {
        let (mut cpu, mut wall) = (0.0, 0.0);
        for _ in 0..runs {
            let (c, w) = measure(what, &mut make());
            cpu += c;
            wall += w;
        }
        (cpu, wall / f64::from(runs))
    };
    let check_output = || {
        let size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > u64::from(CLIP_SECONDS) * 400_000,
            "the capture wrote {size} bytes"
        );
    };

    println!("clip: {location} ({CLIP_SECONDS} s of 1080p30 H.264 at 4 Mbit/s)");
    println!("{:<64} {:>8} {:>8} {:>10}", "", "CPU s", "wall s", "CPU s/min");
    let row = |label: &str, cpu: f64, wall: f64, runs: u32| {
        println!("{label:<64} {cpu:>8.2} {wall:>8.1} {:>10.3}", per_minute(cpu, runs));
    };

    // As fast as possible.
    let bare = format!("filesrc location={location} ! qtdemux ! h264parse ! fakesink sync=false");
    let (g, gw) = repeat("gst-launch", FAST_RUNS, &|| gst(&bare));
    row(
        &format!("fast ×{FAST_RUNS}: gst-launch … ! h264parse ! fakesink"),
        g,
        gw,
        FAST_RUNS,
    );
    // Like for like with a file written: GStreamer's own Matroska muxer.
    let muxed = format!(
        "filesrc location={location} ! qtdemux ! h264parse ! matroskamux ! filesink location={}",
        dir.path().join("gst.mkv").display()
    );
    let (m, mw) = repeat("gst-launch", FAST_RUNS, &|| gst(&muxed));
    row(
        &format!("fast ×{FAST_RUNS}: gst-launch … ! matroskamux ! filesink"),
        m,
        mw,
        FAST_RUNS,
    );
    let file = format!("file:{location}");
    let (c, cw) = repeat("capture", FAST_RUNS, &|| capture(&file, &out));
    check_output();
    row(
        &format!("fast ×{FAST_RUNS}: edge-agent capture --source file: → .mkv"),
        c,
        cw,
        FAST_RUNS,
    );
    println!(
        "{:<64} {:>8.2}x",
        "fast: capture / gst-launch ! matroskamux",
        c / m.max(0.01)
    );

    // Real time, as a camera delivers.
    let bare = format!("filesrc location={location} ! qtdemux ! h264parse ! fakesink sync=true");
    let (g, gw) = measure("gst-launch", &mut gst(&bare));
    row("real time: gst-launch … ! h264parse ! fakesink sync=true", g, gw, 1);
    // What capture runs inside GStreamer, ending in fakesink: the same
    // pacing element and our in-band parameter-set parser.
    let same = format!(
        "filesrc location={location} ! qtdemux ! h264parse ! identity sync=true ! h264parse config-interval=-1 \
         ! video/x-h264,stream-format=avc,alignment=au ! fakesink sync=false"
    );
    let (s, sw) = measure("gst-launch", &mut gst(&same));
    row("real time: gst-launch, capture's elements ! fakesink", s, sw, 1);
    let paced = format!("pipeline:filesrc location={location} ! qtdemux ! h264parse ! identity sync=true");
    let (c, cw) = measure("capture", &mut capture(&paced, &out));
    check_output();
    row("real time: edge-agent capture --source pipeline:… → .mkv", c, cw, 1);
    println!(
        "{:<64} {:>8.2}x",
        "real time: capture / bare gst-launch",
        c / g.max(0.01)
    );
    println!(
        "{:<64} {:>8.3} CPU s/min",
        "real time: capture beyond its own GStreamer elements",
        per_minute(c - s, 1)
    );
    // Capture's own work per frame (appsink, hand-off, fragmenter, MKV
    // writer) must stay a small fraction of a core: under 0.5 CPU s per
    // minute (under 1 % of one core).
    assert!(
        per_minute(c - s, 1) < 0.5,
        "capture adds {:.3} CPU s per minute",
        per_minute(c - s, 1)
    );
}
