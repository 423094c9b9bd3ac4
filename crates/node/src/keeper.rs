//! The node's background tick: report each function's use to the keep-alive policy, feed its
//! autoscaler with the concurrency it saw, unload what the policy evicts (never a function
//! with requests in flight) and load what it wants pre-warmed.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use kindling_scheduler::{Resident, ResidentSet, Usage};

use crate::entry::Entry;
use crate::node::Node;

/// Runs until the node is dropped.
pub(crate) async fn run(node: Weak<Node>, period: Duration) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    interval.tick().await;
    loop {
        interval.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        tick(&node).await;
    }
}

/// One tick; public to the crate so that tests can drive it.
pub(crate) async fn tick(node: &Arc<Node>) {
    let now = node.now();
    let since = node.last_tick.swap(now, Ordering::Relaxed);
    let sampled_at = tokio::time::Instant::now();
    let entries: Vec<Arc<Entry>> = node.entries();
    let mut residents = Vec::new();
    let (evict, prewarm) = {
        let mut policy = node.policy.lock().expect("policy lock");
        for entry in &entries {
            let usage = &entry.usage;
            let invocations = usage.unreported.0.swap(0, Ordering::Relaxed);
            let cold = usage.unreported.1.swap(0, Ordering::Relaxed);
            let code = entry.code();
            if invocations > 0 {
                policy.record(Usage {
                    function: &entry.name,
                    since,
                    now,
                    invocations,
                    cold,
                    memory_bytes: usage.code_bytes.load(Ordering::Relaxed),
                    load_ms: usage.last_cold_start_us.load(Ordering::Relaxed) as f64 / 1e3,
                });
            }
            if let Some(code) = code {
                residents.push(Resident {
                    function: entry.name.clone(),
                    memory_bytes: code.code_bytes,
                    loaded_at: code.loaded_at,
                    last_used: usage.last_used.load(Ordering::Relaxed),
                    in_flight: entry.lane.in_flight(),
                });
            }
            let concurrency = entry.lane.sample(sampled_at);
            let mut autoscaler = entry.autoscaler.lock().expect("autoscaler lock");
            autoscaler.0.record(now, concurrency);
            let decision = autoscaler.0.decide(now);
            autoscaler.1 = Some(decision);
        }
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: node.config.code_memory_budget,
        };
        (policy.evict(now, set), policy.prewarm(now))
    };
    for name in evict {
        if let Some(entry) = node.lookup(&name)
            && entry.lane.in_flight() == 0
            && entry.code().is_some()
        {
            entry.set_code(None);
            tracing::debug!(function = %name, "unloaded idle function");
        }
    }
    for name in prewarm {
        if let Some(entry) = node.lookup(&name)
            && entry.code().is_none()
        {
            match node.warm(&entry, false).await {
                Ok(_) => {
                    entry.usage.prewarms.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(function = %name, "pre-warmed");
                }
                Err(err) => tracing::warn!(function = %name, error = %err, "pre-warm failed"),
            }
        }
    }
}
