//! The runtime in process, against guests built from source: kind detection and refusals,
//! the artifact cache, and invocations of both function kinds.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kindling_host::{CallChain, FunctionContext, Invocation};
use kindling_runtime::{
    FunctionKind, FunctionSettings, InvokeError, Invoked, Limits, LoadSource, PrepareError,
    RequestInfo, Runtime, RuntimeConfig, UnsupportedImports,
};
use kindling_test_support::{example, test_program};
use serde_json::json;

fn runtime(dir: &std::path::Path) -> Runtime {
    let mut config = RuntimeConfig::default();
    // Small pool: many tests build engines in one process.
    config.max_instances = 16;
    let capabilities = kindling_host::Capabilities::builtin(None);
    Runtime::new(&config, dir.join("artifacts"), capabilities).unwrap()
}

/// Settings with `limits` and the capabilities' `sections` of a configuration.
fn settings(runtime: &Runtime, limits: Limits, sections: serde_json::Value) -> FunctionSettings {
    let sections = serde_json::from_value(sections).unwrap();
    let function = FunctionContext {
        name: "test",
        namespace: "default",
    };
    let configured = runtime
        .capabilities()
        .configure(&sections, &function, &[])
        .unwrap();
    FunctionSettings {
        limits,
        capabilities: Arc::new(configured),
        unsupported_imports: Default::default(),
    }
}

fn plain(runtime: &Runtime) -> FunctionSettings {
    settings(runtime, Limits::default(), json!({}))
}

fn info(script_name: &str) -> RequestInfo {
    RequestInfo {
        invocation: Invocation {
            function: "test".into(),
            namespace: "default".into(),
            request_id: "test-request".into(),
            log: None,
            trace: None,
            chain: CallChain::root(10),
            dispatch: None,
            response_headers: Default::default(),
        },
        script_name: script_name.into(),
        remote_addr: Some("127.0.0.1:40000".parse().unwrap()),
        local_addr: Some("127.0.0.1:3000".parse().unwrap()),
    }
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(path)
        .header("host", "localhost:3000")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn text(invoked: Invoked) -> (u16, String) {
    let response = invoked.response;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

fn prepare(
    runtime: &Runtime,
    wasm: &[u8],
    settings: FunctionSettings,
) -> Result<kindling_runtime::Loaded, PrepareError> {
    let sha = format!("{:x}", wasm.len()) + "-test";
    runtime.prepare(wasm, &sha, settings)
}

#[tokio::test]
async fn components_and_wagi_modules_are_told_apart_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());

    let hello = std::fs::read(example("hello")).unwrap();
    let loaded = prepare(&runtime, &hello, plain(&runtime)).unwrap();
    assert_eq!(loaded.function.kind(), FunctionKind::WasiHttp);
    assert_eq!(loaded.source, LoadSource::Compiled);
    let (status, body) = text(
        loaded
            .function
            .invoke(get("/"), &info("/hello"), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "Hello from Kindling!\n"));

    let wagi = std::fs::read(example("wagi-hello")).unwrap();
    let loaded = prepare(&runtime, &wagi, plain(&runtime)).unwrap();
    assert_eq!(loaded.function.kind(), FunctionKind::Wagi);
    let request = http::Request::post("/some/path?q=1")
        .header("host", "localhost:3000")
        .body(Full::new(Bytes::from_static(b"payload")))
        .unwrap();
    let (status, body) = text(
        loaded
            .function
            .invoke(request, &info("/wagi"), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.contains("method: POST"), "{body}");
    assert!(body.contains("path: /some/path"), "{body}");
    assert!(body.contains("query: q=1"), "{body}");
    assert!(body.contains("body: payload"), "{body}");

    let c = std::fs::read(example("c-hello")).unwrap();
    let loaded = prepare(&runtime, &c, plain(&runtime)).unwrap();
    assert_eq!(loaded.function.kind(), FunctionKind::Wagi);
    let invoked = loaded
        .function
        .invoke(get("/x"), &info("/c"), ())
        .await
        .unwrap();
    assert_eq!(invoked.response.headers()["x-written-in"], "C");
    let (_, body) = text(invoked).await;
    assert!(body.contains("Hello from C on Kindling!"), "{body}");
}

#[tokio::test]
async fn wrong_kinds_are_refused_with_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());

    let command = std::fs::read(test_program("cli-command")).unwrap();
    let err = prepare(&runtime, &command, plain(&runtime)).unwrap_err();
    assert!(err.is_client_error());
    let message = err.to_string();
    assert!(message.contains("wasi:http/incoming-handler"), "{message}");
    assert!(message.contains("wasi:cli command"), "{message}");

    let library = std::fs::read(test_program("core-library")).unwrap();
    let message = prepare(&runtime, &library, plain(&runtime))
        .unwrap_err()
        .to_string();
    assert!(message.contains("no `_start`"), "{message}");

    let hello = std::fs::read(example("hello")).unwrap();
    let truncated = &hello[..hello.len() / 2];
    let err = prepare(&runtime, truncated, plain(&runtime)).unwrap_err();
    assert!(matches!(err, PrepareError::Invalid(_)), "{err}");

    let err = prepare(&runtime, b"<html>not wasm</html>", plain(&runtime)).unwrap_err();
    assert!(
        err.to_string().contains("not a WebAssembly binary"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wagi_module_importing_what_is_not_provided_is_refused_or_traps_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    // `_start` never calls the unknown import: linked to a stand-in, the module serves.
    let module = wat::parse_str(
        r#"(module
            (import "wasi_snapshot_preview1" "fd_write"
                (func $fd_write (param i32 i32 i32 i32) (result i32)))
            (import "env" "llm_infer" (func $infer (param i32) (result i32)))
            (memory (export "memory") 1)
            ;; an iovec at 0 pointing at the text at 16
            (data (i32.const 0) "\10\00\00\00\1c\00\00\00")
            (data (i32.const 16) "Content-Type: text/plain\0a\0aok")
            (func (export "_start")
                (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
            (func $unused (drop (call $infer (i32.const 0)))))"#,
    )
    .unwrap();

    let err = prepare(&runtime, &module, plain(&runtime)).unwrap_err();
    assert!(err.is_client_error(), "{err}");
    let message = err.to_string();
    assert!(message.contains("`env::llm_infer`"), "{message}");
    assert!(message.contains("WASI preview 1"), "{message}");
    assert!(message.contains("--allow-unsupported-imports"), "{message}");

    let mut allowed = plain(&runtime);
    allowed.unsupported_imports = UnsupportedImports::Trap;
    let loaded = prepare(&runtime, &module, allowed).unwrap();
    let (status, body) = text(
        loaded
            .function
            .invoke(get("/"), &info("/wagi"), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}

#[tokio::test]
async fn a_second_runtime_loads_from_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    let wasm_path = example("hello");
    let wasm = std::fs::read(&wasm_path).unwrap();
    {
        let runtime = runtime(dir.path());
        runtime
            .prepare(&wasm, "hello-sha", plain(&runtime))
            .unwrap();
        assert!(runtime.is_cached("hello-sha"));
    }
    let runtime = runtime(dir.path());
    let loaded = runtime
        .load("hello-sha", &wasm_path, plain(&runtime))
        .unwrap();
    assert_eq!(loaded.source, LoadSource::Cache);
    let (status, _) = text(
        loaded
            .function
            .invoke(get("/"), &info(""), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);

    // A corrupt artifact is not trusted: the module is recompiled from its bytes.
    let artifact = std::fs::read_dir(dir.path().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".cwasm"))
        .unwrap();
    // Replace, never truncate in place: a loaded function maps its artifact, and truncating a
    // mapped file would fault the process (the runtime itself always writes by rename).
    std::fs::remove_file(&artifact).unwrap();
    std::fs::write(&artifact, b"garbage").unwrap();
    let loaded = runtime
        .load("hello-sha", &wasm_path, plain(&runtime))
        .unwrap();
    assert_eq!(loaded.source, LoadSource::Compiled);
}

#[tokio::test]
async fn environment_and_request_body_limits_apply() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let wasm = std::fs::read(test_program("http-wasip2")).unwrap();
    let limits = Limits {
        max_request_body_bytes: 10,
        ..Limits::default()
    };
    let settings = settings(&runtime, limits, json!({"env": {"GREETING": "hej"}}));
    let function = prepare(&runtime, &wasm, settings).unwrap().function;

    let (status, body) = text(
        function
            .invoke(get("/env/GREETING"), &info(""), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "hej"));
    let (status, _) = text(
        function
            .invoke(get("/env/HOME"), &info(""), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "the host's environment must not leak in");

    // No Content-Length: the limit fires while the guest reads, before it answers.
    let big = http::Request::post("/consume")
        .header("host", "localhost")
        .body(Full::new(Bytes::from(vec![b'x'; 11])))
        .unwrap();
    let err = function.invoke(big, &info(""), ()).await.unwrap_err();
    assert!(
        matches!(err, InvokeError::RequestBodyTooLarge { limit: 10 }),
        "{err}"
    );
}

#[tokio::test]
async fn a_sleeping_guest_does_not_hold_a_thread_and_deadlines_fire() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime(dir.path());
    let wasm = std::fs::read(test_program("http-wstd")).unwrap();
    let limits = Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let settings = settings(&runtime, limits, json!({}));
    let function = prepare(&runtime, &wasm, settings).unwrap().function;
    let (status, body) = text(
        function
            .invoke(get("/sleep/10"), &info(""), ())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.as_str()), (200, "slept 10 ms\n"));
    let err = function
        .invoke(get("/sleep/60000"), &info(""), ())
        .await
        .unwrap_err();
    assert!(matches!(err, InvokeError::Timeout(_)), "{err}");
}
