//! Explanations: which of a user's ratings make an item's score, and by how much.
//!
//! Every explanation is a decomposition of a folded user's score ([`super::foldin`]):
//! score = base + Σ contributions, one contribution per rating the user gave (or, for a
//! user-based k-NN model, per neighbour who rated the item). The reasons are the largest
//! contributions, best first.
//!
//! | algorithm | contribution of the user's rating r_j of item j to item i's score |
//! |---|---|
//! | `als` | implicit's `explain`: c_j · (A⁻¹ y_i)ᵀ y_j, A the user's system of [`CfModel::als_system`]; the contributions sum to y_iᵀ x_u |
//! | `svd`, `svdpp` | the same for the ridge fold-in: (A⁻¹ z_i)ᵀ z_j · (r_j − μ − b_j), z = [1, q]; they sum to b_u + q_iᵀ p_u. For a user the model trained on this decomposes the fold-in of the user's ratings, an approximation of the learnt p_u |
//! | `baseline` | (r_j − μ − b_j) / (reg_u + n): b_u's parts |
//! | `knn_item` | the neighbours of i the user rated: s_ij · (r_j − offset_j) / Σ s, as the prediction weighs them |
//! | `knn_user` | the neighbours who rated i: s_uv · (r_vi − offset_v) / Σ s |
//!
//! `weight` is how strongly the model ties the reason to the item: the similarity for k-NN,
//! (A⁻¹ z_i)ᵀ z_j for the factor models (a similarity in the metric of the user's system), the
//! shrunk 1 / (reg_u + n) for `baseline`. `share` is contribution / Σ |contribution| over every
//! reason, not only those returned: the absolute shares sum to 1 and the sign says whether the
//! rating raised or lowered the score.

use std::cmp::Ordering;

use nalgebra::{Cholesky, DMatrix, DVector, Dyn};

use super::baseline::BaselineParams;
use super::foldin::FoldedUser;
use super::knn::Based;
use super::model::{Body, CfModel};
use crate::{CoreError, Result};

/// What a reason is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonKind {
    /// One of the user's rated items.
    Item,
    /// A neighbour (a training user who rated the item; user-based k-NN).
    User,
}

impl ReasonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReasonKind::Item => "item",
            ReasonKind::User => "user",
        }
    }
}

/// One reason for a score (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct Reason {
    pub kind: ReasonKind,
    /// The item or user id.
    pub id: i64,
    /// The user's rating of the item, or the neighbour's rating of the explained item.
    pub rating: f32,
    pub weight: f32,
    pub contribution: f32,
    pub share: f32,
}

/// A score and its reasons.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    /// The folded user's score of the item, unclipped.
    pub score: f32,
    /// The part of the score no reason explains (global mean and item bias; a k-NN model's
    /// centring offset; all of it when the score is a fallback).
    pub base: f32,
    /// The largest contributions, best first.
    pub reasons: Vec<Reason>,
}

/// What explaining a folded user needs, computed once for any number of items: the user's
/// factorised system for the factor models.
pub struct Explainer<'a> {
    model: &'a CfModel,
    user: &'a FoldedUser,
    system: Option<Cholesky<f32, Dyn>>,
}

fn factorise(a: DMatrix<f32>) -> Result<Cholesky<f32, Dyn>> {
    a.cholesky().ok_or_else(|| {
        CoreError::InvalidData(
            "the user's system is singular (the model's factors are degenerate)".into(),
        )
    })
}

impl CfModel {
    /// An explainer of `user`'s scores (a user folded into this model).
    pub fn explainer<'a>(&'a self, user: &'a FoldedUser) -> Result<Explainer<'a>> {
        let (items, ratings) = (user.items(), user.ratings());
        let system = if user.is_unknown() {
            None
        } else {
            match &self.body {
                Body::Factors(f) => Some(factorise(self.factors_system(f, items, ratings)?.0)?),
                Body::Als(f) => Some(factorise(self.als_system(f, items, ratings)?.0)?),
                Body::Baseline(_) | Body::Knn(_) => None,
            }
        };
        Ok(Explainer {
            model: self,
            user,
            system,
        })
    }
}

impl Explainer<'_> {
    /// The score of `item` and its `k` largest contributions. `None` for an item the model does
    /// not know (its score is the fallback: nothing the user rated bears on it). A user with
    /// no usable rating gets the fallback score and no reasons.
    pub fn explain(&self, item: i64, k: usize) -> Result<Option<Explanation>> {
        let m = self.model;
        let Some(i) = m.items.get(item) else {
            return Ok(None);
        };
        // A k-NN score comes with its explanation from one walk over the neighbours.
        let knn = match (&m.body, self.user.knn()) {
            (Body::Knn(knn), Some(folded)) if !self.user.is_unknown() => {
                Some((knn, folded, knn.explain_folded(folded, i)))
            }
            _ => None,
        };
        let score = match &knn {
            Some((_, _, Some((estimate, _)))) => *estimate,
            Some((knn, folded, None)) => knn.fallback_folded(folded, Some(i)),
            None => m.raw_folded(self.user, Some(i)),
        };
        if self.user.is_unknown() {
            return Ok(Some(Explanation {
                score,
                base: score,
                reasons: Vec::new(),
            }));
        }
        let (items, ratings) = (self.user.items(), self.user.ratings());
        let mu = m.global_mean;
        let item_reasons = |weights: &[f32], residual: &dyn Fn(usize) -> f32| -> Vec<Reason> {
            items
                .iter()
                .zip(ratings)
                .enumerate()
                .map(|(x, (&j, &r))| Reason {
                    kind: ReasonKind::Item,
                    id: m.items.id(j),
                    rating: r,
                    weight: weights[x],
                    contribution: weights[x] * residual(x),
                    share: 0.0,
                })
                .collect()
        };
        let reasons = match (&m.body, &self.system) {
            (Body::Factors(f), Some(chol)) => {
                let mut z = DVector::<f32>::zeros(f.k + 1);
                z[0] = 1.0;
                z.as_mut_slice()[1..].copy_from_slice(f.item(i));
                let w = chol.solve(&z);
                let weights: Vec<f32> = items
                    .iter()
                    .map(|&j| w[0] + super::mf::dot(&w.as_slice()[1..], f.item(j)))
                    .collect();
                item_reasons(&weights, &|x| ratings[x] - mu - f.bi[items[x] as usize])
            }
            (Body::Als(f), Some(chol)) => {
                let p: super::als::AlsParams = super::foldin::params(m)?;
                let w = chol.solve(&DVector::from_column_slice(f.item(i)));
                let weights: Vec<f32> = items
                    .iter()
                    .map(|&j| super::mf::dot(w.as_slice(), f.item(j)))
                    .collect();
                item_reasons(&weights, &|x| p.confidence(ratings[x]))
            }
            (Body::Baseline(b), _) => {
                let p: BaselineParams = super::foldin::params(m)?;
                let weight = 1.0 / (p.reg_u + items.len() as f32);
                let weights = vec![weight; items.len()];
                item_reasons(&weights, &|x| ratings[x] - mu - b.bi[items[x] as usize])
            }
            (Body::Knn(model), _) => {
                let Some((_, _, walked)) = knn else {
                    return Err(CoreError::InvalidData(
                        "the user was not folded into this model".into(),
                    ));
                };
                let (kind, ids) = match model.params().based_on {
                    Based::Item => (ReasonKind::Item, &m.items),
                    Based::User => (ReasonKind::User, &m.users),
                };
                walked
                    .map(|(_, used)| {
                        used.into_iter()
                            .map(|n| Reason {
                                kind,
                                id: ids.id(n.neighbor),
                                rating: n.rating,
                                weight: n.similarity,
                                contribution: n.contribution,
                                share: 0.0,
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            }
            (Body::Factors(_) | Body::Als(_), None) => Vec::new(),
        };
        Ok(Some(rank(score, reasons, k)))
    }
}

/// The explanation of `score` from all its `reasons`: shares set, the `k` largest contributions
/// kept, best first (ties by kind and id).
fn rank(score: f32, mut reasons: Vec<Reason>, k: usize) -> Explanation {
    let explained: f64 = reasons.iter().map(|r| f64::from(r.contribution)).sum();
    let total: f64 = reasons
        .iter()
        .map(|r| f64::from(r.contribution).abs())
        .sum();
    for r in &mut reasons {
        r.share = if total > 0.0 {
            (f64::from(r.contribution) / total) as f32
        } else {
            0.0
        };
    }
    let better = |a: &Reason, b: &Reason| -> Ordering {
        b.contribution
            .total_cmp(&a.contribution)
            .then_with(|| a.id.cmp(&b.id))
    };
    if k < reasons.len() {
        reasons.select_nth_unstable_by(k, better);
        reasons.truncate(k);
    }
    reasons.sort_unstable_by(better);
    Explanation {
        score,
        base: (f64::from(score) - explained) as f32,
        reasons,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::foldin::tests::clusters;
    use crate::cf::{train, Algorithm};
    use crate::control::{NoMonitor, Threads};

    const ALGORITHMS: [(Algorithm, &str); 6] = [
        (Algorithm::Svd, r#"{"factors": 4, "epochs": 60}"#),
        (Algorithm::Svdpp, r#"{"factors": 4, "epochs": 40}"#),
        (Algorithm::Als, r#"{"factors": 4, "binary": false}"#),
        (Algorithm::Baseline, "{}"),
        (
            Algorithm::KnnItem,
            r#"{"similarity": "cosine", "centering": "mean"}"#,
        ),
        (Algorithm::KnnUser, r#"{"k": 10}"#),
    ];

    /// The contributions of every reason and the base add up to the folded user's score, and the
    /// absolute shares to 1, for every algorithm.
    #[test]
    fn contributions_add_up_to_the_score() {
        let d = clusters();
        let liked = [
            (1, 5.0),
            (2, 4.0),
            (3, 5.0),
            (5, 4.5),
            (104, 1.0),
            (108, 2.0),
        ];
        for (algo, options) in ALGORITHMS {
            let m = train(&d, algo, options, &Threads::current(), &mut NoMonitor).unwrap();
            let f = m.fold_in(&liked, None).unwrap();
            let ex = m.explainer(&f).unwrap();
            for item in [4i64, 6, 9, 102, 110] {
                let e = ex.explain(item, usize::MAX).unwrap().unwrap();
                let sum: f64 = e.reasons.iter().map(|r| f64::from(r.contribution)).sum();
                assert!(
                    (f64::from(e.base) + sum - f64::from(e.score)).abs() < 1e-4,
                    "{algo} item {item}: {e:?}"
                );
                assert!(
                    (f64::from(m.predict_folded(&f, item)) - f64::from(m.clip(e.score))).abs()
                        < 1e-6,
                    "{algo}: the explained score is the folded prediction"
                );
                if !e.reasons.is_empty() {
                    let shares: f32 = e.reasons.iter().map(|r| r.share.abs()).sum();
                    assert!((shares - 1.0).abs() < 1e-4, "{algo}: shares {shares}");
                }
                for w in e.reasons.windows(2) {
                    assert!(w[0].contribution >= w[1].contribution, "{algo}: order");
                }
            }
        }
    }

    /// An item of the user's taste is explained by the items of that taste they rated high:
    /// the top reason of item 6 is one of items 1..=12, with a positive contribution.
    #[test]
    fn the_top_reason_is_a_liked_item_of_the_same_taste() {
        let d = clusters();
        let liked = [(1, 5.0), (2, 5.0), (3, 4.0), (104, 1.0), (108, 1.0)];
        for (algo, options) in ALGORITHMS {
            let m = train(&d, algo, options, &Threads::current(), &mut NoMonitor).unwrap();
            let f = m.fold_in(&liked, None).unwrap();
            let e = m.explainer(&f).unwrap().explain(6, 2).unwrap().unwrap();
            assert!(e.reasons.len() <= 2, "{algo}");
            let top = &e.reasons[0];
            assert!(top.contribution > 0.0, "{algo}: {e:?}");
            match top.kind {
                ReasonKind::Item => assert!(top.id <= 12, "{algo}: {e:?}"),
                // A neighbour of group one (users 1..=30), who rated item 6 high.
                ReasonKind::User => assert!(top.id <= 30 && top.rating >= 4.0, "{algo}: {e:?}"),
            }
        }
    }

    /// implicit's `explain` as written (numpy): weighted_item = cho_solve(A, y_i), each rated
    /// item's score = weighted_item · y_j · confidence_j, total = their sum; checked here
    /// against a direct evaluation of A⁻¹ with an explicit inverse.
    #[test]
    fn als_contributions_are_implicits_explain() {
        let d = clusters();
        let m = train(
            &d,
            Algorithm::Als,
            r#"{"factors": 3, "binary": false, "alpha": 1.5}"#,
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let liked = [(1, 5.0), (7, 3.0), (110, 1.0)];
        let f = m.fold_in(&liked, None).unwrap();
        let Body::Als(a) = &m.body else { panic!() };
        let (sys, b) = m.als_system(a, f.items(), f.ratings()).unwrap();
        let inv = sys.clone().try_inverse().unwrap();
        let x = &inv * b;
        let e = m.explainer(&f).unwrap().explain(9, 10).unwrap().unwrap();
        let yi = DVector::from_column_slice(a.item(m.items.get(9).unwrap()));
        assert!((e.score - x.dot(&yi)).abs() < 1e-4);
        assert!(e.base.abs() < 1e-4, "ALS has no base: {}", e.base);
        for r in &e.reasons {
            let j = m.items.get(r.id).unwrap();
            let yj = DVector::from_column_slice(a.item(j));
            let c = 1.0 + 1.5 * r.rating;
            let expected = (&inv * &yi).dot(&yj) * c;
            assert!(
                (r.contribution - expected).abs() < 1e-4,
                "{r:?} vs {expected}"
            );
        }
    }

    /// Unknown items have no explanation; a user without usable ratings gets the fallback and
    /// no reasons; `k` bounds the reasons.
    #[test]
    fn unknown_items_and_users() {
        let d = clusters();
        let m = train(
            &d,
            Algorithm::Svd,
            r#"{"factors": 4}"#,
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let f = m.fold_in(&[(1, 5.0), (2, 4.0), (3, 3.0)], None).unwrap();
        let ex = m.explainer(&f).unwrap();
        assert_eq!(ex.explain(999_999, 3).unwrap(), None);
        assert_eq!(ex.explain(6, 2).unwrap().unwrap().reasons.len(), 2);
        assert_eq!(ex.explain(6, 0).unwrap().unwrap().reasons.len(), 0);
        let nobody = m.fold_in(&[(999, 5.0)], None).unwrap();
        let e = m
            .explainer(&nobody)
            .unwrap()
            .explain(6, 3)
            .unwrap()
            .unwrap();
        assert!(e.reasons.is_empty());
        assert_eq!(m.clip(e.score), m.predict(-1, 6));
    }
}
