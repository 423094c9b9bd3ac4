//! How a node is set up.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kindling_host::Capabilities;
use kindling_runtime::{Limits, RuntimeConfig};
use kindling_scheduler::{AdmissionConfig, AutoscalerConfig, LaneConfig, PolicySpec};

use crate::clock::{Clock, SystemClock};

/// Everything a node is configured with.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the registry database, module files and compiled artifacts live.
    pub data_dir: PathBuf,
    /// Engine and pool sizing.
    pub runtime: RuntimeConfig,
    /// Limits for functions that do not set their own.
    pub default_limits: Limits,
    /// Queue length and timeout, and priority, for functions that do not set their own.
    pub default_lane: LaneConfig,
    /// What guests can reach: every capability, linked, configured and prepared in order.
    pub capabilities: Capabilities,
    /// Node-wide in-flight limit and priority shares.
    pub admission: AdmissionConfig,
    /// Per-namespace limits on requests in flight.
    pub namespace_limits: Vec<(String, u32)>,
    /// The quota every request is accounted to (tenant quotas); `None` applies
    /// `namespace_limits` alone.
    pub quota: Option<Arc<dyn kindling_scheduler::Quota>>,
    /// What stays resident and what is loaded ahead of requests.
    pub keep_alive_policy: PolicySpec,
    /// Bytes of compiled code that may be resident at once; `None` for no budget.
    pub code_memory_budget: Option<u64>,
    /// Autoscaler parameters.
    pub autoscaler: AutoscalerConfig,
    /// How often the keep-alive policy and the autoscalers run.
    pub tick: Duration,
    /// Load every function at start-up instead of on its first request.
    pub preload: bool,
    /// Bytes of guest output kept per function; the oldest lines go first.
    pub log_capacity_bytes: usize,
    /// Where spans go; `None` turns tracing off (and costs nothing).
    pub tracer: Option<kindling_telemetry::Tracer>,
    /// How many calls deep a chain of functions calling each other may go.
    pub max_call_depth: u32,
    /// How many invocations one request from outside may cause, itself included, however the
    /// calls fan out.
    pub max_calls_per_request: u32,
    /// The clock the keep-alive policies run on.
    pub clock: Arc<dyn Clock>,
}

impl NodeConfig {
    /// A configuration with defaults, storing data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            runtime: RuntimeConfig::default(),
            default_limits: Limits::default(),
            default_lane: LaneConfig::default(),
            capabilities: Capabilities::builtin(None),
            admission: AdmissionConfig::default(),
            namespace_limits: Vec::new(),
            quota: None,
            keep_alive_policy: PolicySpec::default_with(600_000),
            code_memory_budget: None,
            autoscaler: AutoscalerConfig::default(),
            tick: Duration::from_secs(1),
            preload: false,
            log_capacity_bytes: 256 * 1024,
            tracer: None,
            max_call_depth: 8,
            max_calls_per_request: 1000,
            clock: Arc::new(SystemClock::default()),
        }
    }
}
