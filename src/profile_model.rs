//! Portrait models from SQL: `profile_train` fits the lifetime models and RFM quintiles
//! (`persona_core::portrait`) on an orders relation read with the caller's privileges, and stores
//! them as a versioned, owned model (`persona.profile_model_versions`, `persona.profile_active`,
//! shared like cf models); `profile_deploy` rolls back or forward; `user_profile` applies the
//! active model to one user's orders ([`sections`]).

use persona_core::control::{NoMonitor, Threads};
use persona_core::lifetime::{summarise, Summary};
use persona_core::portrait::{PortraitModel, DEFAULT_DISCOUNT_RATE};
use persona_core::taste::TasteClusters;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use crate::campaign_options::relation;
use crate::error::{raise, raise_hint, OrRaise};
use crate::json::Jsonb;
use crate::model_acl::{self, Store};
use crate::monitor::Interrupts;
use crate::options::Options;
use crate::source::ColumnKind;
use crate::spi::{first, select, select_one, select_user, write, write_one, Columns};

const F: &str = "profile_train";

/// The orders of `rel` up to `as_of` as (user, UTC day number, that day's total value); NULL and
/// negative values and later orders left out. Read as the caller.
fn daily_orders(
    client: &pgrx::spi::SpiClient<'_>,
    rel: &str,
    users: Option<&[i64]>,
    as_of: Option<TimestampWithTimeZone>,
) -> Vec<(i64, i64, f64)> {
    let sql = format!(
        "SELECT user_id::pg_catalog.int8, \
                (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date OPERATOR(pg_catalog.-) \
                  DATE '1970-01-01', \
                pg_catalog.sum(value)::pg_catalog.float8 \
           FROM {rel} \
          WHERE user_id IS NOT NULL AND value IS NOT NULL AND value OPERATOR(pg_catalog.>=) 0 \
            AND occurred_at OPERATOR(pg_catalog.<=) COALESCE($1, pg_catalog.now()) \
            AND ($2::pg_catalog.int8[] IS NULL \
                 OR user_id::pg_catalog.int8 OPERATOR(pg_catalog.=) ANY ($2)) \
          GROUP BY 1, 2"
    );
    let as_of = as_of.into();
    let user = users.map(<[i64]>::to_vec).into();
    select_user(client, &sql, None, &[as_of, user], "the orders relation")
        .filter_map(|r| {
            Some((
                r.column::<i64>(1, "user_id")?,
                i64::from(r.column::<i32>(2, "day")?),
                r.column::<f64>(3, "value")?,
            ))
        })
        .collect()
}

/// The UTC day number of `as_of` (now when NULL).
fn day_of(client: &pgrx::spi::SpiClient<'_>, as_of: Option<TimestampWithTimeZone>) -> i64 {
    let arg = as_of.into();
    first(
        client,
        "SELECT (COALESCE($1, pg_catalog.now()) AT TIME ZONE 'UTC')::pg_catalog.date \
           OPERATOR(pg_catalog.-) DATE '1970-01-01'",
        &[arg],
        "the observation day",
    )
    .and_then(|r| r.column::<i32>(1, "day"))
    .map_or(0, i64::from)
}

/// Fits a portrait model on an orders relation (`options.orders`, default `persona.orders`,
/// with `user_id`, `occurred_at`, `value`) as of `options.as_of` (default now), and makes it the
/// active version of `model`.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn profile_train(model: default!(&str, "'default'"), options: default!(Jsonb, "'{}'")) -> JsonB {
    crate::cf::check_model_name(model);
    let o = Options::new(
        &options.0,
        &["orders", "as_of", "discount_rate", "penalizer", "clusters"],
        F,
    );
    let penalizer = o.number("penalizer").unwrap_or(0.0);
    if penalizer < 0.0 {
        o.bad("penalizer", "a non-negative number", &json!(penalizer));
    }
    let orders_name = o
        .string("orders")
        .unwrap_or_else(|| "persona.orders".into());
    let discount_rate = o.number("discount_rate").unwrap_or(DEFAULT_DISCOUNT_RATE);
    if !(0.0..1.0).contains(&discount_rate) {
        o.bad(
            "discount_rate",
            "a monthly rate in [0, 1)",
            &json!(discount_rate),
        );
    }
    let as_of_text = o.string("as_of");
    let clusters = clusters_option(&o, model);
    model_acl::check_create(Store::Profile);
    model_acl::check_owner(Store::Profile, model, "train a new version of");
    let started = std::time::Instant::now();
    let as_of: Option<TimestampWithTimeZone> = as_of_text.as_deref().map(|t| {
        Spi::get_one_with_args::<TimestampWithTimeZone>(
            "SELECT $1::pg_catalog.timestamptz",
            &[t.into()],
        )
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("option \"as_of\" of {F} is not a timestamp: {t}"),
                "e.g. '{\"as_of\": \"2026-05-01\"}'.",
            )
        })
    });
    let (rel, rows, skipped, today) = Spi::connect(|client| {
        let rel = relation(
            client,
            "orders",
            &orders_name,
            &[
                ("user_id", ColumnKind::Id, "orders"),
                ("occurred_at", ColumnKind::Time, "orders"),
                ("value", ColumnKind::Number, "orders"),
            ],
        );
        let rows = daily_orders(client, &rel.name, None, as_of);
        let arg = as_of.into();
        let skipped = select_user(
            client,
            &format!(
                "SELECT pg_catalog.jsonb_build_object( \
                   'null_value', pg_catalog.count(*) FILTER (WHERE value IS NULL), \
                   'negative_value', pg_catalog.count(*) FILTER \
                     (WHERE value OPERATOR(pg_catalog.<) 0), \
                   'after_as_of', pg_catalog.count(*) FILTER \
                     (WHERE occurred_at OPERATOR(pg_catalog.>) COALESCE($1, pg_catalog.now())), \
                   'null_user', pg_catalog.count(*) FILTER (WHERE user_id IS NULL)) FROM {}",
                rel.name
            ),
            Some(1),
            &[arg],
            "the orders relation",
        )
        .next()
        .and_then(|r| r.column::<JsonB>(1, "skipped"))
        .map_or(Value::Null, |j| j.0);
        (rel, rows, skipped, day_of(client, as_of))
    });
    if rows.is_empty() {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{} has no orders to fit a portrait model on", rel.name),
            "Insert purchases (user_id, occurred_at, value) into persona.orders, or name your \
             own relation with the option \"orders\".",
        );
    }
    let summaries = summarise(&rows, today);
    let threads = Threads::new(crate::settings::training_threads()).or_raise();
    let portrait = PortraitModel::fit(
        &summaries,
        discount_rate,
        penalizer,
        &threads,
        &mut Interrupts,
    )
    .unwrap_or_else(|e| {
        let hint = if e.to_string().contains("did not converge") {
            "Try the option penalizer (e.g. '{\"penalizer\": 0.001}'), more orders or another \
             as_of; the active version is unchanged."
        } else {
            "The lifetime model needs customers who bought on more than one day; the active \
             version is unchanged."
        };
        crate::error::core(e, Some(hint))
    });
    let mut portrait = portrait;
    match fit_taste(&clusters) {
        Ok(t) => portrait.taste = t,
        Err(why) => portrait.taste_unavailable = Some(why),
    }
    let mut summary = portrait.report(&summaries);
    summary["orders_skipped"] = skipped;
    summary["as_of"] = json!(as_of_text);
    summary["seconds"] = json!((started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0);
    let params = serde_json::to_value(&portrait).unwrap_or(Value::Null);
    let version = save(model, &rel.name, &params, &summary);
    summary["model"] = json!(model);
    summary["version"] = json!(version);
    summary["orders"] = json!(rel.name);
    JsonB(summary)
}

/// What the option `clusters` asks for.
enum Clusters {
    /// `false`: none.
    Off,
    /// Absent: from the cf model of the portrait model's name when it exists and has factors;
    /// otherwise the model says why.
    Auto { cf_model: String },
    /// An object: from `cf_model` with `k` clusters (or k by silhouette over 2..8) and `seed`;
    /// failing is an error.
    Given {
        cf_model: String,
        k: Option<usize>,
        seed: u64,
    },
}

fn clusters_option(o: &Options<'_>, model: &str) -> Clusters {
    let example = "e.g. '{\"clusters\": {\"cf_model\": \"default\", \"k\": 4, \"seed\": 42}}' or \
                   '{\"clusters\": false}'";
    match o.get("clusters") {
        None => Clusters::Auto {
            cf_model: model.to_string(),
        },
        Some(Value::Bool(false)) => Clusters::Off,
        Some(Value::Object(m)) => {
            if let Some(k) = m
                .keys()
                .find(|k| !["cf_model", "k", "seed"].contains(&k.as_str()))
            {
                raise_hint(
                    ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("unknown key \"{k}\" in option \"clusters\" of {F}"),
                    example,
                );
            }
            let cf_model = match m.get("cf_model") {
                None | Some(Value::Null) => model.to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(v) => o.bad("clusters", "an object whose cf_model is a model name", v),
            };
            let k = match m.get("k") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    v.as_u64()
                        .filter(|k| (2..=50).contains(k))
                        .unwrap_or_else(|| o.bad("clusters", "an object whose k is 2 to 50", v))
                        as usize,
                ),
            };
            let seed = match m.get("seed") {
                None | Some(Value::Null) => 42,
                Some(v) => v.as_u64().unwrap_or_else(|| {
                    o.bad(
                        "clusters",
                        "an object whose seed is a non-negative integer",
                        v,
                    )
                }),
            };
            Clusters::Given { cf_model, k, seed }
        }
        Some(v) => o.bad("clusters", "false or an object (cf_model, k, seed)", v),
    }
}

/// The taste clusters asked for; `Err` with the reason when `Auto` finds no usable cf model.
fn fit_taste(c: &Clusters) -> Result<Option<TasteClusters>, String> {
    let (cf_model, k, seed, strict) = match c {
        Clusters::Off => return Ok(None),
        Clusters::Auto { cf_model } => (cf_model.as_str(), None, 42, false),
        Clusters::Given { cf_model, k, seed } => (cf_model.as_str(), *k, *seed, true),
    };
    let fail = |why: String| -> Result<Option<TasteClusters>, String> {
        if strict {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("taste clusters: {why}"),
                "Name a cf model with user factors (svd, svdpp or als) in \"clusters\", or \
                 pass '{\"clusters\": false}'.",
            )
        }
        Err(why)
    };
    let version = select_one::<i32>(
        "SELECT version FROM persona.cf_active WHERE model = $1",
        &[cf_model.into()],
        "persona.cf_active",
    );
    let Some(version) = version else {
        return fail(format!("no cf model \"{cf_model}\""));
    };
    let cf = crate::model_store::active(cf_model);
    // Names from the categories of what the cf model's users rated in its training (the model's
    // own data, whatever relation it was trained on); the categories from persona.items.
    let categories: std::collections::HashMap<i64, String> = Spi::connect(|client| {
        select(
            client,
            "SELECT item_id::pg_catalog.int8, category FROM persona.items \
              WHERE category IS NOT NULL",
            None,
            &[],
            "persona.items",
        )
        .filter_map(|r| {
            Some((
                r.column::<i64>(1, "item_id")?,
                r.column::<String>(2, "category")?,
            ))
        })
        .collect()
    });
    let counts = persona_core::taste::category_counts(&cf, &categories);
    match persona_core::taste::fit(&cf, cf_model, version, k, seed, &counts, &mut Interrupts) {
        Err(persona_core::CoreError::Cancelled) => crate::error::cancelled(),
        Ok(t) => Ok(Some(t)),
        Err(e) => fail(e.to_string()),
    }
}

/// Stores a new version of `name` and makes it active (as cf models: the caller's transaction,
/// the name's lock, the caller recorded; the store's owner writes).
fn save(name: &str, orders: &str, params: &Value, summary: &Value) -> i32 {
    write(
        "SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('persona.profile:' || $1))",
        &[name.into()],
        "the lock of a portrait model",
    );
    model_acl::check_create(Store::Profile);
    model_acl::check_owner(Store::Profile, name, "train a new version of");
    let me = model_acl::current_role();
    model_acl::as_store_owner(|| {
        // The number first, then a plain INSERT ... VALUES: what Citus can replicate.
        let version = crate::model_store::next_version("persona.profile_model_versions", name);
        let version = write_one::<i32>(
            "INSERT INTO persona.profile_model_versions (model, version, orders, params, summary, \
             created_by) VALUES ($1, $2, $3, $4, $5, $6) RETURNING version",
            &[
                name.into(),
                version.into(),
                orders.into(),
                JsonB(params.clone()).into(),
                JsonB(summary.clone()).into(),
                me.name.as_str().into(),
            ],
            "persona.profile_model_versions",
        )
        .unwrap_or_else(|| {
            raise_hint(
                ERRCODE_INTERNAL_ERROR,
                "storing the portrait model returned no version",
                "Retry.",
            )
        });
        write(
            "INSERT INTO persona.profile_active (model, version, owner) \
             VALUES ($1, $2, $3::pg_catalog.regrole) \
             ON CONFLICT (model) DO UPDATE SET version = EXCLUDED.version",
            &[name.into(), version.into(), me.regrole_input().into()],
            "persona.profile_active",
        );
        version
    })
}

/// Makes `version` the active version of portrait model `model`.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn profile_deploy(model: &str, version: i32) -> JsonB {
    if !model_acl::check_owner(Store::Profile, model, "deploy a version of") {
        raise(
            ERRCODE_UNDEFINED_OBJECT,
            format!("portrait model \"{model}\" does not exist"),
            Some("Train it with SELECT profile_train(); see persona.profile_models.".into()),
        );
    }
    let exists = select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM persona.profile_model_versions \
          WHERE model = $1 AND version = $2)",
        &[model.into(), version.into()],
        "persona.profile_model_versions",
    )
    .unwrap_or(false);
    if !exists {
        let versions = select_one::<String>(
            "SELECT pg_catalog.string_agg(version::text, ', ' ORDER BY version) FROM \
             persona.profile_model_versions WHERE model = $1",
            &[model.into()],
            "persona.profile_model_versions",
        )
        .unwrap_or_default();
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("portrait model \"{model}\" has no version {version}"),
            format!("Its versions are: {versions}."),
        );
    }
    model_acl::as_store_owner(|| {
        write(
            "UPDATE persona.profile_active SET version = $2 WHERE model = $1",
            &[model.into(), version.into()],
            "persona.profile_active",
        )
    });
    JsonB(json!({"model": model, "active_version": version}))
}

/// Lets `role` (or PUBLIC) use portrait model `model`. Returns who may use it besides the owner.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn profile_model_grant(model: &str, role: &str) -> Vec<String> {
    model_acl::change_use(Store::Profile, model, role, true)
}

/// Takes back the use of portrait model `model` from `role` (or PUBLIC).
#[pg_extern(volatile, strict, parallel_unsafe)]
fn profile_model_revoke(model: &str, role: &str) -> Vec<String> {
    model_acl::change_use(Store::Profile, model, role, false)
}

/// A section that is not there, and why.
fn absent(reason: impl Into<String>) -> Value {
    json!({"available": false, "reason": reason.into()})
}

/// The active portrait model `model` and its readable orders relation, or the reason the
/// sections cannot be given.
fn usable_model(
    client: &pgrx::spi::SpiClient<'_>,
    model: &str,
) -> Result<(i32, String, PortraitModel), String> {
    // A catalog older than portrait models (before ALTER EXTENSION UPDATE).
    let has_tables = first(
        client,
        "SELECT pg_catalog.to_regclass('persona.profile_active') IS NOT NULL",
        &[],
        "pg_class",
    )
    .and_then(|r| r.column::<bool>(1, "exists"))
    .unwrap_or(false);
    if !has_tables {
        return Err(
            "the catalog predates portrait models: ALTER EXTENSION pg_persona UPDATE".into(),
        );
    }
    let row = select(
        client,
        "SELECT a.version, v.orders, v.params FROM persona.profile_active a \
           LEFT JOIN persona.profile_model_versions v USING (model, version) WHERE a.model = $1",
        Some(1),
        &[model.into()],
        "persona.profile_active",
    );
    if row.is_empty() {
        return Err(format!(
            "no portrait model \"{model}\" (train one with SELECT profile_train())"
        ));
    }
    let row = row.first();
    let version: i32 = row.column(1, "version").unwrap_or(0);
    // No foreign key keeps the active version (so that Citus can replicate the tables).
    let Some(orders) = row.column::<String>(2, "orders") else {
        return Err(format!(
            "the active version {version} of portrait model \"{model}\" is missing from \
             persona.profile_model_versions (deploy another with profile_deploy)"
        ));
    };
    let params: Option<JsonB> = row.column(3, "params");
    let Some(portrait) = params.and_then(|p| serde_json::from_value::<PortraitModel>(p.0).ok())
    else {
        return Err(format!(
            "portrait model \"{model}\" version {version} cannot be read"
        ));
    };
    // Pushed down to a Citus worker, a local orders table there is not the data.
    crate::citus::check_read("user_profile", &orders);
    let readable = first(
        client,
        "SELECT pg_catalog.has_table_privilege(c.oid, 'SELECT') FROM pg_catalog.pg_class c \
          WHERE c.oid = pg_catalog.to_regclass($1)",
        &[orders.as_str().into()],
        "pg_class",
    )
    .and_then(|r| r.column::<bool>(1, "privilege"));
    match readable {
        None => Err(format!(
            "the model's orders relation {orders} no longer exists"
        )),
        Some(false) => Err(format!(
            "no SELECT privilege on the orders relation {orders}"
        )),
        Some(true) => Ok((version, orders, portrait)),
    }
}

/// The two sections of one customer's summary under a model.
fn apply(version: i32, portrait: &PortraitModel, s: &Summary) -> (Value, Value) {
    let mut lifetime = portrait.lifetime(&s.customer);
    lifetime["model_version"] = json!(version);
    let rfm = serde_json::to_value(portrait.rfm(&s.customer, s.total_value)).unwrap_or(Value::Null);
    (lifetime, rfm)
}

/// How many similar users a portrait's taste cluster lists.
const SIMILAR_USERS: usize = 5;

/// The sections of many users, from one read of their orders.
pub struct Sections {
    by_user: std::collections::HashMap<i64, (Value, Value)>,
    /// For users without their own: why (no model, no orders, ...).
    otherwise: Value,
    /// The taste clusters and the cf model they were fitted on, or why there are none.
    taste: Result<(TasteClusters, std::rc::Rc<persona_core::cf::CfModel>), Value>,
    /// Similar users computed ahead for many users at once ([`Sections::prepare_similar`]).
    similar: std::collections::HashMap<i64, Vec<(i64, f32)>>,
}

impl Sections {
    /// The users with their own sections (customers with orders).
    pub fn customers(&self) -> impl Iterator<Item = i64> + '_ {
        self.by_user.keys().copied()
    }

    /// Computes the similar users of every one of `users` in one pass over the cf model's factors
    /// (on `persona.training_threads` threads) for [`Sections::taste_for`]: one user at a time
    /// costs a scan of every user each.
    pub fn prepare_similar(&mut self, users: &[i64]) {
        let Ok((_, cf)) = &self.taste else {
            return;
        };
        let threads = Threads::new(crate::settings::training_threads()).or_raise();
        // A cancel stops the scoring threads; error::core raises it as the interrupt.
        let lists = cf
            .similar_users_many(users, SIMILAR_USERS, &threads, &mut Interrupts)
            .unwrap_or_else(|e| crate::error::core(e, None));
        self.similar = users
            .iter()
            .zip(lists)
            .filter_map(|(&u, l)| Some((u, l?)))
            .collect();
    }

    /// The user's two sections.
    pub fn for_user(&mut self, user_id: i64) -> (Value, Value) {
        self.by_user
            .remove(&user_id)
            .unwrap_or_else(|| (self.otherwise.clone(), self.otherwise.clone()))
    }

    /// The user's `taste_cluster` section: its cluster, the cluster's name and size, and the 5
    /// most similar users of the cf model.
    pub fn taste_for(&self, user_id: i64) -> Value {
        let (t, cf) = match &self.taste {
            Ok(x) => x,
            Err(why) => return why.clone(),
        };
        match t.cluster_of(cf, user_id) {
            None => absent(format!("the user is not in cf model \"{}\"", t.cf_model)),
            Some(c) => json!({
                "cluster": c + 1,
                "name": t.names[c],
                "users": t.sizes[c],
                "of": t.centroids.len(),
                "cf_model": t.cf_model,
                "similar_users": self.similar.get(&user_id).cloned()
                    .or_else(|| cf.similar_users_many(&[user_id], SIMILAR_USERS, &Threads::current(), &mut NoMonitor)
                        .ok()?.pop().flatten())
                    .unwrap_or_default().into_iter()
                    .map(|(u, s)| json!({"user_id": u, "similarity": (f64::from(s) * 1000.0).round() / 1000.0}))
                    .collect::<Vec<_>>(),
            }),
        }
    }
}

/// [`sections`] for `users` (every customer of the orders relation when `None`).
pub fn sections_many(
    users: Option<&[i64]>,
    model: &str,
    as_of: Option<TimestampWithTimeZone>,
) -> Sections {
    let read = Spi::connect(|client| {
        let (version, orders, portrait) = usable_model(client, model)?;
        let rows = daily_orders(client, &orders, users, as_of);
        let today = day_of(client, as_of);
        Ok::<_, String>((version, portrait, summarise(&rows, today)))
    });
    let (version, portrait, summaries) = match read {
        Ok(r) => r,
        Err(why) => {
            return Sections {
                by_user: Default::default(),
                otherwise: absent(why.clone()),
                taste: Err(absent(why)),
                similar: Default::default(),
            }
        }
    };
    let taste = match (&portrait.taste, &portrait.taste_unavailable) {
        (Some(t), _) => {
            let active = select_one::<i32>(
                "SELECT version FROM persona.cf_active WHERE model = $1",
                &[t.cf_model.as_str().into()],
                "persona.cf_active",
            );
            match active {
                None => Err(absent(format!(
                    "cf model \"{}\" of the taste clusters does not exist or is not usable",
                    t.cf_model
                ))),
                Some(v) if v != t.cf_version => Err(absent(format!(
                    "the taste clusters were fitted on version {} of cf model \"{}\", now at \
                     version {v}: train the portrait model again",
                    t.cf_version, t.cf_model
                ))),
                Some(_) => Ok((t.clone(), crate::model_store::active(&t.cf_model))),
            }
        }
        (None, why) => {
            Err(absent(why.clone().unwrap_or_else(|| {
                "the portrait model has no taste clusters".into()
            })))
        }
    };
    Sections {
        by_user: summaries
            .iter()
            .map(|s| (s.customer_id, apply(version, &portrait, s)))
            .collect(),
        otherwise: absent("no orders"),
        taste,
        similar: Default::default(),
    }
}
