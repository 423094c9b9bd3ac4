//! `kindling sim` as a user runs it: a trace file in, a table, JSON and an SVG plot out, and
//! clear refusals of bad policies and bad traces.

use std::process::Command;

use kindling_test_support::CliOutput;

use crate::{kindling, path_str};

fn sim(args: &[&str]) -> CliOutput {
    CliOutput::from(
        Command::new(kindling())
            .arg("sim")
            .args(args)
            .env_remove("KINDLING_JSON")
            .output()
            .unwrap(),
    )
}

/// An Azure 2021 per-invocation trace: `f` every 30 minutes for 5 hours, `g` every minute
/// for the first 20.
fn trace(dir: &std::path::Path) -> std::path::PathBuf {
    let mut text = String::from("app,func,end_timestamp,duration\n");
    for i in 0..10 {
        text.push_str(&format!("a,f,{}.5,0.1\n", i * 1800 + 30));
    }
    for m in 0..20 {
        text.push_str(&format!("a,g,{}.0,0.2\n", m * 60 + 10));
    }
    let path = dir.join("azure2021.txt");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn compares_policies_as_table_json_and_plot() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path());
    let plot = dir.path().join("tradeoff.svg");

    let table = sim(&[path_str(&trace), "--plot", path_str(&plot)]);
    let text = table.ok();
    for policy in ["fixed:10m", "lru (", "gdsf (", "hybrid", "kindling"] {
        assert!(text.contains(policy), "{policy} missing from:\n{text}");
    }
    assert!(
        text.contains("2 functions, 30 calls over 271 minutes"),
        "{text}"
    );
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("wasted memory-time"));

    let json = sim(&[
        path_str(&trace),
        "--policy",
        "fixed:10m",
        "--policy",
        "kindling:min-samples=3",
        "--memory-mb",
        "50",
        "--json",
    ])
    .json();
    let outcomes = json["outcomes"].as_array().unwrap();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(json["invocations"], 30);
    let fixed = &outcomes[0];
    assert_eq!(fixed["policy"], "fixed:10m");
    assert_eq!(fixed["wasted_vs_baseline_pct"], 100.0);
    // `f` is always cold under a 10-minute keep-alive; `g` only on its first call.
    assert_eq!(fixed["cold_starts"], 11);
    let kindling = &outcomes[1];
    assert!(kindling["cold_starts"].as_u64().unwrap() < 11, "{kindling}");
    assert!(kindling["prewarm_hits"].as_u64().unwrap() > 0, "{kindling}");
}

#[test]
fn bad_policies_and_traces_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let trace = trace(dir.path());

    let refused = sim(&[path_str(&trace), "--policy", "ttl"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused
            .stderr
            .contains("--policy: unknown keep-alive policy \"ttl\""),
        "{refused:?}"
    );

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "when,what\n1,2\n").unwrap();
    let refused = sim(&[path_str(&bad)]);
    assert_eq!(refused.code, 1, "{refused:?}");
    assert!(
        refused.stderr.contains("unknown header \"when,what\""),
        "{refused:?}"
    );

    let refused = sim(&[path_str(&dir.path().join("missing"))]);
    assert!(refused.stderr.contains("cannot read trace"), "{refused:?}");
}
