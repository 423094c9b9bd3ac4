//! In-process microbenchmarks of guests' state, without HTTP: a whole request to the Spin SDK 5
//! test guest (`test-programs/spin-kv`) that reads or writes a key-value store (SQLite, then a
//! local `redis-server`) or runs a SQLite statement, through the real capabilities.
//!
//! `cargo bench -p kindling-runtime --bench state` (guests built by scripts/build-guests.sh;
//! `redis-server` from Debian, as the tests use).

// criterion_group! generates a public function without documentation.
#![allow(missing_docs)]

use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use kindling_cap_keyvalue::KeyValue;
use kindling_cap_sqlite::Sqlite;
use kindling_cap_variables::Variables;
use kindling_host::{CallChain, Capabilities, FunctionContext, Invocation};
use kindling_runtime::{Function, FunctionSettings, Limits, RequestInfo, Runtime, RuntimeConfig};
use kindling_test_support::{RedisServer, test_program};

fn info() -> RequestInfo {
    RequestInfo {
        invocation: Invocation {
            function: "bench".into(),
            namespace: "default".into(),
            request_id: "bench".into(),
            log: None,
            trace: None,
            chain: CallChain::root(10),
            dispatch: None,
            response_headers: Default::default(),
        },
        script_name: "/bench".into(),
        remote_addr: None,
        local_addr: None,
    }
}

fn request(method: &str, path: &str, body: &'static str) -> http::Request<Full<Bytes>> {
    http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn call(function: &Function, info: &RequestInfo, request: http::Request<Full<Bytes>>) {
    let invoked = function.invoke(request, info, ()).await.unwrap();
    assert_eq!(invoked.response.status(), 200);
    invoked.response.into_body().collect().await.unwrap();
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = RedisServer::start(&redis_dir);
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let wasm = std::fs::read(test_program("spin-kv")).unwrap();
    let info = info();

    for backend in ["sqlite", "redis"] {
        let data = dir.path().join(backend);
        let store = match backend {
            "redis" => format!("type = \"redis\"\nurl = \"{}\"", redis.url()),
            _ => "type = \"spin\"".to_string(),
        };
        let config: toml::Table =
            toml::from_str(&format!("[key_value_store.default]\n{store}\n")).unwrap();
        let capabilities = Capabilities::builtin(None)
            .with(KeyValue::new(data.clone(), Some(&config)).unwrap())
            .with(Sqlite::new(data.clone(), None).unwrap())
            .with(Variables::new(data.clone()));
        let runtime = Runtime::new(
            &RuntimeConfig::default(),
            data.join("artifacts"),
            capabilities,
        )
        .unwrap();
        let sections = serde_json::from_value(serde_json::json!({
            "key_value_stores": ["default"],
            "sqlite_databases": ["default"],
        }))
        .unwrap();
        let function = FunctionContext {
            name: "bench",
            namespace: "default",
        };
        let configured = runtime
            .capabilities()
            .configure(&sections, &function, &[])
            .unwrap();
        let settings = FunctionSettings {
            limits: Limits::default(),
            capabilities: Arc::new(configured),
            unsupported_imports: Default::default(),
        };
        let function = runtime
            .prepare(&wasm, "spin-kv", settings)
            .unwrap()
            .function;
        tokio.block_on(async {
            call(&function, &info, request("PUT", "/set/key", "value")).await;
            let create = "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT)";
            call(&function, &info, request("POST", "/sql2/default", create)).await;
            call(
                &function,
                &info,
                request("POST", "/sql2/default/insert", "first"),
            )
            .await;
        });

        c.bench_function(&format!("key-value get ({backend})"), |b| {
            b.to_async(&tokio)
                .iter(|| call(&function, &info, request("GET", "/get/key", "")))
        });
        c.bench_function(&format!("key-value set ({backend})"), |b| {
            b.to_async(&tokio)
                .iter(|| call(&function, &info, request("PUT", "/set/key", "value")))
        });
        if backend == "sqlite" {
            c.bench_function("SQLite insert", |b| {
                b.to_async(&tokio).iter(|| {
                    call(
                        &function,
                        &info,
                        request("POST", "/sql2/default/insert", "note"),
                    )
                })
            });
            let query = "SELECT body FROM notes WHERE id = 1";
            c.bench_function("SQLite query by primary key", |b| {
                b.to_async(&tokio)
                    .iter(|| call(&function, &info, request("POST", "/sql2/default", query)))
            });
        }
    }
}

criterion_group!(state, benches);
criterion_main!(state);
