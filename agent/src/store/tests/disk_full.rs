//! ENOSPC in the middle of a fragment, injected through the file layer at an
//! exact byte: nothing indexed is damaged, the state is visible, and
//! recording goes on (DELETE_OLDEST_MEDIA) or resumes when space returns
//! (DENY_NEW_MEDIA).

use std::collections::HashMap;

use super::*;

/// 1080p-like: frames of up to 300 KB, mostly past the write buffer, so
/// they hit the file (and the full disk) mid-fragment.
fn big(seed: u64) -> Shape {
    Shape {
        frames: 4,
        max_len: 300 * 1024,
        tracks: 1,
        seed,
    }
}

fn check_index(store: &Store, written: &HashMap<FragmentId, Vec<Frame>>) -> usize {
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.uncovered_bytes, 0);
    let held = store.fragments("cam", Timestamp::EPOCH, at(1_000_000)).unwrap();
    for m in &held {
        let got = store.read_fragment(m.id).unwrap();
        assert_eq!(&got.frames, &written[&m.id], "fragment {}", m.id);
    }
    held.len()
}

fn budget_store(dir: &std::path::Path, on_full: OnFull, free: u64) -> (Store, Arc<BudgetFs>) {
    let budget = BudgetFs::new();
    budget.set_free(Some(free));
    let cfg = StoreConfig {
        segment_max_bytes: 600 * 1024,
        on_full,
        ..config(dir)
    };
    let store = Store::open_with(cfg, test_clock(), Arc::new(SharedBudgetFs(budget.clone()))).unwrap();
    (store, budget)
}

#[test]
fn enospc_under_delete_oldest_deletes_oldest_and_retries_the_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let (store, budget) = budget_store(dir.path(), OnFull::DeleteOldestMedia, 3 * MB);
    let mut w = store.open_stream("cam", &tracks(1), true).unwrap();
    let mut written = HashMap::new();
    let mut last = Vec::new();
    for i in 0..40 {
        let f = frames(at(i), big(i));
        let m = write_all(&mut w, &events(i, &f))
            .unwrap_or_else(|e| panic!("fragment {i}: {e}"))
            .expect("committed");
        written.insert(m.id, f);
        last.push(m.id);
    }
    let s = store.stats();
    assert!(budget.enospc.load(std::sync::atomic::Ordering::SeqCst) > 0);
    assert!(s.disk_full_errors > 0, "{s:?}");
    assert!(s.deleted_fragments.disk_full > 0, "{s:?}");
    assert_eq!(
        s.deleted_not_uploaded, s.deleted_fragments.disk_full,
        "nothing was uploaded"
    );
    assert_eq!(s.fragments_written, 40);
    assert_eq!(store.stream("cam").unwrap().state, StreamState::Recording);
    let held = check_index(&store, &written);
    assert!(held >= 3, "{held}");
    // The newest are all there.
    let ids: Vec<FragmentId> = store
        .fragments("cam", Timestamp::EPOCH, at(1_000_000))
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, last[last.len() - held..]);
    drop(w);
    drop(store);
    let (store, _) = budget_store(dir.path(), OnFull::DeleteOldestMedia, 3 * MB);
    assert!(store.recovery_report().is_clean(), "{:?}", store.recovery_report());
    check_index(&store, &written);
}

#[test]
fn enospc_under_deny_new_media_stops_visibly_and_resumes_when_space_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (store, budget) = budget_store(dir.path(), OnFull::DenyNewMedia, MB);
    let mut w = store.open_stream("cam", &tracks(1), true).unwrap();
    let mut written = HashMap::new();
    let mut refused_at = None;
    'outer: for i in 0..20 {
        let f = frames(at(i), big(i));
        let ev = events(i, &f);
        for (k, e) in ev.iter().enumerate() {
            match w.write(e) {
                Ok(Some(m)) => {
                    written.insert(m.id, f.clone());
                }
                Ok(None) => {}
                Err(err) => {
                    assert!(err.is_denied() && err.is_disk_full(), "{err}");
                    assert!(err.to_string().contains("disk full"), "{err}");
                    refused_at = Some((i, k, ev.len()));
                    // The rest of the fragment is dropped quietly.
                    for e in &ev[k + 1..] {
                        assert_eq!(w.write(e).unwrap(), None);
                    }
                    break 'outer;
                }
            }
        }
    }
    let (i, k, n) = refused_at.expect("the disk filled up");
    assert!(
        k > 0 && k < n,
        "refused at event {k} of {n}: the disk should fill mid-fragment"
    );
    let info = store.stream("cam").unwrap();
    assert!(
        matches!(&info.state, StreamState::Denied { reason: DenyReason::DiskFull { detail }, .. } if detail.contains(".seg")),
        "{:?}",
        info.state
    );
    let s = store.stats();
    assert_eq!((s.disk_full_errors, s.fragments_aborted, s.fragments_denied), (1, 1, 1));
    assert_eq!(s.deleted_fragments.total(), 0);
    let before = check_index(&store, &written);
    assert_eq!(before, written.len());

    // Still full: the next fragment is refused at its start.
    let f = frames(at(i + 1), big(99));
    assert!(w.write(&events(i + 1, &f)[0]).unwrap_err().is_denied());

    // Space returns: recording resumes by itself.
    budget.set_free(Some(20 * MB));
    for j in i + 2..i + 5 {
        let f = frames(at(j), big(j));
        let m = write_all(&mut w, &events(j, &f)).unwrap().unwrap();
        written.insert(m.id, f);
    }
    assert_eq!(store.stream("cam").unwrap().state, StreamState::Recording);
    assert_eq!(check_index(&store, &written), before + 3);
    drop(w);
    drop(store);
    let (store, _) = budget_store(dir.path(), OnFull::DenyNewMedia, 20 * MB);
    assert!(store.recovery_report().is_clean(), "{:?}", store.recovery_report());
    check_index(&store, &written);
}
