//! The node: the registry (what is deployed), the runtime (what can run) and the table of live
//! functions (what serves now), kept consistent with each other.
//!
//! Requests read the table without locks beyond a short read guard. Control-plane changes
//! (deploy, rollback, delete) compile outside any lock, then take the control lock only to
//! commit to the registry and swap the table entry, so the registry and the table always
//! change in the same order.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use kindling_registry::{
    FunctionConfig, MountConfig, NewVersion, Registry, RegistryError, VersionRecord,
};
use kindling_runtime::{
    Function, FunctionSettings, Limits, LoadSource, Loaded, Mount, OutboundPolicy, Runtime,
    RuntimeConfig,
};

use crate::error::NodeError;

/// Names that would shadow the node's own routes.
pub const RESERVED_NAMES: &[&str] = &["v1", "healthz", "readyz", "metrics", "dashboard"];

/// How a node is set up.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// Where the registry database, module files and compiled artifacts live.
    pub data_dir: PathBuf,
    /// Engine and pool sizing.
    pub runtime: RuntimeConfig,
    /// Limits for functions that do not set their own.
    pub default_limits: Limits,
    /// The directory under which functions may mount subdirectories read-only; without it,
    /// mounts are refused.
    pub mount_root: Option<PathBuf>,
}

impl NodeConfig {
    /// A configuration with defaults, storing data in `data_dir`.
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            data_dir,
            runtime: RuntimeConfig::default(),
            default_limits: Limits::default(),
            mount_root: None,
        }
    }
}

/// A function that is serving: its active version and its loaded code.
#[derive(Debug)]
pub struct Active {
    /// The function's name.
    pub name: Arc<str>,
    /// The version serving.
    pub version: VersionRecord,
    /// The code, ready to instantiate.
    pub function: Function,
    /// Where the code came from when it was loaded.
    pub source: LoadSource,
    /// How long loading took.
    pub load_time: Duration,
}

/// What a deploy did.
#[derive(Debug)]
pub enum DeployOutcome {
    /// A new version was recorded and now serves.
    Created(Arc<Active>),
    /// The same module and configuration were already active; nothing changed.
    Unchanged(Arc<Active>),
}

/// One Kindling node.
pub struct Node {
    registry: Registry,
    runtime: Runtime,
    table: RwLock<HashMap<String, Arc<Active>>>,
    /// Functions whose active version failed to load at start-up, with the reason.
    failed: RwLock<HashMap<String, String>>,
    control: tokio::sync::Mutex<()>,
    ready: AtomicBool,
    default_limits: Limits,
    mount_root: Option<PathBuf>,
    failpoint: Option<String>,
}

impl Node {
    /// Opens the registry and builds the runtime. Call [`Node::load_all`] to start serving.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        let registry = Registry::open(&config.data_dir).await?;
        let artifacts = config.data_dir.join("artifacts");
        let runtime_config = config.runtime.clone();
        let runtime = blocking(move || Runtime::new(&runtime_config, artifacts))
            .await?
            .map_err(|source| NodeError::Prepare {
                name: String::new(),
                source,
            })?;
        Ok(Arc::new(Self {
            registry,
            runtime,
            table: RwLock::default(),
            failed: RwLock::default(),
            control: tokio::sync::Mutex::new(()),
            ready: AtomicBool::new(false),
            default_limits: config.default_limits,
            mount_root: config.mount_root,
            // Fault injection for crash tests: `deploy-before-commit` parks every deploy
            // after its module is stored and before the registry transaction.
            failpoint: std::env::var("KINDLING_FAILPOINT").ok(),
        }))
    }

    /// Loads every function's active version (from the artifact cache when possible) and
    /// marks the node ready. A function that fails to load is reported, not fatal.
    pub async fn load_all(&self) -> Result<(), NodeError> {
        let referenced: std::collections::HashSet<String> = self
            .registry
            .referenced_modules()
            .await?
            .into_iter()
            .collect();
        let runtime = self.runtime.clone();
        let removed = blocking(move || runtime.retain_artifacts(&referenced)).await?;
        if removed > 0 {
            tracing::info!(removed, "removed stale compiled artifacts");
        }
        let versions = self.registry.active_versions().await?;
        for version in versions {
            let name = version.function.clone();
            match self.load_version(version).await {
                Ok(active) => {
                    tracing::info!(
                        function = %name,
                        version = active.version.version,
                        source = active.source.as_str(),
                        load_ms = active.load_time.as_secs_f64() * 1e3,
                        "function loaded"
                    );
                    self.table.write().expect("table lock").insert(name, active);
                }
                Err(err) => {
                    tracing::error!(function = %name, error = %err, "function failed to load");
                    self.failed
                        .write()
                        .expect("failed lock")
                        .insert(name, err.to_string());
                }
            }
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// True once start-up loading has finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The serving function with this name: the request path's only lookup.
    pub fn lookup(&self, name: &str) -> Option<Arc<Active>> {
        self.table.read().expect("table lock").get(name).cloned()
    }

    /// Why a function that exists in the registry is not serving, if it failed to load.
    pub fn load_failure(&self, name: &str) -> Option<String> {
        self.failed.read().expect("failed lock").get(name).cloned()
    }

    /// The number of functions serving.
    pub fn serving_count(&self) -> usize {
        self.table.read().expect("table lock").len()
    }

    /// The registry, for read-only queries.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Validates, compiles and activates a new version. On any failure the previous version
    /// keeps serving and nothing is recorded.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Bytes,
        config: FunctionConfig,
    ) -> Result<DeployOutcome, NodeError> {
        check_name(name)?;
        config.validate()?;
        let sha256 = kindling_registry::sha256_hex(&wasm);

        if let Some(active) = self.lookup(name)
            && active.version.sha256 == sha256
            && active.version.config == config
        {
            return Ok(DeployOutcome::Unchanged(active));
        }

        let settings = self.settings(&config)?;
        let runtime = self.runtime.clone();
        let (prepare_wasm, prepare_sha) = (wasm.clone(), sha256.clone());
        let loaded = blocking(move || runtime.prepare(&prepare_wasm, &prepare_sha, settings))
            .await?
            .map_err(|source| NodeError::Prepare {
                name: name.to_string(),
                source,
            })?;
        let size_bytes = wasm.len() as u64;
        self.registry.store_module(wasm).await?;

        if self.failpoint.as_deref() == Some("deploy-before-commit") {
            tracing::warn!(
                function = name,
                "failpoint deploy-before-commit: parking this deploy"
            );
            std::future::pending::<()>().await;
        }

        let _control = self.control.lock().await;
        let version = self
            .registry
            .commit_version(
                name,
                NewVersion {
                    sha256,
                    kind: loaded.function.kind().as_str().to_string(),
                    size_bytes,
                    config,
                },
            )
            .await?;
        let active = self.install(version, loaded);
        tracing::info!(
            function = name,
            version = active.version.version,
            kind = %active.function.kind(),
            compile_ms = active.load_time.as_secs_f64() * 1e3,
            "function deployed"
        );
        Ok(DeployOutcome::Created(active))
    }

    /// Makes an earlier version serve again: `to`, or the one before the active version.
    pub async fn rollback(&self, name: &str, to: Option<u32>) -> Result<Arc<Active>, NodeError> {
        let _control = self.control.lock().await;
        let target = match to {
            Some(version) => version,
            None => self.registry.previous_version(name).await?,
        };
        let record = self
            .registry
            .versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == target)
            .ok_or_else(|| RegistryError::VersionNotFound {
                name: name.to_string(),
                version: target,
            })?;
        // Load first: if the old version cannot be loaded, nothing changes.
        let loaded = self.load_record(&record).await?;
        let version = self.registry.activate(name, target).await?;
        let active = self.install(version, loaded);
        tracing::info!(function = name, version = target, "function rolled back");
        Ok(active)
    }

    /// Deletes a function and all its versions; it stops serving at once.
    pub async fn delete(&self, name: &str) -> Result<(), NodeError> {
        let _control = self.control.lock().await;
        let unreferenced = self.registry.delete_function(name).await?;
        self.table.write().expect("table lock").remove(name);
        for sha256 in unreferenced {
            self.runtime.forget(&sha256);
        }
        self.failed.write().expect("failed lock").remove(name);
        tracing::info!(function = name, "function deleted");
        Ok(())
    }

    fn install(&self, version: VersionRecord, loaded: Loaded) -> Arc<Active> {
        let name = version.function.clone();
        let active = Arc::new(Active {
            name: name.as_str().into(),
            version,
            function: loaded.function,
            source: loaded.source,
            load_time: loaded.elapsed,
        });
        self.table
            .write()
            .expect("table lock")
            .insert(name.clone(), active.clone());
        self.failed.write().expect("failed lock").remove(&name);
        active
    }

    async fn load_version(&self, version: VersionRecord) -> Result<Arc<Active>, NodeError> {
        let loaded = self.load_record(&version).await?;
        Ok(Arc::new(Active {
            name: version.function.as_str().into(),
            source: loaded.source,
            load_time: loaded.elapsed,
            function: loaded.function,
            version,
        }))
    }

    async fn load_record(&self, record: &VersionRecord) -> Result<Loaded, NodeError> {
        let runtime = self.runtime.clone();
        let sha256 = record.sha256.clone();
        let path = self.registry.module_path(&sha256);
        let settings = self.settings(&record.config)?;
        blocking(move || runtime.load(&sha256, &path, settings))
            .await?
            .map_err(|source| NodeError::Prepare {
                name: record.function.clone(),
                source,
            })
    }

    /// The settings a version runs with: its own limits over the node's defaults, its
    /// allow-list parsed, its mounts resolved under the node's mount root. Refuses what this
    /// node cannot honour.
    fn settings(&self, config: &FunctionConfig) -> Result<FunctionSettings, NodeError> {
        let defaults = self.default_limits;
        let limits = &config.limits;
        let memory_bytes = limits.memory_bytes.unwrap_or(defaults.memory_bytes);
        let max_memory = self.runtime.max_memory_bytes();
        if memory_bytes > max_memory {
            return Err(NodeError::Config(format!(
                "limits.memory_bytes {memory_bytes} is above this node's maximum of {max_memory}"
            )));
        }
        if limits.cpu_fuel.is_some() && !self.runtime.meters_fuel() {
            return Err(NodeError::Config(
                "limits.cpu_fuel needs a node that meters fuel; start it with --fuel".into(),
            ));
        }
        let outbound =
            OutboundPolicy::parse(&config.allowed_outbound_hosts).map_err(NodeError::Config)?;
        let mounts = config
            .mounts
            .iter()
            .map(|mount| self.resolve_mount(mount))
            .collect::<Result<_, _>>()?;
        Ok(FunctionSettings {
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
                max_concurrency: limits.max_concurrency.or(defaults.max_concurrency),
            },
            outbound: Arc::new(outbound),
            mounts,
        })
    }

    /// Resolves a mount under the mount root; symbolic links may not lead out of it.
    fn resolve_mount(&self, mount: &MountConfig) -> Result<Mount, NodeError> {
        let root = self.mount_root.as_ref().ok_or_else(|| {
            NodeError::Config(format!(
                "this node allows no directory mounts (mount {:?}); start it with --mount-root DIR",
                mount.source
            ))
        })?;
        let root = root.canonicalize().map_err(|err| {
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
}

fn check_name(name: &str) -> Result<(), NodeError> {
    kindling_registry::validate_name(name)?;
    if RESERVED_NAMES.contains(&name) {
        return Err(NodeError::ReservedName(name.to_string()));
    }
    Ok(())
}

async fn blocking<T, F>(work: F) -> Result<T, NodeError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| NodeError::Internal(format!("blocking task failed: {err}")))
}
