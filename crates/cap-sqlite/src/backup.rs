//! Backing up and restoring guests' SQLite databases, as
//! `<backup>/sqlite/<label>/<namespace>.db`: SQLite's `VACUUM INTO` of each database,
//! consistent while guests write, and on restore every database checked before any is
//! replaced.

use std::path::{Path, PathBuf};

use kindling_host::{
    check_database, dir_entries, is_namespace, namespace_dirs, put_back_database, snapshot_database,
};

use crate::capability::Sqlite;

pub(crate) fn back_up(sqlite: &Sqlite, dest: &Path) -> Result<Vec<String>, String> {
    let mut lines = Vec::new();
    for (label, config) in sqlite.label_configs() {
        let mut copied = 0u64;
        let any = sqlite.path(config, "any", label);
        let dir = any
            .parent()
            .and_then(Path::parent)
            .expect("a database lies in <dir>/<namespace>/");
        for namespace in namespace_dirs(dir)? {
            let db = sqlite.path(config, &namespace, label);
            if !db.is_file() {
                continue;
            }
            let into = dest.join(label);
            std::fs::create_dir_all(&into).map_err(|err| format!("{}: {err}", into.display()))?;
            let snapshot = into.join(format!("{namespace}.db"));
            // One damaged database must not cost the others their backup: it is named and
            // left out.
            match snapshot_database(&db, &snapshot) {
                Ok(()) => copied += 1,
                Err(why) => {
                    let _ = std::fs::remove_file(&snapshot);
                    lines.push(format!(
                        "label {label} of namespace {namespace} NOT copied: {why}; check it with \
                         `kindling sqlite {namespace}/{label} \"PRAGMA quick_check\"`"
                    ));
                }
            }
        }
        if copied > 0 {
            let plural = if copied == 1 { "" } else { "s" };
            lines.push(format!("label {label}: {copied} database{plural} copied"));
        }
    }
    Ok(lines)
}

pub(crate) fn restore(sqlite: &Sqlite, src: &Path) -> Result<Vec<String>, String> {
    if !src.exists() {
        return Ok(Vec::new());
    }
    // Everything is checked before anything is replaced.
    let mut found: Vec<(String, String, PathBuf)> = Vec::new();
    for label in dir_entries(src)? {
        if !sqlite.label_configs().contains_key(&label) {
            return Err(format!(
                "the backup holds SQLite databases of label {label:?}, which this node does not \
                 define: pass the runtime config the backed-up node ran with (--runtime-config \
                 FILE)"
            ));
        }
        for file in dir_entries(&src.join(&label))? {
            let path = src.join(&label).join(&file);
            let Some(namespace) = file.strip_suffix(".db").filter(|ns| is_namespace(ns)) else {
                return Err(format!(
                    "{} is not a database Kindling backed up: remove it from the backup",
                    path.display()
                ));
            };
            check_database(&path, None)?;
            found.push((label.clone(), namespace.to_string(), path));
        }
    }
    let mut lines = Vec::new();
    for (label, namespace, path) in &found {
        let target = sqlite.path(&sqlite.label_configs()[label], namespace, label);
        put_back_database(path, &target)?;
        lines.push(format!("label {label} of namespace {namespace} restored"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::Value;

    #[test]
    fn databases_come_back_as_they_were_backed_up() {
        let data = tempfile::tempdir().unwrap();
        let sqlite = Sqlite::new(data.path().to_path_buf(), None).unwrap();
        let conn = sqlite
            .database("app", "default")
            .unwrap()
            .connect()
            .unwrap();
        conn.execute_now("CREATE TABLE t (v TEXT)", vec![]).unwrap();
        conn.execute_now(
            "INSERT INTO t VALUES (?)",
            vec![Value::Text("before".into())],
        )
        .unwrap();
        let backup = tempfile::tempdir().unwrap();
        let dest = backup.path().join("sqlite");
        assert_eq!(
            back_up(&sqlite, &dest).unwrap(),
            ["label default: 1 database copied"]
        );

        conn.execute_now("UPDATE t SET v = 'after'", vec![])
            .unwrap();
        drop(conn);
        drop(sqlite);
        let sqlite = Sqlite::new(data.path().to_path_buf(), None).unwrap();
        assert_eq!(
            restore(&sqlite, &dest).unwrap(),
            ["label default of namespace app restored"]
        );
        let conn = sqlite
            .database("app", "default")
            .unwrap()
            .connect()
            .unwrap();
        let rows = conn.execute_now("SELECT v FROM t", vec![]).unwrap();
        assert_eq!(rows.rows, [vec![Value::Text("before".into())]]);

        std::fs::write(dest.join("default").join("other.db"), b"not sqlite").unwrap();
        let err = restore(&sqlite, &dest).unwrap_err();
        assert!(err.contains("other.db is damaged"), "{err}");
    }
}
