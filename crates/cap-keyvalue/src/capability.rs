//! The key-value capability: the labels a node offers, the grants a function is deployed with
//! (`key_value_stores`, `--key-value LABEL`), and the stores themselves, shared by every
//! function of a namespace granted the same label, as a Spin app's components share theirs.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use kindling_host::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder, Linkers,
    Metric, Opened, grant_labels,
};
use serde::{Deserialize, Serialize};

use crate::backend::{Backend, Usage};
use crate::config::{StoreConfig, StoreKind, parse_stores};
use crate::counted::{Counted, OPERATIONS};
use crate::redis::RedisStore;
use crate::sqlite::SqliteStore;
use crate::state::KvState;
use crate::synced::SyncedStore;
use crate::synced_status::SyncStatus;

/// The interfaces `link` adds (the worlds in `wit/world.wit`).
pub(crate) const INTERFACES: &[&str] = &[
    "fermyon:spin/key-value@2.0.0",
    "spin:key-value/key-value@3.0.0",
    "wasi:keyvalue/store@0.2.0-draft2",
    "wasi:keyvalue/atomics@0.2.0-draft2",
    "wasi:keyvalue/batch@0.2.0-draft2",
    "wasi:keyvalue/store@0.2.0-draft",
    "wasi:keyvalue/atomics@0.2.0-draft",
    "wasi:keyvalue/batch@0.2.0-draft",
];

/// The key-value capability of a node.
#[derive(Clone)]
pub struct KeyValue {
    shared: Arc<Shared>,
}

struct Shared {
    data_dir: PathBuf,
    labels: BTreeMap<String, StoreConfig>,
    /// Stores opened so far, by namespace and label.
    open: Opened<Counted>,
    /// The synced ones among them.
    synced: Opened<SyncedStore>,
    /// The name that stamps this node's writes to synced stores.
    node_name: String,
    /// Woken when a synced store's outbox gains a change.
    outbox: Arc<tokio::sync::Notify>,
    /// What the node's sync last said of its link.
    status: SyncStatus,
}

impl std::fmt::Debug for KeyValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyValue")
            .field("labels", &self.shared.labels.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KeyValue {
    /// The capability over `data_dir`, with the labels of the runtime config's
    /// `[key_value_store]` table (the whole file's table is passed; `None` without a file).
    pub fn new(data_dir: PathBuf, runtime_config: Option<&toml::Table>) -> Result<Self, String> {
        let labels = parse_stores(runtime_config.and_then(|c| c.get("key_value_store")))?;
        Ok(Self {
            shared: Arc::new(Shared {
                data_dir,
                labels,
                open: Opened::default(),
                synced: Opened::default(),
                node_name: "kindling".into(),
                outbox: Arc::default(),
                status: SyncStatus::default(),
            }),
        })
    }

    /// Names the node whose writes to synced stores this capability stamps (`--node-name`;
    /// every node of a fleet needs its own). Call it before the capability is cloned.
    ///
    /// # Panics
    /// If the capability was cloned already.
    pub fn named(mut self, node: &str) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("KeyValue::named is called before the capability is shared")
            .node_name = node.to_string();
        self
    }

    /// The labels marked `sync = "hub"`.
    pub fn synced_labels(&self) -> Vec<String> {
        let labels = self.shared.labels.iter();
        labels
            .filter(|(_, config)| config.synced)
            .map(|(label, _)| label.clone())
            .collect()
    }

    /// The synced store of `namespace`'s `label`, opened on first use (blocking); guests of
    /// the namespace granted the label use the same one.
    pub fn synced_store(&self, namespace: &str, label: &str) -> Result<Arc<SyncedStore>, String> {
        if !kindling_host::is_namespace(namespace) {
            return Err(format!("{namespace:?} is not a namespace name"));
        }
        if !self.synced_labels().iter().any(|l| l == label) {
            return Err(format!(
                "key-value label {label:?} is not synced on this node; mark it sync = \"hub\" \
                 in the runtime config"
            ));
        }
        self.store(namespace, label)?;
        self.shared
            .synced
            .all()
            .into_iter()
            .find(|(n, l, _)| n == namespace && l == label)
            .map(|(_, _, store)| store)
            .ok_or_else(|| format!("the synced store {namespace}/{label} did not open"))
    }

    /// Every synced store this node holds, opened (blocking): after a restart, those with
    /// changes still to send.
    pub fn open_synced(&self) -> Result<Vec<(String, String, Arc<SyncedStore>)>, String> {
        for label in self.synced_labels() {
            let StoreKind::Sqlite { dir } = &self.shared.labels[&label].kind else {
                continue;
            };
            let dir = self.sqlite_dir(dir.as_deref());
            for namespace in kindling_host::namespace_dirs(&dir)? {
                if dir.join(&namespace).join(format!("{label}.db")).is_file()
                    && let Err(err) = self.synced_store(&namespace, &label)
                {
                    // The others still send what they hold.
                    tracing::error!(%namespace, %label, error = %err,
                        "a synced store does not open; its changes wait in its outbox");
                }
            }
        }
        Ok(self.shared.synced.all())
    }

    /// The synced stores opened so far.
    pub fn synced_opened(&self) -> Vec<(String, String, Arc<SyncedStore>)> {
        self.shared.synced.all()
    }

    /// Woken whenever a write adds a change to a synced store's outbox.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.shared.outbox.clone()
    }

    /// The node's data directory, where the sync keeps what it must remember across restarts.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.shared.data_dir
    }

    /// Where the node's sync reports its link, for `/metrics`.
    pub fn sync_status(&self) -> &SyncStatus {
        &self.shared.status
    }

    /// The labels this node offers.
    pub fn labels(&self) -> Vec<String> {
        self.shared.labels.keys().cloned().collect()
    }

    /// The store of `namespace`'s `label`, opened on first use (blocking for SQLite).
    pub fn store(&self, namespace: &str, label: &str) -> Result<Arc<dyn Backend>, String> {
        let config = self.shared.labels.get(label).ok_or_else(|| {
            format!(
                "no key-value store is labelled {label:?} on this node; the labels are {}: \
                 define it in the runtime config as [key_value_store.{label}]",
                self.labels().join(", ")
            )
        })?;
        let store = self.shared.open.get_or_open(namespace, label, || {
            let store: Arc<dyn Backend> = match &config.kind {
                StoreKind::Sqlite { dir } if config.synced => {
                    let path = self.sqlite_path(dir.as_deref(), namespace, label);
                    let shared = &self.shared;
                    let synced = shared.synced.get_or_open(namespace, label, || {
                        let store = SyncedStore::open(
                            &path,
                            config.limits,
                            &shared.node_name,
                            shared.outbox.clone(),
                        )?
                        .append_only(config.append_only);
                        Ok(Arc::new(store))
                    })?;
                    Arc::new(SyncedStore::clone(&synced))
                }
                StoreKind::Sqlite { dir } => Arc::new(SqliteStore::open(
                    &self.sqlite_path(dir.as_deref(), namespace, label),
                    config.limits,
                )?),
                StoreKind::Redis { url } => {
                    Arc::new(RedisStore::new(url, namespace, label, config.limits)?)
                }
            };
            Ok(Arc::new(Counted::new(store)))
        })?;
        Ok(store as Arc<dyn Backend>)
    }

    /// The directory of a SQLite label's databases, one subdirectory per namespace.
    pub(crate) fn sqlite_dir(&self, dir: Option<&std::path::Path>) -> PathBuf {
        match dir {
            Some(dir) => self.shared.data_dir.join(dir),
            None => self.shared.data_dir.join("kv"),
        }
    }

    /// The database of `namespace`'s `label`.
    pub(crate) fn sqlite_path(
        &self,
        dir: Option<&std::path::Path>,
        namespace: &str,
        label: &str,
    ) -> PathBuf {
        self.sqlite_dir(dir)
            .join(namespace)
            .join(format!("{label}.db"))
    }

    /// The labels and their configuration.
    pub(crate) fn label_configs(&self) -> &BTreeMap<String, StoreConfig> {
        &self.shared.labels
    }

    fn opened(&self) -> Vec<(String, String, Arc<Counted>)> {
        self.shared.open.all()
    }

    /// How big every store opened so far is: namespace, label and usage.
    pub async fn usage(&self) -> Vec<(String, String, Usage)> {
        let mut usage = Vec::new();
        for (namespace, label, store) in self.opened() {
            if let Ok(now) = store.usage().await {
                usage.push((namespace, label, now));
            }
        }
        usage
    }
}

impl KeyValue {
    /// The figures of synced stores and of the sync's links.
    fn sync_metrics(&self, backlog: Vec<(Vec<String>, f64)>) -> Vec<Metric> {
        let status = self.sync_status();
        let (sent, applied) = status.counts();
        let now = std::time::SystemTime::now();
        let links = status.links();
        let stream = status.stream_size();
        let per_link = |value: &dyn Fn(&crate::LinkReport) -> Option<f64>| {
            links
                .iter()
                .filter_map(|link| value(link).map(|v| (vec![link.peer.clone()], v)))
                .collect::<Vec<_>>()
        };
        vec![
            Metric {
                name: "kindling_kv_sync_backlog",
                help: "Changes to a synced key-value store waiting in its outbox to be sent",
                counter: false,
                labels: &["namespace", "label"],
                samples: backlog,
            },
            Metric {
                name: "kindling_kv_sync_changes_total",
                help: "Changes to synced key-value stores sent from this node and applied here",
                counter: true,
                labels: &["direction"],
                samples: vec![
                    (vec!["sent".into()], sent as f64),
                    (vec!["applied".into()], applied as f64),
                ],
            },
            Metric {
                name: "kindling_sync_link_up",
                help: "Whether changes flow on the sync's link to a peer (an edge's hub, a hub's edge)",
                counter: false,
                labels: &["peer"],
                samples: per_link(&|link| Some(if link.up { 1.0 } else { 0.0 })),
            },
            Metric {
                name: "kindling_sync_last_contact_seconds",
                help: "Seconds since the peer was last heard from",
                counter: false,
                labels: &["peer"],
                samples: per_link(&|link| {
                    let since = now.duration_since(link.last_contact?).unwrap_or_default();
                    Some(since.as_secs_f64())
                }),
            },
            Metric {
                name: "kindling_sync_lag",
                help: "Changes the peer holds that this node has not received yet",
                counter: false,
                labels: &["peer"],
                samples: per_link(&|link| Some(link.lag as f64)),
            },
            Metric {
                name: "kindling_sync_stream_messages",
                help: "Changes held by the stream this node applies from (the hub's, or a site's \
                       mirror of it): one per key, kind and writing node",
                counter: false,
                labels: &[],
                samples: stream
                    .map(|(messages, _)| (vec![], messages as f64))
                    .into_iter()
                    .collect(),
            },
            Metric {
                name: "kindling_sync_stream_bytes",
                help: "Bytes held by the stream this node applies from",
                counter: false,
                labels: &[],
                samples: stream
                    .map(|(_, bytes)| (vec![], bytes as f64))
                    .into_iter()
                    .collect(),
            },
        ]
    }
}

/// `{"key_value_stores": ["default"]}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyValueSection {
    /// The labels the function may open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub key_value_stores: Vec<String>,
}

/// The stores a function version was granted, by label.
#[derive(Debug, Default)]
pub struct Granted {
    pub(crate) stores: BTreeMap<String, Arc<dyn Backend>>,
    /// The synced ones among them, with how long a site's copy counts as fresh.
    pub(crate) synced: BTreeMap<String, std::time::Duration>,
    /// The capability, to ask how long the site has been without its hub (with `synced`).
    pub(crate) kv: Option<KeyValue>,
}

impl Capability for KeyValue {
    type Section = KeyValueSection;
    type Config = Arc<Granted>;
    type State = KvState;

    fn name(&self) -> &'static str {
        "key-value"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        vec![FieldSchema {
            name: "key_value_stores",
            schema: serde_json::json!({
                "type": "array",
                "description": "Key-value store labels the function may open (`default` always exists; others are defined in the node's runtime config); stores belong to the function's namespace",
                "items": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,63}$"}
            }),
        }]
    }

    fn interfaces(&self) -> &'static [&'static str] {
        INTERFACES
    }

    fn concurrent_interfaces(&self) -> &'static [&'static str] {
        &["spin:key-value/key-value@3.0.0"]
    }

    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error> {
        crate::host::add_to_linker(linkers.component)?;
        // Spin 3's key-value functions are `async func`s.
        if linkers.concurrent() {
            crate::spin3::add_to_linker(linkers.component)?;
        }
        Ok(())
    }

    fn configure(
        &self,
        section: &mut KeyValueSection,
        function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        let stores = grant_labels("key_value_stores", &section.key_value_stores, |label| {
            self.store(function.namespace, label)
        })?;
        let synced: BTreeMap<String, std::time::Duration> = (stores.keys())
            .filter_map(|label| {
                let config = self.shared.labels.get(label).filter(|c| c.synced)?;
                Some((label.clone(), config.stale_after))
            })
            .collect();
        let kv = (!synced.is_empty()).then(|| self.clone());
        Ok(Arc::new(Granted { stores, synced, kv }))
    }

    fn prepare(
        &self,
        config: &Self::Config,
        instance: &mut InstanceBuilder<'_>,
    ) -> Result<KvState, String> {
        // Only a function granted a synced label may have to say its data is stale; the header
        // is the host's, whatever the guest writes.
        let headers = (config.kv.is_some()).then(|| {
            let headers = instance.invocation().response_headers.clone();
            headers.claim(http::HeaderName::from_static(crate::state::STALE_HEADER));
            headers
        });
        Ok(KvState::new(config.clone(), headers))
    }

    fn inspect(&self, section: &KeyValueSection) -> Vec<(String, String)> {
        if section.key_value_stores.is_empty() {
            return Vec::new();
        }
        vec![("key-value".into(), section.key_value_stores.join(" "))]
    }

    fn back_up(&self, dest: &std::path::Path) -> Result<Vec<String>, String> {
        crate::backup::back_up(self, dest)
    }

    fn restore(&self, src: &std::path::Path) -> Result<Vec<String>, String> {
        crate::backup::restore(self, src)
    }

    fn metrics(&self) -> Vec<Metric> {
        let stores = self.opened();
        // Sizes are read from the stores (SQLite or Redis) now; this runs on a blocking thread.
        let runtime = tokio::runtime::Handle::try_current().ok();
        let mut keys = Vec::new();
        let mut bytes = Vec::new();
        let mut operations = Vec::new();
        for (namespace, label, store) in &stores {
            let labels = vec![namespace.clone(), label.clone()];
            if let Some(Ok(usage)) = runtime.as_ref().map(|rt| rt.block_on(store.usage())) {
                keys.push((labels.clone(), usage.keys as f64));
                bytes.push((labels.clone(), usage.bytes as f64));
            }
            for (operation, count) in OPERATIONS.iter().zip(store.counts()) {
                let mut labels = labels.clone();
                labels.push(operation.to_string());
                operations.push((labels, count as f64));
            }
        }
        let mut backlog = Vec::new();
        for (namespace, label, store) in self.shared.synced.all() {
            if let Some(Ok(waiting)) = runtime.as_ref().map(|rt| rt.block_on(store.backlog())) {
                backlog.push((vec![namespace, label], waiting as f64));
            }
        }
        let mut metrics = vec![
            Metric {
                name: "kindling_kv_keys",
                help: "Keys held by a key-value store",
                counter: false,
                labels: &["namespace", "label"],
                samples: keys,
            },
            Metric {
                name: "kindling_kv_bytes",
                help: "Bytes of keys and values held by a key-value store",
                counter: false,
                labels: &["namespace", "label"],
                samples: bytes,
            },
            Metric {
                name: "kindling_kv_operations_total",
                help: "Key-value operations guests made, by store and operation",
                counter: true,
                labels: &["namespace", "label", "operation"],
                samples: operations,
            },
        ];
        if !self.synced_labels().is_empty() {
            metrics.extend(self.sync_metrics(backlog));
        }
        metrics
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![DeployFlag {
            long: "key-value",
            short: None,
            value_name: "LABEL",
            help: "A key-value store the function may open, such as default (repeatable)",
            field: "key_value_stores",
            form: FlagForm::List,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::INTERFACES;

    /// What the capability says it links is what its worlds import.
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
