//! In-process microbenchmarks of the runtime, without HTTP: a whole request to the hello
//! component (new store, instantiate, handle, body, drop), the same for the WASI 0.3 hello
//! (spin-sdk 7) and the C WAGI module, and a
//! cold start from the compiled-artifact cache (map, link, pre-instantiate).
//!
//! `cargo bench -p kindling-runtime` (guests built by scripts/build-guests.sh).

// criterion_group! generates a public function without documentation.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use kindling_host::{CallChain, Capabilities, FunctionContext, Invocation};
use kindling_runtime::{FunctionSettings, Limits, RequestInfo, Runtime, RuntimeConfig};
use kindling_test_support::example;

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("/")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

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

fn settings(runtime: &Runtime) -> FunctionSettings {
    let function = FunctionContext {
        name: "bench",
        namespace: "default",
    };
    let configured = runtime
        .capabilities()
        .configure(&Default::default(), &function, &[])
        .unwrap();
    FunctionSettings {
        limits: Limits::default(),
        capabilities: std::sync::Arc::new(configured),
        unsupported_imports: Default::default(),
    }
}

fn benches(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let runtime = Runtime::new(
        &RuntimeConfig::default(),
        dir.path().join("artifacts"),
        Capabilities::builtin(None),
    )
    .unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    for (name, file) in [
        ("hello component", "hello"),
        ("hello component, WASI 0.3", "hello-p3"),
        ("c wagi module", "c-hello"),
    ] {
        let wasm = std::fs::read(example(file)).unwrap();
        let function = runtime
            .prepare(&wasm, file, settings(&runtime))
            .unwrap()
            .function;
        let info = info();
        c.bench_function(&format!("whole request: {name}"), |b| {
            b.to_async(&tokio).iter(|| async {
                let invoked = function.invoke(request(), &info, ()).await.unwrap();
                invoked
                    .response
                    .into_body()
                    .collect()
                    .await
                    .unwrap()
                    .to_bytes()
            })
        });
    }

    let path = example("hello");
    c.bench_function("cold start from the artifact cache: hello component", |b| {
        b.iter(|| runtime.load("hello", &path, settings(&runtime)).unwrap())
    });
}

criterion_group!(runtime, benches);
criterion_main!(runtime);
