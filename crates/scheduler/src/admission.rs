//! Admission control. A request takes a slot of its function's [`Lane`] (waiting in a
//! bounded FIFO queue, for a bounded time, when the function is at its concurrency limit),
//! then a slot of the node, whose ceiling depends on the function's [`Priority`]. Anything
//! that cannot be admitted is refused at once with the reason, never queued without bound.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::quota::{Account, Quota, QuotaPermit};

/// A function's priority class. Under overload, lower classes are shed first: each class may
/// fill only its share of the node's in-flight limit, which leaves the rest for higher ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// May use the whole node.
    Critical,
    /// May use the normal share (80% by default).
    #[default]
    Normal,
    /// May use the batch share (50% by default).
    Batch,
}

impl Priority {
    /// The name used in configuration and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Critical => "critical",
            Self::Normal => "normal",
            Self::Batch => "batch",
        }
    }
}

impl std::str::FromStr for Priority {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "critical" => Ok(Self::Critical),
            "normal" => Ok(Self::Normal),
            "batch" => Ok(Self::Batch),
            other => Err(format!(
                "unknown priority {other:?}: use critical, normal or batch"
            )),
        }
    }
}

/// Node-wide admission settings.
#[derive(Debug, Clone, Copy)]
pub struct AdmissionConfig {
    /// Requests running at once on the node, across functions.
    pub max_in_flight: u32,
    /// Fraction of `max_in_flight` that normal-priority requests may fill.
    pub normal_share: f64,
    /// Fraction of `max_in_flight` that batch-priority requests may fill.
    pub batch_share: f64,
    /// Memory the requests running at once may reserve together (each its function's
    /// memory limit and buffers); `None` for no limit.
    pub memory_budget_bytes: Option<u64>,
    /// How long a critical request that finds the node full waits for a slot before it is
    /// shed; other classes are shed at once.
    pub critical_wait: Duration,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        Self {
            max_in_flight: 512,
            normal_share: 0.8,
            batch_share: 0.5,
            memory_budget_bytes: None,
            critical_wait: Duration::from_millis(250),
        }
    }
}

/// A function's admission settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LaneConfig {
    /// Requests of this function running at once; `None` leaves only the node's limit.
    pub max_concurrency: Option<u32>,
    /// Requests that may wait for a slot when the function is at its limit.
    pub queue_len: u32,
    /// How long a request may wait in the queue.
    pub queue_timeout: Duration,
    /// The function's priority class.
    pub priority: Priority,
    /// Memory one of its requests reserves from the node's budget while it runs.
    pub memory_bytes: u64,
}

impl Default for LaneConfig {
    fn default() -> Self {
        Self {
            max_concurrency: None,
            queue_len: 64,
            queue_timeout: Duration::from_secs(5),
            priority: Priority::Normal,
            memory_bytes: 0,
        }
    }
}

/// Why a request was not admitted. Each maps to one status code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The node is full for this priority class (503).
    #[error(
        "the node is overloaded: {priority} requests may fill {limit} of its in-flight slots and all are taken"
    )]
    NodeOverloaded {
        /// The class that was refused.
        priority: &'static str,
        /// Its ceiling.
        limit: u32,
    },
    /// The function is at its concurrency limit and has no queue (429).
    #[error("the function is at its concurrency limit of {limit}")]
    FunctionBusy {
        /// The limit.
        limit: u32,
    },
    /// The function's queue is full (429).
    #[error(
        "the function is at its concurrency limit of {limit} and its queue of {queue_len} is full"
    )]
    QueueFull {
        /// The concurrency limit.
        limit: u32,
        /// The queue length.
        queue_len: u32,
    },
    /// The request waited in the queue for as long as allowed (429).
    #[error("the request waited {waited:?} for a slot of the function, its queue timeout")]
    QueueTimeout {
        /// How long it waited.
        waited: Duration,
    },
    /// The request's namespace is over its quota (429).
    #[error("{0}")]
    OverQuota(String),
    /// The requests running now have reserved the node's memory budget (503).
    #[error(
        "the node is out of memory for requests: those running have reserved {reserved} bytes \
         of its budget of {budget} and this one needs {need}"
    )]
    MemoryFull {
        /// Bytes reserved by the requests running.
        reserved: u64,
        /// The budget.
        budget: u64,
        /// What this request would reserve.
        need: u64,
    },
}

impl Rejection {
    /// The HTTP status: 503 when the node is overloaded, 429 when the function or its tenant is
    /// at a limit.
    pub fn status(&self) -> u16 {
        match self {
            Self::NodeOverloaded { .. } | Self::MemoryFull { .. } => 503,
            _ => 429,
        }
    }

    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NodeOverloaded { .. } => "node_overloaded",
            Self::FunctionBusy { .. } => "concurrency_limit",
            Self::QueueFull { .. } => "queue_full",
            Self::QueueTimeout { .. } => "queue_timeout",
            Self::OverQuota(_) => "over_quota",
            Self::MemoryFull { .. } => "node_memory_full",
        }
    }
}

/// The node's admission controller.
pub struct Admission {
    config: AdmissionConfig,
    in_flight: AtomicU32,
    /// Memory reserved by the requests running.
    reserved: AtomicU64,
    /// Woken when a request finishes, for critical requests waiting for a slot.
    freed: tokio::sync::Notify,
    quota: Arc<dyn Quota>,
    rejected: [AtomicU64; 6],
}

impl Admission {
    /// An admission controller with a quota hook.
    pub fn new(config: AdmissionConfig, quota: Arc<dyn Quota>) -> Arc<Self> {
        Arc::new(Self {
            config,
            in_flight: AtomicU32::new(0),
            reserved: AtomicU64::new(0),
            freed: tokio::sync::Notify::new(),
            quota,
            rejected: Default::default(),
        })
    }

    /// The settings.
    pub fn config(&self) -> AdmissionConfig {
        self.config
    }

    /// Requests running on the node now.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Memory reserved by the requests running now.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved.load(Ordering::Relaxed)
    }

    /// Rejections so far, by code.
    pub fn rejected(&self) -> Vec<(&'static str, u64)> {
        REJECTION_CODES
            .iter()
            .zip(&self.rejected)
            .map(|(code, n)| (*code, n.load(Ordering::Relaxed)))
            .collect()
    }

    /// The most requests of a class the node runs at once.
    pub fn limit_for(&self, priority: Priority) -> u32 {
        let share = match priority {
            Priority::Critical => 1.0,
            Priority::Normal => self.config.normal_share,
            Priority::Batch => self.config.batch_share,
        };
        ((self.config.max_in_flight as f64 * share).ceil() as u32)
            .clamp(1, self.config.max_in_flight)
    }

    /// Admits a request of `lane` accounted to `account`, waiting in the lane's queue if it
    /// must, or says why not.
    pub async fn admit(
        self: &Arc<Self>,
        lane: &Arc<Lane>,
        account: &Account,
    ) -> Result<Permit, Rejection> {
        let result = self.try_admit(lane, account).await;
        if let Err(rejection) = &result {
            let index = REJECTION_CODES
                .iter()
                .position(|c| *c == rejection.code())
                .unwrap_or(0);
            self.rejected[index].fetch_add(1, Ordering::Relaxed);
            lane.rejected.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    async fn try_admit(
        self: &Arc<Self>,
        lane: &Arc<Lane>,
        account: &Account,
    ) -> Result<Permit, Rejection> {
        let quota = self.quota.admit(account).map_err(Rejection::OverQuota)?;
        let slot = lane.acquire().await?;
        let priority = lane.config.priority;
        let need = lane.config.memory_bytes;
        // A critical request may wait briefly for a request to finish; the others are shed
        // at once, so that overload never builds a queue in front of the node.
        let deadline = (priority == Priority::Critical && !self.config.critical_wait.is_zero())
            .then(|| Instant::now() + self.config.critical_wait);
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            match self.take(priority, need) {
                Ok(()) => break,
                Err(rejection) => match deadline {
                    Some(deadline) if Instant::now() < deadline => {
                        let _ = tokio::time::timeout_at(deadline, freed).await;
                    }
                    _ => {
                        drop(slot);
                        return Err(rejection);
                    }
                },
            }
        }
        Ok(Permit {
            slot: Some(slot),
            admission: self.clone(),
            memory: need,
            _quota: quota,
        })
    }

    /// Takes a node slot and `need` bytes of the memory budget, or neither.
    fn take(&self, priority: Priority, need: u64) -> Result<(), Rejection> {
        let limit = self.limit_for(priority);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .map_err(|_| Rejection::NodeOverloaded {
                priority: priority.as_str(),
                limit,
            })?;
        let Some(budget) = self.config.memory_budget_bytes else {
            return Ok(());
        };
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                reserved.checked_add(need).filter(|total| *total <= budget)
            })
            .map(|_| ())
            .map_err(|reserved| {
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                Rejection::MemoryFull {
                    reserved,
                    budget,
                    need,
                }
            })
    }
}

const REJECTION_CODES: [&str; 6] = [
    "node_overloaded",
    "concurrency_limit",
    "queue_full",
    "queue_timeout",
    "over_quota",
    "node_memory_full",
];

/// One function's admission state: its slots, its queue, and the load it has seen.
pub struct Lane {
    config: LaneConfig,
    state: Mutex<LaneState>,
    rejected: AtomicU64,
    admitted: AtomicU64,
}

struct LaneState {
    in_flight: u32,
    waiters: VecDeque<oneshot::Sender<Slot>>,
    /// In-flight requests integrated over time since the last [`Lane::sample`], for the
    /// autoscaler's average concurrency.
    area: f64,
    changed: Instant,
    sampled: Instant,
}

impl Lane {
    /// A lane with its settings.
    pub fn new(config: LaneConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: Mutex::new(LaneState {
                in_flight: 0,
                waiters: VecDeque::new(),
                area: 0.0,
                changed: Instant::now(),
                sampled: Instant::now(),
            }),
            rejected: AtomicU64::new(0),
            admitted: AtomicU64::new(0),
        })
    }

    /// Its settings.
    pub fn config(&self) -> LaneConfig {
        self.config
    }

    /// Requests of this function running now.
    pub fn in_flight(&self) -> u32 {
        self.lock().in_flight
    }

    /// Requests waiting in its queue now.
    pub fn queued(&self) -> usize {
        let mut state = self.lock();
        state.waiters.retain(|waiter| !waiter.is_closed());
        state.waiters.len()
    }

    /// Requests admitted and refused so far.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.admitted.load(Ordering::Relaxed),
            self.rejected.load(Ordering::Relaxed),
        )
    }

    /// The average number of requests in flight since the previous sample.
    pub fn sample(&self, now: Instant) -> f64 {
        let mut state = self.lock();
        integrate(&mut state, now);
        let elapsed = now.saturating_duration_since(state.sampled).as_secs_f64();
        let average = if elapsed > 0.0 {
            state.area / elapsed
        } else {
            state.in_flight as f64
        };
        state.area = 0.0;
        state.sampled = now;
        average
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().expect("lane state")
    }

    async fn acquire(self: &Arc<Self>) -> Result<Slot, Rejection> {
        let limit = self.config.max_concurrency.unwrap_or(u32::MAX);
        let mut receiver = {
            let mut state = self.lock();
            if state.in_flight < limit {
                integrate(&mut state, Instant::now());
                state.in_flight += 1;
                self.admitted.fetch_add(1, Ordering::Relaxed);
                return Ok(Slot::new(self.clone()));
            }
            // Waiters that timed out or went away leave closed entries behind; they must not
            // count against the queue.
            state.waiters.retain(|waiter| !waiter.is_closed());
            if state.waiters.len() >= self.config.queue_len as usize {
                return Err(if self.config.queue_len == 0 {
                    Rejection::FunctionBusy { limit }
                } else {
                    Rejection::QueueFull {
                        limit,
                        queue_len: self.config.queue_len,
                    }
                });
            }
            let (sender, receiver) = oneshot::channel();
            state.waiters.push_back(sender);
            receiver
        };
        let started = Instant::now();
        match tokio::time::timeout(self.config.queue_timeout, &mut receiver).await {
            Ok(Ok(slot)) => {
                self.admitted.fetch_add(1, Ordering::Relaxed);
                Ok(slot)
            }
            _ => {
                // Close first so that no slot can be handed over any more, then take one that
                // arrived at the last moment rather than lose it.
                receiver.close();
                match receiver.try_recv() {
                    Ok(slot) => {
                        self.admitted.fetch_add(1, Ordering::Relaxed);
                        Ok(slot)
                    }
                    Err(_) => Err(Rejection::QueueTimeout {
                        waited: started.elapsed(),
                    }),
                }
            }
        }
    }

    /// Gives a slot back: to the first waiter still waiting, or to the pool.
    fn release(self: &Arc<Self>) {
        let mut state = self.lock();
        while let Some(waiter) = state.waiters.pop_front() {
            match waiter.send(Slot::new(self.clone())) {
                Ok(()) => return,
                // That waiter gave up; the slot came back to us unused.
                Err(slot) => slot.disarm(),
            }
        }
        integrate(&mut state, Instant::now());
        state.in_flight -= 1;
    }
}

fn integrate(state: &mut LaneState, now: Instant) {
    let dt = now.saturating_duration_since(state.changed).as_secs_f64();
    state.area += state.in_flight as f64 * dt;
    state.changed = now;
}

/// One slot of a lane. If it is dropped without being used (a waiter that gave up at the moment
/// it was handed over), it gives itself back.
struct Slot {
    lane: Option<Arc<Lane>>,
}

impl Slot {
    fn new(lane: Arc<Lane>) -> Self {
        Self { lane: Some(lane) }
    }

    fn disarm(mut self) {
        self.lane = None;
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(lane) = self.lane.take() {
            lane.release();
        }
    }
}

/// An admitted request. Dropping it frees its node slot and its function slot.
pub struct Permit {
    slot: Option<Slot>,
    admission: Arc<Admission>,
    memory: u64,
    _quota: QuotaPermit,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let admission = &self.admission;
        if admission.config.memory_budget_bytes.is_some() {
            admission.reserved.fetch_sub(self.memory, Ordering::AcqRel);
        }
        admission.in_flight.fetch_sub(1, Ordering::AcqRel);
        drop(self.slot.take());
        admission.freed.notify_one();
    }
}
