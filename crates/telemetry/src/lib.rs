//! Kindling's distributed tracing, kept small and on the hot path's terms.
//!
//! - [`TraceContext`]: the W3C `traceparent` header, read from a request and written into the
//!   requests a function makes, so a chain of calls is one trace.
//! - [`Tracer`] and [`Span`]: a span is a name, a kind, a parent, times and attributes; a
//!   finished span goes to a channel and a background task exports batches over OTLP/HTTP
//!   (protobuf), built from the OpenTelemetry protocol definitions.
//! - [`Tracer::from_env`] reads the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_PROTOCOL`,
//!   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME`, `OTEL_SDK_DISABLED`,
//!   `OTEL_TRACES_EXPORTER`). With none set there is no tracer, and a request pays nothing.
//! - [`ProcessStats`]: what `/proc` says about a process, for the `process_*` metrics and the
//!   benchmarks' samplers.

mod context;
mod export;
mod process;
mod span;

pub use context::{SpanId, TraceContext, TraceId};
pub use export::{TelemetryError, Tracer};
pub use process::{Pid, ProcessStats};
pub use span::{Span, SpanKind, Value};
