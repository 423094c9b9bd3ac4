//! `kindling kv get|set|rm|ls STORE [KEY] [VALUE]`: a guest's key-value data, from outside.
//! STORE is a function (its namespace and its one granted label, or `--label`) or
//! `NAMESPACE/LABEL`.

use clap::{Args, Subcommand};

use super::{OutputArgs, ServerArgs};
use crate::UsageError;
use crate::client::Client;
use crate::output::{outln, print_json, print_table, write_bytes};
use crate::units::format_size;

#[derive(Debug, Args)]
pub(crate) struct KvCommand {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Print a key's value
    Get {
        #[command(flatten)]
        store: StoreArg,
        /// The key
        key: String,
    },
    /// Set a key to a value (`@FILE` reads it from a file)
    Set {
        #[command(flatten)]
        store: StoreArg,
        /// The key
        key: String,
        /// The value
        value: String,
    },
    /// Remove a key
    Rm {
        #[command(flatten)]
        store: StoreArg,
        /// The key
        key: String,
    },
    /// List a store's keys, or every store without one
    Ls {
        /// A function or NAMESPACE/LABEL; without it, the stores and their sizes
        store: Option<String>,
        /// The label, when the function was granted more than one
        #[arg(long)]
        label: Option<String>,
    },
}

#[derive(Debug, Args)]
struct StoreArg {
    /// A function (its namespace and granted label) or NAMESPACE/LABEL
    store: String,
    /// The label, when the function was granted more than one
    #[arg(long)]
    label: Option<String>,
}

impl KvCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        match self.action {
            Action::Get { store, key } => {
                let store = resolve(&client, &store.store, store.label.as_deref()).await?;
                match client.kv_get(&store, &key).await? {
                    Some(value) => write_bytes(&value),
                    None => {
                        return Err(anyhow::anyhow!("{store} has no key {key:?}"));
                    }
                }
            }
            Action::Set { store, key, value } => {
                let store = resolve(&client, &store.store, store.label.as_deref()).await?;
                let value = match value.strip_prefix('@') {
                    Some(path) => std::fs::read(path)
                        .map_err(|err| UsageError(format!("cannot read {path}: {err}")))?,
                    None => value.into_bytes(),
                };
                client.kv_put(&store, &key, Some(value)).await?;
                if !self.output.json {
                    outln!("set {key:?} in {store}");
                }
            }
            Action::Rm { store, key } => {
                let store = resolve(&client, &store.store, store.label.as_deref()).await?;
                client.kv_put(&store, &key, None).await?;
                if !self.output.json {
                    outln!("removed {key:?} from {store}");
                }
            }
            Action::Ls { store: None, .. } => {
                let stores = client.kv_stores().await?;
                if self.output.json {
                    return print_json(&stores);
                }
                let rows: Vec<Vec<String>> = stores
                    .iter()
                    .map(|s| {
                        vec![
                            format!("{}/{}", s.namespace, s.label),
                            s.keys.to_string(),
                            format_size(s.bytes),
                        ]
                    })
                    .collect();
                print_table(&["STORE", "KEYS", "SIZE"], &rows);
            }
            Action::Ls {
                store: Some(store),
                label,
            } => {
                let store = resolve(&client, &store, label.as_deref()).await?;
                let mut keys = Vec::new();
                let mut after: Option<String> = None;
                loop {
                    let page = client.kv_keys(&store, after.as_deref()).await?;
                    keys.extend(page.keys);
                    match page.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                if self.output.json {
                    return print_json(&keys);
                }
                for key in keys {
                    outln!("{key}");
                }
            }
        }
        Ok(())
    }
}

/// What a function is granted labels of: its configuration field, the deploy flag that fills
/// it, and what one is called.
pub(super) struct Grant {
    pub(super) field: &'static str,
    pub(super) flag: &'static str,
    pub(super) what: &'static str,
}

const KEY_VALUE: Grant = Grant {
    field: "key_value_stores",
    flag: "--key-value",
    what: "key-value store",
};

async fn resolve(client: &Client, store: &str, label: Option<&str>) -> anyhow::Result<String> {
    resolve_label(client, store, label, &KEY_VALUE).await
}

/// `NAMESPACE/LABEL`, from a function name (its namespace and its one granted label, or
/// `label`) or as given.
pub(super) async fn resolve_label(
    client: &Client,
    store: &str,
    label: Option<&str>,
    grant: &Grant,
) -> anyhow::Result<String> {
    if let Some((namespace, given)) = store.split_once('/') {
        if label.is_some() {
            return Err(UsageError(
                "--label is for a function; NAMESPACE/LABEL names the label already".into(),
            )
            .into());
        }
        return Ok(format!("{namespace}/{given}"));
    }
    let function = client.function(store).await?;
    let granted: Vec<String> = function
        .config
        .sections
        .get(grant.field)
        .and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default();
    let label = match (label, granted.as_slice()) {
        (Some(label), _) if granted.iter().any(|g| g == label) => label.to_string(),
        (Some(label), _) => {
            return Err(UsageError(format!(
                "function {store:?} was not granted the {} {label:?}; it was granted: {}",
                grant.what,
                if granted.is_empty() {
                    "none".to_string()
                } else {
                    granted.join(", ")
                }
            ))
            .into());
        }
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(UsageError(format!(
                "function {store:?} was granted no {} (deploy it with {} LABEL)",
                grant.what, grant.flag
            ))
            .into());
        }
        (None, many) => {
            return Err(UsageError(format!(
                "function {store:?} was granted {}: say which with --label",
                many.join(", ")
            ))
            .into());
        }
    };
    Ok(format!("{}/{label}", function.config.namespace()))
}
