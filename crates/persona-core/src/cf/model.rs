//! A trained model as pg_persona stores it: ids, what each user has seen, the rating scale, and
//! the algorithm's parameters. Self-contained: prediction, top-N and similarity need nothing else.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::als::AlsFactors;
use super::baseline::Biases;
use super::coldstart::ColdStart;
use super::data::{Csr, IdMap};
use super::foldin::FoldCache;
use super::knn::{Based, KnnModel, StoredParts};
use super::mf::{dot, Factors};
use super::neighbours::Panels;
use super::Algorithm;
use crate::{CoreError, Result};

/// The bytes every stored model starts with, then a little-endian format version.
const MAGIC: &[u8; 4] = b"PPCF";
/// Bumped whenever the layout changes. Format 3 (0.3.0) is format 1 followed by the map from
/// item texts to factors ([`ColdStart`]), written only by models trained with item texts. Format
/// 2 (0.2.0) lets a k-NN body leave out the id maps and ratings its holder already stores;
/// format 1 (0.1.0) stores every part whole, and is still what models of the other algorithms
/// are written as (same layout, so 0.1.0 reads them). Other formats are refused with a hint to
/// retrain.
pub const FORMAT_VERSION: u32 = 3;
/// Formats this build reads.
const READABLE_FORMATS: [u32; 3] = [1, 2, 3];

/// The learned part of a model, by algorithm family.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Body {
    Baseline(Biases),
    Factors(Factors),
    Knn(Box<KnnModel>),
    Als(AlsFactors),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CfModel {
    pub algorithm: Algorithm,
    /// The effective hyper-parameters, as JSON.
    pub params: String,
    pub users: Arc<IdMap>,
    pub items: Arc<IdMap>,
    /// What each user rated in training (rows = users), for `exclude_seen`, plus the held-out
    /// rows once evaluated ([`CfModel::extend_seen`]). A k-NN body shares the id maps, and the
    /// ratings while they are the same.
    pub seen: Arc<Csr>,
    pub global_mean: f32,
    pub min_rating: f32,
    pub max_rating: f32,
    pub body: Body,
    /// What fold-ins compute once per decoded model (never stored).
    #[serde(skip)]
    pub(crate) fold_cache: FoldCache,
    /// The users' factors as [`Panels`] for similar-user lookups, built on first use (never
    /// stored; as large as the user factors).
    #[serde(skip)]
    pub(crate) user_panels: std::sync::OnceLock<Panels>,
    /// The map from item texts to factors, when the model was trained with item texts
    /// ([`super::coldstart`]); stored after the body (format 3).
    #[serde(skip)]
    pub cold_start: Option<ColdStart>,
}

impl CfModel {
    /// The users' latent factors (n_users × k, row-major, rows in the order of `users`) and k,
    /// for models that have them (SVD, SVD++, ALS).
    pub fn user_factors(&self) -> Option<(usize, &[f32])> {
        match &self.body {
            Body::Factors(f) => Some((f.k, &f.p)),
            Body::Als(a) => Some((a.k, &a.x)),
            Body::Knn(_) | Body::Baseline(_) => None,
        }
    }

    /// True for models whose scores rank items but are not ratings (implicit ALS).
    pub fn is_implicit(&self) -> bool {
        matches!(self.body, Body::Als(_))
    }

    /// The score of a (user, item) pair by dense index, unclipped; `None` means unknown.
    fn raw(&self, u: Option<u32>, i: Option<u32>) -> f32 {
        let mu = self.global_mean;
        match &self.body {
            Body::Baseline(b) => b.estimate(mu, u, i),
            Body::Factors(f) => f.predict(mu, u, i),
            Body::Knn(k) => k.estimate(u, i),
            Body::Als(a) => match (u, i) {
                (Some(u), Some(i)) => dot(a.user(u), a.item(i)),
                _ => 0.0,
            },
        }
    }

    /// The predicted rating, clipped to the training scale. Unknown users or items fall back to the
    /// global mean plus the biases that are known (k-NN: the same; implicit ALS: score 0).
    pub fn predict(&self, user: i64, item: i64) -> f32 {
        self.clip(self.raw(self.users.get(user), self.items.get(item)))
    }

    /// A score clipped to the training scale; implicit scores are not ratings and stay as they are.
    pub(crate) fn clip(&self, r: f32) -> f32 {
        if self.is_implicit() {
            r
        } else {
            r.clamp(self.min_rating, self.max_rating)
        }
    }

    /// The unclipped score of item `i` for a user the model does not know.
    pub(crate) fn raw_unknown_user(&self, i: Option<u32>) -> f32 {
        self.raw(None, i)
    }

    /// The `k` best items for `user` with their scores, best first. An unknown user gets the items
    /// with the highest baseline (popularity for ALS). Ties break by item id for stable output.
    pub fn recommend(&self, user: i64, k: usize, exclude_seen: bool) -> Vec<(i64, f32)> {
        let Some(u) = self.users.get(user) else {
            return self.recommend_unknown(k);
        };
        let n = self.items.len() as u32;
        let scores: Vec<f32> = match &self.body {
            Body::Factors(f) => {
                let pu = f.user(u);
                let base = self.global_mean + f.bu[u as usize];
                (0..n)
                    .map(|i| base + f.bi[i as usize] + dot(pu, f.item(i)))
                    .collect()
            }
            Body::Als(a) => {
                let xu = a.user(u);
                (0..n).map(|i| dot(xu, a.item(i))).collect()
            }
            _ => (0..n).map(|i| self.raw(Some(u), Some(i))).collect(),
        };
        let seen = if exclude_seen {
            self.seen.row(u).0
        } else {
            &[]
        };
        self.top_k(scores, seen, k)
    }

    /// What a user the model does not know is recommended: the items with the highest baseline,
    /// or the most popular ones for ALS.
    pub(crate) fn recommend_unknown(&self, k: usize) -> Vec<(i64, f32)> {
        let n = self.items.len();
        let scores: Vec<f32> = match &self.body {
            Body::Als(_) => {
                let mut counts = vec![0f32; n];
                for &i in &self.seen.idx {
                    counts[i as usize] += 1.0;
                }
                counts
            }
            _ => (0..n as u32).map(|i| self.raw(None, Some(i))).collect(),
        };
        self.top_k(scores, &[], k)
    }

    /// The `k` items with the highest `scores` (one per item index), leaving out `exclude`, best
    /// first with ties by item id, as `(item id, clipped score)`.
    pub(crate) fn top_k(&self, mut scores: Vec<f32>, exclude: &[u32], k: usize) -> Vec<(i64, f32)> {
        for &i in exclude {
            scores[i as usize] = f32::NEG_INFINITY;
        }
        let n = self.items.len() as u32;
        let mut idx: Vec<u32> = (0..n)
            .filter(|&i| scores[i as usize] > f32::NEG_INFINITY)
            .collect();
        let better = |a: &u32, b: &u32| {
            scores[*b as usize]
                .total_cmp(&scores[*a as usize])
                .then_with(|| self.items.id(*a).cmp(&self.items.id(*b)))
        };
        if k < idx.len() {
            idx.select_nth_unstable_by(k, better);
            idx.truncate(k);
        }
        idx.sort_unstable_by(better);
        idx.into_iter()
            .map(|i| (self.items.id(i), self.clip(scores[i as usize])))
            .collect()
    }

    /// The `k` items most similar to `item` (cosine of the item vectors for factor models, the
    /// stored neighbour lists for k-NN), most similar first. `None` for an unknown item.
    pub fn similar_items(&self, item: i64, k: usize) -> Option<Vec<(i64, f32)>> {
        let i = self.items.get(item)?;
        let sims = match &self.body {
            Body::Factors(f) => cosine_top(&f.q, f.k, i, k),
            Body::Als(a) => cosine_top(&a.y, a.k, i, k),
            Body::Knn(m) if m.params().based_on == Based::Item => m.neighbors(i, k),
            Body::Knn(_) => Vec::new(),
            Body::Baseline(_) => Vec::new(),
        };
        Some(
            sims.into_iter()
                .map(|(j, s)| (self.items.id(j), s))
                .collect(),
        )
    }

    /// The `k` users most similar to `user`, like [`Self::similar_items`].
    pub fn similar_users(&self, user: i64, k: usize) -> Option<Vec<(i64, f32)>> {
        let u = self.users.get(user)?;
        let sims = match &self.body {
            Body::Factors(f) => cosine_top(&f.p, f.k, u, k),
            Body::Als(a) => cosine_top(&a.x, a.k, u, k),
            Body::Knn(m) if m.params().based_on == Based::User => m.neighbors(u, k),
            Body::Knn(_) => Vec::new(),
            Body::Baseline(_) => Vec::new(),
        };
        Some(
            sims.into_iter()
                .map(|(v, s)| (self.users.id(v), s))
                .collect(),
        )
    }

    /// Whether every learned number is finite. A training that diverged (a learning rate far too
    /// large) leaves NaN or infinity, which would make every prediction NaN.
    pub fn is_finite(&self) -> bool {
        let finite = |v: &[f32]| v.iter().all(|x| x.is_finite());
        self.global_mean.is_finite()
            && match &self.body {
                Body::Baseline(b) => finite(&b.bu) && finite(&b.bi),
                Body::Factors(f) => finite(&f.bu) && finite(&f.bi) && finite(&f.p) && finite(&f.q),
                Body::Als(a) => finite(&a.x) && finite(&a.y),
                Body::Knn(m) => m.is_finite(),
            }
    }

    /// Each model user's mean prediction for `items` (their affinity for a campaign's items),
    /// in the model's user order, leaving out the users in `exclude`. Items the model does not
    /// know are left out of the mean, unless it knows none of them (then the predictions fall
    /// back to the baselines). Empty `items` give every user 0.
    pub fn mean_affinity(
        &self,
        items: &[i64],
        exclude: &std::collections::HashSet<i64>,
    ) -> Vec<(i64, f32)> {
        let known: Vec<i64> = items
            .iter()
            .copied()
            .filter(|&i| self.items.get(i).is_some())
            .collect();
        let items = if known.is_empty() { items } else { &known };
        let n = items.len().max(1) as f32;
        self.users
            .ids()
            .iter()
            .filter(|u| !exclude.contains(u))
            .map(|&u| {
                (
                    u,
                    items.iter().map(|&i| self.predict(u, i)).sum::<f32>() / n,
                )
            })
            .collect()
    }

    /// The `k` users of [`Self::mean_affinity`] with the highest affinity, best first (ties by
    /// user id): the audience of a campaign's next send.
    pub fn audience(
        &self,
        items: &[i64],
        exclude: &std::collections::HashSet<i64>,
        k: usize,
    ) -> Vec<(i64, f32)> {
        let mut scored = self.mean_affinity(items, exclude);
        scored.sort_unstable_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        scored.truncate(k);
        scored
    }

    /// Adds `(user, item)` rows to what users have seen (rows with an unknown user or item are
    /// ignored), so that recommendations also exclude interactions held out from training. Only
    /// which items were seen is kept, not the ratings ([`Csr::pattern`]).
    pub fn extend_seen(&mut self, rows: &[(i64, i64, f32)]) {
        let mut t: Vec<(u32, u32, f32)> = (0..self.users.len() as u32)
            .flat_map(|u| self.seen.row(u).0.iter().map(move |&i| (u, i, 1.0)))
            .collect();
        t.extend(
            rows.iter()
                .filter_map(|&(u, i, _)| Some((self.users.get(u)?, self.items.get(i)?, 1.0))),
        );
        // A new matrix: a k-NN body keeps the training ratings it shared until now.
        self.seen = Arc::new(Csr::from_triples(self.users.len(), t));
    }

    /// Whether `seen` holds rating values: only while a k-NN body shares it as its training
    /// ratings (it predicts from them). Every other model stores which items each user rated
    /// (to exclude them from recommendations), never the ratings.
    pub fn seen_holds_ratings(&self) -> bool {
        matches!(&self.body, Body::Knn(k) if Arc::ptr_eq(k.shared().2, &self.seen))
    }

    /// Heap bytes of the learned arrays, for the memory estimate and `cf_models`.
    pub fn approx_bytes(&self) -> usize {
        let body = match &self.body {
            Body::Baseline(b) => (b.bu.len() + b.bi.len()) * 4,
            Body::Factors(f) => (f.bu.len() + f.bi.len() + f.p.len() + f.q.len()) * 4,
            // Ratings shared with `seen` are counted once.
            Body::Knn(m) if Arc::ptr_eq(m.shared().2, &self.seen) => m.bytes() - self.seen.bytes(),
            Body::Knn(m) => m.bytes(),
            Body::Als(a) => (a.x.len() + a.y.len()) * 4,
        };
        body + self.seen.bytes() + (self.users.len() + self.items.len()) * 24
    }

    /// Encodes the model for storage: magic, format version, postcard body. A k-NN body leaves
    /// out the id maps and ratings this model already holds.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (empty_ids, empty_csr) = (IdMap::default(), Csr::default());
        let stored = StoredModel {
            algorithm: &self.algorithm,
            params: &self.params,
            users: &self.users,
            items: &self.items,
            seen: &self.seen,
            global_mean: self.global_mean,
            min_rating: self.min_rating,
            max_rating: self.max_rating,
            body: match &self.body {
                Body::Baseline(b) => StoredBody::Baseline(b),
                Body::Factors(f) => StoredBody::Factors(f),
                Body::Knn(k) => StoredBody::Knn(k.stored(
                    &self.users,
                    &self.items,
                    &self.seen,
                    &empty_ids,
                    &empty_csr,
                )),
                Body::Als(a) => StoredBody::Als(a),
            },
        };
        let version = match (&self.body, &self.cold_start) {
            (Body::Knn(_), _) => 2,
            (_, Some(_)) => 3,
            _ => 1,
        };
        let mut out = self.encode(version, &stored);
        if let Some(c) = &self.cold_start {
            postcard::to_io(c, &mut out).expect("writing to a Vec cannot fail");
        }
        out
    }

    fn encode(&self, version: u32, value: &impl Serialize) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.approx_bytes() + 64);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&version.to_le_bytes());
        postcard::to_io(value, &mut out).expect("writing to a Vec cannot fail");
        out
    }

    /// Decodes a stored model, refusing other formats with a message that says what to do.
    pub fn from_bytes(bytes: &[u8]) -> Result<CfModel> {
        if bytes.len() < 8 || &bytes[..4] != MAGIC {
            return Err(CoreError::CorruptModel(
                "the stored bytes are not a pg_persona model".into(),
            ));
        }
        let version = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        if !READABLE_FORMATS.contains(&version) {
            return Err(CoreError::CorruptModel(format!(
                "the model was stored in format {version}, this build reads formats {READABLE_FORMATS:?}; retrain it"
            )));
        }
        let (mut model, rest): (CfModel, &[u8]) = postcard::take_from_bytes(&bytes[8..])
            .map_err(|e| CoreError::CorruptModel(format!("cannot decode the stored model: {e}")))?;
        if version == 3 {
            let cold: ColdStart = postcard::from_bytes(rest).map_err(|e| {
                CoreError::CorruptModel(format!("cannot decode the stored cold-start map: {e}"))
            })?;
            model.cold_start = Some(cold);
        }
        let (users, items, seen) = (
            Arc::clone(&model.users),
            Arc::clone(&model.items),
            Arc::clone(&model.seen),
        );
        if let Body::Knn(k) = &mut model.body {
            k.attach(&users, &items, &seen)
                .map_err(|e| CoreError::CorruptModel(format!("the stored k-NN model: {e}")))?;
        }
        model.check().map_err(|e| {
            CoreError::CorruptModel(format!("the stored model is inconsistent: {e}"))
        })?;
        Ok(model)
    }

    /// Whether every array has the length its ids imply and every stored index is in range, so
    /// that no prediction can index out of bounds: bytes that decode are not necessarily bytes
    /// this crate wrote.
    fn check(&self) -> std::result::Result<(), String> {
        let (nu, ni) = (self.users.len(), self.items.len());
        self.users.check().map_err(|e| format!("users: {e}"))?;
        self.items.check().map_err(|e| format!("items: {e}"))?;
        if nu > u32::MAX as usize || ni > u32::MAX as usize {
            return Err("too many users or items".into());
        }
        self.seen.check(nu, ni).map_err(|e| format!("seen: {e}"))?;
        if let Some(c) = &self.cold_start {
            let out = match &self.body {
                Body::Factors(f) => f.k + 1,
                Body::Als(a) => a.k,
                _ => return Err("a cold-start map on a model without item factors".into()),
            };
            if c.out != out || (c.dim + 1).checked_mul(out) != Some(c.weights.len()) {
                return Err("the cold-start map's size does not match the model".into());
            }
        }
        let (lo, hi) = (self.min_rating, self.max_rating);
        if lo.is_nan() || hi.is_nan() || lo > hi {
            return Err("the rating range is empty".into());
        }
        let sized = |what: &str, len: usize, rows: usize, k: usize| {
            if rows.checked_mul(k) == Some(len) {
                Ok(())
            } else {
                Err(format!("{what} has {len} values, not {rows} x {k}"))
            }
        };
        match &self.body {
            Body::Baseline(b) => {
                sized("bu", b.bu.len(), nu, 1)?;
                sized("bi", b.bi.len(), ni, 1)
            }
            Body::Factors(f) => {
                if f.k == 0 {
                    return Err("no factors".into());
                }
                sized("bu", f.bu.len(), nu, 1)?;
                sized("bi", f.bi.len(), ni, 1)?;
                sized("p", f.p.len(), nu, f.k)?;
                sized("q", f.q.len(), ni, f.k)
            }
            Body::Als(a) => {
                if a.k == 0 {
                    return Err("no factors".into());
                }
                sized("x", a.x.len(), nu, a.k)?;
                sized("y", a.y.len(), ni, a.k)
            }
            // Checked by `attach`, against the same ids.
            Body::Knn(_) => Ok(()),
        }
    }
}

/// [`CfModel`] as encoded: the same fields in the same order, by reference, with a k-NN body
/// that may leave out what the model holds.
#[derive(Serialize)]
struct StoredModel<'a> {
    algorithm: &'a Algorithm,
    params: &'a str,
    users: &'a IdMap,
    items: &'a IdMap,
    seen: &'a Csr,
    global_mean: f32,
    min_rating: f32,
    max_rating: f32,
    body: StoredBody<'a>,
}

/// [`Body`] as encoded (same variants, same order).
#[derive(Serialize)]
enum StoredBody<'a> {
    Baseline(&'a Biases),
    Factors(&'a Factors),
    Knn(StoredParts<'a>),
    Als(&'a AlsFactors),
}

/// Cosine similarity of row `r` of a row-major `n × k` matrix with every other row; the best `k_top`.
fn cosine_top(m: &[f32], k: usize, r: u32, k_top: usize) -> Vec<(u32, f32)> {
    let n = m.len() / k;
    let row = |i: usize| &m[i * k..(i + 1) * k];
    let norm = |v: &[f32]| dot(v, v).sqrt();
    let a = row(r as usize);
    let na = norm(a);
    if na == 0.0 {
        return Vec::new();
    }
    let mut sims: Vec<(u32, f32)> = (0..n)
        .filter(|&j| j != r as usize)
        .filter_map(|j| {
            let b = row(j);
            let nb = norm(b);
            (nb > 0.0).then(|| (j as u32, dot(a, b) / (na * nb)))
        })
        .collect();
    let cmp = |x: &(u32, f32), y: &(u32, f32)| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0));
    if k_top < sims.len() {
        sims.select_nth_unstable_by(k_top, cmp);
        sims.truncate(k_top);
    }
    sims.sort_unstable_by(cmp);
    sims
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    fn fit(d: &Dataset, algorithm: Algorithm, options: &str) -> CfModel {
        train(d, algorithm, options, &Threads::current(), &mut NoMonitor).unwrap()
    }

    fn small() -> Dataset {
        let mut rows = Vec::new();
        for u in 1..=30i64 {
            for i in 1..=12i64 {
                if (u + i) % 3 != 0 {
                    rows.push((u, i, (1 + (u * i) % 5) as f32));
                }
            }
        }
        Dataset::from_triples(&rows).unwrap()
    }

    /// What a stored model reveals of its training ratings: a k-NN model predicts from them and
    /// keeps them; every other model keeps which items each user rated, with no values, stored
    /// and in memory, also after held-out rows are added.
    #[test]
    fn models_keep_only_the_ratings_they_predict_from() {
        let d = small();
        let distinct = |c: &Csr| {
            let mut v: Vec<u32> = c.val.iter().map(|x| x.to_bits()).collect();
            v.sort_unstable();
            v.dedup();
            v.len()
        };
        assert!(
            distinct(&d.by_user) > 1,
            "the data has several rating values"
        );
        for algo in [
            Algorithm::Baseline,
            Algorithm::Svd,
            Algorithm::Svdpp,
            Algorithm::Als,
        ] {
            let mut m = fit(&d, algo, "{}");
            for _ in 0..2 {
                assert!(!m.seen_holds_ratings(), "{algo}");
                assert_eq!(m.seen.idx, d.by_user.idx, "{algo}: which items, per user");
                assert!(m.seen.val.iter().all(|&v| v == 1.0), "{algo}: no ratings");
                let back = CfModel::from_bytes(&m.to_bytes()).unwrap();
                assert!(
                    back.seen.val.iter().all(|&v| v == 1.0),
                    "{algo}: none stored"
                );
                assert_eq!(all_predictions(&back), all_predictions(&m));
                m.extend_seen(&[(1, 3, 5.0), (2, 3, 1.0)]);
            }
        }
        let mut m = knn(&d);
        assert!(m.seen_holds_ratings());
        assert_eq!(*m.seen, d.by_user, "k-NN predicts from the ratings");
        m.extend_seen(&[(1, 3, 5.0), (2, 3, 1.0)]);
        assert!(!m.seen_holds_ratings());
        assert!(
            m.seen.val.iter().all(|&v| v == 1.0),
            "held-out ratings are not kept"
        );
        let back = CfModel::from_bytes(&m.to_bytes()).unwrap();
        assert!(back.seen.val.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn recommend_excludes_seen_and_is_sorted() {
        let d = small();
        let m = fit(&d, Algorithm::Svd, "{}");
        let recs = m.recommend(1, 100, true);
        let seen: Vec<i64> = d
            .by_user
            .row(d.users.get(1).unwrap())
            .0
            .iter()
            .map(|&i| d.items.id(i))
            .collect();
        assert_eq!(recs.len(), 12 - seen.len());
        assert!(recs.iter().all(|(i, _)| !seen.contains(i)));
        assert!(recs.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(m.recommend(1, 100, false).len(), 12);
        assert_eq!(m.recommend(1, 2, true).len(), 2);
    }

    #[test]
    fn mean_affinity_averages_known_items_and_audience_ranks_it() {
        let d = small();
        let m = fit(&d, Algorithm::Svd, "{}");
        let exclude: std::collections::HashSet<i64> = [3, 4].into();
        // Item 999 is unknown: left out of the mean while a known item remains.
        let got = m.mean_affinity(&[2, 5, 999], &exclude);
        assert_eq!(got.len(), 28);
        assert!(got.iter().all(|(u, _)| !exclude.contains(u)));
        for &(u, a) in &got {
            let want = (m.predict(u, 2) + m.predict(u, 5)) / 2.0;
            assert!((a - want).abs() < 1e-6, "user {u}: {a} vs {want}");
        }
        // Only unknown items: the baseline fallback of each user, averaged.
        let unknown = m.mean_affinity(&[998, 999], &Default::default());
        for &(u, a) in &unknown {
            let want = (m.predict(u, 998) + m.predict(u, 999)) / 2.0;
            assert!((a - want).abs() < 1e-6);
        }
        let top = m.audience(&[2, 5, 999], &exclude, 5);
        let mut sorted = got.clone();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        assert_eq!(top, sorted[..5].to_vec());
        assert_eq!(m.audience(&[2], &exclude, 1000).len(), 28);
    }

    #[test]
    fn a_diverged_training_is_an_error_not_a_model_of_nans() {
        let d = small();
        let e = train(
            &d,
            Algorithm::Svd,
            r#"{"lr": 1000}"#,
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap_err();
        assert!(
            matches!(&e, crate::CoreError::InvalidParameter(m) if m.contains("diverged")),
            "{e:?}"
        );
        // Sane settings give a finite model.
        for (name, _) in crate::cf::ALGORITHMS {
            let algo: Algorithm = name.parse().unwrap();
            assert!(fit(&d, algo, "{}").is_finite(), "{name}");
        }
    }

    #[test]
    fn memory_estimates_saturate_instead_of_overflowing() {
        let d = small();
        let huge = r#"{"max_neighbors": 2305843009213693952}"#;
        let got = crate::cf::estimate_bytes(&d, Algorithm::KnnItem, huge).unwrap();
        assert_eq!(got, usize::MAX);
        let sane = crate::cf::estimate_bytes(&d, Algorithm::KnnItem, "{}").unwrap();
        assert!(sane > 0 && sane < 1 << 30, "{sane}");
    }

    /// The bound `persona.max_training_memory` checks the store against must hold for every
    /// algorithm, on a dense matrix and on few ratings over a large catalogue (where the store is
    /// the larger peak), and must not be so loose that it refuses what fits.
    #[test]
    fn the_model_bytes_estimate_bounds_the_stored_model() {
        let mut sparse = Vec::new();
        for n in 0..6000i64 {
            // 6,000 ratings over up to 3,000 users x 2,000 items, ids far apart (long varints).
            sparse.push((
                (n * 7919) % 3000 * 1_000_003,
                (n * 104_729) % 2000 - 1000,
                (1 + n % 5) as f32,
            ));
        }
        sparse.sort_by_key(|&(u, i, _)| (u, i));
        sparse.dedup_by_key(|&mut (u, i, _)| (u, i));
        let sparse = Dataset::from_triples(&sparse).unwrap();
        let threads = Threads::new(2).unwrap();
        for d in [small(), sparse] {
            for (name, _) in crate::cf::ALGORITHMS {
                let algo: Algorithm = name.parse().unwrap();
                let mut model = train(&d, algo, "{}", &threads, &mut NoMonitor).unwrap();
                let r = d.n_ratings();
                let actual = model.to_bytes().len();
                let bound = crate::cf::estimate_model_bytes(&d, algo, "{}", r).unwrap();
                assert!(bound >= actual, "{algo}: bound {bound} < {actual} bytes");
                assert!(
                    bound <= 4 * actual + (64 << 10),
                    "{algo}: bound {bound} for {actual} bytes"
                );
                let peak = crate::cf::estimate_peak_bytes(&d, algo, "{}", r).unwrap();
                assert!(
                    peak >= (16 << 20) + 3 * actual,
                    "{algo}: peak {peak} for {actual} bytes"
                );
                // Rows held out for the report join the ratings seen (a k-NN model then stores
                // the ratings it predicts from apart from them): a third more rows.
                let (users, items) = (model.users.clone(), model.items.clone());
                let held: Vec<(i64, i64, f32)> = (0..r / 3)
                    .map(|n| {
                        let (u, i) = (n % users.len(), (n / 7) % items.len());
                        (users.id(u as u32), items.id(i as u32), 3.0)
                    })
                    .collect();
                model.extend_seen(&held);
                let actual = model.to_bytes().len();
                let bound =
                    crate::cf::estimate_model_bytes(&d, algo, "{}", r + held.len()).unwrap();
                assert!(
                    bound >= actual,
                    "{algo}, held-out rows seen: {bound} < {actual} bytes"
                );
            }
        }
    }

    /// Says "interrupted" from its first poll on, and counts the polls.
    struct CancelAtOnce(usize);

    impl crate::control::Monitor for CancelAtOnce {
        fn step(&mut self, _: &crate::control::Progress) -> crate::Result<()> {
            Ok(())
        }
        fn interrupted(&mut self) -> bool {
            self.0 += 1;
            true
        }
    }

    #[test]
    fn long_parallel_trainings_stop_soon_after_a_cancel() {
        // 8000 users x 300 items at 30 %: uncancelled, k-NN similarities take ~5 s, 1000
        // baseline sweeps ~1.2 s and 1000 ALS iterations ~20 min on 2 threads (release build);
        // cancelled at once, each must stop within a few rows or one sweep.
        let mut rows = Vec::new();
        for u in 0..8000i64 {
            for i in 0..300i64 {
                if (u * 7 + i * 13) % 10 < 3 {
                    rows.push((u, i, (1 + (u + i) % 5) as f32));
                }
            }
        }
        let d = Dataset::from_triples(&rows).unwrap();
        let threads = Threads::new(2).unwrap();
        for (algo, options) in [
            // Cosine without centring: no baselines, the similarity walk alone.
            (
                Algorithm::KnnUser,
                r#"{"similarity": "cosine", "centering": "none", "max_neighbors": 200}"#,
            ),
            (
                Algorithm::KnnItem,
                r#"{"similarity": "pearson_baseline", "max_neighbors": 200}"#,
            ),
            (Algorithm::Baseline, r#"{"epochs": 1000}"#),
            (Algorithm::Als, r#"{"factors": 64, "iterations": 1000}"#),
        ] {
            let mut monitor = CancelAtOnce(0);
            let started = std::time::Instant::now();
            let got = train(&d, algo, options, &threads, &mut monitor);
            let took = started.elapsed();
            assert_eq!(got.unwrap_err(), crate::CoreError::Cancelled, "{algo:?}");
            assert!(monitor.0 >= 1, "{algo:?} never asked the monitor");
            assert!(
                took < std::time::Duration::from_millis(250),
                "{algo:?} took {took:?}"
            );
        }
    }

    #[test]
    fn extend_seen_hides_held_out_items() {
        let d = small();
        let mut m = fit(&d, Algorithm::Baseline, "{}");
        let top = m.recommend(1, 1, true)[0].0;
        m.extend_seen(&[(1, top, 4.0), (999, 1, 3.0)]); // unknown user ignored
        assert!(m.recommend(1, 100, true).iter().all(|(i, _)| *i != top));
    }

    #[test]
    fn predictions_are_clipped_and_round_trip_through_bytes() {
        let d = small();
        let m = fit(&d, Algorithm::Svdpp, "{}");
        for u in 1..=30 {
            for i in 1..=12 {
                let p = m.predict(u, i);
                assert!((d.min_rating..=d.max_rating).contains(&p));
            }
        }
        let back = CfModel::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(back.predict(3, 4), m.predict(3, 4));
        assert_eq!(back.recommend(2, 5, true), m.recommend(2, 5, true));
        assert!(matches!(
            CfModel::from_bytes(b"garbage"),
            Err(CoreError::CorruptModel(_))
        ));
        let mut bytes = m.to_bytes();
        bytes[4] = 99;
        assert!(CfModel::from_bytes(&bytes)
            .unwrap_err()
            .to_string()
            .contains("retrain"));
    }

    fn knn(d: &Dataset) -> CfModel {
        fit(d, Algorithm::KnnItem, r#"{"centering": "baseline"}"#)
    }

    fn all_predictions(m: &CfModel) -> Vec<f32> {
        (1..=31)
            .flat_map(|u| (1..=13).map(move |i| (u, i)))
            .map(|(u, i)| m.predict(u, i))
            .collect()
    }

    /// The encoding mirrors the derived one field for field: for a model without a k-NN body
    /// the bytes are exactly postcard's of the struct.
    #[test]
    fn stored_layout_is_the_struct_layout() {
        let m = fit(&small(), Algorithm::Svd, "{}");
        let derived = postcard::to_allocvec(&m).unwrap();
        assert_eq!(&m.to_bytes()[8..], derived.as_slice());
        // ... so it is written as format 1, which 0.1.0 reads.
        assert_eq!(m.to_bytes()[4..8], 1u32.to_le_bytes());
        assert_eq!(knn(&small()).to_bytes()[4..8], 2u32.to_le_bytes());
    }

    /// A k-NN model stores its id maps and ratings once, shares them in memory after loading,
    /// and predicts exactly as before; models stored whole by 0.1.0 (format 1) still load.
    #[test]
    fn knn_shares_what_its_holder_stores() {
        let d = small();
        let m = knn(&d);
        let Body::Knn(k) = &m.body else {
            unreachable!()
        };
        let (u, i, r) = k.shared();
        assert!(Arc::ptr_eq(u, &m.users) && Arc::ptr_eq(i, &m.items) && Arc::ptr_eq(r, &m.seen));

        let whole = m.encode(1, &m); // how 0.1.0 stored it
        let shared = m.to_bytes();
        // Saved: the encoded ratings and id maps, less the placeholders (5 bytes: two empty
        // id maps, one matrix of three empty vectors).
        let saved = whole.len() - shared.len();
        let copies = postcard::to_allocvec(&*m.seen).unwrap().len()
            + postcard::to_allocvec(&*m.users).unwrap().len()
            + postcard::to_allocvec(&*m.items).unwrap().len();
        assert!(
            saved <= copies && saved + 8 >= copies,
            "saved {saved} of {} bytes; the copies take {copies}",
            whole.len()
        );
        for bytes in [&shared, &whole] {
            let back = CfModel::from_bytes(bytes).unwrap();
            assert_eq!(all_predictions(&back), all_predictions(&m));
            assert_eq!(back.similar_items(3, 4), m.similar_items(3, 4));
            let Body::Knn(k) = &back.body else {
                unreachable!()
            };
            let (u, i, r) = k.shared();
            assert!(Arc::ptr_eq(u, &back.users) && Arc::ptr_eq(i, &back.items));
            assert!(
                Arc::ptr_eq(r, &back.seen),
                "one copy of the ratings in memory"
            );
        }

        // Once held-out rows are seen, the model keeps predicting from its training ratings.
        let mut m = m;
        let before = all_predictions(&m);
        m.extend_seen(&[(1, 3, 5.0), (2, 3, 1.0), (3, 6, 4.0)]);
        assert_eq!(all_predictions(&m), before);
        let back = CfModel::from_bytes(&m.to_bytes()).unwrap();
        assert_eq!(all_predictions(&back), before);
        assert_eq!(back.seen, m.seen);
        let Body::Knn(k) = &back.body else {
            unreachable!()
        };
        assert!(!Arc::ptr_eq(k.shared().2, &back.seen));
        assert!(Arc::ptr_eq(k.shared().0, &back.users));

        // A stored body that left out its ratings cannot be read without them.
        let mut cut = m.to_bytes();
        cut.truncate(cut.len() / 2);
        assert!(CfModel::from_bytes(&cut).is_err());
    }

    #[test]
    fn similar_items_by_factor_cosine() {
        let d = small();
        let m = fit(&d, Algorithm::Svd, "{}");
        let s = m.similar_items(1, 5).unwrap();
        assert_eq!(s.len(), 5);
        assert!(s
            .iter()
            .all(|(i, c)| *i != 1 && (-1.0..=1.0001).contains(c)));
        assert!(m.similar_items(4242, 5).is_none());
        assert_eq!(m.similar_users(1, 3).unwrap().len(), 3);
    }
}
