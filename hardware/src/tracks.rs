//! Negotiated appsink caps to track descriptions.

use bytes::Bytes;
use fragmenter::media::{AudioTrack, VideoTrack};
use fragmenter::{Track, TrackId};
use gstreamer as gst;

use crate::error::CaptureError;

/// Track 1 carries video, track 2 audio, in every stream we produce.
pub(crate) fn video_track_id() -> TrackId {
    TrackId::new(1).expect("1 is a valid track number")
}

/// See [`video_track_id`].
pub(crate) fn audio_track_id() -> TrackId {
    TrackId::new(2).expect("2 is a valid track number")
}

/// The track that `caps` (H.264 avc, H.265 hvc1 or raw AAC, as our parsers
/// output them) describe.
pub(crate) fn track_from_caps(id: TrackId, caps: &gst::CapsRef) -> Result<Track, CaptureError> {
    let text = || caps.to_string();
    let structure = caps
        .structure(0)
        .ok_or_else(|| CaptureError::MissingCodecData { caps: text() })?;
    let codec_data = structure
        .get::<gst::Buffer>("codec_data")
        .map_err(|_| CaptureError::MissingCodecData { caps: text() })?;
    let codec_data = {
        let map = codec_data
            .map_readable()
            .map_err(|_| CaptureError::MissingCodecData { caps: text() })?;
        Bytes::copy_from_slice(&map)
    };
    let invalid = |error| CaptureError::CodecData { caps: text(), error };
    match structure.name().as_str() {
        "video/x-h264" => Ok(Track::new(id, "video", VideoTrack::h264(codec_data).map_err(invalid)?)),
        "video/x-h265" => Ok(Track::new(id, "video", VideoTrack::h265(codec_data).map_err(invalid)?)),
        "audio/mpeg" => Ok(Track::new(id, "audio", AudioTrack::aac(codec_data).map_err(invalid)?)),
        // The capsfilters in front of every appsink admit nothing else.
        other => unreachable!("appsink negotiated unexpected caps {other}"),
    }
}
