//! The streams and subjects of the sync.
//!
//! - Hub nodes publish to `kindling.hubstate.<node>.<namespace>.<label>.<incarnation>.<key>`,
//!   kept by the hub's `KINDLING_STATE`, which also sources every edge's stream.
//! - Edge `E` publishes to `kindling.state.E.<namespace>.<label>.<incarnation>.<key>`, kept by
//!   `KINDLING_STATE_OUT_E` in its own domain (`discard = new`: a full stream refuses, so the
//!   outbox keeps the change, instead of silently dropping an old one).
//! - Edge `E`'s `KINDLING_STATE_IN` mirrors the hub's stream.
//!
//! `<key>` is `p` (a set or delete) or `c` (a counter's share) and 32 hex digits of the key's
//! SHA-256, and every stream keeps the last message of each subject only: a node's later put
//! of a key beats its earlier ones everywhere (its clock moves forward, within one
//! `<incarnation>` of its database), and its later share of a counter is at least the earlier
//! ones or counts from a put that beat theirs. So a stream holds one change per key, kind and
//! writer, not one per write: a site that joins, or returns after weeks, fetches that much.
//!
//! The two subject spaces never overlap, so no stream captures another domain's publishes
//! across the leaf link (which shares the account's subjects).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::stream::{Config, DiscardPolicy, External, Source, StorageType};
use kindling_cap_keyvalue::{Change, Op};
use sha2::{Digest as _, Sha256};

use crate::{Role, Sync};

/// The hub's stream: every node's changes.
pub const HUB_STREAM: &str = "KINDLING_STATE";
/// An edge's copy of the hub's stream.
pub(crate) const EDGE_IN: &str = "KINDLING_STATE_IN";

/// Edge `node`'s outbound stream, in its own domain.
pub fn edge_stream(node: &str) -> String {
    format!("KINDLING_STATE_OUT_{node}")
}

/// Where this node publishes `change` to `namespace`'s `label`, from the store's database
/// `incarnation`.
pub(crate) fn subject(
    sync: &Sync,
    namespace: &str,
    label: &str,
    incarnation: &str,
    change: &Change,
) -> String {
    let space = if sync.is_hub() { "hubstate" } else { "state" };
    format!(
        "kindling.{space}.{}.{namespace}.{label}.{incarnation}.{}",
        sync.config.node,
        key_token(change)
    )
}

/// The last token of a change's subject: what it changed (any key becomes a valid token). A
/// counter share under a name of its own (a store put back from a backup) has a subject of
/// its own: the stream must keep the node's earlier share beside it.
fn key_token(change: &Change) -> String {
    let kind = match change.op {
        Op::Put { .. } => 'p',
        Op::Count { share: None, .. } => 'c',
        Op::Count { share: Some(_), .. } => 's',
    };
    let digest = Sha256::digest(change.key.as_bytes());
    format!("{kind}{}", hex::encode(&digest[..16]))
}

/// Whether `subject` is where `change` belongs: a stream keeps one message per subject, so a
/// change published under another key's subject would erase that key's change; and a counter
/// share under a name of its own must be named after the subject's node and incarnation (or
/// one node could raise another's share). `None` for a subject of an earlier Kindling, which
/// carries no key.
pub(crate) fn names_change(subject: &str, change: &Change) -> Option<bool> {
    let tokens: Vec<&str> = subject.split('.').collect();
    let share = match &change.op {
        Op::Count {
            share: Some(share), ..
        } => Some(share.as_str()),
        _ => None,
    };
    match tokens[..] {
        [_, _, node, _, _, incarnation, token] => Some(
            token == key_token(change)
                && share.is_none_or(|share| share == format!("{node}~{incarnation}")),
        ),
        _ if share.is_some() => Some(false),
        _ => None,
    }
}

/// The origin node, namespace and label of a change's subject (also of the subjects without
/// incarnation and key that Kindling used before its streams kept one change per key).
pub(crate) fn parse_subject(subject: &str) -> Option<(&str, &str, &str)> {
    let tokens: Vec<&str> = subject.split('.').collect();
    match tokens[..] {
        ["kindling", "state" | "hubstate", node, ns, label]
        | ["kindling", "state" | "hubstate", node, ns, label, _, _] => Some((node, ns, label)),
        _ => None,
    }
}

/// The stream this node applies changes from.
pub(crate) fn inbound(sync: &Sync) -> &'static str {
    if sync.is_hub() { HUB_STREAM } else { EDGE_IN }
}

async fn ensure(sync: &Sync) -> Result<(), String> {
    let make = |config: Config| async move {
        let name = config.name.clone();
        let replicas = sync.config.replicas;
        let config = Config {
            max_messages_per_subject: 1,
            num_replicas: replicas,
            ..config
        };
        let stream = sync
            .js
            .get_or_create_stream(config)
            .await
            .map_err(|err| format!("cannot make the stream {name}: {err}"))?;
        let made = stream.cached_info().config.clone();
        // Limiting an older stream now would drop changes not every node has applied.
        if made.max_messages_per_subject != 1 {
            tracing::warn!(stream = %name,
                "sync: this stream was made by an earlier Kindling and keeps every change, not \
                 one per key; it grows with every write");
        }
        // Replicas change in place (JetStream copies the stream to the new peers), on the
        // config as it is now: another hub node may have added an edge's source meanwhile.
        if made.num_replicas != replicas {
            let from = made.num_replicas;
            let now = stream.get_info().await.map_or(made, |info| info.config);
            match sync
                .js
                .update_stream(Config {
                    num_replicas: replicas,
                    ..now
                })
                .await
            {
                Ok(_) => tracing::info!(stream = %name, from, to = replicas,
                    "sync: the stream's replicas changed to --sync-replicas"),
                Err(err) => tracing::warn!(stream = %name, from, to = replicas, error = %err,
                    "sync: cannot change the stream's replicas to --sync-replicas; it keeps \
                     its own"),
            }
        }
        Ok::<(), String>(())
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
    use kindling_cap_keyvalue::{Change, Op, Stamp};

    use super::{key_token, names_change, parse_subject};

    fn change(key: &str, op: Op) -> Change {
        Change {
            key: key.into(),
            stamp: Stamp::default(),
            op,
        }
    }

    #[test]
    fn a_key_token_is_one_per_key_and_kind_and_valid_in_a_subject() {
        let put = |key: &str| change(key, Op::Put { value: None });
        let count = |key: &str| {
            let op = Op::Count {
                epoch: Stamp::default(),
                up: 1,
                down: 0,
                share: None,
            };
            change(key, op)
        };
        let odd = key_token(&put("class-1.student 7 *>"));
        assert_eq!(odd.len(), 33);
        assert!(odd.bytes().all(|b| b.is_ascii_alphanumeric()), "{odd}");
        assert_eq!(key_token(&put("k")), key_token(&put("k")));
        assert_ne!(key_token(&put("k")), key_token(&put("k2")));
        assert_ne!(key_token(&put("k")), key_token(&count("k")));
        assert!(key_token(&count("k")).starts_with('c'));
    }

    #[test]
    fn subjects_name_the_origin_namespace_and_label() {
        assert_eq!(
            parse_subject("kindling.state.edge-1.default.progress.0a1b2c3d4e5f6a7b.p0123"),
            Some(("edge-1", "default", "progress"))
        );
        assert_eq!(parse_subject("kindling.state.e.ns.l.x.y.z"), None);
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

    #[test]
    fn a_change_under_another_keys_subject_is_told_apart() {
        let put = |key: &str| change(key, Op::Put { value: None });
        let at = |key: &str| format!("kindling.state.e.ns.l.0a1b.{}", key_token(&put(key)));
        assert_eq!(names_change(&at("k"), &put("k")), Some(true));
        assert_eq!(names_change(&at("other"), &put("k")), Some(false));
        assert_eq!(names_change("kindling.state.e.ns.l", &put("k")), None);
        // A share under a name of its own: the subject's node and incarnation, nobody else's.
        let share = |name: &str| {
            let op = Op::Count {
                epoch: Stamp::default(),
                up: 1,
                down: 0,
                share: Some(name.into()),
            };
            change("n", op)
        };
        let own = share("e~0a1b");
        let subject = format!("kindling.state.e.ns.l.0a1b.{}", key_token(&own));
        assert!(key_token(&own).starts_with('s'));
        assert_eq!(names_change(&subject, &own), Some(true));
        let forged = share("hub~0a1b");
        let subject = format!("kindling.state.e.ns.l.0a1b.{}", key_token(&forged));
        assert_eq!(names_change(&subject, &forged), Some(false));
        assert_eq!(names_change("kindling.state.e.ns.l", &own), Some(false));
    }
}
