//! Invocations a node of a cluster queued on its own because the cluster's queue could not
//! take them (NATS down, say): the node runs them as a node alone does, and marks their rows
//! `Reported`, so that once the cluster answers again the other nodes show them too (and
//! refuse to cancel one that is not theirs). Until then their reports wait here, and the
//! pump sends each one's latest record when a take from the cluster succeeds.
//!
//! The set is in memory: after a restart, the ones still waiting are never shown elsewhere
//! (they still run here, and this node shows them).

use std::collections::BTreeSet;

use crate::events::Events;
use crate::shared::SharedQueue;

/// The ids whose reports wait for the cluster.
#[derive(Debug, Default)]
pub(crate) struct Unreported {
    ids: tokio::sync::Mutex<BTreeSet<String>>,
}

impl Unreported {
    /// `id` was queued here while the cluster could not take it.
    pub(crate) async fn add(&self, id: String) {
        self.ids.lock().await.insert(id);
    }
}

impl Events {
    /// Whether `id`'s reports wait for the cluster: the worker leaves them to the pump.
    pub(crate) async fn report_deferred(&self, id: &str) -> bool {
        self.unreported.ids.lock().await.contains(id)
    }

    /// Sends the latest record of each invocation whose reports waited, now that the cluster
    /// answers; stops at the first report the cluster does not take.
    pub(crate) async fn report_unreported(&self, queue: &dyn SharedQueue) {
        let waiting: Vec<String> = self.unreported.ids.lock().await.iter().cloned().collect();
        let mut sent = 0;
        'ids: for id in waiting {
            loop {
                let Ok(record) = self.local(&id).await else {
                    // Deleted here meanwhile: nothing to show.
                    self.unreported.ids.lock().await.remove(&id);
                    break;
                };
                if !queue.report(record.clone()).await {
                    break 'ids;
                }
                // A worker that changed the row meanwhile left its report to this loop: the
                // set's lock is held while the row is read again, so a change after this
                // point is reported by the worker itself.
                let mut ids = self.unreported.ids.lock().await;
                match self.local(&id).await {
                    Ok(now) if now.updated_at != record.updated_at || now.state != record.state => {
                        continue;
                    }
                    _ => {
                        ids.remove(&id);
                        sent += 1;
                        break;
                    }
                }
            }
        }
        if sent > 0 {
            tracing::info!(
                sent,
                "queue: the invocations queued here while the cluster could not be reached are shown to it now"
            );
        }
    }
}
