//! Crash-test hooks, compiled only with the `failpoints` feature (which the end-to-end tests
//! turn on, and production builds never carry): `KINDLING_FAILPOINT=NAME` parks the operation
//! at the point `NAME` forever, so that a test can kill the process exactly there;
//! `KINDLING_FAILPOINT=NAME@MS` holds it there for MS milliseconds, so that a test can make
//! two operations overlap for certain.

/// Parks (forever, or for the armed time) when the `KINDLING_FAILPOINT` variable names `point`.
pub(crate) async fn park(point: &str, function: &str) {
    let Ok(armed) = std::env::var("KINDLING_FAILPOINT") else {
        return;
    };
    let (name, hold) = match armed.split_once('@') {
        Some((name, ms)) => (name, ms.parse::<u64>().ok()),
        None => (armed.as_str(), None),
    };
    if name != point {
        return;
    }
    match hold {
        Some(ms) => {
            tracing::warn!(function, point, ms, "failpoint reached: holding here");
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        None => {
            tracing::warn!(function, point, "failpoint reached: parking here");
            std::future::pending::<()>().await;
        }
    }
}
