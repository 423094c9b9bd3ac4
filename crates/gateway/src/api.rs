//! The admin API's JSON documents, shared with the CLI so that both sides agree by
//! construction.

use kindling_registry::{FunctionConfig, VersionRecord};
use serde::{Deserialize, Serialize};

/// A function as `GET /v1/functions` and `GET /v1/functions/{name}` show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FunctionInfo {
    /// The name, also the route `/{name}/`.
    pub name: String,
    /// Whether the function serves: `serving`, or `failed` when its code could not be loaded.
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
    /// How the serving code was loaded, when it is serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadInfo>,
    /// Why it is not serving, when it failed to load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a function's code was made ready.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadInfo {
    /// `cache` (mapped from the compiled-artifact cache) or `compiled`.
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
    /// How the code was loaded.
    pub load: LoadInfo,
}

/// The optional body of a rollback.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    /// The version to activate; the one before the active version when left out.
    #[serde(default)]
    pub version: Option<u32>,
}
