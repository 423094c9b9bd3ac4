//! The local copy of shared access records (cluster mode): tokens, namespaces and the active
//! policies as the shared registry says, written over what is here. A token's revocation is
//! never undone by a copy (a record that says "live" cannot bring a revoked token back), nor
//! is its hash replaced (a record cannot turn a known token into one somebody else holds), and
//! a policy version keeps the number the shared registry gave it, so versions agree everywhere.

use rusqlite::params;

use crate::access::{NamespaceRecord, PolicyRecord, StoredToken};
use crate::error::RegistryError;
use crate::sqlite::SqliteCatalog;

impl SqliteCatalog {
    /// Records a token as the shared registry has it (its hash only when it is new here).
    pub async fn copy_token(&self, token: StoredToken) -> Result<(), RegistryError> {
        self.change(move |conn| {
            let r = &token.record;
            conn.execute(
                "INSERT INTO tokens (id, name, namespace, scopes, hash, created_at, expires_at,
                                     revoked_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT (id) DO UPDATE SET
                     name = excluded.name, namespace = excluded.namespace,
                     scopes = excluded.scopes,
                     created_at = excluded.created_at, expires_at = excluded.expires_at,
                     revoked_at = COALESCE(tokens.revoked_at, excluded.revoked_at),
                     created_by = excluded.created_by",
                params![
                    r.id,
                    r.name,
                    r.namespace,
                    r.scopes.join(","),
                    token.hash,
                    r.created_at,
                    r.expires_at,
                    r.revoked_at,
                    r.created_by
                ],
            )?;
            Ok(())
        })
        .await
    }

    /// Records a namespace and its quotas as the shared registry has them.
    pub async fn copy_namespace(&self, record: NamespaceRecord) -> Result<(), RegistryError> {
        let quotas = serde_json::to_string(&record.quotas)
            .map_err(|err| RegistryError::Corrupt(err.to_string()))?;
        self.change(move |conn| {
            conn.execute(
                "INSERT INTO namespaces (name, quotas, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET quotas = ?2, created_at = ?3, updated_at = ?4",
                params![record.name, quotas, record.created_at, record.updated_at],
            )?;
            Ok(())
        })
        .await
    }

    /// Makes `set` the active policies: each at its version, every other policy off.
    pub async fn copy_policies(
        &self,
        set: &std::collections::BTreeMap<String, PolicyRecord>,
    ) -> Result<(), RegistryError> {
        let set: Vec<PolicyRecord> = set.values().cloned().collect();
        self.change(move |conn| {
            let tx = conn.transaction()?;
            tx.execute("UPDATE policies SET active = 0", [])?;
            for p in &set {
                tx.execute(
                    "INSERT INTO policies (name, version, rego, sha256, created_at, active)
                     VALUES (?1, ?2, ?3, ?4, ?5, 1)
                     ON CONFLICT (name, version) DO UPDATE SET
                         rego = excluded.rego, sha256 = excluded.sha256,
                         created_at = excluded.created_at, active = 1",
                    params![p.name, p.version, p.rego, p.sha256, p.created_at],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// The highest version any policy of this name has had here (0 for none).
    pub async fn last_policy_version(&self, name: &str) -> Result<u32, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            Ok(conn.query_row(
                "SELECT COALESCE(MAX(version), 0) FROM policies WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{AccessStore, Quotas, TokenRecord};

    fn token(id: &str, revoked_at: Option<&str>) -> StoredToken {
        StoredToken {
            record: TokenRecord {
                id: id.into(),
                name: "ci".into(),
                namespace: Some("team".into()),
                scopes: vec!["deploy".into()],
                created_at: "2026-12-02T10:00:00Z".into(),
                expires_at: None,
                revoked_at: revoked_at.map(str::to_string),
                created_by: Some("admin".into()),
            },
            hash: format!("{id:0>64}"),
        }
    }

    #[tokio::test]
    async fn copies_replace_what_is_here_but_never_undo_a_revocation() {
        let dir = tempfile::tempdir().unwrap();
        let catalog = SqliteCatalog::open(dir.path()).await.unwrap();
        catalog.copy_token(token("a1", None)).await.unwrap();
        catalog
            .copy_token(token("a1", Some("2026-12-02T11:00:00Z")))
            .await
            .unwrap();
        let mut other_hash = token("a1", None);
        other_hash.hash = "f".repeat(64);
        catalog.copy_token(other_hash).await.unwrap();
        let tokens = catalog.tokens().await.unwrap();
        assert_eq!(tokens[0].hash, format!("{:0>64}", "a1"), "the hash stays");
        assert_eq!(tokens.len(), 1);
        assert_eq!(
            tokens[0].record.revoked_at.as_deref(),
            Some("2026-12-02T11:00:00Z")
        );

        let mut ns = NamespaceRecord {
            name: "team".into(),
            quotas: Quotas {
                functions: Some(3),
                ..Quotas::default()
            },
            created_at: "2026-12-02T10:00:00Z".into(),
            updated_at: "2026-12-02T10:00:00Z".into(),
        };
        catalog.copy_namespace(ns.clone()).await.unwrap();
        ns.quotas.functions = Some(5);
        catalog.copy_namespace(ns.clone()).await.unwrap();
        assert_eq!(catalog.namespaces().await.unwrap(), vec![ns]);

        let policy = |version: u32, rego: &str| PolicyRecord {
            name: "size".into(),
            version,
            rego: rego.into(),
            sha256: crate::sha256_hex(rego.as_bytes()),
            created_at: "2026-12-02T10:00:00Z".into(),
        };
        let set = |policies: &[PolicyRecord]| {
            policies
                .iter()
                .map(|p| (p.name.clone(), p.clone()))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        catalog
            .copy_policies(&set(&[policy(4, "package a")]))
            .await
            .unwrap();
        catalog
            .copy_policies(&set(&[policy(5, "package b")]))
            .await
            .unwrap();
        assert_eq!(
            catalog.policies().await.unwrap(),
            vec![policy(5, "package b")]
        );
        assert_eq!(catalog.last_policy_version("size").await.unwrap(), 5);
        let mine = catalog.put_policy("size", "package c").await.unwrap();
        assert_eq!(mine.version, 6, "numbers continue from the copies");
        catalog.copy_policies(&set(&[])).await.unwrap();
        assert!(catalog.policies().await.unwrap().is_empty());
    }
}
