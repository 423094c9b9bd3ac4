//! Asynchronous invocations over HTTP: `Prefer: respond-async` on a function's own route and
//! `POST /v1/functions/{name}/invocations` queue a request and answer 202 with its
//! `Location`; `/v1/invocations` shows, retries and purges them. The queue itself is
//! [`kindling_events::Events`]; this file only translates.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{HeaderMap, HeaderValue, StatusCode};
use http_body_util::BodyExt as _;
use kindling_access::{Caller, Scope};
use kindling_events::{Events, EventsError, Filter, NewInvocation, Source, State as Stage};
use serde::Deserialize;

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/functions/{name}/invocations", post(enqueue_api))
        .route("/invocations", get(list).delete(purge))
        .route("/invocations/{id}", get(show).delete(remove))
        .route("/invocations/{id}/retry", post(retry))
}

/// Request headers that belong to the queue, not to the function (hop-by-hop and
/// Kindling's own are dropped by [`kindling_events::header_passes`]).
const DROPPED: &[&str] = &["prefer", "idempotency-key", "x-callback-url", "expect"];

/// Whether a request asks to be answered before it runs (RFC 7240 `Prefer: respond-async`).
pub(crate) fn wants_async(headers: &HeaderMap) -> bool {
    headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.split(';')
                .next()
                .is_some_and(|token| token.trim().eq_ignore_ascii_case("respond-async"))
        })
}

fn events(state: &AppState) -> Result<&Events, ApiError> {
    state.config.events.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "async_off",
            "this node has no invocation queue; it runs in process without one",
        )
    })
}

impl From<EventsError> for ApiError {
    fn from(err: EventsError) -> Self {
        match &err {
            EventsError::NotFound(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                "invocation_not_found",
                err.to_string(),
            ),
            EventsError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid", err.to_string())
            }
            EventsError::Conflict(_) => {
                ApiError::new(StatusCode::CONFLICT, "invocation_state", err.to_string())
            }
            EventsError::Full { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_full",
                err.to_string(),
            ),
            EventsError::Unavailable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "queue_unavailable",
                err.to_string(),
            ),
            EventsError::Unreachable(_) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cluster_unreachable",
                err.to_string(),
            ),
            _ => ApiError::internal(&err, None),
        }
    }
}

/// Queues `request` for `name` (already routed and access-checked) and answers 202.
pub(crate) async fn enqueue(
    state: &AppState,
    name: &str,
    request: Request,
    request_id: &str,
) -> Response {
    match enqueue_inner(state, name, request).await {
        Ok(response) => response,
        Err(err) => err.with_request_id(Some(request_id)).into_response(),
    }
}

async fn enqueue_inner(
    state: &AppState,
    name: &str,
    request: Request,
) -> Result<Response, ApiError> {
    let events = events(state)?;
    let Some(entry) = state.node.lookup(name) else {
        return Err(ApiError::from_failure(
            &kindling_node::InvokeFailure::NotFound(name.to_string()),
            "",
        ));
    };
    let (parts, body) = request.into_parts();
    let limit = events.config().max_body_bytes;
    let body = http_body_util::Limited::new(body, limit)
        .collect()
        .await
        .map_err(|err| {
            if err.is::<http_body_util::LengthLimitError>() {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request_body_too_large",
                    format!("an asynchronous invocation may carry at most {limit} bytes of body"),
                )
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "request_body",
                    format!("the request body could not be read: {err}"),
                )
            }
        })?
        .to_bytes();
    let header = |name: &str| -> Result<Option<String>, ApiError> {
        match parts.headers.get(name) {
            None => Ok(None),
            Some(value) => value
                .to_str()
                .map(|v| Some(v.trim().to_string()))
                .map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_header",
                        format!("the {name} header must be visible ASCII"),
                    )
                }),
        }
    };
    let idempotency_key = header("idempotency-key")?;
    if let Some(key) = &idempotency_key
        && (key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_header",
            "Idempotency-Key must be 1-255 visible ASCII characters without spaces",
        ));
    }
    let headers = parts
        .headers
        .iter()
        .filter(|(name, _)| {
            !DROPPED.contains(&name.as_str()) && kindling_events::header_passes(name.as_str())
        })
        .map(|(name, value)| (name.as_str().to_string(), value.as_bytes().to_vec()))
        .collect();
    let path = parts
        .uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let accepted = events
        .enqueue(NewInvocation {
            function: name.to_string(),
            namespace: entry.version.config.namespace().to_string(),
            source: Source::Http,
            method: parts.method.as_str().to_string(),
            path,
            headers,
            body: body.to_vec(),
            idempotency_key,
            callback_url: header("x-callback-url")?,
        })
        .await?;
    let location = format!("/v1/invocations/{}", accepted.id);
    let mut response = (
        StatusCode::ACCEPTED,
        Json(serde_json::json!({
            "id": accepted.id,
            "function": name,
            "location": location,
            "duplicate": accepted.duplicate,
        })),
    )
        .into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(http::header::LOCATION, value);
    }
    headers.insert(
        "preference-applied",
        HeaderValue::from_static("respond-async"),
    );
    if accepted.duplicate {
        headers.insert("kindling-duplicate", HeaderValue::from_static("true"));
    }
    Ok(response)
}

/// `?method=PUT&path=/x` of `POST /v1/functions/{name}/invocations`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    method: Option<String>,
    path: Option<String>,
}

async fn enqueue_api(
    State(state): State<AppState>,
    Path(name): Path<String>,
    target: Result<Query<Target>, QueryRejection>,
    mut request: Request,
) -> Result<Response, ApiError> {
    let Query(target) = target.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })?;
    if let Some(method) = target.method {
        let invalid = || {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_query",
                format!("method {method:?} is not an HTTP method; write one such as PUT"),
            )
        };
        if method.is_empty()
            || method.len() > 16
            || !method.bytes().all(|b| b.is_ascii_alphabetic())
        {
            return Err(invalid());
        }
        *request.method_mut() = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| invalid())?;
    } else {
        *request.method_mut() = http::Method::POST;
    }
    let path = target.path.unwrap_or_else(|| "/".into());
    if !path.starts_with('/') {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("path {path:?} must start with `/`"),
        ));
    }
    *request.uri_mut() = path.parse().map_err(|err| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("path {path:?}: {err}"),
        )
    })?;
    // The same checks as the function's own route: an invoke token for `--auth token`
    // functions and the authorization policy over the method and path the function will see.
    if let Some(access) = &state.config.access
        && let Some(entry) = state.node.lookup(&name)
    {
        let config = &entry.version.config;
        let remote = request
            .extensions()
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|info| info.0);
        crate::auth::check_invocation(
            access,
            &mut request,
            &name,
            config.namespace(),
            config.auth,
            remote,
        )?;
    }
    // The admin API's token is for the node, not the function.
    request.headers_mut().remove(http::header::AUTHORIZATION);
    enqueue_inner(&state, &name, request).await
}

/// `GET /v1/invocations?function=&state=&limit=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Selection {
    function: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
}

fn filter(caller: &Caller, selection: Selection) -> Result<Filter, ApiError> {
    let state = selection
        .state
        .map(|s| s.parse::<Stage>())
        .transpose()
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", why))?;
    Ok(Filter {
        function: selection.function,
        state,
        namespaces: caller.namespace().map(|n| vec![n.to_string()]),
        limit: selection.limit,
    })
}

fn selection(query: Result<Query<Selection>, QueryRejection>) -> Result<Selection, ApiError> {
    query.map(|Query(s)| s).map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            rejection.body_text(),
        )
    })
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = filter(&caller, selection(query)?)?;
    let invocations = events(&state)?.list(filter).await?;
    Ok(Json(serde_json::json!({ "invocations": invocations })))
}

async fn purge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<Selection>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let filter = filter(&caller, selection(query)?)?;
    caller.require(Scope::Deploy, caller.namespace())?;
    let purged = events(&state)?.purge(filter).await?;
    Ok(Json(serde_json::json!({ "purged": purged })))
}

/// The invocation, when the caller may see its namespace; otherwise not found (an id from
/// another tenant is not confirmed to exist).
async fn visible(
    events: &Events,
    caller: &Caller,
    id: &str,
    scope: Scope,
) -> Result<kindling_events::InvocationRecord, ApiError> {
    let record = events.get(id).await?;
    if caller
        .require(Scope::Read, Some(&record.namespace))
        .is_err()
    {
        return Err(EventsError::NotFound(id.to_string()).into());
    }
    caller.require(scope, Some(&record.namespace))?;
    Ok(record)
}

async fn show(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = visible(events(&state)?, &caller, &id, Scope::Read).await?;
    Ok(Json(record))
}

async fn retry(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let events = events(&state)?;
    visible(events, &caller, &id, Scope::Deploy).await?;
    Ok(Json(events.retry(&id).await?))
}

async fn remove(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let events = events(&state)?;
    visible(events, &caller, &id, Scope::Deploy).await?;
    events.delete(&id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::wants_async;

    #[test]
    fn prefer_respond_async_is_recognized() {
        let with = |value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert("prefer", value.parse().unwrap());
            wants_async(&headers)
        };
        assert!(with("respond-async"));
        assert!(with("wait=10, respond-async"));
        assert!(with("Respond-Async; foo=bar"));
        assert!(!with("return=minimal"));
        assert!(!with("respond-asyncx"));
        assert!(!wants_async(&http::HeaderMap::new()));
    }
}
