//! Ratio metrics with users as the unit of analysis (the delta method).
//!
//! A click-through rate `R = Σ clicks / Σ exposures` is a ratio of two sums over users. Testing
//! it as a proportion of exposures treats every exposure as an independent trial, but exposures
//! of one user are not independent (a user who likes the banner clicks on many of them), so that
//! test overstates the evidence, the more so the more exposures each user gets. Randomisation is
//! by user, so the variance must be too: with `cᵢ`, `eᵢ` user `i`'s clicks and exposures over
//! the `n` exposed users of an arm, the delta method (Deng, Knoblich and Lu, 2018, *Applying the
//! Delta Method in Metric Analytics*) gives
//!
//! ```text
//! Var(R) ≈ n/(n − 1) · Σᵢ (cᵢ − R·eᵢ)² / (Σᵢ eᵢ)²
//! ```
//!
//! which is the HC1 cluster-robust variance of `R` as the weighted mean of `cᵢ/eᵢ` with weights
//! `eᵢ` (statsmodels `WLS(c/e, 1, weights=e).fit(cov_type="HC1")`, the reference of
//! `tests/stats_reference.rs`). The sum of squares is computed from the per-arm sums
//! `Σc², Σe², Σce` that one SQL aggregate gives: `Σc² − 2R·Σce + R²·Σe²`.

use serde::{Deserialize, Serialize};

use super::dist::{normal_two_sided_critical, normal_two_sided_p};

/// Per-user sums of a ratio metric's numerator `c` and denominator `e` over one arm's units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RatioMoments {
    /// Units (users) summed over.
    pub n: u64,
    /// `Σ c`.
    pub num_sum: f64,
    /// `Σ e`.
    pub den_sum: f64,
    /// `Σ c²`.
    pub num_sumsq: f64,
    /// `Σ e²`.
    pub den_sumsq: f64,
    /// `Σ c·e`.
    pub cross_sum: f64,
}

impl RatioMoments {
    /// From per-unit `(c, e)` pairs.
    pub fn from_pairs(pairs: impl IntoIterator<Item = (f64, f64)>) -> RatioMoments {
        let mut m = RatioMoments {
            n: 0,
            num_sum: 0.0,
            den_sum: 0.0,
            num_sumsq: 0.0,
            den_sumsq: 0.0,
            cross_sum: 0.0,
        };
        for (c, e) in pairs {
            m.n += 1;
            m.num_sum += c;
            m.den_sum += e;
            m.num_sumsq += c * c;
            m.den_sumsq += e * e;
            m.cross_sum += c * e;
        }
        m
    }

    /// `R = Σc / Σe`; `None` when `Σe` is not positive or a sum is not finite.
    pub fn ratio(&self) -> Option<f64> {
        let r = self.num_sum / self.den_sum;
        (self.den_sum > 0.0 && r.is_finite()).then_some(r)
    }

    /// The delta-method variance of [`RatioMoments::ratio`] (see the module documentation);
    /// `None` with fewer than two units, without a ratio, or with sums that cannot come from
    /// real data (negative sums of squares). Where every unit has the same ratio the variance
    /// is 0, whatever the rounding of the sums.
    pub fn ratio_variance(&self) -> Option<f64> {
        let r = self.ratio()?;
        if self.n < 2 || self.num_sumsq < 0.0 || self.den_sumsq < 0.0 {
            return None;
        }
        let scale = self.num_sumsq + r * r * self.den_sumsq;
        let ss = self.num_sumsq - 2.0 * r * self.cross_sum + r * r * self.den_sumsq;
        if ss < -1e-9 * scale.max(1.0) {
            return None;
        }
        // Cancellation leaves ~1e-16·scale where every unit has the same ratio: that is 0.
        let ss = if ss <= 1e-12 * scale { 0.0 } else { ss };
        let n = self.n as f64;
        let v = n / (n - 1.0) * ss / (self.den_sum * self.den_sum);
        v.is_finite().then_some(v)
    }
}

/// One arm's ratio against the control's, with delta-method variances.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RatioComparison {
    /// `R_t − R_c`.
    pub difference: f64,
    /// `R_t − R_c ± z_{α/2}·sqrt(V_t + V_c)`.
    pub difference_ci: Option<(f64, f64)>,
    /// `exp(ln(R_t/R_c) ± z_{α/2}·sqrt(V_t/R_t² + V_c/R_c²))`, the interval of `R_t/R_c`;
    /// `None` when either ratio is 0.
    pub ratio_ci: Option<(f64, f64)>,
    /// `(R_t − R_c) / sqrt(V_t + V_c)`; `None` when both variances are 0.
    pub z: Option<f64>,
    /// Two-sided p-value `2·(1 − Φ(|z|))`.
    pub p_value: Option<f64>,
}

/// Compares two arms' ratios; `None` when either ratio or variance is undefined.
pub fn compare_ratios(
    treatment: &RatioMoments,
    control: &RatioMoments,
    alpha: f64,
) -> Option<RatioComparison> {
    let (rt, rc) = (treatment.ratio()?, control.ratio()?);
    let (vt, vc) = (treatment.ratio_variance()?, control.ratio_variance()?);
    let crit = normal_two_sided_critical(alpha)?;
    let difference = rt - rc;
    let se = (vt + vc).sqrt();
    let z = (se > 0.0)
        .then(|| difference / se)
        .filter(|z| z.is_finite());
    let half = crit * se;
    let ratio_ci = (rt > 0.0 && rc > 0.0).then(|| {
        let log_ratio = (rt / rc).ln();
        let log_se = (vt / (rt * rt) + vc / (rc * rc)).sqrt();
        (
            (log_ratio - crit * log_se).exp(),
            (log_ratio + crit * log_se).exp(),
        )
    });
    Some(RatioComparison {
        difference,
        difference_ci: Some((difference - half, difference + half)),
        ratio_ci: ratio_ci.filter(|(a, b)| a.is_finite() && b.is_finite()),
        z,
        p_value: z.and_then(normal_two_sided_p),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Beta, Distribution, Poisson};

    #[test]
    fn variance_from_sums_equals_the_residual_form() {
        let pairs = [(1.0, 3.0), (0.0, 2.0), (2.0, 2.0), (0.0, 5.0), (1.0, 1.0)];
        let m = RatioMoments::from_pairs(pairs);
        let r = 4.0 / 13.0;
        let ss: f64 = pairs.iter().map(|(c, e)| (c - r * e) * (c - r * e)).sum();
        let expected = 5.0 / 4.0 * ss / (13.0 * 13.0);
        assert!((m.ratio_variance().unwrap() - expected).abs() < 1e-15);
        // Every unit at the same ratio: no variance (rounding may not make it exactly 0).
        let same = RatioMoments::from_pairs([(1.0, 10.0), (3.0, 30.0), (0.7, 7.0)]);
        assert_eq!(same.ratio_variance(), Some(0.0));
        // Undefined cases.
        assert_eq!(
            RatioMoments::from_pairs([(1.0, 2.0)]).ratio_variance(),
            None
        );
        assert_eq!(
            RatioMoments::from_pairs([(0.0, 0.0), (0.0, 0.0)]).ratio(),
            None
        );
        let broken = RatioMoments {
            num_sumsq: -1.0,
            ..m
        };
        assert_eq!(broken.ratio_variance(), None);
    }

    /// Users with their own click propensity and many exposures: the delta-method standard
    /// error matches the spread of the CTR over many simulated campaigns, while the binomial
    /// standard error of exposures understates it.
    #[test]
    fn delta_method_matches_the_spread_of_simulated_campaigns() {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(5);
        let propensity = Beta::new(0.5, 9.5).unwrap(); // mean CTR 0.05, very uneven
        let exposures = Poisson::new(19.0).unwrap(); // ~20 exposures per user
        let (users, campaigns) = (2_000, 400);
        let mut ctrs = Vec::new();
        let mut delta_se = Vec::new();
        let mut binomial_se = Vec::new();
        for _ in 0..campaigns {
            let pairs: Vec<(f64, f64)> = (0..users)
                .map(|_| {
                    let e = 1.0 + exposures.sample(&mut rng);
                    let p: f64 = propensity.sample(&mut rng);
                    let c = (0..e as usize).filter(|_| rng.random::<f64>() < p).count();
                    (c as f64, e)
                })
                .collect();
            let m = RatioMoments::from_pairs(pairs);
            let r = m.ratio().unwrap();
            ctrs.push(r);
            delta_se.push(m.ratio_variance().unwrap().sqrt());
            binomial_se.push((r * (1.0 - r) / m.den_sum).sqrt());
        }
        let mean = ctrs.iter().sum::<f64>() / campaigns as f64;
        let sd = (ctrs.iter().map(|r| (r - mean) * (r - mean)).sum::<f64>()
            / (campaigns - 1) as f64)
            .sqrt();
        let avg = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let (delta, binomial) = (avg(&delta_se), avg(&binomial_se));
        // 400 campaigns estimate the true sd to about ±4% (1/sqrt(2·399)·2).
        assert!(
            (delta / sd - 1.0).abs() < 0.1,
            "delta {delta} vs observed {sd}"
        );
        assert!(binomial / sd < 0.75, "binomial {binomial} vs observed {sd}");
    }

    #[test]
    fn comparison_and_its_undefined_cases() {
        let t = RatioMoments::from_pairs([(1.0, 4.0), (2.0, 3.0), (0.0, 6.0), (3.0, 5.0)]);
        let c = RatioMoments::from_pairs([(0.0, 4.0), (1.0, 3.0), (0.0, 6.0), (1.0, 7.0)]);
        let cmp = compare_ratios(&t, &c, 0.05).unwrap();
        let (rt, rc) = (6.0 / 18.0, 2.0 / 20.0);
        assert!((cmp.difference - (rt - rc)).abs() < 1e-15);
        let se = (t.ratio_variance().unwrap() + c.ratio_variance().unwrap()).sqrt();
        assert!((cmp.z.unwrap() - (rt - rc) / se).abs() < 1e-12);
        let (lo, hi) = cmp.difference_ci.unwrap();
        assert!((hi - lo - 2.0 * 1.959963984540054 * se).abs() < 1e-12);
        let (rlo, rhi) = cmp.ratio_ci.unwrap();
        assert!(rlo < rt / rc && rt / rc < rhi);
        // A zero ratio has no log-ratio interval; a single user has no variance.
        let zero = RatioMoments::from_pairs([(0.0, 4.0), (0.0, 3.0)]);
        assert_eq!(compare_ratios(&zero, &c, 0.05).unwrap().ratio_ci, None);
        let single = RatioMoments::from_pairs([(1.0, 4.0)]);
        assert_eq!(compare_ratios(&single, &c, 0.05), None);
        // Both arms without variance: no z, no p-value, but a (zero-width) interval.
        let flat = RatioMoments::from_pairs([(1.0, 10.0), (2.0, 20.0)]);
        let cmp = compare_ratios(&flat, &flat, 0.05).unwrap();
        assert_eq!((cmp.z, cmp.p_value), (None, None));
    }
}
