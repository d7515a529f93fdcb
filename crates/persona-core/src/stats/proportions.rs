//! Tests and confidence intervals for two independent binomial proportions `p1 = x1/n1` and
//! `p2 = x2/n2` (sample 1 is the treatment arm, sample 2 the control arm).
//!
//! Every function returns `None` where the quantity is undefined (an empty sample, a count larger
//! than its sample, a zero variance, a zero count under a logarithm) instead of NaN or infinity.

use serde::{Deserialize, Serialize};

use super::dist::{normal_two_sided_critical, normal_two_sided_p, positive};

/// Result of a two-sided z-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ZTest {
    /// The standardised statistic.
    pub z: f64,
    /// Two-sided p-value `2·(1 − Φ(|z|))`.
    pub p_value: f64,
}

/// `(p1, p2)` when both samples are non-empty and each count is at most its sample size.
fn proportions(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<(f64, f64)> {
    if n1 == 0 || n2 == 0 || x1 > n1 || x2 > n2 {
        return None;
    }
    Some((x1 as f64 / n1 as f64, x2 as f64 / n2 as f64))
}

/// Two-sample z-test of `H0: p1 = p2` with the pooled variance, two-sided.
///
/// Matches statsmodels `proportions_ztest([x1, x2], [n1, n2])`:
/// `z = (p1 − p2) / sqrt(p̂(1 − p̂)(1/n1 + 1/n2))` with `p̂ = (x1 + x2)/(n1 + n2)`,
/// `p = 2·(1 − Φ(|z|))`.
///
/// `None` when a sample is empty, a count exceeds its sample size, or the pooled proportion is
/// 0 or 1 (zero variance: the statistic is 0/0).
pub fn two_proportion_ztest(x1: u64, n1: u64, x2: u64, n2: u64) -> Option<ZTest> {
    let (p1, p2) = proportions(x1, n1, x2, n2)?;
    // Sums in f64: u64 addition could overflow for absurd inputs.
    let pooled = (x1 as f64 + x2 as f64) / (n1 as f64 + n2 as f64);
    let variance = pooled * (1.0 - pooled) * (1.0 / n1 as f64 + 1.0 / n2 as f64);
    if !positive(variance) {
        return None;
    }
    let z = (p1 - p2) / variance.sqrt();
    let p_value = normal_two_sided_p(z)?;
    z.is_finite().then_some(ZTest { z, p_value })
}

/// Wald `(1 − alpha)` confidence interval of the difference `p1 − p2`, unpooled variance.
///
/// Matches statsmodels `confint_proportions_2indep(x1, n1, x2, n2, method='wald',
/// compare='diff', alpha=alpha)`:
/// `(p1 − p2) ± z_{α/2}·sqrt(p1(1 − p1)/n1 + p2(1 − p2)/n2)`.
///
/// The interval is degenerate (zero width) when both proportions are 0 or 1. `None` when a
/// sample is empty, a count exceeds its sample size, or `alpha` is not in `(0, 1)`.
pub fn diff_confint(x1: u64, n1: u64, x2: u64, n2: u64, alpha: f64) -> Option<(f64, f64)> {
    let (p1, p2) = proportions(x1, n1, x2, n2)?;
    let z = normal_two_sided_critical(alpha)?;
    let variance = p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64;
    let half_width = z * variance.max(0.0).sqrt();
    let diff = p1 - p2;
    Some((diff - half_width, diff + half_width))
}

/// `(1 − alpha)` confidence interval of the ratio `p1 / p2` on the log scale.
///
/// Matches statsmodels `confint_proportions_2indep(x1, n1, x2, n2, method='log',
/// compare='ratio', alpha=alpha)`:
/// `exp(ln(p1/p2) ± z_{α/2}·sqrt(1/x1 − 1/n1 + 1/x2 − 1/n2))`.
///
/// `None` when `x1` or `x2` is 0 (the log of the ratio or its variance is infinite), a sample is
/// empty, a count exceeds its sample size, or `alpha` is not in `(0, 1)`.
pub fn ratio_confint(x1: u64, n1: u64, x2: u64, n2: u64, alpha: f64) -> Option<(f64, f64)> {
    let (p1, p2) = proportions(x1, n1, x2, n2)?;
    if x1 == 0 || x2 == 0 {
        return None;
    }
    let z = normal_two_sided_critical(alpha)?;
    let variance = 1.0 / x1 as f64 - 1.0 / n1 as f64 + 1.0 / x2 as f64 - 1.0 / n2 as f64;
    let half_width = z * variance.max(0.0).sqrt();
    let log_ratio = (p1 / p2).ln();
    let (low, high) = (
        (log_ratio - half_width).exp(),
        (log_ratio + half_width).exp(),
    );
    (low.is_finite() && high.is_finite()).then_some((low, high))
}

/// `(1 − alpha)` confidence interval of the relative lift `p1/p2 − 1`: [`ratio_confint`] minus 1.
pub fn relative_lift_confint(x1: u64, n1: u64, x2: u64, n2: u64, alpha: f64) -> Option<(f64, f64)> {
    ratio_confint(x1, n1, x2, n2, alpha).map(|(low, high)| (low - 1.0, high - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn stats_ztest_matches_statsmodels() {
        // statsmodels.stats.proportion.proportions_ztest([30, 45], [150, 200])
        let t = two_proportion_ztest(30, 150, 45, 200).unwrap();
        assert!(close(t.z, -0.564076074817766), "{t:?}");
        assert!(close(t.p_value, 0.5727023597783104), "{t:?}");
    }

    #[test]
    fn stats_ztest_undefined_cases() {
        assert_eq!(two_proportion_ztest(0, 0, 1, 10), None);
        assert_eq!(two_proportion_ztest(0, 10, 0, 10), None); // pooled p = 0
        assert_eq!(two_proportion_ztest(10, 10, 5, 5), None); // pooled p = 1
        assert_eq!(two_proportion_ztest(11, 10, 5, 10), None); // not a proportion
        assert!(two_proportion_ztest(0, 10, 3, 10).is_some()); // one zero count is fine
    }

    #[test]
    fn stats_confints_undefined_cases() {
        assert_eq!(diff_confint(1, 0, 1, 10, 0.05), None);
        assert_eq!(diff_confint(1, 10, 1, 10, 1.0), None);
        assert_eq!(diff_confint(1, 10, 1, 10, f64::NAN), None);
        assert_eq!(diff_confint(0, 10, 0, 10, 0.05), Some((0.0, 0.0)));
        assert_eq!(ratio_confint(0, 10, 3, 10, 0.05), None);
        assert_eq!(ratio_confint(3, 10, 0, 10, 0.05), None);
        let (low, high) = relative_lift_confint(20, 100, 10, 100, 0.05).unwrap();
        assert!(low < 1.0 && high > 1.0 && low > -1.0);
    }
}
