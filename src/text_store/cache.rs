//! The per-backend cache of text models that makes a `bert_score` call a hash lookup plus one
//! inference run.
//!
//! As in [`crate::model_store`], a model name resolves to its version once per transaction (so
//! another session's registration is seen at the next transaction, without reconnecting). Below
//! the loaded models sit the *graphs*: the rows that hold ONNX bytes and a tokenizer. A graph
//! gets one ONNX Runtime session per backend (per thread count and device), created lazily on
//! first use and shared by every model on it: the `minilm` encoder and the `sentiment` head on
//! it use one session. A graph or model whose version changed is dropped at the next lookup.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use persona_core::text::{ModelSpec, OrtBackend, ScoreMemo, Task, TextEncoder, TextModel};

use super::errors::{OrRaiseText, Phase};
use super::runtime::{
    create_session, release_free_memory, with_signals_blocked, RunConfig, SessionKey, Shared,
};
use super::{read_graph_meta, read_model_spec, read_onnx, resolve, Stamp};
use crate::txn_cache::Resolutions;

/// A row holding an ONNX graph: its tokenizer and its sessions.
struct Graph {
    version: i64,
    task: Task,
    tokenizer: Rc<Vec<u8>>,
    /// One session per (threads, device setting).
    sessions: Vec<(SessionKey, Arc<OrtBackend>)>,
}

/// A loaded model and what it was built from.
pub struct Loaded {
    /// The model.
    pub model: TextModel,
    /// The name of the row holding its graph (itself, or its encoder).
    pub graph: String,
    /// Scores this model version already gave, by text (the reports' feedback sentiment).
    pub memo: RefCell<ScoreMemo>,
    stamp: Stamp,
    config: RunConfig,
}

/// Bytes of texts a loaded model remembers scores for.
const MEMO_BYTES: usize = 16 << 20;

#[derive(Default)]
struct Cache {
    resolved: Resolutions<Stamp, Rc<Loaded>>,
    models: HashMap<String, Rc<Loaded>>,
    graphs: HashMap<String, Graph>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// The model called `name`, loaded (or taken from this backend's cache).
pub fn model(name: &str) -> Rc<Loaded> {
    let config = RunConfig::current();
    let fast = CACHE.with(|c| {
        let c = c.borrow();
        c.resolved
            .last(name)
            .filter(|m| m.config == config)
            .cloned()
    });
    if let Some(m) = fast {
        return m;
    }
    let stamp = match CACHE.with(|c| c.borrow_mut().resolved.version(name)) {
        Some(s) => s,
        None => {
            let s = resolve(name);
            CACHE.with(|c| c.borrow_mut().resolved.resolved(name, s));
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
    CACHE.with(|c| c.borrow_mut().resolved.set_last(name, loaded.clone()));
    loaded
}

/// Forgets what this transaction resolved (after a registration, replacement or drop).
pub fn invalidate() {
    CACHE.with(|c| c.borrow_mut().resolved.forget_all());
}

fn load(name: &str, stamp: Stamp, config: &RunConfig) -> Loaded {
    let (spec, graph) = read_model_spec(name);
    let graph_version = stamp.encoder_version.unwrap_or(stamp.version);
    let model = assemble(&graph, graph_version, spec, config, Phase::Load(name));
    Loaded {
        model,
        graph,
        memo: RefCell::new(ScoreMemo::with_budget(MEMO_BYTES)),
        stamp,
        config: config.clone(),
    }
}

/// Builds a model with `spec` on the graph row `graph` (at `graph_version`), using this
/// backend's session for it or creating one.
pub(super) fn assemble(
    graph: &str,
    graph_version: i64,
    spec: ModelSpec,
    config: &RunConfig,
    phase: Phase<'_>,
) -> TextModel {
    let (tokenizer, session) = graph_session(graph, graph_version, config, phase);
    let model = build(&tokenizer, session, spec, config, phase);
    release_free_memory();
    model
}

/// A model with `spec` on `session`, tokenising with `tokenizer` (a `tokenizer.json`).
pub(super) fn build(
    tokenizer: &[u8],
    session: Arc<OrtBackend>,
    mut spec: ModelSpec,
    config: &RunConfig,
    phase: Phase<'_>,
) -> TextModel {
    spec.max_length = config.max_length(spec.max_length);
    let opts = config.session_options(persona_core::text::Device::Cpu);
    with_signals_blocked(|| {
        let encoder = TextEncoder::from_bytes(tokenizer, spec.max_length)?;
        TextModel::with_backend(Box::new(Shared(session)), encoder, spec, opts)
    })
    .or_raise_text(phase)
}

/// The tokenizer and a session of the graph row `graph` at `graph_version`.
fn graph_session(
    graph: &str,
    graph_version: i64,
    config: &RunConfig,
    phase: Phase<'_>,
) -> (Rc<Vec<u8>>, Arc<OrtBackend>) {
    let key = config.session_key();
    let hit = CACHE.with(|c| {
        let c = c.borrow();
        let g = c.graphs.get(graph).filter(|g| g.version == graph_version)?;
        let session = g
            .sessions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone());
        Some((g.tokenizer.clone(), g.task, session))
    });
    let (tokenizer, task) = match hit {
        Some((t, _, Some(s))) => return (t, s),
        Some((t, task, None)) => (t, task),
        None => {
            let (task, tokenizer) = read_graph_meta(graph, graph_version);
            (Rc::new(tokenizer), task)
        }
    };
    let onnx = read_onnx(graph);
    let session = create_session(&onnx, task, config, phase);
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
    key: SessionKey,
    session: Arc<OrtBackend>,
) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let fresh = || Graph {
            version: graph_version,
            task,
            tokenizer: tokenizer.clone(),
            sessions: Vec::new(),
        };
        let g = c.graphs.entry(graph.to_string()).or_insert_with(fresh);
        if g.version != graph_version {
            *g = fresh();
        }
        g.sessions.retain(|(k, _)| *k != key);
        g.sessions.push((key, session));
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
    let key = RunConfig::current().session_key();
    remember_session(graph, version, task, Rc::new(tokenizer), key, session);
}
