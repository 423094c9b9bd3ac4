//! The node's control plane against real guests and a real registry: deploy, redeploy,
//! rollback, delete, restart from the artifact cache, failed deploys that change nothing, and
//! the warm/cold lifecycle (idle unload, counted cold reload, memory budget, pre-warming).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kindling_node::{CallContext, DeployOutcome, Entry, Fault, ManualClock, Node, NodeConfig};
use kindling_registry::FunctionConfig;
use kindling_runtime::LoadSource;
use kindling_scheduler::PolicySpec;
use kindling_test_support::{example, test_program};

fn config(dir: &std::path::Path) -> NodeConfig {
    let mut config = NodeConfig::new(dir.to_path_buf());
    config.runtime.max_instances = 16;
    config.admission.max_in_flight = 16;
    config
}

fn wasm(path: std::path::PathBuf) -> Bytes {
    Bytes::from(std::fs::read(path).unwrap())
}

async fn call(node: &Node, name: &str, path: &str) -> (u16, String) {
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let cx = CallContext {
        script_name: format!("/{name}"),
        ..CallContext::default()
    };
    let response = node.invoke(name, request, cx).await.unwrap().response;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn created(outcome: DeployOutcome) -> Arc<Entry> {
    match outcome {
        DeployOutcome::Created(entry) => entry,
        other => panic!("expected a new version, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_redeploy_rollback_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(config(dir.path())).await.unwrap();

    let v1 = created(
        node.deploy("f", wasm(example("hello")), FunctionConfig::default())
            .await
            .unwrap(),
    );
    assert_eq!(v1.version.version, 1);
    assert_eq!(call(&node, "f", "/").await.1, "Hello from Kindling!\n");

    let again = node
        .deploy("f", wasm(example("hello")), FunctionConfig::default())
        .await
        .unwrap();
    assert!(matches!(again, DeployOutcome::Unchanged(_)));

    let v2 = created(
        node.deploy("f", wasm(example("wagi-hello")), FunctionConfig::default())
            .await
            .unwrap(),
    );
    assert_eq!(v2.version.version, 2);
    assert_eq!(v2.version.kind, "wagi");
    assert!(call(&node, "f", "/").await.1.contains("WAGI"));

    let back = node.rollback("f", None).await.unwrap();
    assert_eq!(back.version.version, 1);
    assert_eq!(
        back.code().unwrap().source,
        LoadSource::Cache,
        "rollback maps the cached artifact"
    );
    assert_eq!(call(&node, "f", "/").await.1, "Hello from Kindling!\n");
    assert_eq!(
        back.usage.invocations.load(Ordering::Relaxed),
        3,
        "counters span versions"
    );
    let forward = node.rollback("f", Some(2)).await.unwrap();
    assert_eq!(forward.version.version, 2);

    let err = node.rollback("f", Some(7)).await.unwrap_err();
    assert_eq!(err.fault(), Fault::NotFound, "{err}");

    node.delete("f").await.unwrap();
    assert!(node.lookup("f").is_none());
    let err = node.delete("f").await.unwrap_err();
    assert_eq!(err.fault(), Fault::NotFound);
    let artifacts = std::fs::read_dir(dir.path().join("artifacts"))
        .unwrap()
        .count();
    assert_eq!(artifacts, 0, "artifacts of deleted modules are removed");
}

#[tokio::test]
async fn a_failed_deploy_leaves_the_previous_version_serving() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(config(dir.path())).await.unwrap();
    node.deploy("f", wasm(example("hello")), FunctionConfig::default())
        .await
        .unwrap();

    for bad in [
        Bytes::from_static(b"not wasm"),
        wasm(test_program("cli-command")),
        wasm(test_program("core-library")),
        Bytes::new(),
    ] {
        let err = node
            .deploy("f", bad, FunctionConfig::default())
            .await
            .unwrap_err();
        assert_eq!(err.fault(), Fault::Client, "{err}");
        assert_eq!(call(&node, "f", "/").await.1, "Hello from Kindling!\n");
    }
    assert_eq!(node.versions("f").await.unwrap().len(), 1);

    let err = node
        .deploy(
            "Bad Name",
            wasm(example("hello")),
            FunctionConfig::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.fault(), Fault::Client);
    let err = node
        .deploy("v1", wasm(example("hello")), FunctionConfig::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[tokio::test]
async fn a_restarted_node_serves_from_the_artifact_cache() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(config(dir.path())).await.unwrap();
        let mut config = FunctionConfig::default();
        config
            .sections
            .insert("env".into(), serde_json::json!({"GREETING": "hallo"}));
        node.deploy("env", wasm(test_program("http-wasip2")), config)
            .await
            .unwrap();
        node.deploy("c", wasm(example("c-hello")), FunctionConfig::default())
            .await
            .unwrap();
    }
    let node = Node::open(config(dir.path())).await.unwrap();
    for name in ["env", "c"] {
        let entry = node.lookup(name).unwrap();
        assert!(
            entry.code().is_none(),
            "{name} is cold until its first request"
        );
    }
    assert_eq!(
        call(&node, "env", "/env/GREETING").await,
        (200, "hallo".into())
    );
    let entry = node.lookup("env").unwrap();
    assert_eq!(entry.code().unwrap().source, LoadSource::Cache);
    assert_eq!(entry.usage.cold_starts.load(Ordering::Relaxed), 1);

    // With preload, everything is warm before the first request.
    let mut preload = config(dir.path());
    preload.preload = true;
    drop(node);
    let node = Node::open(preload).await.unwrap();
    assert!(node.lookup("c").unwrap().code().is_some());
}

/// A node whose policies run on a manual clock and whose keeper runs only when the test says.
fn on_a_manual_clock(mut config: NodeConfig) -> (NodeConfig, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::default());
    config.clock = clock.clone();
    config.tick = Duration::from_secs(24 * 3600);
    (config, clock)
}

/// Moves the clock forward by `ms` in steps of `step`, running the keeper after each.
async fn pass(node: &Arc<Node>, clock: &ManualClock, ms: u64, step: u64) {
    let mut passed = 0;
    while passed < ms {
        clock.advance(step);
        passed += step;
        node.tick().await;
    }
}

#[tokio::test]
async fn idle_functions_are_unloaded_and_come_back_cold() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = on_a_manual_clock(config(dir.path()));
    // The default policy: a function without history keeps the fixed keep-alive.
    config.keep_alive_policy = PolicySpec::default_with(200);
    let node = Node::open(config).await.unwrap();
    node.deploy("f", wasm(example("hello")), FunctionConfig::default())
        .await
        .unwrap();
    let entry = node.lookup("f").unwrap();
    assert!(entry.code().is_some(), "a fresh deploy is warm");
    assert_eq!(call(&node, "f", "/").await.0, 200);

    pass(&node, &clock, 100, 50).await;
    assert!(entry.code().is_some(), "kept within its keep-alive");
    pass(&node, &clock, 200, 50).await;
    assert!(
        entry.code().is_none(),
        "unloaded once idle past its keep-alive"
    );
    assert_eq!(
        call(&node, "f", "/").await,
        (200, "Hello from Kindling!\n".into())
    );
    assert_eq!(entry.usage.cold_starts.load(Ordering::Relaxed), 1);
    assert_eq!(entry.usage.invocations.load(Ordering::Relaxed), 2);
    let code = entry.code().unwrap();
    assert_eq!(
        code.source,
        LoadSource::Cache,
        "a cold start maps the artifact, never compiles"
    );
    assert!(entry.usage.last_cold_start_us.load(Ordering::Relaxed) > 0);
}

#[tokio::test]
async fn the_code_budget_keeps_the_most_recently_used() {
    let dir = tempfile::tempdir().unwrap();
    // Learn how much code each function holds.
    let sizes = {
        let node = Node::open(config(dir.path())).await.unwrap();
        node.deploy("a", wasm(example("hello")), FunctionConfig::default())
            .await
            .unwrap();
        node.deploy("b", wasm(example("wagi-hello")), FunctionConfig::default())
            .await
            .unwrap();
        let size = |name| node.lookup(name).unwrap().code().unwrap().code_bytes;
        (size("a"), size("b"))
    };
    // A budget with room for the bigger of the two but not for both.
    let (mut config, clock) = on_a_manual_clock(config(dir.path()));
    config.keep_alive_policy = PolicySpec::Lru;
    config.code_memory_budget = Some(sizes.0.max(sizes.1));
    let node = Node::open(config).await.unwrap();
    call(&node, "a", "/").await;
    clock.advance(10);
    call(&node, "b", "/").await;
    let (a, b) = (node.lookup("a").unwrap(), node.lookup("b").unwrap());
    pass(&node, &clock, 10, 10).await;
    assert!(a.code().is_none(), "the least recently used is unloaded");
    assert!(
        b.code().is_some(),
        "the most recently used stays within the budget"
    );
    // Using `a` again brings it back and pushes `b` out.
    call(&node, "a", "/").await;
    pass(&node, &clock, 10, 10).await;
    assert!(b.code().is_none(), "now `b` is the least recently used");
    assert!(a.code().is_some());
}

#[tokio::test]
async fn a_periodic_function_is_unloaded_between_calls_and_prewarmed_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut config, clock) = on_a_manual_clock(config(dir.path()));
    // The default policy with 100 ms bins instead of minutes.
    config.keep_alive_policy =
        PolicySpec::parse("kindling:bin=100ms,min-samples=3", 10_000).unwrap();
    let node = Node::open(config).await.unwrap();
    node.deploy("cron", wasm(example("hello")), FunctionConfig::default())
        .await
        .unwrap();
    let entry = node.lookup("cron").unwrap();
    // Learn the period: a call every 550 ms, with the keeper running every 20 ms between.
    for _ in 0..4 {
        assert_eq!(call(&node, "cron", "/").await.0, 200);
        pass(&node, &clock, 560, 20).await;
    }
    assert_eq!(call(&node, "cron", "/").await.0, 200);
    let cold = entry.usage.cold_starts.load(Ordering::Relaxed);
    for _ in 0..2 {
        // Within the period it is unloaded after the call, then loaded again before the next.
        let mut states = Vec::new();
        for _ in 0..28 {
            clock.advance(20);
            node.tick().await;
            states.push(entry.code().is_some());
        }
        let unloaded = states.iter().position(|warm| !warm);
        let reloaded = unloaded.and_then(|at| states[at..].iter().position(|warm| *warm));
        assert!(
            unloaded.is_some() && reloaded.is_some(),
            "unloaded after the call and pre-warmed before the next: {states:?}"
        );
        assert_eq!(call(&node, "cron", "/").await.0, 200);
    }
    assert!(entry.usage.prewarms.load(Ordering::Relaxed) >= 2);
    assert_eq!(
        entry.usage.cold_starts.load(Ordering::Relaxed),
        cold,
        "pre-warmed calls are not cold starts"
    );
}

#[tokio::test]
async fn budget_only_policies_refuse_to_start_without_a_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.keep_alive_policy = PolicySpec::Gdsf;
    let Err(error) = Node::open(config).await else {
        panic!("a node with gdsf and no budget started");
    };
    let error = error.to_string();
    assert!(
        error.contains("\"gdsf\" keep-alive policy unloads only under a memory budget"),
        "{error}"
    );
}

#[tokio::test]
async fn the_same_bytes_under_another_name_or_config_compile_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(config(dir.path())).await.unwrap();
    let first = created(
        node.deploy(
            "a",
            wasm(test_program("http-wasip2")),
            FunctionConfig::default(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(first.code().unwrap().source, LoadSource::Compiled);

    let second = created(
        node.deploy(
            "b",
            wasm(test_program("http-wasip2")),
            FunctionConfig::default(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        second.code().unwrap().source,
        LoadSource::Shared,
        "a second name shares the resident code"
    );
    let mut other = FunctionConfig::default();
    other
        .sections
        .insert("env".into(), serde_json::json!({"GREETING": "other"}));
    let third = created(
        node.deploy("b", wasm(test_program("http-wasip2")), other)
            .await
            .unwrap(),
    );
    assert_eq!(third.code().unwrap().source, LoadSource::Shared);
    assert_eq!(
        call(&node, "b", "/env/GREETING").await,
        (200, "other".into()),
        "the shared code runs with the new configuration"
    );
    assert_eq!(call(&node, "a", "/env/GREETING").await.0, 404);

    // After a restart nothing is resident: the artifact of those bytes serves the new name.
    drop(node);
    let node = Node::open(config(dir.path())).await.unwrap();
    let fourth = created(
        node.deploy(
            "c",
            wasm(test_program("http-wasip2")),
            FunctionConfig::default(),
        )
        .await
        .unwrap(),
    );
    assert_eq!(fourth.code().unwrap().source, LoadSource::Cache);
}

#[tokio::test]
async fn identical_concurrent_deploys_make_one_version() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(config(dir.path())).await.unwrap();
    let module = wasm(example("hello"));
    let deploys = (0..10).map(|_| {
        let (node, module) = (node.clone(), module.clone());
        tokio::spawn(async move { node.deploy("f", module, FunctionConfig::default()).await })
    });
    let outcomes = futures::future::join_all(deploys).await;
    let created = outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap().unwrap())
        .filter(|outcome| matches!(outcome, DeployOutcome::Created(_)))
        .count();
    assert_eq!(
        created, 1,
        "one deploy made the version, the others changed nothing"
    );
    assert_eq!(node.versions("f").await.unwrap().len(), 1);
}

#[tokio::test]
async fn deleting_one_function_never_takes_the_modules_of_versions_being_deployed() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(config(dir.path())).await.unwrap();
    let hello = std::fs::read(example("hello")).unwrap();
    // Distinct modules with the same code: a custom section makes each its own hash.
    let variant = |i: u32| {
        let mut bytes = hello.clone();
        let payload = format!("kindling-test-{i}");
        let name = b"x";
        let size = 1 + name.len() + payload.len();
        assert!(size < 128, "one-byte LEB128 sizes");
        bytes.extend_from_slice(&[0, size as u8, name.len() as u8]);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(payload.as_bytes());
        Bytes::from(bytes)
    };
    let churn = {
        let node = node.clone();
        let module = variant(1000);
        tokio::spawn(async move {
            for _ in 0..30 {
                node.deploy("churn", module.clone(), FunctionConfig::default())
                    .await
                    .unwrap();
                node.delete("churn").await.unwrap();
            }
        })
    };
    for i in 0..30 {
        // Half of them share the churning function's module, the rest are their own.
        let module = if i % 2 == 0 {
            variant(1000)
        } else {
            variant(i)
        };
        node.deploy("kept", module, FunctionConfig::default())
            .await
            .unwrap();
    }
    churn.await.unwrap();
    let versions = node.versions("kept").await.unwrap();
    assert_eq!(versions.len(), 30);
    for version in &versions {
        let module = dir
            .path()
            .join("modules")
            .join(format!("{}.wasm", version.sha256));
        assert!(
            module.exists(),
            "version {} lost its module {}",
            version.version,
            module.display()
        );
    }
}
