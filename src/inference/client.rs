//! A backend's side of the inference worker: [`WorkerGraph`], a `Backend` whose runs happen in
//! the worker, and [`call`], one request/reply through the backend's slot.
//!
//! The request travels in a dynamic shared memory segment the backend creates per call (so
//! nothing stays mapped, or counted in the backend's memory, between calls); the reply is
//! written into the same segment. While it waits the backend sleeps on its latch and checks
//! for interrupts every 100 ms or when woken, so `pg_cancel_backend` returns at once; a worker
//! that exits fails the wait with an error that says so.

use std::sync::atomic::{AtomicUsize, Ordering::*};
use std::time::{Duration, Instant};

use persona_core::text::serve::{self, Envelope, GraphKey, Reply, Request};
use persona_core::text::{Backend, BatchOutput, GraphIo, PaddedBatch};
use persona_core::{CoreError, Result};
use pgrx::pg_sys;

use super::shmem::{self, Kept, Mapping, Segment, ABANDONED, DONE, FREE, PENDING, RUNNING};
use crate::error::raise_hint;
use pgrx::PgSqlErrorCode::*;

/// How long a call waits for a worker that is (re)starting before it fails.
const START_WAIT: Duration = Duration::from_secs(10);

fn not_running() -> ! {
    raise_hint(
        ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
        "the pg_persona inference worker is not running",
        "It restarts within seconds after it exits; the server log says why it stopped. Retry \
         the statement, or SET persona.inference = 'backend' (superuser) to run text models in \
         this backend.",
    )
}

fn exited() -> ! {
    raise_hint(
        ERRCODE_SYSTEM_ERROR,
        "the pg_persona inference worker exited while this request waited",
        "A new worker starts within about a second; the server log says why the old one \
         stopped. Retry the statement.",
    )
}

/// Sleeps on this backend's latch for at most `ms`, then checks for interrupts (an ERROR for
/// a pending cancel unwinds through the caller's guards).
fn sleep(ms: i64) {
    // SAFETY: MyLatch is this process's latch; WaitLatch/ResetLatch are the standard protocol.
    unsafe {
        pg_sys::WaitLatch(
            pg_sys::MyLatch,
            (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_EXIT_ON_PM_DEATH) as i32,
            ms,
            pg_sys::PG_WAIT_EXTENSION,
        );
        pg_sys::ResetLatch(pg_sys::MyLatch);
    }
    pgrx::check_for_interrupts!();
}

/// Leaves the slot consistent however the wait ends: a request the worker has not taken is
/// withdrawn, one it runs is abandoned (the worker frees the slot), a reply is discarded.
struct Claim<'a> {
    slot: &'a shmem::Slot,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let s = &self.slot.state;
        if s.compare_exchange(PENDING, FREE, AcqRel, Acquire).is_ok()
            || s.compare_exchange(DONE, FREE, AcqRel, Acquire).is_ok()
        {
            return;
        }
        let _ = s.compare_exchange(RUNNING, ABANDONED, AcqRel, Acquire);
    }
}

/// Requests and replies up to this size travel in one segment the backend keeps (a per-row
/// call's request and reply take a few dozen KB); larger ones in a segment of their own.
const KEPT_SEGMENT: usize = 1 << 20;

thread_local! {
    /// This backend's kept segment, created at its first request (no destructor: the server
    /// detaches it when the backend exits).
    static KEPT: std::cell::Cell<Option<Kept>> = const { std::cell::Cell::new(None) };
}

/// Where a request is written: the kept segment, or one of its own.
enum Buffer {
    Kept(Kept),
    Own(Segment),
}

impl Buffer {
    fn for_bytes(capacity: usize) -> Result<Buffer> {
        let none_left = || {
            CoreError::TooLarge(
                "no dynamic shared memory segment is left for an inference request (raise \
                 max_connections or lower concurrency)"
                    .into(),
            )
        };
        if capacity <= KEPT_SEGMENT {
            if let Some(k) = KEPT.get() {
                return Ok(Buffer::Kept(k));
            }
            let k = Segment::create(KEPT_SEGMENT).ok_or_else(none_left)?.keep();
            KEPT.set(Some(k));
            return Ok(Buffer::Kept(k));
        }
        Segment::create(capacity)
            .map(Buffer::Own)
            .ok_or_else(none_left)
    }
}

impl std::ops::Deref for Buffer {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        match self {
            Buffer::Kept(k) => k,
            Buffer::Own(s) => s,
        }
    }
}

/// Sends `request` for `graph` to the worker and waits for its reply.
pub fn call(graph: GraphKey, request: Request, reply_hint: usize) -> Result<Reply> {
    let Some(shared) = shmem::shared() else {
        not_running()
    };
    let Some(slot) = shmem::my_procno().and_then(|p| shared.slot(p)) else {
        not_running()
    };
    let envelope = Envelope { graph, request };
    let mut capacity = serve::encoded_len(&envelope).max(reply_hint);
    loop {
        // A worker that is starting (or restarting after a crash) is waited for.
        let started = Instant::now();
        while !shared.worker_running() {
            if started.elapsed() > START_WAIT {
                not_running();
            }
            sleep(100);
        }
        // A request abandoned by an earlier cancel is still running: wait for the worker
        // to free the slot (or for it to go, which frees it too).
        let generation = shared.generation.load(Acquire);
        while slot.state.load(Acquire) != FREE {
            if slot.generation.load(Acquire) != generation || !shared.worker_running() {
                slot.state.store(FREE, Release);
                break;
            }
            sleep(100);
        }
        let segment = Buffer::for_bytes(capacity)?;
        serve::encode(&envelope, segment.bytes()).map_err(|needed| {
            CoreError::Runtime(format!("an inference request needs {needed} bytes"))
        })?;
        slot.handle.store(segment.handle(), Relaxed);
        slot.generation.store(generation, Relaxed);
        // SAFETY: MyProcPid is this process's pid.
        slot.pid.store(unsafe { pg_sys::MyProcPid }, Relaxed);
        slot.state.store(PENDING, Release);
        let claim = Claim { slot };
        shmem::wake(shared.worker_procno.load(Acquire) as usize);
        loop {
            if slot.state.load(Acquire) == DONE {
                break;
            }
            if shared.generation.load(Acquire) != generation || !shared.worker_running() {
                drop(claim);
                slot.state.store(FREE, Release);
                drop(segment);
                exited();
            }
            sleep(100);
        }
        let reply = serve::decode::<Reply>(segment.bytes());
        drop(claim);
        drop(segment);
        match reply? {
            Reply::TooSmall { needed } if (needed as usize) > capacity => {
                capacity = needed as usize;
            }
            Reply::TooSmall { needed } => {
                return Err(CoreError::Runtime(format!(
                    "the inference worker asked for {needed} bytes of a {capacity}-byte segment"
                )))
            }
            other => return Ok(other),
        }
    }
}

/// A graph served by the worker, as a [`Backend`] of a `TextModel` in this backend (which
/// tokenises, plans batches, pools and applies heads itself).
pub struct WorkerGraph {
    key: GraphKey,
    io: GraphIo,
    /// Writes the graph's cache file again (from the database, with the caller's privileges)
    /// when the worker reports it missing or corrupt.
    store: Box<dyn Fn() -> Result<()> + Send + Sync>,
    /// The last output width seen, to size reply segments.
    width: AtomicUsize,
}

impl WorkerGraph {
    /// Asks the worker to load `key` and describe it. `store` writes the graph's file when the
    /// worker has no valid one (then the worker is asked again, once); it is kept for later
    /// requests that find the file gone (a worker restarted after the file was removed).
    pub fn open(
        key: GraphKey,
        store: impl Fn() -> Result<()> + Send + Sync + 'static,
    ) -> Result<WorkerGraph> {
        let mut stored = false;
        loop {
            match call(key, Request::Describe, 4096)? {
                Reply::Io(io) => {
                    let width = io.declared_width.unwrap_or(1024);
                    return Ok(WorkerGraph {
                        key,
                        io,
                        store: Box::new(store),
                        width: AtomicUsize::new(width),
                    });
                }
                Reply::NotCached if !stored => {
                    store()?;
                    stored = true;
                }
                Reply::NotCached => {
                    return Err(CoreError::Runtime(
                        "the inference worker did not find the graph file just written".into(),
                    ))
                }
                Reply::Failed(f) => return Err(f.into_error()),
                other => {
                    return Err(CoreError::Runtime(format!(
                        "unexpected reply from the inference worker: {other:?}"
                    )))
                }
            }
        }
    }
}

impl Backend for WorkerGraph {
    fn io(&self) -> &GraphIo {
        &self.io
    }

    fn run(&self, batch: &PaddedBatch) -> Result<BatchOutput> {
        self.send(Request::Run(batch.clone()), batch)
    }

    fn probe(&self, batch: &PaddedBatch) -> Result<BatchOutput> {
        self.send(Request::Probe(batch.clone()), batch)
    }
}

impl WorkerGraph {
    fn send(&self, request: Request, batch: &PaddedBatch) -> Result<BatchOutput> {
        let positions = match self.io.output {
            persona_core::text::OutputKind::Hidden => batch.seq,
            persona_core::text::OutputKind::Logits => 1,
        };
        let hint = 4096 + batch.rows * positions * self.width.load(Relaxed) * 4;
        let mut reply = call(self.key, request.clone(), hint)?;
        if reply == Reply::NotCached {
            // The worker restarted (or evicted the graph) and its file is gone or was corrupt.
            (self.store)()?;
            reply = call(self.key, request, hint)?;
        }
        match reply {
            Reply::Ran(out) => {
                self.width.store(out.width, Relaxed);
                Ok(out)
            }
            Reply::Failed(f) => Err(f.into_error()),
            Reply::NotCached => Err(CoreError::Runtime(
                "the inference worker did not find the graph file just written".into(),
            )),
            other => Err(CoreError::Runtime(format!(
                "unexpected reply from the inference worker: {other:?}"
            ))),
        }
    }
}
