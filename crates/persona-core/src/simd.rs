//! The one place the core uses `unsafe`: running a hot loop in a copy compiled for AVX2 when the
//! CPU has it, and [`prefetch`], a cache hint for the rows SGD will read next. The build targets baseline x86-64 (SSE2), so every server can load the library;
//! [`wide`] runs a closure inside a function compiled with `target_feature(enable = "avx2")`,
//! into which the closure (and the `#[inline]` kernels it calls, such as
//! [`crate::cf::mf::dot`]) is inlined and vectorised 8 floats wide instead of 4.
//!
//! The results do not change: the same Rust code is compiled, without fused multiply-adds
//! (Rust never contracts `a * b + c`) and without reassociation, so every addition happens in
//! the same order whatever the width; models are bit-identical with and without AVX2
//! (`tests` below checks one).
#![allow(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};

/// Whether [`wide`] may use AVX2 (tests turn it off to compare the two paths).
static WIDE: AtomicBool = AtomicBool::new(true);

/// Lets [`wide`] use AVX2 (the default) or not. For tests and benchmarks.
#[doc(hidden)]
pub fn set_wide(enabled: bool) {
    WIDE.store(enabled, Ordering::Relaxed);
}

/// Runs `f`, compiled for AVX2 when the CPU has it (see the module documentation). Mark the
/// closure `#[inline(always)]` so it is compiled into the AVX2 copy.
#[inline(always)]
pub fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        if WIDE.load(Ordering::Relaxed) && std::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above), the only requirement of
            // calling a function compiled with that target feature.
            return unsafe { avx2(f) };
        }
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// Asks the CPU to bring the start of `row` (its first two cache lines) into cache, for a row
/// that a loop will read a few steps later: the random factor rows of SGD miss every cache once
/// the model outgrows them, and a load issued early overlaps those misses with the work on the
/// current row. A hint only: results do not change. A no-op off x86-64.
#[inline(always)]
pub fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = row.as_ptr().cast::<i8>();
        // SAFETY: prefetching is a hint that never faults, and SSE (which provides it) is part
        // of baseline x86-64; both addresses are inside or one line past the slice's start.
        unsafe {
            _mm_prefetch(p, _MM_HINT_T0);
            if row.len() > 16 {
                _mm_prefetch(p.wrapping_add(64), _MM_HINT_T0);
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    /// ALS trained with the AVX2 copy of its row solver and with the baseline one gives the same
    /// bits (on a CPU without AVX2 both runs take the baseline path and the test says nothing).
    #[test]
    fn the_wide_path_gives_the_same_model() {
        let rows: Vec<(i64, i64, f32)> = (0..4000)
            .map(|n: i64| (n % 97, (n * 31 + n / 7) % 211, 1.0 + (n % 5) as f32))
            .collect();
        let d = Dataset::from_triples(&rows).unwrap();
        let options = r#"{"factors": 37, "iterations": 4, "binary": false}"#;
        let fit = || {
            train(
                &d,
                Algorithm::Als,
                options,
                &Threads::current(),
                &mut NoMonitor,
            )
        };
        let wide = fit().unwrap().to_bytes();
        set_wide(false);
        let narrow = fit().unwrap().to_bytes();
        set_wide(true);
        assert!(wide == narrow, "the AVX2 and baseline paths differ");
    }
}
