//! One deployed function as the node holds it: the active version, its admission lane, the
//! account its requests go to, and its code when it is resident (warm). Loading is
//! single-flight: concurrent requests for a cold function share one load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use kindling_host::FunctionLog;
use kindling_registry::VersionRecord;
use kindling_runtime::{Function, FunctionSettings, LoadSource, Loaded};
use kindling_scheduler::{Account, Autoscaler, Lane, Millis, ScaleDecision};

/// Code that is resident: the function can be instantiated without loading anything.
#[derive(Debug, Clone)]
pub struct Code {
    /// The function, ready to instantiate.
    pub function: Function,
    /// Where its machine code came from.
    pub source: LoadSource,
    /// How long loading took.
    pub load_time: Duration,
    /// When it was loaded, on the node's clock.
    pub loaded_at: Millis,
    /// Memory the resident code holds.
    pub code_bytes: u64,
}

impl Code {
    pub(crate) fn new(loaded: Loaded, now: Millis) -> Self {
        Self {
            function: loaded.function,
            source: loaded.source,
            load_time: loaded.elapsed,
            loaded_at: now,
            code_bytes: loaded.code_bytes,
        }
    }
}

/// Counters of one function, kept across its versions.
#[derive(Debug, Default)]
pub struct Usage {
    /// Requests admitted.
    pub invocations: AtomicU64,
    /// Requests that found the code unloaded and paid a load.
    pub cold_starts: AtomicU64,
    /// Loads ahead of a request, asked for by the keep-alive policy.
    pub prewarms: AtomicU64,
    /// Microseconds spent loading code, cold starts and pre-warms together.
    pub load_us_total: AtomicU64,
    /// Microseconds the last cold start took.
    pub last_cold_start_us: AtomicU64,
    /// When the function last started a request, on the node's clock.
    pub last_used: AtomicU64,
    /// Bytes of compiled code it holds when resident (known once it has been loaded).
    pub code_bytes: AtomicU64,
    /// Invocations and cold starts not yet reported to the keep-alive policy.
    pub(crate) unreported: (AtomicU64, AtomicU64),
}

/// A deployed function.
pub struct Entry {
    /// The function's name.
    pub name: Arc<str>,
    /// The active version.
    pub version: VersionRecord,
    /// Its admission lane.
    pub lane: Arc<Lane>,
    /// Whom its requests are accounted to.
    pub account: Account,
    /// Its counters.
    pub usage: Arc<Usage>,
    /// Its guest output, kept across versions.
    pub log: Arc<FunctionLog>,
    pub(crate) settings: FunctionSettings,
    pub(crate) autoscaler: Arc<Mutex<(Autoscaler, Option<ScaleDecision>)>>,
    pub(crate) series: crate::metrics::FunctionSeries,
    code: RwLock<Option<Code>>,
    pub(crate) loading: tokio::sync::Mutex<()>,
    failure: RwLock<Option<String>>,
}

impl Entry {
    #[allow(
        clippy::too_many_arguments,
        reason = "a plain constructor of a plain record"
    )]
    pub(crate) fn new(
        version: VersionRecord,
        lane: Arc<Lane>,
        account: Account,
        usage: Arc<Usage>,
        log: Arc<FunctionLog>,
        settings: FunctionSettings,
        autoscaler: Arc<Mutex<(Autoscaler, Option<ScaleDecision>)>>,
        code: Option<Code>,
    ) -> Self {
        Self {
            name: version.function.as_str().into(),
            version,
            lane,
            account,
            usage,
            log,
            settings,
            autoscaler,
            series: Default::default(),
            code: RwLock::new(code),
            loading: tokio::sync::Mutex::new(()),
            failure: RwLock::default(),
        }
    }

    /// The memory limit its instances run with, in bytes.
    pub fn memory_limit(&self) -> u64 {
        self.settings.limits.memory_bytes
    }

    /// The resident code, if the function is warm.
    pub fn code(&self) -> Option<Code> {
        self.code.read().expect("code lock").clone()
    }

    /// Why the last attempt to load the code failed, if it did.
    pub fn failure(&self) -> Option<String> {
        self.failure.read().expect("failure lock").clone()
    }

    /// The latest autoscaling decision.
    pub fn scale(&self) -> Option<ScaleDecision> {
        self.autoscaler.lock().expect("autoscaler lock").1
    }

    pub(crate) fn set_code(&self, code: Option<Code>) {
        *self.code.write().expect("code lock") = code;
    }

    pub(crate) fn set_failure(&self, failure: Option<String>) {
        *self.failure.write().expect("failure lock") = failure;
    }

    /// Counts a request that started at `now`.
    pub(crate) fn record_use(&self, now: Millis, cold: bool) {
        let usage = &self.usage;
        usage.invocations.fetch_add(1, Ordering::Relaxed);
        usage.unreported.0.fetch_add(1, Ordering::Relaxed);
        usage.last_used.fetch_max(now, Ordering::Relaxed);
        if cold {
            usage.cold_starts.fetch_add(1, Ordering::Relaxed);
            usage.unreported.1.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entry")
            .field("name", &self.name)
            .field("version", &self.version.version)
            .field("warm", &self.code().is_some())
            .finish_non_exhaustive()
    }
}
