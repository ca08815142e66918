//! A connection that sends file-backed bytes with `sendfile(2)`.
//!
//! hyper has no file-body path: every body byte reaches the socket through
//! `write`/`writev` from memory, so a segment read from the store would be
//! copied twice in user space (file → buffer → socket) where nginx copies it
//! never. Stored fragments reach playback as `Bytes` that map the segment
//! file ([`crate::mapped`]). With `writev(true)` hyper queues body chunks
//! as they are and passes them to `poll_write_vectored` as `IoSlice`s
//! pointing at the very same memory. This wrapper looks each slice up: a
//! file-backed run of at least [`MIN_SENDFILE`] bytes (a key frame) goes
//! out with `sendfile` straight from the page cache; anything else
//! (headers, `moof` boxes, P-frames, audio frames) goes out with `writev`,
//! copied once from the mapping.
//!
//! Nothing depends on the lookup succeeding: bytes that are not recognised
//! are written from memory, and they are the same bytes either way.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use hyper_util::rt::TokioIo;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::mapped::{self, FileSpan};

/// File-backed runs shorter than this are copied with the slices around
/// them, from the mapping, in one `writev`.
///
/// A segment's mdat holds its video frames and then its audio frames, while
/// the file holds them interleaved, so most runs are one frame long. On
/// the segment benchmark (720p30 at 4 Mbit/s, README) one `sendfile` per
/// run of 4 KB or more served 1,800 requests/s; from 64 KB, which leaves
/// `sendfile` the key frames, 3,000–3,400; copying everything 2,700–3,500.
/// A syscall per P-frame costs more than copying it.
pub const MIN_SENDFILE: usize = 64 * 1024;

static SENT: AtomicU64 = AtomicU64::new(0);

/// Bytes sent with `sendfile` by this process so far (a metric, and how tests
/// see that the path was taken).
pub fn sendfile_bytes() -> u64 {
    SENT.load(Relaxed)
}

/// A TCP connection for hyper's `serve_connection`, sending file-backed
/// body bytes with `sendfile`. Serve it with `http1::Builder::writev(true)`:
/// hyper's flattening strategy would copy the bytes before we see them.
#[derive(Debug)]
pub struct SendfileStream {
    io: TokioIo<TcpStream>,
}

impl SendfileStream {
    /// Wrap an accepted connection.
    pub fn new(stream: TcpStream) -> Self {
        SendfileStream {
            io: TokioIo::new(stream),
        }
    }

    fn poll_sendfile(&self, cx: &mut Context<'_>, span: &FileSpan) -> Poll<io::Result<usize>> {
        let stream = self.io.inner();
        loop {
            ready!(stream.poll_write_ready(cx))?;
            let mut offset = span.offset;
            match stream.try_io(Interest::WRITABLE, || {
                rustix::fs::sendfile(stream, &*span.file, Some(&mut offset), span.len).map_err(io::Error::from)
            }) {
                // The file is shorter than the span: never for a complete
                // record, so say so rather than send something else.
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "stored file ended inside a response body",
                    )))
                }
                Ok(n) => {
                    SENT.fetch_add(n as u64, Relaxed);
                    return Poll::Ready(Ok(n));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

/// What to do with the slices at the front of a write.
#[derive(Debug)]
enum Plan {
    /// `sendfile` this span (one or more adjacent file-backed slices).
    File(FileSpan),
    /// `writev` the first `n` slices.
    Memory(usize),
}

fn plan(bufs: &[IoSlice<'_>]) -> Plan {
    let mut i = 0;
    while i < bufs.len() {
        let Some(mut span) = mapped::span_of(&bufs[i]) else {
            i += 1;
            continue;
        };
        // Frames stored back to back are adjacent in the file: one call.
        let mut j = i + 1;
        while let Some(next) = bufs.get(j).and_then(|b| mapped::span_of(b)) {
            if !Arc::ptr_eq(&next.file, &span.file) || next.offset != span.offset + span.len as u64 {
                break;
            }
            span.len += next.len;
            j += 1;
        }
        if span.len >= MIN_SENDFILE {
            return if i == 0 { Plan::File(span) } else { Plan::Memory(i) };
        }
        i = j;
    }
    Plan::Memory(bufs.len())
}

impl hyper::rt::Read for SendfileStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for SendfileStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match plan(bufs) {
            Plan::File(span) => self.poll_sendfile(cx, &span),
            Plan::Memory(n) => Pin::new(&mut self.io).poll_write_vectored(cx, &bufs[..n]),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::sync::Arc;

    use bytes::Bytes;
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper::Response;

    use super::*;
    use crate::http::reply::ChunksBody;

    /// A body mixing heap chunks, small and large file-backed runs, adjacent
    /// slices of one mapping, and a mapping at an odd offset.
    fn body(file: &Arc<std::fs::File>) -> Vec<Bytes> {
        let a = mapped::map(file.clone(), 0, 3 << 20).unwrap();
        let b = mapped::map(file.clone(), 4097, 300_000).unwrap();
        vec![
            Bytes::from_static(b"moof-ish header"),
            a.slice(0..1_000_000),
            a.slice(1_000_000..1_000_500), // small, adjacent: merged with the next
            a.slice(1_000_500..3 << 20),
            Bytes::from(vec![9u8; 700]),
            b.slice(10..400), // small and alone: copied
            b.slice(1_000..300_000),
        ]
    }

    #[test]
    fn file_backed_body_bytes_go_out_with_sendfile_and_arrive_intact() {
        let mut f = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..(4u32 << 20))
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        f.write_all(&content).unwrap();
        let file = Arc::new(f);
        let expected: Vec<u8> = body(&file).iter().flat_map(|c| c.to_vec()).collect();

        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = file.clone();
        rt.spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            let svc = service_fn(move |_req| {
                let chunks = body(&served);
                async move { Ok::<_, std::convert::Infallible>(Response::new(ChunksBody::new(chunks))) }
            });
            let _ = http1::Builder::new()
                .writev(true)
                .serve_connection(SendfileStream::new(stream), svc)
                .await;
        });

        let before = sendfile_bytes();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
        // Two requests on one connection: the second proves the connection's
        // framing survived the first.
        for _ in 0..2 {
            client.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            // Read slowly at first so the server's socket fills and
            // sendfile has to wait and resume mid-span.
            std::thread::sleep(std::time::Duration::from_millis(100));
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                client.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            let head = String::from_utf8(head).unwrap();
            assert!(head.starts_with("HTTP/1.1 200"), "{head}");
            assert!(
                head.to_ascii_lowercase()
                    .contains(&format!("content-length: {}", expected.len())),
                "{head}"
            );
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).unwrap();
            assert!(got == expected, "the body differs from the chunks");
        }
        let sent = sendfile_bytes() - before;
        // The three large runs, twice; the 390-byte one is copied.
        let large = (3u64 << 20) + 299_000;
        assert!(
            sent >= 2 * large,
            "sendfile carried {sent} bytes, expected at least {}",
            2 * large
        );
    }

    #[test]
    fn plans_merge_adjacent_runs_and_copy_what_is_small_or_on_the_heap() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&vec![1u8; 200_000]).unwrap();
        let m = mapped::map(Arc::new(f), 0, 200_000).unwrap();
        let heap = vec![0u8; 50_000];
        let (x, y, small) = (m.slice(0..40_000), m.slice(40_000..80_000), m.slice(90_000..90_100));
        match plan(&[IoSlice::new(&x), IoSlice::new(&y), IoSlice::new(&heap)]) {
            Plan::File(span) => assert_eq!((span.offset, span.len), (0, 80_000)),
            p => panic!("{p:?}"),
        }
        match plan(&[
            IoSlice::new(&heap),
            IoSlice::new(&small),
            IoSlice::new(&x),
            IoSlice::new(&y),
        ]) {
            Plan::Memory(n) => assert_eq!(n, 2, "heap and the small run go out before the large run"),
            p => panic!("{p:?}"),
        }
        match plan(&[IoSlice::new(&x), IoSlice::new(&heap)]) {
            Plan::Memory(n) => assert_eq!(n, 2, "40 KB alone is copied"),
            p => panic!("{p:?}"),
        }
        match plan(&[IoSlice::new(&small), IoSlice::new(&heap)]) {
            Plan::Memory(n) => assert_eq!(n, 2),
            p => panic!("{p:?}"),
        }
    }
}
