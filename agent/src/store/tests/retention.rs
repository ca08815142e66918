//! Retention with the test clock and small caps.

use super::*;

/// About `kb` KB per fragment, in a few frames.
fn shape(kb: usize, seed: u64) -> Shape {
    Shape {
        frames: 4,
        max_len: kb * 1024 / 2,
        tracks: 1,
        seed,
    }
}

fn fill(w: &mut StreamWriter, from: u64, n: u64, kb: usize) -> Vec<FragmentMeta> {
    (from..from + n)
        .map(|i| write_all(w, &events(i, &frames(at(i), shape(kb, i)))).unwrap().unwrap())
        .collect()
}

fn ids(store: &Store, stream: &str) -> Vec<FragmentId> {
    store
        .fragments(stream, Timestamp::EPOCH, at(1_000_000))
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect()
}

#[test]
fn max_age_deletes_old_uploaded_media_and_keeps_media_not_yet_uploaded() {
    let dir = tempfile::tempdir().unwrap();
    let clock = test_clock();
    let cfg = StoreConfig {
        max_age_hours: 1,
        segment_max_bytes: 1, // one fragment per segment: files go as fragments go
        ..config(dir.path())
    };
    let store = Store::open(cfg, clock.clone()).unwrap();
    let mut up = store.open_stream("uploads", &tracks(1), true).unwrap();
    let mut local = store.open_stream("local", &tracks(1), false).unwrap();
    let up_old = fill(&mut up, 0, 4, 4);
    let local_old = fill(&mut local, 0, 3, 4);
    store.set_upload_state(up_old[0].id, UploadState::Persisted).unwrap();
    store.set_upload_state(up_old[1].id, UploadState::Skipped).unwrap();
    store.set_upload_state(up_old[2].id, UploadState::Received).unwrap();
    // up_old[3] stays pending.

    // Not old enough yet.
    clock.set(at(3) + Duration::from_secs(3000));
    assert_eq!(store.enforce_retention().unwrap().fragments(), 0);

    clock.set(at(10) + Duration::from_secs(3601));
    // Fresh fragments, written at the new time.
    let up_new = fill(&mut up, 1900, 1, 4);
    let local_new = fill(&mut local, 1900, 1, 4);
    let rep = store.enforce_retention().unwrap();
    // The writer's own pass after the new fragments may have done the work.
    let stats = store.stats();
    assert_eq!(stats.deleted_fragments.age, 2 + 3, "{rep:?}");
    assert_eq!(stats.deleted_not_uploaded, 0);
    assert_eq!(
        ids(&store, "uploads"),
        vec![up_old[2].id, up_old[3].id, up_new[0].id],
        "received and pending media is kept"
    );
    assert_eq!(ids(&store, "local"), vec![local_new[0].id]);
    assert!(local_old
        .iter()
        .all(|m| matches!(store.read_fragment(m.id), Err(StoreError::FragmentNotFound(_)))));
    // Their segment files are gone too.
    drop((up, local));
    store.enforce_retention().unwrap();
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(v.segments, 4);
    let files = std::fs::read_dir(dir.path().join("segments/local")).unwrap().count();
    assert_eq!(files, 1);
}

#[test]
fn delete_oldest_media_deletes_oldest_over_max_size_counted_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_size_mb: 1,
        segment_max_bytes: 128 * 1024,
        on_full: OnFull::DeleteOldestMedia,
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    collect_logs();
    let mut w = store.open_stream("oldest-cam", &tracks(1), true).unwrap();
    let written = fill(&mut w, 0, 40, 50);
    let logs = logs_about("oldest-cam");
    let stats = store.stats();
    assert!(stats.deleted_fragments.max_size > 0, "{stats:?}");
    assert_eq!(stats.deleted_not_uploaded, stats.deleted_fragments.max_size);
    assert!(logs.contains("deleting media not yet uploaded"), "{logs}");
    assert!(logs.contains("WARN"), "{logs}");
    // Under the cap, give or take the segment being written.
    assert!(stats.disk_bytes <= MB + 128 * 1024 + 60 * 1024, "{}", stats.disk_bytes);
    // What is left is the newest, in one run.
    let left = ids(&store, "oldest-cam");
    let newest: Vec<FragmentId> = written[written.len() - left.len()..].iter().map(|m| m.id).collect();
    assert_eq!(left, newest);
    assert!(left.len() >= 10, "{}", left.len());
    let v = store.verify().unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
}

#[test]
fn delete_oldest_media_prefers_uploaded_segments() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        max_size_mb: 1,
        segment_max_bytes: 1,
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(1), true).unwrap();
    let first = fill(&mut w, 0, 8, 80);
    // Everything but the oldest two has been uploaded.
    for m in &first[2..] {
        store.set_upload_state(m.id, UploadState::Persisted).unwrap();
    }
    fill(&mut w, 8, 8, 80);
    let left = ids(&store, "cam");
    assert!(left.contains(&first[0].id) && left.contains(&first[1].id), "{left:?}");
    assert!(!left.contains(&first[2].id));
    assert_eq!(store.stats().deleted_not_uploaded, 0);
}

#[test]
fn deny_new_media_refuses_appends_visibly_and_resumes_after_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let clock = test_clock();
    let cfg = StoreConfig {
        max_size_mb: 1,
        max_age_hours: 1,
        segment_max_bytes: 256 * 1024,
        on_full: OnFull::DenyNewMedia,
        ..config(dir.path())
    };
    let store = Store::open(cfg, clock.clone()).unwrap();
    let mut w = store.open_stream("cam", &tracks(1), false).unwrap();
    let mut i = 0;
    let denied = loop {
        let ev = events(i, &frames(at(i), shape(50, i)));
        match w.write(&ev[0]) {
            Ok(_) => {
                for e in &ev[1..] {
                    w.write(e).unwrap();
                }
            }
            Err(e) => {
                // The rest of the refused fragment is quietly dropped.
                for e in &ev[1..] {
                    assert_eq!(w.write(e).unwrap(), None);
                }
                break e;
            }
        }
        i += 1;
        assert!(i < 100, "never denied");
    };
    assert!(denied.is_denied(), "{denied}");
    assert!(denied.to_string().contains("DENY_NEW_MEDIA"), "{denied}");
    let info = store.stream("cam").unwrap();
    assert!(
        matches!(
            info.state,
            StreamState::Denied {
                reason: DenyReason::MaxSize { .. },
                ..
            }
        ),
        "{:?}",
        info.state
    );
    assert!(info.last_error.unwrap().contains("max_size_mb"));
    let kept = store.stats().fragments_written;
    assert_eq!(
        store.stats().deleted_fragments.total(),
        0,
        "DENY deletes nothing for space"
    );
    // Still denied at the next fragment.
    assert!(w
        .write(&events(i + 1, &frames(at(i + 1), shape(50, 1)))[0])
        .unwrap_err()
        .is_denied());
    assert_eq!(store.stats().fragments_denied, 2);

    // Age makes room; recording resumes by itself.
    clock.set(at(i + 2) + Duration::from_secs(3600 + 60));
    store.enforce_retention().unwrap();
    assert_eq!(store.stats().deleted_fragments.age, kept);
    let now = i + 2 + 1830; // at the clock's time, so age keeps it
    let m = write_all(&mut w, &events(i + 2, &frames(at(now), shape(50, 7))))
        .unwrap()
        .unwrap();
    assert_eq!(w.state(), StreamState::Recording);
    assert_eq!(store.stream("cam").unwrap().state, StreamState::Recording);
    assert_eq!(store.read_fragment(m.id).unwrap().frames.len(), 4);
}

#[test]
fn delete_after_upload_deletes_once_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        delete_after_upload: true,
        ..config(dir.path())
    };
    let store = Store::open(cfg, test_clock()).unwrap();
    let mut w = store.open_stream("cam", &tracks(1), true).unwrap();
    let m = fill(&mut w, 0, 4, 2);
    store.set_upload_state(m[0].id, UploadState::Received).unwrap();
    store.set_upload_state(m[1].id, UploadState::Persisted).unwrap();
    store
        .set_upload_state(m[2].id, UploadState::Failed { error_id: 5000 })
        .unwrap();
    let rep = store.enforce_retention().unwrap();
    assert_eq!(rep.fragments.after_upload, 1);
    assert_eq!(ids(&store, "cam"), vec![m[0].id, m[2].id, m[3].id]);
    store.set_upload_state(m[0].id, UploadState::Persisted).unwrap();
    store.enforce_retention().unwrap();
    assert_eq!(ids(&store, "cam"), vec![m[2].id, m[3].id]);
    assert_eq!(store.stats().deleted_fragments.after_upload, 2);
    assert_eq!(store.stats().deleted_bytes.after_upload, m[0].bytes + m[1].bytes);
}

#[test]
fn min_free_valve_deletes_oldest_or_denies_until_space_returns() {
    for on_full in [OnFull::DeleteOldestMedia, OnFull::DenyNewMedia] {
        let dir = tempfile::tempdir().unwrap();
        let budget = BudgetFs::new();
        budget.set_free(Some(MB + 600 * 1024));
        let cfg = StoreConfig {
            min_free_mb: 1,
            segment_max_bytes: 100 * 1024,
            on_full,
            ..config(dir.path())
        };
        let store = Store::open_with(cfg, test_clock(), Arc::new(SharedBudgetFs(budget.clone()))).unwrap();
        let mut w = store.open_stream("cam", &tracks(1), false).unwrap();
        let mut denied = None;
        for i in 0..30 {
            match write_all(&mut w, &events(i, &frames(at(i), shape(40, i)))) {
                Ok(_) => {}
                Err(e) => {
                    denied = Some(e);
                    break;
                }
            }
        }
        match on_full {
            OnFull::DeleteOldestMedia => {
                assert!(denied.is_none(), "{denied:?}");
                let s = store.stats();
                assert!(s.deleted_fragments.min_free > 0, "{s:?}");
                // The valve holds, give or take the segment being written.
                assert!(s.free_bytes.unwrap() + 150 * 1024 >= MB, "{s:?}");
            }
            OnFull::DenyNewMedia => {
                let e = denied.expect("denied");
                assert!(e.is_denied() && e.to_string().contains("min_free_mb"), "{e}");
                assert!(matches!(
                    store.stream("cam").unwrap().state,
                    StreamState::Denied {
                        reason: DenyReason::MinFree { .. },
                        ..
                    }
                ));
                budget.set_free(Some(10 * MB));
                write_all(&mut w, &events(40, &frames(at(40), shape(40, 40))))
                    .unwrap()
                    .unwrap();
                assert_eq!(store.stream("cam").unwrap().state, StreamState::Recording);
                assert_eq!(store.stats().deleted_fragments.total(), 0);
            }
        }
        let v = store.verify().unwrap();
        assert!(v.problems.is_empty(), "{on_full}: {:?}", v.problems);
    }
}
