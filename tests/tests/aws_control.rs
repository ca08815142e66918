//! The upload's control plane, judged by implementations that are not ours
//! and by AWS's own SDK:
//! - moto's server (PyPI `moto[server]`, which `scripts/install-deps.sh
//!   --test` installs into a venv) answers the agent's control-plane
//!   module: CreateStream with retention, media type, KMS key, device name
//!   and tags; DescribeStream; GetDataEndpoint, cached and asked again
//!   after an invalidation or the cache's lifetime. moto's data endpoint is
//!   a made-up host, so PutMedia itself cannot go there.
//! - A real `edge-agent run` whose `endpoint` is a second `edge-agent run`
//!   with `[ingest]` (SigV4): the sender's aws-sdk-kinesisvideo client
//!   creates the stream on our gateway, PutMedia goes where the gateway's
//!   GetDataEndpoint says, and after the gateway is killed and restarted
//!   the endpoint is asked for again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use edge_agent::kvs::control_plane::{
    sdk_config, ControlPlane, ControlPlaneError, ControlPlaneSpec, CreateStreamSpec, ENDPOINT_TTL,
};
use edge_agent_tests::*;

/// moto's server, where `scripts/install-deps.sh --test` puts it.
fn moto_server_binary() -> Option<PathBuf> {
    let venv = std::env::var_os("EDGE_AGENT_MOTO_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/edge-agent/moto-venv")))?;
    let bin = venv.join("bin/moto_server");
    bin.exists().then_some(bin)
}

/// A `moto_server` on 127.0.0.1, stopped when dropped.
struct Moto {
    child: Child,
    port: u16,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Moto {
    /// Started and answering, or `None` (with the reason printed) when moto
    /// is not installed.
    fn start() -> Option<Moto> {
        let Some(bin) = moto_server_binary() else {
            eprintln!("SKIPPED: moto_server is not installed (scripts/install-deps.sh --test installs moto[server])");
            return None;
        };
        let port = free_tcp_port();
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto { child, port };
        wait_for("moto_server to answer", Duration::from_secs(60), || {
            matches!(http_get(port, "/moto-api/data.json"), Ok((200, _)))
        });
        Some(moto)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's own record of a stream (it has no ListTagsForStream).
    fn stream(&self, name: &str) -> serde_json::Value {
        let (_, body) = http_get(self.port, "/moto-api/data.json").unwrap();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["kinesisvideo"]["Stream"]
            .as_array()
            .and_then(|a| a.iter().find(|s| s["stream_name"] == name).cloned())
            .unwrap_or_else(|| panic!("moto has no stream {name}: {v}"))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn spec(moto: &Moto, stream: &str, create: Option<CreateStreamSpec>, ttl: Duration) -> ControlPlaneSpec {
    ControlPlaneSpec {
        kvs_stream: stream.into(),
        region: "us-west-2".into(),
        endpoint: Some(moto.url()),
        create,
        endpoint_ttl: ttl,
    }
}

#[test]
fn moto_creates_describes_and_gives_the_put_media_endpoint_which_is_cached() {
    let Some(moto) = Moto::start() else { return };
    let rt = runtime();
    let credentials = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new("AKIDMOTO", "moto/secret", None, None, "test"),
    );
    let sdk = rt.block_on(sdk_config("us-west-2", Some(credentials)));
    let create = CreateStreamSpec {
        retention_hours: 48,
        media_type: Some("video/h264,audio/aac".into()),
        kms_key_id: Some("arn:aws:kms:us-west-2:123456789012:key/edge-agent-test".into()),
        device_name: Some("edge-01".into()),
        tags: BTreeMap::from([("site".into(), "depot-3".into()), ("role".into(), "door".into())]),
    };
    let ttl = Duration::from_secs(2);
    let cp = ControlPlane::new(spec(&moto, "cam-moto", Some(create), ttl), &sdk);

    // First use: DescribeStream (absent), CreateStream, DescribeStream
    // (ACTIVE), GetDataEndpoint.
    let began = Instant::now();
    let endpoint = rt.block_on(cp.put_media_endpoint()).unwrap();
    let first = began.elapsed();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let calls = cp.calls();
    assert_eq!(
        (calls.describe, calls.create, calls.get_data_endpoint),
        (2, 1, 1),
        "{calls:?}"
    );
    // Cached: no call (at once: the lifetime here is 2 s).
    let began = Instant::now();
    for _ in 0..100 {
        assert_eq!(rt.block_on(cp.put_media_endpoint()).unwrap(), endpoint);
    }
    let cached = began.elapsed() / 100;
    assert_eq!(cp.calls().get_data_endpoint, 1);
    let ready = rt.block_on(cp.ensure_stream()).unwrap();
    assert!(!ready.created, "the stream exists by now");
    assert_eq!(ready.retention_hours, 48);
    assert_eq!(ready.media_type.as_deref(), Some("video/h264,audio/aac"));
    assert!(ready.arn.contains(":stream/cam-moto/"), "{}", ready.arn);
    // What moto keeps of the CreateStream: tags, KMS key, device name.
    let kept = moto.stream("cam-moto");
    assert_eq!(
        kept["tags"],
        serde_json::json!({"site": "depot-3", "role": "door"}),
        "{kept}"
    );
    assert_eq!(
        kept["kms_key_id"], "arn:aws:kms:us-west-2:123456789012:key/edge-agent-test",
        "{kept}"
    );
    assert_eq!(kept["device_name"], "edge-01", "{kept}");
    assert_eq!(kept["data_retention_in_hours"], 48, "{kept}");

    // A failed PutMedia connection: asked again, the stream not described.
    cp.invalidate(false);
    let began = Instant::now();
    assert_eq!(rt.block_on(cp.put_media_endpoint()).unwrap(), endpoint);
    let one_call = began.elapsed();
    assert_eq!((cp.calls().get_data_endpoint, cp.calls().describe), (2, 3));
    // PutMedia said the stream is gone: described again too.
    cp.invalidate(true);
    rt.block_on(cp.put_media_endpoint()).unwrap();
    assert_eq!((cp.calls().get_data_endpoint, cp.calls().describe), (3, 4));
    // Older than its lifetime: asked again.
    std::thread::sleep(ttl + Duration::from_millis(200));
    rt.block_on(cp.put_media_endpoint()).unwrap();
    assert_eq!(cp.calls().get_data_endpoint, 4);
    assert_eq!(ENDPOINT_TTL, Duration::from_secs(2400), "the producer SDK's 40 minutes");

    // Another producer, no create_stream: the existing stream is used.
    let other = ControlPlane::new(spec(&moto, "cam-moto", None, ENDPOINT_TTL), &sdk);
    let ready = rt.block_on(other.ensure_stream()).unwrap();
    assert!(!ready.created);
    assert_eq!((other.calls().describe, other.calls().create), (1, 0));
    // A stream that does not exist, no create_stream: a clear error, no
    // CreateStream.
    let missing = ControlPlane::new(spec(&moto, "cam-missing", None, ENDPOINT_TTL), &sdk);
    let e = rt.block_on(missing.put_media_endpoint()).unwrap_err();
    assert!(matches!(e, ControlPlaneError::NoStream { .. }), "{e}");
    assert!(
        e.to_string().contains(
            "stream cam-missing does not exist in us-west-2; create it, or add [streams.upload.create_stream]"
        ),
        "{e}"
    );
    assert_eq!(missing.calls().create, 0);
    println!(
        "moto: describe+create+describe+GetDataEndpoint {:.1} ms; one GetDataEndpoint {:.1} ms; cached {:.2} µs",
        first.as_secs_f64() * 1e3,
        one_call.as_secs_f64() * 1e3,
        cached.as_secs_f64() * 1e6
    );
}

#[test]
fn a_control_plane_that_does_not_answer_fails_within_seconds_naming_the_call() {
    let rt = runtime();
    let credentials = aws_credential_types::provider::SharedCredentialsProvider::new(
        aws_credential_types::Credentials::new("AKID", "secret", None, None, "test"),
    );
    let sdk = rt.block_on(sdk_config("us-west-2", Some(credentials)));
    // Nothing listens here.
    let dead = ControlPlaneSpec {
        kvs_stream: "cam".into(),
        region: "us-west-2".into(),
        endpoint: Some(format!("http://127.0.0.1:{}", free_tcp_port())),
        create: None,
        endpoint_ttl: ENDPOINT_TTL,
    };
    let began = Instant::now();
    let e = rt
        .block_on(ControlPlane::new(dead, &sdk).put_media_endpoint())
        .unwrap_err();
    assert!(e.to_string().starts_with("DescribeStream: "), "{e}");
    assert!(e.to_string().contains("onnect"), "{e}");
    assert!(began.elapsed() < Duration::from_secs(10), "{:?}", began.elapsed());
}

#[test]
fn the_agent_creates_its_stream_on_a_gateway_with_the_aws_sdk_and_uploads_where_get_data_endpoint_says() {
    let dir = tempfile::tempdir().unwrap();
    let (gport, sport) = (free_tcp_port(), free_tcp_port());
    let gstore = dir.path().join("gstore");
    let gconfig = gateway_config(dir.path(), gport, GatewayAuth::SigV4);
    let sconfig = write_config(
        &dir.path().join("sender.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 500\nfragment_seconds = 1\n\
             [streams.upload]\nkvs_stream = \"cam-aws\"\nregion = \"eu-west-1\"\nendpoint = \"http://127.0.0.1:{gport}\"\n\
             access_key_id = \"AKIDSENDER\"\nsecret_access_key = \"sender/secret\"\n\
             [streams.upload.create_stream]\nretention_hours = 12\nmedia_type = \"video/h264,audio/aac\"\n\
             device_name = \"edge-01\"\ntags = {{ site = \"depot-3\" }}\n",
            dir.path().join("sstore")
        ),
    );
    let gateway = start_agent(&gconfig, gport);
    let sender = start_agent(&sconfig, sport);
    let persisted = || {
        api_stream(sport, "cam")
            .and_then(|s| s["upload"]["persisted"].as_u64())
            .unwrap_or(0)
    };
    let began = Instant::now();
    wait_for("2 fragments persisted", Duration::from_secs(40), || persisted() >= 2);
    let first_two = began.elapsed();

    // The stream the SDK's CreateStream made on the gateway.
    let streams: serde_json::Value =
        serde_json::from_slice(&std::fs::read(gstore.join("kvs-streams.json")).unwrap()).unwrap();
    let made = &streams["cam-aws"];
    assert_eq!(made["retention_hours"], 12, "{streams}");
    assert_eq!(made["media_type"], "video/h264,audio/aac", "{streams}");
    assert_eq!(made["device_name"], "edge-01", "{streams}");
    assert_eq!(made["tags"], serde_json::json!({"site": "depot-3"}), "{streams}");
    assert!(api_stream(gport, "cam-aws").unwrap()["fragments"].as_u64().unwrap() >= 2);

    let (_, text) = http_get(sport, "/api/streams").unwrap();
    assert!(!text.contains("sender/secret"), "a secret in /api/streams: {text}");
    let up = api_stream(sport, "cam").unwrap()["uploader"].clone();
    assert_eq!(up["endpoint"], format!("http://127.0.0.1:{gport}"), "{up}");
    // The gateway answers GetDataEndpoint with the Host it was reached on.
    assert_eq!(up["data_endpoint"], format!("http://127.0.0.1:{gport}"), "{up}");
    assert_eq!(up["credentials"]["source"], "static", "{up}");
    assert_eq!(up["credentials"]["provider"], "EdgeAgentConfig", "{up}");
    assert_eq!(up["control_plane_calls"]["create_stream"], 1, "{up}");
    assert_eq!(up["control_plane_calls"]["get_data_endpoint"], 1, "{up}");
    assert_eq!(up["control_plane_calls"]["describe_stream"], 2, "{up}");

    // The gateway dies and comes back: the failed connections make the
    // uploader ask for the endpoint again, and the stream is not created
    // twice.
    signal(&gateway, "-KILL");
    drop(gateway);
    std::thread::sleep(Duration::from_secs(3));
    let before = persisted();
    let gateway = start_agent(&gconfig, gport);
    wait_for("uploads after the gateway's restart", Duration::from_secs(60), || {
        persisted() >= before + 2
    });
    let up = api_stream(sport, "cam").unwrap()["uploader"].clone();
    let asked = up["control_plane_calls"]["get_data_endpoint"].as_u64().unwrap();
    assert!(asked >= 2, "{up}");
    assert_eq!(up["control_plane_calls"]["create_stream"], 1, "{up}");
    assert_eq!(up["connected"], true, "{up}");
    signal(&sender, "-TERM");
    let mut sender = sender;
    assert!(sender.child.wait().unwrap().success());
    signal(&gateway, "-TERM");
    let mut gateway = gateway;
    assert!(gateway.child.wait().unwrap().success());
    println!(
        "aws-sdk → gateway: stream created and 2 fragments PERSISTED {:.1} s after start; \
         GetDataEndpoint asked {asked} times across a gateway restart",
        first_two.as_secs_f64()
    );
}

/// A stream with no retention at the service gets RECEIVED and never
/// PERSISTED (reference §1.2): the uploader takes RECEIVED as final, so
/// its fragments end uploaded instead of being sent again forever.
#[test]
fn a_stream_without_retention_is_uploaded_once_on_received() {
    let dir = tempfile::tempdir().unwrap();
    let (gport, sport) = (free_tcp_port(), free_tcp_port());
    let gconfig = gateway_config(dir.path(), gport, GatewayAuth::None);
    let sconfig = write_config(
        &dir.path().join("sender.toml"),
        format!(
            "[store]\npath = {:?}\nmin_free_mb = 0\n[http]\nlisten = \"127.0.0.1:{sport}\"\n\
             [[streams]]\nname = \"cam\"\nwidth = 320\nheight = 240\nbitrate_kbps = 300\nfragment_seconds = 1\n\
             [streams.upload]\nkvs_stream = \"cam-live\"\nendpoint = \"http://127.0.0.1:{gport}\"\nauth = \"none\"\n\
             rotate_seconds = 10\n",
            dir.path().join("sstore")
        ),
    );
    let gateway = start_agent(&gconfig, gport);
    // CreateStream without DataRetentionInHours: 0, the service's default.
    let (status, answer) = post_json(gport, "/createStream", r#"{"StreamName":"cam-live"}"#);
    assert_eq!(status, 200, "{answer}");
    let sender = start_agent(&sconfig, sport);
    // Past a rotation: what was RECEIVED on the first connection is not
    // sent again on the second.
    wait_for(
        "a rotated connection and 12 fragments uploaded",
        Duration::from_secs(60),
        || {
            api_stream(sport, "cam").is_some_and(|s| {
                s["uploader"]["connections"].as_u64().unwrap_or(0) >= 2
                    && s["upload"]["persisted"].as_u64().unwrap_or(0) >= 12
            })
        },
    );
    let s = api_stream(sport, "cam").unwrap();
    assert_eq!(s["uploader"]["acks"]["persisted"], 0, "{s}");
    assert!(s["upload"]["received"].as_u64().unwrap() <= 1, "{s}");
    signal(&sender, "-TERM");
    let mut sender = sender;
    assert!(sender.child.wait().unwrap().success());
    let uploaded = s["upload"]["persisted"].as_u64().unwrap();
    let g = api_stream(gport, "cam-live").unwrap();
    let i = &g["ingest"];
    // Each fragment RECEIVED once at the gateway: none sent twice.
    let received = i["acks"]["received"].as_u64().unwrap();
    assert!(
        (uploaded..=uploaded + 2).contains(&received),
        "{received} RECEIVED at the gateway for {uploaded} fragments uploaded: {g}"
    );
    assert_eq!(i["acks"]["persisted"], 0, "{g}");
    drop(gateway);
}
