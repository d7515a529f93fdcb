//! Fine-tuning a BERT-family encoder and a classification head on labelled texts, and writing
//! the result as an ONNX classifier ([`onnx::export`]) that the text runtime serves like any
//! other. Backs the SQL function `bert_finetune`.
//!
//! The recipe is Hugging Face `Trainer`'s for `BertForSequenceClassification`, with
//! sentence-transformers' mean pooling in place of BERT's pooler (the sentence encoders this
//! starts from were trained with mean pooling; their pooler weights were never trained):
//! AdamW (β 0.9/0.999, ε 1e-8, decoupled weight decay, none on biases and LayerNorm weights),
//! a linear warm-up over the first `warmup_fraction` of the steps then linear decay to 0,
//! gradient clipping at a global norm, dropout 0.1 on embeddings, attention probabilities,
//! layer outputs and the pooled vector, cross-entropy loss.
//!
//! Batches mix texts of similar length: each epoch shuffles the rows, cuts them into groups of
//! `length_groups` batches, sorts each group by length, cuts it into batches and shuffles the
//! batches (Hugging Face's `group_by_length`): padding stays small and batches stay random.
//!
//! Determinism: shuffling, dropout masks and the head's initial weights come from `seed`; the
//! arithmetic is candle's CPU kernels, whose matrix products split work by output blocks, so a
//! seed gives the same weights for the same rows in the same order (the SQL layer sorts what it
//! reads). Tested for a fixed thread count.
//!
//! Control: [`finetune`] runs each step on the caller's [`Threads`] through
//! [`Threads::run_watched`], so a cancel is seen between layers of the forward pass and between
//! steps (a step's backward pass is not interruptible: a step of 32 short texts on MiniLM takes
//! well under a second on 2 cores); progress and each epoch's validation go to the
//! [`Monitor`] on the caller's thread.

pub mod bert;
pub mod onnx;

use std::time::Instant;

use candle_core::{Tensor, D};
use candle_nn::optim::{AdamW, Optimizer, ParamsAdamW};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

pub use bert::{BertClassifier, BertConfig, Dropout, TensorBatch};

use crate::control::{Monitor, Progress, Threads};
use crate::{CoreError, Result};

/// One labelled text, tokenised: ids and segment ids (special tokens included), class index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
    pub label: u32,
}

/// What [`finetune`] does. Defaults are Hugging Face's `Trainer` defaults where it has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FinetuneOptions {
    /// Passes over the training rows (default 3).
    pub epochs: usize,
    /// Texts per step (default 32).
    pub batch_size: usize,
    /// Peak learning rate (default 5e-5).
    pub learning_rate: f64,
    /// Share of all steps spent warming the learning rate up from 0 (default 0.1).
    pub warmup_fraction: f64,
    /// Decoupled weight decay of AdamW (default 0.01).
    pub weight_decay: f64,
    /// Clip the gradient to this global L2 norm (default 1.0; 0: no clipping).
    pub max_grad_norm: f64,
    /// Dropout probability (default 0.1, BERT's).
    pub dropout: f64,
    /// Layers counted from the bottom that are not trained (the embeddings are frozen too when
    /// this is above 0). Default 0.
    pub frozen_layers: usize,
    /// Batches per length group (default 50; 1: no grouping by length).
    pub length_groups: usize,
    /// Seed of shuffling, dropout and the head's initial weights (default 42).
    pub seed: u64,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        FinetuneOptions {
            epochs: 3,
            batch_size: 32,
            learning_rate: 5e-5,
            warmup_fraction: 0.1,
            weight_decay: 0.01,
            max_grad_norm: 1.0,
            dropout: 0.1,
            frozen_layers: 0,
            length_groups: 50,
            seed: 42,
        }
    }
}

impl FinetuneOptions {
    /// Refuses settings that cannot train.
    pub fn check(&self, config: &BertConfig) -> Result<()> {
        let bad = |m: String| Err(CoreError::InvalidParameter(m));
        if self.epochs == 0 || self.epochs > 1000 {
            return bad(format!("epochs must be in 1..1000, not {}", self.epochs));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return bad(format!(
                "batch_size must be in 1..4096, not {}",
                self.batch_size
            ));
        }
        if !(self.learning_rate > 0.0 && self.learning_rate <= 1.0) {
            return bad(format!(
                "learning_rate must be in (0, 1], not {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.warmup_fraction) {
            return bad(format!(
                "warmup_fraction must be in [0, 1), not {}",
                self.warmup_fraction
            ));
        }
        if !(0.0..1.0).contains(&self.weight_decay) {
            return bad(format!(
                "weight_decay must be in [0, 1), not {}",
                self.weight_decay
            ));
        }
        if !(self.max_grad_norm >= 0.0 && self.max_grad_norm.is_finite()) {
            return bad(format!(
                "max_grad_norm must be ≥ 0, not {}",
                self.max_grad_norm
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(format!("dropout must be in [0, 1), not {}", self.dropout));
        }
        if self.frozen_layers >= config.num_hidden_layers {
            return bad(format!(
                "frozen_layers must be below the encoder's {} layers, not {}",
                config.num_hidden_layers, self.frozen_layers
            ));
        }
        if self.length_groups == 0 {
            return bad("length_groups must be at least 1".into());
        }
        Ok(())
    }
}

/// One epoch's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub steps: usize,
    /// Mean training cross-entropy over the epoch's steps (with dropout).
    pub loss: f64,
    pub seconds: f64,
    pub rows_per_second: f64,
    /// Accuracy and mean cross-entropy on the validation rows, when there are some.
    pub validation_accuracy: Option<f64>,
    pub validation_loss: Option<f64>,
}

/// What [`finetune`] did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneReport {
    pub options: FinetuneOptions,
    pub rows: usize,
    pub validation_rows: usize,
    pub steps: usize,
    pub trainable_parameters: usize,
    pub epochs: Vec<EpochReport>,
    pub seconds: f64,
}

/// Learning rate at `step` (0-based) of `total`: linear warm-up over `warmup` steps to `peak`,
/// then linear decay to 0 at `total` (Hugging Face's `get_linear_schedule_with_warmup`).
pub fn learning_rate(step: usize, total: usize, warmup: usize, peak: f64) -> f64 {
    if step < warmup {
        peak * step as f64 / warmup.max(1) as f64
    } else {
        peak * (total.saturating_sub(step)) as f64 / (total - warmup).max(1) as f64
    }
}

/// One epoch's batches: row indices, every row exactly once. Rows are shuffled, cut into groups
/// of `groups` batches, each group sorted by length (stable, longest first) and cut into
/// batches; the batches are shuffled.
pub fn plan_epoch(
    lengths: &[usize],
    batch: usize,
    groups: usize,
    rng: &mut Pcg64,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(rng);
    let mut batches = Vec::with_capacity(lengths.len().div_ceil(batch.max(1)));
    for group in order.chunks(batch.max(1) * groups.max(1)) {
        let mut g = group.to_vec();
        g.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
        batches.extend(g.chunks(batch.max(1)).map(<[usize]>::to_vec));
    }
    batches.shuffle(rng);
    batches
}

/// Bytes training is expected to take at its peak: the weights twice while the checkpoint is
/// read, gradients, AdamW's two moments and its temporaries for what is trained, the dense
/// gradient of the word embeddings when they are trained, and the activations the backward
/// pass keeps for the longest batch (`batch_size` texts of `max_tokens`), per trained layer
/// (frozen layers keep nothing, but one runs at a time). Calibrated on all-MiniLM-L6-v2 (the
/// test below pins it against measured peaks); an estimate, not a bound.
pub fn estimate_bytes(
    config: &BertConfig,
    opts: &FinetuneOptions,
    max_tokens: usize,
    labels: usize,
) -> u64 {
    let layers = config.num_hidden_layers as u64;
    let frozen = (opts.frozen_layers as u64).min(layers);
    let trained_layers = layers - frozen;
    let head = (config.hidden_size * labels + labels) as u64;
    let total = config.encoder_parameters() as u64 + head;
    let trained = if frozen == 0 {
        total
    } else {
        trained_layers * config.layer_parameters() as u64 + head
    };
    let weights = 4 * (2 * total + 10 * trained);
    let (b, s) = (opts.batch_size as u64, max_tokens as u64);
    let (h, i, nh) = (
        config.hidden_size as u64,
        config.intermediate_size as u64,
        config.num_attention_heads as u64,
    );
    // Per layer: about 20 [b·s, h] tensors (projections, head reshapes, residuals, LayerNorm's
    // intermediates, dropout masks), 4 [b·s, i] (FFN, GELU, dropout) and 6 [b, heads, s, s]
    // (scores, bias, max-shifted, exp, probabilities, dropout), and 60% more while backward
    // holds their gradients.
    let per_layer = 4 * (20 * b * s * h + 4 * b * s * i + 6 * b * nh * s * s);
    let activations = per_layer * 8 / 5 * (trained_layers + 1);
    let embedding_gradient = if frozen == 0 {
        8 * (config.vocab_size * config.hidden_size) as u64
    } else {
        0
    };
    weights + activations + embedding_gradient + (128 << 20)
}

/// Fine-tunes `model` on `train`, evaluating on `valid` after each epoch. Returns the report;
/// the model holds the weights of the last epoch.
pub fn finetune(
    model: &mut BertClassifier,
    train: &[Example],
    valid: &[Example],
    opts: &FinetuneOptions,
    threads: &Threads,
    monitor: &mut dyn Monitor,
) -> Result<FinetuneReport> {
    opts.check(&model.config)?;
    if train.is_empty() {
        return Err(CoreError::InvalidData("no training rows".into()));
    }
    check_examples(model, train)?;
    check_examples(model, valid)?;
    let started = Instant::now();
    let lengths: Vec<usize> = train.iter().map(|e| e.ids.len()).collect();
    let steps_per_epoch = train.len().div_ceil(opts.batch_size);
    let total = steps_per_epoch * opts.epochs;
    let warmup = (opts.warmup_fraction * total as f64).round() as usize;

    let (decayed, plain): (Vec<_>, Vec<_>) = model.params.iter().partition(|p| p.decay);
    let adam = |vars: Vec<&bert::Param>, wd: f64| {
        AdamW::new(
            vars.iter().map(|p| p.var.clone()).collect(),
            ParamsAdamW {
                lr: opts.learning_rate,
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: wd,
            },
        )
    };
    let mut opt_decay = adam(decayed, opts.weight_decay)?;
    let mut opt_plain = adam(plain, 0.0)?;
    let vars: Vec<Tensor> = model
        .params
        .iter()
        .map(|p| p.var.as_tensor().clone())
        .collect();

    let mut rng = Pcg64::seed_from_u64(opts.seed);
    let mut dropout = Dropout::new(opts.dropout as f32, opts.seed);
    let mut report = FinetuneReport {
        options: opts.clone(),
        rows: train.len(),
        validation_rows: valid.len(),
        steps: 0,
        trainable_parameters: model.trainable_parameters(),
        epochs: Vec::new(),
        seconds: 0.0,
    };
    let mut step = 0usize;
    for epoch in 1..=opts.epochs {
        let epoch_started = Instant::now();
        let batches = plan_epoch(&lengths, opts.batch_size, opts.length_groups, &mut rng);
        let mut loss_sum = 0.0;
        for (i, rows) in batches.iter().enumerate() {
            let lr = learning_rate(step, total, warmup, opts.learning_rate);
            opt_decay.set_learning_rate(lr);
            opt_plain.set_learning_rate(lr);
            let m: &BertClassifier = model;
            let dropout = &mut dropout;
            let (loss, grads) = threads.run_watched(monitor, |stop| {
                let batch = tensor_batch(train, rows)?;
                let labels: Vec<u32> = rows.iter().map(|&r| train[r].label).collect();
                let labels = Tensor::from_vec(labels, rows.len(), &candle_core::Device::Cpu)?;
                let logits = m.forward(&batch, Some(dropout), &mut || stop.check())?;
                let loss = candle_nn::loss::cross_entropy(&logits, &labels)?;
                let mut grads = loss.backward()?;
                stop.check()?;
                clip(&mut grads, &vars, opts.max_grad_norm)?;
                Ok((f64::from(loss.to_scalar::<f32>()?), grads))
            })?;
            if !loss.is_finite() {
                return Err(CoreError::InvalidData(format!(
                    "the training loss became {loss} at step {}: lower learning_rate",
                    step + 1
                )));
            }
            opt_decay.step(&grads)?;
            opt_plain.step(&grads)?;
            loss_sum += loss;
            step += 1;
            monitor.step(&Progress::epoch(
                "fine-tuning",
                step,
                total,
                Some(loss_sum / (i + 1) as f64),
            ))?;
        }
        let seconds = epoch_started.elapsed().as_secs_f64();
        let (validation_accuracy, validation_loss) = if valid.is_empty() {
            (None, None)
        } else {
            let e = evaluate(model, valid, opts.batch_size.max(64), threads, monitor)?;
            (Some(e.accuracy), Some(e.loss))
        };
        let r = EpochReport {
            epoch,
            steps: batches.len(),
            loss: loss_sum / batches.len().max(1) as f64,
            seconds,
            rows_per_second: train.len() as f64 / seconds.max(1e-9),
            validation_accuracy,
            validation_loss,
        };
        monitor.note(&format!(
            "epoch {epoch}/{}: training loss {:.4}, {:.1} rows/s{}",
            opts.epochs,
            r.loss,
            r.rows_per_second,
            match (r.validation_accuracy, r.validation_loss) {
                (Some(a), Some(l)) => format!(", validation accuracy {a:.4}, loss {l:.4}"),
                _ => String::new(),
            }
        ));
        report.epochs.push(r);
    }
    report.steps = step;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn check_examples(model: &BertClassifier, rows: &[Example]) -> Result<()> {
    let c = &model.config;
    for e in rows {
        if e.ids.is_empty() || e.ids.len() > c.max_position_embeddings {
            return Err(CoreError::InvalidData(format!(
                "a text has {} tokens; the encoder takes 1 to {}",
                e.ids.len(),
                c.max_position_embeddings
            )));
        }
        if e.ids.iter().any(|&i| i as usize >= c.vocab_size) {
            return Err(CoreError::InvalidData(format!(
                "a token id is beyond the encoder's vocabulary of {}: the tokenizer does not \
                 belong to this encoder",
                c.vocab_size
            )));
        }
        if e.type_ids.iter().any(|&i| i as usize >= c.type_vocab_size) {
            return Err(CoreError::InvalidData(
                "a segment id is out of range".into(),
            ));
        }
        if e.label as usize >= model.labels() {
            return Err(CoreError::InvalidData(format!(
                "label index {} is beyond the head's {} classes",
                e.label,
                model.labels()
            )));
        }
    }
    Ok(())
}

fn tensor_batch(rows: &[Example], idx: &[usize]) -> Result<TensorBatch> {
    let items: Vec<(&[u32], &[u32])> = idx
        .iter()
        .map(|&i| (rows[i].ids.as_slice(), rows[i].type_ids.as_slice()))
        .collect();
    TensorBatch::new(&items)
}

/// Scales every gradient so their global L2 norm is at most `max_norm` (0: unchanged).
fn clip(
    grads: &mut candle_core::backprop::GradStore,
    vars: &[Tensor],
    max_norm: f64,
) -> Result<()> {
    if max_norm <= 0.0 {
        return Ok(());
    }
    let mut sq = 0.0f64;
    for v in vars {
        if let Some(g) = grads.get(v) {
            sq += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = sq.sqrt();
    if norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for v in vars {
            if let Some(g) = grads.remove(v) {
                grads.insert(v, (g * scale)?);
            }
        }
    }
    Ok(())
}

/// Accuracy and mean cross-entropy of a model on labelled rows.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub loss: f64,
}

/// Evaluates without dropout, in batches sorted by length.
pub fn evaluate(
    model: &BertClassifier,
    rows: &[Example],
    batch: usize,
    threads: &Threads,
    monitor: &mut dyn Monitor,
) -> Result<Evaluation> {
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&i| rows[i].ids.len());
    let (mut correct, mut loss) = (0usize, 0.0f64);
    for chunk in order.chunks(batch.max(1)) {
        let (c, l) = threads.run_watched(monitor, |stop| {
            let b = tensor_batch(rows, chunk)?;
            let logits = model.forward(&b, None, &mut || stop.check())?;
            let labels: Vec<u32> = chunk.iter().map(|&r| rows[r].label).collect();
            let lt = Tensor::from_vec(labels.clone(), chunk.len(), &candle_core::Device::Cpu)?;
            let l = candle_nn::loss::cross_entropy(&logits, &lt)?.to_scalar::<f32>()?;
            let pred: Vec<u32> = logits.argmax(D::Minus1)?.to_vec1()?;
            let c = pred.iter().zip(&labels).filter(|(p, y)| p == y).count();
            Ok((c, f64::from(l) * chunk.len() as f64))
        })?;
        correct += c;
        loss += l;
    }
    let n = rows.len().max(1) as f64;
    Ok(Evaluation {
        accuracy: correct as f64 / n,
        loss: loss / n,
    })
}

/// Logits of texts without dropout, in input order (the reference the exported graph is
/// checked against).
pub fn logits(model: &BertClassifier, rows: &[(Vec<u32>, Vec<u32>)]) -> Result<Vec<Vec<f32>>> {
    let items: Vec<(&[u32], &[u32])> = rows
        .iter()
        .map(|(i, t)| (i.as_slice(), t.as_slice()))
        .collect();
    let b = TensorBatch::new(&items)?;
    Ok(model.forward(&b, None, &mut || Ok(()))?.to_vec2()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minilm() -> BertConfig {
        BertConfig {
            vocab_size: 30522,
            hidden_size: 384,
            num_hidden_layers: 6,
            num_attention_heads: 12,
            intermediate_size: 1536,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            layer_norm_eps: 1e-12,
            hidden_act: "gelu".into(),
            position_embedding_type: "absolute".into(),
        }
    }

    #[test]
    fn parameter_counts_are_minilms() {
        // all-MiniLM-L6-v2 without its pooler: 22,565,376 weights (its safetensors hold
        // 22,713,216 with the pooler's 147,840, and 512 position ids).
        assert_eq!(minilm().encoder_parameters(), 22_565_376);
        assert_eq!(minilm().layer_parameters(), 1_774_464);
    }

    /// Never below the peak resident memory measured for a whole fine-tuning process (the
    /// `finetune_sst2` example, batches of 32, 2 labels, this 2-vCPU VM: 640 SST-2 rows of up
    /// to 62 tokens, and all 60,614 rows of up to 66 tokens for 2 epochs), nor far above it.
    #[test]
    fn memory_estimate_covers_measured_runs() {
        for (frozen, tokens, kib) in [
            (0usize, 62usize, 2_769_476u64),
            (3, 62, 1_159_048),
            (5, 62, 676_224),
            (3, 66, 1_248_608),
        ] {
            let opts = FinetuneOptions {
                frozen_layers: frozen,
                ..FinetuneOptions::default()
            };
            let ratio = estimate_bytes(&minilm(), &opts, tokens, 2) as f64 / (kib * 1024) as f64;
            assert!(
                (1.0..1.5).contains(&ratio),
                "frozen {frozen}: ratio {ratio:.2}"
            );
        }
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        assert_eq!(learning_rate(0, 100, 10, 1.0), 0.0);
        assert!((learning_rate(5, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!((learning_rate(10, 100, 10, 1.0) - 1.0).abs() < 1e-12);
        assert!((learning_rate(55, 100, 10, 1.0) - 0.5).abs() < 1e-12);
        assert!(learning_rate(99, 100, 10, 1.0) > 0.0);
        assert_eq!(learning_rate(100, 100, 10, 1.0), 0.0);
        // No warm-up: starts at the peak.
        assert_eq!(learning_rate(0, 10, 0, 2.0), 2.0);
    }

    #[test]
    fn epoch_plan_covers_every_row_once_in_length_groups() {
        let lengths: Vec<usize> = (0..1000).map(|i| (i * 37) % 61 + 2).collect();
        let mut rng = Pcg64::seed_from_u64(1);
        let plan = plan_epoch(&lengths, 16, 4, &mut rng);
        let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<_>>());
        assert!(plan.iter().all(|b| !b.is_empty() && b.len() <= 16));
        // Grouping by length keeps padding low: on average a batch's longest text is much
        // closer to its mean than in random batches.
        let waste = |plan: &[Vec<usize>]| -> f64 {
            plan.iter()
                .map(|b| {
                    let max = b.iter().map(|&i| lengths[i]).max().unwrap() as f64;
                    let sum: usize = b.iter().map(|&i| lengths[i]).sum();
                    max * b.len() as f64 - sum as f64
                })
                .sum()
        };
        let random = plan_epoch(&lengths, 16, 1, &mut Pcg64::seed_from_u64(1));
        assert!(
            waste(&plan) < 0.5 * waste(&random),
            "{} vs {}",
            waste(&plan),
            waste(&random)
        );
        // The order of batches is shuffled, not sorted by length.
        let firsts: Vec<usize> = plan.iter().map(|b| lengths[b[0]]).collect();
        assert!(firsts.windows(2).any(|w| w[0] < w[1]) && firsts.windows(2).any(|w| w[0] > w[1]));
    }
}
