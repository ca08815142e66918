//! Agent → gateway: `edge-agent run` uploading a recorded stream with
//! PutMedia, SigV4-signed, to a second `edge-agent run` with
//! `[ingest] enabled = true, auth = "sigv4"` (its control plane creates the
//! stream and names the PutMedia endpoint),
//! both on loopback, through a gateway outage and a SIGKILL of the sender;
//! what the gateway stored is compared with the sender's frames, byte for
//! byte.

use std::time::Duration;

use edge_agent_tests::*;

fn persisted(port: u16) -> u64 {
    api_stream(port, "cam")
        .and_then(|s| s["upload"]["persisted"].as_u64())
        .unwrap_or(0)
}

#[test]
fn uploads_survive_a_gateway_outage_and_a_sender_kill_with_nothing_missing_or_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (gport, sport) = (free_tcp_port(), free_tcp_port());
    let gconfig = gateway_config(dir.path(), gport, GatewayAuth::SigV4);
    let sconfig = write_config(
        &dir.path().join("sender.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 800\n\
             [streams.upload]\nkvs_stream = \"cam-up\"\nendpoint = \"http://127.0.0.1:{gport}\"\n\
             rotate_seconds = 10\naccess_key_id = \"AKIDSENDER\"\nsecret_access_key = \"sender/secret\"\n\
             [streams.upload.create_stream]\n",
            dir.path().join("sstore")
        ),
    );
    let gateway = start_agent(&gconfig, gport);
    let sender = start_agent(&sconfig, sport);
    wait_for("2 fragments persisted", Duration::from_secs(30), || {
        persisted(sport) >= 2
    });

    // Outage: the gateway dies; the sender records on, is killed, restarts.
    signal(&gateway, "-KILL");
    drop(gateway);
    std::thread::sleep(Duration::from_secs(3));
    let before_kill = persisted(sport);
    signal(&sender, "-KILL");
    drop(sender);
    let sender = start_agent(&sconfig, sport);
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        persisted(sport),
        before_kill,
        "nothing can be persisted while the gateway is down"
    );
    // The outage is visible: not connected, the last error, the lag.
    let up = api_stream(sport, "cam").unwrap()["uploader"].clone();
    assert_eq!(up["connected"], false, "{up}");
    assert!(
        up["last_error"].as_str().is_some_and(|e| e.contains("127.0.0.1")),
        "{up}"
    );
    assert!(up["lag_fragments"].as_u64().unwrap() >= 1, "{up}");
    let backlog = up["lag_seconds"].as_f64().unwrap();
    assert!(backlog > 3.0, "{up}");
    let restarted = std::time::Instant::now();
    let gateway = start_agent(&gconfig, gport);
    // The backlog drains, then uploads follow live.
    wait_for("every stored fragment persisted", Duration::from_secs(60), || {
        api_stream(sport, "cam").is_some_and(|s| {
            let u = &s["upload"];
            u["persisted"].as_u64().unwrap_or(0) >= before_kill + 3
                && u["pending"].as_u64() == Some(0)
                && u["failed"].as_u64() == Some(0)
                && u["sent"].as_u64().unwrap_or(0) + u["received"].as_u64().unwrap_or(0) <= 1
        })
    });
    println!(
        "upload: a {backlog:.1} s backlog drained {:.1} s after the gateway was started again",
        restarted.elapsed().as_secs_f64()
    );
    // Connected (a snapshot could fall between two connections at a
    // rotation, hence the wait).
    wait_for("the sender connected", Duration::from_secs(10), || {
        api_stream(sport, "cam").is_some_and(|s| s["uploader"]["connected"] == true)
    });
    let up = api_stream(sport, "cam").unwrap()["uploader"].clone();
    assert!(up["connections"].as_u64().unwrap() >= 1, "{up}");
    // Rotation every 10 s: the restarted sender has opened a second
    // connection by itself, and nothing was lost or sent twice across it
    // (checked below).
    wait_for("a rotated connection", Duration::from_secs(20), || {
        api_stream(sport, "cam").is_some_and(|s| s["uploader"]["connections"].as_u64().unwrap_or(0) >= 2)
    });
    assert!(up["acks"]["persisted"].as_u64().unwrap() >= 3, "{up}");
    assert!(up["bytes_sent"].as_u64().unwrap() > 0, "{up}");
    let (_, metrics) = http_get(sport, "/metrics").unwrap();
    for m in [
        "edge_agent_upload_acks_total{stream=\"cam\",type=\"persisted\"}",
        "edge_agent_upload_lag_seconds{stream=\"cam\"}",
        "edge_agent_upload_lag_bytes{stream=\"cam\"}",
        "edge_agent_upload_connected{stream=\"cam\"} 1",
    ] {
        assert!(metrics.contains(m), "/metrics lacks {m}");
    }
    signal(&sender, "-TERM");
    let mut sender = sender;
    assert!(sender.child.wait().unwrap().success());
    std::thread::sleep(Duration::from_millis(500));
    let gfragments = api_stream(gport, "cam-up").unwrap()["fragments"].as_u64().unwrap();
    signal(&gateway, "-TERM");
    let mut gateway = gateway;
    assert!(gateway.child.wait().unwrap().success());

    let sent = export_mkv_blocks(&sconfig, "cam", &dir.path().join("sender.mkv"));
    let stored = export_mkv_blocks(&gconfig, "cam-up", &dir.path().join("gateway.mkv"));
    let mut tail = 0;
    for track in 1..=3u64 {
        // The gateway holds the sender's frames in order, none twice, none
        // missing, up to the fragment the sender closed at SIGTERM (not
        // uploaded: the uploader stops first).
        tail = tail.max(assert_track_prefix(&sent, &stored, track));
    }
    assert!(
        tail <= 120,
        "{tail} frames of a track not uploaded: more than the last fragment"
    );
    println!(
        "upload: {gfragments} fragments at the gateway, {} frames byte for byte; {tail} frames of the last fragment left to upload",
        stored.len()
    );
}

/// The gateway's `refused_total` for `stream`, from `/metrics`.
fn refused(port: u16, stream: &str) -> u64 {
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    let key = format!("edge_agent_ingest_refused_total{{stream=\"{stream}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_sender_refused_for_a_held_stream_asks_again_every_2_s_and_gets_it_when_freed() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (gport, sport) = (free_tcp_port(), free_tcp_port());
    let gconfig = gateway_config(dir.path(), gport, GatewayAuth::None);
    let gateway = start_agent(&gconfig, gport);
    // Another producer holds the stream: its PutMedia was answered 200 and
    // it sends nothing yet.
    let mut holder = open_put_media(gport, "held");
    let mut head = [0u8; 12];
    holder.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // The sender records 4 Mbit/s of noise, so each try has MB of backlog
    // to write when the refusal comes back.
    let sconfig = write_config(
        &dir.path().join("sender.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n{NOISE_4MBPS_STREAM}\
             [streams.upload]\nkvs_stream = \"held\"\nauth = \"none\"\n\
             data_endpoint = \"http://127.0.0.1:{gport}\"\n",
            dir.path().join("sstore")
        ),
    );
    let sender = start_agent(&sconfig, sport);
    // Each try is refused with ConnectionLimitExceededException, which the
    // sender reads as such (not as a broken connection) and so asks again
    // every 2 s rather than backing off.
    let began = std::time::Instant::now();
    let mut errors = std::collections::BTreeSet::new();
    // The longest wait before a next try the sender announced.
    let mut longest_wait = 0.0f64;
    while began.elapsed() < Duration::from_secs(11) {
        if let Some(up) = api_stream(sport, "cam").map(|s| s["uploader"].clone()) {
            if let Some(e) = up["last_error"].as_str() {
                errors.insert(e.to_owned());
            }
            if let Some(at) = up["retry_at_ms"].as_u64() {
                longest_wait = longest_wait.max(at as f64 / 1e3 - now_secs());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tries = refused(gport, "held");
    let backlog = api_stream(sport, "cam").unwrap()["uploader"]["lag_bytes"]
        .as_u64()
        .unwrap();
    println!(
        "upload: {tries} tries refused in 11 s with a {:.1} MB backlog, at most {longest_wait:.2} s apart; the sender saw {errors:?}",
        backlog as f64 / 1e6
    );
    assert!(!errors.is_empty());
    for e in &errors {
        assert!(
            e.contains("ConnectionLimitExceededException"),
            "the sender saw {e:?}, not the refusal"
        );
    }
    assert!(tries >= 4, "{tries} tries in 11 s: the sender backed off");
    // 2 s and up to 250 ms of jitter; a backoff would have reached 4 s.
    assert!(
        (1.0..=2.4).contains(&longest_wait),
        "the sender waited up to {longest_wait:.2} s between tries"
    );
    assert!(
        backlog > 2_000_000,
        "the backlog was {backlog} bytes: too small to be mid-body"
    );

    // The holder goes; the sender's next try gets the stream.
    drop(holder);
    wait_for("the backlog persisted", Duration::from_secs(40), || {
        api_stream(sport, "cam").is_some_and(|s| s["uploader"]["lag_fragments"].as_u64().is_some_and(|l| l <= 1))
    });
    stop_agent(sender);
    stop_agent(gateway);
}
