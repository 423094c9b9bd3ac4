//! The request path: find the function named by the first path segment (or by the host
//! name), hand it the request with its own path, and stream its response back.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri};
use kindling_host::{CALL_BUDGET_HEADER, CALL_DEPTH_HEADER, CallChain};
use kindling_node::CallContext;
use kindling_telemetry::TraceContext;

use crate::error::ApiError;
use crate::request_id::request_id;
use crate::router::AppState;

/// Fallback handler: `/{function}/{rest...}` invokes `function` with the path `/{rest...}`.
pub(crate) async fn by_path(State(state): State<AppState>, request: Request) -> Response {
    let path = request.uri().path();
    let Some((name, rest)) = split_function(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "no_function_in_path",
            "call a function at /{name}/...; GET /v1/functions lists them",
        )
        .into_response();
    };
    let (name, script_name) = (name.to_string(), format!("/{name}"));
    let path_and_query = match request.uri().query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_string(),
    };
    invoke(&state, name, script_name, path_and_query, request).await
}

/// Middleware, installed when a domain is configured: `Host: {function}.{domain}` invokes
/// `function` with the whole path, before any other route is considered.
pub(crate) async fn by_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let name = state
        .config
        .domain
        .as_deref()
        .and_then(|domain| host_function(request.headers(), domain));
    match name {
        Some(name) => {
            let path_and_query = request
                .uri()
                .path_and_query()
                .map(|p| p.as_str().to_string())
                .unwrap_or_else(|| "/".to_string());
            invoke(&state, name, String::new(), path_and_query, request).await
        }
        None => next.run(request).await,
    }
}

/// Translates the HTTP request into an invocation: the function's own path, the caller's
/// address, trace context and call chain; everything else happens in [`kindling_node::Node::invoke`].
async fn invoke(
    state: &AppState,
    name: String,
    script_name: String,
    path_and_query: String,
    mut request: Request,
) -> Response {
    let request_id = request_id(request.headers());
    match Uri::builder().path_and_query(path_and_query).build() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(err) => {
            return ApiError::new(StatusCode::BAD_REQUEST, "bad_uri", err.to_string())
                .with_request_id(Some(&request_id))
                .into_response();
        }
    }
    if !request.headers().contains_key(http::header::HOST)
        && let Some(local) = state.config.local_addr
        && let Ok(host) = HeaderValue::from_str(&local.to_string())
    {
        request.headers_mut().insert(http::header::HOST, host);
    }
    let remote_addr = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0);
    if let Some(access) = &state.config.access
        && let Some(entry) = state.node.lookup(&name)
    {
        let config = &entry.version.config;
        if let Err(denied) = crate::auth::check_invocation(
            access,
            &mut request,
            &name,
            config.namespace(),
            config.auth,
            remote_addr,
        ) {
            return ApiError::from(denied)
                .with_request_id(Some(&request_id))
                .into_response();
        }
    }
    // Kindling's own headers (invocation id, schedule, trigger) are the node's to set.
    strip_own_headers(request.headers_mut());
    if state.config.events.is_some() && crate::events_api::wants_async(request.headers()) {
        return crate::events_api::enqueue(state, &name, request, &request_id).await;
    }
    let headers = request.headers();
    let trace_parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let cx = CallContext {
        request_id: Some(request_id.clone()),
        script_name,
        remote_addr,
        local_addr: state.config.local_addr,
        trace_parent,
        chain: resumed_chain(headers, state.node.config().max_calls_per_request),
        may_spill: true,
    };
    match state.node.invoke(&name, request, cx).await {
        Ok(answer) => answer.response.map(Body::new),
        Err(failure) => ApiError::from_failure(&failure, &request_id).into_response(),
    }
}

/// Removes `kindling-*` headers a client sent, but for the call chain's.
fn strip_own_headers(headers: &mut http::HeaderMap) {
    let own: Vec<http::HeaderName> = headers
        .keys()
        .filter(|name| {
            name.as_str().starts_with("kindling-")
                && *name != CALL_DEPTH_HEADER
                && *name != CALL_BUDGET_HEADER
        })
        .cloned()
        .collect();
    for name in own {
        headers.remove(name);
    }
}

/// A request another function made through the network (to this node's own socket, say)
/// carries its chain: continue it, so that a loop through the socket is counted too. A
/// client can only make its own chain shorter.
fn resumed_chain(headers: &http::HeaderMap, limit: u32) -> Option<CallChain> {
    let number = |name: http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u32>().ok())
    };
    let depth = number(CALL_DEPTH_HEADER)?;
    Some(CallChain::resumed(depth, number(CALL_BUDGET_HEADER), limit))
}

/// Splits `/name/rest` into `("name", "/rest")`; `/name` gives `("name", "/")`.
fn split_function(path: &str) -> Option<(&str, &str)> {
    let trimmed = path.strip_prefix('/')?;
    let (name, rest) = match trimmed.find('/') {
        Some(slash) => (&trimmed[..slash], &trimmed[slash..]),
        None => (trimmed, "/"),
    };
    (!name.is_empty()).then_some((name, rest))
}

/// `hello.fn.example.com[:port]` with domain `fn.example.com` gives `hello`.
fn host_function(headers: &http::HeaderMap, domain: &str) -> Option<String> {
    let host = headers.get(http::header::HOST)?.to_str().ok()?;
    let host = host.rsplit_once(':').map_or(host, |(name, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            name
        } else {
            host
        }
    });
    let name = host
        .strip_suffix(domain)?
        .strip_suffix('.')
        .filter(|name| !name.is_empty() && !name.contains('.'))?;
    Some(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_function_and_rest() {
        assert_eq!(split_function("/hello"), Some(("hello", "/")));
        assert_eq!(split_function("/hello/"), Some(("hello", "/")));
        assert_eq!(split_function("/hello/a/b"), Some(("hello", "/a/b")));
        assert_eq!(split_function("/"), None);
        assert_eq!(split_function(""), None);
    }

    #[test]
    fn hosts_map_to_functions_under_the_domain() {
        let host = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::HOST, value.parse().unwrap());
            host_function(&headers, "fn.example.com")
        };
        assert_eq!(host("hello.fn.example.com"), Some("hello".into()));
        assert_eq!(host("Hello.fn.example.com:3000"), Some("hello".into()));
        assert_eq!(host("fn.example.com"), None);
        assert_eq!(host("a.b.fn.example.com"), None);
        assert_eq!(host("hello.other.com"), None);
        assert_eq!(host("evilfn.example.com"), None);
    }
}
