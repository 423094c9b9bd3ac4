//! Synced stores (`sync = "hub"` on a SQLite label): every node keeps the whole store in its
//! own database and writes there at once, without waiting for the network; each write also
//! enters the database's outbox in the same transaction, so that what a guest saw succeed is
//! sent to the other nodes even after `kill -9`. The node's sync (`kindling-edge`) sends the
//! outbox and applies the changes other nodes made.
//!
//! Changes merge so that every node that has applied the same changes, in any order and any
//! number of times, holds the same store:
//! - a set or a delete carries a [`Stamp`] (a hybrid logical clock reading and the node's
//!   name); the greatest stamp wins, so a key's last writer wins everywhere;
//! - an increment is a counter's share per node (what the node added and subtracted since the
//!   set the counter started from), merged by taking the larger reading, so concurrent
//!   increments on different nodes all count. A set or delete that wins starts the counter
//!   again from its value.
//!
//! The current values are kept in the same `kv` table as a plain SQLite store, so reads cost
//! the same and backups copy them the same way.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;

use crate::backend::{Backend, KeyPage, KvError, Limits, Usage, parse_counter};
use crate::sqlite::{backend, check_put, list, on_blocking_pool, read, totals, track_usage};

#[path = "synced_change.rs"]
mod change;
pub use change::{Change, Op, Stamp};

/// A change waiting in the outbox, with its place there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// Its sequence number in this store's outbox (increasing, never reused).
    pub seq: i64,
    /// The change.
    pub change: Change,
}

/// Other nodes' changes applied in one transaction.
const APPLY_CHUNK: usize = 64;

/// A synced store in an SQLite file.
#[derive(Debug, Clone)]
pub struct SyncedStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Mutex<Db>,
    limits: Limits,
    /// Keys are written once (`append_only = true`).
    append_only: bool,
    node: String,
    /// This copy of the database (see `sync_meta` in the schema).
    incarnation: String,
    /// The name this store's counter shares count under, when not the node's (`share` in
    /// `sync_meta`: a store put back from a backup).
    share: Option<String>,
    /// Woken when the outbox gains a change.
    outbox: Arc<Notify>,
    /// Local writes waiting for the next group commit.
    queue: Mutex<group::Queue>,
}

impl Inner {
    /// Refuses a write that would replace or delete `key` in an append-only store.
    fn check_append(&self, tx: &Connection, key: &str, what: &str) -> Result<(), KvError> {
        if self.append_only && read(tx, key)?.is_some() {
            return Err(KvError::AppendOnly(format!(
                "{key:?} is written already and this store is append-only (append_only = true \
                 in the runtime config): {what}; write each event under a key of its own"
            )));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Db {
    conn: Connection,
    /// The clock's last reading here: never behind a stamp this node made, nor behind another
    /// node's stamp up to an hour past the wall clock.
    clock: u64,
}

const SCHEMA: &str = "
    PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    PRAGMA busy_timeout = 5000;
    CREATE TABLE IF NOT EXISTS kv (
        key TEXT PRIMARY KEY NOT NULL,
        value BLOB NOT NULL
    ) WITHOUT ROWID;
    -- The winning set or delete of each key (value NULL: deleted).
    CREATE TABLE IF NOT EXISTS sync_put (
        key TEXT PRIMARY KEY NOT NULL,
        hlc INTEGER NOT NULL,
        node TEXT NOT NULL,
        value BLOB
    ) WITHOUT ROWID;
    -- Each node's share of a counter, per put it counts from.
    CREATE TABLE IF NOT EXISTS sync_count (
        key TEXT NOT NULL,
        epoch_hlc INTEGER NOT NULL,
        epoch_node TEXT NOT NULL,
        node TEXT NOT NULL,
        up INTEGER NOT NULL,
        down INTEGER NOT NULL,
        PRIMARY KEY (key, epoch_hlc, epoch_node, node)
    ) WITHOUT ROWID;
    -- `incarnation`: this database's name among the copies of the store's history. The
    -- streams keep one change per key and incarnation of each node, which holds only while
    -- its clock moves forward; a copy put back from a backup is a new incarnation.
    CREATE TABLE IF NOT EXISTS sync_meta (
        name TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO sync_meta VALUES ('incarnation', lower(hex(randomblob(8))));
    -- Changes to send. `key` and, for a counter's share, the put it counts from (`epoch_*`)
    -- let a change replace the unsent ones it makes moot.
    CREATE TABLE IF NOT EXISTS sync_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        change TEXT NOT NULL,
        key TEXT,
        epoch_hlc INTEGER,
        epoch_node TEXT
    );";

/// Outboxes written before changes replaced each other lack the columns that say what a
/// change replaces; their changes are sent as they are.
const OUTBOX_COLUMNS: &str = "
    BEGIN IMMEDIATE;
    ALTER TABLE sync_outbox ADD COLUMN key TEXT;
    ALTER TABLE sync_outbox ADD COLUMN epoch_hlc INTEGER;
    ALTER TABLE sync_outbox ADD COLUMN epoch_node TEXT;
    COMMIT;";

impl SyncedStore {
    /// Opens (creating) the store at `path` for node `node`; `outbox` is woken when a write
    /// adds a change to send. Keys set before the label was synced are sent as this node's
    /// sets, which lose to any write made since; keys changed while it was plain again, as
    /// this node's latest writes. Blocking.
    pub(crate) fn open(
        path: &Path,
        limits: Limits,
        node: &str,
        outbox: Arc<Notify>,
    ) -> Result<Self, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
        }
        let fail = |err: rusqlite::Error| format!("key-value database {}: {err}", path.display());
        let conn = Connection::open(path).map_err(fail)?;
        conn.execute_batch(SCHEMA).map_err(fail)?;
        let keyed: bool = conn
            .query_row(
                "SELECT COUNT(*) > 0 FROM pragma_table_info('sync_outbox') WHERE name = 'key'",
                [],
                |row| row.get(0),
            )
            .map_err(fail)?;
        if !keyed {
            conn.execute_batch(OUTBOX_COLUMNS).map_err(fail)?;
        }
        conn.execute_batch("CREATE INDEX IF NOT EXISTS sync_outbox_key ON sync_outbox (key)")
            .map_err(fail)?;
        track_usage(&conn).map_err(fail)?;
        let incarnation: String = conn
            .query_row(
                "SELECT value FROM sync_meta WHERE name = 'incarnation'",
                [],
                |row| row.get(0),
            )
            .map_err(fail)?;
        // Put back from a backup (`share` left empty by the restore): from now on this store
        // counts under a name of its own, as a new writer would.
        conn.execute(
            "UPDATE sync_meta SET value = ?1 WHERE name = 'share' AND value = ''",
            params![incarnation],
        )
        .map_err(fail)?;
        let share = conn
            .query_row(
                "SELECT value FROM sync_meta WHERE name = 'share'",
                [],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(fail)?
            .map(|suffix| format!("{node}~{suffix}"));
        // The clock starts past every stamp this node made (a later write must beat them even
        // if the wall clock went back) and follows other nodes' stamps only as far as
        // `apply` does: a peer's clock far ahead must not take this one along after a restart.
        let (own, others): (i64, i64) = conn
            .query_row(
                "SELECT MAX(COALESCE((SELECT MAX(hlc) FROM sync_put WHERE node = ?1), 0),
                            COALESCE((SELECT MAX(epoch_hlc) FROM sync_count
                                      WHERE epoch_node = ?1), 0)),
                        MAX(COALESCE((SELECT MAX(hlc) FROM sync_put), 0),
                            COALESCE((SELECT MAX(epoch_hlc) FROM sync_count), 0))",
                params![node],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(fail)?;
        let mut db = Db {
            conn,
            clock: (own.max(0) as u64).max((others.max(0) as u64).min(clock_bound())),
        };
        let tx = db.conn.transaction().map_err(fail)?;
        // A key and its value (`None`: absent).
        type Rows = Vec<(String, Option<Vec<u8>>)>;
        let rows = |sql: &str| -> Result<Rows, String> {
            let mut stmt = tx.prepare(sql).map_err(fail)?;
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(fail)?
                .collect::<Result<_, _>>()
                .map_err(fail)
        };
        // Keys a plain store held before the label was synced, stamped with the lowest clock:
        // whenever this node joins, what it held before never beats a write made since the
        // label is synced (among nodes importing one key, the node name decides).
        let imported = rows(
            "SELECT key, value FROM kv WHERE key NOT IN (SELECT key FROM sync_put)
             AND key NOT IN (SELECT key FROM sync_count)",
        )?;
        // Keys set or deleted while the label was plain again (a counter's value is its
        // shares', so counters are left out): this node's writes, made after what it synced.
        let edited = rows(
            "SELECT p.key, k.value FROM sync_put p LEFT JOIN kv k ON k.key = p.key
             WHERE p.key NOT IN (SELECT key FROM sync_count) AND k.value IS NOT p.value",
        )?;
        let mut clock = db.clock;
        let stamped = imported
            .into_iter()
            .map(|(key, value)| {
                (
                    key,
                    value,
                    Stamp {
                        hlc: 0,
                        node: node.to_string(),
                    },
                )
            })
            .chain(edited.into_iter().map(|(key, value)| {
                let stamp = tick(&mut clock, node);
                (key, value, stamp)
            }));
        for (key, value, stamp) in stamped.collect::<Vec<_>>() {
            let change = Change {
                key,
                stamp,
                op: Op::Put { value },
            };
            merge(&tx, &change).map_err(|err| err.to_string())?;
            enqueue(&tx, &change).map_err(|err| err.to_string())?;
        }
        tx.commit().map_err(fail)?;
        db.clock = clock;
        Ok(Self {
            inner: Arc::new(Inner {
                db: Mutex::new(db),
                limits,
                append_only: false,
                node: node.to_string(),
                incarnation,
                share,
                outbox,
                queue: Mutex::default(),
            }),
        })
    }

    /// Makes the store append-only: a key is written once and never replaced or deleted, so
    /// that events, each under a key of its own, never conflict. Increments still count.
    pub(crate) fn append_only(mut self, on: bool) -> Self {
        Arc::get_mut(&mut self.inner)
            .expect("a store just opened has one owner")
            .append_only = on;
        self
    }

    /// Runs `work` on the database, on the blocking pool.
    async fn with<T, F>(&self, work: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Db, &Inner) -> Result<T, KvError> + Send + 'static,
    {
        on_blocking_pool(&self.inner, |inner| &inner.db, work).await
    }

    /// Makes a local change: merged and queued in the same transaction, committed with the
    /// writes that arrived meanwhile (see `synced_group.rs`).
    async fn write<T, F>(&self, work: F) -> Result<T, KvError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection, &mut u64, &Inner) -> Result<(T, Option<Change>), KvError>
            + Send
            + 'static,
    {
        let work: group::Work = Box::new(move |conn, clock, inner| {
            let (answer, change) = work(conn, clock, inner)?;
            Ok((Box::new(answer) as group::Answer, change))
        });
        let answer = group::write(&self.inner, work).await?;
        Ok(*answer
            .downcast::<T>()
            .expect("a write answers with its own type"))
    }

    /// Up to `limit` changes of the outbox, oldest first.
    pub async fn pending(&self, limit: usize) -> Result<Vec<Pending>, KvError> {
        self.with(move |db, _| {
            let mut stmt = db
                .conn
                .prepare_cached("SELECT seq, change FROM sync_outbox ORDER BY seq LIMIT ?1")
                .map_err(backend)?;
            let rows: Vec<(i64, String)> = stmt
                .query_map(params![limit as i64], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(backend)?
                .collect::<Result<_, _>>()
                .map_err(backend)?;
            rows.into_iter()
                .map(|(seq, text)| {
                    Change::from_json(text.as_bytes())
                        .map(|change| Pending { seq, change })
                        .map_err(KvError::Backend)
                })
                .collect()
        })
        .await
    }

    /// Drops the outbox's changes up to `seq`, once the other nodes' stream holds them.
    pub async fn sent(&self, seq: i64) -> Result<(), KvError> {
        self.with(move |db, _| {
            db.conn
                .execute("DELETE FROM sync_outbox WHERE seq <= ?1", params![seq])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }

    /// How many changes wait in the outbox.
    pub async fn backlog(&self) -> Result<u64, KvError> {
        self.with(|db, _| {
            db.conn
                .query_row("SELECT COUNT(*) FROM sync_outbox", [], |row| {
                    row.get::<_, i64>(0)
                })
                .map(|n| n.max(0) as u64)
                .map_err(backend)
        })
        .await
    }

    /// Applies changes other nodes made (any order, any number of times: applying one twice
    /// changes nothing). Returns how many changed the store. Their limits are not checked
    /// here: the writing node checked them, and refusing one would make the nodes differ.
    ///
    /// They are applied 64 to a transaction (`APPLY_CHUNK`), the store free between two, so that
    /// a site catching up on thousands of changes does not hold its own guests' writes back
    /// for the whole batch.
    pub async fn apply(&self, changes: Vec<Change>) -> Result<usize, KvError> {
        let mut changed = 0;
        let mut changes = changes.into_iter().peekable();
        while changes.peek().is_some() {
            let chunk: Vec<Change> = changes.by_ref().take(APPLY_CHUNK).collect();
            changed += self.apply_chunk(chunk).await?;
        }
        Ok(changed)
    }

    async fn apply_chunk(&self, changes: Vec<Change>) -> Result<usize, KvError> {
        self.with(move |db, _| {
            let tx = db.conn.transaction().map_err(backend)?;
            let mut changed = 0;
            for change in &changes {
                if change.stamp.hlc > i64::MAX as u64 {
                    return Err(KvError::Value(format!(
                        "a change to {:?} from {} carries an impossible clock ({})",
                        change.key, change.stamp.node, change.stamp.hlc
                    )));
                }
                // A peer's clock far ahead would drag this one along for good: follow it at
                // most an hour past this node's wall clock.
                db.clock = db.clock.max(change.stamp.hlc.min(clock_bound()));
                if merge(&tx, change)? {
                    changed += 1;
                }
            }
            tx.commit().map_err(backend)?;
            Ok(changed)
        })
        .await
    }

    /// The node whose writes this store stamps.
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// This copy of the store's database: 16 hex digits, the same across restarts, new for a
    /// database put back from a backup (whose clock may be behind stamps it already sent).
    pub fn incarnation(&self) -> &str {
        &self.inner.incarnation
    }

    /// Whether this store was put back from a backup and the node has not read the stream it
    /// applies from again since: what this node wrote after the backup is there, and only
    /// there.
    pub async fn needs_reread(&self) -> Result<bool, KvError> {
        self.with(|db, _| {
            db.conn
                .query_row(
                    "SELECT COUNT(*) > 0 FROM sync_meta WHERE name = 'reread'",
                    [],
                    |row| row.get(0),
                )
                .map_err(backend)
        })
        .await
    }

    /// The node reads the stream again from its start (see [`SyncedStore::needs_reread`]).
    pub async fn reread_started(&self) -> Result<(), KvError> {
        self.with(|db, _| {
            db.conn
                .execute("DELETE FROM sync_meta WHERE name = 'reread'", [])
                .map(|_| ())
                .map_err(backend)
        })
        .await
    }
}

/// The wall clock as a hybrid logical clock reading.
fn wall_clock() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
        << 16
}

/// How far this node's clock follows a peer's: an hour past its own wall clock.
fn clock_bound() -> u64 {
    wall_clock().saturating_add(3_600_000 << 16)
}

/// A stamp from the clock the write holds.
fn tick(clock: &mut u64, node: &str) -> Stamp {
    *clock = clock.saturating_add(1).max(wall_clock());
    Stamp {
        hlc: *clock,
        node: node.to_string(),
    }
}

/// Queues a local change, dropping the unsent ones it makes moot, so that a key rewritten a
/// thousand times while the link is down costs one change to send, not a thousand:
/// - a put replaces this node's earlier puts of the key (its stamp is greater: the local clock
///   only moves forward) and its shares of counters that count from an earlier put (the new
///   put wins over that put everywhere, so those shares can no longer count);
/// - a counter's share replaces this node's earlier shares of the same counter since the same
///   put (shares only grow, and the greatest is what every node keeps), stamped with the same
///   node name: a database renamed (`--node-name`) still sends the old name's share.
fn enqueue(tx: &Connection, change: &Change) -> Result<(), KvError> {
    let json = String::from_utf8(change.to_json()).expect("JSON is UTF-8");
    let (key, stamp) = (&change.key, &change.stamp);
    match &change.op {
        Op::Put { .. } => tx
            .prepare_cached(
                "DELETE FROM sync_outbox WHERE key = ?1
                 AND (epoch_hlc IS NULL OR epoch_hlc < ?2 OR (epoch_hlc = ?2 AND epoch_node < ?3))",
            )
            .and_then(|mut stmt| stmt.execute(params![key, stamp.hlc as i64, stamp.node])),
        Op::Count { epoch, .. } => tx
            .prepare_cached(
                "DELETE FROM sync_outbox
                 WHERE key = ?1 AND epoch_hlc = ?2 AND epoch_node = ?3
                 AND COALESCE(json_extract(change, '$.share'),
                              json_extract(change, '$.stamp.node')) = ?4",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![key, epoch.hlc as i64, epoch.node, change.sharer()])
            }),
    }
    .map_err(backend)?;
    let epoch = match &change.op {
        Op::Put { .. } => None,
        Op::Count { epoch, .. } => Some(epoch),
    };
    tx.prepare_cached(
        "INSERT INTO sync_outbox (change, key, epoch_hlc, epoch_node) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut stmt| {
        stmt.execute(params![
            json,
            key,
            epoch.map(|e| e.hlc as i64),
            epoch.map(|e| e.node.as_str())
        ])
    })
    .map(|_| ())
    .map_err(backend)
}

/// The stamp of the put `key` counts from (the default stamp when never set).
fn put_stamp(conn: &Connection, key: &str) -> Result<Option<Stamp>, KvError> {
    conn.query_row(
        "SELECT hlc, node FROM sync_put WHERE key = ?1",
        params![key],
        |row| {
            Ok(Stamp {
                hlc: row.get::<_, i64>(0)? as u64,
                node: row.get(1)?,
            })
        },
    )
    .optional()
    .map_err(backend)
}

/// Merges one change into the store; whether it changed anything.
fn merge(tx: &Connection, change: &Change) -> Result<bool, KvError> {
    let key = &change.key;
    let current = put_stamp(tx, key)?.unwrap_or_default();
    match &change.op {
        Op::Put { value } => {
            if change.stamp <= current {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO sync_put (key, hlc, node, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (key) DO UPDATE SET
                     hlc = excluded.hlc, node = excluded.node, value = excluded.value",
                params![key, change.stamp.hlc as i64, change.stamp.node, value],
            )
            .map_err(backend)?;
            // Shares of counters that started before this put no longer count.
            tx.execute(
                "DELETE FROM sync_count WHERE key = ?1
                 AND (epoch_hlc < ?2 OR (epoch_hlc = ?2 AND epoch_node < ?3))",
                params![key, change.stamp.hlc as i64, change.stamp.node],
            )
            .map_err(backend)?;
        }
        Op::Count {
            epoch, up, down, ..
        } => {
            if *epoch < current {
                return Ok(false);
            }
            let sharer = change.sharer();
            let before: Option<(i64, i64)> = tx
                .query_row(
                    "SELECT up, down FROM sync_count
                     WHERE key = ?1 AND epoch_hlc = ?2 AND epoch_node = ?3 AND node = ?4",
                    params![key, epoch.hlc as i64, epoch.node, sharer],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend)?;
            let (up, down) = (*up as i64, *down as i64);
            if let Some((old_up, old_down)) = before
                && old_up >= up
                && old_down >= down
            {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO sync_count (key, epoch_hlc, epoch_node, node, up, down)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (key, epoch_hlc, epoch_node, node) DO UPDATE SET
                     up = max(up, excluded.up), down = max(down, excluded.down)",
                params![key, epoch.hlc as i64, epoch.node, sharer, up, down],
            )
            .map_err(backend)?;
            if *epoch != current {
                // A share of a counter whose put has not arrived yet: kept for when it does.
                return Ok(true);
            }
        }
    }
    settle(tx, key)?;
    Ok(true)
}

/// Writes `key`'s current value into `kv`: its put's value, plus the counter's shares.
fn settle(tx: &Connection, key: &str) -> Result<(), KvError> {
    let put: Option<(Stamp, Option<Vec<u8>>)> = tx
        .query_row(
            "SELECT hlc, node, value FROM sync_put WHERE key = ?1",
            params![key],
            |row| {
                Ok((
                    Stamp {
                        hlc: row.get::<_, i64>(0)? as u64,
                        node: row.get(1)?,
                    },
                    row.get(2)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?;
    let (epoch, base) = put.unwrap_or_default();
    // Summed here in 128 bits: SQLite's SUM fails on overflow, and a store that cannot apply
    // a change would stop syncing.
    let (mut shares, mut up, mut down) = (0u64, 0i128, 0i128);
    let mut stmt = tx
        .prepare_cached(
            "SELECT up, down FROM sync_count
             WHERE key = ?1 AND epoch_hlc = ?2 AND epoch_node = ?3",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![key, epoch.hlc as i64, epoch.node], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
        })
        .map_err(backend)?;
    for row in rows {
        let (u, d) = row.map_err(backend)?;
        shares += 1;
        up += i128::from(u);
        down += i128::from(d);
    }
    drop(stmt);
    let value = if shares == 0 {
        base
    } else {
        let start = base
            .as_deref()
            .and_then(|v| parse_counter(key, v).ok())
            .unwrap_or(0);
        let total = (i128::from(start) + up - down)
            .clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64;
        Some(total.to_string().into_bytes())
    };
    match value {
        Some(value) => tx.execute(
            "INSERT INTO kv (key, value) VALUES (?1, ?2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            params![key, value],
        ),
        None => tx.execute("DELETE FROM kv WHERE key = ?1", params![key]),
    }
    .map(|_| ())
    .map_err(backend)
}

#[async_trait]
impl Backend for SyncedStore {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let key = key.to_string();
        self.with(move |db, _| read(&db.conn, &key)).await
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), KvError> {
        self.inner.limits.check(key, Some(value))?;
        let (key, value) = (key.to_string(), value.to_vec());
        self.write(move |tx, clock, inner| {
            // Recording the same event again (a retried invocation) is no change.
            if inner.append_only && read(tx, &key)?.as_deref() == Some(value.as_slice()) {
                return Ok(((), None));
            }
            inner.check_append(tx, &key, "it is not set again")?;
            check_put(tx, &inner.limits, &key, value.len())?;
            let stamp = tick(clock, &inner.node);
            let op = Op::Put { value: Some(value) };
            Ok(((), Some(Change { key, stamp, op })))
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        if self.inner.append_only {
            return Err(KvError::AppendOnly(format!(
                "{key:?} is not deleted: this store is append-only (append_only = true in the \
                 runtime config), its keys are never deleted"
            )));
        }
        let key = key.to_string();
        self.write(move |tx, clock, inner| {
            // Deleting what is not there (absent, or deleted already) changes nothing.
            if read(tx, &key)?.is_none() {
                return Ok(((), None));
            }
            let stamp = tick(clock, &inner.node);
            let op = Op::Put { value: None };
            Ok(((), Some(Change { key, stamp, op })))
        })
        .await
    }

    async fn exists(&self, key: &str) -> Result<bool, KvError> {
        let key = key.to_string();
        self.with(move |db, _| Ok(read(&db.conn, &key)?.is_some()))
            .await
    }

    async fn keys(&self, after: Option<&str>, limit: usize) -> Result<KeyPage, KvError> {
        let after = after.map(str::to_string);
        self.with(move |db, _| list(&db.conn, after.as_deref(), limit))
            .await
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, KvError> {
        self.inner.limits.check(key, None)?;
        let key = key.to_string();
        self.write(move |tx, clock, inner| {
            if inner.append_only && put_stamp(tx, &key)?.is_some() && read(tx, &key)?.is_some() {
                return Err(KvError::AppendOnly(format!(
                    "{key:?} was set, and this store is append-only (append_only = true in the \
                     runtime config): only keys never set count increments"
                )));
            }
            let current = read(tx, &key)?.map_or(Ok(0), |v| parse_counter(&key, &v))?;
            let next = current.checked_add(delta).ok_or_else(|| {
                KvError::Value(format!("incrementing {key:?} by {delta} overflows"))
            })?;
            check_put(tx, &inner.limits, &key, next.to_string().len())?;
            // The counter counts from the key's last put (after a delete, from 0).
            let epoch = put_stamp(tx, &key)?.unwrap_or_default();
            let (up, down): (i64, i64) = tx
                .query_row(
                    "SELECT up, down FROM sync_count
                     WHERE key = ?1 AND epoch_hlc = ?2 AND epoch_node = ?3 AND node = ?4",
                    params![
                        key,
                        epoch.hlc as i64,
                        epoch.node,
                        inner.share.as_deref().unwrap_or(&inner.node)
                    ],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(backend)?
                .unwrap_or((0, 0));
            let (up, down) = if delta >= 0 {
                (up.saturating_add(delta), down)
            } else {
                (up, down.saturating_add(delta.unsigned_abs() as i64))
            };
            let stamp = tick(clock, &inner.node);
            let op = Op::Count {
                epoch,
                up: up as u64,
                down: down as u64,
                share: inner.share.clone(),
            };
            Ok((next, Some(Change { key, stamp, op })))
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
        self.write(move |tx, clock, inner| {
            if read(tx, &key)? != expected {
                return Ok((false, None));
            }
            inner.check_append(tx, &key, "it is not swapped")?;
            check_put(tx, &inner.limits, &key, value.len())?;
            let stamp = tick(clock, &inner.node);
            let op = Op::Put { value: Some(value) };
            Ok((true, Some(Change { key, stamp, op })))
        })
        .await
    }

    async fn usage(&self) -> Result<Usage, KvError> {
        self.with(|db, _| totals(&db.conn)).await
    }
}

#[path = "synced_group.rs"]
mod group;

#[cfg(test)]
#[path = "synced_tests.rs"]
mod tests;
