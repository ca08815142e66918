//! `POST /putMedia` as the gateway runs it: the input (see the crate docs:
//! options, piece sizes, body) fed into an `IngestSession` on a real store,
//! then the properties of `edge_agent_fuzz::ingest` checked.
//!
//! `EDGE_AGENT_FUZZ_SEEDS=DIR` writes the seed corpus into DIR first.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(
    init: edge_agent_fuzz::write_seeds_if_asked(),
    |data: &[u8]| edge_agent_fuzz::ingest(data)
);
