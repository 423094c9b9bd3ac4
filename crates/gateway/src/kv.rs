//! The admin API over guests' key-value stores (`kindling kv`): list the stores, page through
//! a store's keys, read, write and delete a key. A store is a namespace's label, as functions
//! of that namespace granted the label see it.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use kindling_access::Caller;
use kindling_cap_keyvalue::{Backend, KeyValue, KvError};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/kv", get(stores))
        .route("/kv/{namespace}/{label}", get(list))
        .route(
            "/kv/{namespace}/{label}/{*key}",
            get(read).put(write).delete(remove),
        )
}

/// A store and how big it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoreInfo {
    /// The namespace it belongs to.
    pub namespace: String,
    /// Its label.
    pub label: String,
    /// Keys held.
    pub keys: u64,
    /// Bytes of keys and values.
    pub bytes: u64,
}

/// A page of a store's keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeysPage {
    /// The keys, in order.
    pub keys: Vec<String>,
    /// Pass as `after` for the next page; absent on the last one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<usize>,
}

fn capability(state: &AppState) -> Result<&KeyValue, ApiError> {
    state.node.capabilities().get::<KeyValue>().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_key_value",
            "this node has no key-value capability",
        )
    })
}

/// The store, opening it as a function of the namespace would (blocking for SQLite).
async fn store(
    state: &AppState,
    namespace: &str,
    label: &str,
) -> Result<std::sync::Arc<dyn Backend>, ApiError> {
    kindling_registry::validate_name(namespace).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("namespace {namespace:?} must be 1-63 lowercase letters, digits and `-`"),
        )
    })?;
    let kv = capability(state)?.clone();
    let (namespace, label) = (namespace.to_string(), label.to_string());
    tokio::task::spawn_blocking(move || kv.store(&namespace, &label))
        .await
        .map_err(|err| ApiError::internal(err, None))?
        .map_err(|why| ApiError::new(StatusCode::NOT_FOUND, "no_such_store", why))
}

fn failed(err: KvError) -> ApiError {
    match err {
        KvError::Limit(why) => ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "store_limit", why),
        KvError::Value(why) => ApiError::new(StatusCode::BAD_REQUEST, "invalid", why),
        KvError::AppendOnly(why) => ApiError::new(StatusCode::CONFLICT, "append_only", why),
        other => ApiError::internal(other, None),
    }
}

async fn stores(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<StoreInfo>>, ApiError> {
    let usage = capability(&state)?.usage().await;
    Ok(Json(
        usage
            .into_iter()
            .filter(|(namespace, _, _)| caller.namespace().is_none_or(|own| own == namespace))
            .map(|(namespace, label, usage)| StoreInfo {
                namespace,
                label,
                keys: usage.keys,
                bytes: usage.bytes,
            })
            .collect(),
    ))
}

async fn list(
    State(state): State<AppState>,
    Path((namespace, label)): Path<(String, String)>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<KeysPage>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{}; the parameters are after=KEY and limit=N",
                rejection.body_text()
            ),
        )
    })?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("limit must be 1 to 10000, got {limit}"),
        ));
    }
    let store = store(&state, &namespace, &label).await?;
    let page = store
        .keys(query.after.as_deref(), limit)
        .await
        .map_err(failed)?;
    Ok(Json(KeysPage {
        keys: page.keys,
        next: page.next,
    }))
}

async fn read(
    State(state): State<AppState>,
    Path((namespace, label, key)): Path<(String, String, String)>,
) -> Result<Response, ApiError> {
    let store = store(&state, &namespace, &label).await?;
    match store.get(&key).await.map_err(failed)? {
        Some(value) => Ok((
            [(http::header::CONTENT_TYPE, "application/octet-stream")],
            value,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_key",
            format!("{namespace}/{label} has no key {key:?}"),
        )),
    }
}

async fn write(
    State(state): State<AppState>,
    Path((namespace, label, key)): Path<(String, String, String)>,
    body: Bytes,
) -> Result<StatusCode, ApiError> {
    let store = store(&state, &namespace, &label).await?;
    store.set(&key, &body).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn remove(
    State(state): State<AppState>,
    Path((namespace, label, key)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let store = store(&state, &namespace, &label).await?;
    store.delete(&key).await.map_err(failed)?;
    Ok(StatusCode::NO_CONTENT)
}
