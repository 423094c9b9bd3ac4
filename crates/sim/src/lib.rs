//! Kindling's keep-alive simulator: the answer to "how do we judge a pre-warming policy?".
//!
//! A [`Trace`] (Azure Functions 2019 per-minute counts or 2021 per-invocation records) is
//! replayed on a simulated clock through the scheduler's own [`KeepAlivePolicy`] structs, the
//! ones a node runs, built from the same [`PolicySpec`] text. [`compare`] runs several
//! policies and reports, per policy, the share of cold calls, the 75th-percentile per-function
//! cold-start percentage, wasted memory-time normalised to a fixed 10-minute keep-alive, and
//! the memory held; [`Comparison`] renders a table and an SVG plot. `kindling sim` is its
//! command line.
//!
//! [`KeepAlivePolicy`]: kindling_scheduler::KeepAlivePolicy
//! [`PolicySpec`]: kindling_scheduler::PolicySpec

mod compare;
mod engine;
mod error;
mod render;
mod trace;

pub use compare::{BASELINE, Comparison, DEFAULT_POLICIES, compare};
pub use engine::{PolicyOutcome, SimOptions, simulate};
pub use error::{SimError, TraceError};
pub use trace::{Call, Trace, TraceFunction};
