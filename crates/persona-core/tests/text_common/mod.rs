//! Shared helpers of the text-runtime integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use persona_core::text::init_runtime;
use serde_json::Value;

/// Where the ONNX Runtime library is installed by scripts/setup.sh.
pub const DEFAULT_ORT_LIB: &str = "/usr/lib/postgresql/15/lib/pg_persona/libonnxruntime.so";

/// The library the tests use: `$PERSONA_ORT_LIB`, else [`DEFAULT_ORT_LIB`].
pub fn ort_lib_path() -> PathBuf {
    std::env::var_os("PERSONA_ORT_LIB")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ORT_LIB))
}

/// Loads ONNX Runtime for a test, or prints a loud SKIPPED line and returns false when the
/// library is not installed (so `cargo test` passes on machines without it; setup.sh installs it).
pub fn ort_available(test: &str) -> bool {
    let path = ort_lib_path();
    if !path.exists() {
        eprintln!(
            "\n*** SKIPPED: {test}: ONNX Runtime not found at {} (set PERSONA_ORT_LIB, or run \
             scripts/setup.sh) ***\n",
            path.display()
        );
        return false;
    }
    if let Err(e) = init_runtime(&path) {
        panic!("cannot load ONNX Runtime from {}: {e}", path.display());
    }
    true
}

/// Skips the calling test (returns from it) when ONNX Runtime is not installed.
#[macro_export]
macro_rules! require_ort {
    ($name:expr) => {
        if !text_common::ort_available($name) {
            return;
        }
    };
}

/// The test fixtures directory, tests/data/text.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/text")
}

/// Bytes of a fixture.
pub fn data(name: &str) -> Vec<u8> {
    let path = data_dir().join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// A JSON fixture.
pub fn json(name: &str) -> Value {
    serde_json::from_slice(&data(name)).expect("valid JSON")
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

/// Largest absolute difference of two equally long vectors.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
