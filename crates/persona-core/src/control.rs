//! How a long computation is controlled from its caller: progress reports and cancellation
//! between steps ([`Monitor`]), and the thread pool its parallel phases run on ([`Threads`]).
//! Used by collaborative filtering and text-model training alike. The caller (the extension)
//! checks for interrupts in [`Monitor::step`]; worker threads never call back into it.
//!
//! A parallel phase cannot stop at a step of the caller's thread: that thread waits for the
//! pool. [`Threads::run_watched`] keeps the caller's thread free instead: it polls
//! [`Monitor::interrupted`] while the phase runs and raises a [`Stop`] flag that the phase's
//! inner loops check, so a cancel stops the work within milliseconds, not at its end.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::{CoreError, Result};

/// One step of a long computation, reported between phases or epochs on the caller's thread.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress<'a> {
    pub phase: &'a str,
    pub step: usize,
    pub steps: usize,
    /// Training loss of the step (RMSE for rating models), when the algorithm has one.
    pub loss: Option<f64>,
}

impl<'a> Progress<'a> {
    pub fn epoch(phase: &'a str, step: usize, steps: usize, loss: Option<f64>) -> Self {
        Progress {
            phase,
            step,
            steps,
            loss,
        }
    }
}

/// Called by trainers between phases and epochs, always on the thread that called the trainer
/// (never from a worker thread), so the PostgreSQL layer can check for interrupts and send
/// NOTICEs here. Returning an error (usually [`crate::CoreError::Cancelled`]) stops training.
pub trait Monitor {
    fn step(&mut self, progress: &Progress) -> crate::Result<()>;

    /// Whether the caller wants the computation stopped, asked on the caller's thread (every
    /// few milliseconds) while a phase runs on other threads ([`Threads::run_watched`]). It must
    /// neither block nor raise: the phase is stopped first, then [`Monitor::step`] or the
    /// caller reports the interrupt. Default: never.
    fn interrupted(&mut self) -> bool {
        false
    }

    /// A line worth telling the caller now (an epoch's validation figures), on the caller's
    /// thread. Default: dropped.
    fn note(&mut self, _line: &str) {}
}

/// A flag the caller's thread raises to ask work running on other threads to stop; their loops
/// check it between rows (a relaxed atomic load).
#[derive(Debug, Default)]
pub struct Stop(AtomicBool);

impl Stop {
    /// A flag that is not raised.
    pub fn new() -> Stop {
        Stop::default()
    }

    /// Whether stopping was asked for.
    #[inline]
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// `Err(Cancelled)` once stopping was asked for.
    #[inline]
    pub fn check(&self) -> Result<()> {
        if self.requested() {
            Err(CoreError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Asks for stopping.
    pub fn request(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How often [`Threads::run_watched`] asks the monitor whether to stop.
const WATCH_EVERY: Duration = Duration::from_millis(5);

/// A monitor that never stops anything.
pub struct NoMonitor;

impl Monitor for NoMonitor {
    fn step(&mut self, _: &Progress) -> crate::Result<()> {
        Ok(())
    }
}

/// Where a trainer's parallel phases run: a dedicated rayon pool sized by the caller (the
/// extension's `persona.training_threads`), or rayon's current pool.
#[derive(Clone, Default)]
pub struct Threads {
    pool: Option<std::sync::Arc<rayon::ThreadPool>>,
}

impl Threads {
    /// A dedicated pool of `n` threads.
    pub fn new(n: usize) -> crate::Result<Threads> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(n.max(1))
            .thread_name(|i| format!("persona-train-{i}"))
            .build()
            .map_err(|e| {
                crate::CoreError::InvalidParameter(format!(
                    "cannot start {n} training threads: {e}"
                ))
            })?;
        Ok(Threads {
            pool: Some(std::sync::Arc::new(pool)),
        })
    }
    /// Rayon's current (global) pool.
    pub fn current() -> Threads {
        Threads { pool: None }
    }
    /// Runs `f` inside the pool and waits for it. `f` must not call back into PostgreSQL.
    pub fn run<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.pool {
            Some(p) => p.install(f),
            None => f(),
        }
    }

    /// Runs `f` inside the pool while the calling thread asks `monitor` every few milliseconds
    /// whether to stop; when it says so, `f`'s [`Stop`] is raised. Returns `f`'s result, or
    /// `Err(Cancelled)` when stopping was asked for (whatever `f` returned: a stopped phase's
    /// result is partial). `f` must not call back into PostgreSQL; a panic in `f` resumes on
    /// the calling thread.
    pub fn run_watched<R: Send>(
        &self,
        monitor: &mut dyn Monitor,
        f: impl FnOnce(&Stop) -> Result<R> + Send,
    ) -> Result<R> {
        let stop = Stop::new();
        let watcher = std::thread::current();
        let done = AtomicBool::new(false);
        let outcome = std::thread::scope(|scope| {
            let worker = std::thread::Builder::new()
                .name("persona-watched".into())
                .spawn_scoped(scope, || {
                    let result = self.run(|| f(&stop));
                    // Wake the watcher now rather than at its next poll: a phase of a few
                    // milliseconds (an ALS half-step) would otherwise wait out the interval.
                    done.store(true, Ordering::Release);
                    watcher.unpark();
                    result
                })
                .map_err(|e| {
                    CoreError::Runtime(format!("cannot start a thread for the computation: {e}"))
                })?;
            while !done.load(Ordering::Acquire) && !worker.is_finished() {
                if !stop.requested() && monitor.interrupted() {
                    stop.request();
                }
                std::thread::park_timeout(WATCH_EVERY);
            }
            Ok::<_, CoreError>(worker.join())
        })?;
        let result = outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        stop.check()?;
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// Says "interrupted" from its `after`-th poll on.
    struct InterruptAfter {
        polls: usize,
        after: usize,
    }

    impl Monitor for InterruptAfter {
        fn step(&mut self, _: &Progress) -> Result<()> {
            Ok(())
        }
        fn interrupted(&mut self) -> bool {
            self.polls += 1;
            self.polls >= self.after
        }
    }

    /// A phase that runs until it is stopped (at most 20 s).
    fn until_stopped(stop: &Stop) -> Result<u32> {
        let started = Instant::now();
        while started.elapsed().as_secs() < 20 {
            stop.check()?;
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(1)
    }

    #[test]
    fn a_watched_phase_stops_soon_after_the_monitor_says_so() {
        let threads = Threads::new(2).unwrap();
        let mut monitor = InterruptAfter {
            polls: 0,
            after: 10,
        };
        let started = Instant::now();
        let got = threads.run_watched(&mut monitor, until_stopped);
        assert_eq!(got, Err(CoreError::Cancelled));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(monitor.polls >= 10);
    }

    #[test]
    fn a_watched_phase_that_is_not_stopped_returns_its_result() {
        let threads = Threads::current();
        let mut never = NoMonitor;
        let got = threads.run_watched(&mut never, |stop| {
            std::thread::sleep(Duration::from_millis(30));
            stop.check()?;
            Ok(42)
        });
        assert_eq!(got, Ok(42));
        // Its own error comes back as it is.
        let err = threads.run_watched(&mut never, |_| -> Result<()> {
            Err(CoreError::InvalidData("bad".into()))
        });
        assert_eq!(err, Err(CoreError::InvalidData("bad".into())));
    }

    #[test]
    fn a_result_reached_after_stopping_was_asked_for_is_discarded() {
        // The phase ignores the flag and returns Ok: still Cancelled, since it may be partial.
        let mut monitor = InterruptAfter { polls: 0, after: 1 };
        let got = Threads::current().run_watched(&mut monitor, |_| {
            std::thread::sleep(Duration::from_millis(50));
            Ok(7)
        });
        assert_eq!(got, Err(CoreError::Cancelled));
    }

    #[test]
    #[should_panic(expected = "boom")]
    fn a_panic_in_the_phase_resumes_on_the_caller() {
        let _ =
            Threads::current().run_watched(&mut NoMonitor, |_| -> Result<()> { panic!("boom") });
    }
}
