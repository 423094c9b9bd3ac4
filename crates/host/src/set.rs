//! The ordered set of capabilities a node runs with, and what a function's configuration
//! resolves to under it. Each capability's typed phases are erased here once, so that the
//! runtime and the node drive any set of them through the same few calls.

use std::any::Any;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::capability::{
    Capability, DeployFlag, FieldSchema, FunctionContext, InstanceBuilder, Linkers, Metric,
};
use crate::error::HostError;
use crate::invocation::Invocation;
use crate::state::States;

/// The capability fields of a function's configuration, by field name, as stored.
pub type Sections = BTreeMap<String, serde_json::Value>;

/// One line `kindling inspect` shows for a capability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InspectLine {
    /// What the line is about, such as `env`.
    pub label: String,
    /// Its value.
    pub value: String,
}

/// A capability with its types erased.
trait Erased: Send + Sync {
    fn name(&self) -> &'static str;
    fn fields(&self) -> Vec<FieldSchema>;
    fn interfaces(&self) -> &'static [&'static str];
    fn concurrent_interfaces(&self) -> &'static [&'static str];
    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error>;
    fn resolve(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
        function: &FunctionContext<'_>,
        canonical: &mut Sections,
    ) -> Result<Arc<dyn Any + Send + Sync>, HostError>;
    fn prepare(
        &self,
        config: &(dyn Any + Send + Sync),
        builder: &mut InstanceBuilder<'_>,
    ) -> Result<Box<dyn Any + Send>, String>;
    fn finish(&self, state: &mut (dyn Any + Send), invocation: &Invocation);
    fn inspect(&self, fields: serde_json::Map<String, serde_json::Value>) -> Vec<InspectLine>;
    fn deploy_flags(&self) -> Vec<DeployFlag>;
    fn metrics(&self) -> Vec<Metric>;
    fn back_up(&self, dest: &Path) -> Result<Vec<String>, String>;
    fn restore(&self, src: &Path) -> Result<Vec<String>, String>;
    fn as_any(&self) -> &dyn Any;
}

impl<C: Capability> Erased for C {
    fn name(&self) -> &'static str {
        Capability::name(self)
    }

    fn fields(&self) -> Vec<FieldSchema> {
        Capability::fields(self)
    }

    fn interfaces(&self) -> &'static [&'static str] {
        Capability::interfaces(self)
    }

    fn concurrent_interfaces(&self) -> &'static [&'static str] {
        Capability::concurrent_interfaces(self)
    }

    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error> {
        Capability::link(self, linkers)
    }

    fn resolve(
        &self,
        fields: serde_json::Map<String, serde_json::Value>,
        function: &FunctionContext<'_>,
        canonical: &mut Sections,
    ) -> Result<Arc<dyn Any + Send + Sync>, HostError> {
        let mut section: C::Section = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|err| HostError::Malformed {
                capability: Capability::name(self),
                message: err.to_string(),
            })?;
        let config = Capability::configure(self, &mut section, function).map_err(|message| {
            HostError::Config {
                capability: Capability::name(self),
                message,
            }
        })?;
        // What the capability left in the section is what is stored.
        if let Ok(serde_json::Value::Object(stored)) = serde_json::to_value(&section) {
            canonical.extend(stored);
        }
        Ok(Arc::new(config))
    }

    fn prepare(
        &self,
        config: &(dyn Any + Send + Sync),
        builder: &mut InstanceBuilder<'_>,
    ) -> Result<Box<dyn Any + Send>, String> {
        let config = config
            .downcast_ref::<C::Config>()
            .expect("a capability's configuration is of its own type");
        Ok(Box::new(Capability::prepare(self, config, builder)?))
    }

    fn finish(&self, state: &mut (dyn Any + Send), invocation: &Invocation) {
        if let Some(state) = state.downcast_mut::<C::State>() {
            Capability::finish(self, state, invocation);
        }
    }

    fn inspect(&self, fields: serde_json::Map<String, serde_json::Value>) -> Vec<InspectLine> {
        match serde_json::from_value::<C::Section>(serde_json::Value::Object(fields)) {
            Ok(section) => Capability::inspect(self, &section)
                .into_iter()
                .map(|(label, value)| InspectLine { label, value })
                .collect(),
            Err(err) => vec![InspectLine {
                label: Capability::name(self).to_string(),
                value: format!("(unreadable: {err})"),
            }],
        }
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        Capability::deploy_flags(self)
    }

    fn metrics(&self) -> Vec<Metric> {
        Capability::metrics(self)
    }

    fn back_up(&self, dest: &Path) -> Result<Vec<String>, String> {
        Capability::back_up(self, dest)
    }

    fn restore(&self, src: &Path) -> Result<Vec<String>, String> {
        Capability::restore(self, src)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

struct Member {
    capability: Box<dyn Erased>,
    fields: Vec<&'static str>,
}

/// The capabilities of a node, in order; cheap to clone.
#[derive(Clone, Default)]
pub struct Capabilities {
    members: Arc<Vec<Member>>,
}

impl std::fmt::Debug for Capabilities {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.members.iter().map(|m| m.capability.name()))
            .finish()
    }
}

impl Capabilities {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The built-in capabilities: environment variables, read-only mounts under
    /// `mount_root`, outbound HTTP and guest output.
    pub fn builtin(mount_root: Option<std::path::PathBuf>) -> Self {
        Self::new()
            .with(crate::EnvVars)
            .with(crate::Mounts::new(mount_root))
            .with(crate::OutboundHttp)
            .with(crate::GuestOutput)
    }

    /// Adds a capability at the end of the set.
    ///
    /// # Panics
    ///
    /// When a field of its configuration is already owned by another capability of the set:
    /// that is a programming error in the composition of the node.
    pub fn with<C: Capability>(mut self, capability: C) -> Self {
        let fields: Vec<&'static str> = capability.fields().iter().map(|f| f.name).collect();
        for field in &fields {
            if let Some(owner) = self.owner(field) {
                panic!(
                    "capability {:?} claims configuration field {field:?}, already owned by {owner:?}",
                    Capability::name(&capability)
                );
            }
        }
        Arc::get_mut(&mut self.members)
            .expect("capabilities are composed before the set is shared")
            .push(Member {
                capability: Box::new(capability),
                fields,
            });
        self
    }

    fn owner(&self, field: &str) -> Option<&'static str> {
        self.members
            .iter()
            .find(|m| m.fields.contains(&field))
            .map(|m| m.capability.name())
    }

    /// The capabilities' names, in order.
    pub fn names(&self) -> Vec<&'static str> {
        self.members.iter().map(|m| m.capability.name()).collect()
    }

    /// Every WIT interface the capabilities link for components, with its version.
    pub fn interfaces(&self) -> Vec<&'static str> {
        self.members
            .iter()
            .flat_map(|m| m.capability.interfaces().iter().copied())
            .collect()
    }

    /// The interfaces the capabilities link only for the engine with concurrency support.
    pub fn concurrent_interfaces(&self) -> Vec<&'static str> {
        self.members
            .iter()
            .flat_map(|m| m.capability.concurrent_interfaces().iter().copied())
            .collect()
    }

    /// Phase 1: every capability adds its host functions to the linkers.
    pub fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), HostError> {
        for member in self.members.iter() {
            member
                .capability
                .link(linkers)
                .map_err(|err| HostError::Link {
                    capability: member.capability.name(),
                    message: format!("{err:#}"),
                })?;
        }
        Ok(())
    }

    /// Phase 2: checks that every field of `sections` belongs to a capability (`also_known`
    /// names the fields the caller handles itself, for the message), then has each capability
    /// resolve its own fields. The result also holds the sections in canonical form, which is
    /// what should be stored.
    pub fn configure(
        &self,
        sections: &Sections,
        function: &FunctionContext<'_>,
        also_known: &[&str],
    ) -> Result<Configured, HostError> {
        self.check_fields(sections, also_known)?;
        let mut canonical = Sections::new();
        let mut configs = Vec::with_capacity(self.members.len());
        for member in self.members.iter() {
            let fields = member
                .fields
                .iter()
                .filter_map(|field| Some((field.to_string(), sections.get(*field)?.clone())))
                .collect();
            configs.push(
                member
                    .capability
                    .resolve(fields, function, &mut canonical)?,
            );
        }
        Ok(Configured {
            configs,
            sections: canonical,
        })
    }

    /// Refuses a field of `sections` no capability owns (`also_known` names the fields the
    /// caller handles itself, for the message). Cheap: run it where a configuration is
    /// parsed, so a typo is named before anything else happens.
    pub fn check_fields(&self, sections: &Sections, also_known: &[&str]) -> Result<(), HostError> {
        let Some(field) = sections.keys().find(|field| self.owner(field).is_none()) else {
            return Ok(());
        };
        let mut expected: Vec<&str> = also_known.to_vec();
        expected.extend(self.members.iter().flat_map(|m| m.fields.iter().copied()));
        Err(HostError::UnknownField {
            field: field.clone(),
            expected: expected
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// Phase 3: every capability builds its state for one instance.
    pub fn prepare(
        &self,
        configured: &Configured,
        builder: &mut InstanceBuilder<'_>,
    ) -> Result<States, HostError> {
        let mut states = States::with_capacity(self.members.len());
        for (member, config) in self.members.iter().zip(&configured.configs) {
            let state = member
                .capability
                .prepare(config.as_ref(), builder)
                .map_err(|message| HostError::Prepare {
                    capability: member.capability.name(),
                    message,
                })?;
            states.push(state);
        }
        Ok(states)
    }

    /// After the guest: every capability finishes with its state.
    pub fn finish(&self, states: &mut States, invocation: &Invocation) {
        for (member, state) in self.members.iter().zip(states.slots_mut()) {
            member.capability.finish(state, invocation);
        }
    }

    /// What `kindling inspect` shows of a function's sections, capability by capability.
    pub fn inspect(&self, sections: &Sections) -> Vec<InspectLine> {
        self.members
            .iter()
            .flat_map(|member| {
                let fields = member
                    .fields
                    .iter()
                    .filter_map(|field| Some((field.to_string(), sections.get(*field)?.clone())))
                    .collect();
                member.capability.inspect(fields)
            })
            .collect()
    }

    /// Every configuration field of every capability, with its schema.
    pub fn fields(&self) -> Vec<FieldSchema> {
        self.members
            .iter()
            .flat_map(|m| m.capability.fields())
            .collect()
    }

    /// Every `kindling deploy` flag the capabilities offer.
    pub fn deploy_flags(&self) -> Vec<DeployFlag> {
        self.members
            .iter()
            .flat_map(|m| m.capability.deploy_flags())
            .collect()
    }

    /// What every capability reports for `/metrics`. May block (call it where `/metrics` is
    /// rendered, on a blocking thread).
    pub fn metrics(&self) -> Vec<Metric> {
        self.members
            .iter()
            .flat_map(|m| m.capability.metrics())
            .collect()
    }

    /// Backs up every capability's state into `<dest>/<capability name>/`; what each reports,
    /// prefixed with its name. Blocking.
    pub fn back_up(&self, dest: &Path) -> Result<Vec<String>, HostError> {
        self.each_with_dir(dest, |capability, dir| capability.back_up(dir))
    }

    /// Restores what [`Capabilities::back_up`] wrote under `src`. Blocking; the node must be
    /// stopped.
    pub fn restore(&self, src: &Path) -> Result<Vec<String>, HostError> {
        self.each_with_dir(src, |capability, dir| capability.restore(dir))
    }

    fn each_with_dir(
        &self,
        root: &Path,
        work: impl Fn(&dyn Erased, &Path) -> Result<Vec<String>, String>,
    ) -> Result<Vec<String>, HostError> {
        let mut lines = Vec::new();
        for member in self.members.iter() {
            let capability = &*member.capability;
            let name = capability.name();
            let found = work(capability, &root.join(name)).map_err(|message| HostError::Data {
                capability: name,
                message,
            })?;
            lines.extend(found.into_iter().map(|line| format!("{name}: {line}")));
        }
        Ok(lines)
    }

    /// The capability of type `C` in the set, for the tools that work on its data (the admin
    /// API's key-value routes, say).
    pub fn get<C: Capability>(&self) -> Option<&C> {
        self.members
            .iter()
            .find_map(|m| m.capability.as_any().downcast_ref::<C>())
    }
}

/// A function version's configuration resolved by every capability of the set; shared by all
/// of the version's requests.
pub struct Configured {
    configs: Vec<Arc<dyn Any + Send + Sync>>,
    sections: Sections,
}

impl Configured {
    /// The capability fields in their canonical stored form.
    pub fn sections(&self) -> &Sections {
        &self.sections
    }
}

impl std::fmt::Debug for Configured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Configured")
            .field("sections", &self.sections)
            .finish_non_exhaustive()
    }
}
