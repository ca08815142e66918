//! Frame assembly: datagrams or serial bytes in, [`fragmenter::Frame`]s out.
//!
//! * Velodyne: one frame per rotation, cut where the azimuth wraps past 0°.
//! * Ouster: one frame per `frame_id`, emitted as soon as every column of
//!   the window has arrived, or when the next frame starts.
//! * TI mmWave: one frame per TLV frame.
//! * Continental ARS408 (CAN): one frame per measurement cycle, from a list
//!   status message to the next ([`super::ars408::Ars408Assembler`]).
//!
//! A frame's payload is the packets it was built from, each prefixed with
//! its length as a u32 LE ([`pack_packets`]), so replay can re-emit the
//! exact datagrams and playback can decode points ([`super::points`]).
//!
//! Timestamps are absolute UTC. The sensor's own clock is used when it is
//! plausible (within [`TimePolicy::tolerance`] of the arrival time); else
//! the arrival time passed in with the bytes. Frames of one sensor always
//! have strictly increasing times. Bad input is skipped and counted by
//! reason in [`AssemblyStats`], and logged at most once per reason per
//! [`TimePolicy::log_interval`], so a flood of garbage cannot flood the log.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use fragmenter::{Frame, Timestamp, TrackId};

use super::mmwave::{self, MmwaveFramer};
use super::ouster::{self, LidarPacket, OusterError, OusterMeta, Profile};
use super::velodyne::{self, DataPacket, Model, VelodyneError};

/// A packed payload could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PackError {
    /// A record's length prefix or body runs past the end.
    #[error("packed sensor payload: record {index} at byte {offset} needs {needed} bytes, only {left} left")]
    Truncated {
        /// Record index.
        index: usize,
        /// Byte offset of the record's length prefix.
        offset: usize,
        /// Bytes the record needs (prefix or body).
        needed: usize,
        /// Bytes left.
        left: usize,
    },
    /// A packet is too long for a u32 length prefix.
    #[error("sensor packet of {len} bytes is too long to pack (limit 4 GiB)")]
    TooLong {
        /// Its length.
        len: usize,
    },
}

/// Pack packets as u32-LE-length-prefixed records.
pub fn pack_packets<I, B>(packets: I) -> Result<Bytes, PackError>
where
    I: IntoIterator<Item = B>,
    B: AsRef<[u8]>,
{
    let mut out = BytesMut::new();
    for p in packets {
        append_record(&mut out, p.as_ref())?;
    }
    Ok(out.freeze())
}

fn append_record(out: &mut BytesMut, p: &[u8]) -> Result<(), PackError> {
    let len = u32::try_from(p.len()).map_err(|_| PackError::TooLong { len: p.len() })?;
    out.reserve(4 + p.len());
    out.put_u32_le(len);
    out.put_slice(p);
    Ok(())
}

/// Iterate over the records of a packed payload.
pub fn iter_packets(payload: &[u8]) -> PacketIter<'_> {
    PacketIter {
        rest: payload,
        offset: 0,
        index: 0,
        failed: false,
    }
}

/// Read back the packets of a packed payload (borrowed from it).
pub fn unpack_packets(payload: &[u8]) -> Result<Vec<&[u8]>, PackError> {
    iter_packets(payload).collect()
}

/// Iterator over packed records; stops after the first error.
#[derive(Clone, Debug)]
pub struct PacketIter<'a> {
    rest: &'a [u8],
    offset: usize,
    index: usize,
    failed: bool,
}

impl<'a> Iterator for PacketIter<'a> {
    type Item = Result<&'a [u8], PackError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.rest.is_empty() {
            return None;
        }
        let err = |needed: usize, left: usize, s: &Self| PackError::Truncated {
            index: s.index,
            offset: s.offset,
            needed,
            left,
        };
        let Some((len, body)) = self.rest.split_first_chunk::<4>() else {
            self.failed = true;
            return Some(Err(err(4, self.rest.len(), self)));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if body.len() < len {
            self.failed = true;
            return Some(Err(err(len, body.len(), self)));
        }
        let (p, rest) = body.split_at(len);
        self.rest = rest;
        self.offset += 4 + len;
        self.index += 1;
        Some(Ok(p))
    }
}

/// How frame times are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimePolicy {
    /// Use the sensor clock only when it is this close to the arrival time;
    /// further off means no GPS/PTP sync (Ouster's internal clock starts at
    /// 0) or a wrong hour, and the arrival time is better.
    pub tolerance: Duration,
    /// Smallest step between two frames of one sensor: 1 ms, the Matroska
    /// timecode unit, so two frames never share a timecode.
    pub min_step: Duration,
    /// Try the sensor clock at all (false: always arrival time).
    pub prefer_sensor: bool,
    /// At most one warning per skip reason per this interval.
    pub log_interval: Duration,
}

impl Default for TimePolicy {
    fn default() -> Self {
        TimePolicy {
            tolerance: Duration::from_secs(3),
            min_step: Duration::from_millis(1),
            prefer_sensor: true,
            log_interval: Duration::from_secs(10),
        }
    }
}

/// Where a frame's time came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeSource {
    /// The sensor clock (Velodyne GPS top-of-hour counter, Ouster PTP/GPS).
    Sensor,
    /// The sensor clock read as TAI (PTP's default timescale) and shifted by
    /// the 37 s TAI−UTC offset in force since 2017.
    SensorTai,
    /// The arrival time given with the bytes.
    Arrival,
}

impl TimeSource {
    /// Lower-case name for descriptors and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Sensor => "sensor",
            TimeSource::SensorTai => "sensor-tai",
            TimeSource::Arrival => "arrival",
        }
    }
}

/// TAI − UTC since 2017-01-01 (IERS Bulletin C: no leap second since).
const TAI_UTC_OFFSET: Duration = Duration::from_secs(37);

/// Why a packet was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SkipReason {
    /// Shorter than the expected packet.
    Truncated,
    /// Longer than the expected packet.
    Oversized,
    /// A valid packet of another model or configuration.
    WrongModel,
    /// Right size but bad content (flags, azimuths, IDs, TLVs).
    Malformed,
    /// Velodyne azimuth went backwards without wrapping.
    AzimuthBackwards,
    /// Ouster init_id / prod_sn differ from the metadata.
    MetadataMismatch,
    /// A packet of a frame already emitted or older.
    StaleFrame,
    /// Columns already received in this frame.
    Duplicate,
    /// A CAN ID the adapter does not know (or an extended 29-bit ID).
    UnknownId,
    /// A CAN message outside a measurement cycle: before the first list
    /// status message, or after a cycle was cut.
    Orphan,
}

impl SkipReason {
    /// Every reason, in index order.
    pub const ALL: [SkipReason; 10] = [
        SkipReason::Truncated,
        SkipReason::Oversized,
        SkipReason::WrongModel,
        SkipReason::Malformed,
        SkipReason::AzimuthBackwards,
        SkipReason::MetadataMismatch,
        SkipReason::StaleFrame,
        SkipReason::Duplicate,
        SkipReason::UnknownId,
        SkipReason::Orphan,
    ];

    fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Truncated => "truncated",
            SkipReason::Oversized => "oversized",
            SkipReason::WrongModel => "wrong_model",
            SkipReason::Malformed => "malformed",
            SkipReason::AzimuthBackwards => "azimuth_backwards",
            SkipReason::MetadataMismatch => "metadata_mismatch",
            SkipReason::StaleFrame => "stale_frame",
            SkipReason::Duplicate => "duplicate",
            SkipReason::UnknownId => "unknown_id",
            SkipReason::Orphan => "orphan",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Counters of an assembler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AssemblyStats {
    /// Datagrams (or TLV frames, for mmWave) received.
    pub packets: u64,
    /// Packets that went into a frame.
    pub accepted: u64,
    /// Frames emitted.
    pub frames: u64,
    /// Frames emitted incomplete (first rotation, gaps, flush).
    pub partial_frames: u64,
    /// Frames cut because they grew past the packet limit.
    pub forced_cuts: u64,
    /// Frames timed by the sensor clock.
    pub sensor_time_frames: u64,
    /// Frames timed by arrival.
    pub arrival_time_frames: u64,
    /// Frames whose time was moved forward to keep times increasing.
    pub clamped_times: u64,
    /// Ouster packets kept despite a footer CRC mismatch.
    pub crc_mismatches: u64,
    /// mmWave bytes dropped while looking for frames.
    pub garbage_bytes: u64,
    /// Velodyne position packets read.
    pub position_packets: u64,
    /// Velodyne position packets refused (not 512 bytes); not part of
    /// `packets` / the skip counters, which are about data packets.
    pub position_errors: u64,
    skipped: [u64; SkipReason::ALL.len()],
}

impl AssemblyStats {
    /// Packets skipped for `reason`.
    pub fn skipped(&self, reason: SkipReason) -> u64 {
        self.skipped[reason.index()]
    }

    /// Packets skipped for any reason.
    pub fn total_skipped(&self) -> u64 {
        self.skipped.iter().sum()
    }

    /// (reason, count) for every reason with a non-zero count.
    pub fn skipped_by_reason(&self) -> Vec<(SkipReason, u64)> {
        SkipReason::ALL
            .into_iter()
            .map(|r| (r, self.skipped(r)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }
}

/// What an assembled frame holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame counter of this assembler, from 0.
    pub sequence: u64,
    /// Ouster frame_id, mmWave frameNumber; `None` for Velodyne.
    pub frame_id: Option<u32>,
    /// Packets in the payload.
    pub packets: usize,
    /// Ouster: distinct columns received; Velodyne: data blocks.
    pub columns_seen: usize,
    /// Ouster: columns of the window; Velodyne: 0 (not known ahead).
    pub columns_expected: usize,
    /// A whole rotation / all columns / a whole TLV frame.
    pub complete: bool,
    /// Where `frame.pts` came from.
    pub time_source: TimeSource,
}

/// A frame ready for the fragmenter, and what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssembledFrame {
    /// The frame (a key frame; payload = packed packets).
    pub frame: Frame,
    /// Details.
    pub info: FrameInfo,
}

/// Warn at most once per reason per interval, on the arrival clock (pure:
/// no system clock is read).
#[derive(Clone, Debug)]
struct Limiter {
    interval: Duration,
    last: [Option<Timestamp>; SkipReason::ALL.len()],
    suppressed: [u64; SkipReason::ALL.len()],
}

impl Limiter {
    fn new(interval: Duration) -> Self {
        Limiter {
            interval,
            last: [None; SkipReason::ALL.len()],
            suppressed: [0; SkipReason::ALL.len()],
        }
    }

    /// `Some(suppressed since the last warning)` when a warning may go out.
    fn allow(&mut self, r: SkipReason, now: Timestamp) -> Option<u64> {
        let i = r.index();
        // A clock stepping backwards also re-arms the warning.
        let due = match self.last[i] {
            None => true,
            Some(t) => now < t || now.saturating_since(t) >= self.interval,
        };
        if due {
            self.last[i] = Some(now);
            Some(std::mem::take(&mut self.suppressed[i]))
        } else {
            self.suppressed[i] += 1;
            None
        }
    }
}

/// What every assembler shares: the payload being built, times, counters.
#[derive(Debug)]
pub(super) struct Core {
    name: String,
    track: TrackId,
    policy: TimePolicy,
    pub(super) stats: AssemblyStats,
    limiter: Limiter,
    last_pts: Option<Timestamp>,
    sequence: u64,
    // The frame being built.
    payload: BytesMut,
    pub(super) packets: usize,
    first_time: Option<(Timestamp, TimeSource)>,
    last_time: Option<Timestamp>,
}

impl Core {
    pub(super) fn new(name: String, track: TrackId, policy: TimePolicy) -> Self {
        Core {
            name,
            track,
            policy,
            stats: AssemblyStats::default(),
            limiter: Limiter::new(policy.log_interval),
            last_pts: None,
            sequence: 0,
            payload: BytesMut::new(),
            packets: 0,
            first_time: None,
            last_time: None,
        }
    }

    pub(super) fn skip(&mut self, reason: SkipReason, now: Timestamp, detail: &dyn fmt::Display) {
        self.stats.skipped[reason.index()] += 1;
        self.warn(reason, now, detail);
    }

    /// Rate-limited warning, without counting.
    fn warn(&mut self, reason: SkipReason, now: Timestamp, detail: &dyn fmt::Display) {
        if let Some(suppressed) = self.limiter.allow(reason, now) {
            tracing::warn!(
                sensor = %self.name,
                reason = reason.as_str(),
                skipped = self.stats.skipped(reason),
                suppressed,
                "skipped sensor packet: {detail}"
            );
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.packets == 0
    }

    pub(super) fn append(&mut self, bytes: &[u8], time: (Timestamp, TimeSource)) {
        // Datagrams are < 64 KiB, so the u32 prefix cannot fail here; a
        // serial frame is bounded by the framer's limit.
        if append_record(&mut self.payload, bytes).is_err() {
            return;
        }
        self.packets += 1;
        self.stats.accepted += 1;
        if self.first_time.is_none() {
            self.first_time = Some(time);
        }
        self.last_time = Some(time.0);
    }

    /// Emit the frame being built.
    pub(super) fn finish(
        &mut self,
        frame_id: Option<u32>,
        columns_seen: usize,
        columns_expected: usize,
        complete: bool,
    ) -> Option<AssembledFrame> {
        let (first, source) = self.first_time.take()?;
        let last = self.last_time.take().unwrap_or(first);
        let packets = std::mem::take(&mut self.packets);
        let data = self.payload.split().freeze();
        if data.is_empty() {
            return None;
        }
        let mut pts = first;
        if let Some(prev) = self.last_pts {
            let floor = prev + self.policy.min_step;
            if pts < floor {
                pts = floor;
                self.stats.clamped_times += 1;
            }
        }
        self.last_pts = Some(pts);
        match source {
            TimeSource::Arrival => self.stats.arrival_time_frames += 1,
            _ => self.stats.sensor_time_frames += 1,
        }
        self.stats.frames += 1;
        if !complete {
            self.stats.partial_frames += 1;
        }
        let sequence = self.sequence;
        self.sequence += 1;
        Some(AssembledFrame {
            frame: Frame {
                track: self.track,
                pts,
                dts: pts,
                duration: last.saturating_since(first),
                // Every sensor frame decodes on its own.
                keyframe: true,
                data,
            },
            info: FrameInfo {
                sequence,
                frame_id,
                packets,
                columns_seen,
                columns_expected,
                complete,
                time_source: source,
            },
        })
    }

    /// The sensor time if it is within tolerance of arrival (also as TAI),
    /// else the arrival time.
    fn choose_time(&self, arrival: Timestamp, sensor: Option<Timestamp>) -> (Timestamp, TimeSource) {
        if self.policy.prefer_sensor {
            if let Some(s) = sensor {
                let tol = self.policy.tolerance;
                let near = |t: Timestamp| t.saturating_since(arrival).max(arrival.saturating_since(t)) <= tol;
                if near(s) {
                    return (s, TimeSource::Sensor);
                }
                if let Some(utc) = s.checked_sub(TAI_UTC_OFFSET) {
                    if near(utc) {
                        return (utc, TimeSource::SensorTai);
                    }
                }
            }
        }
        (arrival, TimeSource::Arrival)
    }
}

/// Most packets one frame may hold before it is cut anyway (a stopped
/// motor never wraps): 4× a VLS-128 rotation at 5 Hz in dual mode.
pub const MAX_PACKETS_PER_FRAME: usize = 8_192;

/// Consecutive packets of another model after which that model is taken
/// (unless one was set with [`VelodyneAssembler::expect_model`]).
pub const MODEL_RELATCH: u32 = 64;

/// Consecutive backwards packets after which the new azimuths are taken as
/// a discontinuity (sensor restart) rather than stray packets.
const BACKWARDS_RESYNC: u32 = 8;

/// Velodyne rotations from data packets (UDP 2368).
#[derive(Debug)]
pub struct VelodyneAssembler {
    core: Core,
    model: Option<Model>,
    model_expected: bool,
    /// Another model seen in a row, and how many times: a latched model
    /// is replaced after [`MODEL_RELATCH`] such packets, so one stray first
    /// packet cannot lock the real sensor out.
    other_model: Option<(Model, u32)>,
    last_azimuth: Option<u16>,
    started_at_wrap: bool,
    backwards_run: u32,
    position: Option<velodyne::PositionPacket>,
}

impl VelodyneAssembler {
    /// An assembler for `track` with the default time policy.
    pub fn new(track: TrackId) -> Self {
        Self::with_policy(track, TimePolicy::default())
    }

    /// An assembler with a time policy.
    pub fn with_policy(track: TrackId, policy: TimePolicy) -> Self {
        VelodyneAssembler {
            core: Core::new("velodyne".into(), track, policy),
            model: None,
            model_expected: false,
            other_model: None,
            last_azimuth: None,
            started_at_wrap: false,
            backwards_run: 0,
            position: None,
        }
    }

    /// Accept only this model (otherwise the first packet's model is
    /// taken, and replaced if another one persists).
    pub fn expect_model(mut self, model: Model) -> Self {
        self.model = Some(model);
        self.model_expected = true;
        self
    }

    /// The model seen (or expected).
    pub fn model(&self) -> Option<Model> {
        self.model
    }

    /// Counters.
    pub fn stats(&self) -> &AssemblyStats {
        &self.core.stats
    }

    /// The last position packet received with [`Self::push_position`].
    pub fn position(&self) -> Option<&velodyne::PositionPacket> {
        self.position.as_ref()
    }

    /// Record a position packet (UDP 8308) for its PPS / NMEA status.
    pub fn push_position(&mut self, arrival: Timestamp, datagram: &[u8]) {
        match velodyne::parse_position(datagram) {
            Ok(p) => {
                self.core.stats.position_packets += 1;
                self.position = Some(p);
            }
            Err(e) => {
                self.core.stats.position_errors += 1;
                let reason = if datagram.len() < velodyne::POSITION_PACKET_LEN {
                    SkipReason::Truncated
                } else {
                    SkipReason::Oversized
                };
                self.core.warn(reason, arrival, &e);
            }
        }
    }

    /// Feed one data datagram; returns the frames it completes (at most one
    /// in practice).
    pub fn push(&mut self, arrival: Timestamp, datagram: &[u8]) -> Vec<AssembledFrame> {
        self.core.stats.packets += 1;
        let mut out = Vec::new();
        let pkt = match DataPacket::parse(datagram) {
            Ok(p) => p,
            Err(e) => {
                let reason = match e {
                    VelodyneError::Size { expected, got } if got < expected => SkipReason::Truncated,
                    VelodyneError::Size { .. } => SkipReason::Oversized,
                    _ => SkipReason::Malformed,
                };
                self.core.skip(reason, arrival, &e);
                return out;
            }
        };
        let model = pkt.model();
        match self.model {
            None => self.model = Some(model),
            Some(m) if m != model => {
                let run = match self.other_model {
                    Some((o, n)) if o == model => n + 1,
                    _ => 1,
                };
                self.other_model = Some((model, run));
                if self.model_expected || run < MODEL_RELATCH {
                    self.core.skip(
                        SkipReason::WrongModel,
                        arrival,
                        &format_args!("product ID 0x{:02X} ({model}) on a {m} stream", model.product_id()),
                    );
                    return out;
                }
                // The stream really is this model now: start over with it.
                out.extend(self.flush());
                self.model = Some(model);
                self.last_azimuth = None;
            }
            Some(_) => {}
        }
        self.other_model = None;
        let az = pkt.azimuths();
        if let Some(w) = az.windows(2).find(|w| w[1] < w[0] && !velodyne::is_wrap(w[0], w[1])) {
            self.core.skip(
                SkipReason::AzimuthBackwards,
                arrival,
                &format_args!("azimuth goes back from {} to {} inside a packet", w[0], w[1]),
            );
            return out;
        }
        let first = az[0];
        if let Some(prev) = self.last_azimuth {
            if velodyne::is_wrap(prev, first) {
                out.extend(self.finish(true));
                self.started_at_wrap = true;
            } else if first < prev {
                self.backwards_run += 1;
                if self.backwards_run < BACKWARDS_RESYNC {
                    self.core.skip(
                        SkipReason::AzimuthBackwards,
                        arrival,
                        &format_args!("azimuth goes back from {prev} to {first}"),
                    );
                    return out;
                }
                // Persistently behind: the sensor restarted or jumped. Close
                // what we have and follow the new azimuths.
                out.extend(self.finish(false));
                self.started_at_wrap = false;
            }
        }
        self.backwards_run = 0;
        if self.core.packets >= MAX_PACKETS_PER_FRAME {
            self.core.stats.forced_cuts += 1;
            out.extend(self.finish(false));
            self.started_at_wrap = false;
        }
        let sensor = velodyne::time_from_top_of_hour(pkt.timestamp_us(), arrival);
        let time = self.core.choose_time(arrival, sensor);
        self.core.append(datagram, time);
        self.last_azimuth = Some(az[velodyne::BLOCKS_PER_PACKET - 1]);
        if pkt.wraps_inside() {
            // This packet completes the rotation; the next starts a new one.
            out.extend(self.finish(true));
            self.started_at_wrap = true;
        }
        out
    }

    fn finish(&mut self, ended_at_wrap: bool) -> Option<AssembledFrame> {
        let blocks = self.core.packets * velodyne::BLOCKS_PER_PACKET;
        let complete = ended_at_wrap && self.started_at_wrap;
        self.core.finish(None, blocks, 0, complete)
    }

    /// Emit the rotation being built, incomplete (end of stream).
    pub fn flush(&mut self) -> Option<AssembledFrame> {
        let f = self.finish(false);
        self.started_at_wrap = false;
        f
    }
}

/// Ouster frames from lidar packets (UDP 7502).
#[derive(Debug)]
pub struct OusterAssembler {
    core: Core,
    meta: Arc<OusterMeta>,
    other_sizes: Vec<usize>,
    current: Option<u32>,
    last_done: Option<u32>,
    seen: Vec<u64>,
    seen_count: usize,
    stale_run: u32,
}

/// Consecutive stale packets after which the new frame IDs are followed
/// (the sensor restarted and counts from 0 again).
const STALE_RESYNC: u32 = 16;

impl OusterAssembler {
    /// An assembler for `track` with the default time policy.
    pub fn new(track: TrackId, meta: Arc<OusterMeta>) -> Self {
        Self::with_policy(track, meta, TimePolicy::default())
    }

    /// An assembler with a time policy.
    pub fn with_policy(track: TrackId, meta: Arc<OusterMeta>, policy: TimePolicy) -> Self {
        // Sizes of other common Ouster layouts: a datagram of one of these
        // is another sensor or configuration, not a damaged packet.
        let mut other_sizes: Vec<usize> = Profile::ALL
            .into_iter()
            .flat_map(|p| [16usize, 32, 64, 128].map(|px| ouster::PacketFormat::new(p, 16, px).packet_size))
            .filter(|&s| s != meta.format.packet_size)
            .collect();
        other_sizes.sort_unstable();
        other_sizes.dedup();
        let words = meta.columns_per_frame.div_ceil(64);
        OusterAssembler {
            core: Core::new(
                format!("ouster {}", meta.prod_sn.map(|s| s.to_string()).unwrap_or_default()),
                track,
                policy,
            ),
            seen: vec![0; words],
            meta,
            other_sizes,
            current: None,
            last_done: None,
            seen_count: 0,
            stale_run: 0,
        }
    }

    /// The metadata in use.
    pub fn meta(&self) -> &Arc<OusterMeta> {
        &self.meta
    }

    /// Counters.
    pub fn stats(&self) -> &AssemblyStats {
        &self.core.stats
    }

    /// Whether `a` is after `b` in frame-ID order (IDs wrap: u16, or u32
    /// for FUSA).
    fn newer(&self, a: u32, b: u32) -> bool {
        let modulus: u64 = if self.meta.profile == Profile::FusaDual {
            1 << 32
        } else {
            1 << 16
        };
        let d = (u64::from(a) + modulus - u64::from(b) % modulus) % modulus;
        d != 0 && d < modulus / 2
    }

    /// Feed one lidar datagram; returns the frames it completes.
    pub fn push(&mut self, arrival: Timestamp, datagram: &[u8]) -> Vec<AssembledFrame> {
        self.core.stats.packets += 1;
        let mut out = Vec::new();
        let meta = Arc::clone(&self.meta);
        let pkt = match LidarPacket::parse(&meta, datagram) {
            Ok(p) => p,
            Err(e) => {
                let reason = match e {
                    OusterError::PacketSize { got, .. } if self.other_sizes.binary_search(&got).is_ok() => {
                        SkipReason::WrongModel
                    }
                    OusterError::PacketSize { expected, got, .. } if got < expected => SkipReason::Truncated,
                    OusterError::PacketSize { .. } => SkipReason::Oversized,
                    _ => SkipReason::Malformed,
                };
                self.core.skip(reason, arrival, &e);
                return out;
            }
        };
        if let Err(e) = pkt.check_pairing(&meta) {
            self.core.skip(SkipReason::MetadataMismatch, arrival, &e);
            return out;
        }
        if pkt.crc_status() == ouster::CrcStatus::Mismatch {
            // Kept: UDP already checksums the datagram, and the CRC's byte
            // order is unconfirmed on real 3.x firmware. Counted to notice.
            self.core.stats.crc_mismatches += 1;
        }
        let fid = pkt.frame_id();
        match self.current {
            Some(cur) if cur == fid => {}
            Some(cur) if self.newer(fid, cur) => {
                out.extend(self.finish(false));
            }
            Some(cur) => {
                if !self.stale(arrival, fid, cur) {
                    return out;
                }
                out.extend(self.finish(false));
            }
            None => {
                if let Some(done) = self.last_done {
                    if !self.newer(fid, done) && !self.stale(arrival, fid, done) {
                        return out;
                    }
                }
            }
        }
        self.stale_run = 0;
        // Refuse columns already received in this frame (duplicated
        // datagrams would double the payload and the points).
        if self.current == Some(fid) && pkt.columns().any(|c| self.is_seen(usize::from(c.measurement_id))) {
            self.core.skip(
                SkipReason::Duplicate,
                arrival,
                &format_args!(
                    "frame {fid}: columns {}.. already received",
                    pkt.column(0).measurement_id
                ),
            );
            return out;
        }
        if self.core.packets >= MAX_PACKETS_PER_FRAME {
            self.core.stats.forced_cuts += 1;
            out.extend(self.finish(false));
        }
        self.current = Some(fid);
        for c in pkt.columns() {
            let m = usize::from(c.measurement_id);
            if self.meta.in_window(m) && !self.is_seen(m) {
                self.seen[m / 64] |= 1 << (m % 64);
                self.seen_count += 1;
            }
        }
        let sensor = pkt
            .columns()
            .find(|c| c.valid())
            .map(|c| Timestamp::from_nanos(c.timestamp_ns));
        let time = self.core.choose_time(arrival, sensor);
        self.core.append(datagram, time);
        if self.seen_count >= self.meta.columns_in_window() {
            out.extend(self.finish(true));
        }
        out
    }

    /// Count a stale packet; `true` when enough came in a row to follow
    /// them as a new sequence.
    fn stale(&mut self, arrival: Timestamp, fid: u32, reference: u32) -> bool {
        self.stale_run += 1;
        if self.stale_run >= STALE_RESYNC {
            self.last_done = None;
            return true;
        }
        self.core.skip(
            SkipReason::StaleFrame,
            arrival,
            &format_args!("frame_id {fid} is not after {reference}"),
        );
        false
    }

    fn is_seen(&self, m: usize) -> bool {
        self.seen.get(m / 64).is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    fn finish(&mut self, complete: bool) -> Option<AssembledFrame> {
        let fid = self.current.take()?;
        let expected = self.meta.columns_in_window();
        let seen = std::mem::take(&mut self.seen_count);
        self.seen.iter_mut().for_each(|w| *w = 0);
        self.last_done = Some(fid);
        self.core
            .finish(Some(fid), seen, expected, complete && seen >= expected)
    }

    /// Emit the frame being built, incomplete (end of stream).
    pub fn flush(&mut self) -> Option<AssembledFrame> {
        if self.core.is_empty() {
            return None;
        }
        self.finish(false)
    }
}

/// TI mmWave frames from the data UART's bytes.
#[derive(Debug)]
pub struct MmwaveAssembler {
    core: Core,
    framer: MmwaveFramer,
    /// (stream offset just past the chunk, its arrival) for bytes still
    /// buffered: a frame is timed by the arrival of its first byte, since
    /// a 9 KiB frame takes ≈ 100 ms to cross a 921600-baud line.
    chunks: VecDeque<(u64, Timestamp)>,
    pushed: u64,
}

impl MmwaveAssembler {
    /// An assembler for `track` with the default time policy.
    pub fn new(track: TrackId) -> Self {
        Self::with_policy(track, TimePolicy::default())
    }

    /// An assembler with a time policy (only arrival time exists here: the
    /// demo's header has a CPU cycle counter, not a clock).
    pub fn with_policy(track: TrackId, policy: TimePolicy) -> Self {
        MmwaveAssembler {
            core: Core::new("mmwave".into(), track, policy),
            framer: MmwaveFramer::new(),
            chunks: VecDeque::new(),
            pushed: 0,
        }
    }

    /// Counters (garbage bytes included).
    pub fn stats(&self) -> &AssemblyStats {
        &self.core.stats
    }

    /// The framer's own counters.
    pub fn framer_stats(&self) -> mmwave::FramerStats {
        self.framer.stats()
    }

    /// Feed bytes read from the UART at `arrival`; returns the frames they
    /// complete, each timed at the arrival of its first byte.
    pub fn push(&mut self, arrival: Timestamp, chunk: &[u8]) -> Vec<AssembledFrame> {
        self.framer.push(chunk);
        if !chunk.is_empty() {
            self.pushed += chunk.len() as u64;
            self.chunks.push_back((self.pushed, arrival));
        }
        let mut out = Vec::new();
        while let Some((start, raw)) = self.framer.next_frame_at() {
            while self.chunks.front().is_some_and(|&(end, _)| end <= start) {
                self.chunks.pop_front();
            }
            let first = self.chunks.front().map_or(arrival, |&(_, t)| t);
            self.core.stats.packets += 1;
            let number = match mmwave::parse_frame(&raw) {
                Ok(f) => f.header.frame_number,
                Err(e) => {
                    self.core.skip(SkipReason::Malformed, arrival, &e);
                    continue;
                }
            };
            self.core.append(&raw, (first, TimeSource::Arrival));
            self.core.last_time = Some(arrival);
            out.extend(self.core.finish(Some(number), 1, 1, true));
        }
        let consumed = self.framer.consumed();
        while self.chunks.front().is_some_and(|&(end, _)| end <= consumed) {
            self.chunks.pop_front();
        }
        self.core.stats.garbage_bytes = self.framer.stats().garbage_bytes;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::mmwave::{DetectedPoint, FrameBuilder};
    use crate::sensor::ouster::{build_packet, SyntheticPacket};
    use crate::sensor::velodyne::{build_data_packet, Channel, ReturnMode};

    // 2023-11-14 22:00:00 UTC, a whole hour.
    const T0: u64 = 1_699_999_200 * 1_000_000_000;

    fn track() -> TrackId {
        TrackId::new(1).unwrap()
    }

    /// A VLP-32C packet starting at `az` degrees×100, 12 blocks 0.2° apart.
    fn vlp(az: u32, ts_us: u32) -> Vec<u8> {
        let a = std::array::from_fn(|b| ((az + 20 * b as u32) % 36_000) as u16);
        build_data_packet(
            &a,
            &|_, c| Channel {
                distance: 1000 + c as u16,
                intensity: 1,
            },
            ts_us,
            ReturnMode::Strongest,
            Model::Vlp32c,
        )
    }

    #[test]
    fn pack_and_unpack_round_trip() {
        let pkts: Vec<Vec<u8>> = vec![vec![1, 2, 3], vec![], vec![9; 300]];
        let b = pack_packets(&pkts).unwrap();
        assert_eq!(b.len(), 3 * 4 + 303);
        let back = unpack_packets(&b).unwrap();
        assert_eq!(back, pkts.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        assert_eq!(unpack_packets(&[]).unwrap(), Vec::<&[u8]>::new());
        assert_eq!(
            unpack_packets(&b[..b.len() - 1]).unwrap_err(),
            PackError::Truncated {
                index: 2,
                offset: 11,
                needed: 300,
                left: 299
            }
        );
        assert_eq!(
            unpack_packets(&[1, 0]).unwrap_err(),
            PackError::Truncated {
                index: 0,
                offset: 0,
                needed: 4,
                left: 2
            }
        );
    }

    #[test]
    fn velodyne_rotations_are_cut_at_the_wrap() {
        let mut a = VelodyneAssembler::new(track());
        let mut frames = Vec::new();
        let mut sent = Vec::new();
        // 2.5 rotations: each packet advances 2.4°, 150 packets per turn.
        let mut az = 10_000u32;
        for i in 0..480u32 {
            let p = vlp(az % 36_000, (i * 663) % 3_600_000_000);
            sent.push(p.clone());
            frames.extend(a.push(Timestamp::from_nanos(T0 + u64::from(i) * 663_000), &p));
            az += 240;
        }
        frames.extend(a.flush());
        assert_eq!(
            frames.len(),
            4,
            "{:?}",
            frames.iter().map(|f| &f.info).collect::<Vec<_>>()
        );
        let complete: Vec<bool> = frames.iter().map(|f| f.info.complete).collect();
        assert_eq!(complete, vec![false, true, true, false]);
        assert_eq!(frames[1].info.packets, 150);
        // Lossless: the payloads hold exactly the datagrams sent, in order.
        let all: Vec<&[u8]> = frames
            .iter()
            .flat_map(|f| unpack_packets(&f.frame.data).unwrap())
            .collect();
        assert_eq!(all, sent.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        // GPS time within the arrival's hour is used, and times increase.
        assert!(frames.iter().all(|f| f.info.time_source == TimeSource::Sensor));
        assert!(frames.windows(2).all(|w| w[0].frame.pts < w[1].frame.pts));
        assert!(frames.iter().all(|f| f.frame.keyframe && f.frame.track == track()));
        assert_eq!(a.stats().frames, 4);
        assert_eq!(a.stats().accepted, 480);
        assert_eq!(a.model(), Some(Model::Vlp32c));
    }

    #[test]
    fn backwards_truncated_oversized_and_wrong_model_packets_are_counted() {
        let mut a = VelodyneAssembler::new(track());
        let t = |i: u64| Timestamp::from_nanos(T0 + i * 1_000_000);
        assert!(a.push(t(0), &vlp(1000, 0)).is_empty());
        assert!(a.push(t(1), &vlp(1240, 663)).is_empty());
        assert!(a.push(t(2), &vlp(1100, 1326)).is_empty()); // backwards, not a wrap
        assert!(a.push(t(3), &vlp(1480, 1989)[..1000]).is_empty()); // truncated
        let mut big = vlp(1480, 1989);
        big.extend_from_slice(&[0; 6]);
        assert!(a.push(t(4), &big).is_empty()); // VLI-16-like 1212 B
        let mut other = vlp(1480, 1989);
        other[1205] = Model::Vlp16.product_id();
        assert!(a.push(t(5), &other).is_empty());
        let mut bad = vlp(1480, 1989);
        bad[100] = 0;
        assert!(a.push(t(6), &bad).is_empty());
        assert!(a.push(t(7), &vlp(1480, 1989)).is_empty());
        let s = a.stats();
        assert_eq!(s.skipped(SkipReason::AzimuthBackwards), 1);
        assert_eq!(s.skipped(SkipReason::Truncated), 1);
        assert_eq!(s.skipped(SkipReason::Oversized), 1);
        assert_eq!(s.skipped(SkipReason::WrongModel), 1);
        assert_eq!(s.skipped(SkipReason::Malformed), 1);
        assert_eq!(s.total_skipped(), 5);
        assert_eq!(s.packets, 8);
        assert_eq!(s.accepted, 3);
        let f = a.flush().unwrap();
        assert_eq!(f.info.packets, 3);
        assert!(!f.info.complete);
    }

    #[test]
    fn a_persistent_other_model_replaces_a_stray_first_one() {
        let mut a = VelodyneAssembler::new(track());
        let t = |i: u64| Timestamp::from_nanos(T0 + i * 1_000_000);
        let mut stray = vlp(0, 0);
        stray[1205] = 0x22;
        a.push(t(0), &stray);
        let mut frames = Vec::new();
        for i in 0..MODEL_RELATCH as u64 + 10 {
            frames.extend(a.push(t(1 + i), &vlp((i as u32 * 240) % 36_000, 0)));
        }
        assert_eq!(a.model(), Some(Model::Vlp32c));
        assert_eq!(a.stats().skipped(SkipReason::WrongModel), u64::from(MODEL_RELATCH - 1));
        assert_eq!(frames.len(), 1); // the stray packet, flushed alone
        assert_eq!(frames[0].info.packets, 1);
        // An expected model is never replaced.
        let mut a = VelodyneAssembler::new(track()).expect_model(Model::Vlp16);
        for i in 0..MODEL_RELATCH as u64 + 10 {
            a.push(t(i), &vlp(0, 0));
        }
        assert_eq!(a.model(), Some(Model::Vlp16));
        assert_eq!(a.stats().accepted, 0);
    }

    #[test]
    fn persistent_backwards_azimuth_resyncs() {
        let mut a = VelodyneAssembler::new(track());
        let t = |i: u64| Timestamp::from_nanos(T0 + i * 1_000_000);
        a.push(t(0), &vlp(20_000, 0));
        let mut frames = Vec::new();
        for i in 0..BACKWARDS_RESYNC as u64 {
            frames.extend(a.push(t(1 + i), &vlp(5_000 + 240 * i as u32, 0)));
        }
        assert_eq!(frames.len(), 1);
        assert_eq!(
            a.stats().skipped(SkipReason::AzimuthBackwards),
            u64::from(BACKWARDS_RESYNC - 1)
        );
        assert_eq!(a.stats().accepted + a.stats().total_skipped(), a.stats().packets);
    }

    #[test]
    fn implausible_gps_time_falls_back_to_arrival_and_times_increase() {
        let mut a = VelodyneAssembler::new(track());
        // Counter says 30 min into the hour, arrival says 0 min: not synced.
        let arrival = Timestamp::from_nanos(T0 + 5_000_000);
        let mut frames = a.push(arrival, &vlp(35_000, 1_800_000_000));
        frames.extend(a.push(arrival, &vlp(500, 1_800_000_663)));
        frames.extend(a.flush());
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].info.time_source, TimeSource::Arrival);
        assert_eq!(frames[0].frame.pts, arrival);
        // Same arrival time: the second frame is pushed 1 ms later.
        assert_eq!(frames[1].frame.pts.as_nanos(), arrival.as_nanos() + 1_000_000);
        assert_eq!(a.stats().clamped_times, 1);
    }

    fn meta() -> Arc<OusterMeta> {
        Arc::new(
            OusterMeta::from_json(
                r#"{"beam_altitude_angles":[2,1,0,-1,-2,-3,-4,-5],"beam_azimuth_angles":[0,0,0,0,0,0,0,0],
                "data_format":{"columns_per_frame":64,"columns_per_packet":16,"pixels_per_column":8,
                "udp_profile_lidar":"RNG19_RFL8_SIG16_NIR16_DUAL"},
                "initialization_id":5,"prod_sn":"42","lidar_mode":"64x10"}"#,
            )
            .unwrap(),
        )
    }

    fn opkt(m: &OusterMeta, frame_id: u32, first_column: u16, ts: u64) -> Vec<u8> {
        build_packet(
            m,
            &SyntheticPacket {
                frame_id,
                init_id: 5,
                prod_sn: 42,
                first_column,
                timestamp_ns: ts,
                column_ns: 1_000,
                range_mm: 2_000,
            },
        )
    }

    #[test]
    fn ouster_frames_complete_when_every_column_arrived() {
        let m = meta();
        let mut a = OusterAssembler::new(track(), Arc::clone(&m));
        let mut frames = Vec::new();
        let mut sent = Vec::new();
        for f in 0..3u32 {
            for p in 0..4u16 {
                let b = opkt(&m, 65_534 + f, p * 16, 1_000 + u64::from(p));
                sent.push(b.clone());
                let at = Timestamp::from_nanos(T0 + u64::from(f) * 100_000_000 + u64::from(p) * 1_000_000);
                frames.extend(a.push(at, &b));
            }
        }
        assert_eq!(frames.len(), 3);
        // frame_id wraps from 65535 to 0 and is still "newer".
        let ids: Vec<Option<u32>> = frames.iter().map(|f| f.info.frame_id).collect();
        assert_eq!(ids, vec![Some(65_534), Some(65_535), Some(0)]);
        assert!(frames
            .iter()
            .all(|f| f.info.complete && f.info.columns_seen == 64 && f.info.packets == 4));
        // Internal-clock timestamps (µs after boot) are not UTC: arrival.
        assert!(frames.iter().all(|f| f.info.time_source == TimeSource::Arrival));
        let all: Vec<&[u8]> = frames
            .iter()
            .flat_map(|f| unpack_packets(&f.frame.data).unwrap())
            .collect();
        assert_eq!(all, sent.iter().map(|p| p.as_slice()).collect::<Vec<_>>());
        assert!(a.flush().is_none());
    }

    #[test]
    fn ouster_partial_stale_duplicate_and_mismatched_packets() {
        let m = meta();
        let mut a = OusterAssembler::new(track(), Arc::clone(&m));
        let t = |i: u64| Timestamp::from_nanos(T0 + i * 1_000_000);
        assert!(a.push(t(0), &opkt(&m, 10, 0, 0)).is_empty());
        assert!(a.push(t(1), &opkt(&m, 10, 0, 0)).is_empty()); // duplicate
        assert!(a.push(t(2), &opkt(&m, 9, 16, 0)).is_empty()); // stale
        let mut other = opkt(&m, 10, 16, 0);
        other[4] = 6; // init_id 6
        assert!(a.push(t(3), &other).is_empty());
        let b = opkt(&m, 10, 16, 0);
        assert!(a.push(t(4), &b[..100]).is_empty());
        // A whole packet of another profile (OS-x-128 dual).
        let wrong = vec![0u8; ouster::PacketFormat::new(Profile::Dual, 16, 128).packet_size];
        assert!(a.push(t(5), &wrong).is_empty());
        // Next frame: the first one is emitted as partial (16 of 64).
        let f = a.push(t(6), &opkt(&m, 11, 0, 0));
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].info.frame_id, Some(10));
        assert!(!f[0].info.complete);
        assert_eq!((f[0].info.columns_seen, f[0].info.columns_expected), (16, 64));
        // A late packet of frame 10 is stale now.
        assert!(a.push(t(7), &opkt(&m, 10, 32, 0)).is_empty());
        let s = a.stats();
        assert_eq!(s.skipped(SkipReason::Duplicate), 1);
        assert_eq!(s.skipped(SkipReason::StaleFrame), 2);
        assert_eq!(s.skipped(SkipReason::MetadataMismatch), 1);
        assert_eq!(s.skipped(SkipReason::Truncated), 1);
        assert_eq!(s.skipped(SkipReason::WrongModel), 1);
        assert_eq!(a.flush().unwrap().info.frame_id, Some(11));
    }

    #[test]
    fn ouster_ptp_times_are_used_when_sane_and_tai_is_recognized() {
        let m = meta();
        let arrival = T0 + 500_000_000;
        let mut a = OusterAssembler::new(track(), Arc::clone(&m));
        let mut frames = Vec::new();
        for p in 0..4u16 {
            frames.extend(a.push(Timestamp::from_nanos(arrival), &opkt(&m, 1, p * 16, T0 + 1_000)));
        }
        for p in 0..4u16 {
            frames.extend(a.push(
                Timestamp::from_nanos(arrival + 100_000_000),
                &opkt(&m, 2, p * 16, T0 + 37_000_000_000 + 100_000_000),
            ));
        }
        assert_eq!(frames[0].info.time_source, TimeSource::Sensor);
        assert_eq!(frames[0].frame.pts.as_nanos(), T0 + 1_000);
        assert_eq!(frames[1].info.time_source, TimeSource::SensorTai);
        assert_eq!(frames[1].frame.pts.as_nanos(), T0 + 100_000_000);
    }

    #[test]
    fn stale_frame_ids_resync_after_a_restart() {
        let m = meta();
        let mut a = OusterAssembler::new(track(), Arc::clone(&m));
        let t = |i: u64| Timestamp::from_nanos(T0 + i * 1_000_000);
        for p in 0..4u16 {
            a.push(t(u64::from(p)), &opkt(&m, 30_000, p * 16, 0));
        }
        // The sensor restarts and counts from 0: behind by half the range.
        let mut frames = Vec::new();
        for i in 0..(STALE_RESYNC as u64 + 4) {
            frames.extend(a.push(t(10 + i), &opkt(&m, (i / 4) as u32, (i % 4) as u16 * 16, 0)));
        }
        assert!(!frames.is_empty());
        assert_eq!(a.stats().skipped(SkipReason::StaleFrame), u64::from(STALE_RESYNC - 1));
        assert_eq!(a.stats().accepted + a.stats().total_skipped(), a.stats().packets);
    }

    #[test]
    fn mmwave_frames_come_out_one_per_tlv_frame() {
        let mut a = MmwaveAssembler::new(track());
        let p = [DetectedPoint {
            x: 1.0,
            y: 2.0,
            z: 0.0,
            velocity: -1.0,
        }];
        let f1 = FrameBuilder::new(1).points(&p).build();
        let f2 = FrameBuilder::new(2).build();
        let mut stream = vec![0xEE; 5];
        stream.extend_from_slice(&f1);
        stream.extend_from_slice(&f2);
        let mut frames = Vec::new();
        for (i, chunk) in stream.chunks(7).enumerate() {
            frames.extend(a.push(Timestamp::from_nanos(T0 + i as u64 * 10_000_000), chunk));
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(unpack_packets(&frames[0].frame.data).unwrap(), vec![f1.as_slice()]);
        assert_eq!(frames[1].info.frame_id, Some(2));
        assert_eq!(a.stats().garbage_bytes, 5);
        assert!(frames[0].frame.pts < frames[1].frame.pts);
        // Timed by the chunk holding the magic word: f1 starts in chunk 0.
        assert_eq!(frames[0].frame.pts.as_nanos(), T0);
        let last_chunk_of_f1 = (5 + f1.len() - 1) / 7;
        assert_eq!(
            frames[0].frame.duration,
            Duration::from_millis(10 * last_chunk_of_f1 as u64)
        );
        assert_eq!(
            frames[1].frame.pts.as_nanos(),
            T0 + ((5 + f1.len()) / 7) as u64 * 10_000_000
        );
    }

    #[test]
    fn warnings_are_rate_limited_per_reason() {
        let mut l = Limiter::new(Duration::from_secs(10));
        let t = |s: u64| Timestamp::from_nanos(T0 + s * 1_000_000_000);
        assert_eq!(l.allow(SkipReason::Truncated, t(0)), Some(0));
        assert_eq!(l.allow(SkipReason::Truncated, t(1)), None);
        assert_eq!(l.allow(SkipReason::Oversized, t(1)), Some(0));
        assert_eq!(l.allow(SkipReason::Truncated, t(9)), None);
        assert_eq!(l.allow(SkipReason::Truncated, t(10)), Some(2));
        assert_eq!(l.allow(SkipReason::Truncated, t(5)), Some(0)); // clock stepped back
    }
}
