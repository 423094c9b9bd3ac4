//! [`ClusterAccessStore`]: tokens, namespaces and policies shared through the `kindling-access`
//! bucket, so that a token made on one node works on every node, a revocation reaches them all,
//! and quotas and policies are the cluster's. Reads never leave the node (its SQLite holds a
//! copy the access watch keeps current); a change is written to the bucket first, by
//! compare-and-set where two nodes could race, and then copied here. The audit log stays per
//! node: each node records the admin actions it answered.
//!
//! Keys: `token.{id}` (the record and the token's hash, never the token), `namespace.{name}`,
//! `policy.{name}` (its active version; deleted when the policy is removed).

use std::sync::Arc;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use kindling_registry::{
    AccessStore, AuditRecord, NamespaceRecord, PolicyRecord, Quotas, RegistryError, SqliteCatalog,
    StoredToken, TokenRecord, sha256_hex,
};
use serde::{Deserialize, Serialize};

use crate::cluster::Shared;
use crate::record::now;

/// How often a compare-and-set that lost a race is tried again before the change is refused.
const SWAPS: usize = 5;

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

pub(crate) fn policy_key(name: &str) -> String {
    format!("policy.{name}")
}

/// The shared access records with this node's SQLite as their local copy.
#[derive(Clone)]
pub struct ClusterAccessStore {
    pub(crate) local: SqliteCatalog,
    pub(crate) shared: Arc<Shared>,
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
                let value = serde_json::from_slice(&entry.value).map_err(|err| {
                    RegistryError::Corrupt(format!("the cluster's {key:?} is unreadable: {err}"))
                })?;
                (Some(value), entry.revision)
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
                    let bytes = serde_json::to_vec(value).expect("a record serializes");
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

fn check_name(what: &str, name: &str) -> Result<(), RegistryError> {
    kindling_registry::validate_name(name).map_err(|_| {
        RegistryError::InvalidConfig(format!(
            "{what} {name:?} must be 1-63 lowercase letters, digits and `-`"
        ))
    })
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
            let bytes = serde_json::to_vec(&entry).expect("a token serializes");
            bucket
                .create(token_key(&token.record.id), bytes.into())
                .await
                .map_err(|err| self.shared.failed(&err.to_string()))?;
        }
        let record = token.record.clone();
        self.local.copy_token(token).await?;
        Ok(record)
    }

    /// Needs the cluster: a revocation that only this node knew of would leave the token
    /// working everywhere else.
    async fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, RegistryError> {
        self.bucket()?;
        let revoked = self.local.revoke_token(id_or_name).await?;
        let hash = self
            .local
            .tokens()
            .await?
            .into_iter()
            .find(|t| t.record.id == revoked.id)
            .map(|t| t.hash)
            .ok_or_else(|| RegistryError::TokenNotFound(revoked.id.clone()))?;
        let record = revoked.clone();
        self.swap::<TokenEntry, _>(&token_key(&revoked.id), move |current| {
            let mut entry = current.unwrap_or(TokenEntry {
                record: record.clone(),
                hash: hash.clone(),
            });
            if entry.record.revoked_at.is_none() {
                entry.record.revoked_at = record.revoked_at.clone();
            }
            Ok(Some(entry))
        })
        .await?;
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
        check_name("namespace", name)?;
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
        check_name("policy name", name)?;
        let sha256 = sha256_hex(rego.as_bytes());
        let last_here = self.local.last_policy_version(name).await?;
        let record = self
            .swap::<PolicyRecord, _>(&policy_key(name), |current| {
                if let Some(active) = current.as_ref().filter(|p| p.sha256 == sha256) {
                    return Ok(Some(active.clone()));
                }
                let version = current.map_or(0, |p| p.version).max(last_here) + 1;
                Ok(Some(PolicyRecord {
                    name: name.to_string(),
                    version,
                    rego: rego.to_string(),
                    sha256: sha256.clone(),
                    created_at: now(),
                }))
            })
            .await?
            .expect("a policy was written");
        self.local.copy_policy(name, Some(record.clone())).await?;
        Ok(record)
    }

    async fn remove_policy(&self, name: &str) -> Result<(), RegistryError> {
        self.swap::<PolicyRecord, _>(&policy_key(name), |current| match current {
            Some(_) => Ok(None),
            None => Err(RegistryError::PolicyNotFound(name.to_string())),
        })
        .await?;
        self.local.copy_policy(name, None).await
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
