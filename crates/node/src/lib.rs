//! One Kindling node: the registry, the runtime and the table of live functions.
//!
//! The node owns the control plane (deploy, rollback, delete, start-up loading) and the one
//! lookup the request path makes. It keeps the rule that a failed change leaves the previous
//! version serving.

mod error;
mod node;

pub use error::{Fault, NodeError};
pub use node::{Active, DeployOutcome, Node, NodeConfig, RESERVED_NAMES};
