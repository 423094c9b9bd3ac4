//! What an invocation needs besides the HTTP request itself, what it returns, and how
//! Wasmtime failures become [`InvokeError`]s.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

use crate::config::{FunctionSettings, Limits};
use crate::error::{InvokeError, chain};

/// The error type of response bodies: a body can fail mid-stream when a guest traps after it
/// has sent the response head.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of a function's response, streamed as the guest writes it.
pub type ResponseBody = UnsyncBoxBody<Bytes, BoxError>;

/// Facts about an invocation that are not in the request: who called, where the function is
/// mounted, and the id that ties log lines to the request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The function's name, for logs.
    pub function: Arc<str>,
    /// The path prefix the function is mounted at (`/hello`), empty when routed by host name.
    /// WAGI passes it as `SCRIPT_NAME`; the request's own path is what follows it.
    pub script_name: String,
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The address the request came in on.
    pub local_addr: Option<SocketAddr>,
    /// The request id, shown in logs and error bodies.
    pub request_id: Arc<str>,
    /// Where the function's guest output is kept, besides the host log.
    pub log: Option<Arc<crate::logs::FunctionLog>>,
    /// The request's place in a trace, when tracing is on.
    pub trace: Option<RequestTrace>,
    /// Where calls to `http://{name}.fn.local/` go: other functions of the same node, in
    /// process. Without it such calls fail like any unreachable host.
    pub local: Option<Arc<dyn crate::outbound::LocalFunctions>>,
    /// How many `fn.local` calls deep this request is (0 from outside).
    pub call_depth: u32,
}

/// The request's place in a trace: its server span, which the function's outbound calls are
/// children of.
#[derive(Debug, Clone)]
pub struct RequestTrace {
    /// Where spans go.
    pub tracer: kindling_telemetry::Tracer,
    /// The request's own span.
    pub parent: kindling_telemetry::TraceContext,
    /// Set by the runtime: microseconds spent instantiating the function for this request.
    pub instantiate_us: Arc<std::sync::atomic::AtomicU64>,
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

/// The WASI context both kinds start from: exactly `env` and the function's read-only mounts,
/// nothing of the host's.
pub(crate) fn wasi_builder(
    settings: &FunctionSettings,
    env: &[(String, String)],
) -> Result<wasmtime_wasi::WasiCtxBuilder, InvokeError> {
    let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
    builder.envs(env);
    for mount in &settings.mounts {
        builder
            .preopened_dir(&mount.host, &mount.guest, wasmtime_wasi::FsPerms::ReadOnly)
            .map_err(|err| {
                InvokeError::Internal(format!(
                    "cannot open mount {} for the guest at {}: {err}",
                    mount.host.display(),
                    mount.guest
                ))
            })?;
    }
    Ok(builder)
}

/// Writes what a guest printed to the host log, one event per line, tagged with the function
/// and request id. Output past the capture cap was dropped and is reported as a count.
pub(crate) fn log_guest_output(
    info: &RequestInfo,
    stream: &'static str,
    bytes: &[u8],
    dropped: u64,
) {
    if bytes.is_empty() && dropped == 0 {
        return;
    }
    let text = String::from_utf8_lossy(bytes);
    if let (Some(log), false) = (&info.log, text.is_empty()) {
        log.push(&info.request_id, stream, &text);
    }
    for line in text.lines() {
        tracing::info!(
            target: "kindling::guest",
            function = %info.function,
            request_id = %info.request_id,
            stream,
            "{line}"
        );
    }
    if dropped > 0 {
        tracing::warn!(
            target: "kindling::guest",
            function = %info.function,
            request_id = %info.request_id,
            stream,
            dropped,
            "guest output exceeded the capture cap; the rest was dropped"
        );
    }
}
