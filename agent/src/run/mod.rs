//! `edge-agent run`: every configured stream and sensor recorded into the
//! store, retention enforced, and the HTTP surface served, until SIGINT or
//! SIGTERM closes the open fragments and flushes.

pub mod live;
pub mod recorder;
pub mod talkback;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use hardware::sensor::SensorUri;
use hardware::{AudioSource, CaptureOptions};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{info, warn};

use crate::config::Config;
use crate::http::{self, AppState};
use crate::source::SourceSpec;
use crate::store::{OnFull, Store, StoreConfig, SystemClock};
use playback::webrtc::feed::{FeedKind, Feeds};
use playback::webrtc::Whep;
use recorder::{Recorder, RecorderSpec};
use talkback::{Talkback, TalkbackConfig};

/// How often retention runs (it also runs as the store sees fit on writes).
const RETENTION_EVERY: Duration = Duration::from_secs(10);

/// Where an upload goes and what signs it, as `[streams.upload]` says:
/// `auth = "none"`, else `[iot]`, else static keys, else AWS's default
/// chain (environment, profile, container, IMDS).
pub fn upstream_spec(u: &crate::config::UploadSection) -> crate::kvs::upstream::UpstreamSpec {
    use crate::kvs::credentials::{CredentialSpec, IotSpec};
    let credentials = match (u.auth.as_str(), &u.iot, &u.access_key_id, &u.secret_access_key) {
        ("none", ..) => CredentialSpec::None,
        (_, Some(iot), ..) => CredentialSpec::Iot(IotSpec {
            endpoint: iot.endpoint.clone(),
            role_alias: iot.role_alias.clone(),
            thing_name: iot.thing_name.clone(),
            cert: iot.cert.clone(),
            key: iot.key.clone(),
            ca: iot.ca.clone(),
        }),
        (_, None, Some(id), Some(secret)) => CredentialSpec::Static {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
        },
        _ => CredentialSpec::DefaultChain,
    };
    crate::kvs::upstream::UpstreamSpec {
        region: u.region.clone(),
        endpoint: u.endpoint.clone(),
        data_endpoint: u.data_endpoint.clone(),
        create: u
            .create_stream
            .as_ref()
            .map(|c| crate::kvs::control_plane::CreateStreamSpec {
                retention_hours: c.retention_hours,
                media_type: c.media_type.clone(),
                kms_key_id: c.kms_key_id.clone(),
                device_name: c.device_name.clone(),
                tags: c.tags.clone(),
            }),
        credentials,
    }
}

/// The store configuration a config file describes.
pub fn store_config(config: &Config) -> Result<StoreConfig> {
    let s = &config.store;
    let on_full: OnFull = s.on_full.parse().map_err(anyhow::Error::msg)?;
    Ok(StoreConfig {
        max_age_hours: s.max_age_hours,
        max_size_mb: s.max_size_mb,
        on_full,
        delete_after_upload: s.delete_after_upload,
        min_free_mb: s.min_free_mb,
        live_buffer_bytes: s.live_buffer_kb as usize * 1024,
        ..StoreConfig::new(s.path.clone())
    })
}

/// Load `-c FILE`, or the embedded defaults.
pub fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::embedded_default(),
    })
}

/// The WebRTC peer's settings from `[webrtc]` (and `http.listen` for the
/// default candidate address).
pub fn webrtc_options(config: &Config, listen: SocketAddr) -> Result<playback::webrtc::WebRtcOptions> {
    let w = &config.webrtc;
    let udp = if w.udp.is_empty() {
        vec![SocketAddr::new(listen.ip(), 0)]
    } else {
        w.udp
            .iter()
            .map(|a| a.parse().with_context(|| format!("webrtc.udp: {a:?}")))
            .collect::<Result<_>>()?
    };
    Ok(playback::webrtc::WebRtcOptions {
        udp,
        ice_servers: w
            .ice_servers
            .iter()
            .map(|s| playback::webrtc::IceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect(),
        max_viewers: w.max_viewers as usize,
        disconnect: Duration::from_secs(w.disconnect_seconds.into()),
        ..playback::webrtc::WebRtcOptions::default()
    })
}

fn recorder_specs(config: &Config, feeds: Option<&Feeds>) -> Result<Vec<RecorderSpec>> {
    let mut specs = Vec::new();
    for s in &config.streams {
        let source = SourceSpec::parse(&s.video).with_context(|| format!("stream {}: video", s.name))?;
        let audio: AudioSource = s.audio.parse().with_context(|| format!("stream {}: audio", s.name))?;
        let video_codec = s.codec.parse().with_context(|| format!("stream {}: codec", s.name))?;
        let audio_codecs = s
            .audio_codecs
            .iter()
            .map(|c| c.parse())
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("stream {}: audio_codecs", s.name))?;
        specs.push(RecorderSpec {
            name: s.name.clone(),
            // Kept for messages and /api/streams: never with a password.
            source_text: hardware::redact_url(&s.video),
            source,
            capture: CaptureOptions {
                fragment_duration: Duration::from_secs(s.fragment_seconds.into()),
                width: s.width,
                height: s.height,
                fps: s.fps,
                video_bitrate_kbps: s.bitrate_kbps,
                video_codec,
                audio_codecs,
                audio,
                ..CaptureOptions::default()
            },
            fragment: Duration::from_secs(s.fragment_seconds.into()),
            uploads: s.upload.is_some(),
            feed: feeds.map(|f| f.add(&s.name, FeedKind::Media)),
            schedule: crate::config::schedule_of(s.record_schedule.as_ref())
                .with_context(|| format!("stream {}: record_schedule", s.name))?,
        });
    }
    for s in &config.sensors {
        let source = SourceSpec::parse(&s.source).with_context(|| format!("sensor {}: source", s.name))?;
        let kind = match &source {
            SourceSpec::Sensor(SensorUri::Mmwave { .. } | SensorUri::Ars408 { .. }) => FeedKind::Radar,
            _ => FeedKind::Lidar,
        };
        specs.push(RecorderSpec {
            name: s.name.clone(),
            source_text: s.source.clone(),
            source,
            capture: CaptureOptions::default(),
            fragment: Duration::from_secs(s.fragment_seconds.into()),
            uploads: s.upload.is_some(),
            feed: feeds.map(|f| f.add(&s.name, kind)),
            schedule: crate::schedule::Schedule::Always,
        });
    }
    Ok(specs)
}

/// Run until a signal.
pub fn run(config_path: Option<&PathBuf>) -> Result<()> {
    let config = load_config(config_path)?;
    let listen: SocketAddr = config.http.listen.parse().context("http.listen")?;
    let store = Store::open(store_config(&config)?, Arc::new(SystemClock))
        .with_context(|| format!("cannot open the store in {}", config.store.path.display()))?;
    let report = store.recovery_report();
    if !report.is_clean() {
        warn!(?report, "the store was not closed cleanly; recovered");
    }
    let prometheus = crate::telemetry::install();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edge-agent-io")
        .build()
        .context("cannot start the async runtime")?;
    // Bind before recording starts: a port in use is a configuration error
    // the user should see at once, not after the cameras spun up.
    let listener = runtime
        .block_on(TcpListener::bind(listen))
        .with_context(|| format!("http.listen: cannot listen on {listen}"))?;

    let mut talkback_outputs = None;
    let whep = if config.webrtc.enabled {
        let talkback = config
            .streams
            .iter()
            .map(|s| {
                let sink = s.talkback.parse().map_err(anyhow::Error::msg);
                sink.map(|sink| {
                    (
                        s.name.clone(),
                        TalkbackConfig {
                            sink,
                            record: s.talkback_record,
                        },
                    )
                })
            })
            .collect::<Result<HashMap<_, _>>>()?;
        let outputs = Arc::new(Talkback::new(talkback, store.clone()));
        talkback_outputs = Some(outputs.clone());
        Some(Whep::new(
            Arc::new(Feeds::new()),
            webrtc_options(&config, listen)?,
            Some(outputs),
        ))
    } else {
        None
    };
    let stop = Arc::new(AtomicBool::new(false));
    let mut recorders = Vec::new();
    for spec in recorder_specs(&config, whep.as_ref().map(|w| w.feeds().as_ref()))? {
        recorders.push(Recorder::spawn(spec, store.clone(), stop.clone())?);
    }
    let mut upload_specs = Vec::new();
    for s in &config.streams {
        let Some(u) = &s.upload else { continue };
        upload_specs.push(crate::kvs::uploader::UploadSpec {
            stream: s.name.clone(),
            kvs_stream: u.kvs_stream.clone(),
            upstream: upstream_spec(u),
            rotate_after: Duration::from_secs(u.rotate_seconds.into()),
            max_bytes_per_second: u64::from(u.max_mbps) * 125_000,
            max_fragments_per_second: u.max_fragments_per_second,
            schedule: crate::config::schedule_of(u.schedule.as_ref())
                .with_context(|| format!("stream {}: upload.schedule", s.name))?,
        });
    }
    let state = Arc::new(AppState {
        uploads: upload_specs.iter().map(|_| Arc::default()).collect(),
        store: store.clone(),
        recorders: recorders.iter().map(Recorder::status_handle).collect(),
        prometheus,
        playback: playback::http::Playback::new(Arc::new(store.clone()), playback::http::PlaybackOptions::default()),
        whep: whep.clone(),
        ingest: config.ingest.enabled.then(|| {
            let credentials = (config.ingest.auth == "sigv4").then(|| {
                config
                    .ingest
                    .credentials
                    .iter()
                    .map(|c| crate::kvs::sigv4::Credential {
                        access_key_id: c.access_key_id.clone(),
                        secret_access_key: c.secret_access_key.clone(),
                    })
                    .collect()
            });
            Arc::new(http::ingest::Ingest::new(&config.store.path, credentials))
        }),
    });
    info!(
        streams = config.streams.len(),
        sensors = config.sensors.len(),
        store = %config.store.path.display(),
        "edge-agent running; web UI on http://{listen}"
    );
    println!(
        "edge-agent: recording into {}, HTTP on http://{listen}",
        config.store.path.display()
    );

    let upload_statuses = state.uploads.clone();
    runtime.block_on(async {
        let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
        let server = tokio::spawn(http::serve(listener, state.clone(), shutdown_rx));
        let retention = {
            let store = store.clone();
            let mut rx = shutdown_tx.subscribe();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(RETENTION_EVERY);
                let mut deleted = store.stats().deleted_fragments.total();
                loop {
                    tokio::select! {
                        _ = tick.tick() => {}
                        _ = rx.changed() => break,
                    }
                    let store = store.clone();
                    match tokio::task::spawn_blocking(move || store.enforce_retention()).await {
                        Ok(Ok(r)) if r.fragments.total() > 0 => info!(?r, "retention"),
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => warn!(error = %e, "retention failed"),
                        Err(e) => warn!(error = %e, "retention task failed"),
                    }
                    // Playback's cache maps segment files: a deleted file
                    // it still maps keeps its disk space. Deletions here or
                    // in the writer (disk full, size cap) let it go.
                    let now = state.store.stats().deleted_fragments.total();
                    if now != deleted {
                        deleted = now;
                        state.playback.forget_cached_fragments();
                    }
                }
            })
        };
        // Uploads: each builds its control-plane client and credentials
        // when it starts, here, never on the recording path.
        let upload_stop = Arc::new(AtomicBool::new(false));
        let uploads: Vec<_> = upload_specs
            .into_iter()
            .zip(upload_statuses)
            .map(|(spec, status)| {
                tokio::spawn(crate::kvs::uploader::run(
                    spec,
                    store.clone(),
                    upload_stop.clone(),
                    status,
                ))
            })
            .collect();
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => info!("SIGINT: closing open fragments"),
            _ = term.recv() => info!("SIGTERM: closing open fragments"),
        }
        let _ = shutdown_tx.send(true);
        if let Some(w) = &whep {
            w.close_all();
        }
        let _ = server.await;
        let _ = retention.await;
        // An upload between fragments ends its body cleanly; one in the
        // middle of a fragment is cut after 5 s (the gateway drops that
        // fragment, and the next start resends it).
        upload_stop.store(true, Ordering::SeqCst);
        for u in uploads {
            let abort = u.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), u).await.is_err() {
                abort.abort();
            }
        }
    });
    // Viewers were told to hang up: let talkback store its last fragment.
    if let Some(t) = &talkback_outputs {
        t.finish(Duration::from_secs(5));
    }
    stop.store(true, Ordering::Relaxed);
    for r in recorders {
        r.join();
    }
    info!("stopped");
    Ok(())
}
