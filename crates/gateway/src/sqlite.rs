//! The admin API over guests' SQLite databases (`kindling sqlite`): list the databases, run a
//! statement on one as a function of its namespace granted its label would.

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::routing::{get, post};
use http::StatusCode;
use kindling_access::Caller;
use kindling_cap_sqlite::{Interrupt, SqlError, Sqlite, Value};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::router::AppState;

/// How long an operator's statement may run.
const STATEMENT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/sqlite", get(databases))
        .route("/sqlite/{namespace}/{label}", post(execute))
}

/// A database and how big it is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DatabaseInfo {
    /// The namespace it belongs to.
    pub namespace: String,
    /// Its label.
    pub label: String,
    /// Bytes on disk, its write-ahead log included.
    pub bytes: u64,
}

/// A statement to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Statement {
    /// The SQL, one statement.
    pub statement: String,
    /// Positional parameters (`?`): numbers, strings, null, or `{"blob": "HEX"}`.
    #[serde(default)]
    pub parameters: Vec<serde_json::Value>,
}

/// What a statement returned.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// The column names.
    pub columns: Vec<String>,
    /// The rows: numbers, strings, null, or `{"blob": "HEX"}`.
    pub rows: Vec<Vec<serde_json::Value>>,
}

fn capability(state: &AppState) -> Result<&Sqlite, ApiError> {
    state.node.capabilities().get::<Sqlite>().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_sqlite",
            "this node has no SQLite capability",
        )
    })
}

async fn databases(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Result<Json<Vec<DatabaseInfo>>, ApiError> {
    let sqlite = capability(&state)?.clone();
    let own = caller.namespace().map(str::to_string);
    let list = tokio::task::spawn_blocking(move || {
        sqlite
            .opened()
            .into_iter()
            .filter(|(namespace, _, _)| own.as_deref().is_none_or(|own| own == namespace))
            .map(|(namespace, label, database)| DatabaseInfo {
                namespace,
                label,
                bytes: database.bytes(),
            })
            .collect()
    })
    .await
    .map_err(|err| ApiError::internal(err, None))?;
    Ok(Json(list))
}

fn parameter(value: serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    Ok(match value {
        J::Null => Value::Null,
        J::Number(n) => match n.as_i64() {
            Some(i) => Value::Integer(i),
            None => Value::Real(n.as_f64().unwrap_or(f64::NAN)),
        },
        J::String(s) => Value::Text(s),
        J::Object(map) => match (map.len(), map.get("blob").and_then(J::as_str)) {
            (1, Some(hex)) => Value::Blob(
                hex::decode(hex).map_err(|err| format!("a blob parameter is not hex: {err}"))?,
            ),
            _ => return Err("an object parameter must be {\"blob\": \"HEX\"}".into()),
        },
        J::Array(_) | J::Bool(_) => {
            return Err("a parameter is a number, a string, null or {\"blob\": \"HEX\"}".into());
        }
    })
}

fn json(value: Value) -> serde_json::Value {
    match value {
        Value::Integer(i) => i.into(),
        Value::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Text(s) => s.into(),
        Value::Blob(b) => serde_json::json!({ "blob": hex::encode(b) }),
        Value::Null => serde_json::Value::Null,
    }
}

async fn execute(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((namespace, label)): Path<(String, String)>,
    body: Result<Json<Statement>, JsonRejection>,
) -> Result<Json<Answer>, ApiError> {
    let Json(statement) = body.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!(
                "{}; send {{\"statement\": \"SQL\", \"parameters\": [...]}}",
                rejection.body_text()
            ),
        )
    })?;
    kindling_registry::validate_name(&namespace).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid",
            format!("namespace {namespace:?} must be 1-63 lowercase letters, digits and `-`"),
        )
    })?;
    let parameters = statement
        .parameters
        .into_iter()
        .map(parameter)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|why| ApiError::new(StatusCode::BAD_REQUEST, "invalid", why))?;
    let sqlite = capability(&state)?.clone();
    // Only the node's own admins get the operator's connection (ATTACH, every PRAGMA, files
    // beside the database); everyone else runs in the sandbox guests run in.
    let operator = caller.require(kindling_access::Scope::Admin, None).is_ok();
    let conn = tokio::task::spawn_blocking(move || {
        // An operator's statement reaches only databases guests made: a typo in the namespace
        // is a 404, not a new empty database.
        let database = sqlite
            .existing_database(&namespace, &label)
            .map_err(|why| ApiError::new(StatusCode::NOT_FOUND, "no_such_database", why))?;
        let conn = if operator {
            database.connect_operator()
        } else {
            database.connect()
        };
        conn.map_err(|err| ApiError::internal(err, None))
    })
    .await
    .map_err(|err| ApiError::internal(err, None))??;
    // An operator's statement is bounded like a guest's: past the deadline it stops.
    let interrupt = Interrupt::new();
    let watcher = interrupt.watcher();
    let running = tokio::task::spawn_blocking(move || {
        conn.execute(&statement.statement, parameters, &watcher)
    });
    let result = match tokio::time::timeout(STATEMENT_DEADLINE, running).await {
        Ok(joined) => {
            interrupt.done();
            joined.map_err(|err| ApiError::internal(err, None))?
        }
        Err(_) => {
            drop(interrupt);
            return Err(ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "statement_timeout",
                format!(
                    "the statement ran longer than {} s and was stopped",
                    STATEMENT_DEADLINE.as_secs()
                ),
            ));
        }
    }
    .map_err(|err| match err {
        SqlError::Full(why) => {
            ApiError::new(StatusCode::INSUFFICIENT_STORAGE, "database_full", why)
        }
        SqlError::Io(why) => ApiError::new(StatusCode::BAD_REQUEST, "sql_error", why),
    })?;
    Ok(Json(Answer {
        columns: result.columns,
        rows: result
            .rows
            .into_iter()
            .map(|row| row.into_iter().map(json).collect())
            .collect(),
    }))
}
