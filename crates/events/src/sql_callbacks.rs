//! The queue database's statements for callbacks: which are due, taking one for a delivery,
//! and recording how it went. They run on the writer thread, like the rest of [`crate::sql`].

use rusqlite::{Connection, params};

use crate::error::EventsError;
use crate::record::State;
use crate::sql::decode_headers;

/// The first moment a callback is due, if one is waiting.
pub(crate) fn next_callback_due(conn: &Connection) -> Result<Option<i64>, EventsError> {
    Ok(conn.query_row(
        "SELECT min(callback_next_at) FROM invocations WHERE callback_state = 'pending'",
        [],
        |row| row.get(0),
    )?)
}

/// A callback to deliver.
#[derive(Debug, Clone)]
pub(crate) struct PendingCallback {
    pub(crate) id: String,
    pub(crate) function: String,
    pub(crate) url: String,
    pub(crate) state: State,
    pub(crate) attempts: u32,
    pub(crate) status: Option<u16>,
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) body: Vec<u8>,
}

/// Callbacks due now, and marks them taken until `lease_until`.
pub(crate) fn due_callbacks(
    conn: &Connection,
    now: i64,
    limit: u32,
    lease_until: i64,
) -> Result<Vec<PendingCallback>, EventsError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, function, callback_url, state, callback_attempts, status, response_headers,
            response_body
         FROM invocations WHERE callback_state = 'pending' AND callback_next_at <= ?1
         ORDER BY callback_next_at LIMIT ?2",
    )?;
    let due = statement
        .query_map(params![now, limit], |row| {
            let state: String = row.get(3)?;
            let headers: Option<Vec<u8>> = row.get(6)?;
            Ok(PendingCallback {
                id: row.get(0)?,
                function: row.get(1)?,
                url: row.get(2)?,
                state: state.parse().unwrap_or(State::Dead),
                attempts: row.get::<_, u32>(4)? + 1,
                status: row.get(5)?,
                headers: headers.as_deref().map(decode_headers).unwrap_or_default(),
                body: row.get::<_, Option<Vec<u8>>>(7)?.unwrap_or_default(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut take = conn.prepare_cached(
        "UPDATE invocations SET callback_attempts = ?2, callback_next_at = ?3 WHERE id = ?1",
    )?;
    for callback in &due {
        take.execute(params![callback.id, callback.attempts, lease_until])?;
    }
    Ok(due)
}

/// Records a callback delivery: delivered, failed for good, or due again at `next_at`.
pub(crate) fn callback_done(
    conn: &Connection,
    id: &str,
    state: &str,
    next_at: Option<i64>,
    error: Option<&str>,
) -> Result<(), EventsError> {
    conn.execute(
        "UPDATE invocations SET callback_state = ?2, callback_next_at = coalesce(?3, callback_next_at),
            callback_error = ?4
         WHERE id = ?1",
        params![id, state, next_at, error],
    )?;
    Ok(())
}
