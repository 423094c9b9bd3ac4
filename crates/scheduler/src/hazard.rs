//! Kindling's default keep-alive policy: hazard windows.
//!
//! The papers' policies keep a container for one contiguous stretch after each call because
//! bringing it back costs seconds. Bringing a Wasm function back costs about a millisecond
//! (map the compiled artifact, link), and so does loading it ahead of time. That changes the
//! trade-off in three ways this policy uses:
//! - **Residency need not be contiguous.** From a function's idle-time histogram (1-minute
//!   bins over 4 hours) the policy keeps the function resident only in the bins where a call
//!   is likely *given that none has come yet* (the hazard: calls in the bin over calls in it or
//!   later), unloading in between and loading again ahead of the next likely bin. A function
//!   called either a minute or half an hour after the last call holds memory for two minutes,
//!   not thirty.
//! - **Pre-warming needs no safety margin of 10%**: loading ahead is cheap enough to do at
//!   the start of every likely bin, and each window is exactly one bin wide.
//! - **A miss is cheap**, so a bin is held only when it is likely enough (`hazard`, 5% by
//!   default) rather than to cover the 99th percentile.
//!
//! Functions with too short a history (fewer than 5 idle times) keep the fixed keep-alive
//! (`fallback`, 10 minutes), so rarely called functions do no worse than the industry
//! baseline, and also hold the bin of each idle time already seen, betting that it repeats
//! (timers do) at the cost of one bin of memory. Functions whose idle times
//! are mostly beyond the histogram get a window around a forecast, as in the hybrid policy.
//! Under a memory budget, idle functions are unloaded lowest GDSF priority first (frequency ×
//! load cost / size), which uses the load time the node measures for each function.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::gdsf::Gdsf;
use crate::hybrid::around;
use crate::idle::{IdleHistogram, WindowTracker, Windows, merge};
use crate::keepalive::{KeepAlivePolicy, Millis, ResidentSet, Usage};

/// Parameters of Kindling's default policy.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HazardConfig {
    /// Histogram bin width, and the width of each residency window.
    pub bin: Millis,
    /// Number of bins; `bin × bins` is the range.
    pub bins: usize,
    /// Keep-alive after each call while the history is shorter than `min_samples`.
    pub fallback: Millis,
    /// Idle times needed before the histogram is used.
    pub min_samples: u32,
    /// Hold a bin when at least this share of the calls that come in it or later come in it.
    pub hazard: f64,
    /// Share of out-of-range idle times above which the forecast is used.
    pub out_of_range_threshold: f64,
    /// Margin on either side of a forecast idle time.
    pub forecast_margin: f64,
}

impl Default for HazardConfig {
    fn default() -> Self {
        Self {
            bin: 60_000,
            bins: 240,
            fallback: 600_000,
            min_samples: 5,
            hazard: 0.05,
            out_of_range_threshold: 0.5,
            forecast_margin: 0.15,
        }
    }
}

/// Kindling's default policy; see the module documentation.
#[derive(Debug, Clone)]
pub struct HazardWindows {
    config: HazardConfig,
    tracker: WindowTracker,
    budget: Gdsf,
}

impl HazardWindows {
    /// A policy with an empty history.
    pub fn new(config: HazardConfig) -> Self {
        Self {
            tracker: WindowTracker::new(config.bin, config.bins),
            budget: Gdsf::new(),
            config,
        }
    }
}

/// The windows planned after a call.
pub(crate) fn plan(config: &HazardConfig, histogram: &IdleHistogram) -> Windows {
    let bin = histogram.bin();
    let counts = histogram.counts();
    if histogram.samples() < config.min_samples {
        // Too little history for odds, but an idle time seen once may well repeat (timers
        // do): hold its bin too, beyond the fixed keep-alive.
        let mut windows = vec![(0, config.fallback)];
        for (index, &count) in counts.iter().enumerate() {
            if count > 0 {
                let start = index as Millis * bin;
                windows.push((start, start + bin));
            }
        }
        return merge(windows);
    }
    if histogram.out_of_range_share() > config.out_of_range_threshold
        && let Some(forecast) = histogram.forecast_out_of_range()
    {
        return vec![around(forecast, config.forecast_margin)];
    }
    // Calls that come in bin i or later, out-of-range ones included.
    let mut later = u64::from(histogram.samples());
    let mut windows = Vec::new();
    for (index, &count) in counts.iter().enumerate() {
        if later == 0 {
            break;
        }
        let count = u64::from(count);
        if count > 0 && count as f64 / later as f64 >= config.hazard {
            let start = index as Millis * bin;
            windows.push((start, start + bin));
        }
        later -= count;
    }
    debug_assert_eq!(
        u64::from(histogram.samples()) - u64::from(histogram.in_range()),
        later
    );
    merge(windows)
}

impl KeepAlivePolicy for HazardWindows {
    fn name(&self) -> String {
        "kindling".into()
    }

    fn record(&mut self, usage: Usage<'_>) {
        let config = self.config;
        self.tracker.record(usage, |h| plan(&config, h));
        self.budget.record(usage);
    }

    fn evict(&mut self, now: Millis, set: ResidentSet<'_>) -> Vec<Arc<str>> {
        let mut evicted = self.tracker.outside_windows(set, now, self.config.fallback);
        self.budget.evict_over_budget(set, &mut evicted);
        evicted
    }

    fn prewarm(&mut self, now: Millis) -> Vec<Arc<str>> {
        self.tracker.due(now)
    }

    fn forget(&mut self, function: &str) {
        self.tracker.forget(function);
        self.budget.forget(function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalive::Resident;

    const MINUTE: Millis = 60_000;

    fn call(policy: &mut HazardWindows, name: &str, minute: u64) {
        policy.record(Usage {
            function: name,
            since: minute * MINUTE,
            now: (minute + 1) * MINUTE,
            invocations: 1,
            cold: 0,
            memory_bytes: 1 << 20,
            load_ms: 1.0,
        });
    }

    fn resident_at(policy: &mut HazardWindows, name: &str, now: Millis) -> bool {
        let residents = [Resident {
            function: name.into(),
            memory_bytes: 1 << 20,
            loaded_at: 0,
            last_used: 0,
            in_flight: 0,
        }];
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: None,
        };
        policy.evict(now, set).is_empty()
    }

    #[test]
    fn new_functions_keep_the_fixed_keep_alive() {
        let mut policy = HazardWindows::new(HazardConfig::default());
        call(&mut policy, "new", 0);
        assert_eq!(policy.tracker.windows("new"), Some(&vec![(0, 10 * MINUTE)]));
        assert!(resident_at(&mut policy, "new", 10 * MINUTE));
        assert!(!resident_at(&mut policy, "new", 11 * MINUTE));
        // Never seen at all: the same keep-alive from its last use.
        assert!(resident_at(&mut policy, "unknown", 9 * MINUTE));
        assert!(!resident_at(&mut policy, "unknown", 10 * MINUTE));
    }

    #[test]
    fn a_short_history_adds_the_idle_times_seen_to_the_keep_alive() {
        let mut policy = HazardWindows::new(HazardConfig::default());
        call(&mut policy, "timer", 0);
        call(&mut policy, "timer", 31);
        call(&mut policy, "timer", 36);
        assert_eq!(
            policy.tracker.windows("timer"),
            Some(&vec![(0, 10 * MINUTE), (30 * MINUTE, 31 * MINUTE)])
        );
    }

    #[test]
    fn a_bimodal_function_is_resident_only_around_its_two_idle_times() {
        let mut policy = HazardWindows::new(HazardConfig::default());
        // Idle 2 minutes, then 30, alternately.
        let mut minute = 0;
        for i in 0..20 {
            call(&mut policy, "twice", minute);
            minute += 1 + if i % 2 == 0 { 2 } else { 30 };
        }
        // 10 of the 19 idle times are in bin 2 (hazard 10/19), the 9 others in bin 30 (9/9).
        assert_eq!(
            policy.tracker.windows("twice"),
            Some(&vec![(2 * MINUTE, 3 * MINUTE), (30 * MINUTE, 31 * MINUTE)])
        );
        let last = minute - 31 + 1;
        let at = |m: u64| (last + m) * MINUTE;
        assert!(
            !resident_at(&mut policy, "twice", at(0)),
            "unloaded after the call"
        );
        assert_eq!(policy.prewarm(at(2)), vec![Arc::<str>::from("twice")]);
        assert!(resident_at(&mut policy, "twice", at(2)));
        assert!(!resident_at(&mut policy, "twice", at(3)));
        assert!(policy.prewarm(at(10)).is_empty());
        assert_eq!(policy.prewarm(at(30)), vec![Arc::<str>::from("twice")]);
        assert!(!resident_at(&mut policy, "twice", at(31)));
    }

    #[test]
    fn unlikely_bins_are_not_held() {
        let mut policy = HazardWindows::new(HazardConfig::default());
        // 30 calls in consecutive minutes, then after 4 idle minutes, then after 100.
        let mut minutes: Vec<u64> = (0..30).collect();
        minutes.extend([34, 135]);
        for &m in &minutes {
            call(&mut policy, "busy", m);
        }
        // Idle times: 29 x 0, then 4, then 100. Hazards: bin 0 29/31, bin 4 1/2, bin 100 1/1.
        assert_eq!(
            policy.tracker.windows("busy"),
            Some(&vec![
                (0, MINUTE),
                (4 * MINUTE, 5 * MINUTE),
                (100 * MINUTE, 101 * MINUTE)
            ])
        );
        let mut strict = HazardWindows::new(HazardConfig {
            hazard: 0.6,
            ..HazardConfig::default()
        });
        for &m in &minutes {
            call(&mut strict, "busy", m);
        }
        assert_eq!(
            strict.tracker.windows("busy"),
            Some(&vec![(0, MINUTE), (100 * MINUTE, 101 * MINUTE)])
        );
    }
}
