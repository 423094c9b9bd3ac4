//! The replay: one policy, one trace, a simulated clock.
//!
//! The clock ticks like a node's keeper (every `tick`, a minute by default to match the
//! trace's resolution): at each tick the policy learns each function's calls since the last
//! tick, names functions to unload (never one with a call running) and functions to load ahead
//! of calls. Between ticks calls arrive: a call that finds its function unloaded is a cold
//! start and loads it. The policy is the same struct the server runs, built from the same
//! [`PolicySpec`].

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use kindling_scheduler::{Millis, PolicySpec, Resident, ResidentSet, Usage};
use serde::Serialize;

use crate::error::SimError;
use crate::trace::Trace;

/// How calls are reported to the progress counter.
const PROGRESS_STEP: u64 = 4096;
const MIB: f64 = (1u64 << 20) as f64;

/// How the replay runs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimOptions {
    /// How often the policy runs.
    pub tick: Millis,
    /// Memory that resident functions may hold in all, in MB; `None` for no budget.
    pub budget_mb: Option<f64>,
    /// What a cold start costs, in milliseconds (told to cost-aware policies).
    pub load_ms: f64,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            tick: 60_000,
            budget_mb: None,
            load_ms: 1.0,
        }
    }
}

/// One policy's result on a trace.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyOutcome {
    /// The policy as given (`fixed:10m`, `kindling:hazard=0.2`, ...).
    pub policy: String,
    /// The policy's own name.
    pub name: String,
    /// The memory budget it ran under, in MB.
    pub budget_mb: Option<f64>,
    /// Calls replayed.
    pub invocations: u64,
    /// Calls that found their function unloaded.
    pub cold_starts: u64,
    /// `cold_starts / invocations`, in percent.
    pub cold_start_pct: f64,
    /// The 75th percentile over functions of each function's cold-start percentage (the
    /// ATC'20 paper's metric).
    pub p75_function_cold_start_pct: f64,
    /// Memory held while no call ran, in MB-minutes.
    pub wasted_mb_minutes: f64,
    /// Wasted memory as a percentage of the baseline's (fixed 10-minute keep-alive).
    pub wasted_vs_baseline_pct: Option<f64>,
    /// Memory held on average, in MB.
    pub mean_resident_mb: f64,
    /// The most memory held at once, in MB.
    pub peak_resident_mb: f64,
    /// Loads ahead of a call, asked for by the policy.
    pub prewarms: u64,
    /// Calls that found their function resident because it had been pre-warmed.
    pub prewarm_hits: u64,
    /// Wall-clock time the replay took, in milliseconds.
    pub elapsed_ms: f64,
}

#[derive(Debug, Clone, Default)]
struct FunctionState {
    resident: bool,
    resident_since: Millis,
    prewarmed: bool,
    last_used: Millis,
    busy_until: Millis,
    unreported: (u64, u64),
    calls: u64,
    cold: u64,
}

struct Replay<'a> {
    trace: &'a Trace,
    names: Vec<Arc<str>>,
    index: HashMap<Arc<str>, usize>,
    state: Vec<FunctionState>,
    options: SimOptions,
    resident_mb: f64,
    peak_resident_mb: f64,
    resident_mb_ms: f64,
    busy_mb_ms: f64,
    prewarms: u64,
    prewarm_hits: u64,
}

/// Replays `trace` through a fresh policy built from `spec`, adding to `progress` as calls
/// are replayed.
pub fn simulate(
    trace: &Trace,
    label: &str,
    spec: &PolicySpec,
    options: &SimOptions,
    progress: &AtomicU64,
) -> Result<PolicyOutcome, SimError> {
    if spec.needs_budget() && options.budget_mb.is_none() {
        return Err(SimError::NeedsBudget(label.to_string()));
    }
    if options.tick == 0 {
        return Err(SimError::Option("the tick must be longer than zero".into()));
    }
    if trace.calls.is_empty() {
        return Err(SimError::EmptyTrace);
    }
    let started = Instant::now();
    let mut policy = spec.build();
    let names: Vec<Arc<str>> = trace
        .functions
        .iter()
        .map(|f| Arc::from(f.name.as_str()))
        .collect();
    let mut replay = Replay {
        trace,
        index: names
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, n)| (n, i))
            .collect(),
        names,
        state: vec![FunctionState::default(); trace.functions.len()],
        options: *options,
        resident_mb: 0.0,
        peak_resident_mb: 0.0,
        resident_mb_ms: 0.0,
        busy_mb_ms: 0.0,
        prewarms: 0,
        prewarm_hits: 0,
    };
    let tick = options.tick;
    let mut next_tick = tick;
    let mut unreported_progress = 0;
    for call in &trace.calls {
        while next_tick <= call.at {
            replay.tick(policy.as_mut(), next_tick);
            next_tick += tick;
        }
        replay.call(call.function as usize, call.at, call.duration);
        unreported_progress += 1;
        if unreported_progress == PROGRESS_STEP {
            progress.fetch_add(PROGRESS_STEP, Ordering::Relaxed);
            unreported_progress = 0;
        }
    }
    progress.fetch_add(unreported_progress, Ordering::Relaxed);
    let end = trace.span.max(next_tick - tick);
    while next_tick <= end {
        replay.tick(policy.as_mut(), next_tick);
        next_tick += tick;
    }
    Ok(replay.finish(label, policy.name(), end, started))
}

impl Replay<'_> {
    fn memory_mb(&self, function: usize) -> f64 {
        self.trace.functions[function].memory_mb
    }

    fn load(&mut self, function: usize, at: Millis) {
        let memory = self.memory_mb(function);
        let state = &mut self.state[function];
        state.resident = true;
        state.resident_since = at;
        self.resident_mb += memory;
        self.peak_resident_mb = self.peak_resident_mb.max(self.resident_mb);
    }

    fn unload(&mut self, function: usize, at: Millis) {
        let memory = self.memory_mb(function);
        let state = &mut self.state[function];
        state.resident = false;
        state.prewarmed = false;
        self.resident_mb_ms += memory * at.saturating_sub(state.resident_since) as f64;
        self.resident_mb -= memory;
    }

    fn call(&mut self, function: usize, at: Millis, duration: Millis) {
        let cold = !self.state[function].resident;
        if cold {
            self.load(function, at);
        } else if self.state[function].prewarmed {
            self.prewarm_hits += 1;
        }
        let memory = self.memory_mb(function);
        let state = &mut self.state[function];
        state.prewarmed = false;
        state.calls += 1;
        state.unreported.0 += 1;
        if cold {
            state.cold += 1;
            state.unreported.1 += 1;
        }
        state.last_used = at;
        // Memory in use by a call is not wasted; overlapping calls count once.
        let end = at + duration;
        let busy_from = at.max(state.busy_until);
        if end > busy_from {
            self.busy_mb_ms += memory * (end - busy_from) as f64;
            state.busy_until = end;
        }
    }

    fn tick(&mut self, policy: &mut dyn kindling_scheduler::KeepAlivePolicy, now: Millis) {
        let since = now - self.options.tick;
        let load_ms = self.options.load_ms;
        let mut residents = Vec::new();
        for (function, state) in self.state.iter_mut().enumerate() {
            let memory_bytes = (self.trace.functions[function].memory_mb * MIB) as u64;
            if state.unreported.0 > 0 {
                policy.record(Usage {
                    function: &self.names[function],
                    since,
                    now,
                    invocations: state.unreported.0,
                    cold: state.unreported.1,
                    memory_bytes,
                    load_ms,
                });
                state.unreported = (0, 0);
            }
            if state.resident {
                residents.push(Resident {
                    function: self.names[function].clone(),
                    memory_bytes,
                    loaded_at: state.resident_since,
                    last_used: state.last_used,
                    in_flight: u32::from(state.busy_until > now),
                });
            }
        }
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: self.options.budget_mb.map(|mb| (mb * MIB) as u64),
        };
        for name in policy.evict(now, set) {
            if let Some(&function) = self.index.get(&name) {
                let state = &self.state[function];
                if state.resident && state.busy_until <= now {
                    self.unload(function, now);
                }
            }
        }
        for name in policy.prewarm(now) {
            if let Some(&function) = self.index.get(&name)
                && !self.state[function].resident
            {
                self.load(function, now);
                self.state[function].prewarmed = true;
                self.prewarms += 1;
            }
        }
    }

    fn finish(mut self, label: &str, name: String, end: Millis, started: Instant) -> PolicyOutcome {
        for function in 0..self.state.len() {
            if self.state[function].resident {
                self.unload(function, end);
            }
        }
        let invocations: u64 = self.state.iter().map(|s| s.calls).sum();
        let cold_starts: u64 = self.state.iter().map(|s| s.cold).sum();
        let mut per_function: Vec<f64> = self
            .state
            .iter()
            .filter(|s| s.calls > 0)
            .map(|s| 100.0 * s.cold as f64 / s.calls as f64)
            .collect();
        per_function.sort_by(f64::total_cmp);
        let wasted_mb_ms = (self.resident_mb_ms - self.busy_mb_ms).max(0.0);
        PolicyOutcome {
            policy: label.to_string(),
            name,
            budget_mb: self.options.budget_mb,
            invocations,
            cold_starts,
            cold_start_pct: 100.0 * cold_starts as f64 / invocations.max(1) as f64,
            p75_function_cold_start_pct: quantile(&per_function, 0.75),
            wasted_mb_minutes: wasted_mb_ms / 60_000.0,
            wasted_vs_baseline_pct: None,
            mean_resident_mb: self.resident_mb_ms / end.max(1) as f64,
            peak_resident_mb: self.peak_resident_mb,
            prewarms: self.prewarms,
            prewarm_hits: self.prewarm_hits,
            elapsed_ms: started.elapsed().as_secs_f64() * 1e3,
        }
    }
}

/// The `q` quantile of sorted values, by the nearest-rank method.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}
