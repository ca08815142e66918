//! Sensors end to end: `edge-agent replay` of a capture into
//! `edge-agent capture --source ouster:|velodyne:`, and a TI mmWave stream
//! through a pseudo-terminal pair; the MKV's sensor frames must hold the
//! sensor's bytes exactly.

use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_agent_tests::*;
use fragmenter::mkv::{MkvEvent, MkvReader};
use fragmenter::Timestamp;
use hardware::sensor::mmwave::{DetectedPoint, FrameBuilder};
use hardware::sensor::pcap::{write_pcap, PcapReader};
use hardware::sensor::unpack_packets;
use hardware::sensor::velodyne::{build_data_packet, Channel, Model, ReturnMode};

fn spawn_capture(source: &str, secs: u32, out: &Path) -> Child {
    Command::new(edge_agent())
        .args(["capture", "--source", source, "--duration", &format!("{secs}s"), "-o"])
        .arg(out)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn finish(child: Child) -> String {
    let o = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "capture failed: {text}");
    text
}

/// Every sensor block of an MKV, in order: (codec ID of its track, payload).
fn sensor_blocks(mkv: &Path) -> (String, Vec<bytes::Bytes>) {
    let data = std::fs::read(mkv).unwrap();
    let mut r = MkvReader::default();
    r.feed(&data);
    r.finish();
    let (mut codec, mut blocks) = (String::new(), Vec::new());
    while let Some(e) = r.next_event().unwrap() {
        match e {
            MkvEvent::Header(h) => codec = h.tracks[0].codec_id.clone(),
            MkvEvent::Block(b) => {
                assert!(b.keyframe, "sensor blocks are key frames");
                blocks.push(b.data)
            }
            _ => {}
        }
    }
    (codec, blocks)
}

#[test]
fn ouster_pcap_replayed_into_capture_is_stored_byte_for_byte() {
    let Some(data) = shared_data() else {
        eprintln!("SKIPPED: ../shared/data is absent (the synthetic Velodyne test covers the same path)");
        return;
    };
    let ouster = data.join("lidar/ouster");
    let pcap = ouster.join("OS-0-32-U1_v2.2.0_1024x10.pcap");
    let meta = ouster.join("OS-0-32-U1_v2.2.0_1024x10.json");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s.mkv");
    let port = free_udp_port();
    let child = spawn_capture(
        &format!("ouster:udp://127.0.0.1:{port}?metadata={}", meta.display()),
        4,
        &out,
    );
    wait_udp_bound(port);
    replay_pcap(&pcap, port, 7502);
    let summary = finish(child);
    assert!(summary.contains("1 frame(s)"), "{summary}");

    let raw = std::fs::read(&pcap).unwrap();
    let sent: Vec<Vec<u8>> = PcapReader::new(&raw)
        .unwrap()
        .filter_map(|d| d.ok())
        .filter(|d| d.dst_port() == 7502)
        .map(|d| d.payload.to_vec())
        .collect();
    assert_eq!(sent.len(), 64);
    let (codec, blocks) = sensor_blocks(&out);
    assert_eq!(codec, "O_OUSTER/LIDAR_PACKET");
    assert_eq!(blocks.len(), 1, "one full rotation = one frame");
    let got: Vec<Vec<u8>> = unpack_packets(&blocks[0])
        .unwrap()
        .into_iter()
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(got, sent, "the stored frame is not the pcap's UDP payloads");
}

/// Three rotations of VLP-32C packets (0.2° per block) at the sensor's real
/// pacing, written as a pcap in `dir`; the packets as sent.
fn vlp32c_rotations(dir: &Path) -> (PathBuf, Vec<Vec<u8>>) {
    let mut packets = Vec::new();
    let mut az = 0u32;
    let t0 = 1_795_651_200_000_000_000u64;
    for i in 0..450u32 {
        let mut azimuths = [0u16; 12];
        for a in azimuths.iter_mut() {
            *a = (az % 36_000) as u16;
            az += 20;
        }
        let channel = |b: usize, c: usize| Channel {
            distance: (1000 + b * 10 + c) as u16,
            intensity: (i % 200) as u8,
        };
        let p = build_data_packet(&azimuths, &channel, i * 663, ReturnMode::Strongest, Model::Vlp32c);
        packets.push((Timestamp::from_nanos(t0 + u64::from(i) * 663_000), p));
    }
    let records: Vec<(Timestamp, u16, &[u8])> = packets.iter().map(|(t, p)| (*t, 2368u16, p.as_slice())).collect();
    let pcap = dir.join("vlp32c.pcap");
    std::fs::write(&pcap, write_pcap(&records)).unwrap();
    (pcap, packets.into_iter().map(|(_, p)| p).collect())
}

#[test]
fn synthetic_velodyne_rotations_replay_and_store_every_packet_in_order() {
    // The capture must keep every byte and cut at the rotation wraps.
    let dir = tempfile::tempdir().unwrap();
    let (pcap, sent) = vlp32c_rotations(dir.path());
    let out = dir.path().join("v.mkv");
    let port = free_udp_port();
    let child = spawn_capture(&format!("velodyne:udp://127.0.0.1:{port}"), 5, &out);
    wait_udp_bound(port);
    replay_pcap(&pcap, port, 2368);
    finish(child);

    let (codec, blocks) = sensor_blocks(&out);
    assert!(codec.starts_with("O_VELODYNE/"), "{codec}");
    assert!(
        (3..=4).contains(&blocks.len()),
        "{} frames for 3 rotations",
        blocks.len()
    );
    let got: Vec<Vec<u8>> = blocks
        .iter()
        .flat_map(|b| unpack_packets(b).unwrap().into_iter().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "stored packets differ from those sent");
}

#[test]
fn mmwave_frames_through_a_pty_pair_survive_garbage_and_arrive_exactly() {
    use nix::pty::openpty;
    let data = openpty(None, None).unwrap();
    let config = openpty(None, None).unwrap();
    let name = |fd: &std::os::fd::OwnedFd| {
        std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd))).unwrap()
    };
    let data_path = name(&data.slave);
    let config_path = name(&config.slave);
    // Raw mode on the device side: the line discipline must not touch bytes.
    let mut t = nix::sys::termios::tcgetattr(data.slave.as_fd()).unwrap();
    nix::sys::termios::cfmakeraw(&mut t);
    nix::sys::termios::tcsetattr(data.slave.as_fd(), nix::sys::termios::SetArg::TCSANOW, &t).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r.mkv");
    let child = spawn_capture(
        &format!("mmwave:{}?config={}", data_path.display(), config_path.display()),
        4,
        &out,
    );
    // Written before the capture opens its port, the first frames could be
    // lost: wait until the process holds the data TTY open.
    let opened = |path: &Path| {
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .map(|fds| {
                fds.flatten()
                    .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l == path))
            })
            .unwrap_or(false)
    };
    wait_for("the capture to open the data TTY", Duration::from_secs(20), || {
        opened(&data_path)
    });
    let mut master = std::fs::File::from(data.master);
    let mut frames = Vec::new();
    for n in 0..20u32 {
        let points: Vec<DetectedPoint> = (0..(n % 7 + 1))
            .map(|k| DetectedPoint {
                x: k as f32,
                y: n as f32 * 0.5,
                z: 0.25,
                velocity: -(k as f32),
            })
            .collect();
        let frame = FrameBuilder::new(n).points(&points).build();
        if n % 5 == 2 {
            // Line noise between frames: the framer must resynchronise.
            master.write_all(b"\x00\x13garbage\x02\x01").unwrap();
        }
        master.write_all(&frame).unwrap();
        master.flush().unwrap();
        frames.push(frame);
        std::thread::sleep(Duration::from_millis(50));
    }
    let summary = finish(child);
    let (codec, blocks) = sensor_blocks(&out);
    assert_eq!(codec, "O_TIMMWAVE/OOB_UART");
    let got: Vec<Vec<u8>> = blocks
        .iter()
        .flat_map(|b| unpack_packets(b).unwrap().into_iter().map(<[u8]>::to_vec))
        .collect();
    assert_eq!(got, frames, "{summary}");
    drop(config.master);
}

#[test]
fn bad_sensor_sources_name_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("x.mkv");
    let out = out.to_str().unwrap();
    let fail = |args: &[&str]| {
        let o = run_agent(args);
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let e = fail(&[
        "capture",
        "--source",
        "ouster:udp://127.0.0.1:7502",
        "--duration",
        "1s",
        "-o",
        out,
    ]);
    assert!(e.contains("metadata"), "{e}");
    let e = fail(&[
        "capture",
        "--source",
        "ouster:udp://127.0.0.1:7502?metadata=/no/such.json",
        "--duration",
        "1s",
        "-o",
        out,
    ]);
    assert!(e.contains("/no/such.json"), "{e}");
    let e = fail(&[
        "capture",
        "--source",
        "mmwave:/dev/nonexistent-tty?config=/dev/null",
        "--duration",
        "1s",
        "-o",
        out,
    ]);
    assert!(e.contains("/dev/nonexistent-tty"), "{e}");
    let e = fail(&[
        "capture",
        "--source",
        "velodyne:udp://127.0.0.1:2368",
        "--duration",
        "1s",
        "-o",
        "x.mp4",
    ]);
    assert!(e.contains("MP4") && e.contains(".mkv"), "{e}");
    let e = fail(&["capture", "--source", "ars408:can0", "--duration", "1s", "-o", out]);
    assert!(e.contains("socketcan"), "{e}");
    let e = fail(&["replay", "/no/such.pcap", "--to", "udp://127.0.0.1:9"]);
    assert!(e.contains("/no/such.pcap"), "{e}");
    let e = fail(&["replay", "/dev/null", "--to", "tcp://127.0.0.1:9"]);
    assert!(e.contains("udp://"), "{e}");
}

#[test]
fn a_recording_agent_serves_lidar_frames_as_points_for_the_ui() {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, _) = vlp32c_rotations(dir.path());
    let (port, udp) = (free_tcp_port(), free_udp_port());
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [[sensors]]\nname = \"lidar\"\nsource = \"velodyne:udp://127.0.0.1:{udp}\"\nfragment_seconds = 1\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let _agent = start_agent(&config, port);
    wait_udp_bound(udp);
    // Two bursts far enough apart that the first fragment closes.
    replay_pcap(&pcap, udp, 2368);
    std::thread::sleep(Duration::from_millis(1500));
    replay_pcap(&pcap, udp, 2368);
    wait_for("a stored lidar fragment", Duration::from_secs(20), || {
        matches!(http_get(port, "/api/sensors/lidar/frame"), Ok((200, _)))
    });
    let (_, body) = http_get(port, "/api/sensors/lidar/frame").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["kind"], "lidar", "{v}");
    let total = v["total"].as_u64().unwrap();
    let points = v["points"].as_array().unwrap();
    // A rotation of VLP-32C: 150 packets × 12 blocks × 32 channels.
    assert!(total >= 10_000, "{total} points in a rotation");
    assert_eq!(points.len() as u64 % 4, 0);
    assert!(points.len() as u64 / 4 <= total);
    // At a given time: the frame at or before it.
    let t = v["t"]["ms"].as_u64().unwrap();
    let (status, body) = http_get(port, &format!("/api/sensors/lidar/frame?t={}", t + 1)).unwrap();
    assert_eq!(status, 200, "{body}");
    let at: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(at["t"]["ms"].as_u64().unwrap() <= t + 1);
    // Bad input: named, and the agent goes on.
    let (status, body) = http_get(port, "/api/sensors/lidar/frame?t=yesterday").unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("yesterday"), "{body}");
    assert_eq!(http_get(port, "/api/sensors/nope/frame").unwrap().0, 404);
    assert_eq!(http_get(port, "/api/sensors/a/b/frame").unwrap().0, 400);
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
}
