//! What a phase measured, as a table for people and JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::spec::Load;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    /// Responses measured.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Maximum.
    pub max_us: u64,
}

impl From<&Histogram<u64>> for Latency {
    fn from(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// What the server process used during the phase.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ServerUsage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Highest resident set size seen, in KiB.
    pub peak_rss_kib: Option<u64>,
}

/// The result of one phase.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseReport {
    /// The phase's name.
    pub name: String,
    /// The load it applied.
    #[serde(serialize_with = "serialize_load")]
    pub load: Load,
    /// Its length in seconds.
    pub duration_s: f64,
    /// Requests per second scheduled (open loop).
    pub offered_rate: Option<f64>,
    /// Requests scheduled (open loop).
    pub scheduled: Option<u64>,
    /// Requests sent.
    pub sent: u64,
    /// Responses received, any status.
    pub completed: u64,
    /// Requests due during the phase that never left the client (the server fell so far
    /// behind that they would have been late by more than the request timeout).
    pub backlog: u64,
    /// Responses per second.
    pub achieved_rate: f64,
    /// Responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// Transport errors and timeouts by kind.
    pub errors: BTreeMap<String, u64>,
    /// Latency from the scheduled time (open loop) or the send (closed loop): `all`, and by
    /// status class (`2xx`, `4xx`, `5xx`).
    pub latency: BTreeMap<String, Latency>,
    /// Latency from the moment each request was actually written, `all` and by status class:
    /// the server's own answer time, without waiting for a busy connection.
    pub service: BTreeMap<String, Latency>,
    /// The server's CPU and memory, when its pid was given.
    pub server: Option<ServerUsage>,
}

fn serialize_load<S: serde::Serializer>(load: &Load, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    match *load {
        Load::Open {
            from,
            to,
            connections,
        } => {
            map.serialize_entry("mode", "open")?;
            map.serialize_entry("rate_from", &from)?;
            map.serialize_entry("rate_to", &to)?;
            map.serialize_entry("connections", &connections)?;
        }
        Load::Closed { connections } => {
            map.serialize_entry("mode", "closed")?;
            map.serialize_entry("connections", &connections)?;
        }
    }
    map.end()
}

impl PhaseReport {
    /// Errors of any kind: transport errors, timeouts and requests never sent.
    pub fn failed(&self) -> u64 {
        self.errors.values().sum::<u64>() + self.backlog
    }

    /// A short description of the load.
    pub fn load_label(&self) -> String {
        match self.load {
            Load::Open {
                from,
                to,
                connections,
            } if from == to => {
                format!("open {from:.0}/s x{connections}")
            }
            Load::Open {
                from,
                to,
                connections,
            } => {
                format!("ramp {from:.0}->{to:.0}/s x{connections}")
            }
            Load::Closed { connections } => format!("closed x{connections}"),
        }
    }
}

/// Formats reports as an aligned table, one row per phase, plus a line per phase for the
/// status and error breakdown when there is one.
pub fn table(reports: &[PhaseReport]) -> String {
    let header = [
        "PHASE",
        "LOAD",
        "OFFERED/s",
        "ACHIEVED/s",
        "OK",
        "NON-2XX",
        "FAILED",
        "P50",
        "P90",
        "P99",
        "P99.9",
        "MAX",
        "CPU%",
        "PEAK RSS",
    ];
    let rows: Vec<Vec<String>> = reports
        .iter()
        .map(|r| {
            let all = r.latency.get("all").copied().unwrap_or_default();
            let ok = r.latency.get("2xx").map_or(0, |l| l.count);
            vec![
                r.name.clone(),
                r.load_label(),
                r.offered_rate.map_or("-".into(), |v| format!("{v:.1}")),
                format!("{:.1}", r.achieved_rate),
                ok.to_string(),
                (r.completed - ok).to_string(),
                r.failed().to_string(),
                duration(all.p50_us),
                duration(all.p90_us),
                duration(all.p99_us),
                duration(all.p999_us),
                duration(all.max_us),
                r.server
                    .and_then(|s| s.cpu_percent)
                    .map_or("-".into(), |c| format!("{c:.0}")),
                r.server
                    .and_then(|s| s.peak_rss_kib)
                    .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", text.join("  ").trim_end());
    };
    line(&mut out, header.to_vec());
    for row in &rows {
        line(&mut out, row.iter().map(String::as_str).collect());
    }
    for r in reports {
        let mut notes = Vec::new();
        let non_ok: Vec<String> = r
            .statuses
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(s, n)| format!("{n} x {s}"))
            .collect();
        if !non_ok.is_empty() {
            notes.push(format!("statuses: {}", non_ok.join(", ")));
        }
        if !r.errors.is_empty() {
            let errors: Vec<String> = r.errors.iter().map(|(k, n)| format!("{n} x {k}")).collect();
            notes.push(format!("errors: {}", errors.join(", ")));
        }
        if r.backlog > 0 {
            notes.push(format!(
                "{} requests never sent (client backlog)",
                r.backlog
            ));
        }
        if !notes.is_empty() {
            let _ = writeln!(out, "  {}: {}", r.name, notes.join("; "));
        }
    }
    out
}

/// Formats microseconds for a table cell.
fn duration(us: u64) -> String {
    if us >= 1_000_000 {
        format!("{:.2}s", us as f64 / 1e6)
    } else if us >= 1_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{us}us")
    }
}
