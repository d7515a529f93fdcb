//! Fold-in: answers for a user the model did not train on (who signed up after the last
//! training), or for a known user with the ratings they have now, without retraining. The
//! model's items stay fixed and only the user's side is solved from the given ratings, with the
//! training's own objective:
//!
//! | algorithm | the user's side |
//! |---|---|
//! | `svd`, `svdpp` | bias b_u and factors p_u by ridge regression on the fixed item biases and factors, with a fraction ([`MF_REG_SCALE`]) of the training's per-rating regularisation: min Σ (r − μ − b_u − b_i − q_iᵀp_u)² + s·n·(reg_bias·b_u² + reg·‖p_u‖²), one (k+1)×(k+1) Cholesky solve. For `svdpp`, p_u is the effective vector (the implicit term included), as the model stores it. |
//! | `als` | implicit's `recalculate_user`: (YᵀY + λI + Yᵀ(C_u − I)Y) x_u = Yᵀ C_u p(u), YᵀY + λI computed once per model |
//! | `baseline` | b_u = Σ (r − μ − b_i) / (reg_u + n), the training's user step |
//! | `knn_item` | the given ratings are the user's row; the item neighbour lists are unchanged |
//! | `knn_user` | the user's similarity to every training user sharing an item, with the training's measure; the `max_neighbors` best kept |
//!
//! Ratings of items the model does not know cannot contribute and are counted; so are ratings
//! outside an explicit model's scale and non-finite ones. A user left with no usable rating is
//! answered as an unknown user (baseline, or popularity for `als`).

use std::sync::OnceLock;

use nalgebra::{DMatrix, DVector};

use super::als::AlsFactors;
use super::als::AlsParams;
use super::baseline::BaselineParams;
use super::knn::{KnnFolded, Raters};
use super::mf::{dot, Factors, MfParams};
use super::model::{Body, CfModel};
use crate::{CoreError, Result};

/// The fold-in of `svd` and `svdpp` regularises the user's side with this fraction of the
/// training's per-rating regularisation. Training's SGD stops after a fixed number of epochs,
/// long before the regularised optimum that a closed-form solve reaches, so the full weight
/// shrinks a folded user far more than training shrinks a trained one. Chosen on ml-100k with a
/// validation split of held-out users (seed 11: 0.1, 0.3, 1, 3, 10 tried; 0.3 the only one within
/// the goals, NDCG@10 ≥ 0.9× and RMSE ≤ 1.02× of a retrained model, for both algorithms) and
/// confirmed on the measurement split (seed 7) in `benches/bench.py`.
pub const MF_REG_SCALE: f32 = 0.3;

/// What a model computes once for all its fold-ins (kept with the decoded model, never stored).
#[derive(Debug, Clone, Default)]
pub struct FoldCache {
    /// ALS: YᵀY + λI.
    gram: OnceLock<DMatrix<f32>>,
    /// User-based k-NN: the training ratings by item.
    raters: OnceLock<std::result::Result<Raters, String>>,
}

/// A user folded into a model ([`CfModel::fold_in`]).
#[derive(Debug, Clone)]
pub struct FoldedUser {
    /// The model's items the user rated (dense indices, sorted, distinct; duplicates merged into
    /// their mean) and the ratings.
    items: Vec<u32>,
    ratings: Vec<f32>,
    /// Given ratings of items the model does not know.
    pub unknown_items: usize,
    /// Given ratings that are not finite or outside an explicit model's scale.
    pub out_of_scale: usize,
    state: State,
}

#[derive(Debug, Clone)]
enum State {
    /// No usable rating: answered as an unknown user.
    Unknown,
    Bias(f32),
    Factors {
        bu: f32,
        p: Vec<f32>,
    },
    Als(Vec<f32>),
    Knn(Box<KnnFolded>),
}

impl FoldedUser {
    /// How many of the given ratings the fold-in used (distinct known items).
    pub fn used(&self) -> usize {
        self.items.len()
    }
    /// Whether no given rating could be used: the user is answered as an unknown one.
    pub fn is_unknown(&self) -> bool {
        matches!(self.state, State::Unknown)
    }
    /// The model's items the user rated (dense indices, sorted).
    pub fn items(&self) -> &[u32] {
        &self.items
    }
    /// The k-NN state of a user folded into a k-NN model.
    pub(crate) fn knn(&self) -> Option<&KnnFolded> {
        match &self.state {
            State::Knn(k) => Some(k),
            _ => None,
        }
    }
}

/// The algorithm's parameters as the model stored them.
pub(crate) fn params<P: serde::de::DeserializeOwned>(model: &CfModel) -> Result<P> {
    serde_json::from_str(&model.params).map_err(|e| {
        CoreError::CorruptModel(format!("the model's stored parameters cannot be read: {e}"))
    })
}

impl CfModel {
    /// Folds in a user with `ratings` (item id, rating); `own` is the user's id when the model
    /// may know the user (a user-based k-NN model then leaves the user's old self out of the
    /// neighbours). See the module documentation for what each algorithm solves.
    pub fn fold_in(&self, ratings: &[(i64, f32)], own: Option<i64>) -> Result<FoldedUser> {
        let implicit = self.is_implicit();
        let (mut unknown_items, mut out_of_scale) = (0, 0);
        let mut known: Vec<(u32, f32)> = Vec::with_capacity(ratings.len());
        for &(item, r) in ratings {
            let in_scale =
                r.is_finite() && (implicit || (self.min_rating..=self.max_rating).contains(&r));
            match self.items.get(item) {
                None => unknown_items += 1,
                Some(_) if !in_scale => out_of_scale += 1,
                Some(i) => known.push((i, r)),
            }
        }
        // Sorted by item, duplicates merged into their mean (as training merges them).
        known.sort_by_key(|&(i, _)| i);
        let (mut items, mut values): (Vec<u32>, Vec<f32>) = (Vec::new(), Vec::new());
        let mut run = 1u32;
        for (i, r) in known {
            if items.last() == Some(&i) {
                run += 1;
                let last = values.last_mut().expect("same length as items");
                *last += (r - *last) / run as f32;
            } else {
                run = 1;
                items.push(i);
                values.push(r);
            }
        }
        let state = if items.is_empty() {
            State::Unknown
        } else {
            self.solve(&items, &values, own)?
        };
        Ok(FoldedUser {
            items,
            ratings: values,
            unknown_items,
            out_of_scale,
            state,
        })
    }

    fn solve(&self, items: &[u32], r: &[f32], own: Option<i64>) -> Result<State> {
        let mu = self.global_mean;
        let n = items.len() as f32;
        Ok(match &self.body {
            Body::Baseline(b) => {
                let p: BaselineParams = params(self)?;
                let sum: f64 = items
                    .iter()
                    .zip(r)
                    .map(|(&i, &v)| f64::from(v - mu - b.bi[i as usize]))
                    .sum();
                State::Bias((sum / (f64::from(p.reg_u) + f64::from(n))) as f32)
            }
            Body::Factors(f) => {
                let (a, b) = self.factors_system(f, items, r)?;
                let x = cholesky_solve(a, b)?;
                State::Factors {
                    bu: x[0],
                    p: x.as_slice()[1..].to_vec(),
                }
            }
            Body::Als(f) => {
                let (a, b) = self.als_system(f, items, r)?;
                State::Als(cholesky_solve(a, b)?.as_slice().to_vec())
            }
            Body::Knn(m) => {
                let raters = if m.needs_raters() {
                    let built = self
                        .fold_cache
                        .raters
                        .get_or_init(|| m.raters().map_err(|e| e.to_string()));
                    Some(
                        built
                            .as_ref()
                            .map_err(|e| CoreError::InvalidParameter(e.clone()))?,
                    )
                } else {
                    None
                };
                let own = own.and_then(|u| self.users.get(u));
                State::Knn(Box::new(m.fold_in(items, r, raters, own)?))
            }
        })
    }

    /// The ridge system of a folded `svd`/`svdpp` user, A x = b with x = [b_u, p_u]:
    /// A = Σ z zᵀ + s·n·diag(reg_bias, reg, …) and b = Σ (r − μ − b_i) z over the rated items,
    /// z = [1, q_i], s = [`MF_REG_SCALE`].
    pub(crate) fn factors_system(
        &self,
        f: &Factors,
        items: &[u32],
        r: &[f32],
    ) -> Result<(DMatrix<f32>, DVector<f32>)> {
        let p: MfParams = params(self)?;
        let (k, mu, n) = (f.k, self.global_mean, items.len() as f32);
        let mut a = DMatrix::<f32>::zeros(k + 1, k + 1);
        let mut b = DVector::<f32>::zeros(k + 1);
        let mut z = vec![0f32; k + 1];
        for (&i, &v) in items.iter().zip(r) {
            z[0] = 1.0;
            z[1..].copy_from_slice(f.item(i));
            let e = v - mu - f.bi[i as usize];
            for x in 0..=k {
                let zx = z[x];
                b[x] += e * zx;
                for y in 0..=k {
                    a[(x, y)] += zx * z[y];
                }
            }
        }
        a[(0, 0)] += n * p.reg_bias * MF_REG_SCALE;
        for d in 1..=k {
            a[(d, d)] += n * p.reg * MF_REG_SCALE;
        }
        Ok((a, b))
    }

    /// implicit's `user_linear_equation` for a folded `als` user, A x_u = b:
    /// A = YᵀY + λI + Σ (c_i − 1) y_i y_iᵀ and b = Σ c_i y_i over the rated items, YᵀY + λI
    /// computed once per model.
    pub(crate) fn als_system(
        &self,
        f: &AlsFactors,
        items: &[u32],
        r: &[f32],
    ) -> Result<(DMatrix<f32>, DVector<f32>)> {
        let p: AlsParams = params(self)?;
        let k = f.k;
        let gram = self.fold_cache.gram.get_or_init(|| {
            let y = DMatrix::<f32>::from_row_slice(f.y.len() / k, k, &f.y);
            let mut g = y.transpose() * &y;
            for d in 0..k {
                g[(d, d)] += p.reg;
            }
            g
        });
        let mut a = gram.clone();
        let mut b = DVector::<f32>::zeros(k);
        for (&i, &v) in items.iter().zip(r) {
            let c = p.confidence(v);
            let y = f.item(i);
            for x in 0..k {
                let s = (c - 1.0) * y[x];
                for w in 0..k {
                    a[(x, w)] += s * y[w];
                }
                b[x] += c * y[x];
            }
        }
        Ok((a, b))
    }

    /// The score of item index `i` (or an unknown item) for a folded user, unclipped.
    pub(crate) fn raw_folded(&self, f: &FoldedUser, i: Option<u32>) -> f32 {
        let mu = self.global_mean;
        match (&f.state, &self.body) {
            (State::Unknown, _) => self.raw_unknown_user(i),
            (State::Bias(bu), Body::Baseline(b)) => mu + bu + i.map_or(0.0, |i| b.bi[i as usize]),
            (State::Factors { bu, p }, Body::Factors(m)) => match i {
                Some(i) => mu + bu + m.bi[i as usize] + dot(p, m.item(i)),
                None => mu + bu,
            },
            (State::Als(x), Body::Als(a)) => i.map_or(0.0, |i| dot(x, a.item(i))),
            (State::Knn(k), Body::Knn(m)) => m.estimate_folded(k, i),
            // A folded user belongs to the model it was folded into.
            _ => self.raw_unknown_user(i),
        }
    }

    /// The predicted rating of `item` for a folded user, clipped to the scale (implicit: the
    /// score). Items the model does not know get the user's bias over the global mean.
    pub fn predict_folded(&self, f: &FoldedUser, item: i64) -> f32 {
        self.clip(self.raw_folded(f, self.items.get(item)))
    }

    /// The `k` best items for a folded user, best first, leaving out the items the user rated
    /// when `exclude_seen`. A user without usable ratings gets an unknown user's list.
    pub fn recommend_folded(
        &self,
        f: &FoldedUser,
        k: usize,
        exclude_seen: bool,
    ) -> Vec<(i64, f32)> {
        if f.is_unknown() {
            return self.recommend_unknown(k);
        }
        let n = self.items.len() as u32;
        let scores: Vec<f32> = match (&f.state, &self.body) {
            (State::Factors { bu, p }, Body::Factors(m)) => {
                let base = self.global_mean + bu;
                (0..n)
                    .map(|i| base + m.bi[i as usize] + dot(p, m.item(i)))
                    .collect()
            }
            (State::Als(x), Body::Als(a)) => (0..n).map(|i| dot(x, a.item(i))).collect(),
            (State::Knn(k), Body::Knn(m)) => m.estimate_all_folded(k),
            _ => (0..n).map(|i| self.raw_folded(f, Some(i))).collect(),
        };
        self.top_k(scores, if exclude_seen { &f.items } else { &[] }, k)
    }
}

/// Solves the symmetric positive definite system `a x = b`.
fn cholesky_solve(a: DMatrix<f32>, b: DVector<f32>) -> Result<DVector<f32>> {
    a.cholesky().map(|c| c.solve(&b)).ok_or_else(|| {
        CoreError::InvalidData(
            "the fold-in system is singular (the model's factors are degenerate)".into(),
        )
    })
}

impl FoldedUser {
    /// The ratings of [`FoldedUser::items`], in the same order.
    pub fn ratings(&self) -> &[f32] {
        &self.ratings
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    fn fit(d: &Dataset, algorithm: Algorithm, options: &str) -> CfModel {
        train(d, algorithm, options, &Threads::current(), &mut NoMonitor).unwrap()
    }

    /// Two groups of 30 users, each rating (high) the items of its own group of 12: items
    /// 1..=12 for users 1..=30, items 101..=112 for users 31..=60, with some left out; every
    /// user also rates two items of the other group low.
    pub(crate) fn clusters() -> Dataset {
        let mut rows = Vec::new();
        for u in 1..=60i64 {
            let (own, other) = if u <= 30 { (0, 100) } else { (100, 0) };
            for i in 1..=12i64 {
                if (u + i) % 4 != 0 {
                    rows.push((u, own + i, 4.0 + ((u + i) % 2) as f32));
                }
            }
            rows.push((u, other + 1 + u % 12, 1.0));
            rows.push((u, other + 1 + (u + 5) % 12, 2.0));
        }
        Dataset::from_triples(&rows).unwrap()
    }

    fn rows_of(d: &Dataset, user: i64) -> Vec<(i64, f32)> {
        let u = d.users.get(user).unwrap();
        let (cols, vals) = d.by_user.row(u);
        cols.iter()
            .zip(vals)
            .map(|(&i, &r)| (d.items.id(i), r))
            .collect()
    }

    /// A new user who likes group one's items is recommended group one's items, by every
    /// algorithm, and never an item they rated.
    #[test]
    fn a_new_user_gets_the_items_of_their_taste() {
        let d = clusters();
        let liked: Vec<(i64, f32)> = vec![(1, 5.0), (2, 5.0), (3, 4.0), (4, 5.0), (105, 1.0)];
        for (algo, options) in [
            (Algorithm::Svd, r#"{"factors": 4, "epochs": 60}"#),
            (Algorithm::Svdpp, r#"{"factors": 4, "epochs": 60}"#),
            (Algorithm::Als, r#"{"factors": 4, "binary": false}"#),
            (
                Algorithm::KnnItem,
                r#"{"similarity": "cosine", "centering": "none"}"#,
            ),
            (Algorithm::KnnUser, "{}"),
        ] {
            let m = fit(&d, algo, options);
            let f = m.fold_in(&liked, None).unwrap();
            assert_eq!(f.used(), 5, "{algo}");
            let top = m.recommend_folded(&f, 5, true);
            assert_eq!(top.len(), 5, "{algo}");
            for (item, _) in &top {
                assert!(
                    liked.iter().all(|(i, _)| i != item),
                    "{algo} recommends a rated item {item}"
                );
            }
            let ones = top.iter().filter(|(i, _)| *i < 100).count();
            assert!(ones >= 4, "{algo}: {top:?}");
            if !m.is_implicit() {
                assert!(
                    m.predict_folded(&f, 6) > m.predict_folded(&f, 106),
                    "{algo}: own group's unrated item above the other group's"
                );
            }
        }
    }

    /// Folding a training user back in from their own training ratings gives what the model
    /// learnt for them: exactly for the k-NN models (the same neighbours and ratings), closely
    /// for the solved ones.
    #[test]
    fn a_training_user_folded_back_in_matches_the_model() {
        let d = clusters();
        let items: Vec<i64> = d.items.ids().to_vec();
        for (algo, options, tolerance) in [
            (
                Algorithm::KnnItem,
                r#"{"similarity": "msd", "centering": "mean"}"#,
                1e-5,
            ),
            (
                Algorithm::KnnUser,
                r#"{"similarity": "cosine", "centering": "none"}"#,
                1e-5,
            ),
            (
                Algorithm::KnnUser,
                r#"{"similarity": "pearson", "centering": "mean"}"#,
                1e-5,
            ),
            (Algorithm::Baseline, "{}", 1e-5),
            (Algorithm::Als, r#"{"factors": 4, "iterations": 30}"#, 0.02),
            (
                Algorithm::Svd,
                r#"{"factors": 4, "epochs": 200, "lr": 0.005}"#,
                0.35,
            ),
        ] {
            let m = fit(&d, algo, options);
            let mut worst = 0f32;
            for user in [3i64, 17, 44] {
                let f = m.fold_in(&rows_of(&d, user), Some(user)).unwrap();
                for &i in &items {
                    worst = worst.max((m.predict_folded(&f, i) - m.predict(user, i)).abs());
                }
            }
            assert!(
                worst <= tolerance,
                "{algo} {options}: largest difference {worst}"
            );
        }
    }

    /// The k-NN scores of every item at once are the per-item predictions.
    #[test]
    fn knn_scores_of_every_item_equal_each_prediction() {
        let d = clusters();
        let liked: Vec<(i64, f32)> = vec![(1, 5.0), (2, 4.0), (3, 4.5), (104, 2.0), (7, 1.0)];
        for options in [
            r#"{"k": 3}"#,
            r#"{"k": 2, "min_k": 2, "similarity": "cosine", "centering": "mean"}"#,
            r#"{"similarity": "msd", "centering": "none"}"#,
        ] {
            for algo in [Algorithm::KnnUser, Algorithm::KnnItem] {
                let m = fit(&d, algo, options);
                let f = m.fold_in(&liked, None).unwrap();
                let Body::Knn(knn) = &m.body else { panic!() };
                let State::Knn(kf) = &f.state else { panic!() };
                let all = knn.estimate_all_folded(kf);
                for i in 0..d.n_items() as u32 {
                    assert_eq!(
                        all[i as usize],
                        knn.estimate_folded(kf, Some(i)),
                        "{algo} {options} item {i}"
                    );
                }
            }
        }
    }

    /// Unknown items and ratings off the scale are counted, not used; duplicates are merged
    /// into their mean; no usable rating answers as an unknown user.
    #[test]
    fn unusable_ratings_are_counted_and_an_empty_user_is_unknown() {
        let d = clusters();
        let m = fit(&d, Algorithm::Svd, r#"{"factors": 4}"#);
        let f = m
            .fold_in(
                &[(1, 4.0), (1, 5.0), (999, 5.0), (2, 9.0), (3, f32::NAN)],
                None,
            )
            .unwrap();
        assert_eq!((f.used(), f.unknown_items, f.out_of_scale), (1, 1, 2));
        assert_eq!(f.ratings(), &[4.5]);
        let empty = m.fold_in(&[(999, 5.0)], None).unwrap();
        assert!(empty.is_unknown());
        assert_eq!(
            m.recommend_folded(&empty, 7, true),
            m.recommend(-1, 7, true)
        );
        assert_eq!(m.predict_folded(&empty, 5), m.predict(-1, 5));
        // Predictions stay on the scale.
        let f = m.fold_in(&[(1, 5.0), (2, 5.0)], None).unwrap();
        for &i in d.items.ids() {
            let p = m.predict_folded(&f, i);
            assert!((m.min_rating..=m.max_rating).contains(&p), "{p}");
        }
    }

    /// A user-based pearson_baseline model without baseline centring kept no baselines: its
    /// fold-in is a clear error, not a wrong answer.
    #[test]
    fn a_knn_model_without_its_baselines_refuses_fold_in() {
        let d = clusters();
        let m = fit(
            &d,
            Algorithm::KnnUser,
            r#"{"similarity": "pearson_baseline", "centering": "none"}"#,
        );
        let e = m.fold_in(&[(1, 5.0)], None).unwrap_err().to_string();
        assert!(e.contains("centering"), "{e}");
    }
}
