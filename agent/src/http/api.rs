//! `/api/streams`: streams, tracks, recorded ranges, store and capture state.

use anyhow::Result;
use fragmenter::media::TrackMedia;
use fragmenter::{Timestamp, Track};
use playback::webrtc::{StreamViewers, WhepStatus};
use serde_json::{json, Value};

use crate::http::ingest::IngestStatus;
use crate::kvs::uploader::UploadStatus;
use crate::run::recorder::RecorderStatus;
use crate::schedule::Schedule;
use crate::store::{Store, StreamState, UploadCounts};

fn time(t: Timestamp) -> Value {
    json!({ "utc": t.to_rfc3339(), "ms": t.as_millis() })
}

/// A recording or upload schedule now: its expression and duration (both
/// `null`: always), whether a window is open, and when that next changes
/// (`null`: no change in sight).
fn schedule(s: &Schedule) -> Value {
    let now = std::time::SystemTime::now();
    let w = s.windows();
    let at = |t: std::time::SystemTime| {
        let ns = t
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        time(Timestamp::from_nanos(ns))
    };
    json!({
        "cron": w.map(|w| w.expression()),
        "duration_seconds": w.map(|w| w.duration_seconds()),
        "open": s.is_open(now),
        "next_change": s.next_change(now).map(at),
    })
}

fn track(t: &Track) -> Value {
    let mut v = json!({
        "id": t.id.get(),
        "name": t.name,
        "kind": format!("{:?}", t.kind()).to_lowercase(),
        "codec_id": t.mkv_codec_id(),
    });
    match &t.media {
        TrackMedia::Video(video) => {
            v["codecs"] = json!(video.codecs_string());
            v["width"] = json!(video.width);
            v["height"] = json!(video.height);
        }
        TrackMedia::Audio(a) => {
            v["codecs"] = json!(a.codecs_string());
            v["sample_rate"] = json!(a.sample_rate);
            v["channels"] = json!(a.channels);
        }
        TrackMedia::Sensor(_) => {}
    }
    v
}

fn upload(u: &UploadCounts) -> Value {
    json!({
        "pending": u.pending, "sent": u.sent, "received": u.received,
        "persisted": u.persisted, "failed": u.failed, "skipped": u.skipped,
    })
}

/// The JSON document.
pub fn streams(
    store: &Store,
    recorders: &[RecorderStatus],
    webrtc: Option<&WhepStatus>,
    uploads: &[UploadStatus],
    ingest: &std::collections::BTreeMap<String, IngestStatus>,
) -> Result<Value> {
    let mut out = Vec::new();
    for s in store.streams()? {
        let state = match &s.state {
            StreamState::Idle => json!({ "state": "idle" }),
            StreamState::Recording => json!({ "state": "recording" }),
            StreamState::Denied { reason, since } => {
                json!({ "state": "denied", "reason": reason.to_string(), "since": time(*since) })
            }
        };
        let capture = recorders.iter().find(|r| r.name == s.name).map(|r| {
            json!({
                "source": r.source,
                "running": r.running,
                "restarts": r.restarts,
                "source_restarts": r.source_restarts,
                "frames": r.frames,
                "refused_frames": r.refused,
                "last_error": r.last_error,
                "since": r.since.map(time),
                "schedule": schedule(&r.schedule),
            })
        });
        out.push(json!({
            "name": s.name,
            "uploads": s.uploads,
            "store": state,
            "last_store_error": s.last_error,
            "tracks": s.tracks.iter().map(track).collect::<Vec<_>>(),
            "fragments": s.fragments,
            "bytes": s.bytes,
            "disk_bytes": s.disk_bytes,
            "oldest": s.oldest.map(time),
            "newest": s.newest.map(time),
            "ranges": s.ranges.iter().map(|(a, b)| json!({ "start": time(*a), "end": time(*b) })).collect::<Vec<_>>(),
            "upload": upload(&s.upload),
            "capture": capture,
            "webrtc": webrtc.map(|w| viewers(w.streams.get(&s.name).cloned().unwrap_or_default())),
            "uploader": uploads.iter().find(|u| u.stream == s.name).map(|u| uploader(store, u, s.newest)),
            "ingest": ingest.get(&s.name).map(ingest_status),
        }));
    }
    let st = store.stats();
    Ok(json!({
        "streams": out,
        "webrtc": webrtc.map(|w| json!({ "sessions_total": w.sessions_total, "refused_total": w.refused_total })),
        "store": {
            "path": store.config().path.display().to_string(),
            "on_full": store.config().on_full.to_string(),
            "disk_bytes": st.disk_bytes,
            "free_bytes": st.free_bytes,
            "fragments_written": st.fragments_written,
            "bytes_written": st.bytes_written,
            "deleted_fragments": {
                "max_age": st.deleted_fragments.age,
                "max_size": st.deleted_fragments.max_size,
                "min_free": st.deleted_fragments.min_free,
                "disk_full": st.deleted_fragments.disk_full,
                "after_upload": st.deleted_fragments.after_upload,
            },
            "deleted_not_uploaded": st.deleted_not_uploaded,
            "disk_full_errors": st.disk_full_errors,
        },
    }))
}

/// Lag behind live: from the oldest fragment not uploaded to the newest
/// stored, in seconds, and the payload bytes not uploaded.
pub fn upload_lag(store: &Store, stream: &str, newest: Option<Timestamp>) -> (f64, u64, u64) {
    match store.upload_backlog(stream) {
        Ok((Some(oldest), bytes, n)) => {
            let secs = newest.map_or(0.0, |n| n.saturating_since(oldest).as_secs_f64());
            (secs, bytes, n)
        }
        _ => (0.0, 0, 0),
    }
}

/// A stream's uploader for `/api/streams`.
fn uploader(store: &Store, u: &UploadStatus, newest: Option<Timestamp>) -> Value {
    let (lag_seconds, lag_bytes, lag_fragments) = upload_lag(store, &u.stream, newest);
    json!({
        "kvs_stream": u.kvs_stream,
        "endpoint": u.endpoint,
        "data_endpoint": u.data_endpoint,
        // Where the keys come from, never the keys.
        "credentials": {
            "source": u.credentials,
            "provider": u.credentials_provider,
            "expires": u.credentials_expire,
        },
        "control_plane_calls": {
            "describe_stream": u.control_plane.describe,
            "create_stream": u.control_plane.create,
            "get_data_endpoint": u.control_plane.get_data_endpoint,
        },
        "connected": u.connected,
        "connections": u.connections,
        "last_error": u.last_error,
        "retry_at_ms": u.retry_at_ms,
        "bytes_sent": u.bytes_sent,
        "lag_seconds": lag_seconds,
        "lag_bytes": lag_bytes,
        "lag_fragments": lag_fragments,
        "acks": {
            "buffering": u.acks.buffering, "received": u.acks.received, "persisted": u.acks.persisted,
            "error": u.acks.error, "idle": u.acks.idle,
        },
        "errors": u.errors.iter().map(|(id, n)| (id.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        "schedule": schedule(&u.schedule),
        "waiting_for_window": u.waiting_for_window,
    })
}

/// A stream's PutMedia ingest (on a gateway) for `/api/streams`.
fn ingest_status(i: &IngestStatus) -> Value {
    json!({
        "connected": i.connected,
        "connections": i.connections,
        "refused": i.refused,
        "bytes_received": i.bytes_received,
        "last_error": i.last_error,
        "acks": {
            "buffering": i.acks.buffering, "received": i.acks.received, "persisted": i.acks.persisted,
            "error": i.acks.error, "idle": i.acks.idle,
        },
        "errors": i.errors.iter().map(|(id, n)| (id.to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
    })
}

/// A stream's WebRTC viewers for `/api/streams`.
fn viewers(v: StreamViewers) -> Value {
    json!({
        "viewers": v.viewers,
        "talking": v.talking,
        "video_frames": v.video_frames,
        "audio_packets": v.audio_packets,
        "lagged_frames": v.lagged,
        "key_frame_requests": v.key_requests,
        "key_frames_requested": v.key_frames_requested,
        "talkback_packets": v.talkback_packets,
        "sensor_frames": v.sensor_frames,
        "sensor_frames_dropped": v.sensor_dropped,
    })
}
