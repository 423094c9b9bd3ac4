//! `kindling sim`: replay a trace through keep-alive policies and compare cold starts with
//! the memory they hold, against the fixed 10-minute keep-alive.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kindling_sim::{DEFAULT_POLICIES, SimOptions, Trace};

use super::OutputArgs;
use crate::UsageError;
use crate::output::print_json;
use crate::units::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct SimCommand {
    /// The trace: an Azure Functions 2019 directory (invocations, durations and memory CSVs)
    /// or invocations file, or an Azure Functions 2021 per-invocation file
    trace: PathBuf,
    /// A policy to compare (repeatable): fixed[:TTL], lru, gdsf, hybrid[:KEY=VALUE,...] or
    /// kindling[:KEY=VALUE,...], as `kindling serve --keep-alive-policy` takes them
    /// [default: fixed:1m, fixed:5m, fixed:10m, fixed:20m, fixed:60m, lru, gdsf, hybrid, kindling]
    #[arg(long = "policy", short = 'p', value_name = "POLICY")]
    policies: Vec<String>,
    /// The keep-alive of a bare `fixed`, and the fallback of `kindling`
    #[arg(long, default_value = "10m", value_parser = parse_duration, env = "KINDLING_KEEP_ALIVE")]
    keep_alive: Duration,
    /// How often the policies run on the simulated clock (the 2019 trace has 1-minute bins)
    #[arg(long, default_value = "1m", value_parser = parse_duration, env = "KINDLING_SIM_TICK")]
    tick: Duration,
    /// Memory all resident functions may hold, in MB; LRU and GDSF need one and otherwise get
    /// the mean resident memory of fixed:10m
    #[arg(long, env = "KINDLING_SIM_BUDGET_MB")]
    budget_mb: Option<f64>,
    /// What a cold start costs, in milliseconds (told to cost-aware policies: GDSF, kindling)
    #[arg(long, default_value_t = 1.0, env = "KINDLING_SIM_LOAD_MS")]
    load_ms: f64,
    /// Memory of functions the trace gives none for, in MB (the 2021 trace has none)
    #[arg(long, default_value_t = 128.0, env = "KINDLING_SIM_MEMORY_MB")]
    memory_mb: f64,
    /// Also write the trade-off plot, as SVG, to this file
    #[arg(long, value_name = "FILE.svg", env = "KINDLING_SIM_PLOT")]
    plot: Option<PathBuf>,
    /// Replays run in parallel on this many threads [default: the number of CPUs]
    #[arg(long, env = "KINDLING_SIM_THREADS")]
    threads: Option<usize>,
    #[command(flatten)]
    output: OutputArgs,
}

impl SimCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        if !(self.memory_mb > 0.0 && self.memory_mb.is_finite()) {
            return Err(UsageError("--memory-mb must be a positive number".into()).into());
        }
        if !(self.load_ms >= 0.0 && self.load_ms.is_finite()) {
            return Err(UsageError("--load-ms must be a number >= 0".into()).into());
        }
        if self.budget_mb.is_some_and(|b| !(b > 0.0 && b.is_finite())) {
            return Err(UsageError("--budget-mb must be a positive number".into()).into());
        }
        if self.tick.as_millis() == 0 {
            return Err(UsageError("--tick must be at least a millisecond".into()).into());
        }
        let keep_alive_ms = self.keep_alive.as_millis() as u64;
        let policies: Vec<String> = if self.policies.is_empty() {
            DEFAULT_POLICIES.iter().map(|p| p.to_string()).collect()
        } else {
            self.policies.clone()
        };
        for policy in &policies {
            kindling_scheduler::PolicySpec::parse(policy, keep_alive_ms)
                .map_err(|e| UsageError(format!("--policy: {e}")))?;
        }
        let options = SimOptions {
            tick: self.tick.as_millis() as u64,
            budget_mb: self.budget_mb,
            load_ms: self.load_ms,
        };
        let threads = self
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let json = self.output.json;
        let plot = self.plot.clone();
        let trace_path = self.trace.clone();
        let memory_mb = self.memory_mb;
        let comparison = tokio::task::spawn_blocking(move || {
            let trace = Trace::load(&trace_path, memory_mb)?;
            let progress = Arc::new(AtomicU64::new(0));
            let total = trace.invocations() * (policies.len() as u64 + 1);
            let bar = (!json).then(|| progress_bar(total, progress.clone()));
            let result = kindling_sim::compare(
                &trace,
                &policies,
                keep_alive_ms,
                &options,
                threads,
                &progress,
            );
            if let Some((bar, stop)) = bar {
                stop.store(true, Ordering::Relaxed);
                bar.finish_and_clear();
            }
            anyhow::Ok(result?)
        })
        .await??;
        if let Some(path) = &plot {
            std::fs::write(path, comparison.svg())
                .with_context(|| format!("cannot write the plot to {}", path.display()))?;
        }
        if json {
            return print_json(&comparison);
        }
        crate::output::out!("{}", comparison.table());
        if let Some(path) = &plot {
            crate::output::outln!("\nplot: {}", path.display());
        }
        Ok(())
    }
}

/// A bar over all replays, updated from the shared counter until `stop` is set.
fn progress_bar(total: u64, progress: Arc<AtomicU64>) -> (ProgressBar, Arc<AtomicBool>) {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} replaying [{bar:40}] {percent:>3}% {human_pos}/{human_len} calls, {per_sec}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let (bar_clone, stop_clone) = (bar.clone(), stop.clone());
    std::thread::spawn(move || {
        while !stop_clone.load(Ordering::Relaxed) {
            bar_clone.set_position(progress.load(Ordering::Relaxed));
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    (bar, stop)
}
