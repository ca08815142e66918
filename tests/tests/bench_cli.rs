//! `edge-agent bench` with tiny sizes, so its code cannot rot: each mode
//! runs to the end and its JSON line says that everything it sent arrived
//! (uploaded, RECEIVED, PERSISTED). Speeds are not judged here: the debug
//! build on a shared machine says nothing about them.

use std::process::Command;

use edge_agent_tests::{edge_agent, have};
use serde_json::Value;

/// Run `edge-agent -q bench ARGS --json`; its last line, parsed.
fn bench(args: &[&str]) -> Value {
    let out = Command::new(edge_agent())
        .args(["-q", "bench"])
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "warn")
        .output()
        .expect("run edge-agent bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench {args:?} failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("bench {args:?}: the last line is not JSON ({e}):\n{stdout}"))
}

#[test]
fn bench_upload_sends_every_stored_fragment_and_curl_the_same_bytes() {
    let curl = have("curl");
    let mut args = vec!["upload", "--minutes", "1"];
    if !curl {
        eprintln!("curl is not installed: the reference is left out");
        args.push("--no-reference");
    }
    let j = bench(&args);
    assert_eq!(j["fragments"], 30, "{j}");
    let up = &j["uploader"];
    // 30 measured and the one after them that closes the last.
    assert_eq!(up["received"], 31, "{j}");
    assert_eq!(up["backlog_after"], 0, "{j}");
    assert_eq!(up["errors"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(up["mb_per_s"].as_f64().unwrap() > 0.0, "{j}");
    let rss = up["rss_at_10_50_90"].as_array().unwrap();
    assert!(rss.iter().all(|r| r.as_u64().unwrap() > 0), "{j}");
    if curl {
        assert_eq!(j["curl"]["received"], 30, "{j}");
        assert_eq!(j["curl"]["bytes"], up["bytes"], "the same body: {j}");
        assert!(j["ratio"].as_f64().unwrap() > 0.0, "{j}");
    }
}

#[test]
fn bench_ingest_gets_every_fragment_persisted_by_the_gateway() {
    if !have("taskset") {
        eprintln!("SKIPPED: taskset (util-linux) is not installed");
        return;
    }
    let j = bench(&["ingest", "--streams", "2", "--seconds", "5"]);
    let step = &j["steps"][0];
    assert_eq!(step["streams"], 2, "{j}");
    assert_eq!(step["sent"], 4, "2 streams of 2 fragments: {j}");
    assert_eq!(step["persisted"], 4, "{j}");
    assert_eq!(step["errors"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(step["p99_ms"].as_f64().unwrap() > 0.0, "{j}");
    assert!(step["cpu"].as_f64().unwrap() > 0.0, "{j}");
}

#[test]
fn bench_latency_times_every_frame_appended() {
    let j = bench(&["latency", "--seconds", "3"]);
    // 2 fragments of 60 video and 94 audio frames.
    assert_eq!(j["appended"], 308, "{j}");
    assert_eq!(j["arrived"], 308, "{j}");
    assert_eq!(j["received"], 2, "{j}");
    assert_eq!(j["backlog_after"], 0, "{j}");
    assert_eq!(j["errors"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(j["p99_ms"].as_f64().unwrap() > 0.0, "{j}");
}
