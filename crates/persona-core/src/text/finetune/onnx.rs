//! Writes a [`BertClassifier`] as an ONNX graph (opset 17, fp32) that computes what its
//! `forward` computes without dropout: inputs `input_ids`, `attention_mask`, `token_type_ids`
//! (int64 `[batch, sequence]`), output `logits` (float `[batch, labels]`). The text runtime
//! serves it like any exported classifier.
//!
//! The graph uses only standard operators (`Gather`, `Slice`, `LayerNormalization`, `MatMul`,
//! `Softmax`, `Erf`, …) so any ONNX Runtime ≥ 1.14 runs it, and Python's `onnxruntime` loads it
//! unchanged. Weights are initializers in little-endian `raw_data`.

use onnx_protobuf::tensor_proto::DataType;
use onnx_protobuf::tensor_shape_proto::{dimension, Dimension};
use onnx_protobuf::type_proto::{Tensor as TypeTensor, Value as TypeValue};
use onnx_protobuf::{
    attribute_proto::AttributeType, AttributeProto, GraphProto, Message, ModelProto, NodeProto,
    OperatorSetIdProto, StringStringEntryProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use super::bert::{BertClassifier, MASK_BIAS};
use crate::{CoreError, Result};

/// The opset written (the first with `LayerNormalization`).
pub const OPSET: i64 = 17;

struct Graph {
    nodes: Vec<NodeProto>,
    inits: Vec<TensorProto>,
    counter: usize,
}

enum Attr {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Adds a node with one output and returns the output's name.
    fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op.to_lowercase());
        self.op_named(op, inputs, attrs, &out);
        out
    }

    fn op_named(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)], out: &str) {
        let mut n = NodeProto::new();
        n.op_type = op.into();
        n.name = format!("{op}_{}", self.nodes.len());
        n.input = inputs.iter().map(|s| s.to_string()).collect();
        n.output = vec![out.to_string()];
        for (name, a) in attrs {
            let mut p = AttributeProto::new();
            p.name = name.to_string();
            match a {
                Attr::Int(i) => {
                    p.type_ = AttributeType::INT.into();
                    p.i = *i;
                }
                Attr::Ints(v) => {
                    p.type_ = AttributeType::INTS.into();
                    p.ints = v.clone();
                }
                Attr::Float(f) => {
                    p.type_ = AttributeType::FLOAT.into();
                    p.f = *f;
                }
            }
            n.attribute.push(p);
        }
        self.nodes.push(n);
    }

    fn floats(&mut self, name: &str, dims: &[usize], values: &[f32]) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = dims.iter().map(|&d| d as i64).collect();
        t.data_type = DataType::FLOAT as i32;
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(t);
        name.into()
    }

    fn ints(&mut self, name: &str, values: &[i64]) -> String {
        let mut t = TensorProto::new();
        t.name = name.into();
        t.dims = vec![values.len() as i64];
        t.data_type = DataType::INT64 as i32;
        t.raw_data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.inits.push(t);
        name.into()
    }

    fn scalar(&mut self, name: &str, v: f32) -> String {
        self.floats(name, &[], &[v])
    }

    fn linear(&mut self, x: &str, prefix: &str) -> String {
        let m = self.op("MatMul", &[x, &format!("{prefix}.weight")], &[]);
        self.op("Add", &[&m, &format!("{prefix}.bias")], &[])
    }

    fn norm(&mut self, x: &str, prefix: &str, eps: f64) -> String {
        self.op(
            "LayerNormalization",
            &[x, &format!("{prefix}.weight"), &format!("{prefix}.bias")],
            &[
                ("axis", Attr::Int(-1)),
                ("epsilon", Attr::Float(eps as f32)),
            ],
        )
    }
}

fn value_info(name: &str, elem: DataType, dims: &[&str]) -> ValueInfoProto {
    let mut shape = TensorShapeProto::new();
    for d in dims {
        let mut dim = Dimension::new();
        dim.value = Some(dimension::Value::DimParam(d.to_string()));
        shape.dim.push(dim);
    }
    let mut tt = TypeTensor::new();
    tt.elem_type = elem as i32;
    tt.shape = Some(shape).into();
    let mut ty = TypeProto::new();
    ty.value = Some(TypeValue::TensorType(tt));
    let mut v = ValueInfoProto::new();
    v.name = name.into();
    v.type_ = Some(ty).into();
    v
}

/// The model as ONNX bytes. `metadata` is stored in the model's `metadata_props` (the
/// training report, for instance).
pub fn export(model: &BertClassifier, metadata: &[(&str, String)]) -> Result<Vec<u8>> {
    let c = &model.config;
    let mut g = Graph {
        nodes: Vec::new(),
        inits: Vec::new(),
        counter: 0,
    };
    for (name, dims, values) in model.weights()? {
        g.floats(&name, &dims, &values);
    }
    let (h, nh, d) = (c.hidden_size, c.num_attention_heads, c.head_dim());
    let one = g.scalar("const_one", 1.0);
    let half = g.scalar("const_half", 0.5);
    let sqrt2 = g.scalar("const_sqrt2", std::f32::consts::SQRT_2);
    let mask_bias = g.scalar("const_mask_bias", MASK_BIAS);
    let scale = g.scalar("const_scale", (1.0 / (d as f64).sqrt()) as f32);
    let tiny = g.scalar("const_tiny", 1e-9);
    let zero1 = g.ints("const_zero_1d", &[0]);
    let one1 = g.ints("const_one_1d", &[1]);
    let two1 = g.ints("const_two_1d", &[2]);
    let axes12 = g.ints("const_axes_1_2", &[1, 2]);
    let heads_shape = g.ints("const_heads_shape", &[0, 0, nh as i64, d as i64]);
    let merged_shape = g.ints("const_merged_shape", &[0, 0, h as i64]);

    // Embeddings: words + positions [0, seq) + segments, normalised.
    let words = g.op(
        "Gather",
        &["embeddings.word_embeddings.weight", "input_ids"],
        &[],
    );
    let shape = g.op("Shape", &["input_ids"], &[]);
    let seq = g.op("Slice", &[&shape, &one1, &two1], &[]);
    let positions = g.op(
        "Slice",
        &[
            "embeddings.position_embeddings.weight",
            &zero1,
            &seq,
            &zero1,
        ],
        &[],
    );
    let types = g.op(
        "Gather",
        &["embeddings.token_type_embeddings.weight", "token_type_ids"],
        &[],
    );
    let wt = g.op("Add", &[&words, &types], &[]);
    let emb = g.op("Add", &[&wt, &positions], &[]);
    let mut x = g.norm(&emb, "embeddings.LayerNorm", c.layer_norm_eps);

    // Additive attention bias [batch, 1, 1, seq].
    let maskf = g.op(
        "Cast",
        &["attention_mask"],
        &[("to", Attr::Int(DataType::FLOAT as i64))],
    );
    let inv = g.op("Sub", &[&one, &maskf], &[]);
    let bias2 = g.op("Mul", &[&inv, &mask_bias], &[]);
    let bias = g.op("Unsqueeze", &[&bias2, &axes12], &[]);

    for l in 0..c.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        let q = g.linear(&x, &format!("{p}.attention.self.query"));
        let k = g.linear(&x, &format!("{p}.attention.self.key"));
        let v = g.linear(&x, &format!("{p}.attention.self.value"));
        let q = g.op("Reshape", &[&q, &heads_shape], &[]);
        let k = g.op("Reshape", &[&k, &heads_shape], &[]);
        let v = g.op("Reshape", &[&v, &heads_shape], &[]);
        let q = g.op(
            "Transpose",
            &[&q],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let kt = g.op(
            "Transpose",
            &[&k],
            &[("perm", Attr::Ints(vec![0, 2, 3, 1]))],
        );
        let v = g.op(
            "Transpose",
            &[&v],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let scores = g.op("MatMul", &[&q, &kt], &[]);
        let scores = g.op("Mul", &[&scores, &scale], &[]);
        let scores = g.op("Add", &[&scores, &bias], &[]);
        let probs = g.op("Softmax", &[&scores], &[("axis", Attr::Int(-1))]);
        let ctx = g.op("MatMul", &[&probs, &v], &[]);
        let ctx = g.op(
            "Transpose",
            &[&ctx],
            &[("perm", Attr::Ints(vec![0, 2, 1, 3]))],
        );
        let ctx = g.op("Reshape", &[&ctx, &merged_shape], &[]);
        let a = g.linear(&ctx, &format!("{p}.attention.output.dense"));
        let r = g.op("Add", &[&a, &x], &[]);
        let x1 = g.norm(
            &r,
            &format!("{p}.attention.output.LayerNorm"),
            c.layer_norm_eps,
        );
        let inner = g.linear(&x1, &format!("{p}.intermediate.dense"));
        // Exact GELU: x · ½ · (1 + erf(x / √2)).
        let t = g.op("Div", &[&inner, &sqrt2], &[]);
        let e = g.op("Erf", &[&t], &[]);
        let e = g.op("Add", &[&e, &one], &[]);
        let m = g.op("Mul", &[&inner, &e], &[]);
        let act = g.op("Mul", &[&m, &half], &[]);
        let o = g.linear(&act, &format!("{p}.output.dense"));
        let r2 = g.op("Add", &[&o, &x1], &[]);
        x = g.norm(&r2, &format!("{p}.output.LayerNorm"), c.layer_norm_eps);
    }

    // Masked mean over tokens, then the head.
    let mask3 = g.op("Unsqueeze", &[&maskf, &two1], &[]);
    let masked = g.op("Mul", &[&x, &mask3], &[]);
    let summed = g.op(
        "ReduceSum",
        &[&masked, &one1],
        &[("keepdims", Attr::Int(0))],
    );
    let count = g.op("ReduceSum", &[&mask3, &one1], &[("keepdims", Attr::Int(0))]);
    let count = g.op("Max", &[&count, &tiny], &[]);
    let pooled = g.op("Div", &[&summed, &count], &[]);
    let m = g.op("MatMul", &[&pooled, "classifier.weight"], &[]);
    g.op_named("Add", &[&m, "classifier.bias"], &[], "logits");

    let mut graph = GraphProto::new();
    graph.name = "pg_persona_bert_classifier".into();
    graph.node = g.nodes;
    graph.initializer = g.inits;
    for name in ["input_ids", "attention_mask", "token_type_ids"] {
        graph
            .input
            .push(value_info(name, DataType::INT64, &["batch", "sequence"]));
    }
    graph
        .output
        .push(value_info("logits", DataType::FLOAT, &["batch", "labels"]));

    let mut opset = OperatorSetIdProto::new();
    opset.domain = String::new();
    opset.version = OPSET;
    let mut m = ModelProto::new();
    m.ir_version = 8;
    m.opset_import = vec![opset];
    m.producer_name = "pg_persona".into();
    m.producer_version = env!("CARGO_PKG_VERSION").into();
    m.graph = Some(graph).into();
    for (k, v) in metadata {
        let mut e = StringStringEntryProto::new();
        e.key = k.to_string();
        e.value = v.clone();
        m.metadata_props.push(e);
    }
    m.write_to_bytes()
        .map_err(|e| CoreError::Runtime(format!("writing the ONNX model: {e}")))
}
