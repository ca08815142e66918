//! HLS over a `MemoryArchive` holding real x264/AAC media.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::test_media::*;

/// `(name, attributes)` of every tag line, in order.
fn tags(m3u8: &str) -> Vec<(&str, &str)> {
    m3u8.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| l.split_once(':').unwrap_or((l, "")))
        .collect()
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    // Good enough for our own output: no commas inside quoted values.
    attrs.split(',').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.trim_matches('"'))
    })
}

fn secs(v: &str) -> f64 {
    v.parse().unwrap()
}

/// Start recording fragment 3 of `cam` and push its first `frames` frames.
fn open_fragment(archive: &crate::archive::memory::MemoryArchive, start: f64, frames: usize) -> Vec<fragmenter::Frame> {
    let gop = recording().gop_at(0, at_secs(start), false);
    archive.begin_fragment("cam", gop[0].pts);
    for f in &gop[..frames] {
        archive.push_frame("cam", f.clone());
    }
    gop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_playlist_follows_ll_hls_rules() {
    let (archive, pb) = archive_with(&[0.0, 2.0], options());
    open_fragment(&archive, 4.0, 40);
    let got = get(&pb, "/hls/cam/live.m3u8").await;
    assert_eq!(got.status(), 200, "{}", got.text());
    assert_eq!(got.header("content-type"), Some("application/vnd.apple.mpegurl"));
    assert_eq!(got.header("cache-control"), Some("no-cache"));
    let m = got.text();
    let t = tags(&m);
    assert_eq!(t[0].0, "#EXTM3U");
    let get_tag = |name: &str| t.iter().find(|(n, _)| *n == name).map(|(_, a)| *a);
    assert!(get_tag("#EXT-X-VERSION").unwrap().parse::<u32>().unwrap() >= 9);
    let target: f64 = secs(get_tag("#EXT-X-TARGETDURATION").unwrap());
    let part_target = secs(attr(get_tag("#EXT-X-PART-INF").unwrap(), "PART-TARGET").unwrap());
    assert!((0.2..=0.5).contains(&part_target), "{part_target}");
    let control = get_tag("#EXT-X-SERVER-CONTROL").unwrap();
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    assert!(secs(attr(control, "PART-HOLD-BACK").unwrap()) >= 3.0 * part_target - 1e-9);
    assert_eq!(
        get_tag("#EXT-X-MAP").map(|a| attr(a, "URI").unwrap().starts_with("init-")),
        Some(true)
    );
    assert_eq!(get_tag("#EXT-X-MEDIA-SEQUENCE"), Some("0"));

    // Two complete segments, each with a program date time and EXTINF.
    let extinf: Vec<f64> = t
        .iter()
        .filter(|(n, _)| *n == "#EXTINF")
        .map(|(_, a)| secs(a.trim_end_matches(',')))
        .collect();
    assert_eq!(extinf.len(), 2, "{m}");
    for d in &extinf {
        assert!(d.round() <= target && (1.9..2.1).contains(d), "{d}: {m}");
    }
    // Every segment (the open one too) has its own date time, from the frames.
    let pdt: Vec<&str> = t
        .iter()
        .filter(|(n, _)| *n == "#EXT-X-PROGRAM-DATE-TIME")
        .map(|(_, a)| *a)
        .collect();
    assert_eq!(
        pdt,
        [
            "2026-11-26T00:00:00.000Z",
            "2026-11-26T00:00:02.000Z",
            "2026-11-26T00:00:04.000Z"
        ]
    );
    // Parts: at most the target, independent ones start with a key frame.
    let parts: Vec<(f64, &str, bool)> = t
        .iter()
        .filter(|(n, _)| *n == "#EXT-X-PART")
        .map(|(_, a)| {
            (
                secs(attr(a, "DURATION").unwrap()),
                attr(a, "URI").unwrap(),
                attr(a, "INDEPENDENT") == Some("YES"),
            )
        })
        .collect();
    assert!(parts.len() >= 6 + 3, "{m}");
    for (d, _, _) in &parts {
        assert!(*d <= part_target + 1e-9 && *d > 0.0, "{d} > {part_target}");
    }
    assert!(parts.iter().any(|p| p.2) && parts.iter().any(|p| !p.2));
    let hint = attr(get_tag("#EXT-X-PRELOAD-HINT").unwrap(), "URI").unwrap();
    let open_parts = parts.iter().filter(|p| p.1.starts_with("part/3.")).count();
    assert_eq!(hint, format!("part/3.{open_parts}.m4s"));
    // The complete segments' parts add up to the segment.
    let seg1_parts: f64 = parts.iter().filter(|p| p.1.starts_with("part/1.")).map(|p| p.0).sum();
    assert!((seg1_parts - extinf[0]).abs() < 0.001, "{seg1_parts} vs {}", extinf[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_reload_answers_when_the_part_arrives_and_503_after_three_targets() {
    let (archive, pb) = archive_with(&[0.0, 2.0], options());
    let gop = open_fragment(&archive, 4.0, 10);
    let m = get(&pb, "/hls/cam/live.m3u8").await.text();
    let hint = m.lines().find(|l| l.starts_with("#EXT-X-PRELOAD-HINT")).unwrap();
    let next_part: usize = hint.rsplit('.').nth(1).unwrap().parse().unwrap();
    // Segment 3 is MSN 2.
    let uri = format!("/hls/cam/live.m3u8?_HLS_msn=2&_HLS_part={next_part}");
    let pusher = {
        let archive = archive.clone();
        let gop = gop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(500));
            for f in &gop[10..30] {
                archive.push_frame("cam", f.clone());
            }
        })
    };
    let began = Instant::now();
    let got = get(&pb, &uri).await;
    pusher.join().unwrap();
    assert_eq!(got.status(), 200, "{}", got.text());
    assert!(
        began.elapsed() >= Duration::from_millis(450),
        "answered before the part existed"
    );
    assert!(got.text().contains(&format!("URI=\"part/3.{next_part}.m4s\"")));

    // A hinted part is held the same way and then served.
    let part = get(&pb, &format!("/hls/cam/part/3.{next_part}.m4s")).await;
    assert_eq!(part.status(), 200);
    assert_eq!(
        part.header("cache-control"),
        Some("public, max-age=31536000, immutable")
    );

    // Nothing more comes: 503 after three target durations (3 × 2 s).
    let began = Instant::now();
    let got = get(&pb, "/hls/cam/live.m3u8?_HLS_msn=3").await;
    assert_eq!(got.status(), 503, "{}", got.text());
    assert!(got.text().contains("\"error\""));
    let waited = began.elapsed();
    assert!(
        (Duration::from_secs(5)..Duration::from_secs(9)).contains(&waited),
        "{waited:?}"
    );

    for bad in ["_HLS_msn=x", "_HLS_part=1", "_HLS_msn=1&_HLS_part=-1", "_HLS_msn=99"] {
        let got = get(&pb, &format!("/hls/cam/live.m3u8?{bad}")).await;
        assert_eq!(got.status(), 400, "{bad}: {}", got.text());
        assert!(got.text().contains("_HLS_"), "{}", got.text());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_parts_and_segments_are_the_archive_segments_byte_for_byte() {
    let (archive, pb) = archive_with(&[0.0], options());
    let gop = open_fragment(&archive, 2.0, 5);
    let m = get(&pb, "/hls/cam/live.m3u8").await.text();
    assert!(m.contains("part/2.0.m4s"), "{m}");
    for f in &gop[5..] {
        archive.push_frame("cam", f.clone());
    }
    archive.end_fragment("cam");
    let m = get(&pb, "/hls/cam/live.m3u8?_HLS_msn=1").await.text();
    assert!(m.contains("seg/2.m4s"), "{m}");
    let parts: Vec<&str> = m
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|a| attr(a, "URI"))
        .filter(|u| u.starts_with("part/2."))
        .collect();
    let live_seg = get(&pb, "/hls/cam/seg/2.m4s").await;
    assert_eq!(live_seg.header("content-type"), Some("video/iso.segment"));
    let mut joined = live_seg.body[..].to_vec();
    // styp, then the parts in order.
    let styp_len = u32::from_be_bytes(joined[..4].try_into().unwrap()) as usize;
    assert_eq!(&joined[4..8], b"styp");
    let mut from_parts = joined[..styp_len].to_vec();
    for p in &parts {
        from_parts.extend_from_slice(&get(&pb, &format!("/hls/cam/{p}")).await.body);
    }
    assert_eq!(from_parts, joined);

    // A Playback with no packager rebuilds the same bytes from the archive.
    let cold = crate::http::Playback::new(std::sync::Arc::new(archive.clone()), options());
    assert_eq!(get(&cold, "/hls/cam/seg/2.m4s").await.body, live_seg.body);
    assert_eq!(
        get(&cold, &format!("/hls/cam/{}", parts[1])).await.body,
        get(&pb, &format!("/hls/cam/{}", parts[1])).await.body
    );
    let init_uri = m
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI="))
        .unwrap()
        .trim_matches('"');
    let init = get(&pb, &format!("/hls/cam/{init_uri}")).await;
    assert_eq!(init.header("content-type"), Some("video/mp4"));
    assert_eq!(get(&cold, &format!("/hls/cam/{init_uri}")).await.body, init.body);
    joined.clear();

    // The init segment parses and has the tracks.
    let bytes = init.body.to_vec();
    let size = bytes.len() as u64;
    let reader = mp4::Mp4Reader::read_header(std::io::Cursor::new(bytes), size).unwrap();
    assert_eq!(reader.tracks().len(), recording().tracks.len());
    assert!(reader
        .tracks()
        .values()
        .any(|t| t.media_type().ok() == Some(mp4::MediaType::H264)));
}

/// The last line of a playlist that is not blank.
fn last_line(m: &str) -> &str {
    m.lines().rfind(|l| !l.trim().is_empty()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_completes_in_the_same_playlist_that_opens_the_next() {
    let (archive, pb) = archive_with(&[0.0, 2.0], options());
    let gop = open_fragment(&archive, 4.0, 40);
    let m = get(&pb, "/hls/cam/live.m3u8").await.text();
    assert!(m.contains("part/3.0.m4s"), "{m}");
    // Segment 3 (MSN 2) ends and, 10 ms later, the recorder starts the
    // next fragment (it takes milliseconds; the packager holds an end for
    // 200 ms, which a longer pause here would eat on a loaded machine):
    // the playlist that first shows segment 3 complete must already hint
    // the next one's first part (hls.js loses its timeline on a playlist
    // ending in a bare EXTINF whose reload also slides).
    let next = recording().gop_at(1, at_secs(6.0), false);
    let (got, id) = tokio::join!(get(&pb, "/hls/cam/live.m3u8?_HLS_msn=2"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        for f in &gop[40..] {
            archive.push_frame("cam", f.clone());
        }
        archive.end_fragment("cam");
        tokio::time::sleep(Duration::from_millis(10)).await;
        archive.begin_fragment("cam", next[0].pts)
    });
    let m = got.text();
    assert!(m.contains("#EXTINF:") && m.contains("seg/3.m4s"), "{m}");
    assert_eq!(
        last_line(&m),
        format!("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part/{id}.0.m4s\""),
        "{m}"
    );

    // A source that stops: its last segment is published alone, soon.
    for f in &next {
        archive.push_frame("cam", f.clone());
    }
    let began = Instant::now();
    let (got, _) = tokio::join!(get(&pb, "/hls/cam/live.m3u8?_HLS_msn=3"), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        archive.end_fragment("cam")
    });
    let m = got.text();
    assert_eq!(last_line(&m), format!("seg/{id}.m4s"), "{m}");
    assert!(began.elapsed() < Duration::from_secs(1), "{:?}", began.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_fragment_disappears_and_its_sequence_number_is_reused() {
    let (archive, pb) = archive_with(&[0.0], options());
    open_fragment(&archive, 2.0, 20);
    let m = get(&pb, "/hls/cam/live.m3u8").await.text();
    assert!(m.contains("part/2.0.m4s"));
    archive.abort_fragment("cam");
    let gop = recording().gop_at(1, at_secs(2.5), false);
    let id = archive.begin_fragment("cam", gop[0].pts);
    for f in &gop[..40] {
        archive.push_frame("cam", f.clone());
    }
    let m = get(&pb, "/hls/cam/live.m3u8?_HLS_msn=1&_HLS_part=0").await.text();
    assert!(!m.contains("part/2."), "{m}");
    assert!(m.contains(&format!("part/{id}.0.m4s")), "{m}");
    assert!(m.contains("#EXT-X-DISCONTINUITY\n"), "{m}");
    assert_eq!(get(&pb, "/hls/cam/part/2.0.m4s").await.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_tracks_get_a_new_init_segment_after_a_discontinuity() {
    let rec = recording();
    let (archive, pb) = archive_with(&[0.0], options());
    assert!(get(&pb, "/hls/cam/live.m3u8").await.text().contains("init-1.mp4"));
    archive.add_stream("cam", &rec.video_tracks());
    let id = archive.add_fragment("cam", rec.gop_at(1, at_secs(2.0), true)).id;
    let m = get(&pb, "/hls/cam/live.m3u8?_HLS_msn=1").await.text();
    let maps: Vec<&str> = m.lines().filter(|l| l.starts_with("#EXT-X-MAP")).collect();
    assert_eq!(
        maps,
        [
            "#EXT-X-MAP:URI=\"init-1.mp4\"".to_owned(),
            format!("#EXT-X-MAP:URI=\"init-{id}.mp4\"")
        ]
    );
    assert_eq!(m.matches("#EXT-X-DISCONTINUITY\n").count(), 1, "{m}");
    let a = get(&pb, "/hls/cam/init-1.mp4").await.body;
    let b = get(&pb, &format!("/hls/cam/init-{id}.mp4")).await.body;
    assert_ne!(a, b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_lists_the_span_and_marks_gaps() {
    // 0–2, 2–4, then a gap, 60–62.
    let (_archive, pb) = archive_with(&[0.0, 2.0, 60.0], options());
    let got = get(&pb, "/hls/cam/vod.m3u8").await;
    assert_eq!(got.status(), 200, "{}", got.text());
    let m = got.text();
    assert!(
        m.contains("#EXT-X-PLAYLIST-TYPE:VOD\n") && m.ends_with("#EXT-X-ENDLIST\n"),
        "{m}"
    );
    assert_eq!(m.matches("#EXTINF:").count(), 3);
    assert_eq!(m.matches("#EXT-X-PROGRAM-DATE-TIME:").count(), 3);
    assert_eq!(m.matches("#EXT-X-DISCONTINUITY\n").count(), 1);
    let after_gap = m.split("#EXT-X-DISCONTINUITY\n").nth(1).unwrap();
    assert!(
        after_gap.contains("#EXT-X-PROGRAM-DATE-TIME:2026-11-26T00:01:00.000Z"),
        "{m}"
    );

    // A span: RFC 3339 and epoch milliseconds.
    let start_ms = at_secs(1.0).as_millis();
    let m = get(
        &pb,
        &format!("/hls/cam/vod.m3u8?start={start_ms}&end=2026-11-26T00:00:03Z"),
    )
    .await
    .text();
    assert_eq!(m.matches("#EXTINF:").count(), 2, "{m}");
    assert!(!m.contains("DISCONTINUITY"));

    let got = get(&pb, "/hls/cam/vod.m3u8?start=2026-11-27T00:00:00Z").await;
    assert_eq!(got.status(), 404);
    assert_eq!(got.header("content-type"), Some("application/json"));
    let got = get(&pb, "/hls/cam/vod.m3u8?start=yesterday").await;
    assert_eq!(got.status(), 400);
    assert!(got.text().contains("start"), "{}", got.text());
    let got = get(&pb, "/hls/cam/vod.m3u8?start=2000&end=1000").await;
    assert_eq!(got.status(), 400);
    assert!(got.text().contains("end"), "{}", got.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multivariant_playlist_names_codecs_and_resolution() {
    let (_archive, pb) = archive_with(&[0.0], options());
    let m = get(&pb, "/hls/cam/index.m3u8").await.text();
    let inf = m.lines().find(|l| l.starts_with("#EXT-X-STREAM-INF:")).unwrap();
    assert!(inf.contains("RESOLUTION=320x240"), "{inf}");
    assert!(inf.contains("CODECS=\"avc1.4d"), "{inf}");
    if recording().tracks.len() > 1 {
        assert!(inf.contains(",mp4a.40.2\""), "{inf}");
    }
    let bw: u64 = inf
        .split("BANDWIDTH=")
        .nth(1)
        .unwrap()
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bw > 10_000, "{bw}");
    assert!(m.ends_with("live.m3u8\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwatched_packager_stops() {
    let mut opts = options();
    opts.live_idle = Duration::from_millis(300);
    let (_archive, pb) = archive_with(&[0.0], opts);
    assert_eq!(get(&pb, "/hls/cam/live.m3u8").await.status(), 200);
    assert_eq!(pb.live_streams(), ["cam"]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(pb.live_streams().is_empty());
    // The next request starts it again.
    assert_eq!(get(&pb, "/hls/cam/live.m3u8").await.status(), 200);
}

/// ffprobe reads init + every segment of a VOD playlist as one file with
/// every frame, and complains about nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffprobe_reads_init_and_segments_concatenated() {
    let (_archive, pb) = archive_with(&[0.0, 2.0], options());
    let m = get(&pb, "/hls/cam/vod.m3u8").await.text();
    let mut file = Vec::new();
    let init = m
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MAP:URI="))
        .unwrap()
        .trim_matches('"');
    file.extend_from_slice(&get(&pb, &format!("/hls/cam/{init}")).await.body);
    for seg in m.lines().filter(|l| l.starts_with("seg/")) {
        file.extend_from_slice(&get(&pb, &format!("/hls/cam/{seg}")).await.body);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vod.mp4");
    std::fs::write(&path, &file).unwrap();
    let Some(packets) = ffprobe_packets(&path) else {
        return;
    };
    let rec = recording();
    let video = rec.gops[0]
        .iter()
        .chain(&rec.gops[1])
        .filter(|f| f.track.get() == 1)
        .count();
    assert_eq!(packets.iter().filter(|s| s.as_str() == "video").count(), video);
    if rec.tracks.len() > 1 {
        assert!(packets.iter().any(|s| s == "audio"));
    }
}

/// The codec type of every packet, or `None` (printed) without ffprobe.
fn ffprobe_packets(path: &Path) -> Option<Vec<String>> {
    let out = match Command::new("ffprobe")
        .args(["-v", "error", "-show_entries", "packet=codec_type", "-of", "csv=p=0"])
        .arg(path)
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: ffprobe does not run: {e}");
            return None;
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.trim().is_empty(), "ffprobe: {stderr}");
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_owned())
            .collect(),
    )
}
