//! The KVS control plane an upload needs before PutMedia (reference §1.2),
//! through AWS's own SDK (aws-sdk-kinesisvideo): DescribeStream;
//! CreateStream when the config asks for it and the stream does not exist,
//! then DescribeStream until it is ACTIVE; GetDataEndpoint for PUT_MEDIA,
//! cached 40 minutes (the producer SDK's endpoint cache) and forgotten when
//! a PutMedia connection to it fails.
//!
//! The client is made when an upload starts (`Upstream::new`), never on the
//! recording path.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::provider::SharedCredentialsProvider;
use aws_sdk_kinesisvideo::error::{DisplayErrorContext, SdkError};
use aws_sdk_kinesisvideo::types::{ApiName, Status};
use aws_smithy_types::timeout::TimeoutConfig;
use tracing::info;

/// GetDataEndpoint's answer is used this long (the producer SDK: 40 min;
/// AWS expects a call about every 45).
pub const ENDPOINT_TTL: Duration = Duration::from_secs(40 * 60);

/// A created stream has this long to become ACTIVE before the upload
/// reports it and tries again after its backoff.
const ACTIVE_WITHIN: Duration = Duration::from_secs(120);

/// `[streams.upload.create_stream]`: CreateStream's fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateStreamSpec {
    /// DataRetentionInHours (0: no persistence, and then no PERSISTED ACK).
    pub retention_hours: u32,
    /// MediaType, e.g. `video/h264,audio/aac`.
    pub media_type: Option<String>,
    /// KmsKeyId; `None`: the service's `aws/kinesisvideo` key.
    pub kms_key_id: Option<String>,
    /// DeviceName.
    pub device_name: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// Which stream, where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlPlaneSpec {
    /// The stream name at the service.
    pub kvs_stream: String,
    /// The region (signature scope and endpoint).
    pub region: String,
    /// Control-plane endpoint override (a gateway, moto); `None`:
    /// `https://kinesisvideo.{region}.amazonaws.com`.
    pub endpoint: Option<String>,
    /// Create the stream when it does not exist.
    pub create: Option<CreateStreamSpec>,
    /// How long a data endpoint is used ([`ENDPOINT_TTL`]).
    pub endpoint_ttl: Duration,
}

/// Why the control plane gave no endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// The stream does not exist and the config does not create it.
    #[error("stream {stream} does not exist in {region}; create it, or add [streams.upload.create_stream]")]
    NoStream {
        /// Stream name.
        stream: String,
        /// Region.
        region: String,
    },
    /// The stream stayed in another state.
    #[error("stream {stream} is {status}, not ACTIVE, after {waited:?}")]
    NotActive {
        /// Stream name.
        stream: String,
        /// Its last status.
        status: String,
        /// How long it was polled.
        waited: Duration,
    },
    /// A call failed (credentials, network, refusal).
    #[error("{call}: {message}")]
    Call {
        /// DescribeStream, CreateStream, GetDataEndpoint.
        call: &'static str,
        /// The SDK's error with its causes.
        message: String,
    },
}

fn call_error<E, R>(call: &'static str, e: SdkError<E, R>) -> ControlPlaneError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    ControlPlaneError::Call {
        call,
        message: DisplayErrorContext(&e).to_string(),
    }
}

/// Calls made, for tests and `/api/streams`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    /// DescribeStream.
    pub describe: u64,
    /// CreateStream.
    pub create: u64,
    /// GetDataEndpoint.
    pub get_data_endpoint: u64,
}

/// What DescribeStream said of the stream once it was ACTIVE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamReady {
    /// StreamARN.
    pub arn: String,
    /// DataRetentionInHours.
    pub retention_hours: i32,
    /// MediaType.
    pub media_type: Option<String>,
    /// KmsKeyId.
    pub kms_key_id: Option<String>,
    /// Whether this client created it.
    pub created: bool,
}

/// One stream's control plane.
#[derive(Debug)]
pub struct ControlPlane {
    client: aws_sdk_kinesisvideo::Client,
    spec: ControlPlaneSpec,
    /// The stream was seen ACTIVE: no DescribeStream before each endpoint.
    ready: AtomicBool,
    /// DescribeStream said DataRetentionInHours 0: the service sends no
    /// PERSISTED, so RECEIVED is the last word on a fragment.
    no_retention: AtomicBool,
    endpoint: Mutex<Option<(String, Instant)>>,
    describe: AtomicU64,
    create: AtomicU64,
    get_data_endpoint: AtomicU64,
}

/// The AWS SDK's configuration for uploads in `region`: its HTTPS client
/// (rustls with ring), timeouts for a dead network (connect 3.1 s, an
/// attempt 10 s), and `credentials`, or aws-config's default chain (env,
/// profile, web identity, container, IMDS) when `None`.
pub async fn sdk_config(region: &str, credentials: Option<SharedCredentialsProvider>) -> SdkConfig {
    use aws_smithy_http_client::tls::{rustls_provider::CryptoMode, Provider};
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .http_client(http)
        // One retry here; the uploader retries with its own backoff.
        .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_millis(3100))
                .operation_attempt_timeout(Duration::from_secs(10))
                .build(),
        );
    if let Some(c) = credentials {
        loader = loader.credentials_provider(c);
    }
    loader.load().await
}

impl ControlPlane {
    /// A client for `spec` with `sdk`'s credentials and HTTP client.
    pub fn new(spec: ControlPlaneSpec, sdk: &SdkConfig) -> Self {
        let mut config = aws_sdk_kinesisvideo::config::Builder::from(sdk);
        if let Some(e) = &spec.endpoint {
            config = config.endpoint_url(e.trim_end_matches('/'));
        }
        ControlPlane {
            client: aws_sdk_kinesisvideo::Client::from_conf(config.build()),
            spec,
            ready: AtomicBool::new(false),
            no_retention: AtomicBool::new(false),
            endpoint: Mutex::new(None),
            describe: AtomicU64::new(0),
            create: AtomicU64::new(0),
            get_data_endpoint: AtomicU64::new(0),
        }
    }

    /// Calls made so far.
    pub fn calls(&self) -> Calls {
        Calls {
            describe: self.describe.load(Ordering::Relaxed),
            create: self.create.load(Ordering::Relaxed),
            get_data_endpoint: self.get_data_endpoint.load(Ordering::Relaxed),
        }
    }

    /// DescribeStream; `None` when it does not exist.
    async fn describe(&self) -> Result<Option<aws_sdk_kinesisvideo::types::StreamInfo>, ControlPlaneError> {
        self.describe.fetch_add(1, Ordering::Relaxed);
        match self
            .client
            .describe_stream()
            .stream_name(&self.spec.kvs_stream)
            .send()
            .await
        {
            Ok(out) => Ok(out.stream_info),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(call_error("DescribeStream", e)),
        }
    }

    /// The stream, ACTIVE: described, created first when it does not exist
    /// and the spec says to, then described until ACTIVE.
    pub async fn ensure_stream(&self) -> Result<StreamReady, ControlPlaneError> {
        let stream = &self.spec.kvs_stream;
        let mut created = false;
        let mut info = self.describe().await?;
        if info.is_none() {
            let Some(c) = &self.spec.create else {
                return Err(ControlPlaneError::NoStream {
                    stream: stream.clone(),
                    region: self.spec.region.clone(),
                });
            };
            self.create.fetch_add(1, Ordering::Relaxed);
            let tags = (!c.tags.is_empty()).then(|| c.tags.clone().into_iter().collect());
            match self
                .client
                .create_stream()
                .stream_name(stream)
                .data_retention_in_hours(i32::try_from(c.retention_hours).unwrap_or(i32::MAX))
                .set_media_type(c.media_type.clone())
                .set_kms_key_id(c.kms_key_id.clone())
                .set_device_name(c.device_name.clone())
                .set_tags(tags)
                .send()
                .await
            {
                Ok(out) => {
                    created = true;
                    info!(stream, arn = ?out.stream_arn, retention_hours = c.retention_hours, "KVS stream created");
                }
                // Made meanwhile by another producer: describe it.
                Err(e) if e.as_service_error().is_some_and(|s| s.is_resource_in_use_exception()) => {}
                Err(e) => return Err(call_error("CreateStream", e)),
            }
            info = self.describe().await?;
        }
        // CreateStream is asynchronous: poll until ACTIVE.
        let began = Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let status = info.as_ref().and_then(|i| i.status().cloned());
            match (&info, status) {
                (Some(i), Some(Status::Active)) => {
                    self.no_retention
                        .store(i.data_retention_in_hours().unwrap_or(0) == 0, Ordering::SeqCst);
                    self.ready.store(true, Ordering::SeqCst);
                    return Ok(StreamReady {
                        arn: i.stream_arn().unwrap_or_default().to_owned(),
                        retention_hours: i.data_retention_in_hours().unwrap_or(0),
                        media_type: i.media_type().map(str::to_owned),
                        kms_key_id: i.kms_key_id().map(str::to_owned),
                        created,
                    });
                }
                (_, status) if began.elapsed() >= ACTIVE_WITHIN => {
                    return Err(ControlPlaneError::NotActive {
                        stream: stream.clone(),
                        status: status.map_or_else(|| "absent".into(), |s| s.as_str().to_owned()),
                        waited: began.elapsed(),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(5));
            info = self.describe().await?;
        }
    }

    /// The PutMedia endpoint (`http[s]://HOST[:PORT]`, no path): the cached
    /// one while younger than the TTL, else GetDataEndpoint (after making
    /// sure of the stream, the first time).
    pub async fn put_media_endpoint(&self) -> Result<String, ControlPlaneError> {
        if let Some((url, at)) = self.endpoint.lock().ok().and_then(|e| e.clone()) {
            if at.elapsed() < self.spec.endpoint_ttl {
                return Ok(url);
            }
        }
        if !self.ready.load(Ordering::SeqCst) {
            self.ensure_stream().await?;
        }
        self.get_data_endpoint.fetch_add(1, Ordering::Relaxed);
        let out = self
            .client
            .get_data_endpoint()
            .stream_name(&self.spec.kvs_stream)
            .api_name(ApiName::PutMedia)
            .send()
            .await
            .map_err(|e| call_error("GetDataEndpoint", e))?;
        let url = out
            .data_endpoint
            .filter(|u| !u.is_empty())
            .ok_or_else(|| ControlPlaneError::Call {
                call: "GetDataEndpoint",
                message: "the answer has no DataEndpoint".into(),
            })?
            .trim_end_matches('/')
            .to_owned();
        if let Ok(mut e) = self.endpoint.lock() {
            *e = Some((url.clone(), Instant::now()));
        }
        Ok(url)
    }

    /// The stream keeps nothing at the service (retention 0): no PERSISTED
    /// will come, RECEIVED is final.
    pub fn received_is_final(&self) -> bool {
        self.no_retention.load(Ordering::SeqCst)
    }

    /// Forget the cached endpoint (a PutMedia connection to it failed);
    /// with `stream_gone`, describe the stream again too (PutMedia said
    /// it does not exist).
    pub fn invalidate(&self, stream_gone: bool) {
        if let Ok(mut e) = self.endpoint.lock() {
            *e = None;
        }
        if stream_gone {
            self.ready.store(false, Ordering::SeqCst);
        }
    }
}
