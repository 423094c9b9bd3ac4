//! The queue database's part in a cluster's shared queue: invocations taken from it are rows
//! like any other, marked `shared`, so that the workers, retries, dead letters and callbacks
//! are the same; what marks them is what settles their message when they finish.

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::EventsError;
use crate::shared::Envelope;

/// Adds the `shared` column to a database made before the cluster's queue existed (older
/// kindlings ignore it and run such rows as their own, which at-least-once allows).
pub(crate) fn migrate(conn: &Connection) -> Result<(), EventsError> {
    let has: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('invocations') WHERE name = 'shared'")?
        .exists([])?;
    if !has {
        conn.execute_batch("ALTER TABLE invocations ADD COLUMN shared INTEGER NOT NULL DEFAULT 0")?;
    }
    Ok(())
}

/// How a row stands to the cluster's queue (the `shared` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Share {
    /// Queued on this node: the cluster knows nothing of it.
    Own,
    /// Taken from the cluster's queue: this node holds its message until the row is final,
    /// and reports where it stands.
    Held,
    /// A cluster invocation retried here by hand: its message was settled when it first
    /// finished, but this node still reports where it stands, so that other nodes show it.
    Reported,
}

impl Share {
    pub(crate) fn from_column(value: i64) -> Self {
        match value {
            0 => Self::Own,
            1 => Self::Held,
            _ => Self::Reported,
        }
    }
}

/// What taking an invocation from the cluster's queue finds here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Here {
    /// Nothing: it is new here.
    Absent,
    /// Held here and not finished (JetStream sent it again while this node holds it): keep
    /// holding it.
    Live,
    /// Here, and finished or not the cluster's any more: its message is settled.
    Settle,
}

/// Looks `id` up before it is taken in.
pub(crate) fn here(conn: &Connection, id: &str) -> Result<Here, EventsError> {
    let row: Option<(String, i64)> = conn
        .prepare_cached("SELECT state, shared FROM invocations WHERE id = ?1")?
        .query_row(params![id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    Ok(match row {
        None => Here::Absent,
        Some((state, shared))
            if Share::from_column(shared) == Share::Held
                && !matches!(state.as_str(), "succeeded" | "dead") =>
        {
            Here::Live
        }
        Some(_) => Here::Settle,
    })
}

/// Takes `envelope` into the queue as a held row. `attempts` is how many attempts earlier
/// holders started (the cluster's record of it): they count against its retries, and
/// deliveries that never started an attempt do not.
pub(crate) fn adopt(
    conn: &Connection,
    envelope: &Envelope,
    attempts: u32,
    now: i64,
) -> Result<(), EventsError> {
    // The cluster decided it is a new invocation: an older one here with the same key (past
    // the window, not yet freed by the housekeeping) lets go of it.
    if let Some(key) = &envelope.idempotency_key {
        conn.prepare_cached(
            "UPDATE invocations SET idempotency_key = NULL WHERE function = ?1 AND idempotency_key = ?2",
        )?
        .execute(params![envelope.function, key])?;
    }
    let headers = serde_json::to_vec(&crate::sql::encode_headers(&envelope.headers))
        .map_err(|err| EventsError::Storage(err.to_string()))?;
    conn.prepare_cached(
        "INSERT INTO invocations (id, function, namespace, source, method, path,
            headers, body, idempotency_key, state, attempts, next_at, created_at, updated_at,
            callback_url, callback_state, shared)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?11, ?13,
            CASE WHEN ?13 IS NULL THEN NULL ELSE 'waiting' END, 1)",
    )?
    .execute(params![
        envelope.id,
        envelope.function,
        envelope.namespace,
        envelope.source.as_str(),
        envelope.method,
        envelope.path,
        headers,
        envelope.body,
        envelope.idempotency_key,
        attempts,
        now,
        envelope.created_at,
        envelope.callback_url,
    ])?;
    Ok(())
}

/// Forgets the shared rows a stopped node left unfinished: their messages went back to the
/// cluster's queue when the node stopped acknowledging them, and whichever node takes them
/// next runs them. Answers how many.
pub(crate) fn forget_unfinished(conn: &Connection) -> Result<u64, EventsError> {
    conn.execute(
        "DELETE FROM attempts WHERE invocation IN
            (SELECT id FROM invocations WHERE shared = 1 AND state IN ('queued', 'running'))",
        [],
    )?;
    Ok(conn.execute(
        "DELETE FROM invocations WHERE shared = 1 AND state IN ('queued', 'running')",
        [],
    )? as u64)
}

/// The shared rows here that wait for an attempt: what a stopping node gives back.
pub(crate) fn waiting(conn: &Connection) -> Result<Vec<String>, EventsError> {
    let mut statement =
        conn.prepare("SELECT id FROM invocations WHERE shared = 1 AND state = 'queued'")?;
    let ids = statement
        .query_map([], |row| row.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Marks a row queued on this node alone, in a cluster, as one it reports.
pub(crate) fn mark_reported(conn: &Connection, id: &str) -> Result<(), EventsError> {
    conn.execute(
        "UPDATE invocations SET shared = 2 WHERE id = ?1 AND shared = 0",
        params![id],
    )?;
    Ok(())
}

/// How the invocation stands to the cluster's queue (`None`: not here at all).
pub(crate) fn share(conn: &Connection, id: &str) -> Result<Option<Share>, EventsError> {
    Ok(conn
        .query_row(
            "SELECT shared FROM invocations WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?
        .map(Share::from_column))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{NewInvocation, Source, State};
    use crate::sql::{self, Outcome};

    fn envelope(id: &str, key: Option<&str>) -> Envelope {
        let new = NewInvocation {
            function: "f".into(),
            namespace: "default".into(),
            source: Source::Http,
            method: "POST".into(),
            path: "/".into(),
            headers: vec![],
            body: b"hi".to_vec(),
            idempotency_key: key.map(Into::into),
            callback_url: None,
        };
        Envelope::new(id.into(), new, 1_000)
    }

    #[test]
    fn a_taken_invocation_is_a_row_until_it_is_settled() {
        let dir = tempfile::tempdir().unwrap();
        let conn = sql::open(&dir.path().join("queue.db")).unwrap();
        assert_eq!(here(&conn, "inv_a").unwrap(), Here::Absent);
        // Earlier holders started two attempts: they count.
        adopt(&conn, &envelope("inv_a", Some("k")), 2, 2_000).unwrap();
        let claimed = sql::claim(&conn, 2_000, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert_eq!(claimed[0].shared, Share::Held);
        assert_eq!(claimed[0].attempt, 3);
        // Sent again while it runs here: kept as it is.
        assert_eq!(here(&conn, "inv_a").unwrap(), Here::Live);
        // Another id with the same key is another invocation: the cluster said so.
        adopt(&conn, &envelope("inv_b", Some("k")), 0, 2_100).unwrap();
        assert_eq!(
            sql::get(&conn, "inv_a").unwrap().unwrap().idempotency_key,
            None
        );
        let done = Outcome {
            status: Some(200),
            error: None,
            response: None,
            state: State::Succeeded,
            next_at: None,
            reason: None,
        };
        sql::finish(&conn, "inv_a", 3, 2_200, &done).unwrap();
        assert_eq!(here(&conn, "inv_a").unwrap(), Here::Settle);
        assert_eq!(share(&conn, "inv_a").unwrap(), Some(Share::Held));
        assert_eq!(share(&conn, "inv_z").unwrap(), None);
        // Retried by hand, it is this node's to run and still the cluster's to show; sent
        // again, its message is settled rather than run a second time.
        sql::retry(&conn, "inv_a", 2_300).unwrap();
        assert_eq!(share(&conn, "inv_a").unwrap(), Some(Share::Reported));
        assert_eq!(here(&conn, "inv_a").unwrap(), Here::Settle);
    }

    #[test]
    fn a_restarted_node_gives_back_what_it_had_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let conn = sql::open(&path).unwrap();
        adopt(&conn, &envelope("inv_a", None), 0, 2_000).unwrap();
        adopt(&conn, &envelope("inv_b", None), 0, 2_000).unwrap();
        sql::claim(&conn, 2_000, 1).unwrap();
        drop(conn);
        // Reopened, the running one is queued again; both go back to the cluster.
        let conn = sql::open(&path).unwrap();
        assert_eq!(forget_unfinished(&conn).unwrap(), 2);
        assert!(sql::get(&conn, "inv_a").unwrap().is_none());
        assert_eq!(waiting(&conn).unwrap(), Vec::<String>::new());
    }
}
