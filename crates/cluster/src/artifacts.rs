//! Compiled code shared through the `kindling-artifacts` object store, so that a fleet of
//! identical nodes compiles each module once: the node a module is deployed on publishes its
//! machine code before it commits the version, and the nodes that follow map it instead of
//! compiling. Objects are named `{module sha256}-{engine key}`: code is only ever offered to an
//! engine of the same Wasmtime build and settings (and Wasmtime checks again when it loads it).
//!
//! Machine code runs outside the WebAssembly sandbox, so unlike a module (which a node
//! compiles and confines itself) it must not be taken from whoever can write to NATS. Each
//! object carries an HMAC-SHA256 tag over its name and bytes, keyed by a key derived from the
//! nodes' shared `secret.key`; a node maps only code whose tag it can check, and compiles the
//! module itself otherwise.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hmac::Mac as _;
use kindling_node::CodeShare;
use tokio::io::AsyncReadExt as _;

use crate::cluster::Shared;
use crate::key::ClusterKey;

/// What an object starts with: the format, then the 32-byte tag, then the code.
const MAGIC: &[u8; 16] = b"kindling-code/1\n";
/// The largest object a node reads: beyond it, compiling is the better bet.
const MAX_OBJECT_BYTES: usize = 512 * 1024 * 1024;
/// How long a fetch or a publish may take before the node compiles instead (or gives up
/// offering); both run under the node's control lock, so a slow link must not hold changes.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(10);

/// The object for `code` under `name`: the format, the tag, the code.
fn seal(key: &ClusterKey, name: &str, code: &[u8]) -> Vec<u8> {
    let tag = key.mac(MAGIC, name, code).finalize().into_bytes();
    let mut object = Vec::with_capacity(MAGIC.len() + tag.len() + code.len());
    object.extend_from_slice(MAGIC);
    object.extend_from_slice(&tag);
    object.extend_from_slice(code);
    object
}

/// The code in `object`, when it is an object `key` made under `name`.
fn open(key: &ClusterKey, name: &str, mut object: Vec<u8>) -> Result<Vec<u8>, &'static str> {
    let start = MAGIC.len() + 32;
    if object.len() < start || &object[..MAGIC.len()] != MAGIC {
        return Err("it is not compiled code a Kindling node published");
    }
    let tag = object[MAGIC.len()..start].to_vec();
    key.mac(MAGIC, name, &object[start..])
        .verify_slice(&tag)
        .map_err(|_| "its tag does not check: another secret key made it, or it was altered")?;
    object.drain(..start);
    Ok(object)
}

/// Code-sharing counters, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct CodeCounters {
    /// Code this node uploaded.
    pub(crate) published: AtomicU64,
    /// Peers' code this node took instead of compiling.
    pub(crate) fetched: AtomicU64,
    /// Loads that found no code to take (or could not reach it), and compiled.
    pub(crate) missing: AtomicU64,
    /// Objects refused: not authentic, too large, unreadable.
    pub(crate) refused: AtomicU64,
}

/// The cluster's [`CodeShare`].
pub(crate) struct NatsCodeShare {
    shared: Arc<Shared>,
    key: ClusterKey,
}

impl NatsCodeShare {
    pub(crate) fn new(shared: Arc<Shared>, key: ClusterKey) -> Self {
        Self { shared, key }
    }

    fn count(&self, counter: impl Fn(&CodeCounters) -> &AtomicU64) {
        counter(&self.shared.code).fetch_add(1, Ordering::Relaxed);
    }

    async fn read(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        let Some(buckets) = self.shared.buckets().filter(|_| self.shared.connected()) else {
            return Ok(None);
        };
        let info = match buckets.artifacts.info(name).await {
            Ok(info) if !info.deleted => info,
            _ => return Ok(None),
        };
        if info.size > MAX_OBJECT_BYTES {
            return Err(format!(
                "it is {} bytes, more than the {MAX_OBJECT_BYTES} a node reads",
                info.size
            ));
        }
        let mut object = buckets
            .artifacts
            .get(name)
            .await
            .map_err(|err| format!("it cannot be read: {err}"))?;
        // The size in the object's info is the writer's word: read no more than the limit.
        let mut bytes = Vec::new();
        (&mut object)
            .take(MAX_OBJECT_BYTES as u64 + 1)
            .read_to_end(&mut bytes)
            .await
            .map_err(|err| format!("it cannot be read: {err}"))?;
        if bytes.len() > MAX_OBJECT_BYTES {
            return Err(format!(
                "it is more than the {MAX_OBJECT_BYTES} bytes a node reads"
            ));
        }
        Ok(Some(bytes))
    }
}

fn object_name(sha256: &str, engine: &str) -> String {
    format!("{sha256}-{engine}")
}

#[async_trait]
impl CodeShare for NatsCodeShare {
    async fn fetch(&self, sha256: &str, engine: &str) -> Option<Vec<u8>> {
        let name = object_name(sha256, engine);
        let read = tokio::time::timeout(TRANSFER_TIMEOUT, self.read(&name)).await;
        let refused = |problem: &str| {
            tracing::warn!(
                object = %name,
                problem,
                "refusing compiled code from the cluster; compiling the module here"
            );
            self.count(|c| &c.refused);
            None
        };
        match read {
            Ok(Ok(Some(object))) => match open(&self.key, &name, object) {
                Ok(code) => {
                    self.count(|c| &c.fetched);
                    tracing::debug!(object = %name, bytes = code.len(), "took a peer's compiled code");
                    Some(code)
                }
                Err(problem) => refused(problem),
            },
            Ok(Ok(None)) | Err(_) => {
                // Nothing published (or not in time): compiling is the answer, not an error.
                self.count(|c| &c.missing);
                None
            }
            Ok(Err(problem)) => refused(&problem),
        }
    }

    async fn publish(&self, sha256: &str, engine: &str, code: Vec<u8>) {
        let Some(buckets) = self.shared.buckets().filter(|_| self.shared.connected()) else {
            return;
        };
        let name = object_name(sha256, engine);
        let object = seal(&self.key, &name, &code);
        let put = async {
            if let Ok(info) = buckets.artifacts.info(&name).await
                && !info.deleted
                && info.size == object.len()
            {
                return Ok(false);
            }
            let mut reader = object.as_slice();
            buckets
                .artifacts
                .put(name.as_str(), &mut reader)
                .await
                .map(|_| true)
                .map_err(|err| err.to_string())
        };
        match tokio::time::timeout(TRANSFER_TIMEOUT, put).await {
            Ok(Ok(true)) => {
                self.count(|c| &c.published);
                tracing::debug!(object = %name, bytes = code.len(), "published compiled code");
            }
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                tracing::warn!(object = %name, error = %err, "cannot publish compiled code; other nodes compile it")
            }
            Err(_) => {
                tracing::warn!(object = %name, "publishing compiled code timed out; other nodes compile it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_code_sealed_by_the_same_key_under_the_same_name_opens() {
        let key = ClusterKey::new([7; 32]);
        let object = seal(&key, "abc-e1", b"machine code");
        assert_eq!(
            open(&key, "abc-e1", object.clone()).unwrap(),
            b"machine code"
        );
        assert!(
            open(&key, "def-e1", object.clone()).is_err(),
            "bound to its module"
        );
        assert!(
            open(&ClusterKey::new([8; 32]), "abc-e1", object.clone()).is_err(),
            "bound to its key"
        );
        let mut altered = object.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(&key, "abc-e1", altered).is_err(), "bound to its bytes");
        assert!(open(&key, "abc-e1", b"\0asm".to_vec()).is_err());
        assert!(open(&key, "abc-e1", object[..40].to_vec()).is_err());
    }
}
