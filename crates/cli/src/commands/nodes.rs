//! `kindling nodes`: the cluster's nodes, with their state, load and registry revision, the
//! answering node's link to the cluster, and its sync's links (at a hub: each edge site's link
//! state, last contact and replication lag).

use clap::Args;
use serde::Deserialize;

use super::{OutputArgs, ServerArgs};
use crate::output::{print_json, print_table};

#[derive(Debug, Args)]
pub(crate) struct NodesCommand {
    #[command(flatten)]
    server: ServerArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct NodesAnswer {
    cluster: Option<ClusterInfo>,
    nodes: Vec<kindling_cluster::Member>,
    #[serde(default)]
    sync: Vec<SyncLink>,
}

/// One link of the answering node's sync (`kindling_cap_keyvalue::LinkReport`, as JSON).
#[derive(Debug, Deserialize, serde::Serialize)]
struct SyncLink {
    peer: String,
    up: bool,
    /// Seconds since 1970.
    last_contact: Option<u64>,
    lag: u64,
}

#[derive(Debug, Deserialize, serde::Serialize)]
struct ClusterInfo {
    node: String,
    link: serde_json::Value,
}

impl NodesCommand {
    pub(crate) async fn execute(self) -> anyhow::Result<()> {
        let client = self.server.client()?;
        let answer: NodesAnswer = client.get_json("/v1/nodes").await?;
        if self.output.json {
            return print_json(&answer);
        }
        let Some(cluster) = &answer.cluster else {
            println!("this node runs alone, not in a cluster (start it with --cluster NATS-URLS)");
            print_sync(&answer.sync);
            return Ok(());
        };
        let rows: Vec<Vec<String>> = answer
            .nodes
            .iter()
            .map(|m| {
                let state = serde_json::to_value(m.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                vec![
                    m.name.clone(),
                    state,
                    m.zone.clone().unwrap_or_else(|| "-".into()),
                    m.address.clone(),
                    format!("{}/{}", m.functions, m.warm),
                    format!("{}/{}", m.in_flight, m.max_in_flight),
                    m.revision.to_string(),
                    if m.connected { "yes" } else { "no" }.into(),
                ]
            })
            .collect();
        print_table(
            &[
                "NODE",
                "STATE",
                "ZONE",
                "ADDRESS",
                "FUNCTIONS/WARM",
                "IN-FLIGHT",
                "REVISION",
                "NATS",
            ],
            &rows,
        );
        print_sync(&answer.sync);
        let link = &cluster.link;
        if let Some(error) = link.get("error").and_then(|e| e.as_str()) {
            println!("\n{}: {error}", cluster.node);
        } else if link.get("connected") == Some(&serde_json::Value::Bool(false)) {
            println!(
                "\n{}: NATS unreachable, serving its local copy; other nodes are as last seen",
                cluster.node
            );
        }
        Ok(())
    }
}

/// The sync's links, when the node syncs state: peer, link state, last contact, lag.
fn print_sync(sync: &[SyncLink]) {
    if sync.is_empty() {
        return;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let rows: Vec<Vec<String>> = (sync.iter())
        .map(|link| {
            vec![
                link.peer.clone(),
                if link.up { "up" } else { "down" }.into(),
                link.last_contact.map_or_else(
                    || "never".into(),
                    |at| format!("{}s ago", now.saturating_sub(at)),
                ),
                link.lag.to_string(),
            ]
        })
        .collect();
    println!();
    print_table(&["SYNC PEER", "LINK", "LAST CONTACT", "LAG"], &rows);
}
