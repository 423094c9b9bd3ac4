//! Errors at the capability seam, each naming the capability (and through it the field) that
//! refused.

/// A capability could not link, configure or prepare.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The function's configuration has a field no capability owns.
    #[error("unknown field `{field}`, expected one of {expected}")]
    UnknownField {
        /// The field.
        field: String,
        /// The fields there are, for the message.
        expected: String,
    },
    /// A field does not have the shape the capability reads.
    #[error("{capability}: {message}")]
    Malformed {
        /// The capability.
        capability: &'static str,
        /// The parser's message, naming the field.
        message: String,
    },
    /// A capability refused its section of the configuration.
    #[error("{capability}: {message}")]
    Config {
        /// The capability.
        capability: &'static str,
        /// Why, naming the field and what to do.
        message: String,
    },
    /// A capability could not back up or restore the data it keeps.
    #[error("{capability}: {message}")]
    Data {
        /// The capability.
        capability: &'static str,
        /// What failed, and what to do.
        message: String,
    },
    /// A capability could not add its host functions to the linkers.
    #[error("{capability}: cannot link its host functions: {message}")]
    Link {
        /// The capability.
        capability: &'static str,
        /// Wasmtime's message.
        message: String,
    },
    /// A capability could not build its state for an instance.
    #[error("{capability}: cannot prepare the instance: {message}")]
    Prepare {
        /// The capability.
        capability: &'static str,
        /// Why.
        message: String,
    },
}
