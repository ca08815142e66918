//! Negotiated appsink caps to track descriptions.

use bytes::Bytes;
use fragmenter::codec::g711::Law;
use fragmenter::codec::opus::OpusHead;
use fragmenter::media::{AudioCodec, AudioTrack, VideoTrack};
use fragmenter::{Track, TrackId};
use gstreamer as gst;

use crate::error::CaptureError;

/// Track 1 carries video, track 2 audio, in every stream we produce.
pub(crate) fn video_track_id() -> TrackId {
    TrackId::new(1).expect("1 is a valid track number")
}

/// See [`video_track_id`].
#[cfg(test)]
pub(crate) fn audio_track_id() -> TrackId {
    TrackId::new(2).expect("2 is a valid track number")
}

/// The track that `caps` (H.264 avc, H.265 hvc1, raw AAC, Opus or G.711, as
/// the capsfilters in front of our appsinks admit them) describe.
pub(crate) fn track_from_caps(id: TrackId, caps: &gst::CapsRef) -> Result<Track, CaptureError> {
    let text = || caps.to_string();
    let structure = caps
        .structure(0)
        .ok_or_else(|| CaptureError::MissingCodecData { caps: text() })?;
    let codec_data = || -> Result<Bytes, CaptureError> {
        let buffer = structure
            .get::<gst::Buffer>("codec_data")
            .map_err(|_| CaptureError::MissingCodecData { caps: text() })?;
        let map = buffer
            .map_readable()
            .map_err(|_| CaptureError::MissingCodecData { caps: text() })?;
        Ok(Bytes::copy_from_slice(&map))
    };
    let invalid = |error| CaptureError::CodecData { caps: text(), error };
    let int = |field: &str, default: i32| structure.get::<i32>(field).unwrap_or(default);
    let name = match id.get() {
        1 => "video",
        2 => "audio",
        _ => "audio2",
    };
    match structure.name().as_str() {
        "video/x-h264" => Ok(Track::new(id, name, VideoTrack::h264(codec_data()?).map_err(invalid)?)),
        "video/x-h265" => Ok(Track::new(id, name, VideoTrack::h265(codec_data()?).map_err(invalid)?)),
        "audio/mpeg" => Ok(Track::new(id, name, AudioTrack::aac(codec_data()?).map_err(invalid)?)),
        "audio/x-opus" => {
            // opusenc puts OpusHead first in streamheader; depayloaded RTP
            // has none, and then the decoder's default pre-skip is 0.
            let head = structure
                .get::<gst::Array>("streamheader")
                .ok()
                .and_then(|headers| headers.first().and_then(|v| v.get::<gst::Buffer>().ok()))
                .and_then(|b| b.map_readable().ok().and_then(|m| OpusHead::parse(&m).ok()));
            let channels = head.map(|h| h.channels).unwrap_or(int("channels", 2).clamp(1, 2) as u8);
            Ok(Track::new(
                id,
                name,
                AudioTrack {
                    codec: AudioCodec::Opus {
                        pre_skip: head.map(|h| h.pre_skip).unwrap_or(0),
                    },
                    sample_rate: 48_000,
                    channels,
                },
            ))
        }
        law @ ("audio/x-alaw" | "audio/x-mulaw") => Ok(Track::new(
            id,
            name,
            AudioTrack {
                codec: AudioCodec::G711(if law == "audio/x-alaw" { Law::ALaw } else { Law::MuLaw }),
                sample_rate: int("rate", 8000).max(1) as u32,
                channels: int("channels", 1).clamp(1, 255) as u8,
            },
        )),
        // The capsfilters in front of every appsink admit nothing else.
        other => Err(CaptureError::MissingCodecData {
            caps: format!("{} (unexpected {other} on the appsink of {id})", text()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn track(caps: &str) -> Track {
        gst::init().unwrap();
        let caps: gst::Caps = caps.parse().unwrap();
        track_from_caps(audio_track_id(), &caps).unwrap()
    }

    #[test]
    fn g711_tracks_take_rate_and_channels_from_caps() {
        let t = track("audio/x-alaw, rate=(int)8000, channels=(int)1");
        assert_eq!(t.mkv_codec_id(), "A_MS/ACM");
        match t.media {
            fragmenter::media::TrackMedia::Audio(a) => {
                assert_eq!((a.sample_rate, a.channels), (8000, 1));
                assert_eq!(a.codec, AudioCodec::G711(Law::ALaw));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn opus_pre_skip_comes_from_the_opushead_in_streamheader() {
        // OpusHead: version 1, 2 channels, pre-skip 312, 48000 Hz, gain 0, family 0.
        let head = OpusHead {
            channels: 2,
            pre_skip: 312,
            input_sample_rate: 48_000,
            output_gain: 0,
            mapping_family: 0,
        }
        .to_bytes();
        let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
        let t = track(&format!(
            "audio/x-opus, rate=(int)48000, channels=(int)2, streamheader=(buffer)< {hex} >"
        ));
        match t.media {
            fragmenter::media::TrackMedia::Audio(a) => {
                assert_eq!(a.codec, AudioCodec::Opus { pre_skip: 312 });
                assert_eq!(a.channels, 2);
            }
            other => panic!("{other:?}"),
        }
        // From RTP: no header, mono.
        let t = track("audio/x-opus, channels=(int)1");
        match t.media {
            fragmenter::media::TrackMedia::Audio(a) => {
                assert_eq!((a.codec, a.channels), (AudioCodec::Opus { pre_skip: 0 }, 1))
            }
            other => panic!("{other:?}"),
        }
    }
}
