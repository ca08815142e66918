//! What goes in comes out: frames byte for byte, timestamps to the
//! nanosecond, tracks with their codec private data.

use proptest::prelude::*;

use super::*;

fn shape() -> impl Strategy<Value = Shape> {
    (
        1usize..80,
        prop_oneof![Just(1usize), 1usize..300, 1000usize..40_000],
        1u8..=3,
        any::<u64>(),
    )
        .prop_map(|(frames, max_len, tracks, seed)| Shape {
            frames,
            max_len,
            tracks,
            seed,
        })
}

fn check_same(got: &StoredFragment, want: &[Frame], tracks: &[Track]) {
    assert_eq!(got.frames.len(), want.len());
    for (g, w) in got.frames.iter().zip(want) {
        assert_eq!(g, w);
        assert_eq!(g.data, w.data);
    }
    assert_eq!(&*got.tracks, tracks);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn appended_fragments_read_back_identical(
        shapes in proptest::collection::vec(shape(), 1..6),
        ntracks in 1u8..=3,
        segment_kb in prop_oneof![Just(16u64), Just(4096)],
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cfg = StoreConfig { segment_max_bytes: segment_kb * 1024, ..config(dir.path()) };
        let tr = tracks(ntracks);
        let mut written = Vec::new();
        {
            let store = Store::open(cfg.clone(), test_clock()).unwrap();
            let mut w = store.open_stream("cam-1", &tr, true).unwrap();
            for (i, s) in shapes.iter().enumerate() {
                let s = Shape { tracks: ntracks, ..*s };
                let f = frames(at(i as u64), s);
                let meta = write_all(&mut w, &events(i as u64, &f)).unwrap().unwrap();
                prop_assert_eq!(meta.frames as usize, f.len());
                prop_assert_eq!(meta.start, f[0].pts);
                written.push((meta, f));
            }
            // Readable while the writer is still open…
            for (meta, f) in &written {
                check_same(&store.read_fragment(meta.id).unwrap(), f, &tr);
            }
            w.close().unwrap();
        }
        // …and after a reopen, through reads and a cursor.
        let store = Store::open(cfg, test_clock()).unwrap();
        prop_assert!(store.recovery_report().is_clean(), "{:?}", store.recovery_report());
        for (meta, f) in &written {
            let got = store.read_fragment(meta.id).unwrap();
            check_same(&got, f, &tr);
            prop_assert_eq!(&got.meta, meta);
        }
        let mut c = store.cursor("cam-1", CursorFrom::Oldest).unwrap();
        for (meta, f) in &written {
            let item = c.try_next().unwrap();
            prop_assert!(matches!(item, Some(CursorItem::FragmentStart(ref h)) if h.id == meta.id), "{:?}", item);
            for want in f {
                prop_assert_eq!(c.try_next().unwrap(), Some(CursorItem::Frame(want.clone())));
            }
            prop_assert_eq!(c.try_next().unwrap(), Some(CursorItem::FragmentEnd(meta.clone())));
        }
        prop_assert_eq!(c.try_next().unwrap(), None);
        let report = store.verify().unwrap();
        prop_assert!(report.problems.is_empty(), "{:?}", report.problems);
        prop_assert_eq!(report.fragments as usize, written.len());
        prop_assert_eq!(report.uncovered_bytes, 0);
    }
}

#[test]
fn queries_by_time_list_fragments_ranges_and_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let tr = tracks(2);
    let mut w = store.open_stream("porch", &tr, false).unwrap();
    let shape = Shape {
        frames: 10,
        max_len: 100,
        tracks: 2,
        seed: 1,
    };
    // 0–2 s, 2–4 s, then a 10 s hole, 14–16 s.
    for (seq, i) in [0u64, 1, 7].into_iter().enumerate() {
        let mut f = frames(at(i), shape);
        // Exactly two seconds each, so the ranges are easy to state.
        for fr in &mut f {
            fr.pts = fr.dts;
            fr.duration = Duration::ZERO;
        }
        f.last_mut().unwrap().duration = at(i + 1) - f.last().unwrap().pts;
        write_all(&mut w, &events(seq as u64, &f)).unwrap().unwrap();
    }
    let all = store.fragments("porch", Timestamp::EPOCH, at(1000)).unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.windows(2).all(|p| p[0].id < p[1].id && p[0].start < p[1].start));
    let mid = store
        .fragments("porch", at(1) + Duration::from_millis(500), at(3))
        .unwrap();
    assert_eq!(mid.iter().map(|m| m.start).collect::<Vec<_>>(), vec![at(1)]);
    assert_eq!(
        store.recorded_ranges("porch", Timestamp::EPOCH, at(1000)).unwrap(),
        vec![(at(0), at(2)), (at(7), at(8))]
    );
    assert_eq!(
        store.gaps("porch", Timestamp::EPOCH, at(1000)).unwrap(),
        vec![(at(2), at(7))]
    );
    let info = store.stream("porch").unwrap();
    assert_eq!(info.fragments, 3);
    assert_eq!(info.oldest, Some(at(0)));
    assert_eq!(info.newest, Some(at(8)));
    assert_eq!(info.state, StreamState::Recording);
    assert_eq!(info.tracks, tr);
    assert_eq!(info.upload.pending, 3);
    assert_eq!(info.ranges.len(), 2);
    drop(w);
    assert_eq!(store.stream("porch").unwrap().state, StreamState::Idle);
    let stats = store.stats();
    assert_eq!(stats.fragments_written, 3);
    assert_eq!(stats.frames_written, 30);
    assert_eq!(stats.fsync.count, 3);
    assert_eq!(stats.fsync.buckets.iter().sum::<u64>(), 3);
    assert!(stats.free_bytes.is_some());
}

#[test]
fn upload_state_and_kvs_fragment_number_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(1), true).unwrap();
    let shape = Shape {
        frames: 3,
        max_len: 10,
        tracks: 1,
        seed: 2,
    };
    let m = write_all(&mut w, &events(0, &frames(at(0), shape))).unwrap().unwrap();
    for s in [
        UploadState::Sent,
        UploadState::Received,
        UploadState::Failed { error_id: 4004 },
        UploadState::Skipped,
        UploadState::Persisted,
    ] {
        store.set_upload_state(m.id, s).unwrap();
        assert_eq!(store.fragment(m.id).unwrap().upload, s);
    }
    store
        .set_kvs_fragment_number(m.id, "91343852333181432392682062607743920146264201386")
        .unwrap();
    assert_eq!(
        store.fragment(m.id).unwrap().kvs_fragment_number.as_deref(),
        Some("91343852333181432392682062607743920146264201386")
    );
    let err = store.set_upload_state(FragmentId(999), UploadState::Sent).unwrap_err();
    assert!(err.to_string().contains("999"), "{err}");
}

#[test]
fn events_out_of_order_are_refused_with_the_stream_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(1), false).unwrap();
    let f = frames(
        at(0),
        Shape {
            frames: 2,
            max_len: 10,
            tracks: 1,
            seed: 3,
        },
    );
    let err = w.write(&FragmentEvent::Frame(f[0].clone())).unwrap_err();
    assert!(
        err.to_string().contains("\"cam\"") && err.to_string().contains("outside a fragment"),
        "{err}"
    );
    let ev = events(0, &f);
    w.write(&ev[0]).unwrap();
    let mut stranger = f[1].clone();
    stranger.track = TrackId::new(2).unwrap();
    let err = w.write(&FragmentEvent::Frame(stranger)).unwrap_err();
    assert!(err.to_string().contains("1 track(s)"), "{err}");
    // The fragment goes on.
    for e in &ev[1..] {
        w.write(e).unwrap();
    }
    assert_eq!(store.stats().fragments_written, 1);
    assert!(matches!(
        store.open_stream("cam", &tracks(1), false),
        Err(StoreError::StreamBusy(_))
    ));
}
