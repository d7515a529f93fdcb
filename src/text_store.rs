//! Text models: their rows in `persona.bert_model_store`, ONNX Runtime, and the per-backend cache
//! that makes a `bert_score` call a hash lookup plus one inference run.
//!
//! # Cache
//!
//! As in [`crate::model_store`], a model name resolves to its version once per transaction (so
//! another session's registration is seen at the next transaction, without reconnecting). Below
//! the loaded models sit the *graphs*: the rows that hold ONNX bytes and a tokenizer. A graph
//! gets one ONNX Runtime session per backend (per thread count and device), created lazily on
//! first use and shared by every model on it: the `minilm` encoder and the `sentiment` head on
//! it use one session. A graph or model whose version changed is dropped at the next lookup.
//!
//! # Threads and signals
//!
//! ONNX Runtime starts its intra-op worker threads when a session is created. They are created
//! with every asynchronous signal blocked ([`with_signals_blocked`]), so PostgreSQL's signal
//! handlers (query cancel, die, latch wake-ups) always run on the backend's own thread. Those
//! threads never call PostgreSQL; only this thread does, between inference runs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use persona_core::text::{
    cuda_available, init_runtime, Backend, BatchOutput, Device as CoreDevice, GraphIo, ModelSpec,
    OrtBackend, PaddedBatch, SessionOptions, Task, TextEncoder, TextModel,
};
use persona_core::CoreError;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::{self, *};

use crate::error::{raise, raise_hint};
use crate::settings::{self, Device};
pub use crate::source::select_one;

/// Where a core error happened, which decides its SQLSTATE and hint.
#[derive(Debug, Clone, Copy)]
pub enum Phase<'a> {
    /// Loading the ONNX Runtime library.
    Runtime,
    /// Checking a model given to `bert_register_model` (or a default model).
    Register,
    /// Loading the stored model of this name.
    Load(&'a str),
    /// Running the model of this name.
    Infer(&'a str),
    /// Training a head (`bert_train_classifier`).
    Train,
}

/// Raises a core error of the text runtime with a SQLSTATE and a hint fit for `phase`.
#[track_caller]
pub fn raise_text(e: CoreError, phase: Phase<'_>) -> ! {
    let library = settings::onnxruntime_library();
    let library_hint = format!(
        "pg_persona needs ONNX Runtime 1.17 or newer at persona.onnxruntime_library (now {}); \
         scripts/setup.sh installs it. After changing the setting, reconnect.",
        library.display()
    );
    let (code, hint): (PgSqlErrorCode, String) = match (&e, phase) {
        (CoreError::Cancelled, _) => raise(
            ERRCODE_QUERY_CANCELED,
            "canceling statement due to user request",
            None,
        ),
        (CoreError::Runtime(_), Phase::Runtime) => (ERRCODE_SYSTEM_ERROR, library_hint),
        (CoreError::Runtime(_), Phase::Infer(name)) => (
            ERRCODE_SYSTEM_ERROR,
            format!(
                "ONNX Runtime failed while running model \"{name}\"; the server log has its \
                 message. Lower persona.batch_size or persona.max_batch_tokens if it ran out of \
                 memory."
            ),
        ),
        (CoreError::Runtime(_), _) => (
            ERRCODE_SYSTEM_ERROR,
            "ONNX Runtime could not create a session for the model; the server log may say more. \
             With persona.device = cuda, check the GPU build of ONNX Runtime and its CUDA libraries."
                .into(),
        ),
        (CoreError::CorruptModel(m), Phase::Register) if m.contains("tokenizer") => (
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            "Pass the tokenizer.json that was exported with the model (Hugging Face format), as \
             text, e.g. pg_read_file('.../tokenizer.json')."
                .into(),
        ),
        (CoreError::CorruptModel(_), Phase::Register) => (
            ERRCODE_INVALID_BINARY_REPRESENTATION,
            "Pass the bytes of an .onnx file (e.g. pg_read_binary_file('.../model.onnx')), as \
             exported by Hugging Face Optimum: optimum-cli export onnx --model <name> <dir>."
                .into(),
        ),
        (CoreError::CorruptModel(_), Phase::Load(name)) => (
            ERRCODE_DATA_CORRUPTED,
            format!(
                "The stored model \"{name}\" cannot be loaded. Register it again with \
                 bert_register_model(..., options => '{{\"replace\": true}}'), or drop it with \
                 bert_drop_model('{name}')."
            ),
        ),
        (CoreError::CorruptModel(_), _) => (
            ERRCODE_DATA_CORRUPTED,
            "Register the model again.".into(),
        ),
        (CoreError::InvalidData(m), Phase::Register | Phase::Load(_))
            if m.contains("tokenizer") || m.contains("token id") =>
        {
            (
                ERRCODE_DATA_EXCEPTION,
                "Use the tokenizer.json exported together with this ONNX graph: its vocabulary \
                 must fit the graph's embedding table."
                    .into(),
            )
        }
        (CoreError::InvalidData(m), Phase::Register | Phase::Load(_)) if m.contains("max_length") => (
            ERRCODE_DATA_EXCEPTION,
            "Register the model with a smaller max_length, e.g. options => '{\"max_length\": 128}' \
             (BERT's position table holds 512 tokens, RoBERTa's 512 after its 2 offsets)."
                .into(),
        ),
        (CoreError::InvalidData(_), Phase::Register | Phase::Load(_)) => (
            ERRCODE_DATA_EXCEPTION,
            "pg_persona feeds the inputs input_ids, attention_mask and token_type_ids (int64 \
             [batch, sequence]) and reads the output last_hidden_state (task embedding) or logits \
             (task classification), as Hugging Face Optimum exports them. Re-export the model, or \
             register it with the other task."
                .into(),
        ),
        (CoreError::InvalidData(_), _) => (
            ERRCODE_DATA_EXCEPTION,
            "Check the input data.".into(),
        ),
        (CoreError::InvalidParameter(_), Phase::Train) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            "See the README's table of bert_train_classifier options.".into(),
        ),
        (CoreError::InvalidParameter(_), _) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            "Check the model's options: task, labels, positive_label, pooling, max_length.".into(),
        ),
        (CoreError::TooLarge(_), _) => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "Raise persona.max_training_memory, or use fewer rows.".into(),
        ),
    };
    raise_hint(code, e.to_string(), hint)
}

/// Unwraps a core result of the text runtime or raises its error for `phase`.
pub trait OrRaiseText<T> {
    fn or_raise_text(self, phase: Phase<'_>) -> T;
}

impl<T> OrRaiseText<T> for persona_core::Result<T> {
    #[track_caller]
    fn or_raise_text(self, phase: Phase<'_>) -> T {
        self.unwrap_or_else(|e| raise_text(e, phase))
    }
}

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

/// Loads ONNX Runtime (`persona.onnxruntime_library`) into this backend unless it is loaded.
pub fn ensure_runtime() {
    let path = settings::onnxruntime_library();
    if persona_core::text::runtime_info().is_some_and(|i| i.path == path) {
        return;
    }
    if !Path::new(&path).exists() {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("ONNX Runtime library not found at {}", path.display()),
            "Install it with scripts/setup.sh (make setup), or point persona.onnxruntime_library \
             (superuser) at libonnxruntime.so 1.17 or newer, then reconnect.",
        );
    }
    with_signals_blocked(|| init_runtime(&path)).or_raise_text(Phase::Runtime);
}

/// Runtime settings a loaded model depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
struct RunConfig {
    threads: usize,
    device: Device,
    batch_size: usize,
    max_batch_tokens: usize,
    max_sequence_length: Option<usize>,
}

impl RunConfig {
    fn current() -> RunConfig {
        RunConfig {
            threads: settings::inference_threads(),
            device: settings::DEVICE.get(),
            batch_size: settings::batch_size(),
            max_batch_tokens: settings::max_batch_tokens(),
            max_sequence_length: settings::max_sequence_length(),
        }
    }

    fn session_options(&self, device: CoreDevice) -> SessionOptions {
        SessionOptions {
            threads: self.threads,
            batch_size: self.batch_size,
            max_batch_tokens: self.max_batch_tokens,
            spin: false,
            device,
        }
    }
}

/// Which versions a loaded model was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    version: i64,
    /// The encoder's version, for a model on an encoder.
    encoder_version: Option<i64>,
}

/// A row holding an ONNX graph: its tokenizer and its sessions.
struct Graph {
    version: i64,
    task: Task,
    tokenizer: Rc<Vec<u8>>,
    /// One session per (threads, device setting).
    sessions: Vec<((usize, Device), Arc<OrtBackend>)>,
}

/// A loaded model and what it was built from.
pub struct Loaded {
    /// The model.
    pub model: TextModel,
    /// The name of the row holding its graph (itself, or its encoder).
    pub graph: String,
    stamp: Stamp,
    config: RunConfig,
}

struct Cache {
    lxid: u32,
    resolved: HashMap<String, Stamp>,
    models: HashMap<String, Rc<Loaded>>,
    graphs: HashMap<String, Graph>,
    last: Option<(String, Rc<Loaded>)>,
    auto_notice_sent: bool,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache {
        lxid: 0,
        resolved: HashMap::new(),
        models: HashMap::new(),
        graphs: HashMap::new(),
        last: None,
        auto_notice_sent: false,
    });
}

fn current_lxid() -> u32 {
    // SAFETY: MyProc is set for every backend and parallel worker before any function runs.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// A backend shares one session between the models on a graph.
struct Shared(Arc<OrtBackend>);

impl Backend for Shared {
    fn io(&self) -> &GraphIo {
        self.0.io()
    }
    fn run(&self, batch: &PaddedBatch) -> persona_core::Result<BatchOutput> {
        self.0.run(batch)
    }
}

/// The model called `name`, loaded (or taken from this backend's cache).
pub fn model(name: &str) -> Rc<Loaded> {
    let lxid = current_lxid();
    let config = RunConfig::current();
    let fast = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.lxid != lxid {
            c.lxid = lxid;
            c.resolved.clear();
            c.last = None;
            return None;
        }
        match &c.last {
            Some((n, m)) if n == name && m.config == config => Some(m.clone()),
            _ => None,
        }
    });
    if let Some(m) = fast {
        return m;
    }
    let stamp = match CACHE.with(|c| c.borrow().resolved.get(name).copied()) {
        Some(s) => s,
        None => {
            let s = resolve(name);
            CACHE.with(|c| c.borrow_mut().resolved.insert(name.to_string(), s));
            s
        }
    };
    let cached = CACHE.with(|c| {
        c.borrow()
            .models
            .get(name)
            .filter(|m| m.stamp == stamp && m.config == config)
            .cloned()
    });
    let loaded = match cached {
        Some(m) => m,
        None => {
            let m = Rc::new(load(name, stamp, &config));
            CACHE.with(|c| c.borrow_mut().models.insert(name.to_string(), m.clone()));
            m
        }
    };
    CACHE.with(|c| c.borrow_mut().last = Some((name.to_string(), loaded.clone())));
    loaded
}

/// Forgets what this transaction resolved (after a registration, replacement or drop).
pub fn invalidate() {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.resolved.clear();
        c.last = None;
    });
}

/// The registered model names, for hints.
pub fn known_models() -> Option<String> {
    select_one::<String>(
        "SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM persona.bert_model_store",
        &[],
    )
    .ok()
    .flatten()
}

/// Raises 42704 for a model that is not registered.
pub fn missing_model(name: &str) -> ! {
    raise_hint(
        ERRCODE_UNDEFINED_OBJECT,
        format!("text model \"{name}\" does not exist"),
        match known_models() {
            Some(k) => format!(
                "Registered text models: {k}. Register one with bert_register_model or train one \
                 with bert_train_classifier."
            ),
            None => "No text model is registered: run SELECT bert_register_defaults(); (after \
                     scripts/setup.sh), or register one with bert_register_model."
                .into(),
        },
    )
}

fn resolve(name: &str) -> Stamp {
    let row = Spi::connect(|client| {
        let t = client.select(
            "SELECT m.version, e.version FROM persona.bert_model_store m \
             LEFT JOIN persona.bert_model_store e ON e.name = m.encoder WHERE m.name = $1",
            Some(1),
            &[name.into()],
        )?;
        if t.is_empty() {
            return Ok(None);
        }
        let r = t.first();
        Ok::<_, pgrx::spi::SpiError>(Some((r.get::<i64>(1)?, r.get::<i64>(2)?)))
    });
    match row {
        Ok(Some((Some(version), encoder_version))) => Stamp {
            version,
            encoder_version,
        },
        Ok(_) => missing_model(name),
        Err(e) => raise(
            ERRCODE_INTERNAL_ERROR,
            format!("cannot read persona.bert_model_store: {e}"),
            None,
        ),
    }
}

/// Parses a task name as stored and as given to the SQL functions.
pub fn parse_task(task: &str) -> Option<Task> {
    serde_json::from_value(serde_json::Value::String(task.to_string())).ok()
}

fn load(name: &str, stamp: Stamp, config: &RunConfig) -> Loaded {
    let row = Spi::connect(|client| {
        let t = client
            .select(
                "SELECT m.spec::text, coalesce(m.encoder, m.name) FROM persona.bert_model_store m \
                 WHERE m.name = $1",
                Some(1),
                &[name.into()],
            )
            .ok()?;
        let r = t.first();
        Some((
            r.get::<String>(1).ok().flatten()?,
            r.get::<String>(2).ok().flatten()?,
        ))
    });
    let Some((spec_json, graph)) = row else {
        missing_model(name)
    };
    let spec: ModelSpec = serde_json::from_str(&spec_json).unwrap_or_else(|e| {
        raise_text(
            CoreError::CorruptModel(format!(
                "the stored spec of model \"{name}\" is invalid: {e}"
            )),
            Phase::Load(name),
        )
    });
    let graph_version = stamp.encoder_version.unwrap_or(stamp.version);
    let model = assemble(&graph, graph_version, spec, config, Phase::Load(name));
    Loaded {
        model,
        graph,
        stamp,
        config: config.clone(),
    }
}

/// Builds a model with `spec` on the graph row `graph` (at `graph_version`), using this
/// backend's session for it or creating one.
fn assemble(
    graph: &str,
    graph_version: i64,
    mut spec: ModelSpec,
    config: &RunConfig,
    phase: Phase<'_>,
) -> TextModel {
    let (tokenizer, backend) = graph_session(graph, graph_version, config, phase);
    if let Some(cap) = config.max_sequence_length {
        spec.max_length = spec.max_length.min(cap.max(2));
    }
    let opts = config.session_options(CoreDevice::Cpu);
    let model = with_signals_blocked(|| {
        let encoder = TextEncoder::from_bytes(&tokenizer, spec.max_length)?;
        TextModel::with_backend(Box::new(Shared(backend)), encoder, spec, opts)
    })
    .or_raise_text(phase);
    release_free_memory();
    model
}

/// The tokenizer and a session of the graph row `graph` at `graph_version`.
fn graph_session(
    graph: &str,
    graph_version: i64,
    config: &RunConfig,
    phase: Phase<'_>,
) -> (Rc<Vec<u8>>, Arc<OrtBackend>) {
    let key = (config.threads, config.device);
    let hit = CACHE.with(|c| {
        let c = c.borrow();
        let g = c.graphs.get(graph).filter(|g| g.version == graph_version)?;
        let tokenizer = g.tokenizer.clone();
        let session = g
            .sessions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone());
        Some((tokenizer, g.task, session))
    });
    let (tokenizer, task) = match &hit {
        Some((t, _, Some(s))) => return (t.clone(), s.clone()),
        Some((t, task, None)) => (t.clone(), *task),
        None => {
            let (task, tokenizer) = read_graph_meta(graph, graph_version);
            (Rc::new(tokenizer), task)
        }
    };
    let onnx = read_onnx(graph);
    let session = Arc::new(create_session(&onnx, task, config, phase));
    drop(onnx);
    release_free_memory();
    remember_session(
        graph,
        graph_version,
        task,
        tokenizer.clone(),
        key,
        session.clone(),
    );
    (tokenizer, session)
}

fn remember_session(
    graph: &str,
    graph_version: i64,
    task: Task,
    tokenizer: Rc<Vec<u8>>,
    key: (usize, Device),
    session: Arc<OrtBackend>,
) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let g = c.graphs.entry(graph.to_string()).or_insert_with(|| Graph {
            version: graph_version,
            task,
            tokenizer: tokenizer.clone(),
            sessions: Vec::new(),
        });
        if g.version != graph_version {
            *g = Graph {
                version: graph_version,
                task,
                tokenizer: tokenizer.clone(),
                sessions: Vec::new(),
            };
        }
        g.sessions.retain(|(k, _)| *k != key);
        g.sessions.push((key, session.clone()));
        // Models built on an older version of this graph are stale.
        c.models.retain(|_, m| {
            m.graph != graph || m.stamp.encoder_version.unwrap_or(m.stamp.version) == graph_version
        });
    });
}

/// Puts the session a registration checked the model with into this backend's cache, so the
/// first call after registering does not create it again.
pub fn remember_registered(
    graph: &str,
    version: i64,
    task: Task,
    tokenizer: Vec<u8>,
    session: Arc<OrtBackend>,
) {
    let config = RunConfig::current();
    remember_session(
        graph,
        version,
        task,
        Rc::new(tokenizer),
        (config.threads, config.device),
        session,
    );
}

fn read_graph_meta(graph: &str, graph_version: i64) -> (Task, Vec<u8>) {
    let row = Spi::connect(|client| {
        let t = client
            .select(
                "SELECT task, tokenizer FROM persona.bert_model_store WHERE name = $1 AND version = $2",
                Some(1),
                &[graph.into(), graph_version.into()],
            )
            .ok()?;
        if t.is_empty() {
            return None;
        }
        t.first().get_two::<String, String>().ok()
    });
    match row {
        Some((Some(task), Some(tokenizer))) => {
            let task = parse_task(&task).unwrap_or_else(|| {
                raise_text(
                    CoreError::CorruptModel(format!(
                        "model \"{graph}\" has an unknown task \"{task}\""
                    )),
                    Phase::Load(graph),
                )
            });
            (task, tokenizer.into_bytes())
        }
        _ => raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("the graph of text model \"{graph}\" changed or is missing"),
            "Another session replaced or dropped it; retry the statement.",
        ),
    }
}

fn read_onnx(graph: &str) -> Vec<u8> {
    select_one::<Vec<u8>>(
        "SELECT onnx FROM persona.bert_model_store WHERE name = $1",
        &[graph.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| missing_model(graph))
}

/// Hands memory freed after loading a model back to the operating system. The model's bytes pass
/// through a few large temporary copies (detoasting, SPI, ONNX Runtime's parser); glibc keeps
/// such freed heap memory in the process otherwise, which shows as tens of MB of extra RSS in
/// every backend that loaded a model.
fn release_free_memory() {
    // SAFETY: malloc_trim only returns free heap pages to the kernel; it is thread-safe.
    unsafe { libc::malloc_trim(0) };
}

/// Creates a session on the configured device: `cuda` raises when CUDA cannot be used, `auto`
/// falls back to the CPU with one NOTICE per backend.
pub fn create_session_for(onnx: &[u8], task: Task, phase: Phase<'_>) -> Arc<OrtBackend> {
    Arc::new(create_session(onnx, task, &RunConfig::current(), phase))
}

fn create_session(onnx: &[u8], task: Task, config: &RunConfig, phase: Phase<'_>) -> OrtBackend {
    ensure_runtime();
    let build = |device| {
        let opts = config.session_options(device);
        with_signals_blocked(|| OrtBackend::from_bytes(onnx, task, false, &opts))
    };
    match config.device {
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
                    Ok(s) => return s,
                    Err(CoreError::Runtime(m)) => m,
                    Err(e) => raise_text(e, phase),
                },
                Ok(false) => format!(
                    "the ONNX Runtime library {} has no CUDA execution provider",
                    settings::onnxruntime_library().display()
                ),
                Err(e) => e.to_string(),
            };
            let first =
                CACHE.with(|c| !std::mem::replace(&mut c.borrow_mut().auto_notice_sent, true));
            if first {
                notice!("pg_persona: persona.device is \"auto\" and CUDA cannot be used ({why}); text models run on the CPU");
            }
            build(CoreDevice::Cpu).or_raise_text(phase)
        }
    }
}

/// A model to be registered, checked by [`check_model`].
pub struct Checked {
    /// The model, as it will be loaded later.
    pub model: TextModel,
    /// The session it runs on.
    pub session: Arc<OrtBackend>,
}

/// Loads `onnx` + `tokenizer` with `spec` as a registration would, raising registration errors.
pub fn check_model(onnx: &[u8], tokenizer: &[u8], spec: ModelSpec) -> Checked {
    let config = RunConfig::current();
    let session = create_session_for(onnx, spec.task, Phase::Register);
    let mut spec = spec;
    if let Some(cap) = config.max_sequence_length {
        spec.max_length = spec.max_length.min(cap.max(2));
    }
    let opts = config.session_options(CoreDevice::Cpu);
    let shared = session.clone();
    let model = with_signals_blocked(|| {
        let encoder = TextEncoder::from_bytes(tokenizer, spec.max_length)?;
        TextModel::with_backend(Box::new(Shared(shared)), encoder, spec, opts)
    })
    .or_raise_text(Phase::Register);
    Checked { model, session }
}

/// Builds a model with `spec` on the graph of the registered model `graph` (which must hold a
/// graph: no encoder of its own), for training and for checking a head before storing it.
pub fn model_on_graph(graph: &str, spec: ModelSpec, phase: Phase<'_>) -> TextModel {
    let stamp = resolve(graph);
    if stamp.encoder_version.is_some() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{graph}\" has no ONNX graph of its own"),
            "Name the encoder it is built on.",
        );
    }
    assemble(graph, stamp.version, spec, &RunConfig::current(), phase)
}
