//! Power-cut states that kill -9 cannot produce: index commits lost after
//! their records were durable, a deletion committed but not carried out.
//! They are made by editing the index file while the store is closed.

use super::*;

fn shape(seed: u64) -> Shape {
    Shape {
        frames: 6,
        max_len: 20_000,
        tracks: 2,
        seed,
    }
}

fn write(dir: &std::path::Path, n: u64) -> Vec<(FragmentMeta, Vec<Frame>)> {
    let cfg = StoreConfig {
        segment_max_bytes: 100 * 1024,
        ..config(dir)
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), true).unwrap();
    (0..n)
        .map(|i| {
            let f = frames(at(i), shape(i));
            (write_all(&mut w, &events(i, &f)).unwrap().unwrap(), f)
        })
        .collect()
}

fn reopen(dir: &std::path::Path) -> Store {
    Store::open(
        StoreConfig {
            segment_max_bytes: 100 * 1024,
            ..config(dir)
        },
        test_clock(),
    )
    .unwrap()
}

fn check(store: &Store, written: &[(FragmentMeta, Vec<Frame>)]) {
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.uncovered_bytes, 0);
    let held = store.fragments("cam", Timestamp::EPOCH, at(1000)).unwrap();
    assert_eq!(held.len(), written.len());
    for ((m, f), h) in written.iter().zip(&held) {
        assert_eq!(h.id, m.id);
        let got = store.read_fragment(m.id).unwrap();
        assert_eq!(&got.frames, f);
        assert_eq!((got.meta.seq, got.meta.start, got.meta.end), (m.seq, m.start, m.end));
        assert_eq!(got.meta.track_frames, m.track_frames);
        assert_eq!(got.meta.metadata, m.metadata);
    }
}

#[test]
fn durable_fragments_whose_index_commits_were_lost_are_reindexed() {
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), 12);
    // The power went before the last five commits reached the disk: their
    // rows, the segment rows they created and the length updates are gone.
    let lost: Vec<u64> = written[7..].iter().map(|(m, _)| m.id.0).collect();
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    for id in &lost {
        conn.execute("DELETE FROM fragment WHERE id = ?1", [*id as i64])
            .unwrap();
    }
    conn.execute(
        "DELETE FROM segment WHERE id NOT IN (SELECT segment_id FROM fragment)",
        [],
    )
    .unwrap();
    conn.execute(
        "UPDATE segment SET len = (SELECT MAX(offset + record_len) FROM fragment f WHERE f.segment_id = segment.id)",
        [],
    )
    .unwrap();
    drop(conn);
    // And the fragment after them was open: a header still saying 0 and
    // some of its frames.
    let last_seg = std::fs::read_dir(dir.path().join("segments/cam"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max()
        .unwrap();
    let mut partial = segment::encode_header(0).to_vec();
    partial.extend_from_slice(&[7u8; 5000]);
    let mut f = std::fs::OpenOptions::new().append(true).open(&last_seg).unwrap();
    std::io::Write::write_all(&mut f, &partial).unwrap();
    drop(f);

    let store = reopen(dir.path());
    let rep = store.recovery_report();
    let mut reindexed: Vec<u64> = rep.reindexed.iter().map(|i| i.0).collect();
    reindexed.sort();
    assert_eq!(reindexed, lost, "{rep:?}");
    assert!(rep.adopted_segments >= 1, "{rep:?}");
    assert_eq!(rep.bytes_truncated, partial.len() as u64, "{rep:?}");
    assert!(rep.lost_fragments.is_empty());
    check(&store, &written);
    // The next fragment gets a fresh id and the store carries on.
    let mut w = store.open_stream("cam", &tracks(2), true).unwrap();
    let m = write_all(&mut w, &events(12, &frames(at(12), shape(12))))
        .unwrap()
        .unwrap();
    assert!(m.id > written.last().unwrap().0.id);
    drop(w);
    drop(store);
    assert!(reopen(dir.path()).recovery_report().is_clean());
}

#[test]
fn a_deletion_committed_before_the_crash_is_finished_not_undone() {
    let dir = tempfile::tempdir().unwrap();
    let written = write(dir.path(), 10);
    // Retention committed the deletion of the oldest segment, then the
    // process died before the file was removed.
    let conn = rusqlite::Connection::open(dir.path().join("index.sqlite")).unwrap();
    let (seg_id, path): (i64, String) = conn
        .query_row("SELECT id, path FROM segment ORDER BY start_ns LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let gone: i64 = conn
        .query_row("SELECT COUNT(*) FROM fragment WHERE segment_id = ?1", [seg_id], |r| {
            r.get(0)
        })
        .unwrap();
    conn.execute("INSERT INTO pending_deletion (path) VALUES (?1)", [&path])
        .unwrap();
    conn.execute("DELETE FROM fragment WHERE segment_id = ?1", [seg_id])
        .unwrap();
    conn.execute("DELETE FROM segment WHERE id = ?1", [seg_id]).unwrap();
    drop(conn);
    assert!(dir.path().join(&path).exists());

    let store = reopen(dir.path());
    let rep = store.recovery_report();
    assert_eq!(rep.deletions_finished, 1, "{rep:?}");
    assert!(rep.reindexed.is_empty(), "deleted media came back: {rep:?}");
    assert!(!dir.path().join(&path).exists());
    check(&store, &written[gone as usize..]);
}
