//! Sampling a server process during a phase: CPU time used and peak resident memory, read
//! from `/proc` (Linux).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Samples one process until [`ProcessSampler::finish`].
pub struct ProcessSampler {
    pid: u32,
    started: Instant,
    cpu_start: Option<u64>,
    peak_rss_kib: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

/// What a process used during a phase.
#[derive(Debug, Clone, Copy)]
pub struct Usage {
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Highest resident set size seen, in KiB.
    pub peak_rss_kib: Option<u64>,
}

impl ProcessSampler {
    /// Starts sampling `pid` every 50 ms.
    pub fn start(pid: u32) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_kib(pid).unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    p.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Self {
            pid,
            started: Instant::now(),
            cpu_start: cpu_ticks(pid),
            peak_rss_kib: peak,
            stop,
            thread,
        }
    }

    /// Stops sampling and reports.
    pub fn finish(self) -> Usage {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        let wall = self.started.elapsed().as_secs_f64();
        let cpu_percent = match (self.cpu_start, cpu_ticks(self.pid)) {
            (Some(start), Some(end)) if wall > 0.0 => {
                let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
                Some((end - start) as f64 / ticks_per_second / wall * 100.0)
            }
            _ => None,
        };
        let peak = self.peak_rss_kib.load(Ordering::Relaxed);
        Usage {
            cpu_percent,
            peak_rss_kib: (peak > 0).then_some(peak),
        }
    }
}

/// User plus system CPU time of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces; fields resume after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident set size of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_this_process() {
        let sampler = ProcessSampler::start(std::process::id());
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_add(i));
        }
        let usage = sampler.finish();
        assert!(usage.peak_rss_kib.unwrap() > 0);
        assert!(usage.cpu_percent.unwrap() > 0.0);
    }
}
