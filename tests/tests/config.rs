//! `edge-agent check-config`: a valid file passes, an invalid one names every
//! bad field with its value and what is allowed, with a non-zero exit.

use edge_agent_tests::{manifest_dir, run_agent};

#[test]
fn example_config_passes_and_bad_fields_are_all_named() {
    let example = manifest_dir().join("../agent.example.toml");
    let o = run_agent(&["check-config", "-c", example.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("ok (1 stream(s)"));

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[store]\non_full = \"KEEP\"\n[http]\nlisten = \"8080\"\n[[streams]]\nname = \"cam\"\nfps = 0\n\
         [[sensors]]\nname = \"cam\"\nsource = \"ouster:udp://0.0.0.0:7502\"\n",
    )
    .unwrap();
    let o = run_agent(&["check-config", "-c", bad.to_str().unwrap()]);
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    for want in [
        "store.on_full = \"KEEP\"",
        "http.listen = \"8080\"",
        "streams[0].fps = 0: expected 1 to 120",
        "sensors[0].name = \"cam\"",
        "sensors[0].source",
        "metadata",
    ] {
        assert!(e.contains(want), "missing {want:?} in: {e}");
    }
    let o = run_agent(&["check-config", "-c", "/no/such/agent.toml"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/no/such/agent.toml"));
}
