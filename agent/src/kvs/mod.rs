//! Amazon Kinesis Video Streams wire protocol pieces shared by the PutMedia
//! uploader and the KVS-compatible ingest gateway (issue 6, in progress):
//! ACK events and their stream framing, ErrorIds with what a producer must
//! do about each, the producer start timestamp header, the service's
//! per-fragment rules, and the gateway's ingest session (used by
//! `POST /putMedia`, `crate::http::ingest`); on the sending side, the
//! control plane (AWS's SDK), the credentials and the TLS client the
//! uploader's [`upstream::Upstream`] is made of.
//!
//! Facts come from `../shared/reference/kvs-protocol.md` (§2, §4, §5).

pub mod ack;
pub mod control_plane;
pub mod credentials;
pub mod errors;
pub mod ingest;
pub mod session;
pub mod sigv4;
pub mod timestamp;
pub mod tls;
pub mod tracks;
pub mod uploader;
pub mod upstream;
