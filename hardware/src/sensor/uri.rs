//! Sensor source URIs, as given on the command line or in the config:
//!
//! * `velodyne:udp://HOST[:2368][?position_port=8308]`
//! * `ouster:udp://HOST[:7502]?metadata=FILE[&imu_port=7503]`
//! * `mmwave:/dev/ttyUSB1?config=/dev/ttyUSB0[&cfg=FILE][&baud=921600][&config_baud=115200]`
//! * `ars408:INTERFACE[?mode=object|cluster]`, e.g. `ars408:can0` or
//!   `ars408:vcan0?mode=cluster` (a SocketCAN interface; default objects)
//!
//! `HOST` is the address to receive on (`0.0.0.0`, an interface address,
//! or `[::]`); the capture layer binds it. Query values may be
//! percent-encoded (`%20`). Parsing only: nothing is opened here.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use super::ars408::Ars408Mode;
use super::{ouster, velodyne};

/// The schemes accepted, for error messages.
pub const SCHEMES: &str = "velodyne, ouster, mmwave, ars408";
/// Default TI mmWave data UART rate.
pub const DEFAULT_DATA_BAUD: u32 = 921_600;
/// Default TI mmWave CLI UART rate.
pub const DEFAULT_CONFIG_BAUD: u32 = 115_200;

/// A parsed sensor source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SensorUri {
    /// Velodyne data (and optionally position) packets over UDP.
    Velodyne {
        /// Address to receive on.
        host: String,
        /// Data port (default 2368).
        port: u16,
        /// Position packet port, when asked for (usually 8308).
        position_port: Option<u16>,
    },
    /// Ouster lidar packets over UDP, with the sensor's metadata file.
    Ouster {
        /// Address to receive on.
        host: String,
        /// Lidar port (default 7502).
        port: u16,
        /// Metadata JSON file.
        metadata: PathBuf,
        /// IMU port, when asked for (usually 7503).
        imu_port: Option<u16>,
    },
    /// TI mmWave out-of-box demo over two serial ports.
    Mmwave {
        /// Data UART device.
        data: PathBuf,
        /// CLI (config) UART device.
        config: PathBuf,
        /// `.cfg` file to send before starting, when given.
        cfg: Option<PathBuf>,
        /// Data UART rate.
        data_baud: u32,
        /// CLI UART rate.
        config_baud: u32,
    },
    /// Continental ARS408 RADAR on a SocketCAN interface.
    Ars408 {
        /// Interface name, e.g. `can0`.
        interface: String,
        /// Object or cluster list.
        mode: Ars408Mode,
    },
}

/// What was wrong with a sensor URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// No `scheme:` prefix, or an unknown one.
    #[error("unknown sensor scheme {got:?}: expected one of {SCHEMES} (e.g. velodyne:udp://0.0.0.0:2368)")]
    UnknownScheme {
        /// The scheme found (empty when none).
        got: String,
    },
    /// The part after the scheme has the wrong shape.
    #[error("{scheme} URI {uri:?}: expected {expected}")]
    Syntax {
        /// Scheme.
        scheme: &'static str,
        /// The URI.
        uri: String,
        /// The shape expected.
        expected: &'static str,
    },
    /// A required field is absent.
    #[error("{scheme} URI: {field} is required ({hint})")]
    MissingField {
        /// Scheme.
        scheme: &'static str,
        /// Field name.
        field: &'static str,
        /// How to give it.
        hint: &'static str,
    },
    /// A field's value is invalid.
    #[error("{scheme} URI: {field} = {value:?} is invalid: expected {expected}")]
    BadValue {
        /// Scheme.
        scheme: &'static str,
        /// Field name.
        field: &'static str,
        /// The value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// A query parameter this scheme does not take.
    #[error("{scheme} URI: unknown parameter {key:?}: accepted are {accepted}")]
    UnknownParam {
        /// Scheme.
        scheme: &'static str,
        /// The key.
        key: String,
        /// Keys accepted.
        accepted: &'static str,
    },
    /// A query parameter given twice.
    #[error("{scheme} URI: parameter {key:?} is given twice")]
    DuplicateParam {
        /// Scheme.
        scheme: &'static str,
        /// The key.
        key: String,
    },
}

fn percent_decode(scheme: &'static str, field: &'static str, s: &str) -> Result<String, UriError> {
    let bad = || UriError::BadValue {
        scheme,
        field,
        value: s.to_owned(),
        expected: "UTF-8 text with valid %XX escapes",
    };
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(bad)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

fn percent_encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '%' | '&' | '?' | '=' | '#' | ' ' => o.push_str(&format!("%{:02X}", c as u32)),
            c => o.push(c),
        }
    }
    o
}

/// Parsed `key=value` pairs, checked against the accepted keys.
struct Query<'a> {
    scheme: &'static str,
    pairs: Vec<(&'a str, String)>,
}

impl<'a> Query<'a> {
    fn parse(
        scheme: &'static str,
        q: Option<&'a str>,
        accepted: &'static [&'static str],
        accepted_text: &'static str,
    ) -> Result<Self, UriError> {
        let mut pairs: Vec<(&str, String)> = Vec::new();
        for part in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let Some(&key) = accepted.iter().find(|a| **a == k) else {
                return Err(UriError::UnknownParam {
                    scheme,
                    key: k.to_owned(),
                    accepted: accepted_text,
                });
            };
            if pairs.iter().any(|(pk, _)| *pk == k) {
                return Err(UriError::DuplicateParam {
                    scheme,
                    key: k.to_owned(),
                });
            }
            pairs.push((key, percent_decode(scheme, key, v)?));
        }
        Ok(Query { scheme, pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.as_str())
    }

    fn path(&self, key: &'static str) -> Result<Option<PathBuf>, UriError> {
        match self.get(key) {
            None => Ok(None),
            Some("") => Err(UriError::BadValue {
                scheme: self.scheme,
                field: key,
                value: String::new(),
                expected: "a file path",
            }),
            Some(p) => Ok(Some(PathBuf::from(p))),
        }
    }

    fn number<T: FromStr + PartialOrd + Default>(
        &self,
        key: &'static str,
        expected: &'static str,
    ) -> Result<Option<T>, UriError> {
        self.get(key)
            .map(|v| {
                v.parse::<T>()
                    .ok()
                    .filter(|n| *n > T::default())
                    .ok_or_else(|| UriError::BadValue {
                        scheme: self.scheme,
                        field: key,
                        value: v.to_owned(),
                        expected,
                    })
            })
            .transpose()
    }
}

/// `udp://HOST[:PORT]` → (host, port).
fn parse_udp(scheme: &'static str, uri: &str, rest: &str, default_port: u16) -> Result<(String, u16), UriError> {
    let syntax = || UriError::Syntax {
        scheme,
        uri: uri.to_owned(),
        expected: "udp://HOST[:PORT] (e.g. udp://0.0.0.0:2368 or udp://[::]:7502)",
    };
    let auth = rest.strip_prefix("udp://").ok_or_else(syntax)?;
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(syntax)?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(syntax)?),
        };
        (format!("[{h}]"), port)
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (auth.to_owned(), None),
        }
    };
    let inner = host.trim_start_matches('[').trim_end_matches(']');
    if inner.is_empty() || host.chars().any(|c| c.is_whitespace() || "/@?#&=%".contains(c)) {
        return Err(UriError::BadValue {
            scheme,
            field: "host",
            value: host,
            expected: "an IP address or host name",
        });
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| UriError::BadValue {
                scheme,
                field: "port",
                value: p.to_owned(),
                expected: "a UDP port from 1 to 65535",
            })?,
    };
    Ok((host, port))
}

impl FromStr for SensorUri {
    type Err = UriError;

    fn from_str(uri: &str) -> Result<Self, UriError> {
        let (scheme, rest) = uri
            .split_once(':')
            .ok_or_else(|| UriError::UnknownScheme { got: String::new() })?;
        let (body, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q)),
            None => (rest, None),
        };
        match scheme {
            "velodyne" => {
                const S: &str = "velodyne";
                let q = Query::parse(S, query, &["position_port"], "position_port")?;
                let (host, port) = parse_udp(S, uri, body, velodyne::DATA_PORT)?;
                Ok(SensorUri::Velodyne {
                    host,
                    port,
                    position_port: q.number("position_port", "a UDP port from 1 to 65535")?,
                })
            }
            "ouster" => {
                const S: &str = "ouster";
                let q = Query::parse(S, query, &["metadata", "imu_port"], "metadata, imu_port")?;
                let (host, port) = parse_udp(S, uri, body, ouster::LIDAR_PORT)?;
                let metadata = q.path("metadata")?.ok_or(UriError::MissingField {
                    scheme: S,
                    field: "metadata",
                    hint: "ouster:udp://HOST:7502?metadata=FILE.json; packets cannot be read without it",
                })?;
                Ok(SensorUri::Ouster {
                    host,
                    port,
                    metadata,
                    imu_port: q.number("imu_port", "a UDP port from 1 to 65535")?,
                })
            }
            "mmwave" => {
                const S: &str = "mmwave";
                let q = Query::parse(
                    S,
                    query,
                    &["config", "cfg", "baud", "config_baud"],
                    "config, cfg, baud, config_baud",
                )?;
                let data = percent_decode(S, "data port", body)?;
                if data.is_empty() || data.starts_with("//") {
                    return Err(UriError::Syntax {
                        scheme: S,
                        uri: uri.to_owned(),
                        expected: "mmwave:DATA_DEVICE?config=CLI_DEVICE (e.g. mmwave:/dev/ttyUSB1?config=/dev/ttyUSB0)",
                    });
                }
                let config = q.path("config")?.ok_or(UriError::MissingField {
                    scheme: S,
                    field: "config",
                    hint: "the CLI serial port, e.g. ?config=/dev/ttyUSB0",
                })?;
                Ok(SensorUri::Mmwave {
                    data: PathBuf::from(data),
                    config,
                    cfg: q.path("cfg")?,
                    data_baud: q
                        .number("baud", "a baud rate such as 921600")?
                        .unwrap_or(DEFAULT_DATA_BAUD),
                    config_baud: q
                        .number("config_baud", "a baud rate such as 115200")?
                        .unwrap_or(DEFAULT_CONFIG_BAUD),
                })
            }
            "ars408" => {
                const S: &str = "ars408";
                let q = Query::parse(S, query, &["mode"], "mode")?;
                if body.starts_with("//") {
                    return Err(UriError::Syntax {
                        scheme: S,
                        uri: uri.to_owned(),
                        expected: "ars408:INTERFACE[?mode=object|cluster] (e.g. ars408:can0)",
                    });
                }
                if body.is_empty() {
                    return Err(UriError::MissingField {
                        scheme: S,
                        field: "interface",
                        hint: "the SocketCAN interface, e.g. ars408:can0",
                    });
                }
                // Linux interface names: 1..=15 bytes, no '/', ':' or space.
                if body.len() > 15
                    || body == "."
                    || body == ".."
                    || body
                        .chars()
                        .any(|c| c.is_whitespace() || "/:%?#&=".contains(c) || c.is_control())
                {
                    return Err(UriError::BadValue {
                        scheme: S,
                        field: "interface",
                        value: body.to_owned(),
                        expected: "a network interface name of at most 15 bytes, e.g. can0",
                    });
                }
                let mode = match q.get("mode") {
                    None => Ars408Mode::default(),
                    Some(m) => m.parse().map_err(|()| UriError::BadValue {
                        scheme: S,
                        field: "mode",
                        value: m.to_owned(),
                        expected: "object or cluster",
                    })?,
                };
                Ok(SensorUri::Ars408 {
                    interface: body.to_owned(),
                    mode,
                })
            }
            other => Err(UriError::UnknownScheme { got: other.to_owned() }),
        }
    }
}

impl fmt::Display for SensorUri {
    /// The canonical form, which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SensorUri::Velodyne {
                host,
                port,
                position_port,
            } => {
                write!(f, "velodyne:udp://{host}:{port}")?;
                if let Some(p) = position_port {
                    write!(f, "?position_port={p}")?;
                }
                Ok(())
            }
            SensorUri::Ouster {
                host,
                port,
                metadata,
                imu_port,
            } => {
                write!(
                    f,
                    "ouster:udp://{host}:{port}?metadata={}",
                    percent_encode(&metadata.to_string_lossy())
                )?;
                if let Some(p) = imu_port {
                    write!(f, "&imu_port={p}")?;
                }
                Ok(())
            }
            SensorUri::Mmwave {
                data,
                config,
                cfg,
                data_baud,
                config_baud,
            } => {
                write!(
                    f,
                    "mmwave:{}?config={}",
                    percent_encode(&data.to_string_lossy()),
                    percent_encode(&config.to_string_lossy())
                )?;
                if let Some(c) = cfg {
                    write!(f, "&cfg={}", percent_encode(&c.to_string_lossy()))?;
                }
                write!(f, "&baud={data_baud}&config_baud={config_baud}")
            }
            SensorUri::Ars408 { interface, mode } => {
                write!(f, "ars408:{interface}")?;
                if *mode != Ars408Mode::default() {
                    write!(f, "?mode={mode}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<SensorUri, UriError> {
        s.parse()
    }

    #[test]
    fn the_documented_forms_parse() {
        assert_eq!(
            p("velodyne:udp://0.0.0.0:2368").unwrap(),
            SensorUri::Velodyne {
                host: "0.0.0.0".into(),
                port: 2368,
                position_port: None
            }
        );
        assert_eq!(
            p("velodyne:udp://lidar.local?position_port=8308").unwrap(),
            SensorUri::Velodyne {
                host: "lidar.local".into(),
                port: 2368,
                position_port: Some(8308)
            }
        );
        assert_eq!(
            p("ouster:udp://[::]:7502?metadata=/etc/os%201.json&imu_port=7503").unwrap(),
            SensorUri::Ouster {
                host: "[::]".into(),
                port: 7502,
                metadata: "/etc/os 1.json".into(),
                imu_port: Some(7503)
            }
        );
        assert_eq!(
            p("mmwave:/dev/ttyUSB1?config=/dev/ttyUSB0&cfg=profile.cfg").unwrap(),
            SensorUri::Mmwave {
                data: "/dev/ttyUSB1".into(),
                config: "/dev/ttyUSB0".into(),
                cfg: Some("profile.cfg".into()),
                data_baud: 921_600,
                config_baud: 115_200
            }
        );
    }

    #[test]
    fn display_round_trips() {
        for s in [
            "velodyne:udp://10.0.0.2:2368?position_port=8308",
            "ouster:udp://[::1]:7502?metadata=a%26b.json",
            "mmwave:/dev/ttyACM1?config=/dev/ttyACM0&cfg=x.cfg&baud=460800&config_baud=115200",
        ] {
            let u = p(s).unwrap();
            assert_eq!(p(&u.to_string()).unwrap(), u, "{s}");
        }
    }

    #[test]
    fn errors_name_the_field_and_value() {
        let e = p("lidar:udp://x").unwrap_err();
        assert_eq!(e, UriError::UnknownScheme { got: "lidar".into() });
        assert!(e.to_string().contains("velodyne, ouster, mmwave"));
        assert!(matches!(p("nothing"), Err(UriError::UnknownScheme { .. })));
        let e = p("velodyne:udp://0.0.0.0:99999").unwrap_err();
        assert!(
            matches!(&e, UriError::BadValue { field: "port", value, .. } if value == "99999"),
            "{e}"
        );
        assert!(matches!(p("velodyne:tcp://h:1"), Err(UriError::Syntax { .. })));
        assert!(matches!(
            p("velodyne:udp://:2368"),
            Err(UriError::BadValue { field: "host", .. })
        ));
        assert!(matches!(
            p("ouster:udp://h:7502"),
            Err(UriError::MissingField { field: "metadata", .. })
        ));
        assert!(matches!(
            p("ouster:udp://h?metadata="),
            Err(UriError::BadValue { field: "metadata", .. })
        ));
        let e = p("ouster:udp://h?metadata=a&speed=2").unwrap_err();
        assert!(
            e.to_string().contains("speed") && e.to_string().contains("metadata, imu_port"),
            "{e}"
        );
        assert!(matches!(
            p("ouster:udp://h?metadata=a&metadata=b"),
            Err(UriError::DuplicateParam { .. })
        ));
        assert!(matches!(
            p("mmwave:/dev/ttyUSB1"),
            Err(UriError::MissingField { field: "config", .. })
        ));
        assert!(matches!(p("mmwave:?config=x"), Err(UriError::Syntax { .. })));
        assert!(matches!(
            p("mmwave:/d?config=x&baud=fast"),
            Err(UriError::BadValue { field: "baud", .. })
        ));
        assert!(matches!(
            p("mmwave:/d?config=x%zz"),
            Err(UriError::BadValue { field: "config", .. })
        ));
    }
}
