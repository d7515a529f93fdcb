//! Neighbourhood (k-NN) collaborative filtering, as Surprise's `KNNBasic`, `KNNWithMeans` and
//! `KNNBaseline` define it.
//!
//! Training computes, for every *row* (a user for user-based models, an item for item-based ones),
//! its similarity to every other row it shares at least one rating with, and keeps the
//! [`KnnParams::max_neighbors`] most similar ones with a positive similarity. The computation is
//! sparse and parallel: for a row `r`, walk its columns, then each column's other rows, and
//! accumulate the co-rated sums in a dense per-thread scratch indexed by row. Memory is therefore
//! `O(rows × max_neighbors)`, not `O(rows²)`.
//!
//! Similarities (all on co-rated entries only, with Surprise's `min_support = 1`):
//!
//! | [`Similarity`] | definition |
//! |---|---|
//! | `Cosine` | `Σ a·b / √(Σ a² · Σ b²)` |
//! | `Pearson` | Pearson correlation, each side centred by its mean over the co-rated part |
//! | `Msd` | `1 / (Σ (a − b)² / n + 1)` |
//! | `PearsonBaseline` | `Σ ã·b̃ / √(Σ ã² · Σ b̃²) · (n − 1) / (n − 1 + shrinkage)` where `x̃ = r − (μ + b_u + b_i)` |
//!
//! Prediction for `(u, i)` takes the `k` most similar neighbours of the row (of `u` among the users
//! who rated `i`, or of `i` among the items `u` rated) and averages their ratings weighted by
//! similarity, optionally centred by row means or by baselines.
//!
//! One deliberate difference from Surprise: it searches the `k` best among *all* rows with a
//! positive similarity, while this model only stores each row's `max_neighbors` best ones, so the
//! `k` used for a prediction are the best among those that also rated the target. With
//! `max_neighbors` ≥ the number of rows the two are the same.

use std::sync::Arc;

use rayon::prelude::*;
use serde::{Deserialize, Deserializer, Serialize};

use crate::cf::baseline::{BaselineParams, Biases};
use crate::cf::data::{Csr, Dataset, IdMap};
use crate::control::Stop;
use crate::{CoreError, Result};

/// Whether neighbours are users or items.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Based {
    /// User-based: similar users, and predictions from the ratings of similar users.
    #[default]
    User,
    /// Item-based: similar items, and predictions from the user's ratings of similar items.
    Item,
}

/// The similarity measure between two rows (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Similarity {
    Cosine,
    Pearson,
    /// Mean squared difference similarity, Surprise's default.
    #[default]
    Msd,
    /// Pearson correlation of the residuals from the ALS baselines, shrunk towards 0.
    PearsonBaseline,
}

/// How neighbours' ratings are centred before averaging.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Centering {
    /// Plain weighted average of the ratings (Surprise's `KNNBasic`).
    #[default]
    None,
    /// Deviations from each row's mean rating (Surprise's `KNNWithMeans`).
    Mean,
    /// Deviations from the ALS baselines `μ + b_u + b_i` (Surprise's `KNNBaseline`).
    Baseline,
}

/// Options of a k-NN model. Unknown fields are rejected when parsed; missing ones take the default.
///
/// The defaults are Surprise's `KNNBaseline` with the shrunk `pearson_baseline` similarity, which
/// keeps its accuracy when neighbour lists are truncated to `max_neighbors` (MSD and cosine, which
/// have no shrinkage, need every neighbour kept to match Surprise's published figures).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KnnParams {
    pub based_on: Based,
    pub similarity: Similarity,
    /// The most neighbours a prediction averages over (Surprise's `k`, default 40).
    pub k: usize,
    /// The fewest neighbours a prediction needs; below it [`KnnModel::predict`] returns `None`
    /// (Surprise's `min_k`, default 1). 0 behaves as 1: an average needs one neighbour.
    pub min_k: usize,
    pub centering: Centering,
    /// Shrinkage of the `PearsonBaseline` similarity (default 100); ignored by the others.
    pub shrinkage: f32,
    /// Neighbours kept per row after training (default 200); must be at least `k`.
    pub max_neighbors: usize,
}

impl Default for KnnParams {
    fn default() -> Self {
        KnnParams {
            based_on: Based::User,
            similarity: Similarity::PearsonBaseline,
            k: 40,
            min_k: 1,
            centering: Centering::Baseline,
            shrinkage: 100.0,
            max_neighbors: 200,
        }
    }
}

impl KnnParams {
    /// Checks the values; the error names the offending option.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::InvalidParameter(m));
        if self.k == 0 {
            return bad("k must be at least 1".into());
        }
        if self.min_k > self.k {
            return bad(format!(
                "min_k ({}) must not exceed k ({})",
                self.min_k, self.k
            ));
        }
        if self.max_neighbors < self.k {
            return bad(format!(
                "max_neighbors ({}) must be at least k ({})",
                self.max_neighbors, self.k
            ));
        }
        if !(self.shrinkage.is_finite() && self.shrinkage >= 0.0) {
            return bad(format!(
                "shrinkage must be a finite number ≥ 0, got {}",
                self.shrinkage
            ));
        }
        Ok(())
    }

    /// Whether training needs the ALS baselines.
    fn needs_baselines(&self) -> bool {
        self.centering == Centering::Baseline || self.similarity == Similarity::PearsonBaseline
    }
}

/// The weighted average `Σ sim·r / Σ sim` of `(similarity, rating)` pairs, over the pairs with a
/// positive similarity (as Surprise does). `None` when there is none.
///
/// ```
/// use persona_core::cf::knn::weighted_average;
/// let r = weighted_average(&[(0.8, 2.0), (0.6, 5.0)]).unwrap();
/// assert!((r - 4.6 / 1.4).abs() < 1e-6);
/// ```
pub fn weighted_average(neighbors: &[(f32, f32)]) -> Option<f32> {
    let mut agg = Aggregate::default();
    for &(s, r) in neighbors {
        agg.add(s, r);
    }
    agg.mean().map(|m| m as f32)
}

/// Running sums of a weighted average over positive similarities.
#[derive(Default)]
struct Aggregate {
    sum_sim: f64,
    sum_weighted: f64,
    count: usize,
}

impl Aggregate {
    #[inline]
    fn add(&mut self, sim: f32, value: f32) {
        if sim > 0.0 && value.is_finite() {
            self.sum_sim += f64::from(sim);
            self.sum_weighted += f64::from(sim) * f64::from(value);
            self.count += 1;
        }
    }
    fn mean(&self) -> Option<f64> {
        (self.count > 0 && self.sum_sim > 0.0).then(|| self.sum_weighted / self.sum_sim)
    }
}

/// A trained k-NN model: self-contained for prediction (ids, ratings, neighbour lists, means or
/// baselines as its centring needs). Serialises with serde; deserialisation checks the structure,
/// so a corrupt model is an error rather than a panic at prediction time.
///
/// The id maps and training ratings are shared (`Arc`) with the [`super::CfModel`] that holds
/// the model, which stores them once: a stored k-NN body may leave them out (empty), and
/// [`KnnModel::attach`] puts the holder's back before the structure is checked.
#[derive(Debug, Clone, Serialize)]
#[serde(transparent)]
pub struct KnnModel {
    m: Parts,
}

/// The stored fields of a [`KnnModel`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Parts {
    params: KnnParams,
    users: Arc<IdMap>,
    items: Arc<IdMap>,
    global_mean: f32,
    min_rating: f32,
    max_rating: f32,
    /// The training ratings, rows = users (both orientations look ratings up by user).
    ratings: Arc<Csr>,
    /// Neighbour lists: row `x` holds `nb_idx[nb_ptr[x]..nb_ptr[x+1]]`, by descending similarity.
    nb_ptr: Vec<u64>,
    nb_idx: Vec<u32>,
    nb_sim: Vec<f32>,
    /// Per-row mean ratings; empty unless `Centering::Mean`.
    means: Vec<f32>,
    /// ALS baselines; empty unless `Centering::Baseline`.
    user_bias: Vec<f32>,
    item_bias: Vec<f32>,
}

/// [`Parts`] as stored inside a [`super::CfModel`]: the same fields in the same order (so the
/// same encoding), with the shared ones possibly replaced by empty placeholders.
#[derive(Serialize)]
pub(crate) struct StoredParts<'a> {
    params: &'a KnnParams,
    users: &'a IdMap,
    items: &'a IdMap,
    global_mean: f32,
    min_rating: f32,
    max_rating: f32,
    ratings: &'a Csr,
    nb_ptr: &'a [u64],
    nb_idx: &'a [u32],
    nb_sim: &'a [f32],
    means: &'a [f32],
    user_bias: &'a [f32],
    item_bias: &'a [f32],
}

impl<'de> Deserialize<'de> for KnnModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let m = Parts::deserialize(d)?;
        let model = KnnModel { m };
        // A body stored without its shared parts is checked once its holder attaches them.
        if !model.is_detached() {
            model.m.check().map_err(serde::de::Error::custom)?;
        }
        Ok(model)
    }
}

impl Parts {
    fn n_rows(&self) -> usize {
        match self.params.based_on {
            Based::User => self.users.len(),
            Based::Item => self.items.len(),
        }
    }

    /// Structural consistency, so that no index can go out of bounds at prediction time.
    fn check(&self) -> std::result::Result<(), String> {
        self.params.validate().map_err(|e| e.to_string())?;
        let (nu, ni) = (self.users.len(), self.items.len());
        self.ratings
            .check(nu, ni)
            .map_err(|e| format!("ratings: {e}"))?;
        let n = self.n_rows();
        let p = &self.nb_ptr;
        if p.len() != n + 1
            || p.first() != Some(&0)
            || p.windows(2).any(|w| w[0] > w[1])
            || p.last().map(|&x| x as usize) != Some(self.nb_idx.len())
            || self.nb_idx.len() != self.nb_sim.len()
            || self.nb_idx.iter().any(|&x| x as usize >= n)
        {
            return Err("neighbour lists are inconsistent".into());
        }
        let means_ok = match self.params.centering {
            Centering::Mean => self.means.len() == n,
            _ => self.means.is_empty(),
        };
        let bias_ok = match self.params.centering {
            Centering::Baseline => self.user_bias.len() == nu && self.item_bias.len() == ni,
            _ => self.user_bias.is_empty() && self.item_bias.is_empty(),
        };
        if !means_ok || !bias_ok {
            return Err("means or baselines do not match the centring".into());
        }
        Ok(())
    }
}

impl KnnModel {
    /// Trains on `ds` with `params`, using rayon's current thread pool.
    pub fn train(ds: &Dataset, params: &KnnParams) -> Result<KnnModel> {
        Self::train_until(ds, params, &Stop::new())
    }

    /// [`KnnModel::train`] that ends with `Err(Cancelled)` soon after `stop` is raised: the
    /// similarity walk checks it before every row.
    pub fn train_until(ds: &Dataset, params: &KnnParams, stop: &Stop) -> Result<KnnModel> {
        params.validate()?;
        let mu = f64::from(ds.global_mean);
        let (bu, bi) = if params.needs_baselines() {
            let b = Biases::fit_until(ds, &BaselineParams::default(), stop)?;
            (b.bu, b.bi)
        } else {
            (Vec::new(), Vec::new())
        };
        let (rows, cols) = match params.based_on {
            Based::User => (&ds.by_user, &ds.by_item),
            Based::Item => (&ds.by_item, &ds.by_user),
        };
        let walk = |rv: &[f32], cv: &[f32], f: fn(&Walk) -> Neighbors| {
            f(&Walk {
                rows,
                rv,
                cols,
                cv,
                max_nb: params.max_neighbors,
                shrinkage: f64::from(params.shrinkage),
                stop,
            })
        };
        let nb = match params.similarity {
            Similarity::Cosine => walk(&rows.val, &cols.val, lists::<CosineAcc>),
            Similarity::Pearson => walk(&rows.val, &cols.val, lists::<PearsonAcc>),
            Similarity::Msd => walk(&rows.val, &cols.val, lists::<MsdAcc>),
            Similarity::PearsonBaseline => {
                // x̃ = r − (μ + b_user + b_item), precomputed in both orientations.
                let (rb, cb) = match params.based_on {
                    Based::User => ((&bu, &bi), (&bi, &bu)),
                    Based::Item => ((&bi, &bu), (&bu, &bi)),
                };
                let rv = residuals(rows, rb.0, rb.1, mu);
                let cv = residuals(cols, cb.0, cb.1, mu);
                walk(&rv, &cv, lists::<PearsonBaselineAcc>)
            }
        };
        // A stopped walk left rows without neighbours: not a model.
        stop.check()?;
        let means = match params.centering {
            Centering::Mean => row_means(rows, ds.global_mean),
            _ => Vec::new(),
        };
        let (user_bias, item_bias) = match params.centering {
            Centering::Baseline => (bu, bi),
            _ => (Vec::new(), Vec::new()),
        };
        Ok(KnnModel {
            m: Parts {
                params: params.clone(),
                users: Arc::new(ds.users.clone()),
                items: Arc::new(ds.items.clone()),
                global_mean: ds.global_mean,
                min_rating: ds.min_rating,
                max_rating: ds.max_rating,
                ratings: Arc::new(ds.by_user.clone()),
                nb_ptr: nb.ptr,
                nb_idx: nb.idx,
                nb_sim: nb.sim,
                means,
                user_bias,
                item_bias,
            },
        })
    }

    /// The options the model was trained with.
    pub fn params(&self) -> &KnnParams {
        &self.m.params
    }

    /// The id maps and training ratings (rows = users), shared with the model's holder.
    /// Whether every similarity, mean and bias is finite.
    pub(crate) fn is_finite(&self) -> bool {
        let m = &self.m;
        [&m.nb_sim, &m.means, &m.user_bias, &m.item_bias]
            .iter()
            .all(|v| v.iter().all(|x| x.is_finite()))
    }

    pub(crate) fn shared(&self) -> (&Arc<IdMap>, &Arc<IdMap>, &Arc<Csr>) {
        (&self.m.users, &self.m.items, &self.m.ratings)
    }

    /// Whether the model was stored without its id maps (a trained model always has users).
    pub(crate) fn is_detached(&self) -> bool {
        self.m.users.is_empty() && self.m.items.is_empty()
    }

    /// The encoding of this model inside a holder whose id maps are `users`/`items` and whose
    /// seen ratings are `seen`: each part equal to the holder's is written as an empty
    /// placeholder (an empty id map; a matrix without row pointers, which no real one is).
    pub(crate) fn stored<'a>(
        &'a self,
        users: &IdMap,
        items: &IdMap,
        seen: &Csr,
        empty_ids: &'a IdMap,
        empty_csr: &'a Csr,
    ) -> StoredParts<'a> {
        let m = &self.m;
        let same_ids = *m.users == *users && *m.items == *items;
        let same_ratings = same_ids && *m.ratings == *seen;
        StoredParts {
            params: &m.params,
            users: if same_ids { empty_ids } else { &m.users },
            items: if same_ids { empty_ids } else { &m.items },
            global_mean: m.global_mean,
            min_rating: m.min_rating,
            max_rating: m.max_rating,
            ratings: if same_ratings { empty_csr } else { &m.ratings },
            nb_ptr: &m.nb_ptr,
            nb_idx: &m.nb_idx,
            nb_sim: &m.nb_sim,
            means: &m.means,
            user_bias: &m.user_bias,
            item_bias: &m.item_bias,
        }
    }

    /// Puts back the parts a stored model left out (see [`KnnModel::stored`]) from its holder,
    /// shares the ones equal to the holder's (models stored whole, format 1), and checks the
    /// structure.
    pub(crate) fn attach(
        &mut self,
        users: &Arc<IdMap>,
        items: &Arc<IdMap>,
        seen: &Arc<Csr>,
    ) -> std::result::Result<(), String> {
        let detached = self.is_detached();
        let m = &mut self.m;
        if detached || **users == *m.users {
            m.users = Arc::clone(users);
        }
        if detached || **items == *m.items {
            m.items = Arc::clone(items);
        }
        if m.ratings.ptr.is_empty() || **seen == *m.ratings {
            m.ratings = Arc::clone(seen);
        }
        m.check()
    }
    /// External user ids and their dense indices.
    pub fn users(&self) -> &IdMap {
        &self.m.users
    }
    /// External item ids and their dense indices.
    pub fn items(&self) -> &IdMap {
        &self.m.items
    }
    pub fn global_mean(&self) -> f32 {
        self.m.global_mean
    }
    /// The lowest and highest rating seen in training, for clipping.
    pub fn rating_range(&self) -> (f32, f32) {
        (self.m.min_rating, self.m.max_rating)
    }
    /// Number of stored neighbour entries over all rows.
    pub fn n_neighbor_entries(&self) -> usize {
        self.m.nb_idx.len()
    }
    /// Approximate heap bytes held (ids excluded).
    pub fn bytes(&self) -> usize {
        let m = &self.m;
        m.ratings.bytes()
            + m.nb_ptr.len() * 8
            + (m.nb_idx.len()
                + m.nb_sim.len()
                + m.means.len()
                + m.user_bias.len()
                + m.item_bias.len())
                * 4
    }

    /// Row `x`'s neighbour list as `(indices, similarities)`, by descending similarity.
    fn row_neighbors(&self, x: u32) -> (&[u32], &[f32]) {
        let p = &self.m.nb_ptr;
        match (p.get(x as usize), p.get(x as usize + 1)) {
            (Some(&a), Some(&b)) => (
                &self.m.nb_idx[a as usize..b as usize],
                &self.m.nb_sim[a as usize..b as usize],
            ),
            _ => (&[], &[]),
        }
    }

    /// The `k` most similar rows (users or items, as the model is based on) to `row`, with their
    /// similarities, most similar first. Empty for an unknown row.
    pub fn neighbors(&self, row: u32, k: usize) -> Vec<(u32, f32)> {
        let (idx, sim) = self.row_neighbors(row);
        idx.iter()
            .copied()
            .zip(sim.iter().copied())
            .take(k)
            .collect()
    }

    /// The predicted rating of user `u` for item `i` (dense indices), unclipped, from the `k` most
    /// similar neighbours that have the needed rating. `None` when `u` or `i` is unknown or fewer
    /// than `min_k` neighbours qualify; the caller then falls back, e.g. on [`KnnModel::fallback`].
    pub fn predict(&self, u: u32, i: u32) -> Option<f32> {
        let m = &self.m;
        if u as usize >= m.users.len() || i as usize >= m.items.len() {
            return None;
        }
        let p = &m.params;
        let x = match p.based_on {
            Based::User => u,
            Based::Item => i,
        };
        let mu = m.global_mean;
        let (nb_idx, nb_sim) = self.row_neighbors(x);
        let mut agg = Aggregate::default();
        for (&n, &s) in nb_idx.iter().zip(nb_sim) {
            // The neighbour's rating: user n's of item i, or user u's of item n.
            let (ru, ri) = match p.based_on {
                Based::User => (n, i),
                Based::Item => (u, n),
            };
            let Some(r) = m.ratings.get(ru, ri) else {
                continue;
            };
            let value = self.centred(r, n, || m.user_bias[ru as usize], ri);
            agg.add(s, value);
            if agg.count >= p.k {
                break;
            }
        }
        if agg.count < p.min_k.max(1) {
            return None;
        }
        let offset = match p.centering {
            Centering::None => 0.0,
            Centering::Mean => f64::from(m.means[x as usize]),
            Centering::Baseline => {
                f64::from(mu)
                    + f64::from(m.user_bias[u as usize])
                    + f64::from(m.item_bias[i as usize])
            }
        };
        agg.mean().map(|d| (offset + d) as f32)
    }

    /// What the model predicts without neighbours, as Surprise does: with baseline centring
    /// `μ + b_u + b_i` over the known user/item; with mean centring the row's mean when the row
    /// (the user, or the item for item-based models) is known; else the global mean `μ`.
    /// (Surprise's `KNNWithMeans` uses `μ` whenever the user or the item is unknown; the row mean
    /// is the better guess and only differs for cold columns.)
    pub fn fallback(&self, u: Option<u32>, i: Option<u32>) -> f32 {
        let m = &self.m;
        let u = u.filter(|&u| (u as usize) < m.users.len());
        let i = i.filter(|&i| (i as usize) < m.items.len());
        match m.params.centering {
            Centering::None => m.global_mean,
            Centering::Mean => {
                let x = match m.params.based_on {
                    Based::User => u,
                    Based::Item => i,
                };
                x.and_then(|x| m.means.get(x as usize).copied())
                    .unwrap_or(m.global_mean)
            }
            Centering::Baseline => {
                let bu = u
                    .and_then(|u| m.user_bias.get(u as usize).copied())
                    .unwrap_or(0.0);
                let bi = i
                    .and_then(|i| m.item_bias.get(i as usize).copied())
                    .unwrap_or(0.0);
                m.global_mean + bu + bi
            }
        }
    }

    /// [`KnnModel::predict`] when possible, else [`KnnModel::fallback`]; unclipped.
    pub fn estimate(&self, u: Option<u32>, i: Option<u32>) -> f32 {
        match (u, i) {
            (Some(uu), Some(ii)) => self.predict(uu, ii).unwrap_or_else(|| self.fallback(u, i)),
            _ => self.fallback(u, i),
        }
    }

    /// [`KnnModel::estimate`] by external ids.
    pub fn estimate_ids(&self, user: i64, item: i64) -> f32 {
        self.estimate(self.m.users.get(user), self.m.items.get(item))
    }
}

/// A neighbour a k-NN estimate used ([`KnnModel::explain_folded`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NeighborUse {
    /// One of the user's items (item-based) or a training user (user-based), dense index.
    pub neighbor: u32,
    pub similarity: f32,
    /// The user's rating of the neighbour item, or the neighbour's rating of the item.
    pub rating: f32,
    /// similarity · centred value / Σ similarity.
    pub contribution: f32,
}

/// A user folded into a k-NN model from given ratings ([`crate::cf::foldin`]): the ratings are
/// the user's row; for a user-based model, also the user's most similar training users.
#[derive(Debug, Clone)]
pub struct KnnFolded {
    /// The user's items (dense indices, sorted) and ratings.
    items: Vec<u32>,
    ratings: Vec<f32>,
    /// The user's baseline bias b_u (baseline centring), else 0.
    bu: f32,
    /// The mean of the user's ratings (mean centring of a user-based model).
    mean: f32,
    /// User-based: the `max_neighbors` most similar training users, by descending similarity.
    neighbors: Vec<(u32, f32)>,
}

/// The training ratings by item (users as columns) and the values the user-based similarity
/// compares (the ratings, or their residuals from the baselines), built once per model for the
/// fold-in of user-based models.
#[derive(Debug, Clone)]
pub struct Raters {
    by_item: Csr,
    values: Vec<f32>,
}

impl KnnModel {
    /// Whether folding a user in needs [`KnnModel::raters`] (user-based models).
    pub fn needs_raters(&self) -> bool {
        self.m.params.based_on == Based::User
    }

    /// The transpose of the training ratings with the values the similarity compares. Fails for
    /// a user-based `pearson_baseline` model trained without baseline centring: it did not keep
    /// the baselines that similarity needs.
    pub fn raters(&self) -> Result<Raters> {
        let m = &self.m;
        let pearson_baseline = m.params.similarity == Similarity::PearsonBaseline;
        if pearson_baseline && m.user_bias.is_empty() {
            return Err(CoreError::InvalidParameter(
                "this user-based k-NN model cannot fold in new users: its pearson_baseline \
                 similarity needs the baselines, which it keeps only with \"centering\": \
                 \"baseline\"; retrain it with that centring"
                    .into(),
            ));
        }
        let mut t: Vec<(u32, u32, f32)> = Vec::with_capacity(m.ratings.nnz());
        for u in 0..m.ratings.n_rows() as u32 {
            let (cols, vals) = m.ratings.row(u);
            t.extend(cols.iter().zip(vals).map(|(&i, &r)| (i, u, r)));
        }
        let by_item = Csr::from_triples(m.items.len(), t);
        let values = if pearson_baseline {
            residuals(
                &by_item,
                &m.item_bias,
                &m.user_bias,
                f64::from(m.global_mean),
            )
        } else {
            by_item.val.clone()
        };
        Ok(Raters { by_item, values })
    }

    /// The baseline bias of a user with these ratings, as training's user step computes it
    /// (b_u = Σ (r − μ − b_i) / (reg_u + n), Surprise's default reg_u); 0 without baselines.
    fn folded_bias(&self, items: &[u32], ratings: &[f32]) -> f32 {
        let m = &self.m;
        if m.item_bias.is_empty() || items.is_empty() {
            return 0.0;
        }
        let reg_u = f64::from(BaselineParams::default().reg_u);
        let sum: f64 = items
            .iter()
            .zip(ratings)
            .map(|(&i, &r)| {
                f64::from(r) - f64::from(m.global_mean) - f64::from(m.item_bias[i as usize])
            })
            .sum();
        (sum / (reg_u + items.len() as f64)) as f32
    }

    /// Folds in a user who rated `items` (dense indices, sorted, distinct) with `ratings`.
    /// `raters` is [`KnnModel::raters`], needed by user-based models only; `own` is the user's
    /// index when the model knows the user (never its own neighbour).
    pub fn fold_in(
        &self,
        items: &[u32],
        ratings: &[f32],
        raters: Option<&Raters>,
        own: Option<u32>,
    ) -> Result<KnnFolded> {
        let m = &self.m;
        let bu = self.folded_bias(items, ratings);
        let mean = if ratings.is_empty() {
            m.global_mean
        } else {
            (ratings.iter().map(|&r| f64::from(r)).sum::<f64>() / ratings.len() as f64) as f32
        };
        let neighbors = match (m.params.based_on, raters) {
            (Based::Item, _) => Vec::new(),
            (Based::User, None) => {
                return Err(CoreError::InvalidParameter(
                    "a user-based k-NN fold-in needs the model's raters".into(),
                ))
            }
            (Based::User, Some(raters)) => {
                let vals: Vec<f32> = match m.params.similarity {
                    Similarity::PearsonBaseline => items
                        .iter()
                        .zip(ratings)
                        .map(|(&i, &r)| r - (m.global_mean + bu + m.item_bias[i as usize]))
                        .collect(),
                    _ => ratings.to_vec(),
                };
                let n = m.users.len();
                let shrinkage = f64::from(m.params.shrinkage);
                let max_nb = m.params.max_neighbors;
                match m.params.similarity {
                    Similarity::Cosine => {
                        similar_rows::<CosineAcc>(items, &vals, raters, n, max_nb, shrinkage, own)
                    }
                    Similarity::Pearson => {
                        similar_rows::<PearsonAcc>(items, &vals, raters, n, max_nb, shrinkage, own)
                    }
                    Similarity::Msd => {
                        similar_rows::<MsdAcc>(items, &vals, raters, n, max_nb, shrinkage, own)
                    }
                    Similarity::PearsonBaseline => similar_rows::<PearsonBaselineAcc>(
                        items, &vals, raters, n, max_nb, shrinkage, own,
                    ),
                }
            }
        };
        Ok(KnnFolded {
            items: items.to_vec(),
            ratings: ratings.to_vec(),
            bu,
            mean,
            neighbors,
        })
    }

    /// [`KnnModel::predict`] for a folded user: the same neighbours, centring and `k`, `min_k`.
    pub fn predict_folded(&self, f: &KnnFolded, i: u32) -> Option<f32> {
        if i as usize >= self.m.items.len() {
            return None;
        }
        let agg = self.walk_folded(f, i, |_, _, _, _| {});
        self.folded_estimate(f, i, &agg)
    }

    /// The neighbours a folded user's estimate of item `i` (a known index) uses, in order:
    /// `visit(neighbour, similarity, rating, centred value)` for each one that counts (positive
    /// similarity, the first `k`); the neighbour is one of the user's items (item-based) or a
    /// training user (user-based), the rating the user's of that item or that user's of `i`.
    fn walk_folded(
        &self,
        f: &KnnFolded,
        i: u32,
        visit: impl FnMut(u32, f32, f32, f32),
    ) -> Aggregate {
        let rating_of = |n: u32| f.items.binary_search(&n).ok().map(|at| f.ratings[at]);
        self.walk_folded_by(f, i, rating_of, visit)
    }

    /// [`KnnModel::walk_folded`] with the user's rating of an item looked up by `rating_of`
    /// (item-based models; a search of the user's sorted items, or a dense array when every
    /// item is estimated).
    fn walk_folded_by(
        &self,
        f: &KnnFolded,
        i: u32,
        rating_of: impl Fn(u32) -> Option<f32>,
        mut visit: impl FnMut(u32, f32, f32, f32),
    ) -> Aggregate {
        let m = &self.m;
        let p = &m.params;
        let mut agg = Aggregate::default();
        let mut add = |agg: &mut Aggregate, n: u32, s: f32, r: f32, value: f32| {
            let before = agg.count;
            agg.add(s, value);
            if agg.count > before {
                visit(n, s, r, value);
            }
        };
        match p.based_on {
            Based::Item => {
                let (nb_idx, nb_sim) = self.row_neighbors(i);
                for (&n, &s) in nb_idx.iter().zip(nb_sim) {
                    let Some(r) = rating_of(n) else {
                        continue;
                    };
                    let value = self.centred(r, n, || f.bu, n);
                    add(&mut agg, n, s, r, value);
                    if agg.count >= p.k {
                        break;
                    }
                }
            }
            Based::User => {
                for &(v, s) in &f.neighbors {
                    let Some(r) = m.ratings.get(v, i) else {
                        continue;
                    };
                    let value = self.centred(r, v, || m.user_bias[v as usize], i);
                    add(&mut agg, v, s, r, value);
                    if agg.count >= p.k {
                        break;
                    }
                }
            }
        }
        agg
    }

    /// A neighbour's rating `r` as an estimate averages it, by the model's centring: less the
    /// mean of row `mean_row` (`mean`), or less the baseline μ + b_u + b_item of the rating's
    /// user bias `bu` and item (`baseline`; `bu` is only asked for then).
    #[inline]
    fn centred(&self, r: f32, mean_row: u32, bu: impl FnOnce() -> f32, item: u32) -> f32 {
        let m = &self.m;
        match m.params.centering {
            Centering::None => r,
            Centering::Mean => r - m.means[mean_row as usize],
            Centering::Baseline => r - (m.global_mean + bu() + m.item_bias[item as usize]),
        }
    }

    /// What makes a folded user's estimate of item `i` (a known index): the estimate (equal to
    /// [`KnnModel::predict_folded`], from the same single walk) and the neighbours used, each
    /// contributing similarity · centred value / Σ similarity, so that the estimate is an offset
    /// plus the sum of the contributions. `None` when fewer than `min_k` neighbours qualify (the
    /// estimate is then the fallback, which no neighbour explains).
    pub fn explain_folded(&self, f: &KnnFolded, i: u32) -> Option<(f32, Vec<NeighborUse>)> {
        if i as usize >= self.m.items.len() {
            return None;
        }
        let mut used = Vec::new();
        let agg = self.walk_folded(f, i, |n, s, r, value| used.push((n, s, r, value)));
        let estimate = self.folded_estimate(f, i, &agg)?;
        let total = agg.sum_sim;
        let used: Vec<NeighborUse> = used
            .into_iter()
            .map(|(neighbor, similarity, rating, value)| NeighborUse {
                neighbor,
                similarity,
                rating,
                contribution: (f64::from(similarity) * f64::from(value) / total) as f32,
            })
            .collect();
        Some((estimate, used))
    }

    /// [`KnnModel::fallback`] for a folded user: its own bias or mean where the model would use
    /// a known user's.
    pub fn fallback_folded(&self, f: &KnnFolded, i: Option<u32>) -> f32 {
        let m = &self.m;
        let i = i.filter(|&i| (i as usize) < m.items.len());
        match (m.params.centering, m.params.based_on) {
            (Centering::None, _) => m.global_mean,
            (Centering::Mean, Based::User) => f.mean,
            (Centering::Mean, Based::Item) => i
                .and_then(|i| m.means.get(i as usize).copied())
                .unwrap_or(m.global_mean),
            (Centering::Baseline, _) => {
                m.global_mean
                    + f.bu
                    + i.and_then(|i| m.item_bias.get(i as usize).copied())
                        .unwrap_or(0.0)
            }
        }
    }

    /// [`KnnModel::estimate_folded`] of every item, at once: for a user-based model the
    /// neighbours' rows are walked once (most similar first, each item taking its first `k`
    /// raters), instead of each item's raters being looked up among the neighbours; the same
    /// numbers.
    pub fn estimate_all_folded(&self, f: &KnnFolded) -> Vec<f32> {
        let m = &self.m;
        let n = m.items.len();
        let p = &m.params;
        if p.based_on == Based::Item {
            // The user's ratings by item index: a lookup per neighbour instead of a search.
            let mut own = vec![f32::NAN; n];
            for (&i, &r) in f.items.iter().zip(&f.ratings) {
                own[i as usize] = r;
            }
            let rating_of = |j: u32| Some(own[j as usize]).filter(|r| !r.is_nan());
            return (0..n as u32)
                .map(|i| {
                    let a = self.walk_folded_by(f, i, rating_of, |_, _, _, _| {});
                    self.folded_mean(f, i, &a)
                })
                .collect();
        }
        let mut agg: Vec<Aggregate> = (0..n).map(|_| Aggregate::default()).collect();
        for &(v, s) in &f.neighbors {
            let (cols, vals) = m.ratings.row(v);
            for (&i, &r) in cols.iter().zip(vals) {
                let a = &mut agg[i as usize];
                if a.count >= p.k {
                    continue;
                }
                let value = self.centred(r, v, || m.user_bias[v as usize], i);
                a.add(s, value);
            }
        }
        agg.iter()
            .enumerate()
            .map(|(i, a)| self.folded_mean(f, i as u32, a))
            .collect()
    }

    /// The estimate of item `i` for a folded user from its neighbours' sums `a` (the fallback
    /// below `min_k` neighbours), as [`KnnModel::estimate_folded`] computes it.
    fn folded_mean(&self, f: &KnnFolded, i: u32, a: &Aggregate) -> f32 {
        self.folded_estimate(f, i, a)
            .unwrap_or_else(|| self.fallback_folded(f, Some(i)))
    }

    /// The neighbours' weighted mean `a` put back on the folded user's scale (the centring's
    /// offset); `None` below `min_k` neighbours.
    fn folded_estimate(&self, f: &KnnFolded, i: u32, a: &Aggregate) -> Option<f32> {
        let m = &self.m;
        if a.count < m.params.min_k.max(1) {
            return None;
        }
        let offset = match (m.params.centering, m.params.based_on) {
            (Centering::None, _) => 0.0,
            (Centering::Mean, Based::User) => f64::from(f.mean),
            (Centering::Mean, Based::Item) => f64::from(m.means[i as usize]),
            (Centering::Baseline, _) => {
                f64::from(m.global_mean) + f64::from(f.bu) + f64::from(m.item_bias[i as usize])
            }
        };
        a.mean().map(|d| (offset + d) as f32)
    }

    /// [`KnnModel::predict_folded`] when possible, else [`KnnModel::fallback_folded`]; unclipped.
    pub fn estimate_folded(&self, f: &KnnFolded, i: Option<u32>) -> f32 {
        i.and_then(|i| self.predict_folded(f, i))
            .unwrap_or_else(|| self.fallback_folded(f, i))
    }
}

/// The `max_nb` rows most similar (positive similarity) to a row outside the model with columns
/// `cols` and values `vals`, against the model's rows through the transpose in `raters`, by
/// descending similarity, leaving out row `skip`: the training's walk for one row.
fn similar_rows<A: Accumulator>(
    cols: &[u32],
    vals: &[f32],
    raters: &Raters,
    n_rows: usize,
    max_nb: usize,
    shrinkage: f64,
    skip: Option<u32>,
) -> Vec<(u32, f32)> {
    let (by_col, col_vals) = (&raters.by_item, &raters.values);
    let mut acc: Vec<A> = vec![A::default(); n_rows];
    let mut freq = vec![0u32; n_rows];
    let mut touched = Vec::new();
    for (&c, &a) in cols.iter().zip(vals) {
        if c as usize >= by_col.n_rows() {
            continue;
        }
        let span = by_col.ptr[c as usize] as usize..by_col.ptr[c as usize + 1] as usize;
        for (&s, &b) in by_col.idx[span.clone()].iter().zip(&col_vals[span]) {
            if Some(s) == skip {
                continue;
            }
            if freq[s as usize] == 0 {
                touched.push(s);
            }
            freq[s as usize] += 1;
            acc[s as usize].add(f64::from(a), f64::from(b));
        }
    }
    let mut out: Vec<(u32, f32)> = touched
        .into_iter()
        .filter_map(|s| {
            let sim = acc[s as usize].similarity(freq[s as usize], shrinkage) as f32;
            (sim.is_finite() && sim > 0.0).then_some((s, sim))
        })
        .collect();
    if out.len() > max_nb && max_nb > 0 {
        out.select_nth_unstable_by(max_nb - 1, by_similarity_desc);
        out.truncate(max_nb);
    }
    out.sort_unstable_by(by_similarity_desc);
    out
}

/// The mean rating of every row of `csr` (`fallback` for an empty row).
fn row_means(csr: &Csr, fallback: f32) -> Vec<f32> {
    (0..csr.n_rows() as u32)
        .map(|r| {
            let (_, vals) = csr.row(r);
            if vals.is_empty() {
                fallback
            } else {
                (vals.iter().map(|&v| f64::from(v)).sum::<f64>() / vals.len() as f64) as f32
            }
        })
        .collect()
}

/// `r − (μ + row_bias[row] + col_bias[col])` for every entry of `csr`, in storage order.
fn residuals(csr: &Csr, row_bias: &[f32], col_bias: &[f32], mu: f64) -> Vec<f32> {
    let mut out = Vec::with_capacity(csr.nnz());
    for r in 0..csr.n_rows() as u32 {
        let (cols, vals) = csr.row(r);
        let br = f64::from(row_bias[r as usize]);
        for (&c, &v) in cols.iter().zip(vals) {
            out.push((f64::from(v) - mu - br - f64::from(col_bias[c as usize])) as f32);
        }
    }
    out
}

/// Co-rated sums between a fixed row (values `a`) and another row (values `b`).
trait Accumulator: Copy + Default + Send {
    fn add(&mut self, a: f64, b: f64);
    /// The similarity given `n` co-rated entries; non-finite values are discarded by the caller.
    fn similarity(&self, n: u32, shrinkage: f64) -> f64;
}

#[derive(Clone, Copy, Default)]
struct CosineAcc {
    prods: f64,
    sqi: f64,
    sqj: f64,
}
impl Accumulator for CosineAcc {
    #[inline]
    fn add(&mut self, a: f64, b: f64) {
        self.prods += a * b;
        self.sqi += a * a;
        self.sqj += b * b;
    }
    fn similarity(&self, _n: u32, _shrinkage: f64) -> f64 {
        let den = (self.sqi * self.sqj).sqrt();
        if den > 0.0 {
            (self.prods / den).clamp(-1.0, 1.0)
        } else {
            0.0
        }
    }
}

#[derive(Clone, Copy, Default)]
struct MsdAcc {
    sq_diff: f64,
}
impl Accumulator for MsdAcc {
    #[inline]
    fn add(&mut self, a: f64, b: f64) {
        self.sq_diff += (a - b) * (a - b);
    }
    fn similarity(&self, n: u32, _shrinkage: f64) -> f64 {
        if n == 0 {
            return 0.0;
        }
        1.0 / (self.sq_diff / f64::from(n) + 1.0)
    }
}

#[derive(Clone, Copy, Default)]
struct PearsonAcc {
    prods: f64,
    sqi: f64,
    sqj: f64,
    si: f64,
    sj: f64,
}
impl Accumulator for PearsonAcc {
    #[inline]
    fn add(&mut self, a: f64, b: f64) {
        self.prods += a * b;
        self.sqi += a * a;
        self.sqj += b * b;
        self.si += a;
        self.sj += b;
    }
    fn similarity(&self, n: u32, _shrinkage: f64) -> f64 {
        // Surprise's closed form: (n Σab − Σa Σb) / √((n Σa² − (Σa)²)(n Σb² − (Σb)²)).
        let n = f64::from(n);
        // A variance term within rounding of zero means a constant side: no correlation.
        let var = |sq: f64, s: f64| {
            let v = n * sq - s * s;
            if v <= 1e-12 * n * sq {
                0.0
            } else {
                v
            }
        };
        let den = (var(self.sqi, self.si) * var(self.sqj, self.sj)).sqrt();
        if den > 0.0 {
            ((n * self.prods - self.si * self.sj) / den).clamp(-1.0, 1.0)
        } else {
            0.0
        }
    }
}

/// Cosine of the residuals from the baselines, times `(n − 1) / (n − 1 + shrinkage)`.
#[derive(Clone, Copy, Default)]
struct PearsonBaselineAcc(CosineAcc);
impl Accumulator for PearsonBaselineAcc {
    #[inline]
    fn add(&mut self, a: f64, b: f64) {
        self.0.add(a, b);
    }
    fn similarity(&self, n: u32, shrinkage: f64) -> f64 {
        let n1 = f64::from(n) - 1.0;
        let den = n1 + shrinkage;
        if den > 0.0 {
            self.0.similarity(n, shrinkage) * n1 / den
        } else {
            0.0
        }
    }
}

/// Neighbour lists of every row, concatenated, by descending similarity within a row.
struct Neighbors {
    ptr: Vec<u64>,
    idx: Vec<u32>,
    sim: Vec<f32>,
}

/// Descending similarity, ties by ascending index (deterministic).
fn by_similarity_desc(a: &(u32, f32), b: &(u32, f32)) -> std::cmp::Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// Per-thread dense scratch for one row's co-rated sums.
struct Scratch<A> {
    acc: Vec<A>,
    freq: Vec<u32>,
    touched: Vec<u32>,
    candidates: Vec<(u32, f32)>,
}

/// One block of rows' results, in row order.
struct Block {
    lens: Vec<u32>,
    idx: Vec<u32>,
    sim: Vec<f32>,
}

/// [`Walk::neighbor_lists`] as a plain function (late-bound lifetimes, so it is a `fn` pointer).
fn lists<A: Accumulator>(walk: &Walk) -> Neighbors {
    walk.neighbor_lists::<A>()
}

/// What the similarity walk reads: the rows (values `rv`, aligned with `rows.val`) and their
/// transpose `cols` (values `cv`), and what it keeps.
struct Walk<'a> {
    rows: &'a Csr,
    rv: &'a [f32],
    cols: &'a Csr,
    cv: &'a [f32],
    max_nb: usize,
    shrinkage: f64,
    /// Raised to stop the walk: the remaining rows are skipped.
    stop: &'a Stop,
}

impl Walk<'_> {
    /// Similarities of every row to the rows sharing a column with it, keeping the `max_nb` best
    /// positive ones per row.
    fn neighbor_lists<A: Accumulator>(&self) -> Neighbors {
        let n = self.rows.n_rows();
        // Blocks of rows, a few per thread for load balance; one scratch per block.
        let n_blocks = (rayon::current_num_threads() * 8).clamp(1, n.max(1));
        let block_len = n.div_ceil(n_blocks).max(1);
        let blocks: Vec<Block> = (0..n.div_ceil(block_len))
            .into_par_iter()
            .map(|b| {
                let mut sc = Scratch {
                    acc: vec![A::default(); n],
                    freq: vec![0u32; n],
                    touched: Vec::new(),
                    candidates: Vec::new(),
                };
                let mut out = Block {
                    lens: Vec::new(),
                    idx: Vec::new(),
                    sim: Vec::new(),
                };
                for r in (b * block_len)..((b + 1) * block_len).min(n) {
                    if self.stop.requested() {
                        break;
                    }
                    let kept = self.row_neighbors(r as u32, &mut sc);
                    out.lens.push(kept.len() as u32);
                    for &(y, s) in kept {
                        out.idx.push(y);
                        out.sim.push(s);
                    }
                }
                out
            })
            .collect();
        let total: usize = blocks.iter().map(|b| b.idx.len()).sum();
        let mut nb = Neighbors {
            ptr: Vec::with_capacity(n + 1),
            idx: Vec::with_capacity(total),
            sim: Vec::with_capacity(total),
        };
        nb.ptr.push(0);
        let mut end = 0u64;
        for b in blocks {
            for len in b.lens {
                end += u64::from(len);
                nb.ptr.push(end);
            }
            nb.idx.extend(b.idx);
            nb.sim.extend(b.sim);
        }
        nb
    }

    /// Row `r`'s best `max_nb` neighbours, by descending similarity, in the scratch's buffer.
    fn row_neighbors<'s, A: Accumulator>(
        &self,
        r: u32,
        sc: &'s mut Scratch<A>,
    ) -> &'s [(u32, f32)] {
        let span = |csr: &Csr, x: usize| csr.ptr[x] as usize..csr.ptr[x + 1] as usize;
        let own = span(self.rows, r as usize);
        for (&c, &a) in self.rows.idx[own.clone()].iter().zip(&self.rv[own]) {
            let other = span(self.cols, c as usize);
            for (&s, &b) in self.cols.idx[other.clone()].iter().zip(&self.cv[other]) {
                if s == r {
                    continue;
                }
                let f = &mut sc.freq[s as usize];
                if *f == 0 {
                    sc.touched.push(s);
                }
                *f += 1;
                sc.acc[s as usize].add(f64::from(a), f64::from(b));
            }
        }
        sc.candidates.clear();
        for &s in &sc.touched {
            let sim = sc.acc[s as usize].similarity(sc.freq[s as usize], self.shrinkage) as f32;
            if sim.is_finite() && sim > 0.0 {
                sc.candidates.push((s, sim));
            }
            sc.acc[s as usize] = A::default();
            sc.freq[s as usize] = 0;
        }
        sc.touched.clear();
        let c = &mut sc.candidates;
        if c.len() > self.max_nb {
            c.select_nth_unstable_by(self.max_nb - 1, by_similarity_desc);
            c.truncate(self.max_nb);
        }
        c.sort_unstable_by(by_similarity_desc);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::data::DatasetBuilder;
    use rand::{Rng, SeedableRng};
    use rand_pcg::Pcg64Mcg;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-5
    }

    fn params(based_on: Based, similarity: Similarity, centering: Centering) -> KnnParams {
        KnnParams {
            based_on,
            similarity,
            centering,
            ..KnnParams::default()
        }
    }

    /// Users 1, 2, 3; items A=10, B=20, C=30, D=40, E=50.
    /// User 1 and user 2 share A, B: (1, 2)·(2, 1) → cosine 4/5 = 0.8.
    /// User 1 and user 3 share D, E: (1, 3)·(3, 1) → cosine 6/10 = 0.6.
    /// User 2 rated C 2, user 3 rated C 5; user 1 did not rate C.
    fn textbook() -> Dataset {
        Dataset::from_triples(&[
            (1, 10, 1.0),
            (1, 20, 2.0),
            (1, 40, 1.0),
            (1, 50, 3.0),
            (2, 10, 2.0),
            (2, 20, 1.0),
            (2, 30, 2.0),
            (3, 40, 3.0),
            (3, 50, 1.0),
            (3, 30, 5.0),
        ])
        .unwrap()
    }

    fn ix(ds: &Dataset, user: i64, item: i64) -> (u32, u32) {
        (ds.users.get(user).unwrap(), ds.items.get(item).unwrap())
    }

    #[test]
    fn textbook_weighted_average() {
        // (0.8·2 + 0.6·5) / (0.8 + 0.6) = 4.6 / 1.4 = 3.2857…
        let r = weighted_average(&[(0.8, 2.0), (0.6, 5.0)]).unwrap();
        assert!(close(r, 4.6 / 1.4), "{r}");
        // Non-positive similarities are ignored, as in Surprise.
        assert_eq!(
            weighted_average(&[(0.8, 2.0), (-0.5, 1.0), (0.0, 4.0)]),
            Some(2.0)
        );
        assert_eq!(weighted_average(&[(-0.5, 1.0)]), None);
        assert_eq!(weighted_average(&[]), None);
    }

    #[test]
    fn textbook_trained_cosine_user_based() {
        let ds = textbook();
        let m = KnnModel::train(
            &ds,
            &params(Based::User, Similarity::Cosine, Centering::None),
        )
        .unwrap();
        let (u1, c) = ix(&ds, 1, 30);
        let (u2, u3) = (ds.users.get(2).unwrap(), ds.users.get(3).unwrap());
        let nb = m.neighbors(u1, 10);
        assert_eq!(nb.len(), 2);
        assert_eq!(nb[0].0, u2);
        assert!(close(nb[0].1, 0.8), "{nb:?}");
        assert_eq!(nb[1].0, u3);
        assert!(close(nb[1].1, 0.6), "{nb:?}");
        // Users 2 and 3 share only C: 2·5 / (2·5) = 1.
        assert!(close(m.neighbors(u2, 10)[0].1, 1.0));
        assert_eq!(m.neighbors(u1, 1).len(), 1);
        let p = m.predict(u1, c).unwrap();
        assert!(close(p, 4.6 / 1.4), "{p}");
        // k = 1 keeps only the most similar neighbour, user 2, who rated C 2.
        let k1 = KnnParams {
            k: 1,
            ..params(Based::User, Similarity::Cosine, Centering::None)
        };
        let m1 = KnnModel::train(&ds, &k1).unwrap();
        assert!(close(m1.predict(u1, c).unwrap(), 2.0));
    }

    #[test]
    fn msd_by_hand() {
        let ds = textbook();
        let m =
            KnnModel::train(&ds, &params(Based::User, Similarity::Msd, Centering::None)).unwrap();
        let (u1, c) = ix(&ds, 1, 30);
        let (u2, u3) = (ds.users.get(2).unwrap(), ds.users.get(3).unwrap());
        // u1–u2: ((1−2)² + (2−1)²)/2 = 1 → 1/2. u1–u3: ((1−3)² + (3−1)²)/2 = 4 → 1/5.
        assert_eq!(
            m.neighbors(u1, 5).iter().map(|x| x.0).collect::<Vec<_>>(),
            vec![u2, u3]
        );
        assert!(close(m.neighbors(u1, 5)[0].1, 0.5));
        assert!(close(m.neighbors(u1, 5)[1].1, 0.2));
        // u2–u3 on C: (2−5)² = 9 → 1/10.
        assert!(close(
            m.neighbors(u2, 5).iter().find(|x| x.0 == u3).unwrap().1,
            0.1
        ));
        let p = m.predict(u1, c).unwrap();
        assert!(close(p, (0.5 * 2.0 + 0.2 * 5.0) / 0.7), "{p}");
    }

    #[test]
    fn pearson_by_hand() {
        // u1 (1,2,3), u2 (2,4,5), u3 (3,2,1) on X, Y, Z; u4 shares only X with u1.
        let ds = Dataset::from_triples(&[
            (1, 1, 1.0),
            (1, 2, 2.0),
            (1, 3, 3.0),
            (2, 1, 2.0),
            (2, 2, 4.0),
            (2, 3, 5.0),
            (3, 1, 3.0),
            (3, 2, 2.0),
            (3, 3, 1.0),
            (4, 1, 5.0),
            (4, 9, 1.0),
        ])
        .unwrap();
        let m = KnnModel::train(
            &ds,
            &params(Based::User, Similarity::Pearson, Centering::None),
        )
        .unwrap();
        let u1 = ds.users.get(1).unwrap();
        let nb = m.neighbors(u1, 10);
        // Centred: u1 (−1, 0, 1), u2 (−5/3, 1/3, 4/3) → 3 / (√2 · √42/3) = 9/√84.
        // u3 correlates −1 and u4 shares one item (correlation 0): both dropped.
        assert_eq!(nb.len(), 1, "{nb:?}");
        assert_eq!(nb[0].0, ds.users.get(2).unwrap());
        assert!(close(nb[0].1, 9.0 / 84f64.sqrt()), "{nb:?}");
    }

    #[test]
    fn item_based_cosine_by_hand() {
        // Items 1 and 2 share users a, b: (4, 2)·(2, 1) → cosine 1; items 1 and 3 share user a:
        // 4·1/(4·1) = 1 as well; user c rated items 2 and 3 only.
        let ds = Dataset::from_triples(&[
            (100, 1, 4.0),
            (100, 2, 2.0),
            (100, 3, 1.0),
            (200, 1, 2.0),
            (200, 2, 1.0),
            (300, 2, 3.0),
            (300, 3, 5.0),
        ])
        .unwrap();
        let m = KnnModel::train(
            &ds,
            &params(Based::Item, Similarity::Cosine, Centering::None),
        )
        .unwrap();
        let i1 = ds.items.get(1).unwrap();
        let (i2, i3) = (ds.items.get(2).unwrap(), ds.items.get(3).unwrap());
        let nb = m.neighbors(i1, 5);
        assert_eq!(nb.len(), 2);
        assert!(nb.iter().all(|x| close(x.1, 1.0)));
        // Items 2 and 3 share users 100 and 300: (2·1 + 3·5) / √((4+9)(1+25)) = 17/√338.
        let s23 = 17.0 / 338f64.sqrt();
        assert!(close(
            m.neighbors(i2, 5).iter().find(|x| x.0 == i3).unwrap().1,
            s23
        ));
        // User 300 on item 1: neighbours 2 (sim 1, rating 3) and 3 (sim 1, rating 5) → 4.
        let u300 = ds.users.get(300).unwrap();
        assert!(close(m.predict(u300, i1).unwrap(), 4.0));
    }

    #[test]
    fn mean_centred_by_hand() {
        let ds = textbook();
        let m = KnnModel::train(
            &ds,
            &params(Based::User, Similarity::Cosine, Centering::Mean),
        )
        .unwrap();
        let (u1, c) = ix(&ds, 1, 30);
        // Means: u1 7/4, u2 5/3, u3 3.
        let expect = 1.75 + (0.8 * (2.0 - 5.0 / 3.0) + 0.6 * (5.0 - 3.0)) / 1.4;
        let p = m.predict(u1, c).unwrap();
        assert!(close(p, expect), "{p} vs {expect}");
    }

    #[test]
    fn baselines_one_epoch_by_hand() {
        // u1: i1 4, i2 5; u2: i1 2. μ = 11/3.
        let ds = Dataset::from_triples(&[(1, 1, 4.0), (1, 2, 5.0), (2, 1, 2.0)]).unwrap();
        let Biases { bu, bi } = Biases::fit(
            &ds,
            &BaselineParams {
                reg_u: 15.0,
                reg_i: 10.0,
                epochs: 1,
            },
        );
        let mu = 11.0 / 3.0;
        let bi1 = ((4.0 - mu) + (2.0 - mu)) / (10.0 + 2.0);
        let bi2 = (5.0 - mu) / (10.0 + 1.0);
        let bu1 = ((4.0 - mu - bi1) + (5.0 - mu - bi2)) / (15.0 + 2.0);
        let bu2 = (2.0 - mu - bi1) / (15.0 + 1.0);
        let (u1, i1) = ix(&ds, 1, 1);
        let (u2, i2) = ix(&ds, 2, 2);
        assert!(close(bi[i1 as usize], bi1) && close(bi[i2 as usize], bi2));
        assert!(close(bu[u1 as usize], bu1) && close(bu[u2 as usize], bu2));
    }

    #[test]
    fn baseline_centred_by_hand() {
        let ds = textbook();
        let m = KnnModel::train(
            &ds,
            &params(Based::User, Similarity::Cosine, Centering::Baseline),
        )
        .unwrap();
        let Biases { bu, bi } = Biases::fit(&ds, &BaselineParams::default());
        let (u1, c) = ix(&ds, 1, 30);
        let (u2, u3) = (
            ds.users.get(2).unwrap() as usize,
            ds.users.get(3).unwrap() as usize,
        );
        let mu = f64::from(ds.global_mean);
        let b = |u: usize| mu + f64::from(bu[u]) + f64::from(bi[c as usize]);
        let expect = b(u1 as usize) + (0.8 * (2.0 - b(u2)) + 0.6 * (5.0 - b(u3))) / 1.4;
        let p = m.predict(u1, c).unwrap();
        assert!(close(p, expect), "{p} vs {expect}");
        // Fallback: μ + known biases.
        let fb = m.fallback(Some(u1), None);
        assert!(close(fb, mu + f64::from(bu[u1 as usize])));
        assert!(close(m.estimate(None, None), mu));
    }

    /// Surprise's similarity definitions, literally: dense, all pairs, f64.
    fn reference_similarities(ds: &Dataset, p: &KnnParams) -> Vec<Vec<f64>> {
        let (rows, n_cols) = match p.based_on {
            Based::User => (&ds.by_user, ds.n_items()),
            Based::Item => (&ds.by_item, ds.n_users()),
        };
        let n = rows.n_rows();
        let Biases { bu, bi } = Biases::fit(ds, &BaselineParams::default());
        let (bx, by) = match p.based_on {
            Based::User => (bu, bi),
            Based::Item => (bi, bu),
        };
        let mu = f64::from(ds.global_mean);
        let dense: Vec<Vec<Option<f64>>> = (0..n as u32)
            .map(|r| {
                let mut v = vec![None; n_cols];
                let (c, x) = rows.row(r);
                for (&c, &x) in c.iter().zip(x) {
                    v[c as usize] = Some(f64::from(x));
                }
                v
            })
            .collect();
        let mut sim = vec![vec![0.0; n]; n];
        for a in 0..n {
            for b in 0..n {
                if a == b {
                    continue;
                }
                let pairs: Vec<(usize, f64, f64)> = (0..n_cols)
                    .filter_map(|c| Some((c, dense[a][c]?, dense[b][c]?)))
                    .collect();
                let k = pairs.len() as f64;
                if pairs.is_empty() {
                    continue;
                }
                sim[a][b] = match p.similarity {
                    Similarity::Cosine => {
                        let d: f64 = pairs.iter().map(|t| t.1 * t.2).sum();
                        let na: f64 = pairs.iter().map(|t| t.1 * t.1).sum();
                        let nb: f64 = pairs.iter().map(|t| t.2 * t.2).sum();
                        d / (na * nb).sqrt()
                    }
                    Similarity::Msd => {
                        1.0 / (pairs.iter().map(|t| (t.1 - t.2).powi(2)).sum::<f64>() / k + 1.0)
                    }
                    Similarity::Pearson => {
                        let ma = pairs.iter().map(|t| t.1).sum::<f64>() / k;
                        let mb = pairs.iter().map(|t| t.2).sum::<f64>() / k;
                        let d: f64 = pairs.iter().map(|t| (t.1 - ma) * (t.2 - mb)).sum();
                        let va: f64 = pairs.iter().map(|t| (t.1 - ma).powi(2)).sum();
                        let vb: f64 = pairs.iter().map(|t| (t.2 - mb).powi(2)).sum();
                        if va * vb > 1e-12 {
                            d / (va * vb).sqrt()
                        } else {
                            0.0
                        }
                    }
                    Similarity::PearsonBaseline => {
                        let res = |x: usize, c: usize, r: f64| {
                            r - (mu + f64::from(by[c]) + f64::from(bx[x]))
                        };
                        let d: f64 = pairs
                            .iter()
                            .map(|t| res(a, t.0, t.1) * res(b, t.0, t.2))
                            .sum();
                        let va: f64 = pairs.iter().map(|t| res(a, t.0, t.1).powi(2)).sum();
                        let vb: f64 = pairs.iter().map(|t| res(b, t.0, t.2).powi(2)).sum();
                        d / (va * vb).sqrt() * (k - 1.0) / (k - 1.0 + f64::from(p.shrinkage))
                    }
                };
            }
        }
        sim
    }

    fn random_dataset(seed: u64, n_users: i64, n_items: i64, density: f32) -> Dataset {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let mut rows = Vec::new();
        for u in 0..n_users {
            for i in 0..n_items {
                if rng.random::<f32>() < density {
                    rows.push((u, i, rng.random_range(1..=5) as f32));
                }
            }
        }
        Dataset::from_triples(&rows).unwrap()
    }

    #[test]
    fn every_similarity_matches_the_dense_reference() {
        let ds = random_dataset(3, 40, 25, 0.3);
        for based_on in [Based::User, Based::Item] {
            for similarity in [
                Similarity::Cosine,
                Similarity::Pearson,
                Similarity::Msd,
                Similarity::PearsonBaseline,
            ] {
                let p = KnnParams {
                    based_on,
                    similarity,
                    shrinkage: 5.0,
                    max_neighbors: 1000,
                    ..KnnParams::default()
                };
                let m = KnnModel::train(&ds, &p).unwrap();
                let reference = reference_similarities(&ds, &p);
                for (x, ref_row) in reference.iter().enumerate() {
                    let got = m.neighbors(x as u32, usize::MAX);
                    let want: Vec<(usize, f64)> = ref_row
                        .iter()
                        .copied()
                        .enumerate()
                        .filter(|&(_, s)| s as f32 > 0.0)
                        .collect();
                    assert_eq!(got.len(), want.len(), "{based_on:?} {similarity:?} row {x}");
                    for (y, s) in want {
                        let g = got.iter().find(|t| t.0 as usize == y).map(|t| t.1);
                        assert!(
                            g.is_some_and(|g| close(g, s)),
                            "{based_on:?} {similarity:?} {x}-{y}: {g:?} vs {s}"
                        );
                    }
                    assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "not sorted");
                }
            }
        }
    }

    #[test]
    fn max_neighbors_keeps_the_best_and_training_is_thread_independent() {
        let ds = random_dataset(9, 60, 30, 0.4);
        let all = KnnParams {
            similarity: Similarity::Cosine,
            max_neighbors: 1000,
            ..KnnParams::default()
        };
        let few = KnnParams {
            k: 5,
            max_neighbors: 7,
            ..all.clone()
        };
        let full = KnnModel::train(&ds, &all).unwrap();
        let cut = KnnModel::train(&ds, &few).unwrap();
        for x in 0..ds.n_users() as u32 {
            assert_eq!(cut.neighbors(x, usize::MAX), full.neighbors(x, 7));
        }
        let pool = |n| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap()
        };
        let one = pool(1).install(|| KnnModel::train(&ds, &few).unwrap());
        let three = pool(3).install(|| KnnModel::train(&ds, &few).unwrap());
        assert_eq!(one.m.nb_idx, three.m.nb_idx);
        assert_eq!(one.m.nb_sim, three.m.nb_sim);
        assert_eq!(one.m.nb_ptr, three.m.nb_ptr);
    }

    #[test]
    fn min_k_fallback_and_unknowns() {
        let ds = textbook();
        let p = KnnParams {
            min_k: 3,
            ..params(Based::User, Similarity::Cosine, Centering::Mean)
        };
        let m = KnnModel::train(&ds, &p).unwrap();
        let (u1, c) = ix(&ds, 1, 30);
        assert_eq!(m.predict(u1, c), None, "two neighbours < min_k 3");
        // KNNWithMeans falls back to the user's mean.
        assert!(close(m.estimate(Some(u1), Some(c)), 1.75));
        assert!(close(m.estimate_ids(1, 30), 1.75));
        assert!(close(m.estimate_ids(99, 30), f64::from(ds.global_mean)));
        // Out-of-range indices never panic.
        assert_eq!(m.predict(999, c), None);
        assert_eq!(m.predict(u1, 999), None);
        assert!(m.neighbors(999, 5).is_empty());
        assert!(close(
            m.fallback(Some(999), Some(999)),
            f64::from(ds.global_mean)
        ));
        // A user who shares no item with anybody has no neighbours: fallback.
        let lonely = Dataset::from_triples(&[(1, 1, 3.0), (2, 2, 4.0)]).unwrap();
        let m3 = KnnModel::train(
            &lonely,
            &params(Based::User, Similarity::Msd, Centering::None),
        )
        .unwrap();
        let (u, i) = ix(&lonely, 1, 2);
        assert_eq!(m3.predict(u, i), None);
        assert!(close(m3.estimate(Some(u), Some(i)), 3.5));
    }

    #[test]
    fn params_validate_and_parse() {
        assert!(KnnParams::default().validate().is_ok());
        for bad in [
            KnnParams {
                k: 0,
                ..KnnParams::default()
            },
            KnnParams {
                min_k: 41,
                ..KnnParams::default()
            },
            KnnParams {
                max_neighbors: 10,
                ..KnnParams::default()
            },
            KnnParams {
                shrinkage: f32::NAN,
                ..KnnParams::default()
            },
            KnnParams {
                shrinkage: -1.0,
                ..KnnParams::default()
            },
        ] {
            let e = KnnModel::train(&textbook(), &bad).unwrap_err();
            assert!(matches!(e, CoreError::InvalidParameter(_)), "{e}");
        }
        let p: KnnParams = serde_json::from_str(
            r#"{"based_on":"item","similarity":"pearson_baseline","centering":"baseline","k":20}"#,
        )
        .unwrap();
        assert_eq!(p.based_on, Based::Item);
        assert_eq!(p.similarity, Similarity::PearsonBaseline);
        assert_eq!(p.centering, Centering::Baseline);
        assert_eq!((p.k, p.min_k, p.max_neighbors), (20, 1, 200));
        assert!(serde_json::from_str::<KnnParams>(r#"{"kk":3}"#).is_err());
    }

    #[test]
    fn serde_round_trip_and_corruption() {
        let ds = random_dataset(5, 30, 20, 0.3);
        for centering in [Centering::None, Centering::Mean, Centering::Baseline] {
            let p = KnnParams {
                based_on: Based::Item,
                similarity: Similarity::PearsonBaseline,
                centering,
                ..KnnParams::default()
            };
            let m = KnnModel::train(&ds, &p).unwrap();
            let bytes = postcard::to_allocvec(&m).unwrap();
            let back: KnnModel = postcard::from_bytes(&bytes).unwrap();
            assert_eq!(back.params(), &p);
            for u in 0..ds.n_users() as u32 {
                for i in 0..ds.n_items() as u32 {
                    assert_eq!(back.predict(u, i), m.predict(u, i));
                }
            }
            // Truncated bytes are an error, not a panic.
            assert!(postcard::from_bytes::<KnnModel>(&bytes[..bytes.len() / 2]).is_err());
        }
        // A neighbour index out of range is caught when decoding.
        let mut m = KnnModel::train(&ds, &KnnParams::default()).unwrap();
        m.m.nb_idx[0] = 10_000;
        let bytes = postcard::to_allocvec(&m).unwrap();
        assert!(postcard::from_bytes::<KnnModel>(&bytes).is_err());
    }

    // ---- MovieLens 100k benchmark (ignored; needs the data) ----

    fn read_ml(path: &std::path::Path) -> Vec<(i64, i64, f32)> {
        crate::cf::parse_tab_ratings(&std::fs::read_to_string(path).unwrap())
    }

    #[test]
    #[ignore]
    fn knn_ml100k() {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ml-100k");
        if !dir.join("u1.base").exists() {
            eprintln!(
                "SKIPPED knn_ml100k: {} not found",
                dir.join("u1.base").display()
            );
            return;
        }
        // More neighbours than any ML-100k dimension: keeps every positive similarity.
        let all_rows = 5000;
        let configs: Vec<(&str, KnnParams, f64)> = vec![
            (
                "KNNBasic (msd, user)",
                params(Based::User, Similarity::Msd, Centering::None),
                0.980,
            ),
            (
                "KNNWithMeans (msd, user)",
                params(Based::User, Similarity::Msd, Centering::Mean),
                0.951,
            ),
            (
                "KNNBaseline (msd, user)",
                params(Based::User, Similarity::Msd, Centering::Baseline),
                0.931,
            ),
            (
                "KNNBaseline (pearson_baseline, item)",
                params(
                    Based::Item,
                    Similarity::PearsonBaseline,
                    Centering::Baseline,
                ),
                f64::NAN,
            ),
            (
                "KNNBasic (cosine, item)",
                params(Based::Item, Similarity::Cosine, Centering::None),
                f64::NAN,
            ),
            (
                "KNNWithMeans (pearson, user)",
                params(Based::User, Similarity::Pearson, Centering::Mean),
                f64::NAN,
            ),
        ];
        let caps = [200usize, 500, all_rows];
        eprintln!("mean RMSE over u1..u5 (clipped to [1, 5]) by max_neighbors; train s = mean seconds at 200");
        eprintln!(
            "{:<38} {:>8} {:>8} {:>8} {:>9} {:>8}",
            "model", "200", "500", "all", "Surprise", "train s"
        );
        for (name, p, surprise) in configs {
            let mut sums = [0f64; 3];
            let mut secs = 0f64;
            for fold in 1..=5 {
                let train = read_ml(&dir.join(format!("u{fold}.base")));
                let test = read_ml(&dir.join(format!("u{fold}.test")));
                let mut b = DatasetBuilder::new().with_scale(1.0, 5.0);
                for &(u, i, r) in &train {
                    b.push(u, i, Some(r));
                }
                let ds = b.build().unwrap();
                for (slot, &max_nb) in caps.iter().enumerate() {
                    let t = std::time::Instant::now();
                    let m = KnnModel::train(
                        &ds,
                        &KnnParams {
                            max_neighbors: max_nb,
                            ..p.clone()
                        },
                    )
                    .unwrap();
                    if slot == 0 {
                        secs += t.elapsed().as_secs_f64();
                    }
                    let (lo, hi) = m.rating_range();
                    let pairs = test
                        .iter()
                        .map(|&(u, i, r)| (m.estimate_ids(u, i).clamp(lo, hi), r));
                    sums[slot] += crate::cf::metrics::rmse(pairs).unwrap() / 5.0;
                }
            }
            eprintln!(
                "{name:<38} {:>8.4} {:>8.4} {:>8.4} {:>9.3} {:>8.3}",
                sums[0],
                sums[1],
                sums[2],
                surprise,
                secs / 5.0
            );
        }
    }
}
