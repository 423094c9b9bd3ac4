//! [`Events`]: the invocation queue as the rest of the node sees it. The gateway queues
//! requests and reads records through it; [`Events::start`] runs the workers that deliver
//! queued invocations through [`kindling_node::Node::invoke`], the callback sender, the
//! schedules and the housekeeping.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kindling_node::Node;
use kindling_registry::RetryConfig;
use prometheus::{IntCounterVec, Opts, Registry};
use tokio::sync::Notify;

use crate::error::EventsError;
use crate::record::{Accepted, Backlog, Filter, InvocationRecord, NewInvocation};
use crate::schedule::{Schedule, ScheduleStatus};
use crate::shared::SharedQueue;
use crate::sql::{self, EnqueueLimits};
use crate::sql_shared::Share;
use crate::store::Store;

/// How the queue behaves.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// The queue database (`<data-dir>/queue.db`).
    pub path: PathBuf,
    /// Attempts running at once; admission control still decides what runs.
    pub workers: usize,
    /// Largest request body an asynchronous invocation may carry.
    pub max_body_bytes: usize,
    /// Most of a response body kept with the invocation and sent to its callback.
    pub max_response_bytes: usize,
    /// How long an idempotency key deduplicates.
    pub idempotency_window: Duration,
    /// Most invocations queued or running at once; past it, new ones are refused (503).
    pub max_waiting: u64,
    /// Most of them one namespace may have (past it, 429).
    pub max_waiting_per_namespace: u64,
    /// How long succeeded invocations are kept.
    pub retain_succeeded: Duration,
    /// How long dead invocations (the dead-letter store) are kept unless purged first.
    pub retain_dead: Duration,
    /// Retries of functions deployed without a policy of their own.
    pub default_retry: RetryConfig,
    /// Retries of a callback delivery.
    pub callback_retry: RetryConfig,
    /// How long a callback's receiver may take to answer.
    pub callback_timeout: Duration,
    /// The `Host` a scheduled invocation carries (the node's address).
    pub authority: String,
    /// The NATS server of NATS and JetStream triggers.
    pub nats_url: Option<String>,
    /// The Redis server of Redis stream triggers.
    pub redis_url: Option<String>,
    /// This node's name as a consumer (Redis consumer groups).
    pub node_name: String,
    /// Send callbacks to loopback and private addresses too.
    pub callback_allow_private: bool,
    /// In a cluster, whether this node is the one that fires schedules now; `None` (a node
    /// of its own) fires them always.
    pub schedule_gate: Option<ScheduleGate>,
    /// The key callbacks are signed with when it is not the node's own: the nodes of a
    /// cluster that share a queue share one, so that a receiver checks any node's callback
    /// with it. It is written to `callback.key`, where receivers' keys are read from.
    pub callback_key: Option<[u8; 32]>,
}

/// Whether this node fires schedules now (cluster mode holds a lease for one node).
#[derive(Clone)]
pub struct ScheduleGate(pub std::sync::Arc<dyn Fn() -> bool + Send + Sync>);

impl std::fmt::Debug for ScheduleGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScheduleGate")
    }
}

impl EventsConfig {
    /// The defaults, with the queue database at `path`.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            workers: 16,
            max_body_bytes: 1 << 20,
            max_response_bytes: 1 << 20,
            idempotency_window: Duration::from_secs(24 * 3600),
            max_waiting: 100_000,
            max_waiting_per_namespace: 25_000,
            retain_succeeded: Duration::from_secs(7 * 24 * 3600),
            retain_dead: Duration::from_secs(30 * 24 * 3600),
            default_retry: RetryConfig::default(),
            callback_retry: RetryConfig {
                retries: 8,
                backoff_min_ms: 1_000,
                backoff_max_ms: 300_000,
            },
            callback_timeout: Duration::from_secs(10),
            authority: "localhost".into(),
            nats_url: None,
            redis_url: None,
            node_name: "kindling".into(),
            callback_allow_private: false,
            schedule_gate: None,
            callback_key: None,
        }
    }
}

/// The queue's counters.
#[derive(Debug)]
pub(crate) struct Counters {
    pub(crate) registry: Registry,
    pub(crate) accepted: IntCounterVec,
    pub(crate) attempts: IntCounterVec,
    pub(crate) finished: IntCounterVec,
    pub(crate) callbacks: IntCounterVec,
    pub(crate) firings: IntCounterVec,
    pub(crate) triggered: IntCounterVec,
}

impl Counters {
    fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let counter = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(counter.clone()))
                .expect("metric registered once");
            counter
        };
        Self {
            accepted: counter(
                "kindling_async_invocations_accepted_total",
                "Asynchronous invocations accepted, by function and whether the idempotency key found an earlier one",
                &["function", "duplicate"],
            ),
            attempts: counter(
                "kindling_async_attempts_total",
                "Attempts of asynchronous invocations, by function and outcome (succeeded, retry, dead, deferred)",
                &["function", "outcome"],
            ),
            finished: counter(
                "kindling_async_invocations_finished_total",
                "Asynchronous invocations finished, by function and state (succeeded, dead)",
                &["function", "state"],
            ),
            callbacks: counter(
                "kindling_async_callbacks_total",
                "Callback deliveries, by outcome (delivered, retry, failed)",
                &["outcome"],
            ),
            firings: counter(
                "kindling_schedule_firings_total",
                "Schedule firings, by function and outcome (fired, missed)",
                &["function", "outcome"],
            ),
            triggered: counter(
                "kindling_trigger_deliveries_total",
                "Broker messages delivered to functions, by function, trigger and outcome (succeeded, retry, dead)",
                &["function", "trigger", "outcome"],
            ),
            registry,
        }
    }
}

/// The invocation queue of one node.
pub struct Events {
    pub(crate) store: Store,
    pub(crate) node: Arc<Node>,
    pub(crate) config: EventsConfig,
    pub(crate) wake: Notify,
    pub(crate) counters: Counters,
    pub(crate) schedules: std::sync::Mutex<crate::scheduler::Table>,
    /// One permit per attempt that may run at once.
    pub(crate) slots: Arc<tokio::sync::Semaphore>,
    /// Set by [`Events::shutdown`]: take no more work.
    pub(crate) stopping: std::sync::atomic::AtomicBool,
    /// Signs callbacks (`<data-dir>/callback.key`).
    pub(crate) callback_key: Vec<u8>,
    /// The cluster's queue, in cluster mode.
    pub(crate) shared: std::sync::OnceLock<Arc<dyn SharedQueue>>,
    /// Invocations queued here while the cluster's queue could not take them.
    pub(crate) unreported: crate::unreported::Unreported,
}

impl std::fmt::Debug for Events {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Events")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Events {
    /// Opens the queue database; an attempt that was running when the node stopped is queued
    /// again. Nothing runs until [`Events::start`].
    pub fn open(node: Arc<Node>, config: EventsConfig) -> Result<Arc<Self>, EventsError> {
        let store = Store::open(&config.path)?;
        let key_path = config
            .path
            .parent()
            .unwrap_or_else(|| std::path::Path::new("."))
            .join("callback.key");
        let callback_key = match &config.callback_key {
            Some(key) => crate::callback::keep_key(&key_path, key),
            None => crate::callback::signing_key(&key_path),
        }
        .map_err(EventsError::Storage)?;
        Ok(Arc::new(Self {
            store,
            node,
            wake: Notify::new(),
            counters: Counters::new(),
            schedules: Default::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(config.workers.max(1))),
            stopping: Default::default(),
            callback_key,
            config,
            shared: std::sync::OnceLock::new(),
            unreported: Default::default(),
        }))
    }

    /// The settings it runs with.
    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// Queues through the cluster's `queue` from now on (call before [`Events::start`]): an
    /// accepted invocation is held by the cluster until one node finishes it, and this node
    /// takes its share of them.
    pub fn share(&self, queue: Arc<dyn SharedQueue>) {
        if self.shared.set(queue).is_err() {
            tracing::warn!("queue: a shared queue was set twice; the first one stays");
        }
    }

    /// Starts the workers, the callback sender, the schedules and the housekeeping; they run
    /// until the runtime shuts down.
    pub fn start(self: &Arc<Self>) {
        let events = self.clone();
        tokio::spawn(async move {
            // Stale shared rows go before a worker could run one.
            if let Some(queue) = events.shared.get().cloned() {
                crate::shared::forget_unfinished(&events).await;
                tokio::spawn(crate::shared::pump(events.clone(), queue));
            }
            crate::worker::run(events).await;
        });
        tokio::spawn(crate::callback::run(self.clone()));
        tokio::spawn(crate::scheduler::run(self.clone()));
        tokio::spawn(crate::trigger::run(self.clone()));
        tokio::spawn(housekeeping(self.clone()));
    }

    /// Checks a configuration's schedules and triggers before it is deployed: every schedule
    /// parses and every trigger's broker is one this node is connected to.
    pub fn check(&self, config: &kindling_registry::FunctionConfig) -> Result<(), String> {
        for schedule in &config.schedules {
            Schedule::parse(schedule)?;
        }
        for trigger in &config.triggers {
            trigger.validate_in(config.namespace())?;
            let (configured, flag) = match trigger.kind {
                kindling_registry::TriggerKind::Nats
                | kindling_registry::TriggerKind::Jetstream => {
                    (self.config.nats_url.is_some(), "--nats-url")
                }
                kindling_registry::TriggerKind::Redis => {
                    (self.config.redis_url.is_some(), "--redis-url")
                }
            };
            if !configured {
                return Err(format!(
                    "{} trigger {:?}: this node has no {} connection; start it with {flag}",
                    trigger.kind.as_str(),
                    trigger.source,
                    if flag == "--redis-url" {
                        "Redis"
                    } else {
                        "NATS"
                    }
                ));
            }
        }
        Ok(())
    }

    /// Stops taking queued invocations and firing schedules, and waits up to `grace` for the
    /// attempts running now to finish and be recorded. What is still queued waits on disk for
    /// the next start; an attempt cut off by the grace runs again then.
    pub async fn shutdown(&self, grace: Duration) {
        use std::sync::atomic::Ordering;
        self.stopping.store(true, Ordering::SeqCst);
        self.wake.notify_waiters();
        let all = u32::try_from(self.config.workers.max(1)).unwrap_or(u32::MAX);
        match tokio::time::timeout(grace, self.slots.acquire_many(all)).await {
            Ok(Ok(permits)) => permits.forget(),
            _ => tracing::warn!(
                "queue: attempts still running after the shutdown grace; they run again at the next start"
            ),
        }
        // What this node took from the cluster and has not started goes back to it now, not
        // after the ack wait; the next start forgets the rows.
        if let Some(queue) = self.shared.get()
            && let Ok(waiting) = self.store.call(crate::sql_shared::waiting).await
        {
            for id in &waiting {
                queue.abandon(id, Duration::ZERO).await;
            }
            if !waiting.is_empty() {
                tracing::info!(
                    given_back = waiting.len(),
                    "queue: invocations not started went back to the cluster"
                );
            }
        }
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Queues an invocation; answers once it is on disk.
    pub async fn enqueue(&self, new: NewInvocation) -> Result<Accepted, EventsError> {
        if new.body.len() > self.config.max_body_bytes {
            return Err(EventsError::Invalid(format!(
                "the request body is {} bytes; an asynchronous invocation may carry at most {}",
                new.body.len(),
                self.config.max_body_bytes
            )));
        }
        if let Some(url) = &new.callback_url {
            crate::callback::check_url(url, self.config.callback_allow_private)
                .map_err(EventsError::Invalid)?;
        }
        let limits = self.limits();
        let function = new.function.clone();
        let shared = match self.shared.get() {
            Some(queue) => crate::shared::enqueue(&**queue, &new).await?,
            None => None,
        };
        let in_cluster = self.shared.get().is_some();
        let (id, duplicate) = match shared {
            Some(accepted) => (accepted.id, accepted.duplicate),
            None => {
                let (id, duplicate) = self
                    .store
                    .call(move |conn| {
                        let (id, duplicate) = sql::enqueue(conn, &new, sql::now_ms(), limits)?;
                        if in_cluster && !duplicate {
                            crate::sql_shared::mark_reported(conn, &id)?;
                        }
                        Ok((id, duplicate))
                    })
                    .await?;
                if in_cluster && !duplicate {
                    self.unreported.add(id.clone()).await;
                }
                (id, duplicate)
            }
        };
        self.counters
            .accepted
            .with_label_values(&[function.as_str(), if duplicate { "true" } else { "false" }])
            .inc();
        if !duplicate {
            self.wake.notify_one();
        }
        Ok(Accepted { id, duplicate })
    }

    pub(crate) fn limits(&self) -> EnqueueLimits {
        EnqueueLimits {
            window_ms: self.config.idempotency_window.as_millis() as i64,
            max_waiting: self.config.max_waiting,
            max_waiting_per_namespace: self.config.max_waiting_per_namespace,
        }
    }

    /// One invocation, with its attempts; in a cluster, one another node holds is shown as
    /// that node last reported it.
    pub async fn get(&self, id: &str) -> Result<InvocationRecord, EventsError> {
        match self.local(id).await {
            Err(EventsError::NotFound(_)) if let Some(queue) = self.shared.get() => queue
                .find(id)
                .await?
                .ok_or_else(|| EventsError::NotFound(id.to_string())),
            other => other.map(|record| self.held_here(record)),
        }
    }

    /// In a cluster, a record this node has names it.
    fn held_here(&self, mut record: InvocationRecord) -> InvocationRecord {
        if self.shared.get().is_some() {
            record.node = Some(self.config.node_name.clone());
        }
        record
    }

    /// One invocation this node has.
    pub(crate) async fn local(&self, id: &str) -> Result<InvocationRecord, EventsError> {
        let owned = id.to_string();
        self.store
            .call(move |conn| sql::get(conn, &owned))
            .await?
            .ok_or_else(|| EventsError::NotFound(id.to_string()))
    }

    /// Invocations the filter selects, newest first.
    pub async fn list(&self, filter: Filter) -> Result<Vec<InvocationRecord>, EventsError> {
        let records = self
            .store
            .call(move |conn| sql::list(conn, &filter))
            .await?;
        Ok(records.into_iter().map(|r| self.held_here(r)).collect())
    }

    /// Queues a dead (or succeeded) invocation again, with a fresh retry budget.
    pub async fn retry(&self, id: &str) -> Result<InvocationRecord, EventsError> {
        let owned = id.to_string();
        let share = self
            .store
            .call(move |conn| {
                sql::retry(conn, &owned, sql::now_ms())?;
                crate::sql_shared::share(conn, &owned)
            })
            .await?;
        // The other nodes see it queued again here, not finished.
        if let (Some(Share::Reported), Some(queue)) = (share, self.shared.get())
            && let Ok(record) = self.local(id).await
        {
            queue.report(record).await;
        }
        self.wake.notify_one();
        self.get(id).await
    }

    /// Deletes the finished invocations the filter selects; answers how many.
    pub async fn purge(&self, filter: Filter) -> Result<u64, EventsError> {
        self.store.call(move |conn| sql::purge(conn, &filter)).await
    }

    /// Deletes one finished invocation, or cancels a queued one (in a cluster, wherever it
    /// waits unless another node has taken it).
    pub async fn delete(&self, id: &str) -> Result<(), EventsError> {
        let owned = id.to_string();
        let deleted = self
            .store
            .call(move |conn| {
                let share = crate::sql_shared::share(conn, &owned)?;
                sql::delete(conn, &owned).map(|()| share)
            })
            .await;
        match (deleted, self.shared.get()) {
            (Ok(Some(share)), Some(queue)) if share != Share::Own => {
                if share == Share::Held {
                    queue.settle(id).await;
                }
                queue.forget(id).await;
                Ok(())
            }
            (Ok(_), _) => Ok(()),
            (Err(EventsError::NotFound(_)), Some(queue)) => match queue.cancel(id).await? {
                true => Ok(()),
                false => Err(EventsError::NotFound(id.to_string())),
            },
            (Err(err), _) => Err(err),
        }
    }

    /// An attempt of an invocation the cluster knows starts: the other nodes see it
    /// running here, and a node that takes it over counts it.
    pub(crate) async fn shared_attempt_started(&self, id: &str) {
        if self.report_deferred(id).await {
            return;
        }
        if let (Some(queue), Ok(record)) = (self.shared.get(), self.local(id).await) {
            queue.report(record).await;
        }
    }

    /// An attempt of an invocation the cluster knows was recorded (or put back unrun): the
    /// other nodes learn where it stands, and the message of a final one leaves the cluster's
    /// queue after its record, so that a node sent it again finds it final.
    pub(crate) async fn shared_attempt_recorded(&self, id: &str, share: Share, finished: bool) {
        let Some(queue) = self.shared.get() else {
            return;
        };
        if self.report_deferred(id).await {
            return;
        }
        let reported = match self.local(id).await {
            Ok(record) => queue.report(record).await,
            Err(_) => false,
        };
        if finished && share == Share::Held {
            if reported {
                queue.settle(id).await;
            } else {
                // Another node may run it again, but none shows it running for good.
                queue.abandon(id, Duration::from_secs(5)).await;
            }
        }
    }

    /// What is waiting, per function.
    pub async fn backlog(&self) -> Result<Vec<Backlog>, EventsError> {
        self.store
            .call(|conn| sql::backlog(conn, sql::now_ms()))
            .await
    }

    /// The schedules of a function with their last and next runs (as the scheduler last
    /// recorded them).
    pub fn schedules(&self, function: &str) -> Vec<ScheduleStatus> {
        let Some(entry) = self.node.lookup(function) else {
            return Vec::new();
        };
        let table = self
            .schedules
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = sql::now_ms();
        entry
            .version
            .config
            .schedules
            .iter()
            .filter_map(|config| {
                let schedule = Schedule::parse(config).ok()?;
                let last = table.last_fire(function, &schedule.key());
                Some(ScheduleStatus {
                    cron: config.cron.clone(),
                    timezone: config.timezone.clone().unwrap_or_else(|| "UTC".into()),
                    missed: config.missed,
                    path: config.path.clone().unwrap_or_else(|| "/".into()),
                    last_run: last.map(sql::rfc3339),
                    next_run: schedule
                        .next_after(last.unwrap_or(now).max(now))
                        .map(sql::rfc3339),
                })
            })
            .collect()
    }

    /// The queue's metrics in the Prometheus text format: counters, and per function the
    /// depth and the oldest waiting invocation's age (the scaling signals).
    pub async fn render_metrics(&self) -> String {
        use prometheus::{Encoder as _, GaugeVec, TextEncoder};
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.counters.registry.gather(), &mut out);
        let registry = Registry::new();
        let gauge = |name: &str, help: &str| {
            let gauge = GaugeVec::new(Opts::new(name, help), &["function"]).expect("valid metric");
            registry
                .register(Box::new(gauge.clone()))
                .expect("metric registered once");
            gauge
        };
        let depth = gauge(
            "kindling_async_queue_depth",
            "Asynchronous invocations queued or running, by function",
        );
        let age = gauge(
            "kindling_async_queue_oldest_age_seconds",
            "Age of the oldest asynchronous invocation queued or running, by function",
        );
        match self.backlog().await {
            Ok(backlog) => {
                for row in backlog {
                    depth
                        .with_label_values(&[row.function.as_str()])
                        .set(row.depth as f64);
                    age.with_label_values(&[row.function.as_str()])
                        .set(row.oldest_age_seconds);
                }
            }
            Err(err) => tracing::error!(error = %err, "metrics: cannot read the queue's backlog"),
        }
        let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        if let Some(queue) = self.shared.get()
            && let Ok(Some(pending)) =
                tokio::time::timeout(Duration::from_millis(500), queue.pending()).await
        {
            text.push_str(&format!(
                "# HELP kindling_async_cluster_queue_pending Asynchronous invocations in the cluster's queue: waiting for a node, or held by one and not finished.\n\
                 # TYPE kindling_async_cluster_queue_pending gauge\n\
                 kindling_async_cluster_queue_pending {pending}\n"
            ));
        }
        text
    }
}

/// Every minute: succeeded and dead invocations past their retention go, and idempotency
/// keys past their window are freed.
async fn housekeeping(events: Arc<Events>) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    loop {
        every.tick().await;
        let retain = events.config.retain_succeeded.as_millis() as i64;
        let window = events.config.idempotency_window.as_millis() as i64;
        let dead = events.config.retain_dead.as_millis() as i64;
        match events
            .store
            .call(move |conn| sql::housekeeping(conn, sql::now_ms(), retain, dead, window))
            .await
        {
            Ok(0) => {}
            Ok(deleted) => tracing::debug!(deleted, "queue: succeeded invocations expired"),
            Err(err) => tracing::warn!(error = %err, "queue housekeeping failed"),
        }
    }
}
