//! Appsink samples to frames, and the one channel every output feeds.
//!
//! Frames leave the streaming threads stamped with running time only: the
//! wall-clock anchor is read once the pipeline is PLAYING, which for live
//! sources can be after the first buffers were produced, so the UTC mapping
//! is applied by the consumer.

use std::sync::mpsc::SyncSender;
use std::time::Duration;

use bytes::Bytes;
use fragmenter::TrackId;
use gstreamer as gst;
use gstreamer_app as gst_app;

use crate::error::CaptureError;

/// Frames buffered between the streaming threads and `next_frame`: several
/// seconds of 30 fps video plus AAC (~47 packets/s). When full, the
/// streaming threads block, which throttles files and makes live sources
/// drop upstream rather than grow memory here.
pub(crate) const CHANNEL_CAPACITY: usize = 512;

/// One item on the capture channel, in arrival order.
#[derive(Debug)]
pub(crate) enum Event {
    /// A frame of one track.
    Frame(RunningFrame),
    /// Every output reached end of stream.
    Eos,
    /// One appsink reached end of stream (the others may go on).
    TrackEos(TrackId),
    /// The pipeline failed; capture cannot go on.
    Error(CaptureError),
}

/// A frame stamped with pipeline running time (nanoseconds; negative for
/// video decoded before the segment starts).
#[derive(Debug)]
pub(crate) struct RunningFrame {
    pub(crate) track: TrackId,
    pub(crate) pts: i64,
    pub(crate) dts: i64,
    pub(crate) duration: Duration,
    pub(crate) keyframe: bool,
    pub(crate) data: Bytes,
}

/// Send every sample of `sink` as a frame of `track` into `tx`.
pub(crate) fn feed_channel(sink: &gst_app::AppSink, track: TrackId, tx: SyncSender<Event>) {
    let mut last_caps: Option<gst::Caps> = None;
    let eos_tx = tx.clone();
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .eos(move |_| {
                // Only fails when capture is being torn down.
                let _ = eos_tx.send(Event::TrackEos(track));
            })
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| {
                    if sink.is_eos() {
                        gst::FlowError::Eos
                    } else {
                        gst::FlowError::Flushing
                    }
                })?;
                // Tracks are fixed at start; a camera that renegotiates
                // (new SPS, new size) needs a new stream, which is not
                // handled yet, so at least say so.
                if let Some(caps) = sample.caps_owned() {
                    if last_caps.as_ref().is_some_and(|last| *last != caps) {
                        tracing::warn!(%track, %caps, "caps changed mid-stream; the track keeps its first codec_data");
                    }
                    last_caps = Some(caps);
                }
                let Some(frame) = running_frame(track, &sample) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                // The receiver is gone only when capture is being torn down.
                tx.send(Event::Frame(frame)).map_err(|_| gst::FlowError::Flushing)?;
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

/// The sample as a frame, or `None` (logged) when it cannot be one.
fn running_frame(track: TrackId, sample: &gst::Sample) -> Option<RunningFrame> {
    let Some(buffer) = sample.buffer_owned() else {
        tracing::warn!(%track, "sample without a buffer skipped");
        return None;
    };
    let segment = sample.segment().and_then(|s| s.downcast_ref::<gst::ClockTime>());
    let running = |t: Option<gst::ClockTime>| -> Option<i64> {
        let t = t?;
        match segment {
            Some(seg) => signed_ns(seg.to_running_time_full(t)?),
            None => i64::try_from(t.nseconds()).ok(),
        }
    };
    let pts = running(buffer.pts());
    let dts = running(buffer.dts());
    let Some(pts) = pts.or(dts) else {
        tracing::warn!(%track, "buffer without a timestamp skipped");
        return None;
    };
    let dts = dts.unwrap_or(pts);
    let duration = buffer
        .duration()
        .map(|d| Duration::from_nanos(d.nseconds()))
        .unwrap_or_default();
    let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
    if buffer.size() == 0 {
        tracing::debug!(%track, "empty buffer skipped");
        return None;
    }
    // Zero-copy: the Bytes owns the mapped GstBuffer and unmaps it when the
    // last writer lets go. Sources that allocate from small fixed pools
    // (hardware encoders) may need a copy instead, so frames held by slow
    // uploads do not starve the pool.
    let data = match buffer.into_mapped_buffer_readable() {
        Ok(mapped) => Bytes::from_owner(mapped),
        Err(_) => {
            tracing::warn!(%track, "buffer could not be mapped readable; skipped");
            return None;
        }
    };
    Some(RunningFrame {
        track,
        pts,
        dts,
        duration,
        keyframe,
        data,
    })
}

fn signed_ns(t: gst::Signed<gst::ClockTime>) -> Option<i64> {
    match t {
        gst::Signed::Positive(t) => i64::try_from(t.nseconds()).ok(),
        gst::Signed::Negative(t) => i64::try_from(t.nseconds()).ok().map(|n| -n),
    }
}
