//! Wall-clock time for retention and bookkeeping, behind a trait so tests can
//! make retention deterministic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fragmenter::Timestamp;

/// Where the store gets "now" from: the age of media, when a fragment was
/// written, when a stream was denied.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Absolute UTC now.
    fn now(&self) -> Timestamp;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Timestamp::from_nanos(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    }
}

/// A clock that moves only when told: for tests of retention.
#[derive(Debug)]
pub struct TestClock(AtomicU64);

impl TestClock {
    /// A clock reading `t`.
    pub fn new(t: Timestamp) -> Self {
        TestClock(AtomicU64::new(t.as_nanos()))
    }

    /// Set the time.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.as_nanos(), Ordering::SeqCst);
    }

    /// Move the time forward.
    pub fn advance(&self, d: Duration) {
        self.0
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_nanos(self.0.load(Ordering::SeqCst))
    }
}
