//! Who may do what, on a real node: tokens on every admin route (401 and 403 saying what is
//! missing), namespaces and their quotas (403 and 429 naming the quota), functions that need
//! an `invoke` token, Rego policy at deploy and per request (the shipped examples), the audit
//! log, the refusal to expose an open node, and TLS verified by curl and by the CLI.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kindling_test_support::{Server, example, repo_root, test_program, wait_for};

use crate::{fresh_server, kindling, path_str};

/// `curl -sS -o - -w '\n%{http_code}'` with `args`: the body and the status.
fn call(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn bearer(token: &str) -> String {
    format!("Authorization: Bearer {token}")
}

/// Makes a token with the admin's CLI and returns its secret.
fn token(server: &Server, name: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "create", name, "--json"];
    all.extend_from_slice(args);
    server.cli(&all).json()["token"]
        .as_str()
        .expect("the token is in the answer")
        .to_string()
}

#[test]
fn admin_routes_need_a_token_that_reaches_what_they_touch() {
    let (dir, server) = fresh_server(&[]);
    let file = dir.path().join("data").join("admin.token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the admin token is its owner's only");
    }
    let functions = server.url("/v1/functions");

    // No token, a malformed one, an unknown one: 401, each saying what to do.
    let (status, body) = call(&["-D", "-", &functions]);
    assert_eq!(status, 401, "{body}");
    assert!(
        body.to_lowercase().contains("www-authenticate: bearer"),
        "{body}"
    );
    assert!(body.contains("admin.token"), "{body}");
    let (status, body) = call(&["-H", "Authorization: Bearer nope", &functions]);
    assert_eq!(status, 401);
    assert!(body.contains("starts with `kdl_`"), "{body}");
    let unknown = format!("kdl_{}_{}", "0".repeat(16), "0".repeat(64));
    let (status, body) = call(&["-H", &bearer(&unknown), &functions]);
    assert_eq!(status, 401);
    assert!(body.contains("does not know"), "{body}");

    // The CLI on this machine finds the admin token; the public document needs none.
    server
        .cli(&["deploy", "shared", path_str(&example("hello"))])
        .ok();
    assert_eq!(call(&[&server.url("/v1/openapi.json")]).0, 200);

    // A read token of team-a: reads its namespace, cannot deploy, cannot see default's.
    let reader = token(
        &server,
        "reader",
        &["--scope", "read", "--namespace", "team-a"],
    );
    let (status, body) = call(&["-H", &bearer(&reader), &functions]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("shared"), "team-a sees only its own: {body}");
    let (status, body) = call(&["-H", &bearer(&reader), &server.url("/v1/functions/shared")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("namespace \\\"default\\\""), "{body}");
    let denied = server.cli_with(
        &["deploy", "mine", path_str(&example("hello"))],
        &[("KINDLING_TOKEN", &reader)],
    );
    assert_eq!(denied.code, 1, "{denied:?}");
    assert!(denied.stderr.contains("needs `deploy`"), "{denied:?}");

    // A deploy token of team-a: its deploys land in team-a; default's function is out of reach.
    let ci = token(
        &server,
        "ci",
        &["--scope", "deploy", "--namespace", "team-a"],
    );
    let as_ci = |args: &[&str]| server.cli_with(args, &[("KINDLING_TOKEN", &ci)]);
    as_ci(&["deploy", "mine", path_str(&example("hello"))]).ok();
    let mine = server.cli(&["inspect", "mine", "--json"]).json();
    assert_eq!(mine["config"]["namespace"], "team-a");
    let hijack = as_ci(&["deploy", "shared", path_str(&example("wagi-hello"))]);
    assert_eq!(hijack.code, 1, "{hijack:?}");
    assert!(
        hijack.stderr.contains("belongs to namespace \"default\""),
        "{hijack:?}"
    );
    let elsewhere = as_ci(&[
        "deploy",
        "other",
        path_str(&example("hello")),
        "--namespace",
        "team-b",
    ]);
    assert!(elsewhere.stderr.contains("\"team-b\""), "{elsewhere:?}");
    let escalate = as_ci(&["token", "create", "x", "--scope", "admin"]);
    assert_eq!(escalate.code, 1);
    assert!(escalate.stderr.contains("needs `admin`"), "{escalate:?}");
    let names: Vec<String> = as_ci(&["ls", "--json"])
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["mine"]);

    // Revocation takes effect at once; the last node-wide admin token cannot be revoked.
    server.cli(&["token", "revoke", "ci"]).ok();
    let after = as_ci(&["ls"]);
    assert_eq!(after.code, 1);
    assert!(after.stderr.contains("was revoked"), "{after:?}");
    let last = server.cli(&["token", "revoke", "admin"]);
    assert!(
        last.stderr.contains("last node-wide admin token"),
        "{last:?}"
    );
    let listed = server.cli(&["token", "ls"]).ok().to_string();
    assert!(
        listed.contains("revoked") && listed.contains("reader"),
        "{listed}"
    );
    assert!(!listed.contains(&ci[20..]), "secrets are never listed");

    // The audit log has the changes and the refusals, with who asked.
    let audit = server.cli(&["audit", "--json"]).json();
    let rows = audit.as_array().unwrap();
    let find = |action: &str, status: u64| {
        rows.iter().find(|r| {
            r["action"].as_str().unwrap().contains(action) && r["status"].as_u64() == Some(status)
        })
    };
    let deployed = find("POST /v1/functions/mine/versions", 201).expect("the deploy is audited");
    assert_eq!(deployed["token_name"], "ci");
    assert_eq!(deployed["namespace"], "team-a");
    assert_eq!(deployed["result"], "ok");
    let refused = find("POST /v1/functions/shared/versions", 403).expect("the refusal too");
    assert_eq!(refused["result"], "denied");
    assert!(find("DELETE /v1/tokens/ci", 200).is_some(), "{rows:?}");
    assert!(
        find("POST /v1/functions/mine/versions", 403).is_some(),
        "{rows:?}"
    );

    // Tokens survive a restart; revoked ones stay revoked.
    let server = server.restart(&[], &[]);
    assert_eq!(
        call(&["-H", &bearer(&reader), &functions_of(&server)]).0,
        200
    );
    assert_eq!(call(&["-H", &bearer(&ci), &functions_of(&server)]).0, 401);
}

fn functions_of(server: &Server) -> String {
    server.url("/v1/functions")
}

#[test]
fn a_token_function_needs_an_invoke_token_and_never_sees_it() {
    let (_dir, server) = fresh_server(&[]);
    server
        .cli(&[
            "deploy",
            "private",
            path_str(&example("hello")),
            "--auth",
            "token",
        ])
        .ok();
    server
        .cli(&["deploy", "open", path_str(&example("hello"))])
        .ok();
    let url = server.url("/private/echo");
    let (status, body) = call(&[&url]);
    assert_eq!(status, 401, "{body}");
    let deployer = token(&server, "deployer", &["--scope", "deploy"]);
    let (status, body) = call(&["-H", &bearer(&deployer), &url]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("needs `invoke`"), "{body}");
    let caller = token(&server, "caller", &["--scope", "invoke"]);
    let (status, body) = call(&["-H", &bearer(&caller), "-H", "x-demo: yes", &url]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("x-demo"), "the guest echoes headers: {body}");
    assert!(
        !body.contains("kdl_"),
        "the token never reaches the guest: {body}"
    );
    // A public function is anyone's, and a Kindling token sent to it is removed too.
    let (status, body) = call(&["-H", &bearer(&caller), &server.url("/open/echo")]);
    assert_eq!(status, 200);
    assert!(!body.contains("kdl_"), "{body}");
    // `kindling invoke` sends a given token, never the admin's own file.
    let given = server.cli_with(&["invoke", "private", "/"], &[("KINDLING_TOKEN", &caller)]);
    assert!(given.ok().contains("200 OK"), "{given:?}");
    let found = server.cli(&["invoke", "private", "/"]);
    assert!(found.ok().contains("401 Unauthorized"), "{found:?}");
}

#[test]
fn namespace_quotas_refuse_with_the_quota_named() {
    let (_dir, server) = fresh_server(&[]);
    let hello = example("hello");
    server
        .cli(&[
            "ns",
            "create",
            "team",
            "--functions",
            "2",
            "--memory",
            "200MiB",
            "--versions-kept",
            "2",
        ])
        .ok();
    let deploy = |name: &str, extra: &[&str]| {
        let mut args = vec!["deploy", name, path_str(&hello), "--namespace", "team"];
        args.extend_from_slice(extra);
        server.cli(&args)
    };
    deploy("a", &["--memory", "64MiB"]).ok();
    let over_memory = deploy("b", &["--memory", "160MiB"]);
    assert!(
        over_memory.stderr.contains("memory = 209715200 bytes"),
        "{over_memory:?}"
    );
    deploy("b", &["--memory", "64MiB"]).ok();
    let over_count = deploy("c", &["--memory", "1MiB"]);
    assert!(
        over_count.stderr.contains("(functions = 2)"),
        "{over_count:?}"
    );
    assert!(over_count.stderr.contains("403"), "{over_count:?}");
    // A new version of an existing function is not a new function; only two versions stay.
    for greeting in ["one", "two", "three"] {
        deploy(
            "a",
            &[
                "--memory",
                "64MiB",
                "--env",
                &format!("GREETING={greeting}"),
            ],
        )
        .ok();
    }
    let versions = server.cli(&["versions", "a", "--json"]).json();
    let numbers: Vec<u64> = versions
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [4, 3], "versions kept: 2");
    // Going back to an old version is gated like a deploy: the memory quota applies to it.
    deploy("a", &["--memory", "32MiB", "--env", "GREETING=small"]).ok();
    server
        .cli(&["ns", "set", "team", "--memory", "100MiB"])
        .ok();
    let back = server.cli(&["rollback", "a"]);
    assert!(back.stderr.contains("memory = 104857600 bytes"), "{back:?}");
    let active = server.cli(&["inspect", "a", "--json"]).json()["active_version"].clone();
    assert_eq!(active, 5, "the refused rollback changed nothing");

    // Requests per second: a bucket of one.
    server
        .cli(&["ns", "set", "team", "--rps", "0.2", "--burst", "1"])
        .ok();
    assert_eq!(call(&[&server.url("/a/")]).0, 200);
    let (status, body) = call(&["-D", "-", &server.url("/a/")]);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("quota of 0.2 requests per second"), "{body}");
    assert!(body.to_lowercase().contains("retry-after"), "{body}");

    // Requests in flight: one, held by a slow request.
    server
        .cli(&[
            "deploy",
            "slow",
            path_str(&test_program("http-wstd")),
            "--namespace",
            "busy",
        ])
        .ok();
    server
        .cli(&["ns", "set", "busy", "--max-in-flight", "1"])
        .ok();
    let slow = server.url("/slow/sleep/3000");
    let held = std::thread::spawn(move || call(&[&slow]));
    wait_for("the slow request runs", Duration::from_millis(20), || {
        let list = server.cli(&["ns", "ls", "--json"]).json();
        let busy = list
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "busy")
            .cloned();
        match busy {
            Some(n) if n["in_flight"] == 1 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let (status, body) = call(&[&server.url("/slow/sleep/1")]);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("quota of 1 requests in flight"), "{body}");
    assert_eq!(held.join().unwrap().0, 200);
    let listed = server.cli(&["ns", "ls"]).ok().to_string();
    assert!(
        listed.contains("team") && listed.contains("2/2"),
        "{listed}"
    );
    // Only a node-wide admin sets quotas.
    let team_admin = token(
        &server,
        "lead",
        &["--scope", "admin", "--namespace", "team"],
    );
    let raise = server.cli_with(
        &["ns", "set", "team", "--functions", "99"],
        &[("KINDLING_TOKEN", &team_admin)],
    );
    assert!(raise.stderr.contains("node-wide token"), "{raise:?}");
}

/// The shipped example policies, each allowing and denying.
#[test]
fn the_example_policies_allow_and_deny() {
    let dir = tempfile::tempdir().unwrap();
    let policies = repo_root().join("examples/policies");
    let policy_dir = dir.path().join("policies");
    std::fs::create_dir(&policy_dir).unwrap();
    for name in ["no-outbound-in-prod", "max-size", "authz-paths"] {
        std::fs::copy(
            policies.join(format!("{name}.rego")),
            policy_dir.join(format!("{name}.rego")),
        )
        .unwrap();
    }
    let server = Server::start(
        &kindling(),
        &dir.path().join("data"),
        &["--policy-dir", path_str(&policy_dir)],
        &[],
    );
    let hello = path_str(&example("hello")).to_string();
    let deploy = |args: &[&str]| {
        let mut all = vec!["deploy"];
        all.extend_from_slice(args);
        server.cli(&all)
    };
    // No outbound access in prod; elsewhere it is fine.
    let refused = deploy(&[
        "net",
        &hello,
        "--namespace",
        "prod",
        "--allow-outbound",
        "https://example.com",
    ]);
    assert!(refused.stderr.contains("denied by policy"), "{refused:?}");
    assert!(
        refused.stderr.contains("may not allow outbound hosts"),
        "{refused:?}"
    );
    assert_eq!(
        server
            .cli(&["ls", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        0,
        "nothing changed"
    );
    deploy(&[
        "net",
        &hello,
        "--namespace",
        "dev",
        "--allow-outbound",
        "https://example.com",
    ])
    .ok();
    deploy(&["quiet", &hello, "--namespace", "prod"]).ok();

    // Under 10 MiB only: a module padded past it with a custom section is refused.
    let mut big = std::fs::read(example("hello")).unwrap();
    let pad = 10 * 1024 * 1024;
    big.push(0);
    let mut len = Vec::new();
    let mut n = (pad + 2) as u64;
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            len.push(byte);
            break;
        }
        len.push(byte | 0x80);
    }
    big.extend_from_slice(&len);
    big.push(1);
    big.push(b'p');
    big.resize(big.len() + pad, 0);
    let file = dir.path().join("big.wasm");
    std::fs::write(&file, &big).unwrap();
    let too_big = deploy(&["big", path_str(&file)]);
    assert!(
        too_big
            .stderr
            .contains("modules must be under 10485760 bytes"),
        "{too_big:?}"
    );

    // Per-path authz: reads are open, writes need an invoke token or /public/.
    assert_eq!(call(&[&server.url("/quiet/")]).0, 200);
    let (status, body) = call(&["-d", "x", &server.url("/quiet/private")]);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("authorization policy"), "{body}");
    assert_eq!(call(&["-d", "x", &server.url("/quiet/public/x")]).0, 200);
    let invoker = token(&server, "app", &["--scope", "invoke"]);
    assert_eq!(
        call(&[
            "-d",
            "x",
            "-H",
            &bearer(&invoker),
            &server.url("/quiet/private")
        ])
        .0,
        200
    );

    // Office hours: the example's logic, with the window moved around the present.
    let office = std::fs::read_to_string(policies.join("office-hours.rego")).unwrap();
    let line = office
        .lines()
        .find(|l| l.starts_with("office := "))
        .unwrap();
    let all_days =
        r#"{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}"#;
    let closed = office.replace(
        line,
        &format!(r#"office := {{"days": {all_days}, "from": 0, "to": 0}}"#),
    );
    let open = office.replace(
        line,
        &format!(r#"office := {{"days": {all_days}, "from": 0, "to": 24}}"#),
    );
    let write = |text: &str| {
        let path = dir.path().join("office-hours.rego");
        std::fs::write(&path, text).unwrap();
        path
    };
    server
        .cli(&["policy", "add", path_str(&write(&closed))])
        .ok();
    let after_hours = deploy(&["late", &hello]);
    assert!(
        after_hours.stderr.contains("deploys are allowed"),
        "{after_hours:?}"
    );
    let oncall = token(&server, "oncall", &["--scope", "deploy"]);
    server
        .cli_with(&["deploy", "late", &hello], &[("KINDLING_TOKEN", &oncall)])
        .ok();
    server.cli(&["policy", "add", path_str(&write(&open))]).ok();
    deploy(&["early", &hello]).ok();
    let listed = server.cli(&["policy", "ls", "--json"]).json();
    let office_version = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "office-hours")
        .unwrap()["version"]
        .clone();
    assert_eq!(office_version, 2, "policies are versioned");

    // A policy that does not compile is refused with its line and column, changing nothing.
    let broken = write("package kindling.admission\n\ndeny contains msg if {\n  msg := \n}\n");
    let out = server.cli(&["policy", "add", "--name", "broken", path_str(&broken)]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("broken.rego:"), "{out:?}");
    deploy(&["still-fine", &hello]).ok();

    // Decisions are counted.
    let metrics = crate::curl(&["-fsS", &server.url("/metrics")]).unwrap();
    for series in [
        r#"kindling_policy_decisions_total{decision="deny",kind="admission"}"#,
        r#"kindling_policy_decisions_total{decision="allow",kind="authz"}"#,
        r#"kindling_policy_decisions_total{decision="deny",kind="authz"}"#,
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
}

#[test]
fn an_open_or_plain_node_beyond_loopback_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let start = |args: &[&str]| {
        Command::new(kindling())
            .args(["serve", "--data-dir", path_str(&dir.path().join("data"))])
            .args(args)
            .output()
            .unwrap()
    };
    let open = start(&["--listen", "0.0.0.0:0", "--auth", "none"]);
    assert_eq!(open.status.code(), Some(2));
    let text = String::from_utf8_lossy(&open.stderr);
    assert!(
        text.contains("--auth none is allowed on loopback only"),
        "{text}"
    );
    let plain = start(&["--listen", "0.0.0.0:0"]);
    assert_eq!(plain.status.code(), Some(2));
    let text = String::from_utf8_lossy(&plain.stderr);
    assert!(text.contains("--tls-cert"), "{text}");
    // On loopback, --auth none serves everyone and writes no token.
    let server = Server::start(
        &kindling(),
        &dir.path().join("open"),
        &["--auth", "none"],
        &[],
    );
    assert_eq!(call(&[&server.url("/v1/functions")]).0, 200);
    assert!(server.token().is_none());
}

/// A CA and a certificate for 127.0.0.1 and localhost that it signed, as PEM files.
fn certificate(
    dir: &Path,
    name: &str,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    // Subject and issuer must differ, or the leaf would look self-signed.
    ca_params
        .distinguished_name
        .push(DnType::CommonName, format!("kindling test CA {name}"));
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}-cert.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

#[test]
fn tls_is_verified_by_curl_and_the_cli_and_reloads_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(dir.path(), "first");
    // The node reads the files it was given; a rotation replaces their contents.
    let (live_cert, live_key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&cert, &live_cert).unwrap();
    std::fs::copy(&key, &live_key).unwrap();
    let server = Server::spawn(
        &kindling(),
        &dir.path().join("data"),
        &[
            "--tls-cert",
            path_str(&live_cert),
            "--tls-key",
            path_str(&live_key),
        ],
        &[],
    );
    let base = format!("https://127.0.0.1:{}", server.addr().port());
    let ready = |ca: &Path| call(&["--cacert", path_str(ca), &format!("{base}/readyz")]);
    wait_for(
        "the TLS node is ready",
        Duration::from_millis(50),
        || match ready(&ca) {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    // HTTP/2 over ALPN.
    let version = Command::new("curl")
        .args([
            "-sS",
            "--cacert",
            path_str(&ca),
            "--http2",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_version}", &format!("{base}/healthz")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&version.stdout), "2", "{version:?}");
    // Without the CA the certificate is not trusted.
    assert_eq!(call(&[&format!("{base}/healthz")]).0, 0);

    // The CLI verifies it too.
    let cli = |args: &[&str], ca: &Path| {
        server.cli_with(
            args,
            &[
                ("KINDLING_SERVER", &base),
                ("KINDLING_CA_CERT", path_str(ca)),
            ],
        )
    };
    cli(&["deploy", "hello", path_str(&example("hello"))], &ca).ok();
    let (status, body) = call(&["--cacert", path_str(&ca), &format!("{base}/hello/")]);
    assert_eq!(status, 200, "{body}");
    let untrusted = server.cli_with(&["ls"], &[("KINDLING_SERVER", &base)]);
    assert_eq!(untrusted.code, 1);
    assert!(untrusted.stderr.contains("cannot reach"), "{untrusted:?}");

    // A client that trusts only the first CA, with a connection open across the rotation.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let first_ca = reqwest::Certificate::from_pem(&std::fs::read(&ca).unwrap()).unwrap();
    let kept = reqwest::Client::builder()
        .add_root_certificate(first_ca)
        .build()
        .unwrap();
    let healthz = format!("{base}/healthz");
    let status = runtime.block_on(async { kept.get(&healthz).send().await.unwrap().status() });
    assert_eq!(status, 200);

    // Rotation: new files, SIGHUP, new connections see the new certificate.
    let (new_ca, new_cert, new_key) = certificate(dir.path(), "second");
    std::fs::copy(&new_cert, &live_cert).unwrap();
    std::fs::copy(&new_key, &live_key).unwrap();
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    wait_for(
        "the new certificate serves",
        Duration::from_millis(50),
        || match ready(&new_ca) {
            (200, _) => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    assert_eq!(
        ready(&ca).0,
        0,
        "the old CA no longer verifies new connections"
    );
    // The connection opened before the reload still serves (this client could not verify a
    // new one).
    let status = runtime.block_on(async { kept.get(&healthz).send().await.unwrap().status() });
    assert_eq!(status, 200, "an open connection survives the reload");
    cli(&["ls"], &new_ca).ok();
    // A bad pair on reload keeps the good one serving.
    std::fs::write(&live_key, "not a key").unwrap();
    Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    wait_for(
        "the failed reload is logged",
        Duration::from_millis(50),
        || {
            if server.log().contains("TLS reload failed") {
                Ok(())
            } else {
                Err(server.log())
            }
        },
    );
    assert_eq!(ready(&new_ca).0, 200);
}

/// Found by review: a percent-encoded name must be checked as the function it names, and a
/// token function must not be reachable from another namespace through `fn.local`.
#[test]
fn neither_encoded_names_nor_calls_between_functions_get_around_namespaces() {
    let (_dir, server) = fresh_server(&[]);
    let hello = path_str(&example("hello")).to_string();
    server
        .cli(&["deploy", "hello", &hello, "--namespace", "team-b"])
        .ok();
    let ci = token(
        &server,
        "ci",
        &["--scope", "deploy", "--namespace", "team-a"],
    );
    for (method, path) in [
        ("DELETE", "/v1/functions/%68ello"),
        ("POST", "/v1/functions/%68ello/rollback"),
        ("GET", "/v1/functions/%68%65llo/logs"),
    ] {
        let (status, body) = call(&["-X", method, "-H", &bearer(&ci), &server.url(path)]);
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    assert_eq!(
        server
            .cli(&["ls", "--json"])
            .json()
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // A team-b function that needs a token; a team-a function calls it through fn.local.
    server
        .cli(&[
            "deploy",
            "secret",
            path_str(&test_program("http-wasip2")),
            "--namespace",
            "team-b",
            "--auth",
            "token",
        ])
        .ok();
    for (name, namespace) in [("outsider", "team-a"), ("insider", "team-b")] {
        server
            .cli(&[
                "deploy",
                name,
                path_str(&test_program("hostile-http")),
                "--namespace",
                namespace,
                "--allow-outbound",
                "http://*.fn.local",
            ])
            .ok();
    }
    let (_, outside) = call(&[&server.url("/outsider/outbound?secret.fn.local/status/200")]);
    assert!(outside.starts_with("status: 403"), "{outside}");
    let (_, inside) = call(&[&server.url("/insider/outbound?secret.fn.local/status/200")]);
    assert!(inside.starts_with("status: 200"), "{inside}");
}
