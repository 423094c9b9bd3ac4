//! Which backend keeps each label: the `[key_value_store.<label>]` tables of the node's
//! runtime-config file, in Spin's `runtime-config.toml` form (`type = "spin"` for the embedded
//! SQLite store, `type = "redis"` with a `url`), plus Kindling's limits. The label `default`
//! always exists (SQLite under the data directory unless the file says otherwise).
//!
//! ```toml
//! [key_value_store.default]
//! type = "spin"                   # SQLite: <data-dir>/kv/<namespace>/default.db
//!
//! [key_value_store.progress]
//! type = "spin"
//! sync = "hub"                    # every node holds it; writes reach the others (edge mode)
//! stale_after_seconds = 300       # at a site this long without its hub: reads say stale
//!
//! [key_value_store.events]
//! type = "spin"
//! sync = "hub"
//! append_only = true              # keys are written once, never replaced or deleted
//!
//! [key_value_store.cache]
//! type = "redis"
//! url = "redis://127.0.0.1:6379"
//! max_value_bytes = 65536
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use kindling_host::check_label;
use serde::Deserialize;

use crate::backend::Limits;

/// How one label is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// SQLite: one database per namespace, in `dir` (relative paths are under the data
    /// directory) or in `<data-dir>/kv/<namespace>/`.
    Sqlite {
        /// The directory holding the label's databases (one per namespace).
        dir: Option<PathBuf>,
    },
    /// A Redis server.
    Redis {
        /// `redis://host:port[/db]`.
        url: String,
    },
}

/// One label's backend and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Where it is kept.
    pub kind: StoreKind,
    /// What it may hold.
    pub limits: Limits,
    /// `sync = "hub"`: a SQLite store every node of the fleet holds, each writing locally and
    /// sending its changes to the others (see `synced.rs`).
    pub synced: bool,
    /// Synced: how long an edge site's copy counts as fresh without word from its hub; past
    /// it, responses of functions that open the label say `kindling-stale` (300 s, the TTL
    /// the seed's edge caches had).
    pub stale_after: Duration,
    /// Synced, `append_only = true`: a key is written once and never replaced or deleted
    /// (events, each under a key of its own); counters still count.
    pub append_only: bool,
}

/// How long a site's copy of a synced label counts as fresh without its hub, by default.
pub const DEFAULT_STALE_AFTER: Duration = Duration::from_secs(300);

/// The fields a `[key_value_store.<label>]` table may have besides `type`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fields {
    /// SQLite: the directory for the label's databases.
    path: Option<PathBuf>,
    /// Redis: the server.
    url: Option<String>,
    /// SQLite: `"hub"` to sync the label between the nodes.
    sync: Option<String>,
    /// Synced: seconds without the hub before reads say they are stale.
    stale_after_seconds: Option<u64>,
    /// Synced: keys are written once.
    append_only: Option<bool>,
    max_key_bytes: Option<usize>,
    max_value_bytes: Option<usize>,
    max_keys: Option<u64>,
    max_bytes: Option<u64>,
}

impl Fields {
    fn limits(&self) -> Limits {
        let default = Limits::default();
        Limits {
            max_key_bytes: self.max_key_bytes.unwrap_or(default.max_key_bytes),
            max_value_bytes: self.max_value_bytes.unwrap_or(default.max_value_bytes),
            max_keys: self.max_keys.unwrap_or(default.max_keys),
            max_bytes: self.max_bytes.unwrap_or(default.max_bytes),
        }
    }
}

/// The largest value a synced store takes (base64 and the change's fields fit a NATS
/// message of 1 MiB, the server's default).
pub(crate) const MAX_SYNCED_VALUE: usize = 512 * 1024;

/// The labels a node offers, from the `key_value_store` table of its runtime config.
pub fn parse_stores(table: Option<&toml::Value>) -> Result<BTreeMap<String, StoreConfig>, String> {
    let mut stores = BTreeMap::new();
    stores.insert(
        "default".to_string(),
        StoreConfig {
            kind: StoreKind::Sqlite { dir: None },
            limits: Limits::default(),
            synced: false,
            stale_after: DEFAULT_STALE_AFTER,
            append_only: false,
        },
    );
    let Some(table) = table else {
        return Ok(stores);
    };
    let table = table
        .as_table()
        .ok_or("[key_value_store] must be a table of labels, [key_value_store.NAME]")?;
    for (label, entry) in table {
        check_label(label).map_err(|why| format!("[key_value_store.{label}]: {why}"))?;
        let mut entry = entry
            .as_table()
            .cloned()
            .ok_or_else(|| format!("[key_value_store.{label}] must be a table"))?;
        let kind = entry
            .remove("type")
            .and_then(|t| t.as_str().map(str::to_string))
            .ok_or_else(|| {
                format!("[key_value_store.{label}] needs type = \"spin\" (SQLite) or \"redis\"")
            })?;
        let fields: Fields =
            toml::Value::Table(entry)
                .try_into()
                .map_err(|err: toml::de::Error| {
                    format!("[key_value_store.{label}]: {}", err.message())
                })?;
        let limits = fields.limits();
        let synced = match fields.sync.as_deref() {
            None => false,
            Some("hub") if kind != "redis" => true,
            Some("hub") => {
                return Err(format!(
                    "[key_value_store.{label}]: sync = \"hub\" is for \"spin\" (SQLite) \
                     stores; a Redis store is one server every node reaches already"
                ));
            }
            Some(other) => {
                return Err(format!(
                    "[key_value_store.{label}]: sync {other:?} is not one Kindling has: write \
                     sync = \"hub\" to keep the label on every node and sync its writes"
                ));
            }
        };
        let stale_after = match fields.stale_after_seconds {
            None => DEFAULT_STALE_AFTER,
            Some(_) if !synced => {
                return Err(format!(
                    "[key_value_store.{label}]: stale_after_seconds is for synced labels; add \
                     sync = \"hub\" or remove it"
                ));
            }
            Some(0) => {
                return Err(format!(
                    "[key_value_store.{label}]: stale_after_seconds must be at least 1"
                ));
            }
            Some(seconds) => Duration::from_secs(seconds),
        };
        let append_only = fields.append_only.unwrap_or(false);
        if append_only && !synced {
            return Err(format!(
                "[key_value_store.{label}]: append_only is for synced labels; add sync = \"hub\" \
                 or remove it"
            ));
        }
        let mut config = match (kind.as_str(), fields.url, fields.path) {
            ("spin" | "sqlite", None, dir) => StoreConfig {
                kind: StoreKind::Sqlite { dir },
                limits,
                synced,
                stale_after,
                append_only,
            },
            ("redis", Some(url), None) => StoreConfig {
                kind: StoreKind::Redis { url },
                limits,
                synced,
                stale_after,
                append_only,
            },
            ("spin" | "sqlite", Some(_), _) => {
                return Err(format!(
                    "[key_value_store.{label}]: a \"spin\" (SQLite) store has no url; did you \
                     mean type = \"redis\"?"
                ));
            }
            ("redis", None, _) => {
                return Err(format!(
                    "[key_value_store.{label}]: a \"redis\" store needs url = \"redis://HOST:PORT\""
                ));
            }
            ("redis", Some(_), Some(_)) => {
                return Err(format!(
                    "[key_value_store.{label}]: a \"redis\" store has no path"
                ));
            }
            (other, _, _) => {
                return Err(format!(
                    "[key_value_store.{label}] type {other:?} is not one Kindling has: use \
                     \"spin\" (SQLite) or \"redis\""
                ));
            }
        };
        if config.synced && config.limits.max_value_bytes > MAX_SYNCED_VALUE {
            if fields.max_value_bytes.is_some() {
                return Err(format!(
                    "[key_value_store.{label}]: a synced store's values travel in NATS \
                     messages (1 MiB by default, base64), so max_value_bytes must be at most \
                     {MAX_SYNCED_VALUE}"
                ));
            }
            config.limits.max_value_bytes = MAX_SYNCED_VALUE;
        }
        if config.limits.max_key_bytes == 0 || config.limits.max_value_bytes == 0 {
            return Err(format!(
                "[key_value_store.{label}]: max_key_bytes and max_value_bytes must be at least 1"
            ));
        }
        stores.insert(label.clone(), config);
    }
    Ok(stores)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BTreeMap<String, StoreConfig>, String> {
        let value: toml::Table = toml::from_str(text).unwrap();
        parse_stores(value.get("key_value_store"))
    }

    #[test]
    fn labels_map_to_backends_and_default_always_exists() {
        let stores = parse("").unwrap();
        assert_eq!(stores["default"].kind, StoreKind::Sqlite { dir: None });
        let stores = parse(
            "[key_value_store.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379\"\n\
             max_value_bytes = 10\n",
        )
        .unwrap();
        assert_eq!(
            stores["cache"].kind,
            StoreKind::Redis {
                url: "redis://127.0.0.1:6379".into()
            }
        );
        assert_eq!(stores["cache"].limits.max_value_bytes, 10);
        assert!(stores.contains_key("default"));
        assert!(!stores["default"].synced);
        let stores =
            parse("[key_value_store.progress]\ntype = \"spin\"\nsync = \"hub\"\n").unwrap();
        assert!(stores["progress"].synced);
        assert_eq!(stores["progress"].stale_after, DEFAULT_STALE_AFTER);
        let stores = parse(
            "[key_value_store.progress]\ntype = \"spin\"\nsync = \"hub\"\nstale_after_seconds = 60\n",
        )
        .unwrap();
        assert_eq!(stores["progress"].stale_after, Duration::from_secs(60));
        assert!(!stores["progress"].append_only);
        let stores = parse(
            "[key_value_store.events]\ntype = \"spin\"\nsync = \"hub\"\nappend_only = true\n",
        )
        .unwrap();
        assert!(stores["events"].append_only);
        let err =
            parse("[key_value_store.events]\ntype = \"spin\"\nappend_only = true\n").unwrap_err();
        assert!(
            err.contains("[key_value_store.events]: append_only is for synced labels"),
            "{err}"
        );
    }

    #[test]
    fn mistakes_name_the_label_and_the_fix() {
        let err = parse("[key_value_store.x]\nurl = \"r\"\n").unwrap_err();
        assert!(err.contains("needs type"), "{err}");
        let err = parse("[key_value_store.x]\ntype = \"azure_cosmos\"\n").unwrap_err();
        assert!(err.contains("\"spin\" (SQLite) or \"redis\""), "{err}");
        let err = parse("[key_value_store.x]\ntype = \"redis\"\n").unwrap_err();
        assert!(
            err.contains("[key_value_store.x]") && err.contains("url"),
            "{err}"
        );
        let err = parse("[key_value_store.x]\ntype = \"spin\"\nmax_keyz = 1\n").unwrap_err();
        assert!(err.contains("max_keyz"), "{err}");
        let err = parse("[key_value_store.\"a/b\"]\ntype = \"spin\"\n").unwrap_err();
        assert!(err.contains("letters, digits"), "{err}");
        let err =
            parse("[key_value_store.x]\ntype = \"redis\"\nurl = \"redis://h\"\nsync = \"hub\"\n")
                .unwrap_err();
        assert!(err.contains("is for \"spin\""), "{err}");
        let err =
            parse("[key_value_store.x]\ntype = \"spin\"\nstale_after_seconds = 9\n").unwrap_err();
        assert!(err.contains("sync = \"hub\""), "{err}");
        let err = parse(
            "[key_value_store.x]\ntype = \"spin\"\nsync = \"hub\"\nstale_after_seconds = 0\n",
        )
        .unwrap_err();
        assert!(err.contains("at least 1"), "{err}");
        let err = parse("[key_value_store.x]\ntype = \"spin\"\nsync = \"peers\"\n").unwrap_err();
        assert!(err.contains("sync = \"hub\""), "{err}");
    }
}
