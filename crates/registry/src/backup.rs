//! Backups of the embedded catalog: a consistent copy of `registry.db` (SQLite's `VACUUM
//! INTO`, safe while a node is writing) and of every module file it references, each checked
//! against its hash. A restore checks the backup the same way before it replaces anything,
//! and refuses while a node runs on the data directory.
//!
//! Compiled artifacts are not part of a backup: they are derived from the modules, keyed by
//! module hash, and recompiled on demand.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::error::RegistryError;
use crate::sqlite::{lock_data_dir, referenced, sha256_hex, write_atomically};

/// What a backup or restore copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// Functions in the copied registry.
    pub functions: usize,
    /// Module files copied.
    pub modules: usize,
    /// Bytes copied, database included.
    pub bytes: u64,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |error| RegistryError::Io {
        path: path.to_path_buf(),
        error,
    }
}

/// Writes a backup of the catalog under `data_dir` into `dest`, which must not exist yet.
pub fn backup(data_dir: &Path, dest: &Path) -> Result<BackupReport, RegistryError> {
    let db = data_dir.join("registry.db");
    if !db.exists() {
        return Err(RegistryError::Backup {
            path: data_dir.to_path_buf(),
            problem: "there is no registry.db here: is this a Kindling data directory?".into(),
        });
    }
    if dest.exists() {
        return Err(RegistryError::Backup {
            path: dest.to_path_buf(),
            problem: "it exists already; name a new directory".into(),
        });
    }
    let modules_dest = dest.join("modules");
    std::fs::create_dir_all(&modules_dest).map_err(io(&modules_dest))?;
    let source =
        Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(|error| {
            RegistryError::Open {
                path: db.clone(),
                error,
            }
        })?;
    source.busy_timeout(std::time::Duration::from_secs(10))?;
    let snapshot = dest.join("registry.db");
    source.execute(
        "VACUUM INTO ?1",
        [snapshot.to_str().ok_or_else(|| RegistryError::Backup {
            path: dest.to_path_buf(),
            problem: "the path is not UTF-8".into(),
        })?],
    )?;
    drop(source);
    copy_modules(
        &snapshot,
        &data_dir.join("modules"),
        Some(&modules_dest),
        data_dir,
    )
}

/// Checks the backup in `src` as [`restore`] does, without writing anything.
pub fn verify(src: &Path) -> Result<BackupReport, RegistryError> {
    let snapshot = src.join("registry.db");
    if !snapshot.exists() {
        return Err(no_registry(src));
    }
    drop(crate::schema::open_existing(&snapshot)?);
    copy_modules(&snapshot, &src.join("modules"), None, src)
}

fn no_registry(src: &Path) -> RegistryError {
    RegistryError::Backup {
        path: src.to_path_buf(),
        problem: "it has no registry.db: name a directory `kindling backup` wrote".into(),
    }
}

/// A data directory held for a restore: while it lives, no node starts on the directory (and
/// none may be running on it when it is taken).
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
    dir: PathBuf,
}

impl DataDirLock {
    /// Locks `data_dir` (creating it), or says that a node runs on it.
    pub fn acquire(data_dir: &Path) -> Result<Self, RegistryError> {
        std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
        Ok(Self {
            _file: lock_data_dir(data_dir)?,
            dir: data_dir.to_path_buf(),
        })
    }

    /// The directory it holds.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Replaces the catalog in the locked data directory with the backup in `src`, after checking
/// the backup whole: the database opens and passes SQLite's check, and every module it names
/// is there with its hash.
pub fn restore(src: &Path, lock: &DataDirLock) -> Result<BackupReport, RegistryError> {
    let data_dir = lock.dir();
    let snapshot = src.join("registry.db");
    if !snapshot.exists() {
        return Err(no_registry(src));
    }
    let modules = data_dir.join("modules");
    std::fs::create_dir_all(&modules).map_err(io(&modules))?;
    // The database must open, pass SQLite's check and be a schema this build reads.
    drop(crate::schema::open_existing(&snapshot)?);
    let report = copy_modules(&snapshot, &src.join("modules"), Some(&modules), src)?;
    let db = data_dir.join("registry.db");
    let bytes = std::fs::read(&snapshot).map_err(io(&snapshot))?;
    for stale in ["registry.db-wal", "registry.db-shm"] {
        let path = data_dir.join(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(RegistryError::Io { path, error }),
        }
    }
    write_atomically(&db, &bytes)?;
    Ok(report)
}

/// Copies every module `snapshot` references from `from` to `to` (or only reads it, without
/// `to`), checking each one's hash.
fn copy_modules(
    snapshot: &Path,
    from: &Path,
    to: Option<&Path>,
    origin: &Path,
) -> Result<BackupReport, RegistryError> {
    let conn = Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(
        |error| RegistryError::Open {
            path: snapshot.to_path_buf(),
            error,
        },
    )?;
    let hashes = referenced(&conn)?;
    let functions: i64 = conn.query_row("SELECT COUNT(*) FROM functions", [], |row| row.get(0))?;
    drop(conn);
    let mut bytes = std::fs::metadata(snapshot).map_or(0, |m| m.len());
    let mut damaged = Vec::new();
    for sha256 in &hashes {
        let file = format!("{sha256}.wasm");
        let source: PathBuf = from.join(&file);
        let module = match std::fs::read(&source) {
            Ok(module) if sha256_hex(&module) == *sha256 => module,
            Ok(_) => {
                damaged.push(format!("{file} does not match its hash"));
                continue;
            }
            Err(err) => {
                damaged.push(format!("{file}: {err}"));
                continue;
            }
        };
        bytes += module.len() as u64;
        if let Some(to) = to {
            let target = to.join(&file);
            if !target.exists() {
                write_atomically(&target, &module)?;
            }
        }
    }
    if !damaged.is_empty() {
        return Err(RegistryError::Backup {
            path: origin.to_path_buf(),
            problem: format!(
                "{} of {} modules are missing or damaged ({}); nothing was replaced",
                damaged.len(),
                hashes.len(),
                damaged.join("; ")
            ),
        });
    }
    Ok(BackupReport {
        functions: functions.max(0) as usize,
        modules: hashes.len(),
        bytes,
    })
}
