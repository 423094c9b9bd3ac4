//! The admin API under `/v1`: list and inspect functions, deploy versions (raw WebAssembly or
//! multipart with a JSON config part), roll back, delete. Documented in [`crate::openapi`].

use axum::Json;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, FromRequest, Multipart, Path, Request, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use bytes::Bytes;
use http::StatusCode;
use kindling_access::{Caller, Scope};
use kindling_node::{Code, DeployOutcome, Entry};
use kindling_registry::{FunctionConfig, FunctionRecord, VersionRecord};
use serde_json::json;

use crate::api::{DeployResponse, FunctionInfo, FunctionStats, LoadInfo, RollbackRequest};
use crate::auth::AccessGate;
use crate::error::ApiError;
use crate::router::AppState;

pub(crate) fn routes(max_module_bytes: usize) -> Router<AppState> {
    Router::new()
        .route("/functions", get(list_functions))
        .route(
            "/functions/{name}",
            get(get_function).delete(delete_function),
        )
        .route(
            "/functions/{name}/versions",
            get(list_versions).post(deploy),
        )
        .route("/functions/{name}/rollback", post(rollback))
        .route("/functions/{name}/logs", get(crate::logs::handler))
        .merge(crate::kv::routes())
        .merge(crate::sqlite::routes())
        .merge(crate::access_api::routes())
        .merge(crate::events_api::routes())
        .merge(crate::nodes_api::routes())
        .route("/openapi.json", get(openapi))
        .fallback(no_such_route)
        // Multipart uploads carry the module plus a small config part.
        .layer(DefaultBodyLimit::max(max_module_bytes + 64 * 1024))
}

async fn list_functions(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<impl IntoResponse, ApiError> {
    let functions: Vec<FunctionInfo> = state
        .node
        .functions()
        .await?
        .into_iter()
        .filter(|(_, version)| {
            caller
                .namespace()
                .is_none_or(|own| own == version.config.namespace())
        })
        .map(|(record, version)| function_info(&state, record, version))
        .collect();
    Ok(Json(json!({ "functions": functions })))
}

async fn get_function(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<FunctionInfo>, ApiError> {
    Ok(Json(describe(&state, &name).await?))
}

async fn list_versions(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let versions = state.node.versions(&name).await?;
    Ok(Json(json!({ "versions": versions })))
}

async fn deploy(
    State(state): State<AppState>,
    Path(name): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let limit = state.config.max_module_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "module_too_large",
            format!("the module is larger than this server's limit of {limit} bytes"),
        )
    };
    let declared = request
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit + 64 * 1024) {
        // Refuse from the declared length, but read and discard what the client is sending
        // first (bounded): a client still writing its upload would otherwise see a broken
        // connection instead of this answer.
        drain(request.into_body(), (limit as u64).saturating_mul(4)).await;
        return Err(too_large());
    }
    let is_multipart = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));

    let caller = request
        .extensions()
        .get::<Caller>()
        .cloned()
        .unwrap_or(Caller::Open);
    let upload_timeout = state.config.upload_timeout;
    let read = async {
        if is_multipart {
            read_multipart(request, &state).await
        } else {
            let body = axum::body::to_bytes(request.into_body(), limit)
                .await
                .map_err(|_| too_large())?;
            Ok((body, FunctionConfig::default()))
        }
    };
    let (module, mut config) =
        tokio::time::timeout(upload_timeout, read)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "upload_timeout",
                    format!(
                        "the upload did not arrive within {}s; send it faster, or start the node \
                     with a longer --upload-timeout",
                        upload_timeout.as_secs()
                    ),
                )
            })??;
    if module.len() > limit {
        return Err(too_large());
    }
    let delivery = match &state.config.events {
        Some(events) => events.check(&config),
        None if config.schedules.is_empty() && config.triggers.is_empty() => Ok(()),
        None => Err("this node has no invocation queue for schedules and triggers".into()),
    };
    delivery.map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "invalid_config", why))?;

    // A new version stays in its function's namespace unless it names another; a new
    // function deployed with a namespace's token goes to that namespace.
    let current = state
        .node
        .lookup(&name)
        .map(|entry| entry.version.config.namespace().to_string());
    if config.namespace.is_none() {
        // Leaving `default` implicit keeps a redeploy of the same configuration unchanged.
        config.namespace = current
            .clone()
            .or_else(|| caller.namespace().map(str::to_string))
            .filter(|namespace| namespace != "default");
    }
    caller.require(Scope::Deploy, Some(config.namespace()))?;
    if let Some(current) = &current {
        // Moving a function needs deploy rights on both sides.
        caller.require(Scope::Deploy, Some(current))?;
    }
    let gate = state.config.access.clone().map(|access| AccessGate {
        access,
        caller: caller.clone(),
    });
    let outcome = state
        .node
        .deploy_gated(
            &name,
            module,
            config,
            gate.as_ref()
                .map(|gate| gate as &dyn kindling_node::DeployGate),
        )
        .await?;
    let (status, entry, unchanged) = match outcome {
        DeployOutcome::Created(entry) => (StatusCode::CREATED, entry, false),
        DeployOutcome::Unchanged(entry) => (StatusCode::OK, entry, true),
    };
    let response = DeployResponse {
        version: entry.version.clone(),
        unchanged,
        load: entry.code().as_ref().map(load_info),
    };
    Ok((status, Json(response)))
}

/// Reads and discards up to `max` bytes of a body, for at most ten seconds.
async fn drain(body: axum::body::Body, max: u64) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut seen: u64 = 0;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, |d| d.len() as u64);
            if seen > max {
                break;
            }
        }
    })
    .await;
}

async fn read_multipart(
    request: Request,
    state: &AppState,
) -> Result<(Bytes, FunctionConfig), ApiError> {
    let bad = |message: String| ApiError::new(StatusCode::BAD_REQUEST, "bad_multipart", message);
    let mut multipart = Multipart::from_request(request, state)
        .await
        .map_err(|err| bad(err.body_text()))?;
    let mut module = None;
    let mut config = FunctionConfig::default();
    while let Some(field) = multipart.next_field().await.map_err(|err| {
        if err.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "module_too_large",
                err.body_text(),
            )
        } else {
            bad(err.body_text())
        }
    })? {
        let name = field.name().unwrap_or_default().to_string();
        let bytes = field.bytes().await.map_err(|err| bad(err.body_text()))?;
        match name.as_str() {
            "module" => module = Some(bytes),
            "config" => {
                let invalid = |err: &dyn std::fmt::Display| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_config",
                        format!("the config part is not a valid function configuration: {err}"),
                    )
                };
                config = serde_json::from_slice(&bytes).map_err(|err| invalid(&err))?;
                state
                    .node
                    .capabilities()
                    .check_fields(&config.sections, FunctionConfig::FIELDS)
                    .map_err(|err| invalid(&err))?;
            }
            other => {
                return Err(bad(format!(
                    "unexpected part {other:?}: send a `module` part (the .wasm) and optionally \
                     a `config` part (JSON)"
                )));
            }
        }
    }
    let module = module.ok_or_else(|| {
        bad("the multipart body has no `module` part holding the .wasm file".into())
    })?;
    Ok((module, config))
}

async fn rollback(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<Json<FunctionInfo>, ApiError> {
    let request: RollbackRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RollbackRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|err| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_rollback",
                format!("expected an empty body or {{\"version\": N}}: {err}"),
            )
        })?
    };
    // A version may have been deployed to another namespace: going back to it moves the
    // function there, which needs deploy rights on that side too.
    if let Some(entry) = state.node.lookup(&name) {
        let active = entry.version.version;
        let versions = state.node.versions(&name).await?;
        let target = match request.version {
            Some(wanted) => versions.iter().find(|v| v.version == wanted),
            None => versions.iter().find(|v| v.version < active),
        };
        if let Some(target) = target {
            caller.require(Scope::Deploy, Some(target.config.namespace()))?;
        }
    }
    let gate = state.config.access.clone().map(|access| AccessGate {
        access,
        caller: caller.clone(),
    });
    state
        .node
        .rollback_gated(
            &name,
            request.version,
            gate.as_ref()
                .map(|gate| gate as &dyn kindling_node::DeployGate),
        )
        .await?;
    Ok(Json(describe(&state, &name).await?))
}

async fn delete_function(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.node.delete(&name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn openapi(State(state): State<AppState>) -> impl IntoResponse {
    Json(crate::openapi::document(state.node.capabilities()))
}

async fn no_such_route(request: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no_such_route",
        format!(
            "the admin API has no route {} {}; GET /v1/openapi.json lists them",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn describe(state: &AppState, name: &str) -> Result<FunctionInfo, ApiError> {
    let (record, version) = state.node.function(name).await?;
    Ok(function_info(state, record, version))
}

fn function_info(state: &AppState, record: FunctionRecord, version: VersionRecord) -> FunctionInfo {
    let entry = state
        .node
        .lookup(&record.name)
        .filter(|entry| entry.version.version == record.active_version);
    let code = entry.as_ref().and_then(|entry| entry.code());
    let error = entry.as_ref().and_then(|entry| entry.failure());
    let stats = entry.as_ref().map(|entry| stats(entry)).unwrap_or_default();
    FunctionInfo {
        state: match (&code, &error) {
            (Some(_), _) => "warm",
            (None, Some(_)) => "failed",
            (None, None) => "cold",
        }
        .to_string(),
        load: code.as_ref().map(load_info),
        error,
        stats,
        autoscale: entry.as_ref().and_then(|entry| entry.scale()),
        capabilities: state.node.inspect(&version.config),
        schedules: state
            .config
            .events
            .as_ref()
            .map(|events| events.schedules(&record.name))
            .unwrap_or_default(),
        name: record.name,
        active_version: record.active_version,
        version_count: record.version_count,
        kind: version.kind,
        sha256: version.sha256,
        size_bytes: version.size_bytes,
        config: version.config,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

fn stats(entry: &Entry) -> FunctionStats {
    use std::sync::atomic::Ordering::Relaxed;
    let usage = &entry.usage;
    FunctionStats {
        invocations: usage.invocations.load(Relaxed),
        rejected: entry.lane.counts().1,
        cold_starts: usage.cold_starts.load(Relaxed),
        last_cold_start_ms: usage.last_cold_start_us.load(Relaxed) as f64 / 1e3,
        prewarms: usage.prewarms.load(Relaxed),
        in_flight: entry.lane.in_flight(),
        queued: entry.lane.queued(),
    }
}

fn load_info(code: &Code) -> LoadInfo {
    LoadInfo {
        source: code.source.as_str().to_string(),
        millis: (code.load_time.as_secs_f64() * 1e6).round() / 1e3,
    }
}
