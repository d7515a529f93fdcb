//! Loading ONNX Runtime from bad paths: each attempt must fail with a clear
//! [`CoreError::Runtime`], never a panic, and leave the process able to try again.
//!
//! Kept in its own test binary: no test here loads a working library, so the failures are
//! observed on a process where ONNX Runtime was never loaded. Needs no ONNX Runtime.

use std::path::{Path, PathBuf};
use std::process::Command;

use persona_core::text::{init_runtime, runtime_info, ModelSpec, SessionOptions, TextModel};
use persona_core::CoreError;

fn runtime_error(path: &Path) -> String {
    match init_runtime(path) {
        Err(CoreError::Runtime(m)) => m,
        other => panic!(
            "{}: expected a Runtime error, got {other:?}",
            path.display()
        ),
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("persona-text-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn text_missing_relative_and_directory_paths() {
    let m = runtime_error(Path::new("/nonexistent/dir/libonnxruntime.so"));
    assert!(
        m.contains("not found") && m.contains("/nonexistent/dir"),
        "{m}"
    );
    let m = runtime_error(Path::new("libonnxruntime.so"));
    assert!(m.contains("absolute"), "{m}");
    let m = runtime_error(&std::env::temp_dir());
    assert!(m.contains("not a file"), "{m}");
    assert!(runtime_info().is_none());
}

#[test]
fn text_files_that_are_not_onnx_runtime() {
    let dir = temp_dir("garbage");
    let garbage = dir.join("libonnxruntime.so");
    std::fs::write(&garbage, b"definitely not an ELF file").unwrap();
    let m = runtime_error(&garbage);
    assert!(m.contains("cannot load ONNX Runtime"), "{m}");
    // A real shared library that is not ONNX Runtime.
    let libm = [
        "/lib/x86_64-linux-gnu/libm.so.6",
        "/usr/lib/x86_64-linux-gnu/libm.so.6",
        "/lib64/libm.so.6",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.exists());
    match libm {
        Some(p) => {
            let m = runtime_error(p);
            assert!(m.contains("OrtGetApiBase"), "{m}");
        }
        None => {
            eprintln!("*** SKIPPED: no libm.so.6 found to load as a non-ONNX-Runtime library ***")
        }
    }
    assert!(runtime_info().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A stub library exporting `OrtGetApiBase` that reports version 1.10.0 (older than the 1.17
/// the `ort` crate needs), built with the system C compiler.
#[test]
fn text_too_old_library() {
    let dir = temp_dir("old");
    let src = dir.join("stub.c");
    let lib = dir.join("libonnxruntime.so.1.10.0");
    std::fs::write(
        &src,
        r#"
typedef struct { const void *(*GetApi)(unsigned); const char *(*GetVersionString)(void); } OrtApiBase;
static const void *get_api(unsigned v) { (void)v; return 0; }
static const char *version(void) { return "1.10.0"; }
static const OrtApiBase base = { get_api, version };
const OrtApiBase *OrtGetApiBase(void) { return &base; }
"#,
    )
    .unwrap();
    let built = Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(&src)
        .status();
    if !matches!(built, Ok(s) if s.success()) {
        eprintln!(
            "\n*** SKIPPED: text_too_old_library: no C compiler (cc) to build the stub library ***\n"
        );
        return;
    }
    let m = runtime_error(&lib);
    assert!(m.contains("1.10.0") && m.contains("1.17"), "{m}");
    assert!(runtime_info().is_none());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn text_models_need_the_runtime_first() {
    let tok =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/text/tokenizer.json"))
            .unwrap();
    let onnx =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/text/encoder.onnx"))
            .unwrap();
    let spec = ModelSpec {
        max_length: 16,
        ..Default::default()
    };
    match TextModel::from_bytes(&onnx, &tok, spec, SessionOptions::default()) {
        Err(CoreError::Runtime(m)) => assert!(m.contains("init_runtime"), "{m}"),
        other => panic!("expected a Runtime error, got {other:?}"),
    }
}
