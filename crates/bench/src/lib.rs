//! Kindling's load generator.
//!
//! Open loop (`--rate`): requests are scheduled at fixed times by a dedicated timer thread,
//! shared round-robin over a pool of keep-alive connections, and each latency is measured
//! from the request's *scheduled* time, so a server that stalls cannot hide it by slowing the
//! client down (coordinated omission). Closed loop (`--connections`): each connection sends
//! its next request as soon as the previous answer is in, for maximum throughput. Latencies go
//! into HdrHistograms, per status class, merged at the end.

mod generator;
mod process;
mod report;
mod scenario;
mod spec;
mod variant;

pub use generator::{Progress, run_phase};
pub use process::ProcessSampler;
pub use report::{Latency, PhaseReport, ServerUsage, table};
pub use scenario::{Scenario, ScenarioError};
pub use spec::{Load, Phase, Target};
pub use variant::variant;
