//! Taste clusters: k-means ([`crate::cluster`]) on the users' latent factors of a cf model, each
//! cluster named by the item categories its users rate over-proportionally.
//!
//! Naming: with `s_c(g)` the share of category `g` among the ratings of cluster `c`'s users and
//! `s(g)` its share among all ratings, the name is the (at most two) categories with the highest
//! lift `s_c(g)/s(g)` among those with `s_c(g) ≥ 5%`, joined by " & " (ties by name); a cluster
//! without categories is "cluster N".

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cf::CfModel;
use crate::cluster::{choose_k, kmeans, nearest, Clustering};
use crate::control::Monitor;
use crate::{CoreError, Result};

/// The clusters stored with a portrait model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TasteClusters {
    /// The cf model (name, version) whose factors were clustered.
    pub cf_model: String,
    pub cf_version: i32,
    pub centroids: Vec<Vec<f32>>,
    pub names: Vec<String>,
    /// Users per cluster.
    pub sizes: Vec<usize>,
    /// Silhouette of each k tried (empty when k was given).
    pub silhouettes: Vec<(usize, f64)>,
    pub seed: u64,
}

/// The users' factor rows of `model`, in its user order.
pub fn factor_rows(model: &CfModel) -> Result<(Vec<i64>, Vec<Vec<f32>>)> {
    let (k, p) = model.user_factors().ok_or_else(|| {
        CoreError::InvalidParameter(format!(
            "need a cf model with user factors (svd, svdpp or als), not {}",
            model.algorithm.name()
        ))
    })?;
    let n = model.users.len();
    let ids = (0..n as u32).map(|u| model.users.id(u)).collect();
    let rows = (0..n).map(|u| p[u * k..(u + 1) * k].to_vec()).collect();
    Ok((ids, rows))
}

/// The name of each cluster from `(user, category, ratings)` counts.
pub fn name_clusters(
    labels: &HashMap<i64, usize>,
    k: usize,
    counts: &[(i64, &str, u64)],
) -> Vec<String> {
    let mut overall: BTreeMap<&str, f64> = BTreeMap::new();
    let mut per: Vec<BTreeMap<&str, f64>> = vec![BTreeMap::new(); k];
    for &(user, cat, n) in counts {
        *overall.entry(cat).or_default() += n as f64;
        if let Some(&c) = labels.get(&user) {
            *per[c].entry(cat).or_default() += n as f64;
        }
    }
    let total: f64 = overall.values().sum();
    (0..k)
        .map(|c| {
            let in_cluster: f64 = per[c].values().sum();
            let mut lifts: Vec<(&str, f64)> = per[c]
                .iter()
                .filter(|(_, &n)| in_cluster > 0.0 && n / in_cluster >= 0.05)
                .map(|(&g, &n)| (g, (n / in_cluster) / (overall[g] / total)))
                .collect();
            lifts.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(b.0)));
            if lifts.is_empty() {
                format!("cluster {}", c + 1)
            } else {
                lifts
                    .iter()
                    .take(2)
                    .map(|(g, _)| *g)
                    .collect::<Vec<_>>()
                    .join(" & ")
            }
        })
        .collect()
}

/// `(user, category, ratings)` counts for naming the clusters, from what the users of `model`
/// rated in its training (its seen lists: the cf model's own source, whatever relation it was
/// trained on), with `categories` mapping item ids to their category; items without one are
/// left out.
pub fn category_counts<'c>(
    model: &CfModel,
    categories: &'c HashMap<i64, String>,
) -> Vec<(i64, &'c str, u64)> {
    let by_index: Vec<Option<&'c String>> = (0..model.items.len() as u32)
        .map(|i| categories.get(&model.items.id(i)))
        .collect();
    let mut out = Vec::new();
    let mut per: BTreeMap<&'c str, u64> = BTreeMap::new();
    for u in 0..model.users.len() as u32 {
        per.clear();
        for &i in model.seen.row(u).0 {
            if let Some(Some(c)) = by_index.get(i as usize) {
                *per.entry(c.as_str()).or_default() += 1;
            }
        }
        let user = model.users.id(u);
        out.extend(per.iter().map(|(&c, &n)| (user, c, n)));
    }
    out
}

/// Clusters the users of `model` (k given, or chosen by silhouette over 2..=8) and names them;
/// `monitor` is called between k-means iterations (its error stops the fit).
pub fn fit(
    model: &CfModel,
    cf_model: &str,
    cf_version: i32,
    k: Option<usize>,
    seed: u64,
    counts: &[(i64, &str, u64)],
    monitor: &mut dyn Monitor,
) -> Result<TasteClusters> {
    let (ids, rows) = factor_rows(model)?;
    let (clustering, silhouettes): (Clustering, Vec<(usize, f64)>) = match k {
        Some(k) => (kmeans(&rows, k, seed, 4, 300, monitor)?, Vec::new()),
        None => choose_k(&rows, 2..=8, seed, monitor)?,
    };
    let k = clustering.centroids.len();
    let labels: HashMap<i64, usize> = ids
        .iter()
        .copied()
        .zip(clustering.labels.iter().copied())
        .collect();
    let mut sizes = vec![0usize; k];
    for &l in &clustering.labels {
        sizes[l] += 1;
    }
    Ok(TasteClusters {
        cf_model: cf_model.to_string(),
        cf_version,
        names: name_clusters(&labels, k, counts),
        centroids: clustering.centroids,
        sizes,
        silhouettes,
        seed,
    })
}

impl TasteClusters {
    /// The cluster of a user of `model` (its nearest centroid), or `None` for a user the model
    /// does not know.
    pub fn cluster_of(&self, model: &CfModel, user: i64) -> Option<usize> {
        let (k, p) = model.user_factors()?;
        let u = model.users.get(user)? as usize;
        Some(nearest(&self.centroids, &p[u * k..(u + 1) * k]).0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn category_counts_come_from_the_model_s_own_ratings() {
        use crate::cf::{train, Algorithm, Dataset};
        use crate::control::{NoMonitor, Threads};
        // Users 1, 2 rated items 10, 11; user 3 rated 11, 12; item 12 has no category.
        let d = Dataset::from_triples(&[
            (1, 10, 4.0),
            (1, 11, 3.0),
            (2, 10, 5.0),
            (2, 11, 2.0),
            (3, 11, 4.0),
            (3, 12, 1.0),
        ])
        .unwrap();
        let m = train(
            &d,
            Algorithm::Svd,
            "{}",
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let categories: HashMap<i64, String> =
            [(10, "books".to_string()), (11, "outdoor".to_string())]
                .into_iter()
                .collect();
        let mut got = category_counts(&m, &categories);
        got.sort();
        let want: Vec<(i64, &str, u64)> = vec![
            (1, "books", 1),
            (1, "outdoor", 1),
            (2, "books", 1),
            (2, "outdoor", 1),
            (3, "outdoor", 1),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn taste_names_are_the_over_represented_categories() {
        let labels: HashMap<i64, usize> = [(1, 0), (2, 0), (3, 1), (4, 1)].into_iter().collect();
        let counts = vec![
            (1, "outdoor", 10),
            (2, "outdoor", 8),
            (1, "books", 2),
            (3, "books", 9),
            (4, "kitchen", 5),
            (4, "outdoor", 1),
        ];
        let names = name_clusters(&labels, 3, &counts);
        assert_eq!(names[0], "outdoor & books");
        assert_eq!(names[1], "kitchen & books");
        assert_eq!(names[2], "cluster 3");
    }
}
