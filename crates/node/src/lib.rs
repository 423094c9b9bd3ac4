//! One Kindling node: the registry, the runtime, the scheduler and the table of functions.
//!
//! The node owns the control plane (deploy, rollback, delete, start-up discovery), the
//! request path's lookup, admission and warm-up, and the background tick that unloads idle
//! functions and computes autoscaling signals. A failed change leaves the previous version
//! serving.

mod config;
mod entry;
mod error;
mod keeper;
mod node;
mod settings;

pub use config::NodeConfig;
pub use entry::{Code, Entry, Usage};
pub use error::{Fault, NodeError};
pub use node::{DeployOutcome, Node, RESERVED_NAMES};
