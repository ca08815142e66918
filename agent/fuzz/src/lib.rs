//! What the fuzz targets share: how an input is read (options, how the body
//! is cut into pieces, the body), the ingest harness with the properties it
//! checks, and the seed corpus, written with the project's own MKV writer.
//!
//! An input:
//!
//! | bytes | meaning |
//! |---|---|
//! | 0 | options: bit 0 RELATIVE timecodes (else ABSOLUTE), bit 1 the body breaks off (`abort`) instead of ending (`finish`), bit 2 the producer then sends the body again, whole, on a second connection (a resend), bit 3 group commit (a sync after every third piece, as when the rest of the body is queued) |
//! | 1–4 | RELATIVE: the producer start timestamp, whole seconds, u32 little-endian |
//! | 5 | how many piece sizes follow (modulo 8) |
//! | then | the piece sizes, u16 little-endian each (0 counts as 1), used in turn over and over |
//! | rest | the PutMedia body |
//!
//! Without piece sizes the body arrives in one piece. Missing header bytes
//! read as zero.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use edge_agent::kvs::ack::{Ack, AckKind};
use edge_agent::kvs::ingest::TimecodeType;
use edge_agent::kvs::session::IngestSession;
use edge_agent::store::{FragmentId, Store, StoreConfig, TestClock};
use fragmenter::Timestamp;

pub mod seeds;

/// Option bit: cluster timecodes are relative to the producer start.
pub const RELATIVE: u8 = 1;
/// Option bit: the body breaks off (the connection failed).
pub const ABORT: u8 = 2;
/// Option bit: the same body again on a second connection, which ends.
pub const RESEND: u8 = 4;
/// Option bit: the sessions use group commit.
pub const GROUP: u8 = 8;

const HEADER: usize = 6;
const MAX_PIECES: usize = 8;

/// One fuzz input, read as the module docs say.
#[derive(Debug)]
pub struct Input<'a> {
    /// Option bits ([`RELATIVE`], [`ABORT`]).
    pub options: u8,
    /// Producer start timestamp for RELATIVE timecodes.
    pub start: Timestamp,
    /// Sizes of the pieces the body arrives in, in turn.
    pub pieces: Vec<usize>,
    /// The PutMedia body.
    pub body: &'a [u8],
}

impl<'a> Input<'a> {
    /// Reads `data`; never fails (a short input is a short body).
    pub fn parse(data: &'a [u8]) -> Self {
        let byte = |i: usize| data.get(i).copied().unwrap_or(0);
        let secs = u32::from_le_bytes([byte(1), byte(2), byte(3), byte(4)]);
        let n = usize::from(byte(5)) % MAX_PIECES;
        let sizes_end = (HEADER + 2 * n).min(data.len());
        let pieces = data
            .get(HEADER.min(data.len())..sizes_end)
            .unwrap_or(&[])
            .chunks_exact(2)
            .map(|b| usize::from(u16::from_le_bytes([b[0], b[1]])).max(1))
            .collect();
        Input {
            options: byte(0),
            start: Timestamp::from_nanos(u64::from(secs) * 1_000_000_000),
            pieces,
            body: &data[sizes_end..],
        }
    }

    /// The bytes that [`parse`](Self::parse) reads back as these fields
    /// (`start` in whole seconds).
    pub fn encode(options: u8, start_secs: u32, pieces: &[u16], body: &[u8]) -> Vec<u8> {
        assert!(pieces.len() < MAX_PIECES, "at most {} piece sizes", MAX_PIECES - 1);
        let mut out = vec![options];
        out.extend_from_slice(&start_secs.to_le_bytes());
        out.push(pieces.len() as u8);
        for p in pieces {
            out.extend_from_slice(&p.to_le_bytes());
        }
        out.extend_from_slice(body);
        out
    }

    /// The timecode type the headers would have said.
    pub fn timecodes(&self) -> TimecodeType {
        if self.options & RELATIVE != 0 {
            TimecodeType::Relative(self.start)
        } else {
            TimecodeType::Absolute
        }
    }

    /// The body cut into its pieces, in order.
    pub fn chunks(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut rest = self.body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = self
                .pieces
                .get(i % self.pieces.len().max(1))
                .copied()
                .unwrap_or(rest.len());
            let (piece, tail) = rest.split_at(n.min(rest.len()));
            out.push(piece);
            rest = tail;
            i += 1;
        }
        out
    }
}

/// A store is reused for this many inputs (each on a stream of its own),
/// then deleted and a fresh one opened, so that neither the disk nor
/// [`Store::verify`], which reads the whole store, grows without bound.
const INPUTS_PER_STORE: u32 = 64;

struct Shared {
    store: Store,
    inputs: u32,
    // Dropped after the store: removes its files.
    _dir: tempfile::TempDir,
}

static SHARED: Mutex<Option<Shared>> = Mutex::new(None);
static STREAMS: AtomicU64 = AtomicU64::new(0);

/// 2026-11-26T00:00:00Z on the store's clock.
const NOW_NS: u64 = 1_795_651_200_000_000_000;

const DIR_PREFIX: &str = "edge-agent-fuzz-";

/// libFuzzer ends the process with `exit`, which drops no static: the last
/// store of each run stays behind. Removes those of processes that are gone.
fn remove_stale_stores(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(DIR_PREFIX)?.split('-').next())
        else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

fn open_store() -> Shared {
    // tmpfs when there is one: the store fsyncs every fragment.
    let shm = Path::new("/dev/shm");
    let parent = if shm.is_dir() {
        shm.to_owned()
    } else {
        std::env::temp_dir()
    };
    static CLEANED: std::sync::Once = std::sync::Once::new();
    CLEANED.call_once(|| remove_stale_stores(&parent));
    let dir = tempfile::Builder::new()
        .prefix(&format!("{DIR_PREFIX}{}-", std::process::id()))
        .tempdir_in(&parent)
        .expect("a temporary directory for the store");
    let cfg = StoreConfig {
        // No retention and no free-space valve: what is stored stays, so
        // the properties below can count it.
        max_age_hours: 0,
        min_free_mb: 0,
        ..StoreConfig::new(dir.path())
    };
    let clock = Arc::new(TestClock::new(Timestamp::from_nanos(NOW_NS)));
    let store = Store::open(cfg, clock).expect("opening a fresh store");
    Shared {
        store,
        inputs: 0,
        _dir: dir,
    }
}

/// A store for the next input, and a stream name no input has used.
fn next_stream() -> (Store, String) {
    let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if shared.as_ref().is_none_or(|s| s.inputs >= INPUTS_PER_STORE) {
        // The old store closes (its lock released) before the new opens.
        *shared = None;
        *shared = Some(open_store());
    }
    let s = shared.as_mut().expect("opened above");
    s.inputs += 1;
    let n = STREAMS.fetch_add(1, Ordering::Relaxed);
    (s.store.clone(), format!("fuzz-{n}"))
}

/// Runs one input through an [`IngestSession`] into a real store and checks
/// what a producer and the store may rely on; panics when a property fails.
pub fn ingest(data: &[u8]) {
    let input = Input::parse(data);
    let (store, stream) = next_stream();
    let abort = input.options & ABORT != 0;
    let first = connection(&store, &stream, &input, abort);
    let mut persisted = check_connection(&store, &stream, &first);
    let mut ended = !abort;
    if input.options & RESEND != 0 {
        let again = connection(&store, &stream, &input, false);
        let numbers = check_connection(&store, &stream, &again);
        // A fragment PERSISTED on the first connection is acknowledged with
        // the same number when resent.
        let before: BTreeMap<Option<u64>, u64> = timecode_numbers(&first).into_iter().collect();
        for (timecode, number) in timecode_numbers(&again) {
            if let Some(&n) = before.get(&timecode) {
                assert_eq!(n, number, "fragment {timecode:?} was {n}, resent it is {number}");
            }
        }
        persisted.extend(numbers);
        ended = true;
    }
    check_store(&store, &stream, &persisted, ended);
}

/// One PutMedia connection carrying `input`'s body; its ACKs.
fn connection(store: &Store, stream: &str, input: &Input, abort: bool) -> Vec<Ack> {
    let mut session = IngestSession::new(store.clone(), stream.to_owned(), input.timecodes());
    let group = input.options & GROUP != 0;
    if group {
        session = session.with_group_commit();
    }
    let mut acks = Vec::new();
    for (i, piece) in input.chunks().into_iter().enumerate() {
        session.feed(piece, &mut acks);
        if group && i % 3 == 2 {
            session.sync(&mut acks);
        }
    }
    if abort {
        session.abort();
    } else {
        session.finish(&mut acks);
    }
    drop(session);
    if std::env::var_os("EDGE_AGENT_FUZZ_VERBOSE").is_some() {
        eprintln!("{stream}: {acks:?}");
    }
    acks
}

/// (timecode, number) of each PERSISTED.
fn timecode_numbers(acks: &[Ack]) -> Vec<(Option<u64>, u64)> {
    acks.iter()
        .filter(|a| a.kind == AckKind::Persisted)
        .filter_map(|a| Some((a.fragment_timecode, a.fragment_number.as_deref()?.parse().ok()?)))
        .collect()
}

/// Checks one connection's ACKs; the fragment ids it said PERSISTED for.
fn check_connection(store: &Store, stream: &str, acks: &[Ack]) -> BTreeSet<u64> {
    // An ERROR ends the connection: at most one, and nothing after it.
    if let Some(i) = acks.iter().position(|a| a.kind == AckKind::Error) {
        assert_eq!(i, acks.len() - 1, "ACKs after an ERROR: {acks:?}");
        assert!(acks[i].error_id.is_some(), "an ERROR without ErrorId: {acks:?}");
    }
    // Every PERSISTED answers a RECEIVED not yet answered, in order (with
    // group commit several wait; those before it that the store refused
    // never will), with the fragment number that RECEIVED (and BUFFERING)
    // gave, if any.
    let mut received: std::collections::VecDeque<&Ack> = std::collections::VecDeque::new();
    let mut persisted = BTreeSet::new();
    for a in acks {
        match a.kind {
            AckKind::Buffering | AckKind::Received => {
                assert!(
                    a.fragment_timecode.is_some(),
                    "{} without a timecode: {acks:?}",
                    a.kind.as_str()
                );
                if a.kind == AckKind::Received {
                    received.push_back(a);
                }
            }
            AckKind::Persisted => {
                let at = received
                    .iter()
                    .position(|r| r.fragment_timecode == a.fragment_timecode)
                    .unwrap_or_else(|| panic!("PERSISTED without its RECEIVED before it: {acks:?}"));
                let r = received.drain(..=at).last().expect("found above");
                let number = a
                    .fragment_number
                    .as_deref()
                    .unwrap_or_else(|| panic!("PERSISTED without FragmentNumber: {acks:?}"));
                if let Some(n) = &r.fragment_number {
                    assert_eq!(n, number, "RECEIVED and PERSISTED give different numbers: {acks:?}");
                }
                let id: u64 = number
                    .parse()
                    .unwrap_or_else(|_| panic!("FragmentNumber {number:?} is not the store's id"));
                // PERSISTED only names what the store holds, in this stream.
                let meta = store
                    .fragment(FragmentId(id))
                    .unwrap_or_else(|e| panic!("PERSISTED fragment {id} is not in the store ({e}): {acks:?}"));
                assert_eq!(meta.stream, stream, "PERSISTED fragment {id} is another stream's");
                persisted.insert(id);
            }
            _ => {}
        }
    }
    persisted
}

/// What the stream holds against what was said PERSISTED; `ended`: the last
/// connection ended normally (did not break off).
fn check_store(store: &Store, stream: &str, persisted: &BTreeSet<u64>, ended: bool) {
    let held = store.stream(stream).map(|s| s.fragments).unwrap_or(0);
    if !ended {
        // A complete fragment is kept without its PERSISTED when the body
        // breaks off (the producer resends it and is answered then).
        assert!(
            persisted.len() as u64 <= held,
            "{} PERSISTED, {held} held",
            persisted.len()
        );
    } else {
        assert_eq!(
            persisted.len() as u64,
            held,
            "PERSISTED fragments {persisted:?} against {held} held"
        );
    }
    if held > 0 {
        let all = store
            .fragments(stream, Timestamp::from_nanos(0), Timestamp::from_nanos(u64::MAX))
            .expect("listing the stream's fragments");
        for m in &all {
            assert!(m.frames > 0, "fragment {} stored without frames", m.id);
            assert_eq!(
                m.track_frames.iter().map(|&n| u64::from(n)).sum::<u64>(),
                u64::from(m.frames),
                "fragment {}: frames per track do not add up",
                m.id
            );
            // The service's limit (ErrorId 4009) holds for what is stored.
            assert!(
                m.metadata.len() <= fragmenter::fragment::MAX_METADATA_PER_FRAGMENT,
                "fragment {} stored with {} tags",
                m.id,
                m.metadata.len()
            );
        }
        let report = store.verify().expect("verifying the store");
        assert!(
            report.problems.is_empty(),
            "the store does not verify: {:?}",
            report.problems
        );
    }
}

/// Writes the seed corpus into `dir` when `EDGE_AGENT_FUZZ_SEEDS` names it
/// (a target's init calls this: `make fuzz` does it before fuzzing).
pub fn write_seeds_if_asked() {
    let Some(dir) = std::env::var_os("EDGE_AGENT_FUZZ_SEEDS") else {
        return;
    };
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir).expect("creating the seed directory");
    for (name, bytes) in seeds::all() {
        std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("writing a seed");
    }
}
