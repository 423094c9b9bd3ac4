//! `kindling serve --sync ...`: the flags of edge autonomy (synced key-value labels), and the
//! node name every mode shares.

use std::time::Duration;

use clap::{Args, ValueEnum};
use kindling_cap_keyvalue::KeyValue;
use kindling_edge::{Role, SyncConfig};

use crate::UsageError;
use crate::units::parse_duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SyncRole {
    /// A site that serves on its own, its NATS a leaf node of the hub's
    Edge,
    /// A node of the hub, which every edge's changes reach
    Hub,
}

/// Syncing `sync = "hub"` key-value labels between edge sites and their hub.
#[derive(Debug, Args)]
pub(crate) struct EdgeArgs {
    /// Sync the key-value labels marked sync = "hub" through this NATS server (JetStream on):
    /// at an edge, its own leaf node (JetStream domain = --node-name); at the hub, a hub server
    #[arg(long, env = "KINDLING_SYNC", value_name = "URL")]
    sync: Option<String>,
    /// Whether this node is an edge site or a node of the hub
    #[arg(long, env = "KINDLING_SYNC_ROLE", value_enum, default_value_t = SyncRole::Edge)]
    sync_role: SyncRole,
    /// The hub's JetStream domain, as its NATS servers name it
    #[arg(long, env = "KINDLING_SYNC_HUB_DOMAIN", default_value = "hub")]
    sync_hub_domain: String,
    /// How often an edge reports to the hub; three missed reports mark the link down
    #[arg(long, env = "KINDLING_SYNC_HEARTBEAT", default_value = "2s", value_parser = parse_duration)]
    sync_heartbeat: Duration,
    /// At the hub's nodes: replicas of the hub's stream of every change on its NATS servers (1,
    /// 3 or 5; the same on every hub node): 3 on three NATS servers keeps it through the loss
    /// of one
    #[arg(long, env = "KINDLING_SYNC_REPLICAS", default_value_t = 1)]
    sync_replicas: usize,
}

impl EdgeArgs {
    /// The sync's settings, checked, or `None` without `--sync`.
    pub(crate) fn config(&self, node: &str) -> Result<Option<SyncConfig>, UsageError> {
        let Some(url) = &self.sync else {
            return Ok(None);
        };
        let config = SyncConfig {
            url: url.clone(),
            node: node.to_string(),
            role: match self.sync_role {
                SyncRole::Hub => Role::Hub,
                SyncRole::Edge => Role::Edge {
                    hub_domain: self.sync_hub_domain.clone(),
                },
            },
            heartbeat: self.sync_heartbeat,
            replicas: self.sync_replicas,
        };
        config
            .validate()
            .map_err(|err| UsageError(err.to_string()))?;
        Ok(Some(config))
    }
}

/// Starts the sync when asked for, and says what it does.
pub(crate) async fn start(config: Option<SyncConfig>, kv: Option<&KeyValue>) -> anyhow::Result<()> {
    let labels = kv.map(KeyValue::synced_labels).unwrap_or_default();
    let Some(config) = config else {
        if !labels.is_empty() {
            tracing::warn!(
                labels = %labels.join(","),
                "key-value labels are marked sync = \"hub\" but the node runs without --sync: \
                 their writes wait in each store's outbox until it does"
            );
        }
        return Ok(());
    };
    let Some(kv) = kv else {
        return Ok(());
    };
    if labels.is_empty() {
        return Err(UsageError(
            "--sync is given, but no key-value label is marked sync = \"hub\" in the runtime \
             config: mark the labels to sync, or drop --sync"
                .into(),
        )
        .into());
    }
    let role = match config.role {
        Role::Hub => "hub".to_string(),
        Role::Edge { ref hub_domain } => format!("edge of {hub_domain}"),
    };
    let url = config.url.clone();
    kindling_edge::start(config, kv.clone()).await?;
    super::serve::announce(format_args!(
        "kindling: syncing key-value {} through {url} ({role})",
        labels.join(", ")
    ));
    Ok(())
}

/// This node's name: `--node-name`, or the host name.
pub(crate) fn node_name(flag: Option<&str>) -> Result<String, UsageError> {
    match flag {
        Some(name) if !name.trim().is_empty() => Ok(name.trim().to_string()),
        Some(_) => Err(UsageError("--node-name must not be empty".into())),
        None => Ok(std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|name| name.trim().to_string())
            .ok()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "kindling".into())),
    }
}
