//! The store seen through playback's `Archive` trait: the same fragments,
//! stream boundaries enforced, the live feed frame by frame.

use playback::archive::{Archive, ArchiveError, LiveItem};

use super::*;

fn shape(seed: u64) -> Shape {
    Shape {
        frames: 10,
        max_len: 500,
        tracks: 2,
        seed,
    }
}

#[test]
fn fragments_read_through_the_archive_match_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut a = store.open_stream("a", &tracks(2), false).unwrap();
    let mut b = store.open_stream("b", &tracks(1), false).unwrap();
    let mut written = Vec::new();
    for i in 0..3 {
        let f = frames(at(i), shape(i));
        written.push((write_all(&mut a, &events(i, &f)).unwrap().unwrap(), f));
    }
    let fb = frames(at(0), Shape { tracks: 1, ..shape(9) });
    let other = write_all(&mut b, &events(0, &fb)).unwrap().unwrap();

    let archive: &dyn Archive = &store;
    let names: Vec<String> = archive.streams().unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["a", "b"]);
    let s = archive.stream("a").unwrap();
    assert_eq!(s.tracks, tracks(2));
    assert_eq!(s.ranges.len(), 1);
    let all = archive.fragments("a", at(0), at(10)).unwrap();
    assert_eq!(
        all.iter().map(|f| f.id).collect::<Vec<_>>(),
        written.iter().map(|(m, _)| m.id.0).collect::<Vec<_>>()
    );
    let middle = archive.fragments("a", at(1), at(2)).unwrap();
    assert!(middle.iter().any(|f| f.id == written[1].0.id.0));
    assert!(middle.iter().all(|f| f.end > at(1) && f.start < at(2)));
    assert!(!middle.iter().any(|f| f.id == written[2].0.id.0));
    let got = archive.read_fragment("a", written[1].0.id.0).unwrap();
    assert_eq!(got.frames, written[1].1);
    assert_eq!(got.summary.start, written[1].0.start);
    // A fragment id of stream b is not reachable through stream a.
    assert!(matches!(
        archive.read_fragment("a", other.id.0),
        Err(ArchiveError::UnknownFragment { .. })
    ));
    assert!(matches!(
        archive.read_fragment("a", 999_999),
        Err(ArchiveError::UnknownFragment { .. })
    ));
    assert!(matches!(
        archive.fragments("nope", at(0), at(1)),
        Err(ArchiveError::UnknownStream(_))
    ));
    assert!(matches!(archive.stream("../etc"), Err(ArchiveError::UnknownStream(_))));
}

#[test]
fn the_live_feed_starts_at_the_open_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let f0 = frames(at(0), shape(0));
    write_all(&mut w, &events(0, &f0)).unwrap();
    let f1 = frames(at(1), shape(1));
    let ev = events(1, &f1);
    // Start and two frames of fragment 1 are written before the feed opens.
    for e in &ev[..3] {
        w.write(e).unwrap();
    }
    let mut feed = Archive::follow(&store, "cam").unwrap();
    let mut got = Vec::new();
    let mut rest = ev[3..].iter();
    loop {
        match feed.next(Duration::from_millis(50)).unwrap() {
            Some(LiveItem::End(s)) => {
                got.push(format!("end {}", s.frames));
                break;
            }
            Some(LiveItem::Start { start, .. }) => got.push(format!("start {}", start == at(1))),
            Some(LiveItem::Frame(_)) => got.push("frame".into()),
            Some(LiveItem::Aborted(_)) => panic!("aborted"),
            None => {
                w.write(rest.next().expect("the feed waits only when nothing is left"))
                    .unwrap();
            }
        }
    }
    let mut want = vec!["start true".to_owned()];
    want.extend(std::iter::repeat_n("frame".to_owned(), f1.len()));
    want.push(format!("end {}", f1.len()));
    assert_eq!(got, want);
}
