//! Baseline estimates: r̂(u,i) = μ + b_u + b_i, with regularised biases fitted by alternating least
//! squares as Koren (2010) and Surprise's `BaselineOnly` do.

use serde::{Deserialize, Serialize};

use rayon::prelude::*;

use super::data::{Csr, Dataset};
use crate::control::Stop;
use crate::{CoreError, Result};

/// Hyper-parameters of the ALS bias fit (Surprise's defaults).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BaselineParams {
    pub reg_u: f32,
    pub reg_i: f32,
    pub epochs: usize,
}

impl Default for BaselineParams {
    fn default() -> Self {
        BaselineParams {
            reg_u: 15.0,
            reg_i: 10.0,
            epochs: 10,
        }
    }
}

impl BaselineParams {
    /// Refuses values no training should run with.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(CoreError::InvalidParameter(m.into()));
        if self.epochs == 0 || self.epochs > 1000 {
            return bad("\"epochs\" must be between 1 and 1000");
        }
        if !(self.reg_u >= 0.0
            && self.reg_u.is_finite()
            && self.reg_i >= 0.0
            && self.reg_i.is_finite())
        {
            return bad("\"reg_u\" and \"reg_i\" must be non-negative numbers");
        }
        Ok(())
    }
}

/// User and item biases around the global mean.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Biases {
    pub bu: Vec<f32>,
    pub bi: Vec<f32>,
}

impl Biases {
    /// Fits biases by ALS as Surprise's `BaselineOnly` does: each sweep solves every b_i with the
    /// b_u fixed, then every b_u with the b_i fixed, b_x = Σ (r − μ − b_other) / (reg_x + n_x),
    /// summed in f64, rows in parallel on rayon's current pool. Shared by the `baseline`
    /// algorithm and the baseline-centred k-NN models.
    pub fn fit(d: &Dataset, p: &BaselineParams) -> Biases {
        Self::fit_until(d, p, &Stop::new()).expect("never stopped")
    }

    /// [`Biases::fit`] that ends with `Err(Cancelled)` at the next sweep once `stop` is raised.
    pub fn fit_until(d: &Dataset, p: &BaselineParams, stop: &Stop) -> Result<Biases> {
        let mu = f64::from(d.global_mean);
        let mut bu = vec![0f64; d.n_users()];
        let mut bi = vec![0f64; d.n_items()];
        fn step(bias: &mut [f64], csr: &Csr, other: &[f64], mu: f64, reg: f64) {
            bias.par_iter_mut().enumerate().for_each(|(x, b)| {
                let (cols, vals) = csr.row(x as u32);
                let dev: f64 = cols
                    .iter()
                    .zip(vals)
                    .map(|(&y, &r)| f64::from(r) - mu - other[y as usize])
                    .sum();
                let den = reg + cols.len() as f64;
                *b = if den > 0.0 { dev / den } else { 0.0 };
            });
        }
        for _ in 0..p.epochs {
            stop.check()?;
            step(&mut bi, &d.by_item, &bu, mu, f64::from(p.reg_i));
            step(&mut bu, &d.by_user, &bi, mu, f64::from(p.reg_u));
        }
        let to_f32 = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect();
        Ok(Biases {
            bu: to_f32(bu),
            bi: to_f32(bi),
        })
    }

    /// μ + the biases that are known; an unknown user or item contributes 0.
    #[inline]
    pub fn estimate(&self, mu: f32, u: Option<u32>, i: Option<u32>) -> f32 {
        mu + u.map_or(0.0, |u| self.bu[u as usize]) + i.map_or(0.0, |i| self.bi[i as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biases_follow_the_data() {
        // Item 1 is rated high by everyone, item 2 low; user 10 rates everything higher than user 20.
        let d = Dataset::from_triples(&[
            (10, 1, 5.0),
            (10, 2, 3.0),
            (20, 1, 4.0),
            (20, 2, 1.0),
            (30, 1, 4.5),
            (30, 2, 2.0),
        ])
        .unwrap();
        let b = Biases::fit(
            &d,
            &BaselineParams {
                reg_u: 0.0,
                reg_i: 0.0,
                epochs: 20,
            },
        );
        let (i1, i2) = (d.items.get(1).unwrap(), d.items.get(2).unwrap());
        let (u10, u20) = (d.users.get(10).unwrap(), d.users.get(20).unwrap());
        assert!(b.bi[i1 as usize] > 0.9 && b.bi[i2 as usize] < -0.9, "{b:?}");
        assert!(b.bu[u10 as usize] > b.bu[u20 as usize] + 1.0);
        // Without regularisation, a two-way additive model fits these cells closely.
        let fit = b.estimate(d.global_mean, Some(u10), Some(i1));
        assert!((fit - 5.0).abs() < 0.3, "{fit}");
        // Regularisation shrinks biases toward zero.
        let shrunk = Biases::fit(&d, &BaselineParams::default());
        assert!(shrunk.bi[i1 as usize].abs() < b.bi[i1 as usize].abs());
        // Unknown user: the item bias alone.
        assert_eq!(b.estimate(3.0, None, Some(i1)), 3.0 + b.bi[i1 as usize]);
    }
}
