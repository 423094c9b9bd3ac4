//! The queue database's statements for schedules: when each last fired, and a firing written
//! with its invocation in one step. They run on the writer thread, like the rest of
//! [`crate::sql`].

use rusqlite::{Connection, OptionalExtension, params};

use crate::error::EventsError;
use crate::record::NewInvocation;
use crate::sql::{EnqueueLimits, enqueue};

/// When a schedule last fired.
pub(crate) fn last_fire(
    conn: &Connection,
    function: &str,
    spec: &str,
) -> Result<Option<i64>, EventsError> {
    Ok(conn
        .query_row(
            "SELECT last_fire FROM schedules WHERE function = ?1 AND spec = ?2",
            params![function, spec],
            |row| row.get(0),
        )
        .optional()?)
}

/// Moves a schedule to `fired` and queues its invocation, in one step: a restart can
/// neither repeat nor lose the firing.
pub(crate) fn fire(
    conn: &Connection,
    function: &str,
    spec: &str,
    fired: i64,
    invocation: Option<&NewInvocation>,
    now: i64,
    limits: EnqueueLimits,
) -> Result<Option<String>, EventsError> {
    conn.execute(
        "INSERT INTO schedules (function, spec, last_fire) VALUES (?1, ?2, ?3)
         ON CONFLICT (function, spec) DO UPDATE SET last_fire = excluded.last_fire",
        params![function, spec, fired],
    )?;
    match invocation {
        Some(new) => Ok(Some(enqueue(conn, new, now, limits)?.0)),
        None => Ok(None),
    }
}

/// Forgets schedules no deployed function has any more.
pub(crate) fn forget_schedules(
    conn: &Connection,
    keep: &[(String, String)],
) -> Result<(), EventsError> {
    let mut statement = conn.prepare_cached("SELECT function, spec FROM schedules")?;
    let stored = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for (function, spec) in stored {
        if !keep.iter().any(|(f, s)| *f == function && *s == spec) {
            conn.execute(
                "DELETE FROM schedules WHERE function = ?1 AND spec = ?2",
                params![function, spec],
            )?;
        }
    }
    Ok(())
}
