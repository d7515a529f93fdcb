//! Campaign statistics: tests of proportions, Welch's t-test, the sample-ratio-mismatch check,
//! uplift-model metrics, the attribution of a campaign's cost to its arms, and the campaign report
//! that combines them.
//!
//! The SQL layer aggregates campaign events per arm ([`ArmAggregate`]); [`campaign_report`]
//! computes everything else. Each statistical function reproduces a reference implementation,
//! checked to 1e-6 by `tests/stats_reference.rs` against values generated with
//! `scripts/stats_reference.py`:
//!
//! | function | reference |
//! |---|---|
//! | [`two_proportion_ztest`] | statsmodels `proportions_ztest([x1, x2], [n1, n2])` |
//! | [`diff_confint`] | statsmodels `confint_proportions_2indep(..., compare='diff', method='wald')` |
//! | [`ratio_confint`], [`relative_lift_confint`] | statsmodels `confint_proportions_2indep(..., compare='ratio', method='log')` |
//! | [`welch_ttest`] | scipy `ttest_ind_from_stats(..., equal_var=False)` |
//! | [`welch_confint`] | scipy `ttest_ind(..., equal_var=False).confidence_interval()` |
//! | [`Moments::from_sums`] | numpy `mean`, `var(ddof=1)` |
//! | [`RatioMoments::ratio_variance`], [`compare_ratios`] | statsmodels `WLS(c/e, 1, weights=e).fit(cov_type='HC1')` (delta method) |
//! | [`chisquare_gof`] | scipy `chisquare(obs, f_exp=fractions * sum(obs))` |
//! | [`qini_auc_score`], [`uplift_auc_score`], [`uplift_at_k`] | scikit-uplift 0.5 `sklift.metrics` |
//! | [`t_test`], [`sequential_test`], [`bayesian_test`], [`compute_theta`] | gbstats 0.8.0 `TwoSidedTTest`, `SequentialTwoSidedTTest`, `EffectBayesianABTest`, `compute_theta` (`tests/gbstats_reference.rs`) |
//! | [`users_per_arm`], [`minimum_detectable_effect`] | statsmodels `NormalIndPower().solve_power` with `proportion_effectsize` (`tests/gbstats_reference.rs`) |
//! | [`adjust_pvalues`] | statsmodels `multipletests(p, method='holm' \| 'fdr_bh')[1]` (to 1e-12, `tests/multitest_reference.rs`) |
//!
//! Undefined results are `None` (JSON `null`), never NaN or infinity, and no input panics.

pub mod analysis;
pub mod cost;
mod dist;
pub mod effect;
pub mod html;
pub mod multitest;
pub mod power;
pub mod proportions;
pub mod ratio;
pub mod report;
pub mod srm;
pub mod uplift;
pub mod welch;

#[cfg(test)]
mod report_tests;

pub use analysis::{
    analyse, covariate_mean, merge_aggregates, segment_groups, AnalysisOptions, BayesianReport,
    CappedRevenue, CovariateSums, EffectReport, MetricExtras, Risk, SegmentGroup, NO_SEGMENT,
    OTHER_SEGMENTS,
};
pub use cost::{attribute_costs, CampaignCost};
pub use effect::{
    bayesian_test, compute_theta, sequential_test, t_test, Base, BayesianEstimate, Difference,
    Estimate, NormalPrior, Statistic, Undefined, DEFAULT_SEQUENTIAL_TUNING,
};
pub use multitest::{adjust_pvalues, Correction};
pub use power::{minimum_detectable_effect, users_per_arm, Baseline, PowerError, PowerPlan};
pub use proportions::{
    diff_confint, ratio_confint, relative_lift_confint, two_proportion_ztest, ZTest,
};
pub use ratio::{compare_ratios, RatioComparison, RatioMoments};
pub use report::{
    campaign_report, ArmAggregate, ArmComparison, ArmSummary, CampaignReport, DataWarning,
    Interval, MeanComparison, ProportionComparison, ProportionTest, WarningCode,
    DEFAULT_CONTROL_ARM,
};
pub use srm::{chisquare_gof, ChiSquare, SplitSource, SrmArm, SrmCheck, SRM_P_THRESHOLD};
pub use uplift::{
    perfect_qini_curve, perfect_uplift_curve, qini_auc_score, qini_curve, uplift_at_k,
    uplift_auc_score, uplift_curve, Curve, UpliftObservation, UpliftStrategy,
};
pub use welch::{welch_confint, welch_ttest, Moments, TTest};
