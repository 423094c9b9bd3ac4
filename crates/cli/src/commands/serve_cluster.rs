//! `kindling serve --cluster ...`: the flags of cluster mode, and the configuration they make.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kindling_access::Access;
use kindling_cap_variables::Variables;
use kindling_cluster::{Cluster, ClusterConfig, ClusterKey, QueueSettings};
use kindling_events::{Events, EventsConfig};
use kindling_node::Node;
use kindling_registry::{AccessStore, SqliteCatalog};

use crate::UsageError;
use crate::units::parse_duration;

/// Cluster mode; without `--cluster` the node runs alone on its SQLite registry.
#[derive(Debug, Args)]
pub(crate) struct ClusterArgs {
    /// Join a cluster through these NATS servers (comma-separated nats:// URLs, JetStream on):
    /// functions are shared through it, and this node's registry is a full local copy
    #[arg(long, env = "KINDLING_CLUSTER", value_name = "URLS")]
    cluster: Option<String>,
    /// Where this node runs (a region, a site), shown by `kindling nodes`
    #[arg(long, env = "KINDLING_ZONE", requires = "cluster")]
    zone: Option<String>,
    /// The JetStream domain of the cluster's registry, when this node's NATS server is a leaf
    /// node of the cluster's (an edge site: the hub's domain, such as hub)
    #[arg(long, env = "KINDLING_CLUSTER_DOMAIN", requires = "cluster")]
    cluster_domain: Option<String>,
    /// NATS credentials file (.creds) for the cluster's servers
    #[arg(
        long,
        env = "KINDLING_CLUSTER_CREDS",
        value_name = "FILE",
        requires = "cluster"
    )]
    cluster_creds: Option<PathBuf>,
    /// NATS token for the cluster's servers
    #[arg(
        long,
        env = "KINDLING_CLUSTER_TOKEN",
        hide_env_values = true,
        requires = "cluster"
    )]
    cluster_token: Option<String>,
    /// Replicas of the cluster's JetStream buckets: 1, 3 or 5 (a single NATS server keeps one)
    #[arg(long, env = "KINDLING_CLUSTER_REPLICAS", default_value_t = 3)]
    cluster_replicas: usize,
    /// How often this node reports itself to the others; three missed reports make it stale
    #[arg(long, env = "KINDLING_CLUSTER_HEARTBEAT", default_value = "2s", value_parser = parse_duration)]
    cluster_heartbeat: Duration,
    /// Pass a request this node has no room for to the least loaded peer with room, instead
    /// of answering 503 (one hop at most; bodies up to a NATS message)
    #[arg(
        long,
        env = "KINDLING_CLUSTER_SPILL",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "true|false"
    )]
    cluster_spill: bool,
    /// Queue asynchronous invocations in the cluster (a JetStream stream every node takes work
    /// from) instead of on the node that accepted them
    #[arg(
        long,
        env = "KINDLING_CLUSTER_QUEUE",
        default_value_t = true,
        action = clap::ArgAction::Set,
        value_name = "true|false"
    )]
    cluster_queue: bool,
    /// How long the cluster waits for word from a node holding an invocation before another
    /// node runs it (a node that holds one tells the cluster every third of this)
    #[arg(long, env = "KINDLING_CLUSTER_QUEUE_ACK_WAIT", default_value = "30s", value_parser = parse_duration)]
    cluster_queue_ack_wait: Duration,
}

impl ClusterArgs {
    /// The cluster settings, checked, or `None` without `--cluster`.
    pub(crate) fn config(&self, node_name: &str) -> Result<Option<ClusterConfig>, UsageError> {
        let Some(list) = &self.cluster else {
            return Ok(None);
        };
        let servers =
            ClusterConfig::parse_servers(list).map_err(|err| UsageError(err.to_string()))?;
        let config = ClusterConfig {
            servers,
            node_name: node_name.to_string(),
            zone: self.zone.clone(),
            credentials: self.cluster_creds.clone(),
            token: self.cluster_token.clone(),
            replicas: self.cluster_replicas,
            heartbeat: self.cluster_heartbeat,
            spill: self.cluster_spill,
            domain: self.cluster_domain.clone(),
        };
        config
            .validate()
            .map_err(|err| UsageError(err.to_string()))?;
        if self.cluster_queue_ack_wait < Duration::from_secs(1) {
            return Err(UsageError(format!(
                "--cluster-queue-ack-wait {:?} is too short for a node to hold an invocation; \
                 give it at least 1s",
                self.cluster_queue_ack_wait
            )));
        }
        Ok(Some(config))
    }
}

/// The key the nodes of a cluster share, derived from the node's `secret.key` (made on first
/// use; the nodes of a cluster must hold the same one): it tags compiled code and access
/// records, so that a peer's are taken only when they are authentic.
pub(crate) async fn cluster_key(data_dir: &Path) -> anyhow::Result<ClusterKey> {
    let variables = Variables::new(data_dir.to_path_buf());
    let key = tokio::task::spawn_blocking(move || variables.derived_key("cluster"))
        .await
        .context("deriving the cluster's key")?
        .map_err(anyhow::Error::msg)
        .context("cannot derive the key that authenticates shared code and access records")?;
    Ok(ClusterKey::new(key))
}

/// Joins the cluster when `config` says so, and returns it with the store the access layer
/// runs on: the cluster's, or else the local registry.
pub(crate) async fn connect(
    config: Option<ClusterConfig>,
    catalog: &Arc<SqliteCatalog>,
    data_dir: &Path,
) -> anyhow::Result<(Option<Arc<Cluster>>, Arc<dyn AccessStore>)> {
    let Some(config) = config else {
        return Ok((None, catalog.clone()));
    };
    let cluster = Cluster::connect(config, (**catalog).clone())
        .await
        .context("cannot join the cluster")?;
    let store = cluster.access_store(cluster_key(data_dir).await?);
    Ok((Some(cluster), store))
}

/// Starts cluster mode for the open node serving at `address`: the watches of functions and
/// of access records, the heartbeat, spill-over, and compiled code shared under the cluster's
/// key.
pub(crate) async fn start(
    cluster: &Arc<Cluster>,
    node: &Arc<Node>,
    access: &Arc<Access>,
    address: std::net::SocketAddr,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let key = cluster_key(data_dir).await?;
    cluster.share_code(node, key.clone());
    cluster.start(node, address.to_string());
    cluster.follow_access(access, key);
    Ok(())
}

/// Opens the invocation queue; in a cluster, schedules fire on the node that holds their
/// lease, and (unless `--cluster-queue false`) invocations are queued in the cluster.
pub(crate) async fn open_events(
    node: &Arc<Node>,
    mut config: EventsConfig,
    cluster: Option<&Arc<Cluster>>,
    args: &ClusterArgs,
) -> anyhow::Result<Arc<Events>> {
    if let Some(cluster) = cluster.cloned() {
        config.schedule_gate = Some(kindling_events::ScheduleGate(Arc::new(move || {
            cluster.leads_schedules()
        })));
    }
    if cluster.is_some() && args.cluster_queue {
        // Any node may run an invocation and send its callback: they sign with one key.
        let data_dir = config
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let variables = Variables::new(data_dir);
        let key = tokio::task::spawn_blocking(move || variables.derived_key("callback"))
            .await
            .context("deriving the cluster's callback key")?
            .map_err(anyhow::Error::msg)
            .context("cannot derive the key that signs callbacks")?;
        config.callback_key = Some(key);
    }
    let settings = QueueSettings {
        ack_wait: args.cluster_queue_ack_wait,
        max_waiting: config.max_waiting,
        idempotency_window: config.idempotency_window,
        retain: config.retain_succeeded,
    };
    let events =
        Events::open(Arc::clone(node), config).context("cannot open the invocation queue")?;
    if let Some(cluster) = cluster
        && args.cluster_queue
    {
        events.share(cluster.queue(settings));
    }
    Ok(events)
}
