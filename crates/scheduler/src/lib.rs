//! Kindling's scheduler: who runs, who waits, who is turned away, and what stays loaded.
//!
//! - [`Admission`]: every request takes a slot of its function (waiting in a bounded FIFO
//!   queue for a bounded time if the function is at its concurrency limit) and then a slot of
//!   the node, whose ceiling depends on the function's [`Priority`], so that under overload
//!   the lower classes are shed first and the reserved capacity keeps critical functions fast.
//!   Nothing waits without bound; a refusal is immediate and says why.
//! - [`Quota`]: the hook through which a request is accounted to its namespace.
//! - [`KeepAlivePolicy`]: what stays resident (warm) and what is unloaded (cold), driven by
//!   the caller's clock so that the same policies run in the server and in simulations:
//!   [`FixedTtl`] (fixed keep-alive, or LRU under a budget), [`Gdsf`], [`HybridHistogram`]
//!   and Kindling's default [`HazardWindows`], named by a [`PolicySpec`].
//! - [`Autoscaler`]: a Knative-KPA-style desired-instance count per function.

mod admission;
mod autoscale;
mod gdsf;
mod hazard;
mod hybrid;
mod idle;
mod keepalive;
mod quota;
mod spec;

pub use admission::{Admission, AdmissionConfig, Lane, LaneConfig, Permit, Priority, Rejection};
pub use autoscale::{Autoscaler, AutoscalerConfig, ScaleDecision};
pub use gdsf::Gdsf;
pub use hazard::{HazardConfig, HazardWindows};
pub use hybrid::{HybridConfig, HybridHistogram};
pub use keepalive::{FixedTtl, KeepAlivePolicy, Millis, Resident, ResidentSet, Usage};
pub use quota::{Account, NamespaceLimits, Quota, QuotaPermit, Unlimited};
pub use spec::{PolicyError, PolicySpec};
