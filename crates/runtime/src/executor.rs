//! Where guest code runs. Most functions answer in well under a millisecond of CPU; they run
//! inline on the I/O threads, where a request costs no hand-off between threads. A function
//! whose guests spend a millisecond or more of CPU on a request is *heavy*: its requests run on
//! a separate pool of guest threads at a lower scheduling priority (nice 10), so that when heavy
//! guests saturate the CPU the kernel preempts them as soon as an I/O thread wakes, and a
//! request the node turns away is still answered in microseconds. The mark decays after a run
//! of light requests.
//!
//! What a guest spends is measured around each poll of its future: the guest's code runs
//! inside those polls, so time spent waiting for I/O does not count. The clock is the
//! monotonic one (read in user space, tens of nanoseconds), which also counts time the thread
//! was preempted in the middle of a poll: on a saturated core a light function's poll can look
//! a millisecond long. So a light function is never marked heavy on that clock alone: a long
//! request makes it a *suspect*, and its next requests are measured on the thread's CPU clock
//! (a system call per poll, about 8% of a small function's throughput, paid only then). Only a
//! request that was heavy on the CPU clock marks it heavy.

use std::future::Future;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Spawns guest tasks on a dedicated runtime, or on the caller's runtime.
pub(crate) struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
}

/// How heavy a function's guests have been lately: raised a lot by a request whose guest ran
/// for [`Weight::HEAVY_CPU`] or more, lowered a little by a lighter one.
#[derive(Debug, Default)]
pub(crate) struct Weight {
    score: AtomicU32,
    /// Requests still to be measured on the CPU clock, after one looked heavy on the wall
    /// clock while the function was light.
    suspect: AtomicU32,
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
    const CONFIRM: u32 = 3;
    /// Running time per request from which a guest counts as heavy: ten times what a small
    /// handler costs to instantiate and run.
    const HEAVY_CPU: Duration = Duration::from_millis(1);

    /// Whether the function's requests should run on the guest pool.
    pub(crate) fn is_heavy(&self) -> bool {
        self.score.load(Relaxed) > 0
    }

    /// Whether the next request should be measured on the thread's CPU clock.
    pub(crate) fn measure_cpu(&self) -> bool {
        self.suspect.load(Relaxed) > 0 && !self.is_heavy()
    }

    /// What a new request's measurement starts from.
    pub(crate) fn start(&self) -> Busy {
        Busy {
            wall: Duration::ZERO,
            cpu: self.measure_cpu().then_some(Duration::ZERO),
        }
    }

    /// Records what a request's guest spent.
    pub(crate) fn record(&self, busy: Busy) {
        let heavy = match busy.cpu {
            Some(cpu) => {
                let _ = self
                    .suspect
                    .fetch_update(Relaxed, Relaxed, |n| Some(n.saturating_sub(1)));
                cpu >= Self::HEAVY_CPU
            }
            // Long on the wall clock: heavy if it already was, else a suspect to confirm.
            None if busy.wall >= Self::HEAVY_CPU && !self.is_heavy() => {
                self.suspect.store(Self::CONFIRM, Relaxed);
                return;
            }
            None => busy.wall >= Self::HEAVY_CPU,
        };
        let _ = self.score.fetch_update(Relaxed, Relaxed, |score| {
            Some(if heavy {
                (score + Self::HEAVY_STEP).min(Self::MAX)
            } else {
                score.saturating_sub(1)
            })
        });
        if heavy {
            self.suspect.store(0, Relaxed);
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

    #[test]
    fn a_long_run_on_the_cpu_marks_heavy_and_short_runs_clear_it_slowly() {
        let light = Duration::from_micros(80);
        let heavy = Duration::from_millis(12);
        let weight = Weight::default();
        assert!(!weight.is_heavy());
        weight.record(wall(light));
        assert!(!weight.is_heavy(), "short requests stay inline");
        weight.record(cpu(heavy));
        assert!(weight.is_heavy());
        for _ in 0..Weight::HEAVY_STEP - 1 {
            weight.record(wall(light));
        }
        assert!(
            weight.is_heavy(),
            "one heavy request outweighs a few short ones"
        );
        weight.record(wall(light));
        assert!(!weight.is_heavy());
        for _ in 0..100 {
            weight.record(cpu(heavy));
        }
        assert_eq!(weight.score.load(Relaxed), Weight::MAX);
    }

    #[test]
    fn a_long_wall_clock_alone_never_marks_a_light_function_heavy() {
        let weight = Weight::default();
        // A poll preempted on a saturated core: long on the wall clock, short on the CPU.
        weight.record(wall(Duration::from_millis(5)));
        assert!(!weight.is_heavy(), "a suspect, not heavy");
        assert!(
            weight.measure_cpu(),
            "its next requests are measured on the CPU clock"
        );
        for _ in 0..Weight::CONFIRM {
            weight.record(Busy {
                wall: Duration::from_millis(5),
                cpu: Some(Duration::from_micros(60)),
            });
            assert!(!weight.is_heavy());
        }
        assert!(!weight.measure_cpu(), "the suspicion is cleared");
        // A function that really is heavy is confirmed at its first measured request.
        weight.record(wall(Duration::from_millis(5)));
        weight.record(cpu(Duration::from_millis(5)));
        assert!(weight.is_heavy());
        assert!(!weight.measure_cpu());
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
