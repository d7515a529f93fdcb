//! The options of a campaign report beyond the fixed-sample tests: effects as GrowthBook computes
//! them (absolute or relative), the always-valid sequential test, the Bayesian test, CUPED
//! variance reduction, multiple-testing corrections, revenue capping and segments.
//!
//! The SQL layer adds to each [`ArmAggregate`] the sums these need ([`CappedRevenue`],
//! [`CovariateSums`]), all from the same aggregate over the events; [`analyse`] adds the results
//! to the metric objects of a [`CampaignReport`] built by [`super::campaign_report`];
//! [`segment_groups`] splits per-segment aggregates into the largest segments and the rest.
//!
//! Metrics as gbstats statistics (users exposed are the unit of every metric):
//!
//! | metric | statistic | CUPED covariate |
//! |---|---|---|
//! | `conversion_rate` | proportion: users converted of users exposed | yes |
//! | `revenue_per_user` | mean of each user's (capped) revenue | yes |
//! | `ctr` | ratio of per-user clicks to per-user exposures | no (gbstats 0.8.0 adjusts no ratio metric) |

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::effect::{
    bayesian_test, compute_theta, sequential_test, t_test, Base, Difference, NormalPrior,
    Statistic, Undefined,
};
use super::multitest::{adjust_pvalues, Correction};
use super::report::{ArmAggregate, ArmComparison, CampaignReport, Interval};

/// Per-user revenue capped at a value (winsorised) before the statistics: the sums of an arm.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CappedRevenue {
    /// Σ over exposed users of `min(revenue, cap)`.
    pub sum: f64,
    /// Σ of its squares.
    pub sum_squares: f64,
    /// Exposed users whose revenue was above the cap.
    pub users_capped: u64,
}

/// A pre-period covariate of one metric, summed over an arm's exposed users that have it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct CovariateSums {
    /// Exposed users with a covariate value (the others are imputed the population mean).
    pub users: u64,
    /// Σ covariate.
    pub sum: f64,
    /// Σ covariate².
    pub sum_squares: f64,
    /// Σ metric · covariate.
    pub cross: f64,
    /// Σ metric over the users with a covariate value.
    pub metric_sum: f64,
    /// The covariate is 0/1 (converted in the pre-period): a proportion statistic.
    pub proportion: bool,
}

impl CovariateSums {
    fn add(&mut self, o: &CovariateSums) {
        self.users += o.users;
        self.sum += o.sum;
        self.sum_squares += o.sum_squares;
        self.cross += o.cross;
        self.metric_sum += o.metric_sum;
        self.proportion &= o.proportion;
    }
}

/// Adds `b` into `a` (the aggregates of disjoint sets of users of the same arm).
pub fn merge_aggregates(a: &mut ArmAggregate, b: &ArmAggregate) {
    a.users_exposed += b.users_exposed;
    a.exposures += b.exposures;
    a.clicks += b.clicks;
    a.users_clicked += b.users_clicked;
    a.conversions += b.conversions;
    a.users_converted += b.users_converted;
    a.revenue += b.revenue;
    a.revenue_sumsq += b.revenue_sumsq;
    a.cost = match (a.cost, b.cost) {
        (Some(x), Some(y)) => Some(x + y),
        (x, y) => x.or(y),
    };
    if let Some(m) = &b.ctr_moments {
        let t = a.ctr_moments.get_or_insert_with(Default::default);
        t.n += m.n;
        t.num_sum += m.num_sum;
        t.den_sum += m.den_sum;
        t.num_sumsq += m.num_sumsq;
        t.den_sumsq += m.den_sumsq;
        t.cross_sum += m.cross_sum;
    }
    if let Some(c) = &b.capped_revenue {
        let t = a.capped_revenue.get_or_insert_with(Default::default);
        t.sum += c.sum;
        t.sum_squares += c.sum_squares;
        t.users_capped += c.users_capped;
    }
    for (mine, theirs) in [
        (&mut a.conversion_covariate, &b.conversion_covariate),
        (&mut a.revenue_covariate, &b.revenue_covariate),
    ] {
        if let Some(c) = theirs {
            mine.get_or_insert(CovariateSums {
                proportion: c.proportion,
                ..Default::default()
            })
            .add(c);
        }
    }
}

/// One segment's aggregates.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentGroup {
    /// The segment's value; `(other)` for the segments beyond the largest `max`, `(none)` for
    /// users without a value.
    pub segment: String,
    /// Exposed users in the segment (all arms).
    pub users: u64,
    /// How many distinct values were merged into it (1 except for `(other)`).
    pub values: usize,
    /// Per-arm aggregates, in the order arms first appear in the input.
    pub arms: Vec<ArmAggregate>,
}

/// Label of the users without a segment value.
pub const NO_SEGMENT: &str = "(none)";
/// Label of the segments beyond the largest `max`.
pub const OTHER_SEGMENTS: &str = "(other)";

/// Groups per-(segment, arm) aggregates: the `max` segments with the most exposed users (ties
/// by name), then the rest merged as `(other)`; `None` segment values are `(none)` and compete
/// like any other. Also returns the whole campaign's per-arm aggregates (the sum over segments).
pub fn segment_groups(
    rows: Vec<(Option<String>, ArmAggregate)>,
    max: usize,
) -> (Vec<ArmAggregate>, Vec<SegmentGroup>) {
    let mut overall: Vec<ArmAggregate> = Vec::new();
    let mut groups: Vec<SegmentGroup> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let add_to = |arms: &mut Vec<ArmAggregate>, a: &ArmAggregate| match arms
        .iter_mut()
        .find(|x| x.arm == a.arm)
    {
        Some(x) => merge_aggregates(x, a),
        None => arms.push(a.clone()),
    };
    for (segment, agg) in rows {
        add_to(&mut overall, &agg);
        let name = segment.unwrap_or_else(|| NO_SEGMENT.to_string());
        let i = *index.entry(name.clone()).or_insert_with(|| {
            groups.push(SegmentGroup {
                segment: name,
                users: 0,
                values: 1,
                arms: Vec::new(),
            });
            groups.len() - 1
        });
        groups[i].users += agg.users_exposed;
        add_to(&mut groups[i].arms, &agg);
    }
    groups.sort_by(|a, b| {
        b.users
            .cmp(&a.users)
            .then_with(|| a.segment.cmp(&b.segment))
    });
    if groups.len() > max {
        let rest = groups.split_off(max);
        let mut other = SegmentGroup {
            segment: OTHER_SEGMENTS.to_string(),
            users: 0,
            values: 0,
            arms: Vec::new(),
        };
        for g in rest {
            other.users += g.users;
            other.values += g.values;
            for a in &g.arms {
                add_to(&mut other.arms, a);
            }
        }
        groups.push(other);
    }
    // Arms in the same order in every group: the whole campaign's.
    for g in &mut groups {
        g.arms
            .sort_by_key(|a| overall.iter().position(|o| o.arm == a.arm));
    }
    (overall, groups)
}

/// The population mean of the covariate over the exposed users that have a value (all arms):
/// what users without one are imputed.
pub fn covariate_mean(arms: &[ArmAggregate]) -> Option<f64> {
    let (n, sum) = arms
        .iter()
        .filter_map(|a| a.revenue_covariate.or(a.conversion_covariate))
        .fold((0u64, 0.0), |(n, s), c| (n + c.users, s + c.sum));
    (n > 0).then(|| sum / n as f64)
}

/// What [`analyse`] adds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AnalysisOptions {
    /// Adds `effect` (gbstats' fixed-sample t-test) in this difference; `None`: absolute
    /// differences for the other objects and no `effect`.
    pub difference: Option<Difference>,
    /// Adds `sequential` with this tuning parameter.
    pub sequential_tuning: Option<f64>,
    /// Adds `bayesian`, with the proper prior when given.
    pub bayesian: Option<Option<NormalPrior>>,
    /// Adds `cuped`, and computes `sequential` and `bayesian` on the adjusted statistics.
    pub cuped: bool,
    /// Adds `p_adjusted` next to every p-value.
    pub correction: Option<Correction>,
}

/// A frequentist effect as reported (`effect`, `sequential`, `cuped`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectReport {
    /// `absolute` or `relative`.
    pub difference: Difference,
    /// The effect; `null` when undefined (`undefined` says why).
    pub effect: Option<f64>,
    /// Its confidence interval (sequential: valid at every look).
    pub ci: Option<Interval>,
    /// Two-sided p-value.
    pub p_value: Option<f64>,
    /// The p-value adjusted for multiple comparisons (with `correction`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<Option<f64>>,
    /// `p_value < alpha` (sequential: `p_value < alpha` at any look).
    pub significant: bool,
    /// CUPED's θ (in `cuped` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub theta: Option<f64>,
    /// Computed on the CUPED-adjusted statistics (in `sequential` with `cuped`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cuped: bool,
    /// Why the effect is undefined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined: Option<String>,
}

/// The Bayesian result as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BayesianReport {
    /// `absolute` or `relative`.
    pub difference: Difference,
    /// Posterior mean of the effect.
    pub effect: Option<f64>,
    /// Credible interval (`1 − alpha`).
    pub ci: Option<Interval>,
    /// `P(effect > 0)`.
    pub chance_to_win: Option<f64>,
    /// Expected loss of choosing each arm.
    pub risk: Option<Risk>,
    /// `proper` (with `prior_mean`/`prior_variance`) or `improper`.
    pub prior: String,
    /// Computed on the CUPED-adjusted statistics.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cuped: bool,
    /// Why the result is undefined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undefined: Option<String>,
}

/// Expected losses.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// Of keeping the control: `E[max(Δ, 0)]`.
    pub control: f64,
    /// Of choosing the treatment: `E[max(−Δ, 0)]`.
    pub treatment: f64,
}

/// The objects the options add to one metric of one comparison.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricExtras {
    /// The fixed-sample p-value of the metric (its `p_value`) adjusted for multiple comparisons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_adjusted: Option<Option<f64>>,
    /// gbstats' fixed-sample t-test in the chosen difference (with `difference`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<EffectReport>,
    /// The always-valid sequential test (with `sequential`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<EffectReport>,
    /// The Bayesian test (with `bayesian`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bayesian: Option<BayesianReport>,
    /// The CUPED-adjusted fixed-sample t-test (with `cuped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cuped: Option<EffectReport>,
}

impl MetricExtras {
    /// Whether an option added something.
    pub fn is_empty(&self) -> bool {
        *self == MetricExtras::default()
    }
}

fn conversion_stat(a: &ArmAggregate) -> Statistic {
    Statistic::Proportion {
        n: a.users_exposed as f64,
        sum: a.users_converted as f64,
    }
}

/// The revenue sums the statistics use: capped when capping is on.
pub fn revenue_sums(a: &ArmAggregate) -> (f64, f64) {
    match a.capped_revenue {
        Some(c) => (c.sum, c.sum_squares),
        None => (a.revenue, a.revenue_sumsq),
    }
}

fn revenue_stat(a: &ArmAggregate) -> Statistic {
    let (sum, sum_squares) = revenue_sums(a);
    Statistic::Mean {
        n: a.users_exposed as f64,
        sum,
        sum_squares,
    }
}

fn ctr_stat(a: &ArmAggregate) -> Option<Statistic> {
    a.ctr_moments.map(|m| Statistic::Ratio {
        n: m.n as f64,
        m_sum: m.num_sum,
        m_sum_squares: m.num_sumsq,
        d_sum: m.den_sum,
        d_sum_squares: m.den_sumsq,
        m_d_sum_of_products: m.cross_sum,
    })
}

/// The CUPED statistic of a metric: users without a covariate value take `mean`.
fn adjusted(
    post: Statistic,
    covariate: Option<CovariateSums>,
    imputed: Option<f64>,
) -> Option<Statistic> {
    let c = covariate?;
    let (n, post_base, metric_total) = match post {
        Statistic::Proportion { n, sum } => (n, Base::Proportion { sum }, sum),
        Statistic::Mean {
            n,
            sum,
            sum_squares,
        } => (n, Base::Mean { sum, sum_squares }, sum),
        _ => return None,
    };
    let missing = n - c.users as f64;
    let m = if missing > 0.0 { imputed? } else { 0.0 };
    let pre = if c.proportion && missing == 0.0 {
        Base::Proportion { sum: c.sum }
    } else {
        Base::Mean {
            sum: c.sum + missing * m,
            sum_squares: c.sum_squares + missing * m * m,
        }
    };
    Some(Statistic::Adjusted {
        n,
        post: post_base,
        pre,
        post_pre_sum_of_products: c.cross + m * (metric_total - c.metric_sum),
        theta: 0.0,
    })
}

fn effect_report(
    r: Result<super::effect::Estimate, Undefined>,
    difference: Difference,
    alpha: f64,
) -> EffectReport {
    match r {
        Ok(e) => EffectReport {
            difference,
            effect: Some(e.effect),
            ci: Some(e.ci),
            p_value: Some(e.p_value),
            p_adjusted: None,
            significant: e.p_value < alpha,
            theta: None,
            cuped: false,
            undefined: None,
        },
        Err(u) => EffectReport {
            difference,
            effect: None,
            ci: None,
            p_value: None,
            p_adjusted: None,
            significant: false,
            theta: None,
            cuped: false,
            undefined: Some(u.message().to_string()),
        },
    }
}

fn undefined_report(difference: Difference, why: &str) -> EffectReport {
    EffectReport {
        undefined: Some(why.to_string()),
        ..effect_report(Err(Undefined::NoUnits), difference, 0.05)
    }
}

/// The extras of one metric from the two arms' statistics. `adjusted` are the CUPED statistics
/// (`None` when the metric has none), `why_not` the reason reported then.
fn metric_extras(
    control: Option<Statistic>,
    treatment: Option<Statistic>,
    adjusted: Option<(Statistic, Statistic)>,
    why_not: &str,
    opts: &AnalysisOptions,
    alpha: f64,
) -> MetricExtras {
    let difference = opts.difference.unwrap_or_default();
    let Some((a, b)) = control.zip(treatment) else {
        let missing = || undefined_report(difference, "the metric has no per-user sums");
        return MetricExtras {
            p_adjusted: None,
            effect: opts.difference.map(|_| missing()),
            sequential: opts.sequential_tuning.map(|_| missing()),
            bayesian: None,
            cuped: opts.cuped.then(missing),
        };
    };
    // Sequential and Bayesian results use the adjusted statistics when CUPED is on.
    let (sa, sb, on_cuped) = match (&adjusted, opts.cuped) {
        (Some((x, y)), true) => (*x, *y, true),
        _ => (a, b, false),
    };
    let mut out = MetricExtras {
        effect: opts
            .difference
            .map(|d| effect_report(t_test(&a, &b, d, alpha), d, alpha)),
        sequential: opts.sequential_tuning.map(|tuning| EffectReport {
            cuped: on_cuped,
            ..effect_report(
                sequential_test(&sa, &sb, difference, alpha, tuning),
                difference,
                alpha,
            )
        }),
        bayesian: opts.bayesian.map(|prior| {
            let r = bayesian_test(&sa, &sb, difference, alpha, prior);
            BayesianReport {
                difference,
                effect: r.as_ref().ok().map(|e| e.effect),
                ci: r.as_ref().ok().map(|e| e.ci),
                chance_to_win: r.as_ref().ok().map(|e| e.chance_to_win),
                risk: r.as_ref().ok().map(|e| Risk {
                    control: e.risk_control,
                    treatment: e.risk_treatment,
                }),
                prior: if prior.is_some() {
                    "proper"
                } else {
                    "improper"
                }
                .to_string(),
                cuped: on_cuped,
                undefined: r.err().map(|u| u.message().to_string()),
            }
        }),
        ..Default::default()
    };
    if opts.cuped {
        out.cuped = Some(match adjusted {
            Some((x, y)) => EffectReport {
                theta: Some(compute_theta(&x, &y)),
                ..effect_report(t_test(&x, &y, difference, alpha), difference, alpha)
            },
            None => undefined_report(difference, why_not),
        });
    }
    out
}

/// Adds the options' results to each comparison of `report` (built from `arms`). `imputed` is
/// the covariate value of users without one (see [`covariate_mean`]).
pub fn analyse(
    report: &mut CampaignReport,
    arms: &[ArmAggregate],
    opts: &AnalysisOptions,
    imputed: Option<f64>,
) {
    let alpha = report.alpha;
    let by_name: HashMap<&str, &ArmAggregate> = arms.iter().map(|a| (a.arm.as_str(), a)).collect();
    for cmp in &mut report.comparisons {
        let (Some(&t), Some(&c)) = (
            by_name.get(cmp.arm.as_str()),
            by_name.get(cmp.control_arm.as_str()),
        ) else {
            continue;
        };
        let pair = |f: &dyn Fn(&ArmAggregate) -> Option<Statistic>| f(c).zip(f(t));
        let no_covariate = "no covariate for this metric";
        cmp.conversion_rate.extras = metric_extras(
            Some(conversion_stat(c)),
            Some(conversion_stat(t)),
            pair(&|a| adjusted(conversion_stat(a), a.conversion_covariate, imputed)),
            no_covariate,
            opts,
            alpha,
        );
        cmp.revenue_per_user.extras = metric_extras(
            Some(revenue_stat(c)),
            Some(revenue_stat(t)),
            pair(&|a| adjusted(revenue_stat(a), a.revenue_covariate, imputed)),
            no_covariate,
            opts,
            alpha,
        );
        cmp.ctr.extras = metric_extras(
            ctr_stat(c),
            ctr_stat(t),
            None,
            "CUPED is not available for the CTR, a ratio metric (as in gbstats 0.8.0)",
            opts,
            alpha,
        );
    }
    if let Some(method) = opts.correction {
        correct(&mut report.comparisons, method);
    }
}

/// Each family of p-values of the report (the fixed-sample `p_value`s; `effect`; `sequential`;
/// `cuped`), across all comparisons and metrics, adjusted with `method`.
fn correct(comparisons: &mut [ArmComparison], method: Correction) {
    type Slot = fn(&mut ArmComparison) -> [(Option<f64>, &mut Option<Option<f64>>); 3];
    let fixed: Slot = |c| {
        [
            (
                c.conversion_rate.p_value,
                &mut c.conversion_rate.extras.p_adjusted,
            ),
            (c.ctr.p_value, &mut c.ctr.extras.p_adjusted),
            (
                c.revenue_per_user.p_value,
                &mut c.revenue_per_user.extras.p_adjusted,
            ),
        ]
    };
    fn sub(
        e: &mut MetricExtras,
        pick: fn(&mut MetricExtras) -> Option<&mut EffectReport>,
    ) -> (Option<f64>, Option<&mut Option<Option<f64>>>) {
        match pick(e) {
            Some(r) => (r.p_value, Some(&mut r.p_adjusted)),
            None => (None, None),
        }
    }
    // The fixed-sample p-values are always there.
    let p: Vec<Option<f64>> = comparisons
        .iter_mut()
        .flat_map(|c| fixed(c).map(|(p, _)| p))
        .collect();
    let adjusted = adjust_pvalues(&p, method);
    let mut it = adjusted.into_iter();
    for c in comparisons.iter_mut() {
        for (_, slot) in fixed(c) {
            *slot = Some(it.next().flatten());
        }
    }
    let picks: [fn(&mut MetricExtras) -> Option<&mut EffectReport>; 3] = [
        |e| e.effect.as_mut(),
        |e| e.sequential.as_mut(),
        |e| e.cuped.as_mut(),
    ];
    for pick in picks {
        let mut p = Vec::new();
        for c in comparisons.iter_mut() {
            for e in [
                &mut c.conversion_rate.extras,
                &mut c.ctr.extras,
                &mut c.revenue_per_user.extras,
            ] {
                if let (pv, Some(_)) = sub(e, pick) {
                    p.push(pv);
                }
            }
        }
        if p.is_empty() {
            continue;
        }
        let adjusted = adjust_pvalues(&p, method);
        let mut it = adjusted.into_iter();
        for c in comparisons.iter_mut() {
            for e in [
                &mut c.conversion_rate.extras,
                &mut c.ctr.extras,
                &mut c.revenue_per_user.extras,
            ] {
                if let (_, Some(slot)) = sub(e, pick) {
                    *slot = Some(it.next().flatten());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::campaign_report;

    fn arm(name: &str, users: u64, converted: u64, revenue: f64) -> ArmAggregate {
        ArmAggregate {
            arm: name.into(),
            users_exposed: users,
            exposures: users * 2,
            clicks: users / 2,
            users_clicked: users / 3,
            conversions: converted,
            users_converted: converted,
            revenue,
            revenue_sumsq: revenue * revenue / users as f64 * 3.0,
            ..Default::default()
        }
    }

    #[test]
    fn analysis_segments_keep_the_largest_and_merge_the_rest() {
        let mut rows = Vec::new();
        for (seg, users) in [("de", 50), ("fr", 400), ("it", 10), ("es", 200)] {
            rows.push((
                Some(seg.to_string()),
                arm("control", users, users / 10, 5.0),
            ));
            rows.push((
                Some(seg.to_string()),
                arm("treatment", users, users / 8, 6.0),
            ));
        }
        rows.push((None, arm("treatment", 30, 3, 1.0)));
        let (overall, groups) = segment_groups(rows, 2);
        let names: Vec<&str> = groups.iter().map(|g| g.segment.as_str()).collect();
        assert_eq!(names, ["fr", "es", OTHER_SEGMENTS]);
        let other = &groups[2];
        assert_eq!((other.users, other.values), (50 * 2 + 10 * 2 + 30, 3));
        assert_eq!(overall.len(), 2);
        assert_eq!(overall[0].arm, "control");
        assert_eq!(overall[1].users_exposed, 50 + 400 + 10 + 200 + 30);
        // Every group lists the arms in the campaign's order.
        assert!(groups.iter().all(|g| g.arms[0].arm == "control"));
    }

    /// Per-user (metric, covariate) pairs, the covariate missing for some users: the sums with
    /// imputation give the statistic of the data with the population mean filled in.
    #[test]
    fn analysis_imputes_the_population_mean() {
        let users: Vec<(f64, Option<f64>)> = (0..40)
            .map(|i| {
                let x = f64::from(i % 7) * 1.5;
                let cov = (i % 5 != 0).then_some(x + f64::from(i % 3));
                (x, cov)
            })
            .collect();
        let present: Vec<(f64, f64)> = users
            .iter()
            .filter_map(|&(m, c)| c.map(|c| (m, c)))
            .collect();
        let sums = CovariateSums {
            users: present.len() as u64,
            sum: present.iter().map(|p| p.1).sum(),
            sum_squares: present.iter().map(|p| p.1 * p.1).sum(),
            cross: present.iter().map(|p| p.0 * p.1).sum(),
            metric_sum: present.iter().map(|p| p.0).sum(),
            proportion: false,
        };
        let mean = sums.sum / sums.users as f64;
        let filled: Vec<(f64, f64)> = users.iter().map(|&(m, c)| (m, c.unwrap_or(mean))).collect();
        let post = Statistic::Mean {
            n: 40.0,
            sum: filled.iter().map(|p| p.0).sum(),
            sum_squares: filled.iter().map(|p| p.0 * p.0).sum(),
        };
        let Some(Statistic::Adjusted {
            pre: Base::Mean { sum, sum_squares },
            post_pre_sum_of_products,
            ..
        }) = adjusted(post, Some(sums), Some(mean))
        else {
            panic!("an adjusted mean statistic")
        };
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9 * b.abs().max(1.0);
        assert!(close(sum, filled.iter().map(|p| p.1).sum()));
        assert!(close(sum_squares, filled.iter().map(|p| p.1 * p.1).sum()));
        assert!(close(
            post_pre_sum_of_products,
            filled.iter().map(|p| p.0 * p.1).sum()
        ));
        // Without a mean to impute, users without a value leave no statistic.
        assert!(adjusted(post, Some(sums), None).is_none());
    }

    #[test]
    fn analysis_adds_only_what_is_asked_and_corrects_every_family() {
        let arms = vec![
            arm("control", 1000, 50, 900.0),
            arm("a", 1000, 70, 1100.0),
            arm("b", 1000, 52, 950.0),
        ];
        let mut plain = campaign_report(&arms, Some("control"), None, 0.05).unwrap();
        let before = serde_json::to_value(&plain).unwrap();
        analyse(&mut plain, &arms, &AnalysisOptions::default(), None);
        assert_eq!(serde_json::to_value(&plain).unwrap(), before);

        let mut report = plain.clone();
        let opts = AnalysisOptions {
            difference: Some(Difference::Relative),
            sequential_tuning: Some(5000.0),
            bayesian: Some(None),
            cuped: true,
            correction: Some(Correction::Holm),
        };
        analyse(&mut report, &arms, &opts, None);
        let fixed: Vec<Option<f64>> = report
            .comparisons
            .iter()
            .flat_map(|c| {
                [
                    c.conversion_rate.p_value,
                    c.ctr.p_value,
                    c.revenue_per_user.p_value,
                ]
            })
            .collect();
        let expected = adjust_pvalues(&fixed, Correction::Holm);
        let got: Vec<Option<f64>> = report
            .comparisons
            .iter()
            .flat_map(|c| {
                [
                    &c.conversion_rate.extras,
                    &c.ctr.extras,
                    &c.revenue_per_user.extras,
                ]
                .map(|e| e.p_adjusted.flatten())
            })
            .collect();
        assert_eq!(got, expected);
        let conv = &report.comparisons[0].conversion_rate.extras;
        assert!(conv.effect.as_ref().unwrap().p_adjusted.is_some());
        assert!(conv.sequential.as_ref().unwrap().p_adjusted.is_some());
        // No covariate sums: CUPED says why instead of guessing.
        assert!(conv.cuped.as_ref().unwrap().undefined.is_some());
        assert!(conv.bayesian.as_ref().unwrap().chance_to_win.unwrap() > 0.9);
        // The sequential interval is wider than the fixed-sample one.
        let (seq, fixed) = (
            conv.sequential.as_ref().unwrap().ci.unwrap(),
            conv.effect.as_ref().unwrap().ci.unwrap(),
        );
        assert!(seq.high - seq.low > fixed.high - fixed.low);
    }
}
