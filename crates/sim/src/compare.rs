//! Several policies on one trace, side by side, normalised to the industry baseline (a fixed
//! 10-minute keep-alive), replayed in parallel.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use kindling_scheduler::PolicySpec;
use serde::Serialize;

use crate::engine::{PolicyOutcome, SimOptions, simulate};
use crate::error::SimError;
use crate::trace::Trace;

/// The baseline every result is normalised to.
pub const BASELINE: &str = "fixed:10m";

/// The policies compared when none are named: the baseline, a range of fixed keep-alives,
/// LRU and GDSF under budgets, the hybrid histogram policy, and Kindling's default with a
/// stricter and a looser hazard to show its own trade-off curve.
pub const DEFAULT_POLICIES: &[&str] = &[
    "fixed:1m",
    "fixed:5m",
    BASELINE,
    "fixed:20m",
    "fixed:60m",
    "lru",
    "gdsf",
    "hybrid",
    "kindling:hazard=0.2",
    "kindling",
    "kindling:hazard=0.01",
];

/// What was compared, on what.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Where the trace came from.
    pub trace: String,
    /// Functions in the trace.
    pub functions: usize,
    /// Calls in the trace.
    pub invocations: u64,
    /// Minutes the trace covers.
    pub minutes: u64,
    /// How the replays ran.
    pub options: SimOptions,
    /// The budget given to budget-only policies (LRU, GDSF) when none was set: the baseline's
    /// mean resident memory, so they hold as much on average as the baseline does.
    pub implied_budget_mb: Option<f64>,
    /// One result per policy, in the order asked.
    pub outcomes: Vec<PolicyOutcome>,
}

impl Comparison {
    /// The baseline's result.
    pub fn baseline(&self) -> Option<&PolicyOutcome> {
        self.outcomes.iter().find(|o| o.policy == BASELINE)
    }
}

/// Replays `trace` through every policy in `policies` (text as `kindling sim --policy` takes
/// it), on up to `threads` threads. The baseline runs too, first, even if not asked for; LRU
/// and GDSF get a budget equal to the baseline's mean resident memory unless `options` sets
/// one. `progress` counts replayed calls over all policies; the total is
/// `trace.invocations() * (policies + 1)` at most.
pub fn compare(
    trace: &Trace,
    policies: &[String],
    keep_alive_ms: u64,
    options: &SimOptions,
    threads: usize,
    progress: &AtomicU64,
) -> Result<Comparison, SimError> {
    let mut specs = Vec::new();
    for text in policies {
        let spec =
            PolicySpec::parse(text, keep_alive_ms).map_err(|e| SimError::Option(e.to_string()))?;
        specs.push((text.clone(), spec));
    }
    let baseline_spec = PolicySpec::parse(BASELINE, keep_alive_ms).expect("the baseline parses");
    let baseline = simulate(trace, BASELINE, &baseline_spec, options, progress)?;
    let implied_budget_mb = (options.budget_mb.is_none()
        && specs.iter().any(|(_, spec)| spec.needs_budget()))
    .then_some(baseline.mean_resident_mb);
    let budgeted = SimOptions {
        budget_mb: options.budget_mb.or(implied_budget_mb),
        ..*options
    };
    let jobs: Vec<(&String, &PolicySpec, SimOptions)> = specs
        .iter()
        .filter(|(text, _)| text != BASELINE)
        .map(|(text, spec)| {
            let options = if spec.needs_budget() {
                budgeted
            } else {
                *options
            };
            (text, spec, options)
        })
        .collect();
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<PolicyOutcome, SimError>>>> =
        Mutex::new(vec![None; jobs.len()]);
    std::thread::scope(|scope| {
        for _ in 0..threads.clamp(1, jobs.len().max(1)) {
            scope.spawn(|| {
                loop {
                    let job = next.fetch_add(1, Ordering::Relaxed);
                    let Some((text, spec, options)) = jobs.get(job) else {
                        return;
                    };
                    let outcome = simulate(trace, text, spec, options, progress);
                    results.lock().expect("results lock")[job] = Some(outcome);
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results lock").into_iter();
    let mut outcomes = Vec::new();
    let mut baseline_added = false;
    for (text, _) in &specs {
        if text == BASELINE {
            outcomes.push(baseline.clone());
            baseline_added = true;
        } else {
            outcomes.push(results.next().flatten().expect("every job ran")?);
        }
    }
    if !baseline_added {
        outcomes.insert(0, baseline.clone());
    }
    for outcome in &mut outcomes {
        outcome.wasted_vs_baseline_pct = (baseline.wasted_mb_minutes > 0.0)
            .then(|| 100.0 * outcome.wasted_mb_minutes / baseline.wasted_mb_minutes);
    }
    Ok(Comparison {
        trace: trace.source.clone(),
        functions: trace.functions.len(),
        invocations: trace.invocations(),
        minutes: trace.span / 60_000,
        options: *options,
        implied_budget_mb,
        outcomes,
    })
}
