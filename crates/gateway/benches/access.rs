//! What access control costs per request, in process (`app().oneshot`, no socket): the hello
//! component through the whole gateway and node, without an access layer, with one (a public
//! function), with a function that needs an `invoke` token, and with the example per-path
//! authorization policy; and the two checks alone (a token, a policy decision).
//!
//! `cargo bench -p kindling-gateway --bench access` (guests built by scripts/build-guests.sh).

// criterion_group! generates a public function without documentation.
#![allow(missing_docs)]

use std::sync::Arc;

use axum::body::Body;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use kindling_access::{Access, AuthMode, AuthzInput, AuthzSource, Caller, NewTokenRequest, Scope};
use kindling_gateway::{GatewayConfig, app};
use kindling_node::{Node, NodeConfig};
use kindling_registry::{FunctionConfig, InvokeAuth, SqliteCatalog};
use kindling_test_support::{example, repo_root};
use tower::ServiceExt;

// The allocator `kindling` itself runs on: regorus allocates on every decision, and glibc's
// malloc costs several times more for it across threads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Setup {
    _dir: tempfile::TempDir,
    plain: axum::Router,
    guarded: axum::Router,
    authz: axum::Router,
    token: String,
    access: Arc<Access>,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let catalog = Arc::new(SqliteCatalog::open(dir.path()).await.unwrap());
    let access = Access::open(catalog.clone(), AuthMode::Token, vec![])
        .await
        .unwrap();
    let mut config = NodeConfig::new(dir.path().to_path_buf());
    config.quota = Some(access.quota());
    let node = Node::open_with(config, catalog).await.unwrap();
    let hello = bytes::Bytes::from(std::fs::read(example("hello")).unwrap());
    node.deploy("hello", hello.clone(), FunctionConfig::default())
        .await
        .unwrap();
    let private = FunctionConfig {
        auth: Some(InvokeAuth::Token),
        ..FunctionConfig::default()
    };
    node.deploy("private", hello, private).await.unwrap();
    let made = access
        .create_token(
            &Caller::Open,
            NewTokenRequest {
                name: "bench".into(),
                namespace: None,
                scopes: vec![Scope::Invoke],
                expires_in_seconds: None,
            },
        )
        .await
        .unwrap();
    let plain = app(node.clone(), GatewayConfig::default());
    let guarded = app(
        node.clone(),
        GatewayConfig {
            access: Some(access.clone()),
            ..GatewayConfig::default()
        },
    );
    // The authz policy lives in a second access layer over another registry, so that the
    // first stays policy-free.
    let policy_dir = tempfile::tempdir().unwrap();
    let policy_store = Arc::new(SqliteCatalog::open(policy_dir.path()).await.unwrap());
    let with_policy = Access::open(policy_store, AuthMode::Token, vec![])
        .await
        .unwrap();
    with_policy
        .load_policy_dir(&repo_root().join("examples/policies"))
        .await
        .unwrap();
    std::mem::forget(policy_dir);
    let authz = app(
        node,
        GatewayConfig {
            access: Some(with_policy),
            ..GatewayConfig::default()
        },
    );
    Setup {
        _dir: dir,
        plain,
        guarded,
        authz,
        token: made.token,
        access,
    }
}

async fn get(app: &axum::Router, path: &str, token: Option<&str>) {
    let mut request = http::Request::get(path).header("host", "localhost");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let response = app
        .clone()
        .oneshot(request.body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.into_body().collect().await.unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let setup = rt.block_on(setup());
    // Warm every path once (the first request loads the code).
    rt.block_on(async {
        get(&setup.plain, "/hello/", None).await;
        get(&setup.guarded, "/private/", Some(&setup.token)).await;
        get(&setup.authz, "/hello/", None).await;
    });
    let mut group = c.benchmark_group("request");
    group.bench_function("hello, no access layer", |b| {
        b.to_async(&rt).iter(|| get(&setup.plain, "/hello/", None))
    });
    group.bench_function("hello, access layer, public function", |b| {
        b.to_async(&rt)
            .iter(|| get(&setup.guarded, "/hello/", None))
    });
    group.bench_function("hello, invoke token checked", |b| {
        b.to_async(&rt)
            .iter(|| get(&setup.guarded, "/private/", Some(&setup.token)))
    });
    group.bench_function("hello, authz policy allows", |b| {
        b.to_async(&rt).iter(|| get(&setup.authz, "/hello/", None))
    });
    group.finish();

    let mut group = c.benchmark_group("check");
    let header = format!("Bearer {}", setup.token).into_bytes();
    group.bench_function("token", |b| {
        b.iter(|| setup.access.authenticate(Some(&header)).unwrap())
    });
    let policies = kindling_access::Policies::new(&prometheus::Registry::new());
    let sources: Vec<(String, String)> = ["authz-paths"]
        .iter()
        .map(|name| {
            let path = repo_root().join(format!("examples/policies/{name}.rego"));
            (name.to_string(), std::fs::read_to_string(path).unwrap())
        })
        .collect();
    policies.install(&sources).unwrap();
    group.bench_function("authz policy", |b| {
        b.iter(|| {
            let mut headers = serde_json::Map::new();
            headers.insert("host".into(), "localhost".into());
            headers.insert("user-agent".into(), "curl/8".into());
            let input = AuthzInput {
                method: "GET",
                path: "/hello/",
                headers,
                source: AuthzSource {
                    address: "127.0.0.1".into(),
                    port: 40000,
                },
                function: "hello",
                namespace: "default",
                token: None,
            };
            assert!(policies.authorize(&input).unwrap());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
