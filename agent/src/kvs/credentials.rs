//! Where an upload's AWS credentials come from (reference §9): static keys
//! from the config, the AWS IoT role-alias certificate provider, or
//! aws-config's default chain (environment, profile, container, IMDS).
//! Each is an [`ProvideCredentials`]: the control-plane client (the AWS
//! SDK) and the PutMedia signer ask the same one.
//!
//! Temporary credentials are cached and fetched again 5 minutes before they
//! expire ([`Cached`]); a failed refresh keeps the old ones while they are
//! still valid.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{future, ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tracing::{info, warn};

use super::tls::{self, Origin, TlsError};

/// Temporary credentials are fetched again this long before they expire.
pub const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// The IoT credentials endpoint: connect 3 s, the whole call 5 s (the
/// values the producer SDK uses, reference §2.3).
const IOT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const IOT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// `[streams.upload.iot]`: the device's certificate is exchanged for
/// temporary credentials of the role behind a role alias.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IotSpec {
    /// The account's credentials endpoint (`aws iot describe-endpoint
    /// --endpoint-type iot:CredentialProvider`), `HOST[:PORT]`.
    pub endpoint: String,
    /// The role alias.
    pub role_alias: String,
    /// The thing attached to the certificate (`x-amzn-iot-thingname`).
    pub thing_name: String,
    /// The device certificate, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
    /// CA certificates to trust for the endpoint, PEM; `None`: the system's.
    pub ca: Option<PathBuf>,
}

/// Which credentials an upload signs with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialSpec {
    /// Unsigned requests (a gateway with `[ingest] auth = "none"`).
    None,
    /// Keys from the config.
    Static {
        /// Access key id.
        access_key_id: String,
        /// Secret access key.
        secret_access_key: String,
    },
    /// The AWS IoT role-alias provider.
    Iot(IotSpec),
    /// aws-config's default chain: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`
    /// (+ `AWS_SESSION_TOKEN`), the shared profile files, web identity, the
    /// ECS container endpoint, EC2 IMDS.
    DefaultChain,
}

impl CredentialSpec {
    /// What `/api/streams` says of it (never a key).
    pub fn kind(&self) -> &'static str {
        match self {
            CredentialSpec::None => "none",
            CredentialSpec::Static { .. } => "static",
            CredentialSpec::Iot(_) => "iot-role-alias",
            CredentialSpec::DefaultChain => "default-chain",
        }
    }
}

/// Caches another provider's credentials until [`REFRESH_BEFORE`] their
/// expiry (credentials without one, static keys, forever).
#[derive(Debug)]
pub struct Cached<P> {
    inner: P,
    current: tokio::sync::Mutex<Option<Credentials>>,
    fetches: AtomicU64,
}

impl<P: ProvideCredentials> Cached<P> {
    /// Cache `inner`'s credentials.
    pub fn new(inner: P) -> Self {
        Cached {
            inner,
            current: tokio::sync::Mutex::new(None),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times the inner provider was asked.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        let fresh = |c: &Credentials| c.expiry().is_none_or(|e| e > now + REFRESH_BEFORE);
        if let Some(c) = current.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        self.fetches.fetch_add(1, Ordering::Relaxed);
        match self.inner.provide_credentials().await {
            Ok(c) => {
                *current = Some(c.clone());
                Ok(c)
            }
            // Still valid: use them and try again on the next call.
            Err(e) => match current.as_ref().filter(|c| c.expiry().is_some_and(|x| x > now)) {
                Some(c) => {
                    warn!(error = %e, "refreshing credentials failed; using the current ones until they expire");
                    Ok(c.clone())
                }
                None => Err(e),
            },
        }
    }
}

impl<P: ProvideCredentials> ProvideCredentials for Cached<P> {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.get())
    }
}

/// Why the IoT credentials endpoint gave no credentials.
#[derive(Debug, thiserror::Error)]
pub enum IotError {
    /// TLS setup or connection.
    #[error("IoT credentials endpoint: {0}")]
    Tls(#[from] TlsError),
    /// HTTP.
    #[error("IoT credentials endpoint: HTTP: {0}")]
    Http(#[from] hyper::Error),
    /// Not a 200.
    #[error("IoT credentials endpoint answered {0}: {1}")]
    Status(u16, String),
    /// Not the expected JSON.
    #[error("IoT credentials endpoint: unexpected answer: {0}")]
    Answer(String),
    /// Took too long.
    #[error("IoT credentials endpoint: no answer within {0:?}")]
    Timeout(Duration),
}

/// The AWS IoT role-alias provider without its cache: each call is one
/// mutual-TLS `GET https://{endpoint}/role-aliases/{alias}/credentials`.
/// Use [`iot_provider`] for the cached one.
pub struct IotRoleAlias {
    origin: Origin,
    role_alias: String,
    thing_name: String,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for IotRoleAlias {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IotRoleAlias")
            .field("endpoint", &self.origin.authority())
            .field("role_alias", &self.role_alias)
            .field("thing_name", &self.thing_name)
            .finish_non_exhaustive()
    }
}

impl IotRoleAlias {
    /// Reads the certificate, key and CA now, so a bad file is an error at
    /// start, not at the first upload.
    pub fn new(spec: &IotSpec) -> Result<Self, IotError> {
        let endpoint = spec.endpoint.strip_prefix("https://").unwrap_or(&spec.endpoint);
        let origin = Origin::parse(&format!("https://{endpoint}"))?;
        let chain = tls::certificates(&spec.cert)?;
        let key = tls::private_key(&spec.key)?;
        let roots = tls::roots(spec.ca.as_deref())?;
        let tls = tls::connector(roots, Some((chain, key)))?;
        Ok(IotRoleAlias {
            origin,
            role_alias: spec.role_alias.clone(),
            thing_name: spec.thing_name.clone(),
            tls,
        })
    }

    async fn fetch(&self) -> Result<Credentials, IotError> {
        let io = tls::connect(&self.origin, Some(&self.tls), IOT_CONNECT_TIMEOUT).await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
        let conn = tokio::spawn(conn);
        let req = hyper::Request::get(format!("/role-aliases/{}/credentials", self.role_alias))
            .header("host", self.origin.authority())
            .header("x-amzn-iot-thingname", &self.thing_name)
            .header("accept", "application/json")
            .body(Empty::<Bytes>::new())
            .map_err(|e| IotError::Answer(e.to_string()))?;
        let result = async {
            let response = sender.send_request(req).await?;
            let status = response.status().as_u16();
            let body = Limited::new(response.into_body(), 64 * 1024)
                .collect()
                .await
                .map_err(|e| IotError::Answer(format!("body: {e}")))?
                .to_bytes();
            if status != 200 {
                return Err(IotError::Status(status, String::from_utf8_lossy(&body).into_owned()));
            }
            parse_iot_credentials(&body)
        };
        let result = tokio::time::timeout(IOT_CALL_TIMEOUT, result)
            .await
            .unwrap_or(Err(IotError::Timeout(IOT_CALL_TIMEOUT)));
        conn.abort();
        result
    }
}

impl ProvideCredentials for IotRoleAlias {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let c = self.fetch().await.map_err(CredentialsError::provider_error)?;
            info!(
                endpoint = %self.origin.authority(),
                role_alias = %self.role_alias,
                expires = ?c.expiry().map(aws_smithy_types::DateTime::from),
                "credentials from the IoT role alias"
            );
            Ok(c)
        })
    }
}

/// `{"credentials":{"accessKeyId","secretAccessKey","sessionToken","expiration"}}`
/// (the four keys at the top level are accepted too, as the producer SDK
/// does).
pub fn parse_iot_credentials(body: &[u8]) -> Result<Credentials, IotError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| IotError::Answer(format!("not JSON: {e}")))?;
    let c = if v["credentials"].is_object() {
        &v["credentials"]
    } else {
        &v
    };
    let field = |k: &str| {
        c[k].as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| IotError::Answer(format!("no {k} in {}", redacted(c))))
    };
    let expiration = field("expiration")?;
    let expiry = aws_smithy_types::DateTime::from_str(expiration, aws_smithy_types::date_time::Format::DateTime)
        .ok()
        .and_then(|d| SystemTime::try_from(d).ok())
        .ok_or_else(|| IotError::Answer(format!("expiration {expiration:?}: expected an RFC 3339 time")))?;
    Ok(Credentials::new(
        field("accessKeyId")?,
        field("secretAccessKey")?,
        Some(field("sessionToken")?.to_owned()),
        Some(expiry),
        "IotRoleAlias",
    ))
}

/// The keys of a JSON object, for messages that must not print secrets.
fn redacted(v: &serde_json::Value) -> String {
    match v.as_object() {
        Some(m) => format!("an object with {:?}", m.keys().collect::<Vec<_>>()),
        None => "a JSON value that is not an object".into(),
    }
}

/// The IoT role-alias provider, cached.
pub fn iot_provider(spec: &IotSpec) -> Result<Cached<IotRoleAlias>, IotError> {
    Ok(Cached::new(IotRoleAlias::new(spec)?))
}

/// The provider for a spec that is not [`CredentialSpec::DefaultChain`]
/// (which needs aws-config's loader) nor [`CredentialSpec::None`].
pub fn provider(spec: &CredentialSpec) -> Result<Option<SharedCredentialsProvider>, IotError> {
    Ok(match spec {
        CredentialSpec::None | CredentialSpec::DefaultChain => None,
        CredentialSpec::Static {
            access_key_id,
            secret_access_key,
        } => Some(SharedCredentialsProvider::new(Credentials::new(
            access_key_id,
            secret_access_key,
            None,
            None,
            "EdgeAgentConfig",
        ))),
        CredentialSpec::Iot(iot) => Some(SharedCredentialsProvider::new(iot_provider(iot)?)),
    })
}

/// The name a provider gave its credentials (e.g. `Environment`,
/// `ProfileFile`, `Ec2InstanceMetadata`), for `/api/streams`: read from
/// their `Debug` text, which names the provider and redacts the secret.
pub fn provider_name(c: &Credentials) -> Option<String> {
    let text = format!("{c:?}");
    let rest = text.split_once("provider_name: \"")?.1;
    Some(rest.split_once('"')?.0.to_owned())
}

/// A provider shared by the control-plane client and the PutMedia signer.
pub type Shared = Arc<dyn ProvideCredentials>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    use tokio_rustls::rustls::{RootCertStore, ServerConfig};

    /// A CA, a server certificate for 127.0.0.1 and a device certificate,
    /// made now, written as PEM files.
    struct Pki {
        dir: tempfile::TempDir,
        ca: rcgen::Certificate,
        server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();
            let ca_key = rcgen::KeyPair::generate().unwrap();
            let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            ca_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "edge-agent test CA");
            let ca = ca_params.self_signed(&ca_key).unwrap();
            let issuer = rcgen::Issuer::new(ca_params, ca_key);
            let server_key = rcgen::KeyPair::generate().unwrap();
            let server = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
                .unwrap()
                .signed_by(&server_key, &issuer)
                .unwrap();
            let device_key = rcgen::KeyPair::generate().unwrap();
            let mut device_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            device_params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "thing-cam-01");
            let device = device_params.signed_by(&device_key, &issuer).unwrap();
            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            std::fs::write(dir.path().join("device.pem"), device.pem()).unwrap();
            std::fs::write(dir.path().join("device.key"), device_key.serialize_pem()).unwrap();
            Pki {
                ca,
                server: (
                    server.der().clone(),
                    PrivatePkcs8KeyDer::from(server_key.serialize_der()).into(),
                ),
                dir,
            }
        }

        fn spec(&self, addr: SocketAddr) -> IotSpec {
            IotSpec {
                endpoint: addr.to_string(),
                role_alias: "cam-uploader".into(),
                thing_name: "thing-cam-01".into(),
                cert: self.dir.path().join("device.pem"),
                key: self.dir.path().join("device.key"),
                ca: Some(self.dir.path().join("ca.pem")),
            }
        }
    }

    /// What the endpoint saw: each request's first line and thing name.
    type Requests = Arc<Mutex<Vec<(String, String)>>>;

    /// A credentials endpoint on 127.0.0.1 that requires a client
    /// certificate from `pki`'s CA and answers credentials valid for
    /// `lifetime`, numbered by request.
    async fn endpoint(pki: &Pki, lifetime: Duration) -> (SocketAddr, Requests, Arc<Mutex<Vec<String>>>) {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca.der().clone()).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![pki.server.0.clone()], pki.server.1.clone_key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests: Requests = Arc::default();
        let refused: Arc<Mutex<Vec<String>>> = Arc::default();
        let (seen, refusals) = (requests.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { return };
                let (acceptor, seen, refusals) = (acceptor.clone(), seen.clone(), refusals.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(tcp).await {
                        Ok(t) => t,
                        Err(e) => {
                            refusals.lock().unwrap().push(e.to_string());
                            return;
                        }
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let line = head.lines().next().unwrap_or("").to_owned();
                    let thing = head
                        .lines()
                        .find_map(|l| l.strip_prefix("x-amzn-iot-thingname: "))
                        .unwrap_or("")
                        .to_owned();
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push((line, thing));
                        s.len()
                    };
                    let expiry = aws_smithy_types::DateTime::from(SystemTime::now() + lifetime)
                        .fmt(aws_smithy_types::date_time::Format::DateTime)
                        .unwrap();
                    let body = format!(
                        r#"{{"credentials":{{"accessKeyId":"ASIATEST{n}","secretAccessKey":"secret{n}","sessionToken":"token{n}","expiration":"{expiry}"}}}}"#
                    );
                    let reply = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = tls.write_all(reply.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (addr, requests, refused)
    }

    #[tokio::test]
    async fn iot_role_alias_credentials_come_over_mutual_tls_and_are_refreshed_before_expiry() {
        let pki = Pki::new();
        // Valid 5 min 2 s: fresh for 2 s, then within the refresh margin.
        let (addr, requests, refused) = endpoint(&pki, REFRESH_BEFORE + Duration::from_secs(2)).await;
        let provider = iot_provider(&pki.spec(addr)).unwrap();

        let began = std::time::Instant::now();
        let first = provider.provide_credentials().await.unwrap();
        let first_call = began.elapsed();
        assert_eq!(first.access_key_id(), "ASIATEST1");
        assert_eq!(first.secret_access_key(), "secret1");
        assert_eq!(first.session_token(), Some("token1"));
        assert!(first.expiry().unwrap() > SystemTime::now() + REFRESH_BEFORE);
        assert_eq!(provider_name(&first).as_deref(), Some("IotRoleAlias"));
        {
            let r = requests.lock().unwrap();
            assert_eq!(r[0].0, "GET /role-aliases/cam-uploader/credentials HTTP/1.1");
            assert_eq!(r[0].1, "thing-cam-01");
        }
        // Cached while fresh.
        let again = provider.provide_credentials().await.unwrap();
        assert_eq!(again.access_key_id(), "ASIATEST1");
        assert_eq!((requests.lock().unwrap().len(), provider.fetches()), (1, 1));
        // Inside the 5-minute margin: fetched again.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let refreshed = provider.provide_credentials().await.unwrap();
        assert_eq!(refreshed.access_key_id(), "ASIATEST2");
        assert_eq!(refreshed.session_token(), Some("token2"));
        assert_eq!(requests.lock().unwrap().len(), 2);
        assert!(refused.lock().unwrap().is_empty(), "{:?}", refused.lock().unwrap());
        println!("IoT credentials: first fetch (TCP, mTLS, GET) {first_call:?}; refreshed 2.5 s later, inside the 5 min margin");
    }

    #[tokio::test]
    async fn the_iot_endpoint_refuses_a_client_without_the_device_certificate() {
        let pki = Pki::new();
        let (addr, requests, refused) = endpoint(&pki, Duration::from_secs(3600)).await;
        // The same CA trusted, no client certificate.
        let roots = tls::roots(Some(&pki.dir.path().join("ca.pem"))).unwrap();
        let bare = IotRoleAlias {
            origin: Origin::parse(&format!("https://{addr}")).unwrap(),
            role_alias: "cam-uploader".into(),
            thing_name: "thing-cam-01".into(),
            tls: tls::connector(roots, None).unwrap(),
        };
        let e = bare.provide_credentials().await.unwrap_err();
        assert!(requests.lock().unwrap().is_empty(), "no request may get through");
        // The server saw the handshake fail for want of a certificate.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while refused.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let why = refused.lock().unwrap().join("; ");
        assert!(
            why.to_lowercase().contains("certificate"),
            "server: {why}; client: {e:?}"
        );

        // A server this device does not trust (another CA) is refused too.
        let other = Pki::new();
        let mut spec = pki.spec(addr);
        spec.ca = other.spec(addr).ca;
        let e = iot_provider(&spec).unwrap().provide_credentials().await.unwrap_err();
        assert!(format!("{e:?}").contains("InvalidCertificate"), "{e:?}");

        // Files that are not what they claim are named at construction.
        let mut spec = pki.spec(addr);
        spec.key = pki.dir.path().join("ca.pem");
        let e = IotRoleAlias::new(&spec).unwrap_err().to_string();
        assert!(e.contains("ca.pem") && e.contains("private key"), "{e}");
    }

    #[test]
    fn iot_answers_are_read_with_their_expiry_and_without_printing_secrets() {
        let c = parse_iot_credentials(
            br#"{"credentials":{"accessKeyId":"ASIA1","secretAccessKey":"s","sessionToken":"t","expiration":"2024-01-01T12:00:00Z"}}"#,
        )
        .unwrap();
        assert_eq!(
            c.expiry().unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_110_400)
        );
        // The producer SDK accepts the keys without the wrapper too.
        assert!(parse_iot_credentials(
            br#"{"accessKeyId":"A","secretAccessKey":"s","sessionToken":"t","expiration":"2024-01-01T12:00:00Z"}"#
        )
        .is_ok());
        let e = parse_iot_credentials(br#"{"credentials":{"accessKeyId":"A","secretAccessKey":"TOPSECRET"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expiration") && !e.contains("TOPSECRET"), "{e}");
    }

    #[tokio::test]
    async fn static_keys_are_cached_forever_and_a_failed_refresh_keeps_valid_credentials() {
        let fixed = Cached::new(Credentials::new("AK", "SK", None, None, "test"));
        for _ in 0..3 {
            fixed.provide_credentials().await.unwrap();
        }
        assert_eq!(fixed.fetches(), 1);

        /// Valid for 4 minutes (inside the margin), then failing.
        #[derive(Debug, Default)]
        struct Flaky(AtomicU64);
        impl ProvideCredentials for Flaky {
            fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
            where
                Self: 'a,
            {
                let n = self.0.fetch_add(1, Ordering::Relaxed);
                future::ProvideCredentials::ready(if n == 0 {
                    Ok(Credentials::new(
                        "AK",
                        "SK",
                        Some("T".into()),
                        Some(SystemTime::now() + Duration::from_secs(240)),
                        "flaky",
                    ))
                } else {
                    Err(CredentialsError::provider_error("endpoint down"))
                })
            }
        }
        let flaky = Cached::new(Flaky::default());
        flaky.provide_credentials().await.unwrap();
        // Refresh due (4 min < 5 min margin) and failing: the old ones.
        assert_eq!(flaky.provide_credentials().await.unwrap().access_key_id(), "AK");
        assert_eq!(flaky.fetches(), 2);
    }
}
