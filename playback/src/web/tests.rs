use std::process::Command;

use http_body_util::BodyExt;

use super::*;

#[test]
fn every_asset_is_served_with_its_content_type() {
    for (path, kind) in [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
        ("/ui/hls.min.js", "text/javascript"),
    ] {
        let (content_type, bytes) = asset(path).unwrap_or_else(|| panic!("{path} is not served"));
        assert!(content_type.starts_with(kind), "{path}: {content_type}");
        assert!(!bytes.is_empty(), "{path} is empty");
    }
    assert!(asset("/ui/nope.js").is_none());
    assert!(asset("/ui/../build.rs").is_none());
}

#[test]
fn the_page_loads_the_scripts_and_style_it_is_served_with() {
    let html = std::str::from_utf8(asset("/").unwrap().1).unwrap();
    for path in ["/ui/hls.min.js", "/ui/app.js", "/ui/app.css"] {
        assert!(
            html.contains(&format!("\"{path}\"")),
            "index.html does not reference {path}"
        );
        assert!(asset(path).is_some());
    }
    assert!(html.contains("type=\"module\" src=\"/ui/app.js\""));
}

#[test]
fn hls_js_is_the_minified_npm_build() {
    let js = std::str::from_utf8(asset("/ui/hls.min.js").unwrap().1).unwrap();
    assert!(js.len() > 100_000, "hls.min.js is only {} bytes", js.len());
    assert!(js.contains("Hls"), "hls.min.js does not define Hls");
}

#[test]
fn the_app_script_speaks_the_agents_routes() {
    let js = std::str::from_utf8(asset("/ui/app.js").unwrap().1).unwrap();
    for route in [
        "/api/streams",
        "/hls/",
        "live.m3u8",
        "vod.m3u8",
        "/clip/",
        "lowLatencyMode",
        "playingDate",
    ] {
        assert!(js.contains(route), "app.js does not use {route}");
    }
}

#[test]
fn the_app_script_parses() {
    if Command::new("node").arg("--version").output().is_err() {
        eprintln!("skipped: node is not installed");
        return;
    }
    // The running checkout's, not the one that built a cached binary.
    let path = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()),
    )
    .join("web/app.js");
    // A module script: check it as one, whatever node's default.
    let out = Command::new("node")
        .args(["--input-type=module", "--check"])
        .stdin(std::fs::File::open(path).unwrap())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node --check app.js: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_page_is_revalidated_and_head_has_no_body() {
    let r = respond("/", false).unwrap();
    assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
    let len: usize = r.headers()[CONTENT_LENGTH].to_str().unwrap().parse().unwrap();
    assert_eq!(r.into_body().collect().await.unwrap().to_bytes().len(), len);
    let r = respond("/ui/app.js", true).unwrap();
    assert!(r.headers()[CACHE_CONTROL].to_str().unwrap().contains("max-age"));
    assert!(r.into_body().collect().await.unwrap().to_bytes().is_empty());
    assert!(respond("/nope", false).is_none());
}
