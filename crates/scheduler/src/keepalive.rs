//! What stays resident. In Kindling a function is **warm** when its compiled code is mapped and
//! pre-linked in memory: a request then costs only an instantiation (tens of microseconds).
//! It is **cold** when only its compiled artifact on disk remains: the next request first maps
//! the artifact and links it (about a millisecond for a small component), then runs. Unloading
//! an idle function frees its code and linker state; nothing is recompiled to bring it back.
//!
//! A [`KeepAlivePolicy`] decides which functions to unload and which to load ahead of requests.
//! Policies never read a clock: the caller passes the time, so the same structs run in the
//! server (wall clock) and in trace simulations (simulated clock).

use std::sync::Arc;

/// Milliseconds on the caller's clock, real or simulated.
pub type Millis = u64;

/// A function the policy may keep or unload.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    /// The function.
    pub function: Arc<str>,
    /// Memory its resident code holds.
    pub memory_bytes: u64,
    /// When its code was loaded.
    pub loaded_at: Millis,
    /// When it last started a request.
    pub last_used: Millis,
    /// Requests running now; a function with requests in flight is never unloaded.
    pub in_flight: u32,
}

/// What a policy learns about one function's use, once per tick.
#[derive(Debug, Clone, Copy)]
pub struct Usage<'a> {
    /// The function.
    pub function: &'a str,
    /// The start of the interval reported (the previous record's `now`).
    pub since: Millis,
    /// The end of the interval reported.
    pub now: Millis,
    /// Requests in the interval.
    pub invocations: u64,
    /// Of those, requests that found the function unloaded.
    pub cold: u64,
    /// What keeping the function resident costs.
    pub memory_bytes: u64,
    /// What loading it costs, in milliseconds.
    pub load_ms: f64,
}

/// The resident functions and the memory budget they share.
#[derive(Debug, Clone, Copy)]
pub struct ResidentSet<'a> {
    /// What is resident now.
    pub residents: &'a [Resident],
    /// Bytes of resident code allowed in all; `None` for no budget.
    pub budget_bytes: Option<u64>,
}

impl ResidentSet<'_> {
    /// Bytes held by resident code.
    pub fn used_bytes(&self) -> u64 {
        self.residents.iter().map(|r| r.memory_bytes).sum()
    }
}

/// Decides residency. Implementations keep whatever history they need, fed by
/// [`KeepAlivePolicy::on_request`].
pub trait KeepAlivePolicy: Send {
    /// A short name for reports.
    fn name(&self) -> String;

    /// `invocations` requests for `function` arrived in the interval `(since, now]` (the
    /// server reports once per tick; a trace replay once per tick of its clock), of which
    /// `cold` found the function unloaded. `memory_bytes` is what keeping it resident costs and
    /// `load_ms` what loading it costs.
    fn record(&mut self, usage: Usage<'_>);

    /// Functions to unload at `now`. Functions with requests in flight must not be chosen.
    fn evict(&mut self, now: Millis, set: ResidentSet<'_>) -> Vec<Arc<str>>;

    /// Functions to load at `now`, ahead of their requests. None by default.
    fn prewarm(&mut self, _now: Millis) -> Vec<Arc<str>> {
        Vec::new()
    }

    /// Forgets a function that was deleted.
    fn forget(&mut self, _function: &str) {}
}

/// Keep each function for a fixed time after its last request (the industry's 10-minute
/// keep-alive), and keep resident code under a memory budget by unloading the least recently
/// used first. Without a TTL it is plain LRU under the budget.
#[derive(Debug, Clone)]
pub struct FixedTtl {
    ttl: Option<Millis>,
}

impl FixedTtl {
    /// A policy with a keep-alive of `ttl` milliseconds (`None`: only the budget unloads).
    pub fn new(ttl: Option<Millis>) -> Self {
        Self { ttl }
    }
}

impl KeepAlivePolicy for FixedTtl {
    fn name(&self) -> String {
        match self.ttl {
            Some(ttl) => format!("fixed-ttl-{}", format_millis(ttl)),
            None => "lru".into(),
        }
    }

    fn record(&mut self, _usage: Usage<'_>) {}

    fn evict(&mut self, now: Millis, set: ResidentSet<'_>) -> Vec<Arc<str>> {
        let mut evicted = Vec::new();
        if let Some(ttl) = self.ttl {
            for resident in set.residents {
                if resident.in_flight == 0 && now.saturating_sub(resident.last_used) >= ttl {
                    evicted.push(resident.function.clone());
                }
            }
        }
        evict_lru_over_budget(set, &mut evicted);
        evicted
    }
}

/// Adds least-recently-used functions to `evicted` until what remains fits the budget.
pub(crate) fn evict_lru_over_budget(set: ResidentSet<'_>, evicted: &mut Vec<Arc<str>>) {
    evict_over_budget(set, evicted, |a, b| {
        (a.last_used, a.loaded_at).cmp(&(b.last_used, b.loaded_at))
    });
}

/// Adds idle functions to `evicted`, first as `order` sorts them, until what remains fits the
/// budget; returns the ones it added. Functions with requests in flight are never chosen.
pub(crate) fn evict_over_budget<'s>(
    set: ResidentSet<'s>,
    evicted: &mut Vec<Arc<str>>,
    mut order: impl FnMut(&Resident, &Resident) -> std::cmp::Ordering,
) -> Vec<&'s Resident> {
    let Some(budget) = set.budget_bytes else {
        return Vec::new();
    };
    let mut used: u64 = set
        .residents
        .iter()
        .filter(|r| !evicted.contains(&r.function))
        .map(|r| r.memory_bytes)
        .sum();
    if used <= budget {
        return Vec::new();
    }
    let mut candidates: Vec<&Resident> = set
        .residents
        .iter()
        .filter(|r| r.in_flight == 0 && !evicted.contains(&r.function))
        .collect();
    candidates.sort_by(|a, b| order(a, b));
    let mut chosen = Vec::new();
    for resident in candidates {
        if used <= budget {
            break;
        }
        used -= resident.memory_bytes;
        evicted.push(resident.function.clone());
        chosen.push(resident);
    }
    chosen
}

fn format_millis(ms: Millis) -> String {
    match ms {
        ms if ms % 60_000 == 0 => format!("{}m", ms / 60_000),
        ms if ms % 1000 == 0 => format!("{}s", ms / 1000),
        ms => format!("{ms}ms"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resident(name: &str, memory: u64, last_used: Millis, in_flight: u32) -> Resident {
        Resident {
            function: name.into(),
            memory_bytes: memory,
            loaded_at: 0,
            last_used,
            in_flight,
        }
    }

    #[test]
    fn ttl_unloads_idle_functions_but_never_busy_ones() {
        let mut policy = FixedTtl::new(Some(600_000));
        let residents = [
            resident("idle", 1, 0, 0),
            resident("busy", 1, 0, 2),
            resident("recent", 1, 500_000, 0),
        ];
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: None,
        };
        assert_eq!(policy.evict(600_000, set), vec![Arc::<str>::from("idle")]);
        assert_eq!(policy.name(), "fixed-ttl-10m");
    }

    #[test]
    fn budget_unloads_least_recently_used_first() {
        let mut policy = FixedTtl::new(None);
        let residents = [
            resident("a", 40, 30, 0),
            resident("b", 40, 10, 0),
            resident("c", 40, 20, 1),
            resident("d", 40, 40, 0),
        ];
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: Some(100),
        };
        // 160 bytes over a 100 budget: drop the two least recently used idle functions;
        // `c` is older than `a` but busy.
        assert_eq!(
            policy.evict(50, set),
            vec![Arc::<str>::from("b"), Arc::from("a")]
        );
        let set = ResidentSet {
            residents: &residents,
            budget_bytes: Some(1000),
        };
        assert!(policy.evict(50, set).is_empty());
    }
}
