//! The inference engine behind a [`TextModel`](super::TextModel): what a graph declares
//! ([`GraphIo`]), the [`Backend`] trait that runs one padded batch, and its ONNX Runtime
//! implementation [`OrtBackend`].

use std::sync::Mutex;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use serde::{Deserialize, Serialize};

use super::batch::PaddedBatch;
use super::{Device, SessionOptions, Task};
use crate::{CoreError, Result};

/// A graph input the runtime knows how to feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputKind {
    /// `input_ids`: token ids, int64 `[batch, seq]`.
    InputIds,
    /// `attention_mask`: 1 on tokens, 0 on padding, int64 `[batch, seq]`.
    AttentionMask,
    /// `token_type_ids`: segment ids, int64 `[batch, seq]`.
    TokenTypeIds,
}

impl InputKind {
    /// The input's name in Hugging Face exports.
    pub fn name(self) -> &'static str {
        match self {
            InputKind::InputIds => "input_ids",
            InputKind::AttentionMask => "attention_mask",
            InputKind::TokenTypeIds => "token_type_ids",
        }
    }
    fn from_name(name: &str) -> Option<InputKind> {
        [
            InputKind::InputIds,
            InputKind::AttentionMask,
            InputKind::TokenTypeIds,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }
}

/// The graph output the runtime reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputKind {
    /// Token states, float `[batch, seq, dim]` (`last_hidden_state` or `token_embeddings`),
    /// pooled by the runtime.
    Hidden,
    /// Class scores, float `[batch, n_labels]` (`logits`).
    Logits,
}

/// Output names recognised, by kind.
const HIDDEN_OUTPUTS: [&str; 2] = ["last_hidden_state", "token_embeddings"];
const LOGITS_OUTPUTS: [&str; 1] = ["logits"];

/// One declared input or output of a graph, as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// Its name.
    pub name: String,
    /// Element type, e.g. `int64`, `float32`; `non-tensor` for sequences and maps.
    pub dtype: String,
    /// Declared shape, `-1` for dynamic dimensions; empty for non-tensors.
    pub shape: Vec<i64>,
}

impl PortInfo {
    fn from_ort(name: &str, ty: &ValueType) -> PortInfo {
        match ty {
            ValueType::Tensor { ty, shape, .. } => PortInfo {
                name: name.to_string(),
                dtype: dtype_name(*ty).to_string(),
                shape: shape.iter().copied().collect(),
            },
            _ => PortInfo {
                name: name.to_string(),
                dtype: "non-tensor".into(),
                shape: Vec::new(),
            },
        }
    }
}

fn dtype_name(t: TensorElementType) -> &'static str {
    match t {
        TensorElementType::Float32 => "float32",
        TensorElementType::Float64 => "float64",
        TensorElementType::Float16 => "float16",
        TensorElementType::Bfloat16 => "bfloat16",
        TensorElementType::Int64 => "int64",
        TensorElementType::Int32 => "int32",
        TensorElementType::Int16 => "int16",
        TensorElementType::Int8 => "int8",
        TensorElementType::Uint64 => "uint64",
        TensorElementType::Uint32 => "uint32",
        TensorElementType::Uint16 => "uint16",
        TensorElementType::Uint8 => "uint8",
        TensorElementType::Bool => "bool",
        TensorElementType::String => "string",
        _ => "other",
    }
}

/// What the runtime feeds a graph and reads from it, worked out from its declared inputs and
/// outputs by [`GraphIo::detect`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphIo {
    /// The inputs, in the graph's order.
    pub inputs: Vec<InputKind>,
    /// The name of the output read.
    pub output_name: String,
    /// What that output holds.
    pub output: OutputKind,
    /// The output's last dimension (hidden size or number of labels) when declared statically.
    pub declared_width: Option<usize>,
}

impl GraphIo {
    /// Whether the graph takes an attention mask (without one, batches must not be padded).
    pub fn has_attention_mask(&self) -> bool {
        self.inputs.contains(&InputKind::AttentionMask)
    }

    /// Checks a graph's declared inputs and outputs and chooses the output to read.
    ///
    /// Inputs must be among `input_ids` (required), `attention_mask` and `token_type_ids`, each
    /// an int64 tensor of rank 2. The output read is `logits` (float `[batch, n]`) when `wants`
    /// is [`OutputKind::Logits`] (a classifier without a head), else `last_hidden_state` or
    /// `token_embeddings` (float `[batch, seq, dim]`). Other outputs are ignored. Anything else
    /// is an [`CoreError::InvalidData`] naming what the graph declares.
    pub fn detect(inputs: &[PortInfo], outputs: &[PortInfo], wants: OutputKind) -> Result<GraphIo> {
        let describe = |ports: &[PortInfo]| {
            ports
                .iter()
                .map(|p| format!("{} ({} {:?})", p.name, p.dtype, p.shape))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut kinds = Vec::with_capacity(inputs.len());
        for p in inputs {
            let Some(kind) = InputKind::from_name(&p.name) else {
                return Err(CoreError::InvalidData(format!(
                    "the ONNX graph has an unexpected input \"{}\"; supported inputs are input_ids, \
                     attention_mask and token_type_ids (graph inputs: {})",
                    p.name,
                    describe(inputs)
                )));
            };
            if p.dtype != "int64" || p.shape.len() != 2 {
                return Err(CoreError::InvalidData(format!(
                    "the ONNX graph's input \"{}\" must be an int64 tensor [batch, sequence], \
                     it is {} {:?}",
                    p.name, p.dtype, p.shape
                )));
            }
            if kinds.contains(&kind) {
                return Err(CoreError::InvalidData(format!(
                    "the ONNX graph declares input \"{}\" twice",
                    p.name
                )));
            }
            kinds.push(kind);
        }
        if !kinds.contains(&InputKind::InputIds) {
            return Err(CoreError::InvalidData(format!(
                "the ONNX graph has no input_ids input (graph inputs: {})",
                describe(inputs)
            )));
        }
        let (names, rank): (&[&str], usize) = match wants {
            OutputKind::Logits => (&LOGITS_OUTPUTS, 2),
            OutputKind::Hidden => (&HIDDEN_OUTPUTS, 3),
        };
        let Some(out) = outputs.iter().find(|p| names.contains(&p.name.as_str())) else {
            let needed = match wants {
                OutputKind::Logits => {
                    "a classifier without a trained head needs an output \"logits\" [batch, labels]"
                }
                OutputKind::Hidden => {
                    "an encoder needs an output \"last_hidden_state\" (or \"token_embeddings\") \
                     [batch, sequence, dim]"
                }
            };
            return Err(CoreError::InvalidData(format!(
                "{needed}; the ONNX graph's outputs are: {}",
                describe(outputs)
            )));
        };
        if out.dtype != "float32" || out.shape.len() != rank {
            return Err(CoreError::InvalidData(format!(
                "the ONNX graph's output \"{}\" must be a float32 tensor of rank {rank}, it is {} {:?}",
                out.name, out.dtype, out.shape
            )));
        }
        let declared_width = out
            .shape
            .last()
            .and_then(|&w| usize::try_from(w).ok())
            .filter(|&w| w > 0);
        Ok(GraphIo {
            inputs: kinds,
            output_name: out.name.clone(),
            output: wants,
            declared_width,
        })
    }
}

/// The raw output of one batch, row-major.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchOutput {
    /// What `data` holds.
    pub kind: OutputKind,
    /// Rows (texts) in the batch.
    pub rows: usize,
    /// Positions per row: the padded length for [`OutputKind::Hidden`], 1 for logits.
    pub seq: usize,
    /// Values per position: hidden size or number of labels.
    pub width: usize,
    /// `rows × seq × width` values, all finite.
    pub data: Vec<f32>,
}

/// An inference engine that runs one padded batch through a graph. Implementations must be
/// deterministic for a given batch and must not depend on other rows than a row's own (beyond
/// floating-point noise), which is what makes batching invisible to callers.
pub trait Backend: Send + Sync {
    /// What the graph takes and gives.
    fn io(&self) -> &GraphIo;
    /// Runs one batch.
    fn run(&self, batch: &PaddedBatch) -> Result<BatchOutput>;
    /// Runs the batch a model is checked with when it is loaded ([`TextModel`]'s probe: the
    /// longest text of the tokenizer's largest id). A backend shared by many processes may
    /// answer it from a cache, since every process loading the same model sends the same one.
    ///
    /// [`TextModel`]: super::TextModel
    fn probe(&self, batch: &PaddedBatch) -> Result<BatchOutput> {
        self.run(batch)
    }
}

/// A [`Backend`] on an ONNX Runtime session (CPU execution provider, or CUDA's with
/// [`Device::Cuda`]).
pub struct OrtBackend {
    session: Mutex<Session>,
    /// Shrink the CPU arena after runs larger than this ([`SessionOptions::shrink_arena_above`]).
    shrink_arena_above: usize,
    io: GraphIo,
    inputs: Vec<PortInfo>,
    outputs: Vec<PortInfo>,
}

impl std::fmt::Debug for OrtBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrtBackend")
            .field("io", &self.io)
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish()
    }
}

fn runtime_error(what: &str) -> impl Fn(ort::Error) -> CoreError + '_ {
    move |e| CoreError::Runtime(format!("{what}: {}", e.to_string().trim_end()))
}

impl OrtBackend {
    /// Builds a session from ONNX bytes (ONNX Runtime must be loaded, see
    /// [`init_runtime`](super::init_runtime)) and checks its inputs and outputs for `task`.
    ///
    /// Errors: the runtime is not loaded ([`CoreError::Runtime`]), the bytes are not a model
    /// ONNX Runtime can load ([`CoreError::CorruptModel`]), the graph's inputs or outputs do not
    /// fit ([`CoreError::InvalidData`]).
    pub fn from_bytes(
        onnx: &[u8],
        task: Task,
        has_head: bool,
        opts: &SessionOptions,
    ) -> Result<OrtBackend> {
        let env = super::runtime::environment()?;
        if onnx.is_empty() {
            return Err(CoreError::CorruptModel("the ONNX model is empty".into()));
        }
        let builder = Session::builder(&env)
            .map_err(runtime_error("cannot create an ONNX Runtime session"))?;
        let option_error = |what: &'static str| {
            move |e: ort::Error<ort::session::builder::SessionBuilder>| {
                CoreError::Runtime(format!("cannot set {what}: {e}"))
            }
        };
        let mut builder = builder
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(option_error("the optimisation level"))?
            .with_intra_threads(opts.threads)
            .map_err(option_error("the number of threads"))?
            .with_inter_threads(1)
            .map_err(option_error("the number of inter-op threads"))?
            .with_intra_op_spinning(opts.spin)
            .map_err(option_error("thread spinning"))?;
        if opts.device == Device::Cuda {
            if !super::runtime::cuda_available()? {
                return Err(CoreError::Runtime(
                    "this ONNX Runtime library has no CUDA execution provider (it is a CPU-only \
                     build)"
                        .into(),
                ));
            }
            let cuda = ort::ep::CUDA::default().build().error_on_failure();
            builder = builder.with_execution_providers([cuda]).map_err(|e| {
                CoreError::Runtime(format!(
                    "cannot use ONNX Runtime's CUDA execution provider: {}",
                    e.to_string().trim_end()
                ))
            })?;
        }
        let session = builder.commit_from_memory(onnx).map_err(|e| {
            CoreError::CorruptModel(format!(
                "ONNX Runtime cannot load the model: {}",
                e.to_string().trim_end()
            ))
        })?;
        let inputs: Vec<PortInfo> = session
            .inputs()
            .iter()
            .map(|o| PortInfo::from_ort(o.name(), o.dtype()))
            .collect();
        let outputs: Vec<PortInfo> = session
            .outputs()
            .iter()
            .map(|o| PortInfo::from_ort(o.name(), o.dtype()))
            .collect();
        let wants = if task == Task::Classification && !has_head {
            OutputKind::Logits
        } else {
            OutputKind::Hidden
        };
        let io = GraphIo::detect(&inputs, &outputs, wants)?;
        Ok(OrtBackend {
            session: Mutex::new(session),
            shrink_arena_above: opts.shrink_arena_above,
            io,
            inputs,
            outputs,
        })
    }

    /// The graph's declared inputs.
    pub fn inputs(&self) -> &[PortInfo] {
        &self.inputs
    }

    /// The graph's declared outputs.
    pub fn outputs(&self) -> &[PortInfo] {
        &self.outputs
    }
}

impl Backend for OrtBackend {
    fn io(&self) -> &GraphIo {
        &self.io
    }

    fn run(&self, batch: &PaddedBatch) -> Result<BatchOutput> {
        let shape = vec![batch.rows as i64, batch.seq as i64];
        let mut feed: Vec<(&'static str, ort::value::DynValue)> = Vec::with_capacity(3);
        for kind in &self.io.inputs {
            let data = match kind {
                InputKind::InputIds => &batch.input_ids,
                InputKind::AttentionMask => &batch.attention_mask,
                InputKind::TokenTypeIds => &batch.token_type_ids,
            };
            let tensor = Tensor::from_array((shape.clone(), data.clone()))
                .map_err(runtime_error("cannot build an input tensor"))?;
            feed.push((kind.name(), tensor.into_dyn()));
        }
        // Declared before the outputs, which borrow it.
        let tokens = batch.rows * batch.seq;
        let shrink = if self.shrink_arena_above > 0 && tokens > self.shrink_arena_above {
            let mut options = ort::session::RunOptions::new()
                .map_err(runtime_error("cannot create run options"))?;
            options
                .set("memory.enable_memory_arena_shrinkage", "cpu:0")
                .map_err(runtime_error("cannot set arena shrinkage"))?;
            Some(options)
        } else {
            None
        };
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = match &shrink {
            Some(options) => session.run_with_options(feed, options),
            None => session.run(feed),
        }
        .map_err(runtime_error("ONNX Runtime inference failed"))?;
        let value = outputs.get(&self.io.output_name).ok_or_else(|| {
            CoreError::Runtime(format!(
                "the model did not return its output \"{}\"",
                self.io.output_name
            ))
        })?;
        let (out_shape, data) = value
            .try_extract_tensor::<f32>()
            .map_err(runtime_error("cannot read the model's output"))?;
        let dims: Vec<i64> = out_shape.iter().copied().collect();
        let (seq, width) = match (self.io.output, dims.as_slice()) {
            (OutputKind::Hidden, &[r, s, w]) if r == batch.rows as i64 && s == batch.seq as i64 => {
                (batch.seq, w)
            }
            (OutputKind::Logits, &[r, w]) if r == batch.rows as i64 => (1, w),
            _ => {
                return Err(CoreError::Runtime(format!(
                    "the model's output \"{}\" has shape {dims:?} for a batch of {} × {} tokens",
                    self.io.output_name, batch.rows, batch.seq
                )))
            }
        };
        let width = usize::try_from(width).unwrap_or(0);
        if width == 0 || data.len() != batch.rows * seq * width {
            return Err(CoreError::Runtime(format!(
                "the model's output \"{}\" has an unusable shape {dims:?}",
                self.io.output_name
            )));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(CoreError::Runtime(format!(
                "the model's output \"{}\" holds non-finite values",
                self.io.output_name
            )));
        }
        Ok(BatchOutput {
            kind: self.io.output,
            rows: batch.rows,
            seq,
            width,
            data: data.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, dtype: &str, shape: &[i64]) -> PortInfo {
        PortInfo {
            name: name.into(),
            dtype: dtype.into(),
            shape: shape.to_vec(),
        }
    }

    #[test]
    fn detects_bert_and_distilbert_shapes() {
        let bert_in = [
            port("input_ids", "int64", &[-1, -1]),
            port("attention_mask", "int64", &[-1, -1]),
            port("token_type_ids", "int64", &[-1, -1]),
        ];
        let hidden = [port("last_hidden_state", "float32", &[-1, -1, 384])];
        let io = GraphIo::detect(&bert_in, &hidden, OutputKind::Hidden).unwrap();
        assert_eq!(io.inputs.len(), 3);
        assert_eq!(io.declared_width, Some(384));
        let distil_in = &bert_in[..2];
        let logits = [port("logits", "float32", &[-1, 2])];
        let io = GraphIo::detect(distil_in, &logits, OutputKind::Logits).unwrap();
        assert_eq!(io.output_name, "logits");
        assert!(io.has_attention_mask());
        // A logits-only graph cannot serve as an encoder.
        let e = GraphIo::detect(distil_in, &logits, OutputKind::Hidden).unwrap_err();
        assert!(e.to_string().contains("last_hidden_state"), "{e}");
    }

    #[test]
    fn rejects_unexpected_ports() {
        let hidden = [port("last_hidden_state", "float32", &[-1, -1, 8])];
        let extra = [
            port("input_ids", "int64", &[-1, -1]),
            port("position_ids", "int64", &[-1, -1]),
        ];
        let e = GraphIo::detect(&extra, &hidden, OutputKind::Hidden).unwrap_err();
        assert!(e.to_string().contains("position_ids"), "{e}");
        let float_ids = [port("input_ids", "float32", &[-1, -1])];
        assert!(GraphIo::detect(&float_ids, &hidden, OutputKind::Hidden).is_err());
        let no_ids = [port("attention_mask", "int64", &[-1, -1])];
        assert!(GraphIo::detect(&no_ids, &hidden, OutputKind::Hidden).is_err());
        let ids = [port("input_ids", "int64", &[-1, -1])];
        let half = [port("logits", "float16", &[-1, 2])];
        assert!(GraphIo::detect(&ids, &half, OutputKind::Logits).is_err());
    }
}
