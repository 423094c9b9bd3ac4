//! `kindling bench`: load a URL open-loop (`--rate`) or closed-loop (`--connections`), or run
//! a scenario file of phases, and report throughput and latency percentiles.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use kindling_bench::{Load, Phase, PhaseReport, Progress, Scenario, Target};

use super::{OutputArgs, fleet};
use crate::UsageError;
use crate::client::Client;
use crate::output::print_json;
use crate::units::parse_duration;

#[derive(Debug, Args)]
pub(crate) struct BenchCommand {
    /// The URL to load, http:// only (overrides a scenario's target); `{n}` in its path is
    /// replaced by each request's number (0, 1, 2...), so that every request names its own
    /// resource
    url: Option<String>,
    /// Open loop: requests per second, sent on schedule whether or not earlier ones finished
    #[arg(long, env = "KINDLING_BENCH_RATE")]
    rate: Option<f64>,
    /// Open loop: ramp the rate linearly from --rate to this by the end of the run
    #[arg(long, requires = "rate", env = "KINDLING_BENCH_RATE_TO")]
    rate_to: Option<f64>,
    /// Connections: the pool an open loop spreads its requests over (default 64), or, without
    /// --rate, the closed-loop concurrency
    #[arg(long, short = 'c', env = "KINDLING_BENCH_CONNECTIONS")]
    connections: Option<usize>,
    /// How long to run
    #[arg(long, short = 'd', default_value = "10s", value_parser = parse_duration, env = "KINDLING_BENCH_DURATION")]
    duration: Duration,
    /// A scenario file (TOML) with several phases; see the bench crate for the format
    #[arg(long, conflicts_with_all = ["rate", "connections"], env = "KINDLING_BENCH_SCENARIO")]
    scenario: Option<PathBuf>,
    /// HTTP method
    #[arg(
        long,
        short = 'X',
        default_value = "GET",
        env = "KINDLING_BENCH_METHOD"
    )]
    method: String,
    /// A request header, `Name: value` (repeatable)
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// Request body: text, or @FILE
    #[arg(long, env = "KINDLING_BENCH_DATA")]
    data: Option<String>,
    /// How long one request may take before it counts as a timeout
    #[arg(long, default_value = "10s", value_parser = parse_duration, env = "KINDLING_BENCH_TIMEOUT")]
    timeout: Duration,
    /// Process id of the server, to report its CPU use and peak memory per phase
    #[arg(long, env = "KINDLING_BENCH_PID")]
    pid: Option<u32>,
    /// Cold-start and density scenarios over N functions named fleet-00000...: the URL is the
    /// node's base URL; one request to each sampled function (cold after a node restart), then
    /// a second (warm), one at a time
    #[arg(long, value_name = "N", conflicts_with_all = ["rate", "connections", "scenario"])]
    fleet: Option<usize>,
    /// With --fleet: first deploy N distinct copies of this module (they differ by a custom
    /// section, so each is its own artifact)
    #[arg(long, requires = "fleet", value_name = "FILE.wasm")]
    module: Option<PathBuf>,
    /// With --fleet: how many functions, chosen at random, get the two requests
    #[arg(long, requires = "fleet", default_value_t = 1000)]
    sample: usize,
    #[command(flatten)]
    output: OutputArgs,
}

impl BenchCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        if let Some(functions) = self.fleet {
            return self.fleet(functions).await;
        }
        let (url, phases) = self.plan()?;
        let target = self.target(&url)?;
        let mut reports: Vec<PhaseReport> = Vec::new();
        for phase in &phases {
            // Request numbers ({n}) go on from the phases before.
            let progress = Arc::new(Progress::default());
            let sent: u64 = reports.iter().map(|r| r.sent).sum();
            progress
                .sent
                .store(sent, std::sync::atomic::Ordering::Relaxed);
            let bar = progress_bar(phase, progress.clone(), self.output.json);
            let report = kindling_bench::run_phase(&target, phase, progress, self.pid).await;
            if let Some((bar, ticker)) = bar {
                ticker.abort();
                bar.finish_and_clear();
            }
            reports.push(report);
        }
        if self.output.json {
            return print_json(&reports);
        }
        crate::output::outln!("{url}");
        crate::output::out!("{}", kindling_bench::table(&reports));
        Ok(())
    }

    async fn fleet(&self, functions: usize) -> anyhow::Result<()> {
        let url = self.url.as_deref().ok_or_else(|| {
            UsageError("--fleet needs the node's base URL, e.g. http://127.0.0.1:3000".into())
        })?;
        if functions == 0 || self.sample == 0 {
            return Err(UsageError("--fleet and --sample must be at least 1".into()).into());
        }
        // The fleet is deployed through the admin API, as `kindling deploy` would.
        let client = Client::with_credentials(url, std::env::var("KINDLING_TOKEN").ok(), None)?;
        let bar = (!self.output.json).then(|| {
            let bar = ProgressBar::new(functions as u64);
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len}")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        });
        let progress = |what: &str, done: usize, total: usize| {
            if let Some(bar) = &bar {
                bar.set_message(what.to_string());
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
        };
        let report = fleet::run(
            &client,
            functions,
            self.module.as_deref(),
            self.sample,
            self.pid,
            progress,
        )
        .await?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        if self.output.json {
            return print_json(&report);
        }
        crate::output::out!("{}", fleet::table(&report));
        Ok(())
    }

    fn plan(&self) -> Result<(String, Vec<Phase>), UsageError> {
        if let Some(path) = &self.scenario {
            let text = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!("cannot read --scenario {}: {e}", path.display()))
            })?;
            let scenario = Scenario::parse(&text)
                .map_err(|e| UsageError(format!("{}: {e}", path.display())))?;
            let url = self.url.clone().or(scenario.target).ok_or_else(|| {
                UsageError("give a URL, or a `target` in the scenario file".into())
            })?;
            return Ok((url, scenario.phases));
        }
        let url = self
            .url
            .clone()
            .ok_or_else(|| UsageError("give the URL to load, or --scenario FILE".into()))?;
        let load = match (self.rate, self.connections) {
            (Some(rate), connections) => {
                let to = self.rate_to.unwrap_or(rate);
                if rate <= 0.0 || to <= 0.0 {
                    return Err(UsageError("--rate and --rate-to must be positive".into()));
                }
                Load::Open {
                    from: rate,
                    to,
                    connections: connections.unwrap_or(64).max(1),
                }
            }
            (None, connections) => Load::Closed {
                connections: connections.unwrap_or(64).max(1),
            },
        };
        let phase = Phase {
            name: "run".into(),
            load,
            duration: self.duration,
        };
        Ok((url, vec![phase]))
    }

    fn target(&self, url: &str) -> anyhow::Result<Target> {
        let uri: http::Uri = url
            .replace("{n}", "0")
            .parse()
            .map_err(|e| UsageError(format!("{url:?} is not a URL: {e}")))?;
        if uri.scheme_str() != Some("http") || uri.host().is_none() {
            return Err(UsageError(format!("{url:?}: kindling bench loads http:// URLs")).into());
        }
        // The path and query as written, `{n}` and all (the parsed URI holds a 0 there).
        let after_scheme = &url[url.find("://").map_or(0, |i| i + 3)..];
        let path = &after_scheme[after_scheme.find(['/', '?']).unwrap_or(after_scheme.len())..];
        if url.contains("{n}") && !path.contains("{n}") {
            return Err(UsageError(format!("{url:?}: {{n}} belongs in the path or query")).into());
        }
        let numbered_path = path.contains("{n}").then(|| match path.starts_with('?') {
            true => format!("/{path}"),
            false => path.to_string(),
        });
        let mut target = Target::get(uri);
        target.numbered_path = numbered_path;
        target.timeout = self.timeout;
        target.method = http::Method::from_bytes(self.method.to_uppercase().as_bytes())
            .map_err(|_| UsageError(format!("--method {:?} is not an HTTP method", self.method)))?;
        for header in &self.headers {
            let (name, value) = header.split_once(':').ok_or_else(|| {
                UsageError(format!("--header {header:?} must look like `Name: value`"))
            })?;
            let name: http::HeaderName = name
                .trim()
                .parse()
                .map_err(|_| UsageError(format!("--header {header:?}: bad header name")))?;
            let value: http::HeaderValue = value
                .trim()
                .parse()
                .map_err(|_| UsageError(format!("--header {header:?}: bad header value")))?;
            target.headers.append(name, value);
        }
        if let Some(data) = &self.data {
            target.body = match data.strip_prefix('@') {
                Some(path) => std::fs::read(path)
                    .with_context(|| format!("cannot read --data @{path}"))?
                    .into(),
                None => data.clone().into_bytes().into(),
            };
        }
        Ok(target)
    }
}

/// A progress bar with the live rate, redrawn four times a second; none when printing JSON or
/// when stderr is not a terminal (indicatif hides itself then).
fn progress_bar(
    phase: &Phase,
    progress: Arc<Progress>,
    json: bool,
) -> Option<(ProgressBar, tokio::task::JoinHandle<()>)> {
    if json {
        return None;
    }
    let total = phase.duration.as_millis() as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{prefix} [{bar:30}] {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(phase.name.clone());
    let ticking = bar.clone();
    let ticker = tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let mut last = (0u64, started);
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = tokio::time::Instant::now();
            let done = progress.completed.load(Ordering::Relaxed);
            let errors = progress.errors.load(Ordering::Relaxed);
            let rate = (done - last.0) as f64 / (now - last.1).as_secs_f64();
            last = (done, now);
            ticking.set_position((now - started).as_millis() as u64);
            ticking.set_message(format!("{rate:.0} req/s, {done} answered, {errors} errors"));
        }
    });
    Some((bar, ticker))
}
