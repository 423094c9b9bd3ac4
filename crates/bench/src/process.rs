//! Sampling a server process during a phase: CPU time used and peak resident memory, read
//! from `/proc` (Linux).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kindling_telemetry::{Pid, ProcessStats};

/// Samples one process until [`ProcessSampler::finish`].
pub struct ProcessSampler {
    pid: u32,
    started: Instant,
    cpu_start: Option<f64>,
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
            cpu_start: cpu_seconds(pid),
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
        let cpu_percent = match (self.cpu_start, cpu_seconds(self.pid)) {
            (Some(start), Some(end)) if wall > 0.0 => Some((end - start) / wall * 100.0),
            _ => None,
        };
        let peak = self.peak_rss_kib.load(Ordering::Relaxed);
        Usage {
            cpu_percent,
            peak_rss_kib: (peak > 0).then_some(peak),
        }
    }
}

/// User plus system CPU time of a process, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    ProcessStats::read(Pid::Other(pid)).cpu_seconds
}

/// Resident set size of a process, in KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    ProcessStats::read(Pid::Other(pid))
        .resident_bytes
        .map(|bytes| bytes / 1024)
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
