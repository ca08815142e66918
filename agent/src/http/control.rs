//! The control-plane subset a gateway answers (reference §1.3), so that
//! producers built on AWS's SDK (kvssink with `CONTROL_PLANE_URI`) find
//! their stream and the PutMedia endpoint here: `POST /describeStream`,
//! `/createStream`, `/tagStream`, `/getDataEndpoint`.
//!
//! Streams are kept in `kvs-streams.json` beside the store's index, written
//! whole and renamed into place, so they survive restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use bytes::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, HOST};
use hyper::{Response, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{info, warn};

use super::Body;
use crate::store::validate_stream_name;

/// A stream as the control plane describes it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct KvsStream {
    /// StreamARN.
    pub arn: String,
    /// CreationTime, epoch seconds.
    pub created: f64,
    /// DataRetentionInHours.
    pub retention_hours: u64,
    /// MediaType.
    pub media_type: Option<String>,
    /// KmsKeyId.
    pub kms_key_id: Option<String>,
    /// DeviceName.
    pub device_name: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// The gateway's streams.
pub struct ControlPlane {
    path: PathBuf,
    streams: Mutex<BTreeMap<String, KvsStream>>,
}

/// What a call failed with: the service's exception and a message.
struct Refusal(StatusCode, &'static str, String);

fn reply(status: StatusCode, body: Value) -> Response<Body> {
    let mut r = Response::new(playback::http::full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn refuse(Refusal(status, exception, message): Refusal) -> Response<Body> {
    let mut r = reply(status, json!({ "message": message, "__type": exception }));
    if let Ok(v) = HeaderValue::from_str(exception) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

fn not_found(name: &str) -> Refusal {
    Refusal(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("stream {name} does not exist"),
    )
}

fn invalid(m: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, "InvalidArgumentException", m.into())
}

fn now_secs() -> f64 {
    hardware::now().as_nanos() as f64 / 1e9
}

impl ControlPlane {
    /// The streams kept at `path` (none when the file does not exist).
    pub fn open(path: PathBuf) -> Self {
        let streams = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                warn!(path = %path.display(), error = %e, "unreadable; starting with no KVS streams");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        ControlPlane {
            path,
            streams: Mutex::new(streams),
        }
    }

    fn save(&self, streams: &BTreeMap<String, KvsStream>) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let data = serde_json::to_vec_pretty(streams).map_err(std::io::Error::other)?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&data)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }

    /// `save`, failing the call when the file cannot be written.
    fn store(&self, streams: &BTreeMap<String, KvsStream>) -> Result<(), Refusal> {
        self.save(streams).map_err(|e| {
            Refusal(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceUnavailableException",
                format!("cannot save kvs-streams.json: {e}"),
            )
        })
    }

    fn arn(name: &str, created: f64) -> String {
        format!(
            "arn:aws:kinesisvideo:local:000000000000:stream/{name}/{}",
            (created * 1000.0) as u64
        )
    }

    /// The stream a PutMedia names, created if new (producers that skip
    /// the control plane still land somewhere describable); its
    /// DataRetentionInHours.
    pub fn ensure(&self, name: &str) -> u64 {
        const DEFAULT_RETENTION_HOURS: u64 = 720;
        let Ok(mut streams) = self.streams.lock() else {
            return DEFAULT_RETENTION_HOURS;
        };
        if let Some(s) = streams.get(name) {
            return s.retention_hours;
        }
        let created = now_secs();
        streams.insert(
            name.to_owned(),
            KvsStream {
                arn: Self::arn(name, created),
                created,
                retention_hours: DEFAULT_RETENTION_HOURS,
                media_type: None,
                kms_key_id: None,
                device_name: None,
                tags: BTreeMap::new(),
            },
        );
        if let Err(e) = self.save(&streams) {
            warn!(error = %e, "cannot save kvs-streams.json");
        }
        DEFAULT_RETENTION_HOURS
    }

    /// Answer `POST /{operation}`; `None` when the path is not one of ours.
    pub fn handle(&self, operation: &str, host: Option<&str>, body: &Bytes) -> Option<Response<Body>> {
        let op = match operation {
            "/describeStream" | "/createStream" | "/tagStream" | "/getDataEndpoint" => operation,
            _ => return None,
        };
        let result = serde_json::from_slice::<Value>(body)
            .map_err(|e| invalid(format!("the body is not JSON: {e}")))
            .and_then(|req| match op {
                "/describeStream" => self.describe(&req),
                "/createStream" => self.create(&req),
                "/tagStream" => self.tag(&req),
                _ => self.endpoint(&req, host),
            });
        Some(match result {
            Ok(v) => reply(StatusCode::OK, v),
            Err(r) => refuse(r),
        })
    }

    /// StreamName, or the name inside StreamARN (exactly one).
    fn name_of(&self, req: &Value) -> Result<String, Refusal> {
        let by_name = req["StreamName"].as_str();
        let by_arn = req["StreamARN"].as_str();
        let name = match (by_name, by_arn) {
            (Some(n), None) => n.to_owned(),
            (None, Some(arn)) => {
                let streams = self.streams.lock().map_err(|_| invalid("poisoned"))?;
                streams
                    .iter()
                    .find(|(_, s)| s.arn == arn)
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| {
                        Refusal(
                            StatusCode::NOT_FOUND,
                            "ResourceNotFoundException",
                            format!("no stream {arn}"),
                        )
                    })?
            }
            _ => return Err(invalid("give exactly one of StreamName and StreamARN")),
        };
        validate_stream_name(&name).map_err(|e| invalid(format!("StreamName: {e}")))?;
        Ok(name)
    }

    fn found(&self, name: &str) -> Result<KvsStream, Refusal> {
        self.streams
            .lock()
            .map_err(|_| invalid("poisoned"))?
            .get(name)
            .cloned()
            .ok_or_else(|| not_found(name))
    }

    fn describe(&self, req: &Value) -> Result<Value, Refusal> {
        let name = self.name_of(req)?;
        let s = self.found(&name)?;
        Ok(json!({ "StreamInfo": {
            "CreationTime": s.created,
            "DataRetentionInHours": s.retention_hours,
            "DeviceName": s.device_name,
            "KmsKeyId": s.kms_key_id.clone().unwrap_or_else(|| "aws/kinesisvideo".into()),
            "MediaType": s.media_type,
            "Status": "ACTIVE",
            "StreamARN": s.arn,
            "StreamName": name,
            "Version": "1",
        }}))
    }

    fn create(&self, req: &Value) -> Result<Value, Refusal> {
        let name = req["StreamName"]
            .as_str()
            .ok_or_else(|| invalid("StreamName is required"))?
            .to_owned();
        validate_stream_name(&name).map_err(|e| invalid(format!("StreamName: {e}")))?;
        let retention_hours = match &req["DataRetentionInHours"] {
            Value::Null => 0,
            v => v
                .as_u64()
                .ok_or_else(|| invalid(format!("DataRetentionInHours {v}: expected a whole number of hours")))?,
        };
        let tags = tags_of(req)?;
        let mut streams = self.streams.lock().map_err(|_| invalid("poisoned"))?;
        // Idempotent (reference §1.3): an existing stream keeps its settings.
        if let Some(s) = streams.get(&name) {
            return Ok(json!({ "StreamARN": s.arn }));
        }
        let created = now_secs();
        let s = KvsStream {
            arn: Self::arn(&name, created),
            created,
            retention_hours,
            media_type: req["MediaType"].as_str().map(str::to_owned),
            kms_key_id: req["KmsKeyId"].as_str().map(str::to_owned),
            device_name: req["DeviceName"].as_str().map(str::to_owned),
            tags,
        };
        let arn = s.arn.clone();
        streams.insert(name.clone(), s);
        self.store(&streams)?;
        info!(stream = %name, "KVS stream created");
        Ok(json!({ "StreamARN": arn }))
    }

    fn tag(&self, req: &Value) -> Result<Value, Refusal> {
        let name = self.name_of(req)?;
        let tags = tags_of(req)?;
        let mut streams = self.streams.lock().map_err(|_| invalid("poisoned"))?;
        let s = streams.get_mut(&name).ok_or_else(|| not_found(&name))?;
        let mut merged = s.tags.clone();
        merged.extend(tags);
        if merged.len() > 50 {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "TagsPerResourceExceededLimitException",
                "at most 50 tags per stream".into(),
            ));
        }
        s.tags = merged;
        self.store(&streams)?;
        Ok(json!({}))
    }

    fn endpoint(&self, req: &Value, host: Option<&str>) -> Result<Value, Refusal> {
        let name = self.name_of(req)?;
        self.found(&name)?;
        match req["APIName"].as_str() {
            Some("PUT_MEDIA") => {}
            Some(other) => return Err(invalid(format!("APIName {other}: this gateway serves PUT_MEDIA only"))),
            None => return Err(invalid("APIName is required")),
        }
        let host = host.ok_or_else(|| invalid("no Host header to name this gateway by"))?;
        // No path: the client appends /putMedia.
        Ok(json!({ "DataEndpoint": format!("http://{host}") }))
    }
}

fn tags_of(req: &Value) -> Result<BTreeMap<String, String>, Refusal> {
    match &req["Tags"] {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|v| (k.clone(), v.to_owned()))
                    .ok_or_else(|| invalid(format!("tag {k}: the value must be a string")))
            })
            .collect(),
        v => Err(invalid(format!("Tags {v}: expected an object of strings"))),
    }
}

/// The Host a request came in on (what GetDataEndpoint answers with).
pub fn host_of<B>(req: &hyper::Request<B>) -> Option<String> {
    req.headers().get(HOST).and_then(|v| v.to_str().ok()).map(str::to_owned)
}
