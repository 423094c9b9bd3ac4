//! The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., USENIX ATC 2020).
//!
//! Each function's idle times go into a histogram (1-minute bins over 4 hours). After each
//! call the policy picks a pre-warm window and a keep-alive window:
//! - a representative histogram (enough samples, bin counts with a coefficient of variation
//!   of at least 2): unload right after the call, load again at the 5th-percentile idle time
//!   less 10%, and keep until the 99th percentile plus 10%;
//! - mostly out-of-range idle times: forecast the next one from the recent ones and hold the
//!   function around it (the paper uses ARIMA; an exponentially weighted mean stands in here);
//! - otherwise no pattern: keep the function for the whole histogram range after each call.
//!
//! Under a memory budget the least recently used functions go first.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::idle::{IdleHistogram, WindowTracker, Windows};
use crate::keepalive::{KeepAlivePolicy, Millis, ResidentSet, Usage, evict_lru_over_budget};

/// The hybrid histogram policy's parameters; the defaults are the paper's.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct HybridConfig {
    /// Histogram bin width.
    pub bin: Millis,
    /// Number of bins; `bin × bins` is the range.
    pub bins: usize,
    /// The idle-time quantile that starts the pre-warm window.
    pub head: f64,
    /// The idle-time quantile that ends the keep-alive window.
    pub tail: f64,
    /// Margin taken off the head and added to the tail.
    pub margin: f64,
    /// Bin-count coefficient of variation below which the histogram shows no pattern.
    pub cv_threshold: f64,
    /// Idle times needed before the histogram is trusted.
    pub min_samples: u32,
    /// Share of out-of-range idle times above which the forecast is used.
    pub out_of_range_threshold: f64,
    /// Margin on either side of a forecast idle time.
    pub forecast_margin: f64,
}

impl Default for HybridConfig {
    fn default() -> Self {
        Self {
            bin: 60_000,
            bins: 240,
            head: 0.05,
            tail: 0.99,
            margin: 0.10,
            cv_threshold: 2.0,
            min_samples: 10,
            out_of_range_threshold: 0.5,
            forecast_margin: 0.15,
        }
    }
}

/// The hybrid histogram policy; see the module documentation.
#[derive(Debug, Clone)]
pub struct HybridHistogram {
    config: HybridConfig,
    tracker: WindowTracker,
}

impl HybridHistogram {
    /// A policy with an empty history.
    pub fn new(config: HybridConfig) -> Self {
        Self {
            tracker: WindowTracker::new(config.bin, config.bins),
            config,
        }
    }
}

/// The windows the hybrid policy plans after a call.
pub(crate) fn plan(config: &HybridConfig, histogram: &IdleHistogram) -> Windows {
    let keep_for_range = vec![(0, histogram.range())];
    if histogram.samples() < config.min_samples {
        return keep_for_range;
    }
    if histogram.out_of_range_share() > config.out_of_range_threshold {
        return match histogram.forecast_out_of_range() {
            Some(forecast) => vec![around(forecast, config.forecast_margin)],
            None => keep_for_range,
        };
    }
    if histogram.bin_count_cv() < config.cv_threshold {
        return keep_for_range;
    }
    let (Some(head), Some(tail)) = (
        histogram.quantile_bin(config.head),
        histogram.quantile_bin(config.tail),
    ) else {
        return keep_for_range;
    };
    let bin = histogram.bin() as f64;
    let start = (head as f64 * bin * (1.0 - config.margin)).round() as Millis;
    let end = ((tail + 1) as f64 * bin * (1.0 + config.margin)).round() as Millis;
    vec![(start, end)]
}

/// `[t × (1 - margin), t × (1 + margin))`, at least one millisecond wide.
pub(crate) fn around(t: Millis, margin: f64) -> (Millis, Millis) {
    let t = t as f64;
    let start = (t * (1.0 - margin)).round() as Millis;
    let end = ((t * (1.0 + margin)).round() as Millis).max(start + 1);
    (start, end)
}

impl KeepAlivePolicy for HybridHistogram {
    fn name(&self) -> String {
        "hybrid-histogram".into()
    }

    fn record(&mut self, usage: Usage<'_>) {
        let config = self.config;
        self.tracker.record(usage, |h| plan(&config, h));
    }

    fn evict(&mut self, now: Millis, set: ResidentSet<'_>) -> Vec<Arc<str>> {
        let mut evicted = self.tracker.outside_windows(set, now, self.config.bin);
        evict_lru_over_budget(set, &mut evicted);
        evicted
    }

    fn prewarm(&mut self, now: Millis) -> Vec<Arc<str>> {
        self.tracker.due(now)
    }

    fn forget(&mut self, function: &str) {
        self.tracker.forget(function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalive::Resident;

    const MINUTE: Millis = 60_000;

    /// Feeds calls in the given minutes, one tick per minute.
    fn drive<P: KeepAlivePolicy>(policy: &mut P, name: &str, minutes: &[u64]) {
        for &m in minutes {
            policy.record(Usage {
                function: name,
                since: m * MINUTE,
                now: (m + 1) * MINUTE,
                invocations: 1,
                cold: 0,
                memory_bytes: 1,
                load_ms: 1.0,
            });
        }
    }

    fn resident(name: &str, last_used: Millis) -> Resident {
        Resident {
            function: name.into(),
            memory_bytes: 1,
            loaded_at: 0,
            last_used,
            in_flight: 0,
        }
    }

    fn evicts(policy: &mut HybridHistogram, name: &str, now: Millis) -> bool {
        let residents = [resident(name, 0)];
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: None,
        };
        !policy.evict(now, set).is_empty()
    }

    #[test]
    fn a_periodic_function_is_prewarmed_just_in_time() {
        let mut policy = HybridHistogram::new(HybridConfig::default());
        // Called every 30 minutes: 29 idle minutes between active intervals.
        let minutes: Vec<u64> = (0..20).map(|i| i * 30).collect();
        drive(&mut policy, "cron", &minutes);
        let last_active = 571 * MINUTE;
        // Head and tail in the 29-minute bin: load at 29 x 0.9 = 26.1 minutes, keep until
        // 30 x 1.1 = 33 minutes.
        assert_eq!(
            policy.tracker.windows("cron"),
            Some(&vec![(26 * MINUTE + 6_000, 33 * MINUTE)])
        );
        assert!(
            evicts(&mut policy, "cron", last_active),
            "unloaded after the call"
        );
        assert!(policy.prewarm(last_active + 26 * MINUTE).is_empty());
        assert_eq!(
            policy.prewarm(last_active + 27 * MINUTE),
            vec![Arc::<str>::from("cron")]
        );
        assert!(policy.prewarm(last_active + 28 * MINUTE).is_empty(), "once");
        assert!(!evicts(&mut policy, "cron", last_active + 29 * MINUTE));
        assert!(evicts(&mut policy, "cron", last_active + 33 * MINUTE));
    }

    #[test]
    fn without_a_pattern_the_function_stays_for_the_range() {
        let mut policy = HybridHistogram::new(HybridConfig::default());
        // Three calls: too few to trust.
        drive(&mut policy, "new", &[0, 5, 50]);
        assert_eq!(
            policy.tracker.windows("new"),
            Some(&vec![(0, 240 * MINUTE)])
        );
        // Idle times spread evenly over the range: a flat histogram.
        let mut minute = 0;
        let mut minutes = Vec::new();
        for gap in 0..240 {
            minutes.push(minute);
            minute += gap + 1;
        }
        drive(&mut policy, "flat", &minutes);
        assert_eq!(
            policy.tracker.windows("flat"),
            Some(&vec![(0, 240 * MINUTE)])
        );
    }

    #[test]
    fn rare_functions_are_forecast_beyond_the_range() {
        let mut policy = HybridHistogram::new(HybridConfig::default());
        // Every 6 hours (5 h 59 min idle), beyond the 4-hour range.
        let minutes: Vec<u64> = (0..12).map(|i| i * 360).collect();
        drive(&mut policy, "daily", &minutes);
        let idle = 359 * MINUTE;
        assert_eq!(
            policy.tracker.windows("daily"),
            Some(&vec![around(idle, 0.15)])
        );
    }
}
