//! The node's WebAssembly runtime: Wasmtime engines with the pooling allocator and
//! copy-on-write memory images, linkers built once and shared, an epoch ticker, and the
//! compiled-artifact cache.
//!
//! There are two engines. WASI 0.3 handlers need Wasmtime's concurrency support (the component
//! model's async functions, streams and futures); with it on, every call into a component, a
//! WASI 0.2 handler's too, goes through the component model's task machinery (a guest task,
//! `run_concurrent`'s event loop, the task's fibers torn down after it), about a fifth of a
//! whole hello request in process. So WASI 0.2 components and WAGI modules run on an engine
//! without it, and only components that need it on the other. Each engine has its own pool.
//!
//! `prepare` is the deploy path (detect the kind, compile, check the links, cache the
//! artifact); `load` is the start-up path (map the cached artifact, compiling only when it is
//! missing or stale). Both are CPU- and disk-bound: call them from a blocking thread.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtime::component::Component;
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, Module, PoolingAllocationConfig,
    Precompiled,
};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p3::bindings::ServicePre;

use kindling_host::{Capabilities, ComponentLinker, HostState, Linkers, ModuleCtx, ModuleLinker};

use crate::artifact::{ArtifactCache, Verified};
use crate::config::{FunctionSettings, RuntimeConfig, UnsupportedImports};
use crate::error::{PrepareError, chain};
use crate::executor::Executor;
use crate::function::{Function, Pre, Shared};
use crate::imports::{Provided, relink_component, relink_module};
use crate::kind::{Encoding, component_names, encoding};

/// The interface a WASI 0.2 `wasi:http/proxy` component exports to handle requests.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2";
/// The interface a WASI 0.3 `wasi:http/service` component exports to handle requests.
const HANDLER: &str = "wasi:http/handler@0.3";

/// The shared runtime; clones are cheap handles to the same engine.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Shared,
    /// WASI 0.2 components and WAGI modules: no concurrency support.
    plain: Engine,
    /// Components that need concurrency support: WASI 0.3 handlers.
    concurrent: Engine,
    max_memory_bytes: u64,
    /// WASI 0.2 and the capabilities, on `plain`.
    http_linker: ComponentLinker,
    /// WASI 0.2 and 0.3 and the capabilities, on `concurrent`.
    http3_linker: ComponentLinker,
    wagi_linker: ModuleLinker,
    /// What the component linkers provide, to name what a refused component lacks.
    provided: Provided,
    artifacts: ArtifactCache,
    _ticker: EpochTicker,
}

/// Where a loaded function's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoadSource {
    /// Mapped from the on-disk artifact cache: no compilation.
    Cache,
    /// Compiled from the WebAssembly bytes (and then cached).
    Compiled,
    /// Already resident for another function or version with the same module: nothing was
    /// loaded.
    Shared,
}

impl LoadSource {
    /// A stable name for APIs and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cache => "cache",
            Self::Compiled => "compiled",
            Self::Shared => "shared",
        }
    }
}

/// A function made ready, with how it was made ready and how long that took.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The function, ready to invoke.
    pub function: Function,
    /// Where its machine code came from.
    pub source: LoadSource,
    /// Time spent compiling or mapping, linking and pre-instantiating.
    pub elapsed: Duration,
    /// Size of the compiled code kept resident while the function is loaded.
    pub code_bytes: u64,
}

impl Runtime {
    /// Builds the engines, links WASI and every capability once per engine, and opens the
    /// artifact cache in `artifact_dir`.
    pub fn new(
        config: &RuntimeConfig,
        artifact_dir: PathBuf,
        capabilities: Capabilities,
    ) -> Result<Self, PrepareError> {
        let engine = |concurrent| {
            Engine::new(&engine_config(config, concurrent))
                .map_err(|err| PrepareError::Engine(chain(&err)))
        };
        let (plain, concurrent) = (engine(false)?, engine(true)?);
        let linked =
            |result: wasmtime::Result<()>| result.map_err(|err| PrepareError::Engine(chain(&err)));

        // Rust guests import `wasi:cli/environment` and friends even for HTTP, so link all
        // of WASI 0.2, as `wasmtime serve -Scli` does, plus the HTTP interfaces.
        let mut http_linker = ComponentLinker::new(&plain);
        linked(add_wasi_p2(&mut http_linker))?;
        // WASI 0.3 (`wasi:*@0.3`) sits beside 0.2 under other names; a 0.3 component may
        // import both.
        let mut http3_linker = ComponentLinker::new(&concurrent);
        linked(add_wasi_p2(&mut http3_linker).and_then(|()| {
            wasmtime_wasi::p3::add_to_linker(&mut http3_linker)?;
            wasmtime_wasi_http::p3::add_to_linker(&mut http3_linker)
        }))?;

        let mut wagi_linker: ModuleLinker = Linker::new(&plain);
        linked(wasmtime_wasi::p1::add_to_linker_async(
            &mut wagi_linker,
            |state: &mut HostState<ModuleCtx>| &mut state.wasi,
        ))?;
        for (component, module) in [
            (&mut http_linker, &mut wagi_linker),
            // No module runs on the concurrent engine: its module linker is thrown away.
            (&mut http3_linker, &mut Linker::new(&concurrent)),
        ] {
            capabilities
                .link(&mut Linkers { component, module })
                .map_err(|err| PrepareError::Engine(err.to_string()))?;
        }

        let provided = Provided::new(
            capabilities.interfaces(),
            capabilities.concurrent_interfaces(),
        );
        let artifacts = ArtifactCache::open(artifact_dir, &[&plain, &concurrent])?;
        let executor = Executor::new(config.guest_threads).map_err(|err| {
            PrepareError::Engine(format!("cannot start the guest threads: {err}"))
        })?;
        let ticker = EpochTicker::start(vec![plain.clone(), concurrent.clone()], config.epoch_tick);
        Ok(Self {
            inner: Arc::new(Inner {
                shared: Shared {
                    capabilities,
                    meters_fuel: config.fuel,
                    executor: Arc::new(executor),
                },
                plain,
                concurrent,
                max_memory_bytes: config.max_memory_bytes,
                http_linker,
                http3_linker,
                wagi_linker,
                provided,
                artifacts,
                _ticker: ticker,
            }),
        })
    }

    /// The capabilities every function's instances are prepared by.
    pub fn capabilities(&self) -> &Capabilities {
        &self.inner.shared.capabilities
    }

    /// The deploy path: refuses binaries Kindling cannot run, with a message naming what is
    /// missing; links and pre-instantiates. Code is compiled once per module: when the cache
    /// already holds a sound artifact of these bytes (another name or an earlier version
    /// deployed them), it is mapped instead, so a second deploy of the same bytes compiles
    /// nothing.
    pub fn prepare(
        &self,
        wasm: &[u8],
        sha256: &str,
        settings: FunctionSettings,
    ) -> Result<Loaded, PrepareError> {
        let started = Instant::now();
        if let Some(loaded) = self.cached(sha256, &settings, started)? {
            return Ok(loaded);
        }
        let (pre, artifact) = match encoding(wasm)? {
            Encoding::Component => {
                let component = self.compile_component(wasm)?;
                let pre = self.link_component(&component, settings.unsupported_imports)?;
                let artifact = component
                    .serialize()
                    .map_err(|err| PrepareError::Engine(chain(&err)))?;
                (pre, artifact)
            }
            Encoding::CoreModule => {
                let module = Module::new(&self.inner.plain, wasm)
                    .map_err(|err| PrepareError::Invalid(chain(&err)))?;
                let pre = self.link_module(&module, settings.unsupported_imports)?;
                let artifact = module
                    .serialize()
                    .map_err(|err| PrepareError::Engine(chain(&err)))?;
                (pre, artifact)
            }
        };
        self.inner.artifacts.store(sha256, &artifact)?;
        Ok(Loaded {
            function: self.function(sha256, settings, pre),
            source: LoadSource::Compiled,
            elapsed: started.elapsed(),
            code_bytes: artifact.len() as u64,
        })
    }

    /// The start-up path: maps the cached artifact if there is a sound one, otherwise
    /// compiles `wasm_path` (and caches the result).
    pub fn load(
        &self,
        sha256: &str,
        wasm_path: &Path,
        settings: FunctionSettings,
    ) -> Result<Loaded, PrepareError> {
        let started = Instant::now();
        if let Some(loaded) = self.cached(sha256, &settings, started)? {
            return Ok(loaded);
        }
        let wasm = std::fs::read(wasm_path).map_err(|error| PrepareError::ModuleFile {
            path: wasm_path.to_path_buf(),
            error,
        })?;
        let mut loaded = self.prepare(&wasm, sha256, settings)?;
        loaded.elapsed = started.elapsed();
        Ok(loaded)
    }

    /// The function from the cached artifact of `sha256`, when there is a sound one. A damaged
    /// artifact (its digest does not match, Wasmtime refuses it) is logged and left for the
    /// caller to recompile; an artifact of the wrong kind is refused like the module would be.
    fn cached(
        &self,
        sha256: &str,
        settings: &FunctionSettings,
        started: Instant,
    ) -> Result<Option<Loaded>, PrepareError> {
        let (path, code_bytes) = match self.inner.artifacts.verify(sha256) {
            Verified::Sound { path, bytes } => (path, bytes),
            Verified::Missing => return Ok(None),
            Verified::Damaged { path, problem } => {
                tracing::warn!(
                    artifact = %path.display(),
                    problem = %problem,
                    "compiled artifact failed its integrity check; recompiling from the module"
                );
                return Ok(None);
            }
        };
        match self.load_artifact(&path, settings.unsupported_imports) {
            Ok(pre) => Ok(Some(Loaded {
                function: self.function(sha256, settings.clone(), pre),
                source: LoadSource::Cache,
                elapsed: started.elapsed(),
                code_bytes,
            })),
            Err(err @ PrepareError::Unsupported(_)) => Err(err),
            Err(err) => {
                tracing::warn!(
                    artifact = %path.display(),
                    error = %err,
                    "cached artifact unusable; recompiling"
                );
                Ok(None)
            }
        }
    }

    fn function(&self, sha256: &str, settings: FunctionSettings, pre: Pre) -> Function {
        Function::new(sha256.to_string(), settings, pre, self.inner.shared.clone())
    }

    /// True when the engine meters fuel, so that functions can have CPU budgets.
    pub fn meters_fuel(&self) -> bool {
        self.inner.shared.meters_fuel
    }

    /// The largest memory limit a function may have: the pool's slot size.
    pub fn max_memory_bytes(&self) -> u64 {
        self.inner.max_memory_bytes
    }

    /// True when a compiled artifact for this module is in the cache.
    pub fn is_cached(&self, sha256: &str) -> bool {
        self.inner.artifacts.path(sha256).exists()
    }

    /// What compiled code is keyed by besides the module's hash: a digest of the Wasmtime
    /// version, target and code-generation settings, equal on every node of the same build
    /// and settings, so that such nodes can share code.
    pub fn engine_key(&self) -> &str {
        self.inner.artifacts.engine_key()
    }

    /// The compiled code of a module, when the cache holds a sound copy: what another node of
    /// the same engine key can map instead of compiling. Blocking.
    pub fn compiled_code(&self, sha256: &str) -> Option<Vec<u8>> {
        match self.inner.artifacts.verify(sha256) {
            Verified::Sound { path, .. } => std::fs::read(path).ok(),
            Verified::Missing | Verified::Damaged { .. } => None,
        }
    }

    /// Puts code another node compiled into the cache, for the next load of `sha256` to map.
    /// The caller vouches for where it came from (cluster mode checks its authentication tag);
    /// Wasmtime checks again, at load, that it was compiled by a compatible engine. Blocking.
    pub fn install_compiled(&self, sha256: &str, code: &[u8]) -> Result<(), PrepareError> {
        if Engine::detect_precompiled(code).is_none() {
            return Err(PrepareError::Invalid(format!(
                "the compiled code offered for module {sha256} is not Wasmtime's"
            )));
        }
        self.inner.artifacts.store(sha256, code).map(|_| ())
    }

    /// Drops the compiled artifact of a module no longer deployed.
    pub fn forget(&self, sha256: &str) {
        self.inner.artifacts.remove(sha256);
    }

    /// Removes cached artifacts for modules not in `keep` and those compiled under another
    /// engine configuration. Returns how many files were removed.
    pub fn retain_artifacts(&self, keep: &std::collections::HashSet<String>) -> usize {
        self.inner.artifacts.retain(keep)
    }

    /// Compiles a component for the engine it needs, chosen from its import and export names
    /// before anything is compiled (see [`Runtime::needs_concurrency`]). One that the names
    /// send to the plain engine but that uses the component model's async features anyway
    /// (an `async func` import Kindling does not provide, an async lift) fails validation
    /// there, before any code is generated, and is compiled for the concurrent engine, whose
    /// error is the one reported when neither accepts the bytes.
    fn compile_component(&self, wasm: &[u8]) -> Result<Component, PrepareError> {
        let (imports, exports) = component_names(wasm)?;
        let names = imports.iter().chain(&exports).map(String::as_str);
        if !self.needs_concurrency(names)
            && let Ok(component) = Component::new(&self.inner.plain, wasm)
        {
            return Ok(component);
        }
        Component::new(&self.inner.concurrent, wasm)
            .map_err(|err| PrepareError::Invalid(chain(&err)))
    }

    /// True when one of a component's import or export names can be served only on the
    /// engine with concurrency support: a WASI 0.3 handler export, a WASI 0.3 import, an
    /// interface a capability links only there (Spin 3's, which have `async func`s; a WASI
    /// 0.2 guest may import one for the plain functions beside them).
    fn needs_concurrency<'a>(&self, mut names: impl Iterator<Item = &'a str>) -> bool {
        names.any(|name| name.starts_with(HANDLER) || self.inner.provided.needs_concurrency(name))
    }

    fn load_artifact(&self, path: &Path, policy: UnsupportedImports) -> Result<Pre, PrepareError> {
        let engine = &self.inner.plain;
        let invalid = |err: wasmtime::Error| PrepareError::Invalid(chain(&err));
        match Engine::detect_precompiled_file(path).map_err(invalid)? {
            // SAFETY: the artifact cache directory is written only by this runtime, from
            // `serialize` of modules it compiled itself or through `install_compiled`, whose
            // caller vouches for the code (cluster mode takes only code tagged with the key
            // the nodes share); the file's digest was checked against the one recorded when it
            // was written; Wasmtime additionally checks that the file was produced by a
            // compatible engine before using it. The directory must be writable by this
            // node's user only, like the rest of the data directory.
            // The artifact records the settings it was compiled with, which Wasmtime checks
            // first: mapped on the wrong engine, it is refused before anything runs.
            Some(Precompiled::Component) => {
                let component = unsafe { Component::deserialize_file(engine, path) }
                    .or_else(|_| unsafe {
                        Component::deserialize_file(&self.inner.concurrent, path)
                    })
                    .map_err(invalid)?;
                self.link_component(&component, policy)
            }
            // SAFETY: as above.
            Some(Precompiled::Module) => {
                let module = unsafe { Module::deserialize_file(engine, path) }.map_err(invalid)?;
                self.link_module(&module, policy)
            }
            None => Err(PrepareError::Invalid(format!(
                "{} is not a compiled artifact",
                path.display()
            ))),
        }
    }

    fn link_component(
        &self,
        component: &Component,
        policy: UnsupportedImports,
    ) -> Result<Pre, PrepareError> {
        let engine = component.engine();
        let on_concurrent = Engine::same(engine, &self.inner.concurrent);
        let ty = component.component_type();
        let names = ty
            .imports(engine)
            .chain(ty.exports(engine))
            .map(|(name, _)| name);
        if !on_concurrent && self.needs_concurrency(names) {
            return Err(PrepareError::Engine(
                "a component that needs concurrency support was compiled without it".into(),
            ));
        }
        let linker = if on_concurrent {
            &self.inner.http3_linker
        } else {
            &self.inner.http_linker
        };
        let exports: Vec<String> = component
            .component_type()
            .exports(engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let p3 = exports.iter().any(|name| name.starts_with(HANDLER));
        if !p3
            && !exports
                .iter()
                .any(|name| name.starts_with(INCOMING_HANDLER))
        {
            let found = if exports.is_empty() {
                "it exports nothing".to_string()
            } else {
                format!("it exports {}", exports.join(", "))
            };
            let hint = if exports.iter().any(|name| name.starts_with("wasi:cli/run")) {
                " (it is a wasi:cli command)"
            } else {
                ""
            };
            return Err(PrepareError::Unsupported(format!(
                "the component exports neither {INCOMING_HANDLER}.x (WASI 0.2) nor {HANDLER}.x \
                 (WASI 0.3), so it is not an HTTP handler; {found}{hint}. Build an HTTP handler \
                 instead, for example with `wasip2::http::proxy::export!`, \
                 `#[wstd::http_server]` or spin-sdk's `#[http_service]`"
            )));
        }
        let pre = match linker.instantiate_pre(component) {
            Ok(pre) => pre,
            Err(err) => relink_component(
                engine,
                linker,
                component,
                &self.inner.provided,
                policy,
                chain(&err),
            )?
            .instantiate_pre(component)
            .map_err(|err| PrepareError::Link(chain(&err)))?,
        };
        if p3 {
            let pre = ServicePre::new(pre).map_err(|err| PrepareError::Unsupported(chain(&err)))?;
            return Ok(Pre::Http3(pre));
        }
        let pre = ProxyPre::new(pre).map_err(|err| PrepareError::Unsupported(chain(&err)))?;
        Ok(Pre::Http(pre))
    }

    fn link_module(
        &self,
        module: &Module,
        policy: UnsupportedImports,
    ) -> Result<Pre, PrepareError> {
        let has_start = module
            .exports()
            .any(|export| export.name() == "_start" && export.ty().func().is_some());
        if !has_start {
            let exports: Vec<&str> = module.exports().map(|export| export.name()).collect();
            return Err(PrepareError::Unsupported(format!(
                "the core module has no `_start` function, so it is not a WASI command (WAGI \
                 runs programs with a `main`: build Rust as a binary for wasm32-wasip1, C with \
                 clang --target=wasm32-wasi); it exports [{}]",
                exports.join(", ")
            )));
        }
        let pre = match self.inner.wagi_linker.instantiate_pre(module) {
            Ok(pre) => pre,
            Err(err) => relink_module(&self.inner.wagi_linker, module, policy, chain(&err))?
                .instantiate_pre(module)
                .map_err(|err| PrepareError::Link(chain(&err)))?,
        };
        Ok(Pre::Wagi(pre))
    }
}

/// WASI 0.2 and its HTTP interfaces.
fn add_wasi_p2(linker: &mut ComponentLinker) -> wasmtime::Result<()> {
    wasmtime_wasi::p2::add_to_linker_async(linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(linker)
}

/// One engine's settings; `concurrent` turns on the concurrency support WASI 0.3 needs.
fn engine_config(config: &RuntimeConfig, concurrent: bool) -> Config {
    let instances = config.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    // A Rust component instance uses 3 core instances, 1 memory and 2 tables; a WAGI module
    // uses 1 of each. Size the pool so that the component instance count is the binding limit.
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(4))
        .total_memories(instances.saturating_mul(2))
        .total_tables(instances.saturating_mul(3))
        // A WASI 0.3 instance runs its async tasks on stacks of their own: its handler and
        // the task writing its response body at least.
        .total_stacks(instances.saturating_mul(2))
        .max_memory_size(config.max_memory_bytes as usize)
        .linear_memory_keep_resident(config.keep_resident_bytes)
        .table_keep_resident(config.keep_resident_bytes)
        .max_unused_warm_slots(config.max_unused_warm_slots)
        .pagemap_scan(Enabled::Auto);

    let mut engine = Config::new();
    engine
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .consume_fuel(config.fuel);
    if concurrent {
        engine.wasm_component_model_async(true);
    } else {
        engine.concurrency_support(false);
    }
    engine
}

/// Advances the engines' epochs on a fixed period from a dedicated thread; stops when dropped.
struct EpochTicker {
    _stop: mpsc::Sender<()>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>, tick: Duration) -> Self {
        let (stop, stopped) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("kindling-epoch".into())
            .spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(tick) {
                    engines.iter().for_each(Engine::increment_epoch);
                }
            })
            .expect("spawn the epoch ticker thread");
        Self { _stop: stop }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kindling_host::FunctionContext;

    fn settings(runtime: &Runtime) -> FunctionSettings {
        let function = FunctionContext {
            name: "placed",
            namespace: "default",
        };
        let configured = runtime
            .capabilities()
            .configure(&Default::default(), &function, &[])
            .unwrap();
        FunctionSettings {
            limits: Default::default(),
            capabilities: Arc::new(configured),
            unsupported_imports: Default::default(),
        }
    }

    /// Each guest lands on the engine it needs, compiled or mapped from the cache, and
    /// `false` means the plain engine.
    #[test]
    fn only_what_needs_concurrency_runs_on_the_concurrent_engine() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let open = || {
            Runtime::new(
                &RuntimeConfig::default(),
                dir.path().join("artifacts"),
                Capabilities::builtin(None)
                    .with(kindling_cap_keyvalue::KeyValue::new(data.clone(), None).unwrap())
                    .with(kindling_cap_sqlite::Sqlite::new(data.clone(), None).unwrap())
                    .with(kindling_cap_variables::Variables::new(data.clone())),
            )
            .unwrap()
        };
        let guests = [
            // A WASI 0.2 handler.
            (kindling_test_support::example("hello"), false),
            // A WAGI module.
            (kindling_test_support::example("c-hello"), false),
            // A WASI 0.3 handler (spin-sdk 7).
            (kindling_test_support::example("hello-p3"), true),
            // A WASI 0.2 handler (spin-sdk 5) that imports Spin 3's SQLite, which has `async
            // func`s beside the ones it calls: only the concurrent engine links it.
            (kindling_test_support::test_program("spin-kv"), true),
        ];
        for second in [false, true] {
            let runtime = open();
            for (path, concurrent) in &guests {
                let wasm = std::fs::read(path).unwrap();
                // Stands in for the module's sha256: a file name in the artifact cache.
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                let loaded = runtime.prepare(&wasm, &name, settings(&runtime)).unwrap();
                let expected = if second {
                    LoadSource::Cache
                } else {
                    LoadSource::Compiled
                };
                assert_eq!(loaded.source, expected, "{name}");
                let engine = loaded.function.engine();
                assert_eq!(
                    Engine::same(engine, &runtime.inner.concurrent),
                    *concurrent,
                    "{name}"
                );
                assert_eq!(Engine::same(engine, &runtime.inner.plain), !concurrent);
            }
        }
    }
}
