//! The embedded backend: one SQLite database per namespace and label under the node's data
//! directory (`kv/<namespace>/<label>.db`), in WAL mode with full sync, so that a write a
//! guest saw succeed survives `kill -9`. Every operation runs on Tokio's blocking pool, never on
//! an async thread; one connection per store serializes writes, which makes increments and
//! swaps atomic.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::backend::{Backend, KeyPage, KvError, Limits, Usage, parse_counter};

/// A store in an SQLite file.
#[derive(Debug, Clone)]
pub(crate) struct SqliteStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    limits: Limits,
}

pub(crate) fn backend(err: rusqlite::Error) -> KvError {
    KvError::Backend(err.to_string())
}

impl SqliteStore {
    /// Opens (creating) the store at `path`. Blocking.
    pub(crate) fn open(path: &Path, limits: Limits) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        }
        let fail = |err: rusqlite::Error| format!("key-value database {}: {err}", path.display());
        let conn = Connection::open(path).map_err(fail)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS kv (
                 key TEXT PRIMARY KEY NOT NULL,
                 value BLOB NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(fail)?;
        track_usage(&conn).map_err(fail)?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                limits,
            }),
        })
    }

    /// Runs `work` on the connection, on the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &Limits) -> Result<T, KvError> + Send + 'static,
    {
        on_blocking_pool(
            &self.inner,
            |inner| &inner.conn,
            |conn, inner| work(conn, &inner.limits),
        )
        .await
    }
}

/// Runs `work` on the blocking pool (SQLite never runs on an async thread) with the database
/// `db` picks out of `shared` locked, and `shared` itself.
pub(crate) async fn on_blocking_pool<S, D, T, F>(
    shared: &Arc<S>,
    db: fn(&S) -> &Mutex<D>,
    work: F,
) -> Result<T, KvError>
where
    S: Send + Sync + 'static,
    D: 'static,
    T: Send + 'static,
    F: FnOnce(&mut D, &S) -> Result<T, KvError> + Send + 'static,
{
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = db(&shared)
            .lock()
            .map_err(|_| KvError::Backend("an earlier operation panicked".into()))?;
        work(&mut guard, &shared)
    })
    .await
    .map_err(|err| KvError::Backend(format!("the store's worker failed: {err}")))?
}

/// Keeps the store's totals (keys, and bytes of keys and values) in `kv_usage`, maintained by
/// triggers in the same transaction as every change to `kv`, so that checking a write against
/// the store's limits reads one row instead of summing the whole store. A database from before
/// the triggers is counted once, here.
pub(crate) fn track_usage(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let tracked = (|| {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv_usage (
                 id INTEGER PRIMARY KEY CHECK (id = 0),
                 keys INTEGER NOT NULL,
                 bytes INTEGER NOT NULL
             );
             CREATE TRIGGER IF NOT EXISTS kv_usage_insert AFTER INSERT ON kv BEGIN
                 UPDATE kv_usage SET keys = keys + 1,
                     bytes = bytes + length(NEW.key) + length(NEW.value) WHERE id = 0;
             END;
             CREATE TRIGGER IF NOT EXISTS kv_usage_update AFTER UPDATE ON kv BEGIN
                 UPDATE kv_usage SET bytes = bytes - length(OLD.key) - length(OLD.value)
                     + length(NEW.key) + length(NEW.value) WHERE id = 0;
             END;
             CREATE TRIGGER IF NOT EXISTS kv_usage_delete AFTER DELETE ON kv BEGIN
                 UPDATE kv_usage SET keys = keys - 1,
                     bytes = bytes - length(OLD.key) - length(OLD.value) WHERE id = 0;
             END;",
        )?;
        // Counted once, the first time: afterwards the triggers keep it.
        let counted: bool =
            conn.query_row("SELECT EXISTS (SELECT 1 FROM kv_usage)", [], |row| {
                row.get(0)
            })?;
        if !counted {
            conn.execute(
                "INSERT INTO kv_usage (id, keys, bytes)
                 SELECT 0, COUNT(*), COALESCE(SUM(length(key) + length(value)), 0) FROM kv",
                [],
            )?;
        }
        Ok(())
    })();
    match tracked {
        Ok(()) => conn.execute_batch("COMMIT"),
        Err(err) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(err)
        }
    }
}

/// Sets `key` within the store's totals, in the caller's transaction.
fn put(
    tx: &rusqlite::Transaction<'_>,
    limits: &Limits,
    key: &str,
    value: &[u8],
) -> Result<(), KvError> {
    check_put(tx, limits, key, value.len())?;
    tx.execute(
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )
    .map_err(backend)?;
    Ok(())
}

/// Whether setting `key` to a value of `len` bytes keeps the store within its totals.
pub(crate) fn check_put(
    conn: &Connection,
    limits: &Limits,
    key: &str,
    len: usize,
) -> Result<(), KvError> {
    let old: Option<i64> = conn
        .query_row(
            "SELECT length(value) FROM kv WHERE key = ?1",
            params![key],
            |row| row.get(0),
        )
        .optional()
        .map_err(backend)?;
    let usage = totals(conn)?;
    let (keys, bytes) = match old {
        Some(old) => (
            usage.keys,
            (usage.bytes.saturating_sub(old.max(0) as u64)).saturating_add(len as u64),
        ),
        None => (usage.keys + 1, usage.bytes + (key.len() + len) as u64),
    };
    limits.check_totals(keys, bytes)
}

/// The value of `key`.
pub(crate) fn read(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, KvError> {
    conn.query_row("SELECT value FROM kv WHERE key = ?1", params![key], |row| {
        row.get(0)
    })
    .optional()
    .map_err(backend)
}

/// Up to `limit` keys after `after`, in key order.
pub(crate) fn list(
    conn: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<KeyPage, KvError> {
    let mut stmt = conn
        .prepare_cached("SELECT key FROM kv WHERE ?1 IS NULL OR key > ?1 ORDER BY key LIMIT ?2")
        .map_err(backend)?;
    let keys: Vec<String> = stmt
        .query_map(params![after, limit as i64 + 1], |row| row.get(0))
        .map_err(backend)?
        .collect::<Result<_, _>>()
        .map_err(backend)?;
    Ok(page(keys, limit))
}

pub(crate) fn totals(conn: &Connection) -> Result<Usage, KvError> {
    conn.query_row("SELECT keys, bytes FROM kv_usage WHERE id = 0", [], |row| {
        Ok(Usage {
            keys: row.get::<_, i64>(0)?.max(0) as u64,
            bytes: row.get::<_, i64>(1)?.max(0) as u64,
        })
    })
    .map_err(backend)
}

#[async_trait]
impl Backend for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_string();
        self.with(move |conn, _| read(conn, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.limits.check(key, Some(value))?;
        let (key, value) = (key.to_string(), value.to_vec());
        self.with(move |conn, limits| {
            let tx = conn.transaction().map_err(backend)?;
            put(&tx, limits, &key, &value)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        let key = key.to_string();
        self.with(move |conn, _| {
            conn.execute("DELETE FROM kv WHERE key = ?1", params![key])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        let key = key.to_string();
        self.with(move |conn, _| {
            conn.query_row("SELECT 1 FROM kv WHERE key = ?1", params![key], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
                .map_err(backend)
        })
        .await
    }

    async fn keys(&self, after: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        let after = after.map(str::to_string);
        self.with(move |conn, _| list(conn, after.as_deref(), limit))
            .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.limits.check(key, None)?;
        let key = key.to_string();
        self.with(move |conn, limits| {
            let tx = conn.transaction().map_err(backend)?;
            let current = read(&tx, &key)?;
            let current = current.map_or(Ok(0), |v| parse_counter(&key, &v))?;
            let next = current.checked_add(delta).ok_or_else(|| {
                KvError::Value(format!("incrementing {key:?} by {delta} overflows"))
            })?;
            put(&tx, limits, &key, next.to_string().as_bytes())?;
            tx.commit().map_err(backend)?;
            Ok(next)
        })
        .await
    }

    async fn swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        value: &[u8],
    ) -> Result<bool, KvError> {
        self.inner.limits.check(key, Some(value))?;
        let (key, expected, value) = (
            key.to_string(),
            expected.map(<[u8]>::to_vec),
            value.to_vec(),
        );
        self.with(move |conn, limits| {
            let tx = conn.transaction().map_err(backend)?;
            let current = read(&tx, &key)?;
            if current != expected {
                return Ok(false);
            }
            put(&tx, limits, &key, &value)?;
            tx.commit().map_err(backend)?;
            Ok(true)
        })
        .await
    }

    async fn usage(&self) -> Result<Usage, KvError> {
        self.with(|conn, _| totals(conn)).await
    }
}

/// The first `limit` of `keys` (which may hold one more), and where the next page starts.
pub(crate) fn page(mut keys: Vec<String>, limit: usize) -> KeyPage {
    let more = keys.len() > limit;
    keys.truncate(limit);
    let next = if more { keys.last().cloned() } else { None };
    KeyPage { keys, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_store_keeps_values_counters_and_limits() {
        let dir = tempfile::tempdir().unwrap();
        let limits = Limits {
            max_keys: 3,
            ..Limits::default()
        };
        let store = SqliteStore::open(&dir.path().join("a.db"), limits).unwrap();
        assert_eq!(store.get("k").await.unwrap(), None);
        store.set("k", b"v").await.unwrap();
        assert_eq!(store.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        assert!(store.exists("k").await.unwrap());
        assert_eq!(store.increment("n", 5).await.unwrap(), 5);
        assert_eq!(store.increment("n", -2).await.unwrap(), 3);
        assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"3"[..]));
        assert!(store.increment("k", 1).await.is_err(), "not a number");
        assert!(!store.swap("k", Some(b"other"), b"w").await.unwrap());
        assert!(store.swap("k", Some(b"v"), b"w").await.unwrap());
        assert!(store.swap("new", None, b"x").await.unwrap());
        let err = store.set("fourth", b"x").await.unwrap_err();
        assert!(matches!(err, KvError::Limit(_)), "{err}");
        let page = store.keys(None, 2).await.unwrap();
        assert_eq!(page.keys, ["k", "n"]);
        let rest = store.keys(page.next.as_deref(), 2).await.unwrap();
        assert_eq!(
            (rest.keys.as_slice(), rest.next),
            (&["new".to_string()][..], None)
        );
        store.delete("k").await.unwrap();
        store.delete("k").await.unwrap();
        assert_eq!(store.usage().await.unwrap().keys, 2);
    }

    /// The totals as a full count computes them.
    fn counted(path: &Path) -> Usage {
        let conn = Connection::open(path).unwrap();
        conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(length(key) + length(value)), 0) FROM kv",
            [],
            |row| {
                Ok(Usage {
                    keys: row.get::<_, i64>(0)? as u64,
                    bytes: row.get::<_, i64>(1)? as u64,
                })
            },
        )
        .unwrap()
    }

    #[tokio::test]
    async fn kept_totals_match_a_full_count_after_every_kind_of_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        // A store from before the totals were kept.
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE kv (key TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL) WITHOUT ROWID;
                 INSERT INTO kv VALUES ('a', x'0102'), ('bb', 'three');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path, Limits::default()).unwrap();
        assert_eq!(store.usage().await.unwrap(), counted(&path));
        store.set("a", b"longer value").await.unwrap();
        store.set("c", b"").await.unwrap();
        store.increment("n", 99).await.unwrap();
        store.increment("n", 1).await.unwrap();
        store.swap("c", Some(b""), b"swapped").await.unwrap();
        store.delete("bb").await.unwrap();
        store.delete("absent").await.unwrap();
        let usage = store.usage().await.unwrap();
        assert_eq!(usage, counted(&path));
        assert_eq!(usage.keys, 3);
        drop(store);
        // Opening again neither counts twice nor loses the totals.
        let store = SqliteStore::open(&path, Limits::default()).unwrap();
        assert_eq!(store.usage().await.unwrap(), usage);
        // A byte limit still sees the whole store.
        let limits = Limits {
            max_bytes: usage.bytes + 3,
            ..Limits::default()
        };
        drop(store);
        let store = SqliteStore::open(&path, limits).unwrap();
        store.set("d", b"x").await.unwrap();
        let err = store.set("e", b"xyz").await.unwrap_err();
        assert!(matches!(err, KvError::Limit(_)), "{err}");
    }
}
