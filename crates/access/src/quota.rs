//! Per-namespace quotas on requests: in flight at once, and per second with a token bucket.
//! This is the scheduler's [`Quota`] hook, so every invocation (HTTP, and anything else that
//! goes through `Node::invoke`) is counted; limits change at once when a namespace is set.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use kindling_registry::Quotas;
use kindling_scheduler::{Account, Quota, QuotaPermit};

/// Quotas of every namespace, and what each is using now.
#[derive(Debug, Default)]
pub struct TenantQuota {
    namespaces: RwLock<HashMap<String, Arc<Tenant>>>,
    /// `--namespace-limit` pairs: requests in flight for namespaces whose record sets none.
    fallback: HashMap<String, u32>,
}

#[derive(Debug, Default)]
struct Tenant {
    max_in_flight: Option<u32>,
    in_flight: Arc<AtomicU32>,
    bucket: Option<Mutex<Bucket>>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn new(rate: f64, burst: Option<u32>) -> Self {
        let burst = burst.map_or(rate.max(1.0), f64::from).max(1.0);
        Self {
            rate,
            burst,
            tokens: burst,
            at: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl TenantQuota {
    /// Quotas with `--namespace-limit` pairs as the in-flight limit of namespaces that set none.
    pub fn new(fallback: impl IntoIterator<Item = (String, u32)>) -> Self {
        Self {
            namespaces: RwLock::default(),
            fallback: fallback.into_iter().collect(),
        }
    }

    /// Sets a namespace's quotas; requests already running keep counting.
    pub fn set(&self, namespace: &str, quotas: &Quotas) {
        let mut namespaces = self.namespaces.write().expect("quota lock");
        let in_flight = namespaces
            .get(namespace)
            .map(|t| t.in_flight.clone())
            .unwrap_or_default();
        let tenant = Tenant {
            max_in_flight: quotas
                .max_in_flight
                .or_else(|| self.fallback.get(namespace).copied()),
            in_flight,
            bucket: quotas
                .requests_per_second
                .filter(|rate| *rate > 0.0)
                .map(|rate| Mutex::new(Bucket::new(rate, quotas.burst))),
        };
        namespaces.insert(namespace.to_string(), Arc::new(tenant));
    }

    /// Requests of a namespace running now.
    pub fn in_flight(&self, namespace: &str) -> u32 {
        self.tenant(namespace)
            .map_or(0, |t| t.in_flight.load(Ordering::Relaxed))
    }

    fn tenant(&self, namespace: &str) -> Option<Arc<Tenant>> {
        if let Some(tenant) = self.namespaces.read().expect("quota lock").get(namespace) {
            return Some(tenant.clone());
        }
        // A namespace with no record: only `--namespace-limit` applies.
        let limit = *self.fallback.get(namespace)?;
        let mut namespaces = self.namespaces.write().expect("quota lock");
        Some(
            namespaces
                .entry(namespace.to_string())
                .or_insert_with(|| {
                    Arc::new(Tenant {
                        max_in_flight: Some(limit),
                        ..Tenant::default()
                    })
                })
                .clone(),
        )
    }
}

impl Quota for TenantQuota {
    fn admit(&self, account: &Account) -> Result<QuotaPermit, String> {
        let Some(tenant) = self.tenant(&account.namespace) else {
            return Ok(QuotaPermit::free());
        };
        if let Some(bucket) = &tenant.bucket {
            let mut bucket = bucket.lock().expect("bucket lock");
            if !bucket.take(Instant::now()) {
                return Err(format!(
                    "namespace {:?} is over its quota of {} requests per second (burst {}); \
                     retry shortly, or raise it with `kindling ns set {} --rps N`",
                    account.namespace, bucket.rate, bucket.burst, account.namespace
                ));
            }
        }
        let Some(limit) = tenant.max_in_flight else {
            return Ok(QuotaPermit::free());
        };
        QuotaPermit::slot(&tenant.in_flight, limit).ok_or_else(|| {
            format!(
                "namespace {:?} is at its quota of {limit} requests in flight; retry shortly, \
                 or raise it with `kindling ns set {} --max-in-flight N`",
                account.namespace, account.namespace
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn account(namespace: &str) -> Account {
        Account {
            namespace: namespace.into(),
            function: "f".into(),
        }
    }

    #[test]
    fn in_flight_quota_holds_and_releases() {
        let quota = TenantQuota::new([("legacy".to_string(), 1)]);
        quota.set(
            "a",
            &Quotas {
                max_in_flight: Some(2),
                ..Quotas::default()
            },
        );
        let one = quota.admit(&account("a")).unwrap();
        let _two = quota.admit(&account("a")).unwrap();
        let refused = quota.admit(&account("a")).err().unwrap();
        assert!(
            refused.contains("quota of 2 requests in flight"),
            "{refused}"
        );
        drop(one);
        assert!(quota.admit(&account("a")).is_ok());
        assert!(quota.admit(&account("unlisted")).is_ok());
        let _held = quota.admit(&account("legacy")).unwrap();
        assert!(
            quota.admit(&account("legacy")).is_err(),
            "--namespace-limit applies"
        );
    }

    #[test]
    fn a_bucket_refills_at_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket::new(10.0, Some(2));
        assert!(bucket.take(start));
        assert!(bucket.take(start));
        assert!(!bucket.take(start), "the burst is spent");
        assert!(
            bucket.take(start + Duration::from_millis(100)),
            "one token in 100 ms"
        );
        assert!(!bucket.take(start + Duration::from_millis(100)));
    }

    #[test]
    fn changing_quotas_keeps_counting_running_requests() {
        let quota = TenantQuota::default();
        let limits = |n| Quotas {
            max_in_flight: Some(n),
            ..Quotas::default()
        };
        quota.set("a", &limits(1));
        let running = quota.admit(&account("a")).unwrap();
        quota.set("a", &limits(1));
        assert!(quota.admit(&account("a")).is_err());
        drop(running);
        assert_eq!(quota.in_flight("a"), 0);
    }
}
