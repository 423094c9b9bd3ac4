//! `deploy/keda/`'s ScaledObjects (and `deploy/kubernetes/`'s) are valid against KEDA's schema (generated from its CRDs,
//! installed by `scripts/setup.sh --test`), and every Kindling metric their prometheus queries
//! name is one a real node exports while it has work waiting.

use std::path::Path;
use std::time::Duration;

use kindling_test_support::{Server, repo_root, test_program, wait_for};

use crate::{kindling, path_str};

fn validate(files: &[&Path], metrics: &Path) -> std::process::Output {
    std::process::Command::new("node")
        .arg(repo_root().join("scripts/validate-keda.mjs"))
        .args(files)
        .env("METRICS_FILE", metrics)
        .output()
        .expect("run node: scripts/setup.sh --test installs it")
}

#[test]
fn the_keda_examples_match_keda_s_schema_and_kindling_s_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(&kindling(), &dir.path().join("data"), &[], &[]);
    // A function that keeps failing with a long backoff keeps an invocation waiting, so that
    // the queue's gauges have a series.
    server
        .cli(&[
            "deploy",
            "orders",
            path_str(&test_program("http-wasip2")),
            "--backoff",
            "1m..5m",
        ])
        .ok();
    let accepted = crate::curl(&[
        "-sS",
        "-X",
        "POST",
        "-H",
        "prefer: respond-async",
        &server.url("/orders/status/503"),
    ])
    .unwrap();
    assert!(accepted.contains("inv_"), "{accepted}");
    let metrics = dir.path().join("metrics.txt");
    wait_for("the queue's gauges", Duration::from_millis(50), || {
        let text = crate::curl(&["-sS", &server.url("/metrics")]).unwrap_or_default();
        // The autoscaler's signal appears after the node's first tick.
        if text.contains("kindling_async_queue_depth{function=\"orders\"} 1")
            && text.contains("kindling_desired_instances{")
        {
            std::fs::write(&metrics, &text).unwrap();
            Ok(())
        } else {
            Err("no depth or autoscaler signal yet".to_string())
        }
    });

    let mut examples: Vec<_> = std::fs::read_dir(repo_root().join("deploy/keda"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    assert_eq!(examples.len(), 3, "{examples:?}");
    // The cluster packaging's, which scales the regional pool.
    examples.push(repo_root().join("deploy/kubernetes/kindling-scaledobject.yaml"));
    let files: Vec<&Path> = examples.iter().map(|p| p.as_path()).collect();
    let out = validate(&files, &metrics);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(report.contains("4 KEDA resources valid"), "{report}");

    // The check can fail: a ScaledObject without its target, and a query on a metric that
    // does not exist.
    let broken = dir.path().join("broken.yaml");
    let text =
        std::fs::read_to_string(repo_root().join("deploy/keda/scaledobject-prometheus.yaml"))
            .unwrap()
            .replace("kindling_in_flight_requests", "kindling_in_flight_typo")
            .replace("  scaleTargetRef:\n", "  scaleTarget:\n");
    std::fs::write(&broken, text).unwrap();
    let out = validate(&[&broken], &metrics);
    let report = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{report}");
    assert!(report.contains("scaleTargetRef"), "{report}");
    assert!(report.contains("kindling_in_flight_typo"), "{report}");
}
