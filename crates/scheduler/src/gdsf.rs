//! Greedy-Dual-Size-Frequency, the keep-alive-as-caching policy of FaaSCache (Fuerst and
//! Sharma, ASPLOS 2021). Each resident function has a priority
//! `clock + frequency × cost / size`; under memory pressure the lowest goes first and the clock
//! rises to the priority of the last function evicted, so functions that have not been called
//! for a while age out without a timer. It unloads nothing while the budget holds.

use std::collections::HashMap;
use std::sync::Arc;

use crate::keepalive::{KeepAlivePolicy, Millis, ResidentSet, Usage, evict_over_budget};

/// The cost assumed for a function whose load time has not been measured yet.
const DEFAULT_COST_MS: f64 = 1.0;

#[derive(Debug, Clone, Copy)]
struct Priced {
    frequency: u64,
    cost_ms: f64,
    size_mib: f64,
    priority: f64,
}

/// The GDSF policy; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Gdsf {
    clock: f64,
    functions: HashMap<Arc<str>, Priced>,
}

impl Gdsf {
    /// A policy with an empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The priority of a function; unknown functions have the current clock.
    fn priority(&self, function: &str) -> f64 {
        self.functions
            .get(function)
            .map_or(self.clock, |p| p.priority)
    }

    /// Adds the lowest-priority idle functions to `evicted` until the rest fits the budget
    /// (the older first among equals), raising the clock to the last priority evicted.
    pub(crate) fn evict_over_budget(&mut self, set: ResidentSet<'_>, evicted: &mut Vec<Arc<str>>) {
        let chosen = evict_over_budget(set, evicted, |a, b| {
            self.priority(&a.function)
                .total_cmp(&self.priority(&b.function))
                .then(a.last_used.cmp(&b.last_used))
        });
        for resident in chosen {
            self.clock = self.clock.max(self.priority(&resident.function));
            // Frequency counts calls while resident: an unloaded function starts again.
            if let Some(priced) = self.functions.get_mut(resident.function.as_ref()) {
                priced.frequency = 0;
            }
        }
    }
}

impl KeepAlivePolicy for Gdsf {
    fn name(&self) -> String {
        "gdsf".into()
    }

    fn record(&mut self, usage: Usage<'_>) {
        let clock = self.clock;
        let priced = self
            .functions
            .entry(Arc::from(usage.function))
            .or_insert(Priced {
                frequency: 0,
                cost_ms: DEFAULT_COST_MS,
                size_mib: 1.0,
                priority: clock,
            });
        priced.frequency += usage.invocations;
        if usage.load_ms > 0.0 {
            priced.cost_ms = usage.load_ms;
        }
        if usage.memory_bytes > 0 {
            priced.size_mib = usage.memory_bytes as f64 / (1 << 20) as f64;
        }
        priced.priority = clock + priced.frequency as f64 * priced.cost_ms / priced.size_mib;
    }

    fn evict(&mut self, _now: Millis, set: ResidentSet<'_>) -> Vec<Arc<str>> {
        let mut evicted = Vec::new();
        self.evict_over_budget(set, &mut evicted);
        evicted
    }

    fn forget(&mut self, function: &str) {
        self.functions.remove(function);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keepalive::Resident;

    const MIB: u64 = 1 << 20;

    fn usage(function: &str, invocations: u64, memory_mib: u64, load_ms: f64) -> Usage<'_> {
        Usage {
            function,
            since: 0,
            now: 60_000,
            invocations,
            cold: 0,
            memory_bytes: memory_mib * MIB,
            load_ms,
        }
    }

    fn resident(name: &str, memory_mib: u64, last_used: Millis) -> Resident {
        Resident {
            function: name.into(),
            memory_bytes: memory_mib * MIB,
            loaded_at: 0,
            last_used,
            in_flight: 0,
        }
    }

    #[test]
    fn evicts_the_cheap_rarely_used_function_first() {
        let mut policy = Gdsf::new();
        // `rare` was called once and reloads in 1 ms; `hot` 50 times; `costly` once but takes
        // 80 ms to load; `big` is called twice as often as `hot` but holds 50 times the memory.
        policy.record(usage("rare", 1, 10, 1.0));
        policy.record(usage("hot", 50, 10, 1.0));
        policy.record(usage("costly", 1, 10, 80.0));
        policy.record(usage("big", 100, 500, 1.0));
        // `rare` is the most recently used: LRU would keep it, GDSF does not.
        let residents = [
            resident("hot", 10, 1),
            resident("costly", 10, 2),
            resident("big", 500, 3),
            resident("rare", 10, 4),
        ];
        let set = |budget_mib| ResidentSet {
            residents: &residents,
            budget_bytes: Some(budget_mib * MIB),
        };
        assert!(policy.clone().evict(0, set(530)).is_empty());
        assert_eq!(
            policy.clone().evict(0, set(529)),
            vec![Arc::<str>::from("rare")]
        );
        // Priorities: rare 1 x 1 / 10 = 0.1, big 100 x 1 / 500 = 0.2, hot 5, costly 8.
        assert_eq!(
            policy.clone().evict(0, set(30)),
            vec![Arc::<str>::from("rare"), Arc::from("big")]
        );
        assert_eq!(
            policy.evict(0, set(10)),
            vec![Arc::<str>::from("rare"), Arc::from("big"), Arc::from("hot")]
        );
    }

    #[test]
    fn the_clock_ages_out_functions_that_stopped_being_called() {
        let mut policy = Gdsf::new();
        policy.record(usage("old", 20, 1, 1.0));
        let residents = [resident("old", 1, 0), resident("a", 1, 0)];
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: Some(MIB),
        };
        // `a` is unknown (priority = clock 0) and goes first; the clock stays at 0.
        assert_eq!(policy.evict(0, set), vec![Arc::<str>::from("a")]);
        // Newcomers called once each evict one another and raise the clock by 1 per eviction
        // until it passes `old`'s 20: then `old` goes although it was called most.
        let mut evicted_old_after = None;
        for round in 0..40 {
            let name = format!("new{round}");
            policy.record(usage(&name, 1, 1, 1.0));
            let residents = [resident("old", 1, 0), resident(&name, 1, 0)];
            let set = ResidentSet {
                residents: &residents,
                budget_bytes: Some(MIB),
            };
            if policy.evict(0, set) == vec![Arc::<str>::from("old")] {
                evicted_old_after = Some(round);
                break;
            }
        }
        assert_eq!(evicted_old_after, Some(19));
        assert_eq!(policy.name(), "gdsf");
    }
}
