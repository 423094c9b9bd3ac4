//! Accounting a request to its namespace: the hook for tenant quotas and policy. The node asks
//! the quota before admitting a request and keeps the returned permit for the request's life.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

/// Whom a request is accounted to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Account {
    /// The tenant's namespace.
    pub namespace: Arc<str>,
    /// The function.
    pub function: Arc<str>,
}

/// Held while a request runs; dropping it gives the quota back.
pub struct QuotaPermit(Option<Box<dyn FnOnce() + Send + Sync>>);

impl QuotaPermit {
    /// A permit that gives nothing back.
    pub fn free() -> Self {
        Self(None)
    }

    /// One of `limit` slots counted by `counter`, given back when the permit drops; `None`
    /// when all are taken.
    pub fn slot(counter: &Arc<AtomicU32>, limit: u32) -> Option<Self> {
        counter
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        let counter = counter.clone();
        Some(Self::on_release(move || {
            counter.fetch_sub(1, Ordering::AcqRel);
        }))
    }

    /// A permit that runs `release` when dropped.
    pub fn on_release(release: impl FnOnce() + Send + Sync + 'static) -> Self {
        Self(Some(Box::new(release)))
    }
}

impl Drop for QuotaPermit {
    fn drop(&mut self) {
        if let Some(release) = self.0.take() {
            release();
        }
    }
}

/// Decides whether an account may start another request.
pub trait Quota: Send + Sync + std::fmt::Debug {
    /// Admits the request (returning what to hold while it runs) or says why not.
    fn admit(&self, account: &Account) -> Result<QuotaPermit, String>;
}

/// No quotas: every request is admitted.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unlimited;

impl Quota for Unlimited {
    fn admit(&self, _account: &Account) -> Result<QuotaPermit, String> {
        Ok(QuotaPermit::free())
    }
}

/// A ceiling on requests in flight per namespace; namespaces not listed are unlimited.
#[derive(Debug, Default)]
pub struct NamespaceLimits {
    limits: HashMap<String, u32>,
    in_flight: Mutex<HashMap<String, Arc<AtomicU32>>>,
}

impl NamespaceLimits {
    /// Limits from `(namespace, max in flight)` pairs.
    pub fn new(limits: impl IntoIterator<Item = (String, u32)>) -> Self {
        Self {
            limits: limits.into_iter().collect(),
            in_flight: Mutex::default(),
        }
    }

    /// Requests of a namespace in flight now.
    pub fn in_flight(&self, namespace: &str) -> u32 {
        self.in_flight
            .lock()
            .expect("namespace counters")
            .get(namespace)
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

impl Quota for NamespaceLimits {
    fn admit(&self, account: &Account) -> Result<QuotaPermit, String> {
        let Some(&limit) = self.limits.get(&*account.namespace) else {
            return Ok(QuotaPermit::free());
        };
        let counter = self
            .in_flight
            .lock()
            .expect("namespace counters")
            .entry(account.namespace.to_string())
            .or_default()
            .clone();
        QuotaPermit::slot(&counter, limit).ok_or_else(|| {
            format!(
                "namespace {:?} is at its limit of {limit} requests in flight",
                account.namespace
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(namespace: &str) -> Account {
        Account {
            namespace: namespace.into(),
            function: "f".into(),
        }
    }

    #[test]
    fn namespace_limits_hold_and_release() {
        let quota = NamespaceLimits::new([("team-a".to_string(), 2)]);
        let a = quota.admit(&account("team-a")).unwrap();
        let b = quota.admit(&account("team-a")).unwrap();
        let err = quota.admit(&account("team-a")).err().unwrap();
        assert!(err.contains("limit of 2"), "{err}");
        assert!(
            quota.admit(&account("other")).is_ok(),
            "unlisted namespaces are unlimited"
        );
        drop(a);
        assert_eq!(quota.in_flight("team-a"), 1);
        assert!(quota.admit(&account("team-a")).is_ok());
        drop(b);
    }
}
