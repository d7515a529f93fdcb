//! The campaign report: per-arm metrics, every arm against the control arm, and the
//! sample-ratio-mismatch check, built from the per-arm aggregates the SQL layer computes.
//!
//! Every ratio whose denominator is zero, and every statistic that is undefined for the data, is
//! `None` (JSON `null`); the report never carries NaN or infinity.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::analysis::{revenue_sums, CappedRevenue, CovariateSums, MetricExtras};
use super::proportions::{diff_confint, relative_lift_confint, two_proportion_ztest};
use super::ratio::{compare_ratios, RatioMoments};
use super::srm::{SplitSource, SrmCheck};
use super::welch::{welch_confint, welch_ttest, Moments};
use crate::{CoreError, Result};

/// Name of the arm used as control when the caller names none.
pub const DEFAULT_CONTROL_ARM: &str = "control";

/// Per-arm aggregates of a campaign, computed by the SQL layer with one `GROUP BY arm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ArmAggregate {
    /// Arm (variant) name. Arms with an empty name are skipped with a warning.
    pub arm: String,
    /// Distinct users with at least one exposure.
    pub users_exposed: u64,
    /// Exposure events.
    pub exposures: u64,
    /// Click events.
    pub clicks: u64,
    /// Distinct users with at least one click.
    pub users_clicked: u64,
    /// Conversion events.
    pub conversions: u64,
    /// Distinct users with at least one conversion.
    pub users_converted: u64,
    /// Total revenue.
    pub revenue: f64,
    /// Σ over exposed users of (that user's total revenue)²; users without revenue add 0.
    pub revenue_sumsq: f64,
    /// Campaign cost attributed to the arm, when known.
    #[serde(default)]
    pub cost: Option<f64>,
    /// Per-user sums of clicks (`c`) and exposures (`e`) over the arm's users with an exposure
    /// or a click. With them the CTR is compared with users as the unit (delta method);
    /// without, exposures are treated as independent trials.
    #[serde(default)]
    pub ctr_moments: Option<RatioMoments>,
    /// Per-user revenue capped (option `capping`): the revenue statistics use these sums; the
    /// arm's `revenue`, ROI and ROAS stay uncapped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capped_revenue: Option<CappedRevenue>,
    /// The pre-period covariate of the conversion rate (option `cuped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversion_covariate: Option<CovariateSums>,
    /// The pre-period covariate of revenue per user (option `cuped`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revenue_covariate: Option<CovariateSums>,
}

/// A confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    /// Lower limit.
    pub low: f64,
    /// Upper limit.
    pub high: f64,
}

impl From<(f64, f64)> for Interval {
    fn from((low, high): (f64, f64)) -> Self {
        Interval { low, high }
    }
}

/// Metrics of one arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmSummary {
    /// Arm name.
    pub arm: String,
    /// Distinct users exposed (input).
    pub users_exposed: u64,
    /// Exposure events (input).
    pub exposures: u64,
    /// Click events (input).
    pub clicks: u64,
    /// Distinct users who clicked (input).
    pub users_clicked: u64,
    /// Conversion events (input).
    pub conversions: u64,
    /// Distinct users who converted (input).
    pub users_converted: u64,
    /// Click-through rate `clicks / exposures`; `null` when `exposures = 0`.
    pub ctr: Option<f64>,
    /// `users_converted / users_exposed`; `null` when `users_exposed = 0`.
    pub conversion_rate: Option<f64>,
    /// Total revenue (input).
    pub revenue: f64,
    /// `revenue / users_exposed`; `null` when `users_exposed = 0`.
    pub revenue_per_user: Option<f64>,
    /// Sample standard deviation (ddof = 1) of revenue per exposed user,
    /// `sqrt((revenue_sumsq − revenue²/users_exposed) / (users_exposed − 1))`; `null` when
    /// `users_exposed < 2` or the sums are inconsistent.
    pub revenue_per_user_sd: Option<f64>,
    /// Cost (input); `null` when unknown.
    pub cost: Option<f64>,
    /// Return on investment `(revenue − cost) / cost`; `null` when cost is unknown or not positive.
    pub roi: Option<f64>,
    /// Return on ad spend `revenue / cost`; `null` when cost is unknown or not positive.
    pub roas: Option<f64>,
}

/// How a [`ProportionComparison`] was tested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionTest {
    /// Pooled two-proportion z-test, Wald and log-ratio intervals over the denominator's
    /// units (users for the conversion rate; exposures for a CTR without per-user sums).
    #[default]
    PooledZ,
    /// Users as the unit of a ratio of sums (a CTR with per-user sums): delta-method variances
    /// ([`super::ratio`]), `z = (R_t − R_c)/sqrt(V_t + V_c)`, interval `± z_{α/2}·sqrt(V_t + V_c)`,
    /// relative interval `exp(ln(R_t/R_c) ± z_{α/2}·sqrt(V_t/R_t² + V_c/R_c²)) − 1`.
    DeltaMethod,
}

/// A proportion (conversion rate or CTR) of one arm against the control arm.
///
/// With `p_t = x_t/n_t` in the arm and `p_c = x_c/n_c` in the control, `z_{α/2}` the standard
/// normal critical value. The formulas below are those of [`ProportionTest::PooledZ`]; `test`
/// says which were used. The tests and intervals are `null` where undefined: a zero
/// denominator, a count above its denominator (e.g. conversions without exposure), a pooled
/// proportion of 0 or 1 (z-test), a zero count (relative interval), fewer than two users in an
/// arm or no variance in either (delta method).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProportionComparison {
    /// Which test and intervals these are.
    #[serde(default)]
    pub test: ProportionTest,
    /// `p_t`.
    pub treatment_rate: Option<f64>,
    /// `p_c`.
    pub control_rate: Option<f64>,
    /// Absolute lift `p_t − p_c`.
    pub absolute_lift: Option<f64>,
    /// Wald interval, unpooled: `p_t − p_c ± z_{α/2}·sqrt(p_t(1 − p_t)/n_t + p_c(1 − p_c)/n_c)`.
    pub absolute_lift_ci: Option<Interval>,
    /// Relative lift `p_t / p_c − 1`; `null` when `p_c = 0`.
    pub relative_lift: Option<f64>,
    /// Log-ratio interval minus 1:
    /// `exp(ln(p_t/p_c) ± z_{α/2}·sqrt(1/x_t − 1/n_t + 1/x_c − 1/n_c)) − 1`.
    pub relative_lift_ci: Option<Interval>,
    /// Pooled two-proportion z statistic
    /// `(p_t − p_c) / sqrt(p̂(1 − p̂)(1/n_t + 1/n_c))`, `p̂ = (x_t + x_c)/(n_t + n_c)`.
    pub z: Option<f64>,
    /// Two-sided p-value `2·(1 − Φ(|z|))`.
    pub p_value: Option<f64>,
    /// `p_value < alpha`; `false` when `p_value` is `null`.
    pub significant: bool,
    /// What the report's options add (absent without options).
    #[serde(flatten, default)]
    pub extras: MetricExtras,
}

/// Revenue per exposed user of one arm against the control arm (Welch's t-test).
///
/// With means `m`, sample variances `s²` (ddof = 1) and user counts `n`:
/// `se = sqrt(s_t²/n_t + s_c²/n_c)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeanComparison {
    /// `m_t`, revenue per exposed user in the arm.
    pub treatment_mean: Option<f64>,
    /// `m_c`, revenue per exposed user in the control.
    pub control_mean: Option<f64>,
    /// `m_t − m_c`.
    pub difference: Option<f64>,
    /// Welch interval `m_t − m_c ± t_{α/2, df}·se`.
    pub difference_ci: Option<Interval>,
    /// `(m_t − m_c) / m_c`; `null` when `m_c = 0`.
    pub relative_difference: Option<f64>,
    /// `(m_t − m_c) / se`; `null` when an arm has fewer than 2 users or both variances are 0.
    pub t: Option<f64>,
    /// Welch–Satterthwaite `se⁴ / ((s_t²/n_t)²/(n_t − 1) + (s_c²/n_c)²/(n_c − 1))`.
    pub df: Option<f64>,
    /// Two-sided p-value `2·P(T_df > |t|)`.
    pub p_value: Option<f64>,
    /// `p_value < alpha`; `false` when `p_value` is `null`.
    pub significant: bool,
    /// What the report's options add (absent without options).
    #[serde(flatten, default)]
    pub extras: MetricExtras,
}

/// One non-control arm against the control arm.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArmComparison {
    /// The compared arm.
    pub arm: String,
    /// The control arm.
    pub control_arm: String,
    /// Users converted per user exposed (`x = users_converted`, `n = users_exposed`).
    pub conversion_rate: ProportionComparison,
    /// Clicks per exposure. With per-user sums ([`ArmAggregate::ctr_moments`]) users are the
    /// unit (delta method); without, exposures are treated as independent trials, which
    /// overstates the evidence when users see many exposures.
    pub ctr: ProportionComparison,
    /// Revenue per exposed user.
    pub revenue_per_user: MeanComparison,
}

/// What a [`DataWarning`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningCode {
    /// An aggregate had an empty arm name and was left out.
    UnnamedArmSkipped,
    /// No control arm: no comparisons were made.
    NoControlArm,
    /// `users_converted > users_exposed`: conversions without exposure; the conversion rate is
    /// above 1 and its tests are `null`.
    ConvertedWithoutExposure,
    /// `users_clicked > users_exposed`: clicks without exposure.
    ClickedWithoutExposure,
    /// `clicks > exposures`: CTR above 1; its tests are `null`.
    ClicksExceedExposures,
    /// `users_exposed > exposures`.
    UsersExceedExposures,
    /// `users_converted > conversions`.
    UsersExceedConversions,
    /// `users_clicked > clicks`.
    UsersExceedClicks,
    /// `revenue_sumsq < revenue²/users_exposed`: the per-user revenue variance is unknown.
    InconsistentRevenueSumsq,
    /// A negative cost: ROI and ROAS are `null`.
    NegativeCost,
    /// An arm of the planned split has no data (counted as 0 users in the SRM check).
    PlannedArmMissing,
}

/// A problem found in the input that did not stop the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataWarning {
    /// The arm concerned, when there is one.
    pub arm: Option<String>,
    /// Machine-readable kind.
    pub code: WarningCode,
    /// Human-readable explanation.
    pub message: String,
}

/// The campaign report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignReport {
    /// Significance level used for intervals (`1 − alpha` coverage) and `significant` flags.
    pub alpha: f64,
    /// The control arm; `null` when there is none.
    pub control_arm: Option<String>,
    /// Per-arm metrics, in input order.
    pub arms: Vec<ArmSummary>,
    /// Each non-control arm against the control, in input order; empty without a control arm.
    pub comparisons: Vec<ArmComparison>,
    /// Sample-ratio-mismatch check of `users_exposed` against the planned split (equal shares
    /// when none is given); `null` with fewer than two arms.
    pub srm: Option<SrmCheck>,
    /// Input problems that did not stop the report.
    pub data_warnings: Vec<DataWarning>,
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    if denominator == 0.0 {
        return None;
    }
    let r = numerator / denominator;
    r.is_finite().then_some(r)
}

fn warn(warnings: &mut Vec<DataWarning>, arm: &str, code: WarningCode, message: String) {
    warnings.push(DataWarning {
        arm: Some(arm.to_string()),
        code,
        message,
    });
}

/// Rejects values no aggregate can produce (non-finite sums, negative Σx²).
fn validate_arm(a: &ArmAggregate) -> Result<()> {
    let bad = |what: &str, v: f64| {
        CoreError::InvalidData(format!("arm '{}': {what} must be finite, got {v}", a.arm))
    };
    if !a.revenue.is_finite() {
        return Err(bad("revenue", a.revenue));
    }
    if !a.revenue_sumsq.is_finite() || a.revenue_sumsq < 0.0 {
        return Err(CoreError::InvalidData(format!(
            "arm '{}': revenue_sumsq must be finite and non-negative, got {}",
            a.arm, a.revenue_sumsq
        )));
    }
    if let Some(cost) = a.cost.filter(|c| !c.is_finite()) {
        return Err(bad("cost", cost));
    }
    Ok(())
}

/// Warnings about counts that cannot all be right.
fn consistency_warnings(a: &ArmAggregate, warnings: &mut Vec<DataWarning>) {
    let checks = [
        (
            a.users_converted > a.users_exposed,
            WarningCode::ConvertedWithoutExposure,
            format!(
                "{} users converted but only {} were exposed (conversions without exposure)",
                a.users_converted, a.users_exposed
            ),
        ),
        (
            a.users_clicked > a.users_exposed,
            WarningCode::ClickedWithoutExposure,
            format!(
                "{} users clicked but only {} were exposed (clicks without exposure)",
                a.users_clicked, a.users_exposed
            ),
        ),
        (
            a.clicks > a.exposures,
            WarningCode::ClicksExceedExposures,
            format!("{} clicks but only {} exposures", a.clicks, a.exposures),
        ),
        (
            a.users_exposed > a.exposures,
            WarningCode::UsersExceedExposures,
            format!(
                "{} users exposed but only {} exposures",
                a.users_exposed, a.exposures
            ),
        ),
        (
            a.users_converted > a.conversions,
            WarningCode::UsersExceedConversions,
            format!(
                "{} users converted but only {} conversions",
                a.users_converted, a.conversions
            ),
        ),
        (
            a.users_clicked > a.clicks,
            WarningCode::UsersExceedClicks,
            format!(
                "{} users clicked but only {} clicks",
                a.users_clicked, a.clicks
            ),
        ),
        (
            a.cost.is_some_and(|c| c < 0.0),
            WarningCode::NegativeCost,
            format!("negative cost {}", a.cost.unwrap_or_default()),
        ),
    ];
    for (triggered, code, message) in checks {
        if triggered {
            warn(warnings, &a.arm, code, message);
        }
    }
}

fn summarise(a: &ArmAggregate, moments: Option<&Moments>) -> ArmSummary {
    let positive_cost = a.cost.filter(|&c| c > 0.0);
    ArmSummary {
        arm: a.arm.clone(),
        users_exposed: a.users_exposed,
        exposures: a.exposures,
        clicks: a.clicks,
        users_clicked: a.users_clicked,
        conversions: a.conversions,
        users_converted: a.users_converted,
        ctr: ratio(a.clicks as f64, a.exposures as f64),
        conversion_rate: ratio(a.users_converted as f64, a.users_exposed as f64),
        revenue: a.revenue,
        revenue_per_user: moments.map(|m| m.mean).filter(|m| m.is_finite()),
        revenue_per_user_sd: moments.and_then(Moments::std_dev),
        cost: a.cost,
        roi: positive_cost.and_then(|c| ratio(a.revenue - c, c)),
        roas: positive_cost.and_then(|c| ratio(a.revenue, c)),
    }
}

/// The intervals and test of one comparison.
struct Tested {
    absolute_lift_ci: Option<(f64, f64)>,
    relative_lift_ci: Option<(f64, f64)>,
    z: Option<f64>,
    p_value: Option<f64>,
}

impl ProportionComparison {
    /// Assembles a comparison: the lifts from the two rates, significance from the p-value.
    fn assemble(
        test: ProportionTest,
        treatment_rate: Option<f64>,
        control_rate: Option<f64>,
        t: Tested,
        alpha: f64,
    ) -> ProportionComparison {
        ProportionComparison {
            test,
            treatment_rate,
            control_rate,
            absolute_lift: treatment_rate.zip(control_rate).map(|(t, c)| t - c),
            absolute_lift_ci: t.absolute_lift_ci.map(Interval::from),
            relative_lift: treatment_rate
                .zip(control_rate)
                .and_then(|(t, c)| ratio(t, c))
                .map(|r| r - 1.0),
            relative_lift_ci: t.relative_lift_ci.map(Interval::from),
            z: t.z,
            p_value: t.p_value,
            significant: t.p_value.is_some_and(|p| p < alpha),
            extras: MetricExtras::default(),
        }
    }
}

fn compare_proportions(
    (x_t, n_t): (u64, u64),
    (x_c, n_c): (u64, u64),
    alpha: f64,
) -> ProportionComparison {
    let test = two_proportion_ztest(x_t, n_t, x_c, n_c);
    ProportionComparison::assemble(
        ProportionTest::PooledZ,
        ratio(x_t as f64, n_t as f64),
        ratio(x_c as f64, n_c as f64),
        Tested {
            absolute_lift_ci: diff_confint(x_t, n_t, x_c, n_c, alpha),
            relative_lift_ci: relative_lift_confint(x_t, n_t, x_c, n_c, alpha),
            z: test.map(|t| t.z),
            p_value: test.map(|t| t.p_value),
        },
        alpha,
    )
}

/// A CTR with users as the unit: delta-method variances of each arm's ratio of sums.
fn compare_ctr_by_user(
    treatment: &RatioMoments,
    control: &RatioMoments,
    alpha: f64,
) -> ProportionComparison {
    let cmp = compare_ratios(treatment, control, alpha);
    ProportionComparison::assemble(
        ProportionTest::DeltaMethod,
        treatment.ratio(),
        control.ratio(),
        Tested {
            absolute_lift_ci: cmp.and_then(|c| c.difference_ci),
            relative_lift_ci: cmp
                .and_then(|c| c.ratio_ci)
                .map(|(lo, hi)| (lo - 1.0, hi - 1.0)),
            z: cmp.and_then(|c| c.z),
            p_value: cmp.and_then(|c| c.p_value),
        },
        alpha,
    )
}

fn compare_means(
    treatment: Option<&Moments>,
    control: Option<&Moments>,
    alpha: f64,
) -> MeanComparison {
    let treatment_mean = treatment.map(|m| m.mean);
    let control_mean = control.map(|m| m.mean);
    let difference = treatment_mean
        .zip(control_mean)
        .map(|(t, c)| t - c)
        .filter(|d| d.is_finite());
    // Both samples need a variance for the test.
    let samples = treatment
        .zip(control)
        .and_then(|(t, c)| Some(((t.mean, t.variance?, t.n), (c.mean, c.variance?, c.n))));
    let test = samples.and_then(|((m1, v1, n1), (m2, v2, n2))| welch_ttest(m1, v1, n1, m2, v2, n2));
    let ci = samples
        .and_then(|((m1, v1, n1), (m2, v2, n2))| welch_confint(m1, v1, n1, m2, v2, n2, alpha));
    let p_value = test.map(|t| t.p_value);
    MeanComparison {
        treatment_mean,
        control_mean,
        difference,
        difference_ci: ci.map(Interval::from),
        relative_difference: difference.zip(control_mean).and_then(|(d, c)| ratio(d, c)),
        t: test.map(|t| t.t),
        df: test.map(|t| t.df),
        p_value,
        significant: p_value.is_some_and(|p| p < alpha),
        extras: MetricExtras::default(),
    }
}

/// The SRM check over the arms present, against the planned split or equal shares.
fn srm_check(
    arms: &[&ArmAggregate],
    planned_split: Option<&[(String, f64)]>,
    warnings: &mut Vec<DataWarning>,
) -> Result<Option<SrmCheck>> {
    let Some(plan) = planned_split else {
        let rows: Vec<(String, u64, f64)> = arms
            .iter()
            .map(|a| (a.arm.clone(), a.users_exposed, 1.0))
            .collect();
        return Ok(SrmCheck::new(&rows, SplitSource::AssumedEqual));
    };
    let mut planned = HashSet::new();
    for (name, weight) in plan {
        if !(weight.is_finite() && *weight > 0.0) {
            return Err(CoreError::InvalidParameter(format!(
                "planned split: the share of arm '{name}' must be a positive number, got {weight}"
            )));
        }
        if !planned.insert(name.as_str()) {
            return Err(CoreError::InvalidParameter(format!(
                "planned split: arm '{name}' appears twice"
            )));
        }
    }
    let unplanned: Vec<&str> = arms
        .iter()
        .map(|a| a.arm.as_str())
        .filter(|a| !planned.contains(a))
        .collect();
    if !unplanned.is_empty() {
        return Err(CoreError::InvalidParameter(format!(
            "planned split has no share for arm(s) {}",
            unplanned
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let users: HashMap<&str, u64> = arms
        .iter()
        .map(|a| (a.arm.as_str(), a.users_exposed))
        .collect();
    let mut rows = Vec::with_capacity(plan.len());
    for (name, weight) in plan {
        let observed = users.get(name.as_str()).copied().unwrap_or_else(|| {
            warnings.push(DataWarning {
                arm: Some(name.clone()),
                code: WarningCode::PlannedArmMissing,
                message: format!("planned arm '{name}' has no data; counted as 0 users"),
            });
            0
        });
        rows.push((name.clone(), observed, *weight));
    }
    Ok(SrmCheck::new(&rows, SplitSource::Planned))
}

/// Builds the campaign report from per-arm aggregates.
///
/// * `control_arm`: the arm the others are compared against; when `None`, the arm named
///   [`DEFAULT_CONTROL_ARM`] (`"control"`) if there is one, otherwise no comparisons are made.
/// * `planned_split`: planned share of users per arm as `(arm, weight)`; weights are normalised
///   to sum to 1. When `None`, the SRM check assumes equal shares across the arms present.
/// * `alpha`: significance level, in `(0, 1)`; intervals have `1 − alpha` coverage.
///
/// Arms with an empty name are skipped with a warning; counts that cannot all be right (e.g.
/// more users converted than exposed) produce [`DataWarning`]s, not errors.
///
/// Errors: `InvalidParameter` when `alpha` is not in `(0, 1)`, the named control arm does not
/// exist, or the planned split has a non-positive weight, a duplicate arm, or misses an arm that
/// has data; `InvalidData` when two aggregates share an arm name or a revenue/cost value is not
/// finite (or `revenue_sumsq` is negative).
pub fn campaign_report(
    arms: &[ArmAggregate],
    control_arm: Option<&str>,
    planned_split: Option<&[(String, f64)]>,
    alpha: f64,
) -> Result<CampaignReport> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(CoreError::InvalidParameter(format!(
            "alpha must be in (0, 1), got {alpha}"
        )));
    }
    let mut warnings = Vec::new();
    let mut named: Vec<&ArmAggregate> = Vec::with_capacity(arms.len());
    let mut seen = HashSet::new();
    for a in arms {
        if a.arm.trim().is_empty() {
            warnings.push(DataWarning {
                arm: None,
                code: WarningCode::UnnamedArmSkipped,
                message: format!(
                    "skipped an arm with an empty name ({} users exposed)",
                    a.users_exposed
                ),
            });
            continue;
        }
        if !seen.insert(a.arm.as_str()) {
            return Err(CoreError::InvalidData(format!(
                "arm '{}' appears twice",
                a.arm
            )));
        }
        validate_arm(a)?;
        consistency_warnings(a, &mut warnings);
        named.push(a);
    }

    let moments: Vec<Option<Moments>> = named
        .iter()
        .map(|a| {
            let (sum, sumsq) = revenue_sums(a);
            Moments::from_sums(a.users_exposed, sum, sumsq)
        })
        .collect();
    for (a, m) in named.iter().zip(&moments) {
        if m.is_some_and(|m| m.n >= 2 && m.variance.is_none()) {
            warn(
                &mut warnings,
                &a.arm,
                WarningCode::InconsistentRevenueSumsq,
                format!(
                    "revenue_sumsq {} is below revenue²/users_exposed (revenue {}, {} users): \
                     the revenue variance is unknown",
                    a.revenue_sumsq, a.revenue, a.users_exposed
                ),
            );
        }
    }

    let control_index = match control_arm {
        Some(name) => Some(named.iter().position(|a| a.arm == name).ok_or_else(|| {
            CoreError::InvalidParameter(format!(
                "control arm '{name}' not found among arms [{}]",
                named
                    .iter()
                    .map(|a| format!("'{}'", a.arm))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?),
        None => named.iter().position(|a| a.arm == DEFAULT_CONTROL_ARM),
    };
    if control_index.is_none() && !named.is_empty() {
        warnings.push(DataWarning {
            arm: None,
            code: WarningCode::NoControlArm,
            message: format!(
                "no control arm (none named and no arm called '{DEFAULT_CONTROL_ARM}'): \
                 no comparisons"
            ),
        });
    }

    let summaries: Vec<ArmSummary> = named
        .iter()
        .zip(&moments)
        .map(|(a, m)| summarise(a, m.as_ref()))
        .collect();

    let comparisons = match control_index {
        None => Vec::new(),
        Some(ci) => {
            let control = named[ci];
            named
                .iter()
                .zip(&moments)
                .enumerate()
                .filter(|(i, _)| *i != ci)
                .map(|(_, (a, m))| ArmComparison {
                    arm: a.arm.clone(),
                    control_arm: control.arm.clone(),
                    conversion_rate: compare_proportions(
                        (a.users_converted, a.users_exposed),
                        (control.users_converted, control.users_exposed),
                        alpha,
                    ),
                    ctr: match (&a.ctr_moments, &control.ctr_moments) {
                        (Some(t), Some(c)) => compare_ctr_by_user(t, c, alpha),
                        _ => compare_proportions(
                            (a.clicks, a.exposures),
                            (control.clicks, control.exposures),
                            alpha,
                        ),
                    },
                    revenue_per_user: compare_means(m.as_ref(), moments[ci].as_ref(), alpha),
                })
                .collect()
        }
    };

    let srm = srm_check(&named, planned_split, &mut warnings)?;

    Ok(CampaignReport {
        alpha,
        control_arm: control_index.map(|i| named[i].arm.clone()),
        arms: summaries,
        comparisons,
        srm,
        data_warnings: warnings,
    })
}
