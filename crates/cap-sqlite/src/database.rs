//! One guest database: a SQLite file in WAL mode with full sync, capped in size with
//! `max_page_count`, and the statements guests run on it. Everything here blocks: callers run
//! it on a blocking thread. A statement still running when its caller gives up (the request's
//! deadline passed and its future was dropped) is stopped through [`Interrupt`].
//!
//! A guest's connection is a sandbox of its own: it cannot attach other files (`ATTACH`,
//! `VACUUM INTO`: the attached-database limit is 0), may run only harmless pragmas (an
//! authorizer refuses the rest, so it cannot lift the size cap, turn off syncing or write the
//! schema), runs in SQLite's defensive mode, and no string or blob may exceed the database's
//! result limit. The operator's connection (`kindling sqlite`) has none of these limits.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, OpenFlags};

/// Pragmas a guest may run: reading its own schema, foreign keys, its user version.
const GUEST_PRAGMAS: &[&str] = &[
    "foreign_key_check",
    "foreign_key_list",
    "foreign_keys",
    "index_info",
    "index_list",
    "index_xinfo",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
    "user_version",
];

/// Virtual-machine steps between two checks of whether a statement was abandoned.
const CANCEL_CHECK_STEPS: i32 = 1000;

/// What one database may hold and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest the database file may grow to; past it a write fails with `database-full`.
    pub max_bytes: u64,
    /// Largest result one statement may return to a guest (values and column names).
    pub max_result_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            max_result_bytes: 16 << 20,
        }
    }
}

/// A value as SQLite and both interfaces have them.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A 64-bit integer.
    Integer(i64),
    /// A double.
    Real(f64),
    /// UTF-8 text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
    /// NULL.
    Null,
}

/// What one value costs in a result besides its bytes (the enum and its allocation).
const VALUE_OVERHEAD: u64 = 32;

/// The rows of a statement.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    /// The column names.
    pub columns: Vec<String>,
    /// Each row's values, in column order.
    pub rows: Vec<Vec<Value>>,
}

/// Why a statement failed, in the interfaces' terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SqlError {
    /// The database reached its size cap.
    Full(String),
    /// Anything else: a syntax error, a constraint, I/O; the message says which.
    Io(String),
}

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(why) | Self::Io(why) => f.write_str(why),
        }
    }
}

/// A database file and its limits; connections are opened from it.
#[derive(Debug)]
pub struct Database {
    path: PathBuf,
    limits: Limits,
    /// Statements that may run at once, node-wide: each holds a blocking thread.
    statements: Arc<tokio::sync::Semaphore>,
}

impl Database {
    /// Creates the database if needed (WAL mode is a property of the file) and checks that it
    /// opens. Blocking.
    pub fn open(
        path: &Path,
        limits: Limits,
        statements: Arc<tokio::sync::Semaphore>,
    ) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let database = Self {
            path: path.to_path_buf(),
            limits,
            statements,
        };
        let conn = database.raw(false).map_err(|err| err.to_string())?;
        conn.pragma_update(None, "journal_mode", "wal")
            .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
        Ok(database)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// A turn to run a statement: waits while the node runs as many as it allows.
    pub async fn turn(&self) -> tokio::sync::OwnedSemaphorePermit {
        self.statements
            .clone()
            .acquire_owned()
            .await
            .expect("the statement semaphore is never closed")
    }

    /// A connection with the node's settings; a guest's (`guest`) is sandboxed as the module
    /// comment says.
    fn raw(&self, guest: bool) -> Result<Connection, SqlError> {
        let mut conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| SqlError::Io(format!("cannot open the database: {err}")))?;
        // Writers take turns; a guest waits for another's transaction rather than failing.
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| conn.pragma_update(None, "synchronous", "full"))
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "on"))
            .map_err(|err| SqlError::Io(format!("cannot set up the connection: {err}")))?;
        let page_size: i64 = conn
            .pragma_query_value(None, "page_size", |row| row.get(0))
            .map_err(|err| SqlError::Io(err.to_string()))?;
        let pages = (self.limits.max_bytes / page_size.max(512) as u64).max(1);
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        conn.pragma_update(None, "max_page_count", pages)
            .map_err(|err| SqlError::Io(err.to_string()))?;
        if guest {
            sandbox(&mut conn, self.limits).map_err(|err| {
                SqlError::Io(format!("cannot set up the guest's connection: {err}"))
            })?;
        }
        Ok(conn)
    }

    /// A connection for a guest, sandboxed. Blocking.
    pub fn connect(self: &Arc<Self>) -> Result<Conn, SqlError> {
        self.connection(true)
    }

    /// A connection for the node's operator, without the guest's sandbox. Blocking.
    pub fn connect_operator(self: &Arc<Self>) -> Result<Conn, SqlError> {
        self.connection(false)
    }

    fn connection(self: &Arc<Self>, guest: bool) -> Result<Conn, SqlError> {
        let mut conn = self.raw(guest)?;
        // The flag of the statement running now; set to the caller's own flag under the
        // connection's lock, so a statement abandoned before it started never runs.
        let current = Arc::new(Mutex::new(Arc::new(AtomicBool::new(false))));
        let watched = current.clone();
        conn.progress_handler(
            CANCEL_CHECK_STEPS,
            Some(move || {
                watched
                    .lock()
                    .map_or(true, |flag| flag.load(Ordering::Relaxed))
            }),
        )
        .map_err(|err| SqlError::Io(err.to_string()))?;
        Ok(Conn {
            conn: Arc::new(Mutex::new(conn)),
            current,
            database: self.clone(),
            last_insert_rowid: Arc::default(),
            changes: Arc::default(),
        })
    }

    /// The size of the database file and its write-ahead log, in bytes.
    pub fn bytes(&self) -> u64 {
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        size(&self.path) + size(Path::new(&wal))
    }
}

/// A guest's connection. Clones share it.
#[derive(Clone)]
pub struct Conn {
    conn: Arc<Mutex<Connection>>,
    current: Arc<Mutex<Arc<AtomicBool>>>,
    database: Arc<Database>,
    last_insert_rowid: Arc<AtomicI64>,
    changes: Arc<AtomicU64>,
}

impl Conn {
    /// Runs one statement unless `interrupt` was dropped first; it stops soon after if it is
    /// dropped while the statement runs. Blocking.
    pub fn execute(
        &self,
        statement: &str,
        parameters: Vec<Value>,
        interrupt: &Interrupt,
    ) -> Result<Rows, SqlError> {
        let conn = self.conn.lock().map_err(|_| {
            SqlError::Io("the connection was left unusable by an earlier failure".into())
        })?;
        if interrupt.flag.load(Ordering::Relaxed) {
            return Err(abandoned());
        }
        *self.current.lock().expect("statement flag lock") = interrupt.flag.clone();
        let result = run(&conn, statement, parameters, self.database.limits);
        self.last_insert_rowid
            .store(conn.last_insert_rowid(), Ordering::Relaxed);
        self.changes.store(conn.changes(), Ordering::Relaxed);
        result
    }

    /// Runs one statement to its end, with nothing to abandon it. Blocking.
    pub fn execute_now(&self, statement: &str, parameters: Vec<Value>) -> Result<Rows, SqlError> {
        let interrupt = Interrupt::new();
        let result = self.execute(statement, parameters, &interrupt);
        interrupt.done();
        result
    }

    /// The rowid of the most recent successful INSERT on this connection.
    pub fn last_insert_rowid(&self) -> i64 {
        self.last_insert_rowid.load(Ordering::Relaxed)
    }

    /// Rows changed by the most recent INSERT, UPDATE or DELETE on this connection.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    /// The database it is a connection to.
    pub fn database(&self) -> &Arc<Database> {
        &self.database
    }
}

/// One statement's stop signal: dropped before [`Interrupt::done`] (its request was
/// abandoned), the statement does not start, or stops within a few thousand steps.
#[derive(Default)]
pub struct Interrupt {
    flag: Arc<AtomicBool>,
    finished: bool,
}

impl Interrupt {
    /// A signal for a new statement.
    pub fn new() -> Self {
        Self::default()
    }

    /// A handle to the same signal, for the thread that runs the statement.
    pub fn watcher(&self) -> Interrupt {
        Interrupt {
            flag: self.flag.clone(),
            finished: true,
        }
    }

    /// The statement finished: dropping the signal now does nothing.
    pub fn done(mut self) {
        self.finished = true;
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if !self.finished {
            self.flag.store(true, Ordering::Relaxed);
        }
    }
}

fn abandoned() -> SqlError {
    SqlError::Io("the statement was interrupted: the request's deadline passed".into())
}

/// What a guest's connection may not do: attach files, change how the database is kept, grow
/// strings past the result limit, or write the schema directly.
fn sandbox(conn: &mut Connection, limits: Limits) -> rusqlite::Result<()> {
    conn.pragma_update(None, "trusted_schema", "off")?;
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_DEFENSIVE, true)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    let length = i32::try_from(limits.max_result_bytes.clamp(1, 1_000_000_000)).unwrap_or(i32::MAX);
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, length)?;
    conn.authorizer(Some(|context: AuthContext<'_>| match context.action {
        AuthAction::Pragma { pragma_name, .. }
            if GUEST_PRAGMAS.contains(&pragma_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Allow
        }
        AuthAction::Pragma { .. } | AuthAction::Attach { .. } | AuthAction::Detach { .. } => {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }))
}

fn run(
    conn: &Connection,
    statement: &str,
    parameters: Vec<Value>,
    limits: Limits,
) -> Result<Rows, SqlError> {
    let mut prepared = conn.prepare(statement).map_err(error)?;
    let columns: Vec<String> = prepared.column_names().map(str::to_string).collect();
    let parameters: Vec<Sql> = parameters
        .into_iter()
        .map(|value| match value {
            Value::Integer(i) => Sql::Integer(i),
            Value::Real(f) => Sql::Real(f),
            Value::Text(s) => Sql::Text(s),
            Value::Blob(b) => Sql::Blob(b),
            Value::Null => Sql::Null,
        })
        .collect();
    let mut rows = prepared
        .query(rusqlite::params_from_iter(parameters))
        .map_err(error)?;
    let mut budget = limits.max_result_bytes;
    let mut taken = Vec::new();
    while let Some(row) = rows.next().map_err(error)? {
        let mut values = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            let raw = row.get_ref(i).map_err(error)?;
            // Counted before anything is copied: what a value costs held in a row.
            let size = VALUE_OVERHEAD
                + match raw {
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.len() as u64,
                    _ => 0,
                };
            budget = budget.checked_sub(size).ok_or_else(|| {
                SqlError::Io(format!(
                    "the result is larger than this database's limit of {} bytes per statement: \
                     select fewer rows (LIMIT) or smaller columns",
                    limits.max_result_bytes
                ))
            })?;
            values.push(match raw {
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                ValueRef::Null => Value::Null,
            });
        }
        taken.push(values);
    }
    Ok(Rows {
        columns,
        rows: taken,
    })
}

fn error(err: rusqlite::Error) -> SqlError {
    match err.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DiskFull) => SqlError::Full(
            "the database reached its size limit (max_bytes in the node's runtime config)".into(),
        ),
        Some(rusqlite::ErrorCode::OperationInterrupted) => abandoned(),
        Some(rusqlite::ErrorCode::AuthorizationForStatementDenied) => SqlError::Io(format!(
            "{err}: a function's database may not attach other files or run pragmas other than \
             {}",
            GUEST_PRAGMAS.join(", ")
        )),
        _ => SqlError::Io(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path, limits: Limits) -> Arc<Database> {
        let statements = Arc::new(tokio::sync::Semaphore::new(4));
        Arc::new(Database::open(&dir.join("ns/default.db"), limits, statements).unwrap())
    }

    #[test]
    fn statements_run_with_parameters_and_return_typed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path(), Limits::default()).connect().unwrap();
        conn.execute_now("CREATE TABLE t (n INTEGER, r REAL, s TEXT, b BLOB)", vec![])
            .unwrap();
        conn.execute_now(
            "INSERT INTO t VALUES (?, ?, ?, ?)",
            vec![
                Value::Integer(7),
                Value::Real(1.5),
                Value::Text("x".into()),
                Value::Blob(vec![1, 2]),
            ],
        )
        .unwrap();
        assert_eq!(conn.last_insert_rowid(), 1);
        assert_eq!(conn.changes(), 1);
        let rows = conn
            .execute_now("SELECT n, r, s, b, NULL AS z FROM t", vec![])
            .unwrap();
        assert_eq!(rows.columns, ["n", "r", "s", "b", "z"]);
        assert_eq!(
            rows.rows,
            [vec![
                Value::Integer(7),
                Value::Real(1.5),
                Value::Text("x".into()),
                Value::Blob(vec![1, 2]),
                Value::Null
            ]]
        );
        let err = conn.execute_now("SELEC 1", vec![]).unwrap_err();
        assert!(
            matches!(err, SqlError::Io(ref why) if why.contains("syntax")),
            "{err}"
        );
    }

    #[test]
    fn the_size_cap_is_database_full_and_big_results_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_bytes: 64 << 10,
            max_result_bytes: 5000,
        };
        let conn = database(dir.path(), limits).connect().unwrap();
        conn.execute_now("CREATE TABLE t (b BLOB)", vec![]).unwrap();
        let mut full = None;
        for _ in 0..100 {
            if let Err(err) =
                conn.execute_now("INSERT INTO t VALUES (?)", vec![Value::Blob(vec![0; 4000])])
            {
                full = Some(err);
                break;
            }
        }
        assert!(matches!(full, Some(SqlError::Full(_))), "{full:?}");
        let err = conn.execute_now("SELECT b FROM t", vec![]).unwrap_err();
        assert!(err.to_string().contains("limit of 5000 bytes"), "{err}");
        // No single value may be larger than the result limit either.
        let err = conn
            .execute_now("INSERT INTO t VALUES (?)", vec![Value::Blob(vec![0; 6000])])
            .unwrap_err();
        assert!(err.to_string().contains("too big"), "{err}");
    }

    #[test]
    fn an_abandoned_statement_stops_and_a_queued_one_never_starts() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path(), Limits::default()).connect().unwrap();
        let endless = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                       SELECT count(*) FROM c";
        let first = Interrupt::new();
        let second = Interrupt::new();
        let threads: Vec<_> = [first.watcher(), second.watcher()]
            .into_iter()
            .map(|watcher| {
                let runner = conn.clone();
                std::thread::spawn(move || runner.execute(endless, vec![], &watcher))
            })
            .collect();
        // Whichever runs first and whichever waits for the connection: both are abandoned,
        // and both end.
        drop(first);
        drop(second);
        for thread in threads {
            let err = thread.join().unwrap().unwrap_err();
            assert!(err.to_string().contains("interrupted"), "{err}");
        }
        assert_eq!(
            conn.execute_now("SELECT 1 AS one", vec![]).unwrap().rows,
            [vec![Value::Integer(1)]]
        );
    }

    #[test]
    fn a_guest_cannot_attach_files_or_change_how_the_database_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let db = database(dir.path(), Limits::default());
        let conn = db.connect().unwrap();
        let other = dir.path().join("other.db");
        for statement in [
            format!("ATTACH '{}' AS o", other.display()),
            format!("VACUUM INTO '{}'", other.display()),
            "PRAGMA max_page_count = 4294967294".to_string(),
            "PRAGMA synchronous = off".to_string(),
            "PRAGMA journal_mode = off".to_string(),
            "PRAGMA writable_schema = on".to_string(),
            "SELECT length(randomblob(100000000))".to_string(),
        ] {
            assert!(
                conn.execute_now(&statement, vec![]).is_err(),
                "{statement} ran"
            );
        }
        assert!(!other.exists(), "no file was made");
        conn.execute_now("CREATE TABLE t (a)", vec![]).unwrap();
        let info = conn.execute_now("PRAGMA table_info(t)", vec![]).unwrap();
        assert_eq!(info.rows.len(), 1, "harmless pragmas still run");
        // The operator's connection is not sandboxed.
        db.connect_operator()
            .unwrap()
            .execute_now("VACUUM", vec![])
            .unwrap();
    }
}
