//! `campaign_report`: the campaign's evaluation as a self-contained HTML page. The numbers are
//! `campaign_metrics`' (with relative effects and the sequential test always on), plus one
//! aggregate of each user's first exposure and conversion for the cumulative daily charts, and
//! the Qini curves when a score relation is given; the page itself is
//! `persona_core::stats::html`.

use persona_core::stats::html::{campaign_page, DailyArm, PageInput, QiniInput};
use persona_core::stats::{
    perfect_qini_curve, qini_auc_score, qini_curve, DEFAULT_SEQUENTIAL_TUNING,
};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use crate::campaign::{campaign_info, evaluate, uplift_observations};
use crate::campaign_options::{relation, VALID};
use crate::error::{raise_hint, OrRaise};
use crate::json::Jsonb;
use crate::source::ColumnKind;
use crate::spi::{select_user, Columns};

/// Cumulative exposed and converted users per arm and UTC day (every day of the campaign for
/// every arm), from each user's first exposure and first conversion after it.
fn cumulative_daily(campaign: &str) -> Vec<DailyArm> {
    let rows: Vec<(String, String, i64, i64)> = Spi::connect(|client| {
        let info = campaign_info(client, campaign);
        let sql = format!(
            "WITH u AS ( \
               SELECT COALESCE(arm::pg_catalog.text, '') AS arm, user_id, \
                      pg_catalog.min(occurred_at) FILTER \
                        (WHERE event OPERATOR(pg_catalog.=) 'exposure') AS exposed_at, \
                      pg_catalog.min(occurred_at) FILTER \
                        (WHERE event OPERATOR(pg_catalog.=) 'conversion') AS converted_at \
                 FROM {} WHERE campaign OPERATOR(pg_catalog.=) $1 GROUP BY 1, 2) \
             SELECT arm, pg_catalog.to_char(d, 'YYYY-MM-DD'), \
                    pg_catalog.sum(n)::pg_catalog.int8, pg_catalog.sum(c)::pg_catalog.int8 \
               FROM (SELECT arm, (exposed_at AT TIME ZONE 'UTC')::pg_catalog.date AS d, \
                            1 AS n, 0 AS c FROM u WHERE exposed_at IS NOT NULL \
                     UNION ALL \
                     SELECT arm, (GREATEST(exposed_at, converted_at) AT TIME ZONE 'UTC') \
                              ::pg_catalog.date, 0, 1 \
                       FROM u WHERE exposed_at IS NOT NULL AND converted_at IS NOT NULL) x \
              WHERE arm OPERATOR(pg_catalog.<>) '' GROUP BY 1, 2 ORDER BY 2, 1",
            info.events
        );
        select_user(
            client,
            &sql,
            None,
            &[campaign.into()],
            "the campaign's events",
        )
        .filter_map(|r| {
            Some((
                r.column::<String>(1, "arm")?,
                r.column::<String>(2, "day")?,
                r.column::<i64>(3, "users").unwrap_or(0),
                r.column::<i64>(4, "converted").unwrap_or(0),
            ))
        })
        .collect()
    });
    let mut days: Vec<&String> = rows.iter().map(|r| &r.1).collect();
    days.sort();
    days.dedup();
    let mut arms: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    arms.sort();
    arms.dedup();
    let mut out = Vec::with_capacity(days.len() * arms.len());
    for arm in &arms {
        let (mut users, mut converted) = (0u64, 0u64);
        for day in &days {
            for r in rows.iter().filter(|r| &r.0 == *arm && &r.1 == *day) {
                users += r.2.max(0) as u64;
                converted += r.3.max(0) as u64;
            }
            out.push(DailyArm {
                day: (*day).clone(),
                arm: (*arm).clone(),
                users,
                converted,
            });
        }
    }
    out.sort_by(|a, b| a.day.cmp(&b.day).then_with(|| a.arm.cmp(&b.arm)));
    out
}

/// The campaign's evaluation as one self-contained HTML page (inline CSS and SVG, no script,
/// nothing fetched): verdicts, per-arm table, forest plot of relative lifts, cumulative
/// conversion per arm and the cumulative lift with its sequential band, and the Qini curve of
/// `options.scores` (a relation with `user_id` and `score`) when given. The other options are
/// `campaign_metrics`'; the lifts are relative, and the sequential
/// and Bayesian tests are on unless turned off.
#[pg_extern(stable, strict, parallel_safe)]
fn campaign_report(campaign: &str, options: default!(Jsonb, "'{}'")) -> String {
    let mut metrics_options = options.0.clone();
    let mut scores: Option<String> = None;
    if let Value::Object(m) = &mut metrics_options {
        if let Some(k) = m
            .keys()
            .find(|k| *k != "scores" && !VALID.contains(&k.as_str()))
        {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown option \"{k}\" of campaign_report"),
                format!("Valid keys: scores, {}.", VALID.join(", ")),
            );
        }
        scores = match m.remove("scores") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("option \"scores\" of campaign_report must be a relation name, not {v}"),
                "e.g. '{\"scores\": \"my_scores\"}', a table or view with user_id and score.",
            ),
        };
        m.insert("difference".into(), json!("relative"));
        m.entry("sequential").or_insert(json!(true));
        m.entry("bayesian").or_insert(json!(true));
    }
    let tuning = metrics_options["sequential_tuning"]
        .as_f64()
        .unwrap_or(DEFAULT_SEQUENTIAL_TUNING);
    let report = evaluate(campaign, &metrics_options);
    let daily = cumulative_daily(campaign);
    let qini = scores.map(|name| {
        let rel = Spi::connect(|client| {
            relation(
                client,
                "scores",
                &name,
                &[
                    ("user_id", ColumnKind::Id, "scores"),
                    ("score", ColumnKind::Number, "scores"),
                ],
            )
        });
        let (obs, _) = uplift_observations(campaign, Some(rel.oid), "default");
        let hint = "The Qini curve needs scored users in both the treatment and the control arm, \
                    with and without conversions.";
        QiniInput {
            curve: qini_curve(&obs).or_raise_hint(hint),
            perfect: perfect_qini_curve(&obs).or_raise_hint(hint),
            coefficient: qini_auc_score(&obs).or_raise_hint(hint),
            source: rel.name,
        }
    });
    let last = report["period"]["last_event"]
        .as_str()
        .map_or("no events yet".to_string(), |t| format!("data up to {t}"));
    campaign_page(&PageInput {
        report: &report,
        daily: &daily,
        qini: qini.as_ref(),
        generated: &last,
        tuning,
    })
}
