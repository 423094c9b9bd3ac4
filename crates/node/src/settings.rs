//! From a version's stored configuration to what the runtime and the scheduler run it with:
//! the node's defaults filled in, the allow-list parsed, mounts resolved under the mount root,
//! and anything this node cannot honour refused with the reason.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kindling_registry::{FunctionConfig, MountConfig};
use kindling_runtime::{FunctionSettings, Limits, Mount, OutboundPolicy, Runtime};
use kindling_scheduler::LaneConfig;

use crate::config::NodeConfig;
use crate::error::NodeError;

/// Resolves a configuration against the node's defaults and capabilities.
pub(crate) fn resolve(
    config: &FunctionConfig,
    node: &NodeConfig,
    runtime: &Runtime,
) -> Result<(FunctionSettings, LaneConfig), NodeError> {
    let defaults = node.default_limits;
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
    let outbound =
        OutboundPolicy::parse(&config.allowed_outbound_hosts).map_err(NodeError::Config)?;
    let mounts = config
        .mounts
        .iter()
        .map(|mount| resolve_mount(mount, node.mount_root.as_deref()))
        .collect::<Result<_, _>>()?;
    let settings = FunctionSettings {
        env: config
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
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
        outbound: Arc::new(outbound),
        mounts,
    };
    let lane_defaults = node.default_lane;
    let lane = LaneConfig {
        max_concurrency: limits.max_concurrency.or(lane_defaults.max_concurrency),
        queue_len: limits.queue_len.unwrap_or(lane_defaults.queue_len),
        queue_timeout: limits
            .queue_timeout_ms
            .map(Duration::from_millis)
            .unwrap_or(lane_defaults.queue_timeout),
        priority: config.priority.unwrap_or(lane_defaults.priority),
    };
    Ok((settings, lane))
}

/// Resolves a mount under the mount root; symbolic links may not lead out of it.
fn resolve_mount(mount: &MountConfig, root: Option<&Path>) -> Result<Mount, NodeError> {
    let root = root.ok_or_else(|| {
        NodeError::Config(format!(
            "this node allows no directory mounts (mount {:?}); start it with --mount-root DIR",
            mount.source
        ))
    })?;
    let root: PathBuf = root.canonicalize().map_err(|err| {
        NodeError::Config(format!("the node's mount root {}: {err}", root.display()))
    })?;
    let host = root.join(&mount.source).canonicalize().map_err(|err| {
        NodeError::Config(format!(
            "mount source {:?} under the mount root: {err}",
            mount.source
        ))
    })?;
    if !host.starts_with(&root) || !host.is_dir() {
        return Err(NodeError::Config(format!(
            "mount source {:?} must be a directory inside the node's mount root",
            mount.source
        )));
    }
    Ok(Mount {
        host,
        guest: mount.path.clone(),
    })
}
