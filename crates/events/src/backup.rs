//! The queue in backups: `kindling backup` copies `queue.db` (waiting invocations, the
//! dead-letter store, schedules' last firings) with SQLite's `VACUUM INTO`, safe while the node
//! runs; `kindling restore` checks the copy before anything is replaced.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::EventsError;

const FILE: &str = "queue.db";

/// Copies the data directory's queue into `dest`; answers a line for the report, or `None`
/// when the node has no queue yet.
pub fn back_up(data_dir: &Path, dest: &Path) -> Result<Option<String>, EventsError> {
    let source = data_dir.join(FILE);
    if !source.exists() {
        return Ok(None);
    }
    let conn = Connection::open_with_flags(&source, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let target = dest.join(FILE);
    let target_str = target
        .to_str()
        .ok_or_else(|| EventsError::Storage(format!("{target:?} is not UTF-8")))?;
    conn.execute("VACUUM INTO ?1", [target_str])?;
    Ok(Some(summary(&target)?))
}

/// Checks a backup's queue, if it has one.
pub fn verify(src: &Path) -> Result<(), EventsError> {
    let file = src.join(FILE);
    if !file.exists() {
        return Ok(());
    }
    let conn = Connection::open_with_flags(&file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let check: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0))?;
    if check != "ok" {
        return Err(EventsError::Storage(format!(
            "the backup's queue {file:?} is damaged ({check}); nothing was replaced"
        )));
    }
    Ok(())
}

/// Puts a backup's queue into `data_dir` (whose node is stopped); answers a line for the
/// report, or `None` when the backup has no queue.
pub fn restore(src: &Path, data_dir: &Path) -> Result<Option<String>, EventsError> {
    let file = src.join(FILE);
    if !file.exists() {
        return Ok(None);
    }
    let staged = data_dir.join(format!("{FILE}.restore"));
    std::fs::copy(&file, &staged)
        .map_err(|err| EventsError::Storage(format!("cannot copy {file:?}: {err}")))?;
    for stale in ["queue.db-wal", "queue.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(stale));
    }
    std::fs::rename(&staged, data_dir.join(FILE))
        .map_err(|err| EventsError::Storage(format!("cannot put the queue in place: {err}")))?;
    Ok(Some(summary(&data_dir.join(FILE))?))
}

fn summary(file: &Path) -> Result<String, EventsError> {
    let conn = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let count = |state: &str| -> Result<i64, EventsError> {
        Ok(conn.query_row(
            "SELECT count(*) FROM invocations WHERE state = ?1",
            [state],
            |row| row.get(0),
        )?)
    };
    Ok(format!(
        "the invocation queue: {} queued, {} dead letters, {} succeeded",
        count("queued")? + count("running")?,
        count("dead")?,
        count("succeeded")?
    ))
}
