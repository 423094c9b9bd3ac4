//! The registry proper: SQLite for functions and versions, a directory of content-addressed
//! module files. All work runs on Tokio's blocking pool, never on the async runtime.
//!
//! Crash safety: module files are written to a temporary name, synced and renamed, before the
//! single transaction that records a version and makes it active. A process killed at any
//! point leaves either the old active version or the new one, never a half-written state; a
//! module file whose transaction never committed is unreferenced and removed at next open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::error::RegistryError;
use crate::model::{FunctionConfig, FunctionRecord, VersionRecord, validate_name};
use crate::schema;

/// The hex sha256 of a module: its address in the registry.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A handle to the registry; clones share one connection.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Mutex<Connection>,
    modules_dir: PathBuf,
}

/// A version about to be recorded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The module's sha256 (hex), as returned by [`Registry::store_module`].
    pub sha256: String,
    /// The detected function kind.
    pub kind: String,
    /// Size of the module in bytes.
    pub size_bytes: u64,
    /// The configuration it runs with.
    pub config: FunctionConfig,
}

impl Registry {
    /// Opens (creating if needed) the registry under `data_dir`: `registry.db` and `modules/`.
    pub async fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        let data_dir = data_dir.to_path_buf();
        blocking(move || {
            let modules_dir = data_dir.join("modules");
            std::fs::create_dir_all(&modules_dir).map_err(|source| RegistryError::Io {
                path: modules_dir.clone(),
                source,
            })?;
            let db_path = data_dir.join("registry.db");
            let conn = schema::open(&db_path)?;
            let registry = Inner {
                conn: Mutex::new(conn),
                modules_dir,
            };
            registry.collect_garbage()?;
            Ok(Self {
                inner: Arc::new(registry),
            })
        })
        .await
    }

    /// Where the module with this hash is stored.
    pub fn module_path(&self, sha256: &str) -> PathBuf {
        self.inner.module_path(sha256)
    }

    /// Hashes the module and stores it (once per distinct content); returns its sha256.
    pub async fn store_module(&self, bytes: Bytes) -> Result<String, RegistryError> {
        let inner = self.inner.clone();
        blocking(move || {
            let sha256 = sha256_hex(&bytes);
            let path = inner.module_path(&sha256);
            if !path.exists() {
                write_atomically(&path, &bytes)?;
            }
            Ok(sha256)
        })
        .await
    }

    /// Records a new version and makes it active, in one transaction. Returns the version.
    pub async fn commit_version(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<VersionRecord, RegistryError> {
        validate_name(name)?;
        new.config.validate()?;
        let name = name.to_string();
        self.with_conn(move |conn| {
            let config = serde_json::to_string(&new.config)
                .map_err(|err| RegistryError::Corrupt(err.to_string()))?;
            let now = now();
            let tx = conn.transaction()?;
            tx.execute(
                "INSERT INTO functions (name, active_version, created_at, updated_at)
                 VALUES (?1, NULL, ?2, ?2) ON CONFLICT (name) DO NOTHING",
                params![name, now],
            )?;
            let version: u32 = tx.query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM versions WHERE function = ?1",
                params![name],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO versions (function, version, sha256, kind, size_bytes, config, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![name, version, new.sha256, new.kind, new.size_bytes as i64, config, now],
            )?;
            tx.execute(
                "UPDATE functions SET active_version = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, version, now],
            )?;
            tx.commit()?;
            Ok(VersionRecord {
                function: name,
                version,
                sha256: new.sha256,
                kind: new.kind,
                size_bytes: new.size_bytes,
                config: new.config,
                created_at: now,
            })
        })
        .await
    }

    /// Makes an existing version active (a rollback or roll-forward).
    pub async fn activate(&self, name: &str, version: u32) -> Result<VersionRecord, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let tx = conn.transaction()?;
            let record = version_row(&tx, &name, version)?.ok_or_else(|| {
                if function_exists(&tx, &name).unwrap_or(false) {
                    RegistryError::VersionNotFound {
                        name: name.clone(),
                        version,
                    }
                } else {
                    RegistryError::FunctionNotFound(name.clone())
                }
            })?;
            tx.execute(
                "UPDATE functions SET active_version = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, version, now()],
            )?;
            tx.commit()?;
            Ok(record)
        })
        .await
    }

    /// The version a plain `rollback` goes to: the highest version below the active one.
    pub async fn previous_version(&self, name: &str) -> Result<u32, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let active: u32 = conn
                .query_row(
                    "SELECT active_version FROM functions WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| RegistryError::FunctionNotFound(name.clone()))?;
            conn.query_row(
                "SELECT MAX(version) FROM versions WHERE function = ?1 AND version < ?2",
                params![name, active],
                |row| row.get::<_, Option<u32>>(0),
            )?
            .ok_or(RegistryError::NothingToRollBack(name))
        })
        .await
    }

    /// Deletes a function and all its versions. Module files no version uses any more are
    /// removed; their hashes are returned so that derived files can go too.
    pub async fn delete_function(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let name = name.to_string();
        let inner = self.inner.clone();
        blocking(move || {
            let unreferenced = {
                let mut conn = inner.lock()?;
                let tx = conn.transaction()?;
                if !function_exists(&tx, &name)? {
                    return Err(RegistryError::FunctionNotFound(name));
                }
                let hashes = {
                    let mut stmt =
                        tx.prepare("SELECT DISTINCT sha256 FROM versions WHERE function = ?1")?;
                    stmt.query_map(params![name], |row| row.get::<_, String>(0))?
                        .collect::<Result<Vec<_>, _>>()?
                };
                tx.execute("DELETE FROM versions WHERE function = ?1", params![name])?;
                tx.execute("DELETE FROM functions WHERE name = ?1", params![name])?;
                let mut unreferenced = Vec::new();
                for sha256 in hashes {
                    let used = tx
                        .query_row(
                            "SELECT 1 FROM versions WHERE sha256 = ?1 LIMIT 1",
                            params![sha256],
                            |_| Ok(()),
                        )
                        .optional()?
                        .is_some();
                    if !used {
                        unreferenced.push(sha256);
                    }
                }
                tx.commit()?;
                unreferenced
            };
            inner.collect_garbage()?;
            Ok(unreferenced)
        })
        .await
    }

    /// The hashes of all modules some version uses.
    pub async fn referenced_modules(&self) -> Result<Vec<String>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM versions")?;
            let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
        .await
    }

    /// One function, if it exists.
    pub async fn function(&self, name: &str) -> Result<Option<FunctionRecord>, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let mut functions = query_functions(conn, Some(&name))?;
            Ok(functions.pop())
        })
        .await
    }

    /// All functions, by name.
    pub async fn functions(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
        self.with_conn(|conn| query_functions(conn, None)).await
    }

    /// A function's versions, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            if !function_exists(conn, &name)? {
                return Err(RegistryError::FunctionNotFound(name));
            }
            let mut stmt = conn.prepare(
                "SELECT function, version, sha256, kind, size_bytes, config, created_at
                 FROM versions WHERE function = ?1 ORDER BY version DESC",
            )?;
            let rows = stmt.query_map(params![name], version_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// The active version of every function: what a starting node loads.
    pub async fn active_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT v.function, v.version, v.sha256, v.kind, v.size_bytes, v.config, v.created_at
                 FROM functions f JOIN versions v
                   ON v.function = f.name AND v.version = f.active_version
                 ORDER BY f.name",
            )?;
            let rows = stmt.query_map([], version_from_row)?;
            rows.map(|row| row?).collect()
        })
        .await
    }

    /// The active version of one function.
    pub async fn active_version(&self, name: &str) -> Result<VersionRecord, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let active: u32 = conn
                .query_row(
                    "SELECT active_version FROM functions WHERE name = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| RegistryError::FunctionNotFound(name.clone()))?;
            version_row(conn, &name, active)?.ok_or_else(|| {
                RegistryError::Corrupt(format!("{name:?} has no active version row"))
            })
        })
        .await
    }

    async fn with_conn<T, F>(&self, work: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, RegistryError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || work(&mut *inner.lock()?)).await
    }
}

impl Inner {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, RegistryError> {
        self.conn
            .lock()
            .map_err(|_| RegistryError::Worker("a registry operation panicked earlier".into()))
    }

    fn module_path(&self, sha256: &str) -> PathBuf {
        self.modules_dir.join(format!("{sha256}.wasm"))
    }

    /// Removes module files that no version references (left by deletes, or by deploys
    /// killed before their transaction committed) and stray temporary files.
    fn collect_garbage(&self) -> Result<(), RegistryError> {
        let referenced: std::collections::HashSet<String> = {
            let conn = self.lock()?;
            let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM versions")?;
            stmt.query_map([], |row| row.get::<_, String>(0))?
                .collect::<Result<_, _>>()?
        };
        let io = |source| RegistryError::Io {
            path: self.modules_dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&self.modules_dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let keep = file
                .strip_suffix(".wasm")
                .is_some_and(|sha| referenced.contains(sha));
            if !keep {
                tracing::debug!(file, "removing unreferenced module file");
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

fn query_functions(
    conn: &Connection,
    name: Option<&str>,
) -> Result<Vec<FunctionRecord>, RegistryError> {
    let mut stmt = conn.prepare(
        "SELECT f.name, f.active_version, f.created_at, f.updated_at,
                (SELECT COUNT(*) FROM versions v WHERE v.function = f.name)
         FROM functions f
         WHERE f.active_version IS NOT NULL AND (?1 IS NULL OR f.name = ?1)
         ORDER BY f.name",
    )?;
    let rows = stmt.query_map(params![name], |row| {
        Ok(FunctionRecord {
            name: row.get(0)?,
            active_version: row.get(1)?,
            created_at: row.get(2)?,
            updated_at: row.get(3)?,
            version_count: row.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn function_exists(conn: &Connection, name: &str) -> Result<bool, RegistryError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM functions WHERE name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

fn version_row(
    conn: &Connection,
    name: &str,
    version: u32,
) -> Result<Option<VersionRecord>, RegistryError> {
    conn.query_row(
        "SELECT function, version, sha256, kind, size_bytes, config, created_at
         FROM versions WHERE function = ?1 AND version = ?2",
        params![name, version],
        version_from_row,
    )
    .optional()?
    .transpose()
}

fn version_from_row(
    row: &rusqlite::Row<'_>,
) -> rusqlite::Result<Result<VersionRecord, RegistryError>> {
    let config: String = row.get(5)?;
    let record = VersionRecord {
        function: row.get(0)?,
        version: row.get(1)?,
        sha256: row.get(2)?,
        kind: row.get(3)?,
        size_bytes: row.get::<_, i64>(4)?.max(0) as u64,
        config: FunctionConfig::default(),
        created_at: row.get(6)?,
    };
    Ok(match serde_json::from_str(&config) {
        Ok(config) => Ok(VersionRecord { config, ..record }),
        Err(err) => Err(RegistryError::Corrupt(format!(
            "config of {:?} version {}: {err}",
            record.function, record.version
        ))),
    })
}

fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |source| RegistryError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io)?;
    tmp.write_all(bytes).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    tmp.persist(path).map_err(|err| io(err.error))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

async fn blocking<T, F>(work: F) -> Result<T, RegistryError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, RegistryError> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| RegistryError::Worker(err.to_string()))?
}
