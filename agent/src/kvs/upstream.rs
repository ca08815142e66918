//! Where one stream's upload goes and how it signs: the PutMedia endpoint
//! (from the control plane, or fixed by the config), the credentials, and
//! the TLS client for an `https://` endpoint. Made by the uploader when it
//! starts, so a process that only records never builds any of it.

use std::sync::OnceLock;

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio_rustls::TlsConnector;

use super::control_plane::{self, ControlPlane, ControlPlaneSpec, CreateStreamSpec};
use super::credentials::{self, Cached, CredentialSpec};
use super::tls;

/// An upload's destination and credentials, as configured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpstreamSpec {
    /// AWS region.
    pub region: String,
    /// Control-plane endpoint override (a gateway, moto); `None`: AWS.
    pub endpoint: Option<String>,
    /// PutMedia straight to this endpoint, with no control-plane call.
    pub data_endpoint: Option<String>,
    /// Create the stream when it does not exist.
    pub create: Option<CreateStreamSpec>,
    /// Which credentials sign.
    pub credentials: CredentialSpec,
}

impl UpstreamSpec {
    /// Where the upload talks to first, for `/api/streams` and messages:
    /// the fixed data endpoint, else the control plane (override or AWS).
    pub fn endpoint_text(&self) -> String {
        match (&self.data_endpoint, &self.endpoint) {
            (Some(d), _) => d.clone(),
            (None, Some(e)) => e.clone(),
            (None, None) => format!("https://kinesisvideo.{}.amazonaws.com", self.region),
        }
    }
}

/// The PutMedia endpoint's source.
#[derive(Debug)]
enum Endpoints {
    ControlPlane(Box<ControlPlane>),
    Fixed(String),
}

/// A started upload's destination.
pub struct Upstream {
    endpoints: Endpoints,
    credentials: Option<SharedCredentialsProvider>,
    kind: &'static str,
    region: String,
    control_plane_url: String,
    tls: OnceLock<Result<TlsConnector, String>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("endpoints", &self.endpoints)
            .field("credentials", &self.kind)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Build the credentials provider and, unless a data endpoint is fixed,
    /// the control-plane client. Reads certificate files now; makes no
    /// network call.
    pub async fn new(kvs_stream: &str, spec: &UpstreamSpec) -> Result<Upstream, String> {
        let mut signing = credentials::provider(&spec.credentials).map_err(|e| e.to_string())?;
        let needs_sdk = spec.data_endpoint.is_none() || spec.credentials == CredentialSpec::DefaultChain;
        let endpoints = if needs_sdk {
            // Unsigned uploads still sign control-plane calls (the SDK
            // always does): with placeholder keys a no-auth gateway ignores.
            let sdk_credentials = match &spec.credentials {
                CredentialSpec::None => Some(SharedCredentialsProvider::new(Credentials::new(
                    "anonymous",
                    "anonymous",
                    None,
                    None,
                    "EdgeAgentUnsigned",
                ))),
                _ => signing.clone(),
            };
            let mut sdk = control_plane::sdk_config(&spec.region, sdk_credentials).await;
            if spec.credentials == CredentialSpec::DefaultChain {
                // One cache for the SDK and the PutMedia signer.
                let chain = sdk
                    .credentials_provider()
                    .ok_or("aws-config built no default credentials chain")?;
                let shared = SharedCredentialsProvider::new(Cached::new(chain));
                sdk = sdk.to_builder().credentials_provider(shared.clone()).build();
                signing = Some(shared);
            }
            match &spec.data_endpoint {
                Some(url) => Endpoints::Fixed(url.clone()),
                None => Endpoints::ControlPlane(Box::new(ControlPlane::new(
                    ControlPlaneSpec {
                        kvs_stream: kvs_stream.to_owned(),
                        region: spec.region.clone(),
                        endpoint: spec.endpoint.clone(),
                        create: spec.create.clone(),
                        endpoint_ttl: control_plane::ENDPOINT_TTL,
                    },
                    &sdk,
                ))),
            }
        } else {
            Endpoints::Fixed(spec.data_endpoint.clone().unwrap_or_default())
        };
        Ok(Upstream {
            endpoints,
            credentials: signing,
            kind: spec.credentials.kind(),
            region: spec.region.clone(),
            control_plane_url: spec.endpoint_text(),
            tls: OnceLock::new(),
        })
    }

    /// The PutMedia endpoint, `http[s]://HOST[:PORT]`.
    pub async fn put_media_endpoint(&self) -> Result<String, String> {
        match &self.endpoints {
            Endpoints::Fixed(url) => Ok(url.trim_end_matches('/').to_owned()),
            Endpoints::ControlPlane(c) => c
                .put_media_endpoint()
                .await
                .map_err(|e| format!("control plane {}: {e}", self.control_plane_url)),
        }
    }

    /// A PutMedia connection failed before the service accepted it: ask
    /// for the endpoint again next time (and describe the stream again
    /// when the service said it does not exist).
    pub fn connection_failed(&self, stream_gone: bool) {
        if let Endpoints::ControlPlane(c) = &self.endpoints {
            c.invalidate(stream_gone);
        }
    }

    /// Whether RECEIVED is a fragment's last ACK: a stream described with
    /// DataRetentionInHours 0 gets no PERSISTED (reference §1.2).
    pub fn received_is_final(&self) -> bool {
        match &self.endpoints {
            Endpoints::ControlPlane(c) => c.received_is_final(),
            Endpoints::Fixed(_) => false,
        }
    }

    /// The control plane's calls so far (none with a fixed data endpoint).
    pub fn calls(&self) -> control_plane::Calls {
        match &self.endpoints {
            Endpoints::ControlPlane(c) => c.calls(),
            Endpoints::Fixed(_) => control_plane::Calls::default(),
        }
    }

    /// The credentials to sign the next connection with; `None`: unsigned.
    pub async fn credentials(&self) -> Result<Option<Credentials>, String> {
        match &self.credentials {
            None => Ok(None),
            Some(p) => p.provide_credentials().await.map(Some).map_err(|e| {
                format!(
                    "{} credentials: {}",
                    self.kind,
                    aws_sdk_kinesisvideo::error::DisplayErrorContext(&e)
                )
            }),
        }
    }

    /// Where the credentials come from: `none`, `static`,
    /// `iot-role-alias`, `default-chain`.
    pub fn credential_kind(&self) -> &'static str {
        self.kind
    }

    /// The region signatures are scoped to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The TLS client for `https://` data endpoints (the system's roots),
    /// made on first use.
    pub fn tls(&self) -> Result<&TlsConnector, String> {
        self.tls
            .get_or_init(|| {
                tls::roots(None)
                    .and_then(|roots| tls::connector(roots, None))
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}
