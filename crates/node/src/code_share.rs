//! Compiled code shared between nodes: in cluster mode a module is compiled by the node it is
//! deployed on, which offers the machine code to the others before it commits the version, so
//! the nodes that follow map that code instead of compiling the module again. The node decides
//! when (offer what it compiled; look for a peer's code before compiling); the [`CodeShare`]
//! (cluster mode's, a JetStream object store with every copy authenticated) carries it.

use std::sync::Arc;

use async_trait::async_trait;
use kindling_registry::VersionRecord;
use kindling_runtime::{FunctionSettings, LoadSource, Loaded};

use crate::error::NodeError;
use crate::node::{Node, blocking};

/// Where compiled code is shared.
#[async_trait]
pub trait CodeShare: Send + Sync + 'static {
    /// Code a peer published for the module under this engine key, when there is some and it
    /// is authentic; `None` sends the node to compile.
    async fn fetch(&self, sha256: &str, engine: &str) -> Option<Vec<u8>>;

    /// Offers this node's code for the module to the others. A failure is only logged (by
    /// the share): the others then compile.
    async fn publish(&self, sha256: &str, engine: &str, code: Vec<u8>);
}

impl Node {
    /// Shares compiled code through `share`; set once, by cluster mode after the node is open.
    pub fn set_code_share(&self, share: Arc<dyn CodeShare>) {
        let _ = self.code_share.set(share);
    }

    /// [`Node::load`] for a version another node may have compiled (a change from the
    /// cluster, a rollback): a peer's code is fetched first when this node has none, and code
    /// this node had to compile is offered to the others. The request path's cold start loads
    /// from the local cache only.
    pub(crate) async fn load_sharing(
        &self,
        record: &VersionRecord,
        settings: FunctionSettings,
    ) -> Result<Loaded, NodeError> {
        self.fetch_code(&record.sha256).await;
        let loaded = self.load(record, settings).await?;
        self.offer_code(&record.sha256, loaded.source, false).await;
        Ok(loaded)
    }

    /// Puts a peer's code for `sha256` in the artifact cache when this node has none.
    async fn fetch_code(&self, sha256: &str) {
        let Some(share) = self.code_share.get() else {
            return;
        };
        let runtime = self.runtime.clone();
        let module = sha256.to_string();
        if blocking(move || runtime.is_cached(&module))
            .await
            .unwrap_or(true)
        {
            return;
        }
        let Some(code) = share.fetch(sha256, self.runtime.engine_key()).await else {
            return;
        };
        let runtime = self.runtime.clone();
        let module = sha256.to_string();
        match blocking(move || runtime.install_compiled(&module, &code)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(module = sha256, error = %err, "a peer's compiled code cannot be cached here")
            }
            Err(err) => tracing::warn!(module = sha256, error = %err, "cannot cache a peer's code"),
        }
    }

    /// After a load: offers the code to the others when this node compiled it, or when it was
    /// deployed here (it may predate the cluster).
    pub(crate) async fn offer_code(&self, sha256: &str, source: LoadSource, deployed: bool) {
        let Some(share) = self.code_share.get() else {
            return;
        };
        let worth = match source {
            LoadSource::Compiled => true,
            LoadSource::Cache => deployed,
            _ => false,
        };
        if !worth {
            return;
        }
        let runtime = self.runtime.clone();
        let module = sha256.to_string();
        if let Ok(Some(code)) = blocking(move || runtime.compiled_code(&module)).await {
            share.publish(sha256, self.runtime.engine_key(), code).await;
        }
    }
}
