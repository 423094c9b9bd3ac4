//! From a version's stored configuration to what the runtime and the scheduler run it with:
//! the node's defaults filled in, every capability's section resolved (and checked), and
//! anything this node cannot honour refused with the reason.

use std::sync::Arc;
use std::time::Duration;

use kindling_host::{Capabilities, FunctionContext};
use kindling_registry::FunctionConfig;
use kindling_runtime::{FunctionSettings, Limits, Runtime, UnsupportedImports};
use kindling_scheduler::LaneConfig;

use crate::error::NodeError;

/// Resolves a configuration against the node's defaults and capabilities. The capabilities
/// may do blocking I/O (a mount is opened here): call it from a blocking thread.
pub(crate) fn resolve(
    name: &str,
    config: &FunctionConfig,
    (defaults, lane_defaults): (Limits, LaneConfig),
    runtime: &Runtime,
) -> Result<(FunctionSettings, LaneConfig), NodeError> {
    let limits = &config.limits;
    let memory_bytes = limits.memory_bytes.unwrap_or(defaults.memory_bytes);
    let max_memory = runtime.max_memory_bytes();
    if memory_bytes > max_memory {
        return Err(NodeError::Config(format!(
            "limits.memory_bytes {memory_bytes} is above this node's maximum of {max_memory}"
        )));
    }
    if limits.cpu_fuel.is_some() && !runtime.meters_fuel() {
        return Err(NodeError::Config(
            "limits.cpu_fuel needs a node that meters fuel; start it with --fuel".into(),
        ));
    }
    let configured = configure(runtime.capabilities(), name, config)?;
    let settings = FunctionSettings {
        limits: Limits {
            memory_bytes,
            timeout: limits
                .timeout_ms
                .map(Duration::from_millis)
                .unwrap_or(defaults.timeout),
            max_request_body_bytes: limits
                .max_request_body_bytes
                .unwrap_or(defaults.max_request_body_bytes),
            max_response_body_bytes: limits
                .max_response_body_bytes
                .unwrap_or(defaults.max_response_body_bytes),
            cpu_fuel: limits.cpu_fuel.or(defaults.cpu_fuel),
        },
        capabilities: Arc::new(configured),
        unsupported_imports: if config.allow_unsupported_imports {
            UnsupportedImports::Trap
        } else {
            UnsupportedImports::Refuse
        },
    };
    let lane = LaneConfig {
        max_concurrency: limits.max_concurrency.or(lane_defaults.max_concurrency),
        queue_len: limits.queue_len.unwrap_or(lane_defaults.queue_len),
        queue_timeout: limits
            .queue_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(lane_defaults.queue_timeout),
        priority: config.priority.unwrap_or(lane_defaults.priority),
        // Set when the version is installed and its kind is known.
        memory_bytes: 0,
    };
    Ok((settings, lane))
}

/// Every capability resolves its own fields; a field none owns is refused.
fn configure(
    capabilities: &Capabilities,
    name: &str,
    config: &FunctionConfig,
) -> Result<kindling_host::Configured, NodeError> {
    let function = FunctionContext {
        name,
        namespace: config.namespace(),
    };
    capabilities
        .configure(&config.sections, &function, FunctionConfig::FIELDS)
        .map_err(NodeError::Capability)
}
