//! The live tail of a stream: a bounded ring of the events most recently
//! written, shared by every cursor that has caught up.
//!
//! The writer only ever appends (evicting the oldest events past the limits)
//! and never waits for a reader; a reader whose position has been evicted
//! has lagged and goes back to disk.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use fragmenter::Frame;

use super::{FragmentHead, FragmentId, FragmentMeta};

/// What the live tail carries.
#[derive(Debug, Clone)]
pub(crate) enum LiveEvent {
    /// A fragment began (not yet durable).
    Start(Arc<FragmentHead>),
    /// A frame of the open fragment.
    Frame(Frame),
    /// The fragment is durable and indexed.
    End(Arc<FragmentMeta>),
    /// The open fragment was dropped (disk full, denied, writer closed).
    Abort(FragmentId),
}

#[derive(Debug)]
pub(crate) struct Ring {
    events: VecDeque<LiveEvent>,
    /// Sequence number of `events[0]`.
    first_seq: u64,
    bytes: usize,
    max_events: usize,
    max_bytes: usize,
    /// The fragment being written, if any.
    pub open: Option<FragmentId>,
    /// The highest fragment id committed to the index.
    pub last_committed: Option<FragmentId>,
}

impl Ring {
    /// The sequence number the next event will get.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.events.len() as u64
    }

    pub fn first_seq(&self) -> u64 {
        self.first_seq
    }

    pub fn get(&self, seq: u64) -> Option<&LiveEvent> {
        seq.checked_sub(self.first_seq)
            .and_then(|i| self.events.get(usize::try_from(i).ok()?))
    }

    /// The sequence number of the Start of fragment `id` or later, if held.
    pub fn find_start(&self, min: u64) -> Option<u64> {
        self.events
            .iter()
            .position(|e| matches!(e, LiveEvent::Start(h) if h.id.0 >= min))
            .map(|i| self.first_seq + i as u64)
    }

    fn push(&mut self, e: LiveEvent) {
        if let LiveEvent::Frame(f) = &e {
            self.bytes += f.data.len();
        }
        self.events.push_back(e);
        while self.events.len() > self.max_events || (self.bytes > self.max_bytes && self.events.len() > 1) {
            if let Some(LiveEvent::Frame(f)) = self.events.pop_front() {
                self.bytes -= f.data.len();
            }
            self.first_seq += 1;
        }
    }
}

/// One stream's live tail.
#[derive(Debug)]
pub(crate) struct Live {
    ring: Mutex<Ring>,
    cond: Condvar,
    notify: tokio::sync::Notify,
    /// Readers waiting (blocking or async): the writer wakes nobody, and
    /// makes no syscall, when there are none.
    waiters: AtomicUsize,
}

/// Counts a waiting reader for as long as it lives.
pub(crate) struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, SeqCst);
    }
}

impl Live {
    pub fn new(max_bytes: usize, last_committed: Option<FragmentId>) -> Self {
        Live {
            ring: Mutex::new(Ring {
                events: VecDeque::new(),
                first_seq: 0,
                bytes: 0,
                max_events: (max_bytes / 256).clamp(64, 1 << 16),
                max_bytes,
                open: None,
                last_committed,
            }),
            cond: Condvar::new(),
            notify: tokio::sync::Notify::new(),
            waiters: AtomicUsize::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Ring> {
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Append an event and wake every waiting reader.
    pub fn publish(&self, e: LiveEvent) {
        {
            let mut r = self.lock();
            match &e {
                LiveEvent::Start(h) => r.open = Some(h.id),
                LiveEvent::End(m) => {
                    r.open = None;
                    r.last_committed = Some(r.last_committed.map_or(m.id, |c| c.max(m.id)));
                }
                LiveEvent::Abort(_) => r.open = None,
                LiveEvent::Frame(_) => {}
            }
            r.push(e);
        }
        if self.waiters.load(SeqCst) > 0 {
            self.cond.notify_all();
            self.notify.notify_waiters();
        }
    }

    /// Register a reader about to wait; call before checking for events.
    pub fn waiting(&self) -> Waiting<'_> {
        self.waiters.fetch_add(1, SeqCst);
        Waiting(&self.waiters)
    }

    /// Wait (holding nothing) until something is published or `timeout`
    /// passes; `guard` must be the ring lock, taken after the caller found
    /// nothing to read.
    pub fn wait<'a>(&self, guard: MutexGuard<'a, Ring>, seq: u64, timeout: Duration) -> MutexGuard<'a, Ring> {
        let _w = self.waiting();
        let (g, _) = self
            .cond
            .wait_timeout_while(guard, timeout, |r| r.next_seq() == seq)
            .unwrap_or_else(|p| p.into_inner());
        g
    }

    pub fn notify(&self) -> &tokio::sync::Notify {
        &self.notify
    }
}
