//! The tracks of an ingested PutMedia body (Matroska TrackEntries) as the
//! store's tracks: the codec parsed from CodecPrivate exactly as our own
//! capture would have produced it, so the gateway serves, exports and
//! uploads ingested media like recorded media.

use fragmenter::codec::{g711, opus::OpusHead, CodecError};
use fragmenter::media::{AudioCodec, AudioTrack, SensorKind, SensorTrack, TrackMedia, VideoTrack};
use fragmenter::mkv::TrackEntry;
use fragmenter::{Track, TrackId};

/// Why a TrackEntry cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum TrackEntryError {
    /// TrackNumber outside 1 to 3.
    #[error("track number {0}: expected 1 to 3")]
    Number(u64),
    /// A codec we neither record nor serve.
    #[error("track {track}: codec {codec:?} is not supported (H.264, H.265, AAC, Opus, G.711, sensor O_/M_ codecs)")]
    Codec {
        /// TrackNumber.
        track: u64,
        /// CodecID.
        codec: String,
    },
    /// CodecPrivate does not describe the codec.
    #[error("track {track} ({codec}): CodecPrivate: {source}")]
    Private {
        /// TrackNumber.
        track: u64,
        /// CodecID.
        codec: String,
        /// What was wrong.
        source: CodecError,
    },
    /// A sensor codec ID that is not well formed.
    #[error("track {track}: {reason}")]
    Sensor {
        /// TrackNumber.
        track: u64,
        /// What was wrong.
        reason: String,
    },
}

/// The store track for `entry`.
pub fn track_from_entry(entry: &TrackEntry) -> Result<Track, TrackEntryError> {
    let id = u8::try_from(entry.number)
        .ok()
        .and_then(|n| TrackId::new(n).ok())
        .ok_or(TrackEntryError::Number(entry.number))?;
    let private = entry.codec_private.clone();
    let codec = entry.codec_id.as_str();
    let bad = |source: CodecError| TrackEntryError::Private {
        track: entry.number,
        codec: codec.to_owned(),
        source,
    };
    let media: TrackMedia = match codec {
        "V_MPEG4/ISO/AVC" => VideoTrack::h264(private).map_err(bad)?.into(),
        "V_MPEGH/ISO/HEVC" => VideoTrack::h265(private).map_err(bad)?.into(),
        c if c.starts_with("A_AAC") => AudioTrack::aac(private).map_err(bad)?.into(),
        "A_OPUS" => {
            let head = OpusHead::parse(&private).map_err(bad)?;
            AudioTrack {
                codec: AudioCodec::Opus {
                    pre_skip: head.pre_skip,
                },
                sample_rate: 48_000,
                channels: head.channels,
            }
            .into()
        }
        "A_MS/ACM" => {
            let g = g711::parse_waveformatex(&private).map_err(bad)?;
            AudioTrack {
                codec: AudioCodec::G711(g.law),
                sample_rate: g.sample_rate,
                channels: g.channels,
            }
            .into()
        }
        c if c.starts_with("O_") || c.starts_with("M_") => {
            let codec_id = fragmenter::media::SensorCodecId::new(c).map_err(|e| TrackEntryError::Sensor {
                track: entry.number,
                reason: e.to_string(),
            })?;
            // Our own sensor codecs keep their kind; anything else is
            // stored as timed data.
            let kind = hardware::sensor::track::SensorCodec::from_codec_id(c).map_or(SensorKind::Data, |s| s.kind());
            SensorTrack {
                kind,
                codec_id,
                private,
            }
            .into()
        }
        _ => {
            return Err(TrackEntryError::Codec {
                track: entry.number,
                codec: codec.to_owned(),
            })
        }
    };
    Ok(Track::new(id, entry.name.clone().unwrap_or_default(), media))
}
