//! The request path: find the function named by the first path segment (or by the host
//! name), hand it the request with its own path, and stream its response back.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, Uri};
use kindling_node::Entry;
use kindling_runtime::{CallDepth, RequestInfo, RequestTrace};
use kindling_telemetry::{SpanKind, TraceContext};
use tracing::Instrument;

use crate::error::ApiError;
use crate::request_id::{REQUEST_ID, request_id};
use crate::router::AppState;

/// How many `fn.local` calls deep a chain may go before it is refused (508 Loop Detected).
pub(crate) const MAX_CALL_DEPTH: u32 = 8;

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

async fn invoke(
    state: &AppState,
    name: String,
    script_name: String,
    path_and_query: String,
    request: Request,
) -> Response {
    let arrived = std::time::Instant::now();
    let Some(entry) = state.node.lookup(&name) else {
        return not_found(&name, &request_id(request.headers()));
    };
    let span = state.config.tracer.as_ref().map(|tracer| {
        let parent = request
            .headers()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse);
        let mut span = tracer.start(
            format!("{} /{name}", request.method()),
            SpanKind::Server,
            parent,
        );
        span.set("kindling.function", name.as_str());
        span.set("kindling.function.version", entry.version.version);
        span.set("http.request.method", request.method().as_str());
        span.set("url.path", path_and_query.split('?').next().unwrap_or("/"));
        let trace = RequestTrace {
            tracer: tracer.clone(),
            parent: span.context(),
            instantiate_us: Arc::default(),
        };
        (span, trace)
    });
    let trace = span.as_ref().map(|(_, trace)| trace.clone());
    let (response, loaded) =
        invoke_entry(state, &entry, script_name, path_and_query, request, trace).await;
    state.metrics.observe(
        &entry.name,
        entry.version.version,
        response.status(),
        arrived.elapsed(),
    );
    if let Some((mut span, trace)) = span {
        let status = response.status();
        span.set("http.response.status_code", status.as_u16());
        span.set("kindling.cold_start", loaded.is_some());
        if let Some(load) = loaded {
            span.set("kindling.load_ms", load.as_secs_f64() * 1e3);
        }
        let instantiate_us = trace.instantiate_us.load(Ordering::Relaxed);
        if instantiate_us > 0 {
            span.set("kindling.instantiate_ms", instantiate_us as f64 / 1e3);
        }
        if let Some(id) = response
            .headers()
            .get(REQUEST_ID)
            .and_then(|v| v.to_str().ok())
        {
            span.set("kindling.request_id", id.to_string());
        }
        if status.is_server_error() {
            span.fail(status.to_string());
        }
        span.end();
    }
    response
}

fn not_found(name: &str, request_id: &str) -> Response {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "function_not_found",
        format!(
            "no function named {name:?} is deployed; deploy one with \
             `kindling deploy {name} FILE.wasm`, list them with `kindling ls` or \
             GET /v1/functions"
        ),
    )
    .with_request_id(Some(request_id))
    .into_response()
}

async fn invoke_entry(
    state: &AppState,
    entry: &Arc<Entry>,
    script_name: String,
    path_and_query: String,
    mut request: Request,
    trace: Option<RequestTrace>,
) -> (Response, Option<Duration>) {
    let name = entry.name.as_ref();
    let request_id = request_id(request.headers());
    let call_depth = request
        .extensions()
        .get::<CallDepth>()
        .map_or(0, |depth| depth.0);
    if call_depth > MAX_CALL_DEPTH {
        let error = ApiError::new(
            StatusCode::LOOP_DETECTED,
            "call_chain_too_deep",
            format!(
                "function {name:?} was called {call_depth} calls deep through fn.local; the \
                 limit is {MAX_CALL_DEPTH}: look for functions that call each other in a loop"
            ),
        )
        .with_request_id(Some(&request_id));
        return (error.into_response(), None);
    }
    let permit = match state.node.admit(entry).await {
        Ok(permit) => permit,
        Err(rejection) => {
            state.metrics.rejected(name, rejection.code());
            return (
                ApiError::from_rejection(name, &rejection, &request_id).into_response(),
                None,
            );
        }
    };
    let (function, loaded) = match state.node.warm_timed(entry, true).await {
        Ok(warm) => warm,
        Err(err) => {
            tracing::error!(function = %name, request_id = %request_id, error = %err, "cold start failed");
            let error = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "function_unavailable",
                format!(
                    "function {name:?} is deployed but its code failed to load; redeploy it or \
                     roll it back (the server log says why)"
                ),
            )
            .with_request_id(Some(&request_id));
            return (error.into_response(), None);
        }
    };

    match Uri::builder().path_and_query(path_and_query).build() {
        Ok(uri) => *request.uri_mut() = uri,
        Err(err) => {
            let error = ApiError::new(StatusCode::BAD_REQUEST, "bad_uri", err.to_string())
                .with_request_id(Some(&request_id));
            return (error.into_response(), loaded);
        }
    }
    if !request.headers().contains_key(http::header::HOST)
        && let Some(local) = state.config.local_addr
        && let Ok(host) = HeaderValue::from_str(&local.to_string())
    {
        request.headers_mut().insert(http::header::HOST, host);
    }

    let info = RequestInfo {
        function: entry.name.clone(),
        script_name,
        remote_addr: request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0),
        local_addr: state.config.local_addr,
        request_id: request_id.clone(),
        log: Some(entry.log.clone()),
        trace,
        local: Some(state.local.clone()),
        call_depth,
    };
    let span = tracing::debug_span!(
        "kindling_gateway.handle",
        function = %name,
        version = entry.version.version,
        request_id = %request_id
    );
    let result = function
        .invoke(request, &info, permit)
        .instrument(span)
        .await;
    let response = match result {
        Ok(response) => {
            let mut response = response.map(Body::new);
            if let Ok(id) = HeaderValue::from_str(&request_id) {
                response.headers_mut().insert(REQUEST_ID, id);
            }
            response
        }
        Err(err) => ApiError::from_invoke(name, err, &request_id).into_response(),
    };
    (response, loaded)
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
