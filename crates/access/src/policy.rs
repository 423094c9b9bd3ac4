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

/// The active policies, compiled: one engine per decision, each holding only the modules that
/// decision reads (its own package and the helper packages), so that a request's
/// authorization never pays for the admission policies.
#[derive(Default)]
struct Compiled {
    admission: Option<Pool>,
    authz: Option<Pool>,
}

/// A prepared engine and idle copies of it: an engine evaluates one input at a time.
struct Pool {
    template: Engine,
    idle: Mutex<Vec<Engine>>,
}

impl Pool {
    fn new(template: Engine) -> Self {
        Self {
            template,
            idle: Mutex::default(),
        }
    }

    fn evaluate(&self, input: regorus::Value, rule: &str) -> Result<regorus::Value, String> {
        let mut engine = self
            .idle
            .lock()
            .expect("policy pool")
            .pop()
            .unwrap_or_else(|| self.template.clone());
        engine.set_input(input);
        let value = engine
            .eval_rule(rule.to_string())
            .map_err(|err| format!("{rule}: {err}"));
        let mut idle = self.idle.lock().expect("policy pool");
        if idle.len() < 64 {
            idle.push(engine);
        }
        value
    }
}

impl std::fmt::Debug for Policies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let current = self.current.read().expect("policies lock");
        f.debug_struct("Policies")
            .field("admission", &current.admission.is_some())
            .field("authz", &current.authz.is_some())
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
            current: RwLock::new(Arc::new(Compiled::default())),
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
        self.current.read().expect("policies lock").authz.is_some()
    }

    fn active(&self) -> Arc<Compiled> {
        self.current.read().expect("policies lock").clone()
    }

    /// The admission policy's messages for a deploy: empty when it is admitted. An error
    /// means the evaluation failed, and the deploy must be refused.
    pub fn admission(&self, input: &serde_json::Value) -> Result<Vec<String>, String> {
        let compiled = self.active();
        let Some(pool) = &compiled.admission else {
            return Ok(Vec::new());
        };
        let outcome = pool
            .evaluate(regorus::Value::from(input.clone()), ADMISSION_RULE)
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
        let Some(pool) = &compiled.authz else {
            return Ok(true);
        };
        let outcome = pool
            .evaluate(authz_value(input), AUTHZ_RULE)
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

/// The authorization input as a Rego value, built directly (no detour through JSON: this runs
/// on every request).
fn authz_value(input: &AuthzInput<'_>) -> regorus::Value {
    use regorus::Value;
    fn object(fields: Vec<(&str, Value)>) -> Value {
        let mut value = Value::new_object();
        if let Ok(map) = value.as_object_mut() {
            for (key, field) in fields {
                map.insert(Value::from(key), field);
            }
        }
        value
    }
    let mut headers = Value::new_object();
    if let Ok(map) = headers.as_object_mut() {
        for (name, value) in &input.headers {
            let text = value.as_str().unwrap_or_default();
            map.insert(Value::from(name.as_str()), Value::from(text));
        }
    }
    let mut fields = vec![
        ("method", Value::from(input.method)),
        ("path", Value::from(input.path)),
        ("headers", headers),
        (
            "source",
            object(vec![
                ("address", Value::from(input.source.address.as_str())),
                ("port", Value::from(u64::from(input.source.port))),
            ]),
        ),
        ("function", Value::from(input.function)),
        ("namespace", Value::from(input.namespace)),
    ];
    if let Some(token) = &input.token {
        fields.push(("token", Value::from(token.clone())));
    }
    object(fields)
}

/// Which decision a policy's package feeds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Part {
    Admission,
    Authz,
    Helper,
}

fn compile(policies: &[(String, String)]) -> Result<Compiled, PolicyError> {
    if policies.is_empty() {
        return Ok(Compiled::default());
    }
    // First each policy alone and all of them together (a package shared across files, a
    // conflict between them), then one engine per decision.
    let mut parts = Vec::new();
    for (name, rego) in policies {
        let fail = |message: String| PolicyError {
            name: name.clone(),
            message,
        };
        check_nesting(rego).map_err(fail)?;
        let package = engine()
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
        let part = if under == ".admission" || under.starts_with(".admission.") {
            Part::Admission
        } else if under == ".authz" || under.starts_with(".authz.") {
            Part::Authz
        } else {
            Part::Helper
        };
        parts.push(part);
    }
    let build = |wanted: Part, rule: &str| -> Result<Option<Pool>, PolicyError> {
        if !parts.contains(&wanted) {
            return Ok(None);
        }
        let mut engine = engine();
        for ((name, rego), part) in policies.iter().zip(&parts) {
            if *part == wanted || *part == Part::Helper {
                engine
                    .add_policy(format!("{name}.rego"), rego.clone())
                    .map_err(|err| PolicyError {
                        name: name.clone(),
                        message: format!("{err}"),
                    })?;
            }
        }
        // Evaluate once on an empty input so that errors the parser cannot see (unknown
        // functions, conflicting rules) show now, not at the first deploy or request.
        let mut probe = engine.clone();
        probe.set_input(regorus::Value::new_object());
        if let Err(err) = probe.eval_rule(rule.to_string()) {
            let names: Vec<&str> = policies
                .iter()
                .zip(&parts)
                .filter(|(_, part)| **part == wanted)
                .map(|((name, _), _)| name.as_str())
                .collect();
            return Err(PolicyError {
                name: names.join(", "),
                message: format!("{rule} does not evaluate: {err}"),
            });
        }
        Ok(Some(Pool::new(engine)))
    };
    Ok(Compiled {
        admission: build(Part::Admission, ADMISSION_RULE)?,
        authz: build(Part::Authz, AUTHZ_RULE)?,
    })
}

/// Brackets nested deeper than this are refused before parsing: regorus's parser takes time
/// exponential in the depth of unclosed brackets (found by fuzzing: 23 unclosed `{` took over
/// 10 s). Policies people write nest a few levels.
const MAX_NESTING: usize = 12;

/// Refuses sources whose brackets nest deeper than [`MAX_NESTING`], outside strings and
/// comments.
fn check_nesting(rego: &str) -> Result<(), String> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut chars = rego.chars();
    while let Some(c) = chars.next() {
        match c {
            '\n' => line += 1,
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                        break;
                    }
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' | '\n' => break,
                        _ => {}
                    }
                }
            }
            '`' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        line += 1;
                    }
                    if c == '`' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(format!(
                        "brackets nest more than {MAX_NESTING} deep at line {line}; split the \
                         expression into rules"
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn engine() -> Engine {
    let mut engine = Engine::new();
    engine.set_execution_timer_config(ExecutionTimerConfig {
        limit: EVAL_LIMIT,
        check_interval: NonZeroU32::new(64).expect("non-zero"),
    });
    engine
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
    fn deeply_nested_brackets_are_refused_before_the_parser_sees_them() {
        let deep = format!("package kindling.authz\nallow if {}\n", "[".repeat(40));
        let err = Policies::check(&[("deep".into(), deep)]).unwrap_err();
        assert!(err.message.contains("nest more than"), "{err}");
        let quoted = format!(
            "package kindling.authz\nallow if input.x == \"{}\"\n",
            "[".repeat(40)
        );
        assert!(Policies::check(&[("quoted".into(), quoted)]).is_ok());
    }

    #[test]
    fn a_policy_outside_kindling_is_refused() {
        let err =
            Policies::check(&[("x".into(), "package other\nallow := true\n".into())]).unwrap_err();
        assert!(err.message.contains("package kindling.admission"), "{err}");
    }
}
