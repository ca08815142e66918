//! PutMedia ACK events (reference §4): the JSON objects the service streams
//! back on the PutMedia connection while the body is still going up.
//!
//! The reader is tolerant, as clients must be: objects are found by
//! balanced braces, not by chunk or line boundaries (the service puts each
//! in its own HTTP chunk, usually with a newline, but nothing promises
//! either); unknown keys are ignored; numbers sent as strings are accepted.
//! A broken object is reported and skipped, and the reader carries on with
//! the next one.

use serde_json::Value;

/// Longest ACK object accepted (PIC accepts 1,024 characters; a fragment
/// number is ~48 digits, so real ACKs are under 130 bytes).
pub const MAX_ACK: usize = 4096;

/// What an ACK says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AckKind {
    /// The fragment's first byte arrived.
    Buffering,
    /// The whole fragment arrived.
    Received,
    /// The fragment is stored durably.
    Persisted,
    /// The fragment failed; the service closes the connection.
    Error,
    /// Keep-alive while nothing arrives.
    Idle,
    /// An event type this code does not know (kept, not refused).
    Other(String),
}

impl AckKind {
    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            AckKind::Buffering => "BUFFERING",
            AckKind::Received => "RECEIVED",
            AckKind::Persisted => "PERSISTED",
            AckKind::Error => "ERROR",
            AckKind::Idle => "IDLE",
            AckKind::Other(s) => s,
        }
    }

    fn parse(s: &str) -> Self {
        match s.to_ascii_uppercase().as_str() {
            "BUFFERING" => AckKind::Buffering,
            "RECEIVED" => AckKind::Received,
            "PERSISTED" => AckKind::Persisted,
            "ERROR" => AckKind::Error,
            "IDLE" => AckKind::Idle,
            _ => AckKind::Other(s.to_owned()),
        }
    }
}

/// One ACK event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// `EventType`.
    pub kind: AckKind,
    /// `FragmentTimecode`: the fragment's cluster timecode as sent.
    pub fragment_timecode: Option<u64>,
    /// `FragmentNumber`: decimal digits, longer than a u64 holds.
    pub fragment_number: Option<String>,
    /// `ErrorId` (ERROR only).
    pub error_id: Option<u32>,
    /// `ErrorCode` (ERROR only).
    pub error_code: Option<String>,
}

/// Why an object in the ACK stream was skipped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// Not JSON, or not an object.
    #[error("ACK is not a JSON object: {0}")]
    NotJson(String),
    /// No `EventType`.
    #[error("ACK without EventType: {0}")]
    NoEventType(String),
    /// A field of the wrong type.
    #[error("ACK field {field} is {value}: expected {expected}")]
    Field {
        /// The key.
        field: &'static str,
        /// What it held.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// Longer than [`MAX_ACK`].
    #[error("ACK object of more than {MAX_ACK} bytes skipped")]
    TooLong,
    /// Bytes outside any object.
    #[error("{0} byte(s) outside any ACK object skipped")]
    Stray(usize),
}

fn excerpt(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
    if b.len() > 120 {
        format!("{s}…")
    } else {
        s
    }
}

/// A non-negative integer sent as a number or as a string of digits.
fn integer(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

impl Ack {
    /// Parse one JSON object.
    pub fn parse(obj: &[u8]) -> Result<Ack, AckError> {
        let v: Value = serde_json::from_slice(obj).map_err(|e| AckError::NotJson(format!("{e}: {}", excerpt(obj))))?;
        let Value::Object(map) = v else {
            return Err(AckError::NotJson(excerpt(obj)));
        };
        let kind = match map.get("EventType") {
            Some(Value::String(s)) => AckKind::parse(s),
            Some(other) => {
                return Err(AckError::Field {
                    field: "EventType",
                    value: other.to_string(),
                    expected: "a string",
                })
            }
            None => return Err(AckError::NoEventType(excerpt(obj))),
        };
        let fragment_timecode = match map.get("FragmentTimecode") {
            None | Some(Value::Null) => None,
            Some(v) => Some(integer(v).ok_or_else(|| AckError::Field {
                field: "FragmentTimecode",
                value: v.to_string(),
                expected: "a non-negative integer",
            })?),
        };
        let fragment_number = match map.get("FragmentNumber") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.clone()),
            // A number would have lost digits in a double: only whole u64s
            // are taken as they are.
            Some(Value::Number(n)) if n.as_u64().is_some() => Some(n.to_string()),
            Some(v) => {
                return Err(AckError::Field {
                    field: "FragmentNumber",
                    value: v.to_string(),
                    expected: "a string of decimal digits",
                })
            }
        };
        let error_id = match map.get("ErrorId") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                integer(v)
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| AckError::Field {
                        field: "ErrorId",
                        value: v.to_string(),
                        expected: "an integer such as 4006",
                    })?,
            ),
        };
        let error_code = map.get("ErrorCode").and_then(Value::as_str).map(str::to_owned);
        Ok(Ack {
            kind,
            fragment_timecode,
            fragment_number,
            error_id,
            error_code,
        })
    }

    /// The ACK as the service writes it: one JSON object and a newline, keys
    /// in the service's order.
    pub fn to_line(&self) -> String {
        let mut s = format!("{{\"EventType\":\"{}\"", self.kind.as_str());
        if let Some(t) = self.fragment_timecode {
            s.push_str(&format!(",\"FragmentTimecode\":{t}"));
        }
        if let Some(n) = &self.fragment_number {
            s.push_str(&format!(",\"FragmentNumber\":\"{n}\""));
        }
        if let Some(id) = self.error_id {
            s.push_str(&format!(",\"ErrorId\":{id}"));
        }
        if let Some(c) = &self.error_code {
            s.push_str(&format!(",\"ErrorCode\":{}", serde_json::Value::from(c.as_str())));
        }
        s.push_str("}\n");
        s
    }
}

/// Finds ACK objects in a byte stream fed in arbitrary pieces.
#[derive(Debug, Default)]
pub struct AckReader {
    obj: Vec<u8>,
    depth: usize,
    in_string: bool,
    escaped: bool,
    stray: usize,
}

impl AckReader {
    /// A reader at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed the next bytes; complete objects (or why one was skipped) are
    /// appended to `out` in order.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Result<Ack, AckError>>) {
        for &b in data {
            if self.depth == 0 {
                match b {
                    b'{' => {
                        self.flush_stray(out);
                        self.depth = 1;
                        self.obj.clear();
                        self.obj.push(b);
                    }
                    // Separators the service or a proxy may put between
                    // objects.
                    b' ' | b'\t' | b'\r' | b'\n' | b',' => {}
                    _ => self.stray += 1,
                }
                continue;
            }
            if self.obj.len() == MAX_ACK {
                // An unbalanced quote or brace would otherwise swallow every
                // later ACK: give the object up and look for the next `{`.
                out.push(Err(AckError::TooLong));
                self.obj.clear();
                self.depth = 0;
                self.in_string = false;
                self.escaped = false;
                continue;
            }
            self.obj.push(b);
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth -= 1;
                    if self.depth == 0 {
                        out.push(Ack::parse(&self.obj));
                        self.obj.clear();
                    }
                }
                _ => {}
            }
        }
    }

    /// The stream ended: report what was left unfinished.
    pub fn finish(&mut self, out: &mut Vec<Result<Ack, AckError>>) {
        self.flush_stray(out);
        if self.depth > 0 {
            self.stray += self.obj.len();
            self.obj.clear();
            self.depth = 0;
            self.in_string = false;
            self.escaped = false;
            self.flush_stray(out);
        }
    }

    fn flush_stray(&mut self, out: &mut Vec<Result<Ack, AckError>>) {
        if self.stray > 0 {
            out.push(Err(AckError::Stray(self.stray)));
            self.stray = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference's examples (two quoted from public issues).
    const STREAM: &str = concat!(
        "{\"EventType\":\"BUFFERING\",\"FragmentTimecode\":1595833960258,\"FragmentNumber\":\"91343852333181457151482848337893124909386799081\"}\n",
        "{\"EventType\":\"RECEIVED\",\"FragmentTimecode\":1595833960258,\"FragmentNumber\":\"91343852333181457151482848337893124909386799081\"}\n",
        "{\"EventType\":\"PERSISTED\",\"FragmentTimecode\":1595833960258,\"FragmentNumber\":\"91343852333181457151482848337893124909386799081\"}\n",
        "{\"EventType\":\"IDLE\"}\n",
        "{\"EventType\":\"ERROR\",\"FragmentTimecode\":118694,\"ErrorId\":4004,\"ErrorCode\":\"FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS\"}\n",
    );

    fn read(chunks: &[&[u8]]) -> Vec<Result<Ack, AckError>> {
        let mut r = AckReader::new();
        let mut out = Vec::new();
        for c in chunks {
            r.feed(c, &mut out);
        }
        r.finish(&mut out);
        out
    }

    #[test]
    fn the_references_acks_are_read_and_written_back_byte_for_byte() {
        let acks: Vec<Ack> = read(&[STREAM.as_bytes()]).into_iter().map(Result::unwrap).collect();
        let kinds: Vec<&str> = acks.iter().map(|a| a.kind.as_str()).collect();
        assert_eq!(kinds, ["BUFFERING", "RECEIVED", "PERSISTED", "IDLE", "ERROR"]);
        assert_eq!(acks[0].fragment_timecode, Some(1_595_833_960_258));
        assert_eq!(
            acks[2].fragment_number.as_deref(),
            Some("91343852333181457151482848337893124909386799081")
        );
        assert_eq!(
            (acks[4].error_id, acks[4].error_code.as_deref()),
            (Some(4004), Some("FRAGMENT_TIMECODE_LESSER_THAN_PREVIOUS"))
        );
        let written: String = acks.iter().map(Ack::to_line).collect();
        assert_eq!(written, STREAM);
        // The reference's chunk sizes: 125 and 20 bytes of JSON.
        assert_eq!(acks[0].to_line().len(), 126);
        assert_eq!(acks[3].to_line().len(), 21);
    }

    #[test]
    fn objects_are_found_whatever_the_separators_and_unknown_keys_ignored() {
        let s = br#"{"EventType":"IDLE"}{"EventType":"received","FragmentTimecode":"12","FragmentNumber":7,"Extra":{"a":[1,"}"]}} , {"EventType":"PERSISTED"}"#;
        let acks: Vec<Ack> = read(&[s]).into_iter().map(Result::unwrap).collect();
        assert_eq!(acks.len(), 3);
        assert_eq!(acks[1].kind, AckKind::Received);
        assert_eq!(
            (acks[1].fragment_timecode, acks[1].fragment_number.as_deref()),
            (Some(12), Some("7"))
        );
    }

    #[test]
    fn a_bad_object_is_reported_and_the_next_one_still_read() {
        let s = br#"junk{"EventType":5}{"FragmentTimecode":1}{"EventType":"ERROR","ErrorId":"x"}{nope}{"EventType":"IDLE"}"#;
        let out = read(&[s]);
        assert!(matches!(out[0], Err(AckError::Stray(4))), "{out:?}");
        assert!(
            matches!(out[1], Err(AckError::Field { field: "EventType", .. })),
            "{out:?}"
        );
        assert!(matches!(out[2], Err(AckError::NoEventType(_))), "{out:?}");
        assert!(
            matches!(out[3], Err(AckError::Field { field: "ErrorId", .. })),
            "{out:?}"
        );
        assert!(matches!(out[4], Err(AckError::NotJson(_))), "{out:?}");
        assert_eq!(out[5].as_ref().unwrap().kind, AckKind::Idle);
        let long = format!(
            "{{\"EventType\":\"IDLE\",\"x\":\"{}\"}}{{\"EventType\":\"IDLE\"}}",
            "a".repeat(MAX_ACK)
        );
        let out = read(&[long.as_bytes()]);
        assert_eq!(out[0], Err(AckError::TooLong));
        assert!(matches!(out[1], Err(AckError::Stray(_))), "{out:?}");
        assert_eq!(out[2].as_ref().unwrap().kind, AckKind::Idle);
        // An unclosed string does not swallow the ACKs after it.
        let mut broken = br#"{"EventType":"IDLE","x":"oops}"#.to_vec();
        broken.extend(std::iter::repeat_n(b'\n', MAX_ACK));
        broken.extend_from_slice(br#"{"EventType":"RECEIVED"}"#);
        let out = read(&[&broken]);
        assert_eq!(out[0], Err(AckError::TooLong), "{out:?}");
        assert_eq!(out.last().unwrap().as_ref().unwrap().kind, AckKind::Received, "{out:?}");
        let cut = read(&[br#"{"EventType":"IDL"#]);
        assert_eq!(
            cut,
            [Err(AckError::Stray(17))],
            "an unfinished object at the end is reported"
        );
    }

    proptest! {
        // However the stream is cut into chunks, the same ACKs come out.
        #[test]
        fn chunking_never_changes_what_is_read(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..20)) {
            let mut cuts = cuts;
            cuts.sort_unstable();
            let bytes = STREAM.as_bytes();
            let mut chunks = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&bytes[at..c.max(at)]);
                at = c.max(at);
            }
            chunks.push(&bytes[at..]);
            prop_assert_eq!(read(&chunks), read(&[bytes]));
        }

        // The ACK stream faces the network: any bytes, no panic, and every
        // byte accounted for as an object, an error or a separator.
        #[test]
        fn any_bytes_are_read_without_panicking(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read(&[&data]);
        }

        #[test]
        fn written_acks_read_back(tc in proptest::option::of(any::<u64>()), num in "[0-9]{1,60}", id in proptest::option::of(4000u32..5100)) {
            let ack = Ack {
                kind: if id.is_some() { AckKind::Error } else { AckKind::Persisted },
                fragment_timecode: tc,
                fragment_number: Some(num),
                error_id: id,
                error_code: id.and_then(super::super::errors::known).map(|k| k.code.to_owned()),
            };
            let back = read(&[ack.to_line().as_bytes()]);
            prop_assert_eq!(back, vec![Ok(ack)]);
        }
    }
}
