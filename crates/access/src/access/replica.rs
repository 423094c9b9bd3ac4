//! Changes made on other nodes (cluster mode): the store holds the copies, and [`Access::reload`]
//! makes memory follow, so that a token made, revoked or limited on one node counts at once on
//! every node the change has reached.

use std::collections::HashMap;

use super::{Access, AccessError, known, sources};

impl Access {
    /// Reads tokens, namespaces and policies from the store again and serves what it holds
    /// now. A policy set that no longer compiles (it compiled on the node that stored it, so
    /// only a different Kindling version gets here) leaves the previous set in force, logged.
    pub async fn reload(&self) -> Result<(), AccessError> {
        let _change = self.changes.lock().await;
        let tokens = self.store.tokens().await?;
        let namespaces = self.store.namespaces().await?;
        let policies = self.store.policies().await?;
        let tokens: HashMap<_, _> = tokens.into_iter().filter_map(known).collect();
        *self.tokens.write().expect("tokens lock") = tokens;
        {
            let mut known_namespaces = self.namespaces.write().expect("namespaces lock");
            for namespace in namespaces {
                // Only a change of quotas touches the limiter: setting them anew would refill
                // the namespace's rate bucket at every change anywhere in the cluster.
                let known = known_namespaces.get(&namespace.name);
                if known.is_none_or(|k| k.quotas != namespace.quotas) {
                    self.quota.set(&namespace.name, &namespace.quotas);
                }
                known_namespaces.insert(namespace.name.clone(), namespace);
            }
        }
        if let Err(err) = self.policies.install(&sources(&policies)) {
            tracing::error!(error = %err, "the policies changed elsewhere do not compile here; the previous set stays in force");
        }
        Ok(())
    }
}
