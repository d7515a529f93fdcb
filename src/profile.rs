//! `user_profile(user)`: a portrait of one user as JSON, from the extension's tables
//! (`persona.ratings`, `persona.items`, `persona.campaign_events`, `persona.feedback`) and a
//! cf model: activity, taste, segment, churn risk, campaign history, feedback, what to show next.

use persona_core::profile::Activity;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use std::collections::HashMap;

use serde_json::{json, Value};

use crate::feedback::{self, FeedbackOf};
use crate::model_store;
use crate::options::required;
use crate::spi::{first, select, Columns};

/// The one jsonb value of a one-row query (JSON null when it is NULL).
fn one_json(
    client: &pgrx::spi::SpiClient<'_>,
    sql: &str,
    args: Vec<pgrx::datum::DatumWithOid<'_>>,
) -> Value {
    first(client, sql, &args, "the user's rows")
        .and_then(|r| r.column::<JsonB>(1, "jsonb"))
        .map_or(Value::Null, |j| j.0)
}

/// What a portrait reads about one user, as the calling role.
struct UserRows {
    /// Ratings: count, mean, first and last.
    activity: Value,
    /// The user's top categories.
    taste: Value,
    /// Per campaign: arm, exposures, clicks, conversions, revenue.
    campaigns: Value,
    /// Feedback count and last date.
    feedback: Value,
    /// Feedback texts.
    bodies: Vec<String>,
    /// Whether the cf model exists.
    has_model: bool,
}

fn read_user(user_id: i64, model: &str, at: Option<TimestampWithTimeZone>) -> UserRows {
    Spi::connect(|client| {
        let as_of = || -> pgrx::datum::DatumWithOid<'static> { at.into() };
        let activity = one_json(
            client,
            "SELECT pg_catalog.jsonb_build_object( \
                 'ratings', count(*), 'mean_rating', round(avg(rating)::numeric, 3), \
                 'first_days_ago', extract(epoch FROM COALESCE($2, now()) - min(rated_at)) / \
                 86400, \
                 'last_days_ago', extract(epoch FROM COALESCE($2, now()) - max(rated_at)) / 86400, \
                 'first_at', min(rated_at), 'last_at', max(rated_at)) \
             FROM persona.ratings WHERE user_id = $1 AND rated_at <= COALESCE($2, now())",
            vec![user_id.into(), as_of()],
        );
        let taste = one_json(
            client,
            "SELECT COALESCE(pg_catalog.jsonb_agg(t ORDER BY t.ratings DESC, t.mean_rating DESC, \
             t.category), '[]') FROM ( \
                 SELECT i.category, count(*) AS ratings, round(avg(r.rating)::numeric, 3) AS \
                 mean_rating \
                   FROM persona.ratings r JOIN persona.items i USING (item_id) \
                  WHERE r.user_id = $1 AND i.category IS NOT NULL AND r.rated_at <= COALESCE($2, \
                  now()) \
                  GROUP BY i.category ORDER BY count(*) DESC, avg(r.rating) DESC, i.category \
                  LIMIT 3) t",
            vec![user_id.into(), as_of()],
        );
        let campaigns = one_json(
            client,
            "SELECT COALESCE(pg_catalog.jsonb_agg(c ORDER BY c.campaign), '[]') FROM ( \
                 SELECT campaign, min(arm) AS arm, \
                        count(*) FILTER (WHERE event = 'exposure') AS exposures, \
                        count(*) FILTER (WHERE event = 'click') AS clicks, \
                        count(*) FILTER (WHERE event = 'conversion') AS conversions, \
                        COALESCE(sum(value) FILTER (WHERE event = 'conversion'), 0) AS revenue \
                   FROM persona.campaign_events WHERE user_id = $1 AND occurred_at <= \
                   COALESCE($2, now()) \
                  GROUP BY campaign) c",
            vec![user_id.into(), as_of()],
        );
        let feedback = one_json(
            client,
            "SELECT pg_catalog.jsonb_build_object('count', count(*), 'last_at', max(created_at)) \
               FROM persona.feedback WHERE user_id = $1 AND created_at <= COALESCE($2, now())",
            vec![user_id.into(), as_of()],
        );
        let bodies = feedback::texts(client, FeedbackOf::User { user_id, as_of: at });
        let has_model = first(
            client,
            "SELECT 1 FROM persona.cf_active WHERE model = $1",
            &[model.into()],
            "persona.cf_active",
        )
        .is_some();
        UserRows {
            activity,
            taste,
            campaigns,
            feedback,
            bodies,
            has_model,
        }
    })
}

/// A portrait from what was read about the user: `cf` is the cf model when it exists, `sections`
/// the lifetime and rfm sections.
fn portrait(
    user_id: i64,
    model: &str,
    u: &UserRows,
    cf: Option<&persona_core::cf::CfModel>,
    sentiment: Option<f64>,
    (lifetime, rfm): (Value, Value),
    taste_cluster: Value,
) -> Value {
    let n = u
        .activity
        .get("ratings")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let days = |k: &str| {
        u.activity.get(k).and_then(|v| {
            v.as_f64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
    };
    let a = Activity {
        events: n,
        first_days_ago: days("first_days_ago").unwrap_or(0.0),
        last_days_ago: days("last_days_ago").unwrap_or(0.0),
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    let next = match cf {
        Some(m) => {
            let recs = m.recommend(user_id, 5, true);
            json!({
                "model": model,
                "known_user": m.users.get(user_id).is_some(),
                "items": recs
                    .into_iter()
                    .map(|(i, s)| json!({"item_id": i, "score": round(f64::from(s))}))
                    .collect::<Vec<_>>(),
            })
        }
        None => Value::Null,
    };
    let (churn_risk, churn_model) = match lifetime.get("churn_risk").and_then(Value::as_f64) {
        Some(r) => (Some(r), "bg/nbd"),
        None => (a.churn_risk().map(round), "heuristic"),
    };
    json!({
        "user_id": user_id,
        "activity": {
            "ratings": n,
            "mean_rating": u.activity.get("mean_rating"),
            "first_at": u.activity.get("first_at"),
            "last_at": u.activity.get("last_at"),
            "days_since_last": (n > 0).then(|| round(a.last_days_ago)),
            "mean_gap_days": a.mean_gap_days().map(round),
        },
        "taste": u.taste,
        "segment": a.segment(),
        "churn_risk": churn_risk,
        "churn_model": churn_model,
        "lifetime": lifetime,
        "rfm": rfm,
        "taste_cluster": taste_cluster,
        "campaigns": u.campaigns,
        "feedback": u.feedback,
        "sentiment": sentiment.map(round),
        "next": next,
    })
}

/// Mean positive-label probability of the user's feedback texts (null without feedback, or when
/// the sentiment model cannot be used).
fn sentiment(bodies: &[String]) -> Option<f64> {
    crate::bert::mean_sentiment(bodies).ok().flatten()
}

/// The portrait of `user_id` as of `as_of` (default: now). Recommendations come from `model` when
/// it exists (otherwise `next` is null); lifetime and RFM from the portrait model of that name.
#[pg_extern(stable, parallel_safe)]
fn user_profile(
    user_id: Option<i64>,
    model: default!(Option<&str>, "'default'"),
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let user_id = user_id?;
    let model = required(model, "model", "user_profile");
    crate::citus::data_reads("user_profile", PORTRAIT_SOURCES, || {
        user_profile_of(user_id, model, as_of)
    })
}

/// What a portrait reads besides the models (and the portrait model's orders relation).
const PORTRAIT_SOURCES: &[&str] = &[
    "persona.users",
    "persona.ratings",
    "persona.items",
    "persona.campaign_events",
    "persona.feedback",
    "persona.profile_active",
];

fn user_profile_of(
    user_id: i64,
    model: &str,
    as_of: Option<TimestampWithTimeZone>,
) -> Option<JsonB> {
    let u = read_user(user_id, model, as_of);
    let cf = u.has_model.then(|| model_store::active(model));
    let mut sections = crate::profile_model::sections_many(Some(&[user_id]), model, as_of);
    let taste = sections.taste_for(user_id);
    Some(JsonB(portrait(
        user_id,
        model,
        &u,
        cf.as_deref(),
        sentiment(&u.bodies),
        sections.for_user(user_id),
        taste,
    )))
}

/// Per user, the one jsonb value of a query grouped by user (`user_id`, `jsonb`).
fn per_user_json(
    client: &pgrx::spi::SpiClient<'_>,
    sql: &str,
    users: &[i64],
    at: Option<TimestampWithTimeZone>,
) -> HashMap<i64, Value> {
    let as_of = at.into();
    select(
        client,
        sql,
        None,
        &[users.to_vec().into(), as_of],
        "the users' rows",
    )
    .filter_map(|r| {
        Some((
            r.column::<i64>(1, "user_id")?,
            r.column::<JsonB>(2, "jsonb")?.0,
        ))
    })
    .collect()
}

/// What a portrait reads, for many users at once: one grouped query per source.
fn read_users(users: &[i64], model: &str, at: Option<TimestampWithTimeZone>) -> Vec<UserRows> {
    Spi::connect(|client| {
        let activity = per_user_json(
            client,
            "SELECT user_id, pg_catalog.jsonb_build_object( \
                 'ratings', count(*), 'mean_rating', round(avg(rating)::numeric, 3), \
                 'first_days_ago', extract(epoch FROM COALESCE($2, now()) - min(rated_at)) / \
                 86400, \
                 'last_days_ago', extract(epoch FROM COALESCE($2, now()) - max(rated_at)) / 86400, \
                 'first_at', min(rated_at), 'last_at', max(rated_at)) \
             FROM persona.ratings WHERE user_id = ANY ($1) AND rated_at <= COALESCE($2, now()) \
             GROUP BY user_id",
            users,
            at,
        );
        let taste = per_user_json(
            client,
            "SELECT user_id, pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('category', \
                    category, 'ratings', ratings, 'mean_rating', mean_rating) \
                    ORDER BY ratings DESC, mean_rating DESC, category) FROM ( \
                 SELECT r.user_id, i.category, count(*) AS ratings, \
                        round(avg(r.rating)::numeric, 3) AS mean_rating, \
                        row_number() OVER (PARTITION BY r.user_id \
                          ORDER BY count(*) DESC, avg(r.rating) DESC, i.category) AS rank \
                   FROM persona.ratings r JOIN persona.items i USING (item_id) \
                  WHERE r.user_id = ANY ($1) AND i.category IS NOT NULL \
                    AND r.rated_at <= COALESCE($2, now()) \
                  GROUP BY r.user_id, i.category) t WHERE rank <= 3 GROUP BY user_id",
            users,
            at,
        );
        let campaigns = per_user_json(
            client,
            "SELECT user_id, pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object('campaign', \
                    campaign, 'arm', arm, 'exposures', exposures, 'clicks', clicks, \
                    'conversions', conversions, 'revenue', revenue) ORDER BY campaign) FROM ( \
                 SELECT user_id, campaign, min(arm) AS arm, \
                        count(*) FILTER (WHERE event = 'exposure') AS exposures, \
                        count(*) FILTER (WHERE event = 'click') AS clicks, \
                        count(*) FILTER (WHERE event = 'conversion') AS conversions, \
                        COALESCE(sum(value) FILTER (WHERE event = 'conversion'), 0) AS revenue \
                   FROM persona.campaign_events WHERE user_id = ANY ($1) \
                    AND occurred_at <= COALESCE($2, now()) \
                  GROUP BY user_id, campaign) c GROUP BY user_id",
            users,
            at,
        );
        let feedback = per_user_json(
            client,
            "SELECT user_id, pg_catalog.jsonb_build_object('count', count(*), \
                    'last_at', max(created_at)) \
               FROM persona.feedback WHERE user_id = ANY ($1) \
                AND created_at <= COALESCE($2, now()) GROUP BY user_id",
            users,
            at,
        );
        let as_of = at.into();
        let mut bodies: HashMap<i64, Vec<String>> = HashMap::new();
        for r in select(
            client,
            "SELECT user_id, body FROM persona.feedback WHERE body IS NOT NULL \
                AND user_id = ANY ($1) AND created_at <= COALESCE($2, pg_catalog.now())",
            None,
            &[users.to_vec().into(), as_of],
            "persona.feedback",
        ) {
            if let (Some(u), Some(b)) =
                (r.column::<i64>(1, "user_id"), r.column::<String>(2, "body"))
            {
                bodies.entry(u).or_default().push(b);
            }
        }
        let has_model = first(
            client,
            "SELECT 1 FROM persona.cf_active WHERE model = $1",
            &[model.into()],
            "persona.cf_active",
        )
        .is_some();
        let empty_activity = json!({"ratings": 0, "mean_rating": null, "first_days_ago": null,
            "last_days_ago": null, "first_at": null, "last_at": null});
        let (mut activity, mut taste, mut campaigns, mut feedback) =
            (activity, taste, campaigns, feedback);
        users
            .iter()
            .map(|u| UserRows {
                activity: activity.remove(u).unwrap_or_else(|| empty_activity.clone()),
                taste: taste.remove(u).unwrap_or_else(|| json!([])),
                campaigns: campaigns.remove(u).unwrap_or_else(|| json!([])),
                feedback: feedback
                    .remove(u)
                    .unwrap_or_else(|| json!({"count": 0, "last_at": null})),
                bodies: bodies.remove(u).unwrap_or_default(),
                has_model,
            })
            .collect()
    })
}

/// Portraits of many users in one call: `users` (default: every user of `persona.users`,
/// `persona.ratings`, `persona.campaign_events` and the portrait model's customers), each row
/// equal to `user_profile(user_id, model, as_of)`, from one grouped query per source and one pass
/// in Rust instead of one call per user.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn user_profiles(
    users: default!(Option<Vec<Option<i64>>>, "NULL"),
    model: default!(Option<&str>, "'default'"),
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> TableIterator<'static, (name!(user_id, i64), name!(profile, JsonB))> {
    let model = required(model, "model", "user_profiles");
    crate::citus::data_reads("user_profiles", PORTRAIT_SOURCES, || {
        user_profiles_of(users, model, as_of)
    })
}

#[allow(clippy::type_complexity)]
fn user_profiles_of(
    users: Option<Vec<Option<i64>>>,
    model: &str,
    as_of: Option<TimestampWithTimeZone>,
) -> TableIterator<'static, (name!(user_id, i64), name!(profile, JsonB))> {
    let every_user = users.is_none();
    let mut ids: Vec<i64> = match users {
        Some(list) => list.into_iter().flatten().collect(),
        None => Spi::connect(|client| {
            select(
                client,
                "SELECT user_id FROM persona.users UNION SELECT user_id FROM persona.ratings \
                 UNION SELECT user_id FROM persona.campaign_events",
                None,
                &[],
                "the users",
            )
            .filter_map(|r| r.column::<i64>(1, "user_id"))
            .collect()
        }),
    };
    let mut sections = crate::profile_model::sections_many(
        if every_user {
            None
        } else {
            Some(ids.as_slice())
        },
        model,
        as_of,
    );
    if every_user {
        // The portrait model's customers are users too.
        ids.extend(sections.customers());
    }
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return TableIterator::new(Vec::new());
    }
    let rows = read_users(&ids, model, as_of);
    sections.prepare_similar(&ids);
    let cf = rows
        .first()
        .is_some_and(|u| u.has_model)
        .then(|| model_store::active(model));
    // Score every feedback text once (the per-user means then read the scores back).
    let all: Vec<String> = rows.iter().flat_map(|u| u.bodies.iter().cloned()).collect();
    let _ = crate::bert::mean_sentiment(&all);
    let mut out = Vec::with_capacity(ids.len());
    for (&id, u) in ids.iter().zip(&rows) {
        pgrx::check_for_interrupts!();
        let taste = sections.taste_for(id);
        let p = portrait(
            id,
            model,
            u,
            cf.as_deref(),
            sentiment(&u.bodies),
            sections.for_user(id),
            taste,
        );
        out.push((id, JsonB(p)));
    }
    TableIterator::new(out)
}
