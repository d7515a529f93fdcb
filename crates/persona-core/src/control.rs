//! How a long computation is controlled from its caller: progress reports and cancellation
//! between steps ([`Monitor`]), and the thread pool its parallel phases run on ([`Threads`]).
//! Used by collaborative filtering and text-model training alike. The caller (the extension)
//! checks for interrupts in [`Monitor::step`]; worker threads never call back into it.

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
}

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
}
