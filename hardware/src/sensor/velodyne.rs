//! Velodyne data packets (UDP 2368, 1206 B) and position packets (UDP 8308,
//! 512 B), and their decoding to points.
//!
//! Layout (all little-endian, `reference/sensors.md` §1.1): 12 blocks of
//! 100 B, each a flag `FF EE`, an azimuth in 0.01° and 32 × (distance u16,
//! intensity u8); then a u32 timestamp in µs since the top of the hour, the
//! return mode and the product ID.
//!
//! Only exact sizes are accepted: other vendors (the 1212-byte "VLI-16"
//! sample) also send `FF EE` blocks to port 2368, and reading them as a
//! Velodyne packet would produce plausible-looking garbage.

use std::f32::consts::PI;

use fragmenter::Timestamp;

use super::points::Point;
use super::wire::{u16_le, u32_le, u8_at};

/// Bytes in a data packet's UDP payload.
pub const DATA_PACKET_LEN: usize = 1206;
/// Bytes in a position (telemetry) packet's UDP payload.
pub const POSITION_PACKET_LEN: usize = 512;
/// Firing blocks per data packet.
pub const BLOCKS_PER_PACKET: usize = 12;
/// Bytes per firing block.
pub const BLOCK_LEN: usize = 100;
/// Channel slots (distance + intensity) per block.
pub const CHANNELS_PER_BLOCK: usize = 32;
/// Default UDP port of data packets.
pub const DATA_PORT: u16 = 2368;
/// Default UDP port of position packets.
pub const POSITION_PORT: u16 = 8308;
/// One turn in azimuth units (0.01°).
pub const AZIMUTH_UNITS_PER_TURN: u16 = 36_000;

/// Block flag of an upper (or only) laser block: wire bytes `FF EE`.
pub const FLAG_UPPER: u16 = 0xEEFF;
/// Block flag of an HDL-64 lower laser block.
pub const FLAG_LOWER: u16 = 0xDDFF;
/// Block flag of VLS-128 bank 3.
pub const FLAG_BANK3: u16 = 0xCCFF;
/// Block flag of VLS-128 bank 4.
pub const FLAG_BANK4: u16 = 0xBBFF;

const TIMESTAMP_OFFSET: usize = 1200;
const RETURN_MODE_OFFSET: usize = 1204;
const PRODUCT_ID_OFFSET: usize = 1205;
/// µs in one hour: the timestamp counter wraps here.
pub const MICROS_PER_HOUR: u32 = 3_600_000_000;

const POS_TIMESTAMP_OFFSET: usize = 198;
const POS_PPS_OFFSET: usize = 202;
const POS_NMEA_OFFSET: usize = 206;
const POS_NMEA_MAX: usize = 128;

/// What was wrong with a Velodyne packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VelodyneError {
    /// The datagram is not 1206 bytes long.
    #[error("Velodyne data packet is {got} bytes: expected {expected} (12 blocks of 100 B, a 4 B timestamp and 2 factory bytes){}", size_hint(*.got))]
    Size {
        /// 1206.
        expected: usize,
        /// The datagram length.
        got: usize,
    },
    /// A block does not start with a known flag.
    #[error("Velodyne block {block} at byte {offset}: flag 0x{got:04X} is not a block flag (expected 0xEEFF, or 0xDDFF/0xCCFF/0xBBFF)")]
    BlockFlag {
        /// Block index, 0..12.
        block: usize,
        /// Byte offset of the flag.
        offset: usize,
        /// The u16 LE read there.
        got: u16,
    },
    /// A block azimuth is 360° or more.
    #[error("Velodyne block {block} at byte {offset}: azimuth {got} is out of range (expected 0..=35999, in 0.01°)")]
    Azimuth {
        /// Block index, 0..12.
        block: usize,
        /// Byte offset of the azimuth.
        offset: usize,
        /// The value read.
        got: u16,
    },
    /// A position packet is not 512 bytes long.
    #[error("Velodyne position packet is {got} bytes: expected {expected}")]
    PositionSize {
        /// 512.
        expected: usize,
        /// The datagram length.
        got: usize,
    },
    /// No built-in laser table for this model.
    #[error("no built-in laser table for the Velodyne {model} (product ID 0x{id:02X}): decoding its points needs its calibration file")]
    NoCalibration {
        /// Model name.
        model: &'static str,
        /// Product ID byte.
        id: u8,
    },
}

/// Explains the usual wrong sizes, so a log line says what was received.
fn size_hint(got: usize) -> &'static str {
    match got {
        POSITION_PACKET_LEN => "; 512 B is a position packet (UDP 8308), sent to the data port?",
        1212 => "; 1212 B with FF EE blocks is not a Velodyne packet (e.g. the VLI-16 sample)",
        n if n < DATA_PACKET_LEN => "; truncated",
        _ => "; oversized or another sensor on this port",
    }
}

/// Sensor model, from the product ID (factory byte 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// HDL-32E, 0x21.
    Hdl32e,
    /// VLP-16 (Puck), 0x22.
    Vlp16,
    /// VLP-32A/B, 0x23.
    Vlp32ab,
    /// Puck Hi-Res, 0x24.
    PuckHiRes,
    /// VLP-32C (Ultra Puck), 0x28.
    Vlp32c,
    /// Velarray, 0x31.
    Velarray,
    /// HDL-64E, 0xA0.
    Hdl64,
    /// VLS-128 (Alpha Prime), 0xA1.
    Vls128,
    /// Any other product ID (older units report 0x63).
    Unknown(u8),
}

impl Model {
    /// Every named model, for lookups by name.
    pub const NAMED: [Model; 8] = [
        Model::Hdl32e,
        Model::Vlp16,
        Model::Vlp32ab,
        Model::PuckHiRes,
        Model::Vlp32c,
        Model::Velarray,
        Model::Hdl64,
        Model::Vls128,
    ];

    /// The model a product ID names.
    pub fn from_product_id(id: u8) -> Model {
        match id {
            0x21 => Model::Hdl32e,
            0x22 => Model::Vlp16,
            0x23 => Model::Vlp32ab,
            0x24 => Model::PuckHiRes,
            0x28 => Model::Vlp32c,
            0x31 => Model::Velarray,
            0xA0 => Model::Hdl64,
            0xA1 => Model::Vls128,
            other => Model::Unknown(other),
        }
    }

    /// The product ID byte.
    pub fn product_id(self) -> u8 {
        match self {
            Model::Hdl32e => 0x21,
            Model::Vlp16 => 0x22,
            Model::Vlp32ab => 0x23,
            Model::PuckHiRes => 0x24,
            Model::Vlp32c => 0x28,
            Model::Velarray => 0x31,
            Model::Hdl64 => 0xA0,
            Model::Vls128 => 0xA1,
            Model::Unknown(id) => id,
        }
    }

    /// Marketing name, e.g. `HDL-32E`.
    pub fn name(self) -> &'static str {
        match self {
            Model::Hdl32e => "HDL-32E",
            Model::Vlp16 => "VLP-16",
            Model::Vlp32ab => "VLP-32A/B",
            Model::PuckHiRes => "Puck Hi-Res",
            Model::Vlp32c => "VLP-32C",
            Model::Velarray => "Velarray",
            Model::Hdl64 => "HDL-64E",
            Model::Vls128 => "VLS-128",
            Model::Unknown(_) => "unknown Velodyne",
        }
    }

    /// The `[A-Z0-9]` tag used in codec IDs, e.g. `HDL32E`; `ID63` for an
    /// unknown product ID 0x63.
    pub fn codec_tag(self) -> String {
        match self {
            Model::Hdl32e => "HDL32E".into(),
            Model::Vlp16 => "VLP16".into(),
            Model::Vlp32ab => "VLP32AB".into(),
            Model::PuckHiRes => "PUCKHIRES".into(),
            Model::Vlp32c => "VLP32C".into(),
            Model::Velarray => "VELARRAY".into(),
            Model::Hdl64 => "HDL64".into(),
            Model::Vls128 => "VLS128".into(),
            Model::Unknown(id) => format!("ID{id:02X}"),
        }
    }

    /// The model a [`Model::codec_tag`] names.
    pub fn from_codec_tag(tag: &str) -> Option<Model> {
        if let Some(hex) = tag.strip_prefix("ID") {
            if hex.len() == 2 {
                return u8::from_str_radix(hex, 16).ok().map(Model::from_product_id);
            }
            return None;
        }
        Model::NAMED.into_iter().find(|m| m.codec_tag() == tag)
    }

    /// Metres per raw distance unit. It comes from the calibration, not the
    /// packet: 2 mm for VLP-16, HDL-32E and Puck Hi-Res, 4 mm for VLP-32C
    /// and VLS-128 (`reference/sensors.md` §1.1, from the Velodyne
    /// calibration JSONs and the ROS driver).
    pub fn distance_resolution_m(self) -> f32 {
        match self {
            Model::Vlp32c | Model::Vlp32ab | Model::Vls128 => 0.004,
            _ => 0.002,
        }
    }
}

impl std::fmt::Display for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Model::Unknown(id) => write!(f, "unknown Velodyne (product ID 0x{id:02X})"),
            m => f.write_str(m.name()),
        }
    }
}

/// Return mode (factory byte 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReturnMode {
    /// 0x37.
    Strongest,
    /// 0x38.
    Last,
    /// 0x39: blocks come in pairs sharing one azimuth.
    Dual,
    /// Anything else.
    Other(u8),
}

impl ReturnMode {
    /// From the factory byte.
    pub fn from_byte(b: u8) -> ReturnMode {
        match b {
            0x37 => ReturnMode::Strongest,
            0x38 => ReturnMode::Last,
            0x39 => ReturnMode::Dual,
            o => ReturnMode::Other(o),
        }
    }

    /// The factory byte.
    pub fn byte(self) -> u8 {
        match self {
            ReturnMode::Strongest => 0x37,
            ReturnMode::Last => 0x38,
            ReturnMode::Dual => 0x39,
            ReturnMode::Other(b) => b,
        }
    }
}

/// One channel slot of a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    /// Raw distance in the model's resolution units; 0 means no return.
    pub distance: u16,
    /// Calibrated reflectivity / intensity.
    pub intensity: u8,
}

/// A validated 1206-byte data packet, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct DataPacket<'a> {
    raw: &'a [u8; DATA_PACKET_LEN],
}

impl<'a> DataPacket<'a> {
    /// Check the size, every block flag and every azimuth.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, VelodyneError> {
        let raw: &[u8; DATA_PACKET_LEN] = bytes.try_into().map_err(|_| VelodyneError::Size {
            expected: DATA_PACKET_LEN,
            got: bytes.len(),
        })?;
        for block in 0..BLOCKS_PER_PACKET {
            let offset = block * BLOCK_LEN;
            let flag = u16::from_le_bytes([raw[offset], raw[offset + 1]]);
            if !matches!(flag, FLAG_UPPER | FLAG_LOWER | FLAG_BANK3 | FLAG_BANK4) {
                return Err(VelodyneError::BlockFlag {
                    block,
                    offset,
                    got: flag,
                });
            }
            let az = u16::from_le_bytes([raw[offset + 2], raw[offset + 3]]);
            if az >= AZIMUTH_UNITS_PER_TURN {
                return Err(VelodyneError::Azimuth {
                    block,
                    offset: offset + 2,
                    got: az,
                });
            }
        }
        Ok(DataPacket { raw })
    }

    /// The packet bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Block `b`'s flag (0..12; later indexes read block 11).
    pub fn flag(&self, b: usize) -> u16 {
        let o = b.min(BLOCKS_PER_PACKET - 1) * BLOCK_LEN;
        u16::from_le_bytes([self.raw[o], self.raw[o + 1]])
    }

    /// Block `b`'s azimuth in 0.01° (0..12; later indexes read block 11).
    pub fn azimuth(&self, b: usize) -> u16 {
        let o = b.min(BLOCKS_PER_PACKET - 1) * BLOCK_LEN + 2;
        u16::from_le_bytes([self.raw[o], self.raw[o + 1]])
    }

    /// All 12 block azimuths.
    pub fn azimuths(&self) -> [u16; BLOCKS_PER_PACKET] {
        std::array::from_fn(|b| self.azimuth(b))
    }

    /// Channel `c` of block `b` (indexes are clamped to the packet).
    pub fn channel(&self, b: usize, c: usize) -> Channel {
        let o = b.min(BLOCKS_PER_PACKET - 1) * BLOCK_LEN + 4 + c.min(CHANNELS_PER_BLOCK - 1) * 3;
        Channel {
            distance: u16::from_le_bytes([self.raw[o], self.raw[o + 1]]),
            intensity: self.raw[o + 2],
        }
    }

    /// µs since the top of the hour at the first firing of block 0.
    pub fn timestamp_us(&self) -> u32 {
        let o = TIMESTAMP_OFFSET;
        u32::from_le_bytes([self.raw[o], self.raw[o + 1], self.raw[o + 2], self.raw[o + 3]])
    }

    /// Return mode byte, decoded.
    pub fn return_mode(&self) -> ReturnMode {
        ReturnMode::from_byte(self.raw[RETURN_MODE_OFFSET])
    }

    /// Product ID byte.
    pub fn product_id(&self) -> u8 {
        self.raw[PRODUCT_ID_OFFSET]
    }

    /// Model from the product ID.
    pub fn model(&self) -> Model {
        Model::from_product_id(self.product_id())
    }

    /// Whether the azimuth passes 0 inside this packet (a block's azimuth is
    /// more than half a turn below the one before it).
    pub fn wraps_inside(&self) -> bool {
        let az = self.azimuths();
        az.windows(2).any(|w| is_wrap(w[0], w[1]))
    }
}

/// `next` follows `prev` across 0°: it is more than half a turn lower. A
/// smaller decrease is the sensor going backwards, not a new rotation.
pub fn is_wrap(prev: u16, next: u16) -> bool {
    next < prev && prev - next > AZIMUTH_UNITS_PER_TURN / 2
}

/// Absolute time of a "µs since the top of the hour" counter, taking the
/// hour from `reference` (the arrival time or an NMEA fix). The hour
/// before or after is used when that is nearer, so a packet stamped at
/// 59:59.9 that arrives at 00:00.1 lands in the right hour. `None` when the
/// counter is not below one hour.
pub fn time_from_top_of_hour(us: u32, reference: Timestamp) -> Option<Timestamp> {
    if us >= MICROS_PER_HOUR {
        return None;
    }
    const HOUR_NS: u64 = 3_600_000_000_000;
    let r = reference.as_nanos();
    let hour = r / HOUR_NS * HOUR_NS;
    let t = hour + u64::from(us) * 1_000;
    let candidates = [t.checked_sub(HOUR_NS), Some(t), t.checked_add(HOUR_NS)];
    candidates
        .into_iter()
        .flatten()
        .min_by_key(|c| c.abs_diff(r))
        .map(Timestamp::from_nanos)
}

/// Built-in laser geometry for one model.
#[derive(Clone, Copy, Debug)]
pub struct LaserTable {
    /// Lasers per firing sequence (16 or 32).
    pub lasers: usize,
    /// Firing sequences per block (2 for 16-laser models, else 1).
    pub sequences_per_block: usize,
    /// Elevation of each laser, degrees, by channel index.
    pub elevation_deg: &'static [f32],
    /// Azimuth (rotational) correction of each laser, degrees, subtracted
    /// from the block azimuth as the ROS driver does; empty means none.
    pub azimuth_offset_deg: &'static [f32],
    /// Time of each channel's firing after the block start, µs.
    pub firing_time_us: fn(usize) -> f32,
    /// Duration of one block, µs: azimuth is interpolated over it.
    pub block_us: f32,
}

/// HDL-32E elevations by channel, degrees: HDL-32E User's Manual, "Laser
/// Vertical Angles" table (also the ROS `32db.yaml`).
pub const HDL32E_ELEVATION_DEG: [f32; 32] = [
    -30.67, -9.33, -29.33, -8.00, -28.00, -6.67, -26.67, -5.33, -25.33, -4.00, -24.00, -2.67, -22.67, -1.33, -21.33,
    0.00, -20.00, 1.33, -18.67, 2.67, -17.33, 4.00, -16.00, 5.33, -14.67, 6.67, -13.33, 8.00, -12.00, 9.33, -10.67,
    10.67,
];

/// VLP-16 elevations by channel, degrees: VLP-16 User Manual table 9-1
/// (`reference/sensors.md` §1.1, ROS `VLP16db.yaml`).
pub const VLP16_ELEVATION_DEG: [f32; 16] = [
    -15.0, 1.0, -13.0, 3.0, -11.0, 5.0, -9.0, 7.0, -7.0, 9.0, -5.0, 11.0, -3.0, 13.0, -1.0, 15.0,
];

/// Puck Hi-Res elevations by channel, degrees: Puck Hi-Res User Manual
/// (±10° in 1.33° steps, same interleaving as the VLP-16).
pub const PUCK_HIRES_ELEVATION_DEG: [f32; 16] = [
    -10.00, 0.67, -8.67, 2.00, -7.33, 3.33, -6.00, 4.67, -4.67, 6.00, -3.33, 7.33, -2.00, 8.67, -0.67, 10.00,
];

/// VLP-32C elevations by channel, degrees: VLP-32C User Manual table 9-1,
/// as in Velodyne's `VeloView-VLP-32C.xml` calibration.
pub const VLP32C_ELEVATION_DEG: [f32; 32] = [
    -25.0, -1.0, -1.667, -15.639, -11.31, 0.0, -0.667, -8.843, -7.254, 0.333, -0.333, -6.148, -5.333, 1.333, 0.667,
    -4.0, -4.667, 1.667, 1.0, -3.667, -3.333, 3.333, 2.333, -2.667, -3.0, 7.0, 4.667, -2.333, -2.0, 15.0, 10.333,
    -1.333,
];

/// VLP-32C azimuth corrections by channel, degrees (same sources).
pub const VLP32C_AZIMUTH_OFFSET_DEG: [f32; 32] = [
    -1.4, 4.2, -1.4, 1.4, -1.4, 1.4, -4.2, 1.4, -1.4, 4.2, -1.4, 1.4, -4.2, 1.4, -4.2, 1.4, -1.4, 4.2, -1.4, 4.2, -4.2,
    1.4, -1.4, 1.4, -1.4, 1.4, -1.4, 4.2, -4.2, 1.4, -1.4, 1.4,
];

/// VLP-16 / Puck Hi-Res: 2 sequences of 16 firings, 2.304 µs apart, one
/// sequence every 55.296 µs (`reference/sensors.md` §1.1).
fn vlp16_firing_us(c: usize) -> f32 {
    (c / 16) as f32 * 55.296 + (c % 16) as f32 * 2.304
}

/// VLP-32C: 32 channels fired in pairs, 2.304 µs per pair, 55.296 µs per
/// block.
fn vlp32c_firing_us(c: usize) -> f32 {
    (c / 2) as f32 * 2.304
}

/// HDL-32E: one laser every 1.152 µs, 46.08 µs per block (HDL-32E manual).
fn hdl32e_firing_us(c: usize) -> f32 {
    c as f32 * 1.152
}

/// The built-in table of a model, if there is one.
pub fn laser_table(model: Model) -> Option<LaserTable> {
    match model {
        Model::Hdl32e => Some(LaserTable {
            lasers: 32,
            sequences_per_block: 1,
            elevation_deg: &HDL32E_ELEVATION_DEG,
            azimuth_offset_deg: &[],
            firing_time_us: hdl32e_firing_us,
            block_us: 46.08,
        }),
        Model::Vlp16 => Some(LaserTable {
            lasers: 16,
            sequences_per_block: 2,
            elevation_deg: &VLP16_ELEVATION_DEG,
            azimuth_offset_deg: &[],
            firing_time_us: vlp16_firing_us,
            block_us: 110.592,
        }),
        Model::PuckHiRes => Some(LaserTable {
            lasers: 16,
            sequences_per_block: 2,
            elevation_deg: &PUCK_HIRES_ELEVATION_DEG,
            azimuth_offset_deg: &[],
            firing_time_us: vlp16_firing_us,
            block_us: 110.592,
        }),
        Model::Vlp32c => Some(LaserTable {
            lasers: 32,
            sequences_per_block: 1,
            elevation_deg: &VLP32C_ELEVATION_DEG,
            azimuth_offset_deg: &VLP32C_AZIMUTH_OFFSET_DEG,
            firing_time_us: vlp32c_firing_us,
            block_us: 55.296,
        }),
        _ => None,
    }
}

/// Turns data packets of one model into points, with the trigonometry of
/// the laser table computed once.
#[derive(Clone, Debug)]
pub struct PointDecoder {
    model: Model,
    resolution_m: f32,
    /// Per channel slot (0..32): cos and sin of the elevation, azimuth
    /// correction in radians, firing time as a fraction of the block.
    cos_el: [f32; CHANNELS_PER_BLOCK],
    sin_el: [f32; CHANNELS_PER_BLOCK],
    az_offset_rad: [f32; CHANNELS_PER_BLOCK],
    firing_frac: [f32; CHANNELS_PER_BLOCK],
}

impl PointDecoder {
    /// A decoder for `model`; models without a built-in table are refused.
    pub fn new(model: Model) -> Result<Self, VelodyneError> {
        let t = laser_table(model).ok_or(VelodyneError::NoCalibration {
            model: model.name(),
            id: model.product_id(),
        })?;
        let mut d = PointDecoder {
            model,
            resolution_m: model.distance_resolution_m(),
            cos_el: [0.0; CHANNELS_PER_BLOCK],
            sin_el: [0.0; CHANNELS_PER_BLOCK],
            az_offset_rad: [0.0; CHANNELS_PER_BLOCK],
            firing_frac: [0.0; CHANNELS_PER_BLOCK],
        };
        for c in 0..CHANNELS_PER_BLOCK {
            let laser = c % t.lasers;
            let el = t.elevation_deg.get(laser).copied().unwrap_or(0.0).to_radians();
            d.cos_el[c] = el.cos();
            d.sin_el[c] = el.sin();
            d.az_offset_rad[c] = t.azimuth_offset_deg.get(laser).copied().unwrap_or(0.0).to_radians();
            d.firing_frac[c] = (t.firing_time_us)(c) / t.block_us;
        }
        Ok(d)
    }

    /// The model this decoder is for.
    pub fn model(&self) -> Model {
        self.model
    }

    /// Append the packet's returns to `out` as points in metres, in the
    /// Velodyne frame (y forward, x right, z up):
    /// `x = R cos ω sin α`, `y = R cos ω cos α`, `z = R sin ω`
    /// (`reference/sensors.md` §1.1). Zero distances (no return) are
    /// skipped. The block azimuth is interpolated over the block by each
    /// channel's firing time, towards the next block with another azimuth.
    pub fn decode(&self, packet: &DataPacket<'_>, out: &mut Vec<Point>) {
        let az = packet.azimuths();
        // In dual-return mode blocks come in pairs with one azimuth, so the
        // rotation rate is measured two blocks ahead.
        let step = if packet.return_mode() == ReturnMode::Dual { 2 } else { 1 };
        let mut deltas = [0u16; BLOCKS_PER_PACKET];
        for b in 0..BLOCKS_PER_PACKET {
            deltas[b] = if b + step < BLOCKS_PER_PACKET {
                azimuth_delta(az[b], az[b + step])
            } else if b >= step {
                deltas[b - step]
            } else {
                0
            };
        }
        for b in 0..BLOCKS_PER_PACKET {
            let base = f32::from(az[b]) * (PI / 18_000.0);
            let delta = f32::from(deltas[b]) * (PI / 18_000.0);
            for c in 0..CHANNELS_PER_BLOCK {
                let ch = packet.channel(b, c);
                if ch.distance == 0 {
                    continue;
                }
                let r = f32::from(ch.distance) * self.resolution_m;
                let alpha = base + delta * self.firing_frac[c] - self.az_offset_rad[c];
                let (sin_a, cos_a) = alpha.sin_cos();
                let xy = r * self.cos_el[c];
                out.push(Point {
                    x: xy * sin_a,
                    y: xy * cos_a,
                    z: r * self.sin_el[c],
                    intensity_or_velocity: f32::from(ch.intensity),
                });
            }
        }
    }
}

/// Forward azimuth change from `a` to `b`, across 0° if needed; changes of
/// more than 5° between blocks are not a rotation rate (a gap or a glitch)
/// and count as 0 so they cannot smear points.
fn azimuth_delta(a: u16, b: u16) -> u16 {
    let d = (u32::from(b) + u32::from(AZIMUTH_UNITS_PER_TURN) - u32::from(a)) % u32::from(AZIMUTH_UNITS_PER_TURN);
    if d > 500 {
        0
    } else {
        d as u16
    }
}

/// PPS input status of a position packet (byte 202).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PpsStatus {
    /// 0: no PPS signal.
    Absent,
    /// 1: synchronizing.
    Synchronizing,
    /// 2: locked.
    Locked,
    /// 3: error.
    Error,
    /// Other values.
    Other(u8),
}

impl PpsStatus {
    fn from_byte(b: u8) -> PpsStatus {
        match b {
            0 => PpsStatus::Absent,
            1 => PpsStatus::Synchronizing,
            2 => PpsStatus::Locked,
            3 => PpsStatus::Error,
            o => PpsStatus::Other(o),
        }
    }
}

/// The NMEA sentence of a position packet, with the fields needed for time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nmea {
    /// The sentence text, from `$` up to (not including) the line end.
    pub sentence: String,
    /// Talker + type, e.g. `GPRMC`.
    pub kind: String,
    /// UTC time of day (hour, minute, second) when present.
    pub time_of_day: Option<(u8, u8, u8)>,
    /// UTC date (year, month, day), from RMC sentences.
    pub date: Option<(u16, u8, u8)>,
    /// RMC status `A` (valid) or `V`; GGA fix quality > 0.
    pub valid: Option<bool>,
    /// Whether the `*hh` checksum matches; `None` when there is none.
    pub checksum_ok: Option<bool>,
}

impl Nmea {
    /// Parse an NMEA sentence (`$GPRMC,…` / `$GPGGA,…`); `None` when the
    /// text does not look like one.
    pub fn parse(text: &str) -> Option<Nmea> {
        let text = text.trim_end_matches(['\r', '\n', '\0']);
        let body = text.strip_prefix('$')?;
        if !text.is_ascii() || body.is_empty() {
            return None;
        }
        let (data, checksum_ok) = match body.split_once('*') {
            Some((d, cs)) => {
                let want = u8::from_str_radix(cs.get(..2)?, 16).ok();
                let got = d.bytes().fold(0u8, |a, b| a ^ b);
                (d, want.map(|w| w == got))
            }
            None => (body, None),
        };
        let fields: Vec<&str> = data.split(',').collect();
        let kind = fields.first()?.to_string();
        let time_of_day = fields.get(1).and_then(|t| parse_hhmmss(t));
        let (date, valid) = if kind.ends_with("RMC") {
            (
                fields.get(9).and_then(|d| parse_ddmmyy(d)),
                fields.get(2).map(|s| *s == "A"),
            )
        } else if kind.ends_with("GGA") {
            (None, fields.get(6).and_then(|q| q.parse::<u8>().ok()).map(|q| q > 0))
        } else {
            (None, None)
        };
        Some(Nmea {
            sentence: text.to_string(),
            kind,
            time_of_day,
            date,
            valid,
            checksum_ok,
        })
    }

    /// The UTC instant of an RMC sentence with both date and time.
    pub fn utc(&self) -> Option<Timestamp> {
        let (y, mo, d) = self.date?;
        let (h, mi, s) = self.time_of_day?;
        let days = days_from_civil(i64::from(y), u32::from(mo), u32::from(d));
        let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(mi) * 60 + i64::from(s);
        u64::try_from(secs)
            .ok()
            .and_then(|s| s.checked_mul(1_000_000_000))
            .map(Timestamp::from_nanos)
    }
}

fn parse_hhmmss(t: &str) -> Option<(u8, u8, u8)> {
    let h: u8 = t.get(0..2)?.parse().ok()?;
    let m: u8 = t.get(2..4)?.parse().ok()?;
    let s: u8 = t.get(4..6)?.parse().ok()?;
    (h < 24 && m < 60 && s < 61).then_some((h, m, s))
}

fn parse_ddmmyy(t: &str) -> Option<(u16, u8, u8)> {
    if t.len() != 6 {
        return None;
    }
    let d: u8 = t.get(0..2)?.parse().ok()?;
    let m: u8 = t.get(2..4)?.parse().ok()?;
    let y: u16 = t.get(4..6)?.parse().ok()?;
    // Two-digit years pivot at 1980, the GPS epoch: nothing earlier exists.
    let y = if y < 80 { 2000 + y } else { 1900 + y };
    ((1..=31).contains(&d) && (1..=12).contains(&m)).then_some((y, m, d))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A decoded position (telemetry) packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PositionPacket {
    /// µs since the top of the hour (byte 198).
    pub timestamp_us: u32,
    /// PPS status (byte 202; 0 on old HDL-32E firmware, which has no such
    /// byte).
    pub pps: PpsStatus,
    /// The NMEA sentence at byte 206, when one is there.
    pub nmea: Option<Nmea>,
}

/// Decode a 512-byte position packet.
pub fn parse_position(bytes: &[u8]) -> Result<PositionPacket, VelodyneError> {
    if bytes.len() != POSITION_PACKET_LEN {
        return Err(VelodyneError::PositionSize {
            expected: POSITION_PACKET_LEN,
            got: bytes.len(),
        });
    }
    let timestamp_us = u32_le(bytes, POS_TIMESTAMP_OFFSET).unwrap_or(0);
    let pps = PpsStatus::from_byte(u8_at(bytes, POS_PPS_OFFSET).unwrap_or(0));
    let area = &bytes[POS_NMEA_OFFSET..(POS_NMEA_OFFSET + POS_NMEA_MAX).min(bytes.len())];
    let end = area.iter().position(|&b| b == 0).unwrap_or(area.len());
    let nmea = std::str::from_utf8(&area[..end]).ok().and_then(Nmea::parse);
    Ok(PositionPacket {
        timestamp_us,
        pps,
        nmea,
    })
}

/// Build a data packet from its fields (tests, benches and synthetic
/// sources). `channels[b][c]` is block `b`, slot `c`; all flags are 0xEEFF.
pub fn build_data_packet(
    azimuths: &[u16; BLOCKS_PER_PACKET],
    channels: &dyn Fn(usize, usize) -> Channel,
    timestamp_us: u32,
    return_mode: ReturnMode,
    model: Model,
) -> Vec<u8> {
    let mut p = vec![0u8; DATA_PACKET_LEN];
    for (b, az) in azimuths.iter().enumerate() {
        let o = b * BLOCK_LEN;
        p[o..o + 2].copy_from_slice(&FLAG_UPPER.to_le_bytes());
        p[o + 2..o + 4].copy_from_slice(&az.to_le_bytes());
        for c in 0..CHANNELS_PER_BLOCK {
            let ch = channels(b, c);
            let co = o + 4 + c * 3;
            p[co..co + 2].copy_from_slice(&ch.distance.to_le_bytes());
            p[co + 2] = ch.intensity;
        }
    }
    p[TIMESTAMP_OFFSET..TIMESTAMP_OFFSET + 4].copy_from_slice(&timestamp_us.to_le_bytes());
    p[RETURN_MODE_OFFSET] = return_mode.byte();
    p[PRODUCT_ID_OFFSET] = model.product_id();
    p
}

/// Read a block azimuth without validating the packet (`None` when the
/// buffer is too short); the assembler's cheap pre-check.
pub fn peek_azimuth(bytes: &[u8], block: usize) -> Option<u16> {
    u16_le(bytes, block.checked_mul(BLOCK_LEN)?.checked_add(2)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first_az: u16, step: u16, ts: u32, model: Model) -> Vec<u8> {
        let az = std::array::from_fn(|b| (first_az + step * b as u16) % AZIMUTH_UNITS_PER_TURN);
        build_data_packet(
            &az,
            &|b, c| Channel {
                distance: (1000 + b * 32 + c) as u16,
                intensity: c as u8,
            },
            ts,
            ReturnMode::Strongest,
            model,
        )
    }

    #[test]
    fn a_built_packet_parses_back() {
        let bytes = packet(100, 20, 123_456, Model::Vlp32c);
        let p = DataPacket::parse(&bytes).unwrap();
        assert_eq!(p.azimuth(0), 100);
        assert_eq!(p.azimuth(11), 320);
        assert_eq!(
            p.channel(3, 5),
            Channel {
                distance: 1000 + 3 * 32 + 5,
                intensity: 5
            }
        );
        assert_eq!(p.timestamp_us(), 123_456);
        assert_eq!(p.return_mode(), ReturnMode::Strongest);
        assert_eq!(p.model(), Model::Vlp32c);
        assert!(!p.wraps_inside());
        assert!(DataPacket::parse(&packet(35_900, 20, 0, Model::Vlp16))
            .unwrap()
            .wraps_inside());
    }

    #[test]
    fn wrong_sizes_are_refused_with_the_sizes() {
        for n in [0, 512, 1205, 1207, 1212] {
            let e = DataPacket::parse(&vec![0xFF; n]).unwrap_err();
            assert_eq!(e, VelodyneError::Size { expected: 1206, got: n });
        }
        let msg = DataPacket::parse(&[0; 1212]).unwrap_err().to_string();
        assert!(msg.contains("1212") && msg.contains("1206"), "{msg}");
    }

    #[test]
    fn bad_flags_and_azimuths_name_the_block_and_offset() {
        let mut b = packet(0, 10, 0, Model::Vlp16);
        b[300] = 0x00;
        assert_eq!(
            DataPacket::parse(&b).unwrap_err(),
            VelodyneError::BlockFlag {
                block: 3,
                offset: 300,
                got: 0xEE00
            }
        );
        let mut b = packet(0, 10, 0, Model::Vlp16);
        b[502..504].copy_from_slice(&36_000u16.to_le_bytes());
        assert_eq!(
            DataPacket::parse(&b).unwrap_err(),
            VelodyneError::Azimuth {
                block: 5,
                offset: 502,
                got: 36_000
            }
        );
    }

    #[test]
    fn models_round_trip_through_ids_and_tags() {
        for id in 0..=255u8 {
            let m = Model::from_product_id(id);
            assert_eq!(m.product_id(), id);
            assert_eq!(Model::from_codec_tag(&m.codec_tag()), Some(m), "{m:?}");
        }
        assert_eq!(Model::from_product_id(0x21), Model::Hdl32e);
        assert_eq!(Model::from_product_id(0x28), Model::Vlp32c);
        assert_eq!(Model::Vlp32c.distance_resolution_m(), 0.004);
        assert_eq!(Model::Hdl32e.distance_resolution_m(), 0.002);
    }

    #[test]
    fn wrap_is_a_drop_of_more_than_half_a_turn() {
        assert!(is_wrap(35_990, 10));
        assert!(!is_wrap(10, 35_990));
        assert!(!is_wrap(20_000, 19_000));
        assert!(!is_wrap(100, 100));
    }

    #[test]
    fn top_of_hour_time_takes_the_nearest_hour() {
        const H: u64 = 3_600_000_000_000;
        let base = 1_700_000_000u64 / 3600 * 3600 * 1_000_000_000;
        // Arrival 10 s into the hour, counter 9.5 s.
        let t = time_from_top_of_hour(9_500_000, Timestamp::from_nanos(base + 10_000_000_000)).unwrap();
        assert_eq!(t.as_nanos(), base + 9_500_000_000);
        // Arrival just after the hour, counter just before it: previous hour.
        let t = time_from_top_of_hour(3_599_900_000, Timestamp::from_nanos(base + 100_000_000)).unwrap();
        assert_eq!(t.as_nanos(), base - H + 3_599_900_000_000);
        // Arrival just before the hour, counter just after: next hour.
        let t = time_from_top_of_hour(50_000, Timestamp::from_nanos(base - 1_000_000)).unwrap();
        assert_eq!(t.as_nanos(), base + 50_000_000);
        assert_eq!(
            time_from_top_of_hour(MICROS_PER_HOUR, Timestamp::from_nanos(base)),
            None
        );
        assert!(time_from_top_of_hour(0, Timestamp::EPOCH).is_some());
    }

    #[test]
    fn points_follow_the_manual_formula() {
        // VLP-16 laser 1 is at +1°, laser 0 at -15°; azimuth 90° → +x.
        let az = [9_000u16; 12];
        let bytes = build_data_packet(
            &az,
            &|b, c| Channel {
                distance: if b == 0 && c < 2 { 500 } else { 0 },
                intensity: 7,
            },
            0,
            ReturnMode::Strongest,
            Model::Vlp16,
        );
        let p = DataPacket::parse(&bytes).unwrap();
        let mut pts = Vec::new();
        PointDecoder::new(Model::Vlp16).unwrap().decode(&p, &mut pts);
        assert_eq!(pts.len(), 2);
        let r = 1.0; // 500 × 2 mm
        let w = (-15f32).to_radians();
        assert!((pts[0].x - r * w.cos()).abs() < 1e-4, "{:?}", pts[0]);
        assert!(pts[0].y.abs() < 1e-4);
        assert!((pts[0].z - r * w.sin()).abs() < 1e-4);
        assert_eq!(pts[0].intensity_or_velocity, 7.0);
        assert!((pts[1].z - (1f32).to_radians().sin()).abs() < 1e-4);
        assert!(PointDecoder::new(Model::Vls128).is_err());
    }

    #[test]
    fn position_packets_give_pps_and_nmea() {
        let mut b = vec![0u8; 512];
        b[198..202].copy_from_slice(&1_234_567u32.to_le_bytes());
        b[202] = 2;
        let s = b"$GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W*6A\r\n";
        b[206..206 + s.len()].copy_from_slice(s);
        let p = parse_position(&b).unwrap();
        assert_eq!(p.timestamp_us, 1_234_567);
        assert_eq!(p.pps, PpsStatus::Locked);
        let n = p.nmea.unwrap();
        assert_eq!(n.kind, "GPRMC");
        assert_eq!(n.time_of_day, Some((12, 35, 19)));
        assert_eq!(n.date, Some((1994, 3, 23)));
        assert_eq!(n.valid, Some(true));
        assert_eq!(n.checksum_ok, Some(true));
        assert!(n.utc().is_some());
        assert_eq!(
            parse_position(&[0; 511]).unwrap_err(),
            VelodyneError::PositionSize {
                expected: 512,
                got: 511
            }
        );
        assert_eq!(parse_position(&[0; 512]).unwrap().nmea, None);
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
    }
}
