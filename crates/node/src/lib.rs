//! One Kindling node: the catalog, the runtime, the scheduler and the table of functions.
//!
//! The node owns the control plane (deploy, rollback, delete, start-up discovery), the one
//! entry point of every invocation ([`Node::invoke`]: lookup, call-chain limits, admission,
//! warm-up, metrics and the span), and the background tick that unloads idle functions and
//! computes autoscaling signals. A failed change leaves the previous version serving.

mod clock;
mod code_share;
mod config;
mod dispatch;
mod entry;
mod error;
#[cfg(feature = "failpoints")]
mod failpoint;
mod failure;
mod gate;
mod ids;
mod invoke;
mod keeper;
mod metrics;
mod node;
mod replica;
mod settings;
mod spill;

pub use clock::{Clock, ManualClock, SystemClock};
pub use code_share::CodeShare;
pub use config::NodeConfig;
pub use entry::{Code, Entry, Usage};
pub use error::{Fault, NodeError};
pub use failure::{
    ErrorBody, ErrorDetail, INTERNAL_MESSAGE, InvokeFailure, REQUEST_ID_HEADER, error_response,
};
pub use gate::{DeployCandidate, DeployGate, Refusal};
pub use ids::new_request_id;
pub use invoke::{Answer, CallContext};
pub use node::{DeployOutcome, Node, RESERVED_NAMES};
pub use spill::{Spill, Spilled};
