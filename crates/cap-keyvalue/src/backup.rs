//! Backing up and restoring the SQLite stores, as `<backup>/key-value/<label>/<namespace>.db`.
//!
//! A backup is SQLite's `VACUUM INTO` of each database, consistent while guests write; a
//! restore checks every database of the backup (it opens, passes `integrity_check`, has the
//! `kv` table) before it replaces any store. Redis labels are named and left to Redis.

use std::path::{Path, PathBuf};

use kindling_host::{
    check_database, dir_entries as entries, is_namespace as valid_namespace,
    namespace_dirs as namespaces, put_back_database as put_back, snapshot_database,
};
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
        // Also when the backup still names one (a copy made some other way, or a backup cut
        // short before its copy forgot it): the store put back is a new incarnation.
        mark_put_back(&target)?;
        lines.push(format!(
            "label {} of namespace {} restored",
            store.label, store.namespace
        ));
    }
    Ok(lines)
}

/// Copies `db` into the new file `snapshot`; returns how many keys it holds. A synced store's
/// copy forgets its incarnation, so that once put back it opens as a new one (its clock may be
/// behind what the store sent after the backup; see `synced.rs`).
fn snapshot_into(db: &Path, snapshot: &Path) -> Result<u64, String> {
    snapshot_database(db, snapshot)?;
    // Marked as put back already: a copy put in place by hand behaves as one restored.
    mark_put_back(snapshot)?;
    let fail = |err: rusqlite::Error| format!("backing up {}: {err}", db.display());
    let copy =
        Connection::open_with_flags(snapshot, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(fail)?;
    let keys: i64 = copy
        .query_row("SELECT count(*) FROM kv", [], |row| row.get(0))
        .map_err(fail)?;
    Ok(keys.max(0) as u64)
}

/// A synced store's database at `path` is marked as put back from a backup: it forgets its
/// incarnation and opens as a new one, counts its increments under a name of its own from
/// then on, and the node reads the whole stream again, its own changes since the backup among
/// them. A backup is marked so too, for a copy put in place without `kindling restore`.
fn mark_put_back(path: &Path) -> Result<(), String> {
    let fail = |err: rusqlite::Error| format!("{}: {err}", path.display());
    let db = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE).map_err(fail)?;
    // A synced store's database, also one from before `sync_meta`.
    let synced: bool = db
        .query_row(
            "SELECT COUNT(*) > 0 FROM sqlite_master WHERE type = 'table' AND name = 'sync_put'",
            [],
            |row| row.get(0),
        )
        .map_err(fail)?;
    if synced {
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS sync_meta (
                 name TEXT PRIMARY KEY NOT NULL,
                 value TEXT NOT NULL
             ) WITHOUT ROWID;
             DELETE FROM sync_meta WHERE name = 'incarnation';
             INSERT OR REPLACE INTO sync_meta VALUES ('share', '');
             INSERT OR REPLACE INTO sync_meta VALUES ('reread', '1');",
        )
        .map_err(fail)?;
    }
    Ok(())
}

/// A backed-up store must open, pass SQLite's check and hold the `kv` table.
fn check(path: &Path) -> Result<(), String> {
    check_database(path, Some("SELECT count(*) FROM kv"))
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

    #[tokio::test]
    async fn a_synced_store_put_back_from_a_backup_is_a_new_incarnation() {
        use crate::backend::{Backend as _, Limits};
        use crate::synced::SyncedStore;

        let dir = tempfile::tempdir().unwrap();
        let (db, copy) = (dir.path().join("live.db"), dir.path().join("copy.db"));
        let open = |path: &Path| {
            SyncedStore::open(path, Limits::default(), "edge", Default::default()).unwrap()
        };
        let store = open(&db);
        store.set("k", b"v").await.unwrap();
        let incarnation = store.incarnation().to_string();
        assert_eq!(incarnation.len(), 16, "{incarnation:?}");
        assert_eq!(snapshot_into(&db, &copy).unwrap(), 1);
        drop(store);
        assert_eq!(
            open(&db).incarnation(),
            incarnation,
            "the same across restarts"
        );
        let restored = open(&copy);
        assert_ne!(restored.incarnation(), incarnation);
        assert_eq!(restored.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn a_store_put_back_counts_under_a_new_name_and_reads_its_own_changes_again() {
        use crate::backend::{Backend as _, Limits};
        use crate::synced::SyncedStore;

        let dir = tempfile::tempdir().unwrap();
        let (db, copy) = (dir.path().join("live.db"), dir.path().join("copy.db"));
        let open = |path: &Path, node: &str| {
            SyncedStore::open(path, Limits::default(), node, Default::default()).unwrap()
        };
        let outbox = |store: &SyncedStore| {
            let store = store.clone();
            async move {
                let pending = store.pending(100).await.unwrap();
                pending.into_iter().map(|p| p.change).collect::<Vec<_>>()
            }
        };
        let (store, peer) = (open(&db, "edge"), open(&dir.path().join("peer.db"), "peer"));
        store.increment("n", 7).await.unwrap();
        snapshot_into(&db, &copy).unwrap();
        // After the backup the node counts on to 10, and the peer hears of it.
        store.increment("n", 3).await.unwrap();
        let sent = outbox(&store).await;
        peer.apply(sent.clone()).await.unwrap();
        drop(store);

        // The copy is put back in the node's place.
        std::fs::copy(&copy, &db).unwrap();
        mark_put_back(&db).unwrap();
        let restored = open(&db, "edge");
        assert!(restored.needs_reread().await.unwrap());
        assert_eq!(
            restored.increment("n", 1).await.unwrap(),
            8,
            "the backup's 7, and 1"
        );
        // Its own changes since the backup come back with the stream, read again...
        restored.apply(sent).await.unwrap();
        restored.reread_started().await.unwrap();
        assert!(!restored.needs_reread().await.unwrap());
        // ... and its new increments are a share of their own: none is hidden.
        let after = outbox(&restored).await;
        peer.apply(after).await.unwrap();
        for store in [&restored, &peer] {
            assert_eq!(store.get("n").await.unwrap().as_deref(), Some(&b"11"[..]));
        }
        drop(restored);
        // Restarted, it keeps counting under that name.
        let again = open(&db, "edge");
        assert_eq!(again.increment("n", 1).await.unwrap(), 12);
    }
}
