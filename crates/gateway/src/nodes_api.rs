//! `GET /v1/nodes`: the cluster's nodes as this one sees them, its own link to the cluster,
//! and its sync's links (`"sync"`: at a hub, one per edge site, also a site whose member
//! record expired while it is offline; at a site, its hub). A node not in a cluster answers
//! with `"cluster": null`.

use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Json, Router};
use kindling_access::{Caller, Scope};
use kindling_cap_keyvalue::KeyValue;
use serde_json::json;

use crate::error::ApiError;
use crate::router::AppState;

pub(crate) fn routes() -> Router<AppState> {
    Router::new().route("/nodes", get(list))
}

async fn list(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    // Nodes are the operator's business, not one namespace's.
    caller.require(Scope::Read, None)?;
    let capabilities = state.node.capabilities();
    let sync =
        (capabilities.get::<KeyValue>()).map_or_else(Vec::new, |kv| kv.sync_status().links());
    let Some(cluster) = &state.config.cluster else {
        return Ok(Json(json!({ "cluster": null, "nodes": [], "sync": sync })));
    };
    let nodes = cluster.members(&state.node).await;
    Ok(Json(json!({
        "cluster": { "node": cluster.node_name(), "link": cluster.link() },
        "nodes": nodes,
        "sync": sync,
    })))
}
