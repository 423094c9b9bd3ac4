//! A store that counts its operations, for `/metrics`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::backend::{Backend, KeyPage, KvError, Usage};

/// The operations counted, in the order of [`Counted::counts`].
pub(crate) const OPERATIONS: [&str; 7] = [
    "get",
    "set",
    "delete",
    "exists",
    "keys",
    "increment",
    "swap",
];

/// A backend and how many times each operation was called on it.
#[derive(Debug)]
pub(crate) struct Counted {
    inner: Arc<dyn Backend>,
    counts: [AtomicU64; 7],
}

impl Counted {
    pub(crate) fn new(inner: Arc<dyn Backend>) -> Self {
        Self {
            inner,
            counts: Default::default(),
        }
    }

    fn count(&self, operation: usize) {
        self.counts[operation].fetch_add(1, Ordering::Relaxed);
    }

    /// Each operation's count, in the order of [`OPERATIONS`].
    pub(crate) fn counts(&self) -> [u64; 7] {
        std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed))
    }
}

#[async_trait]
impl Backend for Counted {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.count(0);
        self.inner.get(key).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.count(1);
        self.inner.set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.count(2);
        self.inner.delete(key).await
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        self.count(3);
        self.inner.exists(key).await
    }

    async fn keys(&self, after: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        self.count(4);
        self.inner.keys(after, limit).await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.count(5);
        self.inner.increment(key, delta).await
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        self.count(6);
        self.inner.swap(key, expected, value).await
    }

    async fn usage(&self) -> Result<Usage, KvError> {
        self.inner.usage().await
    }
}
