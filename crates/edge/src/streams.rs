//! The streams and subjects of the sync.
//!
//! - Hub nodes publish to `kindling.hubstate.<node>.<namespace>.<label>`, kept by the hub's
//!   `KINDLING_STATE`, which also sources every edge's stream.
//! - Edge `E` publishes to `kindling.state.E.<namespace>.<label>`, kept by
//!   `KINDLING_STATE_OUT_E` in its own domain (`discard = new`: a full stream refuses, so the
//!   outbox keeps the change, instead of silently dropping an old one).
//! - Edge `E`'s `KINDLING_STATE_IN` mirrors the hub's stream.
//!
//! The two subject spaces never overlap, so no stream captures another domain's publishes
//! across the leaf link (which shares the account's subjects).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, External, Source, StorageType};

use crate::{Role, Sync};

/// The hub's stream: every node's changes.
pub const HUB_STREAM: &str = "KINDLING_STATE";
/// An edge's copy of the hub's stream.
pub(crate) const EDGE_IN: &str = "KINDLING_STATE_IN";

/// Edge `node`'s outbound stream, in its own domain.
pub fn edge_stream(node: &str) -> String {
    format!("KINDLING_STATE_OUT_{node}")
}

/// Where this node publishes a change to `namespace`'s `label`.
pub(crate) fn subject(sync: &Sync, namespace: &str, label: &str) -> String {
    let space = if sync.is_hub() { "hubstate" } else { "state" };
    format!("kindling.{space}.{}.{namespace}.{label}", sync.config.node)
}

/// The origin node, namespace and label of a change's subject.
pub(crate) fn parse_subject(subject: &str) -> Option<(&str, &str, &str)> {
    let mut tokens = subject.split('.');
    let (Some("kindling"), Some("state" | "hubstate"), Some(node), Some(ns), Some(label), None) = (
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
        tokens.next(),
    ) else {
        return None;
    };
    Some((node, ns, label))
}

/// The stream this node applies changes from.
pub(crate) fn inbound(sync: &Sync) -> &'static str {
    if sync.is_hub() { HUB_STREAM } else { EDGE_IN }
}

async fn ensure(sync: &Sync) -> Result<(), String> {
    let make = |config: Config| async move {
        let name = config.name.clone();
        sync.js
            .get_or_create_stream(config)
            .await
            .map(|_| ())
            .map_err(|err| format!("cannot make the stream {name}: {err}"))
    };
    match &sync.config.role {
        Role::Hub => {
            make(Config {
                name: HUB_STREAM.into(),
                description: Some(
                    "Kindling: changes to synced key-value stores, from the hub and every edge"
                        .into(),
                ),
                subjects: vec!["kindling.hubstate.>".into()],
                storage: StorageType::File,
                discard: DiscardPolicy::New,
                ..Default::default()
            })
            .await
        }
        Role::Edge { hub_domain } => {
            make(Config {
                name: edge_stream(&sync.config.node),
                description: Some(
                    "Kindling: this edge's changes to synced key-value stores, sourced by the hub"
                        .into(),
                ),
                subjects: vec![format!("kindling.state.{}.>", sync.config.node)],
                storage: StorageType::File,
                discard: DiscardPolicy::New,
                ..Default::default()
            })
            .await?;
            make(Config {
                name: EDGE_IN.into(),
                description: Some("Kindling: the hub's stream of changes, mirrored".into()),
                storage: StorageType::File,
                mirror: Some(Source {
                    name: HUB_STREAM.into(),
                    external: Some(External {
                        api_prefix: format!("$JS.{hub_domain}.API"),
                        delivery_prefix: None,
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
        }
    }
}

/// Makes the streams (retrying until this node's NATS server takes them), then runs `next`.
pub(crate) async fn ensure_then<F, Fut>(sync: Arc<Sync>, next: F)
where
    F: FnOnce(Arc<Sync>) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut last_error = String::new();
    loop {
        match ensure(&sync).await {
            Ok(()) => break,
            Err(err) => {
                if err != last_error {
                    tracing::warn!(error = %err, "sync: the streams are not made yet; retrying");
                    last_error = err;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
    tracing::info!(node = %sync.config.node, "sync: streams ready");
    next(sync).await;
}

#[cfg(test)]
mod tests {
    use super::parse_subject;

    #[test]
    fn subjects_name_the_origin_namespace_and_label() {
        assert_eq!(
            parse_subject("kindling.state.edge-1.default.progress"),
            Some(("edge-1", "default", "progress"))
        );
        assert_eq!(
            parse_subject("kindling.hubstate.hub-a.ns.l"),
            Some(("hub-a", "ns", "l"))
        );
        assert_eq!(parse_subject("kindling.state.e.ns"), None);
        assert_eq!(parse_subject("kindling.state.e.ns.l.x"), None);
        assert_eq!(parse_subject("other.state.e.ns.l"), None);
    }
}
