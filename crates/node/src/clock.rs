//! The clock the node's policies run on: milliseconds since the node started. Tests replace it
//! with a [`ManualClock`] and drive the keeper with [`crate::Node::tick`], so that what the
//! keep-alive policies do is checked by the clock's reading, not by sleeping.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kindling_scheduler::Millis;

/// A source of the node's time.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the node started.
    fn now(&self) -> Millis;
}

/// The real clock.
#[derive(Debug)]
pub struct SystemClock(Instant);

impl Default for SystemClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        self.0.elapsed().as_millis() as Millis
    }
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    /// Moves the clock forward.
    pub fn advance(&self, ms: Millis) {
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.0.load(Ordering::Relaxed)
    }
}
