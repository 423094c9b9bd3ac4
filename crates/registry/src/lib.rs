//! Kindling's function registry.
//!
//! Functions and their immutable, sha256-addressed versions live in an embedded SQLite
//! database; module bytes are files named by their hash. Deploys are atomic: the module file is
//! durable before the one transaction that records the version and activates it.

mod error;
mod model;
mod registry;
mod schema;

pub use error::RegistryError;
pub use model::{
    FunctionConfig, FunctionRecord, LimitsConfig, MountConfig, Priority, VersionRecord,
    validate_name,
};
pub use registry::{NewVersion, Registry, sha256_hex};
