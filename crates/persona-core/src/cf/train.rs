//! One entry point that trains any algorithm from a name and JSON options, as `cf_train` calls it.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::als::{train_als, AlsParams};
use super::baseline::{BaselineParams, Biases};
use super::data::Dataset;
use super::knn::{Based, KnnModel, KnnParams};
use super::mf::{grid_bytes, train_svd, train_svdpp, MfParams};
use super::model::{Body, CfModel};
use crate::control::{Monitor, Progress, Threads};
use crate::{CoreError, Result};

/// The algorithms `cf_train` knows, by their SQL names.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// Global mean plus regularised user and item biases (ALS).
    Baseline,
    /// Biased matrix factorisation by SGD (Funk SVD).
    Svd,
    /// SVD++: biased MF plus an implicit term from which items each user rated. The default.
    #[default]
    Svdpp,
    /// User-based k-NN.
    KnnUser,
    /// Item-based k-NN.
    KnnItem,
    /// Implicit-feedback ALS (Hu, Koren, Volinsky) for clicks, views and purchases; ranks items.
    Als,
}

/// `(name, summary)` of every algorithm, in the order the README lists them.
pub const ALGORITHMS: &[(&str, &str)] = &[
    (
        "svdpp",
        "SVD++ (default): biased matrix factorisation with implicit feedback",
    ),
    ("svd", "biased matrix factorisation by SGD"),
    ("baseline", "global mean + regularised user and item biases"),
    ("knn_user", "user-based k nearest neighbours"),
    ("knn_item", "item-based k nearest neighbours"),
    (
        "als",
        "implicit-feedback alternating least squares, for top-N ranking",
    ),
];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Baseline => "baseline",
            Algorithm::Svd => "svd",
            Algorithm::Svdpp => "svdpp",
            Algorithm::KnnUser => "knn_user",
            Algorithm::KnnItem => "knn_item",
            Algorithm::Als => "als",
        }
    }
    /// Implicit models rank items; their scores are not ratings.
    pub fn is_implicit(self) -> bool {
        self == Algorithm::Als
    }
    /// Whether training starts from random numbers (and so takes a `seed`).
    pub fn is_seeded(self) -> bool {
        matches!(self, Algorithm::Svd | Algorithm::Svdpp | Algorithm::Als)
    }
}

/// The algorithm's options (a JSON object) with `seed` added when the algorithm takes one and
/// the options do not already set it: one seed given to `cf_train` both splits the rows and
/// starts the training.
pub fn seeded_options(algo: Algorithm, options: &str, seed: u64) -> String {
    let mut o: serde_json::Map<String, serde_json::Value> = if options.trim().is_empty() {
        serde_json::Map::new()
    } else {
        match serde_json::from_str(options) {
            Ok(o) => o,
            // Not an object: left for the algorithm's parser to refuse with its message.
            Err(_) => return options.to_string(),
        }
    };
    if algo.is_seeded() && !o.contains_key("seed") {
        o.insert("seed".into(), seed.into());
    }
    serde_json::Value::Object(o).to_string()
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Algorithm> {
        let s = s.trim().to_ascii_lowercase();
        ALGORITHMS
            .iter()
            .map(|(n, _)| *n)
            .find(|n| *n == s)
            .and_then(|n| serde_json::from_value(serde_json::Value::String(n.into())).ok())
            .ok_or_else(|| {
                let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
                CoreError::InvalidParameter(format!(
                    "unknown algorithm \"{s}\"; valid algorithms: {}",
                    names.join(", ")
                ))
            })
    }
}

/// Parses algorithm options strictly: unknown keys are an error naming the valid ones.
fn parse<P: DeserializeOwned + Serialize>(algo: Algorithm, json: &str) -> Result<P> {
    let json = if json.trim().is_empty() { "{}" } else { json };
    serde_json::from_str(json).map_err(|e| {
        // serde_json appends " at line L column C": positions in JSON we assembled mean nothing to users.
        let msg = e.to_string();
        let msg = msg.split(" at line ").next().unwrap_or(&msg);
        CoreError::InvalidParameter(format!("bad option for algorithm \"{algo}\": {msg}"))
    })
}

/// Default options of an algorithm, applied under the user's.
fn params_json<P: Serialize>(p: &P) -> String {
    serde_json::to_string(p).expect("parameters serialise")
}

/// Bytes per source row that the rows as read hold for the whole training (user and item ids,
/// rating: 8 + 8 + 8) and the index list of the rows trained on (8).
const HELD_ROW_BYTES: usize = 32;
/// Bytes per source row at the peak of reading: the rows as read plus canonicalising them (one
/// more array at a time and the sort's order, 8 + 8).
const READ_ROW_BYTES: usize = 24 + 16;

/// Bytes reading `rows` source rows needs at its peak, checked before reading (from the
/// planner's row count) so that a read that could not fit is refused before it starts.
pub fn estimate_read_bytes(rows: usize) -> usize {
    rows.saturating_mul(READ_ROW_BYTES)
}

/// Bytes the rows as read keep while the model trains ([`estimate_bytes`] counts the rest).
pub fn estimate_held_rows_bytes(rows: usize) -> usize {
    rows.saturating_mul(HELD_ROW_BYTES)
}

/// What a backend holds whatever it trains (the decoded code and its caches, measured at about
/// 15 MB), counted in both of a training's peaks ([`estimate_peak_bytes`]).
const BACKEND_BYTES: usize = 16 << 20;

/// The product of `factors`, saturating at usize::MAX: options such as max_neighbors can be
/// absurd, and an estimate must then exceed every memory limit instead of overflowing into a
/// small number.
fn m(factors: &[usize]) -> usize {
    factors.iter().fold(1usize, |a, &b| a.saturating_mul(b))
}

/// Bytes the trained model and its training need, estimated before training starts so a too-large
/// job is refused up front instead of being killed by the operating system.
pub fn estimate_bytes(d: &Dataset, algo: Algorithm, options: &str) -> Result<usize> {
    let (u, i, r) = (d.n_users(), d.n_items(), d.n_ratings());
    let threads = rayon::current_num_threads();
    // id maps, two CSRs, the seen list, and what a backend holds whatever it trains.
    let base = m(&[u + i, 24])
        .saturating_add(m(&[r, 12, 3]))
        .saturating_add(BACKEND_BYTES);
    let model = match algo {
        Algorithm::Baseline => m(&[u + i, 4]),
        Algorithm::Svd => {
            let p: MfParams = parse_mf(algo, options)?;
            m(&[u + i, p.factors, 4]).saturating_add(grid_bytes(d, p.factors))
        }
        Algorithm::Svdpp => {
            let p: MfParams = parse_mf(algo, options)?;
            m(&[u + 2 * i, p.factors, 4]).saturating_add(m(&[r, 12]))
        }
        Algorithm::KnnUser | Algorithm::KnnItem => {
            let p: KnnParams = parse(algo, options)?;
            let rows = if algo == Algorithm::KnnUser { u } else { i };
            // Neighbour lists, per-thread accumulators, and the centred copy of the ratings.
            m(&[rows, p.max_neighbors, 8])
                .saturating_add(m(&[threads, rows.max(u).max(i), 16]))
                .saturating_add(m(&[r, 8]))
        }
        Algorithm::Als => {
            let p: AlsParams = parse(algo, options)?;
            // x and y while they train (cache-line aligned), and their copies into the model.
            m(&[u + i, p.factors, 4, 2]).saturating_add(m(&[threads, p.factors, p.factors, 8]))
        }
    };
    Ok(base.saturating_add(model))
}

/// The most memory a `cf_train` needs at any point after reading `rows` source rows: the larger
/// of its two peaks, each checked against `persona.max_training_memory` before either starts.
/// - Training: the rows as read ([`estimate_held_rows_bytes`]) and [`estimate_bytes`].
/// - Storing: the model in memory, its bytes, and two copies PostgreSQL makes of a bytea while
///   it inserts it (the parameter's datum and the tuple that TOAST then splits);
///   [`estimate_model_bytes`] bounds the bytes. `cf_train` frees the rows as read before it
///   stores, but the allocator may keep their pages (measured: after a training that held 83 MB
///   the store of a 19 MB model took the backend to 117 MB), so they are counted here too.
///
/// With few ratings over a large catalogue (1M ratings over 162,541 users x 59,047 items) the
/// store is the larger peak: measured through SQL, `svdpp` held 207 MB at its peak against a
/// training estimate of 136 MB.
pub fn estimate_peak_bytes(
    d: &Dataset,
    algo: Algorithm,
    options: &str,
    rows: usize,
) -> Result<usize> {
    let held = estimate_held_rows_bytes(rows);
    let training = estimate_bytes(d, algo, options)?.saturating_add(held);
    let (in_memory, stored) = model_bytes(d, algo, options, rows)?;
    let storing = BACKEND_BYTES
        .saturating_add(held)
        .saturating_add(in_memory)
        .saturating_add(stored.saturating_mul(3));
    Ok(training.max(storing))
}

/// An upper bound of the bytes of the model `cf_train` stores ([`crate::cf::CfModel::to_bytes`])
/// when trained on `d` after reading `rows` rows (see [`model_bytes`]), before training. Not
/// counted: the map from item texts to factors that `item_text` adds (its embedding width times
/// the factors, a few hundred KB).
pub fn estimate_model_bytes(
    d: &Dataset,
    algo: Algorithm,
    options: &str,
    rows: usize,
) -> Result<usize> {
    Ok(model_bytes(d, algo, options, rows)?.1)
}

/// Upper bounds of a model's bytes in memory and stored (postcard: an integer below n as a varint
/// of [`varint_bytes`]`(n)` bytes, an id of up to 10, floats as 4 bytes).
///
/// `rows` is the number of rows read: those held out for the report join the ratings the model
/// records as seen, and a k-NN model then keeps the ratings it predicts from apart from those.
fn model_bytes(d: &Dataset, algo: Algorithm, options: &str, rows: usize) -> Result<(usize, usize)> {
    let (u, i, r) = (d.n_users(), d.n_items(), d.n_ratings());
    let (seen, apart) = (r.max(rows), if rows > r { r } else { 0 });
    let (index, offset) = (varint_bytes(u.max(i)), varint_bytes(seen));
    // Id maps (a vector of ids and a hash index in memory; the ids stored), the ratings seen
    // (a CSR by user), the parameters' JSON and the header.
    let mut in_memory = m(&[u + i, 48])
        .saturating_add(m(&[seen, 8]))
        .saturating_add(m(&[u + 1, 4]));
    let mut stored = (64usize << 10)
        .saturating_add(m(&[u + i, 10]))
        .saturating_add(m(&[seen, index + 4]))
        .saturating_add(m(&[u + 1, offset]));
    // The algorithm's own part: what it stores is what it holds, floats for floats.
    let (mem, ser) = match algo {
        Algorithm::Baseline => (m(&[u + i, 4]), m(&[u + i, 4])),
        Algorithm::Svd | Algorithm::Svdpp => {
            let k = parse_mf(algo, options)?.factors;
            let b = m(&[u + i, k.saturating_add(1), 4]);
            (b, b)
        }
        Algorithm::Als => {
            let k = parse::<AlsParams>(algo, options)?.factors;
            let b = m(&[u + i, k, 4]);
            (b, b)
        }
        Algorithm::KnnUser | Algorithm::KnnItem => {
            let p: KnnParams = parse(algo, options)?;
            let (n, other) = if algo == Algorithm::KnnUser {
                (u, &d.by_item)
            } else {
                (i, &d.by_user)
            };
            // A row's neighbours share a column with it: at most max_neighbors, and in all at
            // most the co-rated pairs (the sum of each column's length squared).
            let pairs = (0..other.n_rows() as u32)
                .map(|c| m(&[other.row_len(c), other.row_len(c)]))
                .fold(0usize, usize::saturating_add);
            let lists = m(&[n, p.max_neighbors.min(n)]).min(pairs);
            // Neighbour lists (index, similarity), their offsets, the row means and biases,
            // and the ratings it predicts from when they are not those seen (see `apart`).
            let mem = m(&[lists, 8])
                .saturating_add(m(&[n + 1, 8]))
                .saturating_add(m(&[n + u + i, 4]))
                .saturating_add(m(&[apart, 8]))
                .saturating_add(m(&[u.max(i) + 1, 4]));
            let ser = m(&[lists, index + 4])
                .saturating_add(m(&[n + 1, varint_bytes(lists)]))
                .saturating_add(m(&[n + u + i, 4]))
                .saturating_add(m(&[apart, index + 4]))
                .saturating_add(m(&[u.max(i) + 1, offset]));
            (mem, ser)
        }
    };
    in_memory = in_memory.saturating_add(mem);
    stored = stored.saturating_add(ser);
    Ok((in_memory, stored))
}

/// Bytes of the longest varint (7 bits a byte) of a number below `n`.
fn varint_bytes(n: usize) -> usize {
    ((usize::BITS - n.leading_zeros()) as usize)
        .div_ceil(7)
        .max(1)
}

fn parse_mf(algo: Algorithm, options: &str) -> Result<MfParams> {
    let defaults = if algo == Algorithm::Svdpp {
        MfParams::svdpp()
    } else {
        MfParams::svd()
    };
    // Overlay the user's keys on the algorithm's defaults, then parse strictly.
    let mut v = serde_json::to_value(defaults).expect("parameters serialise");
    let user: serde_json::Value = serde_json::from_str(if options.trim().is_empty() {
        "{}"
    } else {
        options
    })
    .map_err(|e| CoreError::InvalidParameter(format!("options are not valid JSON: {e}")))?;
    let serde_json::Value::Object(user) = user else {
        return Err(CoreError::InvalidParameter(
            "options must be a JSON object".into(),
        ));
    };
    let obj = v.as_object_mut().expect("struct serialises to an object");
    for (key, val) in user {
        obj.insert(key, val);
    }
    parse(algo, &v.to_string())
}

/// Trains `algo` on `d` with JSON `options` (algorithm hyper-parameters only).
pub fn train(
    d: &Dataset,
    algo: Algorithm,
    options: &str,
    threads: &Threads,
    monitor: &mut dyn Monitor,
) -> Result<CfModel> {
    let (body, params) = match algo {
        Algorithm::Baseline => {
            let p: BaselineParams = parse(algo, options)?;
            p.validate()?;
            monitor.step(&Progress::epoch("baseline", 0, 1, None))?;
            let b = threads.run_watched(monitor, |stop| Biases::fit_until(d, &p, stop))?;
            (Body::Baseline(b), params_json(&p))
        }
        Algorithm::Svd => {
            let p = parse_mf(algo, options)?;
            (Body::Factors(train_svd(d, &p, monitor)?), params_json(&p))
        }
        Algorithm::Svdpp => {
            let p = parse_mf(algo, options)?;
            (Body::Factors(train_svdpp(d, &p, monitor)?), params_json(&p))
        }
        Algorithm::KnnUser | Algorithm::KnnItem => {
            let mut p: KnnParams = parse(algo, options)?;
            p.based_on = if algo == Algorithm::KnnUser {
                Based::User
            } else {
                Based::Item
            };
            monitor.step(&Progress::epoch("similarities", 0, 1, None))?;
            let m = threads.run_watched(monitor, |stop| KnnModel::train_until(d, &p, stop))?;
            (Body::Knn(Box::new(m)), params_json(&p))
        }
        Algorithm::Als => {
            let p: AlsParams = parse(algo, options)?;
            (
                Body::Als(train_als(d, &p, threads, monitor)?),
                params_json(&p),
            )
        }
    };
    // A k-NN body already holds the id maps and ratings: the model shares them. The other
    // models predict without the ratings, so they keep only which items each user rated.
    let (users, items, seen) = match &body {
        Body::Knn(k) => {
            let (u, i, r) = k.shared();
            (Arc::clone(u), Arc::clone(i), Arc::clone(r))
        }
        _ => (
            Arc::new(d.users.clone()),
            Arc::new(d.items.clone()),
            Arc::new(d.by_user.pattern()),
        ),
    };
    let model = CfModel {
        algorithm: algo,
        params,
        users,
        items,
        seen,
        global_mean: d.global_mean,
        min_rating: d.min_rating,
        max_rating: d.max_rating,
        body,
        fold_cache: Default::default(),
        user_panels: Default::default(),
        cold_start: None,
    };
    if !model.is_finite() {
        return Err(CoreError::InvalidParameter(format!(
            "training \"{algo}\" diverged: the model has NaN or infinite parameters; lower the \
             learning rate (lr) or raise the regularisation (reg)"
        )));
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed reaches the algorithms that start from random numbers, unless they set their own.
    #[test]
    fn the_seed_reaches_seeded_algorithms() {
        assert_eq!(seeded_options(Algorithm::Als, "{}", 7), r#"{"seed":7}"#);
        assert_eq!(
            seeded_options(Algorithm::Svd, r#"{"factors": 3}"#, 7),
            r#"{"factors":3,"seed":7}"#
        );
        assert_eq!(
            seeded_options(Algorithm::Svdpp, r#"{"seed": 1}"#, 7),
            r#"{"seed":1}"#
        );
        assert_eq!(seeded_options(Algorithm::KnnItem, "{}", 7), "{}");
        assert_eq!(seeded_options(Algorithm::Baseline, "", 7), "{}");
        assert_eq!(seeded_options(Algorithm::Als, "[1]", 7), "[1]");
    }
}
