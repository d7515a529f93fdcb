//! Pearson's chi-squared goodness-of-fit test and the sample-ratio-mismatch (SRM) check built on
//! it: did the arms receive users in the proportions the campaign planned?

use serde::{Deserialize, Serialize};

use super::dist::chi2_sf;

/// p-value below which the observed split is flagged as a sample-ratio mismatch (GrowthBook's
/// default threshold).
pub const SRM_P_THRESHOLD: f64 = 0.001;

/// Result of a chi-squared goodness-of-fit test.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChiSquare {
    /// `Σ (observedᵢ − expectedᵢ)² / expectedᵢ`.
    pub statistic: f64,
    /// Degrees of freedom: number of categories − 1.
    pub df: u64,
    /// `P(χ²_df > statistic)`.
    pub p_value: f64,
}

/// Expected counts `fractionᵢ / Σ fractions · Σ observed`; `None` unless the inputs have equal
/// length and every fraction is finite and positive.
fn expected_counts(observed: &[u64], expected_fractions: &[f64]) -> Option<Vec<f64>> {
    if observed.len() != expected_fractions.len()
        || expected_fractions
            .iter()
            .any(|f| !(f.is_finite() && *f > 0.0))
    {
        return None;
    }
    let fraction_sum: f64 = expected_fractions.iter().sum();
    let total: f64 = observed.iter().map(|&o| o as f64).sum();
    if !fraction_sum.is_finite() {
        return None;
    }
    Some(
        expected_fractions
            .iter()
            .map(|f| f / fraction_sum * total)
            .collect(),
    )
}

/// Pearson's chi-squared goodness-of-fit test of `observed` counts against expected fractions.
///
/// Matches scipy `chisquare(observed, f_exp=expected_fractions * sum(observed))`. The fractions
/// are normalised to sum to 1 first, so relative weights such as `[1, 1, 2]` work too (scipy
/// would reject fractions that do not sum to 1).
///
/// `None` when the slices differ in length, there are fewer than 2 categories, a fraction is not
/// finite and positive, or all counts are zero (0/0).
pub fn chisquare_gof(observed: &[u64], expected_fractions: &[f64]) -> Option<ChiSquare> {
    if observed.len() < 2 {
        return None;
    }
    let expected = expected_counts(observed, expected_fractions)?;
    let statistic: f64 = observed
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| {
            let d = o as f64 - e;
            d * d / e
        })
        .sum();
    if !statistic.is_finite() {
        return None;
    }
    let df = observed.len() as u64 - 1;
    let p_value = chi2_sf(statistic, df as f64)?;
    Some(ChiSquare {
        statistic,
        df,
        p_value,
    })
}

/// Where the expected split of an SRM check came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitSource {
    /// The caller's planned split.
    Planned,
    /// No plan was given: equal shares across the arms present.
    AssumedEqual,
}

/// One arm of an SRM check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmArm {
    /// Arm name.
    pub arm: String,
    /// Users exposed in this arm (`users_exposed`; 0 for a planned arm absent from the data).
    pub observed_users: u64,
    /// Planned share of users, normalised so the shares sum to 1.
    pub expected_fraction: f64,
    /// `expected_fraction · Σ observed_users`.
    pub expected_users: f64,
}

/// Sample-ratio-mismatch check: a chi-squared goodness-of-fit test of users per arm against the
/// planned split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SrmCheck {
    /// `planned` or `assumed_equal`.
    pub split: SplitSource,
    /// Observed and expected users per arm.
    pub arms: Vec<SrmArm>,
    /// Pearson statistic `Σ (observed_users − expected_users)² / expected_users`; `null` when no
    /// users were exposed at all.
    pub chi2: Option<f64>,
    /// Degrees of freedom: number of arms − 1.
    pub df: u64,
    /// `P(χ²_df > chi2)`; `null` with `chi2`.
    pub p_value: Option<f64>,
    /// The threshold used, [`SRM_P_THRESHOLD`] (0.001).
    pub threshold: f64,
    /// `p_value < threshold`: the split differs from the plan more than chance explains, so the
    /// assignment or logging is suspect and the comparisons should not be trusted.
    pub mismatch: bool,
}

impl SrmCheck {
    /// Runs the check over `(arm, observed users, planned weight)` triples. Weights are
    /// normalised to sum to 1.
    ///
    /// `None` when there are fewer than two arms or a weight is not finite and positive.
    pub fn new(arms: &[(String, u64, f64)], split: SplitSource) -> Option<SrmCheck> {
        if arms.len() < 2 {
            return None;
        }
        let observed: Vec<u64> = arms.iter().map(|(_, o, _)| *o).collect();
        let weights: Vec<f64> = arms.iter().map(|(_, _, w)| *w).collect();
        let expected = expected_counts(&observed, &weights)?;
        let weight_sum: f64 = weights.iter().sum();
        let test = chisquare_gof(&observed, &weights);
        let p_value = test.map(|t| t.p_value);
        Some(SrmCheck {
            split,
            arms: arms
                .iter()
                .zip(&expected)
                .map(|((arm, observed_users, weight), &expected_users)| SrmArm {
                    arm: arm.clone(),
                    observed_users: *observed_users,
                    expected_fraction: weight / weight_sum,
                    expected_users,
                })
                .collect(),
            chi2: test.map(|t| t.statistic),
            df: arms.len() as u64 - 1,
            p_value,
            threshold: SRM_P_THRESHOLD,
            mismatch: p_value.is_some_and(|p| p < SRM_P_THRESHOLD),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_chisquare_basic() {
        // scipy.stats.chisquare([16, 18, 16, 14, 12, 12], f_exp=[16, 16, 16, 16, 16, 8])
        let t = chisquare_gof(&[16, 18, 16, 14, 12, 12], &[2.0, 2.0, 2.0, 2.0, 2.0, 1.0]).unwrap();
        assert!((t.statistic - 3.5).abs() < 1e-12);
        assert_eq!(t.df, 5);
        assert!((t.p_value - 0.6233876277495822).abs() < 1e-10, "{t:?}");
    }

    #[test]
    fn stats_chisquare_undefined() {
        assert_eq!(chisquare_gof(&[5], &[1.0]), None);
        assert_eq!(chisquare_gof(&[5, 5], &[1.0]), None);
        assert_eq!(chisquare_gof(&[0, 0], &[0.5, 0.5]), None);
        assert_eq!(chisquare_gof(&[5, 5], &[0.0, 1.0]), None);
        assert_eq!(chisquare_gof(&[5, 5], &[f64::NAN, 1.0]), None);
    }

    #[test]
    fn stats_srm_flags_mismatch() {
        let arms = [
            ("control".to_string(), 5000, 0.5),
            ("b".to_string(), 5400, 0.5),
        ];
        let srm = SrmCheck::new(&arms, SplitSource::Planned).unwrap();
        assert!(srm.mismatch, "{srm:?}");
        let arms = [
            ("control".to_string(), 5000, 1.0),
            ("b".to_string(), 5050, 1.0),
        ];
        let srm = SrmCheck::new(&arms, SplitSource::AssumedEqual).unwrap();
        assert!(!srm.mismatch, "{srm:?}");
        assert_eq!(srm.arms[1].expected_fraction, 0.5);
        let empty = [("control".to_string(), 0, 1.0), ("b".to_string(), 0, 1.0)];
        let srm = SrmCheck::new(&empty, SplitSource::AssumedEqual).unwrap();
        assert_eq!((srm.chi2, srm.p_value, srm.mismatch), (None, None, false));
    }
}
