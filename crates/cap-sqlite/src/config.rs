//! Which databases a node offers: the `[sqlite_database.<label>]` tables of its runtime-config
//! file, in Spin's `runtime-config.toml` form (`type = "spin"`), plus Kindling's limits. The
//! label `default` always exists.
//!
//! ```toml
//! [sqlite_database.default]
//! type = "spin"              # <data-dir>/sqlite/<namespace>/default.db
//! max_bytes = 104857600      # the database's size cap (default 1 GiB)
//!
//! [sqlite_database.reports]
//! type = "spin"
//! path = "reports"           # <data-dir>/sqlite/reports/<namespace>/reports.db
//! ```
//!
//! Unlike Spin's, `path` names a directory, under `<data-dir>/sqlite/`: a label has one
//! database per namespace.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kindling_host::check_label;
use serde::Deserialize;

use crate::database::Limits;

/// One label's place and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseConfig {
    /// The directory of the label's databases (one per namespace), relative to the data
    /// directory: `sqlite`, or `sqlite/<path>` when the file names a path.
    pub dir: PathBuf,
    /// What each database may hold and return.
    pub limits: Limits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    #[serde(rename = "type")]
    kind: String,
    path: Option<PathBuf>,
    max_bytes: Option<u64>,
    max_result_bytes: Option<u64>,
}

/// The labels a node offers, from the `sqlite_database` table of its runtime config.
pub fn parse_databases(
    table: Option<&toml::Value>,
) -> Result<BTreeMap<String, DatabaseConfig>, String> {
    let mut databases = BTreeMap::new();
    databases.insert(
        "default".to_string(),
        DatabaseConfig {
            dir: PathBuf::from("sqlite"),
            limits: Limits::default(),
        },
    );
    let Some(table) = table else {
        return Ok(databases);
    };
    let table = table
        .as_table()
        .ok_or("[sqlite_database] must be a table of labels, [sqlite_database.NAME]")?;
    for (label, entry) in table {
        check_label(label).map_err(|why| format!("[sqlite_database.{label}]: {why}"))?;
        let fields: Fields = entry.clone().try_into().map_err(|err: toml::de::Error| {
            format!("[sqlite_database.{label}]: {}", err.message())
        })?;
        if fields.kind != "spin" && fields.kind != "sqlite" {
            return Err(format!(
                "[sqlite_database.{label}] type {:?} is not one Kindling has: use \"spin\" (a \
                 SQLite file under the data directory)",
                fields.kind
            ));
        }
        if let Some(path) = &fields.path
            && (path.as_os_str().is_empty()
                || !path
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))))
        {
            return Err(format!(
                "[sqlite_database.{label}] path {path:?} must name a directory under \
                 <data-dir>/sqlite: relative, without `.` or `..` (it holds one database per \
                 namespace, so unlike Spin's it is not a file name)"
            ));
        }
        let default = Limits::default();
        let limits = Limits {
            max_bytes: fields.max_bytes.unwrap_or(default.max_bytes),
            max_result_bytes: fields.max_result_bytes.unwrap_or(default.max_result_bytes),
        };
        if limits.max_bytes < 64 << 10 || limits.max_result_bytes == 0 {
            return Err(format!(
                "[sqlite_database.{label}]: max_bytes must be at least 65536 and \
                 max_result_bytes at least 1"
            ));
        }
        let dir = match fields.path {
            Some(path) => PathBuf::from("sqlite").join(path),
            None => PathBuf::from("sqlite"),
        };
        databases.insert(label.clone(), DatabaseConfig { dir, limits });
    }
    Ok(databases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, DatabaseConfig>, String> {
        let table: toml::Table = toml::from_str(text).unwrap();
        parse_databases(table.get("sqlite_database"))
    }

    #[test]
    fn spins_form_is_read_and_default_always_exists() {
        let databases = parse(
            "[sqlite_database.reports]\ntype = \"spin\"\npath = \"reports\"\nmax_bytes = 1048576\n",
        )
        .unwrap();
        assert_eq!(databases["default"].dir, PathBuf::from("sqlite"));
        assert_eq!(databases["reports"].dir, PathBuf::from("sqlite/reports"));
        assert_eq!(databases["reports"].limits.max_bytes, 1 << 20);
        let default = parse("").unwrap();
        assert_eq!(default.len(), 1);
    }

    #[test]
    fn mistakes_are_named() {
        let err = parse("[sqlite_database.x]\ntype = \"libsql\"\n").unwrap_err();
        assert!(err.contains("\"libsql\" is not one Kindling has"), "{err}");
        for path in ["/etc", "", ".", "a/../b"] {
            let text = format!("[sqlite_database.x]\ntype = \"spin\"\npath = \"{path}\"\n");
            let err = parse(&text).unwrap_err();
            assert!(err.contains("under <data-dir>/sqlite"), "{path}: {err}");
        }
        let err = parse("[sqlite_database.x]\ntype = \"spin\"\nsize = 1\n").unwrap_err();
        assert!(err.contains("unknown field `size`"), "{err}");
        let err = parse("[sqlite_database.\"a b\"]\ntype = \"spin\"\n").unwrap_err();
        assert!(err.contains("must be 1-63 letters"), "{err}");
    }
}
