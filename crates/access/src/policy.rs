//! Rego policy in process, with regorus: deploy-time admission, Gatekeeper style
//! (`data.kindling.admission.deny`: a set of messages, any one refuses the deploy), and
//! per-request authorization, Envoy ext_authz style (`data.kindling.authz.allow`: true lets
//! the request through; undefined or false refuses it).
//!
//! The active policies are compiled together once per change; evaluations take a prepared
//! engine from a small pool (an engine evaluates one input at a time) and put it back. Any
//! evaluation error, and an evaluation that runs past its time limit, fails closed.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts, Registry};
use regorus::Engine;
use regorus::utils::limits::ExecutionTimerConfig;
use serde::Serialize;

const ADMISSION_RULE: &str = "data.kindling.admission.deny";
const AUTHZ_RULE: &str = "data.kindling.authz.allow";
/// How long one evaluation may run before it counts as failed (and so denies).
const EVAL_LIMIT: Duration = Duration::from_millis(100);

/// A policy that does not compile, or does not belong under `kindling`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("policy {name:?}: {message}")]
pub struct PolicyError {
    /// The policy.
    pub name: String,
    /// What is wrong, with the line and column regorus reports.
    pub message: String,
}

/// The input of a per-request authorization.
#[derive(Debug, Serialize)]
pub struct AuthzInput<'a> {
    /// The request method.
    pub method: &'a str,
    /// The request path, query included.
    pub path: &'a str,
    /// Request headers, names lowercase (a repeated header's values joined with `, `);
    /// `authorization` is left out.
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// Where the request came from.
    pub source: AuthzSource,
    /// The function asked for.
    pub function: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// The token presented, if any and valid: name, namespace and scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<serde_json::Value>,
}

/// The client's address.
#[derive(Debug, Serialize)]
pub struct AuthzSource {
    /// The IP address.
    pub address: String,
    /// The port.
    pub port: u16,
}

/// The active policies, compiled.
pub struct Policies {
    current: RwLock<Arc<Compiled>>,
    decisions: IntCounterVec,
}

struct Compiled {
    template: Option<Engine>,
    admission: bool,
    authz: bool,
    pool: Mutex<Vec<Engine>>,
}

impl Compiled {
    fn empty() -> Self {
        Self {
            template: None,
            admission: false,
            authz: false,
            pool: Mutex::default(),
        }
    }

    /// Runs `work` on a prepared engine from the pool.
    fn with_engine<T>(&self, work: impl FnOnce(&mut Engine) -> T) -> Option<T> {
        let template = self.template.as_ref()?;
        let mut engine = self
            .pool
            .lock()
            .expect("policy pool")
            .pop()
            .unwrap_or_else(|| template.clone());
        let value = work(&mut engine);
        let mut pool = self.pool.lock().expect("policy pool");
        if pool.len() < 64 {
            pool.push(engine);
        }
        Some(value)
    }
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.read().expect("policies lock");
        f.debug_struct("Policies")
            .field("admission", &current.admission)
            .field("authz", &current.authz)
            .finish()
    }
}

impl Policies {
    /// No policies; decisions are counted in `registry`.
    pub fn new(registry: &Registry) -> Self {
        let decisions = IntCounterVec::new(
            Opts::new(
                "kindling_policy_decisions_total",
                "Rego policy decisions, by kind (admission, authz) and decision (allow, deny, \
                 error)",
            ),
            &["kind", "decision"],
        )
        .expect("a valid metric");
        let _ = registry.register(Box::new(decisions.clone()));
        Self {
            current: RwLock::new(Arc::new(Compiled::empty())),
            decisions,
        }
    }

    /// Compiles `policies` (name, Rego source) together and, when they all compile, makes
    /// them the active set.
    pub fn install(&self, policies: &[(String, String)]) -> Result<(), PolicyError> {
        let compiled = compile(policies)?;
        *self.current.write().expect("policies lock") = Arc::new(compiled);
        Ok(())
    }

    /// Checks that `policies` compile together, changing nothing.
    pub fn check(policies: &[(String, String)]) -> Result<(), PolicyError> {
        compile(policies).map(drop)
    }

    /// Whether any active policy decides per-request authorization.
    pub fn has_authz(&self) -> bool {
        self.current.read().expect("policies lock").authz
    }

    fn active(&self) -> Arc<Compiled> {
        self.current.read().expect("policies lock").clone()
    }

    /// The admission policy's messages for a deploy: empty when it is admitted. An error
    /// means the evaluation failed, and the deploy must be refused.
    pub fn admission(&self, input: &serde_json::Value) -> Result<Vec<String>, String> {
        let compiled = self.active();
        if !compiled.admission {
            return Ok(Vec::new());
        }
        let outcome = compiled
            .with_engine(|engine| evaluate(engine, input, ADMISSION_RULE))
            .unwrap_or(Ok(regorus::Value::Undefined))
            .and_then(|value| deny_messages(&value));
        let decision = match &outcome {
            Ok(messages) if messages.is_empty() => "allow",
            Ok(_) => "deny",
            Err(_) => "error",
        };
        self.decisions
            .with_label_values(&["admission", decision])
            .inc();
        outcome
    }

    /// Whether the authorization policy lets this request through. An error means the
    /// evaluation failed, and the request must be refused.
    pub fn authorize(&self, input: &AuthzInput<'_>) -> Result<bool, String> {
        let compiled = self.active();
        if !compiled.authz {
            return Ok(true);
        }
        let outcome = serde_json::to_value(input)
            .map_err(|err| err.to_string())
            .and_then(|input| {
                compiled
                    .with_engine(|engine| evaluate(engine, &input, AUTHZ_RULE))
                    .unwrap_or(Ok(regorus::Value::Undefined))
            })
            .map(|value| value == regorus::Value::from(true));
        let decision = match outcome {
            Ok(true) => "allow",
            Ok(false) => "deny",
            Err(_) => "error",
        };
        self.decisions.with_label_values(&["authz", decision]).inc();
        outcome
    }
}

fn compile(policies: &[(String, String)]) -> Result<Compiled, PolicyError> {
    if policies.is_empty() {
        return Ok(Compiled::empty());
    }
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    });
    let (mut admission, mut authz) = (false, false);
    for (name, rego) in policies {
        let fail = |message: String| PolicyError {
            name: name.clone(),
            message,
        };
        let package = engine
            .add_policy(format!("{name}.rego"), rego.clone())
            .map_err(|err| fail(format!("{err}")))?;
        let Some(under) = package.strip_prefix("data.kindling") else {
            return Err(fail(format!(
                "its package is {:?}; Kindling evaluates data.kindling.admission.deny and \
                 data.kindling.authz.allow, so policies go in `package kindling.admission`, \
                 `package kindling.authz` or a helper package under `kindling.`",
                package.trim_start_matches("data.")
            )));
        };
        admission |= under == ".admission" || under.starts_with(".admission.");
        authz |= under == ".authz" || under.starts_with(".authz.");
    }
    // Evaluate once on an empty input so that errors the parser cannot see (unknown
    // functions, conflicting rules) show now, not at the first deploy or request.
    let mut probe = engine.clone();
    probe.set_input(regorus::Value::new_object());
    for (present, rule) in [(admission, ADMISSION_RULE), (authz, AUTHZ_RULE)] {
        if present && let Err(err) = probe.eval_rule(rule.to_string()) {
            return Err(PolicyError {
                name: policies
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!("{rule} does not evaluate: {err}"),
            });
        }
    }
    Ok(Compiled {
        template: Some(engine),
        admission,
        authz,
        pool: Mutex::default(),
    })
}

fn evaluate(
    engine: &mut Engine,
    input: &serde_json::Value,
    rule: &str,
) -> Result<regorus::Value, String> {
    engine.set_input(regorus::Value::from(input.clone()));
    engine
        .eval_rule(rule.to_string())
        .map_err(|err| format!("{rule}: {err}"))
}

/// The messages of a `deny` set: strings, or objects with a `msg` (Gatekeeper's shape).
fn deny_messages(value: &regorus::Value) -> Result<Vec<String>, String> {
    if *value == regorus::Value::Undefined {
        return Ok(Vec::new());
    }
    let json: serde_json::Value = value
        .to_json_str()
        .map_err(|err| err.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|err| err.to_string()))?;
    let items = match json {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Bool(false) | serde_json::Value::Null => return Ok(Vec::new()),
        other => {
            return Err(format!(
                "{ADMISSION_RULE} must be a set of messages, found {other}"
            ));
        }
    };
    Ok(items
        .into_iter()
        .map(|item| match item {
            serde_json::Value::String(text) => text,
            serde_json::Value::Object(map) => match map.get("msg") {
                Some(serde_json::Value::String(msg)) => msg.clone(),
                _ => serde_json::Value::Object(map).to_string(),
            },
            other => other.to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policies(sources: &[(&str, &str)]) -> Policies {
        let policies = Policies::new(&Registry::new());
        let set: Vec<(String, String)> = sources
            .iter()
            .map(|(n, r)| (n.to_string(), r.to_string()))
            .collect();
        policies.install(&set).unwrap();
        policies
    }

    #[test]
    fn admission_collects_deny_messages() {
        let p = policies(&[(
            "size",
            r#"package kindling.admission
deny contains msg if {
    input.function.size > 10
    msg := sprintf("function %s is %d bytes, over 10", [input.function.name, input.function.size])
}"#,
        )]);
        let small = serde_json::json!({"function": {"name": "a", "size": 5}});
        assert_eq!(p.admission(&small), Ok(vec![]));
        let big = serde_json::json!({"function": {"name": "a", "size": 50}});
        assert_eq!(
            p.admission(&big),
            Ok(vec!["function a is 50 bytes, over 10".to_string()])
        );
    }

    #[test]
    fn authz_defaults_to_deny_once_a_policy_exists() {
        let p = Policies::new(&Registry::new());
        let input = AuthzInput {
            method: "GET",
            path: "/hello/",
            headers: serde_json::Map::new(),
            source: AuthzSource {
                address: "127.0.0.1".into(),
                port: 1,
            },
            function: "hello",
            namespace: "default",
            token: None,
        };
        assert_eq!(p.authorize(&input), Ok(true), "no policy: allowed");
        p.install(&[(
            "paths".into(),
            "package kindling.authz\nallow if input.method == \"POST\"\n".into(),
        )])
        .unwrap();
        assert_eq!(p.authorize(&input), Ok(false));
        assert!(p.has_authz());
    }

    #[test]
    fn a_broken_policy_names_its_line_and_column() {
        let err = Policies::check(&[(
            "broken".into(),
            "package kindling.admission\n\ndeny contains msg if {\n  msg := \n}\n".into(),
        )])
        .unwrap_err();
        assert_eq!(err.name, "broken");
        assert!(
            err.message.contains(":4:") || err.message.contains(":5:"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_outside_kindling_is_refused() {
        let err =
            Policies::check(&[("x".into(), "package other\nallow := true\n".into())]).unwrap_err();
        assert!(err.message.contains("package kindling.admission"), "{err}");
    }
}
