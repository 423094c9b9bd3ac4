//! Where guest code runs. Most functions answer in well under a millisecond of CPU; they run
//! inline on the I/O threads, where a request costs no hand-off between threads. A function
//! whose guests spend a millisecond or more of CPU on a request is *heavy*: its requests run on
//! a separate pool of guest threads at a lower scheduling priority (nice 10), so that when heavy
//! guests saturate the CPU the kernel preempts them as soon as an I/O thread wakes, and a
//! request the node turns away is still answered in microseconds. The mark decays after a run
//! of light requests.
//!
//! What a guest spends is measured around each poll of its future: the guest's code runs
//! inside those polls, so time spent waiting for I/O does not count. For a light function the
//! clock is the monotonic one (read in user space, tens of nanoseconds), which also counts time
//! the thread was preempted in the middle of a poll: on a saturated core a light function's
//! poll can look a millisecond long. So a light function is never marked heavy on that clock
//! alone: a long request makes it a *suspect*, and its next [`Weight::CONFIRM`] requests are
//! measured on the thread's CPU clock (a system call per poll, paid only then); it is marked
//! heavy only if [`Weight::VOTES`] of them really ran a millisecond or more, so that one slow
//! request (a first touch of a fresh instance slot, a page fault storm) moves nothing. A heavy
//! function is always measured on the CPU clock: on the nice-10 pool its polls are preempted by
//! design whenever the I/O threads have work, and on the wall clock that alone would keep any
//! function there for as long as the core stays saturated.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicU32, AtomicU64};
use std::time::Duration;

/// Spawns guest tasks on a dedicated runtime, or on the caller's runtime.
pub(crate) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
}

/// How heavy a function's guests have been lately: raised a lot by a request whose guest ran
/// for [`Weight::HEAVY_CPU`] or more on the CPU, lowered a little by a lighter one.
#[derive(Debug, Default)]
pub(crate) struct Weight {
    score: AtomicU32,
    /// Requests still to be measured on the CPU clock, after one looked heavy on the wall
    /// clock while the function was light.
    suspect: AtomicU32,
    /// Of the suspect's measured requests so far, those that ran heavy on the CPU clock.
    votes: AtomicU32,
    /// Times the function was marked heavy.
    marks: AtomicU64,
}

/// Where a function's guests run, as the node reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Placement {
    /// Whether its requests run on the lower-priority guest pool now.
    pub heavy: bool,
    /// Times it was marked heavy since it was loaded.
    pub marked_heavy: u64,
}

/// What a request's guest spent inside its polls.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Busy {
    /// On the monotonic clock.
    pub(crate) wall: Duration,
    /// On the thread's CPU clock, when this request was measured on it.
    pub(crate) cpu: Option<Duration>,
}

impl Weight {
    const HEAVY_STEP: u32 = 16;
    const MAX: u32 = 256;
    /// Requests measured on the CPU clock to confirm a suspicion.
    const CONFIRM: u32 = 4;
    /// Of those, how many must have been heavy for the function to be marked heavy.
    const VOTES: u32 = 2;
    /// Running time per request from which a guest counts as heavy: ten times what a small
    /// handler costs to instantiate and run.
    const HEAVY_CPU: Duration = Duration::from_millis(1);

    /// Whether the function's requests should run on the guest pool.
    pub(crate) fn is_heavy(&self) -> bool {
        self.score.load(Relaxed) > 0
    }

    /// Whether the next request should be measured on the thread's CPU clock.
    pub(crate) fn measure_cpu(&self) -> bool {
        self.is_heavy() || self.suspect.load(Relaxed) > 0
    }

    /// What a new request's measurement starts from.
    pub(crate) fn start(&self) -> Busy {
        Busy {
            wall: Duration::ZERO,
            cpu: self.measure_cpu().then_some(Duration::ZERO),
        }
    }

    /// Where the function's guests run now.
    pub(crate) fn placement(&self) -> Placement {
        Placement {
            heavy: self.is_heavy(),
            marked_heavy: self.marks.load(Relaxed),
        }
    }

    /// Records what a request's guest spent. Requests run concurrently, so the state may have
    /// moved since this one started; each rule below holds whatever the interleaving.
    pub(crate) fn record(&self, busy: Busy) {
        let Some(cpu) = busy.cpu else {
            // Measured on the wall clock only: the function was light and not a suspect.
            if busy.wall >= Self::HEAVY_CPU && !self.measure_cpu() {
                self.votes.store(0, Relaxed);
                self.suspect.store(Self::CONFIRM, Relaxed);
            }
            return;
        };
        let heavy = cpu >= Self::HEAVY_CPU;
        if self.is_heavy() {
            let before = self
                .score
                .fetch_update(Relaxed, Relaxed, |score| {
                    Some(if heavy {
                        (score + Self::HEAVY_STEP).min(Self::MAX)
                    } else {
                        score.saturating_sub(1)
                    })
                })
                .unwrap_or_default();
            if before == 1 && !heavy {
                tracing::info!("function is light again: its requests run on the I/O threads");
            }
            return;
        }
        let votes = if heavy {
            self.votes.fetch_add(1, Relaxed) + 1
        } else {
            self.votes.load(Relaxed)
        };
        let left = self
            .suspect
            .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)))
            .unwrap_or_default()
            .saturating_sub(1);
        if votes >= Self::VOTES {
            self.suspect.store(0, Relaxed);
            self.votes.store(0, Relaxed);
            if self.score.fetch_max(Self::HEAVY_STEP, Relaxed) == 0 {
                self.marks.fetch_add(1, Relaxed);
                tracing::info!(
                    cpu_us = cpu.as_micros() as u64,
                    "function marked heavy: its guests ran 1 ms or more of CPU on {votes} of \
                     its last requests; its requests now run on the guest pool"
                );
            }
        } else if left == 0 {
            self.votes.store(0, Relaxed);
        }
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

/// Runs `future`, adding to `busy` the time spent inside its polls: on the monotonic clock,
/// and on the thread's CPU clock too when `busy.cpu` is `Some`.
pub(crate) async fn busy_timed<F: Future>(future: F, busy: &mut Busy) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let cpu_start = busy.cpu.map(|_| thread_cpu());
        let start = std::time::Instant::now();
        let poll = future.as_mut().poll(cx);
        busy.wall += start.elapsed();
        if let (Some(cpu), Some(cpu_start)) = (&mut busy.cpu, cpu_start) {
            *cpu += thread_cpu().saturating_sub(cpu_start);
        }
        poll
    })
    .await
}

/// The calling thread's CPU time.
fn thread_cpu() -> Duration {
    let time = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(time.tv_sec as u64, time.tv_nsec as u32)
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

    fn wall(d: Duration) -> Busy {
        Busy { wall: d, cpu: None }
    }

    fn cpu(d: Duration) -> Busy {
        Busy {
            wall: d,
            cpu: Some(d),
        }
    }

    /// Makes a light function heavy the only way there is: a long request on the wall clock,
    /// then [`Weight::VOTES`] heavy ones on the CPU clock.
    fn mark_heavy(weight: &Weight) {
        weight.record(wall(Duration::from_millis(5)));
        for _ in 0..Weight::VOTES {
            weight.record(cpu(Duration::from_millis(12)));
        }
        assert!(weight.is_heavy());
    }

    #[test]
    fn a_function_that_keeps_running_long_on_the_cpu_is_marked_heavy() {
        let weight = Weight::default();
        weight.record(wall(Duration::from_micros(80)));
        assert!(
            !weight.is_heavy() && !weight.measure_cpu(),
            "light stays inline"
        );
        weight.record(wall(Duration::from_millis(5)));
        assert!(!weight.is_heavy(), "a suspect, not heavy");
        assert!(
            weight.measure_cpu(),
            "a suspect is measured on the CPU clock"
        );
        weight.record(cpu(Duration::from_millis(12)));
        assert!(
            !weight.is_heavy(),
            "one heavy request is not a sustained signal"
        );
        weight.record(cpu(Duration::from_millis(12)));
        assert!(weight.is_heavy());
        assert_eq!(
            weight.placement(),
            Placement {
                heavy: true,
                marked_heavy: 1
            }
        );
        assert!(
            weight.measure_cpu(),
            "a heavy function is measured on the CPU clock"
        );
    }

    #[test]
    fn one_slow_request_among_light_ones_moves_nothing() {
        let weight = Weight::default();
        weight.record(wall(Duration::from_millis(5)));
        weight.record(cpu(Duration::from_millis(3)));
        for _ in 1..Weight::CONFIRM {
            weight.record(Busy {
                wall: Duration::from_millis(5),
                cpu: Some(Duration::from_micros(60)),
            });
        }
        assert!(!weight.is_heavy());
        assert!(!weight.measure_cpu(), "the suspicion is cleared");
        // The next suspicion starts from no votes.
        weight.record(wall(Duration::from_millis(5)));
        weight.record(cpu(Duration::from_millis(3)));
        assert!(!weight.is_heavy());
        assert_eq!(weight.placement().marked_heavy, 0);
    }

    #[test]
    fn a_heavy_function_preempted_on_the_pool_but_light_on_the_cpu_goes_back() {
        let weight = Weight::default();
        mark_heavy(&weight);
        // One more heavy request outweighs a few light ones.
        weight.record(cpu(Duration::from_millis(12)));
        for _ in 0..Weight::HEAVY_STEP {
            weight.record(Busy {
                wall: Duration::from_millis(8),
                cpu: Some(Duration::from_micros(60)),
            });
        }
        assert!(weight.is_heavy());
        for _ in 0..Weight::HEAVY_STEP {
            weight.record(Busy {
                wall: Duration::from_millis(8),
                cpu: Some(Duration::from_micros(60)),
            });
        }
        assert!(
            !weight.is_heavy(),
            "long polls on the nice-10 pool do not keep a light function there"
        );
        assert_eq!(weight.placement().marked_heavy, 1);
        mark_heavy(&weight);
        for _ in 0..100 {
            weight.record(cpu(Duration::from_millis(12)));
        }
        assert_eq!(weight.score.load(Relaxed), Weight::MAX);
        assert_eq!(weight.placement().marked_heavy, 2);
    }

    #[test]
    fn a_wall_clock_measurement_that_raced_a_mark_changes_nothing() {
        let weight = Weight::default();
        mark_heavy(&weight);
        let score = weight.score.load(Relaxed);
        weight.record(wall(Duration::from_millis(5)));
        weight.record(wall(Duration::from_micros(50)));
        assert_eq!(weight.score.load(Relaxed), score);
        assert_eq!(weight.suspect.load(Relaxed), 0);
    }

    #[test]
    fn busy_time_counts_work_not_waiting() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let spin = Duration::from_millis(30);
        let mut waiting = Busy {
            cpu: Some(Duration::ZERO),
            ..Busy::default()
        };
        runtime.block_on(async { busy_timed(tokio::time::sleep(spin), &mut waiting).await });
        let mut working = Busy {
            cpu: Some(Duration::ZERO),
            ..Busy::default()
        };
        runtime.block_on(busy_timed(
            async {
                let spin_until = std::time::Instant::now() + spin;
                while std::time::Instant::now() < spin_until {
                    std::hint::spin_loop();
                }
            },
            &mut working,
        ));
        // Sleeping is not busy at all; spinning inside one poll is busy for as long as it spun.
        assert!(
            waiting.wall < spin && waiting.cpu.unwrap() < spin,
            "{waiting:?}"
        );
        assert!(working.wall >= spin, "{working:?}");
        assert!(working.cpu.unwrap() > Duration::ZERO, "{working:?}");
    }
}
