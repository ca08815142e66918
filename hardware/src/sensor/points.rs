//! Points from a stored sensor frame, for playback.
//!
//! A sensor track's frames hold raw packets ([`super::assembler`]); a player
//! turns them into points with the track's codec ID and CodecPrivate:
//! [`decode_frame`] for one frame, or a [`FrameDecoder`] to reuse the
//! parsed descriptor and lookup tables across frames.

use super::ars408::{self, Ars408Error, Message, StoredCanFrame};
use super::assembler::{iter_packets, PackError};
use super::mmwave::{self, MmwaveError};
use super::ouster::{self, LidarPacket, OusterError, OusterMeta, XyzLut};
use super::track::{Descriptor, SensorCodec, TrackError};
use super::velodyne::{self, DataPacket, PointDecoder, VelodyneError};

/// One point: position in metres (sensor frame) and, for LIDAR, the
/// intensity / reflectivity, for RADAR the radial velocity in m/s.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
#[repr(C)]
pub struct Point {
    /// x, m.
    pub x: f32,
    /// y, m.
    pub y: f32,
    /// z, m.
    pub z: f32,
    /// LIDAR intensity (0–255) or RADAR velocity (m/s).
    pub intensity_or_velocity: f32,
}

/// Why a frame could not be decoded.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Codec ID or descriptor problem.
    #[error(transparent)]
    Track(#[from] TrackError),
    /// The packed payload is damaged.
    #[error(transparent)]
    Payload(#[from] PackError),
    /// A Velodyne packet in the frame is bad.
    #[error("packet {packet} of the frame: {source}")]
    Velodyne {
        /// Packet index in the frame.
        packet: usize,
        /// What was wrong.
        source: VelodyneError,
    },
    /// An Ouster packet in the frame is bad.
    #[error("packet {packet} of the frame: {source}")]
    Ouster {
        /// Packet index in the frame.
        packet: usize,
        /// What was wrong.
        source: OusterError,
    },
    /// A TI mmWave frame is bad.
    #[error("packet {packet} of the frame: {source}")]
    Mmwave {
        /// Packet index in the frame.
        packet: usize,
        /// What was wrong.
        source: MmwaveError,
    },
    /// An ARS408 CAN record in the frame is bad.
    #[error("CAN record {packet} of the frame: {source}")]
    Ars408 {
        /// Record index in the frame.
        packet: usize,
        /// What was wrong.
        source: Ars408Error,
    },
    /// No built-in laser table for the track's Velodyne model.
    #[error(transparent)]
    NoDecoder(VelodyneError),
    /// A Velodyne packet of another model than the track's.
    #[error("packet {packet} of the frame is from a {got}: the track is {expected}")]
    ModelMismatch {
        /// Packet index in the frame.
        packet: usize,
        /// The track's model.
        expected: velodyne::Model,
        /// The packet's model.
        got: velodyne::Model,
    },
}

enum Inner {
    Velodyne(Box<PointDecoder>),
    Ouster { meta: Box<OusterMeta>, lut: XyzLut },
    Mmwave,
    Ars408,
}

/// A decoder for one track: codec and descriptor parsed once, lookup
/// tables built once.
pub struct FrameDecoder {
    inner: Inner,
}

impl std::fmt::Debug for FrameDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.inner {
            Inner::Velodyne(d) => format!("Velodyne {}", d.model()),
            Inner::Ouster { meta, .. } => format!("Ouster {:?}", meta.prod_line),
            Inner::Mmwave => "TI mmWave".into(),
            Inner::Ars408 => "Continental ARS408".into(),
        };
        f.debug_struct("FrameDecoder").field("sensor", &kind).finish()
    }
}

impl FrameDecoder {
    /// A decoder for a track's codec ID and CodecPrivate. Velodyne needs
    /// nothing from CodecPrivate (the model is in the codec ID); Ouster
    /// needs its metadata there.
    pub fn new(codec_id: &str, private: &[u8]) -> Result<Self, DecodeError> {
        let inner = match SensorCodec::from_codec_id(codec_id)? {
            SensorCodec::Velodyne(model) => {
                Inner::Velodyne(Box::new(PointDecoder::new(model).map_err(DecodeError::NoDecoder)?))
            }
            SensorCodec::Ouster => {
                let d = Descriptor::from_bytes(private)?;
                let v = d
                    .ouster_metadata
                    .ok_or_else(|| TrackError::Descriptor("no ouster_metadata for an Ouster track".into()))?;
                let meta = OusterMeta::from_value(&v).map_err(TrackError::from)?;
                let lut = meta.xyz_lut();
                Inner::Ouster {
                    meta: Box::new(meta),
                    lut,
                }
            }
            SensorCodec::Mmwave => Inner::Mmwave,
            SensorCodec::Ars408 => Inner::Ars408,
        };
        Ok(FrameDecoder { inner })
    }

    /// Append the points of one frame payload to `out`.
    pub fn decode_into(&self, payload: &[u8], out: &mut Vec<Point>) -> Result<(), DecodeError> {
        for (i, p) in iter_packets(payload).enumerate() {
            let p = p?;
            match &self.inner {
                Inner::Velodyne(d) => {
                    let pkt = DataPacket::parse(p).map_err(|source| DecodeError::Velodyne { packet: i, source })?;
                    if pkt.model() != d.model() {
                        return Err(DecodeError::ModelMismatch {
                            packet: i,
                            expected: d.model(),
                            got: pkt.model(),
                        });
                    }
                    d.decode(&pkt, out);
                }
                Inner::Ouster { meta, lut } => {
                    let pkt =
                        LidarPacket::parse(meta, p).map_err(|source| DecodeError::Ouster { packet: i, source })?;
                    ouster::decode_points(&pkt, lut, out);
                }
                Inner::Mmwave => {
                    let f = mmwave::parse_frame(p).map_err(|source| DecodeError::Mmwave { packet: i, source })?;
                    out.extend(f.points().iter().map(|d| Point {
                        x: d.x,
                        y: d.y,
                        z: d.z,
                        intensity_or_velocity: d.velocity,
                    }));
                }
                Inner::Ars408 => {
                    // Object or cluster general messages become points:
                    // x = DistLong, y = DistLat, value = VrelLong.
                    let err = |source| DecodeError::Ars408 { packet: i, source };
                    let f = StoredCanFrame::from_bytes(p).map_err(err)?;
                    match ars408::decode(&f.frame).map_err(err)?.message {
                        Message::ObjectGeneral(ars408::ObjectGeneral(g))
                        | Message::ClusterGeneral(ars408::ClusterGeneral(g)) => out.push(Point {
                            x: g.dist_long,
                            y: g.dist_lat,
                            z: 0.0,
                            intensity_or_velocity: g.vrel_long,
                        }),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The points of one frame payload.
    pub fn decode(&self, payload: &[u8]) -> Result<Vec<Point>, DecodeError> {
        let mut out = Vec::new();
        self.decode_into(payload, &mut out)?;
        Ok(out)
    }
}

/// The points of one frame, from its track's codec ID and CodecPrivate.
pub fn decode_frame(codec_id: &str, private: &[u8], payload: &[u8]) -> Result<Vec<Point>, DecodeError> {
    FrameDecoder::new(codec_id, private)?.decode(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sensor::assembler::{pack_packets, TimePolicy};
    use crate::sensor::mmwave::{DetectedPoint, FrameBuilder};
    use crate::sensor::track::{mmwave_track, ouster_track, velodyne_track};
    use crate::sensor::velodyne::{build_data_packet, Channel, Model, ReturnMode};
    use fragmenter::TrackId;

    #[test]
    fn velodyne_frames_decode_through_the_track() {
        let t = velodyne_track(TrackId::new(1).unwrap(), Model::Hdl32e, None, &TimePolicy::default()).unwrap();
        let p = build_data_packet(
            &[100; 12],
            &|_, c| Channel {
                distance: if c == 15 { 1000 } else { 0 },
                intensity: 3,
            },
            0,
            ReturnMode::Strongest,
            Model::Hdl32e,
        );
        let payload = pack_packets([&p, &p]).unwrap();
        let pts = decode_frame(t.mkv_codec_id(), &t.codec_private(), &payload).unwrap();
        // Laser 15 of the HDL-32E is at 0° elevation: 24 returns at 2 m.
        assert_eq!(pts.len(), 24);
        for q in &pts {
            assert!((q.x.hypot(q.y) - 2.0).abs() < 1e-3 && q.z.abs() < 1e-6, "{q:?}");
        }
        let mut other = p.clone();
        other[1205] = 0x22;
        let bad = pack_packets([&other]).unwrap();
        assert!(matches!(
            decode_frame(t.mkv_codec_id(), &[], &bad),
            Err(DecodeError::ModelMismatch { packet: 0, .. })
        ));
        assert!(matches!(
            decode_frame(t.mkv_codec_id(), &[], &[1, 2]),
            Err(DecodeError::Payload(_))
        ));
    }

    #[test]
    fn ouster_and_mmwave_frames_decode_through_the_track() {
        let json = r#"{"beam_altitude_angles":[0,0],"beam_azimuth_angles":[0,0],
            "data_format":{"columns_per_frame":32,"columns_per_packet":16,"pixels_per_column":2,
            "udp_profile_lidar":"RNG19_RFL8_SIG16_NIR16"},"lidar_mode":"32x10"}"#;
        let t = ouster_track(TrackId::new(1).unwrap(), json, &TimePolicy::default()).unwrap();
        let meta = OusterMeta::from_json(json).unwrap();
        let pkt = ouster::build_packet(
            &meta,
            &ouster::SyntheticPacket {
                frame_id: 1,
                init_id: 0,
                prod_sn: 0,
                first_column: 0,
                timestamp_ns: 0,
                column_ns: 0,
                range_mm: 3_000,
            },
        );
        let pts = decode_frame(t.mkv_codec_id(), &t.codec_private(), &pack_packets([&pkt]).unwrap()).unwrap();
        assert_eq!(pts.len(), 32);
        assert!(pts.iter().all(|p| (p.x.hypot(p.y) - 3.0).abs() < 1e-3));
        assert!(matches!(
            decode_frame(t.mkv_codec_id(), b"{}", &[]),
            Err(DecodeError::Track(_))
        ));

        let t = mmwave_track(TrackId::new(2).unwrap(), "IWR6843", None, &TimePolicy::default()).unwrap();
        let f = FrameBuilder::new(1)
            .points(&[DetectedPoint {
                x: 1.0,
                y: 2.0,
                z: 3.0,
                velocity: -0.5,
            }])
            .build();
        let pts = decode_frame(t.mkv_codec_id(), &t.codec_private(), &pack_packets([&f]).unwrap()).unwrap();
        assert_eq!(
            pts,
            vec![Point {
                x: 1.0,
                y: 2.0,
                z: 3.0,
                intensity_or_velocity: -0.5
            }]
        );
    }
}
