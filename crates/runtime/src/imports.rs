//! Imports Kindling does not provide. A component built against a whole world (componentize-py
//! imports everything, a Spin app may import `fermyon:spin/llm`) is refused at deploy with each
//! missing interface named, what Kindling does provide, and the opt-in: deployed with
//! `--allow-unsupported-imports`, the missing imports are linked to stand-ins that trap when
//! called, so the function serves every route that does not call them.
//!
//! Stand-ins are defined for the missing imports only, by name, in a copy of the shared linker.
//! (Wasmtime's `define_unknown_imports_as_traps` would also shadow imports the linker satisfies
//! through semver matching, such as `wasi:cli/environment@0.2.3` against 0.2.12, and make every
//! WASI call trap.)

use std::sync::Arc;

use kindling_host::{ComponentCtx, ComponentLinker, HostState, ModuleLinker};
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ResourceType};
use wasmtime::{Engine, Module};

use crate::config::UnsupportedImports;
use crate::error::PrepareError;

/// The WASI interfaces the runtime links for components, beside the capabilities' own.
const WASI: &[&str] = &[
    "wasi:cli/environment@0.2.12",
    "wasi:cli/exit@0.2.12",
    "wasi:cli/stdin@0.2.12",
    "wasi:cli/stdout@0.2.12",
    "wasi:cli/stderr@0.2.12",
    "wasi:cli/terminal-input@0.2.12",
    "wasi:cli/terminal-output@0.2.12",
    "wasi:cli/terminal-stdin@0.2.12",
    "wasi:cli/terminal-stdout@0.2.12",
    "wasi:cli/terminal-stderr@0.2.12",
    "wasi:clocks/monotonic-clock@0.2.12",
    "wasi:clocks/wall-clock@0.2.12",
    "wasi:filesystem/types@0.2.12",
    "wasi:filesystem/preopens@0.2.12",
    "wasi:io/error@0.2.12",
    "wasi:io/poll@0.2.12",
    "wasi:io/streams@0.2.12",
    "wasi:random/random@0.2.12",
    "wasi:random/insecure@0.2.12",
    "wasi:random/insecure-seed@0.2.12",
    "wasi:sockets/network@0.2.12",
    "wasi:sockets/instance-network@0.2.12",
    "wasi:sockets/ip-name-lookup@0.2.12",
    "wasi:sockets/tcp@0.2.12",
    "wasi:sockets/tcp-create-socket@0.2.12",
    "wasi:sockets/udp@0.2.12",
    "wasi:sockets/udp-create-socket@0.2.12",
    "wasi:http/types@0.2.12",
    "wasi:http/outgoing-handler@0.2.12",
    "wasi:cli/environment@0.3.0",
    "wasi:cli/exit@0.3.0",
    "wasi:cli/types@0.3.0",
    "wasi:cli/stdin@0.3.0",
    "wasi:cli/stdout@0.3.0",
    "wasi:cli/stderr@0.3.0",
    "wasi:cli/terminal-input@0.3.0",
    "wasi:cli/terminal-output@0.3.0",
    "wasi:cli/terminal-stdin@0.3.0",
    "wasi:cli/terminal-stdout@0.3.0",
    "wasi:cli/terminal-stderr@0.3.0",
    "wasi:clocks/types@0.3.0",
    "wasi:clocks/monotonic-clock@0.3.0",
    "wasi:clocks/system-clock@0.3.0",
    "wasi:filesystem/types@0.3.0",
    "wasi:filesystem/preopens@0.3.0",
    "wasi:random/random@0.3.0",
    "wasi:random/insecure@0.3.0",
    "wasi:random/insecure-seed@0.3.0",
    "wasi:sockets/types@0.3.0",
    "wasi:sockets/ip-name-lookup@0.3.0",
    "wasi:http/types@0.3.0",
    "wasi:http/client@0.3.0",
];

/// What the component linker provides: WASI and every capability's interfaces.
#[derive(Debug, Clone)]
pub(crate) struct Provided {
    interfaces: Arc<Vec<&'static str>>,
    concurrent_only: Arc<Vec<&'static str>>,
}

impl Provided {
    /// WASI and the capabilities' `interfaces`, of which `concurrent_only` are linked only
    /// for the engine with concurrency support.
    pub(crate) fn new(capabilities: Vec<&'static str>, concurrent_only: Vec<&'static str>) -> Self {
        let mut interfaces: Vec<&'static str> = WASI.to_vec();
        interfaces.extend(capabilities);
        debug_assert!(
            concurrent_only.iter().all(|name| interfaces.contains(name)),
            "a capability's concurrent interfaces {concurrent_only:?} are among its interfaces"
        );
        Self {
            interfaces: Arc::new(interfaces),
            concurrent_only: Arc::new(concurrent_only),
        }
    }

    /// True when an import of `name` can be linked only on the engine with concurrency
    /// support: a WASI 0.3 interface, or one a capability links only there.
    pub(crate) fn needs_concurrency(&self, name: &str) -> bool {
        let (interface, version) = split(name);
        (interface.starts_with("wasi:") && version.is_some_and(|v| v.starts_with("0.3")))
            || self.concurrent_only.iter().any(|provided| {
                let (have, have_version) = split(provided);
                have == interface && compatible(version, have_version)
            })
    }

    /// True when an import of `name` is one of the provided interfaces, at a version Wasmtime
    /// matches to it.
    fn provides(&self, name: &str) -> bool {
        let (interface, version) = split(name);
        self.interfaces.iter().any(|provided| {
            let (have, have_version) = split(provided);
            have == interface && compatible(version, have_version)
        })
    }

    /// The versions of `name`'s interface that are provided, for a hint.
    fn versions_of(&self, name: &str) -> Vec<&'static str> {
        let (interface, _) = split(name);
        self.interfaces
            .iter()
            .filter(|provided| split(provided).0 == interface)
            .copied()
            .collect()
    }

    /// The provided interfaces grouped by package, for the message: `wasi:keyvalue/{store,
    /// atomics}@0.2.0-draft2`.
    fn summary(&self) -> String {
        let mut groups: Vec<(String, Vec<&str>)> = Vec::new();
        for provided in self.interfaces.iter() {
            let (interface, version) = split(provided);
            let (package, item) = interface.split_once('/').unwrap_or((interface, ""));
            let key = format!("{package}@{}", version.unwrap_or(""));
            match groups.iter_mut().find(|(k, _)| *k == key) {
                Some((_, items)) => items.push(item),
                None => groups.push((key, vec![item])),
            }
        }
        groups
            .iter()
            .map(|(key, items)| {
                let (package, version) = key.split_once('@').unwrap_or((key, ""));
                let items = if items.len() == 1 {
                    items[0].to_string()
                } else {
                    format!("{{{}}}", items.join(","))
                };
                format!("{package}/{items}@{version}")
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn split(name: &str) -> (&str, Option<&str>) {
    match name.split_once('@') {
        Some((interface, version)) => (interface, Some(version)),
        None => (name, None),
    }
}

/// Wasmtime's semver matching of imports: a release matches any release of the same major
/// version, of the same minor while the major is 0, and exactly while both are 0; a
/// pre-release, or a version that is not `MAJOR.MINOR.PATCH`, matches only itself. Build
/// metadata (`+...`) is ignored.
fn compatible(wanted: Option<&str>, have: Option<&str>) -> bool {
    let (Some(wanted), Some(have)) = (wanted, have) else {
        return wanted == have;
    };
    let release = |v: &str| -> Option<[u64; 3]> {
        let core = v.split_once('+').map_or(v, |(core, _)| core);
        let mut parts = core.split('.').map(|p| {
            (!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
        });
        let version = [parts.next()??, parts.next()??, parts.next()??];
        parts.next().is_none().then_some(version)
    };
    match (release(wanted), release(have)) {
        (Some([0, 0, a]), Some([0, 0, b])) => a == b,
        (Some([0, a, _]), Some([0, b, _])) => a == b && a != 0,
        (Some([a, ..]), Some([b, ..])) => a == b && a != 0,
        _ => wanted == have,
    }
}

/// The component's imports that nothing in the linker provides.
fn missing_component_imports(
    engine: &Engine,
    component: &Component,
    provided: &Provided,
) -> Vec<String> {
    component
        .component_type()
        .imports(engine)
        .map(|(name, _)| name)
        .filter(|name| !provided.provides(name))
        .map(str::to_string)
        .collect()
}

/// A copy of `linker` in which each of the component's `missing` imports is a stand-in that
/// traps, saying which import was called, when the guest calls it.
fn component_stand_ins(
    engine: &Engine,
    linker: &ComponentLinker,
    component: &Component,
    missing: &[String],
) -> wasmtime::Result<ComponentLinker> {
    let mut linker = linker.clone();
    let component_type = component.component_type();
    let imports: Vec<_> = component_type.imports(engine).collect();
    // Resources a missing interface only re-exports from a provided one (`use types.{request}`)
    // are the provided ones: no stand-in, or the types would not match.
    let mut provided_resources = Vec::new();
    for (name, import) in &imports {
        if let ComponentItem::ComponentInstance(instance) = &import.ty
            && !missing.iter().any(|m| m == name)
        {
            for (_, item) in instance.exports(engine) {
                if let ComponentItem::Resource(resource) = item.ty {
                    provided_resources.push(resource);
                }
            }
        }
    }
    for (name, import) in imports {
        if !missing.iter().any(|m| m == name) {
            continue;
        }
        match import.ty {
            ComponentItem::ComponentInstance(instance) => {
                let mut root = linker.root();
                let mut stand_in = root.instance(name)?;
                for (export, item) in instance.exports(engine) {
                    let what = format!("{name}#{export}");
                    stand_in_item(&mut stand_in, export, &item.ty, what, &provided_resources)?;
                }
            }
            item => stand_in_item(
                &mut linker.root(),
                name,
                &item,
                name.to_string(),
                &provided_resources,
            )?,
        }
    }
    Ok(linker)
}

/// Host type of every stand-in resource: none is ever created.
struct Unprovided;

fn stand_in_item(
    linker: &mut wasmtime::component::LinkerInstance<'_, HostState<ComponentCtx>>,
    name: &str,
    item: &ComponentItem,
    what: String,
    provided_resources: &[ResourceType],
) -> wasmtime::Result<()> {
    match item {
        ComponentItem::ComponentFunc(func) if func.async_() => {
            linker.func_new_concurrent(name, move |_, _, _, _| {
                let what = what.clone();
                Box::pin(async move { Err(not_provided(&what)) })
            })
        }
        ComponentItem::ComponentFunc(_) => {
            linker.func_new(name, move |_, _, _, _| Err(not_provided(&what)))
        }
        ComponentItem::Resource(resource) if provided_resources.contains(resource) => Ok(()),
        ComponentItem::Resource(_) => {
            linker.resource(name, ResourceType::host::<Unprovided>(), |_, _| Ok(()))
        }
        _ => Ok(()),
    }
}

fn not_provided(what: &str) -> wasmtime::Error {
    wasmtime::format_err!(
        "{what} is not provided by Kindling; the function was deployed with \
         --allow-unsupported-imports, so calling it traps"
    )
}

/// Links a component whose first link failed (`error`): refuses it naming what is missing,
/// or, when the function allows it, links the missing imports to stand-ins.
pub(crate) fn relink_component(
    engine: &Engine,
    linker: &ComponentLinker,
    component: &Component,
    provided: &Provided,
    policy: UnsupportedImports,
    error: String,
) -> Result<ComponentLinker, PrepareError> {
    let missing = missing_component_imports(engine, component, provided);
    if missing.is_empty() {
        // Everything it imports is provided at a matching version, so the mismatch is in an
        // interface's contents (a newer minor version with more functions, say).
        return Err(PrepareError::Link(error));
    }
    match policy {
        UnsupportedImports::Refuse => Err(PrepareError::Unsupported(refusal(
            &missing,
            |name| provided.versions_of(name),
            &provided.summary(),
        ))),
        UnsupportedImports::Trap => component_stand_ins(engine, linker, component, &missing)
            .map_err(|err| PrepareError::Link(crate::error::chain(&err))),
    }
}

/// The same for a WAGI module: it may import only WASI preview 1.
pub(crate) fn relink_module(
    linker: &ModuleLinker,
    module: &Module,
    policy: UnsupportedImports,
    error: String,
) -> Result<ModuleLinker, PrepareError> {
    const PREVIEW1: &str = "wasi_snapshot_preview1";
    let missing: Vec<String> = module
        .imports()
        .filter(|import| import.module() != PREVIEW1)
        .map(|import| format!("{}::{}", import.module(), import.name()))
        .collect();
    if missing.is_empty() {
        return Err(PrepareError::Link(error));
    }
    match policy {
        UnsupportedImports::Refuse => Err(PrepareError::Unsupported(refusal(
            &missing,
            |_| Vec::new(),
            &format!("WASI preview 1 ({PREVIEW1})"),
        ))),
        UnsupportedImports::Trap => {
            let mut linker = linker.clone();
            linker
                .define_unknown_imports_as_traps(module)
                .map_err(|err| PrepareError::Link(crate::error::chain(&err)))?;
            Ok(linker)
        }
    }
}

fn refusal(
    missing: &[String],
    versions: impl Fn(&str) -> Vec<&'static str>,
    provided: &str,
) -> String {
    let listed: Vec<String> = missing
        .iter()
        .map(|name| {
            let others = versions(name);
            if others.is_empty() {
                format!("`{name}`")
            } else {
                format!("`{name}` (Kindling has {})", others.join(", "))
            }
        })
        .collect();
    format!(
        "it imports {} that Kindling does not provide: {}. Kindling provides {provided}. Deploy \
         with --allow-unsupported-imports (or \"allow_unsupported_imports\": true in its config) \
         to link them to stand-ins that trap when called, so that routes not calling them \
         still serve",
        if missing.len() == 1 {
            "an interface"
        } else {
            "interfaces"
        },
        listed.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_match_as_wasmtime_matches_them() {
        assert!(compatible(Some("0.2.3"), Some("0.2.12")));
        assert!(!compatible(Some("0.3.0"), Some("0.2.12")));
        assert!(compatible(Some("2.0.0"), Some("2.1.0")));
        assert!(!compatible(Some("3.0.0"), Some("2.0.0")));
        assert!(compatible(Some("0.2.0-draft2"), Some("0.2.0-draft2")));
        assert!(!compatible(Some("0.2.0-draft"), Some("0.2.0-draft2")));
        assert!(compatible(None, None));
        assert!(!compatible(None, Some("0.2.0")));
        assert!(!compatible(Some("0.0.1"), Some("0.0.2")));
        assert!(compatible(Some("0.0.2"), Some("0.0.2")));
        assert!(compatible(Some("1.0.0+build-5"), Some("1.2.0")));
        assert!(!compatible(Some("1.0"), Some("1.2.0")));
    }

    #[test]
    fn imports_only_the_concurrent_engine_links_are_told_apart() {
        let provided = Provided::new(
            vec!["spin:sqlite/sqlite@3.1.0", "fermyon:spin/sqlite@2.0.0"],
            vec!["spin:sqlite/sqlite@3.1.0"],
        );
        assert!(provided.needs_concurrency("spin:sqlite/sqlite@3.0.0"));
        assert!(provided.needs_concurrency("wasi:http/types@0.3.0-rc-2025-09-16"));
        assert!(provided.needs_concurrency("wasi:cli/environment@0.3.0"));
        assert!(!provided.needs_concurrency("fermyon:spin/sqlite@2.0.0"));
        assert!(!provided.needs_concurrency("wasi:http/types@0.2.4"));
        assert!(!provided.needs_concurrency("spin:sqlite/sqlite@4.0.0"));
        assert!(!provided.needs_concurrency("myco:wasi/thing@0.3.0"));
    }

    #[test]
    fn a_refusal_names_each_missing_import_and_the_versions_there_are() {
        let provided = Provided::new(vec!["fermyon:spin/key-value@2.0.0"], Vec::new());
        assert!(provided.provides("wasi:http/types@0.2.4"));
        assert!(provided.provides("fermyon:spin/key-value@2.0.0"));
        assert!(!provided.provides("fermyon:spin/llm@2.0.0"));
        assert!(!provided.provides("fermyon:spin/key-value@1.0.0"));
        let message = refusal(
            &[
                "fermyon:spin/llm@2.0.0".into(),
                "fermyon:spin/key-value@1.0.0".into(),
            ],
            |name| provided.versions_of(name),
            &provided.summary(),
        );
        assert!(message.contains("`fermyon:spin/llm@2.0.0`,"), "{message}");
        assert!(
            message.contains(
                "`fermyon:spin/key-value@1.0.0` (Kindling has fermyon:spin/key-value@2.0.0)"
            ),
            "{message}"
        );
        assert!(
            message.contains("wasi:http/{types,outgoing-handler}@0.2.12"),
            "{message}"
        );
        assert!(message.contains("--allow-unsupported-imports"), "{message}");
    }
}
