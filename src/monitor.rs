//! The extension's side of `persona_core::control::Monitor`: what the backend's own thread does
//! between the steps of a long computation (check for query cancel and statement_timeout, report
//! progress). Worker threads never call PostgreSQL; only these run on the backend's thread.

use std::time::Instant;

use persona_core::control::{Monitor, Progress};
use pgrx::prelude::*;

/// How often a long computation sends a progress NOTICE, at most.
pub const NOTICE_EVERY_SECONDS: f64 = 5.0;

/// Whether a query cancel (pg_cancel_backend, statement_timeout) or a termination
/// (pg_terminate_backend) is pending, without acting on it. Asked on the backend's thread while
/// a parallel phase runs (`Monitor::interrupted`); the phase stops, and the caller then raises
/// the interrupt with `check_for_interrupts!` ([`crate::error::cancelled`]).
pub fn cancel_pending() -> bool {
    // SAFETY: plain reads of sig_atomic_t flags that PostgreSQL's signal handlers set.
    unsafe { pg_sys::QueryCancelPending != 0 || pg_sys::ProcDiePending != 0 }
}

/// Checks for interrupts at every step and reports nothing: inference batches, head training.
pub struct Interrupts;

impl Monitor for Interrupts {
    fn step(&mut self, _: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        Ok(())
    }
    fn interrupted(&mut self) -> bool {
        cancel_pending()
    }
}

/// Checks for interrupts at every step and sends a progress NOTICE at most every
/// [`NOTICE_EVERY_SECONDS`]: `pg_persona: <phase> step <i>/<n>[, training RMSE <loss>] (<s> s)`.
pub struct ProgressNotices {
    started: Instant,
    last_notice: Instant,
}

impl ProgressNotices {
    pub fn new() -> Self {
        ProgressNotices {
            started: Instant::now(),
            last_notice: Instant::now(),
        }
    }

    /// Seconds since the computation started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Whether a NOTICE is due now (and, if so, restarts the interval).
    pub fn due(&mut self) -> bool {
        if self.last_notice.elapsed().as_secs_f64() >= NOTICE_EVERY_SECONDS {
            self.last_notice = Instant::now();
            true
        } else {
            false
        }
    }
}

impl Default for ProgressNotices {
    fn default() -> Self {
        Self::new()
    }
}

impl Monitor for ProgressNotices {
    fn step(&mut self, p: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        if self.due() {
            let loss = p
                .loss
                .map(|l| format!(", training RMSE {l:.4}"))
                .unwrap_or_default();
            notice!(
                "pg_persona: {} step {}/{}{} ({:.1} s)",
                p.phase,
                p.step,
                p.steps,
                loss,
                self.elapsed()
            );
        }
        Ok(())
    }
    fn interrupted(&mut self) -> bool {
        cancel_pending()
    }
}
