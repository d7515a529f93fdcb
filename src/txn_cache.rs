//! What a per-backend model cache has resolved in the current transaction.
//!
//! Both model caches (cf models in [`crate::model_store`], text models in
//! [`crate::text_store`]) keep decoded models for as long as their version stays current, but
//! look the version up again in each new transaction, so that another session's training,
//! deployment or registration is seen at the next transaction without reconnecting. This is the
//! part they share: name → version resolutions that are forgotten when the local transaction id
//! changes, and the entry used last (a per-row function asks for the same name again and again,
//! and this answers without hashing it).
//!
//! A resolution is also the role's: models are read with the caller's privileges (row-level
//! security hides the ones it may not use, `crate::model_acl`), so when the current role changes
//! (`SET ROLE`, a `SECURITY DEFINER` function) everything is resolved again, as that role. And
//! after a subtransaction aborts (`ROLLBACK TO SAVEPOINT`, an exception block), whose rollback
//! may have removed the version resolved before it.

use std::cell::Cell;
use std::collections::HashMap;

use pgrx::prelude::*;

/// The local transaction id of this backend's current transaction.
pub fn current_lxid() -> u32 {
    // SAFETY: MyProc is set for every backend and parallel worker before any function runs.
    unsafe { (*pg_sys::MyProc).lxid }
}

thread_local! {
    /// How many subtransactions have aborted in this backend: a resolution made before a
    /// `ROLLBACK TO SAVEPOINT` (or a PL/pgSQL exception block) may name a version that the
    /// rollback removed, so resolutions do not outlive one.
    static ABORTED_SUBXACTS: Cell<u64> = const { Cell::new(0) };
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        ABORTED_SUBXACTS.with(|n| n.set(n.get() + 1));
    }
}

/// Registers the subtransaction callback the caches rely on; called once, from `_PG_init`.
pub fn init() {
    // SAFETY: backend thread during library load; the callback only bumps a counter.
    unsafe { pg_sys::RegisterSubXactCallback(Some(on_subxact), std::ptr::null_mut()) };
}

fn aborted_subxacts() -> u64 {
    ABORTED_SUBXACTS.with(Cell::get)
}

/// What a resolution is valid for: this transaction, this role, no subtransaction aborted since.
pub type Scope = (u32, pg_sys::Oid, u64);

/// The transaction, role and subtransaction-abort count now.
pub fn current_scope() -> Scope {
    (current_lxid(), current_user(), aborted_subxacts())
}

/// The role whose privileges apply now.
#[inline]
pub fn current_user() -> pg_sys::Oid {
    // SAFETY: reads a backend global, set in every transaction.
    unsafe { pg_sys::GetUserId() }
}

/// Name → version resolutions of one transaction and role, and the entry used last in it.
pub struct Resolutions<V, M> {
    scope: Scope,
    versions: HashMap<String, V>,
    last: Option<(String, M)>,
}

impl<V: Copy, M> Default for Resolutions<V, M> {
    fn default() -> Self {
        Resolutions {
            scope: (0, pg_sys::InvalidOid, 0),
            versions: HashMap::new(),
            last: None,
        }
    }
}

impl<V: Copy, M> Resolutions<V, M> {
    /// Forgets everything if a new transaction began, or the role changed, since the last call;
    /// returns whether it did.
    pub fn sync(&mut self) -> bool {
        let now = current_scope();
        if now == self.scope {
            return false;
        }
        self.scope = now;
        self.forget_all();
        true
    }

    /// The entry last used in this transaction, if it was used under `name`.
    #[inline]
    pub fn last(&self, name: &str) -> Option<&M> {
        match &self.last {
            Some((n, m)) if n == name && self.scope == current_scope() => Some(m),
            _ => None,
        }
    }

    /// Remembers `m` as the entry last used, under `name`.
    pub fn set_last(&mut self, name: &str, m: M) {
        self.sync();
        self.last = Some((name.to_string(), m));
    }

    /// The version `name` resolved to in this transaction.
    pub fn version(&mut self, name: &str) -> Option<V> {
        self.sync();
        self.versions.get(name).copied()
    }

    /// Remembers that `name` resolved to `version` in this transaction.
    pub fn resolved(&mut self, name: &str, version: V) {
        self.sync();
        self.versions.insert(name.to_string(), version);
    }

    /// Forgets what `name` resolved to (after this session changed it).
    pub fn forget(&mut self, name: &str) {
        self.versions.remove(name);
        self.last = None;
    }

    /// Forgets every resolution.
    pub fn forget_all(&mut self) {
        self.versions.clear();
        self.last = None;
    }
}
