//! Beyond-accuracy metrics of recommendation lists: intra-list diversity, novelty, serendipity,
//! catalogue and distributional coverage, with the definitions of Microsoft Recommenders'
//! `recommenders.evaluation.python_evaluation` (version 1.2.1, the default
//! `item_sim_measure="item_cooccurrence_count"` and no relevance column, so every relevance is 1).
//!
//! With `train` the training interactions (user, item pairs, no duplicates), n_i the number of
//! training users of item i, N the number of training rows and `reco` the users' lists:
//!
//! - **item similarity** (Zhang et al., Auralist, WSDM 2012): sim(i, j) = co(i, j) / √(n_i n_j),
//!   co the number of users with both in training; 0 for pairs never seen together.
//! - **diversity** (Ziegler et al. 2005 intra-list similarity; Auralist eq. 3): per user with at
//!   least two recommended items, 1 − the mean of sim over the distinct pairs of the list;
//!   averaged over those users.
//! - **novelty** (Castells, Vargas and Wang, ECIR 2011, eqs. 1 and 6): item novelty
//!   −log₂(n_i / N); the sum over every recommendation of its item's novelty divided by the number
//!   of recommendations (items absent from training count 0 in the sum, as the reference's inner
//!   merge drops them).
//! - **serendipity** (Auralist; E. Yan 2020): per recommended item, 1 − the mean of sim(item, j)
//!   over the user's training items j; averaged per user, then over users (users without
//!   training rows are left out, as the reference's merge leaves them out).
//! - **catalogue coverage** (Shani and Gunawardana 2010): distinct recommended items / distinct
//!   training items.
//! - **distributional coverage** (ibid., eq. 21): the entropy −Σ p(i) log₂ p(i) of the items'
//!   share p(i) of all recommendations.
//!
//! `scripts/cf_metrics_reference.py` computes the same numbers with Recommenders itself; the
//! test `tests/cf_metrics_reference.rs` holds this module to them within 1e-9.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::Csr;
use crate::control::Stop;
use crate::Result;

/// The beyond-accuracy metrics of a set of lists (see the module documentation). A metric with
/// nothing to average over (no list of two items, no recommendation, no user with training
/// rows) is `None`, where the reference gives NaN.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct BeyondAccuracy {
    pub diversity: Option<f64>,
    pub novelty: Option<f64>,
    pub serendipity: Option<f64>,
    pub catalog_coverage: f64,
    pub distributional_coverage: f64,
}

/// One user's recommendations: the user's row in `train` (`None` for a user without training
/// rows) and the recommended items (column indices of `train`, distinct, none of them in the
/// user's training row).
#[derive(Debug, Clone, PartialEq)]
pub struct RecoList {
    pub user: Option<u32>,
    pub items: Vec<u32>,
}

/// Computes [`BeyondAccuracy`] of `lists` against the training interactions `train` (rows =
/// users, columns = items, `n_items` columns). Checks `stop` once per recommended item.
pub fn beyond_accuracy(
    train: &Csr,
    n_items: usize,
    lists: &[RecoList],
    stop: &Stop,
) -> Result<BeyondAccuracy> {
    // n_i, and the training users of each item.
    let mut count = vec![0u32; n_items];
    for &i in &train.idx {
        count[i as usize] += 1;
    }
    let by_item = Csr::from_triples(
        n_items,
        (0..train.n_rows() as u32)
            .flat_map(|u| train.row(u).0.iter().map(move |&i| (i, u, 1.0)))
            .collect(),
    );
    // Where each recommended item appears: (list, position).
    let mut at: Vec<Vec<(u32, u32)>> = vec![Vec::new(); n_items];
    for (l, list) in lists.iter().enumerate() {
        for (p, &i) in list.items.iter().enumerate() {
            at[i as usize].push((l as u32, p as u32));
        }
    }
    let recommended: Vec<u32> = (0..n_items as u32)
        .filter(|&i| !at[i as usize].is_empty())
        .collect();
    let sim = |co: u32, i: u32, j: u32| -> f64 {
        if co == 0 {
            0.0
        } else {
            f64::from(co) / (f64::from(count[i as usize]) * f64::from(count[j as usize])).sqrt()
        }
    };
    // For each recommendation (list, position): Σ sim to the user's training items, and Σ sim
    // to the items after it in its list (each pair of a list counted once).
    let parts: Vec<(u32, u32, f64, f64)> = recommended
        .par_iter()
        .map_init(
            || vec![0u32; n_items],
            |co, &i| {
                if stop.requested() {
                    return Vec::new();
                }
                // co(i, j) for every j, from the users of i.
                let users = by_item.row(i).0;
                for &u in users {
                    for &j in train.row(u).0 {
                        co[j as usize] += 1;
                    }
                }
                let out = at[i as usize]
                    .iter()
                    .map(|&(l, p)| {
                        let list = &lists[l as usize];
                        let history: f64 = list
                            .user
                            .map(|u| {
                                train
                                    .row(u)
                                    .0
                                    .iter()
                                    .map(|&j| sim(co[j as usize], i, j))
                                    .sum()
                            })
                            .unwrap_or(0.0);
                        let pairs: f64 = list.items[p as usize + 1..]
                            .iter()
                            .map(|&j| sim(co[j as usize], i, j))
                            .sum();
                        (l, p, history, pairs)
                    })
                    .collect::<Vec<_>>();
                for &u in users {
                    for &j in train.row(u).0 {
                        co[j as usize] = 0;
                    }
                }
                out
            },
        )
        .flatten()
        .collect();
    stop.check()?;
    // Back in list order, for sums in a fixed order.
    let mut history = vec![Vec::new(); lists.len()];
    let mut pairs = vec![Vec::new(); lists.len()];
    for (l, p, h, s) in parts {
        history[l as usize].push((p, h));
        pairs[l as usize].push((p, s));
    }
    let (mut div_sum, mut div_n, mut ser_sum, mut ser_n) = (0f64, 0usize, 0f64, 0usize);
    for (l, list) in lists.iter().enumerate() {
        let n = list.items.len();
        if n >= 2 {
            pairs[l].sort_by_key(|&(p, _)| p);
            let total: f64 = pairs[l].iter().map(|&(_, s)| s).sum();
            div_sum += 1.0 - total / (n * (n - 1) / 2) as f64;
            div_n += 1;
        }
        if let Some(u) = list.user {
            let seen = train.row_len(u);
            if seen > 0 && n > 0 {
                history[l].sort_by_key(|&(p, _)| p);
                let per_item: f64 = history[l].iter().map(|&(_, h)| 1.0 - h / seen as f64).sum();
                ser_sum += per_item / n as f64;
                ser_n += 1;
            }
        }
    }
    let n_reco: usize = lists.iter().map(|l| l.items.len()).sum();
    let n_records = train.nnz() as f64;
    let mut novelty = 0f64;
    let mut entropy = 0f64;
    for &i in &recommended {
        let times = at[i as usize].len() as f64;
        if count[i as usize] > 0 {
            novelty += times * -(f64::from(count[i as usize]) / n_records).log2();
        }
        let p = times / n_reco as f64;
        entropy -= p * p.log2();
    }
    let train_items = count.iter().filter(|&&c| c > 0).count();
    let mean = |sum: f64, n: usize| (n > 0).then(|| sum / n as f64);
    Ok(BeyondAccuracy {
        diversity: mean(div_sum, div_n),
        novelty: mean(novelty, n_reco),
        serendipity: mean(ser_sum, ser_n),
        catalog_coverage: if train_items > 0 {
            recommended.len() as f64 / train_items as f64
        } else {
            0.0
        },
        distributional_coverage: entropy,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn train(rows: &[(u32, u32)], n_users: usize) -> Csr {
        Csr::from_triples(n_users, rows.iter().map(|&(u, i)| (u, i, 1.0)).collect())
    }

    /// A case small enough to work out by hand. Training: user 0 {0, 1}, user 1 {0, 1, 2},
    /// user 2 {2}. n = (2, 2, 2), N = 6; co(0,1) = 2, co(0,2) = co(1,2) = 1.
    /// sim(0,1) = 1, sim(0,2) = sim(1,2) = 1/2.
    #[test]
    fn a_hand_worked_case() {
        let t = train(&[(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 2)], 3);
        let lists = [
            // User 0 gets item 2: serendipity 1 − mean(sim(2,0), sim(2,1)) = 1/2.
            RecoList {
                user: Some(0),
                items: vec![2],
            },
            // User 2 gets 0 and 1: diversity 1 − sim(0,1) = 0; serendipity per item
            // 1 − sim(·,2) = 1/2.
            RecoList {
                user: Some(2),
                items: vec![0, 1],
            },
            // A user without training rows: diversity 1 − sim(1,2) = 1/2, no serendipity.
            RecoList {
                user: None,
                items: vec![1, 2],
            },
        ];
        let b = beyond_accuracy(&t, 3, &lists, &Stop::new()).unwrap();
        assert_eq!(b.diversity, Some(0.25));
        assert_eq!(b.serendipity, Some(0.5));
        // Every item has novelty −log2(2/6) = log2 3.
        assert!((b.novelty.unwrap() - 3f64.log2()).abs() < 1e-12);
        assert_eq!(b.catalog_coverage, 1.0);
        // Shares 1/5, 2/5, 2/5.
        let h = -(0.2f64 * 0.2f64.log2() + 2.0 * 0.4 * 0.4f64.log2());
        assert!((b.distributional_coverage - h).abs() < 1e-12);
    }

    /// Nothing to average: `None`, not NaN.
    #[test]
    fn empty_lists() {
        let t = train(&[(0, 0)], 1);
        let b = beyond_accuracy(
            &t,
            2,
            &[RecoList {
                user: None,
                items: vec![],
            }],
            &Stop::new(),
        )
        .unwrap();
        assert_eq!((b.diversity, b.novelty, b.serendipity), (None, None, None));
        assert_eq!(b.catalog_coverage, 0.0);
    }
}
