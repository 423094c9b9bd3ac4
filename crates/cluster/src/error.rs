//! Errors of starting cluster mode; what happens later is reported through [`crate::Link`].

/// Cluster mode could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The cluster settings are wrong.
    #[error("{0}")]
    Config(String),
    /// The NATS credentials file could not be read.
    #[error("cannot read the NATS credentials file {path:?}: {error}")]
    Credentials {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The NATS client could not be built.
    #[error("cannot connect to NATS at {servers}: {detail}")]
    Connect {
        /// The servers asked for.
        servers: String,
        /// What failed.
        detail: String,
    },
}
