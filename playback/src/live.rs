//! The live packager: per stream, a thread that follows the fragment being
//! written and keeps the last few segments, cut into parts, in memory.
//!
//! LL-HLS playlists, parts and the recent segments are answered from here;
//! DASH builds its live timeline from the same segments. A packager starts
//! on the first request for its stream and stops after
//! [`PlaybackOptions::live_idle`](crate::http::PlaybackOptions) without one,
//! so a camera nobody watches costs no thread.
//!
//! Media sequence numbers count segments since the packager started. An
//! aborted fragment takes its parts with it; the next fragment reuses its
//! sequence number after a discontinuity, because sequence numbers in a
//! playlist must have no holes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fragmenter::{Frame, Timestamp};
use tokio::sync::watch;

use crate::archive::{Archive, ArchiveError, FragmentSummary, LiveFeed, LiveItem};
use crate::segments::{self, Part, SegmentBuilder, Tracks};

/// Complete segments kept in the window.
pub const WINDOW: usize = 6;
/// A pause longer than this between fragments is a gap: a discontinuity.
pub const GAP: Duration = Duration::from_secs(1);
/// How long a feed read waits before the thread looks at its stop flags.
const POLL: Duration = Duration::from_millis(250);
/// How long an ended segment waits for the next one to start before it is
/// published alone (see [`Worker::held_end`]).
const END_GRACE: Duration = Duration::from_millis(200);

/// One media segment in the live window.
#[derive(Clone, Debug)]
pub struct LiveSegment {
    /// The fragment's id: names its URIs.
    pub id: u64,
    /// Media sequence number.
    pub msn: u64,
    /// The fragment id whose tracks made the init segment in use.
    pub init_id: u64,
    /// When that init segment came into use (DASH period start).
    pub init_start: Timestamp,
    /// The fragment's tracks.
    pub tracks: Tracks,
    /// A discontinuity comes before it (new tracks, a gap, an abort).
    pub discontinuity: bool,
    /// Its first frame's presentation time.
    pub start: Timestamp,
    /// Its end (the fragment's, once complete).
    pub end: Timestamp,
    /// `styp`.
    pub styp: Bytes,
    /// Its parts so far.
    pub parts: Vec<Part>,
    /// Whether the fragment ended (durable in the archive).
    pub complete: bool,
}

impl LiveSegment {
    /// The sum of its parts' durations.
    pub fn duration(&self) -> Duration {
        self.parts.iter().map(|p| p.duration).sum()
    }

    /// Its bytes: `styp` and every part.
    pub fn chunks(&self) -> Vec<Bytes> {
        let mut out = vec![self.styp.clone()];
        for p in &self.parts {
            out.extend(p.chunks.iter().cloned());
        }
        out
    }
}

/// What a packager knows; read under its lock.
#[derive(Debug, Default)]
pub struct LiveState {
    /// Complete segments, oldest first, then the open one (if any).
    pub segments: VecDeque<LiveSegment>,
    /// Init segments by the fragment id that introduced their tracks.
    pub inits: BTreeMap<u64, Bytes>,
    /// Discontinuities before the first segment of the window.
    pub discontinuity_sequence: u64,
    /// The sequence number the next segment gets.
    pub next_msn: u64,
    /// The longest segment seen, in whole seconds (rounded): the target
    /// duration only grows, as HLS requires it to stay put.
    pub target_duration: u64,
    /// The longest part seen (at most the part target unless one frame
    /// lasts longer).
    pub longest_part: Duration,
    /// The first load (follow + recent fragments) is done.
    pub ready: bool,
    /// The feed failed; the packager stopped.
    pub failed: Option<String>,
    /// A discontinuity is owed to the next segment.
    pending_discontinuity: bool,
}

impl LiveState {
    /// The segment being written, if any.
    pub fn open(&self) -> Option<&LiveSegment> {
        self.segments.back().filter(|s| !s.complete)
    }

    /// The segment with fragment id `id`.
    pub fn segment(&self, id: u64) -> Option<&LiveSegment> {
        self.segments.iter().find(|s| s.id == id)
    }

    /// The segment with media sequence number `msn`.
    pub fn by_msn(&self, msn: u64) -> Option<&LiveSegment> {
        self.segments.iter().find(|s| s.msn == msn)
    }

    /// Complete segments only.
    pub fn complete(&self) -> impl Iterator<Item = &LiveSegment> {
        self.segments.iter().filter(|s| s.complete)
    }

    fn last_end(&self) -> Option<Timestamp> {
        self.segments.back().map(|s| s.end)
    }

    fn current_init(&self) -> Option<(u64, Timestamp, Tracks)> {
        self.segments
            .back()
            .map(|s| (s.init_id, s.init_start, s.tracks.clone()))
    }

    /// Begin a segment for fragment `id`; reuses the init segment when the
    /// media tracks are unchanged.
    fn begin(&mut self, id: u64, start: Timestamp, tracks: Tracks, styp: Bytes, init: impl FnOnce() -> Option<Bytes>) {
        let gap = self
            .last_end()
            .is_some_and(|end| start.saturating_since(end) > GAP || start < end.checked_sub(GAP).unwrap_or(end));
        let (init_id, init_start, new_tracks) = match self.current_init() {
            Some((init_id, init_start, current)) if segments::same_media(&current, &tracks) => {
                (init_id, init_start, false)
            }
            previous => {
                if let Some(bytes) = init() {
                    self.inits.insert(id, bytes);
                }
                (id, start, previous.is_some())
            }
        };
        let discontinuity = std::mem::take(&mut self.pending_discontinuity) || gap || new_tracks;
        let msn = self.next_msn;
        self.next_msn += 1;
        self.segments.push_back(LiveSegment {
            id,
            msn,
            init_id,
            init_start,
            tracks,
            discontinuity,
            start,
            end: start,
            styp,
            parts: Vec::new(),
            complete: false,
        });
    }

    fn add_parts(&mut self, parts: Vec<Part>) {
        for p in &parts {
            self.longest_part = self.longest_part.max(p.duration);
        }
        if let Some(open) = self.segments.back_mut().filter(|s| !s.complete) {
            if let Some(end) = parts.iter().map(|p| p.info.end).max() {
                open.end = open.end.max(end);
            }
            open.parts.extend(parts);
        }
    }

    fn end(&mut self, summary: &FragmentSummary) {
        if let Some(open) = self.segments.back_mut().filter(|s| !s.complete && s.id == summary.id) {
            open.complete = true;
            open.end = summary.end;
            let secs = open.duration().as_secs_f64().round() as u64;
            self.target_duration = self.target_duration.max(secs).max(1);
        }
        self.trim();
    }

    fn abort(&mut self) {
        if self.open().is_some() {
            self.segments.pop_back();
            self.next_msn -= 1;
            self.pending_discontinuity = true;
        }
    }

    fn trim(&mut self) {
        while self.complete().count() > WINDOW {
            match self.segments.pop_front() {
                Some(s) if s.discontinuity => self.discontinuity_sequence += 1,
                _ => {}
            }
        }
        let live: Vec<u64> = self.segments.iter().map(|s| s.init_id).collect();
        self.inits.retain(|id, _| live.contains(id));
    }
}

/// One stream's packager, shared by its thread and the request handlers.
pub struct Packager {
    stream: String,
    state: Mutex<LiveState>,
    changed: watch::Sender<u64>,
    last_request: Mutex<Instant>,
    stop: AtomicBool,
    dead: AtomicBool,
}

impl Packager {
    /// Its state, locked. Never hold it across an await.
    pub fn state(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Note a request: keeps the packager running.
    pub fn touch(&self) {
        *self.last_request.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    /// The stream followed.
    pub fn stream(&self) -> &str {
        &self.stream
    }

    fn idle_for(&self) -> Duration {
        self.last_request.lock().unwrap_or_else(|e| e.into_inner()).elapsed()
    }

    fn notify(&self) {
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Wait until `check` finds what it looks for in the state, or `limit`
    /// passes (`None`), or the packager stops (`check` gets a last look).
    pub async fn wait_for<T>(&self, limit: Duration, mut check: impl FnMut(&LiveState) -> Option<T>) -> Option<T> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut rx = self.changed.subscribe();
        loop {
            rx.borrow_and_update();
            if let Some(found) = check(&self.state()) {
                return Some(found);
            }
            if self.dead.load(Ordering::Acquire) {
                return None;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                _ => return check(&self.state()),
            }
        }
    }

    /// Whether its thread has stopped (idle, failed, or told to).
    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Acquire)
    }
}

/// The packagers of all streams, started on demand.
pub struct LiveHub {
    archive: Arc<dyn Archive>,
    part_target: Duration,
    idle: Duration,
    packagers: Mutex<HashMap<String, Arc<Packager>>>,
}

impl LiveHub {
    /// No packager runs until [`LiveHub::get_or_start`].
    pub fn new(archive: Arc<dyn Archive>, part_target: Duration, idle: Duration) -> Self {
        LiveHub {
            archive,
            part_target,
            idle,
            packagers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<Packager>>> {
        self.packagers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running packager of `stream`, if any (does not start one).
    pub fn get(&self, stream: &str) -> Option<Arc<Packager>> {
        let p = self.lock().get(stream).filter(|p| !p.is_dead()).cloned();
        if let Some(p) = &p {
            p.touch();
        }
        p
    }

    /// The packager of `stream`, starting its thread if none runs. The
    /// caller checked that the stream exists.
    pub fn get_or_start(&self, stream: &str) -> std::io::Result<Arc<Packager>> {
        let mut map = self.lock();
        if let Some(p) = map.get(stream).filter(|p| !p.is_dead()) {
            p.touch();
            return Ok(p.clone());
        }
        let packager = Arc::new(Packager {
            stream: stream.to_owned(),
            state: Mutex::new(LiveState::default()),
            changed: watch::channel(0).0,
            last_request: Mutex::new(Instant::now()),
            stop: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        });
        let worker = Worker {
            packager: packager.clone(),
            archive: self.archive.clone(),
            part_target: self.part_target,
            idle: self.idle,
            builder: None,
            skip: None,
            held_end: None,
            last_ended: None,
        };
        std::thread::Builder::new()
            .name(format!("live-{stream}"))
            .spawn(move || worker.run())?;
        tracing::info!(stream, "live packager started");
        map.insert(stream.to_owned(), packager.clone());
        Ok(packager)
    }

    /// Tell every packager thread to stop (they exit within a poll).
    pub fn stop_all(&self) {
        for p in self.lock().values() {
            p.stop.store(true, Ordering::Release);
        }
    }

    /// Streams with a running packager.
    pub fn running(&self) -> Vec<String> {
        self.lock()
            .iter()
            .filter(|(_, p)| !p.is_dead())
            .map(|(s, _)| s.clone())
            .collect()
    }
}

/// The thread side of a packager.
struct Worker {
    packager: Arc<Packager>,
    archive: Arc<dyn Archive>,
    part_target: Duration,
    idle: Duration,
    builder: Option<(u64, SegmentBuilder)>,
    /// A fragment already loaded from the archive whose live items to skip.
    skip: Option<u64>,
    /// An ended segment's last parts and summary, not yet published.
    ///
    /// A playlist whose last segment has just completed, with no open
    /// segment and so no preload hint after it, throws hls.js's timeline
    /// off by whole segments when the same reload also slides the window:
    /// it then buffers parts at the wrong place and stalls over the hole.
    /// The recorder starts the next fragment within milliseconds of ending
    /// one, so the end is held until that start and both are published in
    /// one change: every playlist then ends with a part or a preload hint,
    /// as in Apple's examples. After [`END_GRACE`] without a start (the
    /// source stopped) the end is published alone.
    held_end: Option<(FragmentSummary, Vec<Part>, Instant)>,
    /// The last fragment that ended: the next one's expected length
    /// (`segments::expected_length`).
    last_ended: Option<FragmentSummary>,
}

impl Worker {
    fn run(mut self) {
        let stream = self.packager.stream.clone();
        let outcome = self.follow();
        let mut state = self.packager.state();
        if let Err(e) = &outcome {
            tracing::warn!(stream, error = %e, "live packager stopped");
            state.failed = Some(e.to_string());
        } else {
            tracing::info!(stream, "live packager stopped: no viewer");
        }
        // Nothing is served from a dead packager: free the window now.
        state.segments.clear();
        state.inits.clear();
        drop(state);
        self.packager.dead.store(true, Ordering::Release);
        self.packager.notify();
    }

    fn follow(&mut self) -> Result<(), ArchiveError> {
        let mut feed: Box<dyn LiveFeed> = self.archive.follow(&self.packager.stream)?;
        self.load_recent();
        // Catch up with the open fragment before the first answer, so the
        // first playlist already ends at the live edge.
        while let Some(item) = feed.next(Duration::ZERO)? {
            self.apply(item);
        }
        self.packager.state().ready = true;
        self.packager.notify();
        loop {
            if self.packager.stop.load(Ordering::Acquire) || self.packager.idle_for() > self.idle {
                return Ok(());
            }
            let wait = match &self.held_end {
                Some((_, _, since)) => END_GRACE.saturating_sub(since.elapsed()),
                None => POLL,
            };
            match feed.next(wait)? {
                Some(item) => self.apply(item),
                None => {
                    if self
                        .held_end
                        .as_ref()
                        .is_some_and(|(_, _, since)| since.elapsed() >= END_GRACE)
                    {
                        self.release_end();
                        self.packager.notify();
                    }
                }
            }
        }
    }

    /// Publish a held end (see [`Worker::held_end`]) into `state`.
    fn release_end_into(&mut self, state: &mut LiveState) {
        if let Some((summary, parts, _)) = self.held_end.take() {
            state.add_parts(parts);
            state.end(&summary);
        }
    }

    fn release_end(&mut self) {
        let packager = self.packager.clone();
        let mut state = packager.state();
        self.release_end_into(&mut state);
    }

    /// Fill the window with the last complete fragments, so a viewer
    /// starts with a full playlist rather than one part.
    fn load_recent(&mut self) {
        let stream = self.packager.stream.clone();
        let recent = self.archive.stream(&stream).and_then(|s| match s.ranges.last() {
            Some(&(_, end)) => {
                let from = end.checked_sub(Duration::from_secs(120)).unwrap_or(Timestamp::EPOCH);
                self.archive.fragments(&stream, from, Timestamp::from_nanos(u64::MAX))
            }
            None => Ok(Vec::new()),
        });
        let recent = match recent {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(stream, error = %e, "live packager starts without recent fragments");
                Vec::new()
            }
        };
        let skip = recent.len().saturating_sub(WINDOW);
        for (i, summary) in recent.iter().enumerate().skip(skip) {
            let fragment = match self.archive.read_fragment(&stream, summary.id) {
                Ok(f) => f,
                Err(e) => {
                    tracing::debug!(stream, id = summary.id, error = %e, "recent fragment not loaded");
                    continue;
                }
            };
            // As an archive rebuild plans it (its predecessor, from the
            // archive), so both cut the same parts.
            let expected = match i.checked_sub(1).map(|j| &recent[j]) {
                Some(p) => segments::expected_length(Some(p), summary.start),
                None => segments::expected_length_in(self.archive.as_ref(), &stream, summary),
            };
            let segment = match segments::render_fragment(&fragment, self.part_target, expected) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(stream, id = summary.id, error = %e, "recent fragment not packaged");
                    continue;
                }
            };
            let mut state = self.packager.state();
            let tracks = fragment.tracks.clone();
            state.begin(summary.id, summary.start, tracks.clone(), segment.styp, || {
                segments::init_segment(&tracks).ok()
            });
            state.add_parts(segment.parts);
            state.end(summary);
            self.skip = Some(summary.id);
            self.last_ended = Some(*summary);
        }
    }

    fn apply(&mut self, item: LiveItem) {
        let packager = self.packager.clone();
        let stream = packager.stream();
        match item {
            LiveItem::Start { id, start, tracks } => {
                if self.skip.is_some_and(|last| id <= last) {
                    // Loaded from the archive already; its live items follow.
                    self.skip = Some(id);
                    self.builder = None;
                    return;
                }
                self.skip = None;
                let mut state = packager.state();
                self.release_end_into(&mut state);
                // A Start without the previous End: that fragment is gone.
                state.abort();
                let expected = segments::expected_length(self.last_ended.as_ref().filter(|p| p.id < id), start);
                match SegmentBuilder::new(&tracks, self.part_target, expected) {
                    Ok(builder) => {
                        let styp = builder.styp();
                        self.builder = Some((id, builder));
                        state.begin(id, start, tracks.clone(), styp, || segments::init_segment(&tracks).ok());
                    }
                    Err(e) => {
                        tracing::warn!(stream, id, error = %e, "fragment not packaged for live viewing");
                        self.builder = None;
                    }
                }
            }
            LiveItem::Frame(frame) => self.frame(&frame),
            LiveItem::End(summary) => {
                if self.skip == Some(summary.id) {
                    self.skip = None;
                    return;
                }
                let Some((id, mut builder)) = self.builder.take() else {
                    return;
                };
                if id != summary.id {
                    return;
                }
                if let Err(e) = builder.finish() {
                    segments::skipped_frame(id, &e);
                }
                // Published with the next Start, or after END_GRACE.
                self.release_end();
                self.last_ended = Some(summary);
                self.held_end = Some((summary, builder.take_parts(), Instant::now()));
                return;
            }
            LiveItem::Aborted(id) => {
                if self.skip == Some(id) {
                    self.skip = None;
                    return;
                }
                tracing::debug!(stream, id, "fragment aborted: its parts are dropped");
                self.builder = None;
                self.release_end();
                self.packager.state().abort();
            }
        }
        self.packager.notify();
    }

    fn frame(&mut self, frame: &Frame) {
        let Some((id, builder)) = self.builder.as_mut() else {
            return;
        };
        if let Err(e) = builder.push(frame) {
            segments::skipped_frame(*id, &e);
        }
        let parts = builder.take_parts();
        if !parts.is_empty() {
            self.packager.state().add_parts(parts);
            self.packager.notify();
        }
    }
}
