//! `user_profile(user)`: a portrait of one user as JSON, from the extension's tables
//! (`persona.ratings`, `persona.items`, `persona.campaign_events`, `persona.feedback`) and a
//! cf model: activity, taste, segment, churn risk, campaign history, feedback, what to show next.

use persona_core::profile::Activity;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Value};

use crate::feedback::{self, FeedbackOf};
use crate::model_store;
use crate::options::required;
use crate::spi::{first, Columns};

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
        let as_of = || -> pgrx::datum::DatumWithOid<'static> {
            match at {
                Some(t) => t.into(),
                None => pgrx::datum::DatumWithOid::null::<TimestampWithTimeZone>(),
            }
        };
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

/// The portrait of `user_id` as of `as_of` (default: now). Recommendations come from `model` when
/// it exists (otherwise `next` is null).
#[pg_extern(stable, parallel_safe)]
fn user_profile(
    user_id: Option<i64>,
    model: default!(Option<&str>, "'default'"),
    as_of: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> Option<JsonB> {
    let user_id = user_id?;
    let model = required(model, "model", "user_profile");
    let u = read_user(user_id, model, as_of);
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
    let next = if u.has_model {
        let m = model_store::active(model);
        let recs = m.recommend(user_id, 5, true);
        json!({
            "model": model,
            "known_user": m.users.get(user_id).is_some(),
            "items": recs
                .into_iter()
                .map(|(i, s)| json!({"item_id": i, "score": round(f64::from(s))}))
                .collect::<Vec<_>>(),
        })
    } else {
        Value::Null
    };
    // Mean positive-label probability of the user's feedback texts (null without feedback, or
    // when the sentiment model cannot be used).
    let sentiment = crate::bert::mean_sentiment(&u.bodies)
        .ok()
        .flatten()
        .map(round);
    // Lifetime and RFM from the portrait model of the same name, when there is one.
    let (lifetime, rfm) = crate::profile_model::sections(user_id, model, as_of);
    let (churn_risk, churn_model) = match lifetime.get("churn_risk").and_then(Value::as_f64) {
        Some(r) => (Some(r), "bg/nbd"),
        None => (a.churn_risk().map(round), "heuristic"),
    };
    Some(JsonB(json!({
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
        "campaigns": u.campaigns,
        "feedback": u.feedback,
        "sentiment": sentiment,
        "next": next,
    })))
}
