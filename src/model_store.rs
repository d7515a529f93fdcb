//! Versioned model storage in `persona.cf_model_versions` / `persona.cf_active`, and the
//! per-backend cache that makes a prediction a hash lookup instead of a table read.
//!
//! A model name resolves to its active version once per transaction (so another session's
//! `cf_train` or `cf_deploy` is seen at the next transaction, without reconnecting); the decoded
//! model is kept in backend memory for as long as that version stays active.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use persona_core::cf::CfModel;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::error::{core, raise_hint};

struct Cache {
    /// The local transaction id the `resolved` map belongs to.
    lxid: u32,
    /// Model name → active version, as read in this transaction.
    resolved: HashMap<String, i32>,
    /// Model name → (version, decoded model).
    models: HashMap<String, (i32, Rc<CfModel>)>,
    /// The model used last in transaction `lxid`: `cf_predict` over many rows asks for the same
    /// name again and again, and this answers without hashing the name.
    last: Option<(String, Rc<CfModel>)>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache { lxid: 0, resolved: HashMap::new(), models: HashMap::new(), last: None });
}

fn current_lxid() -> u32 {
    // SAFETY: MyProc is set for every backend and parallel worker before any function runs.
    unsafe { (*pg_sys::MyProc).lxid }
}

/// Runs `f` on the active model called `name` without touching its reference count: the path of
/// per-row functions. Falls back to [`active`] when the name was not the last one used in this
/// transaction.
#[inline]
pub fn with_active<R>(name: &str, f: impl FnOnce(&CfModel) -> R) -> R {
    let lxid = current_lxid();
    let hit = CACHE.with(|c| {
        let c = c.borrow();
        match &c.last {
            Some((n, m)) if c.lxid == lxid && n == name => Some(f_ptr(m)),
            _ => None,
        }
    });
    match hit {
        // SAFETY: the pointee is owned by `CACHE.last` (an Rc), which only changes when this
        // backend resolves or invalidates a model, and `f` is pure Rust that does neither.
        Some(ptr) => f(unsafe { &*ptr }),
        None => f(&active(name)),
    }
}

fn f_ptr(m: &Rc<CfModel>) -> *const CfModel {
    Rc::as_ptr(m)
}

/// The active model called `name`, from the cache when its version is still the active one.
pub fn active(name: &str) -> Rc<CfModel> {
    let lxid = current_lxid();
    let fast = CACHE.with(|c| {
        let c = c.borrow();
        match &c.last {
            Some((n, m)) if c.lxid == lxid && n == name => Some(m.clone()),
            _ => None,
        }
    });
    if let Some(m) = fast {
        return m;
    }
    let hit = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.lxid != lxid {
            c.lxid = lxid;
            c.resolved.clear();
            c.last = None;
        }
        let v = *c.resolved.get(name)?;
        c.models
            .get(name)
            .filter(|(mv, _)| *mv == v)
            .map(|(_, m)| m.clone())
    });
    if let Some(m) = hit {
        CACHE.with(|c| c.borrow_mut().last = Some((name.to_string(), m.clone())));
        return m;
    }
    let version = active_version(name);
    let cached = CACHE.with(|c| {
        c.borrow()
            .models
            .get(name)
            .filter(|(v, _)| *v == version)
            .map(|(_, m)| m.clone())
    });
    let model = match cached {
        Some(m) => m,
        None => {
            let m = Rc::new(load(name, version));
            CACHE.with(|c| {
                c.borrow_mut()
                    .models
                    .insert(name.to_string(), (version, m.clone()))
            });
            m
        }
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.resolved.insert(name.to_string(), version);
        c.last = Some((name.to_string(), model.clone()));
    });
    model
}

/// Forgets what this transaction resolved for `name` (after training or deploying it).
pub fn invalidate(name: &str) {
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.resolved.remove(name);
        c.last = None;
    });
}

fn active_version(name: &str) -> i32 {
    let v = crate::source::select_one::<i32>(
        "SELECT version FROM persona.cf_active WHERE model = $1",
        &[name.into()],
    )
    .ok()
    .flatten();
    v.unwrap_or_else(|| {
        let known = crate::source::select_one::<String>(
            "SELECT pg_catalog.string_agg(model, ', ' ORDER BY model) FROM persona.cf_active",
            &[],
        )
        .ok()
        .flatten();
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("model \"{name}\" does not exist"),
            match known {
                Some(k) => format!(
                    "Trained models: {k}. Train this one with cf_train(..., model => '{name}')."
                ),
                None => "No model has been trained yet: run SELECT cf_train(); first.".to_string(),
            },
        )
    })
}

fn load(name: &str, version: i32) -> CfModel {
    let bytes = crate::source::select_one::<Vec<u8>>(
        "SELECT data FROM persona.cf_model_versions WHERE model = $1 AND version = $2",
        &[name.into(), version.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("version {version} of model \"{name}\" does not exist"),
            "List versions with SELECT model, version FROM persona.cf_model_versions.",
        )
    });
    CfModel::from_bytes(&bytes).unwrap_or_else(|e| core(e, None))
}

/// Stores a new version of `name` and makes it active, in the caller's transaction: if anything
/// later fails, the previous active version stays. Returns the new version number.
pub fn save(name: &str, model: &CfModel, summary: &serde_json::Value) -> i32 {
    // Serialise concurrent trainings of the same model name.
    Spi::run_with_args(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('persona.cf:' || $1))",
        &[name.into()],
    )
    .unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_INTERNAL_ERROR,
            format!("cannot lock model \"{name}\": {e}"),
            "Retry.",
        )
    });
    let bytes = model.to_bytes();
    let params: serde_json::Value =
        serde_json::from_str(&model.params).unwrap_or(serde_json::Value::Null);
    let version = Spi::get_one_with_args::<i32>(
        "INSERT INTO persona.cf_model_versions (model, version, algorithm, params, summary, n_users, n_items, n_ratings, data) \
         SELECT $1, COALESCE(MAX(version), 0) + 1, $2, $3, $4, $5, $6, $7, $8 FROM persona.cf_model_versions WHERE model = $1 \
         RETURNING version",
        &[
            name.into(),
            model.algorithm.name().into(),
            pgrx::JsonB(params).into(),
            pgrx::JsonB(summary.clone()).into(),
            (model.users.len() as i32).into(),
            (model.items.len() as i32).into(),
            summary.get("ratings_used").and_then(serde_json::Value::as_i64).unwrap_or(model.seen.nnz() as i64).into(),
            bytes.into(),
        ],
    )
    .unwrap_or_else(|e| storage_error(name, e))
    .unwrap_or_else(|| raise_hint(ERRCODE_INTERNAL_ERROR, "storing the model returned no version", "Retry."));
    activate(name, version);
    version
}

/// Points `name` at `version`.
pub fn activate(name: &str, version: i32) {
    Spi::run_with_args(
        "INSERT INTO persona.cf_active (model, version) VALUES ($1, $2) \
         ON CONFLICT (model) DO UPDATE SET version = EXCLUDED.version",
        &[name.into(), version.into()],
    )
    .unwrap_or_else(|e| storage_error(name, e));
    invalidate(name);
}

fn storage_error(name: &str, e: pgrx::spi::SpiError) -> ! {
    raise_hint(
        ERRCODE_INTERNAL_ERROR,
        format!("cannot store model \"{name}\": {e}"),
        "The role needs INSERT and UPDATE on persona.cf_model_versions and persona.cf_active.",
    )
}
