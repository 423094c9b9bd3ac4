//! Registry errors, each naming the function, version or file involved.

use std::path::PathBuf;

/// What can go wrong reading or changing the registry.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The database could not be opened or migrated.
    #[error("failed to open registry database {path:?}: {error}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        error: rusqlite::Error,
    },
    /// The database fails SQLite's integrity check.
    #[error(
        "registry database {path:?} is damaged ({detail}); stop the node and restore the data \
         directory from a backup (`kindling restore`), or move the database away to start empty"
    )]
    Damaged {
        /// The database file.
        path: PathBuf,
        /// What SQLite's check found first.
        detail: String,
    },
    /// Another process holds the data directory.
    #[error(
        "the data directory {path:?} is in use by another `kindling serve` (or a restore); stop \
         it first, or give this node its own --data-dir"
    )]
    InUse {
        /// The data directory.
        path: PathBuf,
    },
    /// A backup is incomplete or inconsistent.
    #[error("backup {path:?}: {problem}")]
    Backup {
        /// The backup directory.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The database was written by a newer Kindling.
    #[error(
        "registry database {path:?} has schema version {found}, newer than the {known} this \
         Kindling understands: upgrade Kindling or point --data-dir elsewhere"
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The schema version found.
        found: usize,
        /// The newest schema version this build knows.
        known: usize,
    },
    /// A query failed.
    #[error("registry database: {0}")]
    Database(rusqlite::Error),
    /// A module file could not be read or written.
    #[error("registry file {path:?}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The function name breaks the naming rules.
    #[error("invalid function name {name:?}: {reason}")]
    InvalidName {
        /// The refused name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The function configuration is not acceptable.
    #[error("invalid function configuration: {0}")]
    InvalidConfig(String),
    /// No function has this name.
    #[error("no function named {0:?}")]
    FunctionNotFound(String),
    /// The function has no such version.
    #[error("function {name:?} has no version {version}")]
    VersionNotFound {
        /// The function.
        name: String,
        /// The missing version.
        version: u32,
    },
    /// There is no earlier version to roll back to.
    #[error("function {0:?} has no earlier version to roll back to")]
    NothingToRollBack(String),
    /// No token has this id (or name).
    #[error("no token with id or name {0:?}; `kindling token ls` lists them")]
    TokenNotFound(String),
    /// A namespace of this name exists already.
    #[error("namespace {0:?} exists already; change its quotas with `kindling ns set`")]
    NamespaceExists(String),
    /// No active policy has this name.
    #[error("no policy named {0:?}; `kindling policy ls` lists them")]
    PolicyNotFound(String),
    /// Another node changed the function while this change was made; nothing was recorded.
    #[error("{0}")]
    Conflict(String),
    /// The shared registry (cluster mode) cannot be reached; nothing was changed.
    #[error("{0}")]
    Unavailable(String),
    /// A stored row does not parse: the database was edited by something else.
    #[error("registry database holds an unreadable row: {0}")]
    Corrupt(String),
    /// The blocking worker thread panicked or was cancelled.
    #[error("registry worker failed: {0}")]
    Worker(String),
}

// The messages above include their cause, so no variant exposes it as `source()` as well: a
// caller printing the whole chain (`{err:#}`) would say everything twice.
impl From<rusqlite::Error> for RegistryError {
    fn from(error: rusqlite::Error) -> Self {
        Self::Database(error)
    }
}
