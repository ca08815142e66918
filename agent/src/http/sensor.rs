//! `/api/sensors/{stream}/frame?t=`: the LIDAR or RADAR frame of a sensor
//! stream at a moment, decoded to points, for the web UI's sensor panel
//! (which asks for the frame at the video's playing time, so both move in
//! step).

use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use fragmenter::media::TrackKind;
use fragmenter::Timestamp;
use serde_json::{json, Value};

use crate::store::Store;

/// More points than a canvas shows usefully; decimated evenly beyond this.
const MAX_POINTS: usize = 30_000;
/// How far back to look for the latest frame before `t` (sensors send at
/// 10–20 Hz; a gap this long means there is nothing to show).
const LOOKBACK: Duration = Duration::from_secs(3);

/// Why a sensor request was refused, as an HTTP status and a reason.
pub enum SensorError {
    /// 400: the query is wrong.
    BadRequest(String),
    /// 404: no such stream, no sensor track, or no frame near `t`.
    NotFound(String),
    /// 500: the store failed.
    Internal(anyhow::Error),
}

/// The frame at or before `t` (default: the newest) of `stream`'s first
/// sensor track: `{"stream","track","kind","codec","t":{utc,ms},"points":[x,y,z,v,…],"total":n}`
/// with points flattened (metres; intensity for LIDAR, radial velocity for
/// RADAR), at most [`MAX_POINTS`] of them.
pub fn frame_at(store: &Store, stream: &str, query: Option<&str>) -> Result<Value, SensorError> {
    let info = store.stream(stream).map_err(|e| SensorError::NotFound(e.to_string()))?;
    let track = info
        .tracks
        .iter()
        .find(|t| matches!(t.kind(), TrackKind::Lidar | TrackKind::Radar))
        .ok_or_else(|| SensorError::NotFound(format!("stream {stream:?} has no LIDAR or RADAR track")))?
        .clone();
    let query = playback::http::query::pairs(query);
    let t = match playback::http::query::get(&query, "t") {
        Some(v) => playback::time::parse_time("t", v).map_err(|e| SensorError::BadRequest(e.to_string()))?,
        None => info
            .newest
            .ok_or_else(|| SensorError::NotFound(format!("stream {stream:?} has nothing recorded")))?,
    };
    let from = t.checked_sub(LOOKBACK).unwrap_or(Timestamp::EPOCH);
    let frags = store
        .fragments(stream, from, t + Duration::from_nanos(1))
        .map_err(|e| SensorError::Internal(e.into()))?;
    // Newest fragment first: the frame wanted is usually in the last one.
    for meta in frags.iter().rev() {
        let frag = store
            .read_fragment(meta.id)
            .map_err(|e| SensorError::Internal(e.into()))?;
        let Some(frame) = frag
            .frames
            .iter()
            .filter(|f| f.track == track.id && f.pts <= t && f.pts >= from)
            .max_by_key(|f| f.pts)
        else {
            continue;
        };
        let points = decode(&track, &frame.data).map_err(SensorError::Internal)?;
        let step = points.len().div_ceil(MAX_POINTS).max(1);
        let flat: Vec<f64> = points
            .iter()
            .step_by(step)
            .flat_map(|p| [p.x, p.y, p.z, p.intensity_or_velocity])
            .map(|v| (f64::from(v) * 100.0).round() / 100.0)
            .collect();
        return Ok(json!({
            "stream": stream,
            "track": track.id.get(),
            "kind": format!("{:?}", track.kind()).to_lowercase(),
            "codec": track.mkv_codec_id(),
            "t": { "utc": frame.pts.to_rfc3339(), "ms": frame.pts.as_millis() },
            "total": points.len(),
            "points": flat,
        }));
    }
    Err(SensorError::NotFound(format!(
        "stream {stream:?} has no sensor frame between {} and {}",
        from.to_rfc3339(),
        t.to_rfc3339()
    )))
}

fn decode(track: &fragmenter::Track, payload: &[u8]) -> Result<Vec<hardware::sensor::points::Point>> {
    hardware::sensor::points::decode_frame(track.mkv_codec_id(), &track.codec_private(), payload)
        .with_context(|| format!("cannot decode a {} frame", track.mkv_codec_id()))
}

/// Parse `/api/sensors/{stream}/frame` into the stream name.
pub fn route(path: &str) -> Option<Result<&str>> {
    let rest = path.strip_prefix("/api/sensors/")?;
    Some(match rest.strip_suffix("/frame") {
        Some(name) if !name.is_empty() && !name.contains('/') => Ok(name),
        _ => Err(anyhow!("expected /api/sensors/{{stream}}/frame")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_the_stream_or_refuse() {
        assert_eq!(route("/api/sensors/roof/frame").unwrap().unwrap(), "roof");
        assert!(route("/api/sensors/a/b/frame").unwrap().is_err());
        assert!(route("/api/sensors//frame").unwrap().is_err());
        assert!(route("/api/streams").is_none());
    }
}
