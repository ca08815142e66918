//! The media model: frames, tracks and absolute timestamps.
//!
//! Every timestamp is absolute UTC in nanoseconds since the Unix epoch, taken
//! at capture. KVS ABSOLUTE fragment timecodes, HLS program date times and the
//! alignment of LIDAR with video all need wall-clock time, so "time since the
//! pipeline started" never leaves the capture layer.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use bytes::Bytes;

use crate::codec::{self, CodecError};

/// Absolute UTC time: nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch itself.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// From nanoseconds since the Unix epoch.
    pub const fn from_nanos(ns: u64) -> Self {
        Timestamp(ns)
    }

    /// From milliseconds since the Unix epoch (saturating at the year
    /// 2554, the end of a u64 of nanoseconds).
    pub const fn from_millis(ms: u64) -> Self {
        Timestamp(ms.saturating_mul(1_000_000))
    }

    /// Nanoseconds since the Unix epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Whole milliseconds since the Unix epoch (rounded down).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000_000
    }

    /// The time elapsed since `earlier`, or zero when `earlier` is later.
    pub fn saturating_since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self - d`, or `None` before the epoch.
    pub fn checked_sub(self, d: Duration) -> Option<Timestamp> {
        u64::try_from(d.as_nanos())
            .ok()
            .and_then(|d| self.0.checked_sub(d))
            .map(Timestamp)
    }

    /// RFC 3339 text with nanoseconds, e.g. `2026-11-26T02:54:33.123456789Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0 / 1_000_000_000;
        let nanos = self.0 % 1_000_000_000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days as i64);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a (year, month, day) date; Howard Hinnant's
/// algorithm, exact for every day a u64 timestamp can name.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_rfc3339())
    }
}

impl Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }
}

impl Sub for Timestamp {
    type Output = Duration;
    /// Saturating: an earlier minus a later time is zero.
    fn sub(self, rhs: Timestamp) -> Duration {
        self.saturating_since(rhs)
    }
}

/// A track's number inside a stream: 1, 2 or 3 (Matroska TrackNumber; KVS
/// allows at most three tracks per stream).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TrackId(u8);

impl TrackId {
    /// The most tracks one stream may carry (KVS `MAX_SUPPORTED_TRACK_COUNT_PER_STREAM`).
    pub const MAX_TRACKS: u8 = 3;

    /// A track number from 1 to [`TrackId::MAX_TRACKS`].
    pub fn new(n: u8) -> Result<Self, MediaError> {
        if (1..=Self::MAX_TRACKS).contains(&n) {
            Ok(TrackId(n))
        } else {
            Err(MediaError::TrackNumber(n))
        }
    }

    /// The number, 1-based.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// The zero-based index, for per-track arrays.
    pub const fn index(self) -> usize {
        self.0 as usize - 1
    }
}

impl fmt::Display for TrackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "track {}", self.0)
    }
}

/// One access unit of one track: a video picture, an audio packet, or one
/// sensor frame (a LIDAR rotation, a RADAR TLV frame).
///
/// Video payloads are length-prefixed NAL units (the track's `nal_length_size`,
/// 4 bytes from our sources), as both Matroska and MP4 store them. AAC is raw
/// (no ADTS header), Opus one packet, sensor frames whatever the adapter
/// defines for its codec ID.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Which track the frame belongs to.
    pub track: TrackId,
    /// Presentation time.
    pub pts: Timestamp,
    /// Decode time; equal to `pts` except for reordered video.
    pub dts: Timestamp,
    /// How long the frame lasts; zero when unknown.
    pub duration: Duration,
    /// Decodable on its own (IDR for video; every audio and sensor frame).
    pub keyframe: bool,
    /// The payload, shared: writers reference it, never copy it.
    pub data: Bytes,
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("track", &self.track.0)
            .field("pts", &self.pts.as_nanos())
            .field("dts", &self.dts.as_nanos())
            .field("duration", &self.duration)
            .field("keyframe", &self.keyframe)
            .field("len", &self.data.len())
            .finish()
    }
}

/// What a track carries, for quick decisions (fragment on video key frames,
/// HLS needs audio and video, sensors go to their own stream).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum TrackKind {
    /// Pictures.
    Video,
    /// Sound.
    Audio,
    /// LIDAR point data (packets of one rotation).
    Lidar,
    /// RADAR detections.
    Radar,
    /// Any other timed data.
    Data,
}

/// A track of a stream: its number, a name, and what it carries.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Track {
    /// Matroska TrackNumber.
    pub id: TrackId,
    /// Human-readable name (Matroska Name, at most 32 bytes for KVS).
    pub name: String,
    /// Codec and its parameters.
    pub media: TrackMedia,
}

impl Track {
    /// A track; the name is cut to 32 bytes (KVS limit) on a char boundary.
    pub fn new(id: TrackId, name: impl Into<String>, media: impl Into<TrackMedia>) -> Self {
        let mut name = name.into();
        if name.len() > 32 {
            let mut cut = 32;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        Track {
            id,
            name,
            media: media.into(),
        }
    }

    /// Video, audio or a sensor kind.
    pub fn kind(&self) -> TrackKind {
        match &self.media {
            TrackMedia::Video(_) => TrackKind::Video,
            TrackMedia::Audio(_) => TrackKind::Audio,
            TrackMedia::Sensor(s) => match s.kind {
                SensorKind::Lidar => TrackKind::Lidar,
                SensorKind::Radar => TrackKind::Radar,
                SensorKind::Data => TrackKind::Data,
            },
        }
    }

    /// The Matroska CodecID, e.g. `V_MPEG4/ISO/AVC`.
    pub fn mkv_codec_id(&self) -> &str {
        match &self.media {
            TrackMedia::Video(v) => match v.codec {
                VideoCodec::H264 { .. } => "V_MPEG4/ISO/AVC",
                VideoCodec::H265 { .. } => "V_MPEGH/ISO/HEVC",
            },
            TrackMedia::Audio(a) => match a.codec {
                AudioCodec::Aac { .. } => "A_AAC",
                AudioCodec::Opus { .. } => "A_OPUS",
                AudioCodec::G711(_) => "A_MS/ACM",
            },
            TrackMedia::Sensor(s) => s.codec_id.as_str(),
        }
    }

    /// The Matroska CodecPrivate bytes (avcC, hvcC, AudioSpecificConfig,
    /// OpusHead, WAVEFORMATEX, or the sensor descriptor); empty when none.
    pub fn codec_private(&self) -> Bytes {
        match &self.media {
            TrackMedia::Video(v) => match &v.codec {
                VideoCodec::H264 { avcc } => avcc.clone(),
                VideoCodec::H265 { hvcc } => hvcc.clone(),
            },
            TrackMedia::Audio(a) => match &a.codec {
                AudioCodec::Aac { asc } => asc.clone(),
                AudioCodec::Opus { pre_skip } => Bytes::from(
                    codec::opus::OpusHead {
                        channels: a.channels,
                        pre_skip: *pre_skip,
                        input_sample_rate: a.sample_rate,
                        output_gain: 0,
                        mapping_family: 0,
                    }
                    .to_bytes(),
                ),
                AudioCodec::G711(law) => Bytes::from(
                    codec::g711::G711 {
                        law: *law,
                        sample_rate: a.sample_rate,
                        channels: a.channels,
                    }
                    .waveformatex()
                    .to_vec(),
                ),
            },
            TrackMedia::Sensor(s) => s.private.clone(),
        }
    }
}

/// Codec and parameters of a track.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TrackMedia {
    /// A video track.
    Video(VideoTrack),
    /// An audio track.
    Audio(AudioTrack),
    /// A LIDAR, RADAR or other sensor track.
    Sensor(SensorTrack),
}

impl From<VideoTrack> for TrackMedia {
    fn from(v: VideoTrack) -> Self {
        TrackMedia::Video(v)
    }
}
impl From<AudioTrack> for TrackMedia {
    fn from(a: AudioTrack) -> Self {
        TrackMedia::Audio(a)
    }
}
impl From<SensorTrack> for TrackMedia {
    fn from(s: SensorTrack) -> Self {
        TrackMedia::Sensor(s)
    }
}

/// A video track's codec and picture size.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct VideoTrack {
    /// H.264 or H.265 with its decoder configuration record.
    pub codec: VideoCodec,
    /// Displayed width in pixels (after SPS cropping).
    pub width: u32,
    /// Displayed height in pixels.
    pub height: u32,
}

impl VideoTrack {
    /// An H.264 track from its AVCDecoderConfigurationRecord; the size comes
    /// from the first SPS, so a record that does not parse is refused here
    /// rather than by a player later.
    pub fn h264(avcc: Bytes) -> Result<Self, CodecError> {
        let cfg = codec::h264::AvcDecoderConfig::parse(&avcc)?;
        let sps = cfg.sps.first().ok_or(CodecError::Missing { what: "SPS in avcC" })?;
        let sps = codec::h264::Sps::parse(sps)?;
        Ok(VideoTrack {
            codec: VideoCodec::H264 { avcc },
            width: sps.width,
            height: sps.height,
        })
    }

    /// An H.265 track from its HEVCDecoderConfigurationRecord.
    pub fn h265(hvcc: Bytes) -> Result<Self, CodecError> {
        let cfg = codec::h265::HevcDecoderConfig::parse(&hvcc)?;
        let sps = cfg.sps().ok_or(CodecError::Missing { what: "SPS in hvcC" })?;
        let sps = codec::h265::Sps::parse(sps)?;
        Ok(VideoTrack {
            codec: VideoCodec::H265 { hvcc },
            width: sps.width,
            height: sps.height,
        })
    }

    /// Bytes used for each NAL unit length in frame payloads (1, 2 or 4).
    pub fn nal_length_size(&self) -> usize {
        let rec = match &self.codec {
            VideoCodec::H264 { avcc } => avcc.get(4).map(|b| (b & 3) as usize + 1),
            VideoCodec::H265 { hvcc } => hvcc.get(21).map(|b| (b & 3) as usize + 1),
        };
        rec.unwrap_or(4)
    }

    /// The RFC 6381 codecs string for HLS and DASH, e.g. `avc1.64001f`.
    pub fn codecs_string(&self) -> String {
        match &self.codec {
            VideoCodec::H264 { avcc } => codec::h264::codec_string(avcc),
            VideoCodec::H265 { hvcc } => codec::h265::codec_string(hvcc),
        }
    }
}

/// Video codecs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum VideoCodec {
    /// H.264 / AVC; `avcc` is the AVCDecoderConfigurationRecord.
    H264 {
        /// AVCDecoderConfigurationRecord.
        avcc: Bytes,
    },
    /// H.265 / HEVC; `hvcc` is the HEVCDecoderConfigurationRecord.
    H265 {
        /// HEVCDecoderConfigurationRecord.
        hvcc: Bytes,
    },
}

/// An audio track's codec and format.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct AudioTrack {
    /// AAC, Opus or G.711.
    pub codec: AudioCodec,
    /// Samples per second.
    pub sample_rate: u32,
    /// Channel count.
    pub channels: u8,
}

impl AudioTrack {
    /// An AAC track from its AudioSpecificConfig; rate and channels come
    /// from the config itself.
    pub fn aac(asc: Bytes) -> Result<Self, CodecError> {
        let cfg = codec::aac::AudioSpecificConfig::parse(&asc)?;
        Ok(AudioTrack {
            codec: AudioCodec::Aac { asc },
            sample_rate: cfg.sample_rate,
            channels: cfg.channels,
        })
    }

    /// The RFC 6381 codecs string, e.g. `mp4a.40.2` or `opus`.
    pub fn codecs_string(&self) -> String {
        match &self.codec {
            AudioCodec::Aac { asc } => codec::aac::AudioSpecificConfig::parse(asc)
                .map(|c| c.codec_string())
                .unwrap_or_else(|_| "mp4a.40.2".to_owned()),
            AudioCodec::Opus { .. } => "opus".to_owned(),
            AudioCodec::G711(codec::g711::Law::ALaw) => "alaw".to_owned(),
            AudioCodec::G711(codec::g711::Law::MuLaw) => "ulaw".to_owned(),
        }
    }
}

/// Audio codecs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AudioCodec {
    /// MPEG-4 AAC; `asc` is the AudioSpecificConfig.
    Aac {
        /// AudioSpecificConfig.
        asc: Bytes,
    },
    /// Opus (48 kHz clock whatever the input rate).
    Opus {
        /// Samples to drop at the start of decoding, at 48 kHz.
        pre_skip: u16,
    },
    /// G.711 A-law or µ-law.
    G711(codec::g711::Law),
}

/// What kind of sensor a sensor track carries.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum SensorKind {
    /// LIDAR.
    Lidar,
    /// RADAR.
    Radar,
    /// Other timed data.
    Data,
}

/// A sensor track: its Matroska codec ID and a descriptor (model, calibration
/// or metadata JSON) carried as CodecPrivate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct SensorTrack {
    /// LIDAR, RADAR or data.
    pub kind: SensorKind,
    /// Matroska-conformant codec ID such as `O_OUSTER/LIDAR_PACKET`.
    pub codec_id: SensorCodecId,
    /// Descriptor bytes (CodecPrivate, at most 1 MiB).
    pub private: Bytes,
}

/// A Matroska codec ID for a sensor track: prefix `O_` (complex) or `M_`
/// (metadata), a major ID of `[A-Z0-9]`, an optional `/` suffix of
/// `[A-Z0-9_/]`, at most 32 bytes (KVS).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct SensorCodecId(String);

impl SensorCodecId {
    /// Validate and wrap a codec ID.
    pub fn new(id: &str) -> Result<Self, MediaError> {
        let bad = || MediaError::SensorCodecId(id.to_owned());
        if id.len() > 32 {
            return Err(bad());
        }
        let rest = id
            .strip_prefix("O_")
            .or_else(|| id.strip_prefix("M_"))
            .ok_or_else(bad)?;
        let (major, suffix) = match rest.split_once('/') {
            Some((m, s)) => (m, Some(s)),
            None => (rest, None),
        };
        let upper_digit = |c: char| c.is_ascii_uppercase() || c.is_ascii_digit();
        if major.is_empty() || !major.chars().all(upper_digit) {
            return Err(bad());
        }
        if let Some(s) = suffix {
            if s.is_empty() || !s.chars().all(|c| upper_digit(c) || c == '_' || c == '/') {
                return Err(bad());
            }
        }
        Ok(SensorCodecId(id.to_owned()))
    }

    /// The ID text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Invalid media model values.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MediaError {
    /// Track numbers run from 1 to 3.
    #[error("track number {0} is out of range: expected 1 to 3")]
    TrackNumber(u8),
    /// A sensor codec ID breaks the Matroska rules.
    #[error("sensor codec ID {0:?} is invalid: expected O_ or M_, a major ID of [A-Z0-9], an optional /suffix of [A-Z0-9_/], at most 32 bytes")]
    SensorCodecId(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_of_known_instants() {
        assert_eq!(Timestamp::EPOCH.to_rfc3339(), "1970-01-01T00:00:00.000000000Z");
        // 2020-07-27T07:12:40.258Z, the timecode of a real PERSISTED ack (cpp#522).
        assert_eq!(
            Timestamp::from_millis(1_595_833_960_258).to_rfc3339(),
            "2020-07-27T07:12:40.258000000Z"
        );
        assert_eq!(
            Timestamp::from_nanos(951_782_400_000_000_001).to_rfc3339(),
            "2000-02-29T00:00:00.000000001Z"
        );
    }

    #[test]
    fn track_numbers_outside_one_to_three_are_refused() {
        assert!(TrackId::new(0).is_err());
        assert_eq!(TrackId::new(3).unwrap().index(), 2);
        assert!(TrackId::new(4).is_err());
    }

    #[test]
    fn sensor_codec_ids_follow_matroska_rules() {
        for ok in [
            "O_OUSTER/LIDAR_PACKET",
            "O_VELODYNE/VLP16_PACKET",
            "M_CAN/RAW",
            "O_TIMMWAVE",
        ] {
            SensorCodecId::new(ok).unwrap();
        }
        for bad in [
            "X_FOO",
            "O_ouster",
            "O__X",
            "O_A/",
            "O_A/b",
            "V_MPEG4/ISO/AVC",
            "O_ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
        ] {
            assert!(SensorCodecId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn long_track_names_are_cut_on_a_char_boundary() {
        let t = Track::new(
            TrackId::new(1).unwrap(),
            "é".repeat(20),
            SensorTrack {
                kind: SensorKind::Data,
                codec_id: SensorCodecId::new("O_TEST").unwrap(),
                private: Bytes::new(),
            },
        );
        assert_eq!(t.name.len(), 32);
    }
}
