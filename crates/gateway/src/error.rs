//! The HTTP layer's one error type. Every error is a JSON body
//! `{"error": {"code", "message", "request_id"}}` with the right status; a 5xx body never
//! carries internal detail, which goes to the log with the request id instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kindling_node::{Fault, NodeError};
use kindling_runtime::InvokeError;
use kindling_scheduler::Rejection;
use serde::{Deserialize, Serialize};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: Option<String>,
    retry_after: Option<u32>,
}

/// The JSON shape of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// What went wrong, for people and for programs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// A stable machine-readable code, such as `function_not_found`.
    pub code: String,
    /// A sentence saying what was wrong and what to do.
    pub message: String,
    /// The request id, to find the matching log lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// An error with a status, a code and a message for the client.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            request_id: None,
            retry_after: None,
        }
    }

    /// A 500 whose detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display, request_id: Option<&str>) -> Self {
        tracing::error!(request_id = request_id.unwrap_or("-"), error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; the server log has the details under this request id",
        )
        .with_request_id(request_id)
    }

    /// Attaches the request id.
    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        self.request_id = request_id.map(str::to_string);
        self
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Maps an invocation failure to its status, naming the function and the limit involved.
    pub fn from_invoke(function: &str, err: InvokeError, request_id: &str) -> Self {
        let (status, code) = match &err {
            InvokeError::RequestBodyTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "request_body_too_large")
            }
            InvokeError::ResponseTooLarge { .. } => (StatusCode::BAD_GATEWAY, "response_too_large"),
            InvokeError::Timeout(_) => (StatusCode::GATEWAY_TIMEOUT, "deadline_exceeded"),
            InvokeError::AtCapacity => (StatusCode::SERVICE_UNAVAILABLE, "at_capacity"),
            InvokeError::MemoryLimit { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "memory_limit_exceeded")
            }
            InvokeError::CpuBudget { .. } => (StatusCode::GATEWAY_TIMEOUT, "cpu_budget_exceeded"),
            InvokeError::Guest(_) | InvokeError::Trap(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "function_failed")
            }
            InvokeError::NoResponse => (StatusCode::INTERNAL_SERVER_ERROR, "no_response"),
            InvokeError::BadCgiResponse(_) => (StatusCode::BAD_GATEWAY, "bad_cgi_response"),
            InvokeError::RequestBody(_) => (StatusCode::BAD_REQUEST, "bad_request_body"),
            InvokeError::Internal(_) => {
                return Self::internal(format!("function {function:?}: {err}"), Some(request_id));
            }
            _ => return Self::internal(format!("function {function:?}: {err}"), Some(request_id)),
        };
        tracing::warn!(function, request_id, error = %err, "invocation failed");
        let mut error = Self::new(status, code, format!("function {function:?}: {err}"))
            .with_request_id(Some(request_id));
        if matches!(err, InvokeError::AtCapacity) {
            error.retry_after = Some(1);
        }
        error
    }
}

impl ApiError {
    /// A request the scheduler turned away: 503 when the node is overloaded, 429 when the
    /// function or its namespace is at a limit; always with `Retry-After`.
    pub fn from_rejection(function: &str, rejection: &Rejection, request_id: &str) -> Self {
        let status =
            StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let mut error = Self::new(
            status,
            rejection.code(),
            format!("function {function:?}: {rejection}; retry shortly"),
        )
        .with_request_id(Some(request_id));
        error.retry_after = Some(1);
        error
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        let (status, code) = match err.fault() {
            Fault::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Fault::Client => (StatusCode::BAD_REQUEST, "invalid"),
            Fault::Conflict => (StatusCode::CONFLICT, "conflict"),
            _ => return Self::internal(err, None),
        };
        Self::new(status, code, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id: self.request_id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
