//! Distributed tracing over a real node: an OTLP/HTTP receiver in the test process (decoding
//! the OpenTelemetry protocol's own messages) collects what `kindling serve` exports when the
//! standard `OTEL_*` variables point at it. A client's `traceparent` is honoured, and a chain
//! of functions calling each other in process through `http://{name}.fn.local/` is one trace
//! with the right parents and attributes.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kindling_test_support::{Server, example, test_program};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;

use crate::{curl, kindling, path_str};

type Spans = Arc<Mutex<Vec<Span>>>;

/// An OTLP/HTTP receiver on a free port; returns its base URL and what it has received.
async fn receiver() -> (String, Spans) {
    let spans: Spans = Arc::default();
    let store = spans.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: axum::body::Bytes| {
            let store = store.clone();
            async move {
                let request = ExportTraceServiceRequest::decode(body).expect("OTLP protobuf");
                let mut store = store.lock().unwrap();
                for resource in request.resource_spans {
                    let service = resource
                        .resource
                        .iter()
                        .flat_map(|r| &r.attributes)
                        .find(|a| a.key == "service.name")
                        .and_then(|a| a.value.clone())
                        .and_then(|v| v.value);
                    assert_eq!(service, Some(Value::StringValue("kindling-e2e".into())));
                    for scope in resource.scope_spans {
                        store.extend(scope.spans);
                    }
                }
                ""
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), spans)
}

fn attribute<'a>(span: &'a Span, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref())
        .and_then(|v| v.value.as_ref())
}

fn text(span: &Span, key: &str) -> String {
    match attribute(span, key) {
        Some(Value::StringValue(v)) => v.clone(),
        other => panic!("{key} of {:?}: {other:?}", span.name),
    }
}

/// Waits until the receiver holds `count` spans of `trace`.
fn spans_of(spans: &Spans, trace: &[u8], count: usize) -> Vec<Span> {
    let what = format!("{count} spans of the trace arriving");
    kindling_test_support::wait_for(&what, Duration::from_millis(50), || {
        let found: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect();
        if found.len() >= count {
            Ok(found)
        } else {
            Err(format!("{found:#?}"))
        }
    })
}

fn one<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    let matching: Vec<&Span> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(matching.len(), 1, "spans named {name:?} in {spans:#?}");
    matching[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chain_of_functions_is_one_trace() {
    let (endpoint, spans) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", "kindling-e2e"),
        ],
    );
    let caller = test_program("hostile-http");
    let deploy = |args: &[&str]| {
        tokio::task::block_in_place(|| server.cli(args).ok().to_string());
    };
    deploy(&[
        "deploy",
        "a",
        path_str(&caller),
        "--allow-outbound",
        "http://b.fn.local",
    ]);
    deploy(&[
        "deploy",
        "b",
        path_str(&caller),
        "--allow-outbound",
        "http://*.fn.local",
    ]);
    deploy(&["deploy", "c", path_str(&example("hello"))]);

    // The client's own trace: the node's spans join it.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let response = reqwest::Client::new()
        .get(server.url("/a/outbound?b.fn.local/outbound?c.fn.local"))
        .header("traceparent", format!("00-{client_trace}-{client_span}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.text().await.unwrap();
    assert_eq!(body, "status: 200\n", "a got b's answer, which got c's");

    let trace = hex::decode(client_trace).unwrap();
    let found = tokio::task::block_in_place(|| spans_of(&spans, &trace, 5));
    assert_eq!(found.len(), 5, "{found:#?}");
    let server_a = one(&found, "GET /a");
    let call_b = one(&found, "GET b.fn.local");
    let server_b = one(&found, "GET /b");
    let call_c = one(&found, "GET c.fn.local");
    let server_c = one(&found, "GET /c");
    assert_eq!(server_a.parent_span_id, hex::decode(client_span).unwrap());
    assert_eq!(call_b.parent_span_id, server_a.span_id);
    assert_eq!(server_b.parent_span_id, call_b.span_id);
    assert_eq!(call_c.parent_span_id, server_b.span_id);
    assert_eq!(server_c.parent_span_id, call_c.span_id);
    for (span, function) in [(server_a, "a"), (server_b, "b"), (server_c, "c")] {
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(text(span, "kindling.function"), function);
        assert_eq!(
            attribute(span, "kindling.function.version"),
            Some(&Value::IntValue(1))
        );
        assert_eq!(
            attribute(span, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
        assert!(matches!(
            attribute(span, "kindling.cold_start"),
            Some(Value::BoolValue(_))
        ));
        assert!(
            matches!(attribute(span, "kindling.instantiate_ms"), Some(Value::DoubleValue(ms)) if *ms > 0.0),
            "{span:#?}"
        );
    }
    for (span, host) in [(call_b, "b.fn.local"), (call_c, "c.fn.local")] {
        assert_eq!(span.kind, SpanKind::Client as i32);
        assert_eq!(text(span, "server.address"), host);
        assert_eq!(
            attribute(span, "http.response.status_code"),
            Some(&Value::IntValue(200))
        );
    }
    // Each span lies within its parent's time.
    assert!(server_a.start_time_unix_nano <= call_b.start_time_unix_nano);
    assert!(call_b.end_time_unix_nano <= server_a.end_time_unix_nano);

    // Without a traceparent a request starts its own trace.
    let status = reqwest::get(server.url("/c/")).await.unwrap().status();
    assert_eq!(status, 200);
    let started = Instant::now();
    loop {
        let roots: Vec<Span> = spans
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.name == "GET /c" && s.trace_id != trace)
            .cloned()
            .collect();
        if let Some(root) = roots.first() {
            assert!(root.parent_span_id.is_empty(), "{root:#?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no root span");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[test]
fn an_unsupported_otlp_protocol_is_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(kindling())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4317")
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("OTEL_EXPORTER_OTLP_PROTOCOL=\"grpc\"")
            && stderr.contains("set http/protobuf"),
        "{stderr}"
    );
}

#[test]
fn a_function_calling_itself_in_a_loop_is_stopped_at_the_depth_limit() {
    let (_dir, server) = crate::fresh_server(&[]);
    let caller = test_program("hostile-http");
    server
        .cli(&[
            "deploy",
            "loop",
            path_str(&caller),
            "--allow-outbound",
            "http://loop.fn.local",
        ])
        .ok();
    // Twelve calls deep if nothing stopped it: `loop` asks `loop` to ask `loop`, and so on.
    let path = format!("/loop/outbound?{}", "loop.fn.local/outbound?".repeat(12));
    let get = |url: String| curl(&["-sS", "-w", "\n%{http_code}", &url]).unwrap();
    assert_eq!(get(server.url(&path)), "status: 200\n\n200");
    let metrics = get(server.url("/metrics"));
    // The ninth call in process was refused with 508; everyone above it answered.
    assert!(
        metrics.contains(r#"kindling_requests_total{class="5xx",function="loop",version="1"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"kindling_requests_total{class="2xx",function="loop",version="1"} 9"#),
        "{metrics}"
    );
}
