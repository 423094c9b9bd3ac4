//! The local copy of a shared registry (cluster mode): each function exactly as the shared
//! record at some revision says, written in one transaction, never older than what is there.
//!
//! The shared record is the truth; this node's SQLite holds the newest revision of it that
//! reached the node, so that the node serves what it had when the shared registry cannot be
//! reached. Revisions only move forward per function, and a delete is remembered with its
//! revision, so records arriving out of order or twice change nothing.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, params};

use crate::error::RegistryError;
use crate::model::VersionRecord;
use crate::sqlite::{SqliteCatalog, now, unused};

/// One function as the shared registry records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// The version that serves.
    pub active: u32,
    /// Every version kept, in any order.
    pub versions: Vec<VersionRecord>,
}

/// What copying a record did.
#[derive(Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplicaChange {
    /// The local copy was already at this revision or a newer one: nothing changed.
    Stale,
    /// The local copy now matches the record. `unreferenced` are the modules no version uses
    /// any more, whose files are gone.
    Applied {
        /// Hashes of modules collected.
        unreferenced: Vec<String>,
    },
}

impl SqliteCatalog {
    /// The shared registry's revision of every function copied here (deleted ones included).
    pub async fn replica_revisions(&self) -> Result<HashMap<String, u64>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT name, revision FROM replica")?;
            let rows = stmt.query_map([], |row| Ok((row.get(0)?, row.get::<_, i64>(1)? as u64)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// Makes the local copy of `name` match the shared record at `revision`: `Some` the
    /// function's versions and active one, `None` deleted. Every version's module file must
    /// be on this node's disk already ([`crate::Catalog::store_module`]), so that no version
    /// is ever recorded without its code.
    pub async fn apply_replica(
        &self,
        name: &str,
        revision: u64,
        replica: Option<Replica>,
    ) -> Result<ReplicaChange, RegistryError> {
        crate::model::validate_name(name)?;
        if let Some(replica) = &replica {
            Self::check_replica(name, replica)?;
        }
        let name = name.to_string();
        let inner = self.inner.clone();
        self.change(move |conn| {
            let tx = conn.transaction()?;
            let stored: Option<i64> = tx
                .query_row(
                    "SELECT revision FROM replica WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()?;
            if stored.is_some_and(|stored| stored as u64 >= revision) {
                return Ok(ReplicaChange::Stale);
            }
            if let Some(missing) = replica
                .iter()
                .flat_map(|r| &r.versions)
                .map(|v| inner.module_path(&v.sha256))
                .find(|path| !path.exists())
            {
                return Err(RegistryError::Io {
                    path: missing,
                    error: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "the module of a shared version is not on this node yet",
                    ),
                });
            }
            let before = {
                let mut stmt =
                    tx.prepare("SELECT DISTINCT sha256 FROM versions WHERE function = ?1")?;
                stmt.query_map(params![name], |row| row.get::<_, String>(0))?
                    .collect::<Result<Vec<_>, _>>()?
            };
            tx.execute("DELETE FROM versions WHERE function = ?1", params![name])?;
            let at = now();
            match &replica {
                None => {
                    tx.execute("DELETE FROM functions WHERE name = ?1", params![name])?;
                }
                Some(replica) => {
                    tx.execute(
                        "INSERT INTO functions (name, active_version, created_at, updated_at)
                         VALUES (?1, NULL, ?2, ?2) ON CONFLICT (name) DO NOTHING",
                        params![name, at],
                    )?;
                    for version in &replica.versions {
                        let config = serde_json::to_string(&version.config)
                            .map_err(|err| RegistryError::Corrupt(err.to_string()))?;
                        tx.execute(
                            "INSERT INTO versions
                             (function, version, sha256, kind, size_bytes, config, created_at)
                             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                            params![
                                name,
                                version.version,
                                version.sha256,
                                version.kind,
                                version.size_bytes as i64,
                                config,
                                version.created_at
                            ],
                        )?;
                    }
                    tx.execute(
                        "UPDATE functions SET active_version = ?2, updated_at = ?3 WHERE name = ?1",
                        params![name, replica.active, at],
                    )?;
                }
            }
            tx.execute(
                "INSERT INTO replica (name, revision) VALUES (?1, ?2)
                 ON CONFLICT (name) DO UPDATE SET revision = excluded.revision",
                params![name, revision as i64],
            )?;
            let unreferenced = unused(&tx, before)?;
            tx.commit()?;
            Ok(ReplicaChange::Applied {
                unreferenced: inner.collect(unreferenced),
            })
        })
        .await
    }

    /// A record fit to copy: its versions are this function's, distinct and valid, and the
    /// active one among them (that their code is on disk is checked with the revision).
    fn check_replica(name: &str, replica: &Replica) -> Result<(), RegistryError> {
        let mut seen = std::collections::HashSet::new();
        for version in &replica.versions {
            if version.function != name || !seen.insert(version.version) {
                return Err(RegistryError::Corrupt(format!(
                    "the shared record of {name:?} lists version {} twice or under another name",
                    version.version
                )));
            }
            version.config.validate()?;
        }
        if !seen.contains(&replica.active) {
            return Err(RegistryError::Corrupt(format!(
                "the shared record of {name:?} makes version {} active but does not list it",
                replica.active
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Catalog, FunctionConfig};
    use bytes::Bytes;

    async fn catalog_with(modules: &[&[u8]]) -> (tempfile::TempDir, SqliteCatalog, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SqliteCatalog::open(dir.path()).await.unwrap();
        let mut hashes = Vec::new();
        for module in modules {
            hashes.push(
                catalog
                    .store_module(Bytes::copy_from_slice(module))
                    .await
                    .unwrap(),
            );
        }
        (dir, catalog, hashes)
    }

    fn version(name: &str, number: u32, sha256: &str) -> VersionRecord {
        VersionRecord {
            function: name.into(),
            version: number,
            sha256: sha256.into(),
            kind: "wasi-http".into(),
            size_bytes: 8,
            config: FunctionConfig::default(),
            created_at: "2026-12-02T00:00:00.000Z".into(),
        }
    }

    #[tokio::test]
    async fn revisions_only_move_forward_and_a_delete_is_remembered() {
        let (_dir, catalog, hashes) = catalog_with(&[b"module-a", b"module-b"]).await;
        let two = Replica {
            active: 2,
            versions: vec![version("f", 1, &hashes[0]), version("f", 2, &hashes[1])],
        };
        let applied = catalog
            .apply_replica("f", 5, Some(two.clone()))
            .await
            .unwrap();
        assert!(matches!(applied, ReplicaChange::Applied { .. }));
        assert_eq!(catalog.active_version("f").await.unwrap().sha256, hashes[1]);
        assert_eq!(catalog.versions("f").await.unwrap().len(), 2);

        // The same revision again, or an older one, changes nothing.
        let rolled_back = Replica {
            active: 1,
            ..two.clone()
        };
        let again = catalog
            .apply_replica("f", 5, Some(rolled_back.clone()))
            .await;
        assert_eq!(again.unwrap(), ReplicaChange::Stale);
        assert_eq!(catalog.active_version("f").await.unwrap().version, 2);
        assert_eq!(
            catalog.apply_replica("f", 4, None).await.unwrap(),
            ReplicaChange::Stale
        );

        // A newer one does; a delete leaves the revision behind.
        catalog
            .apply_replica("f", 6, Some(rolled_back))
            .await
            .unwrap();
        assert_eq!(catalog.active_version("f").await.unwrap().version, 1);
        let deleted = catalog.apply_replica("f", 7, None).await.unwrap();
        assert_eq!(
            deleted,
            ReplicaChange::Applied {
                unreferenced: hashes.clone()
            },
            "both modules lost their last version"
        );
        assert!(catalog.function("f").await.unwrap().is_none());
        assert_eq!(catalog.replica_revisions().await.unwrap()["f"], 7);
        // The record from before the delete, arriving late, cannot bring it back.
        let late = catalog.apply_replica("f", 6, Some(two)).await.unwrap();
        assert_eq!(late, ReplicaChange::Stale);
        assert!(catalog.function("f").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_record_without_its_code_or_its_active_version_is_refused() {
        let (_dir, catalog, hashes) = catalog_with(&[b"module-a"]).await;
        let missing = Replica {
            active: 1,
            versions: vec![version("f", 1, &"0".repeat(64))],
        };
        let err = catalog
            .apply_replica("f", 1, Some(missing))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not on this node"), "{err}");
        let inactive = Replica {
            active: 3,
            versions: vec![version("f", 1, &hashes[0])],
        };
        let err = catalog
            .apply_replica("f", 1, Some(inactive))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("does not list it"), "{err}");
        assert!(
            catalog.function("f").await.unwrap().is_none(),
            "nothing recorded"
        );
        assert!(catalog.replica_revisions().await.unwrap().is_empty());
    }
}
