//! TLS for the connections the uploader makes itself: PutMedia to an
//! `https://` data endpoint and the AWS IoT credentials endpoint (mutual
//! TLS with the device certificate). rustls with ring, the crypto the
//! process already links for WebRTC and that the AWS SDK's HTTPS client is
//! built with here, so there is one TLS stack.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

/// A TLS setup problem or a connection that failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate, key or CA file that cannot be used.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the configuration (a key that does not match, say).
    #[error("TLS configuration: {0}")]
    Config(String),
    /// A URL this client cannot connect to.
    #[error("{0}")]
    Url(String),
    /// Connecting or the handshake failed.
    #[error("{0}: {1}")]
    Connect(String, std::io::Error),
    /// Connecting or the handshake took too long.
    #[error("{0}: not connected within {1:?}")]
    Timeout(String, Duration),
}

/// Where an HTTP(S) request goes: scheme, host and port of a URL without a
/// path (a data endpoint, a control-plane endpoint).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    /// `https://`.
    pub tls: bool,
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    /// TCP port (443 or 80 when the URL gives none).
    pub port: u16,
}

impl Origin {
    /// `http[s]://HOST[:PORT][/]`.
    pub fn parse(url: &str) -> Result<Origin, TlsError> {
        let bad = |why: &str| TlsError::Url(format!("{url:?}: {why}"));
        let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else {
            return Err(bad("expected http:// or https://"));
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('?') || rest.contains('@') {
            return Err(bad("expected no path, query or user"));
        }
        let (host, port) = Self::split_authority(rest).ok_or_else(|| bad("expected HOST or HOST:PORT"))?;
        Ok(Origin {
            tls,
            host,
            port: port.unwrap_or(if tls { 443 } else { 80 }),
        })
    }

    /// `HOST[:PORT]`, IPv6 in brackets.
    pub(crate) fn split_authority(a: &str) -> Option<(String, Option<u16>)> {
        let (host, port) = if let Some(r) = a.strip_prefix('[') {
            let (h, after) = r.split_once(']')?;
            match after.strip_prefix(':') {
                Some(p) => (h, Some(p)),
                None if after.is_empty() => (h, None),
                None => return None,
            }
        } else {
            match a.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (a, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(p) => Some(p.parse().ok().filter(|&p: &u16| p != 0)?),
            None => None,
        };
        Some((host.to_owned(), port))
    }

    /// The Host header: the port only when it is not the scheme's default.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `http[s]://AUTHORITY`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.authority())
    }
}

/// A connected byte stream, plain or TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Connect to `origin` within `timeout` (TCP and handshake together), with
/// TCP_NODELAY; `tls` must be given for an `https://` origin.
pub async fn connect(origin: &Origin, tls: Option<&TlsConnector>, timeout: Duration) -> Result<Box<dyn Io>, TlsError> {
    let name = origin.authority();
    let work = async {
        let tcp = TcpStream::connect((origin.host.as_str(), origin.port))
            .await
            .map_err(|e| TlsError::Connect(name.clone(), e))?;
        tcp.set_nodelay(true).ok();
        if !origin.tls {
            return Ok(Box::new(tcp) as Box<dyn Io>);
        }
        let tls = tls.ok_or_else(|| TlsError::Url(format!("{}: no TLS client configured", origin.url())))?;
        let server = server_name(&origin.host)?;
        let stream = tls
            .connect(server, tcp)
            .await
            .map_err(|e| TlsError::Connect(name.clone(), e))?;
        Ok(Box::new(stream) as Box<dyn Io>)
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(TlsError::Timeout(name.clone(), timeout)))
}

/// The name the server's certificate must carry: a DNS name or an IP.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_owned()).map_err(|e| TlsError::Url(format!("{host:?}: not a host name: {e}")))
}

/// The system's trusted roots (`/etc/ssl/certs`, or `SSL_CERT_FILE` /
/// `SSL_CERT_DIR`), read once per process.
fn native_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "a system CA certificate could not be read");
            }
            let mut roots = RootCertStore::empty();
            let (added, ignored) = roots.add_parsable_certificates(found.certs);
            if ignored > 0 || added == 0 {
                tracing::warn!(added, ignored, "system CA certificates");
            }
            Arc::new(roots)
        })
        .clone()
}

/// Roots from a PEM file (`ca`), else the system's.
pub fn roots(ca: Option<&Path>) -> Result<Arc<RootCertStore>, TlsError> {
    let Some(path) = ca else { return Ok(native_roots()) };
    let mut roots = RootCertStore::empty();
    for cert in certificates(path)? {
        roots.add(cert).map_err(|e| TlsError::File {
            path: path.display().to_string(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok(Arc::new(roots))
}

/// Every certificate in a PEM file (at least one).
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let file_error = |message: String| TlsError::File {
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(format!("cannot read: {e}")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(format!("not PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error("expected a PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::File {
        path: path.display().to_string(),
        message: format!("expected a PEM private key: {e}"),
    })
}

/// A client with these roots and, for mutual TLS, a certificate chain and
/// its key.
pub fn connector(
    roots: Arc<RootCertStore>,
    client: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<TlsConnector, TlsError> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError::Config(format!("the client certificate and key: {e}")))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_with_default_ports_and_give_back_their_host_header() {
        let o = Origin::parse("https://s-1a2b.kinesisvideo.us-west-2.amazonaws.com").unwrap();
        assert_eq!((o.tls, o.port), (true, 443));
        assert_eq!(o.authority(), "s-1a2b.kinesisvideo.us-west-2.amazonaws.com");
        let o = Origin::parse("http://127.0.0.1:8080/").unwrap();
        assert_eq!((o.tls, o.host.as_str(), o.port), (false, "127.0.0.1", 8080));
        assert_eq!(o.url(), "http://127.0.0.1:8080");
        let o = Origin::parse("https://[::1]:4443").unwrap();
        assert_eq!((o.host.as_str(), o.authority()), ("::1", "[::1]:4443".to_owned()));
        for bad in [
            "ftp://x",
            "http://",
            "http://h:0",
            "http://h:99999",
            "http://h/putMedia",
            "h:80",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
