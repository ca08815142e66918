//! Prometheus metrics: the store's counters and each recorder's state,
//! published at `/metrics`. Values are read from their owners at scrape time
//! rather than pushed on every event, so the hot path pays nothing.

use metrics::{counter, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::kvs::uploader::UploadStatus;
use crate::run::recorder::RecorderStatus;
use crate::store::{Store, StreamState};

/// Install the recorder for this process. `None` when one is installed
/// already (a second `run` in one process, as tests do).
pub fn install() -> Option<PrometheusHandle> {
    PrometheusBuilder::new().install_recorder().ok()
}

/// Refresh every metric from its source, then render the exposition text.
pub fn render(
    handle: &PrometheusHandle,
    store: &Store,
    recorders: &[RecorderStatus],
    webrtc: Option<&playback::webrtc::WhepStatus>,
    uploads: &[UploadStatus],
    ingest: &std::collections::BTreeMap<String, crate::http::ingest::IngestStatus>,
) -> String {
    let s = store.stats();
    counter!("edge_agent_store_bytes_written_total").absolute(s.bytes_written);
    counter!("edge_agent_store_fragments_written_total").absolute(s.fragments_written);
    counter!("edge_agent_store_frames_written_total").absolute(s.frames_written);
    counter!("edge_agent_store_fragments_aborted_total").absolute(s.fragments_aborted);
    counter!("edge_agent_store_fragments_denied_total").absolute(s.fragments_denied);
    counter!("edge_agent_store_disk_full_errors_total").absolute(s.disk_full_errors);
    counter!("edge_agent_store_deleted_not_uploaded_total").absolute(s.deleted_not_uploaded);
    for (reason, n, b) in [
        ("max_age", s.deleted_fragments.age, s.deleted_bytes.age),
        ("max_size", s.deleted_fragments.max_size, s.deleted_bytes.max_size),
        ("min_free", s.deleted_fragments.min_free, s.deleted_bytes.min_free),
        ("disk_full", s.deleted_fragments.disk_full, s.deleted_bytes.disk_full),
        (
            "after_upload",
            s.deleted_fragments.after_upload,
            s.deleted_bytes.after_upload,
        ),
    ] {
        counter!("edge_agent_store_deleted_fragments_total", "reason" => reason).absolute(n);
        counter!("edge_agent_store_deleted_bytes_total", "reason" => reason).absolute(b);
    }
    gauge!("edge_agent_store_disk_bytes").set(s.disk_bytes as f64);
    if let Some(free) = s.free_bytes {
        gauge!("edge_agent_store_free_bytes").set(free as f64);
    }
    counter!("edge_agent_store_fsync_total").absolute(s.fsync.count);
    gauge!("edge_agent_store_fsync_seconds_sum").set(s.fsync.total.as_secs_f64());
    gauge!("edge_agent_store_fsync_seconds_max").set(s.fsync.max.as_secs_f64());

    if let Ok(streams) = store.streams() {
        for st in streams {
            let name = st.name.clone();
            gauge!("edge_agent_stream_fragments", "stream" => name.clone()).set(st.fragments as f64);
            gauge!("edge_agent_stream_bytes", "stream" => name.clone()).set(st.bytes as f64);
            if let Some(t) = st.oldest {
                gauge!("edge_agent_stream_oldest_seconds", "stream" => name.clone()).set(t.as_nanos() as f64 / 1e9);
            }
            if let Some(t) = st.newest {
                gauge!("edge_agent_stream_newest_seconds", "stream" => name.clone()).set(t.as_nanos() as f64 / 1e9);
            }
            if let Some(u) = uploads.iter().find(|u| u.stream == st.name) {
                let (secs, bytes, _) = crate::http::api::upload_lag(store, &st.name, st.newest);
                gauge!("edge_agent_upload_lag_seconds", "stream" => name.clone()).set(secs);
                gauge!("edge_agent_upload_lag_bytes", "stream" => name.clone()).set(bytes as f64);
                gauge!("edge_agent_upload_connected", "stream" => name.clone()).set(f64::from(u8::from(u.connected)));
                gauge!("edge_agent_upload_waiting_for_window", "stream" => name.clone())
                    .set(f64::from(u8::from(u.waiting_for_window)));
                counter!("edge_agent_upload_bytes_total", "stream" => name.clone()).absolute(u.bytes_sent);
                counter!("edge_agent_upload_connections_total", "stream" => name.clone()).absolute(u.connections);
                for (kind, n) in [
                    ("buffering", u.acks.buffering),
                    ("received", u.acks.received),
                    ("persisted", u.acks.persisted),
                    ("error", u.acks.error),
                    ("idle", u.acks.idle),
                ] {
                    counter!("edge_agent_upload_acks_total", "stream" => name.clone(), "type" => kind).absolute(n);
                }
                for (id, n) in &u.errors {
                    counter!("edge_agent_upload_errors_total", "stream" => name.clone(), "error_id" => id.to_string())
                        .absolute(*n);
                }
            }
            let denied = matches!(st.state, StreamState::Denied { .. });
            gauge!("edge_agent_stream_denied", "stream" => name).set(f64::from(u8::from(denied)));
        }
    }
    // Keyed by the KVS stream name, which may not be stored (yet): a
    // refused connection is counted all the same.
    for (name, i) in ingest {
        let name = name.clone();
        gauge!("edge_agent_ingest_connected", "stream" => name.clone()).set(f64::from(u8::from(i.connected)));
        counter!("edge_agent_ingest_connections_total", "stream" => name.clone()).absolute(i.connections);
        counter!("edge_agent_ingest_refused_total", "stream" => name.clone()).absolute(i.refused);
        counter!("edge_agent_ingest_bytes_total", "stream" => name.clone()).absolute(i.bytes_received);
        for (kind, n) in [
            ("buffering", i.acks.buffering),
            ("received", i.acks.received),
            ("persisted", i.acks.persisted),
            ("error", i.acks.error),
            ("idle", i.acks.idle),
        ] {
            counter!("edge_agent_ingest_acks_total", "stream" => name.clone(), "type" => kind).absolute(n);
        }
        for (id, n) in &i.errors {
            counter!("edge_agent_ingest_errors_total", "stream" => name.clone(), "error_id" => id.to_string())
                .absolute(*n);
        }
    }
    for r in recorders {
        let name = r.name.clone();
        counter!("edge_agent_capture_restarts_total", "stream" => name.clone())
            .absolute(r.restarts + r.source_restarts);
        counter!("edge_agent_capture_frames_total", "stream" => name.clone()).absolute(r.frames);
        counter!("edge_agent_capture_frames_refused_total", "stream" => name.clone()).absolute(r.refused);
        gauge!("edge_agent_capture_running", "stream" => name.clone()).set(f64::from(u8::from(r.running)));
        let open = r.schedule.is_open(std::time::SystemTime::now());
        gauge!("edge_agent_capture_window_open", "stream" => name).set(f64::from(u8::from(open)));
    }
    if let Some(w) = webrtc {
        counter!("edge_agent_webrtc_sessions_total").absolute(w.sessions_total);
        counter!("edge_agent_webrtc_refused_total").absolute(w.refused_total);
        for (name, v) in &w.streams {
            gauge!("edge_agent_webrtc_viewers", "stream" => name.clone()).set(v.viewers as f64);
            counter!("edge_agent_webrtc_key_frames_requested_total", "stream" => name.clone())
                .absolute(v.key_frames_requested);
        }
    }
    handle.render()
}
