//! Amazon Kinesis Video Streams wire protocol pieces shared by the PutMedia
//! uploader and the KVS-compatible ingest gateway (issue 6, in progress):
//! ACK events and their stream framing, ErrorIds with what a producer must
//! do about each, and the producer start timestamp header.
//!
//! Facts come from `../shared/reference/kvs-protocol.md` (§2, §4, §5).
// The uploader and the gateway that use these are not written yet; the
// modules are complete and tested on their own.
#![allow(dead_code)]

pub mod ack;
pub mod errors;
pub mod ingest;
pub mod timestamp;
