//! The `options jsonb` of `campaign_metrics` (and `campaign_report`): read and checked before any
//! query runs, then turned into the pieces the one aggregate over the events needs — the revenue
//! cap, the CUPED covariate's join and the segment's join. The statistics they feed are
//! `persona_core::stats::analysis`.

use persona_core::stats::{AnalysisOptions, Correction, Difference, NormalPrior};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Map, Value};

use crate::error::raise_hint;
use crate::options::Options;
use crate::source::{checked_relation, ident, ColumnKind};
use crate::spi::{select_user, Columns};

/// Every option `campaign_metrics` knows.
pub const VALID: &[&str] = &[
    "difference",
    "sequential",
    "sequential_tuning",
    "bayesian",
    "prior",
    "cuped",
    "capping",
    "correction",
    "segments",
];

/// How per-user revenue is capped.
#[derive(Debug, Clone, Copy)]
pub enum Capping {
    /// At this quantile of the exposed users' revenue (`percentile_cont`).
    Percentile(f64),
    /// At this value.
    Absolute(f64),
}

/// Where the CUPED covariate comes from.
pub enum Covariate {
    /// The same metric in the `days` before the campaign's `starts_at`, from its events relation.
    Lookback { days: i64, starts_at: String },
    /// A numeric column of the app's own per-user relation.
    Relation { relation: Rel, column: String },
}

/// The segments' relation and column.
pub struct Segments {
    pub relation: Rel,
    pub column: String,
    pub max: usize,
}

/// The options, checked.
#[derive(Default)]
pub struct ReportOptions {
    pub analysis: AnalysisOptions,
    pub capping: Option<Capping>,
    pub covariate: Option<Covariate>,
    pub segments: Option<Segments>,
    /// The options as given, echoed in the report.
    pub given: Map<String, Value>,
}

const F: &str = "campaign_metrics";

fn bad(message: String, hint: &str) -> ! {
    raise_hint(ERRCODE_INVALID_PARAMETER_VALUE, message, hint)
}

/// The keys of an option's object, each among `valid`.
fn object<'a>(key: &str, v: &'a Value, valid: &[&str], example: &str) -> &'a Map<String, Value> {
    let Value::Object(m) = v else {
        bad(
            format!("option \"{key}\" of {F} must be an object, not {v}"),
            &format!("e.g. '{{\"{key}\": {example}}}'."),
        )
    };
    if let Some(k) = m.keys().find(|k| !valid.contains(&k.as_str())) {
        bad(
            format!("unknown key \"{k}\" in option \"{key}\" of {F}"),
            &format!("Valid keys: {}; e.g. {example}.", valid.join(", ")),
        );
    }
    m
}

fn name_in(key: &str, m: &Map<String, Value>, field: &str, example: &str) -> String {
    match m.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        None | Some(Value::Null) => bad(
            format!("option \"{key}\" of {F} needs \"{field}\""),
            &format!("e.g. '{{\"{key}\": {example}}}'."),
        ),
        Some(v) => bad(
            format!("\"{key}\".\"{field}\" of {F} must be a name, not {v}"),
            &format!("e.g. '{{\"{key}\": {example}}}'."),
        ),
    }
}

/// A relation named in an option.
#[derive(Clone, PartialEq)]
pub struct Rel {
    /// Its quoted, qualified name.
    pub name: String,
    /// A unique index on `user_id` alone: one row per user, read without grouping.
    pub unique_user: bool,
    pub oid: pg_sys::Oid,
}

/// Resolves a relation named in an option on the caller's search path (as a regclass argument
/// would be) and checks its columns.
pub(crate) fn relation(
    client: &SpiClient<'_>,
    key: &str,
    name: &str,
    columns: &[(&str, ColumnKind, &str)],
) -> Rel {
    let oid = select_user(
        client,
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        Some(1),
        &[name.into()],
        "to_regclass",
    )
    .next()
    .and_then(|r| r.column::<pg_sys::Oid>(1, "oid"))
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_TABLE,
            format!("relation \"{name}\" of option \"{key}\" does not exist"),
            "Name a table or view with a user_id column, schema-qualified if it is not on your \
             search_path.",
        )
    });
    let name = checked_relation(client, oid, columns);
    let unique_user = crate::spi::first(
        client,
        "SELECT 1 FROM pg_catalog.pg_index i JOIN pg_catalog.pg_attribute a \
             ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
          WHERE i.indrelid = $1 AND i.indisunique AND i.indnkeyatts = 1 \
            AND i.indpred IS NULL AND a.attname = 'user_id'",
        &[oid.into()],
        "pg_index",
    )
    .is_some();
    Rel {
        name,
        unique_user,
        oid,
    }
}

/// Reads the options; `starts_at` is the campaign's (needed by a CUPED lookback).
pub fn read(client: &SpiClient<'_>, value: &Value, starts_at: Option<&str>) -> ReportOptions {
    let o = Options::new(value, VALID, F);
    let mut out = ReportOptions {
        given: value.as_object().cloned().unwrap_or_default(),
        ..Default::default()
    };
    out.analysis.difference = o.string("difference").map(|d| match d.as_str() {
        "absolute" => Difference::Absolute,
        "relative" => Difference::Relative,
        _ => o.bad("difference", "\"absolute\" or \"relative\"", &json!(d)),
    });
    let sequential = o.boolean("sequential").unwrap_or(false);
    let tuning = o.number("sequential_tuning");
    if let Some(t) = tuning {
        if t <= 0.0 {
            o.bad("sequential_tuning", "a positive number", &json!(t));
        }
        if !sequential {
            bad(
                format!("option \"sequential_tuning\" of {F} needs \"sequential\": true"),
                "e.g. '{\"sequential\": true, \"sequential_tuning\": 5000}'.",
            );
        }
    }
    out.analysis.sequential_tuning =
        sequential.then(|| tuning.unwrap_or(persona_core::stats::DEFAULT_SEQUENTIAL_TUNING));
    let bayesian = o.boolean("bayesian").unwrap_or(false);
    let prior = o.get("prior").map(|v| match v {
        Value::String(s) if s == "improper" => None,
        Value::Object(_) => {
            let m = object(
                "prior",
                v,
                &["mean", "variance"],
                "{\"mean\": 0, \"variance\": 0.01}",
            );
            let number = |k: &str| match m.get(k).and_then(Value::as_f64) {
                Some(x) if x.is_finite() => x,
                _ => bad(
                    format!("\"prior\".\"{k}\" of {F} must be a number"),
                    "e.g. '{\"prior\": {\"mean\": 0, \"variance\": 0.01}}' (the variance of the \
                     effect, in the scale of \"difference\").",
                ),
            };
            let (mean, variance) = (number("mean"), number("variance"));
            if variance <= 0.0 {
                bad(
                    format!("\"prior\".\"variance\" of {F} must be positive, not {variance}"),
                    "A proper prior has a positive variance; use \"improper\" for none.",
                );
            }
            Some(NormalPrior { mean, variance })
        }
        v => o.bad("prior", "\"improper\" or {\"mean\": m, \"variance\": v}", v),
    });
    if prior.is_some() && !bayesian {
        bad(
            format!("option \"prior\" of {F} needs \"bayesian\": true"),
            "e.g. '{\"bayesian\": true, \"prior\": {\"mean\": 0, \"variance\": 0.01}}'.",
        );
    }
    out.analysis.bayesian = bayesian.then(|| prior.flatten());
    out.analysis.correction = o.string("correction").map(|c| match c.as_str() {
        "holm" => Correction::Holm,
        "benjamini_hochberg" => Correction::BenjaminiHochberg,
        _ => o.bad(
            "correction",
            "\"holm\" or \"benjamini_hochberg\"",
            &json!(c),
        ),
    });
    out.capping = o.get("capping").map(|v| {
        let example = "{\"type\": \"percentile\", \"value\": 0.99}";
        let m = object("capping", v, &["type", "value"], example);
        let value = match m.get("value").and_then(Value::as_f64) {
            Some(x) if x.is_finite() => x,
            _ => bad(
                format!("\"capping\".\"value\" of {F} must be a number"),
                &format!("e.g. '{{\"capping\": {example}}}'."),
            ),
        };
        match m.get("type").and_then(Value::as_str) {
            Some("percentile") if value > 0.0 && value < 1.0 => Capping::Percentile(value),
            Some("percentile") => bad(
                format!("a percentile cap must be between 0 and 1 (exclusive), not {value}"),
                "e.g. '{\"capping\": {\"type\": \"percentile\", \"value\": 0.99}}' caps each \
                 user's revenue at the 99th percentile.",
            ),
            Some("absolute") if value > 0.0 => Capping::Absolute(value),
            Some("absolute") => bad(
                format!("an absolute cap must be positive, not {value}"),
                "e.g. '{\"capping\": {\"type\": \"absolute\", \"value\": 1000}}'.",
            ),
            _ => bad(
                format!("\"capping\".\"type\" of {F} must be \"percentile\" or \"absolute\""),
                &format!("e.g. '{{\"capping\": {example}}}'."),
            ),
        }
    });
    out.covariate = o.get("cuped").map(|v| {
        let example = "{\"lookback_days\": 30}";
        let m = object("cuped", v, &["lookback_days", "relation", "column"], example);
        match (m.get("lookback_days"), m.get("relation")) {
            (Some(d), None) => {
                let days = d
                    .as_u64()
                    .filter(|d| (1..=3650).contains(d))
                    .unwrap_or_else(|| {
                        bad(
                            format!("\"cuped\".\"lookback_days\" of {F} must be an integer from 1 to 3650, not {d}"),
                            "e.g. '{\"cuped\": {\"lookback_days\": 30}}'.",
                        )
                    }) as i64;
                let starts_at = starts_at.map(str::to_string).unwrap_or_else(|| {
                    bad(
                        "a CUPED lookback needs the campaign's starts_at".into(),
                        "Set persona.campaigns.starts_at, or give the covariate as \
                         {\"relation\": ..., \"column\": ...}.",
                    )
                });
                Covariate::Lookback { days, starts_at }
            }
            (None, Some(_)) => {
                let name = name_in("cuped", m, "relation", example);
                let column = name_in("cuped", m, "column", example);
                let relation = relation(
                    client,
                    "cuped",
                    &name,
                    &[
                        ("user_id", ColumnKind::Id, "cuped"),
                        (&column, ColumnKind::Number, "cuped"),
                    ],
                );
                Covariate::Relation { relation, column }
            }
            _ => bad(
                format!("option \"cuped\" of {F} needs either \"lookback_days\" or \"relation\" and \"column\""),
                "e.g. '{\"cuped\": {\"lookback_days\": 30}}' (the same metric before starts_at) or \
                 '{\"cuped\": {\"relation\": \"my_users\", \"column\": \"spend\"}}'.",
            ),
        }
    });
    out.analysis.cuped = out.covariate.is_some();
    out.segments = o.get("segments").map(|v| {
        let example = "{\"relation\": \"my_users\", \"column\": \"country\", \"max\": 20}";
        let m = object("segments", v, &["relation", "column", "max"], example);
        let name = name_in("segments", m, "relation", example);
        let column = name_in("segments", m, "column", example);
        let max = match m.get("max") {
            None | Some(Value::Null) => 20,
            Some(v) => v
                .as_u64()
                .filter(|x| (1..=1000).contains(x))
                .unwrap_or_else(|| {
                    bad(
                        format!("\"segments\".\"max\" of {F} must be an integer from 1 to 1000, not {v}"),
                        "The largest max segments are reported, the rest as (other).",
                    )
                }) as usize,
        };
        // The value is compared as text: a text, number, boolean or enum column.
        let relation = relation(
            client,
            "segments",
            &name,
            &[
                ("user_id", ColumnKind::Id, "segments"),
                (&column, ColumnKind::Label, "segments"),
            ],
        );
        Segments {
            relation,
            column,
            max,
        }
    });
    out
}

/// The CTE `name` (user_id, `alias`) of one column of an option's relation, cast to `ty`: read
/// as it is when `user_id` is unique (the planner inlines it into a hash join), else one row per
/// user with `agg` over the user's non-NULL values.
fn per_user_column(
    rel: &Rel,
    column: &str,
    ty: &str,
    alias: &str,
    name: &str,
    agg: &str,
) -> String {
    let col = ident(column);
    if rel.unique_user {
        format!(
            "{name} AS (SELECT user_id::pg_catalog.int8 AS user_id, {col}::{ty} AS {alias} \
             FROM {})",
            rel.name
        )
    } else {
        format!(
            "{name} AS (SELECT user_id::pg_catalog.int8 AS user_id, \
               pg_catalog.{agg}({col}::{ty}) AS {alias} FROM {} \
             WHERE user_id IS NOT NULL AND {col} IS NOT NULL GROUP BY 1)",
            rel.name
        )
    }
}

/// A parameter of the aggregate after `$1` (campaign) and `$2` (control arm).
pub enum Arg {
    Float(f64),
    Int(i32),
    Text(String),
}

/// The aggregate's text and its parameters from `$3` on.
pub struct Query {
    pub sql: String,
    pub args: Vec<Arg>,
}

/// The aggregate over the campaign's `events` with the options' pieces: one row per
/// (segment, arm). Columns: 1 segment (NULL without segments), 2 arm, 3–17 the per-arm sums of
/// the plain report, 18–20 capped revenue, 21–25 and 26–30 the conversion and revenue
/// covariates, 31 the cap.
pub fn aggregate_query(events: &str, o: &ReportOptions) -> Query {
    let mut ctes = Vec::new();
    let mut joins = Vec::new();
    let mut args: Vec<Arg> = Vec::new();
    let mut next = |a: Arg| {
        args.push(a);
        args.len() + 2
    };
    let (rev_c, cap_value) = match o.capping {
        None => ("p.revenue".to_string(), "NULL::pg_catalog.float8"),
        Some(c) => {
            let n = next(Arg::Float(match c {
                Capping::Percentile(v) | Capping::Absolute(v) => v,
            }));
            ctes.push(match c {
                Capping::Percentile(_) => format!(
                    "cap AS (SELECT pg_catalog.percentile_cont(${n}::pg_catalog.float8) \
                     WITHIN GROUP (ORDER BY revenue) AS cap FROM per_user \
                     WHERE exposures OPERATOR(pg_catalog.>) 0)"
                ),
                Capping::Absolute(_) => format!("cap AS (SELECT ${n}::pg_catalog.float8 AS cap)"),
            });
            joins.push("CROSS JOIN cap".to_string());
            ("LEAST(p.revenue, cap.cap)".to_string(), "cap.cap")
        }
    };
    let (x_conv, x_rev) = match &o.covariate {
        None => (
            "NULL::pg_catalog.float8".to_string(),
            "NULL::pg_catalog.float8".to_string(),
        ),
        Some(Covariate::Lookback { days, starts_at }) => {
            let days = next(Arg::Int(*days as i32));
            let to = next(Arg::Text(starts_at.clone()));
            ctes.push(format!(
                "pre AS (SELECT user_id::pg_catalog.int8 AS user_id, \
                   (pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion') \
                     OPERATOR(pg_catalog.>) 0)::pg_catalog.int4::pg_catalog.float8 AS conv, \
                   COALESCE(pg_catalog.sum(value) FILTER (WHERE event OPERATOR(pg_catalog.=) \
                     'conversion'), 0)::pg_catalog.float8 AS rev \
                 FROM {events} \
                 WHERE occurred_at OPERATOR(pg_catalog.>=) (${to}::pg_catalog.timestamptz \
                   OPERATOR(pg_catalog.-) pg_catalog.make_interval(days => ${days}::pg_catalog.int4)) \
                   AND occurred_at OPERATOR(pg_catalog.<) ${to}::pg_catalog.timestamptz \
                   AND user_id IS NOT NULL GROUP BY 1)"
            ));
            joins.push("LEFT JOIN pre ON pre.user_id OPERATOR(pg_catalog.=) p.user_id".to_string());
            let rev = match o.capping {
                None => "COALESCE(pre.rev, 0)".to_string(),
                Some(_) => "COALESCE(LEAST(pre.rev, cap.cap), 0)".to_string(),
            };
            ("COALESCE(pre.conv, 0)".to_string(), rev)
        }
        Some(Covariate::Relation { relation, column }) => {
            ctes.push(per_user_column(
                relation,
                column,
                "pg_catalog.float8",
                "x",
                "cov",
                "avg",
            ));
            joins.push("LEFT JOIN cov ON cov.user_id OPERATOR(pg_catalog.=) p.user_id".to_string());
            ("cov.x".to_string(), "cov.x".to_string())
        }
    };
    let segment = match &o.segments {
        None => "NULL::pg_catalog.text".to_string(),
        Some(seg) => {
            ctes.push(per_user_column(
                &seg.relation,
                &seg.column,
                "pg_catalog.text",
                "s",
                "seg",
                "min",
            ));
            joins.push("LEFT JOIN seg ON seg.user_id OPERATOR(pg_catalog.=) p.user_id".to_string());
            "seg.s".to_string()
        }
    };
    let extra_ctes: String = ctes.iter().map(|c| format!(", {c}")).collect();
    let exposed = "exposures OPERATOR(pg_catalog.>) 0";
    let covariate_sums = |x: &str, metric: &str| {
        format!(
            "pg_catalog.count(*) FILTER (WHERE {exposed} AND {x} IS NOT NULL), \
             pg_catalog.sum({x}) FILTER (WHERE {exposed}), \
             pg_catalog.sum({x} OPERATOR(pg_catalog.*) {x}) FILTER (WHERE {exposed}), \
             pg_catalog.sum({metric} OPERATOR(pg_catalog.*) {x}) FILTER (WHERE {exposed}), \
             pg_catalog.sum({metric}) FILTER (WHERE {exposed} AND {x} IS NOT NULL)"
        )
    };
    let sql = format!(
        "WITH per_user AS ( \
           SELECT COALESCE(arm::pg_catalog.text, '') AS arm, user_id::pg_catalog.int8 AS user_id, \
                  pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'exposure') \
                    AS exposures, \
                  pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'click') \
                    AS clicks, \
                  pg_catalog.count(*) FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion') \
                    AS conversions, \
                  COALESCE(pg_catalog.sum(value) \
                    FILTER (WHERE event OPERATOR(pg_catalog.=) 'conversion'), 0)::pg_catalog.float8 \
                    AS revenue, \
                  pg_catalog.min(occurred_at) AS first_at, pg_catalog.max(occurred_at) AS last_at \
             FROM {events} WHERE campaign OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2){extra_ctes}, \
         u AS (SELECT p.*, \
                (p.conversions OPERATOR(pg_catalog.>) 0)::pg_catalog.int4::pg_catalog.float8 \
                  AS conv01, \
                {rev_c} AS rev_c, {x_conv} AS x_conv, {x_rev} AS x_rev, {segment} AS segment, \
                {cap_value} AS cap_value \
               FROM per_user p {joins}) \
         SELECT segment, arm, \
                pg_catalog.count(*) FILTER (WHERE {exposed}), \
                pg_catalog.sum(exposures)::pg_catalog.int8, \
                pg_catalog.sum(clicks)::pg_catalog.int8, \
                pg_catalog.count(*) FILTER (WHERE clicks OPERATOR(pg_catalog.>) 0), \
                pg_catalog.sum(conversions)::pg_catalog.int8, \
                pg_catalog.count(*) FILTER (WHERE conversions OPERATOR(pg_catalog.>) 0), \
                pg_catalog.sum(revenue), \
                COALESCE(pg_catalog.sum(revenue OPERATOR(pg_catalog.*) revenue) \
                  FILTER (WHERE {exposed}), 0), \
                pg_catalog.to_char(pg_catalog.min(first_at) AT TIME ZONE 'UTC', \
                  'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                pg_catalog.to_char(pg_catalog.max(last_at) AT TIME ZONE 'UTC', \
                  'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), \
                pg_catalog.count(*) FILTER (WHERE {exposed} \
                  OR clicks OPERATOR(pg_catalog.>) 0), \
                pg_catalog.sum(clicks::pg_catalog.float8 OPERATOR(pg_catalog.*) clicks), \
                pg_catalog.sum(exposures::pg_catalog.float8 OPERATOR(pg_catalog.*) exposures), \
                pg_catalog.sum(clicks::pg_catalog.float8 OPERATOR(pg_catalog.*) exposures), \
                COALESCE(pg_catalog.sum(rev_c) FILTER (WHERE {exposed}), 0), \
                COALESCE(pg_catalog.sum(rev_c OPERATOR(pg_catalog.*) rev_c) \
                  FILTER (WHERE {exposed}), 0), \
                pg_catalog.count(*) FILTER (WHERE {exposed} \
                  AND revenue OPERATOR(pg_catalog.>) rev_c), \
                {}, {}, pg_catalog.max(cap_value) \
           FROM u GROUP BY segment, arm \
          ORDER BY segment, arm OPERATOR(pg_catalog.=) $2 DESC, arm",
        covariate_sums("x_conv", "conv01"),
        covariate_sums("x_rev", "rev_c"),
        joins = joins.join(" "),
    );
    Query { sql, args }
}
