//! The deploy phase's policy hook: before a new version is committed, a [`DeployGate`] sees the
//! compiled candidate (name, namespace, configuration, size, hash, imports, exports) with what
//! its namespace already uses, and may refuse it; nothing is recorded then. The access layer's
//! quotas and Rego admission policy sit behind it.

use kindling_registry::FunctionConfig;

/// A version about to be committed, as a gate sees it.
#[derive(Debug)]
pub struct DeployCandidate<'a> {
    /// The function.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// Its configuration, as the capabilities normalized it.
    pub config: &'a FunctionConfig,
    /// Its kind (`wasi-http`, `wasi-http-0.3`, `wagi`).
    pub kind: &'a str,
    /// The module's size in bytes.
    pub size_bytes: u64,
    /// The module's sha256, hex.
    pub sha256: &'a str,
    /// What it imports, by name.
    pub imports: Vec<String>,
    /// What it exports, by name.
    pub exports: Vec<String>,
    /// The memory limit it will run with.
    pub memory_bytes: u64,
    /// The other functions of its namespace, not counting this one.
    pub namespace_functions: u32,
    /// Memory those functions may use together (the sum of their memory limits).
    pub namespace_memory_bytes: u64,
    /// Whether the function exists already (this is a new version of it).
    pub exists: bool,
    /// The namespace the function is in now, when it exists (read under the control lock, so
    /// that a concurrent deploy cannot slip a function into another namespace in between).
    pub current_namespace: Option<String>,
}

/// Why a gate refused a deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The status to answer (403 for a policy or a quota).
    pub status: u16,
    /// A stable code (`denied_by_policy`, `quota_exceeded`).
    pub code: &'static str,
    /// What was refused and why, naming the quota or the policy's messages.
    pub message: String,
}

/// Decides whether a deploy may be committed.
pub trait DeployGate: Send + Sync {
    /// Admits the candidate or says why not.
    fn admit(&self, candidate: &DeployCandidate<'_>) -> Result<(), Refusal>;

    /// How many versions of each function the namespace keeps; older ones are deleted after
    /// a deploy (never the active one).
    fn versions_kept(&self, _namespace: &str) -> Option<u32> {
        None
    }
}
