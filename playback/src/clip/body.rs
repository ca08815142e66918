//! Sending a planned clip: a blocking producer encodes fragment after
//! fragment into a bounded channel; the response body drains it.
//!
//! The channel holds a few chunks only, so memory stays at about one
//! fragment whatever the clip's length, and a slow client slows the
//! producer down rather than filling memory. A client that goes away drops
//! the receiver, which stops the producer at its next send.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Frame, SizeHint};
use tokio::sync::mpsc;

use super::plan::Plan;
use crate::archive::Archive;

/// Chunks in flight between the producer and the connection.
const CHANNEL_CHUNKS: usize = 16;

/// A body of exactly `remaining` bytes fed by a channel. If the producer
/// fails it sends an error, which makes hyper abort the connection: the
/// client sees a short body rather than wrong bytes.
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    remaining: u64,
}

impl hyper::body::Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Ok(bytes))) => {
                self.remaining = self.remaining.saturating_sub(bytes.len() as u64);
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e))),
            Poll::Ready(None) if self.remaining > 0 => Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("clip producer stopped {} bytes short", self.remaining),
            )))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}

/// Bytes `first..=last` of the clip `plan` describes, produced on tokio's
/// blocking pool.
pub fn send(archive: Arc<dyn Archive>, plan: Arc<Plan>, first: u64, last: u64) -> ChannelBody {
    let (tx, rx) = mpsc::channel(CHANNEL_CHUNKS);
    tokio::task::spawn_blocking(move || {
        let mut out = Slicer {
            tx: &tx,
            first,
            end: last + 1,
            at: 0,
        };
        if let Err(Stop::Failed(e)) = produce(archive.as_ref(), &plan, &mut out) {
            tracing::warn!(stream = plan.stream, "clip aborted at byte {}: {e}", out.at);
            let _ = tx.blocking_send(Err(io::Error::other(e)));
        }
    });
    ChannelBody {
        rx,
        remaining: last + 1 - first,
    }
}

enum Stop {
    /// The client went away.
    Gone,
    /// The archive or the encoder failed.
    Failed(String),
}

fn produce(archive: &dyn Archive, plan: &Plan, out: &mut Slicer<'_>) -> Result<(), Stop> {
    out.put(plan.init.clone())?;
    for part in &plan.parts {
        if part.offset + part.len <= out.first {
            out.at = part.offset + part.len;
            continue;
        }
        if part.offset >= out.end {
            break;
        }
        out.at = part.offset;
        let fragment = archive
            .read_fragment(&plan.stream, part.id)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let chunks = plan
            .encode(&fragment, part.sequence)
            .map_err(|e| Stop::Failed(e.to_string()))?;
        // The length was promised in Content-Length; anything else would
        // corrupt the client's copy, so it is an error, not a warning.
        let len: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        if len != part.len {
            return Err(Stop::Failed(format!(
                "fragment {} encodes to {len} bytes now, {} when planned",
                part.id, part.len
            )));
        }
        for c in chunks {
            out.put(c)?;
        }
    }
    Ok(())
}

/// Passes on the part of each chunk that falls in `first..end`.
struct Slicer<'a> {
    tx: &'a mpsc::Sender<Result<Bytes, io::Error>>,
    first: u64,
    end: u64,
    /// Clip offset of the next chunk.
    at: u64,
}

impl Slicer<'_> {
    fn put(&mut self, chunk: Bytes) -> Result<(), Stop> {
        let (start, stop) = (self.at, self.at + chunk.len() as u64);
        self.at = stop;
        let from = self.first.max(start);
        let to = self.end.min(stop);
        if from >= to {
            return Ok(());
        }
        // Both within the chunk, so they fit usize.
        let slice = chunk.slice((from - start) as usize..(to - start) as usize);
        self.tx.blocking_send(Ok(slice)).map_err(|_| Stop::Gone)
    }
}
