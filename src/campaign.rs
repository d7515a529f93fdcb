//! SQL API of campaign evaluation. The heavy lifting is one aggregate query per call (per user,
//! then per arm) that the planner can run in parallel and Citus can push down; the statistics on
//! the handful of resulting rows are `persona_core::stats`.

use std::collections::{HashMap, HashSet};

use persona_core::stats::{
    analyse, attribute_costs, campaign_report, covariate_mean, minimum_detectable_effect,
    qini_auc_score, segment_groups, uplift_at_k, uplift_auc_score,
    users_per_arm as users_per_arm_for, ArmAggregate, Baseline, CampaignCost, CappedRevenue,
    CovariateSums, PowerError, RatioMoments, UpliftObservation, UpliftStrategy,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use crate::campaign_options::{self, Arg, Capping, Covariate, ReportOptions};
use crate::error::{raise_hint, OrRaise};
use crate::feedback::{self, FeedbackOf};
use crate::json::Jsonb;
use crate::model_store;
use crate::options::{check_k, required};
use crate::settings;
use crate::source::{checked_relation, ColumnKind};
use crate::spi::{select, select_one, select_user, Columns};

/// A campaign's row in `persona.campaigns`, with its events relation resolved and checked.
pub(crate) struct CampaignInfo {
    pub(crate) events: String,
    control_arm: String,
    planned_split: Option<Vec<(String, f64)>>,
    cost: Option<f64>,
    /// Each arm's own cost (`persona.campaigns.arm_costs`), when given.
    arm_costs: Option<HashMap<String, f64>>,
    items: Vec<i64>,
    starts_at: Option<String>,
    ends_at: Option<String>,
    channel: Option<String>,
}

/// A column of `persona.campaigns` holding a `{arm: number}` object.
struct ArmNumbers {
    column: &'static str,
    /// What a number is, in the error message ("weight", "cost").
    noun: &'static str,
    valid: fn(f64) -> bool,
    /// Hint for a number that is not valid.
    hint: &'static str,
    example: &'static str,
}

const PLANNED_SPLIT: ArmNumbers = ArmNumbers {
    column: "planned_split",
    noun: "weight",
    valid: |w| w > 0.0,
    hint: "Weights must be positive numbers, e.g. {\"treatment\": 0.5, \"control\": 0.5}.",
    example: "e.g. {\"treatment\": 0.5, \"control\": 0.5}",
};

const ARM_COSTS: ArmNumbers = ArmNumbers {
    column: "arm_costs",
    noun: "cost",
    valid: f64::is_finite,
    hint: "Costs are numbers, e.g. UPDATE persona.campaigns SET arm_costs = '{\"email\": 800, \
           \"push\": 300}' WHERE campaign = ...",
    example: "e.g. {\"email\": 800, \"push\": 300}",
};

/// The `(arm, number)` pairs of `value`, read as `what` of campaign `campaign`: a 22023 ERROR
/// naming the arm for a number that is not valid, or when `value` is not an object (the
/// table's CHECK constraints normally keep that out).
fn arm_numbers(campaign: &str, value: Value, what: &ArmNumbers) -> Vec<(String, f64)> {
    let Value::Object(m) = value else {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{} must be a JSON object", what.column),
            what.example,
        )
    };
    m.into_iter()
        .map(|(arm, v)| match v.as_f64() {
            Some(x) if (what.valid)(x) => (arm, x),
            _ => raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!(
                    "{} of campaign \"{campaign}\" gives arm \"{arm}\" the {} {v}",
                    what.column, what.noun
                ),
                what.hint,
            ),
        })
        .collect()
}

pub(crate) fn campaign_info(client: &SpiClient<'_>, campaign: &str) -> CampaignInfo {
    // Pushed down to a Citus worker, persona.campaigns there is not the coordinator's.
    crate::citus::check_read("campaign functions", "persona.campaigns");
    let row = select(
        client,
        "SELECT COALESCE(c.events, 'persona.campaign_events'::regclass)::oid, c.control_arm, \
             c.planned_split, c.cost::float8, \
                    COALESCE(c.items, '{}'), \
                    pg_catalog.to_char(c.starts_at AT TIME ZONE 'UTC', \
                    'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                    pg_catalog.to_char(c.ends_at AT TIME ZONE 'UTC', \
                    'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), c.channel, \
                    pg_catalog.to_jsonb(c) -> 'arm_costs' \
             FROM persona.campaigns c WHERE c.campaign = $1",
        Some(1),
        &[campaign.into()],
        "persona.campaigns",
    );
    if row.is_empty() {
        let known = select_one::<String>(
            "SELECT pg_catalog.string_agg(campaign, ', ' ORDER BY campaign) FROM (SELECT campaign \
             FROM persona.campaigns ORDER BY campaign LIMIT 20) c",
            &[],
            "persona.campaigns",
        );
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("campaign \"{campaign}\" does not exist"),
            match known {
                Some(k) => format!(
                    "Known campaigns: {k}. Add it with INSERT INTO persona.campaigns (campaign) \
                     VALUES (...)."
                ),
                None => "persona.campaigns is empty: INSERT INTO persona.campaigns (campaign, \
                         ...) first."
                    .into(),
            },
        );
    }
    let row = row.first();
    let events_oid: pg_sys::Oid = row.column(1, "events").unwrap_or(pg_sys::InvalidOid);
    let control_arm: String = row
        .column(2, "control_arm")
        .unwrap_or_else(|| "control".into());
    let split: Option<Jsonb> = row.column(3, "planned_split");
    let cost: Option<f64> = row.column(4, "cost");
    let items: Vec<i64> = row
        .column::<Vec<Option<i64>>>(5, "items")
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .collect();
    let starts_at: Option<String> = row.column(6, "starts_at");
    let ends_at: Option<String> = row.column(7, "ends_at");
    let channel: Option<String> = row.column(8, "channel");
    // Read through to_jsonb so that this library also works on a 0.1.0 catalog, before
    // ALTER EXTENSION ... UPDATE adds the column (a JSON null and a missing key are both None).
    let arm_costs = row
        .column::<Jsonb>(9, "arm_costs")
        .filter(|j| !j.0.is_null())
        .map(|j| {
            arm_numbers(campaign, j.0, &ARM_COSTS)
                .into_iter()
                .collect::<HashMap<_, _>>()
        });
    let planned_split = split.map(|j| arm_numbers(campaign, j.0, &PLANNED_SPLIT));
    let events = checked_relation(
        client,
        events_oid,
        &[
            ("campaign", ColumnKind::Text, "campaign"),
            ("user_id", ColumnKind::Id, "user_id"),
            ("arm", ColumnKind::Text, "arm"),
            ("event", ColumnKind::Text, "event"),
            ("value", ColumnKind::Number, "value"),
            ("occurred_at", ColumnKind::Time, "occurred_at"),
        ],
    );
    CampaignInfo {
        events,
        control_arm,
        planned_split,
        cost,
        arm_costs,
        items,
        starts_at,
        ends_at,
        channel,
    }
}

/// Per-(segment, arm) aggregates; the segment is `None` without the option `segments`.
type SegmentRows = Vec<(Option<String>, ArmAggregate)>;

/// The per-arm aggregation: one pass over the campaign's events, grouped by (arm, user) and then
/// by (segment, arm), with the sums the options need (`campaign_options::aggregate_query`).
/// Events with a NULL arm form the arm '' (reported as a data warning, not analysed). Returns
/// the rows, the campaign's period and the cap used (with `capping`).
fn arm_aggregates(
    client: &SpiClient<'_>,
    info: &CampaignInfo,
    campaign: &str,
    options: &ReportOptions,
) -> (SegmentRows, Value, Option<f64>) {
    // The events relation is the user's: qualified SQL, planned on the caller's path (spi.rs).
    let query = campaign_options::aggregate_query(&info.events, options);
    let mut args: Vec<pgrx::datum::DatumWithOid<'_>> =
        vec![campaign.into(), info.control_arm.as_str().into()];
    for a in &query.args {
        args.push(match a {
            Arg::Float(x) => (*x).into(),
            Arg::Int(x) => (*x).into(),
            Arg::Text(x) => x.as_str().into(),
        });
    }
    let rows = select_user(client, &query.sql, None, &args, "the campaign's events");
    let lookback = matches!(options.covariate, Some(Covariate::Lookback { .. }));
    let (mut out, mut first, mut last, mut cap) =
        (Vec::new(), None::<String>, None::<String>, None);
    for r in rows {
        let n = |i: usize| r.column::<i64>(i, "count").unwrap_or(0).max(0) as u64;
        let f = |i: usize| r.column::<f64>(i, "sum").unwrap_or(0.0);
        let covariate = |i: usize, proportion: bool| CovariateSums {
            users: n(i),
            sum: f(i + 1),
            sum_squares: f(i + 2),
            cross: f(i + 3),
            metric_sum: f(i + 4),
            proportion,
        };
        let agg = ArmAggregate {
            arm: r.column::<String>(2, "arm").unwrap_or_default(),
            users_exposed: n(3),
            exposures: n(4),
            clicks: n(5),
            users_clicked: n(6),
            conversions: n(7),
            users_converted: n(8),
            revenue: f(9),
            revenue_sumsq: f(10),
            cost: None,
            // Per-user sums of clicks and exposures: the CTR is tested with users as the unit.
            ctr_moments: Some(RatioMoments {
                n: n(13),
                num_sum: n(5) as f64,
                den_sum: n(4) as f64,
                num_sumsq: f(14),
                den_sumsq: f(15),
                cross_sum: f(16),
            }),
            capped_revenue: options.capping.map(|_| CappedRevenue {
                sum: f(17),
                sum_squares: f(18),
                users_capped: n(19),
            }),
            conversion_covariate: options.covariate.as_ref().map(|_| covariate(20, lookback)),
            revenue_covariate: options.covariate.as_ref().map(|_| covariate(25, false)),
        };
        cap = cap.or(r.column::<f64>(30, "cap"));
        let (a, b): (Option<String>, Option<String>) =
            (r.column(11, "first_at"), r.column(12, "last_at"));
        if a.is_some() && (first.is_none() || a < first) {
            first = a;
        }
        if b.is_some() && (last.is_none() || b > last) {
            last = b;
        }
        out.push((r.column::<String>(1, "segment"), agg));
    }
    (
        out,
        json!({
            "starts_at": info.starts_at,
            "ends_at": info.ends_at,
            "first_event": first,
            "last_event": last,
        }),
        cap,
    )
}

/// What the options add at the top of the report: how each was applied.
fn analysis_summary(
    options: &ReportOptions,
    arms: &[ArmAggregate],
    imputed: Option<f64>,
    cap: Option<f64>,
) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("options".into(), Value::Object(options.given.clone()));
    if let Some(c) = options.capping {
        let (kind, value) = match c {
            Capping::Percentile(v) => ("percentile", v),
            Capping::Absolute(v) => ("absolute", v),
        };
        let users: serde_json::Map<String, Value> = arms
            .iter()
            .map(|a| {
                (
                    a.arm.clone(),
                    json!(a.capped_revenue.map_or(0, |c| c.users_capped)),
                )
            })
            .collect();
        m.insert(
            "capping".into(),
            json!({"type": kind, "value": value, "cap": cap, "users_capped": users}),
        );
    }
    if let Some(cov) = &options.covariate {
        let missing: u64 = arms
            .iter()
            .map(|a| {
                a.users_exposed
                    .saturating_sub(a.revenue_covariate.map_or(0, |c| c.users))
            })
            .sum();
        let source = match cov {
            Covariate::Lookback { days, starts_at } => json!({
                "lookback_days": days,
                "until": starts_at,
                "covariates": {"conversion_rate": "converted in the window",
                               "revenue_per_user": "revenue in the window"},
            }),
            Covariate::Relation { relation, column } => json!({
                "relation": relation.name,
                "column": column,
                "users_without_covariate": missing,
                "imputed_value": if missing > 0 { json!(imputed) } else { Value::Null },
            }),
        };
        m.insert("cuped".into(), source);
    }
    if let Some(c) = options.analysis.correction {
        m.insert(
            "correction".into(),
            json!({"method": c.name(), "families": "each kind of p-value (p_value, effect, \
                   sequential, cuped) over every comparison and metric of the report"}),
        );
    }
    Value::Object(m)
}

/// The full evaluation of a campaign as JSON: per-arm metrics, each variant against control with
/// confidence intervals and tests, the sample-ratio-mismatch check and feedback satisfaction;
/// `options` add relative effects, sequential, Bayesian and CUPED results, capping,
/// corrections and segments (`campaign_options`).
#[pg_extern(stable, strict, parallel_safe, name = "campaign_metrics")]
fn campaign_metrics_with_options(campaign: &str, options: default!(Jsonb, "'{}'")) -> JsonB {
    JsonB(evaluate(campaign, &options.0))
}

/// The 0.1/0.2 one-argument entry point: kept (without SQL) so that a database still on an older
/// catalog keeps working with this library until ALTER EXTENSION ... UPDATE.
#[pg_extern(stable, strict, parallel_safe, sql = false)]
fn campaign_metrics(campaign: &str) -> JsonB {
    JsonB(evaluate(campaign, &json!({})))
}

/// The report of `campaign_metrics` as a value.
pub(crate) fn evaluate(campaign: &str, options: &Value) -> Value {
    let (info, options, rows, period, cap, feedback) = Spi::connect(|client| {
        let info = campaign_info(client, campaign);
        let options = campaign_options::read(client, options, info.starts_at.as_deref());
        let (rows, period, cap) = arm_aggregates(client, &info, campaign, &options);
        let texts = feedback::texts(client, FeedbackOf::Campaign(campaign));
        (info, options, rows, period, cap, texts)
    });
    let max = options.segments.as_ref().map_or(usize::MAX, |s| s.max);
    let (mut arms, groups) = segment_groups(rows, max);
    let cost = CampaignCost::from_columns(info.arm_costs.as_ref(), info.cost);
    attribute_costs(&mut arms, &info.control_arm, cost);
    let has_control = |arms: &[ArmAggregate]| arms.iter().any(|a| a.arm == info.control_arm);
    let control = has_control(&arms).then_some(info.control_arm.as_str());
    let alpha = settings::SIGNIFICANCE_LEVEL.get();
    let hint = "Check the campaign's planned_split and control_arm in persona.campaigns.";
    let imputed = covariate_mean(&arms);
    let report = |arms: &[ArmAggregate], control: Option<&str>| {
        let mut r = campaign_report(arms, control, info.planned_split.as_deref(), alpha)
            .or_raise_hint(hint);
        analyse(&mut r, arms, &options.analysis, imputed);
        r
    };
    let mut out = serde_json::to_value(report(&arms, control)).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut out {
        m.insert("campaign".into(), json!(campaign));
        m.insert("channel".into(), json!(info.channel));
        m.insert("period".into(), period);
        m.insert("cost".into(), json!(info.cost));
        m.insert("events_relation".into(), json!(info.events));
        m.insert("satisfaction".into(), feedback::satisfaction(&feedback));
        if !options.given.is_empty() {
            m.insert(
                "analysis".into(),
                analysis_summary(&options, &arms, imputed, cap),
            );
        }
        if let Some(s) = &options.segments {
            let reports: Vec<Value> = groups
                .iter()
                .map(|g| {
                    let control = has_control(&g.arms).then_some(info.control_arm.as_str());
                    let mut v = serde_json::to_value(report(&g.arms, control)).unwrap_or_default();
                    if let Value::Object(r) = &mut v {
                        r.insert("segment".into(), json!(g.segment));
                        r.insert("users".into(), json!(g.users));
                        r.insert("values".into(), json!(g.values));
                    }
                    v
                })
                .collect();
            let distinct: usize = groups.iter().map(|g| g.values).sum();
            m.insert(
                "segments".into(),
                json!({
                    "relation": s.relation.name,
                    "column": s.column,
                    "max": s.max,
                    "distinct_values": distinct,
                    "groups": reports,
                }),
            );
        }
    }
    out
}

/// Daily counts and rates per arm, for dashboards and reporting jobs.
#[pg_extern(stable, strict, parallel_safe)]
#[allow(clippy::type_complexity)]
fn campaign_metrics_daily(
    campaign: &str,
) -> TableIterator<
    'static,
    (
        name!(day, pgrx::datum::Date),
        name!(arm, String),
        name!(users_exposed, i64),
        name!(exposures, i64),
        name!(clicks, i64),
        name!(conversions, i64),
        name!(revenue, f64),
        name!(ctr, Option<f64>),
        name!(conversion_rate, Option<f64>),
    ),
> {
    let rows = Spi::connect(|client| {
        let info = campaign_info(client, campaign);
        let sql = format!(
            "SELECT (occurred_at AT TIME ZONE 'UTC')::pg_catalog.date AS day, \
                    COALESCE(arm::pg_catalog.text, '') AS arm, \
                    pg_catalog.count(DISTINCT user_id) \
                      FILTER (WHERE event OPERATOR(pg_catalog.=) 'exposure'), \
                    pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'exposure'), \
                    pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'click'), \
                    pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion'), \
                    COALESCE(pg_catalog.sum(value) \
                      FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion'), \
                      0)::pg_catalog.float8, \
                    pg_catalog.count(DISTINCT user_id) \
                      FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion') \
               FROM {} WHERE campaign OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2 ORDER BY 1, 2",
            info.events
        );
        let t = select(
            client,
            &sql,
            None,
            &[campaign.into()],
            "the campaign's events",
        );
        let mut out = Vec::new();
        for r in t {
            let Some(day) = r.column::<pgrx::datum::Date>(1, "day") else {
                continue;
            };
            let n = |i: usize| r.column::<i64>(i, "count").unwrap_or(0);
            let (users, exposures, clicks, conversions, converters) =
                (n(3), n(4), n(5), n(6), n(8));
            let revenue = r.column::<f64>(7, "revenue").unwrap_or(0.0);
            let ctr = (exposures > 0).then(|| clicks as f64 / exposures as f64);
            let cr = (users > 0).then(|| converters as f64 / users as f64);
            out.push((
                day,
                r.column::<String>(2, "arm").unwrap_or_default(),
                users,
                exposures,
                clicks,
                conversions,
                revenue,
                ctr,
                cr,
            ));
        }
        out
    });
    TableIterator::new(rows)
}

/// The `k` users with the highest predicted affinity for the campaign's items (or `items`) who
/// have not been exposed to the campaign yet: the audience of the next send.
#[pg_extern(stable, parallel_safe)]
fn campaign_audience(
    campaign: Option<&str>,
    k: default!(Option<i32>, 100),
    model: default!(Option<&str>, "'default'"),
    items: default!(Option<Vec<Option<i64>>>, "NULL"),
) -> TableIterator<'static, (name!(user_id, i64), name!(affinity, f32), name!(rank, i32))> {
    const F: &str = "campaign_audience";
    let campaign = required(campaign, "campaign", F);
    let items: Option<Vec<i64>> = items.map(|items| {
        items
            .into_iter()
            .map(|i| {
                i.unwrap_or_else(|| {
                    raise_hint(
                        ERRCODE_NULL_VALUE_NOT_ALLOWED,
                        "items of campaign_audience must not contain NULL",
                        "Pass item ids, e.g. items => ARRAY[1, 2, 3].",
                    )
                })
            })
            .collect()
    });
    let k = check_k(required(k, "k", F));
    let model = required(model, "model", F);
    let (items, exposed) = Spi::connect(|client| {
        let info = campaign_info(client, campaign);
        let items = items.unwrap_or(info.items.clone());
        if items.is_empty() {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("campaign \"{campaign}\" names no items"),
                "Set persona.campaigns.items for the campaign, or pass items => ARRAY[...].",
            );
        }
        let sql = format!(
            "SELECT DISTINCT user_id::pg_catalog.int8 FROM {} \
              WHERE campaign OPERATOR(pg_catalog.=) $1 AND event OPERATOR(pg_catalog.=) 'exposure'",
            info.events
        );
        let exposed: HashSet<i64> = select_user(
            client,
            &sql,
            None,
            &[campaign.into()],
            "the campaign's events",
        )
        .filter_map(|r| r.column::<i64>(1, "user_id"))
        .collect();
        (items, exposed)
    });
    let audience = model_store::active(model).audience(&items, &exposed, k);
    TableIterator::new(crate::cf::ranked(audience))
}

/// The campaign's exposed users as uplift observations (converted, score, treated), scored by
/// `scores` (a relation with `user_id` and `score`) or the cf `model`'s affinity for the
/// campaign's items; and how many exposed users had no score.
pub(crate) fn uplift_observations(
    campaign: &str,
    scores: Option<pg_sys::Oid>,
    model: &str,
) -> (Vec<UpliftObservation>, usize) {
    let (info, users, score_rows) = Spi::connect(|client| {
        let info = campaign_info(client, campaign);
        let sql = format!(
            "SELECT user_id::pg_catalog.int8, pg_catalog.bool_or(arm OPERATOR(pg_catalog.=) $2), \
                    pg_catalog.bool_or(event OPERATOR(pg_catalog.=) 'conversion') FROM {} \
              WHERE campaign OPERATOR(pg_catalog.=) $1 AND arm IS NOT NULL GROUP BY 1 \
             HAVING pg_catalog.bool_or(event OPERATOR(pg_catalog.=) 'exposure')",
            info.events
        );
        let args = [campaign.into(), info.control_arm.as_str().into()];
        let users: Vec<(i64, bool, bool)> =
            select_user(client, &sql, None, &args, "the campaign's events")
                .filter_map(|r| {
                    Some((
                        r.column::<i64>(1, "user_id")?,
                        r.column::<bool>(2, "in control")?,
                        r.column::<bool>(3, "converted")?,
                    ))
                })
                .collect();
        let score_rows: Option<Vec<(i64, f64)>> = scores.map(|oid| {
            let rel = checked_relation(
                client,
                oid,
                &[
                    ("user_id", ColumnKind::Id, "user_id"),
                    ("score", ColumnKind::Number, "score"),
                ],
            );
            let sql = format!(
                "SELECT user_id::pg_catalog.int8, score::pg_catalog.float8 FROM {rel} \
                 WHERE score IS NOT NULL"
            );
            select_user(client, &sql, None, &[], "the scores relation")
                .filter_map(|r| {
                    Some((r.column::<i64>(1, "user_id")?, r.column::<f64>(2, "score")?))
                })
                .collect()
        });
        (info, users, score_rows)
    });
    let score_of: std::collections::HashMap<i64, f64> = match score_rows {
        Some(rows) => rows.into_iter().collect(),
        None => {
            if info.items.is_empty() {
                raise_hint(
                    ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("campaign \"{campaign}\" names no items to score affinity for"),
                    "Pass scores => 'my_scores'::regclass (user_id, score), or set \
                     persona.campaigns.items.",
                );
            }
            model_store::active(model)
                .mean_affinity(&info.items, &HashSet::new())
                .into_iter()
                .map(|(u, s)| (u, s as f64))
                .collect()
        }
    };
    let obs: Vec<UpliftObservation> = users
        .iter()
        .filter_map(|&(u, is_control, converted)| {
            score_of.get(&u).map(|&s| UpliftObservation {
                y_true: converted,
                uplift: s,
                treated: !is_control,
            })
        })
        .collect();
    let unscored = users.len() - obs.len();
    (obs, unscored)
}

/// How well a targeting score finds the users the campaign moved: Qini coefficient, AUUC and
/// uplift@k (as scikit-uplift defines them) over the campaign's exposed users, with the outcome
/// "converted". The score comes from `scores` (a relation with `user_id` and `score`) or, when
/// that is NULL, from the affinity of a cf model for the campaign's items.
#[pg_extern(stable, parallel_safe)]
fn campaign_uplift(
    campaign: Option<&str>,
    scores: default!(Option<pg_sys::Oid>, "NULL"),
    model: default!(Option<&str>, "'default'"),
    k: default!(Option<f64>, 0.3),
) -> JsonB {
    const F: &str = "campaign_uplift";
    let campaign = required(campaign, "campaign", F);
    let model = required(model, "model", F);
    let k = required(k, "k", F);
    let (obs, unscored) = uplift_observations(campaign, scores, model);
    let hint = "Uplift needs scored users in both the treatment and the control arm, with and \
                without conversions.";
    JsonB(json!({
        "campaign": campaign,
        "users": obs.len(),
        "users_without_score": unscored,
        "qini_coefficient": qini_auc_score(&obs).or_raise_hint(hint),
        "auuc": uplift_auc_score(&obs).or_raise_hint(hint),
        "k": k,
        "uplift_at_k": uplift_at_k(&obs, k, UpliftStrategy::Overall).or_raise_hint(hint),
        "uplift_at_k_by_group": uplift_at_k(&obs, k, UpliftStrategy::ByGroup).or_raise_hint(hint),
        "score": if scores.is_some() { "relation" } else { "cf model affinity" },
    }))
}

/// How many users a test needs, or what it can detect: users per arm for a minimum detectable
/// effect `mde`, or the effect detectable with `users_per_arm` (give exactly one). The metric is
/// a rate when `sd` is NULL (`baseline` in (0, 1)), otherwise a mean with that standard
/// deviation; `mde` is absolute, or relative to the baseline with `relative`. Two-sided z-test at
/// `alpha` (default `persona.significance_level`) divided over `arms − 1` comparisons with the
/// control, as statsmodels' `NormalIndPower` with Cohen's h for rates (`persona_core::stats::power`).
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::too_many_arguments)]
fn campaign_power(
    baseline: Option<f64>,
    mde: default!(Option<f64>, "NULL"),
    users_per_arm: default!(Option<i64>, "NULL"),
    sd: default!(Option<f64>, "NULL"),
    alpha: default!(Option<f64>, "NULL"),
    power: default!(Option<f64>, 0.8),
    arms: default!(Option<i32>, 2),
    relative: default!(Option<bool>, false),
) -> JsonB {
    const F: &str = "campaign_power";
    let baseline = required(baseline, "baseline", F);
    let power = required(power, "power", F);
    let arms = required(arms, "arms", F);
    let relative = required(relative, "relative", F);
    let alpha = alpha.unwrap_or_else(|| settings::SIGNIFICANCE_LEVEL.get());
    let base = match sd {
        None => Baseline::Proportion { rate: baseline },
        Some(sd) => Baseline::Mean { mean: baseline, sd },
    };
    let hint = "e.g. campaign_power(0.05, mde => 0.01) for a 5% conversion rate, or \
                campaign_power(20, sd => 45, users_per_arm => 2000) for revenue per user.";
    let arms_u32 = u32::try_from(arms).unwrap_or(0);
    let result = match (mde, users_per_arm) {
        (Some(m), None) => {
            let absolute = if relative { m * baseline } else { m };
            users_per_arm_for(base, absolute, alpha, power, arms_u32)
        }
        (None, Some(n)) => minimum_detectable_effect(base, n as f64, alpha, power, arms_u32),
        _ => raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "campaign_power needs exactly one of mde and users_per_arm",
            hint,
        ),
    };
    let plan = result.unwrap_or_else(|e| match e {
        PowerError::Parameter(m) => raise_hint(ERRCODE_INVALID_PARAMETER_VALUE, m, hint),
        PowerError::Unreachable(m) => raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            m,
            "Allow a larger effect, more users, a lower power or a higher alpha.",
        ),
    });
    JsonB(json!({
        "metric": if sd.is_some() { "mean" } else { "proportion" },
        "baseline": baseline,
        "sd": sd,
        "alpha": alpha,
        "alpha_per_comparison": plan.alpha_per_comparison,
        "power": power,
        "arms": arms,
        "mde": plan.mde,
        "mde_relative": plan.mde_relative,
        "effect_size": plan.effect_size,
        "users_per_arm": plan.users_per_arm,
        "users_per_arm_exact": plan.users_per_arm_exact,
        "total_users": plan.users_per_arm.saturating_mul(arms_u32.into()),
        "method": "two-sided z-test, equal arms (statsmodels NormalIndPower); Cohen's h for a \
                   rate, (effect / sd) for a mean; alpha divided over arms - 1 comparisons",
    }))
}
