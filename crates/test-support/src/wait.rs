//! Waiting for a state instead of sleeping for a time: poll until a condition holds, with a
//! generous bound that is never the assertion (a slow machine only waits longer).

use std::time::{Duration, Instant};

/// How long anything may take before a test gives up.
pub const PATIENCE: Duration = Duration::from_secs(90);

/// Polls `probe` every `every` until it returns `Some`, and returns that. Panics with `what`
/// and the last `describe`d state after [`PATIENCE`].
pub fn wait_for<T>(what: &str, every: Duration, mut probe: impl FnMut() -> Result<T, String>) -> T {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(value) => return value,
            Err(state) => assert!(
                started.elapsed() < PATIENCE,
                "{what} never happened; last seen: {state}"
            ),
        }
        std::thread::sleep(every);
    }
}

/// [`wait_for`] on an async runtime: sleeps with Tokio between polls.
pub async fn wait_for_async<T, F>(what: &str, every: Duration, mut probe: impl FnMut() -> F) -> T
where
    F: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(state) => assert!(
                started.elapsed() < PATIENCE,
                "{what} never happened; last seen: {state}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}
