//! The queue database's schema and statements. Everything here is synchronous and runs on the
//! writer thread ([`crate::store`]) inside its transaction. Times are milliseconds since the
//! Unix epoch: the queue outlives the process, so it keeps wall-clock time.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

pub(crate) use crate::sql_callbacks::{
    PendingCallback, callback_done, due_callbacks, next_callback_due,
};
pub(crate) use crate::sql_schedules::{fire, forget_schedules, last_fire};

use crate::error::EventsError;
use crate::record::{
    Attempt, Backlog, CallbackRecord, Filter, InvocationRecord, NewInvocation, ResponseRecord,
    Source, State,
};

const SCHEMA: &str = "
CREATE TABLE invocations (
    id TEXT PRIMARY KEY,
    function TEXT NOT NULL,
    namespace TEXT NOT NULL,
    source TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    idempotency_key TEXT,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    attempt_base INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    finished_at INTEGER,
    reason TEXT,
    status INTEGER,
    response_headers BLOB,
    response_body BLOB,
    response_truncated INTEGER NOT NULL DEFAULT 0,
    callback_url TEXT,
    callback_state TEXT,
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_next_at INTEGER,
    callback_error TEXT
);
CREATE INDEX invocations_due ON invocations (state, next_at);
CREATE INDEX invocations_function ON invocations (function, created_at);
CREATE INDEX invocations_callbacks ON invocations (callback_state, callback_next_at)
    WHERE callback_state = 'pending';
CREATE UNIQUE INDEX invocations_idempotency ON invocations (function, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE TABLE attempts (
    invocation TEXT NOT NULL REFERENCES invocations (id) ON DELETE CASCADE,
    number INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER,
    status INTEGER,
    error TEXT,
    PRIMARY KEY (invocation, number)
);
CREATE TABLE schedules (
    function TEXT NOT NULL,
    spec TEXT NOT NULL,
    last_fire INTEGER NOT NULL,
    PRIMARY KEY (function, spec)
);
";

/// Opens the database: WAL with full sync (a commit is on disk when it returns), foreign keys
/// on, and an attempt that was running when the node stopped is queued again.
pub(crate) fn open(path: &Path) -> Result<Connection, EventsError> {
    let conn = Connection::open(path).map_err(|err| {
        EventsError::Storage(format!("cannot open the queue database {path:?}: {err}"))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "wal")?;
    conn.pragma_update(None, "synchronous", "full")?;
    conn.pragma_update(None, "foreign_keys", "on")?;
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    match version {
        0 => {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "user_version", 1)?;
        }
        1 => {}
        other => {
            return Err(EventsError::Storage(format!(
                "the queue database {path:?} has schema version {other}, newer than this \
                 kindling knows (1); run a newer kindling"
            )));
        }
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS invocations_namespace ON invocations (namespace, state)",
    )?;
    crate::sql_shared::migrate(&conn)?;
    let now = now_ms();
    conn.execute(
        "UPDATE attempts SET finished_at = ?1, error = 'the node stopped during the attempt'
         WHERE finished_at IS NULL",
        params![now],
    )?;
    conn.execute(
        "UPDATE invocations SET state = 'queued', next_at = ?1, updated_at = ?1
         WHERE state = 'running'",
        params![now],
    )?;
    Ok(conn)
}

/// Now, in milliseconds since the epoch.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A new invocation id: `inv_` and 128 random bits in hex.
pub(crate) fn new_id() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!("inv_{}", hex::encode(bytes))
}

/// How the queue refuses and deduplicates.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnqueueLimits {
    /// Idempotency keys count within this window.
    pub(crate) window_ms: i64,
    /// Most invocations queued or running at once.
    pub(crate) max_waiting: u64,
    /// Most of them one namespace may have, so that one tenant cannot fill the queue.
    pub(crate) max_waiting_per_namespace: u64,
}

/// Accepts an invocation, or finds the one its idempotency key names. Answers the id and
/// whether it was a duplicate.
pub(crate) fn enqueue(
    conn: &Connection,
    new: &NewInvocation,
    now: i64,
    limits: EnqueueLimits,
) -> Result<(String, bool), EventsError> {
    if let Some(key) = &new.idempotency_key {
        let found: Option<(String, i64)> = conn
            .query_row(
                "SELECT id, created_at FROM invocations WHERE function = ?1 AND idempotency_key = ?2",
                params![new.function, key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?;
        if let Some((id, created)) = found {
            if created >= now - limits.window_ms {
                return Ok((id, true));
            }
            // Past the window, the key is free again.
            conn.execute(
                "UPDATE invocations SET idempotency_key = NULL WHERE id = ?1",
                params![id],
            )?;
        }
    }
    let waiting: i64 = conn.query_row(
        "SELECT count(*) FROM invocations WHERE state IN ('queued', 'running')",
        [],
        |row| row.get(0),
    )?;
    let waiting = waiting.max(0) as u64;
    if waiting >= limits.max_waiting {
        return Err(EventsError::Full {
            limit: limits.max_waiting,
        });
    }
    let theirs: i64 = conn.query_row(
        "SELECT count(*) FROM invocations WHERE namespace = ?1 AND state IN ('queued', 'running')",
        params![new.namespace],
        |row| row.get(0),
    )?;
    if theirs.max(0) as u64 >= limits.max_waiting_per_namespace {
        return Err(EventsError::NamespaceFull {
            namespace: new.namespace.clone(),
            limit: limits.max_waiting_per_namespace,
        });
    }
    let id = new_id();
    let headers = serde_json::to_vec(&encode_headers(&new.headers))
        .map_err(|err| EventsError::Storage(err.to_string()))?;
    conn.execute(
        "INSERT INTO invocations (id, function, namespace, source, method, path, headers, body,
            idempotency_key, state, next_at, created_at, updated_at, callback_url, callback_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?10, ?10, ?11,
            CASE WHEN ?11 IS NULL THEN NULL ELSE 'waiting' END)",
        params![
            id,
            new.function,
            new.namespace,
            new.source.as_str(),
            new.method,
            new.path,
            headers,
            new.body,
            new.idempotency_key,
            now,
            new.callback_url,
        ],
    )?;
    Ok((id, false))
}

/// Header values are bytes; JSON keeps them as arrays of numbers only when they are not text.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum HeaderValue {
    Text(String),
    Bytes(Vec<u8>),
}

pub(crate) fn encode_headers(headers: &[(String, Vec<u8>)]) -> Vec<(String, HeaderValue)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = match std::str::from_utf8(value) {
                Ok(text) => HeaderValue::Text(text.to_string()),
                Err(_) => HeaderValue::Bytes(value.clone()),
            };
            (name.clone(), value)
        })
        .collect()
}

pub(crate) fn decode_headers(blob: &[u8]) -> Vec<(String, Vec<u8>)> {
    let decoded: Vec<(String, HeaderValue)> = serde_json::from_slice(blob).unwrap_or_default();
    from_header_values(decoded)
}

pub(crate) fn from_header_values(decoded: Vec<(String, HeaderValue)>) -> Vec<(String, Vec<u8>)> {
    decoded
        .into_iter()
        .map(|(name, value)| {
            let value = match value {
                HeaderValue::Text(text) => text.into_bytes(),
                HeaderValue::Bytes(bytes) => bytes,
            };
            (name, value)
        })
        .collect()
}

/// An invocation a worker took, with what it needs to run it.
#[derive(Debug, Clone)]
pub(crate) struct Claimed {
    pub(crate) id: String,
    pub(crate) function: String,
    /// The function's namespace when the invocation was accepted.
    pub(crate) namespace: String,
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    /// This attempt's number.
    pub(crate) attempt: u32,
    /// Attempts made before the last manual retry: the retry budget counts from there.
    pub(crate) base: u32,
    /// How it stands to the cluster's queue.
    pub(crate) shared: crate::sql_shared::Share,
}

/// Takes up to `limit` due invocations, oldest due first, and starts an attempt of each.
pub(crate) fn claim(conn: &Connection, now: i64, limit: u32) -> Result<Vec<Claimed>, EventsError> {
    let mut select = conn.prepare_cached(
        "SELECT id, function, method, path, headers, body, attempts, attempt_base, namespace,
            shared
         FROM invocations
         WHERE state = 'queued' AND next_at <= ?1 ORDER BY next_at LIMIT ?2",
    )?;
    let claimed = select
        .query_map(params![now, limit], |row| {
            let headers: Vec<u8> = row.get(4)?;
            Ok(Claimed {
                id: row.get(0)?,
                function: row.get(1)?,
                method: row.get(2)?,
                path: row.get(3)?,
                headers: decode_headers(&headers),
                body: row.get(5)?,
                attempt: row.get::<_, u32>(6)? + 1,
                base: row.get(7)?,
                namespace: row.get(8)?,
                shared: crate::sql_shared::Share::from_column(row.get(9)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut start = conn.prepare_cached(
        "UPDATE invocations SET state = 'running', attempts = ?2, updated_at = ?3 WHERE id = ?1",
    )?;
    let mut attempt = conn.prepare_cached(
        "INSERT OR REPLACE INTO attempts (invocation, number, started_at) VALUES (?1, ?2, ?3)",
    )?;
    for claim in &claimed {
        start.execute(params![claim.id, claim.attempt, now])?;
        attempt.execute(params![claim.id, claim.attempt, now])?;
    }
    Ok(claimed)
}

/// The first moment a queued invocation is due, if one is waiting.
pub(crate) fn next_due(conn: &Connection) -> Result<Option<i64>, EventsError> {
    Ok(conn.query_row(
        "SELECT min(next_at) FROM invocations WHERE state = 'queued'",
        [],
        |row| row.get(0),
    )?)
}

/// How an attempt ended, as the worker judged it.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) response: Option<StoredResponse>,
    /// The state it moves to.
    pub(crate) state: State,
    /// When queued again: the next attempt's time.
    pub(crate) next_at: Option<i64>,
    /// Why it is dead, or why the attempt failed.
    pub(crate) reason: Option<String>,
}

/// A response as stored.
#[derive(Debug, Clone)]
pub(crate) struct StoredResponse {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
    pub(crate) truncated: bool,
}

/// Records an attempt's end and moves the invocation on.
pub(crate) fn finish(
    conn: &Connection,
    id: &str,
    attempt: u32,
    now: i64,
    outcome: &Outcome,
) -> Result<(), EventsError> {
    conn.execute(
        "UPDATE attempts SET finished_at = ?3, status = ?4, error = ?5
         WHERE invocation = ?1 AND number = ?2",
        params![id, attempt, now, outcome.status, outcome.error],
    )?;
    let finished = outcome.state.is_final().then_some(now);
    let (status, headers, body, truncated) = match &outcome.response {
        Some(response) => (
            Some(response.status),
            Some(
                serde_json::to_vec(&encode_headers(&response.headers))
                    .map_err(|err| EventsError::Storage(err.to_string()))?,
            ),
            Some(response.body.clone()),
            response.truncated,
        ),
        None => (outcome.status, None, None, false),
    };
    conn.execute(
        "UPDATE invocations SET state = ?2, next_at = coalesce(?3, next_at), updated_at = ?4,
            finished_at = ?5, reason = ?6, status = ?7, response_headers = ?8,
            response_body = ?9, response_truncated = ?10,
            callback_state = CASE WHEN callback_url IS NOT NULL AND ?5 IS NOT NULL
                THEN 'pending' ELSE callback_state END,
            callback_next_at = CASE WHEN callback_url IS NOT NULL AND ?5 IS NOT NULL
                THEN ?4 ELSE callback_next_at END
         WHERE id = ?1",
        params![
            id,
            outcome.state.as_str(),
            outcome.next_at,
            now,
            finished,
            outcome.reason,
            status,
            headers,
            body,
            truncated,
        ],
    )?;
    Ok(())
}

/// Records a broker message whose retries are spent straight into the dead-letter store.
pub(crate) fn record_dead(
    conn: &Connection,
    new: &NewInvocation,
    attempts: u32,
    now: i64,
    outcome: &Outcome,
) -> Result<String, EventsError> {
    let limits = EnqueueLimits {
        window_ms: 0,
        max_waiting: u64::MAX,
        max_waiting_per_namespace: u64::MAX,
    };
    let (id, _) = enqueue(conn, new, now, limits)?;
    conn.execute(
        "UPDATE invocations SET attempts = ?2 WHERE id = ?1",
        params![id, attempts],
    )?;
    finish(conn, &id, attempts, now, outcome)?;
    Ok(id)
}

/// Puts back an attempt that never ran (the node had no room): it does not count.
pub(crate) fn release(
    conn: &Connection,
    id: &str,
    attempt: u32,
    next_at: i64,
) -> Result<(), EventsError> {
    conn.execute(
        "DELETE FROM attempts WHERE invocation = ?1 AND number = ?2",
        params![id, attempt],
    )?;
    conn.execute(
        "UPDATE invocations SET state = 'queued', attempts = ?2 - 1, next_at = ?3 WHERE id = ?1",
        params![id, attempt, next_at],
    )?;
    Ok(())
}

const COLUMNS: &str =
    "id, function, namespace, source, state, attempts, method, path, length(body),
    idempotency_key, created_at, updated_at, next_at, finished_at, reason, status,
    response_headers, response_body, response_truncated, callback_url, callback_state,
    callback_attempts, callback_error";

fn record(row: &Row<'_>) -> rusqlite::Result<InvocationRecord> {
    let state: String = row.get(4)?;
    let state = state.parse().unwrap_or(State::Queued);
    let status: Option<u16> = row.get(15)?;
    let response_headers: Option<Vec<u8>> = row.get(16)?;
    let response_body: Option<Vec<u8>> = row.get(17)?;
    let response = status.filter(|_| response_headers.is_some()).map(|status| {
        let headers = response_headers
            .as_deref()
            .map(decode_headers)
            .unwrap_or_default()
            .into_iter()
            .map(|(name, value)| (name, String::from_utf8_lossy(&value).into_owned()))
            .collect();
        // Lists leave bodies out (`NULL`): only `show` reads them.
        let (text, base64) = match response_body.map(String::from_utf8) {
            None => (None, None),
            Some(Ok(text)) => (Some(text), None),
            Some(Err(err)) => (None, Some(base64_encode(err.as_bytes()))),
        };
        ResponseRecord {
            status,
            headers,
            body: text,
            body_base64: base64,
            truncated: row.get::<_, bool>(18).unwrap_or(false),
        }
    });
    let callback = row
        .get::<_, Option<String>>(19)?
        .map(|url| -> rusqlite::Result<CallbackRecord> {
            Ok(CallbackRecord {
                url,
                state: row
                    .get::<_, Option<String>>(20)?
                    .unwrap_or_else(|| "waiting".into()),
                attempts: row.get(21)?,
                error: row.get(22)?,
            })
        })
        .transpose()?;
    let next_at: i64 = row.get(12)?;
    Ok(InvocationRecord {
        id: row.get(0)?,
        function: row.get(1)?,
        namespace: row.get(2)?,
        source: Source::parse(&row.get::<_, String>(3)?),
        state,
        attempts: row.get(5)?,
        method: row.get(6)?,
        path: row.get(7)?,
        body_bytes: row.get::<_, i64>(8)?.max(0) as u64,
        idempotency_key: row.get(9)?,
        created_at: rfc3339(row.get(10)?),
        updated_at: rfc3339(row.get(11)?),
        next_attempt_at: (state == State::Queued).then(|| rfc3339(next_at)),
        finished_at: row.get::<_, Option<i64>>(13)?.map(rfc3339),
        reason: row.get(14)?,
        response,
        callback,
        history: Vec::new(),
        node: None,
    })
}

/// One invocation with its attempts.
pub(crate) fn get(conn: &Connection, id: &str) -> Result<Option<InvocationRecord>, EventsError> {
    let Some(mut found) = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM invocations WHERE id = ?1"),
            params![id],
            record,
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut attempts = conn.prepare_cached(
        "SELECT number, started_at, finished_at, status, error FROM attempts
         WHERE invocation = ?1 ORDER BY number",
    )?;
    found.history = attempts
        .query_map(params![id], |row| {
            let started: i64 = row.get(1)?;
            let finished: Option<i64> = row.get(2)?;
            Ok(Attempt {
                number: row.get(0)?,
                started_at: rfc3339(started),
                duration_ms: finished.map(|f| (f - started).max(0) as u64),
                status: row.get(3)?,
                error: row.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(found))
}

fn where_clause(filter: &Filter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut clauses = Vec::new();
    let mut values = Vec::new();
    if let Some(function) = &filter.function {
        values.push(Value::Text(function.clone()));
        clauses.push(format!("function = ?{}", values.len()));
    }
    if let Some(state) = filter.state {
        values.push(Value::Text(state.as_str().into()));
        clauses.push(format!("state = ?{}", values.len()));
    }
    if let Some(namespaces) = &filter.namespaces {
        let mut marks = Vec::new();
        for namespace in namespaces {
            values.push(Value::Text(namespace.clone()));
            marks.push(format!("?{}", values.len()));
        }
        if marks.is_empty() {
            clauses.push("0".into());
        } else {
            clauses.push(format!("namespace IN ({})", marks.join(", ")));
        }
    }
    let clause = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    (clause, values)
}

/// Invocations the filter selects, newest first.
pub(crate) fn list(
    conn: &Connection,
    filter: &Filter,
) -> Result<Vec<InvocationRecord>, EventsError> {
    let (clause, values) = where_clause(filter);
    let limit = filter.limit.unwrap_or(100).min(1000);
    // Up to a thousand response bodies of a megabyte each are not a list: leave them out.
    let columns = COLUMNS.replace("response_body", "NULL");
    let mut statement = conn.prepare(&format!(
        "SELECT {columns} FROM invocations {clause} ORDER BY created_at DESC, id LIMIT {limit}"
    ))?;
    let rows = statement
        .query_map(rusqlite::params_from_iter(values), record)?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Queues a finished invocation again, with a fresh count of attempts (its history stays).
pub(crate) fn retry(conn: &Connection, id: &str, now: i64) -> Result<(), EventsError> {
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM invocations WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?;
    match state.as_deref() {
        None => Err(EventsError::NotFound(id.to_string())),
        Some("dead" | "succeeded") => {
            let offset: u32 = conn.query_row(
                "SELECT coalesce(max(number), 0) FROM attempts WHERE invocation = ?1",
                params![id],
                |row| row.get(0),
            )?;
            // Attempt numbers keep counting so that the history reads in order; the retry
            // budget starts again from the attempts made before this retry. The cluster's
            // queue settled it when it finished, so a retry is this node's to run (and to
            // report, if it came from the cluster).
            conn.execute(
                "UPDATE invocations SET state = 'queued', attempts = ?2, next_at = ?3,
                    shared = CASE WHEN shared = 0 THEN 0 ELSE 2 END,
                    attempt_base = ?2, updated_at = ?3, finished_at = NULL, reason = NULL,
                    callback_state = CASE WHEN callback_url IS NULL THEN NULL ELSE 'waiting' END,
                    callback_attempts = 0, callback_error = NULL
                 WHERE id = ?1",
                params![id, offset, now],
            )?;
            Ok(())
        }
        Some(other) => Err(EventsError::Conflict(format!(
            "invocation {id:?} is {other}; only a dead or succeeded invocation can be retried"
        ))),
    }
}

/// Deletes finished invocations the filter selects; answers how many.
pub(crate) fn purge(conn: &Connection, filter: &Filter) -> Result<u64, EventsError> {
    if let Some(state) = filter.state
        && !state.is_final()
    {
        return Err(EventsError::Conflict(format!(
            "only finished invocations can be purged, not {} ones",
            state.as_str()
        )));
    }
    let (clause, values) = where_clause(filter);
    let clause = if clause.is_empty() {
        "WHERE state IN ('succeeded', 'dead')".to_string()
    } else {
        format!("{clause} AND state IN ('succeeded', 'dead')")
    };
    // Callbacks still to deliver keep their invocation.
    let deleted = conn.execute(
        &format!("DELETE FROM invocations {clause} AND coalesce(callback_state, '') != 'pending'"),
        rusqlite::params_from_iter(values),
    )?;
    Ok(deleted as u64)
}

/// Deletes one finished invocation.
pub(crate) fn delete(conn: &Connection, id: &str) -> Result<(), EventsError> {
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM invocations WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?;
    match state.as_deref() {
        None => Err(EventsError::NotFound(id.to_string())),
        // A queued one is cancelled: no attempt is running, and none will.
        Some("dead" | "succeeded" | "queued") => {
            conn.execute("DELETE FROM invocations WHERE id = ?1", params![id])?;
            Ok(())
        }
        Some(other) => Err(EventsError::Conflict(format!(
            "invocation {id:?} is {other}; wait for its attempt to end, then delete it"
        ))),
    }
}

/// What is waiting, per function.
pub(crate) fn backlog(conn: &Connection, now: i64) -> Result<Vec<Backlog>, EventsError> {
    let mut statement = conn.prepare_cached(
        "SELECT function, count(*), min(created_at) FROM invocations
         WHERE state IN ('queued', 'running') GROUP BY function ORDER BY function",
    )?;
    let rows = statement
        .query_map([], |row| {
            let oldest: i64 = row.get(2)?;
            Ok(Backlog {
                function: row.get(0)?,
                depth: row.get::<_, i64>(1)?.max(0) as u64,
                oldest_age_seconds: (now - oldest).max(0) as f64 / 1e3,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes succeeded invocations older than `retain_ms`, dead ones (the dead-letter store)
/// older than `retain_dead_ms`, and frees idempotency keys past the window.
pub(crate) fn housekeeping(
    conn: &Connection,
    now: i64,
    retain_ms: i64,
    retain_dead_ms: i64,
    window_ms: i64,
) -> Result<u64, EventsError> {
    let deleted = conn.execute(
        "DELETE FROM invocations WHERE state = 'succeeded' AND finished_at < ?1
            AND coalesce(callback_state, '') != 'pending'",
        params![now - retain_ms],
    )? + conn.execute(
        "DELETE FROM invocations WHERE state = 'dead' AND finished_at < ?1
            AND coalesce(callback_state, '') != 'pending'",
        params![now - retain_dead_ms],
    )?;
    conn.execute(
        "UPDATE invocations SET idempotency_key = NULL
         WHERE idempotency_key IS NOT NULL AND created_at < ?1",
        params![now - window_ms],
    )?;
    Ok(deleted as u64)
}

/// Milliseconds since the epoch as RFC 3339 in UTC, to the millisecond.
pub(crate) fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
#[path = "sql_tests.rs"]
mod tests;
