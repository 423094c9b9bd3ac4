//! Variables and secrets: set at deploy, read by guests through Spin's variables and
//! `wasi:config`, secrets sealed before they reach the registry and never shown.

use kindling_test_support::test_program;

use crate::{curl, fresh_server, path_str};

fn get(server: &kindling_test_support::Server, path: &str) -> (u16, String) {
    let out = curl(&["-sS", "-w", "\n%{http_code}", &server.url(path)]).unwrap();
    let (body, status) = out.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_string())
}

#[test]
fn guests_read_variables_and_secrets_and_nothing_shows_a_secret() {
    let (dir, server) = fresh_server(&[]);
    let secret_file = dir.path().join("token.txt");
    std::fs::write(&secret_file, "from-a-file").unwrap();
    server
        .cli(&[
            "deploy",
            "spin",
            path_str(&test_program("spin-kv")),
            "--var",
            "region=eu-west",
            "--secret",
            "db_password=hunter2",
            "--secret",
            &format!("token=@{}", secret_file.display()),
        ])
        .ok();
    assert_eq!(get(&server, "/spin/var/region"), (200, "eu-west".into()));
    assert_eq!(
        get(&server, "/spin/var/db_password"),
        (200, "hunter2".into())
    );
    assert_eq!(get(&server, "/spin/var/token"), (200, "from-a-file".into()));
    assert_eq!(get(&server, "/spin/var/missing").0, 404);

    server
        .cli(&[
            "deploy",
            "wasi",
            path_str(&test_program("wasi-kv")),
            "--var",
            "region=eu-west",
            "--secret",
            "api_key=s3cret",
        ])
        .ok();
    assert_eq!(get(&server, "/wasi/config/region"), (200, "eu-west".into()));
    assert_eq!(
        get(&server, "/wasi/config-rc1/api_key"),
        (200, "s3cret".into())
    );
    assert_eq!(get(&server, "/wasi/config/missing").0, 404);
    assert_eq!(
        get(&server, "/wasi/config-all").1,
        "api_key=s3cret\nregion=eu-west\n"
    );

    // Nowhere outside the guest: not the admin API, inspect, versions, the log, the database.
    for out in [
        server.cli(&["inspect", "spin"]).ok().to_string(),
        server.cli(&["inspect", "spin", "--json"]).ok().to_string(),
        server.cli(&["versions", "spin", "--json"]).ok().to_string(),
        curl(&[
            "-sS",
            "-H",
            &format!("Authorization: {}", server.bearer()),
            &server.url("/v1/functions"),
        ])
        .unwrap(),
        server.log(),
    ] {
        assert!(
            !out.contains("hunter2") && !out.contains("from-a-file"),
            "{out}"
        );
    }
    let inspect = server.cli(&["inspect", "spin"]).ok().to_string();
    assert!(inspect.contains("db_password token (sealed)"), "{inspect}");
    assert!(inspect.contains("region=eu-west"), "{inspect}");
    let data = dir.path().join("data");
    let database = std::fs::read(data.join("registry.db")).unwrap();
    assert!(
        !database.windows(7).any(|w| w == b"hunter2"),
        "the registry holds only sealed text"
    );
    let key = data.join("secret.key");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Redeploying the same configuration changes nothing: sealing is stable.
    let again = server.cli(&[
        "deploy",
        "spin",
        path_str(&test_program("spin-kv")),
        "--var",
        "region=eu-west",
        "--secret",
        "db_password=hunter2",
        "--secret",
        &format!("token=@{}", secret_file.display()),
    ]);
    assert!(again.ok().contains("nothing changed"), "{again:?}");

    // Bad names are refused at deploy with Spin's rule.
    let out = server.cli(&[
        "deploy",
        "bad",
        path_str(&test_program("spin-kv")),
        "--var",
        "Bad-Name=1",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.contains("lowercase letter"), "{out:?}");

    // A secret sealed by another node's key cannot be opened: the restarted node says what to do.
    let mut server = server;
    server.stop();
    std::fs::remove_file(&key).unwrap();
    std::fs::write(&key, [7u8; 32]).unwrap();
    let server = kindling_test_support::Server::spawn(&crate::kindling(), &data, &[], &[]);
    let addr = server.addr();
    kindling_test_support::wait_for(
        "the node answers",
        std::time::Duration::from_millis(20),
        || kindling_test_support::get_status(addr, "/healthz").map_err(|err| err.to_string()),
    );
    let body = crate::curl(&["-sS", &server.url("/readyz")]).unwrap();
    assert!(body.contains("another node's key"), "{body}");
    assert!(body.contains("--secret db_password="), "{body}");
}
