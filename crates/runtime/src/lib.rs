//! Kindling's WebAssembly runtime.
//!
//! It turns uploaded bytes into a [`Function`] — a `wasi:http/proxy` component or a WAGI
//! module, told apart from the binary itself — and runs each request in a fresh instance
//! taken from Wasmtime's pooling allocator, with the function's limits and whatever its
//! capabilities (`kindling-host`) prepare for the instance.
//! Compiled code is cached on disk by content hash and engine configuration, so a restarted
//! node serves without recompiling.

mod artifact;
mod config;
mod error;
mod executor;
mod function;
mod http;
mod invocation;
mod kind;
mod runtime;
mod store;
mod wagi;

pub use config::{FunctionSettings, Limits, RuntimeConfig};
pub use error::{InvokeError, PrepareError};
pub use function::Function;
pub use invocation::{Invoked, RequestInfo};
pub use kind::FunctionKind;
pub use runtime::{LoadSource, Loaded, Runtime};
