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

/// What taking an invocation from the cluster's queue found here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Adopted {
    /// A new row: the workers run it.
    New,
    /// It is here and not finished (JetStream sent it again while it was held): keep it.
    Live,
    /// It finished here but its message was not settled: settle it now.
    Finished,
}

/// Takes `envelope` into the queue as a shared row. `delivered` is how often the cluster's
/// queue has sent it (this time included): earlier deliveries went to nodes that did not
/// finish it, and count as attempts against its retries.
pub(crate) fn adopt(
    conn: &Connection,
    envelope: &Envelope,
    delivered: u32,
    now: i64,
) -> Result<Adopted, EventsError> {
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM invocations WHERE id = ?1",
            params![envelope.id],
            |row| row.get(0),
        )
        .optional()?;
    match state.as_deref() {
        Some("succeeded" | "dead") => return Ok(Adopted::Finished),
        Some(_) => return Ok(Adopted::Live),
        None => {}
    }
    // The cluster decided it is a new invocation: an older one here with the same key (past
    // the window, not yet freed by the housekeeping) lets go of it.
    if let Some(key) = &envelope.idempotency_key {
        conn.execute(
            "UPDATE invocations SET idempotency_key = NULL WHERE function = ?1 AND idempotency_key = ?2",
            params![envelope.function, key],
        )?;
    }
    let headers = serde_json::to_vec(&crate::sql::encode_headers(&envelope.headers))
        .map_err(|err| EventsError::Storage(err.to_string()))?;
    conn.execute(
        "INSERT INTO invocations (id, function, namespace, source, method, path,
            headers, body, idempotency_key, state, attempts, next_at, created_at, updated_at,
            callback_url, callback_state, shared)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'queued', ?10, ?11, ?12, ?11, ?13,
            CASE WHEN ?13 IS NULL THEN NULL ELSE 'waiting' END, 1)",
        params![
            envelope.id,
            envelope.function,
            envelope.namespace,
            envelope.source.as_str(),
            envelope.method,
            envelope.path,
            headers,
            envelope.body,
            envelope.idempotency_key,
            delivered.saturating_sub(1),
            now,
            envelope.created_at,
            envelope.callback_url,
        ],
    )?;
    Ok(Adopted::New)
}

/// Forgets the shared rows a stopped node left unfinished: their messages went back to the
/// cluster's queue when the node stopped acknowledging them, and whichever node takes them
/// next runs them. Answers how many.
pub(crate) fn forget_unfinished(conn: &Connection) -> Result<u64, EventsError> {
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

/// Whether the invocation is a shared row here (`None`: not here at all).
pub(crate) fn is_shared(conn: &Connection, id: &str) -> Result<Option<bool>, EventsError> {
    Ok(conn
        .query_row(
            "SELECT shared FROM invocations WHERE id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()?)
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
        // Two earlier deliveries went to nodes that did not finish it: they count.
        assert_eq!(
            adopt(&conn, &envelope("inv_a", Some("k")), 3, 2_000).unwrap(),
            Adopted::New
        );
        let claimed = sql::claim(&conn, 2_000, 10).unwrap();
        assert_eq!(claimed.len(), 1);
        assert!(claimed[0].shared);
        assert_eq!(claimed[0].attempt, 3);
        // Sent again while it runs here: kept as it is.
        assert_eq!(
            adopt(&conn, &envelope("inv_a", Some("k")), 4, 2_100).unwrap(),
            Adopted::Live
        );
        // Another id with the same key is another invocation: the cluster said so.
        assert_eq!(
            adopt(&conn, &envelope("inv_b", Some("k")), 1, 2_100).unwrap(),
            Adopted::New
        );
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
        assert_eq!(
            adopt(&conn, &envelope("inv_a", Some("k")), 5, 2_300).unwrap(),
            Adopted::Finished
        );
        assert_eq!(is_shared(&conn, "inv_a").unwrap(), Some(true));
        assert_eq!(is_shared(&conn, "inv_z").unwrap(), None);
    }

    #[test]
    fn a_restarted_node_gives_back_what_it_had_not_finished() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.db");
        let conn = sql::open(&path).unwrap();
        adopt(&conn, &envelope("inv_a", None), 1, 2_000).unwrap();
        adopt(&conn, &envelope("inv_b", None), 1, 2_000).unwrap();
        sql::claim(&conn, 2_000, 1).unwrap();
        drop(conn);
        // Reopened, the running one is queued again; both go back to the cluster.
        let conn = sql::open(&path).unwrap();
        assert_eq!(forget_unfinished(&conn).unwrap(), 2);
        assert!(sql::get(&conn, "inv_a").unwrap().is_none());
    }
}
