//! The gateway driven in process (`app().oneshot(request)`): deploys, invocations, errors a
//! user would see, host routing, and the OpenAPI document checked against the real routes.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use kindling_gateway::{GatewayConfig, app, openapi_document};
use kindling_node::{Node, NodeConfig};
use kindling_test_support::{example, test_program};
use serde_json::Value;
use tower::ServiceExt;

struct Harness {
    _dir: tempfile::TempDir,
    app: Router,
}

async fn harness(config: GatewayConfig) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let mut node_config = NodeConfig::new(dir.path().to_path_buf());
    node_config.runtime.max_instances = 16;
    node_config.admission.max_in_flight = 16;
    let node: Arc<Node> = Node::open(node_config).await.unwrap();
    Harness {
        _dir: dir,
        app: app(node, config),
    }
}

impl Harness {
    async fn send(&self, request: Request<Body>) -> (StatusCode, http::HeaderMap, Bytes) {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body)
    }

    async fn json(&self, method: Method, uri: &str, body: impl Into<Body>) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .body(body.into())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        let value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        (status, value)
    }

    async fn deploy(&self, name: &str, wasm: Vec<u8>) -> (StatusCode, Value) {
        self.json(
            Method::POST,
            &format!("/v1/functions/{name}/versions"),
            wasm,
        )
        .await
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let request = Request::get(uri)
            .header("host", "localhost")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = self.send(request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

fn read(path: std::path::PathBuf) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

#[tokio::test]
async fn deploy_invoke_inspect_roll_back_delete() {
    let h = harness(GatewayConfig::default()).await;
    let (status, body) = h.deploy("hello", read(example("hello"))).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["version"]["version"], 1);
    assert_eq!(body["version"]["kind"], "wasi-http");
    assert_eq!(body["load"]["source"], "compiled");

    let (status, text) = h.get("/hello/").await;
    assert_eq!(
        (status, text.as_str()),
        (StatusCode::OK, "Hello from Kindling!\n")
    );
    let (status, text) = h.get("/hello/anything?x=1").await;
    assert_eq!(status, StatusCode::OK);
    assert!(text.contains("path: /anything?x=1"), "{text}");

    let (status, body) = h.deploy("hello", read(example("hello"))).await;
    assert_eq!(status, StatusCode::OK, "same bytes: unchanged");
    assert_eq!(body["unchanged"], true);

    let (status, _) = h.deploy("hello", read(example("wagi-hello"))).await;
    assert_eq!(status, StatusCode::CREATED);
    assert!(h.get("/hello/").await.1.contains("WAGI"));

    let (status, body) = h
        .json(Method::GET, "/v1/functions/hello", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["active_version"], 2);
    assert_eq!(body["state"], "warm");
    assert_eq!(body["stats"]["invocations"], 3, "counters span versions");
    assert_eq!(body["kind"], "wagi");

    let (status, body) = h
        .json(Method::POST, "/v1/functions/hello/rollback", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["active_version"], 1);
    assert_eq!(h.get("/hello/").await.1, "Hello from Kindling!\n");

    let (status, body) = h
        .json(
            Method::POST,
            "/v1/functions/hello/rollback",
            r#"{"version": 9}"#,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no version 9"),
        "{body}"
    );
    let (status, _) = h
        .json(Method::POST, "/v1/functions/hello/rollback", Body::empty())
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "version 1 has nothing before it"
    );

    let (status, body) = h
        .json(Method::GET, "/v1/functions/hello/versions", Body::empty())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["versions"].as_array().unwrap().len(), 2);

    let (status, _) = h
        .json(Method::DELETE, "/v1/functions/hello", Body::empty())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = h.get("/hello/").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = h.json(Method::GET, "/v1/functions", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["functions"], serde_json::json!([]));
}

#[tokio::test]
async fn multipart_deploys_carry_config() {
    let h = harness(GatewayConfig::default()).await;
    let boundary = "kindling-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\nContent-Type: application/json\r\n\r\n").as_bytes());
    body.extend_from_slice(br#"{"env": {"GREETING": "hej"}, "limits": {"timeout_ms": 5000}}"#);
    body.extend_from_slice(format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"module\"; filename=\"f.wasm\"\r\nContent-Type: application/wasm\r\n\r\n").as_bytes());
    body.extend_from_slice(&read(test_program("http-wasip2")));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post("/v1/functions/env/versions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["version"]["config"]["env"]["GREETING"], "hej");
    assert_eq!(body["version"]["config"]["limits"]["timeout_ms"], 5000);
    assert_eq!(h.get("/env/env/GREETING").await.1, "hej");

    // A typo in the config is refused, not ignored.
    let bad = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{{\"evn\": {{}}}}\r\n--{boundary}--\r\n"
    );
    let request = Request::post("/v1/functions/env/versions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(bad))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&body).contains("unknown field `evn`"));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let h = harness(GatewayConfig {
        max_module_bytes: 1 << 20,
        ..GatewayConfig::default()
    })
    .await;
    assert_eq!(
        h.deploy("keep", read(example("hello"))).await.0,
        StatusCode::CREATED
    );

    let hello = read(example("hello"));
    let cases: Vec<(&str, Vec<u8>, StatusCode, &str)> = vec![
        (
            "keep",
            b"hello world".to_vec(),
            StatusCode::BAD_REQUEST,
            "not a WebAssembly binary",
        ),
        (
            "keep",
            hello[..hello.len() / 3].to_vec(),
            StatusCode::BAD_REQUEST,
            "invalid WebAssembly",
        ),
        (
            "keep",
            read(test_program("cli-command")),
            StatusCode::BAD_REQUEST,
            "wasi:http/incoming-handler",
        ),
        (
            "keep",
            read(test_program("core-library")),
            StatusCode::BAD_REQUEST,
            "_start",
        ),
        ("keep", Vec::new(), StatusCode::BAD_REQUEST, "empty"),
        (
            "keep",
            vec![0u8; (1 << 20) + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
            "limit of 1048576 bytes",
        ),
        (
            "Bad_Name",
            hello.clone(),
            StatusCode::BAD_REQUEST,
            "invalid function name",
        ),
        ("v1", hello.clone(), StatusCode::BAD_REQUEST, "reserved"),
    ];
    for (name, wasm, status, needle) in cases {
        let (got, body) = h.deploy(name, wasm).await;
        assert_eq!(got, status, "{name}: {body}");
        let message = body["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(needle),
            "{name}: {needle:?} not in {message:?}"
        );
        assert_eq!(
            h.get("/keep/").await.1,
            "Hello from Kindling!\n",
            "previous version serves"
        );
    }
    let (_, body) = h
        .json(Method::GET, "/v1/functions/keep/versions", Body::empty())
        .await;
    assert_eq!(body["versions"].as_array().unwrap().len(), 1);

    let (status, body) = h.json(Method::GET, "/nope/x", Body::empty()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "function_not_found");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("kindling deploy nope"), "{message}");
    assert!(body["error"]["request_id"].is_string());

    let (status, body) = h
        .json(Method::GET, "/v1/functions/nope", Body::empty())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no function named")
    );
    let (status, _) = h
        .json(Method::POST, "/v1/functions/nope/rollback", Body::empty())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn request_bodies_over_the_limit_get_413() {
    let h = harness(GatewayConfig::default()).await;
    let boundary = "b";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{{\"limits\": {{\"max_request_body_bytes\": 100}}}}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"module\"\r\n\r\n").as_bytes());
    body.extend_from_slice(&read(test_program("http-wasip2")));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post("/v1/functions/small/versions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    assert_eq!(h.send(request).await.0, StatusCode::CREATED);

    let request = Request::post("/small/echo")
        .header("host", "localhost")
        .body(Body::from(vec![b'a'; 101]))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(String::from_utf8_lossy(&body).contains("limit of 100 bytes"));

    let request = Request::post("/small/echo")
        .header("host", "localhost")
        .body(Body::from(vec![b'a'; 100]))
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!((status, body.len()), (StatusCode::OK, 100));
}

#[tokio::test]
async fn host_names_route_to_functions_with_the_whole_path() {
    let h = harness(GatewayConfig {
        domain: Some("fn.example.com".into()),
        ..GatewayConfig::default()
    })
    .await;
    assert_eq!(
        h.deploy("hello", read(example("hello"))).await.0,
        StatusCode::CREATED
    );
    let request = Request::get("/v1/anything")
        .header("host", "hello.fn.example.com:8080")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = h.send(request).await;
    assert_eq!(status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&body).contains("path: /v1/anything"));
    // Other hosts still reach the admin API.
    let (status, _) = h.json(Method::GET, "/v1/functions", Body::empty()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn health_and_readiness() {
    let h = harness(GatewayConfig::default()).await;
    assert_eq!(h.get("/healthz").await.0, StatusCode::OK);
    assert_eq!(h.get("/readyz").await.0, StatusCode::OK);
}

/// Every operation in the OpenAPI document is routed (not answered `no_such_route` or 405),
/// and every method the document leaves out of a documented admin path is not routed.
#[tokio::test]
async fn openapi_document_matches_the_routes() {
    let h = harness(GatewayConfig::default()).await;
    let doc = openapi_document(&kindling_host::Capabilities::builtin(None));
    let paths = doc["paths"].as_object().unwrap();
    assert!(paths.contains_key("/v1/functions/{name}/versions"));
    let all = ["get", "post", "put", "delete", "patch"];
    for (path, item) in paths {
        let concrete = path
            .replace("{name}", "nosuchfn")
            .replace("{function}", "nosuchfn")
            .replace("{path}", "x");
        for method in all {
            let documented = item.get(method).is_some();
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("host", "localhost")
                .body(Body::empty())
                .unwrap();
            let (status, _, body) = h.send(request).await;
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let routed = status != StatusCode::METHOD_NOT_ALLOWED
                && body["error"]["code"] != "no_such_route";
            if documented {
                assert!(
                    routed,
                    "{method} {path} is documented but not routed ({status} {body})"
                );
            } else if path.starts_with("/v1/") {
                assert!(
                    !routed,
                    "{method} {path} is routed but not documented ({status})"
                );
            }
        }
    }
}

/// Every property the API returns for a function is in the OpenAPI schema, at every level.
#[tokio::test]
async fn returned_documents_use_only_documented_properties() {
    let h = harness(GatewayConfig::default()).await;
    let boundary = "b";
    let config = r#"{"env": {"A": "b"}, "priority": "batch", "namespace": "team-a",
        "limits": {"memory_bytes": 67108864, "timeout_ms": 1000, "max_concurrency": 2,
                   "queue_len": 3, "queue_timeout_ms": 100, "max_request_body_bytes": 10,
                   "max_response_body_bytes": 1000},
        "allowed_outbound_hosts": ["https://api.example.com"]}"#;
    let mut body = format!("--{boundary}\r\nContent-Disposition: form-data; name=\"config\"\r\n\r\n{config}\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"module\"\r\n\r\n").into_bytes();
    body.extend_from_slice(&read(example("hello")));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let request = Request::post("/v1/functions/documented/versions")
        .header(
            "content-type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .body(Body::from(body))
        .unwrap();
    let (status, _, deployed) = h.send(request).await;
    assert_eq!(status, StatusCode::CREATED);
    let deployed: Value = serde_json::from_slice(&deployed).unwrap();
    h.get("/documented/").await;
    let (_, function) = h
        .json(Method::GET, "/v1/functions/documented", Body::empty())
        .await;

    let doc = openapi_document(&kindling_host::Capabilities::builtin(None));
    let schemas = &doc["components"]["schemas"];
    let check = |value: &Value, schema: &str| {
        let properties = schemas[schema]["properties"].as_object().unwrap();
        for key in value.as_object().unwrap().keys() {
            assert!(
                properties.contains_key(key),
                "{schema}.{key} is returned but not documented"
            );
        }
    };
    check(&function, "Function");
    check(&function["config"], "Config");
    check(&function["config"]["limits"], "Limits");
    check(&function["stats"], "Stats");
    check(&function["load"], "Load");
    check(&deployed, "Deploy");
    check(&deployed["version"], "Version");
}
