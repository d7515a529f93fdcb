//! Loading the ONNX Runtime C library, lazily and once per process.
//!
//! The library is opened with `dlopen` at run time (ort's `load-dynamic`), never linked: a server
//! without it can still load the extension and use everything that is not text scoring, and any
//! ONNX Runtime from 1.17 on works. Call [`init_runtime`] on first use in each backend process
//! (after the postmaster's fork; ONNX Runtime starts threads, which do not survive a fork), never
//! at library load time.
//!
//! A process can hold one ONNX Runtime: once a library has been loaded from one path, asking
//! for another path is an error (reconnect to switch). Failed attempts leave nothing behind, so a
//! corrected path can be tried again in the same process.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use crate::{CoreError, Result};

/// What [`init_runtime`] loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeInfo {
    /// The path the library was loaded from, as given.
    pub path: PathBuf,
    /// ONNX Runtime's build description (e.g. `ORT Build Info: git-branch=HEAD,
    /// git-commit-id=fab30a4, build type=Release`), for diagnostics.
    pub build_info: Option<String>,
}

struct Loaded {
    info: RuntimeInfo,
    env: ort::environment::Environment,
}

static RUNTIME: Mutex<Option<Loaded>> = Mutex::new(None);

fn lock() -> MutexGuard<'static, Option<Loaded>> {
    // A panic while holding the lock cannot leave `Loaded` half-built (it is assigned whole).
    RUNTIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Loads ONNX Runtime from `library` (the path of `libonnxruntime.so`) unless it is already
/// loaded from that path, and creates the process's ONNX Runtime environment.
///
/// Errors ([`CoreError::Runtime`]): the path is not absolute, the file does not exist, it is not
/// a loadable shared library, it does not export `OrtGetApiBase` (not ONNX Runtime), its version
/// is older than 1.17, or another library was already loaded in this process.
pub fn init_runtime(library: &Path) -> Result<RuntimeInfo> {
    let mut slot = lock();
    if let Some(loaded) = slot.as_ref() {
        if same_file(&loaded.info.path, library) {
            return Ok(loaded.info.clone());
        }
        return Err(CoreError::Runtime(format!(
            "ONNX Runtime is already loaded in this process from {}; it cannot be replaced by {} \
             (reconnect to use another library)",
            loaded.info.path.display(),
            library.display()
        )));
    }
    if !library.is_absolute() {
        return Err(CoreError::Runtime(format!(
            "the ONNX Runtime library path must be absolute, got \"{}\"",
            library.display()
        )));
    }
    match std::fs::metadata(library) {
        Ok(m) if m.is_file() => {}
        Ok(_) => {
            return Err(CoreError::Runtime(format!(
                "the ONNX Runtime library path {} is not a file",
                library.display()
            )))
        }
        Err(e) => {
            return Err(CoreError::Runtime(format!(
                "ONNX Runtime library not found at {}: {e}",
                library.display()
            )))
        }
    }
    // ort asserts on a few impossible-for-ONNX-Runtime answers of the library (a null API
    // table); a broken library must give an error, not a panic.
    let broken = |_| {
        CoreError::Runtime(format!(
            "{} is not a working ONNX Runtime library",
            library.display()
        ))
    };
    let builder = catch_unwind(|| ort::init_from(library))
        .map_err(broken)?
        .map_err(|e| {
            CoreError::Runtime(format!(
                "cannot load ONNX Runtime (1.17 or newer is required): {e}"
            ))
        })?;
    let env = catch_unwind(AssertUnwindSafe(|| {
        builder
            .with_name("pg_persona")
            .with_telemetry(false)
            .build()
    }))
    .map_err(broken)?
    .map_err(|e| CoreError::Runtime(format!("cannot create the ONNX Runtime environment: {e}")))?;
    let info = RuntimeInfo {
        path: library.to_path_buf(),
        build_info: build_info(),
    };
    *slot = Some(Loaded {
        info: info.clone(),
        env,
    });
    Ok(info)
}

/// The loaded runtime, if [`init_runtime`] succeeded in this process.
pub fn runtime_info() -> Option<RuntimeInfo> {
    lock().as_ref().map(|l| l.info.clone())
}

/// The process's ONNX Runtime environment, or an error saying that [`init_runtime`] must run
/// first. No `ort` function may be called before this succeeds: ort would otherwise try to load
/// a library on its own (and panic when it cannot).
pub(crate) fn environment() -> Result<ort::environment::Environment> {
    lock().as_ref().map(|l| l.env.clone()).ok_or_else(|| {
        CoreError::Runtime(
            "ONNX Runtime is not loaded; call init_runtime with the library path first".into(),
        )
    })
}

/// Whether the loaded ONNX Runtime library was built with the CUDA execution provider (as the
/// `onnxruntime-gpu` wheel's is). This says nothing about a GPU being present: creating a CUDA
/// session can still fail, with a [`CoreError::Runtime`] saying why.
///
/// Errors ([`CoreError::Runtime`]): ONNX Runtime is not loaded ([`init_runtime`] first).
pub fn cuda_available() -> Result<bool> {
    use ort::ep::ExecutionProvider;
    environment()?;
    catch_unwind(ort::ep::CUDA::is_available)
        .map_err(|_| {
            CoreError::Runtime("ONNX Runtime failed to list its execution providers".into())
        })?
        .map_err(|e| {
            CoreError::Runtime(format!(
                "cannot list ONNX Runtime's execution providers: {e}"
            ))
        })
}

fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// ONNX Runtime's build string, if it is valid UTF-8.
fn build_info() -> Option<String> {
    // `ort::info` panics on a non-UTF-8 build string; never let that escape.
    catch_unwind(ort::info).ok().map(|s| s.trim().to_string())
}
