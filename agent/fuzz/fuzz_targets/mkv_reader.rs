//! The incremental MKV reader alone (no store, so many times faster): the
//! body (after the crate docs' header) read whole and read in its pieces
//! must give the same events and the same error, and no panic either way.
//!
//! `EDGE_AGENT_FUZZ_SEEDS=DIR` writes the seed corpus into DIR first.

#![no_main]

use edge_agent_fuzz::Input;
use fragmenter::mkv::{MkvError, MkvEvent, MkvReader};
use libfuzzer_sys::fuzz_target;

/// Every event, then the error or `None` at the end.
fn read(chunks: &[&[u8]]) -> (Vec<MkvEvent>, Option<MkvError>, u64) {
    let mut r = MkvReader::default();
    let mut events = Vec::new();
    let mut last = 0;
    for (i, c) in chunks.iter().enumerate() {
        r.feed(c);
        if i + 1 == chunks.len() {
            r.finish();
        }
        loop {
            match r.next_event() {
                Ok(Some(ev)) => events.push(ev),
                Ok(None) => break,
                Err(e) => {
                    // An error sticks: the stream cannot be resynchronised.
                    assert_eq!(r.next_event(), Err(e.clone()));
                    return (events, Some(e), r.position());
                }
            }
            assert!(r.position() >= last, "the position went back");
            last = r.position();
        }
    }
    if chunks.is_empty() {
        r.finish();
        assert_eq!(r.next_event(), Ok(None));
    }
    (events, None, r.position())
}

fuzz_target!(
    init: edge_agent_fuzz::write_seeds_if_asked(),
    |data: &[u8]| {
        let input = Input::parse(data);
        let whole = read(&[input.body]);
        let pieces = read(&input.chunks());
        // Compared as printed: a SamplingFrequency may be NaN, which is
        // not equal to itself.
        assert_eq!(
            format!("{:?}", whole.0),
            format!("{:?}", pieces.0),
            "events depend on how the body was cut"
        );
        assert_eq!(whole.1, pieces.1, "the error depends on how the body was cut");
        if whole.1.is_none() {
            assert_eq!(whole.2, input.body.len() as u64, "a body read without error is read to its end");
        }
    }
);
