//! Held-out evaluation of a trained model: rating error (RMSE, MAE) and top-N ranking quality
//! (precision, recall, NDCG, MAP at k, catalogue coverage), with timings.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

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
        predict_seconds: (predict_seconds * 1000.0).round() / 1000.0,
        recommend_seconds: (t.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
    })
}
