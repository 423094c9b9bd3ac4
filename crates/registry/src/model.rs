//! The registry's data model: functions, their immutable versions, and the configuration a
//! version is deployed with. These types are also the admin API's JSON.

use std::collections::BTreeMap;

pub use kindling_scheduler::Priority;
use serde::{Deserialize, Serialize};

use crate::delivery::{RetryConfig, ScheduleConfig, TriggerConfig};
use crate::error::RegistryError;

/// A function: a name and which of its versions serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionRecord {
    /// The function's name, also its route (`/{name}/...`).
    pub name: String,
    /// The version that serves requests.
    pub active_version: u32,
    /// How many versions have been deployed.
    pub version_count: u32,
    /// When the function was first deployed (RFC 3339).
    pub created_at: String,
    /// When the active version last changed (RFC 3339).
    pub updated_at: String,
}

/// One immutable deployed version of a function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    /// The function it belongs to.
    pub function: String,
    /// Its number, 1 for the first deploy, counting up.
    pub version: u32,
    /// The sha256 of the WebAssembly bytes, hex: the module's address in the store.
    pub sha256: String,
    /// The function kind (`wasi-http` or `wagi`), detected at deploy.
    pub kind: String,
    /// Size of the WebAssembly bytes.
    pub size_bytes: u64,
    /// The configuration it runs with.
    pub config: FunctionConfig,
    /// When it was deployed (RFC 3339).
    pub created_at: String,
}

/// What a function is deployed with besides its code: limits, priority and namespace, which
/// the node itself reads, and one section per host capability (`env`, `mounts`,
/// `allowed_outbound_hosts`, ...), kept here as JSON by field name: the registry does not know
/// the capabilities. The node refuses fields no capability owns, so a typo in a deploy request
/// fails loudly instead of being ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionConfig {
    /// Limits; any left out take the node's defaults.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Priority class under overload: `critical`, `normal` (default) or `batch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The tenant namespace its requests are accounted to (default `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// What the workload needs, by requirement dimension (`security = "high"`,
    /// `startup = "ultra-low"`); `kindling advise --function` judges them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub requirements: BTreeMap<String, String>,
    /// Who may call it: `public` (the default) or `token` (a token with `invoke` scope for
    /// its namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<InvokeAuth>,
    /// Link imports Kindling does not provide to stand-ins that trap when called, instead of
    /// refusing the deploy.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_unsupported_imports: bool,
    /// Retries of its asynchronous invocations; the node's defaults when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryConfig>,
    /// Schedules that fire it through the invocation queue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleConfig>,
    /// Brokers it consumes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<TriggerConfig>,
    /// The capabilities' fields, by name.
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

impl FunctionConfig {
    /// The fields the node reads itself; every other field belongs to a capability.
    pub const FIELDS: &[&str] = &[
        "limits",
        "priority",
        "namespace",
        "requirements",
        "auth",
        "allow_unsupported_imports",
        "retry",
        "schedules",
        "triggers",
    ];

    /// The namespace, `default` when none was given.
    pub fn namespace(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }
}

/// Who may call a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InvokeAuth {
    /// Anyone who can reach the node.
    Public,
    /// A token with `invoke` scope for the function's namespace.
    Token,
}

/// A version about to be recorded.
#[derive(Debug, Clone)]
pub struct NewVersion {
    /// The module's sha256 (hex), as returned by [`crate::Catalog::store_module`].
    pub sha256: String,
    /// The detected function kind.
    pub kind: String,
    /// Size of the module in bytes.
    pub size_bytes: u64,
    /// The configuration it runs with.
    pub config: FunctionConfig,
    /// Where the function's record stood when the deploy began ([`crate::Catalog::base`]):
    /// a catalog shared between nodes refuses the commit with a conflict if another node
    /// changed the function since. `None` commits over whatever is there.
    pub base: Option<u64>,
}

/// Per-function limits as deployed; `None` means the node default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Linear memory and tables the function may grow to, in bytes, across all its memories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// Wall-clock deadline per request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// CPU budget per request in fuel units (about one per WebAssembly instruction); needs a
    /// node started with fuel metering on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_fuel: Option<u64>,
    /// Most instances of this function running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Requests that may wait when the function is at its concurrency limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_len: Option<u32>,
    /// How long a request may wait in that queue, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout_ms: Option<u64>,
    /// Largest accepted request body, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// Largest response body a WAGI function may write, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_response_body_bytes: Option<u64>,
}

impl FunctionConfig {
    /// Checks what serde cannot in the fields the node reads: sane limits, a valid namespace.
    /// (Each capability checks its own fields.)
    pub fn validate(&self) -> Result<(), RegistryError> {
        let limits = &self.limits;
        let positive = [
            ("timeout_ms", limits.timeout_ms),
            ("memory_bytes", limits.memory_bytes),
            ("cpu_fuel", limits.cpu_fuel),
            ("max_concurrency", limits.max_concurrency.map(u64::from)),
        ];
        for (name, value) in positive {
            if value == Some(0) {
                return Err(RegistryError::InvalidConfig(format!(
                    "limits.{name} must be at least 1"
                )));
            }
        }
        if let Some(retry) = &self.retry {
            retry.validate().map_err(RegistryError::InvalidConfig)?;
        }
        if self.schedules.len() > crate::delivery::MAX_SCHEDULES {
            return Err(RegistryError::InvalidConfig(format!(
                "{} schedules given; a function may have at most {}",
                self.schedules.len(),
                crate::delivery::MAX_SCHEDULES
            )));
        }
        for schedule in &self.schedules {
            if let Some(path) = &schedule.path
                && !path.starts_with('/')
            {
                return Err(RegistryError::InvalidConfig(format!(
                    "schedule {:?}: path {path:?} must start with `/`",
                    schedule.cron
                )));
            }
        }
        if self.triggers.len() > crate::delivery::MAX_TRIGGERS {
            return Err(RegistryError::InvalidConfig(format!(
                "{} triggers given; a function may have at most {}",
                self.triggers.len(),
                crate::delivery::MAX_TRIGGERS
            )));
        }
        for trigger in &self.triggers {
            trigger
                .validate_in(self.namespace())
                .map_err(RegistryError::InvalidConfig)?;
        }
        if let Some(namespace) = &self.namespace {
            validate_name(namespace).map_err(|_| {
                RegistryError::InvalidConfig(format!(
                    "namespace {namespace:?} must be 1-63 lowercase letters, digits and `-`"
                ))
            })?;
        }
        Ok(())
    }
}

/// Checks the name of a namespace or a policy (`what`), which follows function names' rules.
pub fn validate_label(what: &str, name: &str) -> Result<(), RegistryError> {
    validate_name(name).map_err(|_| {
        RegistryError::InvalidConfig(format!(
            "{what} {name:?} must be 1-63 lowercase letters, digits and `-`"
        ))
    })
}

/// Function names are DNS labels, so that a function can also be reached as
/// `{name}.{domain}`: 1–63 characters of lowercase letters, digits and `-`, starting and
/// ending with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), RegistryError> {
    let invalid = |reason| {
        Err(RegistryError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("a name is required");
    }
    if name.len() > 63 {
        return invalid("names are at most 63 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return invalid("use only lowercase letters, digits and `-`");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return invalid("names start and end with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for good in ["hello", "a", "fn-2", "0x", &"a".repeat(63)] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            "Hello",
            "-a",
            "a-",
            "a_b",
            "a.b",
            "a/b",
            "ünï",
            &"a".repeat(64),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid function name"), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_refuse_unknown_fields_and_capability_fields_are_kept() {
        let err =
            serde_json::from_str::<FunctionConfig>(r#"{"limits": {"timout_ms": 1}}"#).unwrap_err();
        assert!(
            err.to_string().contains("unknown field `timout_ms`"),
            "{err}"
        );
        let config: FunctionConfig =
            serde_json::from_str(r#"{"limits": {"timeout_ms": 0}}"#).unwrap();
        assert!(config.validate().is_err());
        let config: FunctionConfig = serde_json::from_str(
            r#"{"env": {"GREETING": "hi"}, "limits": {"timeout_ms": 500}, "namespace": "a"}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.sections["env"]["GREETING"], "hi");
        assert_eq!(config.limits.timeout_ms, Some(500));
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(
            serde_json::from_str::<FunctionConfig>(&text).unwrap(),
            config
        );
    }
}
