//! The relay: moves each synced store's outbox into this node's stream, oldest first, and
//! empties the outbox only up to what the stream acknowledged. A change sent twice (the
//! stream acknowledged it but the node died before the outbox knew) is dropped by the stream's
//! duplicate window, and applying it twice would change nothing anyway.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use kindling_cap_keyvalue::SyncedStore;

use crate::Sync;
use crate::streams;

/// Changes sent per round trip of acknowledgements.
const BATCH: usize = 256;

pub(crate) async fn run(sync: Arc<Sync>) {
    let signal = sync.kv.outbox_signal();
    // Stores on disk hold changes from before a restart: open them all.
    let kv = sync.kv.clone();
    match tokio::task::spawn_blocking(move || kv.open_synced()).await {
        Ok(Ok(stores)) => tracing::info!(stores = stores.len(), "sync: relaying outboxes"),
        Ok(Err(err)) => tracing::error!(error = %err, "sync: cannot open the synced stores"),
        Err(err) => tracing::error!(error = %err, "sync: cannot open the synced stores"),
    }
    let mut failing = false;
    loop {
        let mut failed = false;
        for (namespace, label, store) in sync.kv.synced_opened() {
            if let Err(err) = drain(&sync, &namespace, &label, &store).await {
                if !failing {
                    tracing::warn!(%namespace, %label, error = %err,
                        "sync: changes wait in the outbox until this node's NATS server takes them");
                }
                failed = true;
            }
        }
        if failing && !failed {
            tracing::info!("sync: the outboxes are flowing again");
        }
        failing = failed;
        // A write wakes the relay; a sweep every few seconds covers stores opened meanwhile.
        let wait = if failed {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(5)
        };
        tokio::select! {
            () = signal.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// Sends everything in one store's outbox.
async fn drain(
    sync: &Sync,
    namespace: &str,
    label: &str,
    store: &SyncedStore,
) -> Result<(), String> {
    loop {
        let batch = store.pending(BATCH).await.map_err(|err| err.to_string())?;
        let Some(last) = batch.last().map(|pending| pending.seq) else {
            return Ok(());
        };
        let mut acks = Vec::with_capacity(batch.len());
        for pending in &batch {
            let stamp = &pending.change.stamp;
            let subject =
                streams::subject(sync, namespace, label, store.incarnation(), &pending.change);
            let message = PublishMessage::build()
                // The outbox's sequence number is never reused, even where a restart reissued
                // a clock reading: two changes never share an id inside the duplicate window.
                .message_id(format!(
                    "{namespace}/{label}/{}/{}/{}",
                    stamp.node, stamp.hlc, pending.seq
                ))
                .payload(pending.change.to_json().into());
            let ack = sync
                .js
                .send_publish(subject.clone(), message)
                .await
                .map_err(|err| format!("cannot publish to {subject}: {err}"))?;
            acks.push((subject, ack));
        }
        for (subject, ack) in acks {
            ack.await
                .map_err(|err| format!("{subject} did not acknowledge a change: {err}"))?;
        }
        store.sent(last).await.map_err(|err| err.to_string())?;
        sync.kv.sync_status().note_sent(batch.len() as u64);
    }
}
