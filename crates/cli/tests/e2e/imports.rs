//! Imports Kindling does not provide: the deploy is refused naming each one and what Kindling
//! does provide; with `--allow-unsupported-imports` the function serves every route that does
//! not call them, and a call to one fails that request alone, saying which import it was.

use kindling_test_support::test_program;

use crate::{curl, fresh_server, path_str};

#[test]
fn a_refusal_names_the_import_and_the_opt_in_serves_the_other_routes() {
    let (_dir, server) = fresh_server(&[]);
    let guest = test_program("unsupported-imports");

    let out = server.cli(&["deploy", "llm", path_str(&guest)]);
    assert_eq!(out.code, 1, "{out:?}");
    for needle in [
        "it imports an interface that Kindling does not provide: `fermyon:spin/llm@2.0.0`",
        "Kindling provides",
        "fermyon:spin/{key-value,variables,sqlite}@2.0.0",
        "wasi:http/{types,outgoing-handler}@0.2.12",
        "--allow-unsupported-imports",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} not in {:?}",
            out.stderr
        );
    }
    assert_eq!(server.cli(&["ls", "--json"]).json(), serde_json::json!([]));

    let out = server.cli(&[
        "deploy",
        "llm",
        path_str(&guest),
        "--allow-unsupported-imports",
    ]);
    out.ok();
    let inspect = server.cli(&["inspect", "llm"]).ok().to_string();
    assert!(
        inspect.contains("linked to stand-ins that trap when called"),
        "{inspect}"
    );
    let body = curl(&["-sS", "-f", &server.url("/llm/")]).unwrap();
    assert_eq!(body, "serving without the llm\n");
    let status = curl(&[
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &server.url("/llm/llm"),
    ])
    .unwrap();
    assert_eq!(status, "500");
    let log = server.log();
    assert!(
        log.contains("fermyon:spin/llm@2.0.0#generate-embeddings is not provided by Kindling"),
        "{log}"
    );
    // One trapped request does not stop the function.
    let body = curl(&["-sS", "-f", &server.url("/llm/")]).unwrap();
    assert_eq!(body, "serving without the llm\n");
}
