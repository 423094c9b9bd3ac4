//! [`AccessStore`] on the embedded SQLite registry: tokens, namespaces, policies and the audit
//! log live in `registry.db` beside the functions, and every change is checkpointed like a
//! deploy, so a crash or a backup never loses a revocation.

use async_trait::async_trait;
use rusqlite::{OptionalExtension, Row, params};

use crate::access::{
    AccessStore, AuditRecord, NamespaceRecord, PolicyRecord, Quotas, StoredToken, TokenRecord,
};
use crate::error::RegistryError;
use crate::sqlite::{SqliteCatalog, now, sha256_hex};

const TOKEN_COLUMNS: &str =
    "id, name, namespace, scopes, created_at, expires_at, revoked_at, created_by, hash";

fn token_from_row(row: &Row<'_>) -> rusqlite::Result<StoredToken> {
    let scopes: String = row.get(3)?;
    Ok(StoredToken {
        record: TokenRecord {
            id: row.get(0)?,
            name: row.get(1)?,
            namespace: row.get(2)?,
            scopes: scopes
                .split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
            created_at: row.get(4)?,
            expires_at: row.get(5)?,
            revoked_at: row.get(6)?,
            created_by: row.get(7)?,
        },
        hash: row.get(8)?,
    })
}

fn namespace_from_row(row: &Row<'_>) -> rusqlite::Result<(String, String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn namespace_record(
    (name, quotas, created_at, updated_at): (String, String, String, String),
) -> Result<NamespaceRecord, RegistryError> {
    let quotas = serde_json::from_str(&quotas)
        .map_err(|err| RegistryError::Corrupt(format!("quotas of namespace {name:?}: {err}")))?;
    Ok(NamespaceRecord {
        name,
        quotas,
        created_at,
        updated_at,
    })
}

fn policy_from_row(row: &Row<'_>) -> rusqlite::Result<PolicyRecord> {
    Ok(PolicyRecord {
        name: row.get(0)?,
        version: row.get(1)?,
        rego: row.get(2)?,
        sha256: row.get(3)?,
        created_at: row.get(4)?,
    })
}

fn audit_from_row(row: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.get::<_, i64>(0)?.max(0) as u64,
        at: row.get(1)?,
        token_id: row.get(2)?,
        token_name: row.get(3)?,
        namespace: row.get(4)?,
        action: row.get(5)?,
        status: row.get(6)?,
        result: row.get(7)?,
        request_id: row.get(8)?,
        source: row.get(9)?,
    })
}

#[async_trait]
impl AccessStore for SqliteCatalog {
    async fn tokens(&self) -> Result<Vec<StoredToken>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], token_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn insert_token(&self, token: StoredToken) -> Result<TokenRecord, RegistryError> {
        self.change(move |conn| {
            let r = &token.record;
            conn.execute(
                "INSERT INTO tokens (id, name, namespace, scopes, hash, created_at, expires_at,
                                     revoked_at, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
                params![
                    r.id,
                    r.name,
                    r.namespace,
                    r.scopes.join(","),
                    token.hash,
                    r.created_at,
                    r.expires_at,
                    r.created_by
                ],
            )?;
            Ok(token.record)
        })
        .await
    }

    async fn revoke_token(&self, id_or_name: &str) -> Result<TokenRecord, RegistryError> {
        let key = id_or_name.to_string();
        self.change(move |conn| {
            let tx = conn.transaction()?;
            let mut matches: Vec<StoredToken> = {
                let mut stmt = tx.prepare(&format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = ?1
                     OR (name = ?1 AND revoked_at IS NULL)"
                ))?;
                stmt.query_map(params![key], token_from_row)?
                    .collect::<Result<_, _>>()?
            };
            // An id wins over a name; a name must be unique among live tokens.
            if let Some(at) = matches.iter().position(|t| t.record.id == key) {
                matches = vec![matches.swap_remove(at)];
            }
            let token = match matches.len() {
                0 => return Err(RegistryError::TokenNotFound(key)),
                1 => matches.remove(0),
                n => {
                    return Err(RegistryError::InvalidConfig(format!(
                        "{n} live tokens are named {key:?}; revoke one by its id \
                         (`kindling token ls` shows them)"
                    )));
                }
            };
            let mut record = token.record;
            if record.revoked_at.is_none() {
                let at = now();
                tx.execute(
                    "UPDATE tokens SET revoked_at = ?2 WHERE id = ?1",
                    params![record.id, at],
                )?;
                record.revoked_at = Some(at);
            }
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    async fn namespaces(&self) -> Result<Vec<NamespaceRecord>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name, quotas, created_at, updated_at FROM namespaces ORDER BY name",
            )?;
            let rows = stmt
                .query_map([], namespace_from_row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(namespace_record).collect()
        })
        .await
    }

    async fn put_namespace(
        &self,
        name: &str,
        quotas: Quotas,
        create: bool,
    ) -> Result<NamespaceRecord, RegistryError> {
        crate::model::validate_label("namespace", name)?;
        let name = name.to_string();
        self.change(move |conn| {
            let json = serde_json::to_string(&quotas)
                .map_err(|err| RegistryError::Corrupt(err.to_string()))?;
            let at = now();
            let tx = conn.transaction()?;
            let exists = tx
                .query_row(
                    "SELECT 1 FROM namespaces WHERE name = ?1",
                    params![name],
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists && create {
                return Err(RegistryError::NamespaceExists(name));
            }
            tx.execute(
                "INSERT INTO namespaces (name, quotas, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (name) DO UPDATE SET quotas = ?2, updated_at = ?3",
                params![name, json, at],
            )?;
            let row = tx.query_row(
                "SELECT name, quotas, created_at, updated_at FROM namespaces WHERE name = ?1",
                params![name],
                namespace_from_row,
            )?;
            tx.commit()?;
            namespace_record(row)
        })
        .await
    }

    async fn policies(&self) -> Result<Vec<PolicyRecord>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT name, version, rego, sha256, created_at FROM policies
                 WHERE active = 1 ORDER BY name",
            )?;
            let rows = stmt.query_map([], policy_from_row)?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    async fn put_policy(&self, name: &str, rego: &str) -> Result<PolicyRecord, RegistryError> {
        crate::model::validate_label("policy name", name)?;
        let (name, rego) = (name.to_string(), rego.to_string());
        self.change(move |conn| {
            let sha256 = sha256_hex(rego.as_bytes());
            let tx = conn.transaction()?;
            let active = tx
                .query_row(
                    "SELECT name, version, rego, sha256, created_at FROM policies
                     WHERE name = ?1 AND active = 1",
                    params![name],
                    policy_from_row,
                )
                .optional()?;
            if let Some(active) = active.filter(|p| p.sha256 == sha256) {
                return Ok(active);
            }
            let version: u32 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM policies WHERE name = ?1",
                params![name],
                |row| row.get(0),
            )?;
            let at = now();
            tx.execute(
                "UPDATE policies SET active = 0 WHERE name = ?1",
                params![name],
            )?;
            tx.execute(
                "INSERT INTO policies (name, version, rego, sha256, created_at, active)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1)",
                params![name, version, rego, sha256, at],
            )?;
            tx.commit()?;
            Ok(PolicyRecord {
                name,
                version,
                rego,
                sha256,
                created_at: at,
            })
        })
        .await
    }

    async fn remove_policy(&self, name: &str) -> Result<(), RegistryError> {
        let name = name.to_string();
        self.change(move |conn| {
            let changed = conn.execute(
                "UPDATE policies SET active = 0 WHERE name = ?1 AND active = 1",
                params![name],
            )?;
            if changed == 0 {
                return Err(RegistryError::PolicyNotFound(name));
            }
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, record: AuditRecord) -> Result<u64, RegistryError> {
        self.change(move |conn| {
            conn.execute(
                "INSERT INTO audit (at, token_id, token_name, namespace, action, status, result,
                                    request_id, source)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    record.at,
                    record.token_id,
                    record.token_name,
                    record.namespace,
                    record.action,
                    record.status,
                    record.result,
                    record.request_id,
                    record.source
                ],
            )?;
            Ok(conn.last_insert_rowid().max(0) as u64)
        })
        .await
    }

    async fn audit(
        &self,
        after: u64,
        limit: usize,
        namespace: Option<&str>,
    ) -> Result<Vec<AuditRecord>, RegistryError> {
        let namespace = namespace.map(str::to_string);
        self.with_conn(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT seq, at, token_id, token_name, namespace, action, status, result,
                        request_id, source
                 FROM audit WHERE seq > ?1 AND (?2 IS NULL OR namespace = ?2)
                 ORDER BY seq LIMIT ?3",
            )?;
            let rows = stmt.query_map(
                params![after as i64, namespace, limit.min(10_000) as i64],
                audit_from_row,
            )?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }
}
