//! One guest database: a SQLite file in WAL mode with full sync, capped in size with
//! `max_page_count`, and the statements guests run on it. Everything here blocks: callers run
//! it on a blocking thread. A statement still running when its caller gives up (the request's
//! deadline passed and its future was dropped) is interrupted through [`Interrupt`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::types::{Value as Sql, ValueRef};
use rusqlite::{Connection, InterruptHandle, OpenFlags};

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

impl Value {
    fn size(&self) -> u64 {
        match self {
            Self::Text(text) => text.len() as u64,
            Self::Blob(bytes) => bytes.len() as u64,
            _ => 8,
        }
    }
}

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
}

impl Database {
    /// Creates the database if needed (WAL mode is a property of the file) and checks that it
    /// opens. Blocking.
    pub fn open(path: &Path, limits: Limits) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
        }
        let database = Self {
            path: path.to_path_buf(),
            limits,
        };
        let conn = database.raw().map_err(|err| err.to_string())?;
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

    fn raw(&self) -> Result<Connection, SqlError> {
        let conn = Connection::open_with_flags(
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
        Ok(conn)
    }

    /// A connection for a guest. Blocking.
    pub fn connect(self: &Arc<Self>) -> Result<Conn, SqlError> {
        let conn = self.raw()?;
        Ok(Conn {
            interrupt: Arc::new(conn.get_interrupt_handle()),
            conn: Arc::new(Mutex::new(conn)),
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
    interrupt: Arc<InterruptHandle>,
    database: Arc<Database>,
    last_insert_rowid: Arc<AtomicI64>,
    changes: Arc<AtomicU64>,
}

impl Conn {
    /// Runs one statement. Blocking; hold an [`Interrupt`] for it while awaiting.
    pub fn execute(&self, statement: &str, parameters: Vec<Value>) -> Result<Rows, SqlError> {
        let conn = self.conn.lock().map_err(|_| {
            SqlError::Io("the connection was left unusable by an earlier failure".into())
        })?;
        let result = run(&conn, statement, parameters, self.database.limits);
        self.last_insert_rowid
            .store(conn.last_insert_rowid(), Ordering::Relaxed);
        self.changes.store(conn.changes(), Ordering::Relaxed);
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

    /// A guard that interrupts the statement running on this connection if it is dropped
    /// before [`Interrupt::done`].
    pub fn interrupt_on_drop(&self) -> Interrupt {
        Interrupt {
            handle: Some(self.interrupt.clone()),
        }
    }
}

/// Interrupts a running statement when dropped early: the request it runs for was abandoned.
pub struct Interrupt {
    handle: Option<Arc<InterruptHandle>>,
}

impl Interrupt {
    /// The statement finished: dropping the guard now does nothing.
    pub fn done(mut self) {
        self.handle = None;
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.interrupt();
        }
    }
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
            let value = match row.get_ref(i).map_err(error)? {
                ValueRef::Integer(i) => Value::Integer(i),
                ValueRef::Real(f) => Value::Real(f),
                ValueRef::Text(t) => Value::Text(String::from_utf8_lossy(t).into_owned()),
                ValueRef::Blob(b) => Value::Blob(b.to_vec()),
                ValueRef::Null => Value::Null,
            };
            budget = budget.checked_sub(value.size()).ok_or_else(|| {
                SqlError::Io(format!(
                    "the result is larger than this database's limit of {} bytes per statement: \
                     select fewer rows (LIMIT) or smaller columns",
                    limits.max_result_bytes
                ))
            })?;
            values.push(value);
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
        Some(rusqlite::ErrorCode::OperationInterrupted) => {
            SqlError::Io("the statement was interrupted: the request's deadline passed".into())
        }
        _ => SqlError::Io(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database(dir: &Path, limits: Limits) -> Arc<Database> {
        Arc::new(Database::open(&dir.join("ns/default.db"), limits).unwrap())
    }

    #[test]
    fn statements_run_with_parameters_and_return_typed_rows() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path(), Limits::default()).connect().unwrap();
        conn.execute("CREATE TABLE t (n INTEGER, r REAL, s TEXT, b BLOB)", vec![])
            .unwrap();
        conn.execute(
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
            .execute("SELECT n, r, s, b, NULL AS z FROM t", vec![])
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
        let err = conn.execute("SELEC 1", vec![]).unwrap_err();
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
            max_result_bytes: 1000,
        };
        let conn = database(dir.path(), limits).connect().unwrap();
        conn.execute("CREATE TABLE t (b BLOB)", vec![]).unwrap();
        let mut full = None;
        for _ in 0..100 {
            if let Err(err) =
                conn.execute("INSERT INTO t VALUES (?)", vec![Value::Blob(vec![0; 4000])])
            {
                full = Some(err);
                break;
            }
        }
        assert!(matches!(full, Some(SqlError::Full(_))), "{full:?}");
        let err = conn.execute("SELECT b FROM t", vec![]).unwrap_err();
        assert!(err.to_string().contains("limit of 1000 bytes"), "{err}");
    }

    #[test]
    fn an_abandoned_statement_is_interrupted() {
        let dir = tempfile::tempdir().unwrap();
        let conn = database(dir.path(), Limits::default()).connect().unwrap();
        let runner = conn.clone();
        let thread = std::thread::spawn(move || {
            runner.execute(
                "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) \
                 SELECT count(*) FROM c",
                vec![],
            )
        });
        // An interrupt before the statement starts does nothing, so keep abandoning it until
        // the endless statement ends.
        while !thread.is_finished() {
            drop(conn.interrupt_on_drop());
            std::thread::sleep(Duration::from_millis(5));
        }
        let err = thread.join().unwrap().unwrap_err();
        assert!(err.to_string().contains("interrupted"), "{err}");
    }
}
