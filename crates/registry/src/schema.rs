//! Opening the SQLite database: durability settings and schema migrations, tracked with
//! `PRAGMA user_version` so that a newer Kindling upgrades an older registry in place.

use std::path::Path;

use rusqlite::Connection;

use crate::error::RegistryError;

/// Each entry upgrades the schema by one version; never edit one that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: functions and their immutable versions.
    "CREATE TABLE functions (
        name TEXT PRIMARY KEY NOT NULL,
        active_version INTEGER,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE versions (
        function TEXT NOT NULL REFERENCES functions (name) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        kind TEXT NOT NULL,
        size_bytes INTEGER NOT NULL,
        config TEXT NOT NULL,
        created_at TEXT NOT NULL,
        PRIMARY KEY (function, version)
    );
    CREATE INDEX versions_by_sha256 ON versions (sha256);",
    // 2: who may do what: API tokens (hashes only), namespaces and their quotas, versioned
    // Rego policies, and the audit log of admin actions.
    "CREATE TABLE tokens (
        id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        namespace TEXT,
        scopes TEXT NOT NULL,
        hash TEXT NOT NULL UNIQUE,
        created_at TEXT NOT NULL,
        expires_at TEXT,
        revoked_at TEXT,
        created_by TEXT
    );
    CREATE TABLE namespaces (
        name TEXT PRIMARY KEY NOT NULL,
        quotas TEXT NOT NULL,
        created_at TEXT NOT NULL,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE policies (
        name TEXT NOT NULL,
        version INTEGER NOT NULL,
        rego TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        created_at TEXT NOT NULL,
        active INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        token_id TEXT,
        token_name TEXT,
        namespace TEXT,
        action TEXT NOT NULL,
        status INTEGER NOT NULL,
        result TEXT NOT NULL,
        request_id TEXT NOT NULL,
        source TEXT
    );
    CREATE INDEX audit_by_namespace ON audit (namespace, seq);",
    // 3: cluster mode: the shared registry's revision each function's local copy was taken
    // at (kept after a delete, so that an older record arriving late cannot bring it back).
    "CREATE TABLE replica (
        name TEXT PRIMARY KEY NOT NULL,
        revision INTEGER NOT NULL
    );",
];

/// Opens and checks an existing database (a backup) without creating or migrating it.
pub(crate) fn open_existing(path: &Path) -> Result<Connection, RegistryError> {
    let fail = |error| RegistryError::Open {
        path: path.to_path_buf(),
        error,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(fail)?;
    check(&conn, path)?;
    Ok(conn)
}

/// SQLite's integrity check, and a schema this build can read.
fn check(conn: &Connection, path: &Path) -> Result<(), RegistryError> {
    let fail = |error| RegistryError::Open {
        path: path.to_path_buf(),
        error,
    };
    let check: String = conn
        .query_row("PRAGMA quick_check", [], |row| row.get(0))
        .map_err(fail)?;
    if check != "ok" {
        return Err(RegistryError::Damaged {
            path: path.to_path_buf(),
            detail: check,
        });
    }
    let current = conn
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(fail)?
        .max(0) as usize;
    if current > MIGRATIONS.len() {
        return Err(RegistryError::SchemaTooNew {
            path: path.to_path_buf(),
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    Ok(())
}

pub(crate) fn open(path: &Path) -> Result<Connection, RegistryError> {
    let fail = |error: rusqlite::Error| match error.sqlite_error_code() {
        Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt) => {
            RegistryError::Damaged {
                path: path.to_path_buf(),
                detail: error.to_string(),
            }
        }
        _ => RegistryError::Open {
            path: path.to_path_buf(),
            error,
        },
    };
    let mut conn = Connection::open(path).map_err(fail)?;
    // WAL keeps readers off writers' backs; FULL sync makes a committed deploy survive a
    // power cut, not just a crash of the process.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA busy_timeout = 5000;",
    )
    .map_err(fail)?;
    check(&conn, path)?;
    let current = conn
        .query_row("PRAGMA user_version", [], |row| row.get::<_, i64>(0))
        .map_err(fail)?
        .max(0) as usize;
    migrate(&mut conn, current).map_err(fail)?;
    Ok(conn)
}

fn migrate(conn: &mut Connection, current: usize) -> rusqlite::Result<()> {
    for (index, migration) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(migration)?;
        tx.pragma_update(None, "user_version", (index + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
