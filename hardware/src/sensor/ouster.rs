//! Ouster lidar packets (UDP 7502) and sensor metadata JSON.
//!
//! A packet cannot be read without the metadata: the profile, the pixels
//! per column and the columns per packet fix the layout, and only the
//! metadata names them. [`OusterMeta::from_json`] reads the three shapes in
//! use (flat 2.x, nested newer firmware, and the reduced legacy file with
//! only beam angles and `lidar_mode`), and [`LidarPacket::parse`] checks a
//! datagram against it: a packet of another size is another sensor or
//! another configuration, and is refused with both sizes.
//!
//! Layouts: `reference/sensors.md` §1.2, from ouster-sdk `parsing.cpp`.

use serde_json::Value;

use super::points::Point;
use super::wire::{u16_le, u32_le, u64_le, u8_at, uint_le};

/// Default UDP port of lidar packets.
pub const LIDAR_PORT: u16 = 7502;
/// Default UDP port of IMU packets.
pub const IMU_PORT: u16 = 7503;
/// Encoder ticks per revolution in LEGACY column headers.
pub const ENCODER_TICKS_PER_REV: u32 = 90_112;
/// Largest lidar packet the SDK accepts (one UDP datagram).
pub const MAX_PACKET_SIZE: usize = 65_535;

/// LEGACY defaults from ouster-sdk `default_sensor_info` (OS1 gen 1), used
/// when the reduced metadata does not say: beam origin offset in mm.
pub const DEFAULT_LIDAR_ORIGIN_TO_BEAM_ORIGIN_MM: f64 = 12.163;
/// LEGACY default lidar-to-sensor transform (row-major 4×4, mm): the lidar
/// frame is turned 180° about z and sits 36.18 mm above the sensor base.
pub const DEFAULT_LIDAR_TO_SENSOR_TRANSFORM: [f64; 16] = [
    -1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 36.18, 0.0, 0.0, 0.0, 1.0,
];
const IDENTITY: [f64; 16] = [
    1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0,
];

/// What was wrong with Ouster metadata or a packet.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OusterError {
    /// The metadata is not JSON.
    #[error("Ouster metadata is not valid JSON: {0}")]
    Json(String),
    /// A required metadata field is absent.
    #[error("Ouster metadata has no {field}")]
    MissingField {
        /// Dotted path of the field.
        field: &'static str,
    },
    /// A metadata field has a value of the wrong kind or out of range.
    #[error("Ouster metadata field {field} = {value}: expected {expected}")]
    BadField {
        /// Dotted path of the field.
        field: &'static str,
        /// The value found, as JSON text (cut to 80 characters).
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The lidar UDP profile is not one this parser knows.
    #[error("Ouster lidar UDP profile {got:?} is not supported: expected one of {}", Profile::ALL.iter().map(|p| p.name()).collect::<Vec<_>>().join(", "))]
    UnknownProfile {
        /// The profile name found.
        got: String,
    },
    /// Beam angle arrays do not have one entry per pixel row.
    #[error("Ouster metadata {field} has {got} entries: expected {expected} (pixels_per_column)")]
    AngleCount {
        /// Which array.
        field: &'static str,
        /// pixels_per_column.
        expected: usize,
        /// Its length.
        got: usize,
    },
    /// The packet size does not match the metadata.
    #[error("Ouster lidar packet is {got} bytes: expected {expected} for {profile} with {columns} columns of {pixels} pixels (another sensor, model or configuration?)")]
    PacketSize {
        /// Size the metadata implies.
        expected: usize,
        /// The datagram length.
        got: usize,
        /// Profile name.
        profile: &'static str,
        /// columns_per_packet.
        columns: usize,
        /// pixels_per_column.
        pixels: usize,
    },
    /// The packet header's type is not "lidar".
    #[error("Ouster packet_type at byte 0 is {got}: expected 1 (lidar)")]
    PacketType {
        /// The type found.
        got: u16,
    },
    /// A column's measurement ID is outside the frame.
    #[error("Ouster column {column} at byte {offset}: measurement_id {got} is not below columns_per_frame {columns_per_frame}")]
    MeasurementId {
        /// Column index in the packet.
        column: usize,
        /// Byte offset of the measurement ID.
        offset: usize,
        /// The ID found.
        got: u16,
        /// Columns per frame from the metadata.
        columns_per_frame: usize,
    },
    /// The packet's init_id differs from the metadata's initialization_id.
    #[error("Ouster packet init_id {got} does not match the metadata's initialization_id {expected}: metadata of another sensor or session")]
    InitIdMismatch {
        /// From the metadata.
        expected: u32,
        /// From the packet header.
        got: u32,
    },
    /// The packet's prod_sn differs from the metadata's.
    #[error(
        "Ouster packet prod_sn {got} does not match the metadata's prod_sn {expected}: metadata of another sensor"
    )]
    ProdSnMismatch {
        /// From the metadata.
        expected: u64,
        /// From the packet header.
        got: u64,
    },
}

/// Lidar UDP profile: the pixel layout and header kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Firmware < 2.0, or `LEGACY` in 2.x: no packet header.
    Legacy,
    /// `RNG19_RFL8_SIG16_NIR16`, 12 B pixels.
    Single,
    /// `RNG19_RFL8_SIG16_NIR16_DUAL`, 16 B pixels.
    Dual,
    /// `RNG15_RFL8_NIR8` (low bandwidth), 4 B pixels.
    LowBandwidth,
    /// `RNG15_RFL8_NIR8_DUAL`, 8 B pixels.
    LowBandwidthDual,
    /// `FUSA_RNG15_RFL8_NIR8_DUAL`, 8 B pixels, FUSA packet header.
    FusaDual,
    /// `FIVE_WORD_PIXEL`, 20 B pixels.
    FiveWord,
}

/// Which packet header a profile uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderKind {
    /// LEGACY: none; frame_id is in each column header.
    None,
    /// 2.x: packet_type u16, frame_id u16, init_id u24, prod_sn u40.
    Standard,
    /// FUSA: packet_type u8, init_id u24, frame_id u32, prod_sn u40 @11.
    Fusa,
}

impl Profile {
    /// Every supported profile.
    pub const ALL: [Profile; 7] = [
        Profile::Legacy,
        Profile::Single,
        Profile::Dual,
        Profile::LowBandwidth,
        Profile::LowBandwidthDual,
        Profile::FusaDual,
        Profile::FiveWord,
    ];

    /// The metadata name, e.g. `RNG19_RFL8_SIG16_NIR16_DUAL`.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Legacy => "LEGACY",
            Profile::Single => "RNG19_RFL8_SIG16_NIR16",
            Profile::Dual => "RNG19_RFL8_SIG16_NIR16_DUAL",
            Profile::LowBandwidth => "RNG15_RFL8_NIR8",
            Profile::LowBandwidthDual => "RNG15_RFL8_NIR8_DUAL",
            Profile::FusaDual => "FUSA_RNG15_RFL8_NIR8_DUAL",
            Profile::FiveWord => "FIVE_WORD_PIXEL",
        }
    }

    /// The profile a metadata name names.
    pub fn from_name(name: &str) -> Option<Profile> {
        Profile::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Bytes per pixel.
    pub fn pixel_bytes(self) -> usize {
        match self {
            Profile::Legacy | Profile::Single => 12,
            Profile::Dual => 16,
            Profile::LowBandwidth => 4,
            Profile::LowBandwidthDual | Profile::FusaDual => 8,
            Profile::FiveWord => 20,
        }
    }

    /// The packet header kind.
    pub fn header_kind(self) -> HeaderKind {
        match self {
            Profile::Legacy => HeaderKind::None,
            Profile::FusaDual => HeaderKind::Fusa,
            _ => HeaderKind::Standard,
        }
    }

    /// Whether pixels carry a second return.
    pub fn is_dual(self) -> bool {
        matches!(
            self,
            Profile::Dual | Profile::LowBandwidthDual | Profile::FusaDual | Profile::FiveWord
        )
    }
}

/// Byte layout of a lidar packet for one profile and size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketFormat {
    /// The profile.
    pub profile: Profile,
    /// Columns in one packet.
    pub columns_per_packet: usize,
    /// Pixels (beams) per column.
    pub pixels_per_column: usize,
    /// Packet header bytes (0 or 32).
    pub packet_header: usize,
    /// Column header bytes (16 LEGACY, else 12).
    pub col_header: usize,
    /// Bytes per pixel.
    pub pixel_bytes: usize,
    /// Column footer bytes (4 LEGACY status, else 0).
    pub col_footer: usize,
    /// Packet footer bytes (0 or 32).
    pub packet_footer: usize,
    /// Bytes per column.
    pub col_size: usize,
    /// Bytes per packet.
    pub packet_size: usize,
}

impl PacketFormat {
    /// The layout: `header + columns × (col_header + pixels × pixel + col_footer) + footer`.
    pub fn new(profile: Profile, columns_per_packet: usize, pixels_per_column: usize) -> Self {
        let legacy = profile == Profile::Legacy;
        let packet_header: usize = if legacy { 0 } else { 32 };
        let col_header = if legacy { 16 } else { 12 };
        let col_footer = if legacy { 4 } else { 0 };
        let packet_footer = if legacy { 0 } else { 32 };
        let pixel_bytes = profile.pixel_bytes();
        let col_size = col_header + pixels_per_column.saturating_mul(pixel_bytes) + col_footer;
        let packet_size = packet_header
            .saturating_add(columns_per_packet.saturating_mul(col_size))
            .saturating_add(packet_footer);
        PacketFormat {
            profile,
            columns_per_packet,
            pixels_per_column,
            packet_header,
            col_header,
            pixel_bytes,
            col_footer,
            packet_footer,
            col_size,
            packet_size,
        }
    }
}

/// Which JSON shape the metadata came in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaShape {
    /// Firmware 2.x: `data_format` and flat keys.
    Flat,
    /// Newer firmware: `sensor_info`, `lidar_data_format`, `beam_intrinsics`, …
    Nested,
    /// Only beam angles and `lidar_mode`: LEGACY defaults.
    Reduced,
}

/// Sensor metadata: everything needed to parse and decode packets.
#[derive(Clone, Debug, PartialEq)]
pub struct OusterMeta {
    /// The JSON shape read.
    pub shape: MetaShape,
    /// Product line, e.g. `OS-0-32-U1`.
    pub prod_line: Option<String>,
    /// Serial number.
    pub prod_sn: Option<u64>,
    /// Initialization ID, repeated in every non-LEGACY packet header.
    pub init_id: Option<u32>,
    /// Firmware build revision.
    pub build_rev: Option<String>,
    /// Firmware image revision.
    pub image_rev: Option<String>,
    /// Lidar mode, e.g. `1024x10`.
    pub lidar_mode: Option<String>,
    /// Lidar UDP profile.
    pub profile: Profile,
    /// Columns in one full frame (one rotation).
    pub columns_per_frame: usize,
    /// Columns in one packet.
    pub columns_per_packet: usize,
    /// Pixels (beams) per column.
    pub pixels_per_column: usize,
    /// First and last column sent (inclusive; may wrap past the end).
    pub column_window: (usize, usize),
    /// Destaggering shift of each row.
    pub pixel_shift_by_row: Vec<i32>,
    /// Beam elevation angles, degrees.
    pub beam_altitude_angles: Vec<f64>,
    /// Beam azimuth offsets, degrees.
    pub beam_azimuth_angles: Vec<f64>,
    /// Distance from the lidar origin to the beam origin, mm.
    pub lidar_origin_to_beam_origin_mm: f64,
    /// Lidar-to-sensor transform, row-major 4×4, mm.
    pub lidar_to_sensor_transform: [f64; 16],
    /// Lidar UDP port, when stated.
    pub udp_port_lidar: Option<u16>,
    /// IMU UDP port, when stated.
    pub udp_port_imu: Option<u16>,
    /// The packet layout.
    pub format: PacketFormat,
}

fn get<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k)).filter(|v| !v.is_null())
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

fn as_usize(v: &Value, field: &'static str, max: usize) -> Result<usize, OusterError> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| OusterError::BadField {
            field,
            value: short(v),
            expected: "a positive integer in range",
        })
}

fn as_f64_array(v: &Value, field: &'static str) -> Result<Vec<f64>, OusterError> {
    let bad = || OusterError::BadField {
        field,
        value: short(v),
        expected: "an array of numbers",
    };
    v.as_array()
        .ok_or_else(bad)?
        .iter()
        .map(|x| x.as_f64().filter(|f| f.is_finite()).ok_or_else(bad))
        .collect()
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A serial number or ID given as a number or as a decimal string.
fn as_id(v: &Value, field: &'static str) -> Result<u64, OusterError> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| OusterError::BadField {
        field,
        value: short(v),
        expected: "an unsigned integer (number or decimal string)",
    })
}

fn as_port(v: &Value, field: &'static str) -> Result<u16, OusterError> {
    v.as_u64()
        .and_then(|n| u16::try_from(n).ok())
        .ok_or_else(|| OusterError::BadField {
            field,
            value: short(v),
            expected: "a UDP port number",
        })
}

/// Columns from a lidar mode such as `1024x10`.
fn columns_of_mode(mode: &str) -> Option<usize> {
    let (w, hz) = mode.split_once('x')?;
    let w: usize = w.parse().ok()?;
    hz.parse::<u32>().ok()?;
    (1..=MAX_COLUMNS_PER_FRAME).contains(&w).then_some(w)
}

/// Bounds that keep a hostile file from asking for huge tables.
/// Ouster's widest mode is 4096x5; its tallest sensors have 128 beams.
const MAX_COLUMNS_PER_FRAME: usize = 4_096;
const MAX_PIXELS_PER_COLUMN: usize = 512;
const MAX_COLUMNS_PER_PACKET: usize = 256;

impl OusterMeta {
    /// Parse metadata JSON text in any of the three shapes.
    pub fn from_json(text: &str) -> Result<Self, OusterError> {
        let v: Value = serde_json::from_str(text).map_err(|e| OusterError::Json(e.to_string()))?;
        Self::from_value(&v)
    }

    /// Parse an already-parsed metadata JSON value.
    pub fn from_value(v: &Value) -> Result<Self, OusterError> {
        if !v.is_object() {
            return Err(OusterError::BadField {
                field: "(root)",
                value: short(v),
                expected: "a JSON object",
            });
        }
        let nested = ["sensor_info", "lidar_data_format", "beam_intrinsics"]
            .iter()
            .any(|k| v.get(k).is_some());
        let (shape, info, fmt, beams, cfg): (MetaShape, &[&str], &[&str], &[&str], &[&str]) = if nested {
            (
                MetaShape::Nested,
                &["sensor_info"],
                &["lidar_data_format"],
                &["beam_intrinsics"],
                &["config_params"],
            )
        } else if v.get("data_format").is_some() {
            (MetaShape::Flat, &[], &["data_format"], &[], &[])
        } else {
            (MetaShape::Reduced, &[], &[], &[], &[])
        };
        let at = |base: &[&str], key: &'static str| {
            let mut p: Vec<&str> = base.to_vec();
            p.push(key);
            get(v, &p)
        };

        let alt_field = if nested {
            "beam_intrinsics.beam_altitude_angles"
        } else {
            "beam_altitude_angles"
        };
        let az_field = if nested {
            "beam_intrinsics.beam_azimuth_angles"
        } else {
            "beam_azimuth_angles"
        };
        let beam_altitude_angles = as_f64_array(
            at(beams, "beam_altitude_angles").ok_or(OusterError::MissingField { field: alt_field })?,
            alt_field,
        )?;
        let beam_azimuth_angles = as_f64_array(
            at(beams, "beam_azimuth_angles").ok_or(OusterError::MissingField { field: az_field })?,
            az_field,
        )?;

        let lidar_mode = at(cfg, "lidar_mode").and_then(as_string);
        let profile = match at(fmt, "udp_profile_lidar").or_else(|| at(cfg, "udp_profile_lidar")) {
            Some(Value::String(s)) => {
                Profile::from_name(s).ok_or_else(|| OusterError::UnknownProfile { got: s.clone() })?
            }
            Some(other) => {
                return Err(OusterError::BadField {
                    field: "udp_profile_lidar",
                    value: short(other),
                    expected: "a profile name string",
                })
            }
            // Firmware before 2.0 has no profile: its packets are LEGACY.
            None => Profile::Legacy,
        };

        let columns_per_frame = match at(fmt, "columns_per_frame") {
            Some(c) => as_usize(c, "columns_per_frame", MAX_COLUMNS_PER_FRAME)?,
            None => {
                let mode = lidar_mode.as_deref().ok_or(OusterError::MissingField {
                    field: "lidar_mode (or data_format.columns_per_frame)",
                })?;
                columns_of_mode(mode).ok_or_else(|| OusterError::BadField {
                    field: "lidar_mode",
                    value: format!("{mode:?}"),
                    expected: "COLUMNSxHZ such as 1024x10",
                })?
            }
        };
        let columns_per_packet = match at(fmt, "columns_per_packet").or_else(|| at(cfg, "columns_per_packet")) {
            Some(c) => as_usize(c, "columns_per_packet", MAX_COLUMNS_PER_PACKET)?,
            // The LEGACY layout always has 16 columns per packet.
            None => 16,
        };
        let pixels_per_column = match at(fmt, "pixels_per_column") {
            Some(p) => as_usize(p, "pixels_per_column", MAX_PIXELS_PER_COLUMN)?,
            // Reduced metadata: one pixel per beam.
            None => {
                let n = beam_altitude_angles.len();
                if !(1..=MAX_PIXELS_PER_COLUMN).contains(&n) {
                    return Err(OusterError::BadField {
                        field: alt_field,
                        value: format!("{n} entries"),
                        expected: "1 to 512 beams",
                    });
                }
                n
            }
        };
        for (field, got) in [
            (alt_field, beam_altitude_angles.len()),
            (az_field, beam_azimuth_angles.len()),
        ] {
            if got != pixels_per_column {
                return Err(OusterError::AngleCount {
                    field,
                    expected: pixels_per_column,
                    got,
                });
            }
        }

        let column_window = match at(fmt, "column_window") {
            Some(w) => {
                let bad = || OusterError::BadField {
                    field: "column_window",
                    value: short(w),
                    expected: "[first, last] column indexes below columns_per_frame",
                };
                let a = w.as_array().ok_or_else(bad)?;
                let n = |i: usize| {
                    a.get(i)
                        .and_then(Value::as_u64)
                        .and_then(|x| usize::try_from(x).ok())
                        .filter(|&x| x < columns_per_frame)
                };
                match (a.len(), n(0), n(1)) {
                    (2, Some(s), Some(e)) => (s, e),
                    _ => return Err(bad()),
                }
            }
            None => (0, columns_per_frame - 1),
        };
        let pixel_shift_by_row = match at(fmt, "pixel_shift_by_row") {
            Some(s) => {
                let bad = || OusterError::BadField {
                    field: "pixel_shift_by_row",
                    value: short(s),
                    expected: "an array of integers, one per row",
                };
                let a = s.as_array().ok_or_else(bad)?;
                let rows: Vec<i32> = a
                    .iter()
                    .map(|x| x.as_i64().and_then(|x| i32::try_from(x).ok()).ok_or_else(bad))
                    .collect::<Result<_, _>>()?;
                if rows.len() != pixels_per_column {
                    return Err(OusterError::AngleCount {
                        field: "pixel_shift_by_row",
                        expected: pixels_per_column,
                        got: rows.len(),
                    });
                }
                rows
            }
            None => vec![0; pixels_per_column],
        };

        let origin = at(beams, "lidar_origin_to_beam_origin_mm").or_else(|| {
            // Newer files may carry only the beam-to-lidar transform, whose
            // x translation is the same distance.
            get(v, &["beam_intrinsics", "beam_to_lidar_transform"]).and_then(|t| t.get(3))
        });
        let lidar_origin_to_beam_origin_mm = match origin {
            Some(o) => o
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| OusterError::BadField {
                    field: "lidar_origin_to_beam_origin_mm",
                    value: short(o),
                    expected: "a number (mm)",
                })?,
            None if shape == MetaShape::Reduced => DEFAULT_LIDAR_ORIGIN_TO_BEAM_ORIGIN_MM,
            None => 0.0,
        };
        let transform = if nested {
            get(v, &["lidar_intrinsics", "lidar_to_sensor_transform"])
        } else {
            get(v, &["lidar_to_sensor_transform"])
        };
        let lidar_to_sensor_transform = match transform {
            Some(t) => {
                let a = as_f64_array(t, "lidar_to_sensor_transform")?;
                a.try_into().map_err(|_| OusterError::BadField {
                    field: "lidar_to_sensor_transform",
                    value: short(t),
                    expected: "16 numbers (a row-major 4×4 matrix)",
                })?
            }
            None if shape == MetaShape::Reduced => DEFAULT_LIDAR_TO_SENSOR_TRANSFORM,
            None => IDENTITY,
        };

        let prod_sn = at(info, "prod_sn").map(|s| as_id(s, "prod_sn")).transpose()?;
        let init_id = at(info, "initialization_id")
            .map(|s| {
                as_id(s, "initialization_id").and_then(|n| {
                    // init_id is a u24 in packet headers.
                    u32::try_from(n)
                        .ok()
                        .filter(|&n| n < 1 << 24)
                        .ok_or_else(|| OusterError::BadField {
                            field: "initialization_id",
                            value: short(s),
                            expected: "an integer below 2^24",
                        })
                })
            })
            .transpose()?;
        let udp_port_lidar = at(cfg, "udp_port_lidar")
            .map(|p| as_port(p, "udp_port_lidar"))
            .transpose()?;
        let udp_port_imu = at(cfg, "udp_port_imu")
            .map(|p| as_port(p, "udp_port_imu"))
            .transpose()?;

        let format = PacketFormat::new(profile, columns_per_packet, pixels_per_column);
        if format.packet_size > MAX_PACKET_SIZE {
            return Err(OusterError::BadField {
                field: "columns_per_packet",
                value: columns_per_packet.to_string(),
                expected: "a packet of at most 65535 bytes",
            });
        }
        Ok(OusterMeta {
            shape,
            prod_line: at(info, "prod_line").and_then(as_string),
            prod_sn,
            init_id,
            build_rev: at(info, "build_rev").and_then(as_string),
            image_rev: at(info, "image_rev").and_then(as_string),
            lidar_mode,
            profile,
            columns_per_frame,
            columns_per_packet,
            pixels_per_column,
            column_window,
            pixel_shift_by_row,
            beam_altitude_angles,
            beam_azimuth_angles,
            lidar_origin_to_beam_origin_mm,
            lidar_to_sensor_transform,
            udp_port_lidar,
            udp_port_imu,
            format,
        })
    }

    /// Packets in one full frame (rounded up).
    pub fn packets_per_frame(&self) -> usize {
        self.columns_per_frame.div_ceil(self.columns_per_packet)
    }

    /// Columns inside the column window (those a full frame carries).
    pub fn columns_in_window(&self) -> usize {
        let (s, e) = self.column_window;
        if s <= e {
            e - s + 1
        } else {
            self.columns_per_frame - s + e + 1
        }
    }

    /// Whether column `c` is inside the column window.
    pub fn in_window(&self, c: usize) -> bool {
        let (s, e) = self.column_window;
        if s <= e {
            (s..=e).contains(&c)
        } else {
            c >= s || c <= e
        }
    }

    /// Precompute each pixel's direction and offset, per the Ouster
    /// software user guide "lidar range to XYZ" (ouster-sdk `make_xyz_lut`):
    /// encoder angle `θe = 2π(1 − col/W)`, beam azimuth `θa = −az·π/180`,
    /// elevation `φ = alt·π/180`, beam offset `n`;
    /// `x = (r − n)cos(θe+θa)cos φ + n cos θe`,
    /// `y = (r − n)sin(θe+θa)cos φ + n sin θe`, `z = (r − n) sin φ`,
    /// then the lidar-to-sensor transform.
    pub fn xyz_lut(&self) -> XyzLut {
        let w = self.columns_per_frame;
        let h = self.pixels_per_column;
        let n = self.lidar_origin_to_beam_origin_mm;
        let t = &self.lidar_to_sensor_transform;
        let rot = |v: [f64; 3]| {
            [
                t[0] * v[0] + t[1] * v[1] + t[2] * v[2],
                t[4] * v[0] + t[5] * v[1] + t[6] * v[2],
                t[8] * v[0] + t[9] * v[1] + t[10] * v[2],
            ]
        };
        let mut dir = Vec::with_capacity(w * h);
        let mut off = Vec::with_capacity(w * h);
        for col in 0..w {
            let enc = 2.0 * std::f64::consts::PI * (1.0 - col as f64 / w as f64);
            for row in 0..h {
                let az = -self.beam_azimuth_angles[row].to_radians();
                let phi = self.beam_altitude_angles[row].to_radians();
                let d = [(enc + az).cos() * phi.cos(), (enc + az).sin() * phi.cos(), phi.sin()];
                let o = [n * enc.cos() - n * d[0], n * enc.sin() - n * d[1], -n * d[2]];
                let d = rot(d);
                let o = rot(o);
                // Ranges are in mm and points in m: fold the unit into both.
                dir.push(d.map(|x| (x * 1e-3) as f32));
                off.push([
                    ((o[0] + t[3]) * 1e-3) as f32,
                    ((o[1] + t[7]) * 1e-3) as f32,
                    ((o[2] + t[11]) * 1e-3) as f32,
                ]);
            }
        }
        XyzLut { w, h, dir, off }
    }
}

/// Per-pixel direction and offset: `xyz = range_mm · dir + off`, in metres.
#[derive(Clone, Debug)]
pub struct XyzLut {
    w: usize,
    h: usize,
    dir: Vec<[f32; 3]>,
    off: Vec<[f32; 3]>,
}

impl XyzLut {
    /// The point of `range_mm` at (column, row); `None` outside the table.
    #[inline]
    pub fn point(&self, col: usize, row: usize, range_mm: u32) -> Option<[f32; 3]> {
        if col >= self.w || row >= self.h {
            return None;
        }
        let i = col * self.h + row;
        let (d, o) = (self.dir.get(i)?, self.off.get(i)?);
        let r = range_mm as f32;
        Some([r * d[0] + o[0], r * d[1] + o[1], r * d[2] + o[2]])
    }
}

/// The packet header (absent fields are `None` for LEGACY).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PacketHeader {
    /// Packet type (1 = lidar).
    pub packet_type: Option<u16>,
    /// Frame ID (u16, or u32 for FUSA); LEGACY: from the first column.
    pub frame_id: u32,
    /// Initialization ID (u24).
    pub init_id: Option<u32>,
    /// Serial number (u40).
    pub prod_sn: Option<u64>,
    /// Alert flags.
    pub alert_flags: Option<u8>,
    /// Countdown to thermal shutdown.
    pub countdown_thermal_shutdown: Option<u8>,
    /// Countdown to shot limiting.
    pub countdown_shot_limiting: Option<u8>,
    /// Thermal shutdown status (4 bits).
    pub thermal_shutdown: Option<u8>,
    /// Shot limiting status (4 bits).
    pub shot_limiting: Option<u8>,
}

/// One pixel's returns; fields a profile lacks are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Pixel {
    /// Range, mm (0 = no return).
    pub range_mm: u32,
    /// Calibrated reflectivity.
    pub reflectivity: u8,
    /// Signal photons.
    pub signal: u16,
    /// Near-infrared ambient photons.
    pub near_ir: u16,
    /// Second return range, mm (dual profiles).
    pub range2_mm: u32,
    /// Second return reflectivity.
    pub reflectivity2: u8,
    /// Second return signal.
    pub signal2: u16,
}

/// Footer CRC state of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrcStatus {
    /// LEGACY, FUSA, or an all-zero footer (firmware before 3.x).
    Absent,
    /// The CRC-64 matches.
    Valid,
    /// A CRC is there and does not match.
    Mismatch,
}

/// A lidar packet checked against the metadata, borrowed.
#[derive(Clone, Copy, Debug)]
pub struct LidarPacket<'a> {
    fmt: &'a PacketFormat,
    buf: &'a [u8],
}

impl<'a> LidarPacket<'a> {
    /// Check the size against the metadata, the packet type, and every
    /// column's measurement ID.
    pub fn parse(meta: &'a OusterMeta, buf: &'a [u8]) -> Result<Self, OusterError> {
        let fmt = &meta.format;
        if buf.len() != fmt.packet_size {
            return Err(OusterError::PacketSize {
                expected: fmt.packet_size,
                got: buf.len(),
                profile: fmt.profile.name(),
                columns: fmt.columns_per_packet,
                pixels: fmt.pixels_per_column,
            });
        }
        let p = LidarPacket { fmt, buf };
        let ty = p.header().packet_type;
        if let Some(t) = ty {
            if t != 1 {
                return Err(OusterError::PacketType { got: t });
            }
        }
        for c in 0..fmt.columns_per_packet {
            let mid = p.column(c).measurement_id;
            if usize::from(mid) >= meta.columns_per_frame {
                return Err(OusterError::MeasurementId {
                    column: c,
                    offset: p.col_offset(c) + 8,
                    got: mid,
                    columns_per_frame: meta.columns_per_frame,
                });
            }
        }
        Ok(p)
    }

    /// The datagram.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The layout.
    pub fn format(&self) -> &'a PacketFormat {
        self.fmt
    }

    fn col_offset(&self, c: usize) -> usize {
        self.fmt.packet_header + c * self.fmt.col_size
    }

    /// The packet header.
    pub fn header(&self) -> PacketHeader {
        let b = self.buf;
        match self.fmt.profile.header_kind() {
            HeaderKind::None => PacketHeader {
                packet_type: None,
                // LEGACY keeps frame_id in each column header (byte 10).
                frame_id: u32::from(u16_le(b, 10).unwrap_or(0)),
                init_id: None,
                prod_sn: None,
                alert_flags: None,
                countdown_thermal_shutdown: None,
                countdown_shot_limiting: None,
                thermal_shutdown: None,
                shot_limiting: None,
            },
            HeaderKind::Standard => PacketHeader {
                packet_type: u16_le(b, 0),
                frame_id: u32::from(u16_le(b, 2).unwrap_or(0)),
                init_id: uint_le(b, 4, 3).map(|v| v as u32),
                prod_sn: uint_le(b, 7, 5),
                alert_flags: u8_at(b, 12),
                countdown_thermal_shutdown: u8_at(b, 16),
                countdown_shot_limiting: u8_at(b, 17),
                thermal_shutdown: u8_at(b, 18).map(|v| v & 0x0F),
                // ouster-sdk reads shot_limiting from bits 156..160, the
                // high nibble of byte 19.
                shot_limiting: u8_at(b, 19).map(|v| v >> 4),
            },
            HeaderKind::Fusa => PacketHeader {
                packet_type: u8_at(b, 0).map(u16::from),
                frame_id: u32_le(b, 4).unwrap_or(0),
                init_id: uint_le(b, 1, 3).map(|v| v as u32),
                prod_sn: uint_le(b, 11, 5),
                alert_flags: u8_at(b, 8),
                countdown_thermal_shutdown: u8_at(b, 16),
                countdown_shot_limiting: u8_at(b, 17),
                thermal_shutdown: u8_at(b, 18).map(|v| v & 0x0F),
                shot_limiting: u8_at(b, 19).map(|v| v >> 4),
            },
        }
    }

    /// The frame ID.
    pub fn frame_id(&self) -> u32 {
        self.header().frame_id
    }

    /// Column `c` (clamped to the packet).
    pub fn column(&self, c: usize) -> Column<'a> {
        let c = c.min(self.fmt.columns_per_packet.saturating_sub(1));
        let o = self.col_offset(c);
        let b = self.buf.get(o..o + self.fmt.col_size).unwrap_or(&[]);
        let legacy = self.fmt.profile == Profile::Legacy;
        Column {
            fmt: self.fmt,
            timestamp_ns: u64_le(b, 0).unwrap_or(0),
            measurement_id: u16_le(b, 8).unwrap_or(0),
            frame_id: if legacy { u16_le(b, 10) } else { None },
            encoder_count: if legacy { u32_le(b, 12) } else { None },
            status: if legacy {
                u32_le(b, self.fmt.col_size.saturating_sub(4)).unwrap_or(0)
            } else {
                u32::from(u16_le(b, 10).unwrap_or(0))
            },
            buf: b,
        }
    }

    /// All columns in order.
    pub fn columns(&self) -> impl Iterator<Item = Column<'a>> + '_ {
        (0..self.fmt.columns_per_packet).map(|c| self.column(c))
    }

    /// Check the header's init_id and prod_sn against the metadata (when
    /// both sides have them).
    pub fn check_pairing(&self, meta: &OusterMeta) -> Result<(), OusterError> {
        let h = self.header();
        if let (Some(expected), Some(got)) = (meta.init_id, h.init_id) {
            if expected != got {
                return Err(OusterError::InitIdMismatch { expected, got });
            }
        }
        if let (Some(expected), Some(got)) = (meta.prod_sn, h.prod_sn) {
            if expected != got {
                return Err(OusterError::ProdSnMismatch { expected, got });
            }
        }
        Ok(())
    }

    /// The footer CRC-64 state (3.x firmware puts a CRC-64/ECMA-182,
    /// reflected, in the last 8 bytes; earlier 2.x footers are zero).
    pub fn crc_status(&self) -> CrcStatus {
        if self.fmt.profile.header_kind() != HeaderKind::Standard {
            return CrcStatus::Absent;
        }
        let n = self.buf.len();
        let Some(stored) = u64_le(self.buf, n.saturating_sub(8)) else {
            return CrcStatus::Absent;
        };
        if stored == 0 {
            return CrcStatus::Absent;
        }
        let crc = crc64(&self.buf[..n - 8]);
        // The byte order of the stored CRC is not documented in our
        // reference; accept either rather than drop good packets.
        if crc == stored || crc.swap_bytes() == stored {
            CrcStatus::Valid
        } else {
            CrcStatus::Mismatch
        }
    }
}

/// One column of a packet.
#[derive(Clone, Copy, Debug)]
pub struct Column<'a> {
    fmt: &'a PacketFormat,
    buf: &'a [u8],
    /// Timestamp, ns (sensor clock: internal, PTP or GPS per timestamp_mode).
    pub timestamp_ns: u64,
    /// Column index in the frame, 0..columns_per_frame.
    pub measurement_id: u16,
    /// LEGACY only: frame ID.
    pub frame_id: Option<u16>,
    /// LEGACY only: encoder count (90112 per revolution).
    pub encoder_count: Option<u32>,
    /// Status: LEGACY u32 (0xFFFFFFFF valid), else u16 (bit 0 valid).
    pub status: u32,
}

impl<'a> Column<'a> {
    /// Whether the column holds a measurement (inside the azimuth window).
    pub fn valid(&self) -> bool {
        if self.fmt.profile == Profile::Legacy {
            self.status == 0xFFFF_FFFF
        } else {
            self.status & 1 == 1
        }
    }

    /// Pixel `row` (zeroes past the end).
    pub fn pixel(&self, row: usize) -> Pixel {
        let o = self.fmt.col_header + row * self.fmt.pixel_bytes;
        let Some(px) = self.buf.get(o..o + self.fmt.pixel_bytes) else {
            return Pixel::default();
        };
        decode_pixel(self.fmt.profile, px)
    }
}

/// Decode one pixel per the profile tables of ouster-sdk `parsing.cpp`.
fn decode_pixel(profile: Profile, px: &[u8]) -> Pixel {
    let u32at = |o| u32_le(px, o).unwrap_or(0);
    let u16at = |o| u16_le(px, o).unwrap_or(0);
    let u8at = |o| u8_at(px, o).unwrap_or(0);
    // Low-bandwidth words: 15-bit range in 8 mm units, flag bit 15,
    // reflectivity, and NIR in units of 16.
    let lb_range = |o| u32::from(u16at(o) & 0x7FFF) << 3;
    match profile {
        Profile::Legacy => Pixel {
            range_mm: u32at(0) & 0x000F_FFFF,
            reflectivity: u8at(4),
            signal: u16at(6),
            near_ir: u16at(8),
            ..Pixel::default()
        },
        Profile::Single => Pixel {
            range_mm: u32at(0) & 0x0007_FFFF,
            reflectivity: u8at(4),
            signal: u16at(6),
            near_ir: u16at(8),
            ..Pixel::default()
        },
        Profile::Dual | Profile::FiveWord => Pixel {
            range_mm: u32at(0) & 0x0007_FFFF,
            reflectivity: u8at(3),
            range2_mm: u32at(4) & 0x0007_FFFF,
            reflectivity2: u8at(7),
            signal: u16at(8),
            signal2: u16at(10),
            near_ir: u16at(12),
        },
        Profile::LowBandwidth => Pixel {
            range_mm: lb_range(0),
            reflectivity: u8at(2),
            near_ir: u16::from(u8at(3)) << 4,
            ..Pixel::default()
        },
        Profile::LowBandwidthDual | Profile::FusaDual => Pixel {
            range_mm: lb_range(0),
            reflectivity: u8at(2),
            near_ir: u16::from(u8at(3)) << 4,
            range2_mm: lb_range(4),
            reflectivity2: u8at(6),
            ..Pixel::default()
        },
    }
}

/// Append the valid returns of a packet to `out` as points in metres in the
/// sensor frame; intensity is the reflectivity. Both returns of dual
/// profiles are emitted.
pub fn decode_points(packet: &LidarPacket<'_>, lut: &XyzLut, out: &mut Vec<Point>) {
    let rows = packet.format().pixels_per_column;
    let dual = packet.format().profile.is_dual();
    for col in packet.columns() {
        if !col.valid() {
            continue;
        }
        let c = usize::from(col.measurement_id);
        for row in 0..rows {
            let px = col.pixel(row);
            for (r, refl) in [(px.range_mm, px.reflectivity), (px.range2_mm, px.reflectivity2)]
                .into_iter()
                .take(if dual { 2 } else { 1 })
            {
                if r == 0 {
                    continue;
                }
                if let Some([x, y, z]) = lut.point(c, row, r) {
                    out.push(Point {
                        x,
                        y,
                        z,
                        intensity_or_velocity: f32::from(refl),
                    });
                }
            }
        }
    }
}

const CRC64_POLY_REFLECTED: u64 = 0xC96C_5795_D787_0F42;

const fn crc64_table() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ CRC64_POLY_REFLECTED
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

static CRC64_TABLE: [u64; 256] = crc64_table();

/// CRC-64/ECMA-182 reflected, init and xorout all ones (a.k.a. CRC-64/XZ),
/// as in Ouster 3.x packet footers.
pub fn crc64(data: &[u8]) -> u64 {
    let mut c = !0u64;
    for &b in data {
        c = CRC64_TABLE[((c ^ u64::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Parameters of a synthetic packet for [`build_packet`].
#[derive(Clone, Debug)]
pub struct SyntheticPacket {
    /// Frame ID.
    pub frame_id: u32,
    /// Initialization ID.
    pub init_id: u32,
    /// Serial number.
    pub prod_sn: u64,
    /// Measurement ID of the first column; the others follow.
    pub first_column: u16,
    /// Timestamp of the first column, ns; later columns add `column_ns`.
    pub timestamp_ns: u64,
    /// Time between columns, ns.
    pub column_ns: u64,
    /// Range of every pixel, mm.
    pub range_mm: u32,
}

/// Build a packet in the metadata's format (tests, benches and synthetic
/// sources). Every column is valid; pixel fields are set per profile.
pub fn build_packet(meta: &OusterMeta, p: &SyntheticPacket) -> Vec<u8> {
    let f = &meta.format;
    let mut b = vec![0u8; f.packet_size];
    match f.profile.header_kind() {
        HeaderKind::None => {}
        HeaderKind::Standard => {
            b[0..2].copy_from_slice(&1u16.to_le_bytes());
            b[2..4].copy_from_slice(&(p.frame_id as u16).to_le_bytes());
            b[4..7].copy_from_slice(&p.init_id.to_le_bytes()[..3]);
            b[7..12].copy_from_slice(&p.prod_sn.to_le_bytes()[..5]);
        }
        HeaderKind::Fusa => {
            b[0] = 1;
            b[1..4].copy_from_slice(&p.init_id.to_le_bytes()[..3]);
            b[4..8].copy_from_slice(&p.frame_id.to_le_bytes());
            b[11..16].copy_from_slice(&p.prod_sn.to_le_bytes()[..5]);
        }
    }
    for c in 0..f.columns_per_packet {
        let o = f.packet_header + c * f.col_size;
        let ts = p.timestamp_ns + c as u64 * p.column_ns;
        b[o..o + 8].copy_from_slice(&ts.to_le_bytes());
        let mid = p.first_column.wrapping_add(c as u16);
        b[o + 8..o + 10].copy_from_slice(&mid.to_le_bytes());
        if f.profile == Profile::Legacy {
            b[o + 10..o + 12].copy_from_slice(&(p.frame_id as u16).to_le_bytes());
            let enc = (u32::from(mid) * ENCODER_TICKS_PER_REV) / meta.columns_per_frame as u32;
            b[o + 12..o + 16].copy_from_slice(&enc.to_le_bytes());
            let s = o + f.col_size - 4;
            b[s..s + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        } else {
            b[o + 10..o + 12].copy_from_slice(&1u16.to_le_bytes());
        }
        for row in 0..f.pixels_per_column {
            let po = o + f.col_header + row * f.pixel_bytes;
            let px = &mut b[po..po + f.pixel_bytes];
            match f.profile {
                Profile::Legacy | Profile::Single | Profile::Dual | Profile::FiveWord => {
                    px[0..4].copy_from_slice(&(p.range_mm & 0x7FFFF).to_le_bytes());
                }
                Profile::LowBandwidth | Profile::LowBandwidthDual | Profile::FusaDual => {
                    let r = ((p.range_mm >> 3) & 0x7FFF) as u16;
                    px[0..2].copy_from_slice(&r.to_le_bytes());
                }
            }
            let refl_at = match f.profile {
                Profile::Dual | Profile::FiveWord => 3,
                Profile::Legacy | Profile::Single => 4,
                _ => 2,
            };
            px[refl_at] = (row % 256) as u8;
        }
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLAT: &str = r#"{
        "beam_altitude_angles": [10.0, 0.0, -10.0, -20.0],
        "beam_azimuth_angles": [1.0, -1.0, 1.0, -1.0],
        "data_format": {"columns_per_frame": 512, "columns_per_packet": 16,
            "pixels_per_column": 4, "column_window": [0, 511],
            "pixel_shift_by_row": [3, 1, -1, -3],
            "udp_profile_lidar": "RNG19_RFL8_SIG16_NIR16"},
        "initialization_id": 77, "prod_sn": "123456789", "prod_line": "OS-1-4",
        "lidar_mode": "512x10", "lidar_origin_to_beam_origin_mm": 15.0,
        "lidar_to_sensor_transform": [1,0,0,0, 0,1,0,0, 0,0,1,0, 0,0,0,1],
        "udp_port_lidar": 7502, "udp_port_imu": 7503
    }"#;

    fn synth(frame_id: u32, first_column: u16) -> SyntheticPacket {
        SyntheticPacket {
            frame_id,
            init_id: 77,
            prod_sn: 123_456_789,
            first_column,
            timestamp_ns: 1_000_000,
            column_ns: 195_312,
            range_mm: 5_000,
        }
    }

    #[test]
    fn flat_metadata_parses() {
        let m = OusterMeta::from_json(FLAT).unwrap();
        assert_eq!(m.shape, MetaShape::Flat);
        assert_eq!(m.profile, Profile::Single);
        assert_eq!(
            (m.columns_per_frame, m.columns_per_packet, m.pixels_per_column),
            (512, 16, 4)
        );
        assert_eq!(m.init_id, Some(77));
        assert_eq!(m.prod_sn, Some(123_456_789));
        assert_eq!(m.format.packet_size, 32 + 16 * (12 + 4 * 12) + 32);
        assert_eq!(m.packets_per_frame(), 32);
        assert_eq!(m.pixel_shift_by_row, vec![3, 1, -1, -3]);
    }

    #[test]
    fn reduced_metadata_takes_legacy_defaults() {
        let m = OusterMeta::from_json(
            r#"{"beam_altitude_angles":[1,2],"beam_azimuth_angles":[0,0],"lidar_mode":"2048x10"}"#,
        )
        .unwrap();
        assert_eq!(m.shape, MetaShape::Reduced);
        assert_eq!(m.profile, Profile::Legacy);
        assert_eq!(
            (m.columns_per_frame, m.columns_per_packet, m.pixels_per_column),
            (2048, 16, 2)
        );
        assert_eq!(m.format.packet_size, 16 * (16 + 2 * 12 + 4));
        assert_eq!(m.lidar_to_sensor_transform, DEFAULT_LIDAR_TO_SENSOR_TRANSFORM);
    }

    #[test]
    fn metadata_errors_name_the_field() {
        let e = OusterMeta::from_json(r#"{"beam_altitude_angles":[1],"beam_azimuth_angles":[0]}"#).unwrap_err();
        assert!(e.to_string().contains("lidar_mode"), "{e}");
        let e =
            OusterMeta::from_json(r#"{"beam_altitude_angles":[1,2],"beam_azimuth_angles":[0],"lidar_mode":"1024x10"}"#)
                .unwrap_err();
        assert_eq!(
            e,
            OusterError::AngleCount {
                field: "beam_azimuth_angles",
                expected: 2,
                got: 1
            }
        );
        let e = OusterMeta::from_json(&FLAT.replace("RNG19_RFL8_SIG16_NIR16", "ZONE_MAGIC")).unwrap_err();
        assert!(
            e.to_string().contains("ZONE_MAGIC") && e.to_string().contains("LEGACY"),
            "{e}"
        );
        let e = OusterMeta::from_json(&FLAT.replace("\"columns_per_packet\": 16", "\"columns_per_packet\": -1"))
            .unwrap_err();
        assert!(e.to_string().contains("columns_per_packet"), "{e}");
        assert!(matches!(
            OusterMeta::from_json("[1,2]"),
            Err(OusterError::BadField { .. })
        ));
        assert!(matches!(OusterMeta::from_json("{"), Err(OusterError::Json(_))));
    }

    #[test]
    fn synthetic_2x_packets_parse_back() {
        let m = OusterMeta::from_json(FLAT).unwrap();
        let b = build_packet(&m, &synth(42, 32));
        let p = LidarPacket::parse(&m, &b).unwrap();
        let h = p.header();
        assert_eq!(h.packet_type, Some(1));
        assert_eq!(h.frame_id, 42);
        assert_eq!(h.init_id, Some(77));
        assert_eq!(h.prod_sn, Some(123_456_789));
        p.check_pairing(&m).unwrap();
        let cols: Vec<u16> = p.columns().map(|c| c.measurement_id).collect();
        assert_eq!(cols, (32..48).collect::<Vec<_>>());
        let c = p.column(1);
        assert!(c.valid());
        assert_eq!(c.timestamp_ns, 1_000_000 + 195_312);
        assert_eq!(c.pixel(2).range_mm, 5_000);
        assert_eq!(c.pixel(2).reflectivity, 2);
        assert_eq!(p.crc_status(), CrcStatus::Absent);
    }

    #[test]
    fn every_profile_round_trips_a_synthetic_packet() {
        for profile in Profile::ALL {
            let json = if profile == Profile::Legacy {
                FLAT.replace(
                    "\"udp_profile_lidar\": \"RNG19_RFL8_SIG16_NIR16\"",
                    "\"udp_profile_lidar\": \"LEGACY\"",
                )
            } else {
                FLAT.replace("RNG19_RFL8_SIG16_NIR16", profile.name())
            };
            let m = OusterMeta::from_json(&json).unwrap();
            assert_eq!(m.profile, profile);
            let b = build_packet(&m, &synth(7, 0));
            let p = LidarPacket::parse(&m, &b).unwrap();
            assert_eq!(p.frame_id(), 7, "{profile:?}");
            assert_eq!(p.column(3).pixel(1).range_mm, 5_000, "{profile:?}");
            assert!(p.column(3).valid());
            let lut = m.xyz_lut();
            let mut pts = Vec::new();
            decode_points(&p, &lut, &mut pts);
            assert_eq!(pts.len(), 16 * 4, "{profile:?}");
        }
    }

    #[test]
    fn wrong_sizes_types_and_ids_are_refused() {
        let m = OusterMeta::from_json(FLAT).unwrap();
        let b = build_packet(&m, &synth(1, 0));
        let e = LidarPacket::parse(&m, &b[..b.len() - 1]).unwrap_err();
        assert!(
            matches!(e, OusterError::PacketSize { expected, got, .. } if expected == b.len() && got == b.len() - 1)
        );
        let mut t = b.clone();
        t[0] = 2;
        assert_eq!(
            LidarPacket::parse(&m, &t).unwrap_err(),
            OusterError::PacketType { got: 2 }
        );
        let b = build_packet(&m, &synth(1, 500));
        assert!(matches!(
            LidarPacket::parse(&m, &b),
            Err(OusterError::MeasurementId {
                column: 12,
                got: 512,
                ..
            })
        ));
        let mut other = synth(1, 0);
        other.init_id = 78;
        let b = build_packet(&m, &other);
        let p = LidarPacket::parse(&m, &b).unwrap();
        assert_eq!(
            p.check_pairing(&m),
            Err(OusterError::InitIdMismatch { expected: 77, got: 78 })
        );
    }

    #[test]
    fn crc64_matches_the_xz_check_value() {
        assert_eq!(crc64(b"123456789"), 0x995D_C9BB_DF19_39FA);
        let m = OusterMeta::from_json(FLAT).unwrap();
        let mut b = build_packet(&m, &synth(1, 0));
        let n = b.len();
        let crc = crc64(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(LidarPacket::parse(&m, &b).unwrap().crc_status(), CrcStatus::Valid);
        b[100] ^= 1;
        assert_eq!(LidarPacket::parse(&m, &b).unwrap().crc_status(), CrcStatus::Mismatch);
    }

    #[test]
    fn xyz_follows_the_documented_formula() {
        let m = OusterMeta::from_json(FLAT).unwrap();
        let lut = m.xyz_lut();
        // Column 0: θe = 2π; row 1: alt 0°, az −1° → θa = +1°.
        let [x, y, z] = lut.point(0, 1, 10_000).unwrap();
        let n = 15.0f64;
        let r = 10_000.0 - n;
        let a = 1f64.to_radians();
        assert!((f64::from(x) - (r * a.cos() + n) / 1000.0).abs() < 1e-4, "{x}");
        assert!((f64::from(y) - r * a.sin() / 1000.0).abs() < 1e-4, "{y}");
        assert!(z.abs() < 1e-6);
        assert!(lut.point(512, 0, 1).is_none());
        // Column W/4 points to −y (the encoder turns clockwise).
        let [_, y, _] = lut.point(128, 1, 10_000).unwrap();
        assert!(y < -9.0, "{y}");
    }

    #[test]
    fn column_windows_may_wrap() {
        let mut m = OusterMeta::from_json(FLAT).unwrap();
        m.column_window = (500, 10);
        assert_eq!(m.columns_in_window(), 23);
        assert!(m.in_window(505) && m.in_window(0) && !m.in_window(11));
    }
}
