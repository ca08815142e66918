//! The rules every playback response follows.

use std::io::Read;

use crate::test_media::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paths_outside_playback_are_left_to_the_agent() {
    let (_archive, pb) = archive_with(&[0.0], options());
    for path in [
        "/api/streams",
        "/metrics",
        "/healthz",
        "/hlsx/cam/live.m3u8",
        "/ui/nope.js",
    ] {
        assert!(pb.handle(&request("GET", path, &[])).await.is_none(), "{path}");
    }
    // The web UI and clips are playback's.
    for path in ["/", "/ui/app.js", "/clip/cam.mp4"] {
        assert!(pb.handle(&request("GET", path, &[])).await.is_some(), "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_names_and_unknown_streams_get_json_errors() {
    let (_archive, pb) = archive_with(&[0.0], options());
    for (uri, status) in [
        ("/hls/.hidden/live.m3u8", 400),
        ("/hls/a%2Fb/live.m3u8", 400),
        ("/hls/nope/live.m3u8", 404),
        ("/hls/nope/vod.m3u8", 404),
        ("/dash/nope/live.mpd", 404),
        ("/hls/cam/what.txt", 404),
        ("/hls/cam/seg/999.m4s", 404),
        ("/hls/cam/seg/x.m4s", 404),
        ("/dash/cam/init-1-t9.mp4", 404),
        ("/hls", 404),
    ] {
        let got = get(&pb, uri).await;
        assert_eq!(got.status(), status, "{uri}: {}", got.text());
        assert_eq!(got.header("content-type"), Some("application/json"), "{uri}");
        assert!(got.text().starts_with("{\"error\":"), "{uri}");
        assert_eq!(got.header("access-control-allow-origin"), Some("*"));
    }
    let got = send(&pb, request("POST", "/hls/cam/live.m3u8", &[])).await;
    assert_eq!(got.status(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_head_gzip_and_caching() {
    let (_archive, pb) = archive_with(&[0.0, 2.0], options());
    let pre = send(&pb, request("OPTIONS", "/hls/cam/live.m3u8", &[("origin", "http://x")])).await;
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    assert!(pre.header("access-control-allow-methods").unwrap().contains("GET"));

    let plain = get(&pb, "/hls/cam/vod.m3u8").await;
    let zipped = send(
        &pb,
        request("GET", "/hls/cam/vod.m3u8", &[("accept-encoding", "gzip, br")]),
    )
    .await;
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    let mut text = String::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_string(&mut text)
        .unwrap();
    assert_eq!(text, plain.text());
    assert_eq!(plain.header("content-encoding"), None);

    let head = send(&pb, request("HEAD", "/hls/cam/seg/1.m4s", &[])).await;
    let full = get(&pb, "/hls/cam/seg/1.m4s").await;
    assert_eq!(head.status(), 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    assert_eq!(
        full.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );
    assert_eq!(full.header("access-control-allow-origin"), Some("*"));
    // Segments are not compressed: they are compressed video already.
    let seg = send(
        &pb,
        request("GET", "/hls/cam/seg/1.m4s", &[("accept-encoding", "gzip")]),
    )
    .await;
    assert_eq!(seg.header("content-encoding"), None);
}

/// The handler future can run on a multi-threaded server.
#[test]
fn handle_is_send() {
    fn send<T: Send>(_: T) {}
    let pb = crate::http::Playback::new(
        std::sync::Arc::new(crate::archive::memory::MemoryArchive::new()),
        crate::http::PlaybackOptions::default(),
    );
    let req = request("GET", "/hls/cam/live.m3u8", &[]);
    send(pb.handle(&req));
}
