//! A BERT encoder with a mean-pooled linear classification head, in candle, for fine-tuning.
//!
//! The arithmetic is Hugging Face's `BertModel` (absolute positions, exact erf GELU,
//! post-LayerNorm, attention masked by adding −10000 at padding) followed by
//! sentence-transformers' masked mean pooling, dropout and one linear layer. Every operation is
//! one of candle's differentiable ones: in particular LayerNorm is written out (mean, variance,
//! scale, shift), since candle's fused LayerNorm has no backward pass and an encoder trained
//! through it silently gets no gradient. [`super::onnx`] writes the same arithmetic as an ONNX
//! graph.
//!
//! Linear weights are held as `[in, out]` (Hugging Face stores `[out, in]`), so a layer is one
//! matrix product of the `[rows × tokens, in]` activations.

use candle_core::{DType, Device, Tensor, Var, D};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

use crate::{CoreError, Result};

/// The masked positions' additive attention bias (as in Hugging Face's BERT before 4.3 and
/// most ONNX exports): large enough that their softmax weight is 0 in f32.
pub(crate) const MASK_BIAS: f32 = -10000.0;

/// Shape of a BERT encoder, read from a Hugging Face `config.json` (other keys are ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Parses and checks a Hugging Face `config.json`.
    pub fn from_json(bytes: &[u8]) -> Result<BertConfig> {
        let c: BertConfig = serde_json::from_slice(bytes)
            .map_err(|e| CoreError::InvalidData(format!("config.json: {e}")))?;
        c.check()?;
        Ok(c)
    }

    /// Refuses what this implementation does not compute.
    pub fn check(&self) -> Result<()> {
        let bad = |m: String| Err(CoreError::InvalidData(format!("config.json: {m}")));
        if self.hidden_act != "gelu" {
            return bad(format!(
                "hidden_act {:?} is not supported (only \"gelu\", BERT's exact erf GELU)",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return bad(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        let dims = [
            self.vocab_size,
            self.hidden_size,
            self.num_hidden_layers,
            self.num_attention_heads,
            self.intermediate_size,
            self.max_position_embeddings,
            self.type_vocab_size,
        ];
        if dims.iter().any(|&d| d == 0 || d > 1 << 24) {
            return bad("a dimension is 0 or implausibly large".into());
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps < 1.0) {
            return bad(format!(
                "layer_norm_eps {} is not in (0, 1)",
                self.layer_norm_eps
            ));
        }
        Ok(())
    }

    /// Width of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Number of encoder weights (embeddings and layers, without any pooler or head).
    pub fn encoder_parameters(&self) -> usize {
        let h = self.hidden_size;
        let emb =
            (self.vocab_size + self.max_position_embeddings + self.type_vocab_size) * h + 2 * h;
        emb + self.num_hidden_layers * self.layer_parameters()
    }

    /// Number of weights of one encoder layer.
    pub fn layer_parameters(&self) -> usize {
        let h = self.hidden_size;
        let i = self.intermediate_size;
        // Q, K, V, attention output; intermediate and output; two LayerNorms.
        4 * (h * h + h) + (h * i + i) + (i * h + h) + 4 * h
    }
}

/// A weight as written out: name, shape, values (row-major).
pub(crate) type NamedWeight = (String, Vec<usize>, Vec<f32>);

/// A linear layer, weight `[in, out]`.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub w: Tensor,
    pub b: Tensor,
}

impl Linear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.w)?.broadcast_add(&self.b)
    }
}

/// LayerNorm over the last dimension, written with differentiable operations.
#[derive(Debug, Clone)]
pub(crate) struct LayerNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let centred = x.broadcast_sub(&mean)?;
        let var = centred.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        normed.broadcast_mul(&self.gamma)?.broadcast_add(&self.beta)
    }
}

/// One encoder layer.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub attention_output: Linear,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
}

/// Inverted dropout with its own seeded generator (candle's dropout draws from the thread's
/// generator, which would make training depend on more than its seed).
pub struct Dropout {
    p: f32,
    rng: Pcg64,
}

impl Dropout {
    pub fn new(p: f32, seed: u64) -> Dropout {
        Dropout {
            p,
            rng: Pcg64::seed_from_u64(seed ^ 0xd50_u64.rotate_left(40)),
        }
    }

    fn apply(&mut self, x: &Tensor) -> candle_core::Result<Tensor> {
        if self.p <= 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - self.p);
        let n = x.elem_count();
        let mask: Vec<f32> = (0..n)
            .map(|_| {
                if self.rng.random::<f32>() < self.p {
                    0.0
                } else {
                    keep
                }
            })
            .collect();
        x.mul(&Tensor::from_vec(mask, x.shape(), x.device())?)
    }
}

fn drop(d: &mut Option<&mut Dropout>, x: Tensor) -> candle_core::Result<Tensor> {
    match d {
        Some(d) => d.apply(&x),
        None => Ok(x),
    }
}

/// A padded batch as tensors: ids and segment ids `[rows, seq]` (u32), mask `[rows, seq]` (f32).
pub struct TensorBatch {
    pub rows: usize,
    pub seq: usize,
    pub ids: Tensor,
    pub type_ids: Tensor,
    pub mask: Tensor,
}

impl TensorBatch {
    /// Pads token-id rows to the longest (pad id 0, segment 0, mask 0).
    pub fn new(items: &[(&[u32], &[u32])]) -> Result<TensorBatch> {
        let rows = items.len();
        let seq = items.iter().map(|(ids, _)| ids.len()).max().unwrap_or(0);
        let mut ids = vec![0u32; rows * seq];
        let mut types = vec![0u32; rows * seq];
        let mut mask = vec![0f32; rows * seq];
        for (r, (i, t)) in items.iter().enumerate() {
            ids[r * seq..r * seq + i.len()].copy_from_slice(i);
            for (dst, src) in types[r * seq..r * seq + i.len()].iter_mut().zip(t.iter()) {
                *dst = *src;
            }
            mask[r * seq..r * seq + i.len()].fill(1.0);
        }
        let dev = Device::Cpu;
        Ok(TensorBatch {
            rows,
            seq,
            ids: Tensor::from_vec(ids, (rows, seq), &dev)?,
            type_ids: Tensor::from_vec(types, (rows, seq), &dev)?,
            mask: Tensor::from_vec(mask, (rows, seq), &dev)?,
        })
    }
}

/// A trainable parameter: its Hugging Face-style name, the variable, and whether weight decay
/// applies (not to biases and LayerNorm weights, as in Hugging Face's `Trainer`).
pub struct Param {
    pub name: String,
    pub var: Var,
    pub decay: bool,
}

/// BERT encoder + mean pooling + dropout + linear head.
pub struct BertClassifier {
    pub config: BertConfig,
    pub(crate) word: Tensor,
    pub(crate) position: Tensor,
    pub(crate) token_type: Tensor,
    pub(crate) embedding_norm: LayerNorm,
    pub(crate) layers: Vec<Layer>,
    pub(crate) head: Linear,
    /// The parameters training updates (those of frozen layers are plain tensors).
    pub params: Vec<Param>,
    labels: usize,
}

/// How the weights are built: from a checkpoint's tensors, or drawn at random.
enum Source<'a> {
    Checkpoint(&'a std::collections::HashMap<String, Tensor>),
    Random(&'a mut Pcg64),
}

struct Builder<'a> {
    source: Source<'a>,
    params: Vec<Param>,
}

impl Builder<'_> {
    /// A tensor of `shape` named `name`: the checkpoint's (transposed when `transpose`), or
    /// N(0, 0.02) / zeros / ones at random; a variable when `trainable`.
    fn get(
        &mut self,
        name: &str,
        shape: &[usize],
        transpose: bool,
        init: Init,
        trainable: bool,
    ) -> Result<Tensor> {
        let t = match &mut self.source {
            Source::Checkpoint(map) => {
                let t = map
                    .get(name)
                    .or_else(|| map.get(&format!("bert.{name}")))
                    .ok_or_else(|| {
                        CoreError::InvalidData(format!("the checkpoint has no tensor {name}"))
                    })?;
                let t = t.to_dtype(DType::F32)?;
                let t = if transpose { t.t()?.contiguous()? } else { t };
                if t.dims() != shape {
                    return Err(CoreError::InvalidData(format!(
                        "tensor {name} has shape {:?}, expected {shape:?}{}",
                        t.dims(),
                        if transpose { " after transposing" } else { "" }
                    )));
                }
                // A copy: the checkpoint's buffer is dropped after loading.
                t.copy()?
            }
            Source::Random(rng) => {
                let n: usize = shape.iter().product();
                let v: Vec<f32> = match init {
                    Init::Normal => {
                        let d = Normal::new(0.0f32, 0.02).expect("valid normal");
                        (0..n).map(|_| d.sample(*rng)).collect()
                    }
                    Init::Zeros => vec![0.0; n],
                    Init::Ones => vec![1.0; n],
                };
                Tensor::from_vec(v, shape, &Device::Cpu)?
            }
        };
        if trainable {
            let var = Var::from_tensor(&t)?;
            let tensor = var.as_tensor().clone();
            self.params.push(Param {
                name: name.to_string(),
                var,
                decay: matches!(init, Init::Normal),
            });
            Ok(tensor)
        } else {
            Ok(t)
        }
    }

    fn linear(&mut self, name: &str, i: usize, o: usize, trainable: bool) -> Result<Linear> {
        Ok(Linear {
            w: self.get(
                &format!("{name}.weight"),
                &[i, o],
                true,
                Init::Normal,
                trainable,
            )?,
            b: self.get(&format!("{name}.bias"), &[o], false, Init::Zeros, trainable)?,
        })
    }

    fn norm(&mut self, name: &str, h: usize, eps: f64, trainable: bool) -> Result<LayerNorm> {
        Ok(LayerNorm {
            gamma: self.get(
                &format!("{name}.weight"),
                &[h],
                false,
                Init::Ones,
                trainable,
            )?,
            beta: self.get(&format!("{name}.bias"), &[h], false, Init::Zeros, trainable)?,
            eps,
        })
    }
}

/// The encoder's weights as built.
struct Parts {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
    layers: Vec<Layer>,
}

#[derive(Clone, Copy)]
enum Init {
    Normal,
    Zeros,
    Ones,
}

impl BertClassifier {
    /// The encoder of a safetensors checkpoint (Hugging Face `BertModel` names, with or without
    /// a `bert.` prefix; a pooler or MLM head in it is ignored) and a new head of `labels`
    /// outputs drawn from `seed`. The embeddings and the bottom `frozen_layers` layers are not
    /// trained when `frozen_layers` > 0.
    pub fn from_safetensors(
        config: BertConfig,
        safetensors: &[u8],
        labels: usize,
        frozen_layers: usize,
        seed: u64,
    ) -> Result<BertClassifier> {
        config.check()?;
        let map = candle_core::safetensors::load_buffer(safetensors, &Device::Cpu)
            .map_err(|e| CoreError::InvalidData(format!("model.safetensors: {e}")))?;
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut b = Builder {
            source: Source::Checkpoint(&map),
            params: Vec::new(),
        };
        let encoder = Self::encoder(&mut b, &config, frozen_layers)?;
        let mut hb = Builder {
            source: Source::Random(&mut rng),
            params: Vec::new(),
        };
        let head = hb.linear("classifier", config.hidden_size, labels, true)?;
        b.params.extend(hb.params);
        Ok(Self::assemble(config, encoder, head, b.params, labels))
    }

    /// A model with every weight drawn from `seed` (tests, and checking the arithmetic).
    pub fn random(config: BertConfig, labels: usize, seed: u64) -> Result<BertClassifier> {
        config.check()?;
        let mut rng = Pcg64::seed_from_u64(seed);
        let mut b = Builder {
            source: Source::Random(&mut rng),
            params: Vec::new(),
        };
        let encoder = Self::encoder(&mut b, &config, 0)?;
        let head = b.linear("classifier", config.hidden_size, labels, true)?;
        let params = b.params;
        Ok(Self::assemble(config, encoder, head, params, labels))
    }

    fn encoder(b: &mut Builder, c: &BertConfig, frozen_layers: usize) -> Result<Parts> {
        let h = c.hidden_size;
        let train_emb = frozen_layers == 0;
        let word = b.get(
            "embeddings.word_embeddings.weight",
            &[c.vocab_size, h],
            false,
            Init::Normal,
            train_emb,
        )?;
        let position = b.get(
            "embeddings.position_embeddings.weight",
            &[c.max_position_embeddings, h],
            false,
            Init::Normal,
            train_emb,
        )?;
        let token_type = b.get(
            "embeddings.token_type_embeddings.weight",
            &[c.type_vocab_size, h],
            false,
            Init::Normal,
            train_emb,
        )?;
        let norm = b.norm("embeddings.LayerNorm", h, c.layer_norm_eps, train_emb)?;
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        for l in 0..c.num_hidden_layers {
            let t = l >= frozen_layers;
            let p = format!("encoder.layer.{l}");
            let i = c.intermediate_size;
            let eps = c.layer_norm_eps;
            layers.push(Layer {
                query: b.linear(&format!("{p}.attention.self.query"), h, h, t)?,
                key: b.linear(&format!("{p}.attention.self.key"), h, h, t)?,
                value: b.linear(&format!("{p}.attention.self.value"), h, h, t)?,
                attention_output: b.linear(&format!("{p}.attention.output.dense"), h, h, t)?,
                attention_norm: b.norm(&format!("{p}.attention.output.LayerNorm"), h, eps, t)?,
                intermediate: b.linear(&format!("{p}.intermediate.dense"), h, i, t)?,
                output: b.linear(&format!("{p}.output.dense"), i, h, t)?,
                output_norm: b.norm(&format!("{p}.output.LayerNorm"), h, eps, t)?,
            });
        }
        Ok(Parts {
            word,
            position,
            token_type,
            norm,
            layers,
        })
    }

    fn assemble(
        config: BertConfig,
        parts: Parts,
        head: Linear,
        params: Vec<Param>,
        labels: usize,
    ) -> BertClassifier {
        BertClassifier {
            config,
            word: parts.word,
            position: parts.position,
            token_type: parts.token_type,
            embedding_norm: parts.norm,
            layers: parts.layers,
            head,
            params,
            labels,
        }
    }

    /// Number of classes of the head.
    pub fn labels(&self) -> usize {
        self.labels
    }

    /// Number of trained weights.
    pub fn trainable_parameters(&self) -> usize {
        self.params.iter().map(|p| p.var.elem_count()).sum()
    }

    /// Logits `[rows, labels]`. With `dropout`, the training-time forward pass; `between`
    /// is called between layers (a cancel check) and stops the pass when it errs.
    pub fn forward(
        &self,
        batch: &TensorBatch,
        mut dropout: Option<&mut Dropout>,
        between: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Tensor> {
        let c = &self.config;
        let (b, s, h) = (batch.rows, batch.seq, c.hidden_size);
        if s > c.max_position_embeddings {
            return Err(CoreError::InvalidData(format!(
                "a text of {s} tokens is longer than the encoder's {} positions",
                c.max_position_embeddings
            )));
        }
        let words = self.word.index_select(&batch.ids.flatten_all()?, 0)?;
        let types = self
            .token_type
            .index_select(&batch.type_ids.flatten_all()?, 0)?;
        let positions = self.position.narrow(0, 0, s)?;
        let x = (words + types)?
            .reshape((b, s, h))?
            .broadcast_add(&positions)?
            .reshape((b * s, h))?;
        let x = self.embedding_norm.forward(&x)?;
        let mut x = drop(&mut dropout, x)?;
        // [rows, 1, 1, seq]: 0 at real tokens, MASK_BIAS at padding.
        let bias = ((batch.mask.ones_like()? - &batch.mask)? * f64::from(MASK_BIAS))?
            .reshape((b, 1, 1, s))?;
        for layer in &self.layers {
            between()?;
            x = self.layer(layer, &x, &bias, b, s, &mut dropout)?;
        }
        between()?;
        let mask3 = batch.mask.reshape((b, s, 1))?;
        let summed = x.reshape((b, s, h))?.broadcast_mul(&mask3)?.sum(1)?;
        let count = batch.mask.sum_keepdim(1)?.clamp(1e-9f32, f32::MAX)?;
        let pooled = summed.broadcast_div(&count)?;
        let pooled = drop(&mut dropout, pooled)?;
        Ok(self.head.forward(&pooled)?)
    }

    fn layer(
        &self,
        l: &Layer,
        x: &Tensor,
        bias: &Tensor,
        b: usize,
        s: usize,
        dropout: &mut Option<&mut Dropout>,
    ) -> candle_core::Result<Tensor> {
        let c = &self.config;
        let (nh, d, h) = (c.num_attention_heads, c.head_dim(), c.hidden_size);
        let heads = |t: Tensor| t.reshape((b, s, nh, d))?.transpose(1, 2)?.contiguous();
        let q = heads(l.query.forward(x)?)?;
        let k = heads(l.key.forward(x)?)?;
        let v = heads(l.value.forward(x)?)?;
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? * (1.0 / (d as f64).sqrt()))?.broadcast_add(bias)?;
        let probs = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let probs = drop(dropout, probs)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b * s, h))?;
        let a = drop(dropout, l.attention_output.forward(&context)?)?;
        let x1 = l.attention_norm.forward(&(a + x)?)?;
        let inner = l.intermediate.forward(&x1)?.gelu_erf()?;
        let o = drop(dropout, l.output.forward(&inner)?)?;
        l.output_norm.forward(&(o + x1)?)
    }

    /// Every weight as `(name, shape, values)` in a fixed order, linear weights `[in, out]`:
    /// what [`super::onnx::export`] writes.
    pub(crate) fn weights(&self) -> Result<Vec<NamedWeight>> {
        let mut out = Vec::new();
        let mut put = |name: String, t: &Tensor| -> Result<()> {
            out.push((name, t.dims().to_vec(), t.flatten_all()?.to_vec1::<f32>()?));
            Ok(())
        };
        put("embeddings.word_embeddings.weight".into(), &self.word)?;
        put(
            "embeddings.position_embeddings.weight".into(),
            &self.position,
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            &self.token_type,
        )?;
        put(
            "embeddings.LayerNorm.weight".into(),
            &self.embedding_norm.gamma,
        )?;
        put(
            "embeddings.LayerNorm.bias".into(),
            &self.embedding_norm.beta,
        )?;
        for (i, l) in self.layers.iter().enumerate() {
            let p = format!("encoder.layer.{i}");
            for (n, lin) in [
                ("attention.self.query", &l.query),
                ("attention.self.key", &l.key),
                ("attention.self.value", &l.value),
                ("attention.output.dense", &l.attention_output),
                ("intermediate.dense", &l.intermediate),
                ("output.dense", &l.output),
            ] {
                put(format!("{p}.{n}.weight"), &lin.w)?;
                put(format!("{p}.{n}.bias"), &lin.b)?;
            }
            for (n, ln) in [
                ("attention.output.LayerNorm", &l.attention_norm),
                ("output.LayerNorm", &l.output_norm),
            ] {
                put(format!("{p}.{n}.weight"), &ln.gamma)?;
                put(format!("{p}.{n}.bias"), &ln.beta)?;
            }
        }
        put("classifier.weight".into(), &self.head.w)?;
        put("classifier.bias".into(), &self.head.b)?;
        Ok(out)
    }
}

impl From<candle_core::Error> for CoreError {
    fn from(e: candle_core::Error) -> Self {
        CoreError::Runtime(format!("training arithmetic: {e}"))
    }
}
