//! The edge agent's code, as a library so that more than the `edge-agent`
//! binary can link it: the binary (`main.rs`, which only parses arguments
//! and hands over) and the ingest fuzz target (`agent/fuzz`), which drives
//! [`kvs::session::IngestSession`] on a real [`store::Store`].

pub mod bench;
pub mod capture;
pub mod cli;
pub mod config;
pub mod export;
pub mod http;
pub mod kvs;
pub mod output;
pub mod probe;
pub mod replay;
pub mod run;
pub mod schedule;
pub mod source;
pub mod store;
pub mod telemetry;
