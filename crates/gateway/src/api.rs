//! The admin API's JSON documents, shared with the CLI so that both sides agree by
//! construction.

use kindling_host::InspectLine;
use kindling_registry::{FunctionConfig, VersionRecord};
use serde::{Deserialize, Serialize};

/// A function as `GET /v1/functions` and `GET /v1/functions/{name}` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The name, also the route `/{name}/`.
    pub name: String,
    /// `warm` (code resident), `cold` (loaded on the next request from the compiled-artifact
    /// cache) or `failed` (its code could not be loaded).
    pub state: String,
    /// The active version's number.
    pub active_version: u32,
    /// How many versions exist.
    pub version_count: u32,
    /// The active version's kind: `wasi-http` or `wagi`.
    pub kind: String,
    /// The active version's module hash.
    pub sha256: String,
    /// The active version's module size.
    pub size_bytes: u64,
    /// The active version's configuration.
    pub config: FunctionConfig,
    /// When the function was first deployed.
    pub created_at: String,
    /// When its active version last changed.
    pub updated_at: String,
    /// How the resident code was loaded, when it is warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadInfo>,
    /// Why it is not serving, when it failed to load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Counters and current load.
    pub stats: FunctionStats,
    /// The autoscaler's latest decision, once it has ticked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscale: Option<kindling_scheduler::ScaleDecision>,
    /// What each capability makes of the configuration, as `kindling inspect` shows it.
    #[serde(default)]
    pub capabilities: Vec<InspectLine>,
    /// Its schedules, with their last and next runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<kindling_events::ScheduleStatus>,
}

/// A function's counters since the node started, and its load now.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FunctionStats {
    /// Requests admitted.
    pub invocations: u64,
    /// Requests turned away by admission control.
    pub rejected: u64,
    /// Requests that found the code unloaded and loaded it.
    pub cold_starts: u64,
    /// Milliseconds the latest cold start took.
    pub last_cold_start_ms: f64,
    /// Loads ahead of a request, asked for by the keep-alive policy.
    #[serde(default)]
    pub prewarms: u64,
    /// Requests running now.
    pub in_flight: u32,
    /// Requests waiting in the function's queue now.
    pub queued: usize,
}

/// How a function's code was made ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadInfo {
    /// `compiled`, `cache` (mapped from the compiled-artifact cache: these bytes were compiled
    /// before) or `shared` (the code was already resident for another function or version).
    pub source: String,
    /// Milliseconds spent compiling or mapping, linking and pre-instantiating.
    pub millis: f64,
}

/// The answer to a deploy.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployResponse {
    /// The version now serving.
    pub version: VersionRecord,
    /// True when the same module and configuration were already active: nothing changed.
    pub unchanged: bool,
    /// How the code was loaded (absent when an unchanged function is cold).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadInfo>,
}

/// One line of a function's guest output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogEntry {
    /// Its sequence number; read on with `after` = the response's `next`.
    pub seq: u64,
    /// When it was written, in milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The request that wrote it.
    pub request_id: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// The line.
    pub text: String,
}

/// A page of a function's guest output.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogsResponse {
    /// The function.
    pub function: String,
    /// The lines, oldest first.
    pub lines: Vec<LogEntry>,
    /// Where to resume (`after`).
    pub next: u64,
    /// Lines the store has dropped to stay within its size.
    pub dropped: u64,
}

/// The optional body of a rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to activate; the one before the active version when left out.
    #[serde(default)]
    pub version: Option<u32>,
}
