//! Environment variables: a function sees exactly the variables it was deployed with (`env`
//! in its configuration, `--env KEY=VALUE` at deploy), nothing of the host's.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::capability::{
    Capability, DeployFlag, FieldSchema, FlagForm, FunctionContext, InstanceBuilder,
};

/// The environment-variables capability.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvVars;

/// `{"env": {"KEY": "value"}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    /// The variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl Capability for EnvVars {
    type Section = EnvSection;
    type Config = Arc<[(String, String)]>;
    type State = ();

    fn name(&self) -> &'static str {
        "env"
    }

    fn fields(&self) -> Vec<FieldSchema> {
        vec![FieldSchema {
            name: "env",
            schema: serde_json::json!({
                "type": "object",
                "description": "Environment variables the guest sees; nothing of the host's leaks in",
                "additionalProperties": {"type": "string"}
            }),
        }]
    }

    fn configure(
        &self,
        section: &mut EnvSection,
        _function: &FunctionContext<'_>,
    ) -> Result<Self::Config, String> {
        for (name, value) in &section.env {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return Err(format!(
                    "environment variable name {name:?} must be non-empty and contain no `=` or NUL"
                ));
            }
            if value.contains('\0') {
                return Err(format!("environment variable {name:?} contains a NUL byte"));
            }
        }
        Ok(section
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn prepare(
        &self,
        config: &Self::Config,
        instance: &mut InstanceBuilder<'_>,
    ) -> Result<(), String> {
        instance.env(config.iter().cloned());
        Ok(())
    }

    fn inspect(&self, section: &EnvSection) -> Vec<(String, String)> {
        let value = if section.env.is_empty() {
            "(none)".to_string()
        } else {
            section
                .env
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        vec![("env".into(), value)]
    }

    fn deploy_flags(&self) -> Vec<DeployFlag> {
        vec![DeployFlag {
            long: "env",
            short: Some('e'),
            value_name: "KEY=VALUE",
            help: "An environment variable for the function, KEY=VALUE (repeatable)",
            field: "env",
            form: FlagForm::KeyValue,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configure(env: &[(&str, &str)]) -> Result<Arc<[(String, String)]>, String> {
        let section = EnvSection {
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let function = FunctionContext {
            name: "f",
            namespace: "default",
        };
        EnvVars.configure(&mut { section }, &function)
    }

    #[test]
    fn names_and_values_a_guest_can_see() {
        assert_eq!(configure(&[("GREETING", "hi")]).unwrap().len(), 1);
        for bad in [("A=B", "x"), ("", "x"), ("NUL\0", "x")] {
            let err = configure(&[bad]).unwrap_err();
            assert!(err.contains("must be non-empty"), "{bad:?}: {err}");
        }
        let err = configure(&[("A", "x\0y")]).unwrap_err();
        assert!(err.contains("NUL byte"), "{err}");
    }
}
