//! Errors of the node's control plane, each saying whether the caller or the node is at fault.

use kindling_host::HostError;
use kindling_registry::RegistryError;
use kindling_runtime::PrepareError;

/// A deploy, rollback, delete or lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The registry refused or failed.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The uploaded module was refused, or compiling it failed.
    #[error("function {name:?}: {error}")]
    Prepare {
        /// The function being deployed.
        name: String,
        /// Why it could not be prepared.
        error: PrepareError,
    },
    /// The configuration cannot be honoured by this node.
    #[error("invalid function configuration: {0}")]
    Config(String),
    /// A capability refused its part of the configuration.
    #[error("invalid function configuration: {0}")]
    Capability(HostError),
    /// The name is reserved for the node's own routes.
    #[error("function name {0:?} is reserved for Kindling's own routes; choose another")]
    ReservedName(String),
    /// A deploy gate (a quota or a policy) refused the deploy; nothing was recorded.
    #[error("{}", .0.message)]
    Refused(crate::gate::Refusal),
    /// A background task failed.
    #[error("internal error: {0}")]
    Internal(String),
    /// The WebAssembly runtime could not start with the node's settings.
    #[error("cannot start the WebAssembly runtime: {0}")]
    Runtime(PrepareError),
}

/// Who is to blame for an error: decides 4xx or 5xx at the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The request named something that does not exist.
    NotFound,
    /// The request was wrong (bad name, bad binary, bad configuration).
    Client,
    /// The request conflicts with the current state (nothing to roll back to).
    Conflict,
    /// A quota or a policy refused the change.
    Refused,
    /// The node's disk is full: the change was not made.
    Storage,
    /// The shared registry cannot be reached (cluster mode): the change was not made, and the
    /// node keeps serving what it has.
    Unavailable,
    /// The node failed.
    Server,
}

impl NodeError {
    /// Classifies the error.
    pub fn fault(&self) -> Fault {
        if self.is_storage_full() {
            return Fault::Storage;
        }
        match self {
            Self::Registry(
                RegistryError::FunctionNotFound(_)
                | RegistryError::VersionNotFound { .. }
                | RegistryError::TokenNotFound(_)
                | RegistryError::PolicyNotFound(_),
            ) => Fault::NotFound,
            Self::Registry(
                RegistryError::NothingToRollBack(_)
                | RegistryError::NamespaceExists(_)
                | RegistryError::Conflict(_),
            ) => Fault::Conflict,
            Self::Registry(RegistryError::Unavailable(_)) => Fault::Unavailable,
            Self::Registry(RegistryError::InvalidName { .. } | RegistryError::InvalidConfig(_))
            | Self::ReservedName(_)
            | Self::Config(_)
            | Self::Capability(_) => Fault::Client,
            Self::Prepare { error, .. } if error.is_client_error() => Fault::Client,
            Self::Refused(_) => Fault::Refused,
            _ => Fault::Server,
        }
    }
}

impl NodeError {
    /// True when the error is a full disk (or a full database).
    fn is_storage_full(&self) -> bool {
        let full = |error: &std::io::Error| error.kind() == std::io::ErrorKind::StorageFull;
        match self {
            Self::Registry(RegistryError::Io { error, .. }) => full(error),
            Self::Registry(RegistryError::Database(error)) => {
                error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
            }
            Self::Prepare {
                error: PrepareError::Cache { error, .. },
                ..
            } => full(error),
            _ => false,
        }
    }
}
