//! The embedded catalog: SQLite for functions and versions, a directory of content-addressed
//! module files. All work runs on Tokio's blocking pool, never on the async runtime.
//!
//! Crash safety: module files are written to a temporary name, synced and renamed, before the
//! single transaction that records a version and makes it active. A process killed at any
//! point leaves either the old active version or the new one, never a half-written state. Every
//! control-plane change is checkpointed into `registry.db` at once, so the database file alone
//! is a complete copy and a lost or damaged write-ahead log loses nothing.
//!
//! Module files are never deleted on a guess: a delete removes only the files of the modules it
//! unreferenced (and nobody holds), and the start-up sweep moves files no version references into
//! `quarantine/` instead of deleting them, so a registry restored from an older backup can
//! still find them.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::catalog::{Catalog, ModuleHold, ModuleHolds};
use crate::error::RegistryError;
use crate::model::{FunctionConfig, FunctionRecord, NewVersion, VersionRecord, validate_name};
use crate::schema;

/// The hex sha256 of a module: its address in the registry.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SQLite catalog; clones share one connection.
#[derive(Clone)]
pub struct SqliteCatalog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Held for the life of the catalog: one node per data directory.
    _lock: std::fs::File,
    conn: Mutex<Connection>,
    db_path: PathBuf,
    modules_dir: PathBuf,
    quarantine_dir: PathBuf,
    holds: ModuleHolds,
}

impl SqliteCatalog {
    /// Opens (creating if needed) the catalog under `data_dir`: `registry.db` and `modules/`.
    /// A damaged database is refused with what to do; module files no version references are
    /// moved to `quarantine/`, never deleted.
    pub async fn open(data_dir: &Path) -> Result<Self, RegistryError> {
        let data_dir = data_dir.to_path_buf();
        blocking(move || {
            let modules_dir = data_dir.join("modules");
            std::fs::create_dir_all(&modules_dir).map_err(|error| RegistryError::Io {
                path: modules_dir.clone(),
                error,
            })?;
            let lock = lock_data_dir(&data_dir)?;
            let db_path = data_dir.join("registry.db");
            let conn = schema::open(&db_path)?;
            let inner = Inner {
                _lock: lock,
                conn: Mutex::new(conn),
                db_path,
                modules_dir,
                quarantine_dir: data_dir.join("quarantine"),
                holds: ModuleHolds::default(),
            };
            inner.sweep()?;
            inner.checkpoint()?;
            Ok(Self {
                inner: Arc::new(inner),
            })
        })
        .await
    }

    pub(crate) async fn with_conn<T, F>(&self, work: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, RegistryError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || work(&mut *inner.lock()?)).await
    }

    /// Runs a change and checkpoints it into the database file before returning.
    pub(crate) async fn change<T, F>(&self, work: F) -> Result<T, RegistryError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, RegistryError> + Send + 'static,
    {
        let inner = self.inner.clone();
        blocking(move || {
            let value = work(&mut *inner.lock()?)?;
            inner.checkpoint()?;
            Ok(value)
        })
        .await
    }
}

#[async_trait]
impl Catalog for SqliteCatalog {
    fn hold(&self, sha256: &str) -> ModuleHold {
        self.inner.holds.hold(sha256)
    }

    async fn store_module(&self, bytes: Bytes) -> Result<String, RegistryError> {
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

    fn module_path(&self, sha256: &str) -> PathBuf {
        self.inner.module_path(sha256)
    }

    async fn commit_version(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<VersionRecord, RegistryError> {
        validate_name(name)?;
        new.config.validate()?;
        let name = name.to_string();
        self.change(move |conn| {
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

    async fn activate(&self, name: &str, version: u32) -> Result<VersionRecord, RegistryError> {
        let name = name.to_string();
        self.change(move |conn| {
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

    async fn previous_version(&self, name: &str) -> Result<u32, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let active = active_number(conn, &name)?;
            conn.query_row(
                "SELECT MAX(version) FROM versions WHERE function = ?1 AND version < ?2",
                params![name, active],
                |row| row.get::<_, Option<u32>>(0),
            )?
            .ok_or(RegistryError::NothingToRollBack(name))
        })
        .await
    }

    async fn delete_function(&self, name: &str) -> Result<Vec<String>, RegistryError> {
        let name = name.to_string();
        let inner = self.inner.clone();
        self.change(move |conn| {
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
            let unreferenced = unused(&tx, hashes)?;
            tx.commit()?;
            Ok(inner.collect(unreferenced))
        })
        .await
    }

    async fn prune_versions(&self, name: &str, keep: u32) -> Result<Vec<String>, RegistryError> {
        let name = name.to_string();
        let inner = self.inner.clone();
        let keep = keep.max(1);
        self.change(move |conn| {
            let tx = conn.transaction()?;
            let active = active_number(&tx, &name)?;
            let doomed: Vec<(u32, String)> = {
                let mut stmt = tx.prepare(
                    "SELECT version, sha256 FROM versions WHERE function = ?1 AND version != ?2
                     ORDER BY version DESC LIMIT -1 OFFSET ?3",
                )?;
                stmt.query_map(params![name, active, keep.saturating_sub(1)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<Result<_, _>>()?
            };
            if doomed.is_empty() {
                return Ok(Vec::new());
            }
            for (version, _) in &doomed {
                tx.execute(
                    "DELETE FROM versions WHERE function = ?1 AND version = ?2",
                    params![name, version],
                )?;
            }
            let unreferenced = unused(&tx, doomed.into_iter().map(|(_, sha)| sha).collect())?;
            tx.commit()?;
            Ok(inner.collect(unreferenced))
        })
        .await
    }

    async fn referenced_modules(&self) -> Result<Vec<String>, RegistryError> {
        self.with_conn(|conn| referenced(conn).map(|set| set.into_iter().collect()))
            .await
    }

    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let mut functions = query_functions(conn, Some(&name))?;
            Ok(functions.pop())
        })
        .await
    }

    async fn functions(&self) -> Result<Vec<FunctionRecord>, RegistryError> {
        self.with_conn(|conn| query_functions(conn, None)).await
    }

    async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError> {
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

    async fn active_versions(&self) -> Result<Vec<VersionRecord>, RegistryError> {
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

    async fn active_version(&self, name: &str) -> Result<VersionRecord, RegistryError> {
        let name = name.to_string();
        self.with_conn(move |conn| {
            let active = active_number(conn, &name)?;
            version_row(conn, &name, active)?.ok_or_else(|| {
                RegistryError::Corrupt(format!(
                    "function {name:?} names version {active} as active, but there is no such \
                     version"
                ))
            })
        })
        .await
    }

    async fn disk_bytes(&self) -> u64 {
        let inner = self.inner.clone();
        blocking(move || {
            let mut wal = inner.db_path.as_os_str().to_owned();
            wal.push("-wal");
            Ok([inner.db_path.clone(), PathBuf::from(wal)]
                .iter()
                .filter_map(|path| std::fs::metadata(path).ok())
                .map(|meta| meta.len())
                .sum())
        })
        .await
        .unwrap_or(0)
    }

    async fn checkpoint(&self) -> Result<(), RegistryError> {
        let inner = self.inner.clone();
        blocking(move || inner.checkpoint()).await
    }
}

/// Of these module hashes, those no version uses any more.
pub(crate) fn unused(
    conn: &Connection,
    mut hashes: Vec<String>,
) -> Result<Vec<String>, RegistryError> {
    hashes.sort();
    hashes.dedup();
    let mut unreferenced = Vec::new();
    for sha256 in hashes {
        let used = conn
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
    Ok(unreferenced)
}

impl Inner {
    /// Removes the files of unreferenced modules, except those a deploy between its upload
    /// and its commit holds; returns the hashes whose files are gone.
    pub(crate) fn collect(&self, mut unreferenced: Vec<String>) -> Vec<String> {
        unreferenced.retain(|sha256| {
            self.holds.unless_held(sha256, || {
                let _ = std::fs::remove_file(self.module_path(sha256));
            })
        });
        unreferenced
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Connection>, RegistryError> {
        self.conn
            .lock()
            .map_err(|_| RegistryError::Worker("a registry operation panicked earlier".into()))
    }

    pub(crate) fn module_path(&self, sha256: &str) -> PathBuf {
        self.modules_dir.join(format!("{sha256}.wasm"))
    }

    /// Copies everything the write-ahead log holds into the database file and empties the log.
    fn checkpoint(&self) -> Result<(), RegistryError> {
        let conn = self.lock()?;
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })?;
        if busy != 0 {
            tracing::debug!("registry checkpoint incomplete: a reader held the log");
        }
        Ok(())
    }

    /// At start-up: removes stray temporary files and moves module files no version
    /// references (left by deploys killed before their commit, or by a registry restored from
    /// an older backup) into `quarantine/`.
    fn sweep(&self) -> Result<(), RegistryError> {
        let referenced = referenced(&*self.lock()?)?;
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |error| RegistryError::Io { path, error }
        };
        let mut quarantined = 0;
        for entry in std::fs::read_dir(&self.modules_dir).map_err(io(&self.modules_dir))? {
            let path = entry.map_err(io(&self.modules_dir))?.path();
            let Some(file) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file.starts_with(".tmp-") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let known = file
                .strip_suffix(".wasm")
                .is_some_and(|sha| referenced.contains(sha));
            if !known {
                std::fs::create_dir_all(&self.quarantine_dir).map_err(io(&self.quarantine_dir))?;
                std::fs::rename(&path, self.quarantine_dir.join(file)).map_err(io(&path))?;
                quarantined += 1;
            }
        }
        if quarantined > 0 {
            tracing::warn!(
                quarantined,
                dir = %self.quarantine_dir.display(),
                "module files no version references were moved to quarantine (left by a deploy \
                 that never committed, or the registry is older than its modules); delete them \
                 once you are sure they are not needed"
            );
        }
        Ok(())
    }
}

/// Takes the data directory's lock, so that two nodes (or a restore and a node) never share
/// one registry.
pub(crate) fn lock_data_dir(data_dir: &Path) -> Result<std::fs::File, RegistryError> {
    let path = data_dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| RegistryError::Io {
            path: path.clone(),
            error,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RegistryError::InUse {
            path: data_dir.to_path_buf(),
        }),
        Err(std::fs::TryLockError::Error(error)) => Err(RegistryError::Io { path, error }),
    }
}

pub(crate) fn referenced(
    conn: &Connection,
) -> Result<std::collections::HashSet<String>, RegistryError> {
    let mut stmt = conn.prepare("SELECT DISTINCT sha256 FROM versions")?;
    let rows = stmt.query_map([], |row| row.get::<_, String>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The active version's number; a function row without one is named as corrupt.
fn active_number(conn: &Connection, name: &str) -> Result<u32, RegistryError> {
    conn.query_row(
        "SELECT active_version FROM functions WHERE name = ?1",
        params![name],
        |row| row.get::<_, Option<u32>>(0),
    )
    .optional()?
    .ok_or_else(|| RegistryError::FunctionNotFound(name.to_string()))?
    .ok_or_else(|| RegistryError::Corrupt(format!("function {name:?} has no active version")))
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

pub(crate) fn now() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let io = |error| RegistryError::Io {
        path: path.to_path_buf(),
        error,
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
