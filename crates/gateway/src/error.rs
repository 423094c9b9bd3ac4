//! The HTTP layer's one error type. Every error is a JSON body
//! `{"error": {"code", "message", "request_id"}}` with the right status; a 5xx body never
//! carries internal detail, which goes to the log with the request id instead.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
pub use kindling_node::{ErrorBody, ErrorDetail};
use kindling_node::{Fault, INTERNAL_MESSAGE, InvokeFailure, NodeError};

use crate::request_id::{REQUEST_ID, current_request_id};

/// An error answered to a client.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    request_id: Option<String>,
    retry_after: Option<u32>,
    /// A 401 says how to authenticate (`WWW-Authenticate: Bearer`).
    challenge: bool,
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
            challenge: false,
        }
    }

    /// A 500 whose detail is logged, not shown.
    pub fn internal(detail: impl std::fmt::Display, request_id: Option<&str>) -> Self {
        let request_id = request_id.map_or_else(current_request_id, Into::into);
        tracing::error!(request_id = %request_id, error = %detail, "internal error");
        let request_id = Some(&*request_id);
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            INTERNAL_MESSAGE,
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

    /// An invocation the node could not answer with the function's response. The node has
    /// logged it with the request id.
    pub fn from_failure(failure: &InvokeFailure, request_id: &str) -> Self {
        let status =
            StatusCode::from_u16(failure.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self {
            status,
            code: failure.code(),
            message: failure.public_message(),
            request_id: Some(request_id.to_string()),
            retry_after: failure.retry_after(),
            challenge: false,
        }
    }
}

impl From<kindling_access::Denied> for ApiError {
    fn from(denied: kindling_access::Denied) -> Self {
        let status = StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN);
        let mut error = Self::new(status, denied.code, denied.message);
        error.challenge = status == StatusCode::UNAUTHORIZED;
        error
    }
}

impl From<kindling_access::AccessError> for ApiError {
    fn from(err: kindling_access::AccessError) -> Self {
        use kindling_access::AccessError;
        match err {
            AccessError::Denied(denied) => denied.into(),
            AccessError::Invalid(message) => Self::new(StatusCode::BAD_REQUEST, "invalid", message),
            AccessError::Policy(err) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_policy", err.to_string())
            }
            AccessError::Registry(err) => NodeError::from(err).into(),
            other => Self::internal(other, None),
        }
    }
}

impl From<NodeError> for ApiError {
    fn from(err: NodeError) -> Self {
        if let NodeError::Refused(refusal) = &err {
            let status = StatusCode::from_u16(refusal.status).unwrap_or(StatusCode::FORBIDDEN);
            return Self::new(status, refusal.code, refusal.message.clone());
        }
        let (status, code) = match err.fault() {
            Fault::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Fault::Client => (StatusCode::BAD_REQUEST, "invalid"),
            Fault::Conflict => (StatusCode::CONFLICT, "conflict"),
            Fault::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "cluster_unavailable"),
            Fault::Storage => {
                tracing::error!(request_id = %current_request_id(), error = %err, "disk full");
                return Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    format!(
                        "the node's disk is full ({err}); nothing was changed: free space on the \
                         disk that holds the node's --data-dir, or move it to a larger one"
                    ),
                );
            }
            _ => return Self::internal(err, None),
        };
        Self::new(status, code, err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let response_id = self
            .request_id
            .clone()
            .unwrap_or_else(|| current_request_id().to_string());
        let request_id = Some(response_id.clone());
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                request_id,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        if let Ok(id) = http::HeaderValue::from_str(&response_id) {
            response.headers_mut().insert(REQUEST_ID, id);
        }
        if self.challenge {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                http::HeaderValue::from_static("Bearer realm=\"kindling\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}
