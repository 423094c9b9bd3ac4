//! `deploy/kubernetes/`'s manifests are valid against Kubernetes' own API schemas (checked
//! offline by `kubernetes-validate` from PyPI, installed by `scripts/setup.sh --test`); its
//! ScaledObject is checked against KEDA's schema with the other KEDA examples (`keda.rs`).
//! No cluster runs here.

use std::path::PathBuf;

use kindling_test_support::repo_root;

fn validate(files: &[PathBuf]) -> (bool, String) {
    // As a module, so that it runs wherever pip put its scripts.
    let out = std::process::Command::new("python3")
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.31.0",
        ])
        .args(files)
        .output()
        .expect("run kubernetes-validate: scripts/setup.sh --test installs it");
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), report)
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        // KEDA's resource is not Kubernetes' to check.
        .filter(|path| !path.ends_with("kindling-scaledobject.yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_manifests_match_the_kubernetes_api() {
    let files = manifests();
    assert_eq!(files.len(), 4, "{files:?}");
    let (ok, report) = validate(&files);
    assert!(ok, "{report}");
    for resource in [
        "statefulset/nats",
        "service/nats-cluster",
        "daemonset/kindling-edge",
        "deployment/kindling-pool",
        "service/kindling",
        "poddisruptionbudget/kindling-pool",
    ] {
        assert!(
            report.contains(&format!("passed for resource {resource} ")),
            "{resource} checked: {report}"
        );
    }
    assert!(
        !report.contains("WARN"),
        "every resource has a schema: {report}"
    );
}

#[test]
fn the_check_can_fail() {
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(repo_root().join("deploy/kubernetes/nats.yaml"))
        .unwrap()
        .replace("replicas: 3", "replicas: three")
        .replace("serviceName:", "serviceNme:");
    std::fs::write(&broken, text).unwrap();
    let (ok, report) = validate(&[broken]);
    assert!(!ok, "{report}");
    assert!(report.contains("statefulset/nats"), "{report}");
}
