//! Keeping the local copy current: a watch on the function records, from the last value of
//! each (so a node that was away sees every function's latest state, deletes included) and
//! then live. For each record the modules it names are fetched first, then the record is
//! copied into SQLite in one transaction, then the node's table follows. A failure anywhere
//! restarts the watch after a pause; revisions make copying a record twice harmless.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use kindling_node::Node;
use kindling_registry::{Catalog, ReplicaChange, SqliteCatalog};

use crate::buckets::{self, Buckets};
use crate::cluster::Shared;
use crate::record::Record;

/// The pause between two attempts to follow a bucket: doubling from 100 ms up to 5 s, and
/// back to 100 ms after a watch that ran for half a minute.
pub(crate) struct Backoff {
    pause: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(5);

    pub(crate) fn new() -> Self {
        Self { pause: Self::FIRST }
    }

    /// Waits before the next attempt; `began` is when the last one began.
    pub(crate) async fn wait(&mut self, began: Instant) {
        if began.elapsed() > Duration::from_secs(30) {
            self.pause = Self::FIRST;
        }
        tokio::time::sleep(self.pause).await;
        self.pause = (self.pause * 2).min(Self::MAX);
    }
}

pub(crate) async fn run(shared: Arc<Shared>, local: SqliteCatalog, node: Weak<Node>) {
    let mut backoff = Backoff::new();
    while node.strong_count() > 0 {
        let began = Instant::now();
        if let Err(err) = follow(&shared, &local, &node).await {
            if shared.connected() {
                tracing::warn!(error = %err, "cannot follow the cluster's registry; retrying");
            }
            shared.note_error(err);
        }
        backoff.wait(began).await;
    }
}

async fn follow(shared: &Shared, local: &SqliteCatalog, node: &Weak<Node>) -> Result<(), String> {
    if !shared.connected() {
        return Err("NATS cannot be reached".into());
    }
    let buckets = match shared.buckets() {
        Some(buckets) => buckets,
        None => {
            let buckets = buckets::open(&shared.client, &shared.config).await?;
            shared.set_buckets(buckets.clone());
            buckets
        }
    };
    let values = buckets
        .functions
        .status()
        .await
        .map_err(|err| format!("cannot read the function records' bucket: {err}"))?
        .values();
    let connects = shared.client.statistics().connects.load(Ordering::Relaxed);
    let mut watch = buckets
        .functions
        .watch_with_history(">")
        .await
        .map_err(|err| format!("cannot watch the function records: {err}"))?;
    shared.note_watching();
    if values == 0 {
        caught_up(shared, local, &buckets).await;
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            entry = watch.next() => {
                let Some(entry) = entry else {
                    return Err("the watch of the function records ended".into());
                };
                let entry =
                    entry.map_err(|err| format!("the watch of the function records: {err}"))?;
                take(shared, local, node, &buckets, &entry).await?;
                if entry.delta == 0 && !shared.is_synced() {
                    caught_up(shared, local, &buckets).await;
                }
            }
            _ = check.tick() => {
                // A watch can outlive the server it was made on without a word: follow again
                // after a reconnection, or when the bucket is past what reached this node.
                if shared.client.statistics().connects.load(Ordering::Relaxed) != connects {
                    return Err("reconnected to NATS: following the records again".into());
                }
                if let Ok(status) = buckets.functions.status().await
                    && status.info.state.last_sequence > shared.revision()
                    && idle_since(shared) > CHECK_EVERY
                {
                    return Err("the watch fell behind the bucket: following again".into());
                }
            }
        }
    }
}

/// How often a running watch is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

fn idle_since(shared: &Shared) -> Duration {
    shared.last_change().elapsed()
}

/// Copies one record here and makes the node serve it.
async fn take(
    shared: &Shared,
    local: &SqliteCatalog,
    node: &Weak<Node>,
    buckets: &Buckets,
    entry: &kv::Entry,
) -> Result<(), String> {
    let name = entry.key.as_str();
    if kindling_registry::validate_name(name).is_err() {
        tracing::warn!(key = name, "ignoring a record that names no function");
        shared.note_revision(entry.revision);
        return Ok(());
    }
    let record = match entry.operation {
        kv::Operation::Put => match Record::parse(name, &entry.value) {
            Ok(record) => Some(record),
            Err(err) => {
                tracing::error!(function = name, error = %err, "ignoring an unreadable record");
                shared.note_revision(entry.revision);
                return Ok(());
            }
        },
        kv::Operation::Delete | kv::Operation::Purge => None,
    };
    // Held from download to copy, so that nothing collects them in between.
    let mut holds = Vec::new();
    for version in record.iter().flat_map(|r| &r.versions) {
        holds.push(local.hold(&version.sha256));
        if !local.module_path(&version.sha256).exists() {
            let bytes = buckets
                .get_module(&version.sha256)
                .await
                .map_err(|err| format!("function {name:?}: {err}"))?;
            local
                .store_module(bytes)
                .await
                .map_err(|err| format!("function {name:?}: {err}"))?;
        }
    }
    let change = local
        .apply_replica(name, entry.revision, record.map(|r| r.replica(name)))
        .await
        .map_err(|err| format!("cannot copy the record of {name:?} here: {err}"))?;
    drop(holds);
    shared.note_revision(entry.revision);
    if let ReplicaChange::Applied { unreferenced } = change
        && let Some(node) = node.upgrade()
        && let Err(err) = node.refresh(name, unreferenced).await
    {
        // The node reports it among its load failures; the copy stays, as the cluster says.
        tracing::warn!(function = name, error = %err, "a change from the cluster cannot serve here");
    }
    Ok(())
}

/// The first time the copy is current: note it, and publish functions only this node has
/// (a node that ran alone before it joined), so that the cluster and the node agree.
async fn caught_up(shared: &Shared, local: &SqliteCatalog, buckets: &Buckets) {
    shared.note_synced();
    tracing::info!("the local copy of the registry caught up with the cluster");
    if let Err(err) = publish_local_only(shared, local, buckets).await {
        tracing::warn!(error = %err, "cannot publish the functions only this node had");
    }
}

async fn publish_local_only(
    shared: &Shared,
    local: &SqliteCatalog,
    buckets: &Buckets,
) -> Result<(), String> {
    let known = local
        .replica_revisions()
        .await
        .map_err(|err| err.to_string())?;
    let functions = local.functions().await.map_err(|err| err.to_string())?;
    for function in functions
        .into_iter()
        .filter(|f| !known.contains_key(&f.name))
    {
        let name = function.name.as_str();
        let versions = local.versions(name).await.map_err(|err| err.to_string())?;
        for version in &versions {
            let path = local.module_path(&version.sha256);
            let bytes = tokio::fs::read(&path)
                .await
                .map_err(|err| format!("{}: {err}", path.display()))?;
            buckets.put_module(&version.sha256, &bytes).await?;
        }
        let record =
            Record::from_versions(function.active_version, &versions, &shared.config.node_name);
        match buckets.functions.create(name, record.to_bytes()).await {
            Ok(revision) => {
                local
                    .apply_replica(name, revision, Some(record.replica(name)))
                    .await
                    .map_err(|err| err.to_string())?;
                tracing::info!(
                    function = name,
                    "published a function only this node had to the cluster"
                );
            }
            Err(err) if err.kind() == kv::CreateErrorKind::AlreadyExists => {
                // The cluster has its own record of the name; the watch brings it, and it wins.
                tracing::warn!(
                    function = name,
                    "the cluster has its own function of this name; it replaces this node's"
                );
            }
            Err(err) => return Err(format!("cannot publish {name:?}: {err}")),
        }
    }
    Ok(())
}
