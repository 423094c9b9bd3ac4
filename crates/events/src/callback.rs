//! Callbacks: when an invocation that asked for one (`X-Callback-Url`) finishes, its result is
//! posted there: the function's response body, with the invocation's id, state and status in
//! headers. A delivery that fails (no connection, a timeout, anything but 2xx) is retried with
//! backoff; when its retries are spent the callback is marked failed, and the invocation keeps
//! the last error.
//!
//! Every delivery is signed: `Kindling-Signature: t=UNIX-SECONDS,v1=HEX`, the HMAC-SHA256 of
//! `{t}.{invocation id}.{body}` with the node's callback key (`<data-dir>/callback.key`, 32
//! random bytes in hex, made at first start, readable by its owner only). A receiver that
//! holds the key checks that a callback came from this node and is recent.
//!
//! The node makes these requests itself, from inside the network it runs in, so a callback is
//! kept off addresses a client should not reach through it: `http` or `https` only, no
//! credentials, and never a link-local, multicast or unspecified address (cloud metadata
//! services live there) nor, unless the node runs with `--callback-allow-private`, a loopback
//! or private one. The URL is checked when the invocation is accepted, and again at delivery by
//! the client's resolver, which connects only to the addresses it checked (a name that changes
//! its answer in between gains nothing).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::backoff;
use crate::events::Events;
use crate::sql::{self, PendingCallback};
use crate::worker::INVOCATION_ID_HEADER;

/// Deliveries in flight at once.
const PARALLEL: u32 = 16;

/// Checks a callback URL before the invocation is accepted.
pub(crate) fn check_url(url: &str, allow_private: bool) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| format!("X-Callback-Url {url:?} is not a URL ({err})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "X-Callback-Url {url:?}: only http and https callbacks are sent"
        ));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!(
            "X-Callback-Url {url:?}: credentials in the URL are refused; the receiver can \
             check the invocation id instead"
        ));
    }
    let ip = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => None,
        None => return Err(format!("X-Callback-Url {url:?} has no host")),
    };
    if let Some(ip) = ip
        && let Err(why) = allowed(ip, allow_private)
    {
        return Err(format!("X-Callback-Url {url:?}: {why}"));
    }
    Ok(())
}

/// Whether the node may send a callback to `ip`.
fn allowed(ip: IpAddr, allow_private: bool) -> Result<(), String> {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    let (never, private) = match ip {
        IpAddr::V4(v4) => (
            v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast() || v4.is_multicast(),
            v4.is_loopback()
                || v4.is_private()
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64),
        ),
        IpAddr::V6(v6) => (
            v6.is_unspecified() || v6.is_multicast() || (v6.segments()[0] & 0xffc0) == 0xfe80,
            v6.is_loopback() || (v6.segments()[0] & 0xfe00) == 0xfc00,
        ),
    };
    if never {
        return Err(format!(
            "{ip} is a link-local, multicast or unspecified address; callbacks are never sent there"
        ));
    }
    if private && !allow_private {
        return Err(format!(
            "{ip} is a loopback or private address; start the node with \
             --callback-allow-private to send callbacks inside its network"
        ));
    }
    Ok(())
}

/// The callback client's resolver: it answers only addresses [`allowed`] accepts, so the
/// connection goes where the check looked.
struct Guarded {
    allow_private: bool,
}

impl reqwest::dns::Resolve for Guarded {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let kept: Vec<SocketAddr> = found
                .into_iter()
                .filter(|addr| match allowed(addr.ip(), allow_private) {
                    Ok(()) => true,
                    Err(why) => {
                        refused = Some(why);
                        false
                    }
                })
                .collect();
            if kept.is_empty() {
                let why = refused.unwrap_or_else(|| "no address".into());
                return Err(format!("callback host {host:?}: {why}").into());
            }
            Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

pub(crate) async fn run(events: Arc<Events>) {
    let allow_private = events.config.callback_allow_private;
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(Guarded { allow_private }))
        .timeout(events.config.callback_timeout)
        .user_agent(concat!("kindling/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(client) => client,
        Err(err) => {
            tracing::error!(error = %err, "callbacks: cannot build the HTTP client; none will be sent");
            return;
        }
    };
    let lease = (events.config.callback_timeout.as_millis() as i64) * 2 + 1_000;
    let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL as usize));
    loop {
        let free = slots.available_permits() as u32;
        if free > 0 {
            let now = sql::now_ms();
            match events
                .store
                .call(move |conn| sql::due_callbacks(conn, now, free, now + lease))
                .await
            {
                Ok(due) => {
                    for callback in due {
                        let Ok(permit) = slots.clone().try_acquire_owned() else {
                            break;
                        };
                        let (events, client) = (events.clone(), client.clone());
                        tokio::spawn(async move {
                            deliver(&events, &client, callback).await;
                            drop(permit);
                        });
                    }
                }
                Err(err) => tracing::error!(error = %err, "callbacks: cannot read the queue"),
            }
        }
        let wait = match events.store.call(sql::next_callback_due).await {
            Ok(Some(at)) => (at - sql::now_ms()).clamp(10, 1_000) as u64,
            _ => 1_000,
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// The header carrying a callback's signature.
pub const SIGNATURE_HEADER: &str = "kindling-signature";

/// Signs with `key` from now on, and writes it to `path` (mode 0600) unless the file holds it
/// already.
pub(crate) fn keep_key(path: &std::path::Path, key: &[u8; 32]) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let text = hex::encode(key);
    let before = match std::fs::read_to_string(path) {
        Ok(before) => Some(before),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => return Err(format!("cannot read the callback key {path:?}: {err}")),
    };
    if before.as_deref().map(str::trim) == Some(text.as_str()) {
        return Ok(key.to_vec());
    }
    let fresh = path.with_extension("key.new");
    let _ = std::fs::remove_file(&fresh);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&fresh)
        .map_err(|err| format!("cannot create the callback key {fresh:?}: {err}"))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&fresh, path))
        .map_err(|err| format!("cannot write the callback key {path:?}: {err}"))?;
    if before.is_some() {
        tracing::warn!(
            path = %path.display(),
            "callbacks are signed with the cluster's key from now on, written to this file; \
             give it to receivers that checked the node's own key"
        );
    }
    Ok(key.to_vec())
}

/// The node's callback key: read from `path`, or made there (mode 0600) the first time.
pub(crate) fn signing_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    match std::fs::read_to_string(path) {
        Ok(text) => hex::decode(text.trim())
            .ok()
            .filter(|key| key.len() >= 16)
            .ok_or_else(|| format!("{path:?} is not a callback key (hex, 16 bytes or more); delete it to make a new one")),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            getrandom::fill(&mut key).map_err(|err| err.to_string())?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|err| format!("cannot create the callback key {path:?}: {err}"))?;
            file.write_all(hex::encode(&key).as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(|err| format!("cannot write the callback key {path:?}: {err}"))?;
            Ok(key)
        }
        Err(err) => Err(format!("cannot read the callback key {path:?}: {err}")),
    }
}

/// `t=...,v1=...` for a delivery of `body` for invocation `id` at `seconds`.
pub fn signature(key: &[u8], seconds: u64, id: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac as _};
    let mut mac = <Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(key).expect("any key length");
    mac.update(format!("{seconds}.{id}.").as_bytes());
    mac.update(body);
    format!(
        "t={seconds},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

async fn deliver(events: &Events, client: &reqwest::Client, callback: PendingCallback) {
    let seconds = (sql::now_ms() / 1000).max(0) as u64;
    let signed = signature(&events.callback_key, seconds, &callback.id, &callback.body);
    let mut request = client
        .post(&callback.url)
        .header(SIGNATURE_HEADER, signed)
        .header(INVOCATION_ID_HEADER, &callback.id)
        .header("kindling-function", &callback.function)
        .header("kindling-invocation-state", callback.state.as_str());
    if let Some(status) = callback.status {
        request = request.header("kindling-status", status);
    }
    if let Some((_, content_type)) = callback
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
    {
        request = request.header("content-type", content_type.as_slice());
    }
    let result = request.body(callback.body.clone()).send().await;
    let error = match result {
        Ok(response) if response.status().is_success() => None,
        Ok(response) => Some(format!("the receiver answered {}", response.status())),
        Err(err) => Some(format!("delivery failed: {err}")),
    };
    let policy = events.config.callback_retry;
    let (state, next_at, outcome) = match &error {
        None => ("delivered", None, "delivered"),
        Some(_) if callback.attempts > policy.retries => ("failed", None, "failed"),
        Some(_) => {
            let delay = backoff::delay_ms(&policy, callback.attempts) as i64;
            ("pending", Some(sql::now_ms() + delay), "retry")
        }
    };
    events
        .counters
        .callbacks
        .with_label_values(&[outcome])
        .inc();
    if let Some(error) = &error {
        tracing::warn!(invocation = %callback.id, url = %callback.url, attempt = callback.attempts, error = %error, "callback not delivered");
    }
    let id = callback.id.clone();
    if let Err(err) = events
        .store
        .call(move |conn| sql::callback_done(conn, &id, state, next_at, error.as_deref()))
        .await
    {
        tracing::error!(invocation = %callback.id, error = %err, "callbacks: cannot record a delivery");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls_are_checked() {
        assert!(check_url("https://hooks.example.com/x", false).is_ok());
        assert!(check_url("http://127.0.0.1:9000/done", true).is_ok());
        let refused = |url: &str| check_url(url, false).unwrap_err();
        assert!(refused("http://127.0.0.1:9000/done").contains("--callback-allow-private"));
        assert!(refused("http://10.1.2.3/").contains("private"));
        assert!(refused("http://100.64.0.1/").contains("private"));
        assert!(refused("http://[fd00::1]/").contains("private"));
        assert!(refused("ftp://example.com/").contains("http and https"));
        assert!(refused("http://169.254.169.254/latest").contains("link-local"));
        assert!(
            check_url("http://169.254.169.254/", true)
                .unwrap_err()
                .contains("never")
        );
        assert!(refused("http://[fe80::1]/").contains("link-local"));
        assert!(refused("http://[::ffff:169.254.169.254]/").contains("link-local"));
        assert!(refused("http://user:pw@example.com/").contains("credentials"));
        assert!(refused("not a url").contains("not a URL"));
    }

    #[test]
    fn callback_keys_are_made_once_and_kept_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("callback.key");
        let key = signing_key(&path).unwrap();
        assert_eq!(key.len(), 32);
        assert_eq!(
            signing_key(&path).unwrap(),
            key,
            "read back, not made again"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(&path, "not hex").unwrap();
        assert!(signing_key(&path).unwrap_err().contains("delete it"));
        // The signature covers the time, the id and the body.
        let a = signature(&key, 1, "inv_1", b"body");
        assert!(a.starts_with("t=1,v1=") && a.len() == "t=1,v1=".len() + 64);
        assert_ne!(a, signature(&key, 2, "inv_1", b"body"));
        assert_ne!(a, signature(&key, 1, "inv_2", b"body"));
        assert_ne!(a, signature(&key, 1, "inv_1", b"bodz"));
    }

    #[tokio::test]
    async fn the_resolver_answers_only_allowed_addresses() {
        use reqwest::dns::Resolve as _;
        let name = |host: &str| host.parse::<reqwest::dns::Name>().unwrap();
        let strict = Guarded {
            allow_private: false,
        };
        let err = strict.resolve(name("localhost")).await.err().unwrap();
        assert!(err.to_string().contains("loopback or private"), "{err}");
        let open = Guarded {
            allow_private: true,
        };
        let addrs: Vec<_> = open.resolve(name("localhost")).await.unwrap().collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()) && !addrs.is_empty());
    }
}
