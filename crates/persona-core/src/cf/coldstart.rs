//! Cold-start items: factors for items nobody has rated, predicted from their text.
//!
//! A ridge regression maps an item's text embedding (e.g. MiniLM's 384-dimensional mean-pooled
//! vector of its title and description) to what the factor model learnt for the item: [b_i, q_i]
//! for `svd`/`svdpp`, y_i for `als`. It is fitted on the items the model knows (those with
//! ratings and a text), with an intercept (embeddings and targets centred), and the ridge weight
//! chosen by 5-fold cross-validation from [`LAMBDAS`] (times the number of items). Items with a
//! text and no rating are then added to the model with the predicted factors, so every function
//! recommends and predicts them like any other item; the map is kept with the model
//! ([`ColdStart`]).

use nalgebra::{DMatrix, DVector};
use serde::{Deserialize, Serialize};

use super::model::{Body, CfModel};
use crate::{CoreError, Result};

/// The ridge weights tried, per item: λ = value × n.
pub const LAMBDAS: [f64; 6] = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1, 1.0];

/// Folds of the cross-validation that chooses λ.
const FOLDS: usize = 5;

/// The map from text embeddings to item factors, as stored with a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    /// The text model that embedded the items.
    pub encoder: String,
    /// Embedding width d.
    pub dim: usize,
    /// Output width: k + 1 ([b_i, q_i]) or k (ALS).
    pub out: usize,
    /// Row-major (d + 1) × out: d rows of weights, then the intercept.
    pub weights: Vec<f32>,
    /// The chosen ridge weight (per item).
    pub lambda: f64,
    /// The items it added to the model (ids), in the order added.
    pub items: Vec<i64>,
}

/// What [`CfModel::add_cold_items`] did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ColdStartReport {
    /// Items with a text that the model knew (the fit's rows).
    pub fitted_on: usize,
    /// Items added (a text, no rating).
    pub added: usize,
    pub lambda: f64,
    /// Cross-validated R² of the chosen λ: the share of the factors' variance the text explains
    /// on items left out of the fit.
    pub cv_r2: f64,
}

/// The targets the map predicts: each known item's [b_i, q_i] or y_i, row by row.
fn targets(model: &CfModel) -> Result<(usize, Vec<f32>)> {
    match &model.body {
        Body::Factors(f) => {
            let out = f.k + 1;
            let mut t = Vec::with_capacity(model.items.len() * out);
            for i in 0..model.items.len() as u32 {
                t.push(f.bi[i as usize]);
                t.extend_from_slice(f.item(i));
            }
            Ok((out, t))
        }
        Body::Als(a) => Ok((a.k, a.y.clone())),
        Body::Baseline(_) | Body::Knn(_) => Err(CoreError::InvalidParameter(format!(
            "cold-start items need item factors, and \"{}\" has none: train svd, svdpp or als",
            model.algorithm
        ))),
    }
}

/// Ridge fit with an intercept: W (d × out) and the intercept (out), from centred rows.
fn ridge(x: &DMatrix<f64>, y: &DMatrix<f64>, lambda: f64) -> Option<(DMatrix<f64>, DVector<f64>)> {
    let n = x.nrows() as f64;
    let xm = x.row_mean();
    let ym = y.row_mean();
    let mut xc = x.clone();
    let mut yc = y.clone();
    for mut r in xc.row_iter_mut() {
        r -= &xm;
    }
    for mut r in yc.row_iter_mut() {
        r -= &ym;
    }
    let mut a = xc.transpose() * &xc;
    for d in 0..a.nrows() {
        a[(d, d)] += lambda * n;
    }
    let w = a.cholesky()?.solve(&(xc.transpose() * &yc));
    let intercept = ym.transpose() - (xm * &w).transpose();
    Some((w, intercept))
}

/// Mean squared error of `(w, b)` on rows `x` against `y`, and the variance of `y` around the
/// fit's intercept-free mean (for R²).
fn errors(x: &DMatrix<f64>, y: &DMatrix<f64>, w: &DMatrix<f64>, b: &DVector<f64>) -> f64 {
    let mut pred = x * w;
    for mut r in pred.row_iter_mut() {
        r += b.transpose();
    }
    (pred - y).norm_squared()
}

impl CfModel {
    /// Fits the map from `embeddings` (item id → vector of `dim`) to the item factors on the
    /// items the model knows, and adds the others with their predicted factors (see the module
    /// documentation). `encoder` names the text model, kept with the map.
    pub fn add_cold_items(
        &mut self,
        embeddings: &[(i64, Vec<f32>)],
        encoder: &str,
    ) -> Result<ColdStartReport> {
        let (out, t) = targets(self)?;
        let dim = embeddings.first().map_or(0, |(_, e)| e.len());
        if dim == 0 || embeddings.iter().any(|(_, e)| e.len() != dim) {
            return Err(CoreError::InvalidData(
                "the item embeddings are empty or of different widths".into(),
            ));
        }
        let mut known: Vec<(u32, &[f32])> = Vec::new();
        let mut cold: Vec<(i64, &[f32])> = Vec::new();
        for (id, e) in embeddings {
            match self.items.get(*id) {
                Some(i) => known.push((i, e)),
                None => cold.push((*id, e)),
            }
        }
        known.sort_by_key(|&(i, _)| i);
        known.dedup_by_key(|&mut (i, _)| i);
        cold.sort_by_key(|&(id, _)| id);
        cold.dedup_by_key(|&mut (id, _)| id);
        if known.len() < 2 * FOLDS {
            return Err(CoreError::InvalidData(format!(
                "only {} of the model's items have a text: the map from text to factors needs at \
                 least {}",
                known.len(),
                2 * FOLDS
            )));
        }
        let x = DMatrix::<f64>::from_fn(known.len(), dim, |r, c| f64::from(known[r].1[c]));
        let y = DMatrix::<f64>::from_fn(known.len(), out, |r, c| {
            f64::from(t[known[r].0 as usize * out + c])
        });
        // λ by 5-fold cross-validation (rows by item index, fold = position mod 5).
        let rows_of = |fold: usize, held: bool| -> Vec<usize> {
            (0..known.len())
                .filter(|r| (r % FOLDS == fold) == held)
                .collect()
        };
        let total_var = {
            let m = y.row_mean();
            y.row_iter().map(|r| (r - &m).norm_squared()).sum::<f64>()
        };
        let mut best: Option<(f64, f64)> = None;
        for &l in &LAMBDAS {
            let mut sse = 0.0;
            for fold in 0..FOLDS {
                let (fit, held) = (rows_of(fold, false), rows_of(fold, true));
                let Some((w, b)) = ridge(&x.select_rows(&fit), &y.select_rows(&fit), l) else {
                    sse = f64::INFINITY;
                    break;
                };
                sse += errors(&x.select_rows(&held), &y.select_rows(&held), &w, &b);
            }
            if best.is_none_or(|(_, s)| sse < s) {
                best = Some((l, sse));
            }
        }
        let (lambda, sse) = best.expect("LAMBDAS is not empty");
        let (w, b) = ridge(&x, &y, lambda).ok_or_else(|| {
            CoreError::InvalidData("the map from text to factors cannot be fitted".into())
        })?;
        // Predict and append the cold items.
        let cold: Vec<(i64, Vec<f32>)> = cold.iter().map(|(id, e)| (*id, e.to_vec())).collect();
        let mut weights = Vec::with_capacity((dim + 1) * out);
        for r in 0..dim {
            weights.extend((0..out).map(|c| w[(r, c)] as f32));
        }
        weights.extend(b.iter().map(|&v| v as f32));
        let mut map = ColdStart {
            encoder: encoder.to_string(),
            dim,
            out,
            weights,
            lambda,
            items: Vec::new(),
        };
        let added = self.append(&mut map, &cold);
        let report = ColdStartReport {
            fitted_on: known.len(),
            added,
            lambda,
            cv_r2: if total_var > 0.0 {
                1.0 - sse / total_var
            } else {
                0.0
            },
        };
        self.cold_start = Some(map);
        Ok(report)
    }

    /// Adds the items of `embeddings` the model does not know yet with factors from the map the
    /// model was trained with (new items since training, without retraining); returns how many.
    /// Fails for a model trained without item texts, or embeddings of another width.
    pub fn add_items_from_text(&mut self, embeddings: &[(i64, Vec<f32>)]) -> Result<usize> {
        let Some(mut map) = self.cold_start.take() else {
            return Err(CoreError::InvalidParameter(
                "the model was trained without item texts: it has no map from text to factors"
                    .into(),
            ));
        };
        if embeddings.iter().any(|(_, e)| e.len() != map.dim) {
            self.cold_start = Some(map);
            return Err(CoreError::InvalidData(
                "the item embeddings have another width than the model's map".into(),
            ));
        }
        let mut new: Vec<(i64, Vec<f32>)> = embeddings
            .iter()
            .filter(|(id, _)| self.items.get(*id).is_none())
            .cloned()
            .collect();
        new.sort_by_key(|(id, _)| *id);
        new.dedup_by_key(|(id, _)| *id);
        let added = self.append(&mut map, &new);
        self.cold_start = Some(map);
        Ok(added)
    }

    /// Predicts `items`' factors with `map` and appends them (non-finite predictions are left
    /// out); records them in the map. Returns how many were added.
    fn append(&mut self, map: &mut ColdStart, items: &[(i64, Vec<f32>)]) -> usize {
        let (dim, out) = (map.dim, map.out);
        let mut added = Vec::with_capacity(items.len());
        let mut rows = Vec::with_capacity(items.len() * out);
        for (id, e) in items {
            let mut p: Vec<f64> = map.weights[dim * out..]
                .iter()
                .map(|&v| f64::from(v))
                .collect();
            for (r, &x) in e.iter().enumerate() {
                let w = &map.weights[r * out..(r + 1) * out];
                for (t, &wv) in p.iter_mut().zip(w) {
                    *t += f64::from(x) * f64::from(wv);
                }
            }
            if p.iter().all(|v| v.is_finite()) {
                rows.extend(p.iter().map(|&v| v as f32));
                added.push(*id);
            }
        }
        let ids = std::sync::Arc::make_mut(&mut self.items);
        for &id in &added {
            ids.intern(id);
        }
        match &mut self.body {
            Body::Factors(f) => {
                for r in rows.chunks_exact(out) {
                    f.bi.push(r[0]);
                    f.q.extend_from_slice(&r[1..]);
                }
            }
            Body::Als(a) => a.y.extend_from_slice(&rows),
            Body::Baseline(_) | Body::Knn(_) => unreachable!("only factor models have a map"),
        }
        self.fold_cache = Default::default();
        let n = added.len();
        map.items.extend(added);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cf::foldin::tests::clusters;
    use crate::cf::{train, Algorithm, Dataset};
    use crate::control::{NoMonitor, Threads};

    /// Two taste groups ([`clusters`]) whose items' "texts" say which group they belong to: an
    /// embedding (1, 0, noise) for group one, (0, 1, noise) for group two. A new item of group
    /// one, never rated, is recommended to group one's users above a new item of group two.
    #[test]
    fn a_new_item_reaches_the_users_of_its_kind() {
        let d = clusters();
        let text = |id: i64| -> Vec<f32> {
            let noise = ((id * 7919) % 13) as f32 / 130.0;
            if id < 100 || id == 500 {
                vec![1.0, 0.0, noise]
            } else {
                vec![0.0, 1.0, noise]
            }
        };
        let mut embeddings: Vec<(i64, Vec<f32>)> =
            (1..=12).chain(101..=112).map(|id| (id, text(id))).collect();
        embeddings.push((500, text(500))); // new, group one
        embeddings.push((600, text(600))); // new, group two
        for (algo, options) in [
            (Algorithm::Svd, r#"{"factors": 4, "epochs": 60}"#),
            (Algorithm::Als, r#"{"factors": 4, "binary": false}"#),
        ] {
            let mut m = train(&d, algo, options, &Threads::current(), &mut NoMonitor).unwrap();
            let report = m.add_cold_items(&embeddings, "test").unwrap();
            assert_eq!((report.fitted_on, report.added), (24, 2), "{algo}");
            assert!(
                report.cv_r2 > 0.2,
                "{algo}: the text explains the factors {report:?}"
            );
            for user in [3i64, 17] {
                assert!(
                    m.predict(user, 500) > m.predict(user, 600),
                    "{algo}: user {user} of group one"
                );
            }
            assert!(m.predict(44, 600) > m.predict(44, 500), "{algo}: group two");
            // Recommended like any item, and stored with the model.
            let top: Vec<i64> = m.recommend(3, 30, true).iter().map(|r| r.0).collect();
            assert!(top.contains(&500), "{algo}: {top:?}");
            let mut back = CfModel::from_bytes(&m.to_bytes()).unwrap();
            assert_eq!(back.cold_start, m.cold_start);
            assert_eq!(back.predict(3, 500), m.predict(3, 500));
            // An item that arrives after training gets its factors from the stored map; the
            // same text gives the same factors as at training.
            let added = back
                .add_items_from_text(&[(700, text(500)), (500, text(500))])
                .unwrap();
            assert_eq!(added, 1, "{algo}: item 500 is known");
            assert!(
                (back.predict(3, 700) - back.predict(3, 500)).abs() < 1e-5,
                "{algo}"
            );
        }
    }

    /// k-NN and baseline models have no item factors to predict: a clear error.
    #[test]
    fn models_without_item_factors_refuse() {
        let rows: Vec<(i64, i64, f32)> = (0..200)
            .map(|n| ((n % 17) as i64, ((n * 7) % 23) as i64, 1.0 + (n % 5) as f32))
            .collect();
        let d = Dataset::from_triples(&rows).unwrap();
        let mut m = train(
            &d,
            Algorithm::KnnItem,
            "{}",
            &Threads::current(),
            &mut NoMonitor,
        )
        .unwrap();
        let e = m
            .add_cold_items(&[(1, vec![1.0])], "test")
            .unwrap_err()
            .to_string();
        assert!(e.contains("svd, svdpp or als"), "{e}");
        let e = m
            .add_items_from_text(&[(1, vec![1.0])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("without item texts"), "{e}");
    }
}
