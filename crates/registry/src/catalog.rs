//! The [`Catalog`] trait: what a node needs of a registry, whatever keeps it. The embedded
//! default is SQLite ([`crate::SqliteCatalog`]); cluster mode keeps the same records in NATS
//! JetStream. Nothing above the node talks to a backend directly.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::RegistryError;
use crate::model::{FunctionRecord, NewVersion, VersionRecord};

/// Functions, their immutable versions and the module bytes they run.
///
/// Module files are content-addressed and shared between versions and functions. A module
/// between its upload and the commit of the version that uses it is *held* ([`Catalog::hold`]):
/// nothing collects it, so a delete running at the same time cannot remove a file a version is
/// about to reference.
#[async_trait]
pub trait Catalog: Send + Sync + 'static {
    /// Keeps the module `sha256` (its file and derived files) from being collected until the
    /// guard is dropped. Take it before storing the module and keep it past the commit.
    fn hold(&self, sha256: &str) -> ModuleHold;

    /// Where the function's record stands now, taken when a deploy begins and passed back in
    /// [`NewVersion::base`]: a catalog shared between nodes refuses a commit from a base
    /// another node has moved on from, so that of two concurrent deploys exactly one wins.
    /// `None` when the catalog is not shared. Fails when a shared catalog cannot be reached,
    /// before anything is compiled.
    async fn base(&self, _name: &str) -> Result<Option<u64>, RegistryError> {
        Ok(None)
    }

    /// Stores the module's bytes (once per distinct content); returns its sha256.
    async fn store_module(&self, bytes: Bytes) -> Result<String, RegistryError>;

    /// Where the module with this hash is kept on this node's disk.
    fn module_path(&self, sha256: &str) -> PathBuf;

    /// Records a new version and makes it active, atomically. Returns the version.
    async fn commit_version(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<VersionRecord, RegistryError>;

    /// Makes an existing version active (a rollback or roll-forward).
    async fn activate(&self, name: &str, version: u32) -> Result<VersionRecord, RegistryError>;

    /// The version a plain `rollback` goes to: the highest version below the active one.
    async fn previous_version(&self, name: &str) -> Result<u32, RegistryError>;

    /// Deletes a function and all its versions. Returns the hashes of modules no version uses
    /// any more and nobody holds, whose files are gone, so that derived files can go too.
    async fn delete_function(&self, name: &str) -> Result<Vec<String>, RegistryError>;

    /// Deletes the function's versions past the newest `keep` (never the active one). Returns
    /// the hashes of modules no version uses any more and nobody holds, as
    /// [`Catalog::delete_function`] does.
    async fn prune_versions(&self, name: &str, keep: u32) -> Result<Vec<String>, RegistryError>;

    /// The hashes of all modules some version uses.
    async fn referenced_modules(&self) -> Result<Vec<String>, RegistryError>;

    /// One function, if it exists.
    async fn function(&self, name: &str) -> Result<Option<FunctionRecord>, RegistryError>;

    /// All functions, by name.
    async fn functions(&self) -> Result<Vec<FunctionRecord>, RegistryError>;

    /// A function's versions, newest first.
    async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, RegistryError>;

    /// The active version of every function: what a starting node loads.
    async fn active_versions(&self) -> Result<Vec<VersionRecord>, RegistryError>;

    /// The active version of one function.
    async fn active_version(&self, name: &str) -> Result<VersionRecord, RegistryError>;

    /// Bytes the catalog occupies on this node's disk, for `/metrics`.
    async fn disk_bytes(&self) -> u64;

    /// Makes everything committed so far durable in the catalog's main file(s), so that a copy
    /// of them alone is a complete backup (SQLite: a WAL checkpoint).
    async fn checkpoint(&self) -> Result<(), RegistryError>;
}

/// Modules held between upload and commit, with a count per hash (concurrent deploys of the
/// same bytes each hold it).
#[derive(Debug, Clone, Default)]
pub struct ModuleHolds {
    held: Arc<Mutex<HashMap<String, usize>>>,
}

impl ModuleHolds {
    /// Holds `sha256` until the guard is dropped.
    pub fn hold(&self, sha256: &str) -> ModuleHold {
        *self
            .held
            .lock()
            .expect("holds lock")
            .entry(sha256.to_string())
            .or_default() += 1;
        ModuleHold {
            holds: self.clone(),
            sha256: sha256.to_string(),
        }
    }

    /// True while someone holds `sha256`.
    pub fn is_held(&self, sha256: &str) -> bool {
        self.held.lock().expect("holds lock").contains_key(sha256)
    }

    /// Runs `collect` (which removes the module's files) unless someone holds `sha256`, with
    /// no hold taken in between; returns whether it ran.
    pub fn unless_held(&self, sha256: &str, collect: impl FnOnce()) -> bool {
        let held = self.held.lock().expect("holds lock");
        if held.contains_key(sha256) {
            return false;
        }
        collect();
        true
    }
}

/// A module kept from collection; see [`Catalog::hold`].
#[derive(Debug)]
pub struct ModuleHold {
    holds: ModuleHolds,
    sha256: String,
}

impl Drop for ModuleHold {
    fn drop(&mut self) {
        let mut held = self.holds.held.lock().expect("holds lock");
        if let Some(count) = held.get_mut(&self.sha256) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.sha256);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_is_held_until_the_last_guard_drops() {
        let holds = ModuleHolds::default();
        let a = holds.hold("abc");
        let b = holds.hold("abc");
        assert!(holds.is_held("abc"));
        drop(a);
        assert!(holds.is_held("abc"), "the second deploy still holds it");
        drop(b);
        assert!(!holds.is_held("abc"));
    }
}
