//! `kindling bench --fleet N`: the cold-start and density scenarios. Optionally deploys N
//! distinct copies of one module (`--module`), records the server's memory, then sends one
//! request to each function of a random sample (its first since the node started: a cold start
//! when the node was restarted after the deploy) and a second one (warm), one at a time so that
//! each latency is the request's own, and reports both distributions apart, the cold starts the
//! node counted, and the server's memory.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use kindling_registry::FunctionConfig;
use reqwest::Method;
use serde::Serialize;

use crate::client::Client;

/// How many deploys run at once (the node compiles each; more would only queue).
const DEPLOY_CONCURRENCY: usize = 2;

/// What a fleet run measured.
#[derive(Debug, Serialize)]
pub(crate) struct FleetReport {
    /// Functions in the fleet.
    pub(crate) functions: usize,
    /// The deploy phase, when `--module` was given.
    pub(crate) deploy: Option<DeployPhase>,
    /// Server memory before the requests (after the deploys, if any), KiB.
    pub(crate) rss_before_kib: Option<u64>,
    /// Functions sampled.
    pub(crate) sample: usize,
    /// The first request to each sampled function.
    pub(crate) first: Percentiles,
    /// Cold starts the node counted for the sampled functions.
    pub(crate) cold_starts: u64,
    /// The second request to each sampled function.
    pub(crate) warm: Percentiles,
    /// Server memory after the requests, and its peak, KiB.
    pub(crate) rss_after_kib: Option<u64>,
    pub(crate) peak_rss_kib: Option<u64>,
}

/// The deploy phase.
#[derive(Debug, Serialize)]
pub(crate) struct DeployPhase {
    pub(crate) seconds: f64,
    pub(crate) per_second: f64,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: usize,
    pub(crate) errors: usize,
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
}

impl Percentiles {
    fn of(mut latencies: Vec<Duration>, errors: usize) -> Self {
        latencies.sort_unstable();
        let at = |q: f64| {
            if latencies.is_empty() {
                return 0;
            }
            let rank = ((q * latencies.len() as f64).ceil() as usize).clamp(1, latencies.len());
            latencies[rank - 1].as_micros() as u64
        };
        Self {
            count: latencies.len(),
            errors,
            p50_us: at(0.5),
            p90_us: at(0.9),
            p99_us: at(0.99),
            max_us: at(1.0),
        }
    }
}

/// The fleet's function names.
pub(crate) fn name(index: usize) -> String {
    format!("fleet-{index:05}")
}

/// Runs the scenario against the node at `client`.
pub(crate) async fn run(
    client: &Client,
    functions: usize,
    module: Option<&Path>,
    sample: usize,
    pid: Option<u32>,
    progress: impl Fn(&str, usize, usize),
) -> anyhow::Result<FleetReport> {
    let deploy = match module {
        Some(path) => {
            let bytes = std::fs::read(path)
                .with_context(|| format!("cannot read --module {}", path.display()))?;
            Some(deploy_all(client, &bytes, functions, &progress).await?)
        }
        None => {
            let deployed: std::collections::HashSet<String> = client
                .functions()
                .await?
                .into_iter()
                .map(|f| f.name)
                .collect();
            let missing = (0..functions)
                .filter(|&i| !deployed.contains(&name(i)))
                .count();
            if missing > 0 {
                return Err(crate::UsageError(format!(
                    "{missing} of the {functions} fleet functions ({}..{}) are not deployed on \
                     this node: deploy them with --module FILE.wasm",
                    name(0),
                    name(functions - 1)
                ))
                .into());
            }
            None
        }
    };
    let rss_before_kib = pid.and_then(|pid| memory(pid).0);
    let chosen = choose(functions, sample);
    let mut first = (Vec::new(), 0);
    for (n, &index) in chosen.iter().enumerate() {
        progress("first requests", n, chosen.len());
        record(&mut first, request(client, &name(index)).await);
    }
    let mut cold_starts = 0;
    for &index in &chosen {
        cold_starts += client.function(&name(index)).await?.stats.cold_starts;
    }
    let mut warm = (Vec::new(), 0);
    for (n, &index) in chosen.iter().enumerate() {
        progress("warm requests", n, chosen.len());
        record(&mut warm, request(client, &name(index)).await);
    }
    let (rss_after_kib, peak_rss_kib) = pid.map_or((None, None), memory);
    Ok(FleetReport {
        functions,
        deploy,
        rss_before_kib,
        sample: chosen.len(),
        first: Percentiles::of(first.0, first.1),
        cold_starts,
        warm: Percentiles::of(warm.0, warm.1),
        rss_after_kib,
        peak_rss_kib,
    })
}

async fn deploy_all(
    client: &Client,
    module: &[u8],
    functions: usize,
    progress: &impl Fn(&str, usize, usize),
) -> anyhow::Result<DeployPhase> {
    let started = Instant::now();
    let config = FunctionConfig::default();
    let mut deploys = futures::stream::iter(0..functions)
        .map(|index| {
            let copy = kindling_bench::variant(module, index as u64);
            let config = &config;
            async move {
                client
                    .deploy(&name(index), copy, config)
                    .await
                    .with_context(|| format!("deploying {}", name(index)))
            }
        })
        .buffer_unordered(DEPLOY_CONCURRENCY);
    let mut done = 0;
    while let Some(result) = deploys.next().await {
        result?;
        done += 1;
        progress("deploying", done, functions);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(DeployPhase {
        seconds,
        per_second: functions as f64 / seconds,
    })
}

/// One GET to the function, timed until the whole body is in.
async fn request(client: &Client, function: &str) -> Result<Duration, ()> {
    let started = Instant::now();
    let response = client
        .invoke(
            Method::GET,
            &format!("/{function}/"),
            Vec::new(),
            Vec::new(),
        )
        .await
        .map_err(|_| ())?;
    let ok = response.status().is_success();
    let body = response.bytes().await;
    match (ok, body) {
        (true, Ok(_)) => Ok(started.elapsed()),
        _ => Err(()),
    }
}

fn record(into: &mut (Vec<Duration>, usize), result: Result<Duration, ()>) {
    match result {
        Ok(latency) => into.0.push(latency),
        Err(()) => into.1 += 1,
    }
}

/// `sample` distinct indices below `functions`, in a random order (a partial Fisher-Yates
/// shuffle with a clock-seeded xorshift: no two runs touch the functions in the same order).
fn choose(functions: usize, sample: usize) -> Vec<usize> {
    let mut state = Instant::now().elapsed().as_nanos() as u64
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
        | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut indices: Vec<usize> = (0..functions).collect();
    let sample = sample.min(functions);
    for i in 0..sample {
        let j = i + (next() % (functions - i) as u64) as usize;
        indices.swap(i, j);
    }
    indices.truncate(sample);
    indices
}

/// The process's resident memory now and its peak, KiB, from `/proc`.
fn memory(pid: u32) -> (Option<u64>, Option<u64>) {
    let stats = kindling_telemetry::ProcessStats::read(kindling_telemetry::Pid::Other(pid));
    let kib = |bytes: Option<u64>| bytes.map(|b| b / 1024);
    (kib(stats.resident_bytes), kib(stats.peak_resident_bytes))
}

/// The report as text.
pub(crate) fn table(report: &FleetReport) -> String {
    let mib =
        |kib: Option<u64>| kib.map_or("-".to_string(), |k| format!("{:.1} MiB", k as f64 / 1024.0));
    let mut out = format!("{} functions", report.functions);
    if let Some(deploy) = &report.deploy {
        out.push_str(&format!(
            ", deployed in {:.1} s ({:.1}/s)",
            deploy.seconds, deploy.per_second
        ));
    }
    out.push_str(&format!(
        "\nserver memory: {} before the requests, {} after, peak {}\n",
        mib(report.rss_before_kib),
        mib(report.rss_after_kib),
        mib(report.peak_rss_kib)
    ));
    out.push_str(&format!(
        "\n{:<16}{:>8}{:>8}{:>11}{:>11}{:>11}{:>11}\n",
        "requests", "count", "errors", "p50", "p90", "p99", "max"
    ));
    let ms = |us: u64| format!("{:.2} ms", us as f64 / 1000.0);
    for (label, p) in [("first (cold)", &report.first), ("warm", &report.warm)] {
        out.push_str(&format!(
            "{label:<16}{:>8}{:>8}{:>11}{:>11}{:>11}{:>11}\n",
            p.count,
            p.errors,
            ms(p.p50_us),
            ms(p.p90_us),
            ms(p.p99_us),
            ms(p.max_us)
        ));
    }
    out.push_str(&format!(
        "\nthe node counted {} cold starts for the {} sampled functions\n",
        report.cold_starts, report.sample
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_distinct_and_in_range() {
        let mut chosen = choose(50, 20);
        assert_eq!(chosen.len(), 20);
        chosen.sort_unstable();
        chosen.dedup();
        assert_eq!(chosen.len(), 20);
        assert!(chosen.iter().all(|&i| i < 50));
        assert_eq!(choose(3, 10).len(), 3);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let latencies = (1..=100).map(Duration::from_micros).collect();
        let p = Percentiles::of(latencies, 2);
        assert_eq!((p.p50_us, p.p90_us, p.p99_us, p.max_us), (50, 90, 99, 100));
        assert_eq!((p.count, p.errors), (100, 2));
    }
}
