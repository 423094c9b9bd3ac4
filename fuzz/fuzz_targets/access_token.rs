//! Fuzzes token authentication: any `Authorization` header must be refused with a message or
//! accepted, never panic, and only the one real token is ever accepted.

#![no_main]

use std::sync::{Arc, OnceLock};

use kindling_access::{Access, AuthMode, Caller, NewTokenRequest, Scope};
use kindling_registry::SqliteCatalog;
use libfuzzer_sys::fuzz_target;

struct Fixture {
    access: Arc<Access>,
    token: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        runtime.block_on(async {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let store = Arc::new(SqliteCatalog::open(dir.path()).await.expect("a registry"));
            let access = Access::open(store, AuthMode::Token, vec![]).await.expect("access");
            let made = access
                .create_token(
                    &Caller::Open,
                    NewTokenRequest {
                        name: "fuzz".into(),
                        namespace: Some("team".into()),
                        scopes: vec![Scope::Deploy],
                        expires_in_seconds: None,
                    },
                )
                .await
                .expect("a token");
            Fixture {
                access,
                token: made.token,
                _dir: dir,
            }
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let fixture = fixture();
    match fixture.access.authenticate(Some(data)) {
        Ok(caller) => {
            let text = std::str::from_utf8(data).expect("an accepted header is text");
            assert!(text.trim_end().ends_with(&fixture.token), "accepted {text:?}");
            assert!(caller.require(Scope::Deploy, Some("team")).is_ok());
            assert!(caller.require(Scope::Deploy, Some("other")).is_err());
        }
        Err(denied) => {
            assert_eq!(denied.status, 401);
            assert!(!denied.message.is_empty());
        }
    }
    // A token with one character changed is refused.
    let mut forged = fixture.token.clone().into_bytes();
    if let Some(&first) = data.first() {
        let at = 4 + usize::from(first) % (forged.len() - 4);
        let replacement = b"0123456789abcdef"[usize::from(data.len() as u8) % 16];
        if forged[at] != replacement && forged[at] != b'_' {
            forged[at] = replacement;
            let header = [b"Bearer ".as_slice(), &forged].concat();
            assert!(fixture.access.authenticate(Some(&header)).is_err());
        }
    }
});
