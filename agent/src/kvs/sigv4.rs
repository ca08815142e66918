//! SigV4 verification for the gateway (reference §3): the signature a
//! producer sent, recomputed from exactly the headers it says it signed,
//! with the secret of the access key it names. Header authorization (the
//! C/C++ SDKs, kvssink) and query-string presigning (Go clients) both.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hyper::HeaderMap;
use ring::{digest, hmac};

/// SHA-256 of the empty string: PutMedia's payload hash (the body streams).
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// How far a request's date may be from ours.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// An access key the gateway accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
}

/// Why a request is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SigV4Error {
    /// Neither an Authorization header nor presigned query parameters.
    #[error("the request is not signed (no Authorization header, no X-Amz-Signature)")]
    Unsigned,
    /// The signature's fields could not be read.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// An access key the gateway does not know.
    #[error("unknown access key {0}")]
    UnknownKey(String),
    /// Signed for another service.
    #[error("signed for service {0:?}, expected \"kinesisvideo\"")]
    Service(String),
    /// Too far from the gateway's clock, or a presigned URL past its expiry.
    #[error("request time {0} is outside the accepted window")]
    Time(String),
    /// The signature does not match.
    #[error("the signature does not match the request")]
    Mismatch,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lower-case hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// AWS's URI encoding: unreserved characters kept, the rest `%XX`.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `YYYYMMDDTHHMMSSZ` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d, h, mi, se) = (n(0..4)?, n(4..6)?, n(6..8)?, n(9..11)?, n(11..13)?, n(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
    let era = y2.div_euclid(400);
    let yoe = y2 - era * 400;
    let doy = (153 * m2 + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + h * 3600 + mi * 60 + se;
    u64::try_from(secs).ok().map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// The parts of a signature, wherever they came from.
struct Signed {
    key: String,
    date: String,
    region: String,
    service: String,
    amz_date: String,
    signed_headers: Vec<String>,
    signature: String,
    /// Presigned: its validity, and the query without X-Amz-Signature.
    expires: Option<u64>,
}

fn credential_parts(credential: &str) -> Result<(String, String, String, String), SigV4Error> {
    let parts: Vec<&str> = credential.split('/').collect();
    match parts.as_slice() {
        [key, date, region, service, "aws4_request"] => {
            Ok(((*key).into(), (*date).into(), (*region).into(), (*service).into()))
        }
        _ => Err(SigV4Error::Malformed(format!("Credential {credential:?}"))),
    }
}

fn from_header(auth: &str, headers: &HeaderMap) -> Result<Signed, SigV4Error> {
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256")
        .ok_or_else(|| SigV4Error::Malformed("expected the AWS4-HMAC-SHA256 algorithm".into()))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            fields.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    let get = |k: &str| {
        fields
            .get(k)
            .cloned()
            .ok_or_else(|| SigV4Error::Malformed(format!("Authorization lacks {k}")))
    };
    let (key, date, region, service) = credential_parts(&get("Credential")?)?;
    let amz_date = headers
        .get("x-amz-date")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| SigV4Error::Malformed("no x-amz-date header".into()))?
        .to_owned();
    Ok(Signed {
        key,
        date,
        region,
        service,
        amz_date,
        signed_headers: get("SignedHeaders")?.split(';').map(str::to_owned).collect(),
        signature: get("Signature")?,
        expires: None,
    })
}

/// Verify a request. `payload_hash`: hex SHA-256 of the body, or
/// [`EMPTY_SHA256`] for PutMedia. Returns the access key that signed it.
pub fn verify(
    method: &str,
    path: &str,
    query: Option<&str>,
    headers: &HeaderMap,
    payload_hash: &str,
    credentials: &[Credential],
    now: SystemTime,
) -> Result<String, SigV4Error> {
    // Percent-decoded, `+` kept (it is not a space in SigV4).
    let mut params = playback::http::query::pairs(query);
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let signed = if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        from_header(auth, headers)?
    } else if let Some(signature) = param("X-Amz-Signature") {
        let need = |k: &str| param(k).ok_or_else(|| SigV4Error::Malformed(format!("no {k} in the query")));
        if need("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256" {
            return Err(SigV4Error::Malformed("expected the AWS4-HMAC-SHA256 algorithm".into()));
        }
        let (key, date, region, service) = credential_parts(&need("X-Amz-Credential")?)?;
        let expires = need("X-Amz-Expires")?
            .parse::<u64>()
            .map_err(|_| SigV4Error::Malformed("X-Amz-Expires is not a number".into()))?;
        let s = Signed {
            key,
            date,
            region,
            service,
            amz_date: need("X-Amz-Date")?,
            signed_headers: need("X-Amz-SignedHeaders")?.split(';').map(str::to_owned).collect(),
            signature,
            expires: Some(expires.clamp(1, 604_800)),
        };
        params.retain(|(k, _)| k != "X-Amz-Signature");
        s
    } else {
        return Err(SigV4Error::Unsigned);
    };
    if signed.service != "kinesisvideo" {
        return Err(SigV4Error::Service(signed.service));
    }
    let secret = credentials
        .iter()
        .find(|c| c.access_key_id == signed.key)
        .map(|c| c.secret_access_key.clone())
        .ok_or_else(|| SigV4Error::UnknownKey(signed.key.clone()))?;
    let when =
        parse_amz_date(&signed.amz_date).ok_or_else(|| SigV4Error::Malformed(format!("date {:?}", signed.amz_date)))?;
    if !signed.amz_date.starts_with(&signed.date) {
        return Err(SigV4Error::Malformed(
            "the credential scope's date is not the request's".into(),
        ));
    }
    let (early, late) = match signed.expires {
        Some(e) => (when.checked_sub(MAX_SKEW), when + Duration::from_secs(e)),
        None => (when.checked_sub(MAX_SKEW), when + MAX_SKEW),
    };
    if early.is_some_and(|e| now < e) || now > late {
        return Err(SigV4Error::Time(signed.amz_date.clone()));
    }

    // The canonical request, from exactly the signed headers.
    let mut canonical = format!(
        "{method}\n{}\n",
        path.split('/').map(encode).collect::<Vec<_>>().join("/")
    );
    let mut q: Vec<(String, String)> = params.iter().map(|(k, v)| (encode(k), encode(v))).collect();
    q.sort();
    canonical.push_str(&q.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"));
    canonical.push('\n');
    for name in &signed.signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(SigV4Error::Malformed(format!("signed header {name} is missing")));
        }
        canonical.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    canonical.push('\n');
    canonical.push_str(&signed.signed_headers.join(";"));
    canonical.push('\n');
    canonical.push_str(payload_hash);

    let scope = format!("{}/{}/{}/aws4_request", signed.date, signed.region, signed.service);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
        signed.amz_date,
        sha256_hex(canonical.as_bytes())
    );
    let mut key = hmac(format!("AWS4{secret}").as_bytes(), signed.date.as_bytes());
    for part in [signed.region.as_str(), signed.service.as_str(), "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let expected = hex(&hmac(&key, to_sign.as_bytes()));
    // Constant time: the signature is a secret-derived value.
    let (a, b) = (expected.as_bytes(), signed.signature.as_bytes());
    if a.len() != b.len() || a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) != 0 {
        return Err(SigV4Error::Mismatch);
    }
    Ok(signed.key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse() {
        let t = parse_amz_date("20150830T123600Z").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 1_440_938_160);
        assert!(parse_amz_date("2015-08-30T12:36:00Z").is_none());
        assert!(parse_amz_date("20151330T123600Z").is_none());
    }

    #[test]
    fn encoding_is_aws_uri_encoding() {
        assert_eq!(encode("a b/c~d"), "a%20b%2Fc~d");
        let p = playback::http::query::pairs(Some("a=b%20c&d=1+2"));
        assert_eq!(p, [("a".into(), "b c".into()), ("d".into(), "1+2".into())]);
    }

    #[test]
    fn the_empty_hash_is_sha256_of_nothing() {
        assert_eq!(sha256_hex(b""), EMPTY_SHA256);
    }

    fn creds() -> Vec<Credential> {
        vec![Credential {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }]
    }

    fn putmedia_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "127.0.0.1:8080"),
            ("user-agent", "kvssink/1.0"),
            ("transfer-encoding", "chunked"),
            ("connection", "keep-alive"),
            ("x-amzn-stream-name", "cam1"),
            ("x-amzn-fragment-timecode-type", "ABSOLUTE"),
            ("x-amzn-producer-start-timestamp", "1795710879.5"),
            ("x-amzn-fragment-acknowledgment-required", "1"),
        ]
    }

    /// Signs with AWS's own Rust signer (the judge), returns the headers and
    /// the query it produced.
    fn aws_sign(headers: &[(&str, &str)], presign: bool, at: SystemTime, secret: &str) -> (HeaderMap, Option<String>) {
        use aws_sigv4::http_request::{sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings};
        let identity = aws_credential_types::Credentials::new("AKIDEXAMPLE", secret, None, None, "test").into();
        let mut settings = SigningSettings::default();
        if presign {
            settings.signature_location = SignatureLocation::QueryParams;
            settings.expires_in = Some(Duration::from_secs(300));
        }
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region("us-west-2")
            .name("kinesisvideo")
            .time(at)
            .settings(settings)
            .build()
            .unwrap()
            .into();
        let signable = SignableRequest::new(
            "POST",
            "http://127.0.0.1:8080/putMedia",
            headers.iter().copied(),
            SignableBody::Precomputed(EMPTY_SHA256.into()),
        )
        .unwrap();
        let (instructions, _) = sign(signable, &params).unwrap().into_parts();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        for (k, v) in instructions.headers() {
            map.insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let query: Vec<String> = instructions
            .params()
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        (map, (!query.is_empty()).then(|| query.join("&")))
    }

    #[test]
    fn requests_signed_by_aws_sigv4_verify_and_tampering_does_not() {
        let now = SystemTime::now();
        for presign in [false, true] {
            let (headers, query) = aws_sign(&putmedia_headers(), presign, now, &creds()[0].secret_access_key);
            assert_eq!(presign, query.is_some());
            let ok = verify(
                "POST",
                "/putMedia",
                query.as_deref(),
                &headers,
                EMPTY_SHA256,
                &creds(),
                now,
            );
            assert_eq!(ok, Ok("AKIDEXAMPLE".to_owned()), "presign {presign}");

            // A signed header changed in flight.
            let mut tampered = headers.clone();
            tampered.insert("x-amzn-stream-name", "other".parse().unwrap());
            let e = verify(
                "POST",
                "/putMedia",
                query.as_deref(),
                &tampered,
                EMPTY_SHA256,
                &creds(),
                now,
            );
            assert!(e == Err(SigV4Error::Mismatch) || presign, "{e:?}");
            // Another path, another payload hash.
            let e = verify(
                "POST",
                "/describeStream",
                query.as_deref(),
                &headers,
                EMPTY_SHA256,
                &creds(),
                now,
            );
            assert_eq!(e, Err(SigV4Error::Mismatch));
            // Too late.
            let later = now + Duration::from_secs(3600);
            let e = verify(
                "POST",
                "/putMedia",
                query.as_deref(),
                &headers,
                EMPTY_SHA256,
                &creds(),
                later,
            );
            assert!(matches!(e, Err(SigV4Error::Time(_))), "{e:?}");
        }
        // Another secret.
        let (headers, _) = aws_sign(&putmedia_headers(), false, now, "not-the-secret");
        let e = verify("POST", "/putMedia", None, &headers, EMPTY_SHA256, &creds(), now);
        assert_eq!(e, Err(SigV4Error::Mismatch));
        // Unknown key, unsigned.
        let other = vec![Credential {
            access_key_id: "AKIDOTHER".into(),
            secret_access_key: "x".into(),
        }];
        let (headers, _) = aws_sign(&putmedia_headers(), false, now, "s");
        assert_eq!(
            verify("POST", "/putMedia", None, &headers, EMPTY_SHA256, &other, now),
            Err(SigV4Error::UnknownKey("AKIDEXAMPLE".into()))
        );
        assert_eq!(
            verify(
                "POST",
                "/putMedia",
                None,
                &HeaderMap::new(),
                EMPTY_SHA256,
                &creds(),
                now
            ),
            Err(SigV4Error::Unsigned)
        );
    }
}
