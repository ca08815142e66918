//! The agent's configuration: TOML with a default for every field
//! (documented in `agent.example.toml`), checked as a whole so that every
//! bad field is named with its value and what is allowed.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A configuration problem: which field, what it held, what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} = {value}: {allowed}")]
pub struct FieldError {
    /// Dotted path, e.g. `streams[1].fragment_seconds`.
    pub field: String,
    /// The value as written.
    pub value: String,
    /// What would have been accepted.
    pub allowed: String,
}

/// Every problem found in a file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// Not TOML, or a field of the wrong type or name.
    #[error("{}: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (it names the key and line).
        message: String,
    },
    /// Fields with values out of range.
    #[error("{}: {}", path.display(), errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Each bad field.
        errors: Vec<FieldError>,
    },
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Folder for segment files and index.sqlite.
    pub path: PathBuf,
    /// KVS Edge Agent EdgeRetentionInHours.
    pub max_age_hours: u32,
    /// MaxLocalMediaSizeInMB; 0 = no cap.
    pub max_size_mb: u64,
    /// `DELETE_OLDEST_MEDIA` or `DENY_NEW_MEDIA`.
    pub on_full: String,
    /// Delete a fragment once KVS has PERSISTED it.
    pub delete_after_upload: bool,
    /// Keep at least this much disk free.
    pub min_free_mb: u64,
    /// Recent frames kept in memory per stream for readers at the live edge.
    pub live_buffer_kb: u32,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            path: PathBuf::from("data"),
            max_age_hours: 720,
            max_size_mb: 0,
            on_full: "DELETE_OLDEST_MEDIA".into(),
            delete_after_upload: false,
            min_free_mb: 512,
            live_buffer_kb: 512,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    /// Address and port of the web UI, API and metrics.
    pub listen: String,
}

impl Default for HttpSection {
    fn default() -> Self {
        HttpSection {
            listen: "127.0.0.1:8080".into(),
        }
    }
}

/// `[streams.upload]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UploadSection {
    /// The KVS stream name.
    pub kvs_stream: String,
    /// AWS region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Control-plane endpoint override (like kvssink's
    /// `CONTROL_PLANE_URI`): a gateway, or a test server such as moto.
    /// PutMedia then goes where its GetDataEndpoint answers. `None`: AWS,
    /// `https://kinesisvideo.{region}.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// PutMedia straight to this endpoint, with no control-plane call (a
    /// PutMedia-only server); the stream must exist there.
    #[serde(default)]
    pub data_endpoint: Option<String>,
    /// `sigv4` (the default) or `none`: unsigned, for a gateway with
    /// `[ingest] auth = "none"`.
    #[serde(default = "default_upload_auth")]
    pub auth: String,
    /// Create the stream with these settings when it does not exist;
    /// absent: a missing stream is an error.
    #[serde(default)]
    pub create_stream: Option<CreateStreamSection>,
    /// Credentials from the AWS IoT role alias, with the device
    /// certificate.
    #[serde(default)]
    pub iot: Option<IotSection>,
    /// A PutMedia connection is replaced by a fresh one, between fragments,
    /// after this long (the service ends connections at 45 minutes).
    #[serde(default = "default_rotate")]
    pub rotate_seconds: u32,
    /// Most upload rate, megabits per second (the service: 100 = 12.5 MB/s).
    #[serde(default = "default_max_mbps")]
    pub max_mbps: u32,
    /// Most fragments started per second (the service: 5).
    #[serde(default = "default_max_fragments")]
    pub max_fragments_per_second: u32,
    /// Static keys to sign with; without them (and without `iot`), AWS's
    /// default chain: the environment, the profile files, the container's
    /// or the instance's role.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// The secret of `access_key_id`.
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Upload only in these windows (KVS Edge Agent:
    /// UploaderConfig.ScheduleConfig); absent: always.
    #[serde(default)]
    pub schedule: Option<ScheduleSection>,
}

/// `[streams.record_schedule]`, `[streams.upload.schedule]`: windows that
/// open each time `cron` fires and stay open `duration_seconds` (KVS Edge
/// Agent: ScheduleConfig's ScheduleExpression and DurationInSeconds). See
/// [`crate::schedule`] for the expression's form; times are UTC.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSection {
    /// A Quartz cron expression, e.g. `0 0/10 * * * ?`.
    pub cron: String,
    /// How long each window stays open.
    pub duration_seconds: u32,
}

impl ScheduleSection {
    /// The schedule it describes.
    pub fn schedule(&self) -> Result<crate::schedule::Schedule, crate::schedule::ScheduleError> {
        crate::schedule::Schedule::cron(&self.cron, self.duration_seconds)
    }
}

/// The schedule of an optional section: absent = always.
pub fn schedule_of(
    section: Option<&ScheduleSection>,
) -> Result<crate::schedule::Schedule, crate::schedule::ScheduleError> {
    section.map_or(Ok(crate::schedule::Schedule::Always), ScheduleSection::schedule)
}

fn check_schedule(prefix: &str, section: Option<&ScheduleSection>, bad: &mut impl FnMut(String, String, &str)) {
    if let Err(e) = schedule_of(section) {
        bad(format!("{prefix}.{}", e.field()), e.value(), &e.to_string());
    }
}

/// `[streams.upload.create_stream]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CreateStreamSection {
    /// DataRetentionInHours, 1 to 87600 (0, no persistence, would mean no
    /// PERSISTED ACK, so nothing would ever count as uploaded).
    pub retention_hours: u32,
    /// MediaType, e.g. `video/h264,audio/aac`.
    pub media_type: Option<String>,
    /// KmsKeyId; absent: the service's `aws/kinesisvideo` key.
    pub kms_key_id: Option<String>,
    /// DeviceName.
    pub device_name: Option<String>,
    /// Tags (at most 50).
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Default for CreateStreamSection {
    fn default() -> Self {
        CreateStreamSection {
            retention_hours: 24,
            media_type: None,
            kms_key_id: None,
            device_name: None,
            tags: Default::default(),
        }
    }
}

/// `[streams.upload.iot]`: the AWS IoT credentials provider.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct IotSection {
    /// The credentials endpoint, `HOST[:PORT]` (`aws iot describe-endpoint
    /// --endpoint-type iot:CredentialProvider`).
    pub endpoint: String,
    /// The role alias.
    pub role_alias: String,
    /// The thing the certificate is attached to.
    pub thing_name: String,
    /// The device certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// CA certificates for the endpoint, PEM (e.g. AmazonRootCA1.pem);
    /// absent: the system's.
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_upload_auth() -> String {
    "sigv4".into()
}

fn default_rotate() -> u32 {
    2400
}

fn default_max_mbps() -> u32 {
    100
}

fn default_max_fragments() -> u32 {
    5
}

fn default_region() -> String {
    "us-west-2".into()
}

/// `[[streams]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StreamSection {
    /// Stream name: `[A-Za-z0-9_.-]`, 1 to 256 characters.
    pub name: String,
    /// Video source.
    #[serde(default = "default_test")]
    pub video: String,
    /// Audio source.
    #[serde(default = "default_test")]
    pub audio: String,
    /// Target fragment duration, 1 to 20 s.
    #[serde(default = "default_fragment")]
    pub fragment_seconds: u32,
    /// Encoded width (sources that encode).
    #[serde(default = "default_width")]
    pub width: u32,
    /// Encoded height.
    #[serde(default = "default_height")]
    pub height: u32,
    /// Frames per second.
    #[serde(default = "default_fps")]
    pub fps: u32,
    /// Video bit rate, kbit/s.
    #[serde(default = "default_bitrate")]
    pub bitrate_kbps: u32,
    /// Video codec for sources that encode: `h264` or `h265`.
    #[serde(default = "default_codec")]
    pub codec: String,
    /// Audio codecs for sources that encode (at most two).
    #[serde(default = "default_audio_codecs")]
    pub audio_codecs: Vec<String>,
    /// Upload to KVS; absent = local only.
    #[serde(default)]
    pub upload: Option<UploadSection>,
    /// Where a WebRTC viewer's microphone is played: `none`, `auto` (the
    /// default sound output), `alsa:DEVICE`, `pulse`, `file:PATH.wav`, or
    /// `pipeline:GST-DESCRIPTION` (a sink taking raw audio).
    #[serde(default = "default_talkback")]
    pub talkback: String,
    /// Also record the viewer's microphone into the store, as stream
    /// `{name}.talkback` (one Opus track).
    #[serde(default)]
    pub talkback_record: bool,
    /// Record only in these windows (KVS Edge Agent:
    /// RecorderConfig.ScheduleConfig); absent: always.
    #[serde(default)]
    pub record_schedule: Option<ScheduleSection>,
}

fn default_talkback() -> String {
    "none".into()
}

fn default_test() -> String {
    "test".into()
}
fn default_fragment() -> u32 {
    2
}
fn default_width() -> u32 {
    1280
}
fn default_height() -> u32 {
    720
}
fn default_fps() -> u32 {
    30
}
fn default_bitrate() -> u32 {
    2000
}
fn default_codec() -> String {
    "h264".into()
}
/// AAC for HLS, DASH and KVS; Opus for WebRTC viewers (browsers take no
/// AAC over WebRTC). One microphone, encoded twice.
fn default_audio_codecs() -> Vec<String> {
    vec!["aac".into(), "opus".into()]
}

/// `[[sensors]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SensorSection {
    /// Stream name of the sensor (each sensor is its own stream).
    pub name: String,
    /// `velodyne:udp://…`, `ouster:udp://…?metadata=…` or `mmwave:…`.
    pub source: String,
    /// Fragment duration, 1 to 20 s.
    #[serde(default = "default_fragment")]
    pub fragment_seconds: u32,
    /// Upload to KVS; absent = local only.
    #[serde(default)]
    pub upload: Option<UploadSection>,
}

/// `[ingest]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IngestSection {
    /// Serve the KVS-compatible ingest endpoint.
    pub enabled: bool,
    /// How callers are authenticated: `sigv4` against `credentials`, or
    /// `none`, said explicitly, for loopback or a trusted network.
    pub auth: String,
    /// The access keys `sigv4` accepts.
    pub credentials: Vec<IngestCredential>,
}

impl Default for IngestSection {
    fn default() -> Self {
        IngestSection {
            enabled: false,
            auth: "sigv4".into(),
            credentials: Vec::new(),
        }
    }
}

/// `[[ingest.credentials]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IngestCredential {
    /// Access key id producers sign with.
    pub access_key_id: String,
    /// Its secret.
    pub secret_access_key: String,
}

/// `[[webrtc.ice_servers]]`.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct IceServerSection {
    /// `stun:HOST:PORT` or `turn:HOST:PORT[?transport=udp|tcp]` URLs.
    pub urls: Vec<String>,
    /// TURN user name.
    pub username: String,
    /// TURN password.
    pub credential: String,
}

/// `[webrtc]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WebRtcSection {
    /// Serve WHEP viewers on `POST /whep/{stream}`.
    pub enabled: bool,
    /// Local `IP:PORT`s for ICE host candidates (port 0: any free port).
    /// Empty: the `http.listen` address (a wildcard there means every
    /// non-loopback interface).
    pub udp: Vec<String>,
    /// STUN/TURN servers.
    pub ice_servers: Vec<IceServerSection>,
    /// Viewers at once, all streams together.
    pub max_viewers: u32,
    /// A viewer that stops answering consent checks is dropped after
    /// twice this.
    pub disconnect_seconds: u32,
}

impl Default for WebRtcSection {
    fn default() -> Self {
        WebRtcSection {
            enabled: true,
            udp: Vec::new(),
            ice_servers: Vec::new(),
            max_viewers: 16,
            disconnect_seconds: 3,
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[store]`.
    pub store: StoreSection,
    /// `[http]`.
    pub http: HttpSection,
    /// `[[streams]]`.
    pub streams: Vec<StreamSection>,
    /// `[[sensors]]`.
    pub sensors: Vec<SensorSection>,
    /// `[ingest]`.
    pub ingest: IngestSection,
    /// `[webrtc]`.
    pub webrtc: WebRtcSection,
}

/// Stream names the store and URLs accept: no path separators, no `..`.
pub fn valid_stream_name(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        && name != "."
        && name != ".."
}

impl Config {
    /// The configuration `edge-agent run` uses without `-c`: one stream
    /// `test` from the test camera and microphone, store in `./data`.
    pub fn embedded_default() -> Self {
        Config {
            streams: vec![StreamSection {
                name: "test".into(),
                video: default_test(),
                audio: default_test(),
                fragment_seconds: default_fragment(),
                width: default_width(),
                height: default_height(),
                fps: default_fps(),
                bitrate_kbps: default_bitrate(),
                codec: default_codec(),
                audio_codecs: default_audio_codecs(),
                upload: None,
                talkback: default_talkback(),
                talkback_record: false,
                record_schedule: None,
            }],
            ..Config::default()
        }
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and check TOML text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim().replace('\n', " "),
        })?;
        let errors = config.check();
        if errors.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid {
                path: path.to_owned(),
                errors,
            })
        }
    }

    /// Every field that is out of range.
    pub fn check(&self) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let mut bad = |field: String, value: String, allowed: &str| {
            errors.push(FieldError {
                field,
                value,
                allowed: allowed.to_owned(),
            })
        };
        if !matches!(self.store.on_full.as_str(), "DELETE_OLDEST_MEDIA" | "DENY_NEW_MEDIA") {
            bad(
                "store.on_full".into(),
                format!("{:?}", self.store.on_full),
                "expected \"DELETE_OLDEST_MEDIA\" or \"DENY_NEW_MEDIA\"",
            );
        }
        if !(64..=65_536).contains(&self.store.live_buffer_kb) {
            bad(
                "store.live_buffer_kb".into(),
                self.store.live_buffer_kb.to_string(),
                "expected 64 to 65536",
            );
        }
        match self.ingest.auth.as_str() {
            "none" => {}
            "sigv4" => {
                if self.ingest.enabled && self.ingest.credentials.is_empty() {
                    bad(
                        "ingest.credentials".into(),
                        "[]".into(),
                        "expected at least one [[ingest.credentials]] with access_key_id and secret_access_key for auth = \"sigv4\" (or auth = \"none\" on loopback or a trusted network)",
                    );
                }
                for (i, c) in self.ingest.credentials.iter().enumerate() {
                    if c.access_key_id.is_empty() || c.secret_access_key.is_empty() {
                        bad(
                            format!("ingest.credentials[{i}]"),
                            format!("{:?}", c.access_key_id),
                            "expected a non-empty access_key_id and secret_access_key",
                        );
                    }
                }
            }
            other => bad(
                "ingest.auth".into(),
                format!("{other:?}"),
                "expected \"sigv4\" or \"none\"",
            ),
        }
        if self.store.max_age_hours == 0 {
            bad("store.max_age_hours".into(), "0".into(), "expected at least 1 hour");
        }
        if self.store.path.as_os_str().is_empty() {
            bad("store.path".into(), "\"\"".into(), "expected a folder");
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            bad(
                "http.listen".into(),
                format!("{:?}", self.http.listen),
                "expected IP:PORT, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8080\"",
            );
        }
        let mut names = BTreeSet::new();
        let mut check_name = |field: String, name: &str, errors: &mut Vec<(String, String, &str)>| {
            if !valid_stream_name(name) {
                errors.push((field, format!("{name:?}"), "expected 1 to 256 of A-Z a-z 0-9 _ . -"));
            } else if !names.insert(name.to_owned()) {
                errors.push((
                    field,
                    format!("{name:?}"),
                    "expected a name no other stream or sensor has",
                ));
            }
        };
        let mut deferred = Vec::new();
        for (i, s) in self.streams.iter().enumerate() {
            let f = |k: &str| format!("streams[{i}].{k}");
            check_name(f("name"), &s.name, &mut deferred);
            if let Err(e) = s.video.parse::<hardware::VideoSource>() {
                bad(
                    f("video"),
                    format!("{:?}", hardware::redact_url(&s.video)),
                    &e.to_string(),
                );
            }
            if let Err(e) = s.audio.parse::<hardware::AudioSource>() {
                bad(f("audio"), format!("{:?}", s.audio), &e.to_string());
            }
            if !(1..=20).contains(&s.fragment_seconds) {
                bad(
                    f("fragment_seconds"),
                    s.fragment_seconds.to_string(),
                    "expected 1 to 20",
                );
            }
            if s.width == 0 || s.width % 2 == 1 || s.width > 7680 {
                bad(
                    f("width"),
                    s.width.to_string(),
                    "expected an even number from 2 to 7680",
                );
            }
            if s.height == 0 || s.height % 2 == 1 || s.height > 4320 {
                bad(
                    f("height"),
                    s.height.to_string(),
                    "expected an even number from 2 to 4320",
                );
            }
            if !(1..=120).contains(&s.fps) {
                bad(f("fps"), s.fps.to_string(), "expected 1 to 120");
            }
            if let Err(e) = s.codec.parse::<hardware::VideoCodecChoice>() {
                bad(f("codec"), format!("{:?}", s.codec), &e.to_string());
            }
            if s.audio_codecs.is_empty() || s.audio_codecs.len() > 2 {
                bad(
                    f("audio_codecs"),
                    format!("{:?}", s.audio_codecs),
                    "expected one or two codecs",
                );
            }
            for c in &s.audio_codecs {
                if let Err(e) = c.parse::<hardware::AudioCodecChoice>() {
                    bad(f("audio_codecs"), format!("{c:?}"), &e.to_string());
                }
            }
            if !(64..=100_000).contains(&s.bitrate_kbps) {
                bad(f("bitrate_kbps"), s.bitrate_kbps.to_string(), "expected 64 to 100000");
            }
            if let Some(u) = &s.upload {
                check_upload(&f("upload"), u, &mut bad);
            }
            check_schedule(&f("record_schedule"), s.record_schedule.as_ref(), &mut bad);
            if let Err(e) = s.talkback.parse::<hardware::talkback::TalkbackSink>() {
                bad(f("talkback"), format!("{:?}", s.talkback), &e.to_string());
            }
        }
        for (i, a) in self.webrtc.udp.iter().enumerate() {
            if a.parse::<SocketAddr>().is_err() {
                bad(
                    format!("webrtc.udp[{i}]"),
                    format!("{a:?}"),
                    "expected IP:PORT, e.g. \"192.168.1.10:0\" or \"0.0.0.0:0\"",
                );
            }
        }
        for (i, server) in self.webrtc.ice_servers.iter().enumerate() {
            if server.urls.is_empty() {
                bad(
                    format!("webrtc.ice_servers[{i}].urls"),
                    "[]".into(),
                    "expected at least one URL",
                );
            }
            for u in &server.urls {
                let scheme_ok = ["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| u.starts_with(p));
                if !scheme_ok || u.len() < 8 {
                    bad(
                        format!("webrtc.ice_servers[{i}].urls"),
                        format!("{u:?}"),
                        "expected stun:HOST:PORT or turn:HOST:PORT",
                    );
                } else if u.starts_with("turn") && (server.username.is_empty() || server.credential.is_empty()) {
                    bad(
                        format!("webrtc.ice_servers[{i}].username"),
                        format!("{:?}", server.username),
                        "a TURN server needs username and credential",
                    );
                }
            }
        }
        if !(1..=1000).contains(&self.webrtc.max_viewers) {
            bad(
                "webrtc.max_viewers".into(),
                self.webrtc.max_viewers.to_string(),
                "expected 1 to 1000",
            );
        }
        if !(1..=60).contains(&self.webrtc.disconnect_seconds) {
            bad(
                "webrtc.disconnect_seconds".into(),
                self.webrtc.disconnect_seconds.to_string(),
                "expected 1 to 60",
            );
        }
        for (i, s) in self.sensors.iter().enumerate() {
            let f = |k: &str| format!("sensors[{i}].{k}");
            check_name(f("name"), &s.name, &mut deferred);
            if let Err(e) = s.source.parse::<hardware::sensor::SensorUri>() {
                bad(f("source"), format!("{:?}", s.source), &e.to_string());
            }
            if !(1..=20).contains(&s.fragment_seconds) {
                bad(
                    f("fragment_seconds"),
                    s.fragment_seconds.to_string(),
                    "expected 1 to 20",
                );
            }
            if let Some(u) = &s.upload {
                check_upload(&f("upload"), u, &mut bad);
            }
        }
        for (field, value, allowed) in deferred {
            bad(field, value, allowed);
        }
        errors
    }
}

fn check_upload(prefix: &str, u: &UploadSection, bad: &mut impl FnMut(String, String, &str)) {
    check_schedule(&format!("{prefix}.schedule"), u.schedule.as_ref(), bad);
    if !valid_stream_name(&u.kvs_stream) {
        bad(
            format!("{prefix}.kvs_stream"),
            format!("{:?}", u.kvs_stream),
            "expected a KVS stream name: 1 to 256 of A-Z a-z 0-9 _ . -",
        );
    }
    let region_ok = !u.region.is_empty()
        && u.region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !region_ok {
        bad(
            format!("{prefix}.region"),
            format!("{:?}", u.region),
            "expected an AWS region such as \"us-west-2\"",
        );
    }
    if u.access_key_id.is_some() != u.secret_access_key.is_some() {
        bad(
            format!("{prefix}.access_key_id"),
            format!("{:?}", u.access_key_id.as_deref().unwrap_or("")),
            "expected access_key_id and secret_access_key together",
        );
    }
    if !(1..=100_000).contains(&u.max_mbps) {
        bad(
            format!("{prefix}.max_mbps"),
            u.max_mbps.to_string(),
            "expected 1 to 100000 megabits per second",
        );
    }
    if !(1..=1000).contains(&u.max_fragments_per_second) {
        bad(
            format!("{prefix}.max_fragments_per_second"),
            u.max_fragments_per_second.to_string(),
            "expected 1 to 1000",
        );
    }
    if !(10..=2700).contains(&u.rotate_seconds) {
        bad(
            format!("{prefix}.rotate_seconds"),
            u.rotate_seconds.to_string(),
            "expected 10 to 2700 (the service ends a connection at 45 minutes)",
        );
    }
    for (field, url) in [("endpoint", &u.endpoint), ("data_endpoint", &u.data_endpoint)] {
        if let Some(e) = url {
            if crate::kvs::tls::Origin::parse(e).is_err() {
                bad(
                    format!("{prefix}.{field}"),
                    format!("{e:?}"),
                    "expected http://HOST[:PORT] or https://HOST[:PORT], no path",
                );
            }
        }
    }
    let keys = u.access_key_id.is_some() || u.secret_access_key.is_some();
    match u.auth.as_str() {
        "sigv4" => {}
        "none" if keys || u.iot.is_some() => bad(
            format!("{prefix}.auth"),
            "\"none\"".into(),
            "unsigned uploads take no access_key_id, secret_access_key or [iot]",
        ),
        "none" => {}
        other => bad(
            format!("{prefix}.auth"),
            format!("{other:?}"),
            "expected \"sigv4\" or \"none\" (a gateway with [ingest] auth = \"none\")",
        ),
    }
    if keys && u.iot.is_some() {
        bad(
            format!("{prefix}.iot"),
            "[iot]".into(),
            "expected one credential source: static keys or [iot], not both",
        );
    }
    if let (Some(d), Some(_)) = (&u.data_endpoint, &u.create_stream) {
        bad(
            format!("{prefix}.create_stream"),
            format!("with data_endpoint = {d:?}"),
            "creating a stream needs the control plane: remove data_endpoint, or create the stream there",
        );
    }
    if let Some(c) = &u.create_stream {
        let p = format!("{prefix}.create_stream");
        if !(1..=87_600).contains(&c.retention_hours) {
            bad(
                format!("{p}.retention_hours"),
                c.retention_hours.to_string(),
                "expected 1 to 87600 hours (0 keeps nothing, and the service then sends no PERSISTED ACK)",
            );
        }
        if let Some(m) = &c.media_type {
            let ok = (1..=128).contains(&m.len())
                && m.split(',').all(|t| {
                    t.split_once('/').is_some_and(|(a, b)| {
                        let part = |x: &str| {
                            !x.is_empty() && x.bytes().all(|c| c.is_ascii_alphanumeric() || b"+-._".contains(&c))
                        };
                        part(a) && part(b)
                    })
                });
            if !ok {
                bad(
                    format!("{p}.media_type"),
                    format!("{m:?}"),
                    "expected type/subtype[,type/subtype], e.g. \"video/h264,audio/aac\"",
                );
            }
        }
        if let Some(k) = &c.kms_key_id {
            if !(1..=2048).contains(&k.len()) {
                bad(
                    format!("{p}.kms_key_id"),
                    format!("{k:?}"),
                    "expected 1 to 2048 characters",
                );
            }
        }
        if let Some(d) = &c.device_name {
            if !(1..=128).contains(&d.len()) {
                bad(
                    format!("{p}.device_name"),
                    format!("{d:?}"),
                    "expected 1 to 128 characters",
                );
            }
        }
        if c.tags.len() > 50 {
            bad(
                format!("{p}.tags"),
                format!("{} tags", c.tags.len()),
                "expected at most 50",
            );
        }
        for (k, v) in &c.tags {
            if !(1..=128).contains(&k.len()) || k.starts_with("aws:") || v.len() > 256 {
                bad(
                    format!("{p}.tags"),
                    format!("{k:?} = {v:?}"),
                    "expected keys of 1 to 128 characters not starting with \"aws:\", values of at most 256",
                );
            }
        }
    }
    if let Some(iot) = &u.iot {
        let p = format!("{prefix}.iot");
        let host = iot.endpoint.strip_prefix("https://").unwrap_or(&iot.endpoint);
        if crate::kvs::tls::Origin::parse(&format!("https://{host}")).is_err() {
            bad(
                format!("{p}.endpoint"),
                format!("{:?}", iot.endpoint),
                "expected the credentials endpoint's HOST[:PORT], e.g. \"c2abc.credentials.iot.us-west-2.amazonaws.com\"",
            );
        }
        for (field, value) in [("role_alias", &iot.role_alias), ("thing_name", &iot.thing_name)] {
            let ok = !value.is_empty()
                && value.len() <= 128
                && value
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"_-:=,.@".contains(&c));
            if !ok {
                bad(
                    format!("{p}.{field}"),
                    format!("{value:?}"),
                    "expected 1 to 128 of A-Z a-z 0-9 _ - : = , . @",
                );
            }
        }
        for (field, path) in [("cert", &iot.cert), ("key", &iot.key)] {
            if path.as_os_str().is_empty() {
                bad(format!("{p}.{field}"), "\"\"".into(), "expected a PEM file");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> String {
        Config::parse(text, Path::new("agent.toml")).unwrap_err().to_string()
    }

    #[test]
    fn the_example_file_is_valid_and_equals_the_defaults_it_documents() {
        // The running checkout's, not the one that built a cached binary.
        let path =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../agent.example.toml");
        let example = Config::load(&path).unwrap();
        assert_eq!(example.store, StoreSection::default());
        assert_eq!(example.http, HttpSection::default());
        assert_eq!(example.streams[0].fragment_seconds, 2);
        assert_eq!(example.streams[0].record_schedule, None, "absent = always");
    }

    #[test]
    fn the_example_schedules_are_valid_once_uncommented() {
        let path =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../agent.example.toml");
        let text = std::fs::read_to_string(path).unwrap();
        for (table, before) in [
            ("[streams.record_schedule]", ""),
            ("[streams.upload.schedule]", "[streams.upload]\nkvs_stream = \"a\"\n"),
        ] {
            let start = text.find(&format!("# {table}")).unwrap();
            // The table, cron and duration_seconds lines, without their
            // comments (continuation lines start with more spaces).
            let block: Vec<String> = text[start..]
                .lines()
                .filter_map(|l| l.strip_prefix("# ").filter(|l| !l.starts_with(' ')))
                .map(|l| l.split("  #").next().unwrap().trim().to_owned())
                .take(3)
                .collect();
            let c = Config::parse(
                &format!("[[streams]]\nname = \"a\"\n{before}{}\n", block.join("\n")),
                Path::new("example"),
            )
            .unwrap_or_else(|e| panic!("{table}: {e}"));
            let s = &c.streams[0];
            assert!(
                s.record_schedule.is_some() || s.upload.as_ref().is_some_and(|u| u.schedule.is_some()),
                "{block:?}"
            );
        }
    }

    #[test]
    fn an_empty_file_is_all_defaults() {
        let c = Config::parse("", Path::new("x")).unwrap();
        assert_eq!(c, Config::default());
        assert!(Config::embedded_default().check().is_empty());
    }

    #[test]
    fn each_bad_field_is_named_with_its_value_and_what_is_allowed() {
        let e = errors("[store]\non_full = \"PANIC\"\n");
        assert!(
            e.contains("store.on_full = \"PANIC\"") && e.contains("DENY_NEW_MEDIA"),
            "{e}"
        );
        let e = errors("[[streams]]\nname = \"a\"\n[streams.upload]\nkvs_stream = \"a\"\nrotate_seconds = 3600\n");
        assert!(
            e.contains("streams[0].upload.rotate_seconds = 3600: expected 10 to 2700"),
            "{e}"
        );
        let e = errors("[[streams]]\nname = \"a\"\n[streams.upload]\nkvs_stream = \"a\"\naccess_key_id = \"AK\"\n");
        assert!(
            e.contains(
                "streams[0].upload.access_key_id = \"AK\": expected access_key_id and secret_access_key together"
            ),
            "{e}"
        );
        let e = errors("[[streams]]\nname = \"a\"\n[streams.upload]\nkvs_stream = \"a\"\nmax_mbps = 0\nmax_fragments_per_second = 0\n");
        assert!(
            e.contains("streams[0].upload.max_mbps = 0: expected 1 to 100000"),
            "{e}"
        );
        assert!(
            e.contains("streams[0].upload.max_fragments_per_second = 0: expected 1 to 1000"),
            "{e}"
        );
        let e = errors("[ingest]\nenabled = true\n");
        assert!(e.contains("ingest.credentials = []: expected at least one"), "{e}");
        let e = errors("[ingest]\nauth = \"basic\"\n");
        assert!(
            e.contains("ingest.auth = \"basic\": expected \"sigv4\" or \"none\""),
            "{e}"
        );
        let e = errors("[store]\nlive_buffer_kb = 8\n");
        assert!(e.contains("store.live_buffer_kb = 8: expected 64 to 65536"), "{e}");
        let e = errors("[http]\nlisten = \"localhost\"\n");
        assert!(
            e.contains("http.listen = \"localhost\"") && e.contains("IP:PORT"),
            "{e}"
        );
        let e = errors("[[streams]]\nname = \"../x\"\nfragment_seconds = 30\nvideo = \"foo:bar\"\n");
        assert!(e.contains("streams[0].name = \"../x\""), "{e}");
        assert!(e.contains("streams[0].fragment_seconds = 30: expected 1 to 20"), "{e}");
        assert!(e.contains("streams[0].video = \"foo:bar\""), "{e}");
        let e = errors("[[streams]]\nname = \"a\"\n[[sensors]]\nname = \"a\"\nsource = \"lidar:x\"\n");
        assert!(e.contains("sensors[0].name = \"a\": expected a name no other"), "{e}");
        assert!(e.contains("sensors[0].source = \"lidar:x\""), "{e}");
        let e = errors("[[streams]]\nname = \"a\"\n[streams.upload]\nkvs_stream = \"a b\"\nregion = \"US WEST\"\n");
        assert!(
            e.contains("streams[0].upload.kvs_stream") && e.contains("streams[0].upload.region"),
            "{e}"
        );
    }

    #[test]
    fn upload_destinations_credentials_and_stream_creation_are_checked() {
        let up = |extra: &str| format!("[[streams]]\nname = \"a\"\n[streams.upload]\nkvs_stream = \"a\"\n{extra}");
        let e = errors(&up(
            "endpoint = \"http://gw:8080/putMedia\"\ndata_endpoint = \"gw:8080\"\nauth = \"basic\"\n",
        ));
        assert!(
            e.contains("streams[0].upload.endpoint = \"http://gw:8080/putMedia\": expected http://HOST[:PORT]"),
            "{e}"
        );
        assert!(e.contains("streams[0].upload.data_endpoint = \"gw:8080\""), "{e}");
        assert!(
            e.contains("streams[0].upload.auth = \"basic\": expected \"sigv4\" or \"none\""),
            "{e}"
        );
        let e = errors(&up(
            "auth = \"none\"\naccess_key_id = \"AK\"\nsecret_access_key = \"SK\"\n\
             data_endpoint = \"http://gw:80\"\n[streams.upload.create_stream]\nretention_hours = 0\n\
             media_type = \"h264\"\ntags = { \"aws:x\" = \"1\" }\n\
             [streams.upload.iot]\nendpoint = \"x/y\"\nrole_alias = \"a b\"\nthing_name = \"t\"\ncert = \"\"\nkey = \"k.pem\"\n",
        ));
        for expected in [
            "streams[0].upload.auth = \"none\": unsigned uploads take no",
            "streams[0].upload.iot = [iot]: expected one credential source",
            "streams[0].upload.create_stream = with data_endpoint = \"http://gw:80\": creating a stream needs the control plane",
            "streams[0].upload.create_stream.retention_hours = 0: expected 1 to 87600 hours",
            "streams[0].upload.create_stream.media_type = \"h264\": expected type/subtype",
            "streams[0].upload.create_stream.tags = \"aws:x\" = \"1\"",
            "streams[0].upload.iot.endpoint = \"x/y\"",
            "streams[0].upload.iot.role_alias = \"a b\"",
            "streams[0].upload.iot.cert = \"\": expected a PEM file",
        ] {
            assert!(e.contains(expected), "{expected} not in {e}");
        }
        let ok = Config::parse(
            &up(
                "endpoint = \"https://gw.example:8443\"\n[streams.upload.create_stream]\n\
                 media_type = \"video/h264,audio/aac\"\ntags = { site = \"a\" }\n\
                 [streams.upload.iot]\nendpoint = \"c2.credentials.iot.us-west-2.amazonaws.com\"\n\
                 role_alias = \"cam-role\"\nthing_name = \"cam-01\"\ncert = \"d.pem\"\nkey = \"d.key\"\n",
            ),
            Path::new("x"),
        )
        .unwrap();
        let u = ok.streams[0].upload.as_ref().unwrap();
        assert_eq!(u.create_stream.as_ref().unwrap().retention_hours, 24);
        assert_eq!(u.auth, "sigv4");
        assert_eq!(u.iot.as_ref().unwrap().ca, None);
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let e = errors("[store]\nmax_age = 3\n");
        assert!(e.contains("max_age"), "{e}");
        let e = errors("[store]\nmax_age_hours = \"a week\"\n");
        assert!(e.contains("max_age_hours"), "{e}");
    }

    #[test]
    fn schedules_are_checked_like_every_other_field() {
        let c = Config::parse(
            "[[streams]]\nname = \"a\"\n[streams.record_schedule]\ncron = \"0 0 8 ? * MON-FRI\"\nduration_seconds = 36000\n\
             [streams.upload]\nkvs_stream = \"a\"\n[streams.upload.schedule]\ncron = \"0 0/10 * * * ?\"\nduration_seconds = 60\n",
            Path::new("x"),
        )
        .unwrap();
        let s = &c.streams[0];
        assert_eq!(s.record_schedule.as_ref().unwrap().duration_seconds, 36000);
        assert_eq!(
            s.upload.as_ref().unwrap().schedule.as_ref().unwrap().cron,
            "0 0/10 * * * ?"
        );
        assert!(schedule_of(None).unwrap().is_open(std::time::SystemTime::now()));

        let e = errors(
            "[[streams]]\nname = \"a\"\n[streams.record_schedule]\ncron = \"0 0 25 * * ?\"\nduration_seconds = 0\n\
             [streams.upload]\nkvs_stream = \"a\"\n[streams.upload.schedule]\ncron = \"*/5 * * * *\"\nduration_seconds = 60\n",
        );
        assert!(
            e.contains("streams[0].record_schedule.cron = \"0 0 25 * * ?\": hours field \"25\""),
            "{e}"
        );
        assert!(
            e.contains("streams[0].upload.schedule.cron = \"*/5 * * * *\": 5 fields: a crontab line"),
            "{e}"
        );
        // The duration is checked only for a valid expression.
        let e = errors(
            "[[streams]]\nname = \"a\"\n[streams.record_schedule]\ncron = \"0 0 8 * * ?\"\nduration_seconds = 0\n",
        );
        assert!(
            e.contains("streams[0].record_schedule.duration_seconds = 0: expected 1 to 604800 seconds"),
            "{e}"
        );
        let e = errors("[[streams]]\nname = \"a\"\n[streams.record_schedule]\ncron = \"0 0 8 * * ?\"\n");
        assert!(e.contains("duration_seconds"), "{e}");
    }
}
