//! The Matroska track of each sensor: codec ID and CodecPrivate descriptor.
//!
//! Codec IDs follow the Matroska rules checked by
//! [`fragmenter::media::SensorCodecId`]: `O_` (complex track), a major ID of
//! `[A-Z0-9]`, a suffix of `[A-Z0-9_/]`, at most 32 bytes (KVS):
//!
//! * `O_VELODYNE/<MODEL>_PACKET`, e.g. `O_VELODYNE/HDL32E_PACKET`;
//! * `O_OUSTER/LIDAR_PACKET`;
//! * `O_TIMMWAVE/OOB_UART`;
//! * `O_CAN/ARS408` (Continental ARS408-21 CAN frames of one cycle).
//!
//! CodecPrivate is a JSON descriptor: what the sensor is, how frame times
//! were chosen, the payload layout, and whatever decoding needs (the Ouster
//! metadata, the TI `.cfg` text). KVS allows at most 1 MiB.

use bytes::Bytes;
use fragmenter::media::{MediaError, SensorCodecId, SensorKind, SensorTrack};
use fragmenter::{Track, TrackId};
use serde_json::{json, Value};

use super::ars408::Ars408Mode;
use super::assembler::TimePolicy;
use super::ouster::{OusterError, OusterMeta};
use super::velodyne::Model;

/// Codec ID of Ouster lidar packet tracks.
pub const OUSTER_CODEC_ID: &str = "O_OUSTER/LIDAR_PACKET";
/// Codec ID of TI mmWave out-of-box demo UART tracks.
pub const MMWAVE_CODEC_ID: &str = "O_TIMMWAVE/OOB_UART";
/// Codec ID of Continental ARS408 CAN tracks.
pub const ARS408_CODEC_ID: &str = "O_CAN/ARS408";
/// What the ARS408 descriptor says of its decoding.
pub const ARS408_DECODER_NOTE: &str = "provisional, validate against ARS408_can_database_ch0.dbc";
/// The ARS408 payload record.
pub const ARS408_RECORD: &str = "t_ns u64le, can_id u32le, flags u8 (1 extended, 2 remote, 4 error), dlc u8, data[8]";
/// Prefix of Velodyne codec IDs.
pub const VELODYNE_CODEC_PREFIX: &str = "O_VELODYNE/";
/// Suffix of Velodyne codec IDs.
pub const VELODYNE_CODEC_SUFFIX: &str = "_PACKET";
/// Largest CodecPrivate KVS accepts.
pub const MAX_CODEC_PRIVATE: usize = 1 << 20;
/// Payload layout named in every descriptor.
pub const PAYLOAD_LAYOUT: &str = "u32le-length-prefixed-datagrams";
/// Descriptor format version.
pub const DESCRIPTOR_VERSION: u64 = 1;

/// What went wrong building or reading a sensor track.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum TrackError {
    /// The codec ID breaks the Matroska rules.
    #[error(transparent)]
    CodecId(#[from] MediaError),
    /// The codec ID is not one of ours.
    #[error("sensor codec ID {got:?} is unknown: expected O_VELODYNE/<MODEL>_PACKET, {OUSTER_CODEC_ID}, {MMWAVE_CODEC_ID} or {ARS408_CODEC_ID}")]
    UnknownCodec {
        /// The ID.
        got: String,
    },
    /// The descriptor is over the KVS CodecPrivate limit.
    #[error("sensor descriptor is {len} bytes: expected at most {max} (KVS CodecPrivate limit)")]
    TooLarge {
        /// Its size.
        len: usize,
        /// 1 MiB.
        max: usize,
    },
    /// The Ouster metadata does not parse.
    #[error("Ouster metadata for the track: {0}")]
    Metadata(#[from] OusterError),
    /// The descriptor JSON is unreadable or lacks a field.
    #[error("sensor descriptor: {0}")]
    Descriptor(String),
}

/// Which of our sensor codecs a track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SensorCodec {
    /// Velodyne data packets of one model.
    Velodyne(Model),
    /// Ouster lidar packets.
    Ouster,
    /// TI mmWave out-of-box demo UART frames.
    Mmwave,
    /// Continental ARS408 CAN frames, one measurement cycle per frame.
    Ars408,
}

impl SensorCodec {
    /// The codec ID text.
    pub fn codec_id_str(self) -> String {
        match self {
            SensorCodec::Velodyne(m) => {
                format!("{VELODYNE_CODEC_PREFIX}{}{VELODYNE_CODEC_SUFFIX}", m.codec_tag())
            }
            SensorCodec::Ouster => OUSTER_CODEC_ID.into(),
            SensorCodec::Mmwave => MMWAVE_CODEC_ID.into(),
            SensorCodec::Ars408 => ARS408_CODEC_ID.into(),
        }
    }

    /// The validated codec ID.
    pub fn codec_id(self) -> Result<SensorCodecId, TrackError> {
        Ok(SensorCodecId::new(&self.codec_id_str())?)
    }

    /// The codec a codec ID names.
    pub fn from_codec_id(id: &str) -> Result<SensorCodec, TrackError> {
        let unknown = || TrackError::UnknownCodec { got: id.to_owned() };
        match id {
            OUSTER_CODEC_ID => Ok(SensorCodec::Ouster),
            MMWAVE_CODEC_ID => Ok(SensorCodec::Mmwave),
            ARS408_CODEC_ID => Ok(SensorCodec::Ars408),
            _ => {
                let tag = id
                    .strip_prefix(VELODYNE_CODEC_PREFIX)
                    .and_then(|s| s.strip_suffix(VELODYNE_CODEC_SUFFIX))
                    .ok_or_else(unknown)?;
                Model::from_codec_tag(tag)
                    .map(SensorCodec::Velodyne)
                    .ok_or_else(unknown)
            }
        }
    }

    /// LIDAR or RADAR.
    pub fn kind(self) -> SensorKind {
        match self {
            SensorCodec::Mmwave | SensorCodec::Ars408 => SensorKind::Radar,
            _ => SensorKind::Lidar,
        }
    }
}

/// The CodecPrivate descriptor of a sensor track.
#[derive(Clone, Debug, PartialEq)]
pub struct Descriptor {
    /// Vendor, e.g. `Velodyne`.
    pub vendor: String,
    /// Model, e.g. `HDL-32E`, `OS-0-32-U1`, `IWR6843`.
    pub model: String,
    /// Firmware revision, when known.
    pub firmware: Option<String>,
    /// Serial number, when known.
    pub serial: Option<String>,
    /// How frame times are chosen, e.g.
    /// `sensor clock within 3000 ms of arrival, else arrival`.
    pub time_source: String,
    /// Ouster metadata JSON, as received from the sensor.
    pub ouster_metadata: Option<Value>,
    /// TI mmWave `.cfg` text sent to the CLI port.
    pub mmwave_cfg: Option<String>,
    /// ARS408 list mode: `object` or `cluster`.
    pub mode: Option<String>,
    /// How trustworthy the decoding is (ARS408: provisional).
    pub decoder: Option<String>,
    /// Layout of each payload record, when not a raw datagram (ARS408).
    pub record: Option<String>,
}

impl Descriptor {
    /// The JSON bytes, checked against the 1 MiB limit.
    pub fn to_bytes(&self) -> Result<Bytes, TrackError> {
        let mut v = json!({
            "descriptor_version": DESCRIPTOR_VERSION,
            "vendor": self.vendor,
            "model": self.model,
            "payload": PAYLOAD_LAYOUT,
            "time_source": self.time_source,
        });
        let o = v
            .as_object_mut()
            .ok_or_else(|| TrackError::Descriptor("not an object".into()))?;
        if let Some(f) = &self.firmware {
            o.insert("firmware".into(), json!(f));
        }
        if let Some(s) = &self.serial {
            o.insert("serial".into(), json!(s));
        }
        if let Some(m) = &self.ouster_metadata {
            o.insert("ouster_metadata".into(), m.clone());
        }
        if let Some(c) = &self.mmwave_cfg {
            o.insert("mmwave_cfg".into(), json!(c));
        }
        for (k, v) in [
            ("mode", &self.mode),
            ("decoder", &self.decoder),
            ("record", &self.record),
        ] {
            if let Some(v) = v {
                o.insert(k.into(), json!(v));
            }
        }
        let b = serde_json::to_vec(&v).map_err(|e| TrackError::Descriptor(e.to_string()))?;
        if b.len() > MAX_CODEC_PRIVATE {
            return Err(TrackError::TooLarge {
                len: b.len(),
                max: MAX_CODEC_PRIVATE,
            });
        }
        Ok(Bytes::from(b))
    }

    /// Read a descriptor back from CodecPrivate bytes.
    pub fn from_bytes(b: &[u8]) -> Result<Descriptor, TrackError> {
        let v: Value = serde_json::from_slice(b).map_err(|e| TrackError::Descriptor(e.to_string()))?;
        let s = |k: &'static str| v.get(k).and_then(Value::as_str).map(str::to_owned);
        let need = |k: &'static str| s(k).ok_or_else(|| TrackError::Descriptor(format!("no string field {k:?}")));
        if let Some(p) = v.get("payload") {
            if p.as_str() != Some(PAYLOAD_LAYOUT) {
                return Err(TrackError::Descriptor(format!(
                    "payload layout {p}: expected {PAYLOAD_LAYOUT:?}"
                )));
            }
        }
        Ok(Descriptor {
            vendor: need("vendor")?,
            model: need("model")?,
            firmware: s("firmware"),
            serial: s("serial"),
            time_source: s("time_source").unwrap_or_default(),
            ouster_metadata: v.get("ouster_metadata").filter(|m| !m.is_null()).cloned(),
            mmwave_cfg: s("mmwave_cfg"),
            mode: s("mode"),
            decoder: s("decoder"),
            record: s("record"),
        })
    }
}

fn time_source_text(policy: &TimePolicy, sensor_clock: &str) -> String {
    if policy.prefer_sensor {
        format!(
            "{sensor_clock} within {} ms of arrival, else arrival (host clock, UTC)",
            policy.tolerance.as_millis()
        )
    } else {
        "arrival (host clock, UTC)".into()
    }
}

fn sensor_track(id: TrackId, name: String, codec: SensorCodec, d: &Descriptor) -> Result<Track, TrackError> {
    Ok(Track::new(
        id,
        name,
        SensorTrack {
            kind: codec.kind(),
            codec_id: codec.codec_id()?,
            private: d.to_bytes()?,
        },
    ))
}

/// A Velodyne track.
pub fn velodyne_track(
    id: TrackId,
    model: Model,
    firmware: Option<&str>,
    policy: &TimePolicy,
) -> Result<Track, TrackError> {
    let d = Descriptor {
        vendor: "Velodyne".into(),
        model: model.name().into(),
        firmware: firmware.map(str::to_owned),
        serial: None,
        time_source: time_source_text(policy, "GPS top-of-hour counter in the arrival's hour"),
        ouster_metadata: None,
        mmwave_cfg: None,
        mode: None,
        decoder: None,
        record: None,
    };
    sensor_track(
        id,
        format!("Velodyne {}", model.name()),
        SensorCodec::Velodyne(model),
        &d,
    )
}

/// An Ouster track; the metadata JSON is checked and embedded.
pub fn ouster_track(id: TrackId, metadata_json: &str, policy: &TimePolicy) -> Result<Track, TrackError> {
    let meta = OusterMeta::from_json(metadata_json)?;
    let v: Value = serde_json::from_str(metadata_json).map_err(|e| OusterError::Json(e.to_string()))?;
    let model = meta.prod_line.clone().unwrap_or_else(|| "Ouster".into());
    let d = Descriptor {
        vendor: "Ouster".into(),
        model: model.clone(),
        firmware: meta.build_rev.clone(),
        serial: meta.prod_sn.map(|s| s.to_string()),
        time_source: time_source_text(policy, "packet timestamps (PTP/GPS; TAI recognized)"),
        ouster_metadata: Some(v),
        mmwave_cfg: None,
        mode: None,
        decoder: None,
        record: None,
    };
    sensor_track(id, format!("Ouster {model}"), SensorCodec::Ouster, &d)
}

/// A TI mmWave track; `cfg` is the `.cfg` text sent to the CLI port.
pub fn mmwave_track(id: TrackId, model: &str, cfg: Option<&str>, policy: &TimePolicy) -> Result<Track, TrackError> {
    let d = Descriptor {
        vendor: "Texas Instruments".into(),
        model: model.into(),
        firmware: None,
        serial: None,
        // The demo header carries CPU cycles, not a clock: arrival only.
        time_source: time_source_text(
            &TimePolicy {
                prefer_sensor: false,
                ..*policy
            },
            "",
        ),
        ouster_metadata: None,
        mmwave_cfg: cfg.map(str::to_owned),
        mode: None,
        decoder: None,
        record: None,
    };
    sensor_track(id, format!("TI mmWave {model}"), SensorCodec::Mmwave, &d)
}

/// A Continental ARS408-21 track (object or cluster list).
pub fn ars408_track(id: TrackId, mode: Ars408Mode, policy: &TimePolicy) -> Result<Track, TrackError> {
    let d = Descriptor {
        vendor: "Continental".into(),
        model: "ARS408-21".into(),
        firmware: None,
        serial: None,
        // CAN messages carry no clock: the arrival of the status message.
        time_source: time_source_text(
            &TimePolicy {
                prefer_sensor: false,
                ..*policy
            },
            "",
        ),
        ouster_metadata: None,
        mmwave_cfg: None,
        mode: Some(mode.as_str().into()),
        decoder: Some(ARS408_DECODER_NOTE.into()),
        record: Some(ARS408_RECORD.into()),
    };
    sensor_track(id, format!("Continental ARS408-21 {mode}s"), SensorCodec::Ars408, &d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> TrackId {
        TrackId::new(1).unwrap()
    }

    #[test]
    fn every_codec_id_is_valid_and_round_trips() {
        let mut codecs: Vec<SensorCodec> = Model::NAMED.into_iter().map(SensorCodec::Velodyne).collect();
        codecs.push(SensorCodec::Velodyne(Model::Unknown(0x63)));
        codecs.push(SensorCodec::Ouster);
        codecs.push(SensorCodec::Mmwave);
        codecs.push(SensorCodec::Ars408);
        for c in codecs {
            let s = c.codec_id().unwrap_or_else(|e| panic!("{c:?}: {e}"));
            assert!(s.as_str().len() <= 32);
            assert_eq!(SensorCodec::from_codec_id(s.as_str()).unwrap(), c);
        }
        assert_eq!(
            SensorCodec::Velodyne(Model::Hdl32e).codec_id_str(),
            "O_VELODYNE/HDL32E_PACKET"
        );
        assert!(SensorCodec::from_codec_id("O_VELODYNE/NOPE_PACKET").is_err());
        assert!(SensorCodec::from_codec_id("V_MPEG4/ISO/AVC").is_err());
    }

    #[test]
    fn tracks_carry_a_readable_descriptor() {
        let p = TimePolicy::default();
        let t = velodyne_track(id(), Model::Vlp32c, Some("3.0.40"), &p).unwrap();
        assert_eq!(t.mkv_codec_id(), "O_VELODYNE/VLP32C_PACKET");
        assert_eq!(t.kind(), fragmenter::media::TrackKind::Lidar);
        let d = Descriptor::from_bytes(&t.codec_private()).unwrap();
        assert_eq!(d.model, "VLP-32C");
        assert_eq!(d.firmware.as_deref(), Some("3.0.40"));
        assert!(d.time_source.contains("3000 ms"), "{}", d.time_source);

        let t = mmwave_track(id(), "IWR6843", Some("sensorStop\nflushCfg\n"), &p).unwrap();
        assert_eq!(t.mkv_codec_id(), "O_TIMMWAVE/OOB_UART");
        assert_eq!(t.kind(), fragmenter::media::TrackKind::Radar);
        let d = Descriptor::from_bytes(&t.codec_private()).unwrap();
        assert_eq!(d.mmwave_cfg.as_deref(), Some("sensorStop\nflushCfg\n"));
        assert!(d.time_source.starts_with("arrival"));

        let json =
            r#"{"beam_altitude_angles":[1],"beam_azimuth_angles":[0],"lidar_mode":"512x10","prod_line":"OS-1-16"}"#;
        let t = ouster_track(id(), json, &p).unwrap();
        assert_eq!(t.mkv_codec_id(), OUSTER_CODEC_ID);
        let d = Descriptor::from_bytes(&t.codec_private()).unwrap();
        assert_eq!(d.model, "OS-1-16");
        assert_eq!(
            OusterMeta::from_value(d.ouster_metadata.as_ref().unwrap())
                .unwrap()
                .columns_per_frame,
            512
        );
        assert!(matches!(ouster_track(id(), "{}", &p), Err(TrackError::Metadata(_))));
    }

    #[test]
    fn oversized_descriptors_are_refused() {
        let p = TimePolicy::default();
        let cfg = "x".repeat(MAX_CODEC_PRIVATE);
        assert!(matches!(
            mmwave_track(id(), "IWR6843", Some(&cfg), &p),
            Err(TrackError::TooLarge { .. })
        ));
        assert!(Descriptor::from_bytes(b"not json").is_err());
        assert!(Descriptor::from_bytes(br#"{"vendor":"a","model":"b","payload":"other"}"#).is_err());
    }
}
