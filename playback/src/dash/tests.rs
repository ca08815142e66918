//! DASH over a `MemoryArchive` holding real x264/AAC media.

use crate::test_media::*;

/// Checks that every element opened is closed in order (our MPDs have no
/// comments, CDATA or processing instructions past the declaration).
fn assert_well_formed(xml: &str) {
    let mut stack: Vec<String> = Vec::new();
    let body = xml
        .strip_prefix("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n")
        .expect("XML declaration");
    for tag in body.split('<').skip(1) {
        let tag = tag.split('>').next().unwrap();
        assert_eq!(tag.matches('"').count() % 2, 0, "unbalanced quotes in <{tag}>");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(stack.pop().as_deref(), Some(name), "</{name}> closes the wrong element");
        } else if !tag.ends_with('/') {
            stack.push(tag.split_whitespace().next().unwrap().to_owned());
        }
    }
    assert!(stack.is_empty(), "unclosed: {stack:?}");
}

fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    tag.split(&format!(" {name}=\"")).nth(1)?.split('"').next()
}

/// Every init and media URI of `mpd` (for each representation).
fn uris(mpd: &str) -> Vec<String> {
    let mut out = Vec::new();
    for set in mpd.split("<AdaptationSet").skip(1) {
        let template = set.split("<SegmentTemplate").nth(1).unwrap();
        let rep = attr(set.split("<Representation").nth(1).unwrap(), "id").unwrap();
        let init = attr(template, "initialization")
            .unwrap()
            .replace("$RepresentationID$", rep);
        out.push(init);
        let media = attr(template, "media").unwrap();
        for s in set.split("<S ").skip(1) {
            let t = attr(&format!(" {s}"), "t").unwrap().to_owned();
            out.push(media.replace("$RepresentationID$", rep).replace("$Time$", &t));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mpd_is_dynamic_and_every_uri_resolves() {
    let (archive, pb) = archive_with(&[0.0, 2.0], options());
    archive.begin_fragment("cam", at_secs(4.0));
    let got = get(&pb, "/dash/cam/live.mpd").await;
    assert_eq!(got.status(), 200, "{}", got.text());
    assert_eq!(got.header("content-type"), Some("application/dash+xml"));
    assert_eq!(got.header("cache-control"), Some("no-cache"));
    let mpd = got.text();
    assert_well_formed(&mpd);
    for needed in [
        "type=\"dynamic\"",
        "availabilityStartTime=\"1970-01-01T00:00:00Z\"",
        "publishTime=\"",
        "minimumUpdatePeriod=\"PT",
        "timeShiftBufferDepth=\"PT",
        "suggestedPresentationDelay=\"PT",
        "<UTCTiming",
    ] {
        assert!(mpd.contains(needed), "{needed} missing: {mpd}");
    }
    let uris = uris(&mpd);
    let sets = recording().tracks.len();
    assert_eq!(uris.len(), sets * 3, "{mpd}");
    for uri in &uris {
        let got = get(&pb, &format!("/dash/cam/{uri}")).await;
        assert_eq!(got.status(), 200, "{uri}: {}", got.text());
        assert!(got.body.len() > 100);
    }
    // The timeline's first segment starts at the first fragment.
    assert!(mpd.contains(&format!("<S t=\"{}\"", at_secs(0.0).as_millis())), "{mpd}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vod_mpd_is_static_with_one_period_per_recorded_run() {
    let (_archive, pb) = archive_with(&[0.0, 2.0, 60.0], options());
    let mpd = get(&pb, "/dash/cam/vod.mpd").await.text();
    assert_well_formed(&mpd);
    assert!(mpd.contains("type=\"static\""), "{mpd}");
    let duration = attr(&mpd, "mediaPresentationDuration").unwrap();
    let secs: f64 = duration.trim_start_matches("PT").trim_end_matches('S').parse().unwrap();
    assert!(
        (5.5..6.5).contains(&secs),
        "{duration}: the gap is not part of the presentation"
    );
    assert_eq!(mpd.matches("<Period ").count(), 2);
    for uri in uris(&mpd) {
        assert_eq!(get(&pb, &format!("/dash/cam/{uri}")).await.status(), 200, "{uri}");
    }
    assert_eq!(get(&pb, "/dash/cam/seg-t1-5.m4s").await.status(), 404);
    assert_eq!(get(&pb, "/dash/cam/vod.mpd?end=nope").await.status(), 400);
}
