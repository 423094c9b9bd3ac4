//! The exporter: finished spans go through a bounded channel to a task that sends batches to
//! the collector as OTLP/HTTP protobuf (`POST {endpoint}/v1/traces`). When the collector is
//! slow or gone, spans are dropped (and counted in the log), never queued without bound and
//! never waited for by a request.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status, span, status};
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::context::{SpanId, TraceContext, TraceId};
use crate::span::{Span, SpanKind, Value};

/// Spans waiting for export at most; more are dropped.
const QUEUE: usize = 8192;
/// Spans per request to the collector at most.
const BATCH: usize = 512;
/// How long a finished span waits for others to share its request.
const LINGER: Duration = Duration::from_millis(500);

/// Why tracing could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A variable holds something this exporter cannot do.
    #[error("{variable}={value:?}: {problem}")]
    Unsupported {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What to do instead.
        problem: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the OTLP HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

enum Command {
    Span(Box<opentelemetry_proto::tonic::trace::v1::Span>),
    Flush(oneshot::Sender<()>),
}

/// Starts spans and exports them. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Tracer {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    sender: mpsc::Sender<Command>,
    dropped: AtomicU64,
}

impl Tracer {
    /// A tracer configured from the standard `OTEL_*` variables, or `None` when no OTLP
    /// endpoint is set (or tracing is disabled). Must be called inside a Tokio runtime.
    pub fn from_env() -> Result<Option<Self>, TelemetryError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        if let Some(exporter) = var("OTEL_TRACES_EXPORTER") {
            match exporter.as_str() {
                "none" => return Ok(None),
                "otlp" => {}
                _ => {
                    return Err(TelemetryError::Unsupported {
                        variable: "OTEL_TRACES_EXPORTER",
                        value: exporter,
                        problem: "Kindling exports traces over OTLP only: use otlp or none".into(),
                    });
                }
            }
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal-specific variable is the full URL; the generic one is a base.
            (Some(url), _) => url,
            (None, Some(base)) => format!("{}/v1/traces", base.trim_end_matches('/')),
            (None, None) => return Ok(None),
        };
        for variable in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = var(variable) {
                if protocol != "http/protobuf" {
                    return Err(TelemetryError::Unsupported {
                        variable: if variable.contains("TRACES") {
                            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
                        } else {
                            "OTEL_EXPORTER_OTLP_PROTOCOL"
                        },
                        value: protocol,
                        problem: "Kindling sends OTLP over HTTP with protobuf bodies: set \
                                  http/protobuf (collectors accept it on port 4318)"
                            .into(),
                    });
                }
                break;
            }
        }
        let mut headers = reqwest::header::HeaderMap::new();
        for variable in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            for pair in var(variable).unwrap_or_default().split(',') {
                let Some((name, value)) = pair.split_once('=') else {
                    continue;
                };
                let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                    reqwest::header::HeaderValue::from_str(value.trim()),
                ) else {
                    return Err(TelemetryError::Unsupported {
                        variable,
                        value: pair.to_string(),
                        problem: "headers are name=value pairs separated by commas".into(),
                    });
                };
                headers.insert(name, value);
            }
        }
        let service = var("OTEL_SERVICE_NAME").unwrap_or_else(|| "kindling".into());
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Some(Self::with_client(client, endpoint, service)))
    }

    fn with_client(client: reqwest::Client, endpoint: String, service: String) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(run(receiver, client, endpoint, service));
        Self {
            inner: Arc::new(Inner {
                sender,
                dropped: AtomicU64::new(0),
            }),
        }
    }

    /// Starts a span: a child of `parent` (in the same trace, sampled as the parent asked),
    /// or the root of a new sampled trace.
    pub fn start(
        &self,
        name: impl Into<String>,
        kind: SpanKind,
        parent: Option<TraceContext>,
    ) -> Span {
        let context = TraceContext {
            trace_id: parent.map_or_else(TraceId::random, |p| p.trace_id),
            span_id: SpanId::random(),
            sampled: parent.is_none_or(|p| p.sampled),
        };
        Span {
            tracer: self.clone(),
            name: name.into(),
            kind,
            context,
            parent: parent.map(|p| p.span_id),
            start: SystemTime::now(),
            attributes: Vec::new(),
            error: None,
        }
    }

    pub(crate) fn finish(&self, span: Span, end: SystemTime) {
        if !span.context.sampled {
            return;
        }
        let record = Box::new(encode(span, end));
        if self.inner.sender.try_send(Command::Span(record)).is_err() {
            let dropped = self.inner.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "the trace exporter is behind; spans were dropped");
            }
        }
    }

    /// Sends every span finished so far and waits until the collector has answered for them.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.inner.sender.send(Command::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn attribute(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(v) => any_value::Value::StringValue(v),
        Value::Int(v) => any_value::Value::IntValue(v),
        Value::Float(v) => any_value::Value::DoubleValue(v),
        Value::Bool(v) => any_value::Value::BoolValue(v),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn encode(span: Span, end: SystemTime) -> opentelemetry_proto::tonic::trace::v1::Span {
    let kind = match span.kind {
        SpanKind::Server => span::SpanKind::Server,
        SpanKind::Client => span::SpanKind::Client,
        SpanKind::Internal => span::SpanKind::Internal,
    };
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: span.context.trace_id.0.to_vec(),
        span_id: span.context.span_id.0.to_vec(),
        parent_span_id: span.parent.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: 1,
        name: span.name,
        kind: kind as i32,
        start_time_unix_nano: nanos(span.start),
        end_time_unix_nano: nanos(end),
        attributes: span
            .attributes
            .into_iter()
            .map(|(k, v)| attribute(k, v))
            .collect(),
        status: Some(match span.error {
            Some(message) => Status {
                message,
                code: status::StatusCode::Error as i32,
            },
            None => Status {
                message: String::new(),
                code: status::StatusCode::Unset as i32,
            },
        }),
        ..Default::default()
    }
}

async fn run(
    mut receiver: mpsc::Receiver<Command>,
    client: reqwest::Client,
    endpoint: String,
    service: String,
) {
    let mut batch = Vec::new();
    let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
    loop {
        // `None`: the linger time passed; `Some(None)`: every tracer is gone.
        let next = if batch.is_empty() {
            Some(receiver.recv().await)
        } else {
            tokio::time::timeout(LINGER, receiver.recv()).await.ok()
        };
        let closed = matches!(next, Some(None));
        let lingered = next.is_none();
        match next {
            Some(Some(Command::Span(span))) => batch.push(*span),
            Some(Some(Command::Flush(done))) => waiting.push(done),
            _ => {}
        }
        let due = closed || lingered || !waiting.is_empty() || batch.len() >= BATCH;
        if due && !batch.is_empty() {
            send(&client, &endpoint, &service, std::mem::take(&mut batch)).await;
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
        if closed {
            return;
        }
    }
}

async fn send(
    client: &reqwest::Client,
    endpoint: &str,
    service: &str,
    spans: Vec<opentelemetry_proto::tonic::trace::v1::Span>,
) {
    let count = spans.len();
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attribute("service.name", Value::Str(service.to_string())),
                    attribute(
                        "service.version",
                        Value::Str(env!("CARGO_PKG_VERSION").into()),
                    ),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "kindling".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let result = client
        .post(endpoint)
        .header(reqwest::header::CONTENT_TYPE, "application/x-protobuf")
        .body(request.encode_to_vec())
        .send()
        .await;
    match result {
        Ok(response) if response.status().is_success() => {}
        Ok(response) => {
            tracing::warn!(status = %response.status(), spans = count, endpoint, "the OTLP collector refused spans")
        }
        Err(err) => {
            tracing::warn!(error = %err, spans = count, endpoint, "cannot send spans to the OTLP collector")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spans_reach_the_collector_with_their_parents_and_attributes() {
        let (sender, mut received) = mpsc::unbounded_channel();
        let collector = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let sender = sender.clone();
                async move {
                    sender
                        .send(ExportTraceServiceRequest::decode(body).unwrap())
                        .unwrap();
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, collector).await });
        let tracer = Tracer::with_client(
            reqwest::Client::new(),
            format!("http://{addr}/v1/traces"),
            "test-service".into(),
        );

        let incoming =
            TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
        let mut server = tracer.start("GET /hello", SpanKind::Server, incoming);
        server.set("kindling.function", "hello");
        let mut client = tracer.start("GET example.com", SpanKind::Client, Some(server.context()));
        client.fail("connection refused");
        client.end();
        server.end();
        // Not sampled by the caller: not exported.
        tracer
            .start(
                "ignored",
                SpanKind::Server,
                TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"),
            )
            .end();
        tracer.flush().await;

        let request = received.recv().await.unwrap();
        let resource = &request.resource_spans[0];
        let service = &resource.resource.as_ref().unwrap().attributes[0];
        assert_eq!(service.key, "service.name");
        let spans = &resource.scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        let (client, server) = (&spans[0], &spans[1]);
        assert_eq!(server.name, "GET /hello");
        assert_eq!(server.kind, span::SpanKind::Server as i32);
        assert_eq!(server.trace_id, incoming.unwrap().trace_id.0.to_vec());
        assert_eq!(server.parent_span_id, incoming.unwrap().span_id.0.to_vec());
        assert_eq!(client.parent_span_id, server.span_id);
        assert_eq!(client.trace_id, server.trace_id);
        assert_eq!(
            client.status.as_ref().unwrap().code,
            status::StatusCode::Error as i32
        );
        assert_eq!(server.attributes[0].key, "kindling.function");
        assert!(server.end_time_unix_nano >= server.start_time_unix_nano);
    }
}
