//! Every setting of pg_persona, in one place. All are prefixed `persona.` (the prefix is reserved)
//! and documented in the README's settings table.

use std::ffi::{c_char, CStr, CString};
use std::path::PathBuf;

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

/// `persona.training_threads`: threads a training may use; 0 means one per core.
pub static TRAINING_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// `persona.max_training_memory`: the most memory one training may plan to use, in MB.
pub static MAX_TRAINING_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(2048);
/// `persona.significance_level`: α of the campaign significance tests.
pub static SIGNIFICANCE_LEVEL: GucSetting<f64> = GucSetting::<f64>::new(0.05);

/// `persona.device`: where text models run.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[name = c"cpu"]
    Cpu,
    /// ONNX Runtime's CUDA execution provider; an error when the library has none.
    #[name = c"cuda"]
    Cuda,
    /// CUDA when the library has the provider and a session can be created on it, else CPU
    /// (with one NOTICE per backend).
    #[name = c"auto"]
    Auto,
}

/// `persona.fold_in`: which users `cf_predict` and `cf_recommend` fold in from the model's source.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum FoldIn {
    /// Never: users the model did not train on get the baseline (popularity for ALS).
    #[name = c"off"]
    Off,
    /// Users the model did not train on (default).
    #[name = c"unknown"]
    Unknown,
    /// Every user, from the ratings they have now.
    #[name = c"always"]
    Always,
}

/// `persona.fold_in`.
pub static FOLD_IN: GucSetting<FoldIn> = GucSetting::<FoldIn>::new(FoldIn::Unknown);

/// `persona.inference`: where a backend's text inference runs.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Inference {
    /// The shared inference worker when it exists (pg_persona in shared_preload_libraries),
    /// else the backend's own ONNX Runtime sessions.
    #[name = c"auto"]
    Auto,
    /// The shared inference worker; an error when it does not exist.
    #[name = c"worker"]
    Worker,
    /// The backend's own ONNX Runtime sessions (one copy of each graph per backend).
    #[name = c"backend"]
    Backend,
}

/// `persona.inference`.
pub static INFERENCE: GucSetting<Inference> = GucSetting::<Inference>::new(Inference::Auto);
/// `persona.worker_threads`: ONNX Runtime intra-op threads of the inference worker (0: cores).
pub static WORKER_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// `persona.max_backend_text_memory`: memory a backend's own text sessions may hold, in MB.
pub static MAX_BACKEND_TEXT_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(1024);
/// `persona.worker_batch_wait`: how long the inference worker waits for other active callers'
/// requests before a run, in ms.
pub static WORKER_BATCH_WAIT_MS: GucSetting<i32> = GucSetting::<i32>::new(5);
/// `persona.worker_max_graphs`: graphs the inference worker keeps loaded.
pub static WORKER_MAX_GRAPHS: GucSetting<i32> = GucSetting::<i32>::new(4);

/// `persona.device`.
pub static DEVICE: GucSetting<Device> = GucSetting::<Device>::new(Device::Cpu);
/// `persona.inference_threads`: ONNX Runtime intra-op threads per backend and model (0: auto).
pub static INFERENCE_THREADS: GucSetting<i32> = GucSetting::<i32>::new(0);
/// `persona.batch_size`: most texts per inference run.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(32);
/// `persona.max_batch_tokens`: most tokens (texts × padded length) per inference run.
pub static MAX_BATCH_TOKENS: GucSetting<i32> = GucSetting::<i32>::new(8192);
/// `persona.inference_spin`: ONNX Runtime worker threads spin-wait between operators.
pub static INFERENCE_SPIN: GucSetting<bool> = GucSetting::<bool>::new(false);
/// `persona.max_inference_memory`: the most memory one inference run may take, in MB.
pub static MAX_INFERENCE_MEMORY_MB: GucSetting<i32> = GucSetting::<i32>::new(512);
/// `persona.max_sequence_length`: caps every text model's truncation length (0: the model's own).
pub static MAX_SEQUENCE_LENGTH: GucSetting<i32> = GucSetting::<i32>::new(0);
/// `persona.onnxruntime_library`: path of libonnxruntime.so (boot value set in [`init`]).
pub static ONNXRUNTIME_LIBRARY: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(None);
/// `persona.model_dir`: the only directory model files may be registered from (boot value set in
/// [`init`]).
pub static MODEL_DIR: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);
/// `persona.sentiment_model`: the text model whose scores campaign and user reports average.
pub static SENTIMENT_MODEL: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"sentiment"));

/// Registers every setting (from `_PG_init`) and reserves the `persona.` prefix.
pub fn init() {
    init_training_and_statistics();
    init_text();
    reserve_prefix(c"persona");
}

/// The settings of training and of campaign statistics.
fn init_training_and_statistics() {
    GucRegistry::define_enum_guc(
        c"persona.fold_in",
        c"Which users cf_predict and cf_recommend fold in from the model's source: off, unknown \
          or always.",
        c"unknown (default): a user the model did not train on is solved from their rows in the \
          relation the model was trained on, read with the caller's privileges, without \
          retraining. always: every user, from the ratings they have now. off: unknown users get \
          the baseline (popularity for als). Callers who may not read the source get the \
          baseline.",
        &FOLD_IN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.training_threads",
        c"Threads one cf_train call may use (0: one per CPU core).",
        c"Training runs its parallel phases on a pool of this many threads. Only the backend's \
          own thread talks to PostgreSQL.",
        &TRAINING_THREADS,
        0,
        1024,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.max_training_memory",
        c"Largest memory a training may plan to use; larger jobs are refused before they start.",
        c"cf_train estimates the memory of the data and the model before training and raises an \
          error (SQLSTATE 54000) above this limit. Superusers only: it is the bound that keeps \
          an ordinary role from exhausting the server's memory.",
        &MAX_TRAINING_MEMORY_MB,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_float_guc(
        c"persona.significance_level",
        c"Significance level (alpha) of campaign_metrics' tests and confidence intervals.",
        c"A difference is reported as significant when its p-value is below this level; intervals \
          have coverage 1 - alpha.",
        &SIGNIFICANCE_LEVEL,
        1e-6,
        0.5,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// The settings of text models: device, threads, batching, paths, the sentiment model.
fn init_text() {
    GucRegistry::define_enum_guc(
        c"persona.inference",
        c"Where text inference runs: auto, worker or backend.",
        c"worker: the shared inference worker (pg_persona in shared_preload_libraries) holds one \
          session per model for the whole server and batches every connection's texts together; \
          backends only tokenise. backend: each backend loads its own ONNX Runtime sessions \
          (about 200 MB per backend and model). auto (default): worker when it exists, else \
          backend. Superusers only: it decides how much memory a backend may take.",
        &INFERENCE,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.worker_threads",
        c"ONNX Runtime threads of the inference worker (0: one per CPU core).",
        c"The worker runs one batch at a time on this many threads. Read at each session's \
          creation; change it in postgresql.conf and reload.",
        &WORKER_THREADS,
        0,
        256,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.max_backend_text_memory",
        c"Memory a backend's own ONNX Runtime sessions may hold (persona.inference = backend); \
          0: no bound.",
        c"Measured as the resident memory each session added when it was created. Past the \
          bound the least recently used graphs are dropped from the backend (and loaded again \
          when next used). Superusers only: it bounds a backend's memory.",
        &MAX_BACKEND_TEXT_MEMORY_MB,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"persona.worker_batch_wait",
        c"How long the inference worker waits for the requests of other active callers before \
          it runs what it has (0: never waits).",
        c"A caller is active when it sent a request in the last 200 ms. Waiting lets one run \
          serve several connections: with 8 clients scoring one text each on 2 vCPUs, 5 ms \
          raised throughput by about a tenth (larger runs cost less per text). A lone caller \
          never waits. Change it in postgresql.conf and reload.",
        &WORKER_BATCH_WAIT_MS,
        0,
        1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"persona.worker_max_graphs",
        c"ONNX graphs the inference worker keeps loaded; the least recently used goes first.",
        c"Each loaded graph takes its weights and ONNX Runtime's buffers once for the whole \
          server (all-MiniLM-L6-v2 int8: about 150 MB). See persona.text_cache.",
        &WORKER_MAX_GRAPHS,
        1,
        1024,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_enum_guc(
        c"persona.device",
        c"Where text models run: cpu, cuda or auto.",
        c"cuda uses ONNX Runtime's CUDA execution provider (needs the onnxruntime-gpu build of \
          libonnxruntime, CUDA 13 and a GPU) and is an error without it; auto uses CUDA when it \
          works and otherwise the CPU, with one NOTICE per backend. Takes effect for sessions \
          created afterwards.",
        &DEVICE,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.inference_threads",
        c"ONNX Runtime threads per backend and text model (0: automatic).",
        c"0 means one per CPU core in an ordinary backend. Inside a parallel query (a parallel \
          worker, or the leader while it runs a parallel plan) each process gets this number (or \
          the core count) divided by max_parallel_workers_per_gather + 1, at least 1, so the \
          workers together do not oversubscribe the cores.",
        &INFERENCE_THREADS,
        0,
        256,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"persona.inference_spin",
        c"Let ONNX Runtime's worker threads spin-wait for work instead of sleeping.",
        c"Off by default: with several backends scoring at once the spinning threads take the \
          cores from each other (8 clients on 2 cores: 61 transactions/s with it, 157 without). \
          On, one backend scoring a large array is about 1.5 times faster (ONNX Runtime's own \
          default): SET it in a session that runs such a job. Takes effect for sessions \
          created afterwards.",
        &INFERENCE_SPIN,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.batch_size",
        c"Most texts per ONNX Runtime inference run.",
        c"Texts of one call are sorted by length and cut into batches of at most this many texts \
          and persona.max_batch_tokens tokens, each padded to its own longest text. Superusers \
          only: with persona.max_batch_tokens it bounds a backend's inference memory.",
        &BATCH_SIZE,
        1,
        4096,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.max_batch_tokens",
        c"Most tokens (texts times padded length) per ONNX Runtime inference run.",
        c"Bounds the memory of one run: attention needs heads x texts x length^2 floats. A single \
          text longer than this runs alone.",
        &MAX_BATCH_TOKENS,
        1,
        1 << 24,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"persona.max_inference_memory",
        c"Largest memory one ONNX Runtime inference run may take; batches are cut to fit.",
        c"Each batch's memory is estimated from its texts, padded length and the model's width \
          before it runs (attention grows with the square of the length), and batches are made \
          small enough to stay within this limit; a text too large to run alone is an error \
          (SQLSTATE 54000). Superusers only: it bounds a backend's inference memory.",
        &MAX_INFERENCE_MEMORY_MB,
        16,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_MB,
    );
    GucRegistry::define_int_guc(
        c"persona.max_sequence_length",
        c"Caps the truncation length (in tokens) of every text model (0: each model's own \
          max_length).",
        c"Texts longer than the limit are truncated at the end, special tokens included. Lower it \
          to trade accuracy on long texts for speed; it never raises a model's own max_length.",
        &MAX_SEQUENCE_LENGTH,
        0,
        8192,
        GucContext::Userset,
        GucFlags::default(),
    );
    define_path_guc(
        c"persona.onnxruntime_library",
        c"Path of the ONNX Runtime shared library (libonnxruntime.so, version 1.17 or newer).",
        c"Loaded on a backend's first use of a text model, never at server start. The default is \
          pg_persona/libonnxruntime.so in the server's package library directory (pg_config \
          --pkglibdir), where scripts/setup.sh installs it. A backend keeps the library it loaded \
          first: reconnect after changing this.",
        &ONNXRUNTIME_LIBRARY,
        default_library_path(),
    );
    define_path_guc(
        c"persona.model_dir",
        c"Directory that bert_register_model may read model files from.",
        c"File paths given to bert_register_model must resolve (after following symbolic links) \
          inside this directory. The default is extension/pg_persona/models in the server's share \
          directory (pg_config --sharedir), where scripts/setup.sh installs the default models.",
        &MODEL_DIR,
        default_model_dir(),
    );
    GucRegistry::define_string_guc(
        c"persona.sentiment_model",
        c"Text model whose mean score is the sentiment of campaign_metrics and user_profile.",
        c"A classification model registered with pg_persona (default: the built-in sentiment \
          model). Its positive-label probability, averaged over the feedback texts, is reported \
          as mean sentiment.",
        &SENTIMENT_MODEL,
        GucContext::Userset,
        GucFlags::default(),
    );
}

/// Defines a superuser-only string setting whose boot value is computed at run time (from the
/// server's installation directories), which `GucSetting::new` cannot express.
fn define_path_guc(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
    boot: PathBuf,
) {
    let boot = CString::new(boot.to_string_lossy().into_owned()).unwrap_or_default();
    // PostgreSQL keeps the boot value's pointer for RESET: it must live as long as the process.
    let boot: &'static CStr = Box::leak(boot.into_boxed_c_str());
    // SAFETY: called once from _PG_init on the backend's thread; the variable is a static whose
    // value PostgreSQL manages from now on, and every string is 'static.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            name.as_ptr(),
            short.as_ptr(),
            long.as_ptr(),
            setting.as_ptr(),
            boot.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            0,
            None,
            None,
            None,
        );
    }
}

/// A directory of the server's installation, from the running executable's location (as
/// `pg_config` computes it, so relocated installations work).
fn install_dir(get: unsafe fn(*const c_char, *mut c_char)) -> PathBuf {
    let mut buf = [0 as c_char; pg_sys::MAXPGPATH as usize];
    // SAFETY: my_exec_path is set at process start, before any library is loaded; `buf` has the
    // MAXPGPATH bytes these functions write at most, NUL-terminated.
    let dir = unsafe {
        get(
            std::ptr::addr_of!(pg_sys::my_exec_path).cast(),
            buf.as_mut_ptr(),
        );
        CStr::from_ptr(buf.as_ptr())
    };
    PathBuf::from(dir.to_string_lossy().into_owned())
}

fn default_library_path() -> PathBuf {
    install_dir(pg_sys::get_pkglib_path)
        .join("pg_persona")
        .join("libonnxruntime.so")
}

fn default_model_dir() -> PathBuf {
    install_dir(pg_sys::get_share_path)
        .join("extension")
        .join("pg_persona")
        .join("models")
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

/// Refuses (54000) work that would need more than `persona.max_training_memory`, before it
/// allocates: "{what} needs about N MB, more than persona.max_training_memory (L MB)", with the
/// caller's hint (what to lower for that kind of work).
pub fn check_training_memory(need: usize, what: impl FnOnce() -> String, hint: &str) {
    let limit = max_training_bytes();
    if need > limit {
        crate::error::raise_hint(
            pgrx::PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "{} needs about {} MB, more than persona.max_training_memory ({} MB)",
                what(),
                need >> 20,
                limit >> 20
            ),
            hint,
        );
    }
}

fn path_setting(setting: &GucSetting<Option<CString>>, default: fn() -> PathBuf) -> PathBuf {
    match setting.get() {
        Some(s) if !s.as_bytes().is_empty() => PathBuf::from(s.to_string_lossy().into_owned()),
        _ => default(),
    }
}

/// The ONNX Runtime library to load (`persona.onnxruntime_library`).
pub fn onnxruntime_library() -> PathBuf {
    path_setting(&ONNXRUNTIME_LIBRARY, default_library_path)
}

/// The text model of campaign and user sentiment (`persona.sentiment_model`).
pub fn sentiment_model() -> String {
    SENTIMENT_MODEL
        .get()
        .and_then(|c| c.into_string().ok())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "sentiment".to_string())
}

/// The model directory (`persona.model_dir`).
pub fn model_dir() -> PathBuf {
    path_setting(&MODEL_DIR, default_model_dir)
}

/// The number of CPU cores, read once per process (it may come from cgroup files).
pub fn cores() -> usize {
    static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// Whether this process runs part of a parallel query: a parallel worker, or a leader while it
/// executes a parallel plan.
fn in_parallel_query() -> bool {
    // SAFETY: plain reads of backend globals on the backend's thread.
    unsafe { pg_sys::ParallelWorkerNumber >= 0 || pg_sys::IsInParallelMode() }
}

/// ONNX Runtime intra-op threads for a session created now (`persona.inference_threads`, see its
/// description).
pub fn inference_threads() -> usize {
    let wanted = match INFERENCE_THREADS.get() {
        n if n > 0 => n as usize,
        _ => cores(),
    };
    if in_parallel_query() {
        // SAFETY: plain read of a GUC variable on the backend's thread.
        let workers = unsafe { pg_sys::max_parallel_workers_per_gather }.max(0) as usize;
        (wanted / (workers + 1)).max(1)
    } else {
        wanted
    }
}

/// `persona.worker_threads`, 0 resolved to the core count.
pub fn worker_threads() -> usize {
    match WORKER_THREADS.get() {
        n if n > 0 => n as usize,
        _ => cores(),
    }
}

/// `persona.max_backend_text_memory` in bytes (0: no bound).
pub fn max_backend_text_bytes() -> u64 {
    (MAX_BACKEND_TEXT_MEMORY_MB.get().max(0) as u64) << 20
}

/// `persona.worker_batch_wait`.
pub fn worker_batch_wait() -> std::time::Duration {
    std::time::Duration::from_millis(WORKER_BATCH_WAIT_MS.get().max(0) as u64)
}

/// `persona.worker_max_graphs`.
pub fn worker_max_graphs() -> usize {
    WORKER_MAX_GRAPHS.get().max(1) as usize
}

/// `persona.batch_size`.
pub fn batch_size() -> usize {
    BATCH_SIZE.get().max(1) as usize
}

/// `persona.max_inference_memory`, in bytes.
pub fn max_inference_bytes() -> u64 {
    (MAX_INFERENCE_MEMORY_MB.get().max(1) as u64) << 20
}

/// `persona.max_batch_tokens`.
pub fn max_batch_tokens() -> usize {
    MAX_BATCH_TOKENS.get().max(1) as usize
}

/// `persona.max_sequence_length` (`None`: no cap).
pub fn max_sequence_length() -> Option<usize> {
    match MAX_SEQUENCE_LENGTH.get() {
        n if n > 0 => Some(n as usize),
        _ => None,
    }
}
