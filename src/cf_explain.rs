//! Explanations from SQL: which of a user's ratings make an item's score
//! (`persona_core::cf::explain` decomposes it).
//!
//! A user's ratings are read from the model's source with the caller's privileges, as a fold-in
//! reads them (`crate::cf_fold`): an explanation shows the user's ratings, so a role that may
//! not read them gets an ERROR, not the ratings. `cf_explain_for` explains a user whose ratings
//! the caller gives.

use std::rc::Rc;

use persona_core::cf::{CfModel, Explainer, FoldedUser};
use pgrx::prelude::*;

use crate::cf::ranked;
use crate::cf_fold;
use crate::error::core;
use crate::json::Jsonb;
use crate::model_store;
use crate::options::check_k;

/// One row of an explanation: rank, reason_kind, reason_id, rating, weight, contribution, share.
type ReasonRow = (i32, String, i64, f32, f32, f32, f32);

fn explainer<'a>(model: &'a CfModel, user: &'a FoldedUser) -> Explainer<'a> {
    model.explainer(user).unwrap_or_else(|e| {
        core(
            e,
            Some("Retrain the model as the message says, or explain with another model."),
        )
    })
}

/// The `k` largest contributions to `item`'s score for a folded user; none for an item the
/// model does not know or a user with no usable rating.
fn reasons(model: &CfModel, user: &FoldedUser, item: i64, k: usize) -> Vec<ReasonRow> {
    let e = explainer(model, user)
        .explain(item, k)
        .unwrap_or_else(|e| core(e, None));
    e.map(|e| e.reasons)
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            (
                n as i32 + 1,
                r.kind.as_str().to_string(),
                r.id,
                r.rating,
                r.weight,
                r.contribution,
                r.share,
            )
        })
        .collect()
}

/// Why `model` scores `item_id` as it does for `user_id`: the `k` ratings that contribute most
/// (for a user-based k-NN model, the neighbours), best first. The user's ratings are read from
/// the model's source with the caller's privileges.
#[pg_extern(stable, strict, parallel_safe)]
#[allow(clippy::type_complexity)]
fn cf_explain(
    user_id: i64,
    item_id: i64,
    model: default!(&str, "'default'"),
    k: default!(i32, 5),
) -> TableIterator<
    'static,
    (
        name!(rank, i32),
        name!(reason_kind, String),
        name!(reason_id, i64),
        name!(rating, f32),
        name!(weight, f32),
        name!(contribution, f32),
        name!(share, f32),
    ),
> {
    let k = check_k(k);
    let m = model_store::active(model);
    let user = cf_fold::required(model, &m, user_id, "cf_explain");
    TableIterator::new(reasons(&m, &user, item_id, k))
}

/// [`cf_explain`] for a user with the given `ratings` (as `cf_recommend_for` takes them).
#[pg_extern(stable, strict, parallel_safe)]
#[allow(clippy::type_complexity)]
fn cf_explain_for(
    ratings: Jsonb,
    item_id: i64,
    model: default!(&str, "'default'"),
    k: default!(i32, 5),
) -> TableIterator<
    'static,
    (
        name!(rank, i32),
        name!(reason_kind, String),
        name!(reason_id, i64),
        name!(rating, f32),
        name!(weight, f32),
        name!(contribution, f32),
        name!(share, f32),
    ),
> {
    let k = check_k(k);
    let m = model_store::active(model);
    let user = cf_fold::fold_given(&m, &ratings.0, "cf_explain_for");
    TableIterator::new(reasons(&m, &user, item_id, k))
}

/// `cf_recommend`'s rows, each with its top reason ([`cf_explain`] with k = 1): NULL where
/// nothing the user rated bears on the item (a user without ratings, a k-NN fallback).
#[pg_extern(stable, strict, parallel_safe)]
#[allow(clippy::type_complexity)]
fn cf_recommend_explained(
    user_id: i64,
    k: default!(i32, 10),
    model: default!(&str, "'default'"),
    exclude_seen: default!(bool, true),
) -> TableIterator<
    'static,
    (
        name!(item_id, i64),
        name!(score, f32),
        name!(rank, i32),
        name!(reason_kind, Option<String>),
        name!(reason_id, Option<i64>),
        name!(reason_share, Option<f32>),
    ),
> {
    let k = check_k(k);
    let m: Rc<CfModel> = model_store::active(model);
    let items = crate::cf::recommend(model, &m, user_id, k, exclude_seen);
    let user = cf_fold::required(model, &m, user_id, "cf_recommend_explained");
    let ex = explainer(&m, &user);
    let rows: Vec<_> = ranked(items)
        .into_iter()
        .map(|(item, score, rank)| {
            let top = ex
                .explain(item, 1)
                .unwrap_or_else(|e| core(e, None))
                .and_then(|e| e.reasons.into_iter().next());
            (
                item,
                score,
                rank,
                top.as_ref().map(|r| r.kind.as_str().to_string()),
                top.as_ref().map(|r| r.id),
                top.map(|r| r.share),
            )
        })
        .collect();
    TableIterator::new(rows)
}
