//! Why an invocation was not answered by its function, with the HTTP status each reason maps
//! to (every way in speaks HTTP: triggers deliver a request and read a status), and the JSON
//! error body all of Kindling's errors share.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kindling_host::ResponseBody;
use kindling_runtime::InvokeError;
use kindling_scheduler::Rejection;
use serde::{Deserialize, Serialize};

/// An invocation that did not reach its function, or that its function failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeFailure {
    /// No function has this name (404).
    #[error("{}", not_found(.0))]
    NotFound(String),
    /// The chain of calls between functions is too deep (508).
    #[error(
        "function {name:?} was called {depth} calls deep through fn.local; the limit is \
         {limit}: look for functions that call each other in a loop"
    )]
    TooDeep {
        /// The function called.
        name: Arc<str>,
        /// How deep.
        depth: u32,
        /// The node's limit.
        limit: u32,
    },
    /// The request that started the chain has caused as many invocations as it may (508).
    #[error(
        "function {name:?}: the request that started this chain of calls may cause at most \
         {limit} invocations and has caused them all: look for a fan-out or a loop of calls"
    )]
    BudgetSpent {
        /// The function called.
        name: Arc<str>,
        /// The node's limit.
        limit: u32,
    },
    /// Admission control turned it away (503 or 429, with `Retry-After`).
    #[error("function {name:?}: {rejection}; retry shortly")]
    Rejected {
        /// The function.
        name: Arc<str>,
        /// Why.
        rejection: Rejection,
    },
    /// The function's code could not be loaded (503).
    #[error(
        "function {name:?} is deployed but its code failed to load; redeploy it or roll it back \
         (the server log says why)"
    )]
    Unavailable {
        /// The function.
        name: Arc<str>,
    },
    /// The function failed, or a limit stopped it.
    #[error("function {name:?}: {error}")]
    Invoke {
        /// The function.
        name: Arc<str>,
        /// What happened.
        error: InvokeError,
    },
}

fn not_found(name: &str) -> String {
    match kindling_registry::validate_name(name) {
        Ok(()) => format!(
            "no function named {name:?} is deployed; deploy one with `kindling deploy {name} \
             FILE.wasm`, list them with `kindling ls` or GET /v1/functions"
        ),
        Err(_) => format!(
            "no function named {name:?} is deployed, and none can be: function names are 1-63 \
             lowercase letters, digits and `-`; list them with `kindling ls` or GET /v1/functions"
        ),
    }
}

impl InvokeFailure {
    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        match self {
            Self::NotFound(_) => 404,
            Self::TooDeep { .. } | Self::BudgetSpent { .. } => 508,
            Self::Rejected { rejection, .. } => rejection.status(),
            Self::Unavailable { .. } => 503,
            Self::Invoke { error, .. } => match error {
                InvokeError::RequestBodyTooLarge { .. } => 413,
                InvokeError::ResponseTooLarge { .. } | InvokeError::BadCgiResponse(_) => 502,
                InvokeError::Timeout(_) | InvokeError::CpuBudget { .. } => 504,
                InvokeError::AtCapacity => 503,
                InvokeError::RequestBody(_) => 400,
                _ => 500,
            },
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "function_not_found",
            Self::TooDeep { .. } => "call_chain_too_deep",
            Self::BudgetSpent { .. } => "call_budget_exhausted",
            Self::Rejected { rejection, .. } => rejection.code(),
            Self::Unavailable { .. } => "function_unavailable",
            Self::Invoke { error, .. } => match error {
                InvokeError::RequestBodyTooLarge { .. } => "request_body_too_large",
                InvokeError::ResponseTooLarge { .. } => "response_too_large",
                InvokeError::Timeout(_) => "deadline_exceeded",
                InvokeError::AtCapacity => "at_capacity",
                InvokeError::MemoryLimit { .. } => "memory_limit_exceeded",
                InvokeError::CpuBudget { .. } => "cpu_budget_exceeded",
                InvokeError::Guest(_) | InvokeError::Trap(_) => "function_failed",
                InvokeError::NoResponse => "no_response",
                InvokeError::BadCgiResponse(_) => "bad_cgi_response",
                InvokeError::RequestBody(_) => "bad_request_body",
                _ => "internal",
            },
        }
    }

    /// Seconds after which a retry may succeed, for `Retry-After`.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Self::Rejected { .. }
            | Self::Invoke {
                error: InvokeError::AtCapacity,
                ..
            } => Some(1),
            _ => None,
        }
    }

    /// True when the node failed: the message shown to the client carries no detail.
    pub fn is_internal(&self) -> bool {
        self.code() == "internal"
    }

    /// What the client is told.
    pub fn public_message(&self) -> String {
        if self.is_internal() {
            INTERNAL_MESSAGE.to_string()
        } else {
            self.to_string()
        }
    }

    /// The error as a response: the JSON body, `x-request-id` and `Retry-After`.
    pub fn to_response(&self, request_id: &str) -> http::Response<ResponseBody> {
        let mut response = error_response(
            self.status(),
            self.code(),
            self.public_message(),
            request_id,
        );
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, seconds.into());
        }
        response
    }
}

/// What a client is told of a failure of the node itself; the log has the detail.
pub const INTERNAL_MESSAGE: &str =
    "internal error; the server log has the details under this request id";

/// The header carrying the request id, both ways.
pub const REQUEST_ID_HEADER: http::HeaderName = http::HeaderName::from_static("x-request-id");

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

/// An error response with the shared JSON body and the request id in `x-request-id`.
pub fn error_response(
    status: u16,
    code: &str,
    message: String,
    request_id: &str,
) -> http::Response<ResponseBody> {
    let body = ErrorBody {
        error: ErrorDetail {
            code: code.to_string(),
            message,
            request_id: Some(request_id.to_string()),
        },
    };
    let json = serde_json::to_vec(&body).expect("an error body serializes");
    let mut response = http::Response::new(
        Full::new(Bytes::from(json))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Ok(id) = http::HeaderValue::from_str(request_id) {
        headers.insert(REQUEST_ID_HEADER, id);
    }
    response
}
