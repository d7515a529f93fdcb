//! Baseline estimates: r̂(u,i) = μ + b_u + b_i, with regularised biases fitted by alternating least
//! squares as Koren (2010) and Surprise's `BaselineOnly` do.

use serde::{Deserialize, Serialize};

use super::data::Dataset;

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

/// User and item biases around the global mean.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Biases {
    pub bu: Vec<f32>,
    pub bi: Vec<f32>,
}

impl Biases {
    /// Fits biases by ALS: each sweep solves every b_u with b_i fixed, then every b_i with b_u fixed.
    pub fn fit(d: &Dataset, p: &BaselineParams) -> Biases {
        let mu = d.global_mean;
        let mut bu = vec![0f32; d.n_users()];
        let mut bi = vec![0f32; d.n_items()];
        for _ in 0..p.epochs {
            for (u, b) in bu.iter_mut().enumerate() {
                let (items, r) = d.by_user.row(u as u32);
                let s: f32 = items
                    .iter()
                    .zip(r)
                    .map(|(&i, &r)| r - mu - bi[i as usize])
                    .sum();
                *b = s / (p.reg_u + items.len() as f32);
            }
            for (i, b) in bi.iter_mut().enumerate() {
                let (users, r) = d.by_item.row(i as u32);
                let s: f32 = users
                    .iter()
                    .zip(r)
                    .map(|(&u, &r)| r - mu - bu[u as usize])
                    .sum();
                *b = s / (p.reg_i + users.len() as f32);
            }
        }
        Biases { bu, bi }
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
