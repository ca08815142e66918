//! The KVS-compatible ingest gateway (`[ingest] enabled = true`): PutMedia
//! bodies POSTed over a raw chunked HTTP/1.1 connection, ACKs read back as
//! they stream, and what the gateway stored exported and compared with the
//! body frame by frame.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use edge_agent_tests::*;
use fragmenter::mkv::{MkvEvent, MkvReader, MkvWriter, MkvWriterOptions};
use fragmenter::{Frame, Timestamp, Track, TrackId};

/// POST `body` to /putMedia in chunks of `chunk` bytes, `pause` apart;
/// returns the HTTP status line and the ACK lines.
fn put_media(
    port: u16,
    headers: &[(&str, &str)],
    body: &[u8],
    chunk: usize,
    pause: Duration,
) -> (String, Vec<serde_json::Value>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = String::from(
        "POST /putMedia HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n",
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let reader = s.try_clone().unwrap();
    let read = std::thread::spawn(move || {
        let mut r = BufReader::new(reader);
        let mut status = String::new();
        r.read_line(&mut status).unwrap();
        let mut acks = Vec::new();
        let mut rest = String::new();
        let _ = r.read_to_string(&mut rest);
        for line in rest.lines() {
            if line.starts_with('{') {
                acks.push(serde_json::from_str::<serde_json::Value>(line).unwrap());
            }
        }
        (status.trim().to_owned(), acks)
    });
    for piece in body.chunks(chunk.max(1)) {
        if s.write_all(format!("{:x}\r\n", piece.len()).as_bytes()).is_err()
            || s.write_all(piece).is_err()
            || s.write_all(b"\r\n").is_err()
        {
            break; // the gateway ended it (ERROR)
        }
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
    }
    let _ = s.write_all(b"0\r\n\r\n");
    read.join().unwrap()
}

fn absolute(name: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-amzn-stream-name", name.to_owned()),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE".to_owned()),
    ]
}

fn refs<'a>(h: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    h.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Every event of an MKV body.
fn events(body: &[u8]) -> Vec<MkvEvent> {
    let mut r = MkvReader::default();
    r.feed(body);
    r.finish();
    let mut out = Vec::new();
    while let Some(ev) = r.next_event().unwrap() {
        out.push(ev);
    }
    out
}

fn cluster_timecodes(body: &[u8]) -> Vec<u64> {
    events(body)
        .into_iter()
        .filter_map(|e| match e {
            MkvEvent::ClusterStart { timecode, .. } => Some(timecode),
            _ => None,
        })
        .collect()
}

fn kinds_for(acks: &[serde_json::Value], timecode: u64) -> Vec<String> {
    acks.iter()
        .filter(|a| a["FragmentTimecode"].as_u64() == Some(timecode))
        .map(|a| a["EventType"].as_str().unwrap().to_owned())
        .collect()
}

/// A 6 s body of the test camera and microphone in the KVS layout.
fn captured_body(dir: &Path) -> Vec<u8> {
    let out = dir.join("in.mkv");
    let o = run_agent(&[
        "capture",
        "--source",
        "test",
        "--duration",
        "6s",
        "--fragment",
        "2s",
        "--width",
        "320",
        "--height",
        "240",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "capture: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::read(out).unwrap()
}

#[test]
fn a_putmedia_body_is_acknowledged_and_stored_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let body = captured_body(dir.path());
    let port = free_tcp_port();
    let config = gateway_config(dir.path(), port, GatewayAuth::None);
    let mut gateway = start_agent(&config, port);

    // 4 KB chunks: elements and frames span chunk boundaries.
    let (status, acks) = put_media(port, &refs(&absolute("cam1")), &body, 4096, Duration::ZERO);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let clusters = cluster_timecodes(&body);
    assert!(clusters.len() >= 3, "{clusters:?}");
    let mut numbers = Vec::new();
    for &t in &clusters {
        assert_eq!(
            kinds_for(&acks, t),
            ["BUFFERING", "RECEIVED", "PERSISTED"],
            "fragment {t}: {acks:?}"
        );
        let persisted = acks
            .iter()
            .find(|a| a["EventType"] == "PERSISTED" && a["FragmentTimecode"].as_u64() == Some(t))
            .unwrap();
        numbers.push(persisted["FragmentNumber"].as_str().unwrap().parse::<u64>().unwrap());
    }
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "fragment numbers increase: {numbers:?}"
    );
    let cam = api_stream(port, "cam1").unwrap();
    assert_eq!(cam["tracks"][0]["codec_id"], "V_MPEG4/ISO/AVC");
    assert_eq!(cam["tracks"][0]["width"], 320);
    assert_eq!(cam["tracks"][1]["codec_id"], "A_AAC");

    // The producer sends it all again (as one that never saw the PERSISTED
    // ACKs would): acknowledged again with the same numbers, stored once.
    let (status, again) = put_media(port, &refs(&absolute("cam1")), &body, 65536, Duration::ZERO);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let renumbered: Vec<u64> = again
        .iter()
        .filter(|a| a["EventType"] == "PERSISTED")
        .map(|a| a["FragmentNumber"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(renumbered, numbers);
    let cam = api_stream(port, "cam1").unwrap();
    assert_eq!(cam["fragments"].as_u64(), Some(clusters.len() as u64), "stored once");

    // Stop the gateway, export what it stored, compare frame by frame.
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status();
    assert!(gateway.child.wait().unwrap().success());
    let sent = mkv_blocks(&body);
    let stored = export_mkv_blocks(&config, "cam1", &dir.path().join("out.mkv"));
    assert_eq!(stored.len(), sent.len(), "frames stored");
    for track in 1..=2u64 {
        assert_eq!(
            assert_track_prefix(&sent, &stored, track),
            0,
            "track {track}: every frame stored"
        );
    }
    println!(
        "ingest: {} fragments, {} frames, {} bytes stored byte for byte",
        clusters.len(),
        sent.len(),
        body.len()
    );
}

fn video_track(avcc: Bytes) -> Track {
    Track::new(
        TrackId::new(1).unwrap(),
        "video",
        fragmenter::media::VideoTrack::h264(avcc).unwrap(),
    )
}

/// A body of clusters starting at `starts` (ms), each `frames` frames
/// `step` ms apart, the first a key frame.
fn synthetic(avcc: &Bytes, starts: &[u64], frames: u64, step: u64) -> Vec<u8> {
    let mut w = MkvWriter::new(&[video_track(avcc.clone())], MkvWriterOptions::default()).unwrap();
    let mut out = Vec::new();
    w.write_header(&mut out);
    for &s in starts {
        w.start_cluster(Timestamp::from_millis(s), &mut out).unwrap();
        for i in 0..frames {
            let t = Timestamp::from_millis(s + i * step);
            let f = Frame {
                track: TrackId::new(1).unwrap(),
                pts: t,
                dts: t,
                duration: Duration::from_millis(step),
                keyframe: i == 0,
                data: Bytes::from(vec![0, 0, 0, 2, 0x65, i as u8]),
            };
            w.write_frame(&f, &mut out).unwrap();
        }
        w.end_cluster(&[], &mut out);
    }
    out
}

/// A gateway without auth on a free port, its store in `dir`: the running
/// agent and its port.
fn start_gateway(dir: &Path) -> (RunningAgent, u16) {
    let port = free_tcp_port();
    let config = gateway_config(dir, port, GatewayAuth::None);
    (start_agent(&config, port), port)
}

fn error_id(acks: &[serde_json::Value]) -> Option<u64> {
    acks.iter()
        .find(|a| a["EventType"] == "ERROR")
        .and_then(|a| a["ErrorId"].as_u64())
}

#[test]
fn bad_bodies_get_the_services_errors_while_another_stream_carries_on() {
    let dir = tempfile::tempdir().unwrap();
    let body = captured_body(dir.path());
    let avcc = match &events(&body)[0] {
        MkvEvent::Header(h) => h.tracks[0].codec_private.clone(),
        e => panic!("expected the header first, got {e:?}"),
    };
    let (_gateway, port) = start_gateway(dir.path());

    // A good stream, sent slowly (about 3 s) the whole time.
    let good = std::thread::spawn({
        let body = body.clone();
        move || {
            put_media(
                port,
                &refs(&absolute("good")),
                &body,
                body.len() / 60 + 1,
                Duration::from_millis(50),
            )
        }
    });
    wait_for("the good stream connected", Duration::from_secs(10), || {
        api_stream(port, "good").is_some_and(|s| s["ingest"]["connected"] == true)
    });

    // The same stream twice at once: the newer connection is refused.
    let (status, _) = put_media(port, &refs(&absolute("good")), &body[..100], 100, Duration::ZERO);
    assert!(status.starts_with("HTTP/1.1 400"), "{status}");

    let now = now_secs() as u64 * 1000;
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("bad MKV", b"this is not matroska at all, just bytes".repeat(20), 4006),
        (
            "decreasing timecodes",
            synthetic(&avcc, &[now, now - 10_000], 10, 33),
            4004,
        ),
        ("a 25 s fragment", synthetic(&avcc, &[now], 26, 1000), 4002),
    ];
    for (what, bad, expected) in cases {
        let (status, acks) = put_media(port, &refs(&absolute("bad")), &bad, 1000, Duration::ZERO);
        assert_eq!(status, "HTTP/1.1 200 OK", "{what}: {acks:?}");
        assert_eq!(error_id(&acks), Some(expected), "{what}: {acks:?}");
        println!("{what}: ERROR {expected}");
    }
    // Headers the service refuses before the 200.
    let (status, _) = put_media(port, &[("x-amzn-stream-name", "x")], &body[..10], 10, Duration::ZERO);
    assert!(status.starts_with("HTTP/1.1 400"), "no timecode type: {status}");
    let (status, _) = put_media(
        port,
        &[
            ("x-amzn-stream-name", "../etc"),
            ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
        ],
        &body[..10],
        10,
        Duration::ZERO,
    );
    assert!(status.starts_with("HTTP/1.1 400"), "bad stream name: {status}");

    let (status, acks) = good.join().unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    for t in cluster_timecodes(&body) {
        assert_eq!(
            kinds_for(&acks, t),
            ["BUFFERING", "RECEIVED", "PERSISTED"],
            "good fragment {t}"
        );
    }
    // The figures: per stream in /api/streams and /metrics.
    let fragments = cluster_timecodes(&body).len() as u64;
    // No wait: the session clears the flag (and frees the stream) before
    // its response can end, and the producer has read that end.
    let i = api_stream(port, "good").unwrap()["ingest"].clone();
    assert_eq!(i["connections"], 1, "{i}");
    assert_eq!(i["refused"], 1, "{i}");
    assert_eq!(i["connected"], false, "{i}");
    assert_eq!(i["acks"]["persisted"].as_u64(), Some(fragments), "{i}");
    assert_eq!(i["bytes_received"].as_u64(), Some(body.len() as u64), "{i}");
    let (_, metrics) = http_get(port, "/metrics").unwrap();
    for m in [
        format!("edge_agent_ingest_acks_total{{stream=\"good\",type=\"persisted\"}} {fragments}"),
        "edge_agent_ingest_errors_total{stream=\"bad\",error_id=\"4006\"} 1".to_owned(),
        "edge_agent_ingest_errors_total{stream=\"bad\",error_id=\"4004\"} 1".to_owned(),
        "edge_agent_ingest_errors_total{stream=\"bad\",error_id=\"4002\"} 1".to_owned(),
        "edge_agent_ingest_refused_total{stream=\"good\"} 1".to_owned(),
    ] {
        assert!(
            metrics.contains(&m),
            "/metrics lacks {m}:\n{}",
            metrics
                .lines()
                .filter(|l| l.contains("ingest"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    assert_eq!(http_get(port, "/healthz").unwrap().0, 200);
}

/// What AWS's SDK (kvssink with CONTROL_PLANE_URI) calls before PutMedia:
/// describe (not found), create, describe (ACTIVE), tag, get the data
/// endpoint, then PutMedia by ARN; and the stream outlives a restart.
#[test]
fn the_control_plane_calls_of_the_sdk_then_putmedia_by_arn() {
    let dir = tempfile::tempdir().unwrap();
    let body = captured_body(dir.path());
    let port = free_tcp_port();
    let config = gateway_config(dir.path(), port, GatewayAuth::None);
    let mut gateway = start_agent(&config, port);

    let (status, v) = post_json(port, "/describeStream", r#"{"StreamName":"door"}"#);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["__type"], "ResourceNotFoundException");
    let (status, v) = post_json(
        port,
        "/createStream",
        r#"{"DeviceName":"edge-01","StreamName":"door","MediaType":"video/h264,audio/aac","DataRetentionInHours":2,"Tags":{"site":"a"}}"#,
    );
    assert_eq!(status, 200, "{v}");
    let arn = v["StreamARN"].as_str().unwrap().to_owned();
    assert!(
        arn.starts_with("arn:aws:kinesisvideo:") && arn.contains(":stream/door/"),
        "{arn}"
    );
    let (status, again) = post_json(port, "/createStream", r#"{"StreamName":"door"}"#);
    assert_eq!(
        (status, again["StreamARN"].as_str()),
        (200, Some(arn.as_str())),
        "idempotent"
    );
    let (status, v) = post_json(port, "/describeStream", &format!(r#"{{"StreamARN":"{arn}"}}"#));
    assert_eq!(status, 200, "{v}");
    let info = &v["StreamInfo"];
    assert_eq!(info["Status"], "ACTIVE");
    assert_eq!(info["DataRetentionInHours"], 2);
    assert_eq!(info["MediaType"], "video/h264,audio/aac");
    assert_eq!(info["StreamName"], "door");
    let (status, _) = post_json(port, "/tagStream", r#"{"StreamName":"door","Tags":{"floor":"1"}}"#);
    assert_eq!(status, 200);
    let (status, v) = post_json(
        port,
        "/getDataEndpoint",
        r#"{"StreamName":"door","APIName":"PUT_MEDIA"}"#,
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["DataEndpoint"], format!("http://127.0.0.1:{port}"));
    // Bad calls name what was wrong.
    let (status, v) = post_json(
        port,
        "/getDataEndpoint",
        r#"{"StreamName":"door","APIName":"GET_CLIP"}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("GET_CLIP"), "{v}");
    let (status, v) = post_json(port, "/createStream", "not json");
    assert_eq!((status, v["__type"].as_str()), (400, Some("InvalidArgumentException")));
    let (status, _) = post_json(port, "/describeStream", r#"{"StreamName":"a b"}"#);
    assert_eq!(status, 400);

    let headers = [
        ("x-amzn-stream-arn", arn.as_str()),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
    ];
    let (status, acks) = put_media(port, &headers, &body, 8192, Duration::ZERO);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let persisted = acks.iter().filter(|a| a["EventType"] == "PERSISTED").count();
    assert_eq!(persisted, cluster_timecodes(&body).len());

    // DataRetentionInHours 0 (the service's default when absent): RECEIVED
    // for every fragment, never PERSISTED, as the service; the gateway
    // still keeps them in its own store.
    let (status, v) = post_json(port, "/createStream", r#"{"StreamName":"live-only"}"#);
    assert_eq!(status, 200, "{v}");
    let (_, v) = post_json(port, "/describeStream", r#"{"StreamName":"live-only"}"#);
    assert_eq!(v["StreamInfo"]["DataRetentionInHours"], 0, "{v}");
    let headers = [
        ("x-amzn-stream-name", "live-only"),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
    ];
    let (status, acks) = put_media(port, &headers, &body, 8192, Duration::ZERO);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let count = |kind: &str| acks.iter().filter(|a| a["EventType"] == kind).count();
    assert_eq!(count("RECEIVED"), cluster_timecodes(&body).len(), "{acks:?}");
    assert_eq!(count("PERSISTED"), 0, "{acks:?}");
    let stored = api_stream(port, "live-only").unwrap()["fragments"].as_u64().unwrap();
    assert_eq!(stored as usize, cluster_timecodes(&body).len());

    // The streams are kept across a restart.
    let _ = Command::new("kill")
        .args(["-TERM", &gateway.child.id().to_string()])
        .status();
    assert!(gateway.child.wait().unwrap().success());
    let _gateway = start_agent(&config, port);
    let (status, v) = post_json(port, "/describeStream", r#"{"StreamName":"door"}"#);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["StreamInfo"]["StreamARN"], arn.as_str());
}

/// Headers AWS's own signer (aws-sigv4) adds for `headers` on `path` with
/// `payload_hash` and `secret`.
fn aws_signed(path: &str, headers: &[(&str, &str)], payload_hash: &str, secret: &str) -> Vec<(String, String)> {
    use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SigningSettings};
    let identity = aws_credential_types::Credentials::new("AKIDGATEWAY", secret, None, None, "test").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-west-2")
        .name("kinesisvideo")
        .time(std::time::SystemTime::now())
        .settings(SigningSettings::default())
        .build()
        .unwrap()
        .into();
    let signable = SignableRequest::new(
        "POST",
        format!("http://127.0.0.1{path}"),
        headers.iter().copied(),
        SignableBody::Precomputed(payload_hash.into()),
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions
        .headers()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

#[test]
fn sigv4_signed_requests_are_accepted_and_others_refused() {
    let dir = tempfile::tempdir().unwrap();
    let body = captured_body(dir.path());
    let port = free_tcp_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             [ingest]\nenabled = true\nauth = \"sigv4\"\n\
             [[ingest.credentials]]\naccess_key_id = \"AKIDGATEWAY\"\nsecret_access_key = \"s3cr3t/KEY+x\"\n",
            dir.path().join("store")
        ),
    )
    .unwrap();
    let _gateway = start_agent(&config, port);

    let names = [
        ("x-amzn-stream-name", "signed"),
        ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
    ];
    // Unsigned: refused before the 200, and nothing is stored.
    let (status, acks) = put_media(port, &names, &body, 65536, Duration::ZERO);
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    assert!(acks.iter().all(|a| a["EventType"].is_null()), "{acks:?}");
    assert_eq!(acks[0]["__type"], "NotAuthorizedException");
    // Signed with another secret: refused.
    let wrong = aws_signed("/putMedia", &names, EMPTY_SHA256, "not-it");
    let mut headers: Vec<(&str, &str)> = names.to_vec();
    headers.extend(wrong.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (status, _) = put_media(port, &headers, &body, 65536, Duration::ZERO);
    assert!(status.starts_with("HTTP/1.1 403"), "{status}");
    // Signed by aws-sigv4 with the gateway's key: accepted and stored.
    let good = aws_signed("/putMedia", &names, EMPTY_SHA256, "s3cr3t/KEY+x");
    let mut headers: Vec<(&str, &str)> = names.to_vec();
    headers.extend(good.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let (status, acks) = put_media(port, &headers, &body, 65536, Duration::ZERO);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let persisted = acks.iter().filter(|a| a["EventType"] == "PERSISTED").count();
    assert_eq!(persisted, cluster_timecodes(&body).len());

    // Control plane: the JSON body's hash is signed.
    let json = r#"{"StreamName":"signed"}"#;
    let (status, v) = post_json(port, "/describeStream", json);
    assert_eq!(
        (status, v["__type"].as_str()),
        (401, Some("NotAuthorizedException")),
        "{v}"
    );
    let hash = {
        let o = Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut o = o;
        o.stdin.take().unwrap().write_all(json.as_bytes()).unwrap();
        let out = o.wait_with_output().unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let signed = aws_signed(
        "/describeStream",
        &[("content-type", "application/json")],
        &hash,
        "s3cr3t/KEY+x",
    );
    let (status, v) = post_json_with(port, "/describeStream", json, &signed);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["StreamInfo"]["StreamName"], "signed");
}

fn post_json_with(port: u16, path: &str, body: &str, extra: &[(String, String)]) -> (u16, serde_json::Value) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body.as_bytes()).unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(serde_json::Value::Null))
}

#[test]
fn a_refused_producer_still_sending_its_body_gets_the_refusal_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, port) = start_gateway(dir.path());
    let mut holder = open_put_media(port, "held");
    let mut head = [0u8; 12];
    holder.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");

    // A second producer is refused at once, while it is still writing its
    // body (as a producer with a backlog is). The gateway reads and drops
    // that body for a while: closed with it unread, the connection would be
    // reset, and the producer's write would fail before it read the answer
    // (through a proxy the answer itself was lost), so it could not tell a
    // held stream from a network failure.
    for round in 0..3 {
        let (written, answer) = send_half_a_second_then_read(port, "held", round);
        assert!(answer.starts_with("HTTP/1.1 400"), "round {round}: {answer}");
        assert!(
            answer.contains("ConnectionLimitExceededException"),
            "round {round}: {answer}"
        );
        println!(
            "ingest: refused producer {round} wrote {:.1} MB of body unhindered, then read the 400",
            written as f64 / 1e6
        );
    }
    drop(holder);
}

/// Opens a PutMedia for `stream` and writes 64 KB chunks of zeros every
/// 5 ms for half a second (100 Mbit/s, a backlog's pace), whatever the
/// gateway answers meanwhile; then reads what it sent (up to 64 KB, until
/// half a second of quiet). The bytes written and the answer; a failed
/// write panics, naming `round`.
fn send_half_a_second_then_read(port: u16, stream: &str, round: usize) -> (usize, String) {
    let mut s = open_put_media(port, stream);
    let chunk = [
        format!("{:x}\r\n", 64 * 1024).into_bytes(),
        vec![0u8; 64 * 1024],
        b"\r\n".to_vec(),
    ]
    .concat();
    let began = std::time::Instant::now();
    let mut written = 0usize;
    while began.elapsed() < Duration::from_millis(500) {
        if let Err(e) = s.write_all(&chunk) {
            panic!("round {round}: writing the body failed after {written} bytes: {e}");
        }
        written += chunk.len();
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut answer = vec![0u8; 64 * 1024];
    let mut n = 0;
    s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    while n < answer.len() {
        match s.read(&mut answer[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    (written, String::from_utf8_lossy(&answer[..n]).into_owned())
}

#[test]
fn a_producer_still_sending_after_an_error_reads_the_error_not_a_reset() {
    let dir = tempfile::tempdir().unwrap();
    let (_gateway, port) = start_gateway(dir.path());
    // Zeros are not MKV: ERROR 4006 at the first chunk, while the producer
    // writes on. The gateway drains the rest of the body after the ERROR,
    // so the producer's writes go through and it reads the ERROR.
    for round in 0..3 {
        let (written, answer) = send_half_a_second_then_read(port, &format!("bad-{round}"), round);
        assert!(answer.starts_with("HTTP/1.1 200"), "round {round}: {answer}");
        assert!(
            answer.contains(r#""EventType":"ERROR""#) && answer.contains(r#""ErrorId":4006"#),
            "round {round}: {answer}"
        );
        println!(
            "ingest: producer {round} wrote {:.1} MB past its ERROR unhindered, then read the ERROR",
            written as f64 / 1e6
        );
    }
}

#[test]
fn a_producer_that_asks_again_as_its_response_ends_is_not_refused() {
    // A producer reads the end of its PutMedia response (after an ERROR,
    // or its body done) and at once opens the next one for the same
    // stream, as the uploader does at a rotation or after a skip. The
    // gateway frees the stream before the response can end, so the next
    // connection is never refused with ConnectionLimitExceeded. (A run of
    // .ci/run once got that refusal: the stream was freed by another task a
    // moment after the response ended. That window is too narrow to hit at
    // will here; this guards the order: freeing the stream 20 ms late fails
    // it at round 1.)
    let dir = tempfile::tempdir().unwrap();
    let body = captured_body(dir.path());
    let (_gateway, port) = start_gateway(dir.path());
    let not_mkv = b"this is not matroska at all, just bytes".repeat(20);
    let (mut errors, mut ended) = (0, 0);
    for round in 0..40 {
        let (sent, want_error): (&[u8], bool) = if round % 4 == 3 {
            (&body, false)
        } else {
            (&not_mkv, true)
        };
        let (status, acks) = put_media(port, &refs(&absolute("again")), sent, 64 * 1024, Duration::ZERO);
        assert_eq!(status, "HTTP/1.1 200 OK", "round {round}: {acks:?}");
        if want_error {
            assert_eq!(error_id(&acks), Some(4006), "round {round}: {acks:?}");
            errors += 1;
        } else {
            assert_eq!(error_id(&acks), None, "round {round}: {acks:?}");
            ended += 1;
        }
    }
    let i = api_stream(port, "again").unwrap()["ingest"].clone();
    assert_eq!(i["refused"], 0, "{i}");
    println!(
        "ingest: 40 back-to-back connections ({errors} ended by an ERROR, {ended} by their body's end), none refused"
    );
}
