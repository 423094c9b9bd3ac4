//! The [`Capability`] trait and what each of its phases is handed.
//!
//! The shape follows Spin's factors: a capability links its host functions once, resolves a
//! function's configuration at deploy, and builds per-instance state for every request. Unlike
//! Spin there is no derive macro: the set of capabilities is a list chosen at start-up
//! ([`crate::Capabilities`]), and each one's state sits in the store behind its type, which a
//! host function reaches with [`crate::HostState::state`].

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::invocation::Invocation;
use crate::state::{ComponentCtx, HostState, ModuleCtx};

/// The linker of `wasi:http` components.
pub type ComponentLinker = wasmtime::component::Linker<HostState<ComponentCtx>>;

/// The linker of WAGI (WASI preview 1) core modules.
pub type ModuleLinker = wasmtime::Linker<HostState<ModuleCtx>>;

/// The node's shared linkers, handed to every capability once, at start-up.
pub struct Linkers<'a> {
    /// Where component imports are resolved.
    pub component: &'a mut ComponentLinker,
    /// Where core module imports are resolved.
    pub module: &'a mut ModuleLinker,
}

impl Linkers<'_> {
    /// True when the component linker's engine has concurrency support. The runtime has one
    /// engine with it (for WASI 0.3 components) and one without, and hands every capability
    /// the linkers of each in turn; host functions of WIT `async func`s (Wasmtime's
    /// concurrent host functions) can be linked only into the first.
    pub fn concurrent(&self) -> bool {
        self.component.engine().get_concurrency_support()
    }
}

/// Which kind of instance a request runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceKind {
    /// A `wasi:http` component: stdout is free for logs.
    Component,
    /// A WAGI module: stdout is the CGI response, not a log.
    Wagi,
}

/// What a capability learns about the function whose configuration it resolves.
#[derive(Debug, Clone, Copy)]
pub struct FunctionContext<'a> {
    /// The function's name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
}

/// A field of the function configuration a capability owns: its name at the top level of the
/// configuration JSON and its JSON Schema, which goes into the OpenAPI document.
#[derive(Debug, Clone)]
pub struct FieldSchema {
    /// The key, such as `env`.
    pub name: &'static str,
    /// Its JSON Schema, with a `description`.
    pub schema: serde_json::Value,
}

/// A `kindling deploy` flag a capability offers; the CLI adds it to its own flags and turns
/// each use into the capability's configuration field.
#[derive(Debug, Clone, Copy)]
pub struct DeployFlag {
    /// The long name, without dashes.
    pub long: &'static str,
    /// A one-letter alias.
    pub short: Option<char>,
    /// The value's placeholder in `--help`.
    pub value_name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// The configuration field it fills.
    pub field: &'static str,
    /// How a value becomes part of that field.
    pub form: FlagForm,
}

/// How uses of a [`DeployFlag`] fill its field.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FlagForm {
    /// `KEY=VALUE`, into an object of strings.
    KeyValue,
    /// `KEY=VALUE` as [`FlagForm::KeyValue`], where a VALUE `@PATH` is the file's text.
    KeyValueOrFile,
    /// Each value appended to a list of strings.
    List,
    /// Each value turned into a JSON value by the function, appended to a list; the error says
    /// what form the value should have.
    ListOf(fn(&str) -> Result<serde_json::Value, String>),
}

/// Where a capability builds its per-instance state: it may add environment variables and
/// change the WASI context the instance is created with.
pub struct InstanceBuilder<'a> {
    pub(crate) wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
    pub(crate) env: &'a mut Vec<(String, String)>,
    pub(crate) invocation: &'a Invocation,
    pub(crate) kind: InstanceKind,
}

impl<'a> InstanceBuilder<'a> {
    /// A builder over `wasi`, collecting environment variables into `env` (which the runtime
    /// merges with its own, such as WAGI's CGI variables, before building the context).
    pub fn new(
        wasi: &'a mut wasmtime_wasi::WasiCtxBuilder,
        env: &'a mut Vec<(String, String)>,
        invocation: &'a Invocation,
        kind: InstanceKind,
    ) -> Self {
        Self {
            wasi,
            env,
            invocation,
            kind,
        }
    }

    /// The WASI context under construction.
    pub fn wasi(&mut self) -> &mut wasmtime_wasi::WasiCtxBuilder {
        self.wasi
    }

    /// Adds environment variables the guest sees.
    pub fn env(&mut self, vars: impl IntoIterator<Item = (String, String)>) {
        self.env.extend(vars);
    }

    /// The invocation this instance serves.
    pub fn invocation(&self) -> &Invocation {
        self.invocation
    }

    /// The kind of instance.
    pub fn kind(&self) -> InstanceKind {
        self.kind
    }
}

/// The section of a capability that has no configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

/// One host capability. Implement it, add the value to the node's [`crate::Capabilities`], and
/// the node links, configures and prepares it like every other one.
pub trait Capability: Send + Sync + 'static {
    /// The capability's part of a function's stored configuration, as JSON: its fields sit at
    /// the top level of the configuration (`{"env": {...}}`). Serialize it so that an empty
    /// value writes nothing (`skip_serializing_if`): the stored form is canonical.
    type Section: Serialize + DeserializeOwned + Default + Send;
    /// What the section resolves to at deploy, kept for the life of the version.
    type Config: Send + Sync + 'static;
    /// Its per-instance state, stored in the instance's [`HostState`].
    type State: Send + 'static;

    /// A short name for errors and documents, such as `outbound-http`.
    fn name(&self) -> &'static str;

    /// The configuration fields it owns, with their schemas; none when it has no configuration.
    fn fields(&self) -> Vec<FieldSchema> {
        Vec::new()
    }

    /// The WIT interfaces its `link` adds, with their versions
    /// (`fermyon:spin/key-value@2.0.0`): what a deploy error lists as provided when a component
    /// imports something no capability links.
    fn interfaces(&self) -> &'static [&'static str] {
        &[]
    }

    /// Those of `interfaces` that `link` adds only where [`Linkers::concurrent`] is true
    /// (interfaces with WIT `async func`s): a component importing one is compiled for the
    /// engine with concurrency support.
    fn concurrent_interfaces(&self) -> &'static [&'static str] {
        &[]
    }

    /// Phase 1, once per engine (the runtime has two, see [`Linkers::concurrent`]): add host
    /// functions to the linkers. Wasmtime's concurrent host functions (what `bindgen!` makes of
    /// an `async func`) can be added only where `linkers.concurrent()`; elsewhere the runtime
    /// refuses to start.
    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error> {
        let _ = linkers;
        Ok(())
    }

    /// Phase 2, at deploy and whenever a stored version is loaded: validate and resolve the
    /// function's section. It may rewrite the section into the form to store (a secret is
    /// sealed before it reaches the registry). May do blocking I/O (the node calls it on a
    /// blocking thread). The error is a sentence naming the field and what to do; the caller
    /// adds the capability's name.
    fn configure(
        &self,
        section: &mut Self::Section,
        function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String>;

    /// Phase 3, per request: build the instance's state. Runs on the request path: no blocking
    /// I/O, as little allocation as will do.
    fn prepare(
        &self,
        config: &Self::Config,
        instance: &mut InstanceBuilder<'_>,
    ) -> Result<Self::State, String>;

    /// After the guest has returned (or was stopped), before its store is dropped.
    fn finish(&self, state: &mut Self::State, invocation: &Invocation) {
        let _ = (state, invocation);
    }

    /// What `kindling inspect` shows of a section, as labelled lines.
    fn inspect(&self, section: &Self::Section) -> Vec<(String, String)> {
        let _ = section;
        Vec::new()
    }

    /// The `kindling deploy` flags that fill its fields.
    fn deploy_flags(&self) -> Vec<DeployFlag> {
        Vec::new()
    }

    /// Its figures for `/metrics`, read when Prometheus scrapes. May block: it is called on a
    /// blocking thread.
    fn metrics(&self) -> Vec<Metric> {
        Vec::new()
    }

    /// Copies the state it keeps for functions into `dest`, a directory of its own inside a
    /// backup (which it creates if it has anything to write), consistently while the node
    /// serves. Returns what it copied, and what it left out and why, as lines for the operator.
    /// Blocking.
    fn back_up(&self, dest: &std::path::Path) -> Result<Vec<String>, String> {
        let _ = dest;
        Ok(Vec::new())
    }

    /// Puts back what [`Capability::back_up`] wrote to `src` (which may not exist), with the
    /// node stopped and its data directory locked. Checks everything before it replaces
    /// anything. Returns lines for the operator, as `back_up` does. Blocking.
    fn restore(&self, src: &std::path::Path) -> Result<Vec<String>, String> {
        let _ = src;
        Ok(Vec::new())
    }
}

/// A metric a capability reports: one family of samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its name, `kindling_...`.
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// A counter only goes up; a gauge is a reading.
    pub counter: bool,
    /// The label names, in order.
    pub labels: &'static [&'static str],
    /// Each sample's label values (in the order of `labels`) and value.
    pub samples: Vec<(Vec<String>, f64)>,
}
