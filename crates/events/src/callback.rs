//! Callbacks: when an invocation that asked for one (`X-Callback-Url`) finishes, its result is
//! posted there: the function's response body, with the invocation's id, state and status in
//! headers. A delivery that fails (no connection, a timeout, anything but 2xx) is retried with
//! backoff; when its retries are spent the callback is marked failed, and the invocation keeps
//! the last error.
//!
//! The node makes these requests itself, so the URL is checked when the invocation is
//! accepted: `http` or `https` only, no credentials, and never a link-local address (cloud
//! metadata services live there).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::backoff;
use crate::events::Events;
use crate::sql::{self, PendingCallback};
use crate::worker::INVOCATION_ID_HEADER;

/// Deliveries in flight at once.
const PARALLEL: u32 = 16;

/// Checks a callback URL before the invocation is accepted.
pub(crate) fn check_url(url: &str) -> Result<(), String> {
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
    let link_local = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => forbidden(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => forbidden(IpAddr::V6(ip)),
        Some(url::Host::Domain(_)) => false,
        None => return Err(format!("X-Callback-Url {url:?} has no host")),
    };
    if link_local {
        return Err(format!(
            "X-Callback-Url {url:?}: link-local and unspecified addresses are refused"
        ));
    }
    Ok(())
}

fn forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_link_local() || ip.is_unspecified() || ip.is_broadcast(),
        IpAddr::V6(ip) => {
            ip.is_unspecified()
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| forbidden(IpAddr::V4(v4)))
        }
    }
}

pub(crate) async fn run(events: Arc<Events>) {
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
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
    loop {
        let now = sql::now_ms();
        let due = events
            .store
            .call(move |conn| sql::due_callbacks(conn, now, PARALLEL, now + lease))
            .await;
        match due {
            Ok(due) if !due.is_empty() => {
                let sends = due
                    .into_iter()
                    .map(|callback| deliver(&events, &client, callback));
                futures::future::join_all(sends).await;
                continue;
            }
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "callbacks: cannot read the queue"),
        }
        let wait = match events.store.call(sql::next_callback_due).await {
            Ok(Some(at)) => (at - sql::now_ms()).clamp(10, 1_000) as u64,
            _ => 1_000,
        };
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

async fn deliver(events: &Events, client: &reqwest::Client, callback: PendingCallback) {
    let mut request = client
        .post(&callback.url)
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
    use super::check_url;

    #[test]
    fn callback_urls_are_checked() {
        assert!(check_url("http://127.0.0.1:9000/done").is_ok());
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(
            check_url("ftp://example.com/")
                .unwrap_err()
                .contains("http and https")
        );
        assert!(
            check_url("http://169.254.169.254/latest")
                .unwrap_err()
                .contains("link-local")
        );
        assert!(
            check_url("http://[fe80::1]/")
                .unwrap_err()
                .contains("link-local")
        );
        assert!(
            check_url("http://[::ffff:169.254.169.254]/")
                .unwrap_err()
                .contains("link-local")
        );
        assert!(
            check_url("http://user:pw@example.com/")
                .unwrap_err()
                .contains("credentials")
        );
        assert!(check_url("not a url").unwrap_err().contains("not a URL"));
    }
}
