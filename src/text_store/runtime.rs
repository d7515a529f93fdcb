//! ONNX Runtime in a backend: loading the library, creating sessions on the configured device,
//! and the settings a session depends on.
//!
//! ONNX Runtime starts its intra-op worker threads when a session is created. They are created
//! with every asynchronous signal blocked ([`with_signals_blocked`]), so PostgreSQL's signal
//! handlers (query cancel, die, latch wake-ups) always run on the backend's own thread. Those
//! threads never call PostgreSQL; only this thread does, between inference runs.

use std::cell::Cell;
use std::path::PathBuf;

use persona_core::text::{
    cuda_available, init_runtime, Backend, BatchOutput, Device as CoreDevice, GraphIo, OrtBackend,
    PaddedBatch, SessionOptions, Task,
};
use persona_core::CoreError;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use std::sync::Arc;

use super::errors::{raise_text, OrRaiseText, Phase};
use crate::error::raise_hint;
use crate::settings::{self, Device};

/// Runs `f` with every asynchronous signal blocked on this thread, so that threads started by
/// `f` (ONNX Runtime's thread pools) inherit a mask that keeps PostgreSQL's signals away from
/// them. `f` must not call PostgreSQL (an ERROR would leave the mask blocked); the previous mask
/// is restored when `f` returns or unwinds.
pub fn with_signals_blocked<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(libc::sigset_t);
    impl Drop for Restore {
        fn drop(&mut self) {
            // SAFETY: restores the mask saved below, on the same thread.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
        }
    }
    // SAFETY: sigset_t is plain data initialised by sigfillset/pthread_sigmask before use.
    let _restore = unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut block);
        // Faults stay deliverable: they are synchronous and belong to the faulting thread.
        for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL] {
            libc::sigdelset(&mut block, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        Restore(old)
    };
    f()
}

/// Why ONNX Runtime cannot be used in this backend.
pub enum Unavailable {
    /// No file at `persona.onnxruntime_library`.
    Missing(PathBuf),
    /// The file is there but cannot be loaded (too old, not ONNX Runtime, ...).
    Failed(CoreError),
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unavailable::Missing(path) => {
                write!(f, "ONNX Runtime is not installed at {}", path.display())
            }
            Unavailable::Failed(e) => write!(f, "{e}"),
        }
    }
}

/// Loads ONNX Runtime (`persona.onnxruntime_library`) into this backend unless it is loaded.
pub fn runtime_ready() -> Result<(), Unavailable> {
    let path = settings::onnxruntime_library();
    if persona_core::text::runtime_info().is_some_and(|i| i.path == path) {
        return Ok(());
    }
    if !path.exists() {
        return Err(Unavailable::Missing(path));
    }
    with_signals_blocked(|| init_runtime(&path))
        .map(|_| ())
        .map_err(Unavailable::Failed)
}

/// [`runtime_ready`], or an ERROR saying how to install ONNX Runtime.
pub fn ensure_runtime() {
    match runtime_ready() {
        Ok(()) => {}
        Err(Unavailable::Missing(path)) => raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("ONNX Runtime library not found at {}", path.display()),
            "Install it with scripts/setup.sh (make setup), or point persona.onnxruntime_library \
             (superuser) at libonnxruntime.so 1.17 or newer, then reconnect.",
        ),
        Err(Unavailable::Failed(e)) => raise_text(e, Phase::Runtime),
    }
}

/// The settings a session of a graph is built with: threads, device, spinning, and whether it is
/// the inference worker's.
pub type SessionKey = (usize, Device, bool, bool);

/// Runtime settings a loaded model depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunConfig {
    pub threads: usize,
    pub device: Device,
    pub batch_size: usize,
    pub max_batch_tokens: usize,
    pub max_batch_bytes: u64,
    pub max_sequence_length: Option<usize>,
    pub spin: bool,
    /// Graphs run in the shared inference worker (`persona.inference`).
    pub worker: bool,
}

impl RunConfig {
    /// The settings of this moment.
    pub fn current() -> RunConfig {
        RunConfig {
            threads: settings::inference_threads(),
            device: settings::DEVICE.get(),
            batch_size: settings::batch_size(),
            max_batch_tokens: settings::max_batch_tokens(),
            max_batch_bytes: settings::max_inference_bytes(),
            max_sequence_length: settings::max_sequence_length(),
            spin: settings::INFERENCE_SPIN.get(),
            worker: crate::inference::use_worker(),
        }
    }

    /// What identifies a session of a graph: its threads, device and spinning settings, or the
    /// worker (whose own settings apply).
    pub fn session_key(&self) -> SessionKey {
        if self.worker {
            (0, Device::Cpu, false, true)
        } else {
            (self.threads, self.device, self.spin, false)
        }
    }

    pub fn session_options(&self, device: CoreDevice) -> SessionOptions {
        SessionOptions {
            threads: self.threads,
            batch_size: self.batch_size,
            max_batch_tokens: self.max_batch_tokens,
            max_batch_bytes: self.max_batch_bytes,
            spin: self.spin,
            shrink_arena_above: 0,
            device,
        }
    }

    /// A model's truncation length under `persona.max_sequence_length`.
    pub fn max_length(&self, model_max_length: usize) -> usize {
        match self.max_sequence_length {
            Some(cap) => model_max_length.min(cap.max(2)),
            None => model_max_length,
        }
    }
}

/// A session shared by the models on one graph (the encoder and the heads on it): this backend's
/// own, or the inference worker's.
pub struct Shared(pub Arc<dyn Backend>);

impl Backend for Shared {
    fn io(&self) -> &GraphIo {
        self.0.io()
    }
    fn run(&self, batch: &PaddedBatch) -> persona_core::Result<BatchOutput> {
        self.0.run(batch)
    }
    fn probe(&self, batch: &PaddedBatch) -> persona_core::Result<BatchOutput> {
        self.0.probe(batch)
    }
}

/// Hands memory freed after loading a model back to the operating system. The model's bytes pass
/// through a few large temporary copies (detoasting, SPI, ONNX Runtime's parser); glibc keeps
/// such freed heap memory in the process otherwise, which shows as tens of MB of extra RSS in
/// every backend that loaded a model.
pub fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is thread-safe.
    unsafe { libc::malloc_trim(0) };
}

/// Resident memory of this process, in bytes.
pub fn resident_bytes() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

thread_local! {
    /// Whether this backend has said that `persona.device = auto` fell back to the CPU.
    static AUTO_NOTICE_SENT: Cell<bool> = const { Cell::new(false) };
}

/// Creates a session on the configured device: `cuda` raises when CUDA cannot be used, `auto`
/// falls back to the CPU with one NOTICE per backend.
pub fn create_session(
    onnx: &[u8],
    task: Task,
    config: &RunConfig,
    phase: Phase<'_>,
) -> Arc<OrtBackend> {
    ensure_runtime();
    let build = |device| {
        let opts = config.session_options(device);
        with_signals_blocked(|| OrtBackend::from_bytes(onnx, task, false, &opts))
    };
    let session = match config.device {
        Device::Cpu => build(CoreDevice::Cpu).or_raise_text(phase),
        Device::Cuda => {
            if !cuda_available().or_raise_text(Phase::Runtime) {
                raise_hint(
                    ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "persona.device is \"cuda\" but the ONNX Runtime library {} has no CUDA \
                         execution provider",
                        settings::onnxruntime_library().display()
                    ),
                    "Set persona.device to 'cpu' or 'auto', or point persona.onnxruntime_library \
                     at the libonnxruntime.so of the onnxruntime-gpu wheel (CUDA 13, cuDNN 9) and \
                     reconnect.",
                );
            }
            build(CoreDevice::Cuda).or_raise_text(phase)
        }
        Device::Auto => {
            let why = match cuda_available() {
                Ok(true) => match build(CoreDevice::Cuda) {
                    Ok(s) => return Arc::new(s),
                    Err(CoreError::Runtime(m)) => m,
                    Err(e) => raise_text(e, phase),
                },
                Ok(false) => format!(
                    "the ONNX Runtime library {} has no CUDA execution provider",
                    settings::onnxruntime_library().display()
                ),
                Err(e) => e.to_string(),
            };
            if !AUTO_NOTICE_SENT.replace(true) {
                notice!(
                    "pg_persona: persona.device is \"auto\" and CUDA cannot be used ({why}); \
                         text models run on the CPU"
                );
            }
            build(CoreDevice::Cpu).or_raise_text(phase)
        }
    };
    Arc::new(session)
}
