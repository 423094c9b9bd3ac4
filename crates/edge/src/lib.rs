//! Edge autonomy: key-value labels marked `sync = "hub"` are held whole by every site and by
//! the hub, written locally at once, and synced over NATS JetStream when the link allows.
//!
//! ```text
//!   edge site (its own JetStream domain)           hub (domain "hub")
//!   kindling ── outbox ──► KINDLING_STATE_OUT_<edge> ══ sourced by ══► KINDLING_STATE ◄── hub nodes
//!   kindling ◄── applies ── KINDLING_STATE_IN      ◄═ mirror of ══════ KINDLING_STATE
//!                  (local NATS leaf node)    leaf link, may be down for days
//! ```
//!
//! - A guest's write commits in the site's SQLite with an outbox entry, in one transaction;
//!   the relay moves the outbox into the site's own stream, on its local NATS leaf node, which
//!   is up whenever the site is. Nothing a guest wrote waits for the network or is lost by
//!   `kill -9`: the outbox is emptied only after the stream acknowledged each change.
//! - The hub's stream sources every edge's stream, and every edge's `KINDLING_STATE_IN`
//!   mirrors the hub's stream: JetStream resumes both after a partition, however long.
//! - Every node (hub and edges) applies the hub stream's changes to its stores; the stores
//!   merge them so that all converge (last writer wins by hybrid logical clock, counters as
//!   per-node shares: see the key-value capability's `synced.rs`).
//! - An edge asks the hub to source its stream (`kindling.state.join`) every few seconds, so
//!   a new site needs no configuration at the hub, and its answers are the link's health.

mod apply;
mod link;
mod relay;
mod streams;

use std::sync::Arc;
use std::time::Duration;

use kindling_cap_keyvalue::KeyValue;

pub use streams::{HUB_STREAM, edge_stream};

/// What part a node plays in the sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// A hub node: it keeps the hub's stream, which sources the edges'.
    Hub,
    /// An edge site: its NATS server is a leaf node of the hub's, with its own JetStream
    /// domain named after the node.
    Edge {
        /// The hub's JetStream domain.
        hub_domain: String,
    },
}

/// How a node syncs.
#[derive(Debug, Clone)]
pub struct SyncConfig {
    /// The NATS server holding this node's streams: at an edge, its local leaf node.
    pub url: String,
    /// This node's name: the edge's JetStream domain, and the stamp of its writes.
    pub node: String,
    /// Hub or edge.
    pub role: Role,
    /// How often an edge tells the hub it is there (and learns whether the link is up).
    pub heartbeat: Duration,
    /// Replicas of the hub's stream of every change on the hub's NATS servers (1, 3 or 5); an
    /// edge's streams live on its one leaf node (1).
    pub replicas: usize,
}

/// Why the sync's configuration cannot work.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SyncError(String);

impl SyncConfig {
    /// Checks the names NATS will see.
    pub fn validate(&self) -> Result<(), SyncError> {
        if !(self.url.starts_with("nats://") || self.url.starts_with("tls://")) {
            return Err(SyncError(format!(
                "--sync {:?} must be a nats:// or tls:// URL of this node's NATS server",
                self.url
            )));
        }
        let token = |name: &str| {
            !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !token(&self.node) {
            return Err(SyncError(format!(
                "--node-name {:?} names this node's JetStream domain and stream, so it must be \
                 1 to 64 letters, digits, '-' or '_'",
                self.node
            )));
        }
        if let Role::Edge { hub_domain } = &self.role {
            if self.replicas != 1 {
                return Err(SyncError(format!(
                    "--sync-replicas {} is for the hub's nodes: an edge site's streams live on \
                     its one leaf node; drop it here (or KINDLING_SYNC_REPLICAS) or add \
                     --sync-role hub",
                    self.replicas
                )));
            }
            if !token(hub_domain) {
                return Err(SyncError(format!(
                    "--sync-hub-domain {hub_domain:?} must be 1 to 64 letters, digits, '-' or '_'"
                )));
            }
            if *hub_domain == self.node {
                return Err(SyncError(format!(
                    "this edge is named {:?}, like the hub's domain: give it a --node-name of \
                     its own",
                    self.node
                )));
            }
        }
        if !matches!(self.replicas, 1 | 3 | 5) {
            return Err(SyncError(format!(
                "--sync-replicas {} is not a JetStream replica count: use 1, 3 or 5 (at most \
                 the NATS servers this node's JetStream has)",
                self.replicas
            )));
        }
        if self.heartbeat < Duration::from_millis(100) {
            return Err(SyncError(
                "--sync-heartbeat must be at least 100ms".to_string(),
            ));
        }
        Ok(())
    }
}

/// Starts the sync in the background: connects (retrying forever), makes the streams, and
/// keeps relaying and applying until the process ends. Returns at once.
pub async fn start(config: SyncConfig, kv: KeyValue) -> Result<(), SyncError> {
    config.validate()?;
    let client = async_nats::ConnectOptions::new()
        .name(format!("kindling sync {}", config.node))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(Duration::from_secs(5)))
        .connect(config.url.as_str())
        .await
        .map_err(|err| SyncError(format!("cannot connect to {}: {err}", config.url)))?;
    if !matches!(config.role, Role::Hub) {
        // Known as an edge from now on, so that reads say they are stale while the link has
        // never come up; and since when it has been without its hub, across restarts.
        kv.sync_status().mark_edge(link::kept_contact(&kv).await);
    }
    let sync = Arc::new(Sync {
        js: async_nats::jetstream::new(client.clone()),
        client,
        config,
        kv,
    });
    tokio::spawn(streams::ensure_then(sync.clone(), |sync| async move {
        tokio::spawn(relay::run(sync.clone()));
        tokio::spawn(apply::run(sync.clone()));
        link::run(sync).await;
    }));
    Ok(())
}

/// What the sync's tasks share.
pub(crate) struct Sync {
    pub(crate) client: async_nats::Client,
    pub(crate) js: async_nats::jetstream::Context,
    pub(crate) config: SyncConfig,
    pub(crate) kv: KeyValue,
}

impl Sync {
    pub(crate) fn is_hub(&self) -> bool {
        self.config.role == Role::Hub
    }
}
