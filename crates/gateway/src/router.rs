//! The whole HTTP application as one `Router`: health and readiness, Prometheus metrics, the
//! admin API under `/v1`, and every other path invoking a function. Tests drive it without a socket.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http::StatusCode;
use kindling_node::Node;
use serde_json::json;

use crate::config::GatewayConfig;

/// What every handler can reach.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) node: Arc<Node>,
    pub(crate) config: Arc<GatewayConfig>,
}

/// Builds the application for a node.
pub fn app(node: Arc<Node>, config: GatewayConfig) -> Router {
    let state = AppState {
        node,
        config: Arc::new(config),
    };
    let mut router = Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(crate::dashboard::routes())
        .nest(
            "/v1",
            crate::admin::routes(state.config.max_module_bytes).layer(
                axum::middleware::from_fn_with_state(state.clone(), crate::auth::admin),
            ),
        )
        // Every answer of the node's own routes carries a request id; invocations (the
        // fallback) set theirs on the request path, without this hop.
        .route_layer(axum::middleware::from_fn(crate::request_id::layer))
        .fallback(crate::invoke::by_path);
    // Host routing must see every request first, so that `hello.{domain}/v1/...` reaches the
    // function; it costs a middleware hop, so it is only installed when asked for.
    if state.config.domain.is_some() {
        router = router.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::invoke::by_host,
        ));
    }
    router.with_state(state)
}

async fn index(State(state): State<AppState>) -> impl IntoResponse {
    Json(json!({
        "name": "kindling",
        "version": env!("CARGO_PKG_VERSION"),
        "functions": state.node.entries().len(),
        "invoke": "/{function}/{path...}",
        "admin_api": "/v1/functions",
        "openapi": "/v1/openapi.json",
    }))
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the registry answers and no deployed function failed to load: the node found
/// its functions before it bound its port (and, with `--preload`, loaded them). In cluster
/// mode also when its copy of the registry caught up, or NATS cannot be reached and it serves
/// the copy it has (the body says which).
async fn readyz(State(state): State<AppState>) -> (StatusCode, String) {
    if let Err(err) = state.node.catalog_answers().await {
        tracing::error!(error = %err, "readiness: the registry does not answer");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "registry unavailable\n".into(),
        );
    }
    let failed: Vec<String> = state
        .node
        .load_failures()
        .into_iter()
        .map(|(name, why)| format!("{name}: {why}"))
        .collect();
    let link = state.config.cluster.as_ref().map(|cluster| cluster.link());
    if let Some(link) = link.as_ref().filter(|link| !link.ready()) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", link.describe()),
        );
    }
    let cluster = link.map_or(String::new(), |link| format!("{}\n", link.describe()));
    if failed.is_empty() {
        (StatusCode::OK, format!("ready\n{cluster}"))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: {} function(s) failed to load; redeploy or roll them back\n{}\n",
                failed.len(),
                failed.join("\n")
            ),
        )
    }
}

/// `GET /metrics`: the node's metrics in the Prometheus text format.
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.node.render_metrics().await;
    if let Some(access) = &state.config.access {
        text.push_str(&access.render_metrics());
    }
    if let Some(events) = &state.config.events {
        text.push_str(&events.render_metrics().await);
    }
    if let Some(cluster) = &state.config.cluster {
        text.push_str(&cluster.render_metrics());
    }
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
