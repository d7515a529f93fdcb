//! Evaluation metrics: rating accuracy ([`rmse`], [`mae`]) and top-k ranking quality
//! ([`RankingEval`] → [`RankingReport`]).
//!
//! The ranking metrics follow Microsoft Recommenders' `python_evaluation` with its default
//! `relevancy_method="top_k"` and binary relevance: a recommended item is a hit when it is in the
//! user's relevant (held-out) set; each metric is computed per user and averaged over the
//! evaluated users.
//!
//! Which users are averaged over: every user given with at least one relevant item. A user with
//! relevant items but no recommendations counts as 0. (Recommenders averages over the users that
//! appear in *both* the truth and the predictions, except `ndcg_at_k`, which averages over the
//! truth's users; to reproduce the former, leave out users you produced no recommendations for.)

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// Root mean squared error over `(predicted, actual)` pairs; `None` when there is none.
pub fn rmse<I: IntoIterator<Item = (f32, f32)>>(pairs: I) -> Option<f64> {
    let (sum, n) = pairs.into_iter().fold((0f64, 0usize), |(s, n), (p, a)| {
        let d = f64::from(p) - f64::from(a);
        (s + d * d, n + 1)
    });
    (n > 0).then(|| (sum / n as f64).sqrt())
}

/// Mean absolute error over `(predicted, actual)` pairs; `None` when there is none.
pub fn mae<I: IntoIterator<Item = (f32, f32)>>(pairs: I) -> Option<f64> {
    let (sum, n) = pairs.into_iter().fold((0f64, 0usize), |(s, n), (p, a)| {
        (s + (f64::from(p) - f64::from(a)).abs(), n + 1)
    });
    (n > 0).then(|| sum / n as f64)
}

/// One user's ranked recommendations and held-out relevant items (external item ids).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserRanking {
    /// Recommended items, best first. Only the first `k` distinct items count; a repeated item
    /// is ignored after its first occurrence.
    pub recommended: Vec<i64>,
    /// The user's relevant items in the test part. A user with none is not evaluated.
    pub relevant: HashSet<i64>,
}

/// Input of the ranking evaluation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankingEval {
    /// Cut-off: the first `k` recommendations of each user are evaluated. Must be ≥ 1.
    pub k: usize,
    pub users: Vec<UserRanking>,
    /// Number of distinct items that could have been recommended (the training catalogue), for
    /// [`catalog_coverage`]. 0 gives a coverage of 0.
    pub catalog_size: usize,
}

/// All ranking metrics of a [`RankingEval`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct RankingReport {
    pub k: usize,
    /// Users averaged over (those with at least one relevant item).
    pub n_users: usize,
    pub precision_at_k: f64,
    pub recall_at_k: f64,
    pub ndcg_at_k: f64,
    pub map_at_k: f64,
    pub catalog_coverage: f64,
}

impl RankingEval {
    /// Computes every metric. Fails when `k` is 0.
    pub fn report(&self) -> Result<RankingReport> {
        check_k(self.k)?;
        let mut sums = [0f64; 4];
        let mut n_users = 0usize;
        for u in self.users.iter().filter(|u| !u.relevant.is_empty()) {
            let s = user_scores(u, self.k);
            for (acc, v) in sums.iter_mut().zip([s.precision, s.recall, s.ndcg, s.ap]) {
                *acc += v;
            }
            n_users += 1;
        }
        let avg = |x: f64| if n_users > 0 { x / n_users as f64 } else { 0.0 };
        Ok(RankingReport {
            k: self.k,
            n_users,
            precision_at_k: avg(sums[0]),
            recall_at_k: avg(sums[1]),
            ndcg_at_k: avg(sums[2]),
            map_at_k: avg(sums[3]),
            catalog_coverage: catalog_coverage(&self.users, self.k, self.catalog_size),
        })
    }
}

/// Precision at k: hits in the top k divided by k (not by the number of recommendations, as in
/// Spark and Recommenders), averaged over users with relevant items.
pub fn precision_at_k(users: &[UserRanking], k: usize) -> Result<f64> {
    average(users, k, |s| s.precision)
}

/// Recall at k: hits in the top k divided by the number of relevant items, averaged over users.
pub fn recall_at_k(users: &[UserRanking], k: usize) -> Result<f64> {
    average(users, k, |s| s.recall)
}

/// Normalised DCG at k with binary relevance: `DCG = Σ_hits 1/log2(rank + 1)` (rank from 1)
/// over `IDCG = Σ_{j=1}^{min(k, |relevant|)} 1/log2(j + 1)`, averaged over users. (Recommenders
/// uses the natural logarithm by default; the ratio does not depend on the base.)
pub fn ndcg_at_k(users: &[UserRanking], k: usize) -> Result<f64> {
    average(users, k, |s| s.ndcg)
}

/// Mean average precision at k as Recommenders' current `map_at_k` defines it (after Spark's
/// `meanAveragePrecisionAt`): per user, the sum over hits in the top k of the precision at that
/// hit's rank, divided by `min(k, |relevant|)`; averaged over users. (Recommenders' `map`, without
/// the cut-off in the denominator, divides by `|relevant|` instead.)
pub fn map_at_k(users: &[UserRanking], k: usize) -> Result<f64> {
    average(users, k, |s| s.ap)
}

/// Catalogue coverage: distinct items among all users' top-k recommendations divided by
/// `catalog_size` (0 when `catalog_size` is 0). Counts every user given, relevant items or not.
/// Items outside the catalogue are counted too, so keep recommendations within it.
pub fn catalog_coverage(users: &[UserRanking], k: usize, catalog_size: usize) -> f64 {
    if catalog_size == 0 {
        return 0.0;
    }
    let mut seen = HashSet::new();
    for u in users {
        seen.extend(top_k(&u.recommended, k));
    }
    seen.len() as f64 / catalog_size as f64
}

fn check_k(k: usize) -> Result<()> {
    if k == 0 {
        return Err(CoreError::InvalidParameter("k must be at least 1".into()));
    }
    Ok(())
}

fn average(users: &[UserRanking], k: usize, f: impl Fn(&UserScores) -> f64) -> Result<f64> {
    check_k(k)?;
    let (sum, n) = users
        .iter()
        .filter(|u| !u.relevant.is_empty())
        .fold((0f64, 0usize), |(s, n), u| {
            (s + f(&user_scores(u, k)), n + 1)
        });
    Ok(if n > 0 { sum / n as f64 } else { 0.0 })
}

/// The first `k` distinct items of a ranked list.
fn top_k(recommended: &[i64], k: usize) -> Vec<i64> {
    let mut seen = HashSet::with_capacity(k.min(recommended.len()));
    recommended
        .iter()
        .copied()
        .filter(|&i| seen.insert(i))
        .take(k)
        .collect()
}

struct UserScores {
    precision: f64,
    recall: f64,
    ndcg: f64,
    ap: f64,
}

/// One user's metrics; the user has at least one relevant item.
fn user_scores(u: &UserRanking, k: usize) -> UserScores {
    let n_rel = u.relevant.len();
    let (mut hits, mut dcg, mut ap_sum) = (0usize, 0f64, 0f64);
    for (pos, item) in top_k(&u.recommended, k).into_iter().enumerate() {
        if u.relevant.contains(&item) {
            let rank = (pos + 1) as f64;
            hits += 1;
            dcg += 1.0 / (rank + 1.0).log2();
            ap_sum += hits as f64 / rank;
        }
    }
    let ideal = k.min(n_rel);
    let idcg: f64 = (1..=ideal).map(|j| 1.0 / (j as f64 + 1.0).log2()).sum();
    UserScores {
        precision: hits as f64 / k as f64,
        recall: hits as f64 / n_rel as f64,
        ndcg: if idcg > 0.0 { dcg / idcg } else { 0.0 },
        ap: if ideal > 0 {
            ap_sum / ideal as f64
        } else {
            0.0
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn user(rec: &[i64], rel: &[i64]) -> UserRanking {
        UserRanking {
            recommended: rec.to_vec(),
            relevant: rel.iter().copied().collect(),
        }
    }

    #[test]
    fn rmse_and_mae_by_hand() {
        let pairs = [(3.0, 1.0), (2.0, 2.0), (4.0, 5.0)];
        // errors 2, 0, -1: squares 4, 0, 1.
        assert!(close(rmse(pairs).unwrap(), (5.0f64 / 3.0).sqrt()));
        assert!(close(mae(pairs).unwrap(), 1.0));
        assert_eq!(rmse(std::iter::empty()), None);
        assert_eq!(mae(Vec::new()), None);
    }

    /// User A: k = 3, recommended [1, 2, 3], relevant {1, 3, 7, 8} — hits at ranks 1 and 3.
    /// User B: recommended [5, 6, 9], relevant {9} — one relevant item (< k), hit at rank 3.
    /// User C: no relevant items — skipped. User D: relevant {4}, no recommendations — scores 0.
    fn sample() -> RankingEval {
        RankingEval {
            k: 3,
            users: vec![
                user(&[1, 2, 3, 4], &[1, 3, 7, 8]),
                user(&[5, 6, 9], &[9]),
                user(&[1, 10], &[]),
                user(&[], &[4]),
            ],
            catalog_size: 20,
        }
    }

    #[test]
    fn precision_and_recall_by_hand() {
        let e = sample();
        // A: 2/3, B: 1/3, D: 0 → (2/3 + 1/3 + 0) / 3.
        assert!(close(precision_at_k(&e.users, 3).unwrap(), 1.0 / 3.0));
        // A: 2/4, B: 1/1, D: 0.
        assert!(close(recall_at_k(&e.users, 3).unwrap(), (0.5 + 1.0) / 3.0));
    }

    #[test]
    fn ndcg_by_hand() {
        let e = sample();
        // A: DCG = 1/log2(2) + 1/log2(4) = 1.5; IDCG over min(3, 4) = 3: 1 + 1/log2(3) + 1/2.
        let a = 1.5 / (1.0 + 1.0 / 3f64.log2() + 0.5);
        // B: DCG = 1/log2(4) = 0.5; IDCG over min(3, 1) = 1: 1.
        let b = 0.5;
        assert!(close(ndcg_at_k(&e.users, 3).unwrap(), (a + b) / 3.0));
        // A perfect ranking scores 1 even with fewer relevant items than k.
        assert!(close(ndcg_at_k(&[user(&[9, 1, 2], &[9])], 3).unwrap(), 1.0));
    }

    #[test]
    fn map_by_hand() {
        let e = sample();
        // A: (1/1 + 2/3) / min(3, 4) = (5/3) / 3. B: (1/3) / min(3, 1) = 1/3. D: 0.
        let expect = ((5.0 / 3.0) / 3.0 + 1.0 / 3.0) / 3.0;
        assert!(close(map_at_k(&e.users, 3).unwrap(), expect));
    }

    #[test]
    fn coverage_and_report() {
        let e = sample();
        // Top-3 items over all users: {1,2,3} ∪ {5,6,9} ∪ {1,10} = 7 distinct of 20.
        assert!(close(catalog_coverage(&e.users, 3, 20), 0.35));
        assert_eq!(catalog_coverage(&e.users, 3, 0), 0.0);
        let r = e.report().unwrap();
        assert_eq!(r.n_users, 3);
        assert_eq!(r.k, 3);
        assert!(close(
            r.precision_at_k,
            precision_at_k(&e.users, 3).unwrap()
        ));
        assert!(close(r.recall_at_k, recall_at_k(&e.users, 3).unwrap()));
        assert!(close(r.ndcg_at_k, ndcg_at_k(&e.users, 3).unwrap()));
        assert!(close(r.map_at_k, map_at_k(&e.users, 3).unwrap()));
        assert!(close(r.catalog_coverage, 0.35));
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"map_at_k\""), "{json}");
    }

    #[test]
    fn duplicates_count_once_and_edge_cases_do_not_panic() {
        // [1, 1, 2] with k = 2 evaluates [1, 2]: two hits.
        let u = [user(&[1, 1, 2], &[1, 2])];
        assert!(close(precision_at_k(&u, 2).unwrap(), 1.0));
        assert!(close(map_at_k(&u, 2).unwrap(), 1.0));
        assert!(precision_at_k(&u, 0).is_err());
        assert!(RankingEval {
            k: 0,
            ..Default::default()
        }
        .report()
        .is_err());
        let empty = RankingEval {
            k: 5,
            ..Default::default()
        }
        .report()
        .unwrap();
        assert_eq!(empty.n_users, 0);
        assert_eq!(empty.precision_at_k, 0.0);
    }
}
