//! HTTP `Range: bytes=…` for one resource of known length (RFC 9110 §14).
//!
//! Only single ranges are served: a multi-range request is answered with
//! the whole resource, which the RFC allows ("a server MAY ignore the Range
//! header field") and which every player copes with, whereas
//! `multipart/byteranges` bodies are something no video player asks for.

/// What to send for a request of a resource of `len` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RangeReply {
    /// 200 with the whole body: no Range, one we ignore, or a stale If-Range.
    Full,
    /// 206 with bytes `first..=last`.
    Partial {
        /// First byte sent.
        first: u64,
        /// Last byte sent (inclusive, as in Content-Range).
        last: u64,
    },
    /// 416: the range starts at or past the end.
    Unsatisfiable,
}

/// Interpret `header` (the Range value, if any) for a resource of `len`
/// bytes, `len > 0`.
pub fn interpret(header: Option<&str>, len: u64) -> RangeReply {
    let Some(spec) = header.map(str::trim).and_then(|h| h.strip_prefix("bytes=")) else {
        // No Range, or a unit other than bytes: RFC 9110 says ignore it.
        return RangeReply::Full;
    };
    if spec.contains(',') {
        return RangeReply::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeReply::Full;
    };
    let number = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match number(b) {
            Some(0) => RangeReply::Unsatisfiable,
            Some(n) => RangeReply::Partial {
                first: len.saturating_sub(n),
                last: len - 1,
            },
            None => RangeReply::Full,
        },
        // bytes=a-: from a to the end.
        (false, true) => match number(a) {
            Some(first) if first >= len => RangeReply::Unsatisfiable,
            Some(first) => RangeReply::Partial { first, last: len - 1 },
            None => RangeReply::Full,
        },
        // bytes=a-b, b clipped to the end.
        (false, false) => match (number(a), number(b)) {
            (Some(first), Some(last)) if first <= last => {
                if first >= len {
                    RangeReply::Unsatisfiable
                } else {
                    RangeReply::Partial {
                        first,
                        last: last.min(len - 1),
                    }
                }
            }
            // a > b or not numbers: syntactically invalid, so ignored.
            _ => RangeReply::Full,
        },
        (true, true) => RangeReply::Full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial(first: u64, last: u64) -> RangeReply {
        RangeReply::Partial { first, last }
    }

    #[test]
    fn the_three_forms_of_a_byte_range() {
        assert_eq!(interpret(Some("bytes=0-99"), 1000), partial(0, 99));
        assert_eq!(interpret(Some("bytes=900-"), 1000), partial(900, 999));
        assert_eq!(interpret(Some("bytes=-100"), 1000), partial(900, 999));
        assert_eq!(interpret(Some("bytes=-5000"), 1000), partial(0, 999));
        assert_eq!(interpret(Some("bytes=990-5000"), 1000), partial(990, 999));
        assert_eq!(interpret(Some(" bytes= 5 - 6 "), 1000), partial(5, 6));
    }

    #[test]
    fn ranges_past_the_end_are_unsatisfiable() {
        assert_eq!(interpret(Some("bytes=1000-"), 1000), RangeReply::Unsatisfiable);
        assert_eq!(interpret(Some("bytes=1000-2000"), 1000), RangeReply::Unsatisfiable);
        assert_eq!(interpret(Some("bytes=-0"), 1000), RangeReply::Unsatisfiable);
    }

    #[test]
    fn malformed_multiple_or_foreign_ranges_get_the_whole_body() {
        for h in [
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1-2,5-6",
            "items=0-1",
            "bytes=0x10-",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(interpret(Some(h), 1000), RangeReply::Full, "{h}");
        }
        assert_eq!(interpret(None, 1000), RangeReply::Full);
    }
}
