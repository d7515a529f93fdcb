//! Multiple-testing corrections of a family of p-values: Holm's step-down adjustment (controls
//! the family-wise error rate) and Benjamini-Hochberg's step-up adjustment (controls the false
//! discovery rate), as statsmodels' `multipletests(pvals, method='holm' | 'fdr_bh')` computes
//! the adjusted p-values (its second result). `scripts/multitest_reference.py` generates
//! reference values with statsmodels; `tests/multitest_reference.rs` checks them to 1e-12.
//!
//! With the m p-values sorted ascending, p_(1) ≤ … ≤ p_(m):
//! - Holm: p̃_(i) = min(1, max_{j ≤ i} (m − j + 1) p_(j));
//! - Benjamini-Hochberg: p̃_(i) = min(1, min_{j ≥ i} m p_(j) / j).
//!
//! Each adjusted value is reported at its p-value's position. An undefined p-value (`None`: a
//! test that could not be run) is not part of the family: it stays `None` and does not count
//! in m.

use serde::{Deserialize, Serialize};

/// Which correction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Correction {
    Holm,
    BenjaminiHochberg,
}

impl Correction {
    pub fn name(self) -> &'static str {
        match self {
            Correction::Holm => "holm",
            Correction::BenjaminiHochberg => "benjamini_hochberg",
        }
    }
}

/// The adjusted p-values of `p` under `method` (see the module documentation).
pub fn adjust_pvalues(p: &[Option<f64>], method: Correction) -> Vec<Option<f64>> {
    // The family: defined p-values, by position, sorted ascending (ties by position, as numpy's
    // stable argsort, so equal p-values get equal adjusted values either way).
    let mut family: Vec<(usize, f64)> = p
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.filter(|x| x.is_finite()).map(|x| (i, x.clamp(0.0, 1.0))))
        .collect();
    family.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    let m = family.len();
    let mut adjusted = vec![0.0; m];
    match method {
        Correction::Holm => {
            let mut running = 0f64;
            for (j, &(_, v)) in family.iter().enumerate() {
                running = running.max((m - j) as f64 * v);
                adjusted[j] = running.min(1.0);
            }
        }
        Correction::BenjaminiHochberg => {
            let mut running = f64::INFINITY;
            for j in (0..m).rev() {
                running = running.min(m as f64 * family[j].1 / (j + 1) as f64);
                adjusted[j] = running.min(1.0);
            }
        }
    }
    let mut out: Vec<Option<f64>> = vec![None; p.len()];
    for (&(i, _), &a) in family.iter().zip(&adjusted) {
        out[i] = Some(a);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A case worked by hand: p = (0.01, 0.04, 0.03, 0.5).
    /// Holm: sorted 0.01, 0.03, 0.04, 0.5 → 4·0.01, 3·0.03, max(0.09, 2·0.04), max(0.09, 0.5).
    /// BH: 4/4·0.5 = 0.5, min(0.5, 4/3·0.04), min(0.053, 4/2·0.03) = 0.053, min(·, 4·0.01).
    #[test]
    fn hand_worked() {
        let p = [Some(0.01), Some(0.04), Some(0.03), Some(0.5)];
        let close = |a: &[Option<f64>], b: &[f64]| {
            a.iter().zip(b).all(|(x, y)| (x.unwrap() - y).abs() < 1e-15)
        };
        assert!(close(
            &adjust_pvalues(&p, Correction::Holm),
            &[0.04, 0.09, 0.09, 0.5]
        ));
        assert!(close(
            &adjust_pvalues(&p, Correction::BenjaminiHochberg),
            &[0.04, 0.16 / 3.0, 0.16 / 3.0, 0.5]
        ));
    }

    /// Undefined p-values are left out of the family and stay undefined; adjusted values never
    /// exceed 1 and never fall below the raw p-value.
    #[test]
    fn undefined_values_and_bounds() {
        let p = [Some(0.2), None, Some(0.9), Some(f64::NAN), Some(0.2)];
        for method in [Correction::Holm, Correction::BenjaminiHochberg] {
            let a = adjust_pvalues(&p, method);
            assert_eq!((a[1], a[3]), (None, None));
            for (raw, adj) in p.iter().zip(&a) {
                if let (Some(r), Some(x)) = (raw, adj) {
                    assert!(*x <= 1.0 && *x >= *r, "{method:?}: {r} -> {x}");
                }
            }
            assert_eq!(a[0], a[4], "{method:?}: ties adjust alike");
        }
        assert!(adjust_pvalues(&[], Correction::Holm).is_empty());
    }
}
