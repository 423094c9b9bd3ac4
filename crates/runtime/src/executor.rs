//! Where guest code runs. Most functions answer in well under an epoch tick; they run inline on
//! the I/O threads, where a request costs no hand-off between threads. A function whose guests
//! keep running through epoch ticks is *heavy*: its requests run on a separate pool of guest
//! threads at a lower scheduling priority (nice 10), so that when heavy guests saturate the
//! CPU the kernel preempts them as soon as an I/O thread wakes, and a request the node turns
//! away is still answered in microseconds. The mark decays after a run of short requests.

use std::future::Future;

/// Spawns guest tasks on a dedicated runtime, or on the caller's runtime.
pub(crate) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
}

/// How heavy a function's guests have been lately: raised a lot by a request that ran through
/// an epoch tick, lowered a little by one that did not.
#[derive(Debug, Default)]
pub(crate) struct Weight {
    score: std::sync::atomic::AtomicU32,
}

impl Weight {
    const HEAVY_STEP: u32 = 16;
    const MAX: u32 = 256;

    /// Whether the function's requests should run on the guest pool.
    pub(crate) fn is_heavy(&self) -> bool {
        self.score.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Records how a request ran: `yields` epoch ticks went by while its guest was running.
    pub(crate) fn record(&self, yields: u32) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.score.fetch_update(Relaxed, Relaxed, |score| {
            Some(if yields > 0 {
                (score + Self::HEAVY_STEP).min(Self::MAX)
            } else {
                score.saturating_sub(1)
            })
        });
    }
}

impl Executor {
    /// A dedicated pool of `threads` threads, or the caller's runtime when `threads` is 0.
    pub(crate) fn new(threads: usize) -> std::io::Result<Self> {
        if threads == 0 {
            return Ok(Self { runtime: None });
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kindling-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `task` on the guest pool when `heavy` (and there is a pool), else on the caller's
    /// runtime.
    pub(crate) fn spawn<F>(&self, heavy: bool, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(runtime) if heavy => runtime.spawn(task),
            _ => tokio::spawn(task),
        }
    }
}

/// How much lower guest threads run than the I/O threads, in nice levels.
const GUEST_NICENESS: i32 = 10;

/// Lowers the calling thread's priority (Linux applies nice values per thread).
fn lower_priority() {
    let thread = rustix::thread::gettid();
    let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
    if let Err(err) = rustix::process::setpriority_process(Some(thread), current + GUEST_NICENESS) {
        tracing::debug!(error = %err, "cannot lower the priority of a guest thread");
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside another runtime; let its
        // threads wind down in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_run_marks_heavy_and_short_runs_clear_it_slowly() {
        let weight = Weight::default();
        assert!(!weight.is_heavy());
        weight.record(0);
        assert!(!weight.is_heavy(), "short requests stay inline");
        weight.record(3);
        assert!(weight.is_heavy());
        for _ in 0..Weight::HEAVY_STEP - 1 {
            weight.record(0);
        }
        assert!(
            weight.is_heavy(),
            "one heavy request outweighs a few short ones"
        );
        weight.record(0);
        assert!(!weight.is_heavy());
        for _ in 0..100 {
            weight.record(5);
        }
        assert_eq!(
            weight.score.load(std::sync::atomic::Ordering::Relaxed),
            Weight::MAX
        );
    }
}
