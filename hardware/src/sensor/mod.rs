//! LIDAR and RADAR sensor adapters: wire-format parsers, frame assembly into
//! [`fragmenter::Frame`]s, Matroska track descriptors, point decoding for
//! playback, and pcap reading for replay.
//!
//! The parsers and assemblers are pure: no sockets, no serial ports, no
//! clocks. [`capture`] is the thin I/O edge: a reader thread per sensor feeds
//! the assemblers with `(arrival time, bytes)` from a UDP socket, a serial
//! port or (with the `socketcan` feature) a SocketCAN interface, and
//! forwards the frames they return, so the same code runs live, from a
//! pcap, and in tests.
//!
//! | sensor | parser | frame | codec ID |
//! |---|---|---|---|
//! | Velodyne (UDP 2368 / 8308) | [`velodyne`] | one rotation | `O_VELODYNE/<MODEL>_PACKET` |
//! | Ouster (UDP 7502) | [`ouster`] | one `frame_id` | `O_OUSTER/LIDAR_PACKET` |
//! | TI mmWave out-of-box demo (UART) | [`mmwave`] | one TLV frame | `O_TIMMWAVE/OOB_UART` |
//! | Continental ARS408-21 (CAN, SocketCAN) | [`ars408`] | one measurement cycle | `O_CAN/ARS408` |
//!
//! A frame payload is the sensor's datagrams, each prefixed with its length
//! as a u32 LE ([`assembler::pack_packets`]), so replay re-emits them byte
//! for byte and [`points::decode_frame`] turns them into points.

pub mod ars408;
pub mod assembler;
pub mod capture;
pub mod mmwave;
pub mod ouster;
pub mod pcap;
pub mod points;
pub mod track;
pub mod uri;
pub mod velodyne;
mod wire;

#[cfg(test)]
mod fuzz_tests;

pub use ars408::{Ars408Assembler, Ars408Mode, CanFrame, StoredCanFrame};
pub use assembler::{
    pack_packets, unpack_packets, AssembledFrame, AssemblyStats, FrameInfo, MmwaveAssembler, OusterAssembler,
    SkipReason, TimePolicy, TimeSource, VelodyneAssembler,
};
pub use capture::{SensorCapture, SensorCaptureError, SensorOptions};
pub use points::{decode_frame, FrameDecoder, Point};
pub use uri::{SensorUri, UriError};
