//! Biased matrix factorisation trained by stochastic gradient descent (Funk's "SVD" as Koren,
//! Bell and Volinsky 2009 describe it), and SVD++ (Koren 2008), which adds an implicit term from
//! *which* items a user rated: r̂(u,i) = μ + b_u + b_i + q_iᵀ(p_u + |N(u)|^-½ Σ_{j∈N(u)} y_j).
//!
//! SVD++ is trained user by user: the implicit sum is computed once per user and the gradient for
//! the y_j is accumulated over that user's ratings and applied once, which makes an epoch cost
//! O(|R|·k) instead of Surprise's O(Σ_u |R_u|²·k), the main reason it trains an order of magnitude faster.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use super::data::Dataset;
use crate::control::{Monitor, Progress};
use crate::{CoreError, Result};

/// Hyper-parameters of [`train_svd`] and [`train_svdpp`].
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct MfParams {
    /// Latent dimensions k.
    pub factors: usize,
    /// Passes over the ratings.
    pub epochs: usize,
    /// Learning rate of the factors.
    pub lr: f32,
    /// L2 regularisation of the factors.
    pub reg: f32,
    /// Learning rate of the biases.
    pub lr_bias: f32,
    /// L2 regularisation of the biases.
    pub reg_bias: f32,
    /// Learning rate of the implicit factors y_j (SVD++ only).
    pub lr_implicit: f32,
    /// L2 regularisation of the implicit factors y_j (SVD++ only).
    pub reg_implicit: f32,
    /// Standard deviation of the normal initialisation of the factors.
    pub init_std: f32,
    /// Multiply every learning rate by this after each epoch.
    pub lr_decay: f32,
    /// Seed of the initialisation and of the per-epoch shuffle.
    pub seed: u64,
}

impl MfParams {
    /// pg_persona's `svd` defaults: 20 factors, 25 epochs, lr 0.01, reg 0.07 (RMSE 0.917 on
    /// ml-100k u1..u5 against 0.938 with Surprise's defaults of 100 factors, 20 epochs, lr 0.005,
    /// reg 0.02, which [`MfParams::surprise_svd`] reproduces).
    pub fn svd() -> MfParams {
        MfParams {
            factors: 20,
            epochs: 25,
            lr: 0.01,
            reg: 0.07,
            lr_bias: 0.005,
            reg_bias: 0.02,
            lr_implicit: 0.005,
            reg_implicit: 0.02,
            init_std: 0.05,
            lr_decay: 1.0,
            seed: 42,
        }
    }
    /// Surprise's `SVD` defaults.
    pub fn surprise_svd() -> MfParams {
        MfParams {
            factors: 100,
            epochs: 20,
            lr: 0.005,
            reg: 0.02,
            lr_bias: 0.005,
            reg_bias: 0.02,
            lr_implicit: 0.005,
            reg_implicit: 0.02,
            init_std: 0.1,
            lr_decay: 1.0,
            seed: 42,
        }
    }
    /// pg_persona's `svdpp` defaults, the default algorithm: 50 factors, 30 epochs, learning rate
    /// 0.012 decaying by 0.93 per epoch, strong regularisation (RMSE 0.902 on ml-100k u1..u5).
    pub fn svdpp() -> MfParams {
        MfParams {
            factors: 50,
            epochs: 30,
            lr: 0.012,
            reg: 0.1,
            lr_bias: 0.01,
            reg_bias: 0.05,
            lr_implicit: 0.01,
            reg_implicit: 0.2,
            init_std: 0.05,
            lr_decay: 0.93,
            seed: 42,
        }
    }
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(CoreError::InvalidParameter(what.to_string()));
        if self.factors == 0 || self.factors > 4096 {
            return bad("\"factors\" must be between 1 and 4096");
        }
        if self.epochs == 0 || self.epochs > 10_000 {
            return bad("\"epochs\" must be between 1 and 10000");
        }
        for (name, v) in [
            ("lr", self.lr),
            ("reg", self.reg),
            ("lr_bias", self.lr_bias),
            ("reg_bias", self.reg_bias),
            ("lr_implicit", self.lr_implicit),
            ("reg_implicit", self.reg_implicit),
            ("init_std", self.init_std),
            ("lr_decay", self.lr_decay),
        ] {
            if !v.is_finite() || v < 0.0 {
                return bad(&format!("\"{name}\" must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

impl Default for MfParams {
    fn default() -> Self {
        Self::svd()
    }
}

/// Trained factors. `p` holds the *effective* user vectors (for SVD++ the implicit term is folded
/// in at the end of training), so prediction is the same dot product for both models.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Factors {
    pub k: usize,
    pub bu: Vec<f32>,
    pub bi: Vec<f32>,
    /// n_users × k, row-major.
    pub p: Vec<f32>,
    /// n_items × k, row-major.
    pub q: Vec<f32>,
}

impl Factors {
    #[inline]
    pub fn user(&self, u: u32) -> &[f32] {
        &self.p[u as usize * self.k..(u as usize + 1) * self.k]
    }
    #[inline]
    pub fn item(&self, i: u32) -> &[f32] {
        &self.q[i as usize * self.k..(i as usize + 1) * self.k]
    }
    /// μ + b_u + b_i + q_iᵀp_u, with the known parts only when the user or item is unknown.
    #[inline]
    pub fn predict(&self, mu: f32, u: Option<u32>, i: Option<u32>) -> f32 {
        let mut r = mu;
        if let Some(u) = u {
            r += self.bu[u as usize];
        }
        if let Some(i) = i {
            r += self.bi[i as usize];
        }
        if let (Some(u), Some(i)) = (u, i) {
            r += dot(self.user(u), self.item(i));
        }
        r
    }
}

/// Dot product written so the compiler vectorises it: eight independent accumulators over
/// fixed-size chunks (arrays, so no bounds check stays in the loop), summed in lane order, then
/// the tail. The order of the additions is fixed, so the result does not depend on the SIMD
/// width the compiler chose.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        let x: &[f32; 8] = x.try_into().expect("chunks of 8");
        let y: &[f32; 8] = y.try_into().expect("chunks of 8");
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ta.iter().zip(tb) {
        s += x * y;
    }
    s
}

fn init(n: usize, k: usize, std: f32, rng: &mut Pcg64Mcg) -> Vec<f32> {
    if std == 0.0 {
        return vec![0.0; n * k];
    }
    let normal = Normal::new(0.0f32, std).expect("std is finite and >= 0");
    (0..n * k).map(|_| normal.sample(rng)).collect()
}

/// Bytes of factors one block of [`Grid`] spans on each side: a cell's p_u and q_i (2 MB) stay
/// in the L2 and L3 caches while its ratings are visited. Chosen by measurement: on the 25M
/// synthetic ratings (examples/scale, 20 factors, this VM's AMD EPYC with 1 MB of L2 per core)
/// svd took 41.7 s with 64 KB blocks, 25.0 s with 256 KB, 19.0-19.6 s with 1 MB and 19.9-20.2 s
/// with 2-4 MB; smaller blocks split each user's ratings into more, shorter segments, each
/// paying the per-segment shuffle and user-row load.
const BLOCK_BYTES: usize = 1024 * 1024;

/// The ratings laid out in a grid for cache-friendly SGD, as LIBMF does (Zhuang, Chin, Juan and
/// Lin 2013): users and items are split into blocks of consecutive indices whose factors fit
/// [`BLOCK_BYTES`]; a cell (user block × item block) holds its ratings contiguously, as segments
/// (one user's ratings in the cell). A cell's factors and ratings then fit in L2 together, where
/// the rows of `d.by_user` would be read from scattered places. Eight bytes per rating and twelve
/// per segment (at most one per rating).
struct Grid {
    /// Item and rating, cell after cell, each cell's segments in user order.
    items: Vec<u32>,
    ratings: Vec<f32>,
    /// `[user, start, end)` ranges of `items`/`ratings`, cell after cell.
    segments: Vec<[u32; 3]>,
    /// The cells, as ranges of `segments`.
    cells: Vec<std::ops::Range<usize>>,
}

/// The peak bytes [`Grid::new`] allocates for `d` with factors of `factors` floats (for the
/// memory estimate): the ratings copied (8 bytes each) and, while it is built, 16 + 12 bytes per
/// segment.
pub fn grid_bytes(d: &Dataset, factors: usize) -> usize {
    let pieces = row_pieces(d, rows_per_block(factors)).count();
    d.n_ratings()
        .saturating_mul(8)
        .saturating_add(pieces.saturating_mul(28))
}

/// Rows (users or items) per block of a [`Grid`] for factors of `factors` floats plus a bias.
fn rows_per_block(factors: usize) -> usize {
    // `factors` comes from the user before any bound is checked (the memory estimate runs
    // first): saturate, or `usize::MAX` factors wrap to a zero divisor.
    (BLOCK_BYTES / factors.saturating_add(1).saturating_mul(4)).max(1)
}

/// Each user's row of `d.by_user` split at the item-block boundaries, as (item block, user,
/// start, end): a row is sorted by item, so one user's ratings in one block are contiguous.
fn row_pieces(d: &Dataset, per_block: usize) -> impl Iterator<Item = (u32, u32, u32, u32)> + '_ {
    let (ptr, idx) = (&d.by_user.ptr, &d.by_user.idx);
    (0..d.n_users()).flat_map(move |u| {
        let end = ptr[u + 1] as usize;
        let mut s = ptr[u] as usize;
        std::iter::from_fn(move || {
            if s >= end {
                return None;
            }
            let block = idx[s] as usize / per_block;
            let mut e = s + 1;
            while e < end && idx[e] as usize / per_block == block {
                e += 1;
            }
            let piece = (block as u32, u as u32, s as u32, e as u32);
            s = e;
            Some(piece)
        })
    })
}

impl Grid {
    /// The grid of `d` for factors of `factors` floats (plus a bias) per row.
    fn new(d: &Dataset, factors: usize) -> Grid {
        let per_block = rows_per_block(factors);
        let (idx, val) = (&d.by_user.idx, &d.by_user.val);
        // The pieces sorted into cell order (stable: users ascending within a cell).
        let mut pieces: Vec<(u32, u32, u32, u32)> = row_pieces(d, per_block).collect();
        let user_blocks = d.n_users().div_ceil(per_block).max(1);
        pieces.sort_by_key(|&(b, u, _, _)| (b as usize * user_blocks + u as usize / per_block, u));
        let mut g = Grid {
            items: Vec::with_capacity(d.n_ratings()),
            ratings: Vec::with_capacity(d.n_ratings()),
            segments: Vec::with_capacity(pieces.len()),
            cells: Vec::new(),
        };
        let mut cell = None;
        for (b, u, s, e) in pieces {
            let key = (b, u as usize / per_block);
            if cell != Some(key) {
                cell = Some(key);
                g.cells.push(g.segments.len()..g.segments.len());
            }
            let start = g.items.len() as u32;
            g.items.extend_from_slice(&idx[s as usize..e as usize]);
            g.ratings.extend_from_slice(&val[s as usize..e as usize]);
            g.segments.push([u, start, g.items.len() as u32]);
            g.cells.last_mut().expect("a cell was opened").end += 1;
        }
        g
    }
}

/// The SGD trainers run on the caller's thread: they ask [`Monitor::interrupted`] every this
/// many ratings (a few milliseconds), not only between epochs, which take seconds on millions
/// of ratings.
const CHECK_EVERY_RATINGS: usize = 16_384;

/// Biased MF by SGD in a cache-friendly order: every epoch visits the cells of a [`Grid`] in a
/// fresh random order, in each cell its users in a fresh random order, and each user's ratings
/// there in a fresh random order. The textbook order (one global shuffle of the ratings per
/// epoch) costs a cache miss per rating for the shuffle and two more for a random p_u and q_i:
/// at 25 million ratings (MovieLens 25M's shape) it took 132 s against 65 s in user order and
/// 38-44 s on the grid (24 s with the prefetching below), and it made time grow faster than the
/// ratings once the factors outgrew the caches. When the factors fit one cell (ml-100k) the
/// order is plain user order; the accuracy on ml-100k is unchanged (RMSE 0.9164 against 0.9165
/// shuffled, README).
pub fn train_svd(d: &Dataset, p: &MfParams, monitor: &mut dyn Monitor) -> Result<Factors> {
    p.validate()?;
    let k = p.factors;
    let mut rng = Pcg64Mcg::seed_from_u64(p.seed);
    let mut f = Factors {
        k,
        bu: vec![0.0; d.n_users()],
        bi: vec![0.0; d.n_items()],
        p: init(d.n_users(), k, p.init_std, &mut rng),
        q: init(d.n_items(), k, p.init_std, &mut rng),
    };
    let mu = d.global_mean;
    let mut grid = Grid::new(d, k);
    let mut row: Vec<(u32, f32)> = Vec::new();
    let (mut lr, mut lr_b) = (p.lr, p.lr_bias);
    for epoch in 0..p.epochs {
        grid.cells.shuffle(&mut rng);
        let mut sse = 0f64;
        let mut since_check = 0usize;
        for range in &grid.cells {
            let cell = &mut grid.segments[range.clone()];
            cell.shuffle(&mut rng);
            for (n, &[u, start, end]) in cell.iter().enumerate() {
                if let Some(&[next, ..]) = cell.get(n + 1) {
                    crate::simd::prefetch(&f.p[next as usize * k..(next as usize + 1) * k]);
                }
                let (start, end) = (start as usize, end as usize);
                since_check += end - start;
                if since_check >= CHECK_EVERY_RATINGS {
                    since_check = 0;
                    if monitor.interrupted() {
                        return Err(CoreError::Cancelled);
                    }
                }
                row.clear();
                row.extend(
                    grid.items[start..end]
                        .iter()
                        .copied()
                        .zip(grid.ratings[start..end].iter().copied()),
                );
                row.shuffle(&mut rng);
                let u = u as usize;
                let pu = &mut f.p[u * k..(u + 1) * k];
                for (n, &(i, r)) in row.iter().enumerate() {
                    if let Some(&(ahead, _)) = row.get(n + AHEAD) {
                        crate::simd::prefetch(&f.q[ahead as usize * k..(ahead as usize + 1) * k]);
                    }
                    let i = i as usize;
                    let qi = &mut f.q[i * k..(i + 1) * k];
                    let e = r - (mu + f.bu[u] + f.bi[i] + dot(pu, qi));
                    sse += (e * e) as f64;
                    f.bu[u] += lr_b * (e - p.reg_bias * f.bu[u]);
                    f.bi[i] += lr_b * (e - p.reg_bias * f.bi[i]);
                    for (pf, qf) in pu.iter_mut().zip(qi.iter_mut()) {
                        let (a, b) = (*pf, *qf);
                        *pf += lr * (e * b - p.reg * a);
                        *qf += lr * (e * a - p.reg * b);
                    }
                }
            }
        }
        lr *= p.lr_decay;
        lr_b *= p.lr_decay;
        monitor.step(&Progress::epoch(
            "sgd",
            epoch + 1,
            p.epochs,
            Some((sse / d.n_ratings() as f64).sqrt()),
        ))?;
    }
    Ok(f)
}

/// SVD++ by SGD, user by user (users shuffled, each user's ratings shuffled, every epoch).
pub fn train_svdpp(d: &Dataset, p: &MfParams, monitor: &mut dyn Monitor) -> Result<Factors> {
    p.validate()?;
    let k = p.factors;
    let mut rng = Pcg64Mcg::seed_from_u64(p.seed);
    let mut f = Factors {
        k,
        bu: vec![0.0; d.n_users()],
        bi: vec![0.0; d.n_items()],
        p: init(d.n_users(), k, p.init_std, &mut rng),
        q: init(d.n_items(), k, p.init_std, &mut rng),
    };
    let mut y = init(d.n_items(), k, p.init_std, &mut rng);
    let mu = d.global_mean;
    let mut users: Vec<u32> = (0..d.n_users() as u32).collect();
    let mut row: Vec<(u32, f32)> = Vec::new();
    let (mut z, mut acc, mut w) = (vec![0f32; k], vec![0f32; k], vec![0f32; k]);
    let (mut lr, mut lr_b, mut lr_y) = (p.lr, p.lr_bias, p.lr_implicit);
    for epoch in 0..p.epochs {
        users.shuffle(&mut rng);
        let mut sse = 0f64;
        let mut since_check = 0usize;
        for &u in &users {
            let (items, ratings) = d.by_user.row(u);
            if items.is_empty() {
                continue;
            }
            since_check += items.len();
            if since_check >= CHECK_EVERY_RATINGS {
                since_check = 0;
                if monitor.interrupted() {
                    return Err(CoreError::Cancelled);
                }
            }
            let s = 1.0 / (items.len() as f32).sqrt();
            acc.iter_mut().for_each(|a| *a = 0.0);
            row.clear();
            row.extend(items.iter().copied().zip(ratings.iter().copied()));
            row.shuffle(&mut rng);
            let u = u as usize;
            let (pu, bu) = (&mut f.p[u * k..(u + 1) * k], &mut f.bu[u]);
            let (q, bi) = (&mut f.q, &mut f.bi);
            crate::simd::wide(
                #[inline(always)]
                || {
                    implicit_sum(&y, k, items, s, &mut z);
                    // w = p_u + z, kept current as p_u moves, so the prediction is one dot
                    // product with independent accumulators ([`dot`]) instead of a chain of k
                    // dependent additions.
                    for ((wf, &pf), &zf) in w.iter_mut().zip(pu.iter()).zip(z.iter()) {
                        *wf = pf + zf;
                    }
                    for (n, &(i, r)) in row.iter().enumerate() {
                        if let Some(&(ahead, _)) = row.get(n + AHEAD) {
                            crate::simd::prefetch(&q[ahead as usize * k..(ahead as usize + 1) * k]);
                        }
                        let i = i as usize;
                        let qi = &mut q[i * k..(i + 1) * k];
                        let e = r - (mu + *bu + bi[i] + dot(qi, &w));
                        sse += (e * e) as f64;
                        *bu += lr_b * (e - p.reg_bias * *bu);
                        bi[i] += lr_b * (e - p.reg_bias * bi[i]);
                        let es = e * s;
                        for ((((pf, qf), wf), &zf), af) in pu
                            .iter_mut()
                            .zip(qi.iter_mut())
                            .zip(w.iter_mut())
                            .zip(z.iter())
                            .zip(acc.iter_mut())
                        {
                            let (a, b) = (*pf, *qf);
                            *pf += lr * (e * b - p.reg * a);
                            *qf += lr * (e * (a + zf) - p.reg * b);
                            *af += es * b;
                            *wf = *pf + zf;
                        }
                    }
                    for (n, &j) in items.iter().enumerate() {
                        if let Some(&ahead) = items.get(n + AHEAD) {
                            crate::simd::prefetch(&y[ahead as usize * k..(ahead as usize + 1) * k]);
                        }
                        let yj = &mut y[j as usize * k..(j as usize + 1) * k];
                        for (yf, &af) in yj.iter_mut().zip(acc.iter()) {
                            *yf += lr_y * (af - p.reg_implicit * *yf);
                        }
                    }
                },
            );
        }
        lr *= p.lr_decay;
        lr_b *= p.lr_decay;
        lr_y *= p.lr_decay;
        monitor.step(&Progress::epoch(
            "sgd",
            epoch + 1,
            p.epochs,
            Some((sse / d.n_ratings() as f64).sqrt()),
        ))?;
    }
    // Fold the implicit term into the user vectors: p_u ← p_u + |N(u)|^-½ Σ y_j.
    for u in 0..d.n_users() as u32 {
        let items = d.by_user.row(u).0;
        if items.is_empty() {
            continue;
        }
        implicit_sum(&y, k, items, 1.0 / (items.len() as f32).sqrt(), &mut z);
        for (pf, zf) in f.p[u as usize * k..(u as usize + 1) * k].iter_mut().zip(&z) {
            *pf += zf;
        }
    }
    Ok(f)
}

/// How many rows ahead the SGD loops prefetch the factor rows they will read
/// ([`crate::simd::prefetch`]).
const AHEAD: usize = 4;

fn implicit_sum(y: &[f32], k: usize, items: &[u32], scale: f32, out: &mut [f32]) {
    out.iter_mut().for_each(|o| *o = 0.0);
    for (n, &j) in items.iter().enumerate() {
        if let Some(&ahead) = items.get(n + AHEAD) {
            crate::simd::prefetch(&y[ahead as usize * k..(ahead as usize + 1) * k]);
        }
        for (o, v) in out.iter_mut().zip(&y[j as usize * k..(j as usize + 1) * k]) {
            *o += v;
        }
    }
    out.iter_mut().for_each(|o| *o *= scale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::NoMonitor;

    /// Ratings from a known rank-2 model plus biases: both trainers must fit them well.
    fn synthetic() -> Dataset {
        let mut rows = Vec::new();
        for u in 0..60i64 {
            for i in 0..40i64 {
                if (u * 7 + i * 3) % 5 == 0 {
                    continue; // leave some cells out
                }
                let a = ((u % 6) as f32 - 2.5) / 2.5;
                let b = ((i % 4) as f32 - 1.5) / 1.5;
                let r = (3.0 + 0.3 * ((u % 3) as f32 - 1.0) + 0.2 * ((i % 5) as f32 - 2.0) + a * b)
                    .clamp(1.0, 5.0);
                rows.push((u, i, r));
            }
        }
        Dataset::from_triples(&rows).unwrap()
    }

    fn train_rmse(d: &Dataset, f: &Factors) -> f32 {
        let sse: f32 = d
            .triples()
            .map(|(u, i, r)| (f.predict(d.global_mean, Some(u), Some(i)) - r).powi(2))
            .sum();
        (sse / d.n_ratings() as f32).sqrt()
    }

    #[test]
    fn svd_fits_a_low_rank_matrix() {
        let d = synthetic();
        let mut p = MfParams::svd();
        p.factors = 8;
        p.epochs = 200;
        p.lr = 0.02;
        p.lr_bias = 0.02;
        p.reg = 0.001;
        let f = train_svd(&d, &p, &mut NoMonitor).unwrap();
        let rmse = train_rmse(&d, &f);
        assert!(rmse < 0.1, "train RMSE {rmse}");
    }

    #[test]
    fn svdpp_fits_a_low_rank_matrix_and_is_deterministic() {
        let d = synthetic();
        let mut p = MfParams::svdpp();
        p.factors = 8;
        p.epochs = 150;
        p.lr = 0.02;
        p.lr_bias = 0.02;
        p.reg = 0.001;
        let f = train_svdpp(&d, &p, &mut NoMonitor).unwrap();
        assert!(
            train_rmse(&d, &f) < 0.1,
            "train RMSE {}",
            train_rmse(&d, &f)
        );
        let g = train_svdpp(&d, &p, &mut NoMonitor).unwrap();
        assert_eq!(f, g, "same seed, same model");
    }

    #[test]
    fn unknown_user_or_item_uses_known_biases() {
        let f = Factors {
            k: 1,
            bu: vec![0.5],
            bi: vec![-0.25],
            p: vec![1.0],
            q: vec![2.0],
        };
        assert_eq!(f.predict(3.0, Some(0), Some(0)), 3.0 + 0.5 - 0.25 + 2.0);
        assert_eq!(f.predict(3.0, None, Some(0)), 2.75);
        assert_eq!(f.predict(3.0, Some(0), None), 3.5);
        assert_eq!(f.predict(3.0, None, None), 3.0);
    }

    #[test]
    fn bad_parameters_are_rejected() {
        let mut p = MfParams::svd();
        p.factors = 0;
        assert!(matches!(p.validate(), Err(CoreError::InvalidParameter(_))));
        let mut p = MfParams::svd();
        p.lr = f32::NAN;
        assert!(p.validate().unwrap_err().to_string().contains("lr"));
    }

    #[test]
    fn dot_matches_naive() {
        let a: Vec<f32> = (0..37).map(|x| x as f32 * 0.5).collect();
        let b: Vec<f32> = (0..37).map(|x| 1.0 - x as f32 * 0.1).collect();
        let naive: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        assert!((dot(&a, &b) - naive).abs() < 1e-3);
    }

    #[test]
    fn monitor_can_cancel_between_epochs() {
        struct StopAt(usize);
        impl Monitor for StopAt {
            fn step(&mut self, p: &Progress) -> Result<()> {
                if p.step >= self.0 {
                    Err(CoreError::Cancelled)
                } else {
                    Ok(())
                }
            }
        }
        let d = synthetic();
        let r = train_svd(&d, &MfParams::svd(), &mut StopAt(3));
        assert_eq!(r.unwrap_err(), CoreError::Cancelled);
    }

    /// An interrupt is noticed within an epoch, every CHECK_EVERY_RATINGS ratings: an epoch over
    /// a million ratings takes seconds, too long to wait for a cancel.
    #[test]
    fn an_interrupt_stops_an_epoch_midway() {
        struct InterruptAfter(usize, usize);
        impl Monitor for InterruptAfter {
            fn step(&mut self, _: &Progress) -> Result<()> {
                panic!("no epoch may finish");
            }
            fn interrupted(&mut self) -> bool {
                self.1 += 1;
                self.1 > self.0
            }
        }
        let mut rows = Vec::new();
        for u in 0..2000i64 {
            for i in 0..60i64 {
                rows.push((u, i, (1 + (u + i) % 5) as f32));
            }
        }
        let d = Dataset::from_triples(&rows).unwrap();
        let one_epoch = |mut p: MfParams| {
            p.epochs = 1;
            p
        };
        for svdpp in [false, true] {
            let mut m = InterruptAfter(3, 0);
            let r = if svdpp {
                train_svdpp(&d, &one_epoch(MfParams::svdpp()), &mut m)
            } else {
                train_svd(&d, &one_epoch(MfParams::svd()), &mut m)
            };
            assert_eq!(r.unwrap_err(), CoreError::Cancelled);
            assert_eq!(m.1, 4, "asked until the interrupt, then stopped");
        }
    }

    #[test]
    fn the_grid_holds_every_rating_once_in_cells_that_fit_the_cache() {
        // 60 users x 40 items with 2,048 floats per row: 32 rows per block, so 2 x 2 cells.
        let d = synthetic();
        let g = Grid::new(&d, BLOCK_BYTES / 128 - 1);
        assert_eq!(g.cells.len(), 4);
        let mut seen = Vec::new();
        for cell in &g.cells {
            let (mut users, mut items) = (Vec::new(), Vec::new());
            for &[u, s, e] in &g.segments[cell.clone()] {
                assert!(s < e, "a segment is never empty");
                users.push(u / 32);
                for n in s as usize..e as usize {
                    items.push(g.items[n] / 32);
                    seen.push((u, g.items[n], g.ratings[n].to_bits()));
                }
            }
            users.dedup();
            items.sort_unstable();
            items.dedup();
            assert_eq!(
                (users.len(), items.len()),
                (1, 1),
                "a cell is one user block x one item block"
            );
        }
        let mut all: Vec<(u32, u32, u32)> =
            d.triples().map(|(u, i, r)| (u, i, r.to_bits())).collect();
        seen.sort_unstable();
        all.sort_unstable();
        assert_eq!(seen, all);
        assert_eq!(
            grid_bytes(&d, BLOCK_BYTES / 128 - 1),
            d.n_ratings() * 8 + g.segments.len() * 28
        );
    }

    #[test]
    fn absurd_factor_counts_give_one_row_blocks_not_a_panic() {
        // The memory estimate sizes the grid before the options are bounded.
        for factors in [usize::MAX, usize::MAX / 4, BLOCK_BYTES] {
            assert_eq!(rows_per_block(factors), 1);
        }
        let d = synthetic();
        assert!(grid_bytes(&d, usize::MAX) >= d.n_ratings() * 8);
    }
}
