//! Where guest code runs. Most functions answer in well under a millisecond of CPU; they run
//! inline on the I/O threads, where a request costs no hand-off between threads. A function
//! whose guests spend a millisecond or more of CPU on a request is *heavy*: its requests run on
//! a separate pool of guest threads at a lower scheduling priority (nice 10), so that when heavy
//! guests saturate the CPU the kernel preempts them as soon as an I/O thread wakes, and a
//! request the node turns away is still answered in microseconds. The mark decays after a run
//! of light requests.
//!
//! What a guest spends is measured around each poll of its future: the guest's code runs
//! inside those polls, so time spent waiting for I/O or for a thread does not count. The clock
//! is the monotonic one (read in user space, tens of nanoseconds); the thread's CPU clock would
//! also exclude preemption, but reading it is a system call per poll, which cost a small
//! function 8% of its throughput. A poll preempted for a millisecond can mark a light function
//! heavy for a few requests; the mark decays.

use std::future::Future;
use std::time::Duration;

/// Spawns guest tasks on a dedicated runtime, or on the caller's runtime.
pub(crate) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
}

/// How heavy a function's guests have been lately: raised a lot by a request whose guest ran
/// for [`Weight::HEAVY_CPU`] or more, lowered a little by a lighter one.
#[derive(Debug, Default)]
pub(crate) struct Weight {
    score: std::sync::atomic::AtomicU32,
}

impl Weight {
    const HEAVY_STEP: u32 = 16;
    const MAX: u32 = 256;
    /// Running time per request from which a guest counts as heavy: ten times what a small
    /// handler costs to instantiate and run.
    const HEAVY_CPU: Duration = Duration::from_millis(1);

    /// Whether the function's requests should run on the guest pool.
    pub(crate) fn is_heavy(&self) -> bool {
        self.score.load(std::sync::atomic::Ordering::Relaxed) > 0
    }

    /// Records how long a request's guest ran.
    pub(crate) fn record(&self, cpu: Duration) {
        use std::sync::atomic::Ordering::Relaxed;
        let _ = self.score.fetch_update(Relaxed, Relaxed, |score| {
            Some(if cpu >= Self::HEAVY_CPU {
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

/// Runs `future`, adding to `busy` the time spent inside its polls.
pub(crate) async fn busy_timed<F: Future>(future: F, busy: &mut Duration) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let start = std::time::Instant::now();
        let poll = future.as_mut().poll(cx);
        *busy += start.elapsed();
        poll
    })
    .await
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
        let light = Duration::from_micros(80);
        let heavy = Duration::from_millis(12);
        let weight = Weight::default();
        assert!(!weight.is_heavy());
        weight.record(light);
        assert!(!weight.is_heavy(), "short requests stay inline");
        weight.record(heavy);
        assert!(weight.is_heavy());
        for _ in 0..Weight::HEAVY_STEP - 1 {
            weight.record(light);
        }
        assert!(
            weight.is_heavy(),
            "one heavy request outweighs a few short ones"
        );
        weight.record(light);
        assert!(!weight.is_heavy());
        for _ in 0..100 {
            weight.record(heavy);
        }
        assert_eq!(
            weight.score.load(std::sync::atomic::Ordering::Relaxed),
            Weight::MAX
        );
    }

    #[test]
    fn busy_time_counts_work_not_waiting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut waiting = Duration::ZERO;
        runtime.block_on(async {
            busy_timed(tokio::time::sleep(Duration::from_millis(30)), &mut waiting).await
        });
        let mut working = Duration::ZERO;
        let spin_until = std::time::Instant::now() + Duration::from_millis(30);
        runtime.block_on(busy_timed(
            async {
                while std::time::Instant::now() < spin_until {
                    std::hint::spin_loop();
                }
            },
            &mut working,
        ));
        assert!(waiting < Weight::HEAVY_CPU, "{waiting:?}");
        assert!(working >= Weight::HEAVY_CPU, "{working:?}");
    }
}
