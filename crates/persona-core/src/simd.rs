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

/// The most cache lines [`prefetch`] asks for (a 128-factor row).
pub const PREFETCH_LINES: usize = 8;

/// Asks the CPU to bring `row` (its cache lines, up to [`PREFETCH_LINES`]) into cache, for a
/// row that a loop will read a few steps later: the random factor rows of SGD miss every cache
/// once the model outgrows them, and loads issued early overlap those misses with the work on
/// the current row. A hint only: results do not change. A no-op off x86-64.
///
/// Every line of the row, not only the first: a 50-factor row spans four lines, and fetching
/// all of them made SVD++ on 25M ratings 15% faster (202 -> 172 s) than fetching two.
#[inline(always)]
pub fn prefetch(row: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let p = row.as_ptr().cast::<i8>();
        let lines = (std::mem::size_of_val(row).div_ceil(64)).min(PREFETCH_LINES);
        for line in 0..lines {
            // SAFETY: prefetching is a hint that never faults, and SSE (which provides it) is
            // part of baseline x86-64; every address is inside the slice.
            unsafe { _mm_prefetch(p.wrapping_add(64 * line), _MM_HINT_T0) };
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
