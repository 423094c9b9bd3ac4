//! What `/proc` says about a process (Linux): CPU seconds to the clock tick (the `prometheus`
//! crate's own collector rounds them to whole seconds, too coarse for a per-second
//! dashboard), resident and peak resident memory, threads, open files and start time. The
//! node's `process_*` metrics, the load generator's sampler and the fleet benchmark all read
//! through here.
//!
//! Reading `/proc` is file I/O: call it from a blocking thread on an async runtime.

/// A process to read: this one, or another by pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    /// The calling process (`/proc/self`).
    This,
    /// Another process.
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Self::This => "/proc/self".to_string(),
            Self::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// What `/proc` says now; fields are `None` where it could not be read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User and system CPU time, in seconds.
    pub cpu_seconds: Option<f64>,
    /// Resident memory (`VmRSS`), in bytes.
    pub resident_bytes: Option<u64>,
    /// Peak resident memory (`VmHWM`), in bytes.
    pub peak_resident_bytes: Option<u64>,
    /// OS threads.
    pub threads: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Start time since the Unix epoch, in seconds.
    pub start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads everything for `pid`.
    pub fn read(pid: Pid) -> Self {
        let dir = pid.dir();
        let ticks = rustix::param::clock_ticks_per_second() as f64;
        let mut stats = Self {
            open_fds: std::fs::read_dir(format!("{dir}/fd"))
                .ok()
                .map(|entries| entries.count() as u64),
            ..Self::default()
        };
        if let Ok(status) = std::fs::read_to_string(format!("{dir}/status")) {
            let kib = |name: &str| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .map(|kib| kib * 1024)
            };
            stats.resident_bytes = kib("VmRSS:");
            stats.peak_resident_bytes = kib("VmHWM:");
        }
        let Ok(stat) = std::fs::read_to_string(format!("{dir}/stat")) else {
            return stats;
        };
        // The command name may hold spaces and parentheses; the fields follow the last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return stats;
        };
        // `rest` starts at field 3 (state): field n is at index n - 3.
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
        if let (Some(user), Some(system)) = (field(14), field(15)) {
            stats.cpu_seconds = Some((user + system) as f64 / ticks);
        }
        stats.threads = field(20);
        let boot = std::fs::read_to_string("/proc/stat").ok().and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("btime "))
                .and_then(|v| v.trim().parse::<u64>().ok())
        });
        if let (Some(boot), Some(start)) = (boot, field(22)) {
            stats.start_time_seconds = Some(boot as f64 + start as f64 / ticks);
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_and_others_by_pid() {
        let stats = ProcessStats::read(Pid::This);
        assert!(stats.resident_bytes.unwrap() > 0);
        assert!(stats.peak_resident_bytes.unwrap() >= stats.resident_bytes.unwrap());
        assert!(stats.threads.unwrap() >= 1);
        assert!(stats.open_fds.unwrap() >= 3);
        assert!(stats.start_time_seconds.unwrap() > 1_500_000_000.0);
        // Burn a little CPU so the reading cannot be a stale zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        assert!(x != 1);
        assert!(ProcessStats::read(Pid::This).cpu_seconds.unwrap() > 0.0);
        let by_pid = ProcessStats::read(Pid::Other(std::process::id()));
        assert!(by_pid.resident_bytes.unwrap() > 0);
        assert_eq!(
            ProcessStats::read(Pid::Other(u32::MAX)),
            ProcessStats::default()
        );
    }
}
