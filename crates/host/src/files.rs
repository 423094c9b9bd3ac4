//! Helpers for capabilities that keep guests' data in SQLite files under the data directory
//! (`<dir>/<namespace>/<label>.db`), for their [`Capability::back_up`] and
//! [`Capability::restore`] phases, and for checking that a capability's list of interfaces is
//! its world's imports.
//!
//! [`Capability::back_up`]: crate::Capability::back_up
//! [`Capability::restore`]: crate::Capability::restore

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};

/// What a capability opened per namespace and label (stores, databases), kept for the node's
/// life and shared by every function of the namespace granted the label.
pub struct Opened<T: ?Sized> {
    open: Mutex<HashMap<(String, String), Arc<T>>>,
}

impl<T: ?Sized> Default for Opened<T> {
    fn default() -> Self {
        Self {
            open: Mutex::default(),
        }
    }
}

impl<T: ?Sized> Opened<T> {
    /// The one of `namespace`'s `label`, opened with `open` the first time. `open` runs under
    /// the lock, so two first uses never open it twice.
    pub fn get_or_open(
        &self,
        namespace: &str,
        label: &str,
        open: impl FnOnce() -> Result<Arc<T>, String>,
    ) -> Result<Arc<T>, String> {
        let key = (namespace.to_string(), label.to_string());
        let mut opened = self.open.lock().expect("opened lock");
        if let Some(found) = opened.get(&key) {
            return Ok(found.clone());
        }
        let new = open()?;
        opened.insert(key, new.clone());
        Ok(new)
    }

    /// Everything opened so far: namespace, label and value, in order.
    pub fn all(&self) -> Vec<(String, String, Arc<T>)> {
        let mut all: Vec<_> = self
            .open
            .lock()
            .expect("opened lock")
            .iter()
            .map(|((namespace, label), value)| (namespace.clone(), label.clone(), value.clone()))
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        all
    }
}

/// Resolves the labels a function was granted in configuration field `field`: each checked
/// with [`check_label`], then opened; an error names the field.
pub fn grant_labels<T>(
    field: &str,
    labels: &[String],
    mut open: impl FnMut(&str) -> Result<T, String>,
) -> Result<std::collections::BTreeMap<String, T>, String> {
    let mut granted = std::collections::BTreeMap::new();
    for label in labels {
        check_label(label).map_err(|why| format!("{field}: {why}"))?;
        let opened = open(label).map_err(|why| format!("{field}: {why}"))?;
        granted.insert(label.clone(), opened);
    }
    Ok(granted)
}

/// Labels become file names: letters, digits, `-` and `_`, at most 63.
pub fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty()
        || label.len() > 63
        || !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "label {label:?} must be 1-63 letters, digits, `-` or `_`"
        ));
    }
    Ok(())
}

/// Copies the database `db` into the new file `snapshot` with SQLite's `VACUUM INTO`:
/// consistent while guests write to it. Blocking.
pub fn snapshot_database(db: &Path, snapshot: &Path) -> Result<(), String> {
    let fail = |err: rusqlite::Error| format!("backing up {}: {err}", db.display());
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(fail)?;
    let into = snapshot
        .to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", snapshot.display()))?;
    conn.execute("VACUUM INTO ?1", [into]).map_err(fail)?;
    Ok(())
}

/// A backed-up database must open and pass SQLite's `integrity_check`; `probe`, when given,
/// is a query it must also answer (that its table is there, say). Blocking.
pub fn check_database(path: &Path, probe: Option<&str>) -> Result<(), String> {
    let bad = |why: String| {
        format!(
            "{} is damaged ({why}): take a new backup, or remove this file to restore the rest",
            path.display()
        )
    };
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|err| bad(err.to_string()))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|err| bad(err.to_string()))?;
    if verdict != "ok" {
        return Err(bad(verdict));
    }
    if let Some(probe) = probe {
        conn.query_row(probe, [], |_| Ok(()))
            .map_err(|err| bad(err.to_string()))?;
    }
    Ok(())
}

/// Replaces the database `target` with a copy of `from`, atomically: a crash leaves the old
/// database or the new one. The old database's write-ahead log is checkpointed into it first,
/// so removing the log before the swap loses nothing if the swap never happens. Blocking.
pub fn put_back_database(from: &Path, target: &Path) -> Result<(), String> {
    if target.is_file() {
        let fail = |why: String| {
            format!(
                "restoring {}: cannot fold its write-ahead log into it first ({why}); is a node \
                 still running on this data directory?",
                target.display()
            )
        };
        let conn = Connection::open(target).map_err(|err| fail(err.to_string()))?;
        let busy: i64 = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
            .map_err(|err| fail(err.to_string()))?;
        if busy != 0 {
            return Err(fail("the database is in use".into()));
        }
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err: std::io::Error| format!("restoring {}: {err}", path.display())
    };
    let dir = target.parent().expect("a database's path has a directory");
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let partial = target.with_extension("db.restoring");
    std::fs::copy(from, &partial).map_err(io(&partial))?;
    std::fs::File::open(&partial)
        .and_then(|file| file.sync_all())
        .map_err(io(&partial))?;
    for stale in ["db-wal", "db-shm"] {
        let path = target.with_extension(stale);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(io(&path)(err)),
        }
    }
    std::fs::rename(&partial, target).map_err(io(target))?;
    std::fs::File::open(dir)
        .and_then(|dir| dir.sync_all())
        .map_err(io(dir))
}

/// The namespace directories under a label's directory (none when it does not exist).
pub fn namespace_dirs(dir: &Path) -> Result<Vec<String>, String> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(dir_entries(dir)?
        .into_iter()
        .filter(|name| is_namespace(name) && dir.join(name).is_dir())
        .collect())
}

/// The names in a directory, sorted; a name that is not UTF-8 is an error naming it.
pub fn dir_entries(dir: &Path) -> Result<Vec<String>, String> {
    let read = std::fs::read_dir(dir).map_err(|err| format!("{}: {err}", dir.display()))?;
    let mut names = Vec::new();
    for entry in read {
        let entry = entry.map_err(|err| format!("{}: {err}", dir.display()))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => {
                return Err(format!(
                    "{}: {name:?} is not a name Kindling wrote: remove it",
                    dir.display()
                ));
            }
        }
    }
    names.sort();
    Ok(names)
}

/// True for a name a namespace directory may have.
pub fn is_namespace(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The interfaces a WIT world file imports (`import wasi:keyvalue/store@0.2.0-draft;` lines),
/// for a capability's test that its [`Capability::interfaces`](crate::Capability::interfaces)
/// list is honest.
pub fn world_imports(wit: &str) -> Vec<&str> {
    let mut imports: Vec<&str> = wit
        .lines()
        .filter_map(|line| line.trim().strip_prefix("import "))
        .map(|name| name.trim_end_matches(';'))
        .collect();
    imports.sort_unstable();
    imports
}
