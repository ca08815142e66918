//! Cursors read from disk while behind, then follow the live tail frame by
//! frame; capture never waits for them, and a reader that falls out of the
//! tail goes back to disk without losing or repeating anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;

use super::*;

fn small(seed: u64) -> Shape {
    Shape {
        frames: 12,
        max_len: 2000,
        tracks: 2,
        seed,
    }
}

/// What a reader should see for these fragments: start, frames, end.
fn expected(frags: &[(FragmentMeta, Vec<Frame>)]) -> Vec<String> {
    let mut out = Vec::new();
    for (m, f) in frags {
        out.push(format!("start {}", m.id));
        out.extend(f.iter().map(|f| format!("frame {:?} {}", f, crc32fast::hash(&f.data))));
        out.push(format!("end {}", m.id));
    }
    out
}

fn describe(item: &CursorItem) -> String {
    match item {
        CursorItem::FragmentStart(h) => format!("start {}", h.id),
        CursorItem::Frame(f) => format!("frame {:?} {}", f, crc32fast::hash(&f.data)),
        CursorItem::FragmentEnd(m) => format!("end {}", m.id),
        CursorItem::FragmentAborted(id) => format!("aborted {id}"),
    }
}

type Written = Vec<(FragmentMeta, Vec<Frame>)>;

/// Write fragments `from..to` on another thread, pausing between frames so
/// readers can catch up; returns what was written.
fn writer_thread(
    mut w: StreamWriter,
    from: u64,
    to: u64,
    shape: fn(u64) -> Shape,
    pause: Duration,
) -> thread::JoinHandle<(StreamWriter, Written)> {
    thread::spawn(move || {
        let mut out = Vec::new();
        for i in from..to {
            let f = frames(at(i), shape(i));
            let mut meta = None;
            for e in events(i, &f) {
                meta = w.write(&e).unwrap();
                thread::sleep(pause);
            }
            out.push((meta.unwrap(), f));
        }
        (w, out)
    })
}

#[test]
fn cursor_from_a_past_time_reads_disk_then_follows_the_open_fragment_live() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut past = Vec::new();
    for i in 0..3 {
        let f = frames(at(i), small(i));
        past.push((write_all(&mut w, &events(i, &f)).unwrap().unwrap(), f));
    }
    // From the middle of fragment 1.
    let mut c = store
        .cursor("cam", CursorFrom::Time(at(1) + Duration::from_millis(700)))
        .unwrap();
    let writer = writer_thread(w, 3, 8, small, Duration::from_millis(2));
    let mut got = Vec::new();
    let mut live_frames = 0;
    let mut last_end = None;
    while last_end != Some(FragmentId(past[2].0.id.0 + 5)) {
        let was_live = c.is_live();
        let item = c
            .next_blocking(Duration::from_secs(10))
            .unwrap()
            .expect("an item within 10 s");
        if was_live && matches!(item, CursorItem::Frame(_)) {
            live_frames += 1;
        }
        if let CursorItem::FragmentEnd(m) = &item {
            last_end = Some(m.id);
        }
        got.push(describe(&item));
    }
    let (_w, live) = writer.join().unwrap();
    let mut want = past[1..].to_vec();
    want.extend(live);
    assert_eq!(got, expected(&want));
    assert!(live_frames > 20, "only {live_frames} frames came from the live tail");
    assert_eq!(c.try_next().unwrap(), None);
}

#[test]
fn a_slow_reader_that_falls_out_of_the_live_tail_goes_back_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        live_buffer_bytes: 24 * 1024, // about one fragment
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut c = store.cursor("cam", CursorFrom::Live).unwrap();
    let mut writer = Some(writer_thread(w, 0, 12, small, Duration::from_micros(300)));
    let mut written = None;
    let mut got = Vec::new();
    let mut ends = 0;
    while ends < 12 {
        let item = c
            .next_blocking(Duration::from_secs(10))
            .unwrap()
            .expect("an item within 10 s");
        if matches!(item, CursorItem::FragmentEnd(_)) {
            ends += 1;
        }
        got.push(describe(&item));
        // The first fragment read live, the reader stalls while the other
        // eleven (about eleven times the tail) are written: it falls out of
        // the tail however fast or slow this machine's disk syncs.
        if ends == 1 {
            if let Some(w) = writer.take() {
                written = Some(w.join().unwrap().1);
            }
        }
    }
    let written = written.expect("the writer finished");
    assert_eq!(got, expected(&written));
    assert!(
        store.stats().cursor_lags > 0,
        "the reader never lagged: test too gentle"
    );
}

#[test]
fn capture_never_waits_for_a_reader_that_does_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        live_buffer_bytes: 16 * 1024,
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let _idle = store.cursor("cam", CursorFrom::Live).unwrap();
    let mut idle2 = store.cursor("cam", CursorFrom::Oldest).unwrap();
    assert_eq!(idle2.try_next().unwrap(), None);
    for i in 0..20 {
        write_all(&mut w, &events(i, &frames(at(i), small(i)))).unwrap();
    }
    // The reader that never read still gets everything, from disk.
    let mut n = 0;
    while let Some(item) = idle2.try_next().unwrap() {
        if matches!(item, CursorItem::FragmentEnd(_)) {
            n += 1;
        }
    }
    assert_eq!(n, 20);
}

#[test]
fn a_fragment_dropped_by_its_writer_is_reported_to_live_readers() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut c = store.cursor("cam", CursorFrom::Live).unwrap();
    let ev = events(0, &frames(at(0), small(0)));
    for e in &ev[..4] {
        w.write(e).unwrap();
    }
    drop(w);
    let items: Vec<CursorItem> = std::iter::from_fn(|| c.try_next().unwrap()).collect();
    assert!(matches!(items[0], CursorItem::FragmentStart(_)));
    assert_eq!(items.len(), 5);
    assert!(matches!(items[4], CursorItem::FragmentAborted(_)), "{:?}", items[4]);
    assert_eq!(store.stats().fragments_aborted, 1);
    // The next writer's fragments follow.
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let m = write_all(&mut w, &events(0, &frames(at(1), small(1))))
        .unwrap()
        .unwrap();
    let items: Vec<CursorItem> = std::iter::from_fn(|| c.try_next().unwrap()).collect();
    assert!(matches!(&items[0], CursorItem::FragmentStart(h) if h.id == m.id));
    assert!(matches!(items.last(), Some(CursorItem::FragmentEnd(e)) if e.id == m.id));
}

/// A minimal executor: poll on this thread, park until woken.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    struct Unpark(thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_millis(100));
    }
}

#[test]
fn async_next_wakes_on_live_frames() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut c = store.cursor("cam", CursorFrom::Live).unwrap();
    let (tx, rx) = mpsc::channel();
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let reader = thread::spawn(move || {
        block_on(async {
            let mut n = 0;
            while n < 2 {
                let item = c.next().await.unwrap();
                if matches!(item, CursorItem::FragmentEnd(_)) {
                    n += 1;
                }
                tx.send(describe(&item)).unwrap();
            }
        });
        d.store(true, Ordering::SeqCst);
    });
    let (_w, written) = writer_thread(w, 0, 2, small, Duration::from_millis(1)).join().unwrap();
    reader.join().unwrap();
    assert!(done.load(Ordering::SeqCst));
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), expected(&written));
}

/// Fragment `i` written with its End unsynced (group commit); its id and
/// frames.
fn write_unsynced(w: &mut StreamWriter, i: u64) -> (FragmentId, Vec<Frame>) {
    let f = frames(at(i), small(i));
    let ev = events(i, &f);
    let (end, rest) = ev.split_last().unwrap();
    for e in rest {
        assert_eq!(w.write(e).unwrap(), None);
    }
    let FragmentEvent::End(summary) = end else {
        unreachable!()
    };
    (w.end_unsynced(summary).unwrap().expect("stored"), f)
}

/// Group commit: records finished with `end_unsynced` are neither indexed
/// nor ended on the live tail until `sync`, which makes them all durable
/// with one fdatasync; a live reader still sees every fragment whole and in
/// order, across segment rolls that sync on their own.
#[test]
fn group_commit_syncs_once_for_many_fragments_and_readers_see_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        segment_max_bytes: 40 * 1024, // a roll every few fragments
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut c = store.cursor("cam", CursorFrom::Live).unwrap();

    // Three fragments, no sync: nothing indexed, no End for readers.
    let fsyncs = store.stats().fsync.count;
    let mut written = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let (id, f) = write_unsynced(&mut w, i);
        ids.push(id);
        written.push(f);
    }
    assert_eq!(w.unsynced(), 3);
    assert!(store.fragments("cam", Timestamp::EPOCH, at(1000)).unwrap().is_empty());
    let mut seen = Vec::new();
    while let Some(item) = c.try_next().unwrap() {
        seen.push(describe(&item));
    }
    assert!(
        seen.iter().all(|s| !s.starts_with("end")) && seen.iter().filter(|s| s.starts_with("start")).count() == 1,
        "readers saw past the first unsynced fragment: {seen:?}"
    );

    let metas = w.sync().unwrap();
    assert_eq!(metas.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert_eq!(
        store.stats().fsync.count - fsyncs,
        1,
        "one fdatasync for three fragments"
    );
    let mut all: Written = metas.into_iter().zip(written).collect();

    // Twelve more, synced in fours: the segment rolls in between, and what
    // a roll made durable comes out of the next sync.
    for group in 0..3 {
        let mut batch = Vec::new();
        for k in 0..4 {
            batch.push(write_unsynced(&mut w, 3 + group * 4 + k).1);
        }
        let metas = w.sync().unwrap();
        assert_eq!(metas.len(), 4, "group {group}");
        all.extend(metas.into_iter().zip(batch));
    }
    let segments = std::fs::read_dir(dir.path().join("segments/cam")).unwrap().count();
    assert!(segments >= 3, "{segments} segment(s): no roll to test");

    while let Some(item) = c.try_next().unwrap() {
        seen.push(describe(&item));
    }
    assert_eq!(seen, expected(&all));
    let held = store.fragments("cam", Timestamp::EPOCH, at(1000)).unwrap();
    assert_eq!(held.len(), 15);
    for (m, f) in &all {
        assert_eq!(&store.read_fragment(m.id).unwrap().frames, f);
    }
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.uncovered_bytes, 0);
}

/// Closing a writer with records unsynced makes them durable first.
#[test]
fn a_writer_closed_with_unsynced_records_keeps_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(config(dir.path()), test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut written = Vec::new();
    for i in 0..2 {
        written.push(write_unsynced(&mut w, i).1);
    }
    // An open fragment after them is dropped, they are not.
    let f = frames(at(2), small(2));
    for e in &events(2, &f)[..3] {
        w.write(e).unwrap();
    }
    w.close().unwrap();
    let held = store.fragments("cam", Timestamp::EPOCH, at(1000)).unwrap();
    assert_eq!(held.len(), 2);
    for (m, f) in held.iter().zip(&written) {
        assert_eq!(&store.read_fragment(m.id).unwrap().frames, f);
    }
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.uncovered_bytes, 0);
}
