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

use persona_core::text::serve::GraphHash;
use persona_core::text::{Backend, ModelSpec, OrtBackend, ScoreMemo, Task, TextEncoder, TextModel};

use super::errors::{OrRaiseText, Phase};
use super::runtime::{
    create_session, release_free_memory, resident_bytes, with_signals_blocked, RunConfig,
    SessionKey, Shared,
};
use super::{read_graph_meta, read_model_spec, read_onnx, resolve, RowStamp, Stamp};
use crate::txn_cache::Resolutions;

/// A row holding an ONNX graph: its tokenizer and its sessions.
struct Graph {
    version: RowStamp,
    task: Task,
    tokenizer: Rc<Vec<u8>>,
    /// The SHA-256 of its ONNX bytes (how the inference worker knows it).
    hash: Option<GraphHash>,
    /// One session per (threads, device setting), or the worker's.
    sessions: Vec<(SessionKey, Arc<dyn Backend>)>,
    /// Resident memory this backend's own sessions of it added when created.
    bytes: u64,
    /// When a model on it was last loaded or resolved (microseconds since the Unix epoch).
    last_used_us: i64,
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
    crate::citus::model_reads(|| lookup(name, config))
}

/// [`model`] past this transaction's last-used entry: resolves `name`, then takes the loaded
/// model from the cache or loads it.
fn lookup(name: &str, config: RunConfig) -> Rc<Loaded> {
    let stamp = match CACHE.with(|c| c.borrow_mut().resolved.version(name)) {
        Some(s) => s,
        None => {
            let s = resolve(name);
            CACHE.with(|c| c.borrow_mut().resolved.resolved(name, s));
            s
        }
    };
    let cached = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let m = c
            .models
            .get(name)
            .filter(|m| m.stamp == stamp && m.config == config)
            .cloned()?;
        if let Some(g) = c.graphs.get_mut(&m.graph) {
            g.last_used_us = crate::inference::shmem::now_us();
        }
        Some(m)
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
    let graph_version = stamp.graph();
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
    graph_version: RowStamp,
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
    session: Arc<dyn Backend>,
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

/// The tokenizer and a session of the graph row `graph` at `graph_version`: the inference
/// worker's (`persona.inference`), or this backend's own.
fn graph_session(
    graph: &str,
    graph_version: RowStamp,
    config: &RunConfig,
    phase: Phase<'_>,
) -> (Rc<Vec<u8>>, Arc<dyn Backend>) {
    let key = config.session_key();
    let hit = CACHE.with(|c| {
        let c = c.borrow();
        let g = c.graphs.get(graph).filter(|g| g.version == graph_version)?;
        let session = g
            .sessions
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s.clone());
        Some((g.tokenizer.clone(), g.task, g.hash, session))
    });
    let (tokenizer, task, hash) = match hit {
        Some((t, _, _, Some(s))) => return (t, s),
        Some((t, task, hash, None)) => (t, task, hash),
        None => {
            let (task, tokenizer, hash) = read_graph_meta(graph, graph_version);
            (Rc::new(tokenizer), task, hash)
        }
    };
    // The worker's graph, or a session of this backend's own (with the memory it added).
    let (session, bytes): (Arc<dyn Backend>, u64) = match hash {
        Some(hash) if config.worker => {
            let graph = graph.to_string();
            let remote = crate::inference::open_graph(hash, task, move || read_onnx(&graph))
                .or_raise_text(phase);
            (Arc::new(remote), 0)
        }
        _ => {
            let before = resident_bytes();
            let onnx = read_onnx(graph);
            let session = create_session(&onnx, task, config, phase);
            drop(onnx);
            release_free_memory();
            (session, resident_bytes().saturating_sub(before))
        }
    };
    remember_session(
        graph,
        GraphRow {
            version: graph_version,
            task,
            tokenizer: tokenizer.clone(),
            hash,
        },
        key,
        session.clone(),
        bytes,
    );
    (tokenizer, session)
}

/// A graph row as a session was built from it.
struct GraphRow {
    version: RowStamp,
    task: Task,
    tokenizer: Rc<Vec<u8>>,
    hash: Option<GraphHash>,
}

fn remember_session(
    graph: &str,
    row: GraphRow,
    key: SessionKey,
    session: Arc<dyn Backend>,
    bytes: u64,
) {
    let GraphRow {
        version: graph_version,
        task,
        tokenizer,
        hash,
    } = row;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let fresh = || Graph {
            version: graph_version,
            task,
            tokenizer: tokenizer.clone(),
            hash,
            sessions: Vec::new(),
            bytes: 0,
            last_used_us: 0,
        };
        let g = c.graphs.entry(graph.to_string()).or_insert_with(fresh);
        if g.version != graph_version {
            *g = fresh();
        }
        g.sessions.retain(|(k, _)| *k != key);
        g.sessions.push((key, session));
        g.bytes += bytes;
        g.last_used_us = crate::inference::shmem::now_us();
        // Models built on an older version of this graph are stale.
        c.models
            .retain(|_, m| m.graph != graph || m.stamp.graph() == graph_version);
        evict_over_bound(&mut c, graph);
        publish(&c);
    });
}

/// Drops this backend's least recently used graphs (never `keep`) while its own sessions hold
/// more than `persona.max_backend_text_memory`.
fn evict_over_bound(c: &mut Cache, keep: &str) {
    let limit = crate::settings::max_backend_text_bytes();
    if limit == 0 {
        return;
    }
    while c.graphs.values().map(|g| g.bytes).sum::<u64>() > limit {
        let victim = c
            .graphs
            .iter()
            .filter(|(name, g)| name.as_str() != keep && g.bytes > 0)
            .min_by_key(|(_, g)| g.last_used_us)
            .map(|(name, _)| name.clone());
        let Some(victim) = victim else { break };
        c.graphs.remove(&victim);
        c.models.retain(|_, m| m.graph != victim);
        c.resolved.forget_all();
    }
}

/// Publishes the graphs this backend runs itself (for `persona.text_cache`).
fn publish(c: &Cache) {
    let Some(shared) = crate::inference::shmem::shared() else {
        return;
    };
    let Some(slot) = crate::inference::shmem::my_procno().and_then(|p| shared.slot(p)) else {
        return;
    };
    let held: Vec<crate::inference::shmem::HeldGraph> = c
        .graphs
        .values()
        .filter(|g| g.bytes > 0)
        .map(|g| crate::inference::shmem::HeldGraph {
            key: persona_core::text::serve::GraphKey {
                hash: g.hash.unwrap_or([0; 32]),
                task: g.task,
            },
            bytes: g.bytes,
            last_used_us: g.last_used_us,
        })
        .collect();
    crate::inference::shmem::clear_on_exit();
    // SAFETY: MyProcPid is this process's pid.
    slot.pid.store(
        unsafe { pgrx::pg_sys::MyProcPid },
        std::sync::atomic::Ordering::Release,
    );
    slot.held.publish(&held);
}

/// Puts the session a registration checked the model with into this backend's cache, so the
/// first call after registering does not create it again.
pub fn remember_registered(
    graph: &str,
    version: RowStamp,
    task: Task,
    tokenizer: Vec<u8>,
    hash: Option<GraphHash>,
    session: Arc<OrtBackend>,
) {
    let config = RunConfig::current();
    if config.worker {
        // Models run in the worker; the registration's own session is not kept.
        return;
    }
    remember_session(
        graph,
        GraphRow {
            version,
            task,
            tokenizer: Rc::new(tokenizer),
            hash,
        },
        config.session_key(),
        session,
        0,
    );
}
