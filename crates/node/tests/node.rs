//! The node's control plane against real guests and a real registry: deploy, redeploy,
//! rollback, delete, restart from the artifact cache, and failed deploys that change nothing.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use kindling_node::{DeployOutcome, Fault, Node, NodeConfig};
use kindling_registry::FunctionConfig;
use kindling_runtime::{LoadSource, RequestInfo};
use kindling_test_support::{example, test_program};

async fn open(dir: &std::path::Path) -> Arc<Node> {
    let mut config = NodeConfig::new(dir.to_path_buf());
    config.runtime.max_instances = 16;
    let node = Node::open(config).await.unwrap();
    node.load_all().await.unwrap();
    node
}

fn wasm(path: std::path::PathBuf) -> Bytes {
    Bytes::from(std::fs::read(path).unwrap())
}

async fn call(node: &Node, name: &str, path: &str) -> (u16, String) {
    let active = node.lookup(name).expect("function is serving");
    let request = http::Request::get(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let info = RequestInfo {
        function: name.into(),
        script_name: format!("/{name}"),
        remote_addr: None,
        local_addr: None,
        request_id: "t".into(),
    };
    let response = active.function.invoke(request, &info).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn created(outcome: DeployOutcome) -> Arc<kindling_node::Active> {
    match outcome {
        DeployOutcome::Created(active) => active,
        other => panic!("expected a new version, got {other:?}"),
    }
}

#[tokio::test]
async fn deploy_redeploy_rollback_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = open(dir.path()).await;

    let v1 = created(
        node.deploy("f", wasm(example("hello")), FunctionConfig::default())
            .await
            .unwrap(),
    );
    assert_eq!(v1.version.version, 1);
    assert_eq!(call(&node, "f", "/").await.1, "Hello from Kindling!\n");

    // The same bytes and config again: nothing new.
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
        back.source,
        LoadSource::Cache,
        "rollback maps the cached artifact"
    );
    assert_eq!(call(&node, "f", "/").await.1, "Hello from Kindling!\n");
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
    let node = open(dir.path()).await;
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
    assert_eq!(node.registry().versions("f").await.unwrap().len(), 1);

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
        let node = open(dir.path()).await;
        let mut config = FunctionConfig::default();
        config.env.insert("GREETING".into(), "hallo".into());
        node.deploy("env", wasm(test_program("http-wasip2")), config)
            .await
            .unwrap();
        node.deploy("c", wasm(example("c-hello")), FunctionConfig::default())
            .await
            .unwrap();
    }
    let node = open(dir.path()).await;
    assert!(node.is_ready());
    assert_eq!(node.serving_count(), 2);
    for name in ["env", "c"] {
        assert_eq!(
            node.lookup(name).unwrap().source,
            LoadSource::Cache,
            "{name}"
        );
    }
    assert_eq!(
        call(&node, "env", "/env/GREETING").await,
        (200, "hallo".into())
    );
}
