//! The NATS connection and the cluster's JetStream buckets: `kindling-functions` (one record
//! per function), `kindling-modules` (module bytes by sha256), `kindling-artifacts` (compiled
//! code by module and engine), `kindling-access` (tokens, namespaces, policies) and
//! `kindling-nodes` (heartbeats that expire). Buckets are made by the first node that needs them, with the replicas asked
//! for (one on a single NATS server).

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use kindling_registry::{RegistryError, sha256_hex};
use tokio::io::AsyncReadExt as _;

use crate::config::ClusterConfig;
use crate::error::ClusterError;

pub(crate) const FUNCTIONS: &str = "kindling-functions";
pub(crate) const MODULES: &str = "kindling-modules";
pub(crate) const NODES: &str = "kindling-nodes";
pub(crate) const ARTIFACTS: &str = "kindling-artifacts";
pub(crate) const ACCESS: &str = "kindling-access";

/// How long a JetStream request may take before the cluster counts as unreachable.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// The cluster's buckets, once they are open.
#[derive(Clone)]
pub(crate) struct Buckets {
    pub(crate) functions: kv::Store,
    pub(crate) modules: object_store::ObjectStore,
    pub(crate) artifacts: object_store::ObjectStore,
    pub(crate) access: kv::Store,
    pub(crate) nodes: kv::Store,
}

/// Connects to NATS; the client keeps reconnecting in the background whatever happens, so
/// this fails only on settings (a credentials file that cannot be read).
pub(crate) async fn connect(config: &ClusterConfig) -> Result<async_nats::Client, ClusterError> {
    let mut options = async_nats::ConnectOptions::new()
        .name(format!("kindling {}", config.node_name))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(Some(REQUEST_TIMEOUT));
    if let Some(path) = &config.credentials {
        options =
            options
                .credentials_file(path)
                .await
                .map_err(|error| ClusterError::Credentials {
                    path: path.clone(),
                    error,
                })?;
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    options
        .connect(config.servers.clone())
        .await
        .map_err(|err| ClusterError::Connect {
            servers: config.servers.join(","),
            detail: err.to_string(),
        })
}

/// Opens (making them if needed) the cluster's buckets.
pub(crate) async fn open(
    client: &async_nats::Client,
    config: &ClusterConfig,
) -> Result<Buckets, String> {
    let js = config.jetstream(client);
    let replicas = config.replicas;
    let functions = key_value(&js, replicas, |num_replicas| kv::Config {
        bucket: FUNCTIONS.into(),
        description: "Kindling: one record per function (versions, the active one)".into(),
        history: 1,
        num_replicas,
        ..Default::default()
    })
    .await?;
    let nodes = key_value(&js, replicas, |num_replicas| kv::Config {
        bucket: NODES.into(),
        description: "Kindling: node heartbeats, expiring".into(),
        history: 1,
        max_age: config.heartbeat * 5,
        num_replicas,
        ..Default::default()
    })
    .await?;
    let access = key_value(&js, replicas, |num_replicas| kv::Config {
        bucket: ACCESS.into(),
        description: "Kindling: API tokens (hashes only), namespaces, active policies".into(),
        history: 1,
        num_replicas,
        ..Default::default()
    })
    .await?;
    let modules = objects(&js, replicas, MODULES, "Kindling: module bytes by sha256").await?;
    let artifacts = objects(
        &js,
        replicas,
        ARTIFACTS,
        "Kindling: compiled code by module sha256 and engine key, authenticated",
    )
    .await?;
    Ok(Buckets {
        functions,
        modules,
        artifacts,
        access,
        nodes,
    })
}

/// An object store, made with the replicas asked for (one on a single server) if it is new.
async fn objects(
    js: &jetstream::Context,
    replicas: usize,
    bucket: &str,
    description: &str,
) -> Result<object_store::ObjectStore, String> {
    if let Ok(store) = js.get_object_store(bucket).await {
        return Ok(store);
    }
    let make = |num_replicas| object_store::Config {
        bucket: bucket.into(),
        description: Some(description.into()),
        num_replicas,
        ..Default::default()
    };
    match js.create_object_store(make(replicas)).await {
        Ok(store) => Ok(store),
        Err(err) if replicas > 1 && single_server(&err.to_string()) => js
            .create_object_store(make(1))
            .await
            .map_err(|err| format!("cannot make the bucket {bucket}: {err}")),
        Err(err) => Err(format!("cannot make the bucket {bucket}: {err}")),
    }
}

/// A key-value bucket, made as JetStream's key-value convention lays it out (stream
/// `KV_{bucket}` on `$KV.{bucket}.>`, one message kept per key and revision). The client's own
/// `create_key_value` first reads the account's limits, whose answer from nats-server 2.9
/// (Debian's) it cannot parse, so the stream is made directly.
pub(crate) async fn key_value(
    js: &jetstream::Context,
    replicas: usize,
    config: impl Fn(usize) -> kv::Config,
) -> Result<kv::Store, String> {
    let bucket = config(replicas).bucket;
    if let Ok(store) = js.get_key_value(&bucket).await {
        return Ok(store);
    }
    let stream = |num_replicas| {
        let kv = config(num_replicas);
        jetstream::stream::Config {
            name: format!("KV_{}", kv.bucket),
            description: Some(kv.description),
            subjects: vec![format!("$KV.{}.>", kv.bucket)],
            max_messages_per_subject: kv.history.max(1),
            max_age: kv.max_age,
            num_replicas,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: jetstream::stream::DiscardPolicy::New,
            ..Default::default()
        }
    };
    let made = match js.create_stream(stream(replicas)).await {
        Err(err) if replicas > 1 && single_server(&err.to_string()) => {
            tracing::warn!(
                bucket,
                "NATS is a single server, not a cluster: the bucket keeps one replica"
            );
            js.create_stream(stream(1)).await
        }
        made => made,
    };
    made.map_err(|err| format!("cannot make the bucket {bucket}: {err}"))?;
    js.get_key_value(&bucket)
        .await
        .map_err(|err| format!("cannot open the bucket {bucket}: {err}"))
}

/// JetStream's answer to replicas asked of a server that is not clustered.
fn single_server(error: &str) -> bool {
    error.contains("non-clustered")
}

impl Buckets {
    /// Uploads a module unless the store has it.
    pub(crate) async fn put_module(&self, sha256: &str, bytes: &[u8]) -> Result<(), String> {
        if let Ok(info) = self.modules.info(sha256).await
            && !info.deleted
            && info.size == bytes.len()
        {
            return Ok(());
        }
        let mut reader = bytes;
        self.modules
            .put(sha256, &mut reader)
            .await
            .map(|_| ())
            .map_err(|err| format!("cannot upload module {sha256} to the cluster: {err}"))
    }

    /// Downloads a module and checks that its bytes are what its name says.
    pub(crate) async fn get_module(&self, sha256: &str) -> Result<Bytes, RegistryError> {
        let unavailable = |err: String| {
            RegistryError::Unavailable(format!(
                "cannot download module {sha256} from the cluster: {err}"
            ))
        };
        let mut object = self
            .modules
            .get(sha256)
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        let mut bytes = Vec::new();
        object
            .read_to_end(&mut bytes)
            .await
            .map_err(|err| unavailable(err.to_string()))?;
        if sha256_hex(&bytes) != sha256 {
            return Err(RegistryError::Corrupt(format!(
                "the cluster's copy of module {sha256} has other bytes (sha256 {}); deploy the \
                 function again to upload it anew",
                sha256_hex(&bytes)
            )));
        }
        Ok(bytes.into())
    }
}
