//! Continental ARS408-21 RADAR over CAN: message decoding, the stored form
//! of a CAN frame, and assembly of one measurement cycle into one frame.
//!
//! **Provisional decoding.** The signal layout follows the ArduPilot-style
//! table in `shared/reference/sensors.md` §2.2 (Motorola bit order, 11-bit
//! IDs, message IDs offset by `sensor_id × 0x10`). The public decoders
//! disagree on some fields (tier4 reads `ProbOfExist` where this layout has
//! `MeasState`, and `MeasCounter` little-endian), so every decode here must
//! be validated against Continental's `ARS408_can_database_ch0.dbc` before
//! it is relied on. Fields whose exact bits are not spelled out in that
//! table are marked *provisional* below: the five-bit RMS indices of
//! `Obj_2_Quality` (taken as contiguous Motorola fields after
//! `DistLong_rms`), the `RadarState` configuration bits of b5, and
//! `RadarPowerCfg` (read as the 3-bit field `(b3 & 3) << 1 | b4 >> 7`).
//!
//! The raw frames are what is stored, so a better decoder can be applied to
//! old recordings: a frame payload is the cycle's CAN frames in their
//! [stored form](StoredCanFrame) (`t_ns u64 LE, can_id u32 LE, flags u8,
//! dlc u8, data[8]`), each length-prefixed by [`pack_packets`].
//!
//! [`pack_packets`]: super::assembler::pack_packets

use std::fmt;
use std::str::FromStr;

use fragmenter::{Timestamp, TrackId};

use super::assembler::{AssembledFrame, AssemblyStats, Core, SkipReason, TimePolicy, TimeSource};

/// Bytes of a CAN frame as pushed to [`Ars408Assembler::push`]:
/// `can_id u32 LE, flags u8, dlc u8, data[8]`.
pub const CAN_FRAME_LEN: usize = 14;
/// Bytes of a [`StoredCanFrame`]: `t_ns u64 LE` then the 14 bytes above.
pub const STORED_FRAME_LEN: usize = 8 + CAN_FRAME_LEN;
/// [`CanFrame::flags`]: 29-bit extended identifier.
pub const FLAG_EXTENDED: u8 = 0x01;
/// [`CanFrame::flags`]: remote transmission request.
pub const FLAG_REMOTE: u8 = 0x02;
/// [`CanFrame::flags`]: SocketCAN error frame.
pub const FLAG_ERROR: u8 = 0x04;
/// Largest 11-bit identifier.
pub const MAX_STANDARD_ID: u32 = 0x7FF;
/// Largest 29-bit identifier.
pub const MAX_EXTENDED_ID: u32 = 0x1FFF_FFFF;
/// Most CAN messages one cycle may hold before it is cut anyway: a full
/// object list (255 objects × general, quality, extended, warning) plus
/// the interleaved state messages fits well below.
pub const MAX_MESSAGES_PER_CYCLE: usize = 4_096;

/// What was wrong with a CAN frame or its record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ars408Error {
    /// A frame or stored-frame record of the wrong size.
    #[error("CAN frame record is {got} bytes: expected {expected}")]
    RecordSize {
        /// Bytes expected.
        expected: usize,
        /// Bytes found.
        got: usize,
    },
    /// A DLC over 8: not a classic CAN frame.
    #[error("CAN frame 0x{can_id:03X}: DLC {dlc} is over 8 (classic CAN only)")]
    BadDlc {
        /// Identifier.
        can_id: u32,
        /// DLC found.
        dlc: u8,
    },
    /// Fewer data bytes than the message's signals need.
    #[error("CAN frame 0x{can_id:03X} ({message}): DLC {dlc}, the decoder needs {needed} bytes")]
    Short {
        /// Identifier.
        can_id: u32,
        /// Message name.
        message: &'static str,
        /// DLC found.
        dlc: u8,
        /// Bytes needed.
        needed: u8,
    },
    /// A remote or error frame where a data frame was expected.
    #[error("CAN frame 0x{can_id:03X} is a {kind} frame, not a data frame")]
    NotData {
        /// Identifier.
        can_id: u32,
        /// `remote` or `error`.
        kind: &'static str,
    },
}

/// A classic CAN frame as read from the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CanFrame {
    /// Identifier without flag bits (11 or 29 bits).
    pub can_id: u32,
    /// [`FLAG_EXTENDED`], [`FLAG_REMOTE`], [`FLAG_ERROR`].
    pub flags: u8,
    /// Data length code, 0..=8 for a valid classic frame.
    pub dlc: u8,
    /// Data; bytes past `dlc` are kept as given (zero when built here).
    pub data: [u8; 8],
}

impl CanFrame {
    /// A data frame; IDs above 0x7FF are marked extended; at most 8 bytes
    /// of `payload` are taken.
    pub fn new(can_id: u32, payload: &[u8]) -> Self {
        let n = payload.len().min(8);
        let mut data = [0u8; 8];
        data[..n].copy_from_slice(&payload[..n]);
        CanFrame {
            can_id: can_id & MAX_EXTENDED_ID,
            flags: if can_id > MAX_STANDARD_ID { FLAG_EXTENDED } else { 0 },
            dlc: n as u8,
            data,
        }
    }

    /// The data bytes the DLC covers.
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.dlc.min(8))]
    }

    /// A 29-bit identifier.
    pub fn is_extended(&self) -> bool {
        self.flags & FLAG_EXTENDED != 0
    }

    /// A remote transmission request.
    pub fn is_remote(&self) -> bool {
        self.flags & FLAG_REMOTE != 0
    }

    /// A SocketCAN error frame.
    pub fn is_error(&self) -> bool {
        self.flags & FLAG_ERROR != 0
    }

    /// The 14-byte form: `can_id u32 LE, flags u8, dlc u8, data[8]`.
    pub fn to_bytes(&self) -> [u8; CAN_FRAME_LEN] {
        let mut b = [0u8; CAN_FRAME_LEN];
        b[..4].copy_from_slice(&self.can_id.to_le_bytes());
        b[4] = self.flags;
        b[5] = self.dlc;
        b[6..].copy_from_slice(&self.data);
        b
    }

    /// Read the 14-byte form back (exactly 14 bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, Ars408Error> {
        let b: &[u8; CAN_FRAME_LEN] = b.try_into().map_err(|_| Ars408Error::RecordSize {
            expected: CAN_FRAME_LEN,
            got: b.len(),
        })?;
        let mut data = [0u8; 8];
        data.copy_from_slice(&b[6..]);
        Ok(CanFrame {
            can_id: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            flags: b[4],
            dlc: b[5],
            data,
        })
    }

    /// The data bytes when there are at least `needed`.
    fn need(&self, id: MessageId, needed: u8) -> Result<&[u8; 8], Ars408Error> {
        if self.dlc < needed {
            return Err(Ars408Error::Short {
                can_id: self.can_id,
                message: id.name(),
                dlc: self.dlc,
                needed,
            });
        }
        Ok(&self.data)
    }
}

/// A CAN frame with its arrival time: the record a frame payload holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct StoredCanFrame {
    /// Arrival, ns since the Unix epoch (UTC).
    pub t_ns: u64,
    /// The frame.
    pub frame: CanFrame,
}

impl StoredCanFrame {
    /// The 22-byte form: `t_ns u64 LE, can_id u32 LE, flags u8, dlc u8,
    /// data[8]`.
    pub fn to_bytes(&self) -> [u8; STORED_FRAME_LEN] {
        let mut b = [0u8; STORED_FRAME_LEN];
        b[..8].copy_from_slice(&self.t_ns.to_le_bytes());
        b[8..].copy_from_slice(&self.frame.to_bytes());
        b
    }

    /// Read the 22-byte form back (exactly 22 bytes).
    pub fn from_bytes(b: &[u8]) -> Result<Self, Ars408Error> {
        let wrong = || Ars408Error::RecordSize {
            expected: STORED_FRAME_LEN,
            got: b.len(),
        };
        if b.len() != STORED_FRAME_LEN {
            return Err(wrong());
        }
        let (t, f) = b.split_at(8);
        let t: [u8; 8] = t.try_into().map_err(|_| wrong())?;
        Ok(StoredCanFrame {
            t_ns: u64::from_le_bytes(t),
            frame: CanFrame::from_bytes(f)?,
        })
    }
}

/// The ARS408 messages, by base identifier (sensor 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// 0x200, host → radar configuration.
    RadarCfg,
    /// 0x201, radar state.
    RadarState,
    /// 0x202, host → radar filter configuration.
    FilterCfg,
    /// 0x203, filter state header.
    FilterStateHeader,
    /// 0x204, filter state configuration.
    FilterStateCfg,
    /// 0x300, host → radar ego speed.
    SpeedInformation,
    /// 0x301, host → radar yaw rate.
    YawRateInformation,
    /// 0x400, host → radar collision detection configuration.
    CollDetCfg,
    /// 0x401, host → radar collision detection region.
    CollDetRegionCfg,
    /// 0x408, collision detection state.
    CollDetState,
    /// 0x600, cluster list status.
    ClusterStatus,
    /// 0x60A, object list status.
    ObjectStatus,
    /// 0x60B, object general information.
    ObjectGeneral,
    /// 0x60C, object quality.
    ObjectQuality,
    /// 0x60D, object extended information.
    ObjectExtended,
    /// 0x60E, object collision warning.
    ObjectWarning,
    /// 0x700, software version.
    VersionId,
    /// 0x701, cluster general information.
    ClusterGeneral,
    /// 0x702, cluster quality.
    ClusterQuality,
}

impl MessageId {
    /// Every message.
    pub const ALL: [MessageId; 19] = [
        MessageId::RadarCfg,
        MessageId::RadarState,
        MessageId::FilterCfg,
        MessageId::FilterStateHeader,
        MessageId::FilterStateCfg,
        MessageId::SpeedInformation,
        MessageId::YawRateInformation,
        MessageId::CollDetCfg,
        MessageId::CollDetRegionCfg,
        MessageId::CollDetState,
        MessageId::ClusterStatus,
        MessageId::ObjectStatus,
        MessageId::ObjectGeneral,
        MessageId::ObjectQuality,
        MessageId::ObjectExtended,
        MessageId::ObjectWarning,
        MessageId::VersionId,
        MessageId::ClusterGeneral,
        MessageId::ClusterQuality,
    ];

    /// The identifier for sensor 0.
    pub fn base(self) -> u32 {
        match self {
            MessageId::RadarCfg => 0x200,
            MessageId::RadarState => 0x201,
            MessageId::FilterCfg => 0x202,
            MessageId::FilterStateHeader => 0x203,
            MessageId::FilterStateCfg => 0x204,
            MessageId::SpeedInformation => 0x300,
            MessageId::YawRateInformation => 0x301,
            MessageId::CollDetCfg => 0x400,
            MessageId::CollDetRegionCfg => 0x401,
            MessageId::CollDetState => 0x408,
            MessageId::ClusterStatus => 0x600,
            MessageId::ObjectStatus => 0x60A,
            MessageId::ObjectGeneral => 0x60B,
            MessageId::ObjectQuality => 0x60C,
            MessageId::ObjectExtended => 0x60D,
            MessageId::ObjectWarning => 0x60E,
            MessageId::VersionId => 0x700,
            MessageId::ClusterGeneral => 0x701,
            MessageId::ClusterQuality => 0x702,
        }
    }

    /// The DBC message name.
    pub fn name(self) -> &'static str {
        match self {
            MessageId::RadarCfg => "RadarCfg",
            MessageId::RadarState => "RadarState",
            MessageId::FilterCfg => "FilterCfg",
            MessageId::FilterStateHeader => "FilterState_Header",
            MessageId::FilterStateCfg => "FilterState_Cfg",
            MessageId::SpeedInformation => "SpeedInformation",
            MessageId::YawRateInformation => "YawRateInformation",
            MessageId::CollDetCfg => "CollDetCfg",
            MessageId::CollDetRegionCfg => "CollDetRegionCfg",
            MessageId::CollDetState => "CollDetState",
            MessageId::ClusterStatus => "Cluster_0_Status",
            MessageId::ObjectStatus => "Obj_0_Status",
            MessageId::ObjectGeneral => "Obj_1_General",
            MessageId::ObjectQuality => "Obj_2_Quality",
            MessageId::ObjectExtended => "Obj_3_Extended",
            MessageId::ObjectWarning => "Obj_4_Warning",
            MessageId::VersionId => "VersionID",
            MessageId::ClusterGeneral => "Cluster_1_General",
            MessageId::ClusterQuality => "Cluster_2_Quality",
        }
    }

    /// The identifier of this message from sensor `sensor_id` (0..=7).
    pub fn can_id(self, sensor_id: u8) -> u32 {
        self.base() + 0x10 * u32::from(sensor_id & 7)
    }

    /// (message, sensor ID) of an 11-bit identifier; `None` when it is not
    /// an ARS408 message.
    pub fn from_can_id(can_id: u32) -> Option<(MessageId, u8)> {
        if can_id > MAX_STANDARD_ID {
            return None;
        }
        let sensor = ((can_id & 0x70) >> 4) as u8;
        let base = can_id & !0x70;
        MessageId::ALL
            .into_iter()
            .find(|m| m.base() == base)
            .map(|m| (m, sensor))
    }

    /// The list mode the message belongs to, `None` for mode-independent
    /// messages (state, configuration, ego motion).
    pub fn list_mode(self) -> Option<Ars408Mode> {
        match self {
            MessageId::ObjectStatus
            | MessageId::ObjectGeneral
            | MessageId::ObjectQuality
            | MessageId::ObjectExtended
            | MessageId::ObjectWarning => Some(Ars408Mode::Object),
            MessageId::ClusterStatus | MessageId::ClusterGeneral | MessageId::ClusterQuality => {
                Some(Ars408Mode::Cluster)
            }
            _ => None,
        }
    }
}

/// Which list the radar sends (`RadarCfg.OutputType` 1 or 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Ars408Mode {
    /// Tracked objects: 0x60A status, 0x60B..0x60E per object.
    #[default]
    Object,
    /// Raw clusters: 0x600 status, 0x701/0x702 per cluster.
    Cluster,
}

impl Ars408Mode {
    /// `object` or `cluster`.
    pub fn as_str(self) -> &'static str {
        match self {
            Ars408Mode::Object => "object",
            Ars408Mode::Cluster => "cluster",
        }
    }

    /// The list status message that starts a cycle.
    pub fn status(self) -> MessageId {
        match self {
            Ars408Mode::Object => MessageId::ObjectStatus,
            Ars408Mode::Cluster => MessageId::ClusterStatus,
        }
    }

    /// The per-target message counted against the status.
    pub fn general(self) -> MessageId {
        match self {
            Ars408Mode::Object => MessageId::ObjectGeneral,
            Ars408Mode::Cluster => MessageId::ClusterGeneral,
        }
    }
}

impl fmt::Display for Ars408Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Ars408Mode {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "object" | "objects" => Ok(Ars408Mode::Object),
            "cluster" | "clusters" => Ok(Ars408Mode::Cluster),
            _ => Err(()),
        }
    }
}

/// Dynamic property of an object or cluster (3 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum DynProp {
    /// 0.
    #[default]
    Moving,
    /// 1.
    Stationary,
    /// 2.
    Oncoming,
    /// 3.
    StationaryCandidate,
    /// 4.
    Unknown,
    /// 5.
    CrossingStationary,
    /// 6.
    CrossingMoving,
    /// 7.
    Stopped,
}

impl DynProp {
    /// From the 3-bit value (higher bits ignored).
    pub fn from_bits(v: u8) -> Self {
        match v & 7 {
            0 => DynProp::Moving,
            1 => DynProp::Stationary,
            2 => DynProp::Oncoming,
            3 => DynProp::StationaryCandidate,
            4 => DynProp::Unknown,
            5 => DynProp::CrossingStationary,
            6 => DynProp::CrossingMoving,
            _ => DynProp::Stopped,
        }
    }

    /// The 3-bit value.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Object class of `Obj_3_Extended` (3 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ObjectClass {
    /// 0.
    #[default]
    Point,
    /// 1.
    Car,
    /// 2.
    Truck,
    /// 3.
    Pedestrian,
    /// 4.
    Motorcycle,
    /// 5.
    Bicycle,
    /// 6.
    Wide,
    /// 7.
    Reserved,
}

impl ObjectClass {
    /// From the 3-bit value (higher bits ignored).
    pub fn from_bits(v: u8) -> Self {
        match v & 7 {
            0 => ObjectClass::Point,
            1 => ObjectClass::Car,
            2 => ObjectClass::Truck,
            3 => ObjectClass::Pedestrian,
            4 => ObjectClass::Motorcycle,
            5 => ObjectClass::Bicycle,
            6 => ObjectClass::Wide,
            _ => ObjectClass::Reserved,
        }
    }

    /// The 3-bit value.
    pub fn bits(self) -> u8 {
        self as u8
    }
}

/// Measurement state of `Obj_2_Quality` (3 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum MeasState {
    /// 0.
    #[default]
    Deleted,
    /// 1.
    New,
    /// 2.
    Measured,
    /// 3.
    Predicted,
    /// 4, deleted for a merge.
    DeletedForMerge,
    /// 5, new from a merge.
    NewFromMerge,
    /// 6 or 7: not defined.
    Other(u8),
}

impl MeasState {
    /// From the 3-bit value (higher bits ignored).
    pub fn from_bits(v: u8) -> Self {
        match v & 7 {
            0 => MeasState::Deleted,
            1 => MeasState::New,
            2 => MeasState::Measured,
            3 => MeasState::Predicted,
            4 => MeasState::DeletedForMerge,
            5 => MeasState::NewFromMerge,
            o => MeasState::Other(o),
        }
    }

    /// The 3-bit value.
    pub fn bits(self) -> u8 {
        match self {
            MeasState::Deleted => 0,
            MeasState::New => 1,
            MeasState::Measured => 2,
            MeasState::Predicted => 3,
            MeasState::DeletedForMerge => 4,
            MeasState::NewFromMerge => 5,
            MeasState::Other(o) => o & 7,
        }
    }
}

/// 0x60A `Obj_0_Status`: starts an object list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ObjectStatus {
    /// Objects in the list (b0).
    pub nof_objects: u8,
    /// Cycle counter (b1:b2, big-endian).
    pub meas_counter: u16,
    /// Interface version (b3 >> 4).
    pub interface_version: u8,
}

impl ObjectStatus {
    /// Decode; needs 4 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        let b = f.need(MessageId::ObjectStatus, 4)?;
        Ok(ObjectStatus {
            nof_objects: b[0],
            meas_counter: u16::from_be_bytes([b[1], b[2]]),
            interface_version: b[3] >> 4,
        })
    }

    /// Encode (synthetic fixtures).
    pub fn encode(&self) -> [u8; 8] {
        let [hi, lo] = self.meas_counter.to_be_bytes();
        [
            self.nof_objects,
            hi,
            lo,
            (self.interface_version & 0xF) << 4,
            0,
            0,
            0,
            0,
        ]
    }
}

/// 0x600 `Cluster_0_Status`: starts a cluster list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ClusterStatus {
    /// Near-range clusters (b0).
    pub nof_clusters_near: u8,
    /// Far-range clusters (b1).
    pub nof_clusters_far: u8,
    /// Cycle counter (b2:b3, big-endian).
    pub meas_counter: u16,
    /// Interface version (b4 >> 4).
    pub interface_version: u8,
}

impl ClusterStatus {
    /// Decode; needs 5 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        let b = f.need(MessageId::ClusterStatus, 5)?;
        Ok(ClusterStatus {
            nof_clusters_near: b[0],
            nof_clusters_far: b[1],
            meas_counter: u16::from_be_bytes([b[2], b[3]]),
            interface_version: b[4] >> 4,
        })
    }

    /// Near + far: the `Cluster_1_General` messages that follow.
    pub fn total(&self) -> usize {
        usize::from(self.nof_clusters_near) + usize::from(self.nof_clusters_far)
    }

    /// Encode (synthetic fixtures).
    pub fn encode(&self) -> [u8; 8] {
        let [hi, lo] = self.meas_counter.to_be_bytes();
        [
            self.nof_clusters_near,
            self.nof_clusters_far,
            hi,
            lo,
            (self.interface_version & 0xF) << 4,
            0,
            0,
            0,
        ]
    }
}

/// `raw × scale + offset`, computed in f64.
fn phys(raw: u32, scale: f64, offset: f64) -> f32 {
    (f64::from(raw) * scale + offset) as f32
}

/// The raw value of `v`, rounded and clamped to `bits`.
fn quant(v: f32, scale: f64, offset: f64, bits: u32) -> u32 {
    let max = (1u32 << bits) - 1;
    let r = ((f64::from(v) - offset) / scale).round();
    if r.is_nan() || r <= 0.0 {
        0
    } else if r >= f64::from(max) {
        max
    } else {
        r as u32
    }
}

/// Scales shared by `Obj_1_General` and `Cluster_1_General`.
mod scale {
    pub const DIST_LONG: (f64, f64) = (0.2, -500.0);
    pub const OBJ_DIST_LAT: (f64, f64) = (0.2, -204.6);
    pub const CLU_DIST_LAT: (f64, f64) = (0.2, -102.3);
    pub const VREL_LONG: (f64, f64) = (0.25, -128.0);
    pub const VREL_LAT: (f64, f64) = (0.25, -64.0);
    pub const RCS: (f64, f64) = (0.5, -64.0);
    pub const AREL_LONG: (f64, f64) = (0.01, -10.0);
    pub const AREL_LAT: (f64, f64) = (0.01, -2.5);
    pub const ORIENTATION: (f64, f64) = (0.4, -180.0);
    pub const SIZE: (f64, f64) = (0.2, 0.0);
}

/// The fields of a general (per-target) message.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct General {
    /// Object or cluster ID (b0).
    pub id: u8,
    /// Longitudinal distance (x), m.
    pub dist_long: f32,
    /// Lateral distance (y), m.
    pub dist_lat: f32,
    /// Longitudinal relative velocity, m/s.
    pub vrel_long: f32,
    /// Lateral relative velocity, m/s.
    pub vrel_lat: f32,
    /// Dynamic property.
    pub dyn_prop: DynProp,
    /// Radar cross-section, dBm².
    pub rcs: f32,
}

impl General {
    fn decode(f: &CanFrame, id: MessageId) -> Result<Self, Ars408Error> {
        let b = f.need(id, 8)?;
        let w = |i: usize| u32::from(b[i]);
        let (lat_raw, lat) = match id {
            MessageId::ClusterGeneral => (((w(2) & 3) << 8) | w(3), scale::CLU_DIST_LAT),
            _ => (((w(2) & 7) << 8) | w(3), scale::OBJ_DIST_LAT),
        };
        Ok(General {
            id: b[0],
            dist_long: phys((w(1) << 5) | (w(2) >> 3), scale::DIST_LONG.0, scale::DIST_LONG.1),
            dist_lat: phys(lat_raw, lat.0, lat.1),
            vrel_long: phys((w(4) << 2) | (w(5) >> 6), scale::VREL_LONG.0, scale::VREL_LONG.1),
            vrel_lat: phys(((w(5) & 0x3F) << 3) | (w(6) >> 5), scale::VREL_LAT.0, scale::VREL_LAT.1),
            dyn_prop: DynProp::from_bits(b[6]),
            rcs: phys(w(7), scale::RCS.0, scale::RCS.1),
        })
    }

    fn encode(&self, cluster: bool) -> [u8; 8] {
        let dl = quant(self.dist_long, scale::DIST_LONG.0, scale::DIST_LONG.1, 13);
        let dlat = if cluster {
            quant(self.dist_lat, scale::CLU_DIST_LAT.0, scale::CLU_DIST_LAT.1, 10)
        } else {
            quant(self.dist_lat, scale::OBJ_DIST_LAT.0, scale::OBJ_DIST_LAT.1, 11)
        };
        let vl = quant(self.vrel_long, scale::VREL_LONG.0, scale::VREL_LONG.1, 10);
        let vlat = quant(self.vrel_lat, scale::VREL_LAT.0, scale::VREL_LAT.1, 9);
        [
            self.id,
            (dl >> 5) as u8,
            (((dl & 0x1F) << 3) | (dlat >> 8)) as u8,
            dlat as u8,
            (vl >> 2) as u8,
            (((vl & 3) << 6) | (vlat >> 3)) as u8,
            (((vlat & 7) << 5) as u8) | self.dyn_prop.bits(),
            quant(self.rcs, scale::RCS.0, scale::RCS.1, 8) as u8,
        ]
    }
}

/// 0x60B `Obj_1_General`: one tracked object. Lateral distance has 11
/// bits, offset −204.6 m.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ObjectGeneral(pub General);

impl ObjectGeneral {
    /// Decode; needs 8 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        General::decode(f, MessageId::ObjectGeneral).map(ObjectGeneral)
    }

    /// Encode (synthetic fixtures); values are rounded and clamped.
    pub fn encode(&self) -> [u8; 8] {
        self.0.encode(false)
    }
}

/// 0x701 `Cluster_1_General`: one cluster. Lateral distance has 10 bits,
/// offset −102.3 m.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ClusterGeneral(pub General);

impl ClusterGeneral {
    /// Decode; needs 8 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        General::decode(f, MessageId::ClusterGeneral).map(ClusterGeneral)
    }

    /// Encode (synthetic fixtures); values are rounded and clamped.
    pub fn encode(&self) -> [u8; 8] {
        self.0.encode(true)
    }
}

/// 0x60C `Obj_2_Quality`. The RMS fields are 5-bit indices into
/// Continental's table (*provisional* bit positions past `DistLong_rms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ObjectQuality {
    /// Object ID (b0).
    pub id: u8,
    /// b1 >> 3.
    pub dist_long_rms: u8,
    /// (b1 & 7) << 2 | b2 >> 6.
    pub dist_lat_rms: u8,
    /// (b2 >> 1) & 0x1F.
    pub vrel_long_rms: u8,
    /// (b2 & 1) << 4 | b3 >> 4.
    pub vrel_lat_rms: u8,
    /// (b3 & 0xF) << 1 | b4 >> 7.
    pub arel_long_rms: u8,
    /// (b4 >> 2) & 0x1F.
    pub arel_lat_rms: u8,
    /// (b4 & 3) << 3 | b5 >> 5.
    pub orientation_rms: u8,
    /// (b6 >> 2) & 7 (tier4 reads existence probability here).
    pub meas_state: MeasState,
    /// b6 >> 5: 0 invalid, then < 25 %, < 50 %, < 75 %, < 90 %, < 99 %,
    /// < 99.9 %, ≤ 100 %.
    pub prob_of_exist: u8,
}

impl ObjectQuality {
    /// Decode; needs 7 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        let b = f.need(MessageId::ObjectQuality, 7)?;
        Ok(ObjectQuality {
            id: b[0],
            dist_long_rms: b[1] >> 3,
            dist_lat_rms: ((b[1] & 7) << 2) | (b[2] >> 6),
            vrel_long_rms: (b[2] >> 1) & 0x1F,
            vrel_lat_rms: ((b[2] & 1) << 4) | (b[3] >> 4),
            arel_long_rms: ((b[3] & 0xF) << 1) | (b[4] >> 7),
            arel_lat_rms: (b[4] >> 2) & 0x1F,
            orientation_rms: ((b[4] & 3) << 3) | (b[5] >> 5),
            meas_state: MeasState::from_bits(b[6] >> 2),
            prob_of_exist: b[6] >> 5,
        })
    }

    /// The upper bound of the existence probability class (0..=1), `None`
    /// for 0 (invalid).
    pub fn prob_of_exist_max(&self) -> Option<f32> {
        const MAX: [f32; 7] = [0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0];
        MAX.get(usize::from(self.prob_of_exist).checked_sub(1)?).copied()
    }

    /// Encode (synthetic fixtures); fields are masked to their widths.
    pub fn encode(&self) -> [u8; 8] {
        let m = |v: u8| v & 0x1F;
        [
            self.id,
            (m(self.dist_long_rms) << 3) | (m(self.dist_lat_rms) >> 2),
            ((m(self.dist_lat_rms) & 3) << 6) | (m(self.vrel_long_rms) << 1) | (m(self.vrel_lat_rms) >> 4),
            ((m(self.vrel_lat_rms) & 0xF) << 4) | (m(self.arel_long_rms) >> 1),
            ((m(self.arel_long_rms) & 1) << 7) | (m(self.arel_lat_rms) << 2) | (m(self.orientation_rms) >> 3),
            (m(self.orientation_rms) & 7) << 5,
            ((self.prob_of_exist & 7) << 5) | (self.meas_state.bits() << 2),
            0,
        ]
    }
}

/// 0x60D `Obj_3_Extended`.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct ObjectExtended {
    /// Object ID (b0).
    pub id: u8,
    /// Longitudinal relative acceleration, m/s² (11 bits, 0.01, −10).
    pub arel_long: f32,
    /// Lateral relative acceleration, m/s² (9 bits, 0.01, −2.5).
    pub arel_lat: f32,
    /// Class (b3 & 7).
    pub class: ObjectClass,
    /// Orientation angle, ° (10 bits, 0.4, −180).
    pub orientation_angle: f32,
    /// Length, m (b6 × 0.2).
    pub length: f32,
    /// Width, m (b7 × 0.2).
    pub width: f32,
}

impl ObjectExtended {
    /// Decode; needs 8 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        let b = f.need(MessageId::ObjectExtended, 8)?;
        let w = |i: usize| u32::from(b[i]);
        Ok(ObjectExtended {
            id: b[0],
            arel_long: phys((w(1) << 3) | (w(2) >> 5), scale::AREL_LONG.0, scale::AREL_LONG.1),
            arel_lat: phys(((w(2) & 0x1F) << 4) | (w(3) >> 4), scale::AREL_LAT.0, scale::AREL_LAT.1),
            class: ObjectClass::from_bits(b[3]),
            orientation_angle: phys((w(4) << 2) | (w(5) >> 6), scale::ORIENTATION.0, scale::ORIENTATION.1),
            length: phys(w(6), scale::SIZE.0, scale::SIZE.1),
            width: phys(w(7), scale::SIZE.0, scale::SIZE.1),
        })
    }

    /// Encode (synthetic fixtures); values are rounded and clamped.
    pub fn encode(&self) -> [u8; 8] {
        let al = quant(self.arel_long, scale::AREL_LONG.0, scale::AREL_LONG.1, 11);
        let alat = quant(self.arel_lat, scale::AREL_LAT.0, scale::AREL_LAT.1, 9);
        let o = quant(self.orientation_angle, scale::ORIENTATION.0, scale::ORIENTATION.1, 10);
        [
            self.id,
            (al >> 3) as u8,
            (((al & 7) << 5) | (alat >> 4)) as u8,
            (((alat & 0xF) << 4) as u8) | self.class.bits(),
            (o >> 2) as u8,
            ((o & 3) << 6) as u8,
            quant(self.length, scale::SIZE.0, scale::SIZE.1, 8) as u8,
            quant(self.width, scale::SIZE.0, scale::SIZE.1, 8) as u8,
        ]
    }
}

/// 0x201 `RadarState`: configuration echo and error flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RadarState {
    /// b0 bit 7.
    pub nvm_write_status: bool,
    /// b0 bit 6.
    pub nvm_read_status: bool,
    /// ((b1 << 2) + (b2 >> 6)) << 1, m.
    pub max_distance: u16,
    /// b2 bit 5.
    pub persistent_error: bool,
    /// b2 bit 4.
    pub interference: bool,
    /// b2 bit 3.
    pub temperature_error: bool,
    /// b2 bit 2.
    pub temporary_error: bool,
    /// b2 bit 1.
    pub voltage_error: bool,
    /// b4 & 7.
    pub sensor_id: u8,
    /// (b4 >> 4) & 7.
    pub sort_index: u8,
    /// (b3 & 3) << 1 | b4 >> 7 (*provisional*: 3-bit RadarPowerCfg).
    pub radar_power: u8,
    /// b5 >> 6.
    pub motion_rx_state: u8,
    /// b5 bit 5 (*provisional*).
    pub send_ext_info: bool,
    /// b5 bit 4 (*provisional*).
    pub send_quality: bool,
    /// (b5 >> 2) & 3: 0 none, 1 objects, 2 clusters (*provisional*).
    pub output_type: u8,
    /// b5 bit 1 (*provisional*).
    pub ctrl_relay: bool,
    /// (b7 >> 2) & 7.
    pub rcs_threshold: u8,
}

impl RadarState {
    /// Decode; needs 8 bytes.
    pub fn decode(f: &CanFrame) -> Result<Self, Ars408Error> {
        let b = f.need(MessageId::RadarState, 8)?;
        let bit = |byte: u8, n: u8| byte & (1 << n) != 0;
        Ok(RadarState {
            nvm_write_status: bit(b[0], 7),
            nvm_read_status: bit(b[0], 6),
            max_distance: ((u16::from(b[1]) << 2) | u16::from(b[2] >> 6)) << 1,
            persistent_error: bit(b[2], 5),
            interference: bit(b[2], 4),
            temperature_error: bit(b[2], 3),
            temporary_error: bit(b[2], 2),
            voltage_error: bit(b[2], 1),
            sensor_id: b[4] & 7,
            sort_index: (b[4] >> 4) & 7,
            radar_power: ((b[3] & 3) << 1) | (b[4] >> 7),
            motion_rx_state: b[5] >> 6,
            send_ext_info: bit(b[5], 5),
            send_quality: bit(b[5], 4),
            output_type: (b[5] >> 2) & 3,
            ctrl_relay: bit(b[5], 1),
            rcs_threshold: (b[7] >> 2) & 7,
        })
    }

    /// Encode (synthetic fixtures); fields are masked to their widths,
    /// `max_distance` is rounded down to an even number of metres.
    pub fn encode(&self) -> [u8; 8] {
        let f = |v: bool, n: u8| u8::from(v) << n;
        let md = (self.max_distance >> 1) & 0x3FF;
        let power = self.radar_power & 7;
        [
            f(self.nvm_write_status, 7) | f(self.nvm_read_status, 6),
            (md >> 2) as u8,
            (((md & 3) << 6) as u8)
                | f(self.persistent_error, 5)
                | f(self.interference, 4)
                | f(self.temperature_error, 3)
                | f(self.temporary_error, 2)
                | f(self.voltage_error, 1),
            power >> 1,
            ((power & 1) << 7) | ((self.sort_index & 7) << 4) | (self.sensor_id & 7),
            ((self.motion_rx_state & 3) << 6)
                | f(self.send_ext_info, 5)
                | f(self.send_quality, 4)
                | ((self.output_type & 3) << 2)
                | f(self.ctrl_relay, 1),
            0,
            (self.rcs_threshold & 7) << 2,
        ]
    }
}

/// A decoded CAN message.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Message {
    /// 0x60A.
    ObjectStatus(ObjectStatus),
    /// 0x60B.
    ObjectGeneral(ObjectGeneral),
    /// 0x60C.
    ObjectQuality(ObjectQuality),
    /// 0x60D.
    ObjectExtended(ObjectExtended),
    /// 0x600.
    ClusterStatus(ClusterStatus),
    /// 0x701.
    ClusterGeneral(ClusterGeneral),
    /// 0x201.
    RadarState(RadarState),
    /// An ARS408 message not decoded here (0x60E, 0x702, 0x700,
    /// configuration and ego motion), kept raw.
    Other(MessageId, CanFrame),
    /// Not an ARS408 identifier (or a 29-bit one), kept raw.
    Unknown(CanFrame),
}

/// A decoded message and the sensor ID its identifier carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Decoded {
    /// Sensor ID 0..=7 (`(can_id & 0x70) >> 4`); 0 for unknown IDs.
    pub sensor_id: u8,
    /// The message.
    pub message: Message,
}

/// Decode one CAN frame. Unknown IDs are not an error (they come back as
/// [`Message::Unknown`]); DLC over 8, remote and error frames, and too few
/// bytes for the message's signals are.
pub fn decode(f: &CanFrame) -> Result<Decoded, Ars408Error> {
    if f.dlc > 8 {
        return Err(Ars408Error::BadDlc {
            can_id: f.can_id,
            dlc: f.dlc,
        });
    }
    if f.is_error() || f.is_remote() {
        return Err(Ars408Error::NotData {
            can_id: f.can_id,
            kind: if f.is_error() { "error" } else { "remote" },
        });
    }
    let found = if f.is_extended() {
        None
    } else {
        MessageId::from_can_id(f.can_id)
    };
    let Some((id, sensor_id)) = found else {
        return Ok(Decoded {
            sensor_id: 0,
            message: Message::Unknown(*f),
        });
    };
    let message = match id {
        MessageId::ObjectStatus => Message::ObjectStatus(ObjectStatus::decode(f)?),
        MessageId::ObjectGeneral => Message::ObjectGeneral(ObjectGeneral::decode(f)?),
        MessageId::ObjectQuality => Message::ObjectQuality(ObjectQuality::decode(f)?),
        MessageId::ObjectExtended => Message::ObjectExtended(ObjectExtended::decode(f)?),
        MessageId::ClusterStatus => Message::ClusterStatus(ClusterStatus::decode(f)?),
        MessageId::ClusterGeneral => Message::ClusterGeneral(ClusterGeneral::decode(f)?),
        MessageId::RadarState => Message::RadarState(RadarState::decode(f)?),
        other => Message::Other(other, *f),
    };
    Ok(Decoded { sensor_id, message })
}

/// The cycle being assembled.
#[derive(Clone, Copy, Debug)]
struct OpenCycle {
    meas_counter: u16,
    expected: usize,
    general: usize,
}

/// ARS408 frames from CAN messages: one frame per measurement cycle, from
/// a list status message (0x60A, or 0x600 in cluster mode) up to the next.
///
/// * A frame is emitted when the next status message arrives (or on
///   [`flush`](Self::flush)), timed at the arrival of its status message;
///   it is complete when it holds as many general messages (0x60B / 0x701)
///   as the status announced.
/// * Every ARS408 message of the cycle is kept (quality, extended,
///   warnings, radar state, the host's ego-motion and configuration
///   messages), in arrival order and [stored form](StoredCanFrame), so
///   replay re-emits the bus exactly.
/// * The sensor ID is taken from the first status message unless set with
///   [`expect_sensor_id`](Self::expect_sensor_id); other radars on the same
///   bus are skipped as [`SkipReason::WrongModel`], as are the other list
///   mode's messages.
/// * Skipped and counted: DLC over 8, remote and error frames
///   ([`SkipReason::Malformed`]); fewer data bytes than the signals need
///   ([`SkipReason::Truncated`]); unknown or 29-bit IDs
///   ([`SkipReason::UnknownId`]); messages before the first status
///   ([`SkipReason::Orphan`]).
#[derive(Debug)]
pub struct Ars408Assembler {
    core: Core,
    mode: Ars408Mode,
    sensor_id: Option<u8>,
    cycle: Option<OpenCycle>,
}

impl Ars408Assembler {
    /// An assembler for `track` with the default time policy.
    pub fn new(track: TrackId, mode: Ars408Mode) -> Self {
        Self::with_policy(track, mode, TimePolicy::default())
    }

    /// An assembler with a time policy (only arrival time exists: the CAN
    /// messages carry no clock).
    pub fn with_policy(track: TrackId, mode: Ars408Mode, policy: TimePolicy) -> Self {
        Ars408Assembler {
            core: Core::new(format!("ars408 {mode}"), track, policy),
            mode,
            sensor_id: None,
            cycle: None,
        }
    }

    /// Follow only the radar with this sensor ID (0..=7).
    pub fn expect_sensor_id(mut self, sensor_id: u8) -> Self {
        self.sensor_id = Some(sensor_id & 7);
        self
    }

    /// The list mode.
    pub fn mode(&self) -> Ars408Mode {
        self.mode
    }

    /// The sensor ID followed, once known.
    pub fn sensor_id(&self) -> Option<u8> {
        self.sensor_id
    }

    /// Counters.
    pub fn stats(&self) -> &AssemblyStats {
        &self.core.stats
    }

    /// Feed one CAN frame in its 14-byte form ([`CanFrame::to_bytes`]).
    pub fn push(&mut self, arrival: Timestamp, bytes: &[u8]) -> Vec<AssembledFrame> {
        match CanFrame::from_bytes(bytes) {
            Ok(f) => self.push_frame(arrival, &f),
            Err(e) => {
                self.core.stats.packets += 1;
                let reason = if bytes.len() < CAN_FRAME_LEN {
                    SkipReason::Truncated
                } else {
                    SkipReason::Oversized
                };
                self.core.skip(reason, arrival, &e);
                Vec::new()
            }
        }
    }

    /// Feed one CAN frame; returns the frame of the cycle it closes.
    pub fn push_frame(&mut self, arrival: Timestamp, f: &CanFrame) -> Vec<AssembledFrame> {
        self.core.stats.packets += 1;
        let mut out = Vec::new();
        let decoded = match decode(f) {
            Ok(d) => d,
            Err(e) => {
                let reason = match e {
                    Ars408Error::Short { .. } => SkipReason::Truncated,
                    _ => SkipReason::Malformed,
                };
                self.core.skip(reason, arrival, &e);
                return out;
            }
        };
        let id = match decoded.message {
            Message::Unknown(_) => {
                let kind = if f.is_extended() { "extended " } else { "" };
                self.core.skip(
                    SkipReason::UnknownId,
                    arrival,
                    &format_args!("{kind}CAN ID 0x{:03X} is not an ARS408 message", f.can_id),
                );
                return out;
            }
            Message::ObjectStatus(_) => MessageId::ObjectStatus,
            Message::ObjectGeneral(_) => MessageId::ObjectGeneral,
            Message::ObjectQuality(_) => MessageId::ObjectQuality,
            Message::ObjectExtended(_) => MessageId::ObjectExtended,
            Message::ClusterStatus(_) => MessageId::ClusterStatus,
            Message::ClusterGeneral(_) => MessageId::ClusterGeneral,
            Message::RadarState(_) => MessageId::RadarState,
            Message::Other(id, _) => id,
        };
        if id.list_mode().is_some_and(|m| m != self.mode) {
            let other = if self.mode == Ars408Mode::Object {
                Ars408Mode::Cluster
            } else {
                Ars408Mode::Object
            };
            self.core.skip(
                SkipReason::WrongModel,
                arrival,
                &format_args!(
                    "{} (0x{:03X}) is a {other} list message, the adapter is in {} mode (set ?mode={other})",
                    id.name(),
                    f.can_id,
                    self.mode
                ),
            );
            return out;
        }
        if let Some(expected) = self.sensor_id {
            if decoded.sensor_id != expected {
                self.core.skip(
                    SkipReason::WrongModel,
                    arrival,
                    &format_args!(
                        "{} (0x{:03X}) is from ARS408 sensor ID {}, following sensor ID {expected}",
                        id.name(),
                        f.can_id,
                        decoded.sensor_id
                    ),
                );
                return out;
            }
        }
        let record = StoredCanFrame {
            t_ns: arrival.as_nanos(),
            frame: *f,
        }
        .to_bytes();
        let time = (arrival, TimeSource::Arrival);
        let status = match decoded.message {
            Message::ObjectStatus(s) => Some((s.meas_counter, usize::from(s.nof_objects))),
            Message::ClusterStatus(s) => Some((s.meas_counter, s.total())),
            _ => None,
        };
        if let Some((meas_counter, expected)) = status {
            out.extend(self.finish());
            self.sensor_id = Some(decoded.sensor_id);
            self.cycle = Some(OpenCycle {
                meas_counter,
                expected,
                general: 0,
            });
            self.core.append(&record, time);
            return out;
        }
        if self.cycle.is_none() {
            self.core.skip(
                SkipReason::Orphan,
                arrival,
                &format_args!(
                    "{} (0x{:03X}) before a {} status message",
                    id.name(),
                    f.can_id,
                    self.mode.status().name()
                ),
            );
            return out;
        }
        if self.core.packets >= MAX_MESSAGES_PER_CYCLE {
            self.core.stats.forced_cuts += 1;
            out.extend(self.finish());
            self.core.skip(
                SkipReason::Orphan,
                arrival,
                &format_args!("{MAX_MESSAGES_PER_CYCLE} messages without a status message: cycle cut"),
            );
            return out;
        }
        if id == self.mode.general() {
            if let Some(c) = &mut self.cycle {
                c.general += 1;
            }
        }
        self.core.append(&record, time);
        out
    }

    /// Emit the open cycle.
    fn finish(&mut self) -> Option<AssembledFrame> {
        let c = self.cycle.take()?;
        self.core.finish(
            Some(u32::from(c.meas_counter)),
            c.general,
            c.expected,
            c.general == c.expected,
        )
    }

    /// Emit the cycle being built (end of stream); complete when all its
    /// general messages had arrived.
    pub fn flush(&mut self) -> Option<AssembledFrame> {
        if self.core.is_empty() {
            self.cycle = None;
            return None;
        }
        self.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::assembler::unpack_packets;
    use crate::sensor::points::{decode_frame, Point};
    use crate::sensor::track::{ars408_track, Descriptor, ARS408_CODEC_ID};
    use crate::sensor::uri::{SensorUri, UriError};
    use proptest::collection::vec;
    use proptest::prelude::*;

    const T0: u64 = 1_700_000_000_000_000_000;
    const MS: u64 = 1_000_000;

    fn track() -> TrackId {
        TrackId::new(1).unwrap()
    }

    fn t(ms: u64) -> Timestamp {
        Timestamp::from_nanos(T0 + ms * MS)
    }

    fn close(a: f32, b: f32, step: f64) -> bool {
        f64::from((a - b).abs()) <= step / 2.0 + 1e-4
    }

    fn obj(id: u8, x: f32, y: f32, v: f32) -> General {
        General {
            id,
            dist_long: x,
            dist_lat: y,
            vrel_long: v,
            vrel_lat: -1.25,
            dyn_prop: DynProp::Oncoming,
            rcs: 12.5,
        }
    }

    fn status_frame(n: u8, counter: u16) -> CanFrame {
        let s = ObjectStatus {
            nof_objects: n,
            meas_counter: counter,
            interface_version: 1,
        };
        CanFrame::new(MessageId::ObjectStatus.can_id(0), &s.encode())
    }

    fn general_frame(g: General) -> CanFrame {
        CanFrame::new(MessageId::ObjectGeneral.can_id(0), &ObjectGeneral(g).encode())
    }

    /// One object cycle: status + `n` objects (+ quality / extended).
    fn cycle(n: u8, counter: u16) -> Vec<CanFrame> {
        let mut v = vec![status_frame(n, counter)];
        for i in 0..n {
            v.push(general_frame(obj(i, 10.0 + f32::from(i), -2.0, 3.5)));
        }
        for i in 0..n {
            let q = ObjectQuality {
                id: i,
                meas_state: MeasState::Measured,
                prob_of_exist: 7,
                ..Default::default()
            };
            v.push(CanFrame::new(MessageId::ObjectQuality.can_id(0), &q.encode()));
        }
        v
    }

    #[test]
    fn general_messages_decode_to_the_encoded_values() {
        let cases = [
            (0.0f32, 0.0f32, 0.0f32, 0.0f32, -64.0f32),
            (-500.0, -204.6, -128.0, -64.0, 63.5),
            (1138.2, 204.8, 127.75, 63.75, 0.0),
            (57.3, -12.9, -7.62, 3.2, 11.7),
            (0.1, 0.1, 0.1, 0.1, 0.2),
        ];
        for (i, &(x, y, vl, vt, rcs)) in cases.iter().enumerate() {
            for dp in 0..8u8 {
                let g = General {
                    id: i as u8 * 31,
                    dist_long: x,
                    dist_lat: y,
                    vrel_long: vl,
                    vrel_lat: vt,
                    dyn_prop: DynProp::from_bits(dp),
                    rcs,
                };
                let f = CanFrame::new(0x60B, &ObjectGeneral(g).encode());
                let d = ObjectGeneral::decode(&f).unwrap().0;
                assert_eq!(d.id, g.id);
                assert_eq!(d.dyn_prop, g.dyn_prop);
                assert!(close(d.dist_long, x, 0.2), "{d:?} vs {g:?}");
                assert!(close(d.dist_lat, y, 0.2), "{d:?} vs {g:?}");
                assert!(close(d.vrel_long, vl, 0.25), "{d:?} vs {g:?}");
                assert!(close(d.vrel_lat, vt, 0.25), "{d:?} vs {g:?}");
                assert!(close(d.rcs, rcs, 0.5), "{d:?} vs {g:?}");
            }
        }
        // Clusters: 10-bit lateral distance, offset −102.3 m.
        for y in [-102.3f32, 0.0, 37.7, 102.3] {
            let g = obj(200, 99.9, y, -20.25);
            let f = CanFrame::new(0x701, &ClusterGeneral(g).encode());
            let d = ClusterGeneral::decode(&f).unwrap().0;
            assert!(close(d.dist_lat, y, 0.2), "{d:?}");
            assert!(
                close(d.dist_long, 99.9, 0.2) && close(d.vrel_long, -20.25, 0.25),
                "{d:?}"
            );
            assert_eq!(d.dyn_prop, DynProp::Oncoming);
        }
        // A hand-built frame: DistLong raw 2500 → 0 m, DistLat raw 1023 →
        // 0 m (object), VrelLong raw 512 → 0, VrelLat raw 256 → 0,
        // DynProp 1, RCS raw 128 → 0 dBm².
        let f = CanFrame::new(0x60B, &[7, 0x4E, 0x23, 0xFF, 0x80, 0x20, 0x01, 0x80]);
        let d = ObjectGeneral::decode(&f).unwrap().0;
        assert_eq!(d.id, 7);
        assert!(d.dist_long.abs() < 1e-4 && (d.dist_lat - 0.0).abs() < 1e-4, "{d:?}");
        assert!(
            d.vrel_long.abs() < 1e-6 && d.vrel_lat.abs() < 1e-6 && d.rcs.abs() < 1e-6,
            "{d:?}"
        );
        assert_eq!(d.dyn_prop, DynProp::Stationary);
    }

    #[test]
    fn status_quality_extended_and_state_round_trip() {
        let s = ObjectStatus {
            nof_objects: 42,
            meas_counter: 0xBEEF,
            interface_version: 3,
        };
        let f = CanFrame::new(0x60A, &s.encode());
        assert_eq!(f.data[1..3], [0xBE, 0xEF], "MeasCounter is big-endian");
        assert_eq!(ObjectStatus::decode(&f).unwrap(), s);

        let c = ClusterStatus {
            nof_clusters_near: 12,
            nof_clusters_far: 250,
            meas_counter: 513,
            interface_version: 15,
        };
        let d = ClusterStatus::decode(&CanFrame::new(0x600, &c.encode())).unwrap();
        assert_eq!(d, c);
        assert_eq!(d.total(), 262);

        for seed in 0..64u8 {
            let q = ObjectQuality {
                id: seed,
                dist_long_rms: seed % 32,
                dist_lat_rms: seed.wrapping_mul(7) % 32,
                vrel_long_rms: seed.wrapping_mul(11) % 32,
                vrel_lat_rms: seed.wrapping_mul(13) % 32,
                arel_long_rms: seed.wrapping_mul(17) % 32,
                arel_lat_rms: seed.wrapping_mul(19) % 32,
                orientation_rms: seed.wrapping_mul(23) % 32,
                meas_state: MeasState::from_bits(seed),
                prob_of_exist: seed % 8,
            };
            assert_eq!(ObjectQuality::decode(&CanFrame::new(0x60C, &q.encode())).unwrap(), q);
        }
        // MeasState sits in b6 bits 4..2, ProbOfExist in bits 7..5.
        let q = ObjectQuality::decode(&CanFrame::new(0x60C, &[0, 0, 0, 0, 0, 0, 0b1110_1000, 0])).unwrap();
        assert_eq!((q.meas_state, q.prob_of_exist), (MeasState::Measured, 7));
        assert_eq!(q.prob_of_exist_max(), Some(1.0));
        assert_eq!(ObjectQuality::default().prob_of_exist_max(), None);

        let cases = [
            (0.0f32, 0.0f32, -180.0f32, 0.0f32, 0.0f32, ObjectClass::Point),
            (-10.0, -2.5, 229.2, 51.0, 51.0, ObjectClass::Wide),
            (10.47, 2.61, 0.0, 4.6, 1.8, ObjectClass::Car),
            (-0.37, 0.05, 93.3, 12.2, 2.6, ObjectClass::Truck),
        ];
        for (al, at, o, l, w, class) in cases {
            let e = ObjectExtended {
                id: 9,
                arel_long: al,
                arel_lat: at,
                class,
                orientation_angle: o,
                length: l,
                width: w,
            };
            let d = ObjectExtended::decode(&CanFrame::new(0x60D, &e.encode())).unwrap();
            assert_eq!((d.id, d.class), (9, class));
            assert!(close(d.arel_long, al, 0.01) && close(d.arel_lat, at, 0.01), "{d:?}");
            assert!(close(d.orientation_angle, o, 0.4), "{d:?}");
            assert!(close(d.length, l, 0.2) && close(d.width, w, 0.2), "{d:?}");
        }

        let r = RadarState {
            nvm_write_status: true,
            nvm_read_status: false,
            max_distance: 196,
            persistent_error: false,
            interference: true,
            temperature_error: false,
            temporary_error: true,
            voltage_error: true,
            sensor_id: 5,
            sort_index: 2,
            radar_power: 3,
            motion_rx_state: 2,
            send_ext_info: true,
            send_quality: false,
            output_type: 1,
            ctrl_relay: true,
            rcs_threshold: 1,
        };
        assert_eq!(RadarState::decode(&CanFrame::new(0x201, &r.encode())).unwrap(), r);
        let max = RadarState::decode(&CanFrame::new(0x201, &[0, 0xFF, 0xC0, 0, 0, 0, 0, 0])).unwrap();
        assert_eq!(max.max_distance, 2046);
    }

    #[test]
    fn ids_carry_the_sensor_id_and_unknown_ids_are_kept_raw() {
        for m in MessageId::ALL {
            for s in 0..8 {
                assert_eq!(MessageId::from_can_id(m.can_id(s)), Some((m, s)), "{m:?} {s}");
            }
        }
        let f = CanFrame::new(0x61B, &ObjectGeneral(obj(3, 5.0, 1.0, 0.0)).encode());
        let d = decode(&f).unwrap();
        assert_eq!(d.sensor_id, 1);
        assert!(matches!(d.message, Message::ObjectGeneral(g) if g.0.id == 3));
        for raw in [CanFrame::new(0x123, &[1, 2]), CanFrame::new(0x60A | 0x1000, &[0; 8])] {
            assert_eq!(decode(&raw).unwrap().message, Message::Unknown(raw));
        }
        let w = CanFrame::new(0x60E, &[1, 2, 3]);
        assert_eq!(decode(&w).unwrap().message, Message::Other(MessageId::ObjectWarning, w));
        assert!(matches!(
            decode(&CanFrame::new(0x60B, &[0; 7])),
            Err(Ars408Error::Short { needed: 8, dlc: 7, .. })
        ));
        let mut rtr = CanFrame::new(0x60B, &[0; 8]);
        rtr.flags |= FLAG_REMOTE;
        assert!(matches!(decode(&rtr), Err(Ars408Error::NotData { kind: "remote", .. })));
        let mut long = CanFrame::new(0x60B, &[0; 8]);
        long.dlc = 9;
        assert!(matches!(decode(&long), Err(Ars408Error::BadDlc { dlc: 9, .. })));
    }

    #[test]
    fn stored_frames_round_trip() {
        let f = CanFrame::new(0x60B, &[1, 2, 3, 4, 5]);
        assert_eq!(CanFrame::from_bytes(&f.to_bytes()).unwrap(), f);
        let s = StoredCanFrame { t_ns: T0 + 7, frame: f };
        let b = s.to_bytes();
        assert_eq!(b.len(), 22);
        assert_eq!(&b[..8], &(T0 + 7).to_le_bytes());
        assert_eq!(&b[8..12], &0x60Bu32.to_le_bytes());
        assert_eq!((b[12], b[13]), (0, 5));
        assert_eq!(&b[14..], &[1, 2, 3, 4, 5, 0, 0, 0]);
        assert_eq!(StoredCanFrame::from_bytes(&b).unwrap(), s);
        assert!(matches!(
            StoredCanFrame::from_bytes(&b[..21]),
            Err(Ars408Error::RecordSize { expected: 22, got: 21 })
        ));
        assert!(CanFrame::from_bytes(&[0; 15]).is_err());
        assert_eq!(CanFrame::new(0x1234_5678, &[]).flags, FLAG_EXTENDED);
    }

    #[test]
    fn a_cycle_becomes_one_complete_frame_that_replays_exactly() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        let first = cycle(3, 100);
        let mut pushed = Vec::new();
        for (i, f) in first.iter().enumerate() {
            assert!(a.push_frame(t(i as u64), f).is_empty());
            pushed.push((t(i as u64), *f));
        }
        // Radar state and host ego speed are kept in the cycle too.
        let state = CanFrame::new(0x201, &RadarState::default().encode());
        let speed = CanFrame::new(0x300, &[0x12, 0x34]);
        assert!(a.push(t(10), &state.to_bytes()).is_empty());
        assert!(a.push_frame(t(11), &speed).is_empty());
        pushed.push((t(10), state));
        pushed.push((t(11), speed));
        let out = a.push_frame(t(70), &status_frame(0, 101));
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert!(f.info.complete);
        assert_eq!(f.info.frame_id, Some(100));
        assert_eq!((f.info.columns_seen, f.info.columns_expected), (3, 3));
        assert_eq!(f.info.packets, pushed.len());
        assert_eq!(f.frame.pts, t(0));
        assert_eq!(f.frame.duration, std::time::Duration::from_millis(11));
        assert!(f.frame.keyframe);
        let records = unpack_packets(&f.frame.data).unwrap();
        let back: Vec<(Timestamp, CanFrame)> = records
            .iter()
            .map(|r| {
                let s = StoredCanFrame::from_bytes(r).unwrap();
                (Timestamp::from_nanos(s.t_ns), s.frame)
            })
            .collect();
        assert_eq!(back, pushed);

        // The empty cycle (0 objects) is complete on its own.
        let out = a.push_frame(t(140), &status_frame(1, 102));
        assert_eq!(out.len(), 1);
        assert!(out[0].info.complete && out[0].info.packets == 1);
        assert_eq!(a.sensor_id(), Some(0));
        let s = a.stats();
        assert_eq!((s.frames, s.partial_frames, s.total_skipped()), (2, 0, 0));
        assert_eq!(s.packets, s.accepted);
    }

    #[test]
    fn missing_objects_make_a_partial_frame() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        let c = cycle(4, 7);
        // Drop the third object's general message.
        for (i, f) in c.iter().enumerate().filter(|&(i, _)| i != 3) {
            a.push_frame(t(i as u64), f);
        }
        let out = a.push_frame(t(80), &status_frame(2, 8));
        assert_eq!(out.len(), 1);
        assert!(!out[0].info.complete);
        assert_eq!((out[0].info.columns_seen, out[0].info.columns_expected), (3, 4));
        // One object of two, then the end of the stream.
        a.push_frame(t(81), &general_frame(obj(0, 1.0, 1.0, 1.0)));
        let last = a.flush().unwrap();
        assert!(!last.info.complete && last.info.frame_id == Some(8));
        assert!(a.flush().is_none());
        assert_eq!(a.stats().partial_frames, 2);
    }

    #[test]
    fn cluster_mode_counts_near_and_far() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Cluster);
        let s = ClusterStatus {
            nof_clusters_near: 1,
            nof_clusters_far: 2,
            meas_counter: 5,
            interface_version: 0,
        };
        let sid = 2;
        a.push_frame(t(0), &CanFrame::new(MessageId::ClusterStatus.can_id(sid), &s.encode()));
        for i in 0..3 {
            let g = ClusterGeneral(obj(i, 20.0, 3.0, -1.0));
            a.push_frame(t(1), &CanFrame::new(MessageId::ClusterGeneral.can_id(sid), &g.encode()));
        }
        // An object-list message in cluster mode is another configuration.
        a.push_frame(t(2), &status_frame(0, 1));
        assert_eq!(a.stats().skipped(SkipReason::WrongModel), 1);
        let f = a.flush().unwrap();
        assert!(f.info.complete && f.info.packets == 4);
        assert_eq!(a.sensor_id(), Some(sid));
    }

    #[test]
    fn garbage_is_counted_never_emitted() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        // Orphans before the first status.
        a.push_frame(t(0), &general_frame(obj(0, 1.0, 0.0, 0.0)));
        a.push_frame(t(0), &CanFrame::new(0x201, &[0; 8]));
        assert_eq!(a.stats().skipped(SkipReason::Orphan), 2);
        a.push_frame(t(1), &status_frame(2, 1));
        // Short DLC where 8 bytes are needed, and a short status.
        a.push_frame(t(2), &CanFrame::new(0x60B, &[0; 6]));
        a.push_frame(t(2), &CanFrame::new(0x60A, &[1, 2]));
        // Unknown IDs, standard and extended.
        a.push_frame(t(3), &CanFrame::new(0x123, &[0; 8]));
        a.push_frame(t(3), &CanFrame::new(0x18FF_0000, &[0; 8]));
        // Remote, error, DLC 12.
        let mut rtr = CanFrame::new(0x60B, &[]);
        rtr.flags = FLAG_REMOTE;
        let mut err = CanFrame::new(0x60B, &[0; 8]);
        err.flags = FLAG_ERROR;
        let mut long = CanFrame::new(0x60B, &[0; 8]);
        long.dlc = 12;
        for f in [rtr, err, long] {
            a.push_frame(t(4), &f);
        }
        // Another radar (sensor 3) on the same bus.
        a.push_frame(t(5), &CanFrame::new(MessageId::ObjectGeneral.can_id(3), &[0; 8]));
        // Byte input of the wrong size.
        a.push(t(6), &[1, 2, 3]);
        a.push(t(6), &[0; 20]);
        let s = a.stats().clone();
        assert_eq!(s.skipped(SkipReason::Truncated), 3);
        assert_eq!(s.skipped(SkipReason::UnknownId), 2);
        assert_eq!(s.skipped(SkipReason::Malformed), 3);
        assert_eq!(s.skipped(SkipReason::WrongModel), 1);
        assert_eq!(s.skipped(SkipReason::Oversized), 1);
        assert_eq!(s.packets, s.accepted + s.total_skipped());
        let f = a.flush().unwrap();
        assert_eq!(f.info.packets, 1);
        assert!(!f.info.complete);
    }

    #[test]
    fn frame_times_increase_even_when_arrival_does_not() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        let mut frames = Vec::new();
        for (k, ms) in [50u64, 50, 10, 10, 200].into_iter().enumerate() {
            frames.extend(a.push_frame(t(ms), &status_frame(0, k as u16)));
        }
        frames.extend(a.flush());
        assert_eq!(frames.len(), 5);
        assert!(frames.windows(2).all(|w| w[1].frame.pts > w[0].frame.pts));
        assert_eq!(a.stats().clamped_times, 3);
    }

    #[test]
    fn runaway_cycles_are_cut() {
        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        a.push_frame(t(0), &status_frame(1, 0));
        let g = general_frame(obj(0, 1.0, 0.0, 0.0));
        let mut out = Vec::new();
        for _ in 0..MAX_MESSAGES_PER_CYCLE + 5 {
            out.extend(a.push_frame(t(1), &g));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].info.packets, MAX_MESSAGES_PER_CYCLE);
        assert_eq!(a.stats().forced_cuts, 1);
        assert_eq!(a.stats().skipped(SkipReason::Orphan), 6);
    }

    #[test]
    fn frames_decode_to_points_through_the_track() {
        let tr = ars408_track(track(), Ars408Mode::Object, &TimePolicy::default()).unwrap();
        assert_eq!(tr.mkv_codec_id(), ARS408_CODEC_ID);
        assert_eq!(tr.kind(), fragmenter::media::TrackKind::Radar);
        let d = Descriptor::from_bytes(&tr.codec_private()).unwrap();
        assert_eq!((d.vendor.as_str(), d.model.as_str()), ("Continental", "ARS408-21"));
        assert_eq!(d.mode.as_deref(), Some("object"));
        assert!(d.decoder.as_deref().unwrap().contains("ARS408_can_database_ch0.dbc"));

        let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
        for f in cycle(2, 1) {
            a.push_frame(t(0), &f);
        }
        let f = a.flush().unwrap();
        let pts = decode_frame(tr.mkv_codec_id(), &tr.codec_private(), &f.frame.data).unwrap();
        assert_eq!(pts.len(), 2);
        for (i, p) in pts.iter().enumerate() {
            let want = Point {
                x: 10.0 + i as f32,
                y: -2.0,
                z: 0.0,
                intensity_or_velocity: 3.5,
            };
            assert!(close(p.x, want.x, 0.2) && close(p.y, want.y, 0.2), "{p:?}");
            assert_eq!((p.z, p.intensity_or_velocity), (0.0, 3.5));
        }
        // Clusters decode the same way.
        let tr = ars408_track(track(), Ars408Mode::Cluster, &TimePolicy::default()).unwrap();
        let g = StoredCanFrame {
            t_ns: 0,
            frame: CanFrame::new(0x701, &ClusterGeneral(obj(1, 4.0, 1.0, -2.0)).encode()),
        };
        let payload = crate::sensor::pack_packets([g.to_bytes()]).unwrap();
        let pts = decode_frame(tr.mkv_codec_id(), &tr.codec_private(), &payload).unwrap();
        assert_eq!(pts.len(), 1);
        assert!(close(pts[0].x, 4.0, 0.2) && close(pts[0].y, 1.0, 0.2) && pts[0].intensity_or_velocity == -2.0);
        // A damaged record is an error, not a panic.
        let bad = crate::sensor::pack_packets([&[0u8; 5][..]]).unwrap();
        assert!(decode_frame(tr.mkv_codec_id(), &[], &bad).is_err());
    }

    #[test]
    fn ars408_uris_parse_and_round_trip() {
        let p = |s: &str| s.parse::<SensorUri>();
        assert_eq!(
            p("ars408:can0").unwrap(),
            SensorUri::Ars408 {
                interface: "can0".into(),
                mode: Ars408Mode::Object
            }
        );
        assert_eq!(
            p("ars408:vcan0?mode=cluster").unwrap(),
            SensorUri::Ars408 {
                interface: "vcan0".into(),
                mode: Ars408Mode::Cluster
            }
        );
        for s in ["ars408:can0", "ars408:vcan0?mode=cluster", "ars408:can1?mode=object"] {
            let u = p(s).unwrap();
            assert_eq!(p(&u.to_string()).unwrap(), u, "{s}");
        }
        assert_eq!(p("ars408:can0?mode=object").unwrap().to_string(), "ars408:can0");
        assert!(matches!(
            p("ars408:"),
            Err(UriError::MissingField { field: "interface", .. })
        ));
        assert!(matches!(
            p("ars408:?mode=cluster"),
            Err(UriError::MissingField { field: "interface", .. })
        ));
        for bad in [
            "ars408:can 0",
            "ars408:averyveryverylongname0",
            "ars408:can/0",
            "ars408:..",
        ] {
            let e = p(bad).unwrap_err();
            assert!(matches!(e, UriError::BadValue { field: "interface", .. }), "{bad}: {e}");
        }
        let e = p("ars408:can0?mode=tracks").unwrap_err();
        assert!(matches!(&e, UriError::BadValue { field: "mode", value, .. } if value == "tracks"));
        assert!(e.to_string().contains("object or cluster"), "{e}");
        let e = p("ars408:can0?bitrate=500000").unwrap_err();
        assert!(
            matches!(e, UriError::UnknownParam { .. }) && e.to_string().contains("mode"),
            "{e}"
        );
        assert!(matches!(p("ars408://can0"), Err(UriError::Syntax { .. })));
        assert!(p("radar:can0").unwrap_err().to_string().contains("ars408"));
    }

    #[cfg(not(feature = "socketcan"))]
    #[test]
    fn without_the_feature_starting_a_capture_says_which_build_is_needed() {
        use crate::sensor::{SensorCapture, SensorOptions};
        let uri: SensorUri = "ars408:can0".parse().unwrap();
        let e = SensorCapture::start(&uri, &SensorOptions::default()).err().unwrap();
        assert_eq!(
            e.to_string(),
            "ars408:can0 needs edge-agent built with --features hardware/socketcan"
        );
    }

    /// CAN frames that are sometimes ARS408 messages of either mode and any
    /// sensor ID, sometimes anything.
    fn can_frame() -> impl Strategy<Value = CanFrame> {
        let ars = (
            prop::sample::select(MessageId::ALL.to_vec()),
            0u8..8,
            0u8..=8,
            any::<[u8; 8]>(),
        )
            .prop_map(|(m, s, dlc, data)| {
                let mut f = CanFrame::new(m.can_id(s), &data);
                f.dlc = dlc;
                f
            });
        let status = (0u8..6, any::<u16>(), 0u8..2).prop_map(|(n, c, s)| {
            let mut f = status_frame(n, c);
            f.can_id = MessageId::ObjectStatus.can_id(s);
            f
        });
        let raw = (any::<u32>(), any::<u8>(), any::<u8>(), any::<[u8; 8]>()).prop_map(|(can_id, flags, dlc, data)| {
            CanFrame {
                can_id,
                flags,
                dlc,
                data,
            }
        });
        prop_oneof![4 => ars, 2 => status, 1 => raw]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn arbitrary_frames_never_panic_and_times_increase(
            frames in vec((can_frame(), -200i64..200), 0..300),
            cluster in any::<bool>(),
        ) {
            let mode = if cluster { Ars408Mode::Cluster } else { Ars408Mode::Object };
            let mut a = Ars408Assembler::new(track(), mode);
            let mut now = T0 as i64;
            let mut out = Vec::new();
            for (f, step_ms) in &frames {
                // Arrival may go backwards (clock steps) as well as forwards.
                now += step_ms * MS as i64;
                let _ = decode(f);
                out.extend(a.push_frame(Timestamp::from_nanos(now as u64), f));
            }
            out.extend(a.flush());
            for w in out.windows(2) {
                prop_assert!(w[1].frame.pts > w[0].frame.pts, "{:?} then {:?}", w[0].frame.pts, w[1].frame.pts);
            }
            let s = a.stats();
            prop_assert_eq!(s.packets, s.accepted + s.total_skipped());
            prop_assert_eq!(s.frames, out.len() as u64);
            let records: usize = out.iter().map(|f| f.info.packets).sum();
            prop_assert_eq!(records as u64, s.accepted);
            for f in &out {
                let recs = unpack_packets(&f.frame.data).unwrap();
                prop_assert_eq!(recs.len(), f.info.packets);
                prop_assert!(recs.iter().all(|r| StoredCanFrame::from_bytes(r).is_ok()));
                let _ = decode_frame(ARS408_CODEC_ID, &[], &f.frame.data);
            }
        }

        #[test]
        fn interleaved_cycles_keep_times_strictly_increasing(
            order in Just((0..24usize).collect::<Vec<_>>()).prop_shuffle(),
            times in vec(0u64..1_000, 24),
        ) {
            let mut frames = cycle(3, 1);
            frames.extend(cycle(2, 2));
            frames.extend(cycle(4, 3));
            frames.truncate(24);
            let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
            let mut out = Vec::new();
            for (k, &i) in order.iter().enumerate() {
                if let Some(f) = frames.get(i) {
                    out.extend(a.push_frame(t(times[k]), f));
                }
            }
            out.extend(a.flush());
            for w in out.windows(2) {
                prop_assert!(w[1].frame.pts > w[0].frame.pts);
            }
            let s = a.stats();
            prop_assert_eq!(s.packets, s.accepted + s.total_skipped());
        }

        #[test]
        fn arbitrary_bytes_never_panic(chunks in vec(vec(any::<u8>(), 0..30), 0..50)) {
            let mut a = Ars408Assembler::new(track(), Ars408Mode::Object);
            for (i, c) in chunks.iter().enumerate() {
                a.push(t(i as u64), c);
                let _ = StoredCanFrame::from_bytes(c);
            }
            let _ = a.flush();
            let s = a.stats();
            prop_assert_eq!(s.packets, s.accepted + s.total_skipped());
            let _ = decode_frame(ARS408_CODEC_ID, &[], &chunks.concat());
        }

        #[test]
        fn in_range_values_decode_within_a_step(
            x in -500.0f32..1138.0, y in -204.6f32..204.8, vl in -128.0f32..127.75,
            vt in -64.0f32..63.75, rcs in -64.0f32..63.5, cy in -102.3f32..102.3,
        ) {
            let g = General { id: 1, dist_long: x, dist_lat: y, vrel_long: vl, vrel_lat: vt, dyn_prop: DynProp::Stopped, rcs };
            let d = ObjectGeneral::decode(&CanFrame::new(0x60B, &ObjectGeneral(g).encode())).unwrap().0;
            prop_assert!(close(d.dist_long, x, 0.2) && close(d.dist_lat, y, 0.2));
            prop_assert!(close(d.vrel_long, vl, 0.25) && close(d.vrel_lat, vt, 0.25) && close(d.rcs, rcs, 0.5));
            let c = ClusterGeneral::decode(&CanFrame::new(0x701, &ClusterGeneral(General { dist_lat: cy, ..g }).encode())).unwrap().0;
            prop_assert!(close(c.dist_lat, cy, 0.2) && close(c.dist_long, x, 0.2));
        }
    }
}
