//! Applies the changes of the stream this node follows (the hub's, or an edge's mirror of
//! it) to the synced stores, in batches, one transaction per store, and acknowledges them
//! after: a change is applied at least once, and applying it again changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::stream::ConsumerErrorKind;
use async_nats::jetstream::{AckKind, ErrorCode};
use futures::StreamExt as _;
use kindling_cap_keyvalue::{Change, SyncedStore};

use crate::Sync;
use crate::streams::{inbound, names_change, parse_subject};

/// Changes fetched per batch.
const BATCH: usize = 512;

/// Whether this process has warned of a change in the subject form of an earlier Kindling.
static LEGACY_SEEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub(crate) async fn run(sync: Arc<Sync>) {
    let mut last_error = String::new();
    loop {
        if let Err(err) = consume(&sync).await
            && err != last_error
        {
            tracing::warn!(error = %err, "sync: not applying changes now; retrying");
            last_error = err;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn consume(sync: &Sync) -> Result<(), String> {
    let name = inbound(sync);
    let stream = sync
        .js
        .get_stream(name)
        .await
        .map_err(|err| format!("cannot open the stream {name}: {err}"))?;
    let durable = format!("apply-{}", sync.config.node);
    // A store put back from a backup lacks what this node wrote since: it is in the stream,
    // behind the consumer. Read everything again (applying it again changes nothing else).
    let kv = sync.kv.clone();
    let stores = match tokio::task::spawn_blocking(move || kv.open_synced()).await {
        Ok(Ok(stores)) => stores,
        // The stores that opened are still applied to; one that did not is looked at again
        // when this restarts.
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "sync: cannot list the synced stores");
            sync.kv.synced_opened()
        }
        Err(err) => return Err(format!("cannot open the synced stores: {err}")),
    };
    let mut restored = Vec::new();
    for (_, _, store) in stores {
        if store.needs_reread().await.map_err(|err| err.to_string())? {
            restored.push(store);
        }
    }
    if !restored.is_empty() {
        match stream.delete_consumer(&durable).await {
            Ok(_) => {}
            Err(err)
                if matches!(err.kind(), ConsumerErrorKind::JetStream(ref js)
                    if js.error_code() == ErrorCode::CONSUMER_NOT_FOUND) => {}
            Err(err) => {
                return Err(format!(
                    "cannot read {name} again for a restored store: {err}"
                ));
            }
        }
        tracing::info!(
            stores = restored.len(),
            "sync: a store was put back from a backup; reading every change again"
        );
    }
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                description: Some("Kindling: applies other nodes' changes to this node".into()),
                ack_policy: AckPolicy::Explicit,
                deliver_policy: DeliverPolicy::All,
                ack_wait: Duration::from_secs(60),
                max_ack_pending: 20_000,
                ..Default::default()
            },
        )
        .await
        .map_err(|err| format!("cannot make the consumer {durable} on {name}: {err}"))?;
    for store in restored {
        store
            .reread_started()
            .await
            .map_err(|err| err.to_string())?;
    }
    let mut stores: HashMap<(String, String), Arc<SyncedStore>> = HashMap::new();
    loop {
        let mut batch = consumer
            .fetch()
            .max_messages(BATCH)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .map_err(|err| format!("cannot fetch from {name}: {err}"))?;
        let mut messages = Vec::new();
        while let Some(message) = batch.next().await {
            messages.push(message.map_err(|err| format!("fetching from {name}: {err}"))?);
        }
        if messages.is_empty() {
            continue;
        }
        // By store, in stream order. The node's own changes come back too and are applied
        // again (changing nothing), so that a store restored from a backup catches up on what
        // it had sent.
        let mut changes: BTreeMap<(String, String), Vec<(usize, Change)>> = BTreeMap::new();
        let mut ack = vec![AckKind::Ack; messages.len()];
        for (at, message) in messages.iter().enumerate() {
            let Some((origin, namespace, label)) = parse_subject(message.subject.as_str()) else {
                tracing::warn!(subject = %message.subject, "sync: a message that is no change; dropped");
                ack[at] = AckKind::Term;
                continue;
            };
            match Change::from_json(&message.payload) {
                // A node stamps only its own changes: another name is a forgery or a bug.
                Ok(change) if change.stamp.node != origin => {
                    tracing::warn!(subject = %message.subject, stamp = %change.stamp.node,
                        "sync: a change stamped by another node than its subject's; dropped");
                    ack[at] = AckKind::Term;
                }
                Ok(change) if names_change(message.subject.as_str(), &change) == Some(false) => {
                    tracing::warn!(subject = %message.subject, key = %change.key,
                        "sync: a change published under another key's subject, or a counter \
                         share named after another node; dropped");
                    ack[at] = AckKind::Term;
                }
                Ok(change) => {
                    if names_change(message.subject.as_str(), &change).is_none()
                        && !LEGACY_SEEN.swap(true, std::sync::atomic::Ordering::Relaxed)
                    {
                        tracing::warn!(subject = %message.subject,
                            "sync: a change from a Kindling before streams kept one change per \
                             key: a stream made since may have dropped some of its kind; run \
                             every node of the fleet on one version (README, edge sites)");
                    }
                    changes
                        .entry((namespace.to_string(), label.to_string()))
                        .or_default()
                        .push((at, change));
                }
                Err(err) => {
                    tracing::warn!(subject = %message.subject, error = %err, "sync: dropped");
                    ack[at] = AckKind::Term;
                }
            }
        }
        let mut applied = 0;
        for ((namespace, label), group) in changes {
            let retry = |ack: &mut Vec<AckKind>| {
                for (at, _) in &group {
                    ack[*at] = AckKind::Nak(Some(Duration::from_secs(30)));
                }
            };
            if !sync.kv.synced_labels().contains(&label) {
                // Waiting for a label this node does not sync would stall every other store
                // behind the consumer's pending limit: the hub's stream keeps the change.
                tracing::error!(%namespace, %label, changes = group.len(),
                    "sync: changes to a label this node does not sync; mark it sync = \"hub\" \
                     in the runtime config, as every node of the fleet must");
                for (at, _) in &group {
                    ack[*at] = AckKind::Term;
                }
                continue;
            }
            let store = match open(sync, &mut stores, &namespace, &label).await {
                Ok(store) => store,
                Err(err) => {
                    tracing::warn!(%namespace, %label, error = %err,
                        "sync: cannot open the store; its changes are retried in 30 s");
                    retry(&mut ack);
                    continue;
                }
            };
            let batch: Vec<Change> = group.iter().map(|(_, change)| change.clone()).collect();
            match store.apply(batch).await {
                Ok(_) => applied += group.len(),
                Err(err) => {
                    tracing::warn!(%namespace, %label, error = %err, "sync: applying failed");
                    retry(&mut ack);
                }
            }
        }
        sync.kv.sync_status().note_applied(applied as u64);
        for (message, kind) in messages.iter().zip(ack) {
            message
                .ack_with(kind)
                .await
                .map_err(|err| format!("cannot acknowledge on {name}: {err}"))?;
        }
    }
}

async fn open(
    sync: &Sync,
    stores: &mut HashMap<(String, String), Arc<SyncedStore>>,
    namespace: &str,
    label: &str,
) -> Result<Arc<SyncedStore>, String> {
    let key = (namespace.to_string(), label.to_string());
    if let Some(store) = stores.get(&key) {
        return Ok(store.clone());
    }
    let kv = sync.kv.clone();
    let (ns, l) = key.clone();
    let store = tokio::task::spawn_blocking(move || kv.synced_store(&ns, &l))
        .await
        .map_err(|err| err.to_string())??;
    stores.insert(key, store.clone());
    Ok(store)
}
