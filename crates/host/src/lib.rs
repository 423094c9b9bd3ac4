//! Kindling's host capabilities: everything a guest can reach outside its sandbox, each behind
//! one [`Capability`] trait with three phases.
//!
//! 1. **link**, once per node: the capability adds its host functions to the shared linkers;
//! 2. **configure**, at deploy (and when a node loads a stored version): it validates and
//!    resolves its own section of the function's configuration, so that a bad value is refused
//!    before anything is recorded, with an error naming the capability and the field;
//! 3. **prepare**, per request: it builds its state for the new instance's store, and may
//!    **finish** after the guest is done (to flush what it captured, say).
//!
//! The store's data is one generic [`HostState`] holding WASI, the resource table, the memory
//! limiter and every capability's state. [`Capabilities`] is the ordered set a node runs with;
//! the built-in ones are [`EnvVars`], [`Mounts`], [`OutboundHttp`] and [`GuestOutput`]. A new
//! capability is a new module or crate implementing the trait, plus one line where the node's
//! set is composed (`docs/architecture.md` has the recipe).

mod capability;
mod env;
mod error;
mod files;
mod invocation;
mod mounts;
mod outbound;
mod output;
mod set;
mod state;

pub use capability::{
    Capability, ComponentLinker, DeployFlag, FieldSchema, FlagForm, FunctionContext,
    InstanceBuilder, InstanceKind, Linkers, Metric, ModuleLinker, NoFields,
};
pub use env::EnvVars;
pub use error::HostError;
pub use files::{
    Opened, check_database, check_label, dir_entries, grant_labels, is_namespace, namespace_dirs,
    put_back_database, snapshot_database, world_imports,
};
pub use invocation::{
    BoxError, CallChain, ClaimedHeader, Dispatch, DispatchFuture, Invocation, LocalBody,
    LocalBodyError, LocalCall, RequestTrace, ResponseBody, ResponseHeaders,
};
pub use mounts::Mounts;
pub use outbound::{
    CALL_BUDGET_HEADER, CALL_DEPTH_HEADER, LOCAL_SUFFIX, OutboundHttp, OutboundPolicy,
};
pub use output::{
    FunctionLog, GuestOutput, LOG_CAPTURE_BYTES, LogLine, LogPage, OutputCapture, WhenFull,
};
pub use set::{Capabilities, Configured, InspectLine, Sections};
pub use state::{ComponentCtx, GuestLimiter, HostState, ModuleCtx, States};
