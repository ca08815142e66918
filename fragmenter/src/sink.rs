//! Where writers put their bytes.
//!
//! Writers produce small container headers around large payloads. A
//! [`ByteSink`] receives the two separately so that a zero-copy sink
//! ([`Chunks`]) can keep each payload as the shared `Bytes` the capture layer
//! allocated, while a plain `Vec<u8>` simply appends everything.

use bytes::{Bytes, BytesMut};

/// Receives a writer's output in order.
pub trait ByteSink {
    /// Append container bytes (headers, boxes, elements).
    fn put_slice(&mut self, bytes: &[u8]);

    /// Append a payload. The default copies; zero-copy sinks keep the `Bytes`.
    fn put_bytes(&mut self, bytes: Bytes) {
        self.put_slice(&bytes);
    }
}

impl ByteSink for Vec<u8> {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl ByteSink for BytesMut {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// A zero-copy sink: container bytes are gathered into one growing buffer,
/// payloads are kept as the `Bytes` they came in. The result is a list of
/// chunks for vectored writes or a chunked HTTP body.
#[derive(Default, Debug)]
pub struct Chunks {
    pending: BytesMut,
    parts: Vec<Bytes>,
    len: usize,
}

impl Chunks {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Total bytes written so far (taken or not).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing written yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Take the chunks written since the last call, in order.
    pub fn take(&mut self) -> Vec<Bytes> {
        self.flush_pending();
        std::mem::take(&mut self.parts)
    }

    /// Take the chunks written since the last call into `out` (reusing its
    /// allocation).
    pub fn drain_into(&mut self, out: &mut Vec<Bytes>) {
        self.flush_pending();
        out.append(&mut self.parts);
    }

    /// All chunks written since the last take, joined (copies; for tests and
    /// small outputs).
    pub fn to_vec(&mut self) -> Vec<u8> {
        self.flush_pending();
        let mut v = Vec::with_capacity(self.parts.iter().map(Bytes::len).sum());
        for p in &self.parts {
            v.extend_from_slice(p);
        }
        v
    }

    fn flush_pending(&mut self) {
        if !self.pending.is_empty() {
            self.parts.push(self.pending.split().freeze());
        }
    }
}

impl ByteSink for Chunks {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.len += bytes.len();
        self.pending.extend_from_slice(bytes);
    }

    fn put_bytes(&mut self, bytes: Bytes) {
        self.len += bytes.len();
        self.flush_pending();
        self.parts.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_payloads_shared_and_order_intact() {
        let payload = Bytes::from_static(b"PAYLOAD");
        let mut c = Chunks::new();
        c.put_slice(b"h1");
        c.put_slice(b"h2");
        c.put_bytes(payload.clone());
        c.put_slice(b"t");
        assert_eq!(c.len(), 12);
        let parts = c.take();
        assert_eq!(parts.len(), 3);
        assert_eq!(&parts[0][..], b"h1h2");
        // Same allocation: the payload was not copied.
        assert_eq!(parts[1].as_ptr(), payload.as_ptr());
        assert_eq!(&parts[2][..], b"t");
        assert!(c.take().is_empty());
    }
}
