//! The variables capability: names and values checked at deploy, secrets sealed there, and
//! every value resolved once per version for the instances to read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use kindling_host::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder, Linkers,
};
use serde::{Deserialize, Serialize};

use crate::seal::SealKey;

/// The interfaces `link` adds (the world in `wit/world.wit`).
pub(crate) const INTERFACES: &[&str] = &[
    "fermyon:spin/variables@2.0.0",
    "spin:variables/variables@3.0.0",
    "wasi:config/store@0.2.0-draft-2024-09-27",
    "wasi:config/store@0.2.0-rc.1",
    "wasi:config/runtime@0.2.0-draft",
    "wasi:config/store@0.2.0-draft",
];

/// The variables capability of a node.
#[derive(Clone)]
pub struct Variables {
    key_path: PathBuf,
    key: Arc<OnceLock<Result<Arc<SealKey>, String>>>,
}

impl std::fmt::Debug for Variables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variables")
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl Variables {
    /// The capability, sealing secrets with the key in `<data_dir>/secret.key` (made on first
    /// use).
    pub fn new(data_dir: PathBuf) -> Self {
        Self {
            key_path: data_dir.join("secret.key"),
            key: Arc::default(),
        }
    }

    /// A key for `purpose` derived from the node's secret key (made on first use): the nodes
    /// of a cluster, which share `secret.key`, derive the same one. Blocking.
    pub fn derived_key(&self, purpose: &str) -> Result<[u8; 32], String> {
        Ok(self.key()?.derive(purpose))
    }

    fn key(&self) -> Result<Arc<SealKey>, String> {
        self.key
            .get_or_init(|| SealKey::load_or_create(&self.key_path).map(Arc::new))
            .clone()
    }
}

/// A secret as deployed (`"value"`) or as stored (`{"sealed": "..."}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Secret {
    /// Sealed with the node's key.
    Sealed {
        /// The sealed text.
        sealed: String,
    },
    /// As the deployer wrote it; sealed at deploy, never stored this way.
    Plain(String),
}

/// `{"variables": {...}, "secrets": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VariablesSection {
    /// Plain variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, String>,
    /// Secrets.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, Secret>,
}

/// The values an instance reads.
pub struct VarsState {
    pub(crate) values: Arc<BTreeMap<String, String>>,
}

/// Spin's rule for variable names: a lowercase letter, then lowercase letters, digits and `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    name.len() <= 256
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Capability for Variables {
    type Section = VariablesSection;
    type Config = Arc<BTreeMap<String, String>>;
    type State = VarsState;

    fn name(&self) -> &'static str {
        "variables"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        let name = serde_json::json!({"type": "string", "pattern": "^[a-z][a-z0-9_]*$"});
        vec![
            FieldSchema {
                name: "variables",
                schema: serde_json::json!({
                    "type": "object",
                    "description": "Variables the guest reads through Spin's variables or wasi:config",
                    "propertyNames": name,
                    "additionalProperties": {"type": "string"}
                }),
            },
            FieldSchema {
                name: "secrets",
                schema: serde_json::json!({
                    "type": "object",
                    "description": "Secrets, read like variables; sent as text, stored and shown only sealed with the node's key",
                    "propertyNames": name,
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "string"},
                            {"type": "object", "required": ["sealed"], "additionalProperties": false,
                             "properties": {"sealed": {"type": "string"}}}
                        ]
                    }
                }),
            },
        ]
    }

    fn interfaces(&self) -> &'static [&'static str] {
        INTERFACES
    }

    fn concurrent_interfaces(&self) -> &'static [&'static str] {
        &["spin:variables/variables@3.0.0"]
    }

    fn link(&self, linkers: &mut Linkers<'_>) -> Result<(), wasmtime::Error> {
        let concurrent = linkers.concurrent();
        crate::host::add_to_linker(linkers.component, concurrent)
    }

    fn configure(
        &self,
        section: &mut VariablesSection,
        _function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        let mut values = BTreeMap::new();
        for (name, value) in &section.variables {
            if !valid_name(name) {
                return Err(invalid(name, "variables"));
            }
            values.insert(name.clone(), value.clone());
        }
        let key = if section.secrets.is_empty() {
            None
        } else {
            Some(self.key()?)
        };
        for (name, secret) in section.secrets.iter_mut() {
            if !valid_name(name) {
                return Err(invalid(name, "secrets"));
            }
            let key = key.as_ref().expect("loaded when there are secrets");
            let value = match secret {
                Secret::Plain(value) => {
                    let value = std::mem::take(value);
                    *secret = Secret::Sealed {
                        sealed: key.seal(name, &value),
                    };
                    value
                }
                Secret::Sealed { sealed } => key.open(name, sealed)?,
            };
            if values.insert(name.clone(), value).is_some() {
                return Err(format!(
                    "{name:?} is both a variable and a secret; keep one of them"
                ));
            }
        }
        Ok(Arc::new(values))
    }

    fn prepare(
        &self,
        config: &Self::Config,
        _: &mut InstanceBuilder<'_>,
    ) -> Result<VarsState, String> {
        Ok(VarsState {
            values: config.clone(),
        })
    }

    fn inspect(&self, section: &VariablesSection) -> Vec<(String, String)> {
        let mut lines = Vec::new();
        if !section.variables.is_empty() {
            let text = section
                .variables
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            lines.push(("variables".into(), text));
        }
        if !section.secrets.is_empty() {
            let names = section
                .secrets
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
            lines.push(("secrets".into(), format!("{names} (sealed)")));
        }
        lines
    }

    fn back_up(&self, _dest: &std::path::Path) -> Result<Vec<String>, String> {
        // The key stays out of backups: with it, a backup would hold every secret in the clear.
        Ok(if self.key_path.exists() {
            vec![format!(
                "secrets are sealed with {}, which backups leave out: keep a copy of it apart                  from them, and put it back in the data directory you restore into",
                self.key_path.display()
            )]
        } else {
            Vec::new()
        })
    }

    fn restore(&self, _src: &std::path::Path) -> Result<Vec<String>, String> {
        Ok(if self.key_path.exists() {
            Vec::new()
        } else {
            vec![format!(
                "no secret key at {}: if the backed-up node's functions have secrets, copy its                  secret.key there before you start this node (or deploy the secrets again)",
                self.key_path.display()
            )]
        })
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![
            DeployFlag {
                long: "var",
                short: None,
                value_name: "NAME=VALUE",
                help: "A variable the function reads (Spin variables, wasi:config); VALUE @FILE reads a file (repeatable)",
                field: "variables",
                form: FlagForm::KeyValueOrFile,
            },
            DeployFlag {
                long: "secret",
                short: None,
                value_name: "NAME=VALUE",
                help: "A secret, read like a variable but stored sealed and never shown; VALUE @FILE reads a file (repeatable)",
                field: "secrets",
                form: FlagForm::KeyValueOrFile,
            },
        ]
    }
}

fn invalid(name: &str, field: &str) -> String {
    format!(
        "{field}: name {name:?} must start with a lowercase letter and hold only lowercase \
         letters, digits and `_` (Spin's rule for variable names)"
    )
}

#[cfg(test)]
mod tests {
    /// What the capability says it links is what its world imports.
    #[test]
    fn the_interface_list_is_the_worlds_imports() {
        let mut listed = super::INTERFACES.to_vec();
        listed.sort_unstable();
        assert_eq!(
            kindling_host::world_imports(include_str!("../wit/world.wit")),
            listed
        );
    }

    use super::*;

    fn configure(
        variables: &Variables,
        section: &mut VariablesSection,
    ) -> Result<Arc<BTreeMap<String, String>>, String> {
        let function = FunctionContext {
            name: "f",
            namespace: "default",
        };
        variables.configure(section, &function)
    }

    #[test]
    fn secrets_are_sealed_in_place_and_opened_for_the_guest() {
        let dir = tempfile::tempdir().unwrap();
        let variables = Variables::new(dir.path().to_path_buf());
        let mut section = VariablesSection::default();
        section.variables.insert("region".into(), "eu".into());
        section
            .secrets
            .insert("api_key".into(), Secret::Plain("s3cret".into()));
        let values = configure(&variables, &mut section).unwrap();
        assert_eq!(values["api_key"], "s3cret");
        assert_eq!(values["region"], "eu");
        let stored = serde_json::to_string(&section).unwrap();
        assert!(!stored.contains("s3cret"), "{stored}");
        assert!(stored.contains("\"sealed\""), "{stored}");
        // A stored section opens again, and seals to the same text.
        let mut again: VariablesSection = serde_json::from_str(&stored).unwrap();
        assert_eq!(
            configure(&variables, &mut again).unwrap()["api_key"],
            "s3cret"
        );
        assert_eq!(serde_json::to_string(&again).unwrap(), stored);
        let lines = variables.inspect(&again);
        assert_eq!(
            lines[1],
            ("secrets".to_string(), "api_key (sealed)".to_string())
        );

        let mut bad = VariablesSection::default();
        bad.variables.insert("Bad-Name".into(), "x".into());
        assert!(
            configure(&variables, &mut bad)
                .unwrap_err()
                .contains("lowercase letter")
        );
        let mut both = VariablesSection::default();
        both.variables.insert("x".into(), "1".into());
        both.secrets.insert("x".into(), Secret::Plain("2".into()));
        assert!(
            configure(&variables, &mut both)
                .unwrap_err()
                .contains("both")
        );
    }
}
