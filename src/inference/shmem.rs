//! The inference worker's shared memory: who the worker is, one request slot per process
//! (indexed by `pgprocno`, so a backend never competes for a slot), and the graphs each process
//! holds (published for `persona.text_cache`).
//!
//! A slot moves `FREE → PENDING` (its backend: request written to its segment), `PENDING →
//! RUNNING` (the worker took it), `RUNNING → DONE` (the worker wrote the reply), `DONE → FREE`
//! (the backend read it). A backend that stops waiting (cancel, error) moves `PENDING → FREE`
//! or `RUNNING → ABANDONED`; the worker frees an abandoned slot when it finishes with it. Every
//! move is a compare-and-swap, so the two sides never both act on a slot.

use std::sync::atomic::{AtomicI32, AtomicI64, AtomicU32, AtomicU64, Ordering::*};

use persona_core::text::serve::{GraphHash, GraphKey};
use persona_core::text::Task;
use pgrx::pg_sys;

pub const FREE: u32 = 0;
pub const PENDING: u32 = 1;
pub const RUNNING: u32 = 2;
pub const DONE: u32 = 3;
pub const ABANDONED: u32 = 4;

/// Graphs one process publishes, at most.
pub const HELD: usize = 8;

/// One published graph.
#[repr(C)]
pub struct Entry {
    hash: [AtomicU64; 4],
    task: AtomicU32,
    bytes: AtomicU64,
    /// Microseconds since the Unix epoch.
    last_used: AtomicI64,
}

/// A process's published graphs, written by that process only, read by anyone (a sequence
/// counter, odd while writing, makes readers retry a torn read).
#[repr(C)]
pub struct Held {
    seq: AtomicU64,
    n: AtomicU32,
    entries: [Entry; HELD],
}

/// A graph as published: identity, memory it took, last use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeldGraph {
    pub key: GraphKey,
    pub bytes: u64,
    pub last_used_us: i64,
}

fn task_code(t: Task) -> u32 {
    match t {
        Task::Embedding => 0,
        Task::Classification => 1,
    }
}

impl Held {
    /// Replaces the list (by its owner only).
    pub fn publish(&self, graphs: &[HeldGraph]) {
        self.seq.fetch_add(1, AcqRel);
        let n = graphs.len().min(HELD);
        for (e, g) in self.entries.iter().zip(graphs) {
            for (i, w) in e.hash.iter().enumerate() {
                let chunk: [u8; 8] = g.key.hash[i * 8..i * 8 + 8].try_into().expect("8 bytes");
                w.store(u64::from_le_bytes(chunk), Relaxed);
            }
            e.task.store(task_code(g.key.task), Relaxed);
            e.bytes.store(g.bytes, Relaxed);
            e.last_used.store(g.last_used_us, Relaxed);
        }
        self.n.store(n as u32, Relaxed);
        self.seq.fetch_add(1, AcqRel);
    }

    /// A consistent copy of the list (empty if the owner keeps writing).
    pub fn read(&self) -> Vec<HeldGraph> {
        for _ in 0..100 {
            let before = self.seq.load(Acquire);
            if before % 2 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let n = (self.n.load(Relaxed) as usize).min(HELD);
            let out: Vec<HeldGraph> = self.entries[..n]
                .iter()
                .map(|e| {
                    let mut hash: GraphHash = [0; 32];
                    for (i, w) in e.hash.iter().enumerate() {
                        hash[i * 8..i * 8 + 8].copy_from_slice(&w.load(Relaxed).to_le_bytes());
                    }
                    let task = if e.task.load(Relaxed) == 1 {
                        Task::Classification
                    } else {
                        Task::Embedding
                    };
                    HeldGraph {
                        key: GraphKey { hash, task },
                        bytes: e.bytes.load(Relaxed),
                        last_used_us: e.last_used.load(Relaxed),
                    }
                })
                .collect();
            if self.seq.load(Acquire) == before {
                return out;
            }
        }
        Vec::new()
    }
}

/// One process's request slot.
#[repr(C)]
pub struct Slot {
    pub state: AtomicU32,
    /// The backend's pid while it has a request in the slot.
    pub pid: AtomicI32,
    /// The worker generation the request was sent to.
    pub generation: AtomicU64,
    /// The request's dynamic shared memory segment.
    pub handle: AtomicU32,
    /// What this process holds in `persona.inference = backend` mode.
    pub held: Held,
}

/// The header; `nslots` slots follow it.
#[repr(C)]
pub struct Shared {
    /// The worker's pid, 0 while none runs.
    pub worker_pid: AtomicI32,
    pub worker_procno: AtomicI32,
    /// Incremented by each worker start.
    pub generation: AtomicU64,
    /// Requests answered and inference runs made (several requests merge into one run).
    pub requests: AtomicU64,
    pub runs: AtomicU64,
    /// Batches run (callers' batches, before merging), texts in them, microseconds in runs.
    pub batches: AtomicU64,
    pub texts: AtomicU64,
    pub busy_us: AtomicU64,
    /// The worker's sessions.
    pub held: Held,
    pub nslots: AtomicU32,
}

static mut SHARED: *mut Shared = std::ptr::null_mut();
static mut PREV_REQUEST_HOOK: pg_sys::shmem_request_hook_type = None;
static mut PREV_STARTUP_HOOK: pg_sys::shmem_startup_hook_type = None;

const NAME: &std::ffi::CStr = c"pg_persona inference";

fn size(nslots: usize) -> usize {
    std::mem::size_of::<Shared>() + nslots * std::mem::size_of::<Slot>()
}

fn slot_count() -> usize {
    // SAFETY: MaxBackends is set before shmem_request_hook runs and never changes after.
    unsafe { pg_sys::MaxBackends.max(1) as usize }
}

/// Asks for the shared memory (from `_PG_init` in `shared_preload_libraries` only).
pub fn request() {
    // SAFETY: called once from _PG_init in the postmaster, before shared memory exists; the
    // previous hooks are chained.
    unsafe {
        PREV_REQUEST_HOOK = pg_sys::shmem_request_hook;
        pg_sys::shmem_request_hook = Some(on_request);
        PREV_STARTUP_HOOK = pg_sys::shmem_startup_hook;
        pg_sys::shmem_startup_hook = Some(on_startup);
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_request() {
    // SAFETY: PostgreSQL calls this hook once, in the postmaster, where requesting is allowed.
    unsafe {
        if let Some(prev) = PREV_REQUEST_HOOK {
            prev();
        }
        pg_sys::RequestAddinShmemSpace(size(slot_count()));
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn on_startup() {
    // SAFETY: the standard ShmemInitStruct protocol under AddinShmemInitLock; a new segment is
    // zeroed (all-zero is a valid state: no worker, every slot FREE).
    unsafe {
        if let Some(prev) = PREV_STARTUP_HOOK {
            prev();
        }
        let lock = &raw mut (*pg_sys::MainLWLockArray.add(21)).lock; // AddinShmemInitLock
        pg_sys::LWLockAcquire(lock, pg_sys::LWLockMode::LW_EXCLUSIVE);
        let n = slot_count();
        let mut found = false;
        let ptr = pg_sys::ShmemInitStruct(NAME.as_ptr(), size(n), &mut found) as *mut Shared;
        if !found {
            std::ptr::write_bytes(ptr as *mut u8, 0, size(n));
            (*ptr).nslots.store(n as u32, Relaxed);
        }
        SHARED = ptr;
        pg_sys::LWLockRelease(lock);
    }
}

/// The shared memory, when pg_persona is in `shared_preload_libraries`.
pub fn shared() -> Option<&'static Shared> {
    // SAFETY: SHARED is set once in the postmaster before any backend forks (inherited), and
    // the segment lives as long as the server.
    unsafe { (&raw const SHARED).read().as_ref() }
}

impl Shared {
    /// The slot of process `procno`.
    pub fn slot(&self, procno: usize) -> Option<&Slot> {
        if procno >= self.nslots.load(Relaxed) as usize {
            return None;
        }
        // SAFETY: nslots slots follow the header in the segment (see `size`).
        unsafe {
            let first = (self as *const Shared).add(1) as *const Slot;
            Some(&*first.add(procno))
        }
    }

    pub fn slots(&self) -> impl Iterator<Item = (usize, &Slot)> {
        (0..self.nslots.load(Relaxed) as usize).filter_map(|i| self.slot(i).map(|s| (i, s)))
    }

    /// Whether a worker runs now.
    pub fn worker_running(&self) -> bool {
        self.worker_pid.load(Acquire) != 0
    }
}

/// Registers (once per process) an exit callback that empties this process's published graphs,
/// so the next process with its slot does not inherit them.
pub fn clear_on_exit() {
    use std::sync::atomic::AtomicBool;
    static REGISTERED: AtomicBool = AtomicBool::new(false);
    if REGISTERED.swap(true, Relaxed) {
        return;
    }
    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn clear(_code: i32, _arg: pg_sys::Datum) {
        if let Some(slot) = shared().and_then(|s| my_procno().and_then(|p| s.slot(p))) {
            slot.held.publish(&[]);
        }
    }
    // SAFETY: registers a plain callback run before this process detaches from shared memory.
    unsafe { pg_sys::before_shmem_exit(Some(clear), pg_sys::Datum::from(0)) };
}

/// This process's `pgprocno`.
pub fn my_procno() -> Option<usize> {
    // SAFETY: MyProc is this process's PGPROC (null before it has one).
    unsafe { pg_sys::MyProc.as_ref().map(|p| p.pgprocno as usize) }
}

/// Wakes process `procno`.
pub fn wake(procno: usize) {
    // SAFETY: ProcGlobal->allProcs has an entry for every procno below the slot count (which
    // is MaxBackends); SetLatch on another process's latch is what latches are for.
    unsafe {
        let proc = (*pg_sys::ProcGlobal).allProcs.add(procno);
        pg_sys::SetLatch(&raw mut (*proc).procLatch);
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// A mapped dynamic shared memory segment, detached on drop unless released to the
/// transaction's resource owner, or kept for the life of the process ([`Segment::keep`]).
pub struct Segment(Mapping);

impl Segment {
    /// Creates a segment of `len` bytes (None if the server's limit on segments is reached).
    pub fn create(len: usize) -> Option<Segment> {
        // SAFETY: dsm_create with DSM_CREATE_NULL_IF_MAXSEGMENTS returns null instead of raising
        // when no segment is left; the mapping is `len` bytes.
        let seg = unsafe { pg_sys::dsm_create(len, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32) };
        (!seg.is_null()).then_some(Segment(Mapping { seg, len }))
    }

    /// Attaches the segment `handle` (None if it no longer exists).
    pub fn attach(handle: u32) -> Option<Segment> {
        // SAFETY: dsm_attach returns null for a segment that was destroyed.
        unsafe {
            let seg = pg_sys::dsm_attach(handle);
            if seg.is_null() {
                return None;
            }
            let len = pg_sys::dsm_segment_map_length(seg);
            Some(Segment(Mapping { seg, len }))
        }
    }

    /// Keeps the segment mapped for the rest of the process (past the transaction that created
    /// it); it is detached when the process exits, or by [`Kept::detach`].
    pub fn keep(self) -> Kept {
        // SAFETY: seg is attached; pinning moves it off the transaction's resource owner.
        unsafe { pg_sys::dsm_pin_mapping(self.0.seg) };
        let kept = self.0;
        std::mem::forget(self);
        kept
    }
}

impl std::ops::Deref for Segment {
    type Target = Mapping;
    fn deref(&self) -> &Mapping {
        &self.0
    }
}

/// A segment mapped until the process exits ([`Segment::keep`]). It has no destructor: the
/// server detaches every segment when the process exits.
pub type Kept = Mapping;

/// A mapping of a segment: what [`Segment`] and [`Kept`] read and write.
#[derive(Clone, Copy)]
pub struct Mapping {
    seg: *mut pg_sys::dsm_segment,
    len: usize,
}

impl Mapping {
    /// Unmaps it (the segment goes when its last process lets go).
    pub fn detach(self) {
        // SAFETY: seg is attached (a mapping is detached once: here, by Segment's drop, or at
        // exit).
        unsafe { pg_sys::dsm_detach(self.seg) };
    }

    pub fn handle(&self) -> u32 {
        // SAFETY: seg is a live mapping.
        unsafe { pg_sys::dsm_segment_handle(self.seg) }
    }

    /// The mapped bytes. The two processes never touch a segment at the same time: the slot's
    /// state says whose turn it is.
    #[allow(clippy::mut_from_ref)]
    pub fn bytes(&self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes and stays mapped while it is attached.
        unsafe {
            std::slice::from_raw_parts_mut(
                pg_sys::dsm_segment_address(self.seg) as *mut u8,
                self.len,
            )
        }
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding from an ERROR: the transaction's abort detaches it (a segment created in
            // a backend belongs to its resource owner); raising here would abort the process.
            return;
        }
        self.0.detach();
    }
}
