//! Node-wide runtime settings (the Wasmtime engine and its instance pool) and per-function
//! settings (limits and the capabilities' configuration) that travel with each deployed version.

use std::sync::Arc;
use std::time::Duration;

use kindling_host::Configured;

/// How the node's Wasmtime engine and pooling allocator are sized.
///
/// The pool reserves address space for `max_instances` concurrent instances up front; each
/// request takes one instance for its duration, so this is also the node's hard cap on
/// concurrently running functions. WASI 0.3 components run on an engine of their own (see
/// the runtime module) whose pool is sized the same.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeConfig {
    /// Maximum number of instances alive at once, across all functions.
    pub max_instances: u32,
    /// Largest linear memory any instance may grow to; per-function limits sit below this.
    pub max_memory_bytes: u64,
    /// Bytes of each released linear memory kept resident and reset with `memset` rather
    /// than `madvise`: fewer page faults for the next request, at a bounded RSS cost.
    pub keep_resident_bytes: usize,
    /// How many idle, previously used pool slots keep their resident memory.
    pub max_unused_warm_slots: u32,
    /// Period of the epoch ticker: the granularity of deadlines, and how often a busy guest
    /// yields its thread to other requests.
    pub epoch_tick: Duration,
    /// Meter fuel so that functions can have CPU budgets. Costs some speed for every
    /// function, so it is off unless asked for.
    pub fuel: bool,
    /// Threads of the pool guests run on, apart from the I/O threads; 0 runs guests on the
    /// caller's runtime.
    pub guest_threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            max_instances: 1000,
            max_memory_bytes: 4 << 30,
            keep_resident_bytes: 2 << 20,
            max_unused_warm_slots: 32,
            epoch_tick: Duration::from_millis(10),
            fuel: false,
            guest_threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// What a deployed function version runs with: its limits and its configuration as every
/// capability resolved it.
#[derive(Debug, Clone)]
pub struct FunctionSettings {
    /// Resource limits for each invocation.
    pub limits: Limits,
    /// The capabilities' resolved configuration (environment, mounts, outbound hosts, ...).
    pub capabilities: Arc<Configured>,
    /// What to do with imports Kindling does not provide.
    pub unsupported_imports: UnsupportedImports,
}

/// What a function's imports that Kindling does not provide come to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnsupportedImports {
    /// The deploy is refused, naming them (the default).
    #[default]
    Refuse,
    /// They are linked to stand-ins that trap when called
    /// (`--allow-unsupported-imports`).
    Trap,
}

/// Per-invocation resource limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory the function may grow to, across all its memories.
    pub memory_bytes: u64,
    /// Largest request body the function accepts; larger requests are answered 413.
    pub max_request_body_bytes: u64,
    /// Largest response body; larger is a 502 (or a cut stream once the head is sent).
    pub max_response_body_bytes: u64,
    /// Wall-clock time an invocation may take before it is stopped and answered 504.
    pub timeout: Duration,
    /// CPU budget in fuel units; needs a runtime with `fuel` on.
    pub cpu_fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: 128 << 20,
            max_request_body_bytes: 16 << 20,
            max_response_body_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
            cpu_fuel: None,
        }
    }
}
