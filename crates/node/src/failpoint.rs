//! Crash-test hooks, compiled only with the `failpoints` feature (which the end-to-end tests
//! turn on, and production builds never carry): `KINDLING_FAILPOINT=NAME` parks the operation
//! at the point `NAME` forever, so that a test can kill the process exactly there.

/// Parks forever when the `KINDLING_FAILPOINT` variable names `point`.
pub(crate) async fn park(point: &str, function: &str) {
    if std::env::var("KINDLING_FAILPOINT").is_ok_and(|armed| armed == point) {
        tracing::warn!(function, point, "failpoint reached: parking here");
        std::future::pending::<()>().await;
    }
}
