//! Keeping the local copy of the shared access records current: a watch on `kindling-access`
//! from the last value of each key, then live. Each record is copied into SQLite, and once the
//! watch has delivered everything pending, the node's [`Access`] reloads, so a revocation on
//! any node stops the token here as soon as it arrives. When the copy first catches up, what
//! only this node has (tokens made while NATS was down, the records of a node that ran alone
//! before it joined, a revocation the bucket missed) is published.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures::StreamExt as _;
use kindling_access::Access;
use kindling_registry::{AccessStore as _, NamespaceRecord, SqliteCatalog};

use crate::access_store::{
    POLICIES_KEY, PolicySet, TokenEntry, namespace_key, open, seal, token_key,
};
use crate::cluster::Shared;
use crate::key::ClusterKey;
use crate::sync::Backoff;

/// How often a running watch is checked for a reconnection or a stall.
const CHECK_EVERY: Duration = Duration::from_secs(2);
pub(crate) async fn run(
    shared: Arc<Shared>,
    local: SqliteCatalog,
    access: Weak<Access>,
    key: ClusterKey,
) {
    let mut backoff = Backoff::new();
    while access.strong_count() > 0 {
        let began = Instant::now();
        if let Err(err) = follow(&shared, &local, &access, &key).await
            && shared.connected()
        {
            tracing::warn!(error = %err, "cannot follow the cluster's tokens, namespaces and policies; retrying");
        }
        backoff.wait(began).await;
    }
}

async fn follow(
    shared: &Shared,
    local: &SqliteCatalog,
    access: &Weak<Access>,
    key: &ClusterKey,
) -> Result<(), String> {
    if !shared.connected() {
        return Err("NATS cannot be reached".into());
    }
    let Some(buckets) = shared.buckets() else {
        return Err("the cluster's buckets are not open yet".into());
    };
    let bucket = buckets.access;
    let values = bucket
        .status()
        .await
        .map_err(|err| format!("cannot read the access bucket: {err}"))?
        .values();
    let connects = shared.client.statistics().connects.load(Ordering::Relaxed);
    let mut watch = bucket
        .watch_with_history(">")
        .await
        .map_err(|err| format!("cannot watch the access records: {err}"))?;
    let mut caught_up = false;
    let mut seen = 0;
    let mut last_change = Instant::now();
    if values == 0 {
        publish_local(&bucket, local, key).await?;
        reload(access).await;
        caught_up = true;
    }
    let mut check = tokio::time::interval(CHECK_EVERY);
    check.tick().await;
    loop {
        tokio::select! {
            entry = watch.next() => {
                let Some(entry) = entry else {
                    return Err("the watch of the access records ended".into());
                };
                let entry = entry.map_err(|err| format!("the watch of the access records: {err}"))?;
                take(local, key, &entry).await?;
                seen = entry.revision;
                last_change = Instant::now();
                if entry.delta == 0 {
                    if !caught_up {
                        publish_local(&bucket, local, key).await?;
                        caught_up = true;
                    }
                    reload(access).await;
                }
            }
            _ = check.tick() => {
                if shared.access_behind.swap(false, Ordering::Relaxed) {
                    return Err("a change made here is not published yet: following again".into());
                }
                if shared.client.statistics().connects.load(Ordering::Relaxed) != connects {
                    return Err("reconnected to NATS: following the access records again".into());
                }
                if let Ok(status) = bucket.status().await
                    && status.info.state.last_sequence > seen
                    && last_change.elapsed() > CHECK_EVERY
                {
                    return Err("the access watch fell behind its bucket: following again".into());
                }
            }
        }
    }
}

async fn reload(access: &Weak<Access>) {
    if let Some(access) = access.upgrade()
        && let Err(err) = access.reload().await
    {
        tracing::error!(error = %err, "cannot reload tokens, namespaces and policies");
    }
}

/// Copies one record here. A record without the cluster key's tag, or that does not match its
/// key (a token under another id, a namespace under another name), is not Kindling's and is
/// ignored; nothing here is ever deleted (a policy's removal writes the smaller set), so delete
/// markers change nothing either.
async fn take(local: &SqliteCatalog, tags: &ClusterKey, entry: &kv::Entry) -> Result<(), String> {
    let key = entry.key.as_str();
    if entry.operation != kv::Operation::Put {
        return Ok(());
    }
    let ignore = |why: &str| {
        tracing::error!(key, why, "ignoring an access record");
        Ok(())
    };
    let copied = if let Some(id) = key.strip_prefix("token.") {
        match open::<TokenEntry>(tags, key, &entry.value) {
            Ok(token) if token.record.id == id => local.copy_token(token.stored()).await,
            Ok(_) => return ignore("its token id is not its key's"),
            Err(why) => return ignore(&why),
        }
    } else if let Some(name) = key.strip_prefix("namespace.") {
        match open::<NamespaceRecord>(tags, key, &entry.value) {
            Ok(record) if record.name == name => local.copy_namespace(record).await,
            Ok(_) => return ignore("its namespace is not its key's"),
            Err(why) => return ignore(&why),
        }
    } else if key == POLICIES_KEY {
        match open::<PolicySet>(tags, key, &entry.value) {
            Ok(set) if set.iter().all(|(name, p)| *name == p.name) => {
                local.copy_policies(&set).await
            }
            Ok(_) => return ignore("a policy is filed under another name"),
            Err(why) => return ignore(&why),
        }
    } else {
        return ignore("no known kind of record");
    };
    copied.map_err(|err| format!("cannot copy {key:?} here: {err}"))
}

/// Publishes what this node has and the bucket lacks; what the bucket has wins, except that
/// a revocation made here is never lost.
async fn publish_local(
    bucket: &kv::Store,
    local: &SqliteCatalog,
    tags: &ClusterKey,
) -> Result<(), String> {
    let failed =
        |err: &dyn std::fmt::Display| format!("cannot publish this node's access records: {err}");
    for token in local.tokens().await.map_err(|e| failed(&e))? {
        let key = token_key(&token.record.id);
        let revoked_here = token.record.revoked_at.is_some();
        let entry = TokenEntry {
            record: token.record,
            hash: token.hash,
        };
        let bytes = seal(tags, &key, &entry);
        let there = bucket.entry(&key).await.map_err(|e| failed(&e))?;
        let theirs = there
            .as_ref()
            .filter(|e| e.operation == kv::Operation::Put)
            .and_then(|e| open::<TokenEntry>(tags, &key, &e.value).ok());
        match (theirs, there) {
            // Live there, revoked here: the revocation wins.
            (Some(theirs), Some(there)) if revoked_here && theirs.record.revoked_at.is_none() => {
                let _ = bucket.update(&key, bytes.into(), there.revision).await;
            }
            (Some(_), _) => {}
            // Not Kindling's, or a delete marker: written over.
            (None, Some(there)) => {
                let _ = bucket.update(&key, bytes.into(), there.revision).await;
            }
            (None, None) => {
                let _ = bucket.create(&key, bytes.into()).await;
            }
        }
    }
    for namespace in local.namespaces().await.map_err(|e| failed(&e))? {
        let key = namespace_key(&namespace.name);
        offer::<NamespaceRecord>(bucket, tags, &key, seal(tags, &key, &namespace)).await?;
    }
    // The cluster's policies win whole: this node's are published only to a cluster that has
    // never had any, so that no merge can make a set that does not compile.
    let set: PolicySet = local
        .policies()
        .await
        .map_err(|e| failed(&e))?
        .into_iter()
        .map(|p| (p.name.clone(), p))
        .collect();
    if !set.is_empty() {
        let bytes = seal(tags, POLICIES_KEY, &set);
        offer::<PolicySet>(bucket, tags, POLICIES_KEY, bytes).await?;
    }
    Ok(())
}

/// Writes `bytes` at `key` unless a record of Kindling's is there already (what the cluster
/// has wins); one that is not Kindling's, or a delete marker, is written over.
async fn offer<T: for<'de> serde::Deserialize<'de>>(
    bucket: &kv::Store,
    tags: &ClusterKey,
    key: &str,
    bytes: Vec<u8>,
) -> Result<(), String> {
    let current = bucket
        .entry(key)
        .await
        .map_err(|err| format!("cannot publish this node's {key:?}: {err}"))?;
    match current {
        Some(entry)
            if entry.operation == kv::Operation::Put
                && open::<T>(tags, key, &entry.value).is_ok() => {}
        Some(entry) => {
            let _ = bucket.update(key, bytes.into(), entry.revision).await;
        }
        None => {
            let _ = bucket.create(key, bytes.into()).await;
        }
    }
    Ok(())
}
