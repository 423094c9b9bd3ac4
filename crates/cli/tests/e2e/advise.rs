//! `kindling advise` as a user runs it: flags, JSON and Mermaid output, the interactive
//! prompt on stdin, a broken `--kb` file, and the requirements a function declares at deploy
//! judged against the node it runs on.

use std::io::Write;
use std::process::{Command, Stdio};

use kindling_test_support::{CliOutput, example};

use crate::{fresh_server, kindling, path_str};

fn advise(args: &[&str], stdin: &str) -> CliOutput {
    let mut child = Command::new(kindling())
        .arg("advise")
        .args(args)
        .env_remove("KINDLING_JSON")
        .env_remove("KINDLING_KB")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    CliOutput::from(child.wait_with_output().unwrap())
}

#[test]
fn requirements_scenarios_and_formats() {
    let advice = advise(
        &["--security", "high", "--startup", "ultra-low", "--json"],
        "",
    )
    .json();
    assert_eq!(
        advice["parts"][0]["outcome"]["components"][0],
        "kindling|wasmedge"
    );
    assert_eq!(advice["nearest_scenarios"][0]["scenario"], "plugins");

    let text = advise(&["--scenario", "finance", "--storage", "oltp"], "");
    let text = text.ok();
    assert!(text.contains("=> KubeVirt + DPU acceleration"), "{text}");
    assert!(text.contains("=> Ceph RBD + NVMe"), "{text}");

    let chart = advise(&["--scenario", "edge", "--format", "mermaid"], "");
    assert!(chart.ok().starts_with("flowchart TD"), "{chart:?}");

    let isolation = advise(&["--isolation", "--json"], "").json();
    assert_eq!(isolation["strength"][0], serde_json::json!(["L-0", "L-4"]));
    assert_eq!(isolation["levels"].as_array().unwrap().len(), 5);

    let near = advise(&["--coordinate", "4,2,3,2025,1,edge,OTLP+eBPF"], "");
    assert!(
        near.ok().starts_with(
            "K3s + WasmEdge + Gatekeeper at (4, 2, 3, 2025, 1, edge, OTLP+eBPF) (exact)"
        ),
        "{near:?}"
    );
}

#[test]
fn interactive_mode_reads_answers_from_stdin() {
    // Plugins: security (suggested high from the matrix) is answered ultra-high; the data
    // question gets an invalid answer first, then a valid one.
    let out = advise(
        &["--scenario", "plugins", "-i", "--json"],
        "ultra-high\nlots\ndata\n",
    );
    let advice = out.json();
    assert_eq!(advice["parts"][0]["outcome"]["components"][0], "gvisor");
    assert_eq!(advice["parts"][1]["outcome"]["components"][0], "s3");
    assert!(
        out.stderr
            .contains("plugin-data must be one of configuration, data"),
        "{out:?}"
    );
    assert!(
        out.stderr.contains("[high]"),
        "the suggestion is shown: {out:?}"
    );
}

#[test]
fn bad_input_is_a_usage_error_that_says_what_to_do() {
    let out = advise(&["--security", "extreme"], "");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "security cannot be \"extreme\"; choose one of low, medium, high, ultra-high"
        ),
        "{out:?}"
    );

    let out = advise(&["--set", "state"], "");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("must be DIMENSION=LEVEL"), "{out:?}");

    let dir = tempfile::tempdir().unwrap();
    let kb = dir.path().join("kb.toml");
    let text = kindling_advisor::EMBEDDED.replacen("ask = \"resources\"", "ask = \"resource\"", 1);
    let line = text[..text.find("ask = \"resource\"").unwrap()]
        .matches('\n')
        .count()
        + 1;
    std::fs::write(&kb, text).unwrap();
    let out = advise(&["--kb", path_str(&kb), "--scenario", "edge"], "");
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains(&format!("line {line}: tree \"edge\": node \"resources\" asks about unknown dimension \"resource\"")),
        "{out:?}"
    );
}

#[test]
fn a_function_s_declared_requirements_are_judged() {
    let (_dir, server) = fresh_server(&[]);
    let hello = example("hello");
    server
        .cli(&[
            "deploy",
            "api",
            path_str(&hello),
            "--require",
            "security=high",
            "--require",
            "startup=ultra-low",
            "--memory",
            "64MiB",
        ])
        .ok();
    server.cli(&["invoke", "api"]).ok();
    let verdict = server
        .cli(&["advise", "--function", "api", "--json"])
        .json();
    assert_eq!(verdict["meets"], true, "{verdict}");
    let text = server.cli(&["advise", "--function", "api"]);
    assert!(text.ok().contains("memory capped at 64 MiB"), "{text:?}");

    // A stronger demand than a shared-kernel sandbox meets: not met, and what to use.
    server
        .cli(&[
            "deploy",
            "ledger",
            path_str(&hello),
            "--require",
            "security=ultra-high",
        ])
        .ok();
    let verdict = server
        .cli(&["advise", "--function", "ledger", "--json"])
        .json();
    assert_eq!(verdict["meets"], false, "{verdict}");
    assert_eq!(
        verdict["instead"]["parts"][0]["outcome"]["components"][0],
        "kubevirt"
    );

    // An unknown level is refused at deploy, and the function stays as it was.
    let out = server.cli(&[
        "deploy",
        "api",
        path_str(&hello),
        "--require",
        "security=extreme",
    ]);
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("security cannot be \"extreme\""),
        "{out:?}"
    );
    let function = server.cli(&["inspect", "api", "--json"]).json();
    assert_eq!(function["config"]["requirements"]["security"], "high");
}
