//! The SQLite capability: the labels a node offers, the grants a function is deployed with
//! (`sqlite_databases`, `--sqlite LABEL`), and the databases themselves, one per namespace and
//! label, shared by every function of the namespace granted the label, as a Spin app's
//! components share theirs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kindling_host::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder, Linkers,
    Metric, Opened, grant_labels,
};
use serde::{Deserialize, Serialize};

use crate::config::{DatabaseConfig, parse_databases};
use crate::database::Database;
use crate::state::SqlState;

/// The interfaces `link` adds (the world in `wit/world.wit`).
pub(crate) const INTERFACES: &[&str] = &["fermyon:spin/sqlite@2.0.0", "spin:sqlite/sqlite@3.1.0"];

/// The SQLite capability of a node.
#[derive(Clone)]
pub struct Sqlite {
    shared: Arc<Shared>,
}

struct Shared {
    data_dir: PathBuf,
    labels: BTreeMap<String, DatabaseConfig>,
    /// Databases opened so far, by namespace and label.
    open: Opened<Database>,
    /// Statements that may run at once across every database.
    statements: Arc<tokio::sync::Semaphore>,
}

/// Statements guests may run at once on a node; each holds a blocking thread while it runs.
const CONCURRENT_STATEMENTS: usize = 64;

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("labels", &self.shared.labels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// The capability over `data_dir`, with the labels of the runtime config's
    /// `[sqlite_database]` table (the whole file's table is passed; `None` without a file).
    pub fn new(data_dir: PathBuf, runtime_config: Option<&toml::Table>) -> Result<Self, String> {
        let labels = parse_databases(runtime_config.and_then(|c| c.get("sqlite_database")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                data_dir,
                labels,
                open: Opened::default(),
                statements: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_STATEMENTS)),
            }),
        })
    }

    /// The labels this node offers.
    pub fn labels(&self) -> Vec<String> {
        self.shared.labels.keys().cloned().collect()
    }

    /// The file of `namespace`'s `label`.
    pub(crate) fn path(&self, config: &DatabaseConfig, namespace: &str, label: &str) -> PathBuf {
        self.shared
            .data_dir
            .join(&config.dir)
            .join(namespace)
            .join(format!("{label}.db"))
    }

    /// The labels and their configuration.
    pub(crate) fn label_configs(&self) -> &BTreeMap<String, DatabaseConfig> {
        &self.shared.labels
    }

    /// The database of `namespace`'s `label`, created on first use. Blocking.
    pub fn database(&self, namespace: &str, label: &str) -> Result<Arc<Database>, String> {
        let config = self.shared.labels.get(label).ok_or_else(|| {
            format!(
                "no SQLite database is labelled {label:?} on this node; the labels are {}: \
                 define it in the runtime config as [sqlite_database.{label}]",
                self.labels().join(", ")
            )
        })?;
        self.shared.open.get_or_open(namespace, label, || {
            Ok(Arc::new(Database::open(
                &self.path(config, namespace, label),
                config.limits,
                self.shared.statements.clone(),
            )?))
        })
    }

    /// The database of `namespace`'s `label` if it exists already (a function granted it was
    /// deployed), never creating one. Blocking.
    pub fn existing_database(&self, namespace: &str, label: &str) -> Result<Arc<Database>, String> {
        let exists = self
            .shared
            .labels
            .get(label)
            .is_some_and(|config| self.path(config, namespace, label).is_file());
        if !exists {
            return Err(format!(
                "namespace {namespace:?} has no SQLite database {label:?}: it is made when a \
                 function of the namespace granted it (--sqlite {label}) is deployed"
            ));
        }
        self.database(namespace, label)
    }

    /// Every database opened so far: namespace, label and database, in order.
    pub fn opened(&self) -> Vec<(String, String, Arc<Database>)> {
        self.shared.open.all()
    }
}

/// `{"sqlite_databases": ["default"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqliteSection {
    /// The labels the function may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sqlite_databases: Vec<String>,
}

/// The databases a function version was granted, by label.
#[derive(Debug, Default)]
pub struct Granted {
    pub(crate) databases: BTreeMap<String, Arc<Database>>,
}

impl Capability for Sqlite {
    type Section = SqliteSection;
    type Config = Arc<Granted>;
    type State = SqlState;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        vec![FieldSchema {
            name: "sqlite_databases",
            schema: serde_json::json!({
                "type": "array",
                "description": "SQLite database labels the function may open (`default` always exists; others are defined in the node's runtime config); databases belong to the function's namespace",
                "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"}
            }),
        }]
    }

    fn interfaces(&self) -> &'static [&'static str] {
        INTERFACES
    }

    fn concurrent_interfaces(&self) -> &'static [&'static str] {
        &["spin:sqlite/sqlite@3.1.0"]
    }

    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error> {
        let concurrent = linkers.concurrent();
        crate::host::add_to_linker(linkers.component, concurrent)
    }

    fn configure(
        &self,
        section: &mut SqliteSection,
        function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        let databases = grant_labels("sqlite_databases", &section.sqlite_databases, |label| {
            self.database(function.namespace, label)
        })?;
        Ok(Arc::new(Granted { databases }))
    }

    fn prepare(
        &self,
        config: &Self::Config,
        _: &mut InstanceBuilder<'_>,
    ) -> Result<SqlState, String> {
        Ok(SqlState::new(config.clone()))
    }

    fn inspect(&self, section: &SqliteSection) -> Vec<(String, String)> {
        if section.sqlite_databases.is_empty() {
            return Vec::new();
        }
        vec![("sqlite".into(), section.sqlite_databases.join(" "))]
    }

    fn back_up(&self, dest: &std::path::Path) -> Result<Vec<String>, String> {
        crate::backup::back_up(self, dest)
    }

    fn restore(&self, src: &std::path::Path) -> Result<Vec<String>, String> {
        crate::backup::restore(self, src)
    }

    fn metrics(&self) -> Vec<Metric> {
        let samples = self
            .opened()
            .into_iter()
            .map(|(namespace, label, database)| (vec![namespace, label], database.bytes() as f64))
            .collect();
        vec![Metric {
            name: "kindling_sqlite_bytes",
            help: "Bytes of a guest SQLite database on disk, its write-ahead log included",
            counter: false,
            labels: &["namespace", "label"],
            samples,
        }]
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![DeployFlag {
            long: "sqlite",
            short: None,
            value_name: "LABEL",
            help: "A SQLite database the function may open, such as default (repeatable)",
            field: "sqlite_databases",
            form: FlagForm::List,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::INTERFACES;

    /// What the capability says it links is what its world imports.
    #[test]
    fn the_interface_list_is_the_worlds_imports() {
        let mut listed = INTERFACES.to_vec();
        listed.sort_unstable();
        assert_eq!(
            kindling_host::world_imports(include_str!("../wit/world.wit")),
            listed
        );
    }
}
