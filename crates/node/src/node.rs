//! The node: the catalog (what is deployed), the runtime (what can run), the scheduler (who
//! runs now) and the table of functions, kept consistent with each other.
//!
//! Requests read the table under a short read lock, are admitted by the scheduler, and find
//! their function's code resident (warm) or load it from the artifact cache (cold, once per
//! function however many requests arrive together); see `invoke.rs`. Control-plane changes
//! (deploy, rollback, delete) compile outside any lock, then take the control lock only to
//! commit to the catalog and swap the table entry, so the catalog and the table always change
//! in the same order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use kindling_host::FunctionLog;
use kindling_registry::{
    Catalog, FunctionConfig, FunctionRecord, NewVersion, RegistryError, SqliteCatalog,
    VersionRecord,
};
use kindling_runtime::{Function, FunctionSettings, LoadSource, Loaded, Runtime};
use kindling_scheduler::{
    Account, Admission, Autoscaler, KeepAlivePolicy, Lane, LaneConfig, Millis, NamespaceLimits,
    Permit, Rejection,
};

use crate::config::NodeConfig;
use crate::entry::{Code, Entry, Usage};
use crate::error::NodeError;
use crate::gate::{DeployCandidate, DeployGate};
use crate::metrics::Metrics;

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
    pub(crate) catalog: Arc<dyn Catalog>,
    pub(crate) runtime: Runtime,
    admission: Arc<Admission>,
    pub(crate) config: NodeConfig,
    pub(crate) policy: Mutex<Box<dyn KeepAlivePolicy>>,
    /// When the keeper last ran, on the node's clock.
    pub(crate) last_tick: AtomicU64,
    pub(crate) metrics: Metrics,
    pub(crate) dispatch: Arc<dyn kindling_host::Dispatch>,
    table: RwLock<HashMap<String, Arc<Entry>>>,
    /// Deployed functions this node could not install at start-up, and why.
    unrunnable: Mutex<Vec<(String, String)>>,
    /// Versions another node made active that this one cannot run, and why (the previous
    /// version, if any, keeps serving here); see `replica.rs`.
    pub(crate) not_taken: Mutex<HashMap<String, String>>,
    pub(crate) control: tokio::sync::Mutex<()>,
    /// Where requests this node has no room for go (cluster mode).
    pub(crate) spill: std::sync::OnceLock<Arc<dyn crate::spill::Spill>>,
    /// Where compiled code is shared with other nodes (cluster mode).
    pub(crate) code_share: std::sync::OnceLock<Arc<dyn crate::code_share::CodeShare>>,
}

impl Node {
    /// Opens the embedded SQLite catalog under the data directory, then as
    /// [`Node::open_with`].
    pub async fn open(config: NodeConfig) -> Result<Arc<Self>, NodeError> {
        let catalog = SqliteCatalog::open(&config.data_dir).await?;
        Self::open_with(config, Arc::new(catalog)).await
    }

    /// Builds the runtime and the scheduler over `catalog`, finds the deployed functions
    /// (loading them too when `preload` is set), and starts the background tick.
    pub async fn open_with(
        config: NodeConfig,
        catalog: Arc<dyn Catalog>,
    ) -> Result<Arc<Self>, NodeError> {
        if config.admission.max_in_flight > config.runtime.max_instances {
            return Err(NodeError::Config(format!(
                "the in-flight limit ({}) is above the instance pool ({})",
                config.admission.max_in_flight, config.runtime.max_instances
            )));
        }
        if config.keep_alive_policy.needs_budget() && config.code_memory_budget.is_none() {
            return Err(NodeError::Config(format!(
                "the {:?} keep-alive policy unloads only under a memory budget: set one \
                 (--code-memory-budget) or choose another policy",
                config.keep_alive_policy.build().name()
            )));
        }
        let artifacts = config.data_dir.join("artifacts");
        let (runtime_config, capabilities) = (config.runtime.clone(), config.capabilities.clone());
        let runtime = blocking(move || Runtime::new(&runtime_config, artifacts, capabilities))
            .await?
            .map_err(NodeError::Runtime)?;
        let quota: Arc<dyn kindling_scheduler::Quota> = match &config.quota {
            Some(quota) => quota.clone(),
            None => Arc::new(NamespaceLimits::new(config.namespace_limits.clone())),
        };
        let admission = Admission::new(config.admission, quota);
        let policy = config.keep_alive_policy.build();
        let node = Arc::new_cyclic(|node| Self {
            catalog,
            runtime,
            admission,
            policy: Mutex::new(policy),
            last_tick: AtomicU64::new(0),
            metrics: Metrics::new(),
            dispatch: Arc::new(crate::dispatch::LocalDispatch { node: node.clone() }),
            table: RwLock::default(),
            unrunnable: Mutex::default(),
            not_taken: Mutex::default(),
            spill: std::sync::OnceLock::new(),
            code_share: std::sync::OnceLock::new(),
            control: tokio::sync::Mutex::new(()),
            config,
        });
        node.discover().await?;
        tokio::spawn(crate::keeper::run(Arc::downgrade(&node), node.config.tick));
        Ok(node)
    }

    /// Milliseconds since the node started: the clock its policies run on.
    pub fn now(&self) -> Millis {
        self.config.clock.now()
    }

    /// Runs the background keeper once now: reports use to the keep-alive policy, unloads
    /// what it evicts, pre-warms what it asks for, feeds the autoscalers. It also runs every
    /// `tick` on its own; tests with a manual clock call this instead.
    pub async fn tick(self: &Arc<Self>) {
        crate::keeper::tick(self).await;
    }

    /// Sends requests admission turns away to `spill` (a peer with room) instead of answering
    /// 503; set once, by cluster mode after the node is open.
    pub fn set_spill(&self, spill: Arc<dyn crate::spill::Spill>) {
        let _ = self.spill.set(spill);
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

    /// Every deployed function as the catalog records it, with its active version.
    pub async fn functions(&self) -> Result<Vec<(FunctionRecord, VersionRecord)>, NodeError> {
        let records = self.catalog.functions().await?;
        let mut versions: HashMap<String, VersionRecord> = self
            .catalog
            .active_versions()
            .await?
            .into_iter()
            .map(|version| (version.function.clone(), version))
            .collect();
        Ok(records
            .into_iter()
            .filter_map(|record| {
                let version = versions.remove(&record.name)?;
                Some((record, version))
            })
            .collect())
    }

    /// One function as the catalog records it, with its active version.
    pub async fn function(&self, name: &str) -> Result<(FunctionRecord, VersionRecord), NodeError> {
        let record = self
            .catalog
            .function(name)
            .await?
            .ok_or_else(|| RegistryError::FunctionNotFound(name.to_string()))?;
        let version = self.catalog.active_version(name).await?;
        Ok((record, version))
    }

    /// A function's versions, newest first.
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>, NodeError> {
        Ok(self.catalog.versions(name).await?)
    }

    /// True when the catalog answers: what readiness means for a node that found its
    /// functions before it bound its port.
    pub async fn catalog_answers(&self) -> Result<(), NodeError> {
        self.catalog.functions().await?;
        Ok(())
    }

    /// Deployed functions that cannot serve, and why: their code failed to load, or this node
    /// could not honour their configuration at start-up. Readiness is this list being empty.
    pub fn load_failures(&self) -> Vec<(String, String)> {
        let mut failures: Vec<(String, String)> = self
            .entries()
            .iter()
            .filter_map(|entry| Some((entry.name.to_string(), entry.failure()?)))
            .collect();
        let unrunnable = self.unrunnable.lock().expect("unrunnable lock");
        failures.extend(
            unrunnable
                .iter()
                .filter(|(name, _)| self.lookup(name).is_none())
                .cloned(),
        );
        drop(unrunnable);
        failures.extend(
            self.not_taken
                .lock()
                .expect("not-taken lock")
                .iter()
                .map(|(name, why)| (name.clone(), why.clone())),
        );
        failures.sort();
        failures
    }

    /// What `kindling inspect` shows of a configuration, capability by capability.
    pub fn inspect(&self, config: &FunctionConfig) -> Vec<kindling_host::InspectLine> {
        self.runtime.capabilities().inspect(&config.sections)
    }

    /// The capabilities this node runs with.
    pub fn capabilities(&self) -> &kindling_host::Capabilities {
        self.runtime.capabilities()
    }

    /// `/metrics` in the Prometheus text format.
    pub async fn render_metrics(self: &Arc<Self>) -> String {
        let catalog_bytes = self.catalog.disk_bytes().await;
        let node = self.clone();
        blocking(move || node.metrics.render(&node, catalog_bytes))
            .await
            .unwrap_or_default()
    }

    /// Makes the catalog durable in its main file; called at shutdown.
    pub async fn checkpoint(&self) -> Result<(), NodeError> {
        Ok(self.catalog.checkpoint().await?)
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
    /// keeps serving and nothing is recorded. Deploying the module and configuration that are
    /// already active changes nothing, however many such deploys run at once.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Bytes,
        config: FunctionConfig,
    ) -> Result<DeployOutcome, NodeError> {
        self.deploy_gated(name, wasm, config, None).await
    }

    /// [`Node::deploy`], with `gate` deciding, just before the commit, whether the compiled
    /// version may be recorded (quotas, admission policy); a refusal records nothing.
    pub async fn deploy_gated(
        &self,
        name: &str,
        wasm: Bytes,
        mut config: FunctionConfig,
        gate: Option<&dyn DeployGate>,
    ) -> Result<DeployOutcome, NodeError> {
        check_name(name)?;
        config.validate()?;
        check_requirements(&config)?;
        let sha256 = kindling_registry::sha256_hex(&wasm);
        let base = self.catalog.base(name).await?;
        // Nothing collects this module's files until the version is committed (or refused).
        let _hold = self.catalog.hold(&sha256);

        let (settings, lane) = self.resolve(name, &config).await?;
        // Store what the capabilities made of their sections, so that equal configurations
        // compare equal however they were written.
        config.sections = settings.capabilities.sections().clone();
        if let Some(entry) = self.unchanged(name, &sha256, &config) {
            return Ok(DeployOutcome::Unchanged(entry));
        }

        let loaded = match self.resident(&sha256, &settings) {
            Some(code) => shared(code, settings.clone()),
            None => {
                let runtime = self.runtime.clone();
                let (wasm, sha256, settings) = (wasm.clone(), sha256.clone(), settings.clone());
                blocking(move || runtime.prepare(&wasm, &sha256, settings))
                    .await?
                    .map_err(|error| NodeError::Prepare {
                        name: name.to_string(),
                        error,
                    })?
            }
        };
        let size_bytes = wasm.len() as u64;
        self.catalog.store_module(wasm).await?;
        // Before the commit, so that the nodes the commit reaches find the code.
        self.offer_code(&sha256, loaded.source, true).await;

        #[cfg(feature = "failpoints")]
        crate::failpoint::park("deploy-before-commit", name).await;

        let _control = self.control.lock().await;
        if let Some(entry) = self.unchanged(name, &sha256, &config) {
            // An identical deploy committed while this one compiled.
            return Ok(DeployOutcome::Unchanged(entry));
        }
        let namespace = config.namespace().to_string();
        if let Some(gate) = gate {
            let candidate = self.candidate(name, &config, &loaded.function, size_bytes, &sha256);
            gate.admit(&candidate).map_err(NodeError::Refused)?;
        }
        let version = self
            .catalog
            .commit_version(
                name,
                NewVersion {
                    sha256,
                    kind: loaded.function.kind().as_str().to_string(),
                    size_bytes,
                    config,
                    base,
                },
            )
            .await?;
        let compile_ms = loaded.elapsed.as_secs_f64() * 1e3;
        let source = loaded.source;
        let entry = self.install(version, settings, lane, Some(loaded));
        tracing::info!(
            function = name,
            version = entry.version.version,
            kind = %entry.version.kind,
            source = source.as_str(),
            compile_ms,
            "function deployed"
        );
        if let Some(keep) = gate.and_then(|gate| gate.versions_kept(&namespace)) {
            // The deploy is done; a failure to prune is only logged.
            match self.catalog.prune_versions(name, keep).await {
                Ok(unreferenced) => {
                    let runtime = self.runtime.clone();
                    blocking(move || {
                        for sha256 in unreferenced {
                            runtime.forget(&sha256);
                        }
                    })
                    .await?;
                }
                Err(err) => {
                    tracing::warn!(function = name, error = %err, "cannot prune old versions")
                }
            }
        }
        Ok(DeployOutcome::Created(entry))
    }

    /// What a gate sees of a version about to serve (called under the control lock).
    fn candidate<'a>(
        &self,
        name: &'a str,
        config: &'a FunctionConfig,
        function: &Function,
        size_bytes: u64,
        sha256: &'a str,
    ) -> DeployCandidate<'a> {
        let namespace = config.namespace();
        let (imports, exports) = function.interface_names();
        let (namespace_functions, namespace_memory_bytes) = self.namespace_usage(namespace, name);
        let current = self.lookup(name);
        DeployCandidate {
            name,
            namespace,
            config,
            kind: function.kind().as_str(),
            size_bytes,
            sha256,
            imports,
            exports,
            memory_bytes: function.settings().limits.memory_bytes,
            namespace_functions,
            namespace_memory_bytes,
            exists: current.is_some(),
            current_namespace: current.map(|entry| entry.version.config.namespace().to_string()),
        }
    }

    /// How many functions of `namespace` other than `except` exist, and the memory they may
    /// use together.
    fn namespace_usage(&self, namespace: &str, except: &str) -> (u32, u64) {
        let table = self.table.read().expect("table lock");
        table
            .values()
            .filter(|e| &*e.name != except && e.version.config.namespace() == namespace)
            .fold((0, 0), |(n, bytes), e| {
                (n + 1, bytes + e.settings.limits.memory_bytes)
            })
    }

    /// The active entry when it already runs this module with this configuration.
    fn unchanged(&self, name: &str, sha256: &str, config: &FunctionConfig) -> Option<Arc<Entry>> {
        self.lookup(name)
            .filter(|entry| entry.version.sha256 == sha256 && entry.version.config == *config)
    }

    /// Resident code of this module, whichever function or version loaded it, linked as
    /// `settings` ask (stand-ins for unsupported imports or none).
    pub(crate) fn resident(&self, sha256: &str, settings: &FunctionSettings) -> Option<Code> {
        self.table
            .read()
            .expect("table lock")
            .values()
            .filter(|entry| entry.version.sha256 == sha256)
            .filter_map(|entry| entry.code())
            .find(|code| {
                code.function.settings().unsupported_imports == settings.unsupported_imports
            })
    }

    /// Makes an earlier version serve again: `to`, or the one before the active version.
    pub async fn rollback(&self, name: &str, to: Option<u32>) -> Result<Arc<Entry>, NodeError> {
        self.rollback_gated(name, to, None).await
    }

    /// [`Node::rollback`], with `gate` deciding whether the old version may serve again, as
    /// for a deploy (quotas and admission policy may have changed since it was deployed).
    pub async fn rollback_gated(
        &self,
        name: &str,
        to: Option<u32>,
        gate: Option<&dyn DeployGate>,
    ) -> Result<Arc<Entry>, NodeError> {
        let _control = self.control.lock().await;
        let target = match to {
            Some(version) => version,
            None => self.catalog.previous_version(name).await?,
        };
        let record = self
            .catalog
            .versions(name)
            .await?
            .into_iter()
            .find(|v| v.version == target)
            .ok_or_else(|| RegistryError::VersionNotFound {
                name: name.to_string(),
                version: target,
            })?;
        // Load first: if the old version cannot be loaded, nothing changes.
        let (settings, lane) = self.resolve(name, &record.config).await?;
        let loaded = match self.resident(&record.sha256, &settings) {
            Some(code) => shared(code, settings.clone()),
            None => self.load_sharing(&record, settings.clone()).await?,
        };
        if let Some(gate) = gate {
            let candidate = self.candidate(
                name,
                &record.config,
                &loaded.function,
                record.size_bytes,
                &record.sha256,
            );
            gate.admit(&candidate).map_err(NodeError::Refused)?;
        }
        let version = self.catalog.activate(name, target).await?;
        let entry = self.install(version, settings, lane, Some(loaded));
        tracing::info!(function = name, version = target, "function rolled back");
        Ok(entry)
    }

    /// Deletes a function and all its versions; it stops serving at once.
    pub async fn delete(&self, name: &str) -> Result<(), NodeError> {
        let _control = self.control.lock().await;
        let unreferenced = self.catalog.delete_function(name).await?;
        self.unlist(name);
        self.forget_modules(unreferenced).await?;
        tracing::info!(function = name, "function deleted");
        Ok(())
    }

    /// Takes a function out of the table: it stops serving at once.
    pub(crate) fn unlist(&self, name: &str) -> Option<Arc<Entry>> {
        let removed = self.table.write().expect("table lock").remove(name);
        self.policy.lock().expect("policy lock").forget(name);
        removed
    }

    /// Removes the compiled artifacts of modules the catalog no longer references.
    pub(crate) async fn forget_modules(&self, unreferenced: Vec<String>) -> Result<(), NodeError> {
        if unreferenced.is_empty() {
            return Ok(());
        }
        let runtime = self.runtime.clone();
        blocking(move || {
            for sha256 in unreferenced {
                runtime.forget(&sha256);
            }
        })
        .await
    }

    /// Finds the deployed functions at start-up; loads them when `preload` is set.
    async fn discover(&self) -> Result<(), NodeError> {
        let referenced: std::collections::HashSet<String> = self
            .catalog
            .referenced_modules()
            .await?
            .into_iter()
            .collect();
        let runtime = self.runtime.clone();
        let removed = blocking(move || runtime.retain_artifacts(&referenced)).await?;
        if removed > 0 {
            tracing::info!(removed, "removed stale compiled artifacts");
        }
        for version in self.catalog.active_versions().await? {
            let name = version.function.clone();
            match self.resolve(&name, &version.config).await {
                Ok((settings, lane)) => {
                    let entry = self.install(version, settings, lane, None);
                    if self.config.preload
                        && let Err(err) = self.warm(&entry, false).await
                    {
                        tracing::error!(function = %name, error = %err, "function failed to load");
                    }
                }
                Err(err) => {
                    tracing::error!(function = %name, error = %err, "function cannot run on this node");
                    self.unrunnable
                        .lock()
                        .expect("unrunnable lock")
                        .push((name, err.to_string()));
                }
            }
        }
        tracing::info!(
            functions = self.table.read().expect("table lock").len(),
            "functions found"
        );
        Ok(())
    }

    /// Resolves a configuration on a blocking thread (capabilities may open files).
    pub(crate) async fn resolve(
        &self,
        name: &str,
        config: &FunctionConfig,
    ) -> Result<(FunctionSettings, LaneConfig), NodeError> {
        let (name, config) = (name.to_string(), config.clone());
        let defaults = (self.config.default_limits, self.config.default_lane);
        let runtime = self.runtime.clone();
        blocking(move || crate::settings::resolve(&name, &config, defaults, &runtime)).await?
    }

    /// Puts a version in the table, keeping the function's counters, autoscaler and (when its
    /// settings are unchanged) admission lane, so that in-flight requests stay accounted.
    pub(crate) fn install(
        &self,
        version: VersionRecord,
        settings: FunctionSettings,
        lane_config: LaneConfig,
        loaded: Option<Loaded>,
    ) -> Arc<Entry> {
        let name = version.function.clone();
        let previous = self.lookup(&name);
        let lane_config = LaneConfig {
            memory_bytes: reservation(&version, &settings),
            ..lane_config
        };
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

    pub(crate) async fn load(
        &self,
        record: &VersionRecord,
        settings: FunctionSettings,
    ) -> Result<Loaded, NodeError> {
        let runtime = self.runtime.clone();
        let sha256 = record.sha256.clone();
        let path = self.catalog.module_path(&sha256);
        blocking(move || runtime.load(&sha256, &path, settings))
            .await?
            .map_err(|error| NodeError::Prepare {
                name: record.function.clone(),
                error,
            })
    }
}

/// Code already resident for the same module, with another version's settings: nothing to
/// compile or load.
pub(crate) fn shared(code: Code, settings: FunctionSettings) -> Loaded {
    let started = Instant::now();
    let function = code.function.with_settings(settings);
    Loaded {
        function,
        source: LoadSource::Shared,
        elapsed: started.elapsed(),
        code_bytes: code.code_bytes,
    }
}

/// What one request of a version reserves from the node's memory budget while it runs: its
/// memory limit, and for WAGI the request and response it buffers.
fn reservation(version: &VersionRecord, settings: &FunctionSettings) -> u64 {
    let limits = &settings.limits;
    let buffers = if version.kind == "wagi" {
        limits
            .max_request_body_bytes
            .saturating_add(limits.max_response_body_bytes)
    } else {
        0
    };
    limits.memory_bytes.saturating_add(buffers)
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
