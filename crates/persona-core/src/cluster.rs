//! k-means clustering of users' latent factors (taste clusters), with k chosen by the mean
//! silhouette over a small range.
//!
//! [`kmeans`]: k-means++ seeding (Arthur and Vassilvitskii 2007) from a seeded generator, then
//! Lloyd iterations until no assignment changes (or `max_iterations`); the best of `restarts`
//! seedings by inertia (the sum of squared distances to the nearest centroid). Deterministic for
//! a seed: the same points, k and seed give the same centroids on any machine (no threads, a
//! fixed summation order). An empty cluster takes the point farthest from its centroid.
//!
//! [`silhouette`]: the mean silhouette coefficient (Rousseeuw 1987) with Euclidean distances, as
//! scikit-learn's `silhouette_score` (a point alone in its cluster scores 0), computed on at most
//! `sample` points drawn with the seed when there are more (scikit-learn's `sample_size`).
//! [`choose_k`] runs k-means for each k of a range and keeps the k with the highest silhouette,
//! on a seeded sample of [`CHOOSE_K_SAMPLE`] points when there are more, then fits that k on all.
//! Lloyd's iterations stop as scikit-learn's (`tol` 1e-4 of the mean variance on the centroids'
//! squared shift) or when no label changes.

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;
use serde::{Deserialize, Serialize};

use crate::control::{Monitor, Progress};
use crate::{CoreError, Result};

/// A clustering.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Clustering {
    /// One centroid per cluster.
    pub centroids: Vec<Vec<f32>>,
    /// The cluster of each point, in input order.
    pub labels: Vec<usize>,
    /// Sum of squared distances of the points to their centroids.
    pub inertia: f64,
    /// Lloyd iterations of the kept seeding.
    pub iterations: usize,
}

fn distance2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let d = f64::from(*x) - f64::from(*y);
            d * d
        })
        .sum()
}

/// The index of the nearest centroid and the squared distance to it (ties: the lowest index).
pub fn nearest(centroids: &[Vec<f32>], point: &[f32]) -> (usize, f64) {
    let mut best = (0, f64::INFINITY);
    for (i, c) in centroids.iter().enumerate() {
        let d = distance2(c, point);
        if d < best.1 {
            best = (i, d);
        }
    }
    best
}

fn check(points: &[Vec<f32>], k: usize) -> Result<usize> {
    let dim = points.first().map_or(0, Vec::len);
    if k < 1 || k > points.len() {
        return Err(CoreError::InvalidParameter(format!(
            "k must be between 1 and the number of points ({}), got {k}",
            points.len()
        )));
    }
    if dim == 0
        || points
            .iter()
            .any(|p| p.len() != dim || p.iter().any(|x| !x.is_finite()))
    {
        return Err(CoreError::InvalidData(
            "points must be non-empty vectors of one length with finite values".into(),
        ));
    }
    Ok(dim)
}

fn plus_plus(points: &[Vec<f32>], k: usize, rng: &mut Pcg64Mcg) -> Vec<Vec<f32>> {
    let mut centroids = vec![points[rng.random_range(0..points.len())].clone()];
    let mut d2: Vec<f64> = points.iter().map(|p| distance2(p, &centroids[0])).collect();
    while centroids.len() < k {
        let total: f64 = d2.iter().sum();
        let next = if total > 0.0 {
            let mut target = rng.random::<f64>() * total;
            let mut chosen = points.len() - 1;
            for (i, d) in d2.iter().enumerate() {
                if target < *d {
                    chosen = i;
                    break;
                }
                target -= d;
            }
            chosen
        } else {
            rng.random_range(0..points.len())
        };
        centroids.push(points[next].clone());
        for (p, d) in points.iter().zip(d2.iter_mut()) {
            *d = d.min(distance2(p, &centroids[centroids.len() - 1]));
        }
    }
    centroids
}

/// scikit-learn's `KMeans(tol=1e-4)`: relative to the data's mean per-dimension variance.
const TOLERANCE: f64 = 1e-4;

/// The mean over dimensions of the points' variance.
fn mean_variance(points: &[Vec<f32>]) -> f64 {
    let (n, dim) = (points.len() as f64, points[0].len());
    let mut mean = vec![0.0f64; dim];
    for p in points {
        for (m, x) in mean.iter_mut().zip(p) {
            *m += f64::from(*x) / n;
        }
    }
    let total: f64 = points.iter().map(|p| distance2_to(p, &mean)).sum();
    total / n / dim as f64
}

fn distance2_to(a: &[f32], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - y).powi(2))
        .sum()
}

fn lloyd(
    points: &[Vec<f32>],
    mut centroids: Vec<Vec<f32>>,
    max_iterations: usize,
    monitor: &mut dyn Monitor,
) -> Result<Clustering> {
    let (k, dim) = (centroids.len(), points[0].len());
    let tolerance = TOLERANCE * mean_variance(points);
    let mut labels = vec![usize::MAX; points.len()];
    let mut iterations = 0;
    let mut settled = false;
    loop {
        let mut changed = false;
        for (p, l) in points.iter().zip(labels.iter_mut()) {
            let (c, _) = nearest(&centroids, p);
            if c != *l {
                *l = c;
                changed = true;
            }
        }
        if !changed || settled || iterations >= max_iterations {
            break;
        }
        iterations += 1;
        monitor.step(&Progress::epoch(
            "k-means",
            iterations,
            max_iterations,
            None,
        ))?;
        let mut sums = vec![vec![0.0f64; dim]; k];
        let mut counts = vec![0usize; k];
        let mut shift = 0.0;
        for (p, &l) in points.iter().zip(&labels) {
            counts[l] += 1;
            for (s, x) in sums[l].iter_mut().zip(p) {
                *s += f64::from(*x);
            }
        }
        for c in 0..k {
            if counts[c] == 0 {
                // An empty cluster takes the point farthest from its centroid.
                let far = points
                    .iter()
                    .zip(&labels)
                    .map(|(p, &l)| distance2(p, &centroids[l]))
                    .enumerate()
                    .fold(
                        (0, -1.0),
                        |best, (i, d)| if d > best.1 { (i, d) } else { best },
                    )
                    .0;
                centroids[c] = points[far].clone();
                labels[far] = c;
            } else {
                let moved: Vec<f32> = sums[c]
                    .iter()
                    .map(|s| (s / counts[c] as f64) as f32)
                    .collect();
                shift += distance2(&moved, &centroids[c]);
                centroids[c] = moved;
                continue;
            }
            shift = f64::INFINITY; // a re-seeded cluster is not a settled one
        }
        // scikit-learn's stopping rule: the centroids moved (squared, summed) by at most `tol`
        // times the data's mean variance; the labels are then brought up to date once more.
        settled = shift <= tolerance;
    }
    let inertia = points
        .iter()
        .zip(&labels)
        .map(|(p, &l)| distance2(p, &centroids[l]))
        .sum();
    Ok(Clustering {
        centroids,
        labels,
        inertia,
        iterations,
    })
}

/// k-means with `restarts` k-means++ seedings from `seed`, keeping the lowest inertia.
/// `monitor` is called after every Lloyd iteration; its error stops the clustering.
pub fn kmeans(
    points: &[Vec<f32>],
    k: usize,
    seed: u64,
    restarts: usize,
    max_iterations: usize,
    monitor: &mut dyn Monitor,
) -> Result<Clustering> {
    check(points, k)?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let mut best: Option<Clustering> = None;
    for _ in 0..restarts.max(1) {
        let c = lloyd(
            points,
            plus_plus(points, k, &mut rng),
            max_iterations,
            monitor,
        )?;
        if best.as_ref().is_none_or(|b| c.inertia < b.inertia) {
            best = Some(c);
        }
    }
    best.ok_or_else(|| CoreError::InvalidData("k-means produced no clustering".into()))
}

/// Lloyd's iterations from the given centroids (no seeding), as [`kmeans`] runs them after each
/// k-means++ seeding: what `tests/cluster_reference.rs` compares with scikit-learn's `KMeans`
/// started from the same centroids.
pub fn lloyd_from(
    points: &[Vec<f32>],
    centroids: Vec<Vec<f32>>,
    max_iterations: usize,
    monitor: &mut dyn Monitor,
) -> Result<Clustering> {
    let dim = check(points, centroids.len())?;
    if centroids.iter().any(|c| c.len() != dim) {
        return Err(CoreError::InvalidData(
            "centroids must have the points' dimension".into(),
        ));
    }
    lloyd(points, centroids, max_iterations, monitor)
}

/// Mean silhouette coefficient of `labels` (see the module documentation); `None` with fewer
/// than two clusters or fewer than two points.
pub fn silhouette(points: &[Vec<f32>], labels: &[usize], sample: usize, seed: u64) -> Option<f64> {
    let k = labels.iter().max()? + 1;
    let used = labels
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if used < 2 || points.len() < 2 || used >= points.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..points.len()).collect();
    if points.len() > sample {
        idx.shuffle(&mut Pcg64Mcg::seed_from_u64(seed));
        idx.truncate(sample);
        idx.sort_unstable();
    }
    let mut total = 0.0;
    for &i in &idx {
        let mut sum = vec![0.0f64; k];
        let mut count = vec![0usize; k];
        for &j in &idx {
            if j != i {
                sum[labels[j]] += distance2(&points[i], &points[j]).sqrt();
                count[labels[j]] += 1;
            }
        }
        let own = labels[i];
        if count[own] == 0 {
            continue; // alone in its cluster: 0
        }
        let a = sum[own] / count[own] as f64;
        let b = (0..k)
            .filter(|&c| c != own && count[c] > 0)
            .map(|c| sum[c] / count[c] as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() && a.max(b) > 0.0 {
            total += (b - a) / a.max(b);
        }
    }
    Some(total / idx.len() as f64)
}

/// k-means for each k in `ks` (each with `seed`); the clustering with the highest silhouette,
/// and every k's silhouette.
pub fn choose_k(
    points: &[Vec<f32>],
    ks: std::ops::RangeInclusive<usize>,
    seed: u64,
    monitor: &mut dyn Monitor,
) -> Result<(Clustering, Vec<(usize, f64)>)> {
    // k is chosen on a sample (the silhouette is computed on 2,000 points anyway), then the
    // chosen k is fitted on every point: 7 values of k x 4 seedings on 100,000 users took 18.6 s,
    // the same choice on a sample of 10,000 plus one full fit takes a fraction of it.
    let sample: Vec<Vec<f32>>;
    let chosen_on = if points.len() > CHOOSE_K_SAMPLE {
        let mut idx: Vec<usize> = (0..points.len()).collect();
        idx.shuffle(&mut Pcg64Mcg::seed_from_u64(seed ^ 0x5eed));
        idx.truncate(CHOOSE_K_SAMPLE);
        idx.sort_unstable();
        sample = idx.into_iter().map(|i| points[i].clone()).collect();
        &sample[..]
    } else {
        points
    };
    let mut scores = Vec::new();
    let mut best: Option<(f64, Clustering)> = None;
    for k in ks {
        if k > chosen_on.len() {
            break;
        }
        let c = kmeans(chosen_on, k, seed, 4, 300, monitor)?;
        monitor.step(&Progress::epoch("silhouette", k, 0, None))?;
        let Some(s) = silhouette(chosen_on, &c.labels, 2000, seed) else {
            continue;
        };
        scores.push((k, s));
        if best.as_ref().is_none_or(|(b, _)| s > *b) {
            best = Some((s, c));
        }
    }
    let (_, c) = best.ok_or_else(|| {
        CoreError::InvalidData("too few distinct users to form two taste clusters".into())
    })?;
    if chosen_on.len() == points.len() {
        return Ok((c, scores));
    }
    let k = c.centroids.len();
    Ok((kmeans(points, k, seed, 4, 300, monitor)?, scores))
}

/// At most this many points choose k in [`choose_k`].
pub const CHOOSE_K_SAMPLE: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::NoMonitor;
    use rand_distr::{Distribution, Normal};

    /// Three well-separated blobs of 60 points in 4 dimensions.
    fn blobs(seed: u64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = Pcg64Mcg::seed_from_u64(seed);
        let noise = Normal::new(0.0, 0.3).unwrap();
        let centres = [
            [0.0, 0.0, 0.0, 0.0],
            [5.0, 5.0, 0.0, 0.0],
            [0.0, 5.0, 5.0, 5.0],
        ];
        let (mut points, mut truth) = (Vec::new(), Vec::new());
        for i in 0..180 {
            let c = i % 3;
            points.push(
                centres[c]
                    .iter()
                    .map(|m: &f64| (m + noise.sample(&mut rng)) as f32)
                    .collect(),
            );
            truth.push(c);
        }
        (points, truth)
    }

    #[test]
    fn cluster_recovers_separable_blobs_and_is_deterministic() {
        let (points, truth) = blobs(1);
        let a = kmeans(&points, 3, 42, 4, 300, &mut NoMonitor).unwrap();
        let b = kmeans(&points, 3, 42, 4, 300, &mut NoMonitor).unwrap();
        assert_eq!(a, b, "same seed, same clustering");
        // The clusters are the blobs (up to renaming).
        for c in 0..3 {
            let members: std::collections::HashSet<usize> = truth
                .iter()
                .zip(&a.labels)
                .filter(|(_, &l)| l == c)
                .map(|(&t, _)| t)
                .collect();
            assert_eq!(members.len(), 1, "cluster {c} mixes blobs");
        }
        let (chosen, scores) = choose_k(&points, 2..=6, 7, &mut NoMonitor).unwrap();
        assert_eq!(chosen.centroids.len(), 3, "silhouette picks 3: {scores:?}");
        assert!(scores.iter().all(|&(_, s)| (-1.0..=1.0).contains(&s)));
    }

    #[test]
    fn choose_k_on_a_sample_then_fits_every_point() {
        // 12,000 points (more than CHOOSE_K_SAMPLE): k is chosen on a sample, the clustering
        // returned labels every point, and the blobs are still recovered exactly.
        let (base, truth) = blobs(3);
        let points: Vec<Vec<f32>> = (0..12_000).map(|n| base[n % 180].clone()).collect();
        let (c, scores) = choose_k(&points, 2..=4, 5, &mut NoMonitor).unwrap();
        assert_eq!(c.centroids.len(), 3, "{scores:?}");
        assert_eq!(c.labels.len(), points.len());
        for n in 0..points.len() {
            assert!(
                c.labels[n] == c.labels[n % 180],
                "copies of a point share its cluster"
            );
            let other = (n + 1) % 180;
            assert_eq!(
                c.labels[n] == c.labels[other],
                truth[n % 180] == truth[other]
            );
        }
    }

    #[test]
    fn cluster_silhouette_by_hand() {
        // Points 0, 1 in cluster 0 and 10, 12 in cluster 1 on a line.
        let points: Vec<Vec<f32>> = [0.0, 1.0, 10.0, 12.0].iter().map(|&x| vec![x]).collect();
        let s = silhouette(&points, &[0, 0, 1, 1], 100, 0).unwrap();
        // a, b per point: 0: a 1, b 11 → 10/11; 1: a 1, b 10 → 9/10; 10: a 2, b 9.5 → 7.5/9.5;
        // 12: a 2, b 11.5 → 9.5/11.5.
        let want = (10.0 / 11.0 + 9.0 / 10.0 + 7.5 / 9.5 + 9.5 / 11.5) / 4.0;
        assert!((s - want).abs() < 1e-12, "{s} vs {want}");
        assert!(silhouette(&points, &[0, 0, 0, 0], 100, 0).is_none());
    }

    #[test]
    fn cluster_refuses_bad_input() {
        let points = vec![vec![1.0f32, 2.0], vec![f32::NAN, 0.0]];
        assert!(kmeans(&points, 1, 0, 1, 10, &mut NoMonitor).is_err());
        assert!(kmeans(&[vec![1.0f32]], 2, 0, 1, 10, &mut NoMonitor).is_err());
    }
}
