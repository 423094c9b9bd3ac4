//! Kindling's WebAssembly runtime.
//!
//! It turns uploaded bytes into a [`Function`] — a `wasi:http` component (WASI 0.2's
//! `wasi:http/proxy` or WASI 0.3's `wasi:http/service`) or a WAGI module, told apart from the binary itself — and runs each request in a fresh instance
//! taken from Wasmtime's pooling allocator, with the function's limits and whatever its
//! capabilities (`kindling-host`) prepare for the instance.
//! Compiled code is cached on disk by content hash and engine configuration, so a restarted
//! node serves without recompiling.

mod artifact;
mod config;
mod error;
mod exchange;
mod executor;
mod function;
mod http;
mod http_p3;
mod imports;
mod invocation;
mod kind;
mod runtime;
mod store;
mod wagi;

pub use config::{FunctionSettings, Limits, RuntimeConfig, UnsupportedImports};
pub use error::{InvokeError, PrepareError};
pub use executor::Placement;
pub use function::Function;
pub use invocation::{Invoked, RequestInfo};
pub use kind::FunctionKind;
pub use runtime::{LoadSource, Loaded, Runtime};
