//! The standard `process_*` metrics of this process, read from `/proc/self`: CPU seconds to the
//! clock tick (the `prometheus` crate's own collector rounds them to whole seconds, too coarse
//! for a per-second dashboard), resident memory, threads, open files and start time.

/// What `/proc/self` says now; fields are `None` where it could not be read.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: Option<f64>,
    pub(crate) resident_bytes: Option<u64>,
    pub(crate) threads: Option<u64>,
    pub(crate) open_fds: Option<u64>,
    pub(crate) start_time_seconds: Option<f64>,
}

pub(crate) fn read() -> ProcessStats {
    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let page = rustix::param::page_size() as u64;
    let mut stats = ProcessStats {
        open_fds: std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as u64),
        ..ProcessStats::default()
    };
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
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
    stats.resident_bytes = field(24).map(|pages| pages * page);
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

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_process() {
        let stats = super::read();
        assert!(stats.resident_bytes.unwrap() > 0);
        assert!(stats.threads.unwrap() >= 1);
        assert!(stats.open_fds.unwrap() >= 3);
        assert!(stats.start_time_seconds.unwrap() > 1_500_000_000.0);
        // Burn a little CPU so the reading cannot be a stale zero.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        assert!(super::read().cpu_seconds.unwrap() > 0.0);
    }
}
