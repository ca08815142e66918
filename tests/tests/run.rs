//! `edge-agent run` end to end: recording into the store, the HTTP surface,
//! clean shutdown, crash safety under SIGKILL, and retention policies on a
//! real (small) disk.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use edge_agent_tests::*;

type Agent = RunningAgent;

fn write_config(dir: &Path, store: &Path, port: u16, extra_store: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            "[store]\npath = {store:?}\nmin_free_mb = 0\n{extra_store}\n\
             [http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[streams]]\nname = \"cam\"\nvideo = \"test\"\naudio = \"test\"\nwidth = 320\nheight = 240\nbitrate_kbps = 1000\n"
        ),
    )
    .unwrap();
    path
}

fn start(config: &Path, port: u16) -> Agent {
    start_agent(config, port)
}

fn streams(port: u16) -> serde_json::Value {
    let (status, body) = http_get(port, "/api/streams").unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

fn fragments(port: u16) -> u64 {
    streams(port)["streams"][0]["fragments"].as_u64().unwrap_or(0)
}

fn signal(agent: &Agent, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &agent.child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn verify(config: &Path) -> String {
    let o = run_agent(&["verify", "-c", config.to_str().unwrap()]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "store inconsistent: {text}");
    text
}

fn export_and_probe(config: &Path, out: &Path) -> serde_json::Value {
    let o = run_agent(&[
        "export",
        "--stream",
        "cam",
        "--start",
        "0",
        "--end",
        "9999999999999",
        "-o",
        out.to_str().unwrap(),
        "-c",
        config.to_str().unwrap(),
        "--quiet-progress",
    ]);
    assert!(
        o.status.success(),
        "export failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (json, stderr) = ffprobe(out, &["-show_streams", "-count_frames", "-select_streams", "v"]);
    assert_eq!(stderr, "", "ffprobe complained about the export");
    json
}

#[test]
fn run_records_serves_the_api_and_stops_cleanly_on_sigterm() {
    require_tools!("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = write_config(dir.path(), &dir.path().join("store"), port, "");
    let mut agent = start(&config, port);
    wait_for("two fragments", Duration::from_secs(30), || fragments(port) >= 2);

    let s = streams(port);
    let cam = &s["streams"][0];
    assert_eq!(cam["name"], "cam");
    assert_eq!(cam["store"]["state"], "recording");
    assert_eq!(cam["tracks"][0]["codec_id"], "V_MPEG4/ISO/AVC");
    assert_eq!(cam["tracks"][0]["width"], 320);
    assert_eq!(cam["tracks"][1]["codec_id"], "A_AAC");
    assert_eq!(cam["ranges"].as_array().unwrap().len(), 1);
    assert!(cam["capture"]["frames"].as_u64().unwrap() > 60);
    let (status, metrics) = http_get(port, "/metrics").unwrap();
    assert_eq!(status, 200);
    for m in [
        "edge_agent_store_bytes_written_total",
        "edge_agent_store_fragments_written_total",
        "edge_agent_store_deleted_fragments_total{reason=\"max_age\"}",
        "edge_agent_store_fsync_seconds_max",
        "edge_agent_store_free_bytes",
        "edge_agent_stream_oldest_seconds{stream=\"cam\"}",
        "edge_agent_stream_newest_seconds{stream=\"cam\"}",
    ] {
        assert!(metrics.contains(m), "/metrics lacks {m}:\n{metrics}");
    }
    let (status, body) = http_get(port, "/nope").unwrap();
    assert_eq!(status, 404);
    assert!(body.contains("\"error\""), "{body}");
    let before = fragments(port);
    signal(&agent, "-TERM");
    let status = agent.child.wait().unwrap();
    assert!(status.success(), "run exited with {status}");
    // The open fragment was closed and flushed, not lost.
    let text = verify(&config);
    let checked: u64 = text
        .split(" fragment(s) checked")
        .next()
        .unwrap()
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        checked > before,
        "{checked} fragments after a clean stop, {before} before it: {text}"
    );
    let json = export_and_probe(&config, &dir.path().join("all.mp4"));
    assert_eq!(json["streams"][0]["width"], 320);
}

/// A camera pipeline (no text overlay: the test camera's clock uses Pango,
/// which loads GIO itself) recorded without GIO, or through it libmount,
/// libblkid and libselinux (0.95 MB resident); see agent/src/gio_types.rs.
#[test]
fn recording_a_camera_pipeline_loads_no_gio() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[streams]]\nname = \"cam\"\naudio = \"none\"\nvideo = \"pipeline:videotestsrc is-live=true \
             ! video/x-raw,format=I420,width=320,height=240,framerate=30/1 ! x264enc tune=zerolatency key-int-max=30 \
             ! h264parse\"\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let agent = start(&config, port);
    wait_for("a fragment", Duration::from_secs(30), || fragments(port) >= 1);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", agent.child.id())).unwrap();
    let mut loaded: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libgio-2.0") || p.contains("libmount"))
        .collect();
    loaded.dedup();
    assert!(loaded.is_empty(), "recording loaded {loaded:?}");
}

#[test]
fn kill_during_recording_loses_at_most_the_open_fragment() {
    require_tools!("ffprobe");
    let dir = tempfile::tempdir().unwrap();
    let port = free_tcp_port();
    let config = write_config(dir.path(), &dir.path().join("store"), port, "");
    // A small generator: varied kill moments without a dependency.
    let mut seed = 0x2545_F491_4F6C_DD1Du64 ^ std::process::id() as u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut committed = 0u64;
    for round in 0..20 {
        let mut agent = start(&config, port);
        let at_start = fragments(port);
        assert!(
            at_start >= committed,
            "round {round}: {at_start} fragments after restart, {committed} before the kill"
        );
        // Kill at a random moment: during start-up, mid-fragment, near a cut.
        std::thread::sleep(Duration::from_millis(300 + next() % 3500));
        committed = fragments(port);
        signal(&agent, "-KILL");
        let _ = agent.child.wait();
        verify(&config);
    }
    let agent = start(&config, port);
    assert!(fragments(port) >= committed);
    let mut agent = agent;
    signal(&agent, "-TERM");
    let _ = agent.child.wait();
    let json = export_and_probe(&config, &dir.path().join("all.mkv"));
    assert_eq!(json["streams"][0]["codec_name"], "h264");
}

#[test]
fn size_cap_delete_oldest_keeps_recording_and_deny_new_media_refuses_visibly() {
    let dir = tempfile::tempdir().unwrap();
    // 1000 kbit/s is ~0.25 MB per 2 s fragment: a 1 MB cap is hit in seconds.
    let port = free_tcp_port();
    let config = write_config(
        dir.path(),
        &dir.path().join("a"),
        port,
        "max_size_mb = 1\non_full = \"DELETE_OLDEST_MEDIA\"",
    );
    let mut agent = start(&config, port);
    wait_for("a deletion by size", Duration::from_secs(60), || {
        streams(port)["store"]["deleted_fragments"]["max_size"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    let s = streams(port);
    assert_eq!(s["streams"][0]["store"]["state"], "recording");
    signal(&agent, "-TERM");
    agent.child.wait().unwrap();

    let port = free_tcp_port();
    let dir2 = tempfile::tempdir().unwrap();
    let config = write_config(
        dir2.path(),
        &dir2.path().join("b"),
        port,
        "max_size_mb = 1\non_full = \"DENY_NEW_MEDIA\"",
    );
    let mut agent = start(&config, port);
    wait_for("the stream to be denied", Duration::from_secs(60), || {
        streams(port)["streams"][0]["store"]["state"] == "denied"
    });
    let s = streams(port);
    let reason = s["streams"][0]["store"]["reason"].as_str().unwrap().to_owned();
    assert!(reason.contains("max_size_mb"), "{reason}");
    assert_eq!(
        s["store"]["deleted_fragments"]["max_size"], 0,
        "DENY_NEW_MEDIA deleted media"
    );
    signal(&agent, "-TERM");
    agent.child.wait().unwrap();
    verify(&config);
}

/// A real full disk: the store on a 4 MB tmpfs.
#[test]
fn disk_full_on_a_small_filesystem_denies_then_resumes_and_corrupts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("small");
    std::fs::create_dir(&mnt).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=4m", "tmpfs"])
        .arg(&mnt)
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs here (needs root); the store's injected-ENOSPC tests cover the same code"
        );
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _guard = Unmount(mnt.clone());
    let port = free_tcp_port();
    let config = write_config(dir.path(), &mnt.join("store"), port, "on_full = \"DENY_NEW_MEDIA\"");
    let mut agent = start(&config, port);
    wait_for(
        "the disk to fill and the stream to be denied",
        Duration::from_secs(90),
        || streams(port)["streams"][0]["store"]["state"] == "denied",
    );
    let denied = streams(port);
    let reason = denied["streams"][0]["store"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("disk") || reason.contains("free"), "{reason}");
    // Space returns: recording resumes by itself.
    let (status, _) = http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200, "the agent stays up while the disk is full");
    let filler = mnt.join("filler");
    let _ = std::fs::remove_file(&filler);
    Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(&mnt)
        .status()
        .unwrap();
    wait_for("recording to resume", Duration::from_secs(60), || {
        streams(port)["streams"][0]["store"]["state"] == "recording"
    });
    let before = fragments(port);
    wait_for("new fragments after the resume", Duration::from_secs(30), || {
        fragments(port) > before
    });
    signal(&agent, "-TERM");
    agent.child.wait().unwrap();
    verify(&config);
}

/// Playback maps the segment files it serves; once retention deletes one,
/// the agent must let go of it, or the deleted file keeps its disk space.
#[test]
fn served_segments_deleted_by_retention_stop_being_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("s");
    let port = free_tcp_port();
    let config = write_config(
        dir.path(),
        &store,
        port,
        "max_size_mb = 1\non_full = \"DELETE_OLDEST_MEDIA\"",
    );
    let agent = start(&config, port);
    wait_for("two fragments", Duration::from_secs(60), || fragments(port) >= 2);
    // Serve the oldest segment: it is read back, mapped and cached.
    let (status, playlist) = http_get(port, "/hls/cam/vod.m3u8").unwrap();
    assert_eq!(status, 200, "{playlist}");
    let first = playlist
        .lines()
        .find(|l| l.starts_with("seg/"))
        .unwrap_or_else(|| panic!("no segment in\n{playlist}"));
    let (status, _) = http_get(port, &format!("/hls/cam/{first}")).unwrap();
    assert_eq!(status, 200);
    let maps = format!("/proc/{}/maps", agent.child.id());
    let store_dir = store.canonicalize().unwrap().to_string_lossy().into_owned();
    let mapped = || {
        std::fs::read_to_string(&maps)
            .unwrap()
            .lines()
            .filter(|l| l.contains(&store_dir))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(!mapped().is_empty(), "the served segment is not mapped");
    wait_for("a deletion by size", Duration::from_secs(60), || {
        streams(port)["store"]["deleted_fragments"]["max_size"]
            .as_u64()
            .unwrap_or(0)
            > 0
    });
    // Retention runs every 10 s and clears the cache after a deletion.
    wait_for("deleted segment files to be unmapped", Duration::from_secs(30), || {
        mapped().iter().all(|l| !l.ends_with("(deleted)"))
    });
}
