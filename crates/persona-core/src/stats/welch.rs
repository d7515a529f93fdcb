//! Welch's unequal-variance t-test for two independent means, computed from summary statistics,
//! and the helper that turns SQL aggregates `(n, Σx, Σx²)` into a mean and sample variance.

use serde::{Deserialize, Serialize};

use super::dist::{positive, t_two_sided_critical, t_two_sided_p};

/// A negative sum of squared deviations no larger than this fraction of `Σx²` is rounding noise
/// (from the SQL float sums or from the subtraction here) and is read as zero variance.
const SUMSQ_ROUNDING_TOLERANCE: f64 = 1e-9;

/// Mean and sample variance of `n` values known only through their sum and sum of squares.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Number of values.
    pub n: u64,
    /// `Σx / n`.
    pub mean: f64,
    /// Sample variance with `ddof = 1`: `(Σx² − (Σx)²/n) / (n − 1)`; `None` when `n < 2` or the
    /// sums are inconsistent (`Σx² < (Σx)²/n` beyond rounding).
    pub variance: Option<f64>,
}

impl Moments {
    /// Mean and `ddof = 1` variance from `(n, Σx, Σx²)`.
    ///
    /// The sum of squared deviations is computed as `Σx² − Σx·mean` with a fused multiply-add
    /// (one rounding instead of two). A negative result within `1e-9·Σx²` (the data were constant
    /// and rounding went the wrong way) is clamped to zero; a larger deficit violates
    /// Cauchy–Schwarz, so the sums cannot describe real data and the variance is `None`.
    ///
    /// `None` when `n = 0`, a sum is not finite or `Σx² < 0`.
    pub fn from_sums(n: u64, sum: f64, sumsq: f64) -> Option<Moments> {
        if n == 0 || !sum.is_finite() || !sumsq.is_finite() || sumsq < 0.0 {
            return None;
        }
        let count = n as f64;
        let mean = sum / count;
        let variance = if n < 2 {
            None
        } else {
            let m2 = (-sum).mul_add(mean, sumsq);
            if m2 >= 0.0 {
                Some(m2 / (count - 1.0))
            } else if m2 >= -SUMSQ_ROUNDING_TOLERANCE * sumsq {
                Some(0.0)
            } else {
                None
            }
        };
        Some(Moments {
            n,
            mean,
            variance: variance.filter(|v| v.is_finite()),
        })
    }

    /// Sample standard deviation `sqrt(variance)`.
    pub fn std_dev(&self) -> Option<f64> {
        self.variance.map(f64::sqrt)
    }
}

/// Result of a two-sided t-test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TTest {
    /// `(mean1 − mean2) / se`.
    pub t: f64,
    /// Welch–Satterthwaite degrees of freedom (fractional).
    pub df: f64,
    /// Two-sided p-value `2·P(T_df > |t|)`.
    pub p_value: f64,
}

/// Standard error and Welch–Satterthwaite degrees of freedom; `None` when undefined.
fn welch_se_df(var1: f64, n1: u64, var2: f64, n2: u64) -> Option<(f64, f64)> {
    if n1 < 2 || n2 < 2 || !(var1 >= 0.0 && var2 >= 0.0) {
        return None;
    }
    let vn1 = var1 / n1 as f64;
    let vn2 = var2 / n2 as f64;
    let total = vn1 + vn2;
    if !positive(total) || !total.is_finite() {
        return None;
    }
    // df = (vn1 + vn2)² / (vn1²/(n1 − 1) + vn2²/(n2 − 1)), written with the shares vn/(vn1 + vn2)
    // so squaring cannot overflow or underflow.
    let (r1, r2) = (vn1 / total, vn2 / total);
    let df = 1.0 / (r1 * r1 / (n1 - 1) as f64 + r2 * r2 / (n2 - 1) as f64);
    df.is_finite().then(|| (total.sqrt(), df))
}

/// Welch's two-sided t-test of `H0: mean1 = mean2` from summary statistics.
///
/// Matches scipy `ttest_ind_from_stats(mean1, sqrt(var1), n1, mean2, sqrt(var2), n2,
/// equal_var=False)`, where `var` is the sample variance (`ddof = 1`):
/// `se = sqrt(var1/n1 + var2/n2)`, `t = (mean1 − mean2)/se`,
/// `df = se⁴ / ((var1/n1)²/(n1 − 1) + (var2/n2)²/(n2 − 1))`, `p = 2·P(T_df > |t|)`.
///
/// `None` when a sample has fewer than 2 values, a variance is negative or not finite, a mean is
/// not finite, or both variances are zero (scipy then reports `±inf` or NaN).
pub fn welch_ttest(
    mean1: f64,
    var1: f64,
    n1: u64,
    mean2: f64,
    var2: f64,
    n2: u64,
) -> Option<TTest> {
    let (se, df) = welch_se_df(var1, n1, var2, n2)?;
    let t = (mean1 - mean2) / se;
    if !t.is_finite() {
        return None;
    }
    let p_value = t_two_sided_p(t, df)?;
    Some(TTest { t, df, p_value })
}

/// Welch `(1 − alpha)` confidence interval of `mean1 − mean2`:
/// `(mean1 − mean2) ± t_{α/2, df}·se` with `se` and `df` as in [`welch_ttest`].
///
/// `None` where [`welch_ttest`] is undefined or `alpha` is not in `(0, 1)`.
pub fn welch_confint(
    mean1: f64,
    var1: f64,
    n1: u64,
    mean2: f64,
    var2: f64,
    n2: u64,
    alpha: f64,
) -> Option<(f64, f64)> {
    let (se, df) = welch_se_df(var1, n1, var2, n2)?;
    let diff = mean1 - mean2;
    let half_width = t_two_sided_critical(alpha, df)? * se;
    let (low, high) = (diff - half_width, diff + half_width);
    (low.is_finite() && high.is_finite()).then_some((low, high))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn stats_welch_is_symmetric() {
        // Values are checked against scipy in tests/stats_reference.rs; here: swapping the
        // samples flips the sign of t and keeps df and p, and df lies between min(n) − 1 and
        // n1 + n2 − 2.
        let a = welch_ttest(0.2, 0.161073, 150, 0.225, 0.175251, 200).unwrap();
        let b = welch_ttest(0.225, 0.175251, 200, 0.2, 0.161073, 150).unwrap();
        assert!(close(a.t, -b.t) && close(a.df, b.df) && close(a.p_value, b.p_value));
        assert!(a.df > 149.0 && a.df < 348.0);
    }

    #[test]
    fn stats_welch_undefined_cases() {
        assert_eq!(welch_ttest(1.0, 0.0, 1, 2.0, 1.0, 10), None); // single value
        assert_eq!(welch_ttest(1.0, 0.0, 10, 2.0, 0.0, 10), None); // zero variances
        assert_eq!(welch_ttest(1.0, -1.0, 10, 2.0, 1.0, 10), None);
        assert_eq!(welch_ttest(f64::NAN, 1.0, 10, 2.0, 1.0, 10), None);
        assert_eq!(welch_confint(1.0, 1.0, 10, 2.0, 1.0, 10, 0.0), None);
        // One zero variance is fine: df = n − 1 of the other sample.
        let t = welch_ttest(1.0, 0.0, 10, 2.0, 4.0, 5).unwrap();
        assert!(close(t.df, 4.0));
    }

    #[test]
    fn stats_moments_from_sums() {
        let m = Moments::from_sums(4, 10.0, 30.0).unwrap(); // 1, 2, 3, 4
        assert!(close(m.mean, 2.5));
        assert!(close(m.variance.unwrap(), 5.0 / 3.0));
        let single = Moments::from_sums(1, 7.0, 49.0).unwrap();
        assert_eq!(single.variance, None);
        assert!(close(single.mean, 7.0));
        assert_eq!(Moments::from_sums(0, 0.0, 0.0), None);
        assert_eq!(Moments::from_sums(3, f64::NAN, 1.0), None);
        assert_eq!(Moments::from_sums(3, 1.0, -1.0), None);
        // Constant data whose sums were rounded: zero variance, not negative.
        let c = 0.1_f64;
        let n = 1000;
        let (sum, sumsq) = (0..n).fold((0.0, 0.0), |(s, q), _| (s + c, q + c * c));
        assert_eq!(
            Moments::from_sums(n, sum, sumsq)
                .unwrap()
                .variance
                .map(|v| v < 1e-12),
            Some(true)
        );
        // Impossible sums (Σx² < (Σx)²/n): variance unknown.
        assert_eq!(Moments::from_sums(2, 10.0, 1.0).unwrap().variance, None);
    }
}
