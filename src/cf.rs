//! SQL API of collaborative filtering: train, predict, recommend, find similar users and items,
//! evaluate, deploy. Reads and converts; the algorithms are in `persona_core::cf`.

use std::time::Instant;

use persona_core::cf::evaluate::{evaluate_until, split_rows, Rows, SplitKind};
use persona_core::cf::{
    estimate_peak_bytes, estimate_read_bytes, seeded_options, train, Algorithm, DatasetBuilder,
};
use persona_core::control::Threads;
use persona_core::CoreError;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use crate::error::{raise, raise_hint, OrRaise};
use crate::json::Jsonb;
use crate::model_acl::{self, Store};
use crate::model_store;
use crate::monitor::ProgressNotices;
use crate::options::{check_k, required, Options};
use crate::settings;
use crate::source::{checked_relation, for_each_row, ident, ColumnKind};
use crate::spi::{first, select_one, Columns};

/// Options `cf_train` and `cf_evaluate` understand themselves; every other key goes to the algorithm.
const SOURCE_OPTIONS: &[&str] = &[
    "user_column",
    "item_column",
    "rating_column",
    "min_rating",
    "max_rating",
    "test_fraction",
    "split",
    "seed",
    "top_k",
];

/// How to read and split the source.
struct SourceSpec {
    user_col: String,
    item_col: String,
    rating_col: Option<String>,
    scale: Option<(f32, f32)>,
    test_fraction: f64,
    split: SplitKind,
    seed: u64,
    k: usize,
    /// Algorithm options, as JSON.
    algo_options: String,
}

fn parse_options(options: &Value, default_fraction: f64, function: &'static str) -> SourceSpec {
    let o = Options::open(options, SOURCE_OPTIONS, function, "the algorithm");
    // An explicit null rating column means implicit feedback: every row counts as 1.
    let rating_col = match (o.has("rating_column"), o.string("rating_column")) {
        (true, None) => None,
        (_, given) => Some(given.unwrap_or_else(|| "rating".into())),
    };
    let scale = match (o.number("min_rating"), o.number("max_rating")) {
        (None, None) => None,
        (Some(lo), Some(hi)) if lo < hi => Some((lo as f32, hi as f32)),
        _ => raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "options \"min_rating\" and \"max_rating\" must be given together, with min_rating < \
             max_rating",
            "e.g. '{\"min_rating\": 1, \"max_rating\": 5}'",
        ),
    };
    let test_fraction = o.number("test_fraction").unwrap_or(default_fraction);
    if !(0.0..1.0).contains(&test_fraction) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("test_fraction must be in [0, 1), not {test_fraction}"),
            "0 trains on every row.",
        );
    }
    let split = match o.string("split").as_deref().unwrap_or("random") {
        "random" => SplitKind::Random,
        "user" | "stratified" => SplitKind::PerUser,
        other => raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown split \"{other}\""),
            "Valid splits: random (a seeded fraction of all rows), user (the same fraction of \
             each user's rows).",
        ),
    };
    SourceSpec {
        user_col: o.string("user_column").unwrap_or_else(|| "user_id".into()),
        item_col: o.string("item_column").unwrap_or_else(|| "item_id".into()),
        rating_col,
        scale,
        test_fraction,
        split,
        seed: o.integer("seed", 0, u64::MAX).unwrap_or(42),
        // Not "k": that is k-NN's neighbour count (Surprise's name), one meaning per option.
        k: o.integer("top_k", 1, 10_000).unwrap_or(10) as usize,
        algo_options: Value::Object(o.other_options()).to_string(),
    }
}

/// Reads `(user, item, rating)` rows of `source` as the calling role.
fn read_rows(source: pg_sys::Oid, spec: &SourceSpec) -> (String, Rows) {
    Spi::connect(|client| {
        let mut wanted = vec![
            (spec.user_col.as_str(), ColumnKind::Id, "user_column"),
            (spec.item_col.as_str(), ColumnKind::Id, "item_column"),
        ];
        if let Some(r) = &spec.rating_col {
            wanted.push((r.as_str(), ColumnKind::Number, "rating_column"));
        }
        let relname = checked_relation(client, source, &wanted);
        let rating = spec
            .rating_col
            .as_deref()
            .map_or("1::pg_catalog.float4".to_string(), |r| {
                format!("{}::pg_catalog.float4", ident(r))
            });
        // The source is the user's: qualified SQL, planned on the caller's path (spi.rs).
        let query = format!(
            "SELECT {}::pg_catalog.int8, {}::pg_catalog.int8, {} FROM {}",
            ident(&spec.user_col),
            ident(&spec.item_col),
            rating,
            relname
        );
        // The planner's row count: room for the rows up front, and a read that could not fit
        // in persona.max_training_memory is refused before it starts.
        let expected = first(
            client,
            "SELECT CASE WHEN c.reltuples > 0 THEN c.reltuples::pg_catalog.int8 ELSE 0 END \
             FROM pg_catalog.pg_class c WHERE c.oid = $1",
            &[source.into()],
            "pg_class",
        )
        .and_then(|r| r.column::<i64>(1, "reltuples"))
        .unwrap_or(0)
        .max(0) as usize;
        check_memory(estimate_read_bytes(expected), || {
            format!("reading about {expected} rows of {relname}")
        });
        let mut rows = Rows::with_capacity(expected.min(1 << 31));
        for_each_row(client, &query, 50_000, |t| {
            let u: Option<i64> = t.column(1, "user");
            let i: Option<i64> = t.column(2, "item");
            let r: Option<f32> = t.column(3, "rating");
            match (u, i) {
                (Some(u), Some(i)) => rows.push(u, i, r),
                _ => rows.push_null(),
            }
        });
        // One canonical order: the same rows in any physical order train the same model.
        rows.canonicalize();
        (relname, rows)
    })
}

/// Refuses (54000) work over `persona.max_training_memory`; `what` says what the work is.
fn check_memory(need: usize, what: impl FnOnce() -> String) {
    settings::check_training_memory(
        need,
        what,
        "Raise persona.max_training_memory, use fewer factors or neighbours, or train on a \
         sample.",
    );
}

fn parse_algorithm(name: &str) -> Algorithm {
    name.parse().unwrap_or_else(|e: CoreError| {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            e.to_string(),
            "See the README's table of algorithms.",
        )
    })
}

/// Splits, builds, checks the memory budget, trains and evaluates. Shared by cf_train and cf_evaluate.
fn fit(
    rows: &Rows,
    spec: &SourceSpec,
    algo: Algorithm,
    test: Option<&Rows>,
) -> (persona_core::cf::CfModel, Value) {
    let t0 = Instant::now();
    let (train_idx, test_idx) = match test {
        Some(_) => ((0..rows.len()).collect(), Vec::new()),
        None => split_rows(rows, spec.split, spec.test_fraction, spec.seed),
    };
    let mut b = DatasetBuilder::new();
    if let Some((lo, hi)) = spec.scale {
        b = b.with_scale(lo, hi);
    }
    b.reserve(train_idx.len());
    rows.fill(&mut b, &train_idx);
    let mut d = b.build().unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_DATA_EXCEPTION,
            e.to_string(),
            "The source must hold rows with non-NULL user, item and rating values.",
        )
    });
    // A declared scale is the model's scale: predictions are clipped to it, not to what was seen.
    if let Some((lo, hi)) = spec.scale {
        (d.min_rating, d.max_rating) = (lo, hi);
    }
    let algo_options = seeded_options(algo, &spec.algo_options, spec.seed);
    // The larger of training's and storing's peaks (cf_train frees the rows before it stores).
    let need = estimate_peak_bytes(&d, algo, &algo_options, rows.len())
        .or_raise_hint("See the README's table of algorithm options.");
    check_memory(need, || {
        format!(
            "training \"{algo}\" on {} users, {} items and {} ratings",
            d.n_users(),
            d.n_items(),
            d.n_ratings()
        )
    });
    let threads = Threads::new(settings::training_threads()).or_raise();
    let t_train = Instant::now();
    let model = train(
        &d,
        algo,
        &algo_options,
        &threads,
        &mut ProgressNotices::new(),
    )
    .or_raise_hint("See the README's table of algorithm options.");
    let train_seconds = t_train.elapsed().as_secs_f64();
    let held_out = match test {
        Some(t) => Some(t.triples_all()),
        None if !test_idx.is_empty() => Some(rows.triples(&test_idx)),
        None => None,
    };
    // Ranking every test user over the whole catalogue can be long: watched for a cancel.
    let eval = held_out
        .as_ref()
        .map(|t| {
            threads.run_watched(&mut ProgressNotices::new(), |stop| {
                evaluate_until(&model, t, spec.k, stop)
            })
        })
        .transpose()
        .or_raise();
    // Once evaluated, the held-out rows count as seen: recommendations never offer what a user
    // already rated, whichever part of the split the rating fell in.
    let mut model = model;
    if let Some(t) = &held_out {
        model.extend_seen(t);
    }
    let summary = json!({
        "algorithm": algo.name(),
        "params": serde_json::from_str::<Value>(&model.params).unwrap_or(Value::Null),
        "users": d.n_users(),
        "items": d.n_items(),
        "ratings_used": d.n_ratings(),
        "rows_read": rows.len() as u64 + rows.null_rows(),
        "rows_held_out": test.map_or(test_idx.len(), |t| t.len()),
        "skipped_null": d.counts.skipped_null + rows.null_rows(),
        "skipped_out_of_range": d.counts.skipped_out_of_range,
        "duplicates_merged": d.counts.duplicates_merged,
        "rating_range": (!algo.is_implicit()).then_some([d.min_rating, d.max_rating]),
        "train_seconds": round3(train_seconds),
        "memory_estimate_mb": need / (1 << 20),
        "seconds": round3(t0.elapsed().as_secs_f64()),
        "holdout": eval.and_then(|e| serde_json::to_value(e).ok()),
    });
    (model, summary)
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub(crate) fn check_model_name(model: &str) {
    if model.is_empty() || model.len() > 63 {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "model names must be 1 to 63 characters long",
            "e.g. 'default' or 'movies_svd'.",
        );
    }
}

/// Trains a model on `source` and makes it the active version of `model`. Implementation of the
/// SQL function `cf_train(regclass, text, text, jsonb)` (see sql/finalize.sql).
#[pg_extern(schema = "persona", volatile, parallel_unsafe)]
fn cf_train_impl(source: pg_sys::Oid, algorithm: &str, model: &str, options: Jsonb) -> JsonB {
    check_model_name(model);
    let algo = parse_algorithm(algorithm);
    // cf_train's own option: refit (cf_evaluate stores nothing, so it has none).
    let mut options = options.0;
    let refit = match options.as_object_mut().and_then(|o| o.remove("refit")) {
        None => true,
        Some(Value::Bool(b)) => b,
        Some(other) => raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("option \"refit\" must be true or false, not {other}"),
            "true (the default) deploys a model fitted on every row after the holdout report; \
             false deploys the model the report was computed on.",
        ),
    };
    let item_text = options
        .as_object_mut()
        .and_then(|o| o.remove("item_text"))
        .map(|v| crate::cf_cold::parse(&v, algo));
    let spec = parse_options(&options, 0.1, "cf_train");
    // Before any work: may this role train this model?
    model_store::check_may_train(model);
    let t0 = Instant::now();
    let (relname, rows) = read_rows(source, &spec);
    let read_seconds = t0.elapsed().as_secs_f64();
    // Stored with the model: where fold-in (persona.fold_in) reads a user's current ratings.
    let source_columns =
        json!({"user": spec.user_col, "item": spec.item_col, "rating": spec.rating_col});
    let (mut trained, mut summary) = fit(&rows, &spec, algo, None);
    if refit && spec.test_fraction > 0.0 {
        // The report came from a fit that did not see the held-out rows; the deployed model
        // sees every row (a second fit: about twice the training time).
        drop(trained);
        let everything = SourceSpec {
            test_fraction: 0.0,
            ..spec
        };
        let (full, full_summary) = fit(&rows, &everything, algo, None);
        trained = full;
        let obj = summary.as_object_mut().expect("summary is an object");
        obj.insert(
            "report_train_seconds".into(),
            obj.get("train_seconds").cloned().unwrap_or(Value::Null),
        );
        for key in [
            "users",
            "items",
            "ratings_used",
            "train_seconds",
            "rating_range",
        ] {
            if let Some(v) = full_summary.get(key) {
                obj.insert(key.into(), v.clone());
            }
        }
    }
    summary
        .as_object_mut()
        .expect("summary is an object")
        .insert("refit".into(), json!(refit && spec.test_fraction > 0.0));
    if let Some(it) = &item_text {
        let report = crate::cf_cold::apply(&mut trained, it);
        let obj = summary.as_object_mut().expect("summary is an object");
        obj.insert("cold_start".into(), report);
    }
    let obj = summary.as_object_mut().expect("summary is an object");
    obj.insert("source".into(), json!(relname));
    obj.insert("source_columns".into(), source_columns);
    // The rows are not needed any more: storing needs the memory (see estimate_peak_bytes).
    drop(rows);
    let version = model_store::save(model, &trained, &summary);
    let obj = summary.as_object_mut().expect("summary is an object");
    obj.insert("model".into(), json!(model));
    obj.insert("version".into(), json!(version));
    obj.insert("read_seconds".into(), json!(round3(read_seconds)));
    obj.insert("seconds".into(), json!(round3(t0.elapsed().as_secs_f64())));
    JsonB(summary)
}

/// Trains on part of `source` and scores the rest (or `test`), without storing a model.
#[pg_extern(schema = "persona", volatile, parallel_unsafe)]
fn cf_evaluate_impl(
    source: Option<pg_sys::Oid>,
    algorithm: Option<&str>,
    options: Option<Jsonb>,
    test: Option<pg_sys::Oid>,
) -> JsonB {
    // Not STRICT (test may be NULL); the SQL wrapper returns NULL for the others, a direct
    // call gets 22004.
    let source = required(source, "source", "cf_evaluate");
    let algorithm = required(algorithm, "algorithm", "cf_evaluate");
    let options = required(options, "options", "cf_evaluate");
    let algo = parse_algorithm(algorithm);
    let spec = parse_options(&options.0, 0.2, "cf_evaluate");
    let t0 = Instant::now();
    let (relname, rows) = read_rows(source, &spec);
    let test_rows = test.map(|t| read_rows(t, &spec).1);
    let (_, mut summary) = fit(&rows, &spec, algo, test_rows.as_ref());
    let obj = summary.as_object_mut().expect("summary is an object");
    obj.insert("source".into(), json!(relname));
    obj.insert(
        "split".into(),
        json!(match (test.is_some(), spec.split) {
            (true, _) => "test relation",
            (false, SplitKind::Random) => "random",
            (false, SplitKind::PerUser) => "user",
        }),
    );
    obj.insert(
        "test_fraction".into(),
        json!(if test.is_some() {
            Value::Null
        } else {
            json!(spec.test_fraction)
        }),
    );
    obj.insert("seed".into(), json!(spec.seed));
    obj.insert("seconds".into(), json!(round3(t0.elapsed().as_secs_f64())));
    JsonB(summary)
}

/// `cf_predict(user_id bigint, item_id bigint, model text DEFAULT 'default') → real`: the predicted
/// rating of `item_id` by `user_id`, clipped to the training scale. Unknown users or items get the
/// global mean plus the biases that are known.
///
/// This is the one function called once per row over whole tables, so it is a plain V1 C
/// function (declared in sql/finalize.sql) rather than a `#[pg_extern]`: the generic wrapper's
/// argument and memory-context handling cost about as much as the prediction itself. `#[pg_guard]`
/// still turns any Rust panic or PostgreSQL error into a proper ERROR. STRICT in SQL, so no
/// argument is NULL here.
#[pg_guard]
#[no_mangle]
pub unsafe extern "C-unwind" fn cf_predict_v1(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: PostgreSQL calls this with a valid fcinfo holding (int8, int8, text), none NULL.
    let (user, item, model) = unsafe {
        (
            pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 0).value() as i64,
            pgrx::fcinfo::pg_getarg_datum_raw(fcinfo, 1).value() as i64,
            pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 2).unwrap_or("default"),
        )
    };
    let p = model_store::with_active(model, |m| {
        (!crate::cf_fold::folds(m, user)).then(|| m.predict(user, item))
    })
    .unwrap_or_else(|| crate::cf_fold::predict(model, user, item));
    pg_sys::Datum::from(p.to_bits())
}

#[no_mangle]
#[doc(hidden)]
pub extern "C" fn pg_finfo_cf_predict_v1() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

/// `(id, score, rank)` rows, ranked from 1 in the order given.
pub(crate) fn ranked(scored: Vec<(i64, f32)>) -> Vec<(i64, f32, i32)> {
    scored
        .into_iter()
        .enumerate()
        .map(|(r, (id, s))| (id, s, r as i32 + 1))
        .collect()
}

/// The `k` best items for `user_id`, best first.
#[pg_extern(stable, strict, parallel_safe)]
fn cf_recommend(
    user_id: i64,
    k: default!(i32, 10),
    model: default!(&str, "'default'"),
    exclude_seen: default!(bool, true),
) -> TableIterator<'static, (name!(item_id, i64), name!(score, f32), name!(rank, i32))> {
    let k = check_k(k);
    let m = model_store::active(model);
    TableIterator::new(ranked(recommend(model, &m, user_id, k, exclude_seen)))
}

/// The `k` best items for `user` of `model` (named `name`), the user folded in from the
/// source when `persona.fold_in` says so.
pub(crate) fn recommend(
    name: &str,
    m: &persona_core::cf::CfModel,
    user: i64,
    k: usize,
    exclude_seen: bool,
) -> Vec<(i64, f32)> {
    if crate::cf_fold::folds(m, user) {
        crate::cf_fold::recommend(name, user, k, exclude_seen)
    } else {
        m.recommend(user, k, exclude_seen)
    }
}

/// Items or users: what `cf_similar_items` and `cf_similar_users` look up.
#[derive(Clone, Copy)]
enum Similar {
    Items,
    Users,
}

/// The `k` items or users most similar to `id` (no rows for an unknown one).
fn similar(what: Similar, id: i64, k: i32, model: &str) -> Vec<(i64, f32, i32)> {
    let k = check_k(k);
    let m = model_store::active(model);
    let sims = match what {
        Similar::Items => m.similar_items(id, k),
        Similar::Users => m.similar_users(id, k),
    };
    ranked(sims.unwrap_or_default())
}

/// The `k` items most similar to `item_id` (no rows for an unknown item).
#[pg_extern(stable, strict, parallel_safe)]
fn cf_similar_items(
    item_id: i64,
    k: default!(i32, 10),
    model: default!(&str, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(item_id, i64),
        name!(similarity, f32),
        name!(rank, i32),
    ),
> {
    TableIterator::new(similar(Similar::Items, item_id, k, model))
}

/// The `k` users most similar to `user_id` (no rows for an unknown user).
#[pg_extern(stable, strict, parallel_safe)]
fn cf_similar_users(
    user_id: i64,
    k: default!(i32, 10),
    model: default!(&str, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(user_id, i64),
        name!(similarity, f32),
        name!(rank, i32),
    ),
> {
    TableIterator::new(similar(Similar::Users, user_id, k, model))
}

/// Makes `version` the active version of `model` (roll back or forward).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn cf_deploy(model: &str, version: i32) -> JsonB {
    model_acl::check_owner(Store::Cf, model, "deploy a version of");
    let exists = select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM persona.cf_model_versions WHERE model = $1 AND version = $2)",
        &[model.into(), version.into()],
        "persona.cf_model_versions",
    )
    .unwrap_or(false);
    if !exists {
        let versions = select_one::<String>(
            "SELECT pg_catalog.string_agg(version::text, ', ' ORDER BY version) FROM \
             persona.cf_model_versions WHERE model = $1",
            &[model.into()],
            "persona.cf_model_versions",
        );
        match versions {
            Some(v) => raise_hint(
                ERRCODE_UNDEFINED_OBJECT,
                format!("model \"{model}\" has no version {version}"),
                format!("Its versions are: {v}."),
            ),
            None => raise(
                ERRCODE_UNDEFINED_OBJECT,
                format!("model \"{model}\" does not exist"),
                Some("See SELECT * FROM persona.cf_models.".into()),
            ),
        }
    }
    model_store::activate(model, version);
    JsonB(json!({"model": model, "active_version": version}))
}

/// Lets `role` (a role name, or PUBLIC) use `model`: predict, recommend, read its rows. Only its
/// owner (or a member, or a superuser) may. Returns who may use it now besides the owner.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn cf_model_grant(model: &str, role: &str) -> Vec<String> {
    model_acl::change_use(Store::Cf, model, role, true)
}

/// Takes back the use of `model` from `role` (or PUBLIC). Returns who may use it now besides
/// the owner.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn cf_model_revoke(model: &str, role: &str) -> Vec<String> {
    model_acl::change_use(Store::Cf, model, role, false)
}
