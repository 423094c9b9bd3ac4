//! Backing up and restoring the SQLite stores, as `<backup>/key-value/<label>/<namespace>.db`.
//!
//! A backup is SQLite's `VACUUM INTO` of each database, consistent while guests write; a
//! restore checks every database of the backup (it opens, passes `integrity_check`, has the
//! `kv` table) before it replaces any store. Redis labels are named and left to Redis.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};

use crate::capability::KeyValue;
use crate::config::StoreKind;

/// One store's database inside a backup.
struct Found {
    label: String,
    namespace: String,
    path: PathBuf,
}

pub(crate) fn back_up(kv: &KeyValue, dest: &Path) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for (label, config) in kv.label_configs() {
        let dir = match &config.kind {
            StoreKind::Sqlite { dir } => kv.sqlite_dir(dir.as_deref()),
            StoreKind::Redis { .. } => {
                lines.push(format!(
                    "label {label} is kept in Redis and not copied: back it up with Redis \
                     itself (BGSAVE, or its append-only file)"
                ));
                continue;
            }
        };
        let mut stores = 0u64;
        let mut keys = 0u64;
        for namespace in namespaces(&dir)? {
            let db = dir.join(&namespace).join(format!("{label}.db"));
            if !db.is_file() {
                continue;
            }
            let into = dest.join(label);
            std::fs::create_dir_all(&into).map_err(|err| format!("{}: {err}", into.display()))?;
            let snapshot = into.join(format!("{namespace}.db"));
            keys += snapshot_into(&db, &snapshot)?;
            stores += 1;
        }
        if stores > 0 {
            let plural = |n: u64| if n == 1 { "" } else { "s" };
            lines.push(format!(
                "label {label}: {stores} store{} ({keys} key{}) copied",
                plural(stores),
                plural(keys)
            ));
        }
    }
    Ok(lines)
}

pub(crate) fn restore(kv: &KeyValue, src: &Path) -> Result<Vec<String>, String> {
    if !src.exists() {
        return Ok(Vec::new());
    }
    // Everything is checked before anything is replaced.
    let mut found = Vec::new();
    for label in entries(src)? {
        let Some(config) = kv.label_configs().get(&label) else {
            return Err(format!(
                "the backup holds stores of label {label:?}, which this node does not define: \
                 pass the runtime config the backed-up node ran with (--runtime-config FILE)"
            ));
        };
        if !matches!(config.kind, StoreKind::Sqlite { .. }) {
            return Err(format!(
                "the backup holds SQLite stores of label {label:?}, which this node's runtime \
                 config keeps in Redis: pass the runtime config the backed-up node ran with"
            ));
        }
        for file in entries(&src.join(&label))? {
            let path = src.join(&label).join(&file);
            let Some(namespace) = file.strip_suffix(".db").filter(|ns| valid_namespace(ns)) else {
                return Err(format!(
                    "{} is not a store Kindling backed up: remove it from the backup",
                    path.display()
                ));
            };
            check(&path)?;
            found.push(Found {
                label: label.clone(),
                namespace: namespace.to_string(),
                path,
            });
        }
    }
    let mut lines = Vec::new();
    for store in &found {
        let StoreKind::Sqlite { dir } = &kv.label_configs()[&store.label].kind else {
            unreachable!("checked above");
        };
        let target = kv.sqlite_path(dir.as_deref(), &store.namespace, &store.label);
        put_back(&store.path, &target)?;
        lines.push(format!(
            "label {} of namespace {} restored",
            store.label, store.namespace
        ));
    }
    Ok(lines)
}

/// Copies `db` into the new file `snapshot`; returns how many keys it holds.
fn snapshot_into(db: &Path, snapshot: &Path) -> Result<u64, String> {
    let fail = |err: rusqlite::Error| format!("backing up {}: {err}", db.display());
    let conn = Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(fail)?;
    let into = snapshot
        .to_str()
        .ok_or_else(|| format!("{}: the path is not UTF-8", snapshot.display()))?;
    conn.execute("VACUUM INTO ?1", [into]).map_err(fail)?;
    drop(conn);
    let copy =
        Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    let keys: i64 = copy
        .query_row("SELECT count(*) FROM kv", [], |row| row.get(0))
        .map_err(fail)?;
    Ok(keys.max(0) as u64)
}

/// A backed-up database must open, pass SQLite's check and hold the `kv` table.
fn check(path: &Path) -> Result<(), String> {
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
    conn.query_row("SELECT count(*) FROM kv", [], |row| row.get::<_, i64>(0))
        .map_err(|err| bad(err.to_string()))?;
    Ok(())
}

/// Replaces `target` with a copy of `from`, atomically: a crash leaves the old store or the
/// new one. The old store's write-ahead log goes with it.
fn put_back(from: &Path, target: &Path) -> Result<(), String> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |err: std::io::Error| format!("restoring {}: {err}", path.display())
    };
    let dir = target.parent().expect("a store's path has a directory");
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
fn namespaces(dir: &Path) -> Result<Vec<String>, String> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    Ok(entries(dir)?
        .into_iter()
        .filter(|name| valid_namespace(name) && dir.join(name).is_dir())
        .collect())
}

/// The names in a directory, sorted.
fn entries(dir: &Path) -> Result<Vec<String>, String> {
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

fn valid_namespace(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stores_come_back_as_they_were_backed_up() {
        let data = tempfile::tempdir().unwrap();
        let kv = KeyValue::new(data.path().to_path_buf(), None).unwrap();
        let store = kv.store("app", "default").unwrap();
        store.set("greeting", b"hello").await.unwrap();
        let backup = tempfile::tempdir().unwrap();
        let dest = backup.path().join("key-value");
        let lines = back_up(&kv, &dest).unwrap();
        assert_eq!(lines, ["label default: 1 store (1 key) copied"]);

        // A later write is undone by the restore.
        store.set("greeting", b"changed").await.unwrap();
        drop(store);
        drop(kv);
        let kv = KeyValue::new(data.path().to_path_buf(), None).unwrap();
        let lines = restore(&kv, &dest).unwrap();
        assert_eq!(lines, ["label default of namespace app restored"]);
        let store = kv.store("app", "default").unwrap();
        assert_eq!(store.get("greeting").await.unwrap().unwrap(), b"hello");

        // A damaged database in the backup is refused before anything is replaced.
        std::fs::write(dest.join("default").join("other.db"), b"not sqlite").unwrap();
        let err = restore(&kv, &dest).unwrap_err();
        assert!(err.contains("other.db is damaged"), "{err}");
    }
}
