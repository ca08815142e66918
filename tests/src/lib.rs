//! Helpers for the end-to-end tests in `tests/tests/`: find the `edge-agent`
//! binary, run it, and ask third-party tools (ffprobe, mkvinfo, GStreamer)
//! what they make of its output.

pub mod fault_proxy;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// This crate's directory, as cargo tells the running test. The
/// compile-time `env!("CARGO_MANIFEST_DIR")` names whichever checkout built
/// the binary, and two clones sharing one `CARGO_TARGET_DIR` (CI's cache)
/// reuse each other's test binaries when the sources match.
pub fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

/// The `edge-agent` binary of this build (target/<profile>/edge-agent, next
/// to the test executable's `deps/` folder). `make test` builds it first.
pub fn edge_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>");
    let bin = profile_dir.join("edge-agent");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p agent`, which `make test` does)",
        bin.display()
    );
    bin
}

/// Run `edge-agent` with these arguments.
pub fn run_agent(args: &[&str]) -> Output {
    Command::new(edge_agent())
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run edge-agent")
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Whether GStreamer has an element.
pub fn have_gst_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(name)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Skip the test with a printed reason unless every tool is present.
#[macro_export]
macro_rules! require_tools {
    ($($tool:expr),+) => {
        for t in [$($tool),+] {
            if !$crate::have(t) {
                eprintln!("SKIPPED: {t} is not installed (scripts/install-deps.sh installs it)");
                return;
            }
        }
    };
}

/// `ffprobe -v error <args> -of json FILE`: the JSON and whatever ffprobe
/// printed on stderr (errors and warnings).
pub fn ffprobe(file: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .args(["-of", "json"])
        .arg(file)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    (json, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Run a gst-launch-1.0 pipeline to the end; returns (success, stdout+stderr).
/// A pipeline still running after two minutes is killed and fails.
pub fn gst_launch(pipeline: &str) -> (bool, String) {
    gst_launch_within(pipeline, std::time::Duration::from_secs(120)).into_result()
}

/// How a gst-launch-1.0 run ended.
#[derive(Debug)]
pub enum GstRun {
    /// It exited: success (exit 0 and no ERROR printed) and its output.
    Exited(bool, String),
    /// It was still running at the limit and was killed; its output so far.
    TimedOut(String),
}

impl GstRun {
    /// (success, output); a timeout is a failure, said at the end.
    pub fn into_result(self) -> (bool, String) {
        match self {
            GstRun::Exited(ok, text) => (ok, text),
            GstRun::TimedOut(text) => (
                false,
                format!("{text}\n(gst-launch-1.0 killed: still running at the limit)"),
            ),
        }
    }
}

/// Run a gst-launch-1.0 pipeline, killing it if it runs past `limit`: a
/// test must end even when a third-party element deadlocks.
pub fn gst_launch_within(pipeline: &str, limit: std::time::Duration) -> GstRun {
    use std::io::Read;
    let mut child = Command::new("gst-launch-1.0")
        .args(pipeline.split_whitespace())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gst-launch-1.0");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("piped stdout")));
    let err = drain(Box::new(child.stderr.take().expect("piped stderr")));
    let began = std::time::Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for gst-launch-1.0") {
            Some(status) => break Some(status),
            None if began.elapsed() >= limit => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(50)),
        }
    };
    let text = format!("{}{}", out.join().unwrap_or_default(), err.join().unwrap_or_default());
    match status {
        Some(status) => GstRun::Exited(status.success() && !text.contains("ERROR"), text),
        None => GstRun::TimedOut(text),
    }
}

/// Count the buffers that reached `fakesink name=sink silent=false` in
/// gst-launch-1.0 -v output.
pub fn count_sink_buffers(gst_output: &str) -> usize {
    gst_output
        .lines()
        .filter(|l| l.contains("sink: last-message = chain"))
        .count()
}

/// One line of `edge-agent capture --frame-log`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedFrame {
    /// Fragment sequence number.
    pub fragment: u64,
    /// Track number (1-based).
    pub track: u8,
    /// Presentation time, ns since the epoch.
    pub pts_ns: u64,
    /// Decode time, ns since the epoch.
    pub dts_ns: u64,
    /// Key frame flag.
    pub keyframe: bool,
    /// Payload size.
    pub bytes: usize,
}

/// Read a frame log.
pub fn read_frame_log(path: &Path) -> Vec<LoggedFrame> {
    let text = std::fs::read_to_string(path).expect("frame log");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            LoggedFrame {
                fragment: f[0].parse().unwrap(),
                track: f[1].parse().unwrap(),
                pts_ns: f[2].parse().unwrap(),
                dts_ns: f[3].parse().unwrap(),
                keyframe: f[4] == "1",
                bytes: f[5].parse().unwrap(),
            }
        })
        .collect()
}

/// Seconds since the Unix epoch, now.
pub fn now_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A plain HTTP/1.1 GET on 127.0.0.1: (status, body). Enough for the
/// agent's JSON and text endpoints without another client library.
pub fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An `edge-agent run` child process; a failing test must not leave one
/// recording (or a mount busy), so dropping it kills it.
pub struct RunningAgent {
    /// The process.
    pub child: std::process::Child,
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Start `edge-agent run -c config` and wait (up to 20 s) until it answers
/// `/healthz` on `port`.
pub fn start_agent(config: &Path, port: u16) -> RunningAgent {
    start_agent_with_log(config, port, None)
}

/// [`start_agent`] with its log (`RUST_LOG=info`) appended to `log`, for a
/// test that shows what the agent did when it fails.
pub fn start_agent_logging(config: &Path, port: u16, log: &Path) -> RunningAgent {
    start_agent_with_log(config, port, Some(log))
}

fn start_agent_with_log(config: &Path, port: u16, log: Option<&Path>) -> RunningAgent {
    use std::process::Stdio;
    let stderr = match log {
        Some(p) => Stdio::from(std::fs::OpenOptions::new().create(true).append(true).open(p).unwrap()),
        None => Stdio::null(),
    };
    let child = Command::new(edge_agent())
        .args(["run", "-c"])
        .arg(config)
        .env("RUST_LOG", if log.is_some() { "info" } else { "warn" })
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut agent = RunningAgent { child };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        // An agent that exited (its port taken since free_tcp_port, a bad
        // config) must not pass for another one answering on that port.
        if let Ok(Some(status)) = agent.child.try_wait() {
            panic!(
                "edge-agent run -c {} exited before answering on port {port}: {status}",
                config.display()
            );
        }
        if let Ok((200, _)) = http_get(port, "/healthz") {
            return agent;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("edge-agent run did not answer /healthz on port {port}");
}

/// `../shared/data` (the real sensor captures), when it is there: tests
/// that need it print `SKIPPED:` with the reason otherwise.
pub fn shared_data() -> Option<PathBuf> {
    let p = manifest_dir().join("../../shared/data");
    p.is_dir().then_some(p)
}

/// `edge-agent replay PCAP` of the packets sent to `from_port`, to
/// 127.0.0.1:`port`, at the capture's pace.
pub fn replay_pcap(pcap: &Path, port: u16, from_port: u16) {
    let o = run_agent(&[
        "replay",
        pcap.to_str().unwrap(),
        "--to",
        &format!("udp://127.0.0.1:{port}"),
        "--from-port",
        &from_port.to_string(),
    ]);
    assert!(
        o.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A UDP port free on 127.0.0.1 a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Wait (up to 20 s) until some process listens on UDP `port`: a sender
/// that starts earlier loses its first packets.
pub fn wait_udp_bound(port: u16) {
    // The local address column: hex IP, ':', the port as 4 hex digits.
    let suffix = format!(":{port:04X}");
    let bound = || {
        ["/proc/net/udp", "/proc/net/udp6"].iter().any(|t| {
            std::fs::read_to_string(t)
                .unwrap_or_default()
                .lines()
                .skip(1)
                .filter_map(|l| l.split_whitespace().nth(1))
                .any(|local| local.ends_with(&suffix))
        })
    };
    wait_for(
        &format!("a listener on udp port {port}"),
        std::time::Duration::from_secs(20),
        bound,
    );
}

/// Poll `f` every 200 ms until it holds; panic naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while std::time::Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    panic!("timed out waiting for {what}");
}

/// The stream `name` in the agent's `/api/streams` on `port`.
pub fn api_stream(port: u16, name: &str) -> Option<serde_json::Value> {
    let (_, body) = http_get(port, "/api/streams").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["streams"].as_array()?.iter().find(|s| s["name"] == name).cloned()
}

/// Every frame (Block) of an MKV file's bytes, in file order.
pub fn mkv_blocks(bytes: &[u8]) -> Vec<fragmenter::mkv::Block> {
    let mut r = fragmenter::mkv::MkvReader::default();
    r.feed(bytes);
    r.finish();
    let mut blocks = Vec::new();
    while let Some(ev) = r.next_event().expect("a readable MKV") {
        if let fragmenter::mkv::MkvEvent::Block(b) = ev {
            blocks.push(b);
        }
    }
    blocks
}

/// Asserts that track `track` of `stored` is the start of the same track of
/// `sent`, frame for frame and byte for byte (frames of different tracks at
/// one instant may interleave either way); returns how many frames of
/// `sent` are not in `stored`.
pub fn assert_track_prefix(sent: &[fragmenter::mkv::Block], stored: &[fragmenter::mkv::Block], track: u64) -> usize {
    let a: Vec<_> = sent.iter().filter(|b| b.track == track).collect();
    let b: Vec<_> = stored.iter().filter(|b| b.track == track).collect();
    assert!(
        !b.is_empty() && b.len() <= a.len(),
        "track {track}: {} sent, {} stored",
        a.len(),
        b.len()
    );
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(
            (x.timecode, x.keyframe),
            (y.timecode, y.keyframe),
            "track {track} frame {i}"
        );
        assert!(x.data == y.data, "track {track} frame {i}: payload differs");
    }
    a.len() - b.len()
}

/// `edge-agent export` of all of `stream` (the agent with `config` stopped)
/// into `out` (MKV), read back as its frames.
pub fn export_mkv_blocks(config: &Path, stream: &str, out: &Path) -> Vec<fragmenter::mkv::Block> {
    let o = run_agent(&[
        "export",
        "-c",
        config.to_str().unwrap(),
        "--stream",
        stream,
        "--start",
        "0",
        "--end",
        "4102444800000",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(
        o.status.success(),
        "export {stream}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    mkv_blocks(&std::fs::read(out).unwrap())
}

/// Write `text` (a config file) to `path`; the path.
pub fn write_config(path: &Path, text: String) -> PathBuf {
    std::fs::write(path, text).unwrap();
    path.to_owned()
}

/// Send `sig`, as kill(1) takes it (`-TERM`, `-KILL`, `-STOP`, `-CONT`), to
/// the agent.
pub fn signal(agent: &RunningAgent, sig: &str) {
    let _ = Command::new("kill").args([sig, &agent.child.id().to_string()]).status();
}

/// SIGTERM, and a clean exit.
pub fn stop_agent(mut agent: RunningAgent) {
    signal(&agent, "-TERM");
    assert!(
        agent.child.wait().unwrap().success(),
        "the agent did not stop cleanly on SIGTERM"
    );
}

/// The key the test senders sign PutMedia with.
pub const SENDER_ACCESS_KEY_ID: &str = "AKIDSENDER";
/// Its secret.
pub const SENDER_SECRET_ACCESS_KEY: &str = "sender/secret";

/// How a test gateway checks PutMedia and the control plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayAuth {
    /// `auth = "none"`.
    None,
    /// SigV4 with the senders' key ([`SENDER_ACCESS_KEY_ID`]).
    SigV4,
}

/// `dir/gateway.toml`: a gateway (`[ingest] enabled`) storing into
/// `dir/gstore`, HTTP on 127.0.0.1:`port`.
pub fn gateway_config(dir: &Path, port: u16, auth: GatewayAuth) -> PathBuf {
    let auth = match auth {
        GatewayAuth::None => "auth = \"none\"\n".to_owned(),
        GatewayAuth::SigV4 => format!(
            "auth = \"sigv4\"\n[[ingest.credentials]]\naccess_key_id = \"{SENDER_ACCESS_KEY_ID}\"\n\
             secret_access_key = \"{SENDER_SECRET_ACCESS_KEY}\"\n"
        ),
    };
    write_config(
        &dir.join("gateway.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\nenabled = true\n{auth}",
            dir.join("gstore")
        ),
    )
}

/// POST a JSON body (unsigned) to 127.0.0.1:`port`; the status and the
/// parsed answer (`Null` when it is not JSON).
pub fn post_json(port: u16, path: &str, body: &str) -> (u16, serde_json::Value) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

/// A `[[streams]]` entry named `cam`: 4 Mbit/s of noise (incompressible,
/// so x264 spends it all), 320x240 at 30 fps, 2 s fragments, no audio.
pub const NOISE_4MBPS_STREAM: &str = "[[streams]]\nname = \"cam\"\naudio = \"none\"\n\
     video = \"pipeline:videotestsrc is-live=true pattern=snow \
     ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 \
     ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=4000 key-int-max=60 ! h264parse\"\n";

/// Opens an unsigned PutMedia to a gateway on 127.0.0.1:`port` for
/// `stream`, ABSOLUTE timecodes, a chunked body with nothing in it yet;
/// reads time out after 5 s.
pub fn open_put_media(port: u16, stream: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "POST /putMedia HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nx-amzn-stream-name: {stream}\r\n\
         x-amzn-fragment-timecode-type: ABSOLUTE\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    s
}
