//! WASI 0.3 HTTP handlers: a component built with spin-sdk 7 (`wasi:http/handler@0.3.0`),
//! deployed unmodified, served on a real port with bodies streaming both ways, reading Spin
//! 3's async key-value store (on SQLite and on Redis) and variables, under the same limits and
//! metrics as WASI 0.2 components.

use kindling_test_support::{RedisServer, Server, example, test_program};

use crate::{curl, kindling, path_str};

fn request(server: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let url = server.url(path);
    let mut args = vec!["-sS", "-X", method, "-w", "\n%{http_code}"];
    if let Some(body) = body {
        args.extend(["--data-binary", body]);
    }
    args.push(&url);
    let out = curl(&args).expect("curl runs");
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

#[test]
fn a_spin_sdk_7_component_streams_and_reads_state_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    let redis_dir = dir.path().join("redis");
    std::fs::create_dir_all(&redis_dir).unwrap();
    let redis = RedisServer::start(&redis_dir);
    let backends = [
        ("sqlite", "type = \"spin\"".to_string()),
        (
            "redis",
            format!("type = \"redis\"\nurl = \"{}\"", redis.url()),
        ),
    ];
    let guest = test_program("spin7");
    for (name, store) in backends {
        let config = dir.path().join(format!("{name}.toml"));
        std::fs::write(&config, format!("[key_value_store.default]\n{store}\n")).unwrap();
        let server = Server::start(
            &kindling(),
            &dir.path().join(format!("{name}-data")),
            &["--runtime-config", path_str(&config)],
            &[],
        );
        for function in ["app", "peer"] {
            let out = server.cli(&[
                "deploy",
                function,
                path_str(&guest),
                "--key-value",
                "default",
                "--namespace",
                "school",
                "--var",
                "greeting=hi",
                "--secret",
                "token=s3cret",
            ]);
            assert!(out.ok().contains("(wasi-http-0.3"), "{name}: {out:?}");
        }

        assert_eq!(
            request(&server, "GET", "/app/", None),
            (200, "hello from spin 7\n".into())
        );

        // 300 KB up and back, as it streams.
        let upload = dir.path().join("upload.bin");
        let sent: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&upload, &sent).unwrap();
        let echoed = dir.path().join("echoed.bin");
        let out = curl(&[
            "-sS",
            "-o",
            path_str(&echoed),
            "-w",
            "%{http_code}",
            "--data-binary",
            &format!("@{}", upload.display()),
            &server.url("/app/echo"),
        ])
        .unwrap();
        assert_eq!(out, "200");
        assert!(
            std::fs::read(&echoed).unwrap() == sent,
            "{name}: echo differs"
        );

        // A body written by a guest task after the handler returned.
        let (status, lines) = request(&server, "GET", "/app/stream/2000", None);
        assert_eq!(status, 200);
        assert_eq!(lines.lines().count(), 2000, "{name}");
        assert_eq!(lines.lines().last(), Some("line 1999"));

        assert_eq!(
            request(&server, "GET", "/app/var/greeting", None),
            (200, "hi".into())
        );
        assert_eq!(
            request(&server, "GET", "/app/var/token", None),
            (200, "s3cret".into())
        );
        assert_eq!(request(&server, "GET", "/app/var/missing", None).0, 404);

        assert_eq!(request(&server, "GET", "/app/kv/get/lesson", None).0, 404);
        assert_eq!(
            request(&server, "PUT", "/app/kv/set/lesson", Some("7")),
            (200, "set\n".into())
        );
        request(&server, "PUT", "/app/kv/set/badge", Some("gold"));
        assert_eq!(
            request(&server, "GET", "/app/kv/get/lesson", None),
            (200, "7".into()),
            "{name}"
        );
        assert_eq!(
            request(&server, "GET", "/app/kv/exists/lesson", None).1,
            "true\n"
        );
        assert_eq!(
            request(&server, "GET", "/app/kv/keys", None),
            (200, "badge\nlesson\n".into()),
            "{name}"
        );
        // The same label in the same namespace is one store, whichever interface wrote it.
        assert_eq!(
            request(&server, "GET", "/peer/kv/get/badge", None),
            (200, "gold".into())
        );
        let cli = server.cli(&["kv", "get", "school/default", "lesson"]);
        assert_eq!(cli.ok().trim(), "7", "{name}");
        assert_eq!(
            request(&server, "DELETE", "/app/kv/delete/lesson", None).0,
            200
        );
        assert_eq!(
            request(&server, "GET", "/app/kv/exists/lesson", None).1,
            "false\n"
        );
        assert_eq!(
            request(&server, "GET", "/app/kv/open/other", None),
            (403, "access denied\n".into())
        );

        let metrics = curl(&["-sS", &server.url("/metrics")]).unwrap();
        assert!(
            metrics.contains(r#"kindling_requests_total{class="2xx",function="app",version="1"}"#),
            "{name}: {metrics}"
        );
    }
}

#[test]
fn a_wasi_0_3_handler_keeps_its_limits() {
    let (_dir, server) = crate::fresh_server(&[]);
    // The example users deploy first.
    server
        .cli(&["deploy", "hello-p3", path_str(&example("hello-p3"))])
        .ok();
    assert_eq!(
        request(&server, "GET", "/hello-p3/", None),
        (200, "Hello from Kindling, over WASI 0.3!\n".into())
    );
    assert_eq!(
        request(&server, "DELETE", "/hello-p3/a/b?c=1", None),
        (200, "DELETE /a/b\n".into())
    );

    let guest = test_program("spin7");
    server
        .cli(&[
            "deploy",
            "small",
            path_str(&guest),
            "--max-request-body",
            "1KiB",
            "--max-response-body",
            "10KiB",
        ])
        .ok();
    server
        .cli(&["deploy", "brief", path_str(&guest), "--timeout", "200ms"])
        .ok();

    // A request body over the limit is refused, not passed on.
    let big = "x".repeat(4096);
    assert_eq!(request(&server, "POST", "/small/echo", Some(&big)).0, 413);
    assert_eq!(
        request(&server, "POST", "/small/echo", Some("fits")),
        (200, "fits".into())
    );

    // A streamed response over the limit is cut off: the client sees an incomplete body,
    // never one that looks whole.
    let out = curl(&["-sS", &server.url("/small/stream/5000")]);
    assert!(out.is_none(), "a cut-off body must be an error: {out:?}");

    // The deadline ends a body that streams for longer than it.
    let out = curl(&["-sS", &server.url("/brief/stream/100000000")]);
    assert!(out.is_none(), "a body past the deadline must be an error");
    let log = server.log();
    assert!(log.contains("the response was cut off"), "{log}");
    // The node still serves.
    assert_eq!(request(&server, "GET", "/brief/", None).0, 200);
}
