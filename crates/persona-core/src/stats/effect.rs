//! Effect estimates as GrowthBook's statistics engine computes them (`gbstats==0.8.0`): the
//! fixed-sample t-test, the always-valid sequential test, the Bayesian effect test and CUPED
//! regression adjustment, for absolute and relative differences.
//!
//! Each function reproduces one gbstats class on the same sufficient statistics, checked to 1e-6
//! by `tests/gbstats_reference.rs` against values generated with `scripts/gbstats_reference.py`:
//!
//! | here | gbstats 0.8.0 |
//! |---|---|
//! | [`Statistic::Proportion`], [`Statistic::Mean`], [`Statistic::Ratio`], [`Statistic::Adjusted`] | `ProportionStatistic`, `SampleMeanStatistic`, `RatioStatistic`, `RegressionAdjustedStatistic` (`models/statistics.py`) |
//! | [`compute_theta`] | `compute_theta` |
//! | [`t_test`] | `frequentist.tests.TwoSidedTTest` |
//! | [`sequential_test`] | `frequentist.tests.SequentialTwoSidedTTest` |
//! | [`bayesian_test`] | `bayesian.tests.EffectBayesianABTest` (`prior_type` equal to the difference type) |
//!
//! With `a` the control and `b` the treatment, means `μ`, per-unit variances `σ²` and unit counts
//! `n` of the statistics:
//!
//! - absolute effect `Δ = μ_b − μ_a`, variance `V = σ_b²/n_b + σ_a²/n_a`;
//! - relative effect `Δ = (μ_b − μ_a)/μ̃_a` (`μ̃` the unadjusted mean), delta-method variance
//!   `V = σ_b²/(μ̃_a² n_b) + σ_a² μ̃_b²/(μ̃_a⁴ n_a)`.
//!
//! Where gbstats returns its "uninformative" default (effect 0, interval [0, 0], p = 1 with an
//! error message) these functions return the reason as an [`Undefined`] instead.

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};
use statrs::function::erf::erfc;

use super::dist::{self, t_sf, t_two_sided_critical};
use super::report::Interval;

/// A metric's sufficient statistics in one arm: what gbstats' statistic classes hold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Statistic {
    /// A share of units (conversion rate): `n` units of which `sum` converted. Variance
    /// `p(1 − p)` with `p = sum/n` (no degrees-of-freedom correction, as gbstats).
    Proportion { n: f64, sum: f64 },
    /// A mean per unit (revenue per user): variance `(Σx² − (Σx)²/n)/(n − 1)`.
    Mean { n: f64, sum: f64, sum_squares: f64 },
    /// A ratio of per-unit sums `Σm/Σd` (CTR = clicks/exposures, users as the unit), delta-method
    /// variance `σ_m²/μ_d² − 2 cov μ_m/μ_d³ + μ_m² σ_d²/μ_d⁴`.
    Ratio {
        n: f64,
        m_sum: f64,
        m_sum_squares: f64,
        d_sum: f64,
        d_sum_squares: f64,
        m_d_sum_of_products: f64,
    },
    /// A metric adjusted by a pre-period covariate (CUPED): mean `μ_post − θ μ_pre`, variance
    /// `σ_post² + θ² σ_pre² − 2θ cov(post, pre)`.
    Adjusted {
        n: f64,
        post: Base,
        pre: Base,
        post_pre_sum_of_products: f64,
        theta: f64,
    },
}

/// The post- or pre-period statistic of an [`Statistic::Adjusted`] one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Base {
    /// As [`Statistic::Proportion`].
    Proportion { sum: f64 },
    /// As [`Statistic::Mean`].
    Mean { sum: f64, sum_squares: f64 },
}

impl Base {
    fn sum(&self) -> f64 {
        match *self {
            Base::Proportion { sum } | Base::Mean { sum, .. } => sum,
        }
    }

    fn sum_squares(&self) -> f64 {
        match *self {
            Base::Proportion { sum } => sum,
            Base::Mean { sum_squares, .. } => sum_squares,
        }
    }

    fn at(&self, n: f64) -> Statistic {
        match *self {
            Base::Proportion { sum } => Statistic::Proportion { n, sum },
            Base::Mean { sum, sum_squares } => Statistic::Mean {
                n,
                sum,
                sum_squares,
            },
        }
    }
}

fn mean_of(n: f64, sum: f64) -> f64 {
    if n == 0.0 {
        0.0
    } else {
        sum / n
    }
}

fn sample_variance(n: f64, sum: f64, sum_squares: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else {
        (sum_squares - sum.powi(2) / n) / (n - 1.0)
    }
}

fn covariance(n: f64, a_sum: f64, b_sum: f64, sum_of_products: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else {
        (sum_of_products - a_sum * b_sum / n) / (n - 1.0)
    }
}

impl Statistic {
    /// Number of units.
    pub fn n(&self) -> f64 {
        match *self {
            Statistic::Proportion { n, .. }
            | Statistic::Mean { n, .. }
            | Statistic::Ratio { n, .. }
            | Statistic::Adjusted { n, .. } => n,
        }
    }

    /// The (adjusted) mean.
    pub fn mean(&self) -> f64 {
        match *self {
            Statistic::Proportion { n, sum } | Statistic::Mean { n, sum, .. } => mean_of(n, sum),
            Statistic::Ratio { m_sum, d_sum, .. } => {
                if d_sum == 0.0 {
                    0.0
                } else {
                    m_sum / d_sum
                }
            }
            Statistic::Adjusted {
                n,
                post,
                pre,
                theta,
                ..
            } => post.at(n).mean() - theta * pre.at(n).mean(),
        }
    }

    /// The mean without regression adjustment.
    pub fn unadjusted_mean(&self) -> f64 {
        match *self {
            Statistic::Adjusted { n, post, .. } => post.at(n).mean(),
            _ => self.mean(),
        }
    }

    /// Per-unit variance.
    pub fn variance(&self) -> f64 {
        match *self {
            Statistic::Proportion { n, sum } => {
                let p = mean_of(n, sum);
                p * (1.0 - p)
            }
            Statistic::Mean {
                n,
                sum,
                sum_squares,
            } => sample_variance(n, sum, sum_squares),
            Statistic::Ratio {
                n,
                m_sum,
                m_sum_squares,
                d_sum,
                d_sum_squares,
                m_d_sum_of_products,
            } => {
                let d_mean = mean_of(n, d_sum);
                if d_mean == 0.0 || n <= 1.0 {
                    return 0.0;
                }
                let m_mean = mean_of(n, m_sum);
                let cov = covariance(n, m_sum, d_sum, m_d_sum_of_products);
                sample_variance(n, m_sum, m_sum_squares) / d_mean.powi(2)
                    - 2.0 * cov * m_mean / d_mean.powi(3)
                    + m_mean.powi(2) * sample_variance(n, d_sum, d_sum_squares) / d_mean.powi(4)
            }
            Statistic::Adjusted {
                n,
                post,
                pre,
                post_pre_sum_of_products,
                theta,
            } => {
                if n <= 1.0 {
                    return 0.0;
                }
                let cov = covariance(n, post.sum(), pre.sum(), post_pre_sum_of_products);
                post.at(n).variance() + theta.powi(2) * pre.at(n).variance() - 2.0 * theta * cov
            }
        }
    }

    fn has_zero_variance(&self) -> bool {
        // `!(v > 0)` also catches NaN from inconsistent sums.
        !dist::positive(self.variance())
    }

    fn with_theta(self, value: f64) -> Statistic {
        match self {
            Statistic::Adjusted {
                n,
                post,
                pre,
                post_pre_sum_of_products,
                ..
            } => Statistic::Adjusted {
                n,
                post,
                pre,
                post_pre_sum_of_products,
                theta: value,
            },
            other => other,
        }
    }

    fn post(self) -> Statistic {
        match self {
            Statistic::Adjusted { n, post, .. } => post.at(n),
            other => other,
        }
    }
}

/// The CUPED coefficient pooled over both arms (gbstats `compute_theta`, Deng et al. 2013):
/// `θ = cov(post, pre)/var(pre)` over the units of both arms; 0 when either pooled variance is 0
/// or the statistics are not both adjusted ones of the same kinds.
pub fn compute_theta(a: &Statistic, b: &Statistic) -> f64 {
    let (
        Statistic::Adjusted {
            n: n_a,
            post: post_a,
            pre: pre_a,
            post_pre_sum_of_products: cross_a,
            ..
        },
        Statistic::Adjusted {
            n: n_b,
            post: post_b,
            pre: pre_b,
            post_pre_sum_of_products: cross_b,
            ..
        },
    ) = (*a, *b)
    else {
        return 0.0;
    };
    let n = n_a + n_b;
    let joint = |x: Base, y: Base| match (x, y) {
        (Base::Proportion { sum: s }, Base::Proportion { sum: t }) => {
            Some(Base::Proportion { sum: s + t })
        }
        (Base::Mean { .. }, Base::Mean { .. }) => Some(Base::Mean {
            sum: x.sum() + y.sum(),
            sum_squares: x.sum_squares() + y.sum_squares(),
        }),
        _ => None,
    };
    let (Some(post), Some(pre)) = (joint(post_a, post_b), joint(pre_a, pre_b)) else {
        return 0.0;
    };
    let (pre_var, post_var) = (pre.at(n).variance(), post.at(n).variance());
    if pre_var == 0.0 || post_var == 0.0 {
        return 0.0;
    }
    covariance(n, post.sum(), pre.sum(), cross_a + cross_b) / pre_var
}

/// Absolute or relative effects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Difference {
    /// `μ_b − μ_a`.
    #[default]
    Absolute,
    /// `(μ_b − μ_a)/μ_a`.
    Relative,
}

/// Why an effect could not be estimated (gbstats' error messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Undefined {
    /// The control's mean is 0 (`ZERO_NEGATIVE_BASELINE_VARIATION`): gbstats' frequentist tests
    /// refuse it for absolute effects too, its Bayesian test only for relative ones.
    ZeroBaseline,
    /// An arm's variance is 0 or negative (`ZERO_NEGATIVE_VARIANCE`).
    ZeroVariance,
    /// An arm has no units (`NO_UNITS_IN_VARIATION`).
    NoUnits,
    /// A parameter is out of range (alpha outside (0, 1), a prior variance not positive).
    BadParameter,
}

impl Undefined {
    /// A sentence for the report.
    pub fn message(self) -> &'static str {
        match self {
            Undefined::ZeroBaseline => "the control's mean is 0",
            Undefined::ZeroVariance => "an arm's metric has no variance",
            Undefined::NoUnits => "an arm has no users",
            Undefined::BadParameter => "a parameter is out of range",
        }
    }
}

/// A frequentist effect estimate (fixed-sample or sequential).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The effect `Δ`.
    pub effect: f64,
    /// Its standard error `sqrt(V)`.
    pub se: f64,
    /// Confidence interval (coverage `1 − alpha`; for the sequential test at every look).
    pub ci: Interval,
    /// Two-sided p-value (sequential: always valid).
    pub p_value: f64,
}

/// The statistics of a comparison once gbstats' constructor has run: θ set for adjusted ones.
fn prepared(a: &Statistic, b: &Statistic) -> (Statistic, Statistic) {
    if matches!(a, Statistic::Adjusted { .. }) && matches!(b, Statistic::Adjusted { .. }) {
        let theta = compute_theta(a, b);
        if theta == 0.0 {
            return (a.post(), b.post());
        }
        return (a.with_theta(theta), b.with_theta(theta));
    }
    (*a, *b)
}

fn diff(a: &Statistic, b: &Statistic, difference: Difference) -> f64 {
    match difference {
        Difference::Absolute => b.mean() - a.mean(),
        // gbstats divides by the unadjusted mean, or the adjusted one when that is 0.
        Difference::Relative => {
            let base = if a.unadjusted_mean() != 0.0 {
                a.unadjusted_mean()
            } else {
                a.mean()
            };
            (b.mean() - a.mean()) / base
        }
    }
}

fn variance(a: &Statistic, b: &Statistic, difference: Difference) -> f64 {
    let (var_a, var_b, n_a, n_b) = (a.variance(), b.variance(), a.n(), b.n());
    match difference {
        Difference::Absolute => var_b / n_b + var_a / n_a,
        Difference::Relative => {
            let (mean_a, mean_b) = (a.unadjusted_mean(), b.unadjusted_mean());
            var_b / (mean_a.powi(2) * n_b) + var_a * mean_b.powi(2) / (mean_a.powi(4) * n_a)
        }
    }
}

fn frequentist_checks(a: &Statistic, b: &Statistic, alpha: f64) -> Result<(), Undefined> {
    if !(alpha > 0.0 && alpha < 1.0) {
        return Err(Undefined::BadParameter);
    }
    if a.mean() == 0.0 || a.unadjusted_mean() == 0.0 {
        return Err(Undefined::ZeroBaseline);
    }
    if a.has_zero_variance() || b.has_zero_variance() {
        return Err(Undefined::ZeroVariance);
    }
    Ok(())
}

fn finite(e: Estimate) -> Result<Estimate, Undefined> {
    let ok = [e.effect, e.se, e.ci.low, e.ci.high, e.p_value]
        .iter()
        .all(|v| v.is_finite());
    if ok {
        Ok(e)
    } else {
        Err(Undefined::ZeroVariance)
    }
}

/// Fixed-sample two-sided t-test with Welch–Satterthwaite degrees of freedom (gbstats
/// `TwoSidedTTest`): `t = Δ/sqrt(V)`, `df = V²/((σ_b²/n_b)²/(n_b − 1) + (σ_a²/n_a)²/(n_a − 1))`
/// (the absolute-scale variances, also for relative effects), `p = 2 P(T_df > |t|)`, interval
/// `Δ ± t_{1−α/2, df} sqrt(V)`.
pub fn t_test(
    a: &Statistic,
    b: &Statistic,
    difference: Difference,
    alpha: f64,
) -> Result<Estimate, Undefined> {
    let (a, b) = prepared(a, b);
    frequentist_checks(&a, &b, alpha)?;
    let effect = diff(&a, &b, difference);
    let v = variance(&a, &b, difference);
    let se = v.sqrt();
    let (var_a, var_b, n_a, n_b) = (a.variance(), b.variance(), a.n(), b.n());
    let df = (var_b / n_b + var_a / n_a).powi(2)
        / (var_b.powi(2) / (n_b.powi(2) * (n_b - 1.0))
            + var_a.powi(2) / (n_a.powi(2) * (n_a - 1.0)));
    let t = effect / se;
    let p_value = t_sf(t.abs(), df)
        .map(|p| (2.0 * p).min(1.0))
        .ok_or(Undefined::ZeroVariance)?;
    let width = t_two_sided_critical(alpha, df).ok_or(Undefined::ZeroVariance)? * se;
    finite(Estimate {
        effect,
        se,
        ci: Interval {
            low: effect - width,
            high: effect + width,
        },
        p_value,
    })
}

/// The default tuning parameter of the sequential test (gbstats' `sequential_tuning_parameter`).
pub const DEFAULT_SEQUENTIAL_TUNING: f64 = 5000.0;

/// Always-valid two-sided test (gbstats `SequentialTwoSidedTTest`): the asymptotic confidence
/// sequence of Waudby-Smith et al. (2023, arXiv:2103.06476v7). With `N = n_a + n_b`,
/// `ρ = sqrt((−2 ln α + ln(1 − 2 ln α))/tuning)` (their eq. 161) and `s² = V N`: interval
/// `Δ ± sqrt(s²) sqrt(2(Nρ² + 1) ln(sqrt(Nρ² + 1)/α)/(Nρ)²)` (eq. 9) and p-value
/// `min(1, sqrt(Nρ² + 1)/exp(ρ² Δ² N/(2V(Nρ² + 1))))` (eq. 155). The interval and p-value may be
/// read after every new event without inflating the error rate.
pub fn sequential_test(
    a: &Statistic,
    b: &Statistic,
    difference: Difference,
    alpha: f64,
    tuning: f64,
) -> Result<Estimate, Undefined> {
    if !(tuning > 0.0 && tuning.is_finite()) {
        return Err(Undefined::BadParameter);
    }
    let (a, b) = prepared(a, b);
    frequentist_checks(&a, &b, alpha)?;
    let effect = diff(&a, &b, difference);
    let v = variance(&a, &b, difference);
    let n = a.n() + b.n();
    let rho = ((-2.0 * alpha.ln() + (-2.0 * alpha.ln() + 1.0).ln()) / tuning).sqrt();
    let s2 = v * n;
    let nr2p1 = n * rho.powi(2) + 1.0;
    let width = s2.sqrt() * (2.0 * nr2p1 * (nr2p1.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt();
    let st2 = effect.powi(2) * n / v;
    // p = 1/e-value, computed in logs so that a huge e-value gives p = 0, not a NaN.
    let ln_evalue = rho.powi(2) * st2 / (2.0 * nr2p1) - 0.5 * nr2p1.ln();
    let p_value = (-ln_evalue).exp().min(1.0);
    finite(Estimate {
        effect,
        se: v.sqrt(),
        ci: Interval {
            low: effect - width,
            high: effect + width,
        },
        p_value,
    })
}

/// A proper normal prior on the effect, in the scale of the [`Difference`] tested.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct NormalPrior {
    /// Prior mean of the effect.
    pub mean: f64,
    /// Prior variance of the effect (positive).
    pub variance: f64,
}

/// A Bayesian effect estimate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BayesianEstimate {
    /// Posterior mean of the effect.
    pub effect: f64,
    /// Posterior standard deviation.
    pub sd: f64,
    /// Equal-tailed credible interval with probability `1 − alpha`.
    pub ci: Interval,
    /// Posterior probability that the effect is positive.
    pub chance_to_win: f64,
    /// Expected loss of choosing the control: `E[max(Δ, 0)]`.
    pub risk_control: f64,
    /// Expected loss of choosing the treatment: `E[max(−Δ, 0)]`.
    pub risk_treatment: f64,
}

/// Standard normal density.
fn phi(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// Standard normal distribution function, accurate in both tails.
fn big_phi(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Bayesian effect test with a normal likelihood (gbstats `EffectBayesianABTest`): the data give
/// `Δ ~ N(Δ̂, V)` (as the t-test's effect and variance); with a proper prior `N(m, v)` the
/// posterior is `N((Δ̂/V + m/v)/(1/V + 1/v), 1/(1/V + 1/v))`, with the improper (flat) prior it is
/// `N(Δ̂, V)`. Chance to win `P(Δ > 0)`; risks are the expected losses
/// `E[max(Δ, 0)] = μΦ(μ/σ) + σφ(μ/σ)` (choosing control) and `E[max(−Δ, 0)] = σφ(μ/σ) − μΦ(−μ/σ)`
/// (choosing treatment), gbstats' truncated-normal means times their probabilities in closed form.
pub fn bayesian_test(
    a: &Statistic,
    b: &Statistic,
    difference: Difference,
    alpha: f64,
    prior: Option<NormalPrior>,
) -> Result<BayesianEstimate, Undefined> {
    if !(alpha > 0.0 && alpha < 1.0) || prior.is_some_and(|p| !dist::positive(p.variance)) {
        return Err(Undefined::BadParameter);
    }
    let (a, b) = prepared(a, b);
    if difference == Difference::Relative && (a.mean() == 0.0 || a.unadjusted_mean() == 0.0) {
        return Err(Undefined::ZeroBaseline);
    }
    if a.n() == 0.0 || b.n() == 0.0 {
        return Err(Undefined::NoUnits);
    }
    if a.has_zero_variance() || b.has_zero_variance() {
        return Err(Undefined::ZeroVariance);
    }
    let data_variance = variance(&a, &b, difference);
    let data_mean = diff(&a, &b, difference);
    let (mu, precision) = match prior {
        Some(p) => {
            let precision = 1.0 / data_variance + 1.0 / p.variance;
            (
                (data_mean / data_variance + p.mean / p.variance) / precision,
                precision,
            )
        }
        None => (data_mean, 1.0 / data_variance),
    };
    let sigma = (1.0 / precision).sqrt();
    if !(mu.is_finite() && sigma.is_finite() && sigma > 0.0) {
        return Err(Undefined::ZeroVariance);
    }
    let normal = Normal::new(mu, sigma).map_err(|_| Undefined::ZeroVariance)?;
    let z = mu / sigma;
    Ok(BayesianEstimate {
        effect: mu,
        sd: sigma,
        ci: Interval {
            low: normal.inverse_cdf(alpha / 2.0),
            high: normal.inverse_cdf(1.0 - alpha / 2.0),
        },
        chance_to_win: big_phi(z),
        risk_control: mu * big_phi(z) + sigma * phi(z),
        risk_treatment: sigma * phi(z) - mu * big_phi(-z),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prop(n: f64, sum: f64) -> Statistic {
        Statistic::Proportion { n, sum }
    }

    #[test]
    fn effect_refuses_what_gbstats_refuses() {
        assert_eq!(
            t_test(
                &prop(100.0, 0.0),
                &prop(100.0, 5.0),
                Difference::Absolute,
                0.05
            ),
            Err(Undefined::ZeroBaseline)
        );
        assert_eq!(
            t_test(
                &prop(100.0, 3.0),
                &prop(100.0, 100.0),
                Difference::Absolute,
                0.05
            ),
            Err(Undefined::ZeroVariance)
        );
        assert_eq!(
            bayesian_test(
                &prop(0.0, 0.0),
                &prop(10.0, 1.0),
                Difference::Absolute,
                0.05,
                None
            ),
            Err(Undefined::NoUnits)
        );
        assert_eq!(
            sequential_test(
                &prop(10.0, 1.0),
                &prop(10.0, 2.0),
                Difference::Absolute,
                0.05,
                0.0
            ),
            Err(Undefined::BadParameter)
        );
    }

    #[test]
    fn effect_theta_is_zero_without_pre_variance() {
        let adjusted = |sum| Statistic::Adjusted {
            n: 10.0,
            post: Base::Mean {
                sum,
                sum_squares: sum * 3.0,
            },
            pre: Base::Mean {
                sum: 10.0,
                sum_squares: 10.0,
            },
            post_pre_sum_of_products: sum,
            theta: 0.0,
        };
        assert_eq!(compute_theta(&adjusted(5.0), &adjusted(7.0)), 0.0);
        // Then the adjusted test is the unadjusted one.
        let plain = |sum: f64| Statistic::Mean {
            n: 10.0,
            sum,
            sum_squares: sum * 3.0,
        };
        assert_eq!(
            t_test(&adjusted(5.0), &adjusted(7.0), Difference::Relative, 0.05),
            t_test(&plain(5.0), &plain(7.0), Difference::Relative, 0.05)
        );
    }

    #[test]
    fn effect_risks_are_expected_losses() {
        // E[max(Δ,0)] − E[max(−Δ,0)] = E[Δ] = μ, whatever μ and σ.
        for (x, n) in [(30.0, 1000.0), (60.0, 1000.0), (45.0, 1000.0)] {
            let r = bayesian_test(
                &prop(1000.0, 45.0),
                &prop(n, x),
                Difference::Absolute,
                0.05,
                None,
            )
            .unwrap();
            assert!((r.risk_control - r.risk_treatment - r.effect).abs() < 1e-15);
            assert!(r.risk_control >= 0.0 && r.risk_treatment >= 0.0);
        }
    }
}
