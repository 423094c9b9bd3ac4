//! [`ClusterAccessStore`]: tokens, namespaces and policies shared through the `kindling-access`
//! bucket, so that a token made on one node works on every node, a revocation reaches them all,
//! and quotas and policies are the cluster's. Reads never leave the node (its SQLite holds a
//! copy the access watch keeps current); a change is written to the bucket first, by
//! compare-and-set where two nodes could race, and then copied here. The audit log stays per
//! node: each node records the admin actions it answered. Every record is tagged with the
//! cluster's key, so NATS alone cannot mint a token or change a quota or a policy.
//!
//! Keys: `token.{id}` (the record and the token's hash, never the token), `namespace.{name}`,
//! and `policies` (every active policy, so that a set is checked whole when it changes).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use hmac::Mac as _;
use kindling_registry::{
    AccessStore, AuditRecord, NamespaceRecord, PolicyRecord, Quotas, RegistryError, SqliteCatalog,
    StoredToken, TokenRecord, sha256_hex,
};
use serde::{Deserialize, Serialize};

use crate::cluster::Shared;
use crate::key::ClusterKey;
use crate::record::now;

/// How often a compare-and-set that lost a race is tried again before the change is refused.
const SWAPS: usize = 5;

/// What the bucket holds under a key: the record's JSON text and its tag, so that a record
/// written by whoever can write to NATS but lacks `secret.key` is refused, not obeyed.
#[derive(Debug, Serialize, Deserialize)]
struct Tagged {
    value: String,
    tag: String,
}

/// What tags of access records are made for.
const DOMAIN: &[u8] = b"kindling-access/1\n";

/// The bucket's bytes for `value` under `name`.
pub(crate) fn seal<T: Serialize>(key: &ClusterKey, name: &str, value: &T) -> Vec<u8> {
    let value = serde_json::to_string(value).expect("a record serializes");
    let tag = hex::encode(
        key.mac(DOMAIN, name, value.as_bytes())
            .finalize()
            .into_bytes(),
    );
    serde_json::to_vec(&Tagged { value, tag }).expect("a record serializes")
}

/// The record in `bytes`, when `key` tagged it under `name`.
pub(crate) fn open<T: for<'de> Deserialize<'de>>(
    key: &ClusterKey,
    name: &str,
    bytes: &[u8],
) -> Result<T, String> {
    let tagged: Tagged = serde_json::from_slice(bytes)
        .map_err(|err| format!("it is not a record a Kindling node wrote: {err}"))?;
    let tag = hex::decode(&tagged.tag).map_err(|_| "its tag is malformed".to_string())?;
    key.mac(DOMAIN, name, tagged.value.as_bytes())
        .verify_slice(&tag)
        .map_err(|_| {
            "its tag does not check: a node with another secret.key wrote it, or it was altered"
                .to_string()
        })?;
    serde_json::from_str(&tagged.value).map_err(|err| format!("it cannot be read: {err}"))
}

/// A token as the bucket holds it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TokenEntry {
    pub(crate) record: TokenRecord,
    pub(crate) hash: String,
}

impl TokenEntry {
    pub(crate) fn stored(self) -> StoredToken {
        StoredToken {
            record: self.record,
            hash: self.hash,
        }
    }
}

pub(crate) fn token_key(id: &str) -> String {
    format!("token.{id}")
}

pub(crate) fn namespace_key(name: &str) -> String {
    format!("namespace.{name}")
}

/// The key of the active policies, all under one key: a policy is checked with the others in
/// the same compare-and-set, so two nodes adding policies at once cannot leave the cluster a
/// set that does not compile.
pub(crate) const POLICIES_KEY: &str = "policies";

/// The active policies by name, as the bucket holds them.
pub(crate) type PolicySet = std::collections::BTreeMap<String, PolicyRecord>;

/// Refuses a set of policies that does not compile together.
fn compiles(set: &PolicySet) -> Result<(), RegistryError> {
    let sources: Vec<(String, String)> = set
        .values()
        .map(|p| (p.name.clone(), p.rego.clone()))
        .collect();
    kindling_access::Policies::check(&sources).map_err(|err| {
        RegistryError::Conflict(format!(
            "with the policies the cluster has now (changed on another node meanwhile), the set \
             does not compile: {err}; nothing was recorded: look at `kindling policy ls` and try \
             again"
        ))
    })
}

/// The shared access records with this node's SQLite as their local copy.
#[derive(Clone)]
pub struct ClusterAccessStore {
    pub(crate) local: SqliteCatalog,
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: ClusterKey,
}

impl ClusterAccessStore {
    fn bucket(&self) -> Result<kv::Store, RegistryError> {
        match self.shared.buckets() {
            Some(buckets) if self.shared.connected() => Ok(buckets.access),
            _ => Err(self.shared.unreachable()),
        }
    }

    /// The value at `key` now (`None`: none, or deleted) and the revision to change it from.
    async fn read<T: for<'de> Deserialize<'de>>(
        &self,
        bucket: &kv::Store,
        key: &str,
    ) -> Result<(Option<T>, u64), RegistryError> {
        let entry = bucket
            .entry(key)
            .await
            .map_err(|err| self.shared.failed(&err.to_string()))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => {
                match open(&self.key, key, &entry.value) {
                    Ok(value) => (Some(value), entry.revision),
                    Err(why) => {
                        // Not Kindling's: the change writes over it.
                        tracing::warn!(
                            key,
                            why,
                            "replacing an access record that is not Kindling's"
                        );
                        (None, entry.revision)
                    }
                }
            }
            Some(entry) => (None, entry.revision),
            None => (None, 0),
        })
    }

    /// Writes what `change` makes of the value at `key` by compare-and-set, again when another
    /// node changed it in between; `Ok(None)` from `change` deletes it.
    async fn swap<T, F>(&self, key: &str, change: F) -> Result<Option<T>, RegistryError>
    where
        T: Serialize + for<'de> Deserialize<'de>,
        F: Fn(Option<T>) -> Result<Option<T>, RegistryError>,
    {
        let bucket = self.bucket()?;
        for _ in 0..SWAPS {
            let (current, revision) = self.read::<T>(&bucket, key).await?;
            let existed = current.is_some();
            let next = change(current)?;
            let written = match &next {
                Some(value) => {
                    let bytes = seal(&self.key, key, value);
                    if revision == 0 {
                        bucket
                            .create(key, bytes.into())
                            .await
                            .map(drop)
                            .map_err(|err| {
                                (
                                    err.kind() == kv::CreateErrorKind::AlreadyExists,
                                    err.to_string(),
                                )
                            })
                    } else {
                        bucket
                            .update(key, bytes.into(), revision)
                            .await
                            .map(drop)
                            .map_err(|err| {
                                (
                                    err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                                    err.to_string(),
                                )
                            })
                    }
                }
                None if existed => bucket
                    .delete_expect_revision(key, Some(revision))
                    .await
                    .map_err(|err| {
                        (
                            err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                            err.to_string(),
                        )
                    }),
                None => Ok(()),
            };
            match written {
                Ok(()) => return Ok(next),
                Err((true, _)) => continue,
                Err((false, detail)) => return Err(self.shared.failed(&detail)),
            }
        }
        Err(RegistryError::Conflict(format!(
            "{key:?} kept changing on other nodes while this change was made; nothing was \
             recorded: make the change again"
        )))
    }
}

impl ClusterAccessStore {
    async fn publish_revocation(&self, revoked: &TokenRecord) -> Result<(), RegistryError> {
        let hash = self
            .local
            .tokens()
            .await?
            .into_iter()
            .find(|t| t.record.id == revoked.id)
            .map(|t| t.hash)
            .ok_or_else(|| RegistryError::TokenNotFound(revoked.id.clone()))?;
        self.swap::<TokenEntry, _>(&token_key(&revoked.id), |current| {
            let mut entry = current.unwrap_or(TokenEntry {
                record: revoked.clone(),
                hash: hash.clone(),
            });
            if entry.record.revoked_at.is_none() {
                entry.record.revoked_at = revoked.revoked_at.clone();
            }
            Ok(Some(entry))
        })
        .await
        .map(drop)
    }
}

#[async_trait]
impl AccessStore for ClusterAccessStore {
    async fn tokens(&self) -> Result<Vec<StoredToken>, RegistryError> {
        self.local.tokens().await
    }

    /// Tokens are random and never collide, so one made while NATS cannot be reached (a
    /// node's first admin token, at a start with NATS down) is kept here and published when
    /// the link returns.
    async fn insert_token(&self, token: StoredToken) -> Result<TokenRecord, RegistryError> {
        if let Ok(bucket) = self.bucket() {
            let entry = TokenEntry {
                record: token.record.clone(),
                hash: token.hash.clone(),
            };
            let name = token_key(&token.record.id);
            let bytes = seal(&self.key, &name, &entry);
            bucket
                .create(name, bytes.into())
                .await
                .map_err(|err| self.shared.failed(&err.to_string()))?;
        }
        let record = token.record.clone();
        self.local.copy_token(token).await?;
        Ok(record)
    }

    /// Holds here at once, whatever the link: a leaked token must stop at least where it is
    /// revoked. Then it is published; when that fails (NATS down, or not answering), the access
    /// watch publishes it as soon as it can (a revocation made here is never lost to a copy).
    async fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, RegistryError> {
        let revoked = self.local.revoke_token(id_or_name).await?;
        if let Err(err) = self.publish_revocation(&revoked).await {
            tracing::warn!(
                token = %revoked.id,
                error = %err,
                "the revocation holds on this node; it reaches the others when the cluster answers"
            );
            self.shared.access_behind.store(true, Ordering::Relaxed);
        }
        Ok(revoked)
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>, RegistryError> {
        self.local.namespaces().await
    }

    async fn put_namespace(
        &self,
        name: &str,
        quotas: Quotas,
        create: bool,
    ) -> Result<NamespaceRecord, RegistryError> {
        kindling_registry::validate_label("namespace", name)?;
        let record = self
            .swap::<NamespaceRecord, _>(&namespace_key(name), |current| {
                if current.is_some() && create {
                    return Err(RegistryError::NamespaceExists(name.to_string()));
                }
                let at = now();
                Ok(Some(NamespaceRecord {
                    name: name.to_string(),
                    quotas,
                    created_at: current.map_or_else(|| at.clone(), |c| c.created_at),
                    updated_at: at,
                }))
            })
            .await?
            .expect("a namespace was written");
        self.local.copy_namespace(record.clone()).await?;
        Ok(record)
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>, RegistryError> {
        self.local.policies().await
    }

    async fn put_policy(&self, name: &str, rego: &str) -> Result<PolicyRecord, RegistryError> {
        kindling_registry::validate_label("policy name", name)?;
        let sha256 = sha256_hex(rego.as_bytes());
        let last_here = self.local.last_policy_version(name).await?;
        let set = self
            .swap::<PolicySet, _>(POLICIES_KEY, |current| {
                let mut set = current.unwrap_or_default();
                if set.get(name).is_some_and(|p| p.sha256 == sha256) {
                    return Ok(Some(set));
                }
                let version = set.get(name).map_or(0, |p| p.version).max(last_here) + 1;
                set.insert(
                    name.to_string(),
                    PolicyRecord {
                        name: name.to_string(),
                        version,
                        rego: rego.to_string(),
                        sha256: sha256.clone(),
                        created_at: now(),
                    },
                );
                compiles(&set)?;
                Ok(Some(set))
            })
            .await?
            .unwrap_or_default();
        self.local.copy_policies(&set).await?;
        Ok(set.get(name).cloned().expect("the policy was written"))
    }

    async fn remove_policy(&self, name: &str) -> Result<(), RegistryError> {
        let set = self
            .swap::<PolicySet, _>(POLICIES_KEY, |current| {
                let mut set = current.unwrap_or_default();
                if set.remove(name).is_none() {
                    return Err(RegistryError::PolicyNotFound(name.to_string()));
                }
                compiles(&set)?;
                Ok(Some(set))
            })
            .await?
            .unwrap_or_default();
        self.local.copy_policies(&set).await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RegistryError> {
        self.local.append_audit(record).await
    }

    async fn audit(
        &self,
        after: u64,
        limit: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<AuditRecord>, RegistryError> {
        self.local.audit(after, limit, namespace).await
    }
}
