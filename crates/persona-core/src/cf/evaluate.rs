//! Held-out evaluation of a trained model: rating error (RMSE, MAE) and top-N ranking quality
//! (precision, recall, NDCG, MAP at k, catalogue coverage), with timings.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::beyond::{beyond_accuracy, BeyondAccuracy, RecoList};
use super::data::DatasetBuilder;
use super::metrics::{mae, rmse, RankingEval, RankingReport, UserRanking};
use super::model::CfModel;
use super::split::{random_split, stratified_split};
use crate::control::{Stop, Threads};
use crate::Result;

/// Rows as read from a source, before splitting: `None` ratings are NULLs.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub users: Vec<i64>,
    pub items: Vec<i64>,
    pub ratings: Vec<Option<f32>>,
    nulls: u64,
}

impl Rows {
    /// Room for `n` rows (the source's estimated size), so reading does not double the arrays.
    pub fn with_capacity(n: usize) -> Rows {
        Rows {
            users: Vec::with_capacity(n),
            items: Vec::with_capacity(n),
            ratings: Vec::with_capacity(n),
            nulls: 0,
        }
    }
    pub fn push(&mut self, user: i64, item: i64, rating: Option<f32>) {
        self.users.push(user);
        self.items.push(item);
        self.ratings.push(rating);
    }
    /// A row whose user or item id was NULL: counted, never used.
    pub fn push_null(&mut self) {
        self.nulls += 1;
    }
    pub fn len(&self) -> usize {
        self.users.len()
    }
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
    /// Rows skipped for a NULL user or item id.
    pub fn null_rows(&self) -> u64 {
        self.nulls
    }
    /// Adds the rows at `idx` to a data-set builder.
    pub fn fill(&self, b: &mut DatasetBuilder, idx: &[usize]) {
        for &r in idx {
            b.push(self.users[r], self.items[r], self.ratings[r]);
        }
    }
    /// The rows at `idx` with a rating, as `(user, item, rating)`.
    pub fn triples(&self, idx: &[usize]) -> Vec<(i64, i64, f32)> {
        idx.iter()
            .filter_map(|&r| {
                self.ratings[r]
                    .filter(|x| x.is_finite())
                    .map(|x| (self.users[r], self.items[r], x))
            })
            .collect()
    }
    pub fn triples_all(&self) -> Vec<(i64, i64, f32)> {
        self.triples(&(0..self.len()).collect::<Vec<_>>())
    }

    /// Puts the rows in one canonical order (user, item, then rating; a NULL rating first), so
    /// that what is trained does not depend on the order a scan returned them in: the same
    /// rows after VACUUM FULL, CLUSTER, an UPDATE, or from the shards of a distributed table
    /// give the same split, the same ids and the same model bytes for a seed. Costs one sort
    /// (about 0.1 s per million rows) and one array's worth of memory at a time.
    pub fn canonicalize(&mut self) {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_unstable_by(|&a, &b| {
            (self.users[a], self.items[a])
                .cmp(&(self.users[b], self.items[b]))
                .then_with(|| match (self.ratings[a], self.ratings[b]) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    (x, y) => x.is_some().cmp(&y.is_some()),
                })
        });
        self.users = order.iter().map(|&r| self.users[r]).collect();
        self.items = order.iter().map(|&r| self.items[r]).collect();
        self.ratings = order.iter().map(|&r| self.ratings[r]).collect();
    }
}

/// How to hold rows out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// A seeded random fraction of all rows.
    Random,
    /// The same fraction of each user's rows (stratified by user).
    PerUser,
}

/// Train and test row indices. A fraction of 0 puts every row in training.
pub fn split_rows(
    rows: &Rows,
    kind: SplitKind,
    test_fraction: f64,
    seed: u64,
) -> (Vec<usize>, Vec<usize>) {
    if test_fraction <= 0.0 {
        return ((0..rows.len()).collect(), Vec::new());
    }
    let fraction = test_fraction.min(1.0);
    let split = match kind {
        SplitKind::Random => random_split(rows.len(), fraction, seed),
        SplitKind::PerUser => stratified_split(&rows.users, fraction, seed, 0),
    };
    split.unwrap_or_else(|_| ((0..rows.len()).collect(), Vec::new()))
}

/// What [`evaluate`] measured.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub test_rows: usize,
    /// Root-mean-square error of the predicted ratings (rating models only).
    pub rmse: Option<f64>,
    /// Mean absolute error of the predicted ratings (rating models only).
    pub mae: Option<f64>,
    /// Top-k ranking: every test user gets k items it did not see in training; an item is relevant
    /// if it is in that user's test part.
    pub ranking: Option<RankingReport>,
    /// Diversity, novelty, serendipity and coverage of the same top-k lists, against the
    /// model's training interactions ([`super::beyond`]).
    pub beyond_accuracy: BeyondAccuracy,
    pub predict_seconds: f64,
    pub recommend_seconds: f64,
}

/// Scores `test` rows with `model`: rating errors, and top-`k` ranking metrics.
pub fn evaluate(model: &CfModel, test: &[(i64, i64, f32)], k: usize) -> EvalReport {
    evaluate_until(model, test, k, &Stop::new()).expect("never stopped")
}

/// [`evaluate`] that ends with `Err(Cancelled)` soon after `stop` is raised: the ranking of
/// every test user (a top-k over the whole catalogue each) checks it first.
pub fn evaluate_until(
    model: &CfModel,
    test: &[(i64, i64, f32)],
    k: usize,
    stop: &Stop,
) -> Result<EvalReport> {
    let t = Instant::now();
    let (rmse_v, mae_v) = if model.is_implicit() {
        (None, None)
    } else {
        let pairs: Vec<(f32, f32)> = test
            .iter()
            .map(|&(u, i, r)| (model.predict(u, i), r))
            .collect();
        (rmse(pairs.iter().copied()), mae(pairs.iter().copied()))
    };
    let predict_seconds = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut relevant: HashMap<i64, HashSet<i64>> = HashMap::new();
    for &(u, i, _) in test {
        relevant.entry(u).or_default().insert(i);
    }
    let mut users: Vec<(i64, HashSet<i64>)> = relevant.into_iter().collect();
    users.sort_unstable_by_key(|(u, _)| *u);
    let users_in_order: Vec<i64> = users.iter().map(|(u, _)| *u).collect();
    let rankings: Vec<UserRanking> = Threads::current().run(|| {
        users
            .into_par_iter()
            .map(|(u, rel)| UserRanking {
                recommended: if stop.requested() {
                    Vec::new()
                } else {
                    model
                        .recommend(u, k, true)
                        .into_iter()
                        .map(|(i, _)| i)
                        .collect()
                },
                relevant: rel,
            })
            .collect()
    });
    stop.check()?;
    let lists: Vec<RecoList> = users_in_order
        .iter()
        .zip(&rankings)
        .map(|(&u, r)| RecoList {
            user: model.users.get(u),
            items: r
                .recommended
                .iter()
                .filter_map(|&i| model.items.get(i))
                .collect(),
        })
        .collect();
    let beyond = beyond_accuracy(&model.seen, model.items.len(), &lists, stop)?;
    let ranking = RankingEval {
        k: k.max(1),
        users: rankings,
        catalog_size: model.items.len(),
    }
    .report()
    .ok();
    Ok(EvalReport {
        test_rows: test.len(),
        rmse: rmse_v,
        mae: mae_v,
        ranking,
        beyond_accuracy: beyond,
        predict_seconds: (predict_seconds * 1000.0).round() / 1000.0,
        recommend_seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}

#[cfg(test)]
mod tests {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    use super::*;
    use crate::cf::{train, Algorithm, ALGORITHMS};
    use crate::control::{NoMonitor, Threads};

    /// The same rows in any order give the same split and the same model bytes, for every
    /// algorithm (duplicates and a NULL rating included).
    #[test]
    fn row_order_does_not_change_the_model() {
        let mut base: Vec<(i64, i64, Option<f32>)> = Vec::new();
        for u in 1..=40i64 {
            for i in 1..=15i64 {
                if (u * 3 + i) % 4 != 0 {
                    base.push((u * 7, i * 11, Some((1 + (u * i) % 5) as f32)));
                }
            }
        }
        base.push((7, 11, Some(2.0))); // a duplicate with another rating
        base.push((14, 22, None));
        let build = |rows: &[(i64, i64, Option<f32>)]| {
            let mut r = Rows::default();
            for &(u, i, x) in rows {
                r.push(u, i, x);
            }
            r.canonicalize();
            r
        };
        let models = |rows: &Rows| -> Vec<Vec<u8>> {
            let (train_idx, _) = split_rows(rows, SplitKind::Random, 0.2, 42);
            ALGORITHMS
                .iter()
                .map(|(name, _)| {
                    let mut b = DatasetBuilder::new();
                    rows.fill(&mut b, &train_idx);
                    let d = b.build().unwrap();
                    let algo: Algorithm = name.parse().unwrap();
                    train(&d, algo, "{}", &Threads::new(2).unwrap(), &mut NoMonitor)
                        .unwrap()
                        .to_bytes()
                })
                .collect()
        };
        let reference = models(&build(&base));
        let mut rng = rand_pcg::Pcg64::seed_from_u64(9);
        for _ in 0..3 {
            let mut shuffled = base.clone();
            shuffled.shuffle(&mut rng);
            assert_eq!(models(&build(&shuffled)), reference);
        }
        // Without canonicalising, order would matter (so the test can fail).
        let mut reversed = Rows::default();
        for &(u, i, x) in base.iter().rev() {
            reversed.push(u, i, x);
        }
        assert_ne!(models(&reversed), reference);
    }
}
