//! The inference worker: a background worker (started when pg_persona is in
//! `shared_preload_libraries`) that holds one ONNX Runtime session per graph for the whole
//! server and runs every backend's batches on it.
//!
//! Each time it wakes it takes every waiting request, groups the runs by graph, merges the
//! batches of different backends into runs within its bounds (`persona.batch_size`,
//! `persona.max_batch_tokens`, `persona.max_inference_memory` as set in its configuration;
//! dynamic batching), runs them, and cuts the outputs back into each backend's reply. It has no
//! database connection: a backend resolves a model with its own privileges and names the graph
//! by its SHA-256; the worker loads the graph from the file cache, checking the hash, and
//! answers "not cached" when there is no valid file, which the backend then writes.
//!
//! It never calls PostgreSQL from ONNX Runtime's threads (they start with every signal
//! blocked), stops between runs when asked to (SIGTERM), and exits with status 1 so that the
//! postmaster restarts it; on exit it wakes every backend waiting on it, which then fails with
//! an error saying so.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;

use persona_core::text::serve::{
    self, Envelope, Failure, GraphFiles, GraphKey, Lru, Reply, Request,
};
use persona_core::text::{
    batch_bytes, Backend, Device as CoreDevice, OrtBackend, OutputKind, PaddedBatch, SessionOptions,
};
use pgrx::bgworkers::{
    BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags,
};
use pgrx::pg_sys;
use pgrx::prelude::*;

use super::shmem::{self, HeldGraph, Kept, Segment, ABANDONED, DONE, FREE, PENDING, RUNNING};
use crate::settings::{self, Device};
use crate::text_store::runtime::{release_free_memory, resident_bytes, with_signals_blocked};

/// A loaded graph.
struct Session {
    /// Sessions of the graph that run at once, one thread each (see [`sessions_and_threads`]).
    backends: Vec<Arc<OrtBackend>>,
    /// Answers to load-time probes, by batch (every backend loading a model sends the same).
    probes: Vec<(PaddedBatch, Reply)>,
    /// Resident memory the session added when it was created.
    bytes: u64,
    last_used_us: i64,
}

/// A request taken from a slot.
struct Taken {
    procno: usize,
    segment: Kept,
    envelope: Envelope,
}

thread_local! {
    /// Segments attached, by process: a backend reuses one segment for its small requests, so
    /// the worker keeps it mapped instead of mapping and unmapping it for every request (each
    /// unmap of a process with ONNX Runtime threads costs a TLB shootdown on every core).
    static ATTACHED: RefCell<HashMap<usize, Attached>> = RefCell::new(HashMap::new());
}

/// A segment the worker keeps mapped: its handle, the mapping, when a request last used it. The
/// mapping has no destructor (thread-local destructors run after the server has detached every
/// segment at exit): it is detached explicitly, or by the server when the worker exits.
type Attached = (u32, Kept, Instant);

/// How long an attached segment stays mapped without a request.
const KEEP_ATTACHED: Duration = Duration::from_secs(10);

/// The segment `handle` of process `procno`: kept, or attached now (None if it is gone).
fn attached(procno: usize, handle: u32) -> Option<Kept> {
    ATTACHED.with(|a| {
        let mut a = a.borrow_mut();
        if let Some((h, seg, used)) = a.get_mut(&procno) {
            if *h == handle {
                *used = Instant::now();
                return Some(*seg);
            }
        }
        let seg = Segment::attach(handle)?.keep();
        if let Some((_, old, _)) = a.insert(procno, (handle, seg, Instant::now())) {
            old.detach();
        }
        Some(seg)
    })
}

/// Unmaps the segments no request used for [`KEEP_ATTACHED`] (their backends exited or went
/// quiet: an exited backend's segment lives until the worker lets go of it).
fn release_idle_segments() {
    ATTACHED.with(|a| {
        a.borrow_mut().retain(|_, (_, seg, used)| {
            let keep = used.elapsed() < KEEP_ATTACHED;
            if !keep {
                seg.detach();
            }
            keep
        })
    });
}

/// Registers the worker (from `_PG_init` in `shared_preload_libraries`).
pub fn register() {
    BackgroundWorkerBuilder::new("pg_persona inference")
        .set_type("pg_persona inference")
        .set_library("pg_persona")
        .set_function("persona_inference_worker_main")
        .enable_shmem_access(None)
        // A connection to no database: the worker shows in pg_stat_activity (backend_type
        // "pg_persona inference") and reads settings, and never touches a catalog.
        .enable_spi_access()
        // Consistent state: also on a hot standby (inference on a read replica).
        .set_start_time(BgWorkerStartTime::ConsistentState)
        .set_restart_time(Some(Duration::from_secs(1)))
        .load();
}

#[pg_guard]
unsafe extern "C-unwind" fn on_exit(_code: i32, _arg: pg_sys::Datum) {
    let Some(shared) = shmem::shared() else {
        return;
    };
    shared.worker_pid.store(0, Release);
    for (procno, slot) in shared.slots() {
        if matches!(slot.state.load(Acquire), PENDING | RUNNING) {
            shmem::wake(procno);
        }
    }
}

/// The worker's entry point.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn persona_inference_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let Some(shared) = shmem::shared() else {
        log!("pg_persona inference worker: no shared memory (pg_persona is not in shared_preload_libraries)");
        return;
    };
    // SAFETY: registers a plain callback for this process's exit.
    unsafe { pg_sys::on_shmem_exit(Some(on_exit), pg_sys::Datum::from(0)) };
    let generation = shared.generation.fetch_add(1, AcqRel) + 1;
    // Requests a previous worker took and never answered: their backends saw it exit.
    for (_, slot) in shared.slots() {
        if matches!(slot.state.load(Acquire), RUNNING | ABANDONED) {
            slot.state.store(FREE, Release);
        }
    }
    let procno = shmem::my_procno().expect("a background worker has a PGPROC");
    shared.worker_procno.store(procno as i32, Release);
    // SAFETY: MyProcPid is this process's pid.
    shared
        .worker_pid
        .store(unsafe { pg_sys::MyProcPid }, Release);
    let files = GraphFiles::new(super::cache_dir());
    match files.sweep() {
        Ok(0) => {}
        Ok(n) => log!("pg_persona inference worker: removed {n} unfinished graph file(s)"),
        Err(e) => warning!("pg_persona inference worker: {e}"),
    }
    log!("pg_persona inference worker started (generation {generation})");
    let mut worker = Worker {
        files,
        sessions: Lru::default(),
        recent: HashMap::new(),
    };
    // Resident memory after the last trim: freed heap memory (a large batch's buffers) is given
    // back when the worker goes idle having grown well past it.
    let mut trimmed_at = resident_bytes();
    loop {
        if worker.serve(shared) && resident_bytes() > trimmed_at + (64 << 20) {
            release_free_memory();
            trimmed_at = resident_bytes();
        }
        // SAFETY: a plain read of a flag the SIGTERM handler sets.
        if unsafe { pg_sys::ShutdownRequestPending } != 0 {
            break;
        }
        release_idle_segments();
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(10))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: reloading the configuration file in a background worker's main loop.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    log!("pg_persona inference worker stopping");
    // Status 1: the postmaster starts a new worker (unless the server is shutting down).
    // SAFETY: proc_exit runs the exit callbacks (on_exit above) and ends the process.
    unsafe { pg_sys::proc_exit(1) };
}

struct Worker {
    files: GraphFiles,
    sessions: Lru<GraphKey, Session>,
    /// When each process last sent a request: how many callers are active.
    recent: HashMap<usize, Instant>,
}

/// A caller that sent a request this recently counts as active.
const ACTIVE_WITHIN: Duration = Duration::from_millis(200);

/// How the worker's threads (`persona.worker_threads`) are spent on a CPU: that many sessions
/// of a graph (at most four: each holds the weights once more), each with that many threads. A
/// lone batch (one caller's array, one per-row call) runs on one session with every thread;
/// the runs of concurrent callers run on different sessions at once. With 8 per-row clients
/// on this 2-vCPU VM, one two-thread session spent 5.9 ms of CPU per text (its two threads
/// synchronise at every operator, costly on short batches), two sessions 4.6 ms.
fn sessions_and_threads(threads: usize) -> (usize, usize) {
    let sessions = threads.clamp(1, 4);
    (sessions, threads.max(1))
}

fn session_options() -> SessionOptions {
    SessionOptions {
        threads: settings::worker_threads(),
        batch_size: settings::batch_size(),
        max_batch_tokens: settings::max_batch_tokens(),
        max_batch_bytes: settings::max_inference_bytes(),
        spin: settings::INFERENCE_SPIN.get(),
        // A run of 2,048 tokens takes ~100 MB; larger ones give their arena memory back.
        shrink_arena_above: 2048,
        device: CoreDevice::Cpu,
    }
}

impl Worker {
    /// Answers every waiting request; whether there was any.
    fn serve(&mut self, shared: &shmem::Shared) -> bool {
        let mut served = false;
        loop {
            let mut taken = take(shared);
            if taken.is_empty() {
                return served;
            }
            served = true;
            // Dynamic batching: with other callers active (they sent requests in the last
            // ACTIVE_WITHIN), wait up to persona.worker_batch_wait for theirs, so that one run
            // serves them all. A lone caller never waits.
            let window = settings::worker_batch_wait();
            let now = Instant::now();
            self.recent
                .retain(|_, t| now.duration_since(*t) < ACTIVE_WITHIN);
            let active = self
                .recent
                .keys()
                .chain(taken.iter().map(|t| &t.procno))
                .collect::<std::collections::HashSet<_>>()
                .len();
            while taken.len() < active && now.elapsed() < window {
                std::thread::sleep(Duration::from_micros(100));
                taken.extend(take(shared));
            }
            for t in &taken {
                self.recent.insert(t.procno, now);
            }
            let mut by_graph: HashMap<GraphKey, Vec<Taken>> = HashMap::new();
            let mut order = Vec::new();
            for t in taken {
                let key = t.envelope.graph;
                if !by_graph.contains_key(&key) {
                    order.push(key);
                }
                by_graph.entry(key).or_default().push(t);
            }
            for key in order {
                let requests = by_graph.remove(&key).unwrap_or_default();
                self.serve_graph(shared, key, requests);
                // SAFETY: a plain read of a flag the SIGTERM handler sets.
                if unsafe { pg_sys::ShutdownRequestPending } != 0 {
                    return served;
                }
            }
        }
    }

    fn serve_graph(&mut self, shared: &shmem::Shared, key: GraphKey, requests: Vec<Taken>) {
        let sessions = match self.session(key) {
            Ok(Some(s)) => s,
            Ok(None) => {
                for t in requests {
                    answer(shared, t, &Reply::NotCached);
                }
                return;
            }
            Err(failure) => {
                for t in requests {
                    answer(shared, t, &Reply::Failed(failure.clone()));
                }
                return;
            }
        };
        let session = sessions[0].clone();
        let mut runs = Vec::new();
        for t in requests {
            match &t.envelope.request {
                Request::Describe => answer(shared, t, &Reply::Io(session.io().clone())),
                Request::Probe(batch) => {
                    let reply = self.probe(key, &session, batch);
                    answer(shared, t, &reply);
                }
                Request::Run(_) => runs.push(t),
            }
        }
        let batches: Vec<&PaddedBatch> = runs
            .iter()
            .filter_map(|t| match &t.envelope.request {
                Request::Run(b) => Some(b),
                _ => None,
            })
            .collect();
        let waiting: Vec<serve::Waiting> = batches.iter().map(|b| serve::Waiting::of(b)).collect();
        let opts = session_options();
        let hidden = match session.io().output {
            OutputKind::Hidden => session.io().declared_width.unwrap_or(1024),
            OutputKind::Logits => 1024,
        };
        let fits = |rows: usize, seq: usize| {
            rows <= opts.batch_size
                && rows.saturating_mul(seq) <= opts.max_batch_tokens
                && (opts.max_batch_bytes == 0
                    || batch_bytes(rows, seq, hidden) <= opts.max_batch_bytes)
        };
        let groups = serve::group(&waiting, fits, session.io().has_attention_mask());
        // Each run merged, cut into pieces for the sessions, run at once, joined back.
        let merged: Vec<PaddedBatch> = groups
            .iter()
            .map(|members| {
                let parts: Vec<&PaddedBatch> = members.iter().map(|&i| batches[i]).collect();
                serve::merge(&parts)
            })
            .collect();
        let rows: Vec<usize> = merged.iter().map(|m| m.rows).collect();
        // Halves of a batch go to sessions of one thread only: with several threads each, a
        // lone batch already has every core, and splitting it would oversubscribe them.
        let (_, threads) = sessions_and_threads(settings::worker_threads());
        let runners = if threads > 1 { 1 } else { sessions.len() };
        let plan = serve::plan_pieces(&rows, runners);
        let pieces: Vec<PaddedBatch> = plan
            .iter()
            .map(|(run, r)| serve::slice_rows(&merged[*run], r.clone()))
            .collect();
        let started = std::time::Instant::now();
        let refs: Vec<&OrtBackend> = sessions.iter().map(|s| s.as_ref()).collect();
        let mut outputs = with_signals_blocked(|| serve::run_pieces(&refs, &pieces)).into_iter();
        shared
            .busy_us
            .fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let mut replies: Vec<Option<Reply>> = vec![None; runs.len()];
        for (run, members) in groups.iter().enumerate() {
            let n = plan.iter().filter(|(r, _)| *r == run).count();
            let outs: Vec<_> = outputs.by_ref().take(n).collect();
            let parts: Vec<&PaddedBatch> = members.iter().map(|&i| batches[i]).collect();
            let result = outs
                .into_iter()
                .collect::<persona_core::Result<Vec<_>>>()
                .and_then(serve::concat)
                .and_then(|out| serve::split(&out, &parts));
            shared.runs.fetch_add(1, Relaxed);
            shared.batches.fetch_add(parts.len() as u64, Relaxed);
            shared.texts.fetch_add(merged[run].rows as u64, Relaxed);
            match result {
                Ok(outs) => {
                    for (&i, out) in members.iter().zip(outs) {
                        replies[i] = Some(Reply::Ran(out));
                    }
                }
                Err(e) => {
                    let f = Failure::of(e);
                    for &i in members {
                        replies[i] = Some(Reply::Failed(f.clone()));
                    }
                }
            }
        }
        for (t, reply) in runs.into_iter().zip(replies) {
            let reply = reply.unwrap_or_else(|| {
                Reply::Failed(Failure::Runtime("the request was not run".into()))
            });
            answer(shared, t, &reply);
        }
        self.publish(shared);
    }

    /// The answer to a probe batch: remembered, or run (and remembered, a few per graph).
    fn probe(&mut self, key: GraphKey, session: &OrtBackend, batch: &PaddedBatch) -> Reply {
        if let Some(s) = self.sessions.get_mut(&key) {
            if let Some((_, reply)) = s.probes.iter().find(|(b, _)| b == batch) {
                return reply.clone();
            }
        }
        let reply = match with_signals_blocked(|| session.run(batch)) {
            Ok(out) => Reply::Ran(out),
            Err(e) => Reply::Failed(Failure::of(e)),
        };
        if let Some(s) = self.sessions.get_mut(&key) {
            if s.probes.len() >= 4 {
                s.probes.remove(0);
            }
            s.probes.push((batch.clone(), reply.clone()));
        }
        reply
    }

    /// The session of `key`: cached, or loaded from its file (`None`: no valid file).
    fn session(&mut self, key: GraphKey) -> Result<Option<Vec<Arc<OrtBackend>>>, Failure> {
        let now = shmem::now_us();
        if let Some(s) = self.sessions.get_mut(&key) {
            s.last_used_us = now;
            return Ok(Some(s.backends.clone()));
        }
        let bytes = match self.files.load(&key.hash) {
            Ok(Some(b)) => b,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Failure::of(e)),
        };
        // ONNX Runtime is loaded at the first graph, as in a backend.
        crate::text_store::runtime_ready().map_err(|e| Failure::Runtime(e.to_string()))?;
        let before = resident_bytes();
        let opts = session_options();
        let device = match settings::DEVICE.get() {
            Device::Cpu => CoreDevice::Cpu,
            Device::Cuda => CoreDevice::Cuda,
            Device::Auto => {
                if persona_core::text::cuda_available().unwrap_or(false) {
                    CoreDevice::Cuda
                } else {
                    CoreDevice::Cpu
                }
            }
        };
        // On the GPU one session takes every batch (one CUDA context, its own streams).
        let (count, threads) = match device {
            CoreDevice::Cuda => (1, 1),
            CoreDevice::Cpu => sessions_and_threads(settings::worker_threads()),
        };
        let opts = SessionOptions {
            device,
            threads,
            ..opts
        };
        let mut backends = Vec::with_capacity(count);
        for _ in 0..count {
            let backend =
                with_signals_blocked(|| OrtBackend::from_bytes(&bytes, key.task, false, &opts))
                    .map_err(Failure::of)?;
            backends.push(Arc::new(backend));
        }
        drop(bytes);
        release_free_memory();
        let grown = resident_bytes().saturating_sub(before);
        log!(
            "pg_persona inference worker: loaded graph {} ({count} session(s) of {threads} \
             thread(s), {} MB resident, {:?})",
            &serve::hex(&key.hash)[..12],
            grown >> 20,
            device
        );
        let evicted = self.sessions.insert(
            key,
            Session {
                backends: backends.clone(),
                probes: Vec::new(),
                bytes: grown,
                last_used_us: now,
            },
            settings::worker_max_graphs(),
        );
        for (k, _) in evicted {
            log!(
                "pg_persona inference worker: evicted graph {} (persona.worker_max_graphs)",
                &serve::hex(&k.hash)[..12]
            );
        }
        release_free_memory();
        Ok(Some(backends))
    }

    fn publish(&self, shared: &shmem::Shared) {
        let held: Vec<HeldGraph> = self
            .sessions
            .iter()
            .map(|(k, s, _)| HeldGraph {
                key: *k,
                bytes: s.bytes,
                last_used_us: s.last_used_us,
            })
            .collect();
        shared.held.publish(&held);
    }
}

/// Takes every pending request (marking its slot RUNNING).
fn take(shared: &shmem::Shared) -> Vec<Taken> {
    let mut taken = Vec::new();
    for (procno, slot) in shared.slots() {
        if slot
            .state
            .compare_exchange(PENDING, RUNNING, AcqRel, Acquire)
            .is_err()
        {
            continue;
        }
        let Some(segment) = attached(procno, slot.handle.load(Relaxed)) else {
            // The backend gave up and its segment is gone.
            release(slot);
            continue;
        };
        match serve::decode::<Envelope>(segment.bytes()) {
            Ok(envelope) => taken.push(Taken {
                procno,
                segment,
                envelope,
            }),
            Err(e) => {
                let t = Taken {
                    procno,
                    segment,
                    envelope: Envelope {
                        graph: GraphKey {
                            hash: [0; 32],
                            task: Default::default(),
                        },
                        request: Request::Describe,
                    },
                };
                answer(shared, t, &Reply::Failed(Failure::of(e)));
            }
        }
    }
    taken
}

/// A slot the worker is done with: DONE for its backend, or FREE if the backend gave up.
fn release(slot: &shmem::Slot) {
    if slot
        .state
        .compare_exchange(RUNNING, DONE, AcqRel, Acquire)
        .is_err()
    {
        // ABANDONED: nobody will read the reply.
        slot.state.store(FREE, Release);
    }
}

/// Writes `reply` into the request's segment and wakes its backend.
fn answer(shared: &shmem::Shared, t: Taken, reply: &Reply) {
    let buf = t.segment.bytes();
    if let Err(needed) = serve::encode(reply, buf) {
        let _ = serve::encode(&Reply::TooSmall { needed }, buf);
    }
    shared.requests.fetch_add(1, Relaxed);
    if let Some(slot) = shared.slot(t.procno) {
        release(slot);
    }
    shmem::wake(t.procno);
}
