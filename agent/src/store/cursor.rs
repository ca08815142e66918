//! Cursors: "give me this stream's fragments from X on", served from disk
//! while behind and from the live tail, frame by frame, once caught up.
//!
//! A cursor remembers the first fragment id it has not delivered. Reading
//! from disk it asks the index for the next committed fragment; when there
//! is none it joins the live tail at the open fragment's start (checked
//! under the tail's lock, so a fragment committed in between is never
//! skipped). If it falls out of the tail it goes back to disk and, for a
//! fragment it was in the middle of, delivers the rest of its frames once
//! the fragment is committed — no duplicates, no gaps. A fragment dropped
//! by the writer after its start was delivered ends with
//! [`CursorItem::FragmentAborted`].

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fragmenter::{Frame, Timestamp};

use super::index;
use super::live::LiveEvent;
use super::{lock, FragmentHead, FragmentId, FragmentMeta, Store, StoreError, StoredFragment, StreamShared};

/// Where a cursor starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorFrom {
    /// The oldest fragment held.
    Oldest,
    /// This fragment (or, if it is gone, the next one).
    Fragment(FragmentId),
    /// The fragment containing this time, or the first after it.
    Time(Timestamp),
    /// The fragment being written now (from its first frame), or the next.
    Live,
}

/// What a cursor yields: for each fragment a start, its frames, an end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorItem {
    /// A fragment begins.
    FragmentStart(FragmentHead),
    /// A frame of the current fragment.
    Frame(Frame),
    /// The current fragment is complete and durable.
    FragmentEnd(FragmentMeta),
    /// The current fragment was dropped before completion (disk full,
    /// refused, writer closed); discard what was received of it.
    FragmentAborted(FragmentId),
}

enum Mode {
    Disk,
    /// At `seq` in the live tail; `cur` is the fragment being delivered and
    /// how many of its frames went out.
    Live {
        seq: u64,
        cur: Option<(u64, usize)>,
    },
}

enum Step {
    Item(CursorItem),
    Wait(u64),
}

/// A reader of one stream. See the module docs.
pub struct Cursor {
    store: Store,
    stream: Arc<StreamShared>,
    /// The first fragment id not yet delivered.
    next_min: u64,
    /// A fragment partly delivered from the live tail: id, frames delivered.
    resume: Option<(u64, usize)>,
    mode: Mode,
    pending: VecDeque<CursorItem>,
}

impl std::fmt::Debug for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("stream", &self.stream.name)
            .field("next", &self.next_min)
            .finish()
    }
}

impl Cursor {
    pub(crate) fn new(store: Store, stream: Arc<StreamShared>, from: CursorFrom) -> Result<Cursor, StoreError> {
        let next_min = match from {
            CursorFrom::Oldest => 0,
            CursorFrom::Fragment(id) => id.0,
            CursorFrom::Time(t) => {
                // Read the tail's position first: anything committed after
                // this has a higher id and is found from there.
                let committed = stream.live.lock().last_committed;
                match index::first_ending_after(&lock(&store.inner.reader), stream.id, t)? {
                    Some(id) => id,
                    None => committed.map_or(0, |c| c.0 + 1),
                }
            }
            CursorFrom::Live => {
                let r = stream.live.lock();
                match r.open {
                    Some(id) => id.0,
                    None => r.last_committed.map_or(0, |c| c.0 + 1),
                }
            }
        };
        Ok(Cursor {
            store,
            stream,
            next_min,
            resume: None,
            mode: Mode::Disk,
            pending: VecDeque::new(),
        })
    }

    /// The stream's name.
    pub fn stream(&self) -> &str {
        &self.stream.name
    }

    /// True while following the live tail (caught up).
    pub fn is_live(&self) -> bool {
        matches!(self.mode, Mode::Live { .. }) && self.pending.is_empty()
    }

    /// The next item if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Result<Option<CursorItem>, StoreError> {
        match self.step()? {
            Step::Item(i) => Ok(Some(i)),
            Step::Wait(_) => Ok(None),
        }
    }

    /// The next item, waiting up to `timeout` for the writer; `None` when
    /// nothing came.
    pub fn next_blocking(&mut self, timeout: Duration) -> Result<Option<CursorItem>, StoreError> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.step()? {
                Step::Item(i) => return Ok(Some(i)),
                Step::Wait(seq) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    let g = self.stream.live.lock();
                    drop(self.stream.live.wait(g, seq, deadline - now));
                }
            }
        }
    }

    /// The next item, waiting as long as it takes. Disk reads happen inline
    /// (a fragment is one read of about a megabyte).
    pub async fn next(&mut self) -> Result<CursorItem, StoreError> {
        let stream = self.stream.clone();
        loop {
            let _waiting = stream.live.waiting();
            let notified = stream.live.notify().notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            match self.step()? {
                Step::Item(i) => return Ok(i),
                Step::Wait(_) => notified.await,
            }
        }
    }

    /// Queue a fragment read from disk. `resumed`: its start and its first
    /// `skip` frames were already delivered from the live tail.
    fn queue_fragment(&mut self, frag: StoredFragment, resumed: bool, skip: usize) {
        let id = frag.meta.id;
        if !resumed {
            self.pending.push_back(CursorItem::FragmentStart(FragmentHead {
                id,
                stream: frag.meta.stream.clone(),
                seq: frag.meta.seq,
                start: frag.meta.start,
                tracks: frag.tracks.clone(),
            }));
        }
        self.pending
            .extend(frag.frames.into_iter().skip(skip).map(CursorItem::Frame));
        self.pending.push_back(CursorItem::FragmentEnd(frag.meta));
        self.next_min = id.0 + 1;
    }

    /// `Ok(None)`: not (or no longer) in the index.
    fn read(&self, id: u64) -> Result<Option<StoredFragment>, StoreError> {
        match self.store.read_fragment(FragmentId(id)) {
            Ok(f) => Ok(Some(f)),
            Err(StoreError::FragmentNotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn aborted(&mut self, id: u64) -> Step {
        self.resume = None;
        self.next_min = self.next_min.max(id + 1);
        Step::Item(CursorItem::FragmentAborted(FragmentId(id)))
    }

    fn step(&mut self) -> Result<Step, StoreError> {
        loop {
            if let Some(i) = self.pending.pop_front() {
                return Ok(Step::Item(i));
            }
            match &mut self.mode {
                Mode::Disk => {
                    if let Some((id, skip)) = self.resume {
                        if let Some(frag) = self.read(id)? {
                            self.resume = None;
                            self.queue_fragment(frag, true, skip);
                            continue;
                        }
                        let (committed, open, next_seq) = {
                            let r = self.stream.live.lock();
                            (r.last_committed, r.open, r.next_seq())
                        };
                        if committed.is_some_and(|c| c.0 >= id) {
                            // Committed after our read; or committed and
                            // already deleted by retention.
                            if let Some(frag) = self.read(id)? {
                                self.resume = None;
                                self.queue_fragment(frag, true, skip);
                                continue;
                            }
                            return Ok(self.aborted(id));
                        }
                        if open == Some(FragmentId(id)) {
                            // Still being written: wait for its end.
                            self.mode = Mode::Live {
                                seq: next_seq,
                                cur: None,
                            };
                            continue;
                        }
                        return Ok(self.aborted(id));
                    }
                    let row = index::next_fragment(&lock(&self.store.inner.reader), self.stream.id, self.next_min)?;
                    match row {
                        Some(row) => {
                            let id = row.id;
                            match self.store.load(row) {
                                Ok(frag) => self.queue_fragment(frag, false, 0),
                                // Deleted by retention since the query.
                                Err(StoreError::FragmentNotFound(_)) => self.next_min = id + 1,
                                Err(e) => return Err(e),
                            }
                        }
                        None => {
                            let r = self.stream.live.lock();
                            if r.last_committed.is_some_and(|c| c.0 >= self.next_min) {
                                continue; // committed since the query
                            }
                            let seq = r.find_start(self.next_min).unwrap_or_else(|| r.next_seq());
                            drop(r);
                            self.mode = Mode::Live { seq, cur: None };
                        }
                    }
                }
                Mode::Live { seq, cur } => {
                    let ev = {
                        let r = self.stream.live.lock();
                        if *seq < r.first_seq() {
                            drop(r);
                            self.store.inner.counters.cursor_lags.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(stream = %self.stream.name, "cursor fell out of the live tail; reading from disk");
                            if let Some(c) = *cur {
                                self.resume = Some(c);
                            }
                            self.mode = Mode::Disk;
                            continue;
                        }
                        match r.get(*seq) {
                            Some(ev) => ev.clone(),
                            None => return Ok(Step::Wait(*seq)),
                        }
                    };
                    *seq += 1;
                    match ev {
                        LiveEvent::Start(h) => {
                            if self.resume.is_some_and(|(rid, _)| h.id.0 > rid) {
                                // Its end went by unseen: settle it on disk.
                                self.mode = Mode::Disk;
                                continue;
                            }
                            if cur.is_none() && self.resume.is_none() && h.id.0 >= self.next_min {
                                *cur = Some((h.id.0, 0));
                                return Ok(Step::Item(CursorItem::FragmentStart((*h).clone())));
                            }
                        }
                        LiveEvent::Frame(f) => {
                            if let Some((_, k)) = cur {
                                *k += 1;
                                return Ok(Step::Item(CursorItem::Frame(f)));
                            }
                        }
                        LiveEvent::End(m) => {
                            if cur.is_some_and(|(id, _)| id == m.id.0) {
                                *cur = None;
                                self.next_min = m.id.0 + 1;
                                return Ok(Step::Item(CursorItem::FragmentEnd((*m).clone())));
                            }
                            if m.id.0 >= self.next_min {
                                // Committed but we missed its start: read it.
                                self.mode = Mode::Disk;
                            }
                        }
                        LiveEvent::Abort(id) => {
                            if cur.is_some_and(|(c, _)| c == id.0) {
                                *cur = None;
                                return Ok(self.aborted(id.0));
                            }
                            if self.resume.is_some_and(|(r, _)| r == id.0) {
                                return Ok(self.aborted(id.0));
                            }
                            if id.0 >= self.next_min {
                                self.next_min = id.0 + 1;
                            }
                        }
                    }
                }
            }
        }
    }
}
