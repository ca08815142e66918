//! The agent's HTTP surface (one port): `/healthz`, `/metrics`,
//! `/api/streams`, and playback's routes (HLS, DASH, clips, the web UI),
//! which `playback::http::Playback` answers over the store.
//!
//! Store calls are blocking (SQLite, files), so handlers run them on the
//! blocking pool and the event loop stays free for other connections.

pub mod api;
mod control;
pub mod ingest;
mod sensor;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};

use playback::http::Playback;

use crate::run::recorder::RecorderStatus;
use crate::store::Store;

/// What handlers share.
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Each recorder's live status.
    pub recorders: Vec<Arc<Mutex<RecorderStatus>>>,
    /// The Prometheus recorder, when this process installed it.
    pub prometheus: Option<PrometheusHandle>,
    /// HLS, DASH, clips and the web UI over the store.
    pub playback: Playback,
    /// The WebRTC peer (WHEP), unless `[webrtc] enabled = false`.
    pub whep: Option<Arc<playback::webrtc::Whep>>,
    /// KVS-compatible PutMedia ingest, with `[ingest] enabled = true`.
    pub ingest: Option<Arc<ingest::Ingest>>,
    /// Each upload's status.
    pub uploads: Vec<crate::kvs::uploader::UploadStatusHandle>,
}

impl AppState {
    fn upload_snapshots(&self) -> Vec<crate::kvs::uploader::UploadStatus> {
        self.uploads
            .iter()
            .filter_map(|u| u.lock().ok().map(|s| s.clone()))
            .collect()
    }

    fn ingest_snapshots(&self) -> std::collections::BTreeMap<String, ingest::IngestStatus> {
        self.ingest.as_ref().map(|i| i.status()).unwrap_or_default()
    }

    fn recorder_snapshots(&self) -> Vec<RecorderStatus> {
        self.recorders
            .iter()
            .filter_map(|r| r.lock().ok().map(|s| s.clone()))
            .collect()
    }
}

/// Response body type for every route (playback's: whole or streamed).
pub type Body = playback::http::Body;

/// Serve until `shutdown` turns true; connections in flight finish.
pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off a moment rather than spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        // Responses end in small writes (the last part's boxes, a
        // playlist); Nagle would hold them for the peer's delayed ACK.
        if let Err(e) = stream.set_nodelay(true) {
            debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, state.clone(), peer));
            // writev: a segment's frames (one multi-chunk body frame, see
            // playback's BodyChunks) go out in writes of 64 slices, never
            // flattened into a copy.
            let conn = http1::Builder::new()
                .writev(true)
                .serve_connection(TokioIo::new(stream), svc);
            if let Err(e) = conn.await {
                debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

async fn handle(req: Request<Incoming>, state: Arc<AppState>, _peer: SocketAddr) -> Result<Response<Body>, Infallible> {
    // WHEP reads the request body (the offer); playback's routes only look
    // at the request line.
    let req = match &state.whep {
        Some(whep) => match whep.handle(req).await {
            Ok(response) => return Ok(response),
            Err(req) => req,
        },
        None => req,
    };
    if req.uri().path().starts_with("/whep/") {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "WebRTC is off on this agent ([webrtc] enabled = false)",
        ));
    }
    if let (Some(ingest), &Method::POST) = (&state.ingest, req.method()) {
        if let p @ ("/describeStream" | "/createStream" | "/tagStream" | "/getDataEndpoint") = req.uri().path() {
            let path = p.to_owned();
            let host = control::host_of(&req);
            // Control-plane bodies are small JSON documents.
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, 64 * 1024).collect().await {
                Ok(b) => b.to_bytes(),
                Err(e) => return Ok(error(StatusCode::BAD_REQUEST, &format!("request body: {e}"))),
            };
            // Control-plane calls sign the SHA-256 of their JSON body.
            let signed = Request::from_parts(parts, ());
            if let Err(e) = ingest.authorize(&signed, &crate::kvs::sigv4::sha256_hex(&body)) {
                return Ok(ingest::refuse(
                    StatusCode::UNAUTHORIZED,
                    "NotAuthorizedException",
                    &e.to_string(),
                ));
            }
            return Ok(ingest
                .control
                .handle(&path, host.as_deref(), &body)
                .unwrap_or_else(|| error(StatusCode::NOT_FOUND, &format!("no such resource: {path}"))));
        }
    }
    if req.uri().path() == "/putMedia" {
        return Ok(match (&state.ingest, req.method()) {
            (Some(ingest), &Method::POST) => ingest.put_media(req, state.store.clone()).await,
            (Some(_), _) => error(StatusCode::METHOD_NOT_ALLOWED, "PutMedia is a POST"),
            (None, _) => error(
                StatusCode::NOT_FOUND,
                "ingest is off on this agent ([ingest] enabled = false)",
            ),
        });
    }
    if let Some(response) = state.playback.handle(&req).await {
        return Ok(response);
    }
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let response = match (method, path.as_str()) {
        (Method::GET | Method::HEAD, "/healthz") => text(StatusCode::OK, "ok\n", "text/plain; charset=utf-8"),
        (Method::GET | Method::HEAD, "/metrics") => {
            let state = state.clone();
            match tokio::task::spawn_blocking(move || {
                state.prometheus.as_ref().map(|h| {
                    let webrtc = state.whep.as_ref().map(|w| w.status());
                    crate::telemetry::render(
                        h,
                        &state.store,
                        &state.recorder_snapshots(),
                        webrtc.as_ref(),
                        &state.upload_snapshots(),
                        &state.ingest_snapshots(),
                    )
                })
            })
            .await
            {
                Ok(Some(body)) => text(StatusCode::OK, body, "text/plain; version=0.0.4; charset=utf-8"),
                Ok(None) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "metrics are not installed in this process",
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("metrics failed: {e}")),
            }
        }
        (Method::GET | Method::HEAD, "/api/streams") => {
            let state = state.clone();
            match tokio::task::spawn_blocking(move || {
                let webrtc = state.whep.as_ref().map(|w| w.status());
                api::streams(
                    &state.store,
                    &state.recorder_snapshots(),
                    webrtc.as_ref(),
                    &state.upload_snapshots(),
                    &state.ingest_snapshots(),
                )
            })
            .await
            {
                Ok(Ok(v)) => json(StatusCode::OK, &v),
                Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (Method::GET | Method::HEAD, p) if sensor::route(p).is_some() => match sensor::route(p) {
            Some(Ok(name)) => {
                let (state, name) = (state.clone(), name.to_owned());
                let query = req.uri().query().map(str::to_owned);
                match tokio::task::spawn_blocking(move || sensor::frame_at(&state.store, &name, query.as_deref())).await
                {
                    Ok(Ok(v)) => json(StatusCode::OK, &v),
                    Ok(Err(sensor::SensorError::BadRequest(m))) => error(StatusCode::BAD_REQUEST, &m),
                    Ok(Err(sensor::SensorError::NotFound(m))) => error(StatusCode::NOT_FOUND, &m),
                    Ok(Err(sensor::SensorError::Internal(e))) => {
                        error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}"))
                    }
                    Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
                }
            }
            _ => error(StatusCode::BAD_REQUEST, "expected /api/sensors/{stream}/frame"),
        },
        (_, "/healthz" | "/metrics" | "/api/streams") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "only GET is allowed here")
        }
        _ => error(StatusCode::NOT_FOUND, &format!("no such resource: {path}")),
    };
    Ok(response)
}

fn text(status: StatusCode, body: impl Into<Bytes>, content_type: &'static str) -> Response<Body> {
    let mut r = Response::new(playback::http::full(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn json(status: StatusCode, v: &serde_json::Value) -> Response<Body> {
    text(status, v.to_string(), "application/json")
}

/// Errors are JSON with a reason, for scripts and players alike.
fn error(status: StatusCode, reason: &str) -> Response<Body> {
    json(
        status,
        &serde_json::json!({ "error": reason, "status": status.as_u16() }),
    )
}
