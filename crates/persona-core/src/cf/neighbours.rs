//! The most similar rows of a factor matrix (cosine of the factor vectors) for many rows at once:
//! what the portraits' `similar_users` need for every user of `user_profiles`.
//!
//! [`CfModel::similar_users`] scores one user against every other with two dot products and a
//! division each and collects all the scores before selecting: about 1 ms per user at 100,000
//! users, 100 s for everyone's. Here the rows are normalised once, laid out in panels of eight
//! rows by dimension, and four targets are scored against a panel at a time (32 cosines from one
//! pass over the panel, which the compiler vectorises; AVX2 through [`crate::simd::wide`]); each
//! target keeps its best `k` as it goes. The scores are computed in one fixed order, so a user's
//! neighbours do not depend on which other users were asked for or on the thread count.

use rayon::prelude::*;

use super::model::CfModel;
use crate::control::{Monitor, Threads};
use crate::Result;

/// A user's most similar users: (user id, cosine), most similar first.
pub type Neighbours = Vec<(i64, f32)>;

/// Rows per panel.
const LANES: usize = 8;
/// Targets scored together.
const TARGETS: usize = 4;

/// Unit-length rows of a factor matrix, in panels of [`LANES`] rows stored dimension by dimension.
#[derive(Debug, Clone)]
pub struct Panels {
    dim: usize,
    rows: usize,
    /// `panel * dim * LANES + d * LANES + lane`; padding rows (past `rows`) are zero.
    data: Vec<f32>,
    /// Whether each row has a non-zero norm (a zero row has no direction: never a neighbour).
    usable: Vec<bool>,
}

impl Panels {
    /// The panels of `m` (`rows × dim`, row-major).
    pub fn new(m: &[f32], dim: usize) -> Panels {
        let rows = m.len().checked_div(dim).unwrap_or(0);
        let panels = rows.div_ceil(LANES);
        let mut data = vec![0f32; panels * dim * LANES];
        let mut usable = vec![false; rows];
        for r in 0..rows {
            let row = &m[r * dim..(r + 1) * dim];
            let norm = super::mf::dot(row, row).sqrt();
            if !(norm > 0.0 && norm.is_finite()) {
                continue;
            }
            usable[r] = true;
            let (p, lane) = (r / LANES, r % LANES);
            for (d, x) in row.iter().enumerate() {
                data[p * dim * LANES + d * LANES + lane] = x / norm;
            }
        }
        Panels {
            dim,
            rows,
            data,
            usable,
        }
    }

    /// Row `r`, unit length (zero for an unusable row).
    fn row(&self, r: usize) -> Vec<f32> {
        let (p, lane) = (r / LANES, r % LANES);
        (0..self.dim)
            .map(|d| self.data[p * self.dim * LANES + d * LANES + lane])
            .collect()
    }

    /// The `k` rows most similar to each of `targets` (never the target itself, never an
    /// unusable row), most similar first, ties by the lower row index; empty for an unusable
    /// target. Scores `targets` on `threads` while the calling thread asks `monitor` whether to
    /// stop (`Err(Cancelled)` soon after it says so); a handful of targets is scored on the
    /// calling thread.
    pub fn most_similar(
        &self,
        targets: &[u32],
        k: usize,
        threads: &Threads,
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Vec<(u32, f32)>>> {
        if targets.len() <= TARGETS {
            // One block (a single portrait): no thread pool to wake.
            return Ok(crate::simd::wide(
                #[inline(always)]
                || self.block(targets, k),
            ));
        }
        let blocks: Vec<Vec<Vec<(u32, f32)>>> = threads.run_watched(monitor, |stop| {
            Ok(targets
                .par_chunks(TARGETS)
                .map(|chunk| {
                    if stop.requested() {
                        return Vec::new();
                    }
                    crate::simd::wide(
                        #[inline(always)]
                        || self.block(chunk, k),
                    )
                })
                .collect())
        })?;
        Ok(blocks.into_iter().flatten().collect())
    }

    /// Up to [`TARGETS`] targets against every panel.
    #[inline(always)]
    fn block(&self, targets: &[u32], k: usize) -> Vec<Vec<(u32, f32)>> {
        let dim = self.dim;
        let mut a = vec![[0f32; TARGETS]; dim];
        for (t, &r) in targets.iter().enumerate() {
            for (d, x) in self.row(r as usize).into_iter().enumerate() {
                a[d][t] = x;
            }
        }
        let mut best: Vec<Vec<(u32, f32)>> =
            vec![Vec::with_capacity(k.min(self.rows) + 1); targets.len()];
        if k == 0 {
            return best;
        }
        for (p, panel) in self.data.chunks_exact(dim * LANES).enumerate() {
            let mut acc = [[0f32; LANES]; TARGETS];
            for (d, a_d) in a.iter().enumerate() {
                let v: &[f32; LANES] = panel[d * LANES..(d + 1) * LANES]
                    .try_into()
                    .expect("a panel row has LANES values");
                for t in 0..TARGETS {
                    for l in 0..LANES {
                        acc[t][l] += a_d[t] * v[l];
                    }
                }
            }
            for (t, &target) in targets.iter().enumerate() {
                let list = &mut best[t];
                let floor = if list.len() == k {
                    list[k - 1].1
                } else {
                    f32::NEG_INFINITY
                };
                // Most panels hold nothing better than the floor: one comparison rejects them.
                if acc[t].iter().fold(f32::NEG_INFINITY, |m, &s| m.max(s)) <= floor {
                    continue;
                }
                for (l, &s) in acc[t].iter().enumerate() {
                    let r = p * LANES + l;
                    // Equal to the floor can still win on the lower index, but a later row
                    // never has a lower index than a kept one: strictly better only.
                    if s > floor && r < self.rows && r != target as usize && self.usable[r] {
                        let at = list.partition_point(|&(_, x)| x >= s);
                        list.insert(at, (r as u32, s));
                        list.truncate(k);
                    }
                }
            }
        }
        for (t, &target) in targets.iter().enumerate() {
            if !self.usable[target as usize] {
                best[t].clear();
            }
        }
        best
    }
}

impl CfModel {
    /// [`CfModel::similar_users`] for many users at once (`None` for a user the model does not
    /// know; an empty list for a model without user factors), by [`Panels`] (kept with the
    /// decoded model): cosines of the normalised factor vectors, one fixed summation order for
    /// every call.
    pub fn similar_users_many(
        &self,
        users: &[i64],
        k: usize,
        threads: &Threads,
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Option<Neighbours>>> {
        let Some((dim, p)) = self.user_factors() else {
            return Ok(users
                .iter()
                .map(|&u| self.users.get(u).map(|_| Vec::new()))
                .collect());
        };
        // Built once per decoded model: one portrait at a time would otherwise normalise every
        // user's factors for each call.
        let panels = self.user_panels.get_or_init(|| Panels::new(p, dim));
        let known: Vec<u32> = users.iter().filter_map(|&u| self.users.get(u)).collect();
        let mut lists = panels
            .most_similar(&known, k, threads, monitor)?
            .into_iter();
        Ok(users
            .iter()
            .map(|&u| {
                self.users.get(u)?;
                let list = lists.next().expect("one list per known user");
                Some(
                    list.into_iter()
                        .map(|(v, s)| (self.users.id(v), s))
                        .collect(),
                )
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::NoMonitor;

    #[test]
    fn neighbours_equal_a_brute_force_cosine_for_every_user() {
        let rows: Vec<(i64, i64, f32)> = (0..6000)
            .map(|n: i64| (n % 211, (n * 31 + n / 7) % 97, 1.0 + (n % 5) as f32))
            .collect();
        let d = Dataset::from_triples(&rows).unwrap();
        let m = train(
            &d,
            Algorithm::Svd,
            r#"{"factors": 13}"#,
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let users: Vec<i64> = m.users.ids().to_vec();
        let (dim, p) = m.user_factors().unwrap();
        let many = m
            .similar_users_many(&users, 5, &Threads::new(2).unwrap(), &mut NoMonitor)
            .unwrap();
        // The same lists asked one user at a time, and against a brute force in f64.
        for (n, &u) in users.iter().enumerate() {
            let one = m
                .similar_users_many(&[u], 5, &Threads::current(), &mut NoMonitor)
                .unwrap();
            assert_eq!(one[0], many[n], "user {u}: alone and in a batch");
            let r = m.users.get(u).unwrap() as usize;
            let unit = |i: usize| {
                let v: Vec<f64> = p[i * dim..(i + 1) * dim]
                    .iter()
                    .map(|&x| f64::from(x))
                    .collect();
                let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
                v.into_iter().map(move |x| x / norm).collect::<Vec<f64>>()
            };
            let mut all: Vec<(usize, f64)> = (0..users.len())
                .filter(|&j| j != r)
                .map(|j| (j, unit(r).iter().zip(unit(j)).map(|(a, b)| a * b).sum()))
                .collect();
            all.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
            let got = many[n].as_ref().unwrap();
            assert_eq!(got.len(), 5);
            for (g, w) in got.iter().zip(&all) {
                assert!(
                    (f64::from(g.1) - w.1).abs() < 1e-5,
                    "user {u}: {got:?} vs {:?}",
                    &all[..5]
                );
            }
            // Ranked by similarity (ties are rare enough that the ids agree here).
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        }
        assert_eq!(
            m.similar_users_many(&[-1], 5, &Threads::current(), &mut NoMonitor)
                .unwrap(),
            vec![None]
        );
    }

    #[test]
    fn a_zero_row_is_nobody_s_neighbour() {
        // Three rows in 2 dimensions, the middle one zero.
        let panels = Panels::new(&[1.0, 0.0, 0.0, 0.0, 0.6, 0.8], 2);
        let got = panels
            .most_similar(&[0, 1, 2], 5, &Threads::current(), &mut NoMonitor)
            .unwrap();
        assert_eq!(got[0], vec![(2, 0.6)]);
        assert!(got[1].is_empty());
        assert_eq!(got[2].len(), 1);
        assert_eq!(got[2][0].0, 0);
    }

    #[test]
    fn many_targets_stop_when_the_monitor_says_so() {
        struct Interrupted;
        impl Monitor for Interrupted {
            fn step(&mut self, _: &crate::control::Progress) -> Result<()> {
                Ok(())
            }
            fn interrupted(&mut self) -> bool {
                true
            }
        }
        let rows: Vec<f32> = (0..4000)
            .map(|n| ((n * 7919) % 101) as f32 - 50.0)
            .collect();
        let panels = Panels::new(&rows, 4);
        let all: Vec<u32> = (0..1000).collect();
        let threads = Threads::new(2).unwrap();
        let stopped = panels.most_similar(&all, 5, &threads, &mut Interrupted);
        assert!(
            matches!(stopped, Err(crate::CoreError::Cancelled)),
            "{stopped:?}"
        );
        assert_eq!(
            panels
                .most_similar(&all, 5, &threads, &mut NoMonitor)
                .unwrap()
                .len(),
            1000
        );
    }
}
