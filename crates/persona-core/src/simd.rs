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
        // Every line the row's bytes fall on: a row that starts mid-line spans one more line
        // than its length suggests (16 floats 16 bytes past a boundary span two).
        let p = row.as_ptr().cast::<i8>();
        for line in 0..lines_spanned(row).min(PREFETCH_LINES) {
            // SAFETY: prefetching is a hint that never faults (whatever the address), and SSE
            // (which provides it) is part of baseline x86-64. `p + 64·line` lies in the row's
            // line number `line`.
            unsafe { _mm_prefetch(p.wrapping_add(64 * line), _MM_HINT_T0) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// How many 64-byte cache lines `row`'s bytes fall on.
#[inline(always)]
pub fn lines_spanned(row: &[f32]) -> usize {
    let (start, bytes) = (row.as_ptr() as usize, std::mem::size_of_val(row));
    if bytes == 0 {
        return 0;
    }
    (start + bytes - 1) / 64 - start / 64 + 1
}

/// Floats whose first element sits on a 64-byte cache-line boundary, for factor tables read a
/// row at a time in random order. A large `Vec<f32>` comes from `mmap` through malloc 16 bytes
/// past a page boundary, so in a plain vector every row of 16 floats straddles two cache lines
/// and costs two misses where one would do.
pub struct LineAligned {
    data: Vec<f32>,
    start: usize,
    len: usize,
}

impl LineAligned {
    /// `values`, copied to an aligned start.
    pub fn from_slice(values: &[f32]) -> LineAligned {
        let mut a = LineAligned::zeroed(values.len());
        a.as_mut_slice().copy_from_slice(values);
        a
    }
    /// `len` zeros.
    pub fn zeroed(len: usize) -> LineAligned {
        let data = vec![0f32; len + 15];
        // A float pointer is 4-aligned, so the next boundary is at most 15 floats away.
        let start = data.as_ptr().align_offset(64).min(15);
        LineAligned { data, start, len }
    }
    #[inline(always)]
    pub fn as_slice(&self) -> &[f32] {
        &self.data[self.start..self.start + self.len]
    }
    #[inline(always)]
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    #[test]
    fn line_aligned_rows_start_on_a_cache_line_and_keep_their_values() {
        for len in [0, 1, 16, 1000, 100_000] {
            let values: Vec<f32> = (0..len).map(|v| v as f32).collect();
            let a = LineAligned::from_slice(&values);
            assert_eq!(a.as_slice(), &values[..]);
            if len > 0 {
                assert_eq!(a.as_slice().as_ptr() as usize % 64, 0, "len {len}");
                // 16-float rows then fall on one line each.
                assert_eq!(lines_spanned(&a.as_slice()[..len.min(16)]), 1);
            }
        }
        let plain = vec![0f32; 64];
        for off in 0..16 {
            let row = &plain[off..off + 16];
            let expect = if (row.as_ptr() as usize).is_multiple_of(64) {
                1
            } else {
                2
            };
            assert_eq!(lines_spanned(row), expect);
        }
        assert_eq!(lines_spanned(&plain[..0]), 0);
    }

    /// ALS and SVD++ trained with the AVX2 copies of their inner loops and with the baseline
    /// ones give the same bits (on a CPU without AVX2 both runs take the baseline path and the
    /// test says nothing). 37 factors: the dot products' 8-lane chunks and their tails.
    #[test]
    fn the_wide_path_gives_the_same_model() {
        let rows: Vec<(i64, i64, f32)> = (0..4000)
            .map(|n: i64| (n % 97, (n * 31 + n / 7) % 211, 1.0 + (n % 5) as f32))
            .collect();
        let d = Dataset::from_triples(&rows).unwrap();
        for (algo, options) in [
            (
                Algorithm::Als,
                r#"{"factors": 37, "iterations": 4, "binary": false}"#,
            ),
            (Algorithm::Svdpp, r#"{"factors": 37, "epochs": 4}"#),
        ] {
            let fit = || train(&d, algo, options, &Threads::current(), &mut NoMonitor);
            let wide = fit().unwrap().to_bytes();
            set_wide(false);
            let narrow = fit().unwrap().to_bytes();
            set_wide(true);
            assert!(wide == narrow, "{algo}: the AVX2 and baseline paths differ");
        }
    }
}
