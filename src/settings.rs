//! Every setting of pg_persona, in one place. All are prefixed `persona.` (the prefix is reserved)
//! and documented in the README's settings table.

use std::ffi::CStr;

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// `persona.training_threads`: threads a training may use; 0 means one per core.
pub static TRAINING_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// `persona.max_training_memory`: the most memory one training may plan to use, in MB.
pub static MAX_TRAINING_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);
/// `persona.significance_level`: α of the campaign significance tests.
pub static SIGNIFICANCE_LEVEL: GucSetting<f64> = GucSetting::<f64>::new(0.05);

pub fn init() {
    GucRegistry::define_int_guc(
        c"persona.training_threads",
        c"Threads one cf_train call may use (0: one per CPU core).",
        c"Training runs its parallel phases on a pool of this many threads. Only the backend's own thread talks to PostgreSQL.",
        &TRAINING_THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.max_training_memory",
        c"Largest memory a training may plan to use; larger jobs are refused before they start.",
        c"cf_train estimates the memory of the data and the model before training and raises an error (SQLSTATE 54000) above this limit.",
        &MAX_TRAINING_MEMORY_MB,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_float_guc(
        c"persona.significance_level",
        c"Significance level (alpha) of campaign_metrics' tests and confidence intervals.",
        c"A difference is reported as significant when its p-value is below this level; intervals have coverage 1 - alpha.",
        &SIGNIFICANCE_LEVEL,
        1e-6,
        0.5,
        GucContext::Userset,
        GucFlags::default(),
    );
    reserve_prefix(c"persona");
}

fn reserve_prefix(prefix: &CStr) {
    // SAFETY: called from _PG_init on the backend's thread with a static C string.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) };
}

/// The thread count a training should use now.
pub fn training_threads() -> usize {
    match TRAINING_THREADS.get() {
        n if n > 0 => n as usize,
        _ => std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
    }
}

pub fn max_training_bytes() -> usize {
    MAX_TRAINING_MEMORY_MB.get().max(1) as usize * 1024 * 1024
}
