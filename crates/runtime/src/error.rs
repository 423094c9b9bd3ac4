//! The runtime's errors: what went wrong preparing a function (deploy time) or invoking one
//! (request time), phrased so that a function author can act on them.

use std::time::Duration;

/// A function could not be prepared: the binary was refused, or compiling or caching failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrepareError {
    /// The bytes are not WebAssembly at all.
    #[error(
        "not a WebAssembly binary: expected the magic bytes \\0asm at the start, found \
         {found:?}{hint}"
    )]
    NotWasm {
        /// The first bytes of the upload, for the message.
        found: String,
        /// What the upload looks like instead and what to do, when that can be told
        /// (starting with `; `), or empty.
        hint: String,
    },
    /// The binary is WebAssembly but of a shape Kindling cannot run.
    #[error("{0}")]
    Unsupported(String),
    /// Wasmtime refused the binary (truncated, malformed, uses unsupported features).
    #[error("invalid WebAssembly: {0}")]
    Invalid(String),
    /// The binary imports something Kindling does not provide.
    #[error("cannot link: {0}")]
    Link(String),
    /// The stored module file could not be read (it was removed or the disk failed).
    #[error(
        "the stored module {path:?} cannot be read: {error}; redeploy the function from its \
         .wasm file, or restore the data directory from a backup"
    )]
    ModuleFile {
        /// The module file.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Reading or writing the compiled-artifact cache failed.
    #[error("compiled-artifact cache {path:?}: {error}")]
    Cache {
        /// The file involved.
        path: std::path::PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The engine itself could not be built (bad configuration).
    #[error("cannot configure the WebAssembly engine: {0}")]
    Engine(String),
}

impl PrepareError {
    /// True when the error is the uploader's fault (bad binary), false for host failures.
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            Self::NotWasm { .. } | Self::Unsupported(_) | Self::Invalid(_) | Self::Link(_)
        )
    }
}

/// An invocation failed. Each variant maps to one HTTP status in the gateway.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum InvokeError {
    /// The request body was larger than the function's limit (413).
    #[error("request body exceeds the function's limit of {limit} bytes")]
    RequestBodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The function wrote more than its response limit (502).
    #[error("response exceeds the function's limit of {limit} bytes")]
    ResponseTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The function did not answer within its deadline (504).
    #[error("the function exceeded its deadline of {0:?}")]
    Timeout(Duration),
    /// The node has no free instance slot (503).
    #[error("the node is at its limit of concurrent instances; retry shortly")]
    AtCapacity,
    /// The guest tried to grow its memory past its limit and failed (500).
    #[error("the function exceeded its memory limit of {} MiB", limit / (1 << 20))]
    MemoryLimit {
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest used up its CPU budget (504).
    #[error("the function used up its CPU budget of {fuel} fuel units")]
    CpuBudget {
        /// The budget.
        fuel: u64,
    },
    /// The guest trapped: `unreachable`, a panic, a stack overflow, an out-of-bounds access
    /// (500). Holds Wasmtime's one-line description of the trap.
    #[error("the function trapped: {0}")]
    Trap(String),
    /// The guest failed before producing a response, other than by trapping (500).
    #[error("the function failed: {0}")]
    Guest(String),
    /// The guest returned without ever setting a response (500).
    #[error("the function returned without sending a response")]
    NoResponse,
    /// A WAGI guest wrote output that is not a CGI response (502).
    #[error("the function wrote an invalid CGI response: {0}")]
    BadCgiResponse(String),
    /// Reading the request body failed (the client went away or sent a broken body) (400).
    #[error("could not read the request body: {0}")]
    RequestBody(String),
    /// Something on the host side failed (500, details only in the log).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Renders a Wasmtime error with its whole chain of causes on one line.
pub(crate) fn chain(err: &wasmtime::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}
