//! Membership: every node puts a report of itself into the `kindling-nodes` bucket each
//! heartbeat; the bucket forgets entries older than five heartbeats, and a report older than
//! three counts as stale.

use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use kindling_node::Node;
use serde::{Deserialize, Serialize};

use crate::cluster::Shared;

/// One node as the cluster sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    /// Its `--node-name`.
    pub name: String,
    /// Its `--zone`, if any.
    pub zone: Option<String>,
    /// Where it serves.
    pub address: String,
    /// Kindling's version there.
    pub version: String,
    /// Functions deployed.
    pub functions: usize,
    /// Functions whose code is resident (warm).
    pub warm: usize,
    /// Requests running there now.
    pub in_flight: u32,
    /// Its limit of requests running at once.
    pub max_in_flight: u32,
    /// The registry revision copied there.
    pub revision: u64,
    /// Connected to NATS when it reported.
    pub connected: bool,
    /// When it reported, milliseconds since the Unix epoch (its clock).
    pub reported_at_ms: u64,
    /// Whether it takes requests other nodes have no room for (an edge site across a slow
    /// link does not).
    #[serde(default = "takes_spill")]
    pub spill: bool,
    /// How the node answering sees it.
    #[serde(default)]
    pub state: MemberState,
}

/// Whether a node reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemberState {
    /// Reported within three heartbeats.
    #[default]
    Up,
    /// Missed three heartbeats; the bucket forgets it after five.
    Stale,
    /// The node answering this is cut off from the cluster: what it last saw.
    Unknown,
}

pub(crate) async fn heartbeat(shared: Arc<Shared>, node: Weak<Node>) {
    let mut tick = tokio::time::interval(shared.config.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(node) = node.upgrade() else {
            return;
        };
        let Some(buckets) = shared.buckets() else {
            continue;
        };
        if !shared.connected() {
            continue;
        }
        renew_lease(&shared, &buckets.nodes).await;
        let report = serde_json::to_vec(&own(&shared, &node)).expect("a member serializes");
        if let Err(err) = buckets
            .nodes
            .put(&shared.config.node_name, report.into())
            .await
        {
            tracing::debug!(error = %err, "heartbeat not recorded");
            continue;
        }
        if let Ok(members) = read(&shared).await {
            *shared.members.lock().expect("members lock") = members;
        }
    }
}

/// The nodes, this one first.
pub(crate) async fn list(shared: &Shared, node: &Node) -> Vec<Member> {
    let others = if shared.connected() {
        read(shared).await.ok()
    } else {
        None
    };
    let others = match others {
        Some(members) => members,
        None => {
            let mut last = shared.members.lock().expect("members lock").clone();
            for member in &mut last {
                member.state = MemberState::Unknown;
            }
            last
        }
    };
    let me = own(shared, node);
    std::iter::once(me.clone())
        .chain(others.into_iter().filter(|m| m.name != me.name))
        .collect()
}

async fn read(shared: &Shared) -> Result<Vec<Member>, String> {
    let buckets = shared.buckets().ok_or("no buckets yet")?;
    let mut keys = buckets.nodes.keys().await.map_err(|err| err.to_string())?;
    let stale_after = shared.config.heartbeat.as_millis() as u64 * 3;
    let now = now_ms();
    let mut members = Vec::new();
    while let Some(key) = keys.next().await {
        let Ok(key) = key else { continue };
        if key.contains('.') {
            // A lease, not a node (node names have no dots).
            continue;
        }
        let Ok(Some(value)) = buckets.nodes.get(&key).await else {
            continue;
        };
        let Ok(mut member) = serde_json::from_slice::<Member>(&value) else {
            continue;
        };
        member.state = if now.saturating_sub(member.reported_at_ms) > stale_after {
            MemberState::Stale
        } else {
            MemberState::Up
        };
        members.push(member);
    }
    members.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(members)
}

/// The lease of the node that fires the cluster's schedules, in the nodes' bucket.
const SCHEDULE_LEASE: &str = "lease.schedules";

/// Takes or renews the schedule lease when it is free or this node's. The bucket forgets a
/// lease five heartbeats after its last renewal, and its holder stops counting on it after
/// three, so two nodes never fire schedules at once.
async fn renew_lease(shared: &Shared, nodes: &kv::Store) {
    let me = shared.config.node_name.as_bytes();
    let value = || bytes::Bytes::copy_from_slice(me);
    let held = match nodes.entry(SCHEDULE_LEASE).await {
        Ok(Some(entry)) if entry.operation != kv::Operation::Put || entry.value == me => nodes
            .update(SCHEDULE_LEASE, value(), entry.revision)
            .await
            .is_ok(),
        Ok(Some(_)) => false,
        Ok(None) => nodes.create(SCHEDULE_LEASE, value()).await.is_ok(),
        Err(_) => false,
    };
    if held {
        *shared.lease_until.lock().expect("lease lock") =
            Some(std::time::Instant::now() + shared.config.heartbeat * 3);
    }
}

fn own(shared: &Shared, node: &Node) -> Member {
    let entries = node.entries();
    let link = shared.link();
    Member {
        name: shared.config.node_name.clone(),
        zone: shared.config.zone.clone(),
        address: shared.address.get().cloned().unwrap_or_default(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        functions: entries.len(),
        warm: entries.iter().filter(|e| e.code().is_some()).count(),
        in_flight: node.admission().in_flight(),
        max_in_flight: node.config().admission.max_in_flight,
        revision: link.revision,
        connected: link.connected,
        reported_at_ms: now_ms(),
        state: MemberState::Up,
        spill: shared.config.spill,
    }
}

/// Nodes that reported before members said whether they take spilled requests took them.
fn takes_spill() -> bool {
    true
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
