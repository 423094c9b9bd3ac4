//! Changes that reached the catalog from elsewhere: in cluster mode another node's deploy,
//! rollback or delete is copied into this node's catalog, and the table follows, one function
//! at a time, under the same control lock as a local change.

use kindling_registry::RegistryError;

use crate::error::NodeError;
use crate::node::{Node, shared};

impl Node {
    /// Makes the table serve what the catalog now records for `name`: the active version,
    /// loaded (compiled if this node has no artifact for it) and swapped in atomically, or
    /// nothing when the function is gone. A version this node cannot run leaves the previous
    /// one serving and is reported by [`Node::load_failures`] until a later change fixes it.
    /// `unreferenced` are the modules the copy collected, whose compiled code can go too.
    pub async fn refresh(&self, name: &str, unreferenced: Vec<String>) -> Result<(), NodeError> {
        let _control = self.control.lock().await;
        let outcome = self.follow(name).await;
        self.forget_modules(unreferenced).await?;
        outcome
    }

    async fn follow(&self, name: &str) -> Result<(), NodeError> {
        let version = match self.catalog.active_version(name).await {
            Ok(version) => version,
            Err(RegistryError::FunctionNotFound(_)) => {
                self.not_taken.lock().expect("not-taken lock").remove(name);
                if self.unlist(name).is_some() {
                    tracing::info!(function = name, "function deleted by another node");
                }
                return Ok(());
            }
            Err(err) => return Err(err.into()),
        };
        if self.lookup(name).is_some_and(|entry| {
            entry.version.version == version.version
                && entry.version.sha256 == version.sha256
                && entry.version.config == version.config
        }) {
            return Ok(());
        }
        let taken = async {
            let (settings, lane) = self.resolve(name, &version.config).await?;
            let loaded = match self.resident(&version.sha256, &settings) {
                Some(code) => shared(code, settings.clone()),
                None => self.load_sharing(&version, settings.clone()).await?,
            };
            Ok::<_, NodeError>((settings, lane, loaded))
        }
        .await;
        match taken {
            Ok((settings, lane, loaded)) => {
                let (number, source) = (version.version, loaded.source);
                self.install(version, settings, lane, Some(loaded));
                self.not_taken.lock().expect("not-taken lock").remove(name);
                tracing::info!(
                    function = name,
                    version = number,
                    source = source.as_str(),
                    "function changed by another node now serves here"
                );
                Ok(())
            }
            Err(err) => {
                let serving = self
                    .lookup(name)
                    .map_or("nothing serves it here".to_string(), |entry| {
                        format!("version {} keeps serving here", entry.version.version)
                    });
                let why = format!(
                    "version {} cannot run on this node ({serving}): {err}",
                    version.version
                );
                tracing::error!(function = name, error = %why, "cannot take a change");
                self.not_taken
                    .lock()
                    .expect("not-taken lock")
                    .insert(name.to_string(), why);
                Err(err)
            }
        }
    }
}
