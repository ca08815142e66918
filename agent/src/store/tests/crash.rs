//! kill -9 while appending: a child process (this test binary, re-executed)
//! appends fragments in a loop and reports each committed id over a pipe;
//! the parent kills it at a random moment, reopens the store and checks that
//! index and segment files agree and that nothing it was told about is
//! missing. Odd runs use a small size cap, so deletions get interrupted too;
//! runs 2 and 3 of every 4 use group commit (a sync every
//! [`GROUP`] fragments), so kills land between unsynced records too.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Instant, SystemTime};

use super::*;

const CHILD_ENV: &str = "EDGE_AGENT_STORE_CRASH_CHILD";
const RUNS: u64 = 24;
/// Fragments per sync in group-commit runs.
const GROUP: usize = 3;

fn group_commit(run: u64) -> bool {
    run % 4 >= 2
}

fn crash_config(dir: &std::path::Path, capped: bool) -> StoreConfig {
    StoreConfig {
        // Room for the two newest segments, so the newest fragment is
        // never what the cap deletes.
        max_size_mb: if capped { 4 } else { 0 },
        segment_max_bytes: 256 * 1024,
        ..config(dir)
    }
}

/// Fragment `i` of the whole test (run × 10 000 + seq): deterministic, so
/// the parent can check every byte.
fn crash_frames(i: u64) -> Vec<Frame> {
    // Every third fragment has frames big enough to bypass the write
    // buffer, so kills land between its writes too.
    let shape = Shape {
        frames: if i.is_multiple_of(3) {
            3 + (i % 5) as usize
        } else {
            8 + (i % 23) as usize
        },
        max_len: if i.is_multiple_of(3) { 256 * 1024 } else { 16 * 1024 },
        tracks: 2,
        seed: i,
    };
    frames(at(i), shape)
}

/// The child: append until killed.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return; // Only runs when re-executed by the test below.
    };
    let mut parts = spec.split('|');
    let dir = std::path::PathBuf::from(parts.next().unwrap());
    let run: u64 = parts.next().unwrap().parse().unwrap();
    let capped = parts.next().unwrap() == "1";
    let store = Store::open(crash_config(&dir, capped), Arc::new(SystemClock)).unwrap();
    let mut w = store.open_stream("cam", &tracks(2), false).unwrap();
    let mut out = std::io::stdout().lock();
    let started = Instant::now();
    // Group commit: generator index of each unsynced fragment.
    let mut unsynced = BTreeMap::new();
    for seq in 0..2000 {
        let i = run * 10_000 + seq;
        // Paced like capture: frames trickle in, so most kills land while
        // a fragment is open.
        let mut meta = None;
        for e in events(seq, &crash_frames(i)) {
            meta = match (&e, group_commit(run)) {
                (FragmentEvent::End(summary), true) => {
                    let id = w.end_unsynced(summary).unwrap().unwrap();
                    unsynced.insert(id.0, i);
                    None
                }
                _ => w.write(&e).unwrap(),
            };
            std::thread::sleep(Duration::from_micros(300));
        }
        if group_commit(run) {
            if unsynced.len() == GROUP {
                for m in w.sync().unwrap() {
                    writeln!(out, "COMMITTED {} {}", m.id, unsynced[&m.id.0]).unwrap();
                }
                unsynced.clear();
                out.flush().unwrap();
            }
        } else {
            let m = meta.unwrap();
            writeln!(out, "COMMITTED {} {i}", m.id).unwrap();
            out.flush().unwrap();
        }
        if started.elapsed() > Duration::from_secs(60) {
            break;
        }
    }
}

#[test]
fn kill_during_append_loses_at_most_the_open_fragment() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let seed = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut rng = Rng::new(seed);
    // Every fragment known to be committed: id → generator index.
    let mut known: BTreeMap<u64, u64> = BTreeMap::new();
    let mut truncated_runs = 0;
    let mut dirty_runs = 0;
    let mut orphans = 0;
    let mut empty_segments = 0;
    let mut held_at_end = 0;
    let mut reported_total = 0;
    for run in 0..RUNS {
        let capped = run % 2 == 1;
        let mut child = Command::new(&exe)
            .args([
                "store::tests::crash::crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(
                CHILD_ENV,
                format!("{}|{run}|{}", dir.path().display(), u8::from(capped)),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print "test … ... " before our first line.
                if let Some(rest) = line.split("COMMITTED ").nth(1) {
                    let mut p = rest.split(' ');
                    let id: u64 = p.next().unwrap().parse().unwrap();
                    let i: u64 = p.next().unwrap().parse().unwrap();
                    if tx.send((id, i)).is_err() {
                        break;
                    }
                }
            }
        });
        // Wait for a few commits (or none), then kill at a random moment.
        let wait_for = rng.below(6);
        let mut reported = Vec::new();
        while (reported.len() as u64) < wait_for {
            let r = rx
                .recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| panic!("run {run} (seed {seed}): child reported nothing for 30 s"));
            reported.push(r);
        }
        std::thread::sleep(Duration::from_micros(rng.below(25_000)));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        reported.extend(rx.try_iter());
        reported_total += reported.len();
        for &(id, i) in &reported {
            known.insert(id, i);
        }

        let store = Store::open(crash_config(dir.path(), capped), test_clock()).unwrap();
        let rec = store.recovery_report().clone();
        assert!(rec.lost_fragments.is_empty(), "run {run} (seed {seed}): {rec:?}");
        if !rec.truncated.is_empty() {
            truncated_runs += 1;
        }
        orphans += rec.orphan_files_removed.len();
        if !rec.is_clean() {
            dirty_runs += 1;
        }
        empty_segments += rec.empty_segments_removed;
        let v = store.verify().unwrap();
        assert!(v.problems.is_empty(), "run {run} (seed {seed}): {:?}", v.problems);
        assert_eq!(
            v.uncovered_bytes, 0,
            "run {run}: segment sizes must equal the bytes their fragments cover"
        );
        let held = match store.fragments("cam", Timestamp::EPOCH, at(1_000_000)) {
            Err(StoreError::UnknownStream(_)) if known.is_empty() => Vec::new(), // killed before it began
            r => r.unwrap(),
        };
        // At most one fragment was committed but not reported: the open
        // one; with group commit, the group being synced or records that
        // reached the disk unsynced (recovery indexes those).
        let unreported: Vec<FragmentMeta> = held.iter().filter(|m| !known.contains_key(&m.id.0)).cloned().collect();
        let most = if group_commit(run) { GROUP } else { 1 };
        assert!(unreported.len() <= most, "run {run} (seed {seed}): {unreported:?}");
        for m in &unreported {
            assert!(reported.iter().all(|&(id, _)| id < m.id.0), "run {run}: {m:?}");
            let i = (m.start.as_nanos() - BASE_NS) / 2_000_000_000;
            assert_eq!(i / 10_000, run);
            known.insert(m.id.0, i);
        }
        // Nothing reported is missing, except what retention deleted: the oldest.
        if let Some(oldest) = held.first() {
            let missing: Vec<u64> = known
                .keys()
                .copied()
                .filter(|&id| id >= oldest.id.0)
                .filter(|id| !held.iter().any(|m| m.id.0 == *id))
                .collect();
            assert!(
                missing.is_empty(),
                "run {run} (seed {seed}): committed fragments lost: {missing:?}"
            );
        }
        if let Some(&(last, _)) = reported.last() {
            assert!(
                held.iter().any(|m| m.id.0 == last),
                "run {run} (seed {seed}): newest committed fragment lost"
            );
        }
        held_at_end = held.len();
        // Every byte is the one written.
        for m in &held {
            let got = store.read_fragment(m.id).unwrap();
            assert_eq!(got.frames, crash_frames(known[&m.id.0]), "run {run}: fragment {}", m.id);
        }
        if run == 0 {
            assert_eq!(held.len(), known.len(), "run {run}: nothing is deleted without a cap");
        }
    }
    eprintln!(
        "{RUNS} kills (seed {seed}): {reported_total} fragments reported, {} known committed, {} deleted by the cap, \
         {dirty_runs} recoveries had work: {truncated_runs} cut a tail, {orphans} orphan files and {empty_segments} empty segments removed",
        known.len(),
        known.len() - held_at_end
    );
    assert!(
        known.len() > held_at_end,
        "the size cap never deleted anything: test too gentle"
    );
    assert!(
        reported_total >= 20,
        "only {reported_total} fragments committed in {RUNS} runs"
    );
    // A kill inside a fragment leaves a tail (or a new segment file no row
    // references yet); a kill inside a deletion leaves an orphan file.
    assert!(
        dirty_runs >= 3,
        "only {dirty_runs} of {RUNS} kills left anything to recover (seed {seed})"
    );
}
