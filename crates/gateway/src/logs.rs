//! `GET /v1/functions/{name}/logs`: a function's recent guest output, oldest first.
//! `after=SEQ` resumes after the last line read, `since_ms=T` keeps lines captured at or after
//! `T` (milliseconds since the Unix epoch), `limit=N` keeps the newest N (1,000 by default), and
//! `wait=S` holds the request up to S seconds (at most 60) until a new line arrives, which is
//! how `kindling logs --follow` streams without polling in a loop.

use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use http::StatusCode;
use serde::Deserialize;

use crate::api::{LogEntry, LogsResponse};
use crate::error::ApiError;
use crate::router::AppState;

/// The longest a reader may wait for new lines.
const MAX_WAIT_SECONDS: u64 = 60;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    since_ms: u64,
    limit: Option<usize>,
    #[serde(default)]
    wait: u64,
}

pub(crate) async fn handler(
    State(state): State<AppState>,
    Path(name): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Json<LogsResponse>, ApiError> {
    let Query(query) = query.map_err(|rejection| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "{}; the parameters are after=SEQ, since_ms=EPOCH_MS, limit=N and wait=SECONDS",
                rejection.body_text()
            ),
        )
    })?;
    let entry = state.node.lookup(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no function named {name:?}; `kindling ls` lists them"),
        )
    })?;
    let limit = query.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) || query.wait > MAX_WAIT_SECONDS {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!(
                "limit must be 1 to 10000 (got {limit}) and wait 0 to {MAX_WAIT_SECONDS} seconds \
                 (got {})",
                query.wait
            ),
        ));
    }
    if query.wait > 0 {
        entry
            .log
            .wait(query.after, Duration::from_secs(query.wait))
            .await;
    }
    let page = entry.log.read(query.after, query.since_ms, limit);
    Ok(Json(LogsResponse {
        function: name,
        lines: page
            .lines
            .into_iter()
            .map(|line| LogEntry {
                seq: line.seq,
                at_ms: line.at_ms,
                request_id: line.request_id.to_string(),
                stream: line.stream.to_string(),
                text: line.text,
            })
            .collect(),
        next: page.next,
        dropped: page.dropped,
    }))
}
