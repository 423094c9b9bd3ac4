//! [`Cluster`]: the connection, the buckets once open, what the node knows of its link, and
//! the background work (the watch that keeps the local copy current, the heartbeat).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kindling_node::Node;
use kindling_registry::{RegistryError, SqliteCatalog};
use serde::Serialize;

use crate::buckets::{self, Buckets};
use crate::catalog::ClusterCatalog;
use crate::config::ClusterConfig;
use crate::error::ClusterError;
use crate::key::ClusterKey;
use crate::members::Member;

/// How long a starting node waits for its first connection before it serves its local copy.
const FIRST_CONNECT: Duration = Duration::from_secs(3);

/// What the catalog, the watch and the heartbeat share.
pub(crate) struct Shared {
    pub(crate) config: ClusterConfig,
    pub(crate) client: async_nats::Client,
    buckets: RwLock<Option<Buckets>>,
    /// The local copy has caught up with the bucket at least once since the node started.
    synced: AtomicBool,
    /// The watch is running now.
    watching: AtomicBool,
    /// The highest bucket revision copied here.
    revision: AtomicU64,
    /// Records copied here since the node started.
    pub(crate) applied: AtomicU64,
    /// When the watch last delivered a record.
    last_change: Mutex<Instant>,
    error: Mutex<Option<String>>,
    /// The members seen at the last heartbeat.
    pub(crate) members: Mutex<Vec<Member>>,
    /// Where the node serves, once it has bound its port.
    pub(crate) address: std::sync::OnceLock<String>,
    pub(crate) spill: crate::spill::SpillCounters,
    pub(crate) code: crate::artifacts::CodeCounters,
    /// A change to access records was made here but not published: the access watch follows
    /// again, which publishes it.
    pub(crate) access_behind: AtomicBool,
    /// Until when this node holds the lease to fire the cluster's schedules.
    pub(crate) lease_until: Mutex<Option<Instant>>,
}

impl Shared {
    pub(crate) fn buckets(&self) -> Option<Buckets> {
        self.buckets.read().expect("buckets lock").clone()
    }

    pub(crate) fn set_buckets(&self, buckets: Buckets) {
        *self.buckets.write().expect("buckets lock") = Some(buckets);
    }

    pub(crate) fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Whether the cluster can be reached now, as `/readyz` and `kindling nodes` say. Through
    /// a leaf node (an edge site naming the hub's `domain`), the connection to the local
    /// server stays up while the uplink is down: there the registry's watch running is the
    /// sign.
    fn reachable(&self) -> bool {
        self.connected() && (self.config.domain.is_none() || self.watching.load(Ordering::Relaxed))
    }

    /// The error for a change asked while the cluster cannot be reached.
    pub(crate) fn unreachable(&self) -> RegistryError {
        RegistryError::Unavailable(format!(
            "the cluster's NATS servers ({}) cannot be reached now, and changes to functions, \
             namespaces and policies need them: nothing was changed, and this node keeps \
             serving its local copy; retry once NATS is reachable",
            self.config.servers.join(",")
        ))
    }

    /// The error for a change the bucket did not answer.
    pub(crate) fn failed(&self, detail: &str) -> RegistryError {
        if !self.connected() {
            return self.unreachable();
        }
        RegistryError::Unavailable(format!(
            "the cluster's registry did not answer ({detail}): nothing was changed; retry in a \
             moment"
        ))
    }

    pub(crate) fn note_error(&self, error: String) {
        self.watching.store(false, Ordering::Relaxed);
        *self.error.lock().expect("error lock") = Some(error);
    }

    pub(crate) fn note_watching(&self) {
        self.watching.store(true, Ordering::Relaxed);
        *self.error.lock().expect("error lock") = None;
    }

    pub(crate) fn note_synced(&self) {
        self.synced.store(true, Ordering::Relaxed);
    }

    pub(crate) fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    pub(crate) fn note_revision(&self, revision: u64) {
        self.revision.fetch_max(revision, Ordering::Relaxed);
        self.applied.fetch_add(1, Ordering::Relaxed);
        *self.last_change.lock().expect("last-change lock") = Instant::now();
    }

    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }

    pub(crate) fn last_change(&self) -> Instant {
        *self.last_change.lock().expect("last-change lock")
    }

    pub(crate) fn link(&self) -> Link {
        Link {
            connected: self.reachable(),
            synced: self.is_synced(),
            watching: self.watching.load(Ordering::Relaxed),
            revision: self.revision.load(Ordering::Relaxed),
            error: self.error.lock().expect("error lock").clone(),
        }
    }
}

/// What a node knows of its link to the cluster.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// Connected to a NATS server now.
    pub connected: bool,
    /// The local copy caught up with the cluster at least once since the node started.
    pub synced: bool,
    /// Changes from the cluster reach this node now.
    pub watching: bool,
    /// The highest revision of the cluster's registry copied here.
    pub revision: u64,
    /// Why changes do not reach this node, when they do not.
    pub error: Option<String>,
}

impl Link {
    /// Ready to serve: caught up once, or cut off from NATS and serving the local copy. A node
    /// that reaches NATS but has not caught up yet would answer 404 for functions it is about
    /// to learn of.
    pub fn ready(&self) -> bool {
        self.synced || !self.connected
    }

    /// One line for `/readyz`.
    pub fn describe(&self) -> String {
        match (self.connected, self.watching, &self.error) {
            (true, true, _) => format!(
                "cluster: connected, registry copied up to revision {}",
                self.revision
            ),
            (true, false, Some(error)) => format!("cluster: connected, but {error}"),
            (true, false, None) => "cluster: connected, catching up".to_string(),
            (false, _, _) => format!(
                "cluster: NATS unreachable, serving the local copy (revision {}); changes \
                 made elsewhere arrive when the link returns",
                self.revision
            ),
        }
    }
}

/// Cluster mode for one node.
pub struct Cluster {
    shared: Arc<Shared>,
    local: SqliteCatalog,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &self.shared.config.node_name)
            .field("servers", &self.shared.config.servers)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// Connects to NATS and opens the cluster's buckets (making them if this is the first
    /// node). When NATS cannot be reached within a few seconds the node starts anyway on its
    /// local copy, and keeps trying in the background.
    pub async fn connect(
        config: ClusterConfig,
        local: SqliteCatalog,
    ) -> Result<Arc<Self>, ClusterError> {
        config.validate()?;
        let client = buckets::connect(&config).await?;
        let deadline = Instant::now() + FIRST_CONNECT;
        while client.connection_state() != async_nats::connection::State::Connected
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let shared = Arc::new(Shared {
            config,
            client,
            buckets: RwLock::default(),
            synced: AtomicBool::new(false),
            watching: AtomicBool::new(false),
            revision: AtomicU64::new(0),
            applied: AtomicU64::new(0),
            last_change: Mutex::new(Instant::now()),
            error: Mutex::default(),
            members: Mutex::default(),
            address: std::sync::OnceLock::new(),
            spill: crate::spill::SpillCounters::default(),
            code: crate::artifacts::CodeCounters::default(),
            access_behind: AtomicBool::new(false),
            lease_until: Mutex::default(),
        });
        if shared.connected() {
            match buckets::open(&shared.client, &shared.config).await {
                Ok(buckets) => shared.set_buckets(buckets),
                Err(err) => shared.note_error(err),
            }
        } else {
            tracing::warn!(
                servers = %shared.config.servers.join(","),
                "NATS cannot be reached: serving the local copy of the registry until it can"
            );
        }
        Ok(Arc::new(Self { shared, local }))
    }

    /// The catalog the node runs on.
    pub fn catalog(&self) -> Arc<ClusterCatalog> {
        Arc::new(ClusterCatalog {
            local: self.local.clone(),
            shared: self.shared.clone(),
        })
    }

    /// Starts keeping the node's copy current and reporting the node (serving at `address`)
    /// to the others; both stop when the node is dropped.
    pub fn start(self: &Arc<Self>, node: &Arc<Node>, address: String) {
        let _ = self.shared.address.set(address);
        tokio::spawn(crate::sync::run(
            self.shared.clone(),
            self.local.clone(),
            Arc::downgrade(node),
        ));
        tokio::spawn(crate::members::heartbeat(
            self.shared.clone(),
            Arc::downgrade(node),
        ));
        if self.shared.config.spill {
            tokio::spawn(crate::spill::serve(
                self.shared.clone(),
                Arc::downgrade(node),
            ));
            node.set_spill(Arc::new(crate::spill::NatsSpill::new(self.shared.clone())));
        }
    }

    /// Shares compiled code with the other nodes, authenticated with `key` (which every node
    /// derives from the cluster's one `secret.key`): a module is compiled by the node it is
    /// deployed on, and the others map that code instead of compiling it again.
    pub fn share_code(&self, node: &Node, key: ClusterKey) {
        node.set_code_share(Arc::new(crate::artifacts::NatsCodeShare::new(
            self.shared.clone(),
            key,
        )));
    }

    /// The store of tokens, namespaces and policies the node's access layer runs on: the
    /// cluster's, read from this node's copy.
    /// Every record it writes is tagged with `key`, and records without its tag are not
    /// taken.
    pub fn access_store(&self, key: ClusterKey) -> Arc<crate::access_store::ClusterAccessStore> {
        Arc::new(crate::access_store::ClusterAccessStore {
            local: self.local.clone(),
            shared: self.shared.clone(),
            key,
        })
    }

    /// Keeps `access` (opened on [`Cluster::access_store`] with the same `key`) current with
    /// changes made on other nodes; stops when it is dropped.
    pub fn follow_access(&self, access: &Arc<kindling_access::Access>, key: ClusterKey) {
        tokio::spawn(crate::access_sync::run(
            self.shared.clone(),
            self.local.clone(),
            Arc::downgrade(access),
            key,
        ));
    }

    /// The cluster's invocation queue, for [`kindling_events::Events::share`]: accepted
    /// invocations wait in JetStream, and every node takes its share of them.
    pub fn queue(&self, settings: crate::QueueSettings) -> Arc<dyn kindling_events::SharedQueue> {
        crate::queue::NatsQueue::new(self.shared.clone(), settings)
    }

    /// This node's name in the cluster.
    pub fn node_name(&self) -> &str {
        &self.shared.config.node_name
    }

    /// Whether this node fires the cluster's schedules now: one node holds a lease, renewed
    /// every heartbeat, and another takes it over when it lapses.
    pub fn leads_schedules(&self) -> bool {
        self.shared
            .lease_until
            .lock()
            .expect("lease lock")
            .is_some_and(|until| Instant::now() < until)
    }

    /// What the node knows of its link now.
    pub fn link(&self) -> Link {
        self.shared.link()
    }

    /// The nodes of the cluster, this one first: read from the bucket when NATS answers,
    /// else as last seen.
    pub async fn members(&self, node: &Node) -> Vec<Member> {
        crate::members::list(&self.shared, node).await
    }

    /// The link's gauges in the Prometheus text format.
    pub fn render_metrics(&self) -> String {
        let link = self.link();
        let members = self.shared.members.lock().expect("members lock");
        let up = members
            .iter()
            .filter(|m| m.state == crate::MemberState::Up)
            .count();
        let applied = self.shared.applied.load(Ordering::Relaxed);
        let flag = |b: bool| u8::from(b);
        let spill = &self.shared.spill;
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed);
        format!(
            "# HELP kindling_cluster_connected Whether the node is connected to NATS now.\n\
             # TYPE kindling_cluster_connected gauge\n\
             kindling_cluster_connected {}\n\
             # HELP kindling_cluster_synced Whether the local copy caught up with the cluster since the node started.\n\
             # TYPE kindling_cluster_synced gauge\n\
             kindling_cluster_synced {}\n\
             # HELP kindling_cluster_revision The highest revision of the cluster registry copied to this node.\n\
             # TYPE kindling_cluster_revision gauge\n\
             kindling_cluster_revision {}\n\
             # HELP kindling_cluster_changes_applied_total Registry records copied to this node since it started.\n\
             # TYPE kindling_cluster_changes_applied_total counter\n\
             kindling_cluster_changes_applied_total {applied}\n\
             # HELP kindling_cluster_nodes_up Nodes whose heartbeat this node saw last.\n\
             # TYPE kindling_cluster_nodes_up gauge\n\
             kindling_cluster_nodes_up {up}\n\
             # HELP kindling_spilled_requests_total Requests this node had no room for: passed to a peer that answered, or answered 503 because no peer took them.\n\
             # TYPE kindling_spilled_requests_total counter\n\
             kindling_spilled_requests_total{{outcome=\"forwarded\"}} {}\n\
             kindling_spilled_requests_total{{outcome=\"no_peer\"}} {}\n\
             # HELP kindling_spill_received_total Peers' spilled requests: run here, or refused for want of room here too.\n\
             # TYPE kindling_spill_received_total counter\n\
             kindling_spill_received_total{{outcome=\"served\"}} {}\n\
             kindling_spill_received_total{{outcome=\"refused\"}} {}\n\
             # HELP kindling_cluster_code_total Compiled code shared through the cluster: published here, fetched from a peer instead of compiling, missing (compiled here), refused (not authentic).\n\
             # TYPE kindling_cluster_code_total counter\n\
             kindling_cluster_code_total{{outcome=\"published\"}} {}\n\
             kindling_cluster_code_total{{outcome=\"fetched\"}} {}\n\
             kindling_cluster_code_total{{outcome=\"missing\"}} {}\n\
             kindling_cluster_code_total{{outcome=\"refused\"}} {}\n",
            flag(link.connected),
            flag(link.synced),
            link.revision,
            count(&spill.forwarded),
            count(&spill.no_peer),
            count(&spill.served),
            count(&spill.refused),
            count(&self.shared.code.published),
            count(&self.shared.code.fetched),
            count(&self.shared.code.missing),
            count(&self.shared.code.refused),
        )
    }
}
