//! Transformer text models on ONNX Runtime: sentence embeddings, classification and scoring.
//!
//! A [`TextModel`] is an ONNX graph (a BERT-family encoder or a fine-tuned classifier, as
//! exported by Hugging Face Optimum) plus its `tokenizer.json` and a [`ModelSpec`] saying how
//! to read it. It backs the SQL functions `bert_embed`, `bert_score`, `bert_classify` and
//! `bert_train_classifier`.
//!
//! # Pieces
//!
//! | piece | what |
//! |---|---|
//! | [`init_runtime`] | loads `libonnxruntime.so` (≥ 1.17) from a path, once per process, lazily |
//! | [`batch`] | tokenisation and batching: sort by length, bound by texts and tokens, pad per batch |
//! | [`backend`] | the engine: [`GraphIo`] (what the graph declares), [`Backend`], [`OrtBackend`] |
//! | [`head`] | a linear softmax [`Head`] on frozen embeddings: training, evaluation |
//!
//! # Graphs
//!
//! Inputs are detected from the session and only those declared are fed: `input_ids`
//! (required), `attention_mask`, `token_type_ids` (int64 `[batch, seq]`; DistilBERT and RoBERTa
//! exports have no `token_type_ids`). The output read is `logits` (float `[batch, labels]`) for
//! a classifier without a head, else `last_hidden_state` (or `token_embeddings`, float
//! `[batch, seq, dim]`), pooled with the attention mask ([`Pooling::Mean`]), at the first
//! token ([`Pooling::Cls`]) or both side by side ([`Pooling::MeanCls`]), and L2-normalised.
//! Any other input, or the lack of the needed
//! output, is a [`CoreError::InvalidData`] naming what the graph declares; other outputs are
//! ignored.
//!
//! Loading runs the graph once on a probe of `max_length` copies of the tokenizer's largest
//! id. This finds, at load time and with a clear message, a tokenizer whose vocabulary is
//! larger than the model's embedding table and a `max_length` longer than its position table
//! (ONNX Runtime's CPU kernels bounds-check `Gather` indices and fail the run; they never read
//! out of bounds), and it measures the output width (hidden size or number of labels).
//!
//! # Texts
//!
//! Any Unicode is accepted. The empty text is scored like any other (BERT's tokenizer gives
//! `[CLS] [SEP]`). Texts longer than [`ModelSpec::max_length`] tokens (special tokens
//! included) are truncated at the end. The `tokenizer.json`'s own truncation and padding
//! settings are overridden. Results do not depend on batching: a text scored alone or among
//! others of any lengths gives the same numbers up to floating-point noise (~1e-6).

pub mod backend;
pub mod batch;
pub mod finetune;
pub mod head;
pub mod math;
pub mod memo;
mod runtime;
pub mod serve;

use serde::{Deserialize, Serialize};

pub use backend::{Backend, BatchOutput, GraphIo, InputKind, OrtBackend, OutputKind, PortInfo};
pub use batch::{
    batch_bytes, plan_batches, plan_batches_within, Encoded, PaddedBatch, TextEncoder,
};
pub use head::{
    beats, check_selectable, evaluate_head, head_grid, holdout_split, train_softmax_head,
    train_softmax_head_with, Candidate, Head, HeadChoice, HeadEvaluation, HeadSearch, HeadSetting,
    HeadTrainOptions, PooledExamples, TrainedHead,
};
pub use memo::ScoreMemo;
pub use runtime::{cuda_available, init_runtime, runtime_info, RuntimeInfo};

use crate::control::{Monitor, NoMonitor, Progress};
use crate::{CoreError, Result};

/// Default truncation length: 256 tokens, special tokens included. It is the length
/// all-MiniLM-L6-v2 was trained with (sentence-transformers' `max_seq_length`); BERT's position
/// table allows 512, at a cost quadratic in length.
pub const DEFAULT_MAX_LENGTH: usize = 256;

/// What a model is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// An encoder giving sentence embeddings (and class scores when it carries a [`Head`]).
    #[default]
    Embedding,
    /// A classifier: a graph with a `logits` output, or an encoder with a [`Head`].
    Classification,
}

/// How token states become one sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean over the real tokens (attention mask 1), as sentence-transformers does.
    #[default]
    Mean,
    /// The first token's state (`[CLS]`).
    Cls,
    /// Both, side by side: the L2-normalised mean and the L2-normalised `[CLS]` state,
    /// concatenated and scaled by 1/√2 (so the whole still has unit length); twice the
    /// hidden size. A linear head on it sees what each pooling sees: on SST-2 sentences a
    /// logistic head gains about two points of accuracy over mean pooling alone.
    #[serde(rename = "mean+cls")]
    MeanCls,
}

impl Pooling {
    /// Every pooling, in the order of their names.
    pub const ALL: [Pooling; 3] = [Pooling::Mean, Pooling::Cls, Pooling::MeanCls];

    /// The name used in specs and options (`mean`, `cls`, `mean+cls`).
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
            Pooling::MeanCls => "mean+cls",
        }
    }

    /// The pooling named `name` (as [`Pooling::name`] spells it, any case).
    pub fn from_name(name: &str) -> Option<Pooling> {
        Pooling::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name))
    }

    /// Length of the pooled vector for token states of `hidden` values.
    pub fn dim(self, hidden: usize) -> usize {
        match self {
            Pooling::Mean | Pooling::Cls => hidden,
            Pooling::MeanCls => 2 * hidden,
        }
    }

    /// Pools one text's row-major `[seq, hidden]` token states whose first `len` positions are
    /// real tokens, and normalises the result to unit length.
    pub fn pool(self, states: &[f32], hidden: usize, len: usize) -> Vec<f32> {
        let cls = || -> Vec<f64> { states[..hidden].iter().map(|&v| f64::from(v)).collect() };
        match self {
            Pooling::Mean => math::l2_normalize(&math::mean_pool(states, hidden, len)),
            Pooling::Cls => math::l2_normalize(&cls()),
            Pooling::MeanCls => {
                let scale = std::f32::consts::FRAC_1_SQRT_2;
                let mean = math::l2_normalize(&math::mean_pool(states, hidden, len));
                let first = math::l2_normalize(&cls());
                mean.iter().chain(&first).map(|v| v * scale).collect()
            }
        }
    }
}

/// How to use a graph: stored with the model (as JSON) by the SQL layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ModelSpec {
    /// Embedding or classification.
    pub task: Task,
    /// Pooling of token states (encoders only).
    pub pooling: Pooling,
    /// Truncation length in tokens, special tokens included (default [`DEFAULT_MAX_LENGTH`]).
    /// Must fit the model's position table (512 for BERT, 514 − 2 for RoBERTa).
    pub max_length: usize,
    /// Label names of a `logits` graph, in logit order (empty: `LABEL_0`, `LABEL_1`, … as in
    /// Hugging Face configs). With a head, empty or equal to the head's labels.
    pub labels: Vec<String>,
    /// The label whose probability [`TextModel::score`] returns. `None`: the label named
    /// `positive` or `pos` (any case) if exactly one is, else label 1 when there are two labels.
    pub positive_label: Option<usize>,
    /// A trained linear head on the pooled embedding (how the default `sentiment` model is the
    /// `minilm` encoder plus a head).
    pub head: Option<Head>,
}

impl Default for ModelSpec {
    fn default() -> Self {
        ModelSpec {
            task: Task::Embedding,
            pooling: Pooling::Mean,
            max_length: DEFAULT_MAX_LENGTH,
            labels: Vec::new(),
            positive_label: None,
            head: None,
        }
    }
}

/// Execution settings of a [`TextModel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SessionOptions {
    /// ONNX Runtime intra-op threads (0: ONNX Runtime's default, one per core). Default 1: each
    /// PostgreSQL backend has its own session, so more threads multiply with connections.
    pub threads: usize,
    /// Most texts per inference run. Default 32.
    pub batch_size: usize,
    /// Most tokens per inference run, counted as texts × padded length (a text longer than
    /// this runs alone). Bounds memory: attention takes `heads × texts × length²` floats.
    /// Default 8192.
    pub max_batch_tokens: usize,
    /// Most bytes one inference run may take, by [`batch_bytes`] (0: no bound): batches are cut
    /// to fit, and a text that does not fit alone is a [`CoreError::TooLarge`]. Default 512 MB.
    pub max_batch_bytes: u64,
    /// Let idle ONNX Runtime worker threads spin-wait (lower latency, burns CPU). Default off.
    pub spin: bool,
    /// Hand ONNX Runtime's arena memory back after each run of more than this many tokens
    /// (texts × padded length; 0: never). Its CPU arena otherwise keeps the peak of the largest
    /// batch ever run; shrinking after every run makes small runs markedly slower (a 1-text run
    /// took 7.8 ms instead of ~4.5), so only large runs shrink. Default 0: a backend's session
    /// lives with the backend; the shared inference worker, which runs every caller's largest
    /// batch, sets it.
    pub shrink_arena_above: usize,
    /// Where inference runs. Default [`Device::Cpu`].
    pub device: Device,
}

/// The execution provider a session runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    /// ONNX Runtime's CPU execution provider.
    #[default]
    Cpu,
    /// ONNX Runtime's CUDA execution provider (device 0), with the CPU provider for the nodes
    /// it does not cover. Needs a `libonnxruntime` built with CUDA (the `onnxruntime-gpu`
    /// wheel), its `libonnxruntime_providers_cuda.so` next to it, the CUDA and cuDNN libraries
    /// it was built against, and a GPU; see [`cuda_available`].
    Cuda,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            threads: 1,
            batch_size: 32,
            max_batch_tokens: 8192,
            max_batch_bytes: 512 << 20,
            spin: false,
            shrink_arena_above: 0,
            device: Device::Cpu,
        }
    }
}

/// The outcome of [`TextModel::classify`] for one text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classification {
    /// Index of the most probable label.
    pub index: usize,
    /// Its name.
    pub label: String,
    /// Its probability.
    pub score: f32,
    /// Probabilities of all labels, in [`TextModel::labels`] order.
    pub probabilities: Vec<f32>,
}

/// A loaded text model: tokenizer, inference backend and how to read the graph.
pub struct TextModel {
    encoder: TextEncoder,
    backend: Box<dyn Backend>,
    spec: ModelSpec,
    opts: SessionOptions,
    width: usize,
    labels: Vec<String>,
    positive: Option<usize>,
}

impl std::fmt::Debug for TextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextModel")
            .field("io", self.backend.io())
            .field("width", &self.width)
            .field("labels", &self.labels)
            .field("positive", &self.positive)
            .field("max_length", &self.encoder.max_length())
            .finish()
    }
}

impl TextModel {
    /// Loads a model from the bytes of its ONNX graph and `tokenizer.json`. ONNX Runtime must
    /// have been loaded with [`init_runtime`].
    ///
    /// Errors: [`CoreError::Runtime`] (runtime not loaded, session creation failed),
    /// [`CoreError::CorruptModel`] (ONNX bytes or tokenizer JSON unreadable),
    /// [`CoreError::InvalidData`] (graph inputs/outputs unusable, tokenizer ids beyond the
    /// embedding table, `max_length` beyond the position table), [`CoreError::InvalidParameter`]
    /// (spec or options inconsistent with the graph: label count, head shape, positive label).
    pub fn from_bytes(
        onnx: &[u8],
        tokenizer_json: &[u8],
        spec: ModelSpec,
        opts: SessionOptions,
    ) -> Result<TextModel> {
        check_options(&opts)?;
        let encoder = TextEncoder::from_bytes(tokenizer_json, spec.max_length)?;
        let backend = OrtBackend::from_bytes(onnx, spec.task, spec.head.is_some(), &opts)?;
        TextModel::with_backend(Box::new(backend), encoder, spec, opts)
    }

    /// Assembles a model from any [`Backend`] and a configured [`TextEncoder`] (whose
    /// `max_length` wins over the spec's), then probes the backend as described in the
    /// [module documentation](self).
    pub fn with_backend(
        backend: Box<dyn Backend>,
        encoder: TextEncoder,
        mut spec: ModelSpec,
        opts: SessionOptions,
    ) -> Result<TextModel> {
        check_options(&opts)?;
        spec.max_length = encoder.max_length();
        let width = probe(backend.as_ref(), &encoder)?;
        let (labels, positive) = resolve_labels(&spec, backend.io().output, width)?;
        Ok(TextModel {
            encoder,
            backend,
            spec,
            opts,
            width,
            labels,
            positive,
        })
    }

    /// The spec in force (its `max_length` is the tokenizer's).
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// What the graph takes and gives.
    pub fn io(&self) -> &GraphIo {
        self.backend.io()
    }

    /// The embedding dimension (the pooling's, see [`Pooling::dim`]), for encoders (`None`
    /// for a `logits` graph).
    pub fn dim(&self) -> Option<usize> {
        (self.backend.io().output == OutputKind::Hidden).then(|| self.spec.pooling.dim(self.width))
    }

    /// Label names, in logit order (empty for an encoder without a head).
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The label [`TextModel::score`] reports, when there is one.
    pub fn positive_label(&self) -> Option<usize> {
        self.positive
    }

    /// The tokenizer as configured.
    pub fn encoder(&self) -> &TextEncoder {
        &self.encoder
    }

    /// Replaces the head (`None` removes it), e.g. after [`train_softmax_head`] on this
    /// model's embeddings. Only for encoders; the spec's labels become the head's, and its
    /// positive label is kept when still valid, else chosen again.
    pub fn set_head(&mut self, head: Option<Head>) -> Result<()> {
        if self.backend.io().output != OutputKind::Hidden {
            return Err(CoreError::InvalidParameter(
                "a head needs an encoder graph (output last_hidden_state); this one outputs logits"
                    .into(),
            ));
        }
        let mut spec = self.spec.clone();
        spec.labels = head.as_ref().map(|h| h.labels.clone()).unwrap_or_default();
        if let (Some(p), Some(h)) = (spec.positive_label, head.as_ref()) {
            if p >= h.n_labels() {
                spec.positive_label = None;
            }
        }
        spec.head = head;
        if spec.head.is_none() {
            spec.positive_label = None;
            spec.task = Task::Embedding;
        }
        let (labels, positive) = resolve_labels(&spec, OutputKind::Hidden, self.width)?;
        self.spec = spec;
        self.labels = labels;
        self.positive = positive;
        Ok(())
    }

    /// Token ids of a text as the model sees it (special tokens added, truncated).
    pub fn tokenize(&self, text: &str) -> Result<Vec<i64>> {
        Ok(self.encoder.encode(text)?.ids)
    }

    /// Sentence embeddings: pooled token states, L2-normalised, one per text in input order.
    /// Errors for a `logits`-only graph.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.embed_with(texts, &mut NoMonitor)
    }

    /// [`TextModel::embed`], calling `monitor` before each inference batch (to check for
    /// cancellation); an error from it stops the call.
    pub fn embed_with(&self, texts: &[&str], monitor: &mut dyn Monitor) -> Result<Vec<Vec<f32>>> {
        let mut out = self.embed_poolings_with(texts, &[self.spec.pooling], monitor)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Class logits, one vector per text: the graph's `logits`, or the head applied to the
    /// embedding. Errors for an encoder without a head.
    pub fn logits(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.logits_with(texts, &mut NoMonitor)
    }

    /// [`TextModel::logits`] with a monitor (see [`TextModel::embed_with`]).
    pub fn logits_with(&self, texts: &[&str], monitor: &mut dyn Monitor) -> Result<Vec<Vec<f32>>> {
        match (self.backend.io().output, &self.spec.head) {
            (OutputKind::Logits, _) => self.infer(texts, monitor),
            (OutputKind::Hidden, Some(head)) => self
                .infer(texts, monitor)?
                .iter()
                .map(|e| head.logits(e))
                .collect(),
            (OutputKind::Hidden, None) => Err(CoreError::InvalidParameter(
                "this model is an encoder without a classification head: it gives embeddings, \
                 not class scores (train a head first)"
                    .into(),
            )),
        }
    }

    /// Class probabilities (softmax of [`TextModel::logits`]).
    pub fn probabilities(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.probabilities_with(texts, &mut NoMonitor)
    }

    /// [`TextModel::probabilities`] with a monitor.
    pub fn probabilities_with(
        &self,
        texts: &[&str],
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Vec<f32>>> {
        Ok(self
            .logits_with(texts, monitor)?
            .iter()
            .map(|l| math::softmax(l))
            .collect())
    }

    /// The probability of the positive label for each text. Errors when the model has no
    /// positive label (more than two labels and none designated).
    pub fn score(&self, texts: &[&str]) -> Result<Vec<f32>> {
        self.score_with(texts, &mut NoMonitor)
    }

    /// [`TextModel::score`] with a monitor.
    pub fn score_with(&self, texts: &[&str], monitor: &mut dyn Monitor) -> Result<Vec<f32>> {
        let positive = self.positive.ok_or_else(|| {
            CoreError::InvalidParameter(format!(
                "the model has {} labels and no positive label; set positive_label to score",
                self.labels.len()
            ))
        })?;
        self.probabilities_with(texts, monitor)?
            .iter()
            .map(|p| {
                p.get(positive).copied().ok_or_else(|| {
                    CoreError::Runtime("the model returned fewer logits than labels".into())
                })
            })
            .collect()
    }

    /// The most probable label of each text, with all probabilities.
    pub fn classify(&self, texts: &[&str]) -> Result<Vec<Classification>> {
        self.classify_with(texts, &mut NoMonitor)
    }

    /// [`TextModel::classify`] with a monitor.
    pub fn classify_with(
        &self,
        texts: &[&str],
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Classification>> {
        self.probabilities_with(texts, monitor)?
            .into_iter()
            .map(|probabilities| {
                let mut index = 0;
                for (i, p) in probabilities.iter().enumerate() {
                    if *p > probabilities[index] {
                        index = i;
                    }
                }
                let label = self.labels.get(index).cloned().ok_or_else(|| {
                    CoreError::Runtime("the model returned more logits than labels".into())
                })?;
                Ok(Classification {
                    index,
                    label,
                    score: probabilities[index],
                    probabilities,
                })
            })
            .collect()
    }

    /// Tokenises, batches, runs and un-batches: pooled normalised embeddings for an encoder,
    /// raw logits for a classifier graph, in input order.
    fn infer(&self, texts: &[&str], monitor: &mut dyn Monitor) -> Result<Vec<Vec<f32>>> {
        let mut out = self.infer_pooled(texts, &[self.spec.pooling], monitor)?;
        Ok(out.pop().unwrap_or_default())
    }

    /// Embeddings of `texts` under each of `poolings` from one inference pass: `result[p][t]`
    /// is text `t` pooled by `poolings[p]`, exactly what a model with that pooling embeds.
    /// Training uses it to compare poolings at the cost of one. Errors for a `logits` graph.
    pub fn embed_poolings_with(
        &self,
        texts: &[&str],
        poolings: &[Pooling],
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        if self.backend.io().output != OutputKind::Hidden {
            return Err(CoreError::InvalidParameter(
                "this model is a classifier graph (output logits) and gives no embeddings".into(),
            ));
        }
        self.infer_pooled(texts, poolings, monitor)
    }

    /// Batches for texts of these token counts within the session's bounds: texts, tokens and
    /// estimated memory ([`batch_bytes`]) per run. A text whose run alone would exceed the
    /// memory bound is a [`CoreError::TooLarge`], before anything runs.
    pub fn plan(&self, lengths: &[usize]) -> Result<Vec<Vec<usize>>> {
        let o = &self.opts;
        // The graph's hidden width; a classifier graph's output width is its label count, so
        // assume BERT-large's 1024 for it.
        let hidden = match self.backend.io().output {
            OutputKind::Hidden => self.width,
            OutputKind::Logits => 1024,
        };
        let fits_memory = |rows, seq| {
            o.max_batch_bytes == 0 || batch_bytes(rows, seq, hidden) <= o.max_batch_bytes
        };
        if let Some(&longest) = lengths.iter().max() {
            if !fits_memory(1, longest) {
                return Err(CoreError::TooLarge(format!(
                    "one text of {longest} tokens needs about {} MB to run, more than the {} MB \
                     one inference run may take",
                    batch_bytes(1, longest, hidden) >> 20,
                    o.max_batch_bytes >> 20
                )));
            }
        }
        Ok(plan_batches_within(
            lengths,
            o.batch_size,
            !self.backend.io().has_attention_mask(),
            |rows, seq| rows.saturating_mul(seq) <= o.max_batch_tokens && fits_memory(rows, seq),
        ))
    }

    /// [`TextModel::infer`] for several poolings at once (`result[p][t]`); a `logits` graph
    /// gives its logits once, whatever the poolings.
    fn infer_pooled(
        &self,
        texts: &[&str],
        poolings: &[Pooling],
        monitor: &mut dyn Monitor,
    ) -> Result<Vec<Vec<Vec<f32>>>> {
        let encoded = texts
            .iter()
            .map(|t| self.encoder.encode(t))
            .collect::<Result<Vec<Encoded>>>()?;
        let lengths: Vec<usize> = encoded.iter().map(Encoded::len).collect();
        let io = self.backend.io();
        let plan = self.plan(&lengths)?;
        let views = match io.output {
            OutputKind::Hidden => poolings.len(),
            OutputKind::Logits => 1,
        };
        let mut results: Vec<Vec<Option<Vec<f32>>>> = vec![vec![None; texts.len()]; views];
        for (step, members) in plan.iter().enumerate() {
            monitor.step(&Progress::epoch("text inference", step, plan.len(), None))?;
            let items: Vec<&Encoded> = members.iter().map(|&i| &encoded[i]).collect();
            let batch = PaddedBatch::new(&items, self.encoder.pad_id());
            let out = self.backend.run(&batch)?;
            check_output(&out, &batch, io.output, self.width)?;
            let block = out.seq * out.width;
            for (row, &i) in members.iter().enumerate() {
                let data = &out.data[row * block..(row + 1) * block];
                match io.output {
                    OutputKind::Logits => results[0][i] = Some(data.to_vec()),
                    OutputKind::Hidden => {
                        for (p, pooling) in poolings.iter().enumerate() {
                            results[p][i] = Some(pooling.pool(data, out.width, batch.lengths[row]));
                        }
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.into_iter().collect::<Option<Vec<_>>>())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| CoreError::Runtime("a text was left out of every batch".into()))
    }
}

fn check_options(opts: &SessionOptions) -> Result<()> {
    if opts.batch_size == 0 || opts.max_batch_tokens == 0 {
        return Err(CoreError::InvalidParameter(
            "batch_size and max_batch_tokens must be at least 1".into(),
        ));
    }
    if opts.threads > 1024 {
        return Err(CoreError::InvalidParameter(format!(
            "threads must be at most 1024, got {}",
            opts.threads
        )));
    }
    Ok(())
}

/// Checks a backend's answer against the batch it was given (for any [`Backend`]).
fn check_output(
    out: &BatchOutput,
    batch: &PaddedBatch,
    kind: OutputKind,
    width: usize,
) -> Result<()> {
    let seq = match kind {
        OutputKind::Hidden => batch.seq,
        OutputKind::Logits => 1,
    };
    if out.kind != kind
        || out.rows != batch.rows
        || out.seq != seq
        || out.width != width
        || out.data.len() != batch.rows * seq * width
    {
        return Err(CoreError::Runtime(format!(
            "the backend returned {} × {} × {} values for a batch of {} × {} tokens (expected width {width})",
            out.rows, out.seq, out.width, batch.rows, batch.seq
        )));
    }
    if out.data.iter().any(|v| !v.is_finite()) {
        return Err(CoreError::Runtime(
            "the model produced non-finite values".into(),
        ));
    }
    Ok(())
}

/// Runs the graph on `max_length` copies of the tokenizer's largest id; on failure, tells a
/// vocabulary problem from a length problem with a second, 1-token probe. Returns the output
/// width.
fn probe(backend: &dyn Backend, encoder: &TextEncoder) -> Result<usize> {
    let max_id = i64::from(encoder.max_id());
    let make = |len: usize| Encoded {
        ids: vec![max_id; len],
        type_ids: vec![0; len],
    };
    let long = make(encoder.max_length());
    let batch = PaddedBatch::new(&[&long], encoder.pad_id());
    let first = match backend.probe(&batch) {
        Ok(out) => return probe_width(backend, &out, &batch),
        Err(e) => e,
    };
    let short = make(1);
    let batch = PaddedBatch::new(&[&short], encoder.pad_id());
    match backend.probe(&batch) {
        Ok(_) => Err(CoreError::SequenceTooLong(format!(
            "the model fails on texts of max_length = {} tokens (its position table may be \
             shorter; lower max_length): {first}",
            encoder.max_length()
        ))),
        Err(e) => Err(CoreError::TokenizerMismatch(format!(
            "the model fails on the tokenizer's largest token id {max_id} (vocabulary of {} \
             ids): the tokenizer does not match the model's embedding table: {e}",
            encoder.vocab_size()
        ))),
    }
}

fn probe_width(backend: &dyn Backend, out: &BatchOutput, batch: &PaddedBatch) -> Result<usize> {
    let io = backend.io();
    check_output(out, batch, io.output, out.width)?;
    if let Some(w) = io.declared_width {
        if w != out.width {
            return Err(CoreError::InvalidData(format!(
                "the graph declares output \"{}\" of width {w} but returns {}",
                io.output_name, out.width
            )));
        }
    }
    if out.width == 0 {
        return Err(CoreError::InvalidData("the model's output is empty".into()));
    }
    Ok(out.width)
}

/// Label names and positive label of a spec on a graph whose output has `width` values (token
/// states of that width for an encoder, pooled by the spec's pooling).
fn resolve_labels(
    spec: &ModelSpec,
    output: OutputKind,
    width: usize,
) -> Result<(Vec<String>, Option<usize>)> {
    let labels = match (output, &spec.head) {
        (OutputKind::Logits, head) => {
            if head.is_some() {
                return Err(CoreError::InvalidParameter(
                    "a head needs an encoder graph (output last_hidden_state); this one outputs logits"
                        .into(),
                ));
            }
            if width < 2 {
                return Err(CoreError::InvalidData(format!(
                    "the classifier has {width} logit(s); at least two labels are needed"
                )));
            }
            if spec.labels.is_empty() {
                (0..width).map(|i| format!("LABEL_{i}")).collect()
            } else if spec.labels.len() == width {
                spec.labels.clone()
            } else {
                return Err(CoreError::InvalidParameter(format!(
                    "{} labels given but the model has {width} logits",
                    spec.labels.len()
                )));
            }
        }
        (OutputKind::Hidden, Some(head)) => {
            head.validate(Some(spec.pooling.dim(width)))?;
            if !spec.labels.is_empty() && spec.labels != head.labels {
                return Err(CoreError::InvalidParameter(
                    "the spec's labels differ from its head's labels".into(),
                ));
            }
            head.labels.clone()
        }
        (OutputKind::Hidden, None) => {
            if spec.task == Task::Classification {
                return Err(CoreError::InvalidParameter(
                    "a classification model needs a logits output or a trained head".into(),
                ));
            }
            Vec::new()
        }
    };
    let positive = match spec.positive_label {
        Some(p) if p < labels.len() => Some(p),
        Some(p) => {
            return Err(CoreError::InvalidParameter(format!(
                "positive_label {p} is out of range: there are {} labels",
                labels.len()
            )))
        }
        None => {
            let named: Vec<usize> = labels
                .iter()
                .enumerate()
                .filter(|(_, l)| {
                    l.eq_ignore_ascii_case("positive") || l.eq_ignore_ascii_case("pos")
                })
                .map(|(i, _)| i)
                .collect();
            match (named.as_slice(), labels.len()) {
                ([i], _) => Some(*i),
                (_, 2) => Some(1),
                _ => None,
            }
        }
    };
    Ok((labels, positive))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fake encoder: each token's state is a function of its id and position only, except
    /// that it adds the mean id of the *real* tokens of its row (so a backend that let padding
    /// leak would change results). Ids above `vocab` fail, like a bounds-checked Gather.
    struct FakeBackend {
        io: GraphIo,
        vocab: i64,
        max_pos: usize,
        runs: AtomicUsize,
    }

    impl FakeBackend {
        fn new(output: OutputKind) -> FakeBackend {
            FakeBackend {
                io: GraphIo {
                    inputs: vec![InputKind::InputIds, InputKind::AttentionMask],
                    output_name: "x".into(),
                    output,
                    declared_width: None,
                },
                vocab: 1000,
                max_pos: 512,
                runs: AtomicUsize::new(0),
            }
        }
    }

    impl Backend for FakeBackend {
        fn io(&self) -> &GraphIo {
            &self.io
        }
        fn run(&self, b: &PaddedBatch) -> Result<BatchOutput> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            if b.seq > self.max_pos {
                return Err(CoreError::Runtime("position out of range".into()));
            }
            if b.input_ids.iter().any(|&i| i >= self.vocab) {
                return Err(CoreError::Runtime("index out of range".into()));
            }
            let w = 3;
            let mut data = Vec::new();
            for r in 0..b.rows {
                let row = &b.input_ids[r * b.seq..(r + 1) * b.seq];
                let mask = &b.attention_mask[r * b.seq..(r + 1) * b.seq];
                let n: i64 = mask.iter().sum();
                let mean = row.iter().zip(mask).map(|(i, m)| i * m).sum::<i64>() as f32 / n as f32;
                match self.io.output {
                    OutputKind::Hidden => {
                        for (p, &id) in row.iter().enumerate() {
                            data.extend([id as f32, p as f32 + 1.0, mean]);
                        }
                    }
                    OutputKind::Logits => data.extend([mean, -mean, 0.5]),
                }
            }
            let seq = if self.io.output == OutputKind::Hidden {
                b.seq
            } else {
                1
            };
            Ok(BatchOutput {
                kind: self.io.output,
                rows: b.rows,
                seq,
                width: w,
                data,
            })
        }
    }

    const TOKENIZER: &[u8] = include_bytes!("../../tests/data/text/tokenizer.json");

    fn model(output: OutputKind, spec: ModelSpec, opts: SessionOptions) -> Result<TextModel> {
        let encoder = TextEncoder::from_bytes(TOKENIZER, spec.max_length)?;
        TextModel::with_backend(Box::new(FakeBackend::new(output)), encoder, spec, opts)
    }

    fn small_batches() -> SessionOptions {
        SessionOptions {
            batch_size: 2,
            max_batch_tokens: 20,
            ..Default::default()
        }
    }

    const TEXTS: [&str; 6] = [
        "the movie was very good",
        "",
        "bad",
        "this this this this this this this this this",
        "great film",
        "ok",
    ];

    #[test]
    fn batching_restores_order_and_is_invisible() {
        let spec = ModelSpec {
            max_length: 16,
            ..Default::default()
        };
        let m = model(OutputKind::Hidden, spec, small_batches()).unwrap();
        let all = m.embed(&TEXTS).unwrap();
        for (i, t) in TEXTS.iter().enumerate() {
            let alone = m.embed(&[t]).unwrap();
            assert_eq!(alone[0], all[i], "text {i}");
            let norm: f32 = all[i].iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
        }
        assert!(m.embed(&[]).unwrap().is_empty());
        // Mean pooling of the fake: position mean is (len+1)/2, the mean-id column is constant.
        let ids = m.tokenize("bad").unwrap();
        assert_eq!(ids.len(), 3);
    }

    /// Batches are cut so that each run's estimated memory stays within the bound, whatever the
    /// text and token bounds allow; a text too large to run alone is refused before any run.
    #[test]
    fn batches_fit_the_memory_bound() {
        let spec = ModelSpec {
            max_length: 64,
            ..Default::default()
        };
        let hidden = model(OutputKind::Hidden, spec.clone(), SessionOptions::default())
            .unwrap()
            .width;
        let lengths: Vec<usize> = (0..200).map(|i| 2 + i % 63).collect();
        for budget in [81u64 << 20, 85 << 20, 1 << 30] {
            let opts = SessionOptions {
                batch_size: 4096,
                max_batch_tokens: 1 << 24,
                max_batch_bytes: budget,
                ..Default::default()
            };
            let m = model(OutputKind::Hidden, spec.clone(), opts).unwrap();
            let plan = m.plan(&lengths).unwrap();
            let mut seen: Vec<usize> = plan.iter().flatten().copied().collect();
            seen.sort_unstable();
            assert_eq!(seen, (0..200).collect::<Vec<_>>());
            for b in &plan {
                let seq = b.iter().map(|&i| lengths[i]).max().unwrap();
                assert!(
                    batch_bytes(b.len(), seq, hidden) <= budget,
                    "{} x {seq}",
                    b.len()
                );
            }
            // A larger budget never needs more runs.
            if budget == 1 << 30 {
                assert_eq!(plan.len(), 1);
            }
        }
        let tiny = SessionOptions {
            max_batch_bytes: 64 << 20,
            ..Default::default()
        };
        let m = model(OutputKind::Hidden, spec, tiny).unwrap();
        assert!(matches!(m.plan(&[3, 60]), Err(CoreError::TooLarge(_))));
        assert!(matches!(m.embed(&["good"]), Err(CoreError::TooLarge(_))));
    }

    #[test]
    fn poolings_from_one_pass_equal_each_model() {
        let with = |pooling| {
            let spec = ModelSpec {
                pooling,
                max_length: 16,
                ..Default::default()
            };
            model(OutputKind::Hidden, spec, small_batches()).unwrap()
        };
        let m = with(Pooling::Mean);
        let all = m
            .embed_poolings_with(&TEXTS, &Pooling::ALL, &mut NoMonitor)
            .unwrap();
        assert_eq!(all.len(), 3);
        for (p, pooling) in Pooling::ALL.into_iter().enumerate() {
            let own = with(pooling);
            assert_eq!(own.dim(), Some(pooling.dim(3)));
            assert_eq!(all[p], own.embed(&TEXTS).unwrap(), "{}", pooling.name());
        }
        // mean+cls is the two unit vectors side by side, scaled to unit length.
        let (mean, cls, both) = (&all[0], &all[1], &all[2]);
        for t in 0..TEXTS.len() {
            assert_eq!(both[t].len(), 6);
            let norm: f32 = both[t].iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-5);
            for j in 0..3 {
                let s = std::f32::consts::SQRT_2;
                assert!((both[t][j] * s - mean[t][j]).abs() < 1e-6);
                assert!((both[t][3 + j] * s - cls[t][j]).abs() < 1e-6);
            }
            assert_ne!(
                mean[t], cls[t],
                "the fake's first token differs from the mean"
            );
        }
        // Names round-trip, in specs too.
        for p in Pooling::ALL {
            assert_eq!(Pooling::from_name(p.name()), Some(p));
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(json, format!("\"{}\"", p.name()));
        }
        assert_eq!(Pooling::from_name("MEAN+CLS"), Some(Pooling::MeanCls));
        assert_eq!(Pooling::from_name("max"), None);
        // A head must match the pooled width: 6 for mean+cls on this 3-wide encoder.
        let head = |d: usize| Head {
            weights: vec![0.1; 2 * d],
            bias: vec![0.0; 2],
            labels: vec!["negative".into(), "positive".into()],
        };
        let mut both_model = with(Pooling::MeanCls);
        assert!(both_model.set_head(Some(head(3))).is_err());
        both_model.set_head(Some(head(6))).unwrap();
        assert_eq!(both_model.score(&TEXTS).unwrap().len(), TEXTS.len());
    }

    #[test]
    fn monitor_is_called_per_batch_and_can_cancel() {
        struct Count(usize);
        impl Monitor for Count {
            fn step(&mut self, p: &Progress) -> Result<()> {
                self.0 += 1;
                if p.step == 1 {
                    return Err(CoreError::Cancelled);
                }
                Ok(())
            }
        }
        let m = model(OutputKind::Hidden, ModelSpec::default(), small_batches()).unwrap();
        let mut c = Count(0);
        assert_eq!(
            m.embed_with(&TEXTS, &mut c).unwrap_err(),
            CoreError::Cancelled
        );
        assert_eq!(c.0, 2);
    }

    #[test]
    fn logits_graph_labels_and_scores() {
        let spec = ModelSpec {
            task: Task::Classification,
            labels: vec!["neg".into(), "positive".into(), "other".into()],
            ..Default::default()
        };
        let m = model(OutputKind::Logits, spec, SessionOptions::default()).unwrap();
        assert_eq!(m.positive_label(), Some(1));
        assert_eq!(m.dim(), None);
        assert!(m.embed(&["x"]).is_err());
        let p = m.probabilities(&TEXTS).unwrap();
        let s = m.score(&TEXTS).unwrap();
        for (pi, si) in p.iter().zip(&s) {
            assert_eq!(pi[1], *si);
            assert!((pi.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        }
        let c = m.classify(&["bad"]).unwrap();
        assert_eq!(c[0].label, "neg");
        // Wrong number of labels.
        let spec = ModelSpec {
            labels: vec!["a".into(), "b".into()],
            ..Default::default()
        };
        assert!(model(OutputKind::Logits, spec, SessionOptions::default()).is_err());
        // Three default labels: no positive label, score is an error, classify works.
        let m = model(
            OutputKind::Logits,
            ModelSpec::default(),
            SessionOptions::default(),
        )
        .unwrap();
        assert_eq!(m.labels()[2], "LABEL_2");
        assert!(m.score(&["x"]).is_err());
        assert!(m.classify(&["x"]).is_ok());
    }

    #[test]
    fn head_on_encoder() {
        let head = Head {
            weights: vec![1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            bias: vec![0.0, 0.1],
            labels: vec!["NEGATIVE".into(), "POSITIVE".into()],
        };
        let spec = ModelSpec {
            task: Task::Classification,
            head: Some(head.clone()),
            ..Default::default()
        };
        let mut m = model(OutputKind::Hidden, spec, SessionOptions::default()).unwrap();
        assert_eq!(m.positive_label(), Some(1));
        let emb = m.embed(&TEXTS).unwrap();
        let logits = m.logits(&TEXTS).unwrap();
        for (e, l) in emb.iter().zip(&logits) {
            assert_eq!(*l, head.logits(e).unwrap());
        }
        // Wrong head dimension.
        let bad = Head {
            weights: vec![1.0; 4],
            ..head.clone()
        };
        assert!(m.set_head(Some(bad)).is_err());
        m.set_head(None).unwrap();
        assert!(m.logits(&["x"]).is_err());
        m.set_head(Some(head)).unwrap();
        assert_eq!(m.labels().len(), 2);
        // Classification without head or logits.
        let spec = ModelSpec {
            task: Task::Classification,
            ..Default::default()
        };
        assert!(model(OutputKind::Hidden, spec, SessionOptions::default()).is_err());
    }

    #[test]
    fn probe_reports_vocabulary_and_length_problems() {
        let encoder = TextEncoder::from_bytes(TOKENIZER, 16).unwrap();
        let mut small_vocab = FakeBackend::new(OutputKind::Hidden);
        small_vocab.vocab = 10;
        let e = TextModel::with_backend(
            Box::new(small_vocab),
            encoder,
            ModelSpec::default(),
            SessionOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("largest token id"), "{e}");
        let encoder = TextEncoder::from_bytes(TOKENIZER, 600).unwrap();
        let e = TextModel::with_backend(
            Box::new(FakeBackend::new(OutputKind::Hidden)),
            encoder,
            ModelSpec::default(),
            SessionOptions::default(),
        )
        .unwrap_err();
        assert!(e.to_string().contains("max_length = 600"), "{e}");
    }

    #[test]
    fn spec_serde_defaults() {
        let s: ModelSpec =
            serde_json::from_str(r#"{"task":"classification","pooling":"cls"}"#).unwrap();
        assert_eq!(s.max_length, DEFAULT_MAX_LENGTH);
        assert_eq!(s.pooling, Pooling::Cls);
        let round: ModelSpec = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(round, s);
        assert!(serde_json::from_str::<ModelSpec>(r#"{"task":"regression"}"#).is_err());
    }

    #[test]
    fn bad_options_and_tokenizer() {
        assert!(model(
            OutputKind::Hidden,
            ModelSpec::default(),
            SessionOptions {
                batch_size: 0,
                ..Default::default()
            }
        )
        .is_err());
        assert!(matches!(
            TextEncoder::from_bytes(b"{not json", 16),
            Err(CoreError::CorruptTokenizer(_))
        ));
        assert!(TextEncoder::from_bytes(TOKENIZER, 1).is_err());
        assert!(TextEncoder::from_bytes(TOKENIZER, 2).is_err()); // [CLS] [SEP] leave no room
        assert!(TextEncoder::from_bytes(TOKENIZER, 100_000).is_err());
    }
}
