//! [`ClusterCatalog`]: the registry shared through JetStream, read from this node's copy.
//!
//! Reads never leave the node: they go to the local SQLite catalog, which the watch keeps
//! current. A change (deploy, rollback, delete, pruning) is a compare-and-set of the
//! function's record in the bucket, at the revision the change started from; only when it
//! wins is it copied into the local catalog, through the same path as a change from another
//! node. Module bytes reach the object store before the record that names them, so no node
//! ever sees a version whose code it cannot fetch.

use std::path::PathBuf;
use std::sync::Arc;

use async_nats::jetstream::kv;
use async_trait::async_trait;
use bytes::Bytes;
use kindling_registry::{
    Catalog, FunctionRecord, ModuleHold, NewVersion, RegistryError, ReplicaChange, SqliteCatalog,
    VersionRecord,
};

use crate::buckets::Buckets;
use crate::cluster::Shared;
use crate::record::{Record, RecordVersion, now};

/// The shared registry with this node's SQLite catalog as its local copy.
#[derive(Clone)]
pub struct ClusterCatalog {
    pub(crate) local: SqliteCatalog,
    pub(crate) shared: Arc<Shared>,
}

/// A function's record as the bucket holds it now: `None` when it has none (never had one,
/// or deleted), with the revision a change must start from (0: none ever).
struct Current {
    record: Option<Record>,
    revision: u64,
}

impl ClusterCatalog {
    fn buckets(&self) -> Result<Buckets, RegistryError> {
        self.shared
            .buckets()
            .ok_or_else(|| self.shared.unreachable())
    }

    async fn current(&self, buckets: &Buckets, name: &str) -> Result<Current, RegistryError> {
        let entry = buckets
            .functions
            .entry(name)
            .await
            .map_err(|err| self.shared.failed(&err.to_string()))?;
        Ok(match entry {
            Some(entry) if entry.operation == kv::Operation::Put => Current {
                record: Some(Record::parse(name, &entry.value)?),
                revision: entry.revision,
            },
            Some(entry) => Current {
                record: None,
                revision: entry.revision,
            },
            None => Current {
                record: None,
                revision: 0,
            },
        })
    }

    /// Writes `record` over the one at `base`; `Conflict` when another change got there first.
    async fn swap(
        &self,
        buckets: &Buckets,
        name: &str,
        base: u64,
        record: &Record,
    ) -> Result<u64, RegistryError> {
        let written = if base == 0 {
            buckets
                .functions
                .create(name, record.to_bytes())
                .await
                .map_err(|err| {
                    (
                        err.kind() == kv::CreateErrorKind::AlreadyExists,
                        err.to_string(),
                    )
                })
        } else {
            buckets
                .functions
                .update(name, record.to_bytes(), base)
                .await
                .map_err(|err| {
                    (
                        err.kind() == kv::UpdateErrorKind::WrongLastRevision,
                        err.to_string(),
                    )
                })
        };
        match written {
            Ok(revision) => Ok(revision),
            Err((true, _)) => Err(self.conflict(buckets, name).await),
            Err((false, detail)) => Err(self.shared.failed(&detail)),
        }
    }

    /// The error for a change that lost to another, saying who won.
    async fn conflict(&self, buckets: &Buckets, name: &str) -> RegistryError {
        let now = match self.current(buckets, name).await {
            Ok(Current {
                record: Some(record),
                ..
            }) => format!(
                "version {} is active now, set by node {:?} at {}",
                record.active, record.changed_by, record.changed_at
            ),
            Ok(_) => "it was deleted".to_string(),
            Err(err) => format!("its record cannot be read now: {err}"),
        };
        RegistryError::Conflict(format!(
            "function {name:?} was changed on another node while this change was made ({now}); \
             nothing was recorded: look at `kindling versions {name}` and make the change again \
             if it still applies"
        ))
    }

    /// Copies a record this node just wrote into the local catalog.
    async fn copy(
        &self,
        name: &str,
        revision: u64,
        record: Option<&Record>,
    ) -> Result<Vec<String>, RegistryError> {
        let replica = record.map(|record| record.replica(name));
        match self.local.apply_replica(name, revision, replica).await? {
            ReplicaChange::Applied { unreferenced } => Ok(unreferenced),
            // The watch copied it (or something newer) first.
            _ => Ok(Vec::new()),
        }
    }

    fn record(&self, active: u32, versions: Vec<RecordVersion>) -> Record {
        Record {
            active,
            versions,
            changed_by: self.shared.config.node_name.clone(),
            changed_at: now(),
        }
    }
}

#[async_trait]
impl Catalog for ClusterCatalog {
    fn hold(&self, sha256: &str) -> ModuleHold {
        self.local.hold(sha256)
    }

    async fn base(&self, name: &str) -> Result<Option<u64>, RegistryError> {
        let buckets = self.buckets()?;
        Ok(Some(self.current(&buckets, name).await?.revision))
    }

    async fn store_module(&self, bytes: Bytes) -> Result<String, RegistryError> {
        let buckets = self.buckets()?;
        let sha256 = self.local.store_module(bytes.clone()).await?;
        buckets
            .put_module(&sha256, &bytes)
            .await
            .map_err(|err| self.shared.failed(&err))?;
        Ok(sha256)
    }

    fn module_path(&self, sha256: &str) -> PathBuf {
        self.local.module_path(sha256)
    }

    async fn commit_version(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<VersionRecord, RegistryError> {
        kindling_registry::validate_name(name)?;
        new.config.validate()?;
        let buckets = self.buckets()?;
        let current = self.current(&buckets, name).await?;
        if new.base.is_some_and(|base| base != current.revision) {
            return Err(self.conflict(&buckets, name).await);
        }
        let number = current.record.as_ref().map_or(1, Record::next_version);
        let mut versions = current.record.map(|r| r.versions).unwrap_or_default();
        versions.push(RecordVersion {
            version: number,
            sha256: new.sha256,
            kind: new.kind,
            size_bytes: new.size_bytes,
            config: new.config,
            created_at: now(),
        });
        let record = self.record(number, versions);
        let revision = self.swap(&buckets, name, current.revision, &record).await?;
        self.copy(name, revision, Some(&record)).await?;
        Ok(record
            .version(name, number)
            .expect("the version just added"))
    }

    async fn activate(&self, name: &str, version: u32) -> Result<VersionRecord, RegistryError> {
        let buckets = self.buckets()?;
        let current = self.current(&buckets, name).await?;
        let Some(record) = current.record else {
            return Err(RegistryError::FunctionNotFound(name.to_string()));
        };
        let Some(target) = record.version(name, version) else {
            return Err(RegistryError::VersionNotFound {
                name: name.to_string(),
                version,
            });
        };
        let record = self.record(version, record.versions);
        let revision = self.swap(&buckets, name, current.revision, &record).await?;
        self.copy(name, revision, Some(&record)).await?;
        Ok(target)
    }

    async fn previous_version(&self, name: &str) -> Result<u32, RegistryError> {
        self.local.previous_version(name).await
    }

    async fn delete_function(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let buckets = self.buckets()?;
        let current = self.current(&buckets, name).await?;
        if current.record.is_none() {
            return Err(RegistryError::FunctionNotFound(name.to_string()));
        }
        if let Err(err) = buckets
            .functions
            .delete_expect_revision(name, Some(current.revision))
            .await
        {
            return Err(if err.kind() == kv::DeleteErrorKind::WrongLastRevision {
                self.conflict(&buckets, name).await
            } else {
                self.shared.failed(&err.to_string())
            });
        }
        // The delete marker's own revision is past the one it replaced: record at least that,
        // so that the record it deleted can never be copied back.
        self.copy(name, current.revision + 1, None).await
    }

    async fn prune_versions(&self, name: &str, keep: u32) -> Result<Vec<String>, RegistryError> {
        let buckets = self.buckets()?;
        let current = self.current(&buckets, name).await?;
        let Some(record) = current.record else {
            return Ok(Vec::new());
        };
        let keep = keep.max(1) as usize;
        let before = record.versions.len();
        let mut versions = record.versions;
        versions.sort_by_key(|v| std::cmp::Reverse(v.version));
        let mut kept = 0;
        versions.retain(|v| {
            let stays = v.version == record.active || kept < keep.saturating_sub(1);
            if v.version != record.active && stays {
                kept += 1;
            }
            stays
        });
        versions.reverse();
        if versions.len() == before {
            return Ok(Vec::new());
        }
        let pruned = self.record(record.active, versions);
        let revision = self.swap(&buckets, name, current.revision, &pruned).await?;
        self.copy(name, revision, Some(&pruned)).await
    }

    async fn referenced_modules(&self) -> Result<Vec<String>, RegistryError> {
        self.local.referenced_modules().await
    }

    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>, RegistryError> {
        self.local.function(name).await
    }

    async fn functions(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
        self.local.functions().await
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        self.local.versions(name).await
    }

    async fn active_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        self.local.active_versions().await
    }

    async fn active_version(&self, name: &str) -> Result<VersionRecord, RegistryError> {
        self.local.active_version(name).await
    }

    async fn disk_bytes(&self) -> u64 {
        self.local.disk_bytes().await
    }

    async fn checkpoint(&self) -> Result<(), RegistryError> {
        self.local.checkpoint().await
    }
}
