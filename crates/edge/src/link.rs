//! The link between an edge and its hub: an edge asks the hub to source its stream
//! (`kindling.state.join`) every heartbeat, which is also how it knows the link is up; the hub
//! adds the source the first time, and reports each edge's last contact and lag.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_nats::jetstream::stream::{External, Source};
use futures::StreamExt as _;
use kindling_cap_keyvalue::LinkReport;

use crate::streams::{EDGE_IN, HUB_STREAM, edge_stream};
use crate::{Role, Sync};

/// The subject edges ask the hub on.
const JOIN: &str = "kindling.state.join";

pub(crate) async fn run(sync: Arc<Sync>) {
    match &sync.config.role {
        Role::Hub => hub(sync).await,
        Role::Edge { .. } => edge(sync).await,
    }
}

/// Missed heartbeats after which a link is reported down.
const MISSED: u32 = 3;

/// Where an edge keeps its last contact with the hub (seconds since 1970), for the staleness
/// of its reads after a restart.
const CONTACT_FILE: &str = "sync-hub-contact";

/// How often the kept contact is brought up to date while the link is up.
const KEEP_CONTACT_EVERY: Duration = Duration::from_secs(10);

/// The last contact an earlier process kept, if any.
pub(crate) async fn kept_contact(kv: &kindling_cap_keyvalue::KeyValue) -> Option<SystemTime> {
    let text = tokio::fs::read_to_string(kv.data_dir().join(CONTACT_FILE))
        .await
        .ok()?;
    let seconds: u64 = text.trim().parse().ok()?;
    Some(std::time::UNIX_EPOCH + Duration::from_secs(seconds))
}

async fn keep_contact(sync: &Sync, at: SystemTime) {
    let seconds = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let path = sync.kv.data_dir().join(CONTACT_FILE);
    if let Err(err) = tokio::fs::write(&path, seconds.to_string()).await {
        tracing::warn!(path = %path.display(), error = %err,
            "sync: cannot keep the hub's last contact; after a restart, reads count from then");
    }
}

async fn edge(sync: Arc<Sync>) {
    let mut last_contact = None;
    let mut kept: Option<SystemTime> = None;
    let mut was_up = None;
    loop {
        let asked = tokio::time::timeout(
            sync.config.heartbeat.max(Duration::from_secs(1)),
            sync.client
                .request(JOIN, sync.config.node.clone().into_bytes().into()),
        )
        .await;
        let answer = match asked {
            Ok(Ok(reply)) => String::from_utf8_lossy(&reply.payload).into_owned(),
            Ok(Err(err)) => format!("error: {err}"),
            Err(_) => "error: no answer".into(),
        };
        let up = answer == "ok";
        if up {
            let now = SystemTime::now();
            last_contact = Some(now);
            let due = kept
                .is_none_or(|at| now.duration_since(at).unwrap_or_default() >= KEEP_CONTACT_EVERY);
            if due {
                keep_contact(&sync, now).await;
                kept = Some(now);
            }
        }
        if was_up != Some(up) {
            if up {
                tracing::info!("sync: the hub is reachable; changes flow both ways");
            } else {
                tracing::warn!(answer = %answer,
                    "sync: the hub cannot be reached; serving and writing locally");
            }
            was_up = Some(up);
        }
        let lag = match sync.js.get_stream(EDGE_IN).await {
            Ok(stream) => match stream.get_info().await {
                Ok(info) => {
                    (sync.kv.sync_status()).note_stream(info.state.messages, info.state.bytes);
                    info.mirror.map_or(0, |mirror| mirror.lag)
                }
                Err(_) => 0,
            },
            Err(_) => 0,
        };
        sync.kv.sync_status().report(vec![LinkReport {
            peer: "hub".into(),
            up,
            last_contact,
            lag,
        }]);
        tokio::time::sleep(sync.config.heartbeat).await;
    }
}

async fn hub(sync: Arc<Sync>) {
    let joined: Arc<std::sync::Mutex<HashMap<String, SystemTime>>> = Arc::default();
    tokio::spawn(report(sync.clone(), joined.clone()));
    loop {
        let mut requests = match sync
            .client
            .queue_subscribe(JOIN, "kindling-hub".into())
            .await
        {
            Ok(requests) => requests,
            Err(err) => {
                tracing::warn!(error = %err, "sync: cannot take edges' requests; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(request) = requests.next().await {
            let edge = String::from_utf8_lossy(&request.payload).into_owned();
            let answer = match source(&sync, &edge).await {
                Ok(()) => {
                    joined
                        .lock()
                        .expect("joined lock")
                        .insert(edge, SystemTime::now());
                    "ok".to_string()
                }
                Err(err) => {
                    tracing::warn!(%edge, error = %err, "sync: cannot source an edge's stream");
                    err
                }
            };
            if let Some(reply) = request.reply {
                let _ = sync.client.publish(reply, answer.into_bytes().into()).await;
            }
        }
    }
}

/// Has the hub's stream source `edge`'s, if it does not yet.
async fn source(sync: &Sync, edge: &str) -> Result<(), String> {
    let valid = !edge.is_empty()
        && edge.len() <= 64
        && edge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid {
        return Err(format!("{edge:?} is no edge name"));
    }
    if edge == sync.config.node {
        return Err(format!("{edge:?} is this hub node's own name"));
    }
    let stream = sync
        .js
        .get_stream(HUB_STREAM)
        .await
        .map_err(|err| format!("cannot open {HUB_STREAM}: {err}"))?;
    let info = stream
        .get_info()
        .await
        .map_err(|err| format!("cannot read {HUB_STREAM}: {err}"))?;
    let name = edge_stream(edge);
    let mut config = info.config;
    let sources = config.sources.get_or_insert_with(Vec::new);
    if sources.iter().any(|source| source.name == name) {
        return Ok(());
    }
    sources.push(Source {
        name,
        external: Some(External {
            api_prefix: format!("$JS.{edge}.API"),
            delivery_prefix: None,
        }),
        ..Default::default()
    });
    sync.js
        .update_stream(config)
        .await
        .map_err(|err| format!("cannot add {edge}'s stream to {HUB_STREAM}: {err}"))?;
    tracing::info!(%edge, "sync: a new edge; its changes are sourced from now on");
    Ok(())
}

/// Reports each edge the hub sources: when it last asked, and how far behind its stream is.
async fn report(sync: Arc<Sync>, joined: Arc<std::sync::Mutex<HashMap<String, SystemTime>>>) {
    let stale = sync.config.heartbeat * MISSED;
    loop {
        tokio::time::sleep(sync.config.heartbeat).await;
        let info = match sync.js.get_stream(HUB_STREAM).await {
            Ok(stream) => stream.get_info().await.ok(),
            Err(_) => None,
        };
        let Some(info) = info else {
            // The hub's own NATS server is out of reach: no edge's changes flow.
            let mut links = sync.kv.sync_status().links();
            links.iter_mut().for_each(|link| link.up = false);
            sync.kv.sync_status().report(links);
            continue;
        };
        (sync.kv.sync_status()).note_stream(info.state.messages, info.state.bytes);
        let joined = joined.lock().expect("joined lock").clone();
        let now = SystemTime::now();
        let links = info
            .sources
            .iter()
            .filter_map(|source| {
                let edge = source.name.strip_prefix("KINDLING_STATE_OUT_")?;
                let last_contact = joined.get(edge).copied();
                let recent = last_contact
                    .and_then(|at| now.duration_since(at).ok())
                    .is_some_and(|since| since <= stale);
                Some(LinkReport {
                    peer: edge.to_string(),
                    up: recent,
                    last_contact,
                    lag: source.lag,
                })
            })
            .collect();
        sync.kv.sync_status().report(links);
    }
}
