//! Playback end to end: `edge-agent run` recording the test camera and
//! microphone, judged by real players — hls.js and dash.js (npm) in real
//! Chromium (Debian's package, headless, through playwright-core), ffprobe
//! and GStreamer's demuxers — and the web UI captured as a screenshot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use edge_agent_tests::*;

const WIDTH: u64 = 640;
const HEIGHT: u64 = 360;

fn web_dir() -> PathBuf {
    manifest_dir().join("web")
}

/// Install the test harness's npm packages (pinned by its lock file) once.
fn npm_ci() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let dir = web_dir();
        if dir.join("node_modules/playwright-core").exists() {
            return;
        }
        let ok = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "npm ci in {} failed", dir.display());
    });
}

fn config(dir: &Path, port: u16) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[streams]]\nname = \"cam\"\nvideo = \"test\"\naudio = \"test\"\n\
             width = {WIDTH}\nheight = {HEIGHT}\nfps = 30\nbitrate_kbps = 1000\n",
            dir.join("store")
        ),
    )
    .unwrap();
    path
}

fn fragments(port: u16) -> u64 {
    http_get(port, "/api/streams")
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["streams"][0]["fragments"].as_u64())
        .unwrap_or(0)
}

/// A recording agent with at least `n` fragments stored.
fn agent_with_fragments(dir: &Path, n: u64) -> (RunningAgent, u16) {
    let port = free_tcp_port();
    let agent = start_agent(&config(dir, port), port);
    wait_for("fragments to be stored", Duration::from_secs(60), || {
        fragments(port) >= n
    });
    (agent, port)
}

/// One browser test at a time: each runs a real-time encoder and Chromium,
/// and on two cores side-by-side runs starve each other into stalls that
/// say nothing about the agent.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Run the browser driver; its one JSON line.
fn play(port: u16, args: &[&str]) -> serde_json::Value {
    npm_ci();
    let origin = format!("http://127.0.0.1:{port}");
    let out = Command::new("node")
        .arg(web_dir().join("play.mjs"))
        .args(["--origin", &origin])
        .args(args)
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| {
        panic!(
            "browser driver printed no JSON ({e}):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn assert_played(r: &serde_json::Value, at_least: f64) {
    assert_eq!(r["ok"], true, "player failed: {r}");
    assert!(r["fatal"].as_array().unwrap().is_empty(), "fatal errors: {r}");
    assert!(r["played"].as_f64().unwrap() >= at_least, "played too little: {r}");
    assert_eq!(r["width"], WIDTH, "{r}");
    assert_eq!(r["height"], HEIGHT, "{r}");
}

/// Epoch milliseconds of the stream's first recorded range, shifted.
fn recorded_window(port: u16, skip: Duration, len: Duration) -> (u64, u64) {
    let (_, body) = http_get(port, "/api/streams").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let start = v["streams"][0]["ranges"][0]["start"]["ms"]
        .as_u64()
        .unwrap_or_else(|| panic!("no start in the first range: {v}"));
    let from = start + skip.as_millis() as u64;
    (from, from + len.as_millis() as u64)
}

/// Watches of a live stream that fall short get another go.
///
/// The stall these tests used to hit (hls.js skipping a segment's last part
/// when it is shorter than its 0.25 s lookup tolerance, then freezing over
/// the hole) is fixed by the part grid (playback/src/segments.rs), and the
/// live test checks the grid in the agent's own playlist. A stream's first
/// segment has no predecessor to plan from and can still end in a short
/// part, and these tests join a young stream, so a stall there stays
/// possible. Every attempt is printed with its request log, so a retry is
/// visible; the bar itself is not lowered.
const LIVE_ATTEMPTS: usize = 3;

/// Play the live stream in the driver up to [`LIVE_ATTEMPTS`] times, until
/// `good` accepts a result; the last result.
fn play_live(port: u16, args: &[&str], good: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
    let mut r = serde_json::Value::Null;
    for attempt in 1..=LIVE_ATTEMPTS {
        r = play(port, args);
        if good(&r) {
            break;
        }
        println!("live playback attempt {attempt} of {LIVE_ATTEMPTS} fell short: {r}");
    }
    r
}

/// Twenty seconds of the live stream in hls.js: at least 18 s played (a
/// stall at start-up gets another attempt), the latency printed.
fn watch_live_hls() -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = agent_with_fragments(dir.path(), 1);
    let r = play_live(
        port,
        &["--player", "hls", "--url", "/hls/cam/live.m3u8", "--seconds", "20"],
        |r| r["played"].as_f64().unwrap_or(0.0) >= 18.0,
    );
    let (status, playlist) = http_get(port, "/hls/cam/live.m3u8").expect("live playlist");
    assert_eq!(status, 200, "{playlist}");
    assert_segments_end_in_whole_parts(&playlist);
    let latency = r["latency"].as_f64().unwrap_or(f64::NAN);
    let behind_edge = r["player_latency"].as_f64().unwrap_or(f64::NAN);
    println!(
        "LL-HLS live: played {:.2} s of 20; latency (wall clock − program date time at the playing position) \
         {latency:.2} s (target < 2 s); hls.js's own distance behind the playlist edge: {behind_edge:.2} s",
        r["played"].as_f64().unwrap_or(0.0)
    );
    r
}

/// Every complete segment of a live playlist ends in a part of at least
/// 0.25 s, and no part is longer than the part target: hls.js skips a
/// shorter last part and stalls over the hole (see segments.rs).
fn assert_segments_end_in_whole_parts(playlist: &str) {
    let target: f64 = playlist
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-PART-INF:PART-TARGET="))
        .and_then(|v| v.parse().ok())
        .expect("PART-TARGET");
    let mut parts: Vec<f64> = Vec::new();
    let mut checked = 0;
    for line in playlist.lines() {
        if let Some(rest) = line.strip_prefix("#EXT-X-PART:DURATION=") {
            let d: f64 = rest.split(',').next().unwrap().parse().unwrap();
            assert!(
                d <= target + 1e-6,
                "a part of {d} s, over the target {target}:\n{playlist}"
            );
            parts.push(d);
        } else if line.starts_with("#EXTINF:") {
            if let Some(&last) = parts.last() {
                assert!(last >= 0.25, "a segment ends in a part of {last} s:\n{playlist}");
                checked += 1;
            }
            parts.clear();
        }
    }
    assert!(
        checked >= 2,
        "too few complete segments with parts to check:\n{playlist}"
    );
}

/// At least 18 s of 20 in hls.js, at the configured size, with no fatal
/// error; the latency is printed.
#[test]
fn live_hls_plays_in_chromium_with_hlsjs_at_low_latency() {
    require_tools!("node", "npm", "chromium");
    let _one = exclusive();
    let r = watch_live_hls();
    assert_played(&r, 18.0);
    let latency = r["latency"].as_f64().expect("hls.js knows the program date time");
    assert!(latency > 0.0 && latency < 10.0, "implausible latency {latency}");
}

#[test]
fn live_and_on_demand_dash_play_in_chromium_with_dashjs() {
    require_tools!("node", "npm", "chromium");
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = agent_with_fragments(dir.path(), 6);
    // Real time in a browser on a busy 2-core machine: a stall gets another
    // go, printed, as for HLS; the bar stays at 18 s of 20.
    let live = play_live(
        port,
        &["--player", "dash", "--url", "/dash/cam/live.mpd", "--seconds", "20"],
        |r| r["played"].as_f64().unwrap_or(0.0) >= 18.0,
    );
    assert_played(&live, 18.0);
    if let Some(latency) = live["latency"].as_f64() {
        println!("DASH live latency (dash.js): {latency:.2} s");
    }
    let (start, end) = recorded_window(port, Duration::from_secs(1), Duration::from_secs(8));
    let vod = play(
        port,
        &[
            "--player",
            "dash",
            "--url",
            &format!("/dash/cam/vod.mpd?start={start}&end={end}"),
            "--seconds",
            "5",
        ],
    );
    assert_played(&vod, 4.0);
}

#[test]
fn a_recorded_range_plays_in_hlsjs_and_as_a_clip_and_third_party_readers_agree() {
    require_tools!("node", "npm", "chromium", "ffprobe", "gst-launch-1.0");
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = agent_with_fragments(dir.path(), 6);
    let (start, end) = recorded_window(port, Duration::from_secs(1), Duration::from_secs(8));
    let vod = format!("/hls/cam/vod.m3u8?start={start}&end={end}");
    let r = play(port, &["--player", "hls", "--url", &vod, "--seconds", "5"]);
    assert_played(&r, 4.0);

    // The clip: a progressive MP4 that ffprobe reads whole, with the size
    // the server announced.
    let base = format!("http://127.0.0.1:{port}");
    let clip = dir.path().join("clip.mp4");
    let ok = Command::new("curl")
        .args(["-sf", "-o"])
        .arg(&clip)
        .arg(format!("{base}/clip/cam.mp4?start={start}&end={end}"))
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if ok {
        let (probe, stderr) = ffprobe(&clip, &["-show_streams", "-count_frames"]);
        assert_eq!(stderr, "", "ffprobe complained about the clip");
        let v = &probe["streams"][0];
        assert_eq!(v["width"], WIDTH);
        let frames: u64 = v["nb_read_frames"].as_str().unwrap().parse().unwrap();
        assert!(frames >= 7 * 30, "clip has only {frames} video frames for 8 s");
    } else {
        // Without curl, fetch it with ffprobe itself.
        let (_, stderr) = ffprobe(
            Path::new(&format!("{base}/clip/cam.mp4?start={start}&end={end}")),
            &["-show_streams"],
        );
        assert_eq!(stderr, "");
    }

    // ffprobe reads the live playlist, the VOD playlist and the MPD.
    for path in ["/hls/cam/live.m3u8", vod.as_str(), "/dash/cam/live.mpd"] {
        let (probe, stderr) = ffprobe(Path::new(&format!("{base}{path}")), &["-show_streams"]);
        assert!(!stderr.to_lowercase().contains("error"), "ffprobe on {path}: {stderr}");
        let streams = probe["streams"].as_array().cloned().unwrap_or_default();
        assert!(
            streams.iter().any(|s| s["codec_name"] == "h264"),
            "ffprobe found no H.264 in {path}: {probe}"
        );
    }
    // GStreamer (playbin: its HLS and DASH demuxers, decoders) plays the
    // VOD playlist and the MPD to the end without error.
    for path in [vod.clone(), format!("/dash/cam/vod.mpd?start={start}&end={end}")] {
        // No shell between: the URL's `&` needs no quoting.
        let pipeline = format!("playbin uri={base}{path} video-sink=fakesink audio-sink=fakesink");
        // GStreamer 1.22's legacy hlsdemux now and then deadlocks in
        // playbin's multiqueues (every thread parked, no request open);
        // the same playlist then plays at once when run again. A hang gets
        // one more run; an error never does.
        let run = match gst_launch_within(&pipeline, Duration::from_secs(60)) {
            GstRun::TimedOut(_) => {
                println!("playbin on {path} hung for 60 s; running it once more");
                gst_launch_within(&pipeline, Duration::from_secs(60))
            }
            exited => exited,
        };
        let (ok, text) = run.into_result();
        assert!(ok, "GStreamer playbin on {path} failed:\n{text}");
    }
    // And its HLS demuxer follows the live playlist: for six seconds, video
    // flows through hlsdemux and qtdemux without an error. A live playlist
    // never ends, so being stopped at the limit is the expected way out.
    let text = match gst_launch_within(
        &format!(
            "-v souphttpsrc location={base}/hls/cam/live.m3u8 ! hlsdemux ! qtdemux name=d \
             d.video_0 ! h264parse ! fakesink name=sink silent=false"
        ),
        Duration::from_secs(6),
    ) {
        GstRun::TimedOut(text) | GstRun::Exited(_, text) => text,
    };
    let buffers = count_sink_buffers(&text);
    assert!(
        !text.contains("ERROR"),
        "GStreamer hlsdemux on the live playlist failed:\n{text}"
    );
    assert!(buffers >= 60, "only {buffers} video frames through hlsdemux in 6 s");
}

#[test]
fn web_ui_plays_the_live_stream_and_is_captured() {
    require_tools!("node", "npm", "chromium");
    let _one = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let (_agent, port) = agent_with_fragments(dir.path(), 1);
    let artifacts = manifest_dir().join("../artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("web-ui.png");
    let _ = std::fs::remove_file(&shot);
    let r = play_live(
        port,
        &["--page", "/", "--seconds", "5", "--screenshot", shot.to_str().unwrap()],
        |r| r["ok"] == true && r["played"].as_f64().unwrap_or(0.0) >= 4.0,
    );
    assert_eq!(r["ok"], true, "the web UI did not play: {r}");
    assert!(r["played"].as_f64().unwrap() >= 4.0, "{r}");
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10_000,
        "screenshot {} is missing or blank ({size} bytes)",
        shot.display()
    );
    println!("web UI screenshot: {}", shot.display());
}
