//! Fold-in from SQL: recommendations and predictions for users a model did not train on, and
//! optionally for known users with the ratings they have now, without retraining
//! (`persona_core::cf::foldin` solves the user's side).
//!
//! The ratings come either from the caller (`cf_recommend_for`, `cf_predict_for`: a jsonb of
//! item → rating) or from the model's source relation (`cf_recommend`, `cf_predict` under
//! `persona.fold_in`): the user's rows are read with the caller's privileges, so a role that may
//! not read the source (or the rows row-level security hides) gets nothing through the model;
//! such a role, a source that is gone, or a model trained before 0.3.0 (which did not record
//! its source columns) answers the user as the model always did. A folded user is kept for the
//! rest of the transaction, per role, so a per-row `cf_predict` reads each user's rows once.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::{Rc, Weak};

use persona_core::cf::{CfModel, FoldedUser};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use serde_json::Value;

use crate::cf::ranked;
use crate::error::{core, raise_hint};
use crate::json::Jsonb;
use crate::model_store;
use crate::options::check_k;
use crate::settings::{self, FoldIn};
use crate::source::ident;
use crate::spi::{first, select_user, Columns};
use crate::txn_cache;

/// Folded users kept per transaction and role (more are folded again).
const MAX_FOLDED: usize = 4096;

/// Folded users of this transaction: (model name, user) → the decoded model they were folded
/// into (a weak reference: its allocation, hence its address, cannot be reused while this is
/// kept) and the user.
#[derive(Default)]
struct Folded {
    scope: Option<txn_cache::Scope>,
    users: HashMap<(String, i64), (Weak<CfModel>, Rc<FoldedUser>)>,
    /// The model's source as found in this transaction, or why it cannot be read.
    sources: HashMap<String, (Weak<CfModel>, SourceOrWhy)>,
}

/// `value` of an entry made for `model`, if it was that model.
fn for_model<T: Clone>(entry: Option<&(Weak<CfModel>, T)>, model: &Rc<CfModel>) -> Option<T> {
    entry
        .filter(|(m, _)| std::ptr::eq(m.as_ptr(), Rc::as_ptr(model)))
        .map(|(_, v)| v.clone())
}

thread_local! {
    static FOLDED: RefCell<Folded> = RefCell::new(Folded::default());
}

type SourceOrWhy = Result<Rc<Source>, Unavailable>;

/// Where a model's users' ratings are: the source relation and columns its training read.
#[derive(Debug)]
struct Source {
    relation: pg_sys::Oid,
    user: String,
    item: String,
    rating: Option<String>,
}

/// Whether `user` is answered from a fold-in under `persona.fold_in`.
pub fn folds(model: &CfModel, user: i64) -> bool {
    match settings::FOLD_IN.get() {
        FoldIn::Off => false,
        FoldIn::Unknown => model.users.get(user).is_none(),
        FoldIn::Always => true,
    }
}

/// The predicted rating of `item` for `user` of `model`, the user folded in from the source.
pub fn predict(model_name: &str, user: i64, item: i64) -> f32 {
    let model = model_store::active(model_name);
    match from_source(model_name, &model, user) {
        Some(f) => model.predict_folded(&f, item),
        None => model.predict(user, item),
    }
}

/// The `k` best items for `user` of `model`, the user folded in from the source.
pub fn recommend(model_name: &str, user: i64, k: usize, exclude_seen: bool) -> Vec<(i64, f32)> {
    let model = model_store::active(model_name);
    match from_source(model_name, &model, user) {
        Some(f) => model.recommend_folded(&f, k, exclude_seen),
        None => model.recommend(user, k, exclude_seen),
    }
}

/// `user` folded into `model` from their rows in its source, kept for the transaction; `None`
/// when the source cannot be read (see the module documentation).
fn from_source(name: &str, model: &Rc<CfModel>, user: i64) -> Option<Rc<FoldedUser>> {
    from_source_or(name, model, user).ok()
}

/// [`from_source`], or why the source cannot be read.
fn from_source_or(
    name: &str,
    model: &Rc<CfModel>,
    user: i64,
) -> Result<Rc<FoldedUser>, Unavailable> {
    let key = (name.to_string(), user);
    let (hit, source) = FOLDED.with(|f| {
        let mut f = f.borrow_mut();
        let scope = txn_cache::current_scope();
        if f.scope != Some(scope) {
            *f = Folded {
                scope: Some(scope),
                ..Folded::default()
            };
        }
        (
            for_model(f.users.get(&key), model),
            for_model(f.sources.get(name), model),
        )
    });
    if let Some(hit) = hit {
        return Ok(hit);
    }
    let source = match source {
        Some(s) => s,
        None => {
            let s = source_of(name).map(Rc::new);
            FOLDED.with(|f| {
                f.borrow_mut()
                    .sources
                    .insert(name.to_string(), (Rc::downgrade(model), s.clone()))
            });
            s
        }
    }?;
    let ratings = read_user(&source, user);
    let folded = Rc::new(
        model
            .fold_in(&ratings, Some(user))
            .unwrap_or_else(|e| core(e, Some("Set persona.fold_in = off to answer as before."))),
    );
    FOLDED.with(|f| {
        let mut f = f.borrow_mut();
        if f.users.len() >= MAX_FOLDED {
            f.users.clear();
        }
        f.users.insert(key, (Rc::downgrade(model), folded.clone()));
    });
    Ok(folded)
}

/// Why a model's users cannot be folded in from its source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unavailable {
    /// The version records no source (trained before 0.3.0, or by an older `cf_train`).
    NotRecorded,
    /// The relation or one of its columns is gone.
    Gone,
    /// The caller may not read every column.
    NoPrivilege,
}

/// The source of the active version of `model`, when the caller may read its columns.
fn source_of(model: &str) -> Result<Source, Unavailable> {
    Spi::connect(|client| {
        let row = first(
            client,
            "SELECT v.summary ? 'source_columns', \
                    pg_catalog.to_regclass(v.summary->>'source')::pg_catalog.oid, \
                    v.summary->'source_columns'->>'user', v.summary->'source_columns'->>'item', \
                    v.summary->'source_columns'->>'rating' \
             FROM persona.cf_active a JOIN persona.cf_model_versions v \
               ON v.model = a.model AND v.version = a.version WHERE a.model = $1",
            &[model.into()],
            "persona.cf_model_versions",
        )
        .ok_or(Unavailable::NotRecorded)?;
        if row.column::<bool>(1, "recorded") != Some(true) {
            return Err(Unavailable::NotRecorded);
        }
        let source = Source {
            relation: row
                .column::<pg_sys::Oid>(2, "source")
                .ok_or(Unavailable::Gone)?,
            user: row
                .column::<String>(3, "user column")
                .ok_or(Unavailable::NotRecorded)?,
            item: row
                .column::<String>(4, "item column")
                .ok_or(Unavailable::NotRecorded)?,
            rating: row.column::<String>(5, "rating column"),
        };
        let mut columns = vec![source.user.clone(), source.item.clone()];
        columns.extend(source.rating.clone());
        let wanted = columns.len() as i64;
        // Every column must still exist and be readable by the caller.
        let counts = first(
            client,
            "SELECT pg_catalog.count(*), pg_catalog.count(*) FILTER (WHERE \
                    pg_catalog.has_column_privilege($1, attname::pg_catalog.text, 'SELECT')) \
             FROM pg_catalog.pg_attribute WHERE attrelid = $1 \
             AND attname::pg_catalog.text = ANY ($2) AND NOT attisdropped",
            &[source.relation.into(), columns.into()],
            "pg_attribute",
        )
        .ok_or(Unavailable::Gone)?;
        if counts.column::<i64>(1, "present") != Some(wanted) {
            return Err(Unavailable::Gone);
        }
        if counts.column::<i64>(2, "readable") != Some(wanted) {
            return Err(Unavailable::NoPrivilege);
        }
        Ok(source)
    })
}

/// `user` folded into `model` from their rows in its source (kept for the transaction), for a
/// function that cannot answer without them: an ERROR says why when the source cannot be read.
pub fn required(name: &str, model: &Rc<CfModel>, user: i64, function: &str) -> Rc<FoldedUser> {
    from_source_or(name, model, user).unwrap_or_else(|why| match why {
        Unavailable::NotRecorded => raise_hint(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{function}: model \"{name}\" does not record the source it was trained on"),
            "Models trained before 0.3.0 do not; train a new version with cf_train, or give the \
             ratings yourself (cf_explain_for).",
        ),
        Unavailable::Gone => raise_hint(
            ERRCODE_UNDEFINED_TABLE,
            format!(
                "{function}: the source model \"{name}\" was trained on, or one of its columns, \
                 no longer exists"
            ),
            "Train a new version on the relation that holds the ratings now, or give the \
             ratings yourself (cf_explain_for).",
        ),
        Unavailable::NoPrivilege => raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "{function}: permission denied to read the ratings model \"{name}\" was trained on"
            ),
            "The user's ratings are read from the model's source with your privileges; ask its \
             owner for SELECT on the user, item and rating columns.",
        ),
    })
}

/// The user's `(item, rating)` rows in the source, read as the caller (row-level security
/// applies); NULL items or ratings are left out.
fn read_user(s: &Source, user: i64) -> Vec<(i64, f32)> {
    Spi::connect(|client| {
        let relname = crate::source::qualified_name(client, s.relation);
        let rating = s
            .rating
            .as_deref()
            .map_or("1::pg_catalog.float4".into(), |r| {
                format!("{}::pg_catalog.float4", ident(r))
            });
        // The user's relation, planned on the caller's path: every operator and type qualified.
        let query = format!(
            "SELECT {}::pg_catalog.int8, {rating} FROM {relname} \
             WHERE {} OPERATOR(pg_catalog.=) $1::pg_catalog.int8",
            ident(&s.item),
            ident(&s.user),
        );
        select_user(client, &query, None, &[user.into()], &relname)
            .filter_map(|row| {
                let item = row.column::<i64>(1, "item")?;
                let r = row.column::<f32>(2, "rating")?;
                Some((item, r))
            })
            .collect()
    })
}

/// Ratings given as jsonb: `{"item": rating, ...}`, `[[item, rating], ...]`,
/// `[{"item_id": i, "rating": r}, ...]`, or `[item, ...]` (each counts 1, for implicit models).
fn given_ratings(v: &Value, function: &str) -> Vec<(i64, f32)> {
    let bad = |what: String| -> ! {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{function}: {what}"),
            "Give the ratings as '{\"50\": 5, \"172\": 4.5}' (item id: rating), \
             '[[50, 5], [172, 4.5]]', '[{\"item_id\": 50, \"rating\": 5}]', or '[50, 172]' (each \
             counts 1).",
        )
    };
    let item_of = |x: &Value| -> i64 {
        match x {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or_else(|| bad(format!("{x} is not an item id (an integer)")))
    };
    let rating_of = |x: &Value| -> f32 {
        x.as_f64()
            .map(|r| r as f32)
            .filter(|r| r.is_finite())
            .unwrap_or_else(|| bad(format!("{x} is not a rating (a number)")))
    };
    match v {
        Value::Object(o) => {
            o.iter()
                .map(|(k, r)| {
                    let item = k.trim().parse().unwrap_or_else(|_| {
                        bad(format!("key \"{k}\" is not an item id (an integer)"))
                    });
                    (item, rating_of(r))
                })
                .collect()
        }
        Value::Array(a) => a
            .iter()
            .map(|e| match e {
                Value::Array(pair) if pair.len() == 2 => (item_of(&pair[0]), rating_of(&pair[1])),
                Value::Object(o) => {
                    let field = |name: &str| {
                        o.get(name)
                            .unwrap_or_else(|| bad(format!("{e} has no \"{name}\"")))
                    };
                    (item_of(field("item_id")), rating_of(field("rating")))
                }
                Value::Number(_) | Value::String(_) => (item_of(e), 1.0),
                other => bad(format!("{other} is not a rating")),
            })
            .collect(),
        Value::Null => bad("the ratings are NULL".into()),
        other => bad(format!("{other} is not an object or array of ratings")),
    }
}

/// Given ratings, the model they were folded into, and the folded user.
type LastGiven = (Value, Weak<CfModel>, Rc<FoldedUser>);

thread_local! {
    /// The ratings last folded by `cf_predict_for`, the model's address, and the result: a
    /// per-row call over one user's candidate items folds the user in once.
    static LAST_GIVEN: RefCell<Option<LastGiven>> = const { RefCell::new(None) };
}

/// [`fold_given`], the last result reused while the ratings and the decoded model are the same.
fn fold_given_cached(model: &Rc<CfModel>, ratings: &Value, function: &str) -> Rc<FoldedUser> {
    let hit = LAST_GIVEN.with(|l| {
        l.borrow()
            .as_ref()
            .filter(|(v, m, _)| std::ptr::eq(m.as_ptr(), Rc::as_ptr(model)) && v == ratings)
            .map(|(_, _, f)| f.clone())
    });
    hit.unwrap_or_else(|| {
        let f = Rc::new(fold_given(model, ratings, function));
        LAST_GIVEN
            .with(|l| *l.borrow_mut() = Some((ratings.clone(), Rc::downgrade(model), f.clone())));
        f
    })
}

/// The given ratings folded into `model`, with a NOTICE when none of them could be used.
pub(crate) fn fold_given(model: &CfModel, ratings: &Value, function: &str) -> FoldedUser {
    let given = given_ratings(ratings, function);
    let f = model.fold_in(&given, None).unwrap_or_else(|e| {
        core(
            e,
            Some("Retrain the model as the message says, or fold in with another model."),
        )
    });
    if f.is_unknown() {
        let fallback = if model.is_implicit() {
            "the most popular items"
        } else {
            "the baseline"
        };
        if given.is_empty() {
            notice!(
                "{function}: no ratings were given: answering as for an unknown user ({fallback})"
            );
        } else {
            notice!(
                "{function}: none of the {} given ratings can be used ({} for items the model \
                 does not know, {} outside its rating scale): answering as for an unknown user \
                 ({fallback})",
                given.len(),
                f.unknown_items,
                f.out_of_scale,
            );
        }
    }
    f
}

/// The `k` best items for a user with `ratings` (a user the model may never have seen), best
/// first; the rated items are left out unless `exclude_seen` is false.
#[pg_extern(stable, strict, parallel_safe)]
fn cf_recommend_for(
    ratings: Jsonb,
    k: default!(i32, 10),
    model: default!(&str, "'default'"),
    exclude_seen: default!(bool, true),
) -> TableIterator<'static, (name!(item_id, i64), name!(score, f32), name!(rank, i32))> {
    let k = check_k(k);
    let m = model_store::active(model);
    let f = fold_given(&m, &ratings.0, "cf_recommend_for");
    TableIterator::new(ranked(m.recommend_folded(&f, k, exclude_seen)))
}

/// The predicted rating of `item_id` for a user with `ratings`.
#[pg_extern(stable, strict, parallel_safe)]
fn cf_predict_for(ratings: Jsonb, item_id: i64, model: default!(&str, "'default'")) -> f32 {
    let m = model_store::active(model);
    let f = fold_given_cached(&m, &ratings.0, "cf_predict_for");
    m.predict_folded(&f, item_id)
}
