//! What a key-value store is to the host functions, whatever keeps it: a [`Backend`] with the
//! operations every interface version needs, and the [`Limits`] every write is held to.

use async_trait::async_trait;

/// Why an operation failed; the host functions map it to each interface's error variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KvError {
    /// A write would break one of the store's limits.
    #[error("{0}")]
    Limit(String),
    /// The value is not what the operation needs (an increment of a non-number).
    #[error("{0}")]
    Value(String),
    /// The store is append-only and the write would replace or delete a key.
    #[error("{0}")]
    AppendOnly(String),
    /// The backend failed (I/O, the Redis server).
    #[error("the store failed: {0}")]
    Backend(String),
}

/// The limits of one store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest key, in bytes.
    pub max_key_bytes: usize,
    /// Largest value, in bytes.
    pub max_value_bytes: usize,
    /// Most keys.
    pub max_keys: u64,
    /// Most bytes of keys and values together.
    pub max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_key_bytes: 256,
            max_value_bytes: 1 << 20,
            max_keys: 1_000_000,
            max_bytes: 1 << 30,
        }
    }
}

impl Limits {
    /// Checks a key and value against the per-item limits.
    pub fn check(&self, key: &str, value: Option<&[u8]>) -> Result<(), KvError> {
        if key.len() > self.max_key_bytes {
            return Err(KvError::Limit(format!(
                "the key is {} bytes; this store's keys are at most {} bytes",
                key.len(),
                self.max_key_bytes
            )));
        }
        if let Some(value) = value
            && value.len() > self.max_value_bytes
        {
            return Err(KvError::Limit(format!(
                "the value of {key:?} is {} bytes; this store's values are at most {} bytes",
                value.len(),
                self.max_value_bytes
            )));
        }
        Ok(())
    }

    /// Checks what a store would hold after a write.
    pub fn check_totals(&self, keys: u64, bytes: u64) -> Result<(), KvError> {
        if keys > self.max_keys {
            return Err(KvError::Limit(format!(
                "the store holds its most keys ({}); delete some first",
                self.max_keys
            )));
        }
        if bytes > self.max_bytes {
            return Err(KvError::Limit(format!(
                "the store holds its most bytes ({}); delete some first",
                self.max_bytes
            )));
        }
        Ok(())
    }
}

/// A page of keys and where the next one starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPage {
    /// The keys, in key order.
    pub keys: Vec<String>,
    /// The last key of this page when there may be more, to start the next page after.
    pub next: Option<String>,
}

/// How big a store is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Keys held.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// One store: a namespace's label, on some backend.
#[async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// The value of `key`.
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Sets `key` to `value`, within the limits.
    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError>;
    /// Removes `key` (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), KvError>;
    /// Whether `key` is set.
    async fn exists(&self, key: &str) -> Result<bool, KvError>;
    /// Up to `limit` keys after `after`, in key order.
    async fn keys(&self, after: Option<&str>, limit: usize) -> Result<KeyPage, KvError>;
    /// Adds `delta` to the number `key` holds (absent is 0), atomically; returns the new value.
    /// Numbers are stored as decimal text, as Redis keeps them.
    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Sets `key` to `value` only if it still holds `expected` (`None`: absent); whether it did.
    async fn swap(&self, key: &str, expected: Option<&[u8]>, value: &[u8])
    -> Result<bool, KvError>;
    /// How big the store is now.
    async fn usage(&self) -> Result<Usage, KvError>;
}

/// Parses the decimal text a counter is kept as.
pub(crate) fn parse_counter(key: &str, value: &[u8]) -> Result<i64, KvError> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.trim().parse::<i64>().ok())
        .ok_or_else(|| {
            KvError::Value(format!(
                "the value of {key:?} is not a number, so it cannot be incremented"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_what_is_too_big() {
        let limits = Limits {
            max_key_bytes: 3,
            max_value_bytes: 4,
            max_keys: 2,
            max_bytes: 10,
        };
        limits.check("abc", Some(b"1234")).unwrap();
        assert!(
            limits
                .check("abcd", None)
                .unwrap_err()
                .to_string()
                .contains("at most 3 bytes")
        );
        let err = limits.check("k", Some(b"12345")).unwrap_err().to_string();
        assert!(err.contains("at most 4 bytes"), "{err}");
        assert!(
            limits
                .check_totals(3, 1)
                .unwrap_err()
                .to_string()
                .contains("most keys")
        );
        assert!(
            limits
                .check_totals(1, 11)
                .unwrap_err()
                .to_string()
                .contains("most bytes")
        );
        assert_eq!(parse_counter("c", b"-12").unwrap(), -12);
        assert!(parse_counter("c", b"x").is_err());
    }
}
