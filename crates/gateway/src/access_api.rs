//! The admin API of the access layer: tokens (`/v1/tokens`), namespaces and their quotas
//! (`/v1/namespaces`), Rego policies (`/v1/policies`) and the audit log (`/v1/audit`). The
//! rules of who may do what live in [`kindling_access::Access`]; this file only translates.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::response::IntoResponse;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use http::StatusCode;
use kindling_access::{Access, Caller, NewTokenRequest};
use kindling_registry::Quotas;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/tokens", get(list_tokens).post(create_token))
        .route("/tokens/{id}", delete(revoke_token))
        .route("/namespaces", get(list_namespaces).post(create_namespace))
        .route("/namespaces/{name}", put(set_namespace))
        .route("/policies", get(list_policies))
        .route("/policies/{name}", put(put_policy).delete(remove_policy))
        .route("/audit", get(audit))
}

/// A namespace as `GET /v1/namespaces` shows it: its quotas and what it uses now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NamespaceInfo {
    /// Its name.
    pub name: String,
    /// Its quotas (absent ones are unlimited).
    pub quotas: Quotas,
    /// Functions it has.
    pub functions: u32,
    /// Memory its functions may use together, in bytes.
    pub memory_bytes: u64,
    /// Requests of its functions running now.
    pub in_flight: u32,
}

/// `POST /v1/namespaces`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNamespace {
    /// Its name.
    pub name: String,
    /// Its quotas.
    #[serde(default)]
    pub quotas: Quotas,
}

fn access(state: &AppState) -> Result<&Access, ApiError> {
    state.config.access.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "auth_off",
            "this node runs with --auth none: it has no tokens, namespaces or policies to \
             manage; restart it without --auth none",
        )
    })
}

/// A JSON object body as `T`. serde would also read a struct from an array of its fields in
/// order; an API that documents an object accepts only an object.
fn json_body<T: serde::de::DeserializeOwned>(
    body: Result<Json<serde_json::Value>, JsonRejection>,
    shape: &str,
) -> Result<T, ApiError> {
    let invalid = |why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("{why}; send {shape}"),
        )
    };
    let Json(value) = body.map_err(|rejection| invalid(rejection.body_text()))?;
    if !value.is_object() {
        return Err(invalid("the body must be a JSON object".into()));
    }
    if let Some(quotas) = value.get("quotas")
        && !quotas.is_object()
    {
        return Err(invalid("`quotas` must be a JSON object".into()));
    }
    serde_json::from_value(value).map_err(|err| invalid(format!("invalid body: {err}")))
}

async fn list_tokens(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    let tokens = access(&state)?.tokens(&caller)?;
    Ok(Json(serde_json::json!({ "tokens": tokens })))
}

async fn create_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request: NewTokenRequest = json_body(
        body,
        r#"{"name": "ci", "scopes": ["deploy"], "namespace": "team-a", "expires_in_seconds": 86400}"#,
    )?;
    let made = access(&state)?.create_token(&caller, request).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

async fn revoke_token(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let record = access(&state)?.revoke_token(&caller, &id).await?;
    Ok(Json(record))
}

fn namespace_info(state: &AppState, access: &Access, name: &str, quotas: Quotas) -> NamespaceInfo {
    let (functions, memory_bytes) = state
        .node
        .entries()
        .iter()
        .filter(|entry| entry.version.config.namespace() == name)
        .fold((0, 0), |(n, bytes), entry| {
            (n + 1, bytes + entry.memory_limit())
        });
    NamespaceInfo {
        name: name.to_string(),
        quotas,
        functions,
        memory_bytes,
        in_flight: access.quota().in_flight(name),
    }
}

async fn list_namespaces(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    let access = access(&state)?;
    let mut names: std::collections::BTreeMap<String, Quotas> = access
        .namespaces(&caller)?
        .into_iter()
        .map(|n| (n.name, n.quotas))
        .collect();
    // Namespaces functions use without a record: unlimited, but listed.
    for entry in state.node.entries() {
        let namespace = entry.version.config.namespace();
        if caller.namespace().is_none_or(|own| own == namespace) {
            names.entry(namespace.to_string()).or_default();
        }
    }
    let list: Vec<NamespaceInfo> = names
        .into_iter()
        .map(|(name, quotas)| namespace_info(&state, access, &name, quotas))
        .collect();
    Ok(Json(serde_json::json!({ "namespaces": list })))
}

async fn create_namespace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let request: NewNamespace =
        json_body(body, r#"{"name": "team-a", "quotas": {"functions": 10}}"#)?;
    let access = access(&state)?;
    let record = access
        .put_namespace(&caller, &request.name, request.quotas, true)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(namespace_info(&state, access, &record.name, record.quotas)),
    ))
}

async fn set_namespace(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let quotas: Quotas = json_body(body, r#"{"functions": 10, "requests_per_second": 100}"#)?;
    let access = access(&state)?;
    let record = access.put_namespace(&caller, &name, quotas, false).await?;
    Ok(Json(namespace_info(
        &state,
        access,
        &record.name,
        record.quotas,
    )))
}

async fn list_policies(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    let policies = access(&state)?.list_policies(&caller).await?;
    Ok(Json(serde_json::json!({ "policies": policies })))
}

async fn put_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: String,
) -> Result<impl IntoResponse, ApiError> {
    let record = access(&state)?.put_policy(&caller, &name, &body).await?;
    Ok(Json(record))
}

async fn remove_policy(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    access(&state)?.remove_policy(&caller, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn audit(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    query: Result<Query<AuditQuery>, QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "{}; the query takes after=SEQ and limit=N",
                rejection.body_text()
            ),
        )
    })?;
    let rows = access(&state)?
        .audit(&caller, query.after, query.limit.unwrap_or(100).min(1000))
        .await?;
    let next = rows.last().map_or(query.after, |row| row.seq);
    Ok(Json(serde_json::json!({ "entries": rows, "next": next })))
}
