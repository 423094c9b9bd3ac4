//! The policy half of [`Access`]: Rego sources stored in the registry (versioned) and
//! compiled into the active [`Policies`]; a set that does not compile changes nothing.

use std::path::Path;

use kindling_registry::PolicyRecord;

use super::{Access, AccessError};
use crate::caller::Caller;
use crate::policy::Policies;
use crate::token::Scope;

impl Access {
    /// The active policies.
    pub async fn list_policies(&self, caller: &Caller) -> Result<Vec<PolicyRecord>, AccessError> {
        caller.require(Scope::Read, None)?;
        Ok(self.store.policies().await?)
    }

    /// Stores a policy's new version and makes it active, once the whole set compiles with
    /// it; a policy that does not compile changes nothing.
    pub async fn put_policy(
        &self,
        caller: &Caller,
        name: &str,
        rego: &str,
    ) -> Result<PolicyRecord, AccessError> {
        caller.require(Scope::Admin, None)?;
        let _change = self.changes.lock().await;
        let mut set = sources(&self.store.policies().await?);
        set.retain(|(n, _)| n != name);
        set.push((name.to_string(), rego.to_string()));
        Policies::check(&set)?;
        let record = self.store.put_policy(name, rego).await?;
        self.policies.install(&set)?;
        Ok(record)
    }

    /// Deactivates a policy.
    pub async fn remove_policy(&self, caller: &Caller, name: &str) -> Result<(), AccessError> {
        caller.require(Scope::Admin, None)?;
        let _change = self.changes.lock().await;
        let mut set = sources(&self.store.policies().await?);
        set.retain(|(n, _)| n != name);
        Policies::check(&set)?;
        self.store.remove_policy(name).await?;
        self.policies.install(&set)?;
        Ok(())
    }

    /// Stores every `.rego` file of `dir` as a policy named by its file stem (a new version
    /// where the source changed), all checked together before any is stored.
    pub async fn load_policy_dir(&self, dir: &Path) -> Result<Vec<PolicyRecord>, AccessError> {
        let entries = std::fs::read_dir(dir).map_err(|error| {
            AccessError::Invalid(format!(
                "cannot read --policy-dir {}: {error}",
                dir.display()
            ))
        })?;
        let mut files = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_some_and(|e| e == "rego") {
                let name = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .unwrap_or_default()
                    .to_string();
                let rego = std::fs::read_to_string(&path).map_err(|error| {
                    AccessError::Invalid(format!("cannot read {}: {error}", path.display()))
                })?;
                files.push((name, rego));
            }
        }
        files.sort();
        let _change = self.changes.lock().await;
        let active = self.store.policies().await?;
        let mut set = sources(&active);
        set.retain(|(n, _)| !files.iter().any(|(f, _)| f == n));
        set.extend(files.iter().cloned());
        Policies::check(&set)?;
        let mut stored = Vec::new();
        for (name, rego) in &files {
            // An unchanged file is not stored again: a restart with the same directory changes
            // nothing (and, in cluster mode, needs no NATS).
            let same = active.iter().find(|p| {
                p.name == *name && p.sha256 == kindling_registry::sha256_hex(rego.as_bytes())
            });
            match same {
                Some(policy) => stored.push(policy.clone()),
                None => stored.push(self.store.put_policy(name, rego).await?),
            }
        }
        self.policies.install(&set)?;
        Ok(stored)
    }
}

pub(super) fn sources(policies: &[PolicyRecord]) -> Vec<(String, String)> {
    policies
        .iter()
        .map(|p| (p.name.clone(), p.rego.clone()))
        .collect()
}
