//! What can go wrong reading a trace or setting up a simulation.

use std::path::PathBuf;

/// A trace that could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TraceError {
    /// The file or directory could not be read.
    #[error("cannot read trace {path:?}: {error}")]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        error: std::io::Error,
    },
    /// The file is not in a format this crate reads.
    #[error("trace {path:?}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// One line is malformed.
    #[error("trace {path:?} line {line}: {problem}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: String,
    },
}

/// A simulation that cannot run as asked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A policy that unloads only under a budget was given none.
    #[error("policy {0:?} unloads only under a memory budget: give one (--budget-mb)")]
    NeedsBudget(String),
    /// The trace has no calls.
    #[error("the trace has no calls")]
    EmptyTrace,
    /// A bad option.
    #[error("{0}")]
    Option(String),
}
