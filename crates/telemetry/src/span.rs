//! A span being recorded. It costs a few allocations; with no tracer there is no span at all.

use std::time::SystemTime;

use crate::context::{SpanId, TraceContext};
use crate::export::Tracer;

/// What side of a call a span is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// Handling a request that came in.
    Server,
    /// A request going out.
    Client,
    /// Work inside the node.
    Internal,
}

/// An attribute value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// A flag.
    Bool(bool),
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Str(v.to_string())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Str(v)
    }
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Self::Int(i64::from(v))
    }
}

impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::Float(v)
    }
}

impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// A span: started by [`Tracer::start`], exported when [`Span::end`] is called.
#[derive(Debug)]
pub struct Span {
    pub(crate) tracer: Tracer,
    pub(crate) name: String,
    pub(crate) kind: SpanKind,
    pub(crate) context: TraceContext,
    pub(crate) parent: Option<SpanId>,
    pub(crate) start: SystemTime,
    pub(crate) attributes: Vec<(&'static str, Value)>,
    pub(crate) error: Option<String>,
}

impl Span {
    /// This span as the parent of others (and the `traceparent` of requests it makes).
    pub fn context(&self) -> TraceContext {
        self.context
    }

    /// Sets an attribute (OpenTelemetry semantic-convention names where one exists).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        self.attributes.push((key, value.into()));
    }

    /// Marks the span as failed.
    pub fn fail(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }

    /// Ends the span now and hands it to the exporter.
    pub fn end(self) {
        let tracer = self.tracer.clone();
        tracer.finish(self, SystemTime::now());
    }
}
