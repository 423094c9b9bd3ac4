//! A Knative-KPA-style autoscaling signal per function. Every tick the node records the
//! function's average concurrency; the autoscaler averages it over a stable window (60 s) and
//! a panic window (6 s) and turns it into a desired number of instances:
//!
//! - `desired = ceil(average concurrency / (target concurrency × target utilization))`;
//! - **panic**: when the panic-window demand reaches twice the current supply, scale to the
//!   panic-window demand at once and do not scale down until a whole stable window has passed
//!   without panic;
//! - **scale-down delay**: a decrease only takes effect once it has held for the delay;
//! - **scale to zero**: zero only after the demand has been zero for the grace period.
//!
//! On one node, instances are created per request, so the number does not size a pool; it is
//! reported per function for cluster autoscalers (KEDA) and dashboards, and a desired count of
//! zero marks a function as idle. Like the keep-alive policies it runs on the caller's clock.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::keepalive::Millis;

/// Autoscaler parameters, with Knative's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AutoscalerConfig {
    /// Concurrent requests one instance is meant to handle.
    pub target_concurrency: f64,
    /// Fraction of the target to aim for, leaving headroom for bursts.
    pub target_utilization: f64,
    /// Window of the stable average.
    pub stable_window: Millis,
    /// Window of the panic average.
    pub panic_window: Millis,
    /// Panic when the panic-window demand is this many times the current supply.
    pub panic_threshold: f64,
    /// How long a lower desired count must hold before it takes effect.
    pub scale_down_delay: Millis,
    /// How long demand must be zero before the desired count drops to zero.
    pub scale_to_zero_grace: Millis,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            target_concurrency: 100.0,
            target_utilization: 0.7,
            stable_window: 60_000,
            panic_window: 6_000,
            panic_threshold: 2.0,
            scale_down_delay: 0,
            scale_to_zero_grace: 30_000,
        }
    }
}

/// What the autoscaler decided at one tick.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScaleDecision {
    /// Instances wanted.
    pub desired: u32,
    /// Average concurrency over the stable window.
    pub stable_concurrency: f64,
    /// Average concurrency over the panic window.
    pub panic_concurrency: f64,
    /// Whether the function is in panic mode.
    pub panicking: bool,
}

/// One function's autoscaler.
#[derive(Debug, Clone)]
pub struct Autoscaler {
    config: AutoscalerConfig,
    /// (tick end, tick length, average concurrency over the tick).
    samples: VecDeque<(Millis, Millis, f64)>,
    supply: u32,
    panic_since: Option<Millis>,
    panic_peak: u32,
    recent: VecDeque<(Millis, u32)>,
    zero_since: Option<Millis>,
    last_sample: Option<Millis>,
}

impl Autoscaler {
    /// A new autoscaler; supply starts at zero.
    pub fn new(config: AutoscalerConfig) -> Self {
        Self {
            config,
            samples: VecDeque::new(),
            supply: 0,
            panic_since: None,
            panic_peak: 0,
            recent: VecDeque::new(),
            zero_since: None,
            last_sample: None,
        }
    }

    /// Records the average concurrency since the previous sample, measured at `now`.
    pub fn record(&mut self, now: Millis, concurrency: f64) {
        let length = self
            .last_sample
            .map_or(1, |last| now.saturating_sub(last).max(1));
        self.last_sample = Some(now);
        self.samples.push_back((now, length, concurrency.max(0.0)));
        let horizon = now.saturating_sub(self.config.stable_window);
        while self.samples.front().is_some_and(|&(t, _, _)| t <= horizon) {
            self.samples.pop_front();
        }
    }

    /// Decides the desired instance count at `now`.
    pub fn decide(&mut self, now: Millis) -> ScaleDecision {
        let target = (self.config.target_concurrency * self.config.target_utilization).max(1e-9);
        let stable = self.average(now, self.config.stable_window);
        let panic = self.average(now, self.config.panic_window);
        let stable_desired = (stable / target).ceil() as u32;
        let panic_desired = (panic / target).ceil() as u32;

        let supply = self.supply.max(1) as f64;
        if panic_desired as f64 / supply >= self.config.panic_threshold && panic_desired > 0 {
            if self.panic_since.is_none() {
                self.panic_peak = 0;
            }
            self.panic_since = Some(now);
        } else if self
            .panic_since
            .is_some_and(|since| now.saturating_sub(since) >= self.config.stable_window)
        {
            self.panic_since = None;
        }

        let mut desired = if self.panic_since.is_some() {
            // In panic: follow the short window up, never down.
            self.panic_peak = self.panic_peak.max(panic_desired).max(stable_desired);
            self.panic_peak
        } else {
            stable_desired
        };

        // Scale-down delay: the highest desired count within the delay wins.
        self.recent.push_back((now, desired));
        let horizon = now.saturating_sub(self.config.scale_down_delay);
        while self.recent.len() > 1 && self.recent.front().is_some_and(|&(t, _)| t < horizon) {
            self.recent.pop_front();
        }
        desired = self.recent.iter().map(|&(_, d)| d).max().unwrap_or(desired);

        // Scale to zero only after the grace period of zero demand.
        if desired == 0 {
            let since = *self.zero_since.get_or_insert(now);
            if now.saturating_sub(since) < self.config.scale_to_zero_grace && self.supply > 0 {
                desired = 1;
            }
        } else {
            self.zero_since = None;
        }

        self.supply = desired;
        ScaleDecision {
            desired,
            stable_concurrency: stable,
            panic_concurrency: panic,
            panicking: self.panic_since.is_some(),
        }
    }

    /// Time-weighted average concurrency over the last `window` milliseconds.
    fn average(&self, now: Millis, window: Millis) -> f64 {
        let from = now.saturating_sub(window);
        let (mut weighted, mut covered) = (0.0, 0u64);
        for &(end, length, value) in self.samples.iter().rev() {
            if end <= from {
                break;
            }
            let start = end.saturating_sub(length).max(from);
            let span = end - start;
            weighted += value * span as f64;
            covered += span;
        }
        if covered == 0 {
            0.0
        } else {
            weighted / covered as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AutoscalerConfig {
        AutoscalerConfig {
            target_concurrency: 10.0,
            target_utilization: 1.0,
            ..AutoscalerConfig::default()
        }
    }

    /// Feeds one sample per second with `concurrency`, deciding after each.
    fn run(scaler: &mut Autoscaler, from: Millis, seconds: u64, concurrency: f64) -> ScaleDecision {
        let mut last = None;
        for s in 1..=seconds {
            let now = from + s * 1000;
            scaler.record(now, concurrency);
            last = Some(scaler.decide(now));
        }
        last.expect("at least one second")
    }

    #[test]
    fn steady_load_gives_concurrency_over_target() {
        let mut scaler = Autoscaler::new(config());
        let decision = run(&mut scaler, 0, 120, 35.0);
        assert_eq!(decision.desired, 4, "35 concurrent at 10 per instance");
        assert!(!decision.panicking);
        assert!((decision.stable_concurrency - 35.0).abs() < 1e-9);
    }

    #[test]
    fn a_burst_panics_and_scales_up_at_once_then_holds() {
        let mut scaler = Autoscaler::new(config());
        run(&mut scaler, 0, 120, 10.0);
        // Demand jumps to 100: the 6 s window sees it within a few seconds; the 60 s average
        // would take a minute. Panic scales straight to the short-window demand.
        let decision = run(&mut scaler, 120_000, 6, 100.0);
        assert!(decision.panicking);
        assert_eq!(decision.desired, 10);
        // The burst ends; in panic the count does not drop until a stable window passes.
        let decision = run(&mut scaler, 126_000, 30, 10.0);
        assert!(decision.panicking);
        assert_eq!(decision.desired, 10);
        let decision = run(&mut scaler, 156_000, 120, 10.0);
        assert!(!decision.panicking);
        assert_eq!(decision.desired, 1);
    }

    #[test]
    fn scale_to_zero_waits_for_the_grace_period() {
        let mut scaler = Autoscaler::new(config());
        run(&mut scaler, 0, 60, 5.0);
        // Once the stable window is empty, demand is zero; desired stays 1 for the grace.
        let decision = run(&mut scaler, 60_000, 61, 0.0);
        assert_eq!(decision.stable_concurrency, 0.0);
        assert_eq!(decision.desired, 1, "within the 30 s grace");
        let decision = run(&mut scaler, 121_000, 31, 0.0);
        assert_eq!(decision.desired, 0);
    }

    #[test]
    fn scale_down_delay_holds_the_peak() {
        let mut scaler = Autoscaler::new(AutoscalerConfig {
            scale_down_delay: 30_000,
            stable_window: 6_000,
            panic_threshold: 1000.0,
            ..config()
        });
        run(&mut scaler, 0, 10, 50.0);
        let decision = run(&mut scaler, 10_000, 20, 10.0);
        assert_eq!(
            decision.desired, 5,
            "the drop to 1 has not held for 30 s yet"
        );
        let decision = run(&mut scaler, 30_000, 40, 10.0);
        assert_eq!(decision.desired, 1);
    }
}
