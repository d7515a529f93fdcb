//! Shared text inference: one ONNX Runtime session per graph for the whole server, in a
//! background worker, instead of one per backend.
//!
//! | module | what |
//! |---|---|
//! | this one | choosing worker or backend (`persona.inference`), the graph file cache, `persona.text_cache` |
//! | [`shmem`] | the shared memory: worker identity, one request slot per process, published graphs |
//! | [`client`] | a backend's requests: `WorkerGraph`, the `Backend` a `TextModel` runs on |
//! | [`worker`] | the worker: sessions, dynamic batching across connections, restarts |
//!
//! A backend still resolves every model with its own privileges, tokenises, plans batches,
//! pools and applies heads (all cheap); only the graph runs in the worker. The worker knows a
//! graph by the SHA-256 of its bytes (`persona.bert_model_store.onnx_sha256`), loads it from
//! `$PGDATA/pg_persona/graphs/<sha256>.onnx` (checked against its name), and answers "not
//! cached" when the file is missing or corrupt, so the backend that asked writes it from the
//! database (atomically) and asks again. The database stays the source of truth; the files are
//! a cache that can be deleted at any time.

pub mod client;
pub mod shmem;
pub mod worker;

use std::ffi::CStr;
use std::path::PathBuf;

use persona_core::text::serve::{self, GraphFiles, GraphHash, GraphKey};
use persona_core::text::Task;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::error::raise_hint;
use crate::settings::{self, Inference};

/// Registers the shared memory and the worker when loaded through `shared_preload_libraries`
/// (from `_PG_init`; nothing otherwise).
pub fn init() {
    // SAFETY: a plain read of a postmaster flag.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::request();
        worker::register();
    }
}

/// The graph file cache directory: `pg_persona/graphs` in the data directory.
pub fn cache_dir() -> PathBuf {
    // SAFETY: DataDir is set (absolute) before any backend or worker runs.
    let data = unsafe { CStr::from_ptr(pg_sys::DataDir) };
    PathBuf::from(data.to_string_lossy().into_owned()).join("pg_persona/graphs")
}

/// Whether this backend's text inference goes to the worker (`persona.inference`).
pub fn use_worker() -> bool {
    let available = shmem::shared().is_some();
    match settings::INFERENCE.get() {
        Inference::Backend => false,
        Inference::Auto => available,
        Inference::Worker if available => true,
        Inference::Worker => raise_hint(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "persona.inference is \"worker\" but the pg_persona inference worker does not exist",
            "Add pg_persona to shared_preload_libraries and restart the server, or set \
             persona.inference to 'auto' or 'backend'.",
        ),
    }
}

/// A graph served by the worker. `onnx` reads its bytes (with the caller's privileges, on the
/// backend's thread) when the worker has no valid file for it.
pub fn open_graph(
    hash: GraphHash,
    task: Task,
    onnx: impl Fn() -> Vec<u8> + Send + Sync + 'static,
) -> persona_core::Result<client::WorkerGraph> {
    let key = GraphKey { hash, task };
    client::WorkerGraph::open(key, move || {
        let bytes = onnx();
        GraphFiles::new(cache_dir())
            .store(&hash, &bytes)
            .map(|_| ())
    })
}

/// Removes the cached file of a graph no longer stored (after a drop or replacement commits).
pub fn forget_file(hash: &GraphHash) {
    if let Err(e) = GraphFiles::new(cache_dir()).remove(hash) {
        warning!("pg_persona: {e}");
    }
}

/// The inference worker's counters since the server started: the row of
/// `persona.inference_worker` (none without the worker's shared memory).
#[allow(clippy::type_complexity)] // pgrx needs the row type spelled out to name the columns
#[pg_extern(schema = "persona", volatile, parallel_safe)]
fn inference_worker_stats() -> TableIterator<
    'static,
    (
        name!(pid, Option<i32>),
        name!(starts, i64),
        name!(requests, i64),
        name!(batches, i64),
        name!(runs, i64),
        name!(texts, i64),
        name!(busy_seconds, f64),
    ),
> {
    use std::sync::atomic::Ordering::Relaxed;
    let rows = shmem::shared().map(|s| {
        let pid = s.worker_pid.load(Relaxed);
        (
            (pid != 0).then_some(pid),
            s.generation.load(Relaxed) as i64,
            s.requests.load(Relaxed) as i64,
            s.batches.load(Relaxed) as i64,
            s.runs.load(Relaxed) as i64,
            s.texts.load(Relaxed) as i64,
            s.busy_us.load(Relaxed) as f64 / 1e6,
        )
    });
    TableIterator::new(rows)
}

/// What holds text graphs: the inference worker's sessions, each backend's own sessions
/// (`persona.inference = backend`) and the graph files; the rows of `persona.text_cache`.
// The row type must be spelled out here for pgrx to name the columns.
#[allow(clippy::type_complexity)]
#[pg_extern(schema = "persona", volatile, parallel_safe)]
fn text_cache_entries() -> TableIterator<
    'static,
    (
        name!(holder, String),
        name!(pid, Option<i32>),
        name!(sha256, String),
        name!(task, Option<String>),
        name!(bytes, i64),
        name!(last_used, Option<pgrx::datum::TimestampWithTimeZone>),
    ),
> {
    let mut rows = Vec::new();
    let stamp = |us: i64| {
        (us > 0).then(|| {
            pgrx::datum::TimestampWithTimeZone::try_from(
                us - 946_684_800_000_000, // Unix epoch → PostgreSQL epoch (2000-01-01)
            )
            .ok()
        })?
    };
    let task = |t: Task| match t {
        Task::Embedding => "embedding".to_string(),
        Task::Classification => "classification".to_string(),
    };
    if let Some(shared) = shmem::shared() {
        let pid = shared.worker_pid.load(std::sync::atomic::Ordering::Acquire);
        for g in shared.held.read() {
            rows.push((
                "worker".to_string(),
                (pid != 0).then_some(pid),
                serve::hex(&g.key.hash),
                Some(task(g.key.task)),
                g.bytes as i64,
                stamp(g.last_used_us),
            ));
        }
        for (_, slot) in shared.slots() {
            let held = slot.held.read();
            if held.is_empty() {
                continue;
            }
            let pid = slot.pid.load(std::sync::atomic::Ordering::Acquire);
            for g in held {
                rows.push((
                    "backend".to_string(),
                    Some(pid),
                    serve::hex(&g.key.hash),
                    Some(task(g.key.task)),
                    g.bytes as i64,
                    stamp(g.last_used_us),
                ));
            }
        }
    }
    match GraphFiles::new(cache_dir()).list() {
        Ok(files) => {
            for f in files {
                rows.push((
                    "file".to_string(),
                    None,
                    serve::hex(&f.hash),
                    None,
                    f.bytes as i64,
                    stamp(f.modified as i64 * 1_000_000),
                ));
            }
        }
        Err(e) => warning!("pg_persona: {e}"),
    }
    TableIterator::new(rows)
}
