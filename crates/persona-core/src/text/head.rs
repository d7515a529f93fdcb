//! A linear softmax head on frozen encoder embeddings: training (multinomial logistic
//! regression), application and held-out evaluation.
//!
//! Training minimises the (optionally class-weighted) mean cross-entropy plus an L2 penalty on
//! the weights (not the biases):
//!
//! ```text
//! J(W, b) = Σᵢ wᵢ · (logsumexp(W xᵢ + b) − (W xᵢ + b)[yᵢ]) / Σᵢ wᵢ  +  l2/2 · ‖W‖²
//! ```
//!
//! with argmin's L-BFGS (More–Thuente line search) in `f64`, from all-zero parameters. The
//! objective is smooth and, for `l2 > 0`, strongly convex in `W`, so L-BFGS reaches the unique
//! optimum in a few dozen iterations for embedding sizes of a few hundred; full-batch Newton
//! would need a `(K·D)²` Hessian (14 M entries for 10 labels on 384 dimensions) and plain
//! gradient descent needs step-size tuning and far more iterations. The result is deterministic:
//! no randomness is involved (the seed of [`holdout_split`] only chooses the held-out rows), and
//! the loss and gradient are summed over fixed blocks of examples in a fixed order, so the
//! parallel evaluation ([`train_softmax_head_with`] on a [`Threads`] pool) gives the same head
//! bit for bit on any number of threads.

use std::cell::{Cell, RefCell};

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::math::{log_softmax_f64, softmax};
use crate::control::{Monitor, NoMonitor, Progress, Threads};
use crate::{CoreError, Result};

/// Examples per block of the loss/gradient sum: the unit of parallel work, and the fixed
/// grouping that keeps the sum's rounding independent of the thread count.
const BLOCK: usize = 1024;

/// A trained linear classifier over pooled, L2-normalised embeddings:
/// `logits = weights · embedding + bias`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Head {
    /// Row-major `n_labels × dim` matrix.
    pub weights: Vec<f32>,
    /// One bias per label.
    pub bias: Vec<f32>,
    /// Label names, in logit order.
    pub labels: Vec<String>,
}

impl Head {
    /// Number of labels.
    pub fn n_labels(&self) -> usize {
        self.labels.len()
    }

    /// Embedding dimension the head expects (0 when it has no labels).
    pub fn dim(&self) -> usize {
        self.weights
            .len()
            .checked_div(self.labels.len())
            .unwrap_or(0)
    }

    /// Checks the shapes (at least two labels, `weights` a whole `n_labels × dim` matrix,
    /// one bias per label, every value finite) and, when given, the embedding dimension.
    pub fn validate(&self, dim: Option<usize>) -> Result<()> {
        let k = self.labels.len();
        if k < 2 {
            return Err(CoreError::InvalidParameter(format!(
                "a head needs at least two labels, got {k}"
            )));
        }
        if self.bias.len() != k {
            return Err(CoreError::InvalidParameter(format!(
                "the head has {k} labels but {} biases",
                self.bias.len()
            )));
        }
        if self.weights.is_empty() || !self.weights.len().is_multiple_of(k) {
            return Err(CoreError::InvalidParameter(format!(
                "the head's {} weights do not form a {k} × dim matrix",
                self.weights.len()
            )));
        }
        if let Some(d) = dim {
            if self.dim() != d {
                return Err(CoreError::InvalidParameter(format!(
                    "the head expects {}-dimensional embeddings but the encoder produces {d}",
                    self.dim()
                )));
            }
        }
        if self
            .weights
            .iter()
            .chain(self.bias.iter())
            .any(|v| !v.is_finite())
        {
            return Err(CoreError::InvalidParameter(
                "the head has non-finite weights".into(),
            ));
        }
        Ok(())
    }

    /// The logits of one embedding. Errors when its length is not [`Head::dim`].
    pub fn logits(&self, embedding: &[f32]) -> Result<Vec<f32>> {
        let d = self.dim();
        if embedding.len() != d || d == 0 {
            return Err(CoreError::InvalidData(format!(
                "the head expects {d}-dimensional embeddings, got {}",
                embedding.len()
            )));
        }
        Ok(self
            .weights
            .chunks_exact(d)
            .zip(&self.bias)
            .map(|(row, b)| {
                let dot: f64 = row
                    .iter()
                    .zip(embedding)
                    .map(|(w, x)| f64::from(*w) * f64::from(*x))
                    .sum();
                (dot + f64::from(*b)) as f32
            })
            .collect())
    }

    /// Class probabilities (softmax of the logits) of one embedding.
    pub fn probabilities(&self, embedding: &[f32]) -> Result<Vec<f32>> {
        Ok(softmax(&self.logits(embedding)?))
    }
}

/// Options of [`train_softmax_head`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HeadTrainOptions {
    /// L2 penalty on the weights, relative to the mean loss (`l2 = 1/(C·n)` in scikit-learn's
    /// terms). Must be positive. Default 1e-3.
    pub l2: f64,
    /// Most L-BFGS iterations. Default 500.
    pub max_iterations: u64,
    /// Weigh each example by `n / (n_classes · n_its_class)` (scikit-learn's
    /// `class_weight="balanced"`), so that rare labels count as much as frequent ones.
    /// Default false.
    pub balanced: bool,
    /// Stop when the gradient's norm falls below this. Default 1e-6.
    pub tolerance: f64,
}

impl Default for HeadTrainOptions {
    fn default() -> Self {
        HeadTrainOptions {
            l2: 1e-3,
            max_iterations: 500,
            balanced: false,
            tolerance: 1e-6,
        }
    }
}

/// A trained head with how the optimisation went.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainedHead {
    /// The head.
    pub head: Head,
    /// L-BFGS iterations done.
    pub iterations: u64,
    /// Final value of the objective (weighted mean cross-entropy plus penalty).
    pub loss: f64,
    /// Whether the gradient tolerance was reached (else the iteration limit stopped it).
    pub converged: bool,
}

struct Problem<'a, E> {
    x: &'a [E],
    y: &'a [usize],
    /// Example weights divided by their sum.
    w: Vec<f64>,
    d: usize,
    k: usize,
    l2: f64,
    threads: &'a Threads,
    monitor: RefCell<&'a mut dyn Monitor>,
    max_iterations: u64,
    evaluations: Cell<usize>,
    /// The monitor's error, kept here because argmin turns an error inside the line search
    /// into an ordinary termination.
    stopped: &'a RefCell<Option<CoreError>>,
    /// The last point evaluated with its loss and gradient: argmin asks for the cost and the
    /// gradient of the same point separately, and one pass gives both.
    last: RefCell<Option<Evaluated>>,
}

/// A point of the parameter space with its loss and gradient.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

/// `Σ w[j]·x[j]` with eight independent accumulators, so the sum pipelines and vectorises
/// (a single running `f64` sum is bound by the adder's latency). Fixed order: deterministic.
fn dot(w: &[f64], x: &[f32]) -> f64 {
    let mut acc = [0.0f64; 8];
    let (wc, xc) = (w.chunks_exact(8), x.chunks_exact(8));
    let (wr, xr) = (wc.remainder(), xc.remainder());
    for (a, b) in wc.zip(xc) {
        for j in 0..8 {
            acc[j] += a[j] * f64::from(b[j]);
        }
    }
    let tail: f64 = wr.iter().zip(xr).map(|(a, &b)| a * f64::from(b)).sum();
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

impl<E: AsRef<[f32]> + Sync> Problem<'_, E> {
    /// Loss and gradient at `theta`, from the last evaluation when it was at the same point.
    fn loss_and_gradient(
        &self,
        theta: &[f64],
    ) -> std::result::Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some((p, loss, grad)) = self.last.borrow().as_ref() {
            if p.as_slice() == theta {
                return Ok((*loss, grad.clone()));
            }
        }
        let (loss, grad) = self.eval(theta)?;
        *self.last.borrow_mut() = Some((theta.to_vec(), loss, grad.clone()));
        Ok((loss, grad))
    }

    /// Loss and gradient at `theta = [W (k×d, row-major), b (k)]`; the monitor is called first
    /// (on the caller's thread), and its error stops the optimisation.
    fn eval(&self, theta: &[f64]) -> std::result::Result<(f64, Vec<f64>), argmin::core::Error> {
        if let Some(e) = self.stopped.borrow().as_ref() {
            return Err(e.clone().into());
        }
        let evaluations = self.evaluations.get();
        self.evaluations.set(evaluations + 1);
        let step = self.monitor.borrow_mut().step(&Progress::epoch(
            "head training",
            evaluations,
            2 * self.max_iterations as usize,
            None,
        ));
        if let Err(e) = step {
            *self.stopped.borrow_mut() = Some(e.clone());
            return Err(e.into());
        }
        let (d, k) = (self.d, self.k);
        let (x, y, w) = (self.x, self.y, self.w.as_slice());
        let (wm, b) = theta.split_at(k * d);
        let block = |start: usize| -> (f64, Vec<f64>) {
            let mut grad = vec![0.0; theta.len()];
            let mut loss = 0.0;
            let mut z = vec![0.0; k];
            for i in start..(start + BLOCK).min(x.len()) {
                let xi = x[i].as_ref();
                for (c, zc) in z.iter_mut().enumerate() {
                    let row = &wm[c * d..(c + 1) * d];
                    *zc = b[c] + dot(row, xi);
                }
                let logp = log_softmax_f64(&z);
                let wi = w[i];
                loss -= wi * logp[y[i]];
                for c in 0..k {
                    let delta = wi * (logp[c].exp() - if c == y[i] { 1.0 } else { 0.0 });
                    let g = &mut grad[c * d..(c + 1) * d];
                    for (gj, &xj) in g.iter_mut().zip(xi) {
                        *gj += delta * f64::from(xj);
                    }
                    grad[k * d + c] += delta;
                }
            }
            (loss, grad)
        };
        let starts: Vec<usize> = (0..x.len()).step_by(BLOCK).collect();
        let parts: Vec<(f64, Vec<f64>)> = self
            .threads
            .run(|| starts.par_iter().map(|&s| block(s)).collect());
        // Summed in block order: the same rounding on any number of threads.
        let mut loss = 0.5 * self.l2 * wm.iter().map(|v| v * v).sum::<f64>();
        let mut grad = vec![0.0; theta.len()];
        for (gj, v) in grad[..k * d].iter_mut().zip(wm) {
            *gj = self.l2 * v;
        }
        for (l, g) in parts {
            loss += l;
            for (a, b) in grad.iter_mut().zip(&g) {
                *a += b;
            }
        }
        Ok((loss, grad))
    }
}

impl<E: AsRef<[f32]> + Sync> CostFunction for Problem<'_, E> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Self::Param) -> std::result::Result<f64, argmin::core::Error> {
        Ok(self.loss_and_gradient(p)?.0)
    }
}

impl<E: AsRef<[f32]> + Sync> Gradient for Problem<'_, E> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Self::Param) -> std::result::Result<Vec<f64>, argmin::core::Error> {
        Ok(self.loss_and_gradient(p)?.1)
    }
}

fn check_examples<E: AsRef<[f32]>>(
    embeddings: &[E],
    labels: &[usize],
    n_labels: usize,
) -> Result<usize> {
    if embeddings.is_empty() {
        return Err(CoreError::InvalidData("no examples".into()));
    }
    if embeddings.len() != labels.len() {
        return Err(CoreError::InvalidData(format!(
            "{} embeddings but {} labels",
            embeddings.len(),
            labels.len()
        )));
    }
    let d = embeddings[0].as_ref().len();
    if d == 0 {
        return Err(CoreError::InvalidData("empty embeddings".into()));
    }
    for (i, e) in embeddings.iter().enumerate() {
        let e = e.as_ref();
        if e.len() != d {
            return Err(CoreError::InvalidData(format!(
                "embedding {i} has {} dimensions, the first has {d}",
                e.len()
            )));
        }
        if e.iter().any(|v| !v.is_finite()) {
            return Err(CoreError::InvalidData(format!(
                "embedding {i} has non-finite values"
            )));
        }
    }
    if let Some((i, &y)) = labels.iter().enumerate().find(|(_, &y)| y >= n_labels) {
        return Err(CoreError::InvalidData(format!(
            "label {y} of example {i} is out of range: there are {n_labels} labels"
        )));
    }
    Ok(d)
}

/// Trains a softmax head on `embeddings` (one per example, all the same length) with labels
/// `labels[i] < label_names.len()`, on the calling thread.
///
/// Errors: fewer than two label names, no examples, mismatched lengths, non-finite values, a
/// label out of range, fewer than two distinct labels among the examples, a non-positive `l2`,
/// or an optimiser failure.
pub fn train_softmax_head<E: AsRef<[f32]> + Sync>(
    embeddings: &[E],
    labels: &[usize],
    label_names: &[String],
    opts: &HeadTrainOptions,
) -> Result<TrainedHead> {
    train_softmax_head_with(
        embeddings,
        labels,
        label_names,
        opts,
        &Threads::current(),
        &mut NoMonitor,
    )
}

/// [`train_softmax_head`] with the loss and gradient summed on `threads` (the same result on
/// any number of them), and `monitor` called on the caller's thread before each evaluation of
/// the objective (two or three per L-BFGS iteration); its error stops training and is returned.
pub fn train_softmax_head_with<E: AsRef<[f32]> + Sync>(
    embeddings: &[E],
    labels: &[usize],
    label_names: &[String],
    opts: &HeadTrainOptions,
    threads: &Threads,
    monitor: &mut dyn Monitor,
) -> Result<TrainedHead> {
    let k = label_names.len();
    if k < 2 {
        return Err(CoreError::InvalidParameter(format!(
            "a classifier needs at least two labels, got {k}"
        )));
    }
    if !(opts.l2 > 0.0 && opts.l2.is_finite()) {
        return Err(CoreError::InvalidParameter(format!(
            "l2 must be a positive number, got {}",
            opts.l2
        )));
    }
    if !(opts.tolerance >= 0.0 && opts.tolerance.is_finite()) {
        return Err(CoreError::InvalidParameter(format!(
            "tolerance must be a non-negative number, got {}",
            opts.tolerance
        )));
    }
    let d = check_examples(embeddings, labels, k)?;
    let n = embeddings.len();
    let mut counts = vec![0usize; k];
    for &y in labels {
        counts[y] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count();
    if present < 2 {
        return Err(CoreError::InvalidData(
            "the examples need at least two distinct labels".into(),
        ));
    }
    let w: Vec<f64> = labels
        .iter()
        .map(|&y| {
            if opts.balanced {
                n as f64 / (present as f64 * counts[y] as f64)
            } else {
                1.0
            }
        })
        .collect();
    let w_sum: f64 = w.iter().sum();
    let stopped = RefCell::new(None);
    let problem = Problem {
        x: embeddings,
        y: labels,
        w: w.iter().map(|v| v / w_sum).collect(),
        d,
        k,
        l2: opts.l2,
        threads,
        monitor: RefCell::new(monitor),
        max_iterations: opts.max_iterations,
        evaluations: Cell::new(0),
        stopped: &stopped,
        last: RefCell::new(None),
    };
    let optimiser_error = |e: argmin::core::Error| {
        CoreError::InvalidData(format!("the head's optimisation failed: {e}"))
    };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(opts.tolerance)
        .and_then(|s| s.with_tolerance_cost(0.0))
        .map_err(optimiser_error)?;
    let init = vec![0.0f64; k * d + k];
    let result = Executor::new(problem, solver)
        .configure(|state| state.param(init).max_iters(opts.max_iterations))
        .timer(false)
        .run()
        .map_err(|e| match e.downcast::<CoreError>() {
            Ok(core) => core,
            Err(e) => optimiser_error(e),
        });
    if let Some(e) = stopped.replace(None) {
        return Err(e);
    }
    let result = result?;
    let state = result.state();
    let theta = state
        .get_best_param()
        .or(state.get_param())
        .ok_or_else(|| CoreError::InvalidData("the optimiser returned no parameters".into()))?;
    if theta.len() != k * d + k || theta.iter().any(|v| !v.is_finite()) {
        return Err(CoreError::InvalidData(
            "the head's optimisation diverged".into(),
        ));
    }
    let converged = matches!(
        state.get_termination_reason(),
        Some(TerminationReason::SolverConverged)
    );
    let head = Head {
        weights: theta[..k * d].iter().map(|&v| v as f32).collect(),
        bias: theta[k * d..].iter().map(|&v| v as f32).collect(),
        labels: label_names.to_vec(),
    };
    Ok(TrainedHead {
        head,
        iterations: state.get_iter(),
        loss: state.get_best_cost(),
        converged,
    })
}

/// Quality of a head on held-out examples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadEvaluation {
    /// Number of examples.
    pub n: usize,
    /// Share of examples whose most probable label is the true one.
    pub accuracy: f64,
    /// Unweighted mean of the per-label F1 over the labels that occur among the true or the
    /// predicted labels (scikit-learn's `f1_score(average="macro")`, 0 where undefined).
    pub macro_f1: f64,
    /// Area under the ROC curve of the positive label's probability (ties count one half); only
    /// for two labels, and `None` when the examples hold only one of them.
    pub roc_auc: Option<f64>,
    /// Mean negative log-probability of the true label.
    pub log_loss: f64,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<u64>>,
}

/// Evaluates `head` on `embeddings` with true `labels`. `positive` is the label whose
/// probability ranks the examples for the ROC AUC (default 1), used only with two labels.
pub fn evaluate_head<E: AsRef<[f32]>>(
    head: &Head,
    embeddings: &[E],
    labels: &[usize],
    positive: Option<usize>,
) -> Result<HeadEvaluation> {
    head.validate(None)?;
    let k = head.n_labels();
    check_examples(embeddings, labels, k)?;
    let positive = positive.unwrap_or(1);
    if positive >= k {
        return Err(CoreError::InvalidParameter(format!(
            "positive label {positive} is out of range: there are {k} labels"
        )));
    }
    let mut confusion = vec![vec![0u64; k]; k];
    let mut log_loss = 0.0;
    let mut scored: Vec<(f64, bool)> = Vec::with_capacity(labels.len());
    for (e, &y) in embeddings.iter().zip(labels) {
        let logits = head.logits(e.as_ref())?;
        let z: Vec<f64> = logits.iter().map(|&v| f64::from(v)).collect();
        let logp = log_softmax_f64(&z);
        let pred = argmax(&z);
        confusion[y][pred] += 1;
        log_loss -= logp[y];
        scored.push((logp[positive].exp(), y == positive));
    }
    let n = labels.len();
    let correct: u64 = (0..k).map(|c| confusion[c][c]).sum();
    let mut f1_sum = 0.0;
    let mut f1_count = 0usize;
    for (c, row) in confusion.iter().enumerate() {
        let tp = row[c] as f64;
        let actual: u64 = row.iter().sum();
        let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
        if actual == 0 && predicted == 0 {
            continue;
        }
        let denom = actual as f64 + predicted as f64;
        f1_sum += if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        f1_count += 1;
    }
    let roc_auc = if k == 2 { roc_auc(&scored) } else { None };
    Ok(HeadEvaluation {
        n,
        accuracy: correct as f64 / n as f64,
        macro_f1: if f1_count > 0 {
            f1_sum / f1_count as f64
        } else {
            0.0
        },
        roc_auc,
        log_loss: log_loss / n as f64,
        confusion,
    })
}

fn argmax(z: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in z.iter().enumerate() {
        if *v > z[best] {
            best = i;
        }
    }
    best
}

/// ROC AUC by the Mann–Whitney statistic with mid-ranks for ties; `None` without both classes.
pub fn roc_auc(scored: &[(f64, bool)]) -> Option<f64> {
    let n_pos = scored.iter().filter(|s| s.1).count();
    let n_neg = scored.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..scored.len()).collect();
    order.sort_by(|&a, &b| scored[a].0.total_cmp(&scored[b].0));
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scored[order[j + 1]].0 == scored[order[i]].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += mid * order[i..=j].iter().filter(|&&o| scored[o].1).count() as f64;
        i = j + 1;
    }
    let u = rank_sum_pos - (n_pos * (n_pos + 1)) as f64 / 2.0;
    Some(u / (n_pos as f64 * n_neg as f64))
}

/// A stratified split of example indices into (train, held out): within each label, a shuffled
/// `holdout_fraction` (rounded, at least one when the label has two or more examples, never all)
/// is held out. Deterministic for a seed; both lists come back sorted.
pub fn holdout_split(
    labels: &[usize],
    holdout_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(holdout_fraction > 0.0 && holdout_fraction < 1.0) {
        return Err(CoreError::InvalidParameter(format!(
            "holdout_fraction must be between 0 and 1 (exclusive), got {holdout_fraction}"
        )));
    }
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut by_label: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, &y) in labels.iter().enumerate() {
        by_label.entry(y).or_default().push(i);
    }
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut idx in by_label.into_values() {
        idx.shuffle(&mut rng);
        let n = idx.len();
        let mut t = (n as f64 * holdout_fraction).round() as usize;
        if n >= 2 {
            t = t.clamp(1, n - 1);
        } else {
            t = 0;
        }
        test.extend_from_slice(&idx[..t]);
        train.extend_from_slice(&idx[t..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    Ok((train, test))
}

// ---------------------------------------------------------------------------------------------
// Choosing settings on held-out examples

/// One candidate setting of a head: the pooling its embeddings come from (an index into the
/// caller's list of poolings) and the optimiser's options.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadSetting {
    /// Index of the pooling, into the per-pooling example lists given to [`HeadSearch::run`].
    pub pooling: usize,
    /// The optimiser's options.
    pub options: HeadTrainOptions,
}

/// The settings to compare: every pooling × `l2` × `balanced`, pooling outermost, then `l2`,
/// in the order given. Errors: an empty list, or an `l2` that is not positive.
pub fn head_grid(
    n_poolings: usize,
    l2s: &[f64],
    balanced: &[bool],
    max_iterations: u64,
    tolerance: f64,
) -> Result<Vec<HeadSetting>> {
    if n_poolings == 0 || l2s.is_empty() || balanced.is_empty() {
        return Err(CoreError::InvalidParameter(
            "pooling, l2 and balanced need at least one value each".into(),
        ));
    }
    if let Some(bad) = l2s.iter().find(|&&x| !(x > 0.0 && x.is_finite())) {
        return Err(CoreError::InvalidParameter(format!(
            "l2 must be positive, not {bad}"
        )));
    }
    let mut grid = Vec::with_capacity(n_poolings * l2s.len() * balanced.len());
    for pooling in 0..n_poolings {
        for &l2 in l2s {
            for &b in balanced {
                grid.push(HeadSetting {
                    pooling,
                    options: HeadTrainOptions {
                        l2,
                        max_iterations,
                        balanced: b,
                        tolerance,
                    },
                });
            }
        }
    }
    Ok(grid)
}

/// Choosing among `n_settings` needs examples held out from training: an error when there are
/// none (checked before any expensive work, and again by [`HeadSearch::run`]).
pub fn check_selectable(n_settings: usize, has_selection: bool) -> Result<()> {
    if n_settings > 1 && !has_selection {
        return Err(CoreError::InvalidParameter(
            "choosing among several settings needs held-out rows".into(),
        ));
    }
    Ok(())
}

/// Whether a candidate with quality `a` on the selection examples beats one with quality `b`:
/// higher accuracy, then lower log loss. On a full tie the earlier candidate stays.
pub fn beats(a: &HeadEvaluation, b: &HeadEvaluation) -> bool {
    a.accuracy > b.accuracy || (a.accuracy == b.accuracy && a.log_loss < b.log_loss)
}

/// Labelled examples under every pooling of a search: `x[pooling][row]`, one label per row.
pub struct PooledExamples<'a, E> {
    /// The embeddings of each pooling, all of the same rows.
    pub x: &'a [Vec<E>],
    /// The rows' label indices.
    pub y: &'a [usize],
}

// Two references: copyable whatever `E` is (a derive would ask for `E: Copy`).
impl<E> Clone for PooledExamples<'_, E> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<E> Copy for PooledExamples<'_, E> {}

/// A trained candidate.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its setting.
    pub setting: HeadSetting,
    /// L-BFGS iterations done.
    pub iterations: u64,
    /// Whether the gradient tolerance was reached.
    pub converged: bool,
    /// Its quality on the selection examples, when there are any.
    pub selection: Option<HeadEvaluation>,
}

/// The outcome of a [`HeadSearch`]: the chosen candidate's index and head, and every candidate.
#[derive(Debug, Clone)]
pub struct HeadChoice {
    /// Index of the chosen setting in the grid.
    pub chosen: usize,
    /// The chosen head.
    pub fit: TrainedHead,
    /// Every candidate, in grid order.
    pub candidates: Vec<Candidate>,
}

/// A grid search over head settings: each setting is trained on the training examples of its
/// pooling and scored on the selection examples; the best by [`beats`] is kept.
pub struct HeadSearch<'a> {
    /// The settings, e.g. from [`head_grid`].
    pub grid: &'a [HeadSetting],
    /// Label names, in index order.
    pub labels: &'a [String],
    /// The label whose probability ranks examples for the ROC AUC (default 1, two labels only).
    pub positive: Option<usize>,
}

impl HeadSearch<'_> {
    /// Trains every setting on `threads` and keeps the best on `selection` (required when there
    /// is more than one setting). `monitor` is called on the caller's thread before each setting
    /// and during each training, and may stop the search; `on_candidate` sees each candidate
    /// as soon as it is scored (for progress reports). The same choice and head on any number of
    /// threads.
    pub fn run<E: AsRef<[f32]> + Sync>(
        &self,
        train: PooledExamples<'_, E>,
        selection: Option<PooledExamples<'_, E>>,
        threads: &Threads,
        monitor: &mut dyn Monitor,
        on_candidate: &mut dyn FnMut(usize, &Candidate),
    ) -> Result<HeadChoice> {
        check_selectable(self.grid.len(), selection.is_some())?;
        let pooling_count = selection.map_or(train.x.len(), |s| s.x.len().min(train.x.len()));
        if let Some(s) = self.grid.iter().find(|s| s.pooling >= pooling_count) {
            return Err(CoreError::InvalidParameter(format!(
                "setting on pooling {} but only {pooling_count} poolings have examples",
                s.pooling
            )));
        }
        let mut candidates = Vec::with_capacity(self.grid.len());
        let mut best: Option<(usize, TrainedHead, Option<HeadEvaluation>)> = None;
        for (i, setting) in self.grid.iter().enumerate() {
            monitor.step(&Progress::epoch("setting", i + 1, self.grid.len(), None))?;
            let p = setting.pooling;
            let fit = train_softmax_head_with(
                &train.x[p],
                train.y,
                self.labels,
                &setting.options,
                threads,
                monitor,
            )?;
            let quality = match selection {
                Some(s) => Some(evaluate_head(&fit.head, &s.x[p], s.y, self.positive)?),
                None => None,
            };
            let candidate = Candidate {
                setting: setting.clone(),
                iterations: fit.iterations,
                converged: fit.converged,
                selection: quality.clone(),
            };
            on_candidate(i, &candidate);
            candidates.push(candidate);
            let better = match (&best, &quality) {
                (None, _) => true,
                (Some((_, _, Some(b))), Some(q)) => beats(q, b),
                _ => false,
            };
            if better {
                best = Some((i, fit, quality));
            }
        }
        let (chosen, fit, _) =
            best.ok_or_else(|| CoreError::InvalidParameter("there is no setting to train".into()))?;
        Ok(HeadChoice {
            chosen,
            fit,
            candidates,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    /// Three Gaussian blobs on the unit sphere of dimension 16, L2-normalised like embeddings.
    fn blobs(n_per: usize, seed: u64, spread: f64) -> (Vec<Vec<f32>>, Vec<usize>) {
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let noise = Normal::new(0.0, spread).unwrap();
        let d = 16;
        let mut centres = vec![vec![0.0f64; d]; 3];
        for (c, centre) in centres.iter_mut().enumerate() {
            centre[c] = 1.0;
            centre[c + 3] = 0.5;
        }
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..n_per * 3 {
            let c = i % 3;
            let v: Vec<f64> = centres[c]
                .iter()
                .map(|m| m + noise.sample(&mut rng))
                .collect();
            let norm = v.iter().map(|a| a * a).sum::<f64>().sqrt();
            x.push(v.iter().map(|a| (a / norm) as f32).collect());
            y.push(c);
        }
        (x, y)
    }

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|i| format!("L{i}")).collect()
    }

    #[test]
    fn separable_data_is_learned() {
        let (x, y) = blobs(40, 1, 0.1);
        let fit = train_softmax_head(&x, &y, &names(3), &HeadTrainOptions::default()).unwrap();
        assert!(fit.converged, "{fit:?}");
        assert_eq!(fit.head.dim(), 16);
        let (xt, yt) = blobs(30, 2, 0.1);
        let ev = evaluate_head(&fit.head, &xt, &yt, None).unwrap();
        assert_eq!(ev.accuracy, 1.0, "{ev:?}");
        assert_eq!(ev.macro_f1, 1.0);
        assert!(ev.roc_auc.is_none()); // three labels
        assert_eq!(
            ev.confusion[0][0] + ev.confusion[1][1] + ev.confusion[2][2],
            90
        );
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, y) = blobs(5, 3, 0.3);
        let threads = Threads::current();
        let mut monitor = NoMonitor;
        let p = Problem {
            x: &x,
            y: &y,
            w: vec![1.0 / 15.0; 15],
            d: 16,
            k: 3,
            l2: 0.1,
            threads: &threads,
            monitor: RefCell::new(&mut monitor),
            max_iterations: 1,
            evaluations: Cell::new(0),
            stopped: &RefCell::new(None),
            last: RefCell::new(None),
        };
        let theta: Vec<f64> = (0..51)
            .map(|i| ((i * 7) % 11) as f64 / 10.0 - 0.5)
            .collect();
        let (_, g) = p.eval(&theta).unwrap();
        for j in [0, 5, 17, 40, 48, 50] {
            let h = 1e-6;
            let mut a = theta.clone();
            a[j] += h;
            let mut b = theta.clone();
            b[j] -= h;
            let fd = (p.eval(&a).unwrap().0 - p.eval(&b).unwrap().0) / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-6, "{j}: {fd} vs {}", g[j]);
        }
    }

    #[test]
    fn same_head_on_any_number_of_threads_and_cancel_stops_it() {
        // More examples than one block, so the parallel sum really has several parts.
        let (x, y) = blobs(1200, 9, 0.5);
        let opts = HeadTrainOptions::default();
        let fit = |n: usize| {
            train_softmax_head_with(
                &x,
                &y,
                &names(3),
                &opts,
                &Threads::new(n).unwrap(),
                &mut NoMonitor,
            )
            .unwrap()
        };
        let one = fit(1);
        assert_eq!(one, fit(3));
        assert_eq!(one, train_softmax_head(&x, &y, &names(3), &opts).unwrap());

        struct StopAt(usize, usize);
        impl Monitor for StopAt {
            fn step(&mut self, _: &Progress) -> Result<()> {
                self.0 += 1;
                if self.0 > self.1 {
                    Err(CoreError::Cancelled)
                } else {
                    Ok(())
                }
            }
        }
        let mut stop = StopAt(0, 4);
        let err = train_softmax_head_with(&x, &y, &names(3), &opts, &Threads::current(), &mut stop);
        assert_eq!(err.unwrap_err(), CoreError::Cancelled);
        assert_eq!(stop.0, 5, "no evaluation after the monitor said stop");
    }

    #[test]
    fn deterministic_and_binary_auc() {
        let (x, y) = blobs(30, 4, 0.6);
        // Binary: label 2 vs the rest.
        let yb: Vec<usize> = y.iter().map(|&c| usize::from(c == 2)).collect();
        let opts = HeadTrainOptions {
            balanced: true,
            ..Default::default()
        };
        let a = train_softmax_head(&x, &yb, &names(2), &opts).unwrap();
        let b = train_softmax_head(&x, &yb, &names(2), &opts).unwrap();
        assert_eq!(a, b);
        let ev = evaluate_head(&a.head, &x, &yb, Some(1)).unwrap();
        let auc = ev.roc_auc.unwrap();
        assert!(auc > 0.9 && auc <= 1.0, "{ev:?}");
        // Label 0 ranked by its own probability: the same curve, seen from the other side.
        let ev0 = evaluate_head(&a.head, &x, &yb, Some(0)).unwrap();
        assert!((ev0.roc_auc.unwrap() - auc).abs() < 1e-9);
    }

    #[test]
    fn auc_with_ties_and_one_class() {
        let s = [(0.1, false), (0.4, true), (0.4, false), (0.8, true)];
        assert!((roc_auc(&s).unwrap() - 0.875).abs() < 1e-12);
        assert_eq!(roc_auc(&[(0.3, true), (0.5, true)]), None);
    }

    #[test]
    fn holdout_split_is_stratified_and_seeded() {
        let labels: Vec<usize> = (0..100).map(|i| usize::from(i % 4 == 0)).collect();
        let (tr, te) = holdout_split(&labels, 0.2, 42).unwrap();
        assert_eq!(tr.len() + te.len(), 100);
        assert_eq!(te.iter().filter(|&&i| labels[i] == 1).count(), 5);
        assert_eq!(te.iter().filter(|&&i| labels[i] == 0).count(), 15);
        assert_eq!(
            holdout_split(&labels, 0.2, 42).unwrap(),
            (tr.clone(), te.clone())
        );
        assert_ne!(holdout_split(&labels, 0.2, 43).unwrap().1, te);
        assert!(holdout_split(&labels, 1.0, 1).is_err());
    }

    #[test]
    fn bad_training_input_is_an_error() {
        let (x, y) = blobs(3, 5, 0.1);
        let opts = HeadTrainOptions::default();
        assert!(train_softmax_head(&x, &y, &names(1), &opts).is_err());
        assert!(train_softmax_head(&x, &y[..3], &names(3), &opts).is_err());
        assert!(train_softmax_head(&x, &[0; 9], &names(3), &opts).is_err());
        assert!(train_softmax_head(&x, &[5; 9], &names(3), &opts).is_err());
        let mut bad = x.clone();
        bad[2][0] = f32::NAN;
        assert!(train_softmax_head(&bad, &y, &names(3), &opts).is_err());
        let zero = HeadTrainOptions {
            l2: 0.0,
            ..Default::default()
        };
        assert!(train_softmax_head(&x, &y, &names(3), &zero).is_err());
        assert!(train_softmax_head::<Vec<f32>>(&[], &[], &names(3), &opts).is_err());
    }

    #[test]
    fn head_shape_checks() {
        let h = Head {
            weights: vec![1.0, 0.0, 0.0, 1.0],
            bias: vec![0.0, 0.5],
            labels: names(2),
        };
        h.validate(Some(2)).unwrap();
        assert!(h.validate(Some(3)).is_err());
        assert_eq!(h.logits(&[2.0, 3.0]).unwrap(), vec![2.0, 3.5]);
        assert!(h.logits(&[1.0]).is_err());
        let p = h.probabilities(&[0.0, 0.0]).unwrap();
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        let bad = Head {
            weights: vec![1.0; 5],
            ..h.clone()
        };
        assert!(bad.validate(None).is_err());
    }

    #[test]
    fn grid_order_and_checks() {
        let g = head_grid(2, &[0.1, 1.0], &[false, true], 50, 1e-5).unwrap();
        let got: Vec<(usize, f64, bool)> = g
            .iter()
            .map(|s| (s.pooling, s.options.l2, s.options.balanced))
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 0.1, false),
                (0, 0.1, true),
                (0, 1.0, false),
                (0, 1.0, true),
                (1, 0.1, false),
                (1, 0.1, true),
                (1, 1.0, false),
                (1, 1.0, true),
            ]
        );
        assert!(g
            .iter()
            .all(|s| s.options.max_iterations == 50 && s.options.tolerance == 1e-5));
        let e = head_grid(1, &[0.1, -1.0], &[false], 50, 1e-5).unwrap_err();
        assert_eq!(
            e,
            CoreError::InvalidParameter("l2 must be positive, not -1".into())
        );
        assert!(head_grid(1, &[f64::NAN], &[false], 50, 1e-5).is_err());
        assert!(head_grid(0, &[0.1], &[false], 50, 1e-5).is_err());
        assert!(check_selectable(1, false).is_ok());
        assert!(check_selectable(2, true).is_ok());
        assert!(check_selectable(2, false).is_err());
    }

    #[test]
    fn beats_prefers_accuracy_then_log_loss_and_keeps_the_earlier_on_a_tie() {
        let q = |accuracy: f64, log_loss: f64| HeadEvaluation {
            n: 10,
            accuracy,
            macro_f1: 0.0,
            roc_auc: None,
            log_loss,
            confusion: vec![],
        };
        assert!(beats(&q(0.9, 0.5), &q(0.8, 0.1)));
        assert!(!beats(&q(0.8, 0.1), &q(0.9, 0.5)));
        assert!(beats(&q(0.8, 0.2), &q(0.8, 0.3)));
        assert!(!beats(&q(0.8, 0.3), &q(0.8, 0.3)));
    }

    #[test]
    fn search_keeps_the_best_setting_on_the_selection_examples() {
        // Two "poolings": the real blobs, and the same rows with the first coordinates shuffled
        // between examples (nearly uninformative). Heavy l2 underfits.
        let (x, y) = blobs(60, 11, 0.6);
        let (xs, ys) = blobs(40, 12, 0.6);
        let scramble = |x: &[Vec<f32>]| -> Vec<Vec<f32>> {
            let n = x.len();
            (0..n)
                .map(|i| {
                    let mut v = x[i].clone();
                    for (d, value) in v.iter_mut().enumerate().take(6) {
                        *value = x[(i * 7 + d * 13) % n][d];
                    }
                    v
                })
                .collect()
        };
        let train_x = vec![x.clone(), scramble(&x)];
        let select_x = vec![xs.clone(), scramble(&xs)];
        let grid = head_grid(2, &[1e-4, 10.0], &[false, true], 200, 1e-6).unwrap();
        let labels = names(3);
        let search = HeadSearch {
            grid: &grid,
            labels: &labels,
            positive: None,
        };
        let mut seen = Vec::new();
        let choice = search
            .run(
                PooledExamples { x: &train_x, y: &y },
                Some(PooledExamples {
                    x: &select_x,
                    y: &ys,
                }),
                &Threads::new(2).unwrap(),
                &mut NoMonitor,
                &mut |i, c| seen.push((i, c.selection.as_ref().unwrap().accuracy)),
            )
            .unwrap();
        assert_eq!(choice.candidates.len(), grid.len());
        assert_eq!(
            seen.iter().map(|s| s.0).collect::<Vec<_>>(),
            (0..grid.len()).collect::<Vec<_>>()
        );
        // Recompute each candidate independently: the choice is the first best by `beats`.
        let mut expect = 0;
        let mut quality = Vec::new();
        for s in &grid {
            let fit = train_softmax_head(&train_x[s.pooling], &y, &labels, &s.options).unwrap();
            quality.push(evaluate_head(&fit.head, &select_x[s.pooling], &ys, None).unwrap());
        }
        for i in 1..grid.len() {
            if beats(&quality[i], &quality[expect]) {
                expect = i;
            }
        }
        assert_eq!(choice.chosen, expect);
        assert_eq!(
            choice.candidates[expect].selection.as_ref(),
            Some(&quality[expect])
        );
        assert_eq!(
            grid[expect].pooling, 0,
            "the informative pooling wins: {quality:?}"
        );
        let alone = train_softmax_head(&train_x[0], &y, &labels, &grid[expect].options).unwrap();
        assert_eq!(choice.fit, alone);
    }

    #[test]
    fn search_needs_a_selection_set_for_several_settings_and_stops_on_cancel() {
        let (x, y) = blobs(20, 13, 0.3);
        let xs = vec![x];
        let labels = names(3);
        let two = head_grid(1, &[0.1, 1.0], &[false], 50, 1e-6).unwrap();
        let search = HeadSearch {
            grid: &two,
            labels: &labels,
            positive: None,
        };
        let train = PooledExamples { x: &xs, y: &y };
        let without_selection = |s: &HeadSearch<'_>| {
            s.run(
                train,
                None,
                &Threads::current(),
                &mut NoMonitor,
                &mut |_, _| {},
            )
        };
        let e = without_selection(&search).unwrap_err();
        assert!(matches!(e, CoreError::InvalidParameter(_)));
        // One setting needs none.
        let one = head_grid(1, &[0.1], &[false], 50, 1e-6).unwrap();
        let single = HeadSearch {
            grid: &one,
            ..search
        };
        let c = without_selection(&single).unwrap();
        assert_eq!((c.chosen, c.candidates.len()), (0, 1));
        assert!(c.candidates[0].selection.is_none());
        // A monitor that says stop before the second setting ends the search there.
        struct StopAtSecondSetting;
        impl Monitor for StopAtSecondSetting {
            fn step(&mut self, p: &Progress) -> Result<()> {
                if p.phase == "setting" && p.step == 2 {
                    Err(CoreError::Cancelled)
                } else {
                    Ok(())
                }
            }
        }
        let mut trained = 0;
        let e = search
            .run(
                train,
                Some(train),
                &Threads::current(),
                &mut StopAtSecondSetting,
                &mut |_, _| trained += 1,
            )
            .unwrap_err();
        assert_eq!((e, trained), (CoreError::Cancelled, 1));
    }
}
