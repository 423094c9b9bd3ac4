//! `kindling bench --fleet`: N distinct copies of one module deployed through the admin API,
//! first requests that are real cold starts after a restart, warm ones after, memory reported.

use kindling_test_support::example;

use crate::{fresh_server, path_str};

#[test]
fn deploys_a_fleet_then_measures_cold_and_warm_requests_apart() {
    let (_dir, server) = fresh_server(&[]);
    let url = server.url("");
    let pid = server.pid().to_string();
    let module = example("c-hello");
    let report = server
        .cli(&[
            "bench",
            &url,
            "--fleet",
            "6",
            "--module",
            path_str(&module),
            "--pid",
            &pid,
            "--json",
        ])
        .json();
    assert_eq!(report["functions"], 6);
    assert!(report["deploy"]["seconds"].as_f64().unwrap() > 0.0);
    assert_eq!(report["sample"], 6, "the sample is capped at the fleet");
    assert_eq!(report["first"]["count"], 6, "{report}");
    assert_eq!(report["first"]["errors"], 0);
    assert_eq!(report["warm"]["count"], 6);
    assert_eq!(
        report["cold_starts"], 0,
        "freshly deployed functions are warm"
    );
    assert!(report["rss_before_kib"].as_u64().unwrap() > 0);
    // Distinct copies: each function has its own module hash.
    let functions = server.cli(&["ls", "--json"]).json();
    let mut hashes: Vec<&str> = functions
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["sha256"].as_str().unwrap())
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 6);

    // After a restart every function is cold until its first request.
    let server = server.restart(&[], &[]);
    let url = server.url("");
    let report = server
        .cli(&["bench", &url, "--fleet", "6", "--sample", "4", "--json"])
        .json();
    assert!(report["deploy"].is_null());
    assert_eq!(report["first"]["count"], 4, "{report}");
    assert_eq!(
        report["cold_starts"], 4,
        "each first request was a cold start"
    );
    assert_eq!(report["warm"]["count"], 4);

    let text = server.cli(&["bench", &url, "--fleet", "6", "--sample", "2"]);
    let text = text.ok();
    assert!(
        text.contains("first (cold)") && text.contains("warm"),
        "{text}"
    );

    let refused = server.cli(&["bench", &url, "--fleet", "7", "--json"]);
    assert_eq!(refused.code, 2, "{refused:?}");
    assert!(
        refused.stderr.contains(
            "1 of the 7 fleet functions (fleet-00000..fleet-00006) are not deployed on this \
             node: deploy them with --module FILE.wasm"
        ),
        "{refused:?}"
    );
}
