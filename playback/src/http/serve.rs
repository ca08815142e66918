//! Helpers the HLS and DASH routes share: running archive calls on the
//! blocking pool, mapping archive errors to statuses, starting packagers.

use std::sync::Arc;
use std::time::Duration;

use hyper::StatusCode;

use super::reply::Reply;
use super::Playback;
use crate::archive::{ArchiveError, StreamSummary};
use crate::live::{LiveState, Packager};

/// How long a first request waits for a new packager's first load.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Run a blocking archive call on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Reply> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        tracing::error!(error = %e, "blocking archive call failed");
        Reply::error(StatusCode::INTERNAL_SERVER_ERROR, "internal error reading the archive")
    })
}

/// The status an archive error answers with.
pub fn archive_error(e: &ArchiveError) -> Reply {
    match e {
        ArchiveError::UnknownStream(_) | ArchiveError::UnknownFragment { .. } => {
            Reply::error(StatusCode::NOT_FOUND, e.to_string())
        }
        ArchiveError::Store(_) => {
            tracing::warn!(error = %e, "archive read failed");
            Reply::error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

/// The stream's summary, or 404.
pub async fn stream_summary(pb: &Playback, stream: &str) -> Result<StreamSummary, Reply> {
    let archive = pb.archive.clone();
    let name = stream.to_owned();
    blocking(move || archive.stream(&name))
        .await?
        .map_err(|e| archive_error(&e))
}

/// The stream's live packager, started if needed, after its first load.
pub async fn live_packager(pb: &Playback, stream: &str) -> Result<Arc<Packager>, Reply> {
    let packager = match pb.live.get(stream) {
        Some(p) => p,
        None => {
            stream_summary(pb, stream).await?;
            pb.live.get_or_start(stream).map_err(|e| {
                tracing::error!(stream, error = %e, "cannot start a live packager thread");
                Reply::error(StatusCode::SERVICE_UNAVAILABLE, "cannot start live packaging")
            })?
        }
    };
    let ready = packager
        .wait_for(READY_WAIT, |s| (s.ready || s.failed.is_some()).then_some(()))
        .await;
    if ready.is_none() {
        return Err(Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("live packaging of stream {stream:?} is still starting"),
        ));
    }
    if let Some(failed) = packager.state().failed.clone() {
        return Err(Reply::error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("live packaging of stream {stream:?} failed: {failed}"),
        ));
    }
    Ok(packager)
}

/// How long a blocking request is held: three target durations (RFC
/// 8216bis 6.2.5.2 lets the server answer 503 after that).
pub fn hold(state: &LiveState) -> Duration {
    Duration::from_secs(3 * crate::hls::playlist::target_duration(state).max(2))
}
