//! The admin API agrees with its own OpenAPI document: schemathesis (installed by
//! `scripts/setup.sh --test`) generates requests from the live `/v1/openapi.json` and checks
//! every answer against it: status codes, content types, response schemas, and that requests
//! the document forbids are refused.

use kindling_test_support::example;

use crate::{fresh_server, path_str};

#[test]
fn schemathesis_finds_no_disagreement_with_the_openapi_document() {
    let (dir, server) = fresh_server(&[]);
    for (name, file) in [("hello", "hello"), ("greet", "wagi-hello")] {
        server.cli(&["deploy", name, path_str(&example(file))]).ok();
    }
    // A long poll would outlast the client's timeout: ask for the lines at once.
    let config = dir.path().join("schemathesis.toml");
    std::fs::write(
        &config,
        "[[operations]]\ninclude-path = \"/v1/functions/{name}/logs\"\nparameters = { \"wait\" = 0 }\n",
    )
    .unwrap();
    let output = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys; from schemathesis.cli import schemathesis; sys.argv[0] = 'st'; sys.exit(schemathesis())",
            "--config-file",
        ])
        .arg(&config)
        .args([
            "run",
            &server.url("/v1/openapi.json"),
            "--checks",
            "all",
            // A deploy's answer depends on the bytes it is sent, which no schema can say: a
            // schema-valid upload of a PNG is rightly refused.
            "--exclude-checks",
            "positive_data_acceptance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "25",
            "--workers",
            "1",
            "--seed",
            "20261201",
            "--request-timeout",
            "30",
            // As the node's first admin; the checks also send requests without it.
            "--header",
            &format!("Authorization: {}", server.bearer()),
        ])
        .current_dir(dir.path())
        .output()
        .expect("run schemathesis: scripts/setup.sh --test installs it");
    let report = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("passed"), "{report}");
}
