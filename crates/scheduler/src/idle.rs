//! Idle times and residency windows, shared by the policies that predict when a function will
//! be called next (the hybrid histogram policy and Kindling's default).
//!
//! An idle time is measured on the caller's ticks: from the end of the last interval in which
//! the function was called to the start of the next such interval, so calls in consecutive
//! intervals are 0 apart. A policy turns a function's idle-time history into **windows**:
//! half-open ranges of offsets from the end of its last active interval during which it should
//! be resident. Outside every window it is unloaded (if idle); entering a window that does not
//! start at 0 loads it ahead of the request (pre-warming).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::keepalive::{Millis, Resident, ResidentSet, Usage};

/// How many out-of-range idle times are kept for the forecast.
const FORECAST_HISTORY: usize = 16;

/// A histogram of one function's idle times: fixed-width bins over a bounded range, plus the
/// idle times that fell beyond it.
#[derive(Debug, Clone)]
pub(crate) struct IdleHistogram {
    bin: Millis,
    counts: Vec<u32>,
    in_range: u32,
    out_of_range: u32,
    recent_out_of_range: VecDeque<Millis>,
}

impl IdleHistogram {
    pub(crate) fn new(bin: Millis, bins: usize) -> Self {
        Self {
            bin: bin.max(1),
            counts: vec![0; bins.max(1)],
            in_range: 0,
            out_of_range: 0,
            recent_out_of_range: VecDeque::new(),
        }
    }

    pub(crate) fn add(&mut self, idle: Millis) {
        let index = (idle / self.bin) as usize;
        if let Some(count) = self.counts.get_mut(index) {
            *count += 1;
            self.in_range += 1;
        } else {
            self.out_of_range += 1;
            if self.recent_out_of_range.len() == FORECAST_HISTORY {
                self.recent_out_of_range.pop_front();
            }
            self.recent_out_of_range.push_back(idle);
        }
    }

    pub(crate) fn bin(&self) -> Millis {
        self.bin
    }

    /// The end of the histogram's range.
    pub(crate) fn range(&self) -> Millis {
        self.bin * self.counts.len() as Millis
    }

    pub(crate) fn samples(&self) -> u32 {
        self.in_range + self.out_of_range
    }

    pub(crate) fn out_of_range_share(&self) -> f64 {
        f64::from(self.out_of_range) / f64::from(self.samples().max(1))
    }

    /// The bin holding the `q` quantile of the in-range idle times.
    pub(crate) fn quantile_bin(&self, q: f64) -> Option<usize> {
        if self.in_range == 0 {
            return None;
        }
        let target = (q * f64::from(self.in_range)).ceil().max(1.0);
        let mut seen = 0.0;
        for (index, &count) in self.counts.iter().enumerate() {
            seen += f64::from(count);
            if seen >= target {
                return Some(index);
            }
        }
        Some(self.counts.len() - 1)
    }

    /// Coefficient of variation of the bin counts: high when the idle times gather in a few
    /// bins (a pattern), low when they spread evenly (no pattern).
    pub(crate) fn bin_count_cv(&self) -> f64 {
        let n = self.counts.len() as f64;
        let mean = f64::from(self.in_range) / n;
        if mean == 0.0 {
            return 0.0;
        }
        let variance = self
            .counts
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        variance.sqrt() / mean
    }

    /// The next out-of-range idle time, forecast from the recent ones: an exponentially
    /// weighted mean, so a drifting period is followed.
    pub(crate) fn forecast_out_of_range(&self) -> Option<Millis> {
        let mut estimate: Option<f64> = None;
        for &idle in &self.recent_out_of_range {
            let idle = idle as f64;
            estimate = Some(match estimate {
                None => idle,
                Some(previous) => 0.5 * previous + 0.5 * idle,
            });
        }
        estimate.map(|e| e as Millis)
    }

    pub(crate) fn counts(&self) -> &[u32] {
        &self.counts
    }

    pub(crate) fn in_range(&self) -> u32 {
        self.in_range
    }
}

/// Half-open offset ranges `[start, end)` from the end of the last active interval.
pub(crate) type Windows = Vec<(Millis, Millis)>;

/// One function as a window policy sees it.
#[derive(Debug, Clone)]
struct Tracked {
    histogram: IdleHistogram,
    /// The end of the last interval with calls.
    last_active: Millis,
    windows: Windows,
    /// The window already pre-warmed since the last call, so each is loaded once.
    prewarmed: Option<usize>,
}

/// The bookkeeping common to window policies: idle histograms fed by [`Usage`] records, a
/// plan of windows per function, and the evict and pre-warm decisions that follow from it.
#[derive(Debug, Clone)]
pub(crate) struct WindowTracker {
    bin: Millis,
    bins: usize,
    functions: HashMap<Arc<str>, Tracked>,
}

impl WindowTracker {
    pub(crate) fn new(bin: Millis, bins: usize) -> Self {
        Self {
            bin,
            bins,
            functions: HashMap::new(),
        }
    }

    /// Records an interval of use and replans the function with `plan`.
    pub(crate) fn record(
        &mut self,
        usage: Usage<'_>,
        plan: impl FnOnce(&IdleHistogram) -> Windows,
    ) {
        if usage.invocations == 0 {
            return;
        }
        let tracked = match self.functions.get_mut(usage.function) {
            Some(tracked) => {
                tracked
                    .histogram
                    .add(usage.since.saturating_sub(tracked.last_active));
                tracked
            }
            None => self
                .functions
                .entry(Arc::from(usage.function))
                .or_insert_with(|| Tracked {
                    histogram: IdleHistogram::new(self.bin, self.bins),
                    last_active: usage.now,
                    windows: Vec::new(),
                    prewarmed: None,
                }),
        };
        tracked.last_active = usage.now;
        tracked.prewarmed = None;
        tracked.windows = plan(&tracked.histogram);
    }

    /// Whether the plan wants `resident` unloaded at `now`; `None` for a function the tracker
    /// has never seen called.
    fn wants_unloaded(&self, resident: &Resident, now: Millis) -> Option<bool> {
        let tracked = self.functions.get(&resident.function)?;
        let offset = now.saturating_sub(tracked.last_active);
        Some(!in_windows(&tracked.windows, offset))
    }

    /// Idle residents the plans want unloaded at `now`; a function never seen called goes
    /// once it has been unused for `unknown_after`.
    pub(crate) fn outside_windows(
        &self,
        set: ResidentSet<'_>,
        now: Millis,
        unknown_after: Millis,
    ) -> Vec<Arc<str>> {
        set.residents
            .iter()
            .filter(|r| r.in_flight == 0)
            .filter(|r| {
                self.wants_unloaded(r, now)
                    .unwrap_or(now.saturating_sub(r.last_used) >= unknown_after)
            })
            .map(|r| r.function.clone())
            .collect()
    }

    /// Functions entering a window that starts after their last call.
    pub(crate) fn due(&mut self, now: Millis) -> Vec<Arc<str>> {
        let mut due = Vec::new();
        for (name, tracked) in &mut self.functions {
            let offset = now.saturating_sub(tracked.last_active);
            let window = tracked
                .windows
                .iter()
                .position(|&(start, end)| start > 0 && offset >= start && offset < end);
            if let Some(window) = window
                && tracked.prewarmed.is_none_or(|done| done < window)
            {
                tracked.prewarmed = Some(window);
                due.push(name.clone());
            }
        }
        due
    }

    pub(crate) fn forget(&mut self, function: &str) {
        self.functions.remove(function);
    }

    #[cfg(test)]
    pub(crate) fn windows(&self, function: &str) -> Option<&Windows> {
        self.functions.get(function).map(|t| &t.windows)
    }
}

fn in_windows(windows: &Windows, offset: Millis) -> bool {
    windows
        .iter()
        .any(|&(start, end)| offset >= start && offset < end)
}

/// Joins touching or overlapping windows; the input may be in any order.
pub(crate) fn merge(mut windows: Windows) -> Windows {
    windows.sort_unstable();
    let mut merged: Windows = Vec::with_capacity(windows.len());
    for (start, end) in windows {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_spread() {
        let mut histogram = IdleHistogram::new(60_000, 10);
        for idle in [0, 60_000, 60_000, 60_000, 120_000, 3_600_000] {
            histogram.add(idle);
        }
        assert_eq!(histogram.samples(), 6);
        assert_eq!(histogram.quantile_bin(0.05), Some(0));
        assert_eq!(histogram.quantile_bin(0.5), Some(1));
        assert_eq!(histogram.quantile_bin(0.99), Some(2));
        assert!((histogram.out_of_range_share() - 1.0 / 6.0).abs() < 1e-9);
        assert_eq!(histogram.forecast_out_of_range(), Some(3_600_000));

        let mut flat = IdleHistogram::new(1, 4);
        for idle in 0..4 {
            flat.add(idle);
        }
        assert_eq!(flat.bin_count_cv(), 0.0);
        let mut peaked = IdleHistogram::new(1, 4);
        for _ in 0..4 {
            peaked.add(2);
        }
        assert!((peaked.bin_count_cv() - 3f64.sqrt()).abs() < 1e-9);
    }

    #[test]
    fn forecast_follows_a_drifting_period() {
        let mut histogram = IdleHistogram::new(1, 1);
        for idle in [100, 100, 200, 200] {
            histogram.add(idle);
        }
        // 100, then halfway to each new value: 100, 150, 175.
        assert_eq!(histogram.forecast_out_of_range(), Some(175));
    }

    #[test]
    fn merge_joins_touching_windows() {
        assert_eq!(
            merge(vec![(5, 6), (0, 1), (1, 2), (4, 5), (10, 12), (11, 13)]),
            vec![(0, 2), (4, 6), (10, 13)]
        );
    }
}
