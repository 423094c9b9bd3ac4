//! Kindling's function registry.
//!
//! [`Catalog`] is what a node needs of one: functions and their immutable, sha256-addressed
//! versions, and the module bytes they run. [`SqliteCatalog`], the embedded default, keeps them
//! in SQLite and files named by their hash. [`AccessStore`] keeps tokens, namespaces, policies
//! and the audit log beside them. Deploys are atomic: the module file is durable
//! before the one transaction that records the version and activates it.

mod access;
mod backup;
mod catalog;
mod delivery;
mod error;
mod model;
mod schema;
mod sqlite;
mod sqlite_access;
mod sqlite_access_replica;
mod sqlite_replica;

pub use access::{
    AccessStore, AuditRecord, NamespaceRecord, PolicyRecord, Quotas, StoredToken, TokenRecord,
};
pub use backup::{BackupReport, DataDirLock, backup, restore, verify};
pub use catalog::{Catalog, ModuleHold, ModuleHolds};
pub use delivery::{Missed, RetryConfig, ScheduleConfig, TriggerConfig, TriggerKind};
pub use error::RegistryError;
pub use model::{
    FunctionConfig, FunctionRecord, InvokeAuth, LimitsConfig, NewVersion, Priority, VersionRecord,
    validate_label, validate_name,
};
pub use sqlite::{SqliteCatalog, sha256_hex};
pub use sqlite_replica::{Replica, ReplicaChange};
