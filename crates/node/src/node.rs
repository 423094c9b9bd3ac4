//! The node: the registry (what is deployed), the runtime (what can run), the scheduler (who
//! runs now) and the table of functions, kept consistent with each other.
//!
//! Requests read the table under a short read lock, are admitted by the scheduler, and find
//! their function's code resident (warm) or load it from the artifact cache (cold, once per
//! function however many requests arrive together). Control-plane changes (deploy, rollback,
//! delete) compile outside any lock, then take the control lock only to commit to the registry
//! and swap the table entry, so the registry and the table always change in the same order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use kindling_registry::{FunctionConfig, NewVersion, Registry, RegistryError, VersionRecord};
use kindling_runtime::{Function, FunctionLog, FunctionSettings, Loaded, Runtime};
use kindling_scheduler::{
    Account, Admission, Autoscaler, KeepAlivePolicy, Lane, LaneConfig, Millis, NamespaceLimits,
    Permit, Rejection,
};

use crate::config::NodeConfig;
use crate::entry::{Code, Entry, Usage};
use crate::error::NodeError;

/// Names that would shadow the node's own routes.
pub const RESERVED_NAMES: &[&str] = &["v1", "healthz", "readyz", "metrics", "dashboard"];

/// What a deploy did.
#[derive(Debug)]
pub enum DeployOutcome {
    /// A new version was recorded and now serves.
    Created(Arc<Entry>),
    /// The same module and configuration were already active; nothing changed.
    Unchanged(Arc<Entry>),
}

/// One Kindling node.
pub struct Node {
    registry: Registry,
    runtime: Runtime,
    admission: Arc<Admission>,
    pub(crate) config: NodeConfig,
    pub(crate) policy: Mutex<Box<dyn KeepAlivePolicy>>,
    /// When the keeper last ran, on the node's clock.
    pub(crate) last_tick: AtomicU64,
    table: RwLock<HashMap<String, Arc<Entry>>>,
    control: tokio::sync::Mutex<()>,
    started: Instant,
    failpoint: Option<String>,
}

impl Node {
    /// Opens the registry, builds the runtime and the scheduler, finds the deployed functions
    /// (loading them too when `preload` is set), and starts the background tick.
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        if config.admission.max_in_flight > config.runtime.max_instances {
            return Err(NodeError::Config(format!(
                "the in-flight limit ({}) is above the instance pool ({})",
                config.admission.max_in_flight, config.runtime.max_instances
            )));
        }
        let registry = Registry::open(&config.data_dir).await?;
        let artifacts = config.data_dir.join("artifacts");
        let runtime_config = config.runtime.clone();
        let runtime = blocking(move || Runtime::new(&runtime_config, artifacts))
            .await?
            .map_err(|source| NodeError::Prepare {
                name: String::new(),
                source,
            })?;
        let quota = Arc::new(NamespaceLimits::new(config.namespace_limits.clone()));
        let admission = Admission::new(config.admission, quota);
        if config.keep_alive_policy.needs_budget() && config.code_memory_budget.is_none() {
            return Err(NodeError::Config(format!(
                "the {:?} keep-alive policy unloads only under a memory budget: set one \
                 (--code-memory-budget) or choose another policy",
                config.keep_alive_policy.build().name()
            )));
        }
        let policy = config.keep_alive_policy.build();
        let node = Arc::new(Self {
            registry,
            runtime,
            admission,
            policy: Mutex::new(policy),
            last_tick: AtomicU64::new(0),
            table: RwLock::default(),
            control: tokio::sync::Mutex::new(()),
            started: Instant::now(),
            failpoint: std::env::var("KINDLING_FAILPOINT").ok(),
            config,
        });
        node.discover().await?;
        tokio::spawn(crate::keeper::run(Arc::downgrade(&node), node.config.tick));
        Ok(node)
    }

    /// Milliseconds since the node started: the clock its policies run on.
    pub fn now(&self) -> Millis {
        self.started.elapsed().as_millis() as Millis
    }

    /// The registry, for read-only queries.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The admission controller, for its counters.
    pub fn admission(&self) -> &Admission {
        &self.admission
    }

    /// The node's configuration.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The deployed function with this name: the request path's first lookup.
    pub fn lookup(&self, name: &str) -> Option<Arc<Entry>> {
        self.table.read().expect("table lock").get(name).cloned()
    }

    /// Every deployed function.
    pub fn entries(&self) -> Vec<Arc<Entry>> {
        self.table
            .read()
            .expect("table lock")
            .values()
            .cloned()
            .collect()
    }

    /// Admits a request for `entry`, or says why not. Hold the permit until the request's
    /// instance is gone.
    pub async fn admit(&self, entry: &Arc<Entry>) -> Result<Permit, Rejection> {
        self.admission.admit(&entry.lane, &entry.account).await
    }

    /// The function's code, loading it if it is cold. `count` records the call as a request
    /// (and, when it loaded the code, as a cold start).
    pub async fn warm(&self, entry: &Arc<Entry>, count: bool) -> Result<Function, NodeError> {
        Ok(self.warm_timed(entry, count).await?.0)
    }

    /// As [`Node::warm`], also saying how long loading took when this call loaded the code
    /// (`None`: it was resident, a warm start).
    pub async fn warm_timed(
        &self,
        entry: &Arc<Entry>,
        count: bool,
    ) -> Result<(Function, Option<std::time::Duration>), NodeError> {
        if let Some(code) = entry.code() {
            if count {
                entry.record_use(self.now(), false);
            }
            return Ok((code.function, None));
        }
        let _loading = entry.loading.lock().await;
        // Another request may have loaded it while this one waited.
        if let Some(code) = entry.code() {
            if count {
                entry.record_use(self.now(), false);
            }
            return Ok((code.function, None));
        }
        let loaded = match self.load(&entry.version, entry.settings.clone()).await {
            Ok(loaded) => loaded,
            Err(err) => {
                entry.set_failure(Some(err.to_string()));
                return Err(err);
            }
        };
        let usage = &entry.usage;
        let load_us = loaded.elapsed.as_micros() as u64;
        usage.last_cold_start_us.store(load_us, Ordering::Relaxed);
        usage.load_us_total.fetch_add(load_us, Ordering::Relaxed);
        usage.code_bytes.store(loaded.code_bytes, Ordering::Relaxed);
        tracing::debug!(
            function = %entry.name,
            source = loaded.source.as_str(),
            load_ms = loaded.elapsed.as_secs_f64() * 1e3,
            "cold start"
        );
        let function = loaded.function.clone();
        let took = loaded.elapsed;
        entry.set_failure(None);
        entry.set_code(Some(Code::new(loaded, self.now())));
        if count {
            entry.record_use(self.now(), true);
        }
        Ok((function, Some(took)))
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
        check_requirements(&config)?;
        let sha256 = kindling_registry::sha256_hex(&wasm);
        if let Some(entry) = self.lookup(name)
            && entry.version.sha256 == sha256
            && entry.version.config == config
        {
            return Ok(DeployOutcome::Unchanged(entry));
        }

        let (settings, lane) = crate::settings::resolve(&config, &self.config, &self.runtime)?;
        let runtime = self.runtime.clone();
        let (prepare_wasm, prepare_sha, prepare_settings) =
            (wasm.clone(), sha256.clone(), settings.clone());
        let loaded =
            blocking(move || runtime.prepare(&prepare_wasm, &prepare_sha, prepare_settings))
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
        let compile_ms = loaded.elapsed.as_secs_f64() * 1e3;
        let entry = self.install(version, settings, lane, Some(loaded));
        tracing::info!(
            function = name,
            version = entry.version.version,
            kind = %entry.version.kind,
            compile_ms,
            "function deployed"
        );
        Ok(DeployOutcome::Created(entry))
    }

    /// Makes an earlier version serve again: `to`, or the one before the active version.
    pub async fn rollback(&self, name: &str, to: Option<u32>) -> Result<Arc<Entry>, NodeError> {
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
        let (settings, lane) =
            crate::settings::resolve(&record.config, &self.config, &self.runtime)?;
        let loaded = self.load(&record, settings.clone()).await?;
        let version = self.registry.activate(name, target).await?;
        let entry = self.install(version, settings, lane, Some(loaded));
        tracing::info!(function = name, version = target, "function rolled back");
        Ok(entry)
    }

    /// Deletes a function and all its versions; it stops serving at once.
    pub async fn delete(&self, name: &str) -> Result<(), NodeError> {
        let _control = self.control.lock().await;
        let unreferenced = self.registry.delete_function(name).await?;
        self.table.write().expect("table lock").remove(name);
        self.policy.lock().expect("policy lock").forget(name);
        for sha256 in unreferenced {
            self.runtime.forget(&sha256);
        }
        tracing::info!(function = name, "function deleted");
        Ok(())
    }

    /// Finds the deployed functions at start-up; loads them when `preload` is set.
    async fn discover(&self) -> Result<(), NodeError> {
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
        for version in self.registry.active_versions().await? {
            let name = version.function.clone();
            match crate::settings::resolve(&version.config, &self.config, &self.runtime) {
                Ok((settings, lane)) => {
                    let entry = self.install(version, settings, lane, None);
                    if self.config.preload
                        && let Err(err) = self.warm(&entry, false).await
                    {
                        tracing::error!(function = %name, error = %err, "function failed to load");
                    }
                }
                Err(err) => {
                    tracing::error!(function = %name, error = %err, "function cannot run on this node")
                }
            }
        }
        tracing::info!(
            functions = self.table.read().expect("table lock").len(),
            "functions found"
        );
        Ok(())
    }

    /// Puts a version in the table, keeping the function's counters, autoscaler and (when its
    /// settings are unchanged) admission lane, so that in-flight requests stay accounted.
    fn install(
        &self,
        version: VersionRecord,
        settings: FunctionSettings,
        lane_config: LaneConfig,
        loaded: Option<Loaded>,
    ) -> Arc<Entry> {
        let name = version.function.clone();
        let previous = self.lookup(&name);
        let lane = match &previous {
            Some(old) if old.lane.config() == lane_config => old.lane.clone(),
            _ => Lane::new(lane_config),
        };
        let usage = previous
            .as_ref()
            .map_or_else(|| Arc::new(Usage::default()), |old| old.usage.clone());
        let log = previous.as_ref().map_or_else(
            || FunctionLog::new(self.config.log_capacity_bytes),
            |old| old.log.clone(),
        );
        let autoscaler = previous.as_ref().map_or_else(
            || Arc::new(Mutex::new((Autoscaler::new(self.config.autoscaler), None))),
            |old| old.autoscaler.clone(),
        );
        let account = Account {
            namespace: version.config.namespace().into(),
            function: name.as_str().into(),
        };
        let now = self.now();
        let code = loaded.map(|loaded| {
            usage.code_bytes.store(loaded.code_bytes, Ordering::Relaxed);
            Code::new(loaded, now)
        });
        let entry = Arc::new(Entry::new(
            version, lane, account, usage, log, settings, autoscaler, code,
        ));
        self.table
            .write()
            .expect("table lock")
            .insert(name, entry.clone());
        entry
    }

    async fn load(
        &self,
        record: &VersionRecord,
        settings: FunctionSettings,
    ) -> Result<Loaded, NodeError> {
        let runtime = self.runtime.clone();
        let sha256 = record.sha256.clone();
        let path = self.registry.module_path(&sha256);
        blocking(move || runtime.load(&sha256, &path, settings))
            .await?
            .map_err(|source| NodeError::Prepare {
                name: record.function.clone(),
                source,
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

/// Declared requirements must be dimensions and levels the advisor knows, or `kindling advise
/// --function` could not judge them later.
fn check_requirements(config: &FunctionConfig) -> Result<(), NodeError> {
    let kb = kindling_advisor::KnowledgeBase::shared();
    for (dimension, level) in &config.requirements {
        kb.check_answer(dimension, level)
            .map_err(|problem| NodeError::Config(format!("requirements: {problem}")))?;
    }
    Ok(())
}

pub(crate) async fn blocking<T, F>(work: F) -> Result<T, NodeError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| NodeError::Internal(format!("blocking task failed: {err}")))
}
