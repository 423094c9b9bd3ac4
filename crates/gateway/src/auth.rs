//! Who may use the admin API, and who may call a function.
//!
//! One middleware guards every `/v1` route: it authenticates the bearer token, authorizes the
//! route by one table (scope needed, and the namespace the route acts on: a function's, a
//! store's, or the caller's own), hands the [`Caller`] to the handler, and writes every
//! changing request (anything but GET and HEAD) to the audit log with its outcome, refused
//! ones included. Tokens, namespaces, policies and the audit log check their own rules inside
//! [`Access`]. A node without an [`Access`] is open (in-process tests, `--auth none`).
//!
//! Invocations of a function deployed with `auth = "token"` need a token with `invoke` scope
//! for its namespace (the header is then removed before the guest sees it); with an authz
//! policy active, every invocation is also put to `data.kindling.authz.allow`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::Method;
use kindling_access::{Access, AuthzInput, Caller, Denied, Scope};
use kindling_node::{DeployCandidate, DeployGate, Refusal};
use kindling_registry::{AuditRecord, InvokeAuth};

use crate::error::ApiError;
use crate::request_id::current_request_id;
use crate::router::AppState;

/// What a route needs of its caller.
enum Need {
    /// Nothing: the OpenAPI document.
    Public,
    /// A token (the handler, through [`Access`], checks the rest).
    Token,
    /// A scope on a namespace.
    Scope(Scope, Target),
}

/// The namespace a route acts on.
enum Target {
    /// The caller's own (lists are filtered to it).
    Own,
    /// A named namespace.
    Namespace(String),
    /// The namespace of a function, if it exists (a new function is the deploy's to check).
    Function(String),
}

/// The route table's authorization half, by path below `/v1`.
fn need(method: &Method, path: &str) -> Need {
    let reads = method == Method::GET || method == Method::HEAD;
    let write = if reads { Scope::Read } else { Scope::Deploy };
    // The handlers see path parameters percent-decoded: so must this table, or `%68ello`
    // would be checked as a function that does not exist and then act on `hello`.
    let segments: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(percent_decode)
        .collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    match segments.as_slice() {
        ["openapi.json"] => Need::Public,
        ["tokens", ..] | ["namespaces", ..] | ["policies", ..] | ["audit", ..] => Need::Token,
        ["functions"] | ["kv"] | ["sqlite"] => Need::Scope(Scope::Read, Target::Own),
        // Queueing an invocation is invoking the function, later.
        ["functions", name, "invocations"] if *method == Method::POST => {
            Need::Scope(Scope::Invoke, Target::Function((*name).to_string()))
        }
        // The handlers check the invocation's own namespace.
        ["invocations", ..] => Need::Scope(write, Target::Own),
        ["functions", name, ..] => Need::Scope(write, Target::Function((*name).to_string())),
        ["kv", namespace, ..] => Need::Scope(write, Target::Namespace((*namespace).to_string())),
        ["sqlite", namespace, ..] => {
            Need::Scope(Scope::Deploy, Target::Namespace((*namespace).to_string()))
        }
        _ => Need::Scope(Scope::Read, Target::Own),
    }
}

/// A path segment as a handler's `Path` extractor sees it.
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).and_then(|b| hex(*b)),
                bytes.get(i + 2).and_then(|b| hex(*b)),
            )
        {
            out.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Middleware on `/v1`: authenticate, authorize by [`need`], audit.
pub(crate) async fn admin(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(access) = state.config.access.clone() else {
        request.extensions_mut().insert(Caller::Open);
        return next.run(request).await;
    };
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let audited = !(method == Method::GET || method == Method::HEAD);
    let source = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.to_string());
    let need = need(&method, &path);
    if matches!(need, Need::Public) {
        return next.run(request).await;
    }
    let header = request.headers().get(http::header::AUTHORIZATION);
    let caller = match access.authenticate(header.map(|h| h.as_bytes())) {
        Ok(caller) => caller,
        Err(denied) => {
            let response = ApiError::from(denied).into_response();
            if audited && access.audit_unauthenticated() {
                audit(
                    &access,
                    None,
                    None,
                    &method,
                    &path,
                    response.status(),
                    source,
                )
                .await;
            }
            return response;
        }
    };
    let namespace = match &need {
        Need::Scope(_, Target::Namespace(namespace)) => Some(namespace.clone()),
        Need::Scope(_, Target::Function(name)) => state
            .node
            .lookup(name)
            .map(|entry| entry.version.config.namespace().to_string())
            .or_else(|| caller.namespace().map(str::to_string)),
        _ => caller.namespace().map(str::to_string),
    };
    if let Need::Scope(scope, target) = &need {
        let wanted = match target {
            Target::Own => caller.namespace(),
            _ => namespace.as_deref(),
        };
        // A node-wide token may act on anything; a route on no namespace in particular is
        // checked against the caller's own.
        if let Err(denied) = caller.require(*scope, wanted.or(caller.namespace())) {
            access.count_refusal(&denied);
            let response = ApiError::from(denied).into_response();
            if audited {
                audit(
                    &access,
                    Some(&caller),
                    namespace,
                    &method,
                    &path,
                    response.status(),
                    source,
                )
                .await;
            }
            return response;
        }
    }
    request.extensions_mut().insert(caller.clone());
    if !audited {
        return next.run(request).await;
    }
    // The change and its audit row run to the end on their own task: a client that hangs up
    // mid-request must not leave a change without its row.
    let function = match &need {
        Need::Scope(_, Target::Function(name)) => Some(name.clone()),
        _ => None,
    };
    let request_id = current_request_id();
    let task = tokio::spawn(crate::request_id::scoped(request_id.clone(), async move {
        let response = next.run(request).await;
        // A deploy of a new function acts in the namespace it was deployed to.
        let namespace = function
            .and_then(|name| state.node.lookup(&name))
            .map(|entry| entry.version.config.namespace().to_string())
            .or(namespace);
        let row = Row {
            caller: Some(&caller),
            namespace,
            method: &method,
            path: &path,
            status: response.status(),
            source,
        };
        row.write(&access, &request_id).await;
        response
    }));
    match task.await {
        Ok(response) => response,
        Err(err) => ApiError::internal(err, None).into_response(),
    }
}

/// One audit row's fields.
struct Row<'a> {
    caller: Option<&'a Caller>,
    namespace: Option<String>,
    method: &'a Method,
    path: &'a str,
    status: http::StatusCode,
    source: Option<String>,
}

impl Row<'_> {
    async fn write(self, access: &Access, request_id: &str) {
        let token = self.caller.and_then(Caller::token);
        let result = match self.status.as_u16() {
            200..=399 => "ok",
            401 | 403 | 429 => "denied",
            _ => "failed",
        };
        access
            .record(AuditRecord {
                seq: 0,
                at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
                token_id: token.map(|t| t.id.clone()),
                token_name: token.map(|t| t.name.clone()),
                namespace: self.namespace,
                action: format!("{} /v1{}", self.method, self.path),
                status: self.status.as_u16(),
                result: result.to_string(),
                request_id: request_id.to_string(),
                source: self.source,
            })
            .await;
    }
}

async fn audit(
    access: &Access,
    caller: Option<&Caller>,
    namespace: Option<String>,
    method: &Method,
    path: &str,
    status: http::StatusCode,
    source: Option<String>,
) {
    let row = Row {
        caller,
        namespace,
        method,
        path,
        status,
        source,
    };
    row.write(access, &current_request_id()).await;
}

/// Checks an invocation: a token for functions deployed with `auth = "token"`, and the authz
/// policy when one is active. Removes a consumed `Authorization` header.
pub(crate) fn check_invocation(
    access: &Access,
    request: &mut http::Request<axum::body::Body>,
    function: &str,
    namespace: &str,
    auth: Option<InvokeAuth>,
    source: Option<SocketAddr>,
) -> Result<(), Denied> {
    let needs_token = auth == Some(InvokeAuth::Token);
    let authz = access.policies().has_authz();
    // A Kindling token is for Kindling, never for guest code: it is removed before the guest
    // sees the request, whatever the function's access.
    let kindling_token = request
        .headers()
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|value| is_kindling_token(value.as_bytes()));
    if !needs_token && !authz {
        if kindling_token {
            request.headers_mut().remove(http::header::AUTHORIZATION);
        }
        return Ok(());
    }
    let header = request.headers().get(http::header::AUTHORIZATION);
    let caller = if needs_token {
        let caller = access.authenticate(header.map(|h| h.as_bytes()))?;
        caller
            .require(Scope::Invoke, Some(namespace))
            .inspect_err(|denied| {
                access.count_refusal(denied);
            })?;
        request.headers_mut().remove(http::header::AUTHORIZATION);
        Some(caller)
    } else {
        access
            .authenticate_optional(header.map(|h| h.as_bytes()))
            .ok()
            .flatten()
    };
    if kindling_token {
        request.headers_mut().remove(http::header::AUTHORIZATION);
    }
    if !authz {
        return Ok(());
    }
    let mut headers = serde_json::Map::new();
    for (name, value) in request.headers() {
        if name == http::header::AUTHORIZATION {
            continue;
        }
        let value = String::from_utf8_lossy(value.as_bytes());
        match headers.get_mut(name.as_str()) {
            Some(serde_json::Value::String(seen)) => {
                seen.push_str(", ");
                seen.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_string(), value.into_owned().into());
            }
        }
    }
    let source = source.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
    let input = AuthzInput {
        method: request.method().as_str(),
        path: request.uri().path_and_query().map_or("/", |p| p.as_str()),
        headers,
        source: kindling_access::AuthzSource {
            address: source.ip().to_string(),
            port: source.port(),
        },
        function,
        namespace,
        token: caller.as_ref().and_then(Caller::token).map(
            |t| serde_json::json!({"name": t.name, "namespace": t.namespace, "scopes": t.scopes}),
        ),
    };
    match access.policies().authorize(&input) {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::info!(function, request_id = %current_request_id(), "denied by the authz policy");
            Err(Denied {
                status: 403,
                code: "denied_by_policy",
                message: format!(
                    "the node's authorization policy (data.kindling.authz.allow) does not allow \
                     {} {} on function {function:?}",
                    input.method, input.path
                ),
            })
        }
        Err(err) => {
            tracing::error!(function, request_id = %current_request_id(), error = %err,
                "the authz policy failed to evaluate; denying");
            Err(Denied {
                status: 403,
                code: "policy_error",
                message: "the node's authorization policy failed to evaluate, so the request is \
                          refused; the node's log has the error under this request id"
                    .into(),
            })
        }
    }
}

/// Whether an `Authorization` value carries a Kindling token, however it is spelled.
fn is_kindling_token(value: &[u8]) -> bool {
    let text = String::from_utf8_lossy(value);
    let text = text.trim();
    let (scheme, rest) = text.split_at(text.find(' ').unwrap_or(text.len()));
    scheme.eq_ignore_ascii_case("bearer")
        && rest.trim_start().starts_with(kindling_access::TOKEN_PREFIX)
}

/// Quotas and the admission policy, for one caller's deploy.
pub(crate) struct AccessGate {
    pub(crate) access: Arc<Access>,
    pub(crate) caller: Caller,
}

impl DeployGate for AccessGate {
    fn admit(&self, candidate: &DeployCandidate<'_>) -> Result<(), Refusal> {
        let namespace = candidate.namespace;
        // Checked again at the commit: the token may have been revoked during the upload,
        // and another deploy may have created the function in another namespace meanwhile.
        let refuse = |denied: Denied| Refusal {
            status: denied.status,
            code: denied.code,
            message: denied.message,
        };
        self.access.still_valid(&self.caller).map_err(refuse)?;
        if let Some(current) = candidate.current_namespace.as_deref() {
            self.caller
                .require(Scope::Deploy, Some(current))
                .map_err(refuse)?;
        }
        let quotas = self.access.quotas(namespace);
        let over = |message: String| Refusal {
            status: 403,
            code: "quota_exceeded",
            message,
        };
        if let Some(limit) = quotas.functions
            && !candidate.exists
            && candidate.namespace_functions + 1 > limit
        {
            return Err(over(format!(
                "namespace {namespace:?} has {} functions, its quota (functions = {limit}); \
                 delete one, or raise the quota with `kindling ns set {namespace} --functions N`",
                candidate.namespace_functions
            )));
        }
        if let Some(limit) = quotas.memory_bytes {
            let total = candidate.namespace_memory_bytes + candidate.memory_bytes;
            if total > limit {
                return Err(over(format!(
                    "namespace {namespace:?} would reserve {total} bytes of memory with this \
                     function ({} bytes), over its quota (memory = {limit} bytes); lower the \
                     function's memory limit, or raise the quota with `kindling ns set \
                     {namespace} --memory SIZE`",
                    candidate.memory_bytes
                )));
            }
        }
        let token = self.caller.token();
        let input = serde_json::json!({
            "operation": "deploy",
            "function": {
                "name": candidate.name,
                "namespace": namespace,
                "config": candidate.config,
                "kind": candidate.kind,
                "size": candidate.size_bytes,
                "sha256": candidate.sha256,
                "imports": candidate.imports,
                "exports": candidate.exports,
                "exists": candidate.exists,
            },
            "token": token.map(|t| serde_json::json!({
                "name": t.name, "namespace": t.namespace, "scopes": t.scopes,
            })),
        });
        match self.access.policies().admission(&input) {
            Ok(messages) if messages.is_empty() => Ok(()),
            Ok(messages) => {
                tracing::info!(function = candidate.name, namespace,
                    request_id = %current_request_id(), messages = ?messages,
                    "deploy denied by the admission policy");
                Err(Refusal {
                    status: 403,
                    code: "denied_by_policy",
                    message: format!(
                        "deploy of {:?} denied by policy: {}",
                        candidate.name,
                        messages.join("; ")
                    ),
                })
            }
            Err(err) => {
                tracing::error!(function = candidate.name, error = %err,
                    "the admission policy failed to evaluate; denying");
                Err(Refusal {
                    status: 403,
                    code: "policy_error",
                    message: format!(
                        "the admission policy failed to evaluate, so the deploy is refused: {err}"
                    ),
                })
            }
        }
    }

    fn versions_kept(&self, namespace: &str) -> Option<u32> {
        self.access.quotas(namespace).versions_kept
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_what_they_touch() {
        let scope = |method: Method, path: &str| match need(&method, path) {
            Need::Scope(scope, Target::Own) => format!("{} own", scope.as_str()),
            Need::Scope(scope, Target::Namespace(ns)) => format!("{} ns {ns}", scope.as_str()),
            Need::Scope(scope, Target::Function(f)) => format!("{} fn {f}", scope.as_str()),
            Need::Token => "token".into(),
            Need::Public => "public".into(),
        };
        assert_eq!(scope(Method::GET, "/openapi.json"), "public");
        assert_eq!(scope(Method::GET, "/functions"), "read own");
        assert_eq!(
            scope(Method::POST, "/functions/hello/versions"),
            "deploy fn hello"
        );
        assert_eq!(scope(Method::DELETE, "/functions/hello"), "deploy fn hello");
        assert_eq!(scope(Method::GET, "/functions/hello/logs"), "read fn hello");
        assert_eq!(scope(Method::PUT, "/kv/team/default/k"), "deploy ns team");
        assert_eq!(
            scope(Method::POST, "/sqlite/team/default"),
            "deploy ns team"
        );
        assert_eq!(scope(Method::POST, "/tokens"), "token");
        assert_eq!(scope(Method::GET, "/nothing-here"), "read own");
        assert_eq!(
            scope(Method::DELETE, "/functions/%68ello"),
            "deploy fn hello"
        );
        assert_eq!(scope(Method::GET, "/kv/te%61m/default"), "read ns team");
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
    }

    #[test]
    fn kindling_tokens_are_found_however_spelled() {
        assert!(is_kindling_token(b"Bearer kdl_x"));
        assert!(is_kindling_token(b"bearer   kdl_x"));
        assert!(is_kindling_token(b" BEARER kdl_x "));
        assert!(!is_kindling_token(b"Bearer other"));
        assert!(!is_kindling_token(b"Basic a2RsXw=="));
    }
}
