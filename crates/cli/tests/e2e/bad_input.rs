//! Bad input through the real CLI and server: each gets a clear message and a usage or
//! runtime exit status, and nothing that was serving stops serving.

use kindling_test_support::{example, test_program};

use crate::{fresh_server, path_str};

#[tokio::test(flavor = "multi_thread")]
async fn refused_deploys_say_why_and_change_nothing() {
    let (dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "keep", path_str(&example("hello"))])
        .ok();

    let not_wasm = dir.path().join("notes.txt");
    std::fs::write(&not_wasm, "these are not the bytes you are looking for").unwrap();
    let truncated = dir.path().join("truncated.wasm");
    let hello = std::fs::read(example("hello")).unwrap();
    std::fs::write(&truncated, &hello[..hello.len() / 2]).unwrap();
    let empty = dir.path().join("empty.wasm");
    std::fs::write(&empty, b"").unwrap();
    let command = test_program("cli-command");
    let library = test_program("core-library");
    let unsupported = test_program("unsupported-imports");
    let wat = dir.path().join("hello.wat");
    std::fs::write(
        &wat,
        ";; a text module\n(module (func (export \"_start\")))\n",
    )
    .unwrap();
    let zip = dir.path().join("hello.zip");
    std::fs::write(&zip, b"PK\x03\x04\x14\0\0\0\0\0").unwrap();

    let cases = [
        (path_str(&not_wasm), "not a WebAssembly binary"),
        (path_str(&truncated), "invalid WebAssembly"),
        (path_str(&empty), "empty"),
        (
            path_str(&command),
            "exports neither wasi:http/incoming-handler",
        ),
        (path_str(&library), "no `_start` function"),
        (path_str(&unsupported), "`fermyon:spin/llm@2.0.0`"),
        (path_str(&wat), "WebAssembly text module (.wat)"),
        (path_str(&zip), "zip archive: unpack it"),
    ];
    for (file, needle) in cases {
        let out = server.cli(&["deploy", "keep", file]);
        assert_eq!(out.code, 1, "{out:?}");
        assert!(
            out.stderr.contains(needle),
            "{needle:?} not in {:?}",
            out.stderr
        );
        assert!(out.stderr.contains("400"), "{:?}", out.stderr);
        let body = reqwest::get(server.url("/keep/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(body, "Hello from Kindling!\n");
    }
    let versions = server.cli(&["versions", "keep", "--json"]).json();
    assert_eq!(versions.as_array().unwrap().len(), 1);

    // Names.
    for name in ["Hello", "with space", "-dash", "v1"] {
        let out = server.cli(&["deploy", "--", name, path_str(&example("hello"))]);
        assert_ne!(out.code, 0, "{name}: {out:?}");
        assert!(
            out.stderr.contains("invalid function name") || out.stderr.contains("reserved"),
            "{name}: {out:?}"
        );
    }

    // Usage errors exit with 2, before touching the server.
    let out = server.cli(&["deploy", "x", "/no/such/file.wasm"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr.contains("cannot read /no/such/file.wasm"),
        "{out:?}"
    );
    let out = server.cli(&[
        "deploy",
        "x",
        path_str(&example("hello")),
        "--env",
        "NOEQUALS",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
    let out = server.cli(&[
        "deploy",
        "x",
        path_str(&example("hello")),
        "--timeout",
        "soon",
    ]);
    assert_eq!(out.code, 2, "{out:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_functions_and_versions_are_404_with_a_hint() {
    let (_dir, server) = fresh_server(&[]);
    let response = reqwest::get(server.url("/ghost/path")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("content-type"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "function_not_found");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kindling deploy ghost")
    );
    // A name no function can have is not suggested as one to deploy.
    let response = reqwest::get(server.url("/Sample-bin/")).await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(!message.contains("kindling deploy"), "{message}");
    assert!(
        message.contains("lowercase letters, digits and `-`"),
        "{message}"
    );

    server
        .cli(&["deploy", "one", path_str(&example("hello"))])
        .ok();
    let out = server.cli(&["rollback", "one", "--to", "42"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("has no version 42"), "{out:?}");
    let out = server.cli(&["rollback", "one"]);
    assert!(out.stderr.contains("no earlier version"), "{out:?}");
    let out = server.cli(&["rollback", "ghost"]);
    assert!(
        out.stderr.contains("no function named \"ghost\""),
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_uploads_and_bodies_are_refused_with_413() {
    let (dir, server) = fresh_server(&["--max-module-size", "1MiB"]);
    let huge = dir.path().join("huge.wasm");
    std::fs::write(&huge, vec![0u8; 2 << 20]).unwrap();
    let out = server.cli(&["deploy", "huge", path_str(&huge)]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("larger than this server's limit"),
        "{out:?}"
    );

    server
        .cli(&[
            "deploy",
            "echo",
            path_str(&test_program("http-wasip2")),
            "--max-request-body",
            "1KiB",
        ])
        .ok();
    let response = reqwest::Client::new()
        .post(server.url("/echo/echo"))
        .body(vec![b'x'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limit of 1024 bytes")
    );
}

#[test]
fn serve_refuses_bad_configuration_before_binding() {
    let out = std::process::Command::new(crate::kindling())
        .args(["serve", "--listen", "not-an-address"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = std::process::Command::new(crate::kindling())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--domain",
            ".bad",
            "--data-dir",
        ])
        .arg(std::env::temp_dir().join("kindling-never-created"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--domain"));
    // More than a 32-bit memory can address: refused before the engine is built, with the
    // limit, rather than as the engine's own complaint about its memory reservation.
    let out = std::process::Command::new(crate::kindling())
        .args(["serve", "--listen", "127.0.0.1:0", "--max-memory", "8GiB"])
        .arg("--data-dir")
        .arg(std::env::temp_dir().join("kindling-never-created"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--max-memory is at most 4GiB"), "{stderr}");
    let out = std::process::Command::new(crate::kindling())
        .args(["serve", "--listen", "127.0.0.1:0", "--max-instances", "8"])
        .args(["--max-in-flight", "8", "--warm-slots", "9", "--data-dir"])
        .arg(std::env::temp_dir().join("kindling-never-created"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--warm-slots (9) is above --max-instances (8)"),
        "{stderr}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_the_output_quietly() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&["deploy", "hello", path_str(&example("hello"))])
        .ok();
    for args in [
        &["ls"][..],
        &["ls", "--json"],
        &["inspect", "hello"],
        &["versions", "hello"],
    ] {
        // The reading end is closed before the command writes a byte: every write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = std::process::Command::new(crate::kindling())
            .args(args)
            .env("KINDLING_SERVER", server.url(""))
            .env("KINDLING_TOKEN", server.token().unwrap())
            .env_remove("RUST_BACKTRACE")
            .stdout(writer)
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(stderr.is_empty(), "{args:?} printed: {stderr}");
    }
}
