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
use crate::model_acl::{self, Store};
use crate::spi::{first, select_one, write, write_one, Columns};
use crate::txn_cache::Resolutions;

/// Which stored row a cached model was decoded from: its version, and the transaction that
/// wrote the row. A version number alone is not enough: a training rolled back after this
/// backend used its model frees the number, and the next training stores other bytes under it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    version: i32,
    xmin: i64,
}

#[derive(Default)]
struct Cache {
    /// Model name → active version as read in this transaction, and the model used last.
    resolved: Resolutions<Stamp, Rc<CfModel>>,
    /// Model name → (version, decoded model).
    models: HashMap<String, (Stamp, Rc<CfModel>)>,
}

thread_local! {
    static CACHE: RefCell<Cache> = RefCell::new(Cache::default());
}

/// Runs `f` on the active model called `name` without touching its reference count: the path of
/// per-row functions. Falls back to [`active`] when the name was not the last one used in this
/// transaction.
#[inline]
pub fn with_active<R>(name: &str, f: impl FnOnce(&CfModel) -> R) -> R {
    let hit = CACHE.with(|c| c.borrow().resolved.last(name).map(Rc::as_ptr));
    match hit {
        // SAFETY: the pointee is owned by the cache's last entry (an Rc), which only changes when
        // this backend resolves or invalidates a model, and `f` is pure Rust that does neither.
        Some(ptr) => f(unsafe { &*ptr }),
        None => f(&active(name)),
    }
}

/// The active model called `name`, from the cache when its version is still the active one.
pub fn active(name: &str) -> Rc<CfModel> {
    if let Some(m) = CACHE.with(|c| c.borrow().resolved.last(name).cloned()) {
        return m;
    }
    let cached = |c: &Cache, version: Stamp| {
        c.models
            .get(name)
            .filter(|(v, _)| *v == version)
            .map(|(_, m)| m.clone())
    };
    let known = CACHE.with(|c| {
        let mut c = c.borrow_mut();
        let v = c.resolved.version(name)?;
        cached(&c, v).map(|m| (v, m))
    });
    let (version, model) = match known {
        Some(hit) => hit,
        None => crate::citus::model_reads(|| {
            let version = active_version(name);
            let model = match CACHE.with(|c| cached(&c.borrow(), version)) {
                Some(m) => m,
                None => Rc::new(load(name, version.version)),
            };
            (version, model)
        }),
    };
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        c.models.insert(name.to_string(), (version, model.clone()));
        c.resolved.resolved(name, version);
        c.resolved.set_last(name, model.clone());
    });
    model
}

/// Forgets what this transaction resolved for `name` (after training or deploying it).
pub fn invalidate(name: &str) {
    CACHE.with(|c| c.borrow_mut().resolved.forget(name));
}

fn active_version(name: &str) -> Stamp {
    let v = Spi::connect(|client| {
        let r = first(
            client,
            "SELECT a.version, v.xmin::text::int8 FROM persona.cf_active a \
             JOIN persona.cf_model_versions v ON v.model = a.model AND v.version = a.version \
             WHERE a.model = $1",
            &[name.into()],
            "persona.cf_active",
        )?;
        Some(Stamp {
            version: r.column::<i32>(1, "version")?,
            xmin: r.column::<i64>(2, "xmin")?,
        })
    });
    v.unwrap_or_else(|| {
        // No foreign key keeps the active version (so that Citus can replicate the tables).
        let dangling = select_one::<i32>(
            "SELECT version FROM persona.cf_active WHERE model = $1",
            &[name.into()],
            "persona.cf_active",
        );
        if let Some(version) = dangling {
            raise_hint(
                ERRCODE_UNDEFINED_OBJECT,
                format!(
                    "the active version {version} of model \"{name}\" is missing from \
                     persona.cf_model_versions"
                ),
                format!(
                    "Deploy a stored version with SELECT cf_deploy('{name}', version) (list them \
                     with SELECT version FROM persona.cf_model_versions WHERE model = '{name}')."
                ),
            );
        }
        // Row-level security hides the models this role may not use: say so when it is that.
        model_acl::check_usable(Store::Cf, name);
        crate::citus::raise_if_missing_on_worker("model", name);
        let known = select_one::<String>(
            "SELECT pg_catalog.string_agg(model, ', ' ORDER BY model) FROM persona.cf_active",
            &[],
            "persona.cf_active",
        );
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
    let bytes = select_one::<Vec<u8>>(
        "SELECT data FROM persona.cf_model_versions WHERE model = $1 AND version = $2",
        &[name.into(), version.into()],
        "persona.cf_model_versions",
    )
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("version {version} of model \"{name}\" does not exist"),
            "List versions with SELECT model, version FROM persona.cf_model_versions.",
        )
    });
    CfModel::from_bytes(&bytes).unwrap_or_else(|e| core(e, None))
}

/// Raises unless the current role may train model `name`: it may create models, and the name is
/// new or already its own. Called before training, and again by [`save`] under the name's lock.
pub fn check_may_train(name: &str) {
    model_acl::check_create(Store::Cf);
    model_acl::check_owner(Store::Cf, name, "train a new version of");
}

/// Stores a new version of `name` and makes it active, in the caller's transaction: if anything
/// later fails, the previous active version stays. Returns the new version number. The caller
/// becomes the owner of a new name and is recorded as the version's `created_by`.
pub fn save(name: &str, model: &CfModel, summary: &serde_json::Value) -> i32 {
    // Serialise concurrent trainings of the same model name, then check again: another role may
    // have created the name since cf_train checked.
    write(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('persona.cf:' || $1))",
        &[name.into()],
        "the lock of a cf model",
    );
    check_may_train(name);
    let me = model_acl::current_role();
    let bytes = model.to_bytes();
    let params: serde_json::Value =
        serde_json::from_str(&model.params).unwrap_or(serde_json::Value::Null);
    // Both rows in one switch to the store's owner: the version, then the name pointing at it.
    let version = model_acl::as_store_owner(|| {
        // The number first, then a plain INSERT ... VALUES: what Citus can replicate.
        let version = next_version("persona.cf_model_versions", name);
        let version = write_one::<i32>(
            "INSERT INTO persona.cf_model_versions (model, version, algorithm, params, summary, \
             n_users, n_items, n_ratings, data, created_by) \
             VALUES ($1, $10, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING version",
            &[
                name.into(),
                model.algorithm.name().into(),
                pgrx::JsonB(params).into(),
                pgrx::JsonB(summary.clone()).into(),
                (model.users.len() as i32).into(),
                (model.items.len() as i32).into(),
                summary
                    .get("ratings_used")
                    .and_then(serde_json::Value::as_i64)
                    .unwrap_or(model.seen.nnz() as i64)
                    .into(),
                bytes.into(),
                me.name.as_str().into(),
                version.into(),
            ],
            "persona.cf_model_versions",
        )
        .unwrap_or_else(|| {
            raise_hint(
                ERRCODE_INTERNAL_ERROR,
                "storing the model returned no version",
                "Retry.",
            )
        });
        write(
            "INSERT INTO persona.cf_active (model, version, owner) \
             VALUES ($1, $2, $3::pg_catalog.regrole) \
             ON CONFLICT (model) DO UPDATE SET version = EXCLUDED.version",
            &[name.into(), version.into(), me.regrole_input().into()],
            "persona.cf_active",
        );
        version
    });
    invalidate(name);
    version
}

/// The next version number of model `name` in `table` (a `*_model_versions` table, read as its
/// owner, under the name's lock).
pub fn next_version(table: &str, name: &str) -> i32 {
    select_one::<i32>(
        &format!("SELECT COALESCE(MAX(version), 0) + 1 FROM {table} WHERE model = $1"),
        &[name.into()],
        table,
    )
    .unwrap_or(1)
}

/// Points existing model `name` at `version`, one of its versions (the caller checked both and
/// that the current role owns the model).
pub fn activate(name: &str, version: i32) {
    model_acl::as_store_owner(|| {
        write(
            "UPDATE persona.cf_active SET version = $2 WHERE model = $1",
            &[name.into(), version.into()],
            "persona.cf_active",
        )
    });
    invalidate(name);
}
