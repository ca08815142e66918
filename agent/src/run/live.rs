//! A recorder's frames to its WebRTC feed: converted once per frame, for
//! every viewer, and only while somebody watches.

use std::sync::Arc;

use fragmenter::media::{AudioCodec, TrackKind, TrackMedia, VideoCodec};
use fragmenter::{Frame, Track};
use hardware::sensor::points::FrameDecoder;
use playback::webrtc::feed::{FeedVideo, LiveFrame, LivePayload, StreamFeed};
use playback::webrtc::{annexb, points};
use tracing::debug;

/// How one track's frames become live frames.
enum Convert {
    /// AVC to Annex B, with this NAL length size.
    H264(usize),
    Opus,
    Points {
        decoder: Box<FrameDecoder>,
        velocity: bool,
        seq: u32,
        /// Reused frame to frame (a rotation is tens of thousands of points).
        decoded: Vec<hardware::sensor::points::Point>,
    },
    /// WebRTC does not carry it (AAC, G.711, H.265).
    Skip,
}

/// Publishes one source's frames into its feed.
pub struct LivePublisher {
    feed: Arc<StreamFeed>,
    convert: Vec<(fragmenter::TrackId, Convert)>,
}

impl LivePublisher {
    /// For a (re)started source with `tracks`; tells the feed what the
    /// stream carries and how to ask for key frames.
    pub fn new(feed: Arc<StreamFeed>, tracks: &[Track], key_frames: Option<hardware::KeyFrameRequester>) -> Self {
        let mut video = FeedVideo::None;
        let mut opus = false;
        let convert = tracks
            .iter()
            .map(|t| {
                let c = match &t.media {
                    TrackMedia::Video(v) => match &v.codec {
                        VideoCodec::H264 { avcc } => {
                            video = FeedVideo::H264;
                            Convert::H264(annexb::length_size(avcc))
                        }
                        VideoCodec::H265 { .. } => {
                            video = FeedVideo::Other("H.265");
                            Convert::Skip
                        }
                    },
                    TrackMedia::Audio(a) if matches!(a.codec, AudioCodec::Opus { .. }) && !opus => {
                        opus = true;
                        Convert::Opus
                    }
                    TrackMedia::Audio(_) => Convert::Skip,
                    TrackMedia::Sensor(_) => match FrameDecoder::new(t.mkv_codec_id(), &t.codec_private()) {
                        Ok(d) => Convert::Points {
                            decoder: Box::new(d),
                            velocity: t.kind() == TrackKind::Radar,
                            seq: 0,
                            decoded: Vec::new(),
                        },
                        Err(e) => {
                            debug!(track = t.name, error = %e, "sensor track not decodable for WebRTC");
                            Convert::Skip
                        }
                    },
                };
                (t.id, c)
            })
            .collect();
        let ask = key_frames.map(|k| Box::new(move || k.request()) as Box<dyn Fn() -> bool + Send + Sync>);
        feed.set_source(video, opus, ask);
        LivePublisher { feed, convert }
    }

    /// Publish `frame` if anyone watches.
    pub fn publish(&mut self, frame: &Frame) {
        if !self.feed.has_viewers() {
            return;
        }
        let Some((_, convert)) = self.convert.iter_mut().find(|(id, _)| *id == frame.track) else {
            return;
        };
        let payload = match convert {
            Convert::H264(length_size) => match annexb::from_avc(&frame.data, *length_size) {
                Ok(annexb) => LivePayload::H264 {
                    annexb,
                    key: frame.keyframe,
                },
                Err(e) => {
                    debug!(error = %e, "video frame not sent to viewers");
                    return;
                }
            },
            Convert::Opus => LivePayload::Opus(frame.data.clone()),
            Convert::Points {
                decoder,
                velocity,
                seq,
                decoded,
            } => {
                decoded.clear();
                if let Err(e) = decoder.decode_into(&frame.data, decoded) {
                    debug!(error = %e, "sensor frame not sent to viewers");
                    return;
                }
                *seq = seq.wrapping_add(1);
                let messages = points::pack(
                    self.feed.index(),
                    *seq,
                    frame.pts.as_nanos() as f64 / 1e6,
                    *velocity,
                    decoded,
                    |p| [p.x, p.y, p.z, p.intensity_or_velocity],
                );
                LivePayload::Points(messages.into())
            }
            Convert::Skip => return,
        };
        self.feed.publish(LiveFrame {
            pts: frame.pts,
            payload,
        });
    }
}
