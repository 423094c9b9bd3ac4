//! What an invocation needs besides the HTTP request itself, what it returns, and how
//! Wasmtime failures become [`InvokeError`]s.

use std::net::SocketAddr;
use std::time::Duration;

use kindling_host::{Invocation, ResponseBody};

use crate::config::Limits;
use crate::error::{InvokeError, chain};

/// Facts about an invocation that are not in the request: the [`Invocation`] every capability
/// sees, and for WAGI's CGI variables where the function is mounted and who called.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The invocation: function, request id, trace, call chain.
    pub invocation: Invocation,
    /// The path prefix the function is mounted at (`/hello`), empty when routed by host name.
    /// WAGI passes it as `SCRIPT_NAME`; the request's own path is what follows it.
    pub script_name: String,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The address the request came in on.
    pub local_addr: Option<SocketAddr>,
}

/// A function's answer: its response, whose body may still be streaming, and what the
/// invocation cost before it.
#[derive(Debug)]
pub struct Invoked {
    /// The response.
    pub response: http::Response<ResponseBody>,
    /// Time spent instantiating the function for this request.
    pub instantiate: Duration,
}

/// Classifies an error returned by instantiating or calling a guest, naming the limit that
/// fired when one did.
pub(crate) fn classify(
    err: &wasmtime::Error,
    limits: &Limits,
    memory_refused: bool,
) -> InvokeError {
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => return InvokeError::Timeout(limits.timeout),
        Some(wasmtime::Trap::OutOfFuel) => {
            return InvokeError::CpuBudget {
                fuel: limits.cpu_fuel.unwrap_or_default(),
            };
        }
        _ => {}
    }
    if err
        .downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
        .is_some()
    {
        return InvokeError::AtCapacity;
    }
    if memory_refused {
        return InvokeError::MemoryLimit {
            limit: limits.memory_bytes,
        };
    }
    // The full chain carries the wasm backtrace: for the log, not for the client.
    tracing::debug!(error = %chain(err), "guest failure");
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => {
            let text = trap.to_string();
            let text = text.strip_prefix("wasm trap: ").unwrap_or(&text);
            InvokeError::Trap(text.to_string())
        }
        None => InvokeError::Guest(err.root_cause().to_string()),
    }
}
