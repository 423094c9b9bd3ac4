//! What can go wrong with the queue, its schedules and triggers, in words a caller can act on.

/// The events crate's errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventsError {
    /// The queue database failed.
    #[error("invocation queue: {0}")]
    Storage(String),
    /// No invocation has that id.
    #[error("no invocation {0:?}; `kindling invocations ls` lists them")]
    NotFound(String),
    /// The queue is full.
    #[error("the invocation queue holds {limit} waiting invocations, its limit; retry later")]
    Full {
        /// The node's limit.
        limit: u64,
    },
    /// A namespace has as many invocations waiting as it may.
    #[error(
        "namespace {namespace:?} has {limit} invocations waiting, its share of the queue; \
         retry later"
    )]
    NamespaceFull {
        /// The namespace.
        namespace: String,
        /// The node's limit per namespace.
        limit: u64,
    },
    /// A request is not fit to be queued.
    #[error("{0}")]
    Invalid(String),
    /// The invocation is not in a state the operation applies to.
    #[error("{0}")]
    Conflict(String),
    /// The cluster's queue cannot say whether it took the invocation now; a retry with the
    /// same idempotency key is safe.
    #[error("{0}; retry with the same idempotency key")]
    Unavailable(String),
    /// The cluster, which may hold what was asked for, cannot be reached now.
    #[error("{0}; retry once the cluster is reachable")]
    Unreachable(String),
}

impl From<rusqlite::Error> for EventsError {
    fn from(err: rusqlite::Error) -> Self {
        Self::Storage(err.to_string())
    }
}
