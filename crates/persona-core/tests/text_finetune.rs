//! Fine-tuning (`persona_core::text::finetune`): the exported ONNX graph computes what the
//! training framework computes, training learns, is deterministic, freezes what it is told to,
//! and stops when asked.
//!
//! The parity tests need the ONNX Runtime library (`$PERSONA_ORT_LIB`, installed by
//! scripts/setup.sh) and skip loudly without it; the MiniLM test needs the fp32 checkpoint
//! (`$PERSONA_MINILM_DIR/model.safetensors`, also installed by setup.sh) and skips loudly
//! without it.

mod text_common;

use persona_core::control::{Monitor, NoMonitor, Progress, Threads};
use persona_core::text::finetune::{
    self, onnx, BertClassifier, BertConfig, Example, FinetuneOptions,
};
use persona_core::text::{ModelSpec, SessionOptions, Task, TextEncoder, TextModel};
use persona_core::CoreError;

fn tiny_config(vocab: usize) -> BertConfig {
    BertConfig {
        vocab_size: vocab,
        hidden_size: 32,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        intermediate_size: 64,
        max_position_embeddings: 64,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        hidden_act: "gelu".into(),
        position_embedding_type: "absolute".into(),
    }
}

fn spec(labels: usize, max_length: usize) -> ModelSpec {
    ModelSpec {
        task: Task::Classification,
        max_length,
        labels: (0..labels).map(|i| format!("class{i}")).collect(),
        ..ModelSpec::default()
    }
}

fn encode(enc: &TextEncoder, texts: &[&str]) -> Vec<(Vec<u32>, Vec<u32>)> {
    texts
        .iter()
        .map(|t| {
            let e = enc.encode(t).unwrap();
            (
                e.ids.iter().map(|&i| i as u32).collect(),
                e.type_ids.iter().map(|&i| i as u32).collect(),
            )
        })
        .collect()
}

fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .flat_map(|(x, y)| {
            assert_eq!(x.len(), y.len());
            x.iter().zip(y).map(|(p, q)| (p - q).abs())
        })
        .fold(0.0, f32::max)
}

const TEXTS: &[&str] = &[
    "good movie",
    "this film was not very good, and the price was expensive!",
    "a",
    "",
    "we love it",
    "東京 cafe",
];

/// The exported graph, run by ONNX Runtime through the text runtime (batched, padded), gives
/// the logits candle's forward pass gives each text alone, to 1e-4.
#[test]
fn exported_graph_matches_forward_pass() {
    require_ort!("exported_graph_matches_forward_pass");
    let tokenizer = text_common::data("tokenizer.json");
    let enc = TextEncoder::from_bytes(&tokenizer, 16).unwrap();
    let model = BertClassifier::random(tiny_config(enc.vocab_size()), 3, 7).unwrap();
    let bytes = onnx::export(&model, &[("note", "test".into())]).unwrap();
    let served =
        TextModel::from_bytes(&bytes, &tokenizer, spec(3, 16), SessionOptions::default()).unwrap();
    let got = served.logits(TEXTS).unwrap();
    // Each text alone (no padding) through candle.
    let want: Vec<Vec<f32>> = encode(&enc, TEXTS)
        .into_iter()
        .map(|r| finetune::logits(&model, &[r]).unwrap().remove(0))
        .collect();
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-4, "max |ONNX - candle| = {d}");
    // And candle itself does not depend on padding: the texts in one padded batch.
    let batched = finetune::logits(&model, &encode(&enc, TEXTS)).unwrap();
    let d = max_abs_diff(&batched, &want);
    assert!(d < 1e-5, "padding changed candle's logits by {d}");
    // Logits of a random model are not all equal (the comparison above means something).
    assert!(want[0]
        .iter()
        .zip(&want[1])
        .any(|(a, b)| (a - b).abs() > 1e-4));
}

/// Rows whose label is decided by the sentiment word they contain.
fn toy_task(enc: &TextEncoder, n: usize) -> Vec<Example> {
    let pos = [
        "good movie",
        "a great film",
        "i love it",
        "this service was good",
    ];
    let neg = [
        "bad movie",
        "a terrible film",
        "i hate it",
        "this service was bad",
    ];
    (0..n)
        .map(|i| {
            let (text, label) = if i % 2 == 0 {
                (pos[(i / 2) % pos.len()], 1)
            } else {
                (neg[(i / 2) % neg.len()], 0)
            };
            let (ids, type_ids) = encode(enc, &[text]).remove(0);
            Example {
                ids,
                type_ids,
                label,
            }
        })
        .collect()
}

fn toy_options() -> FinetuneOptions {
    FinetuneOptions {
        epochs: 4,
        batch_size: 8,
        learning_rate: 3e-3,
        warmup_fraction: 0.1,
        seed: 11,
        ..FinetuneOptions::default()
    }
}

fn toy_setup() -> (TextEncoder, Vec<Example>, Vec<Example>) {
    let tokenizer = text_common::data("tokenizer.json");
    let enc = TextEncoder::from_bytes(&tokenizer, 16).unwrap();
    let train = toy_task(&enc, 64);
    let valid = toy_task(&enc, 16);
    (enc, train, valid)
}

/// Training learns the toy task, the loss falls, the report adds up.
#[test]
fn training_learns_a_separable_task() {
    let (enc, train, valid) = toy_setup();
    let mut model = BertClassifier::random(tiny_config(enc.vocab_size()), 2, 3).unwrap();
    let before =
        finetune::evaluate(&model, &valid, 64, &Threads::current(), &mut NoMonitor).unwrap();
    let opts = FinetuneOptions {
        epochs: 12,
        ..toy_options()
    };
    let report = finetune::finetune(
        &mut model,
        &train,
        &valid,
        &opts,
        &Threads::new(2).unwrap(),
        &mut NoMonitor,
    )
    .unwrap();
    assert_eq!(report.epochs.len(), 12);
    assert_eq!(report.steps, 12 * 8);
    let last = report.epochs.last().unwrap();
    assert_eq!(last.validation_accuracy, Some(1.0), "{report:?}");
    assert!(
        last.validation_loss.unwrap() < before.loss / 2.0,
        "validation loss {} not well below the untrained {}",
        last.validation_loss.unwrap(),
        before.loss
    );
    assert!(report.epochs[0].loss > last.loss, "{report:?}");
}

/// Same seed, same rows, same threads: the same model bytes. Another seed: other bytes.
#[test]
fn training_is_deterministic_for_a_seed() {
    let (enc, train, valid) = toy_setup();
    let run = |seed: u64| {
        let mut model = BertClassifier::random(tiny_config(enc.vocab_size()), 2, 3).unwrap();
        let opts = FinetuneOptions {
            epochs: 1,
            seed,
            ..toy_options()
        };
        finetune::finetune(
            &mut model,
            &train,
            &valid,
            &opts,
            &Threads::new(2).unwrap(),
            &mut NoMonitor,
        )
        .unwrap();
        onnx::export(&model, &[]).unwrap()
    };
    let a = run(5);
    assert!(a == run(5), "two runs with seed 5 differ");
    assert!(a != run(6), "seeds 5 and 6 gave the same model");
}

/// Frozen layers (and the embeddings) keep their weights; the layers above and the head move.
#[test]
fn frozen_layers_do_not_change_and_the_others_do() {
    let (enc, train, _) = toy_setup();
    let config = tiny_config(enc.vocab_size());
    let mut model = BertClassifier::random(config.clone(), 2, 3).unwrap();
    // Rebuild as a checkpoint with one frozen layer: write the random encoder as safetensors.
    let weights = safetensors_of(&model);
    let mut frozen = BertClassifier::from_safetensors(config, &weights, 2, 1, 3).unwrap();
    let names: Vec<String> = frozen.params.iter().map(|p| p.name.clone()).collect();
    assert!(names
        .iter()
        .all(|n| !n.starts_with("embeddings.") && !n.contains("layer.0.")));
    assert!(names.iter().any(|n| n.contains("layer.1.")));
    let before = onnx_weights(&frozen);
    let opts = FinetuneOptions {
        epochs: 1,
        frozen_layers: 1,
        ..toy_options()
    };
    finetune::finetune(
        &mut frozen,
        &train,
        &[],
        &opts,
        &Threads::current(),
        &mut NoMonitor,
    )
    .unwrap();
    let after = onnx_weights(&frozen);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        let moved = a != b;
        let should = !(name.starts_with("embeddings.") || name.contains("layer.0."));
        assert_eq!(moved, should, "{name}: moved {moved}");
    }
    // Without freezing, every weight gets a gradient, the embeddings' LayerNorm included
    // (candle's fused LayerNorm has no backward pass; the one used here must have one).
    let before = onnx_weights(&model);
    finetune::finetune(
        &mut model,
        &train,
        &[],
        &FinetuneOptions {
            epochs: 1,
            ..toy_options()
        },
        &Threads::current(),
        &mut NoMonitor,
    )
    .unwrap();
    let after = onnx_weights(&model);
    for ((name, a), (_, b)) in before.iter().zip(&after) {
        if name.starts_with("embeddings.position")
            || name.starts_with("embeddings.token_type")
            || name == "embeddings.word_embeddings.weight"
        {
            continue; // rows of unused positions, segments and words legitimately stay
        }
        assert!(a != b, "{name} did not change");
    }
}

/// The weights of a model, by name, through its ONNX initializers (the exported form).
fn onnx_weights(model: &BertClassifier) -> Vec<(String, Vec<u8>)> {
    use onnx_protobuf::{Message, ModelProto};
    let bytes = onnx::export(model, &[]).unwrap();
    let m = ModelProto::parse_from_bytes(&bytes).unwrap();
    m.graph
        .initializer
        .iter()
        .filter(|t| !t.name.starts_with("const_"))
        .map(|t| (t.name.clone(), t.raw_data.clone()))
        .collect()
}

/// A safetensors checkpoint of a model's encoder in Hugging Face's layout (`[out, in]`).
fn safetensors_of(model: &BertClassifier) -> Vec<u8> {
    use candle_core::{Device, Tensor};
    let mut map = std::collections::HashMap::new();
    for (name, raw) in onnx_weights(model) {
        if name.starts_with("classifier") {
            continue;
        }
        let v: Vec<f32> = raw
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let shape = shape_of(&model.config, &name);
        let t = if shape.len() == 2 && name.starts_with("encoder") && name.ends_with(".weight") {
            // Stored [in, out]: write [out, in].
            Tensor::from_vec(v, (shape[1], shape[0]), &Device::Cpu)
                .unwrap()
                .t()
                .unwrap()
                .contiguous()
                .unwrap()
        } else {
            Tensor::from_vec(v, shape.as_slice(), &Device::Cpu).unwrap()
        };
        // Hugging Face names carry no prefix here; the loader also accepts "bert.".
        map.insert(format!("bert.{name}"), t);
    }
    let path = std::env::temp_dir().join(format!("persona-ft-{}.safetensors", std::process::id()));
    candle_core::safetensors::save(&map, &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let _ = std::fs::remove_file(&path);
    bytes
}

/// Hugging Face shape (`[out, in]` for linear weights) of a weight of the tiny model.
fn shape_of(c: &BertConfig, name: &str) -> Vec<usize> {
    let (h, i) = (c.hidden_size, c.intermediate_size);
    if name.starts_with("embeddings.word") {
        vec![c.vocab_size, h]
    } else if name.starts_with("embeddings.position") {
        vec![c.max_position_embeddings, h]
    } else if name.starts_with("embeddings.token_type") {
        vec![c.type_vocab_size, h]
    } else if name.ends_with(".bias") && name.contains("intermediate") {
        vec![i]
    } else if name.ends_with(".bias") || name.contains("LayerNorm") {
        vec![h]
    } else if name.contains("intermediate") {
        vec![i, h]
    } else if name.contains("output.dense") && !name.contains("attention") {
        vec![h, i]
    } else {
        vec![h, h]
    }
}

/// Says "interrupted" from its first poll on, and counts steps.
struct CancelAtOnce {
    steps: usize,
}

impl Monitor for CancelAtOnce {
    fn step(&mut self, _: &Progress) -> persona_core::Result<()> {
        self.steps += 1;
        Ok(())
    }
    fn interrupted(&mut self) -> bool {
        true
    }
}

#[test]
fn a_cancel_stops_training_before_its_first_step_ends() {
    let (enc, train, valid) = toy_setup();
    let mut model = BertClassifier::random(tiny_config(enc.vocab_size()), 2, 3).unwrap();
    let mut m = CancelAtOnce { steps: 0 };
    let e = finetune::finetune(
        &mut model,
        &train,
        &valid,
        &toy_options(),
        &Threads::current(),
        &mut m,
    )
    .unwrap_err();
    assert!(matches!(e, CoreError::Cancelled), "{e:?}");
    assert_eq!(m.steps, 0);
}

#[test]
fn bad_input_is_refused_with_a_reason() {
    let (enc, train, _) = toy_setup();
    let config = tiny_config(enc.vocab_size());
    let mut model = BertClassifier::random(config.clone(), 2, 3).unwrap();
    let t = Threads::current();
    let err = |r: persona_core::Result<_>| {
        format!("{:?}", r.map(|_: finetune::FinetuneReport| ()).unwrap_err())
    };
    assert!(err(finetune::finetune(
        &mut model,
        &[],
        &[],
        &toy_options(),
        &t,
        &mut NoMonitor
    ))
    .contains("no training rows"));
    let mut bad = train.clone();
    bad[0].label = 2;
    assert!(err(finetune::finetune(
        &mut model,
        &bad,
        &[],
        &toy_options(),
        &t,
        &mut NoMonitor
    ))
    .contains("beyond the head"));
    let mut bad = train.clone();
    bad[0].ids[0] = 10_000;
    assert!(err(finetune::finetune(
        &mut model,
        &bad,
        &[],
        &toy_options(),
        &t,
        &mut NoMonitor
    ))
    .contains("vocabulary"));
    for (opts, says) in [
        (
            FinetuneOptions {
                epochs: 0,
                ..toy_options()
            },
            "epochs",
        ),
        (
            FinetuneOptions {
                learning_rate: 0.0,
                ..toy_options()
            },
            "learning_rate",
        ),
        (
            FinetuneOptions {
                frozen_layers: 2,
                ..toy_options()
            },
            "frozen_layers",
        ),
        (
            FinetuneOptions {
                dropout: 1.0,
                ..toy_options()
            },
            "dropout",
        ),
    ] {
        let e = err(finetune::finetune(
            &mut model,
            &train,
            &[],
            &opts,
            &t,
            &mut NoMonitor,
        ));
        assert!(e.contains(says), "{e}");
    }
    let e = BertConfig::from_json(br#"{"vocab_size": 10, "hidden_size": 30, "num_hidden_layers": 1, "num_attention_heads": 4, "intermediate_size": 8, "max_position_embeddings": 8}"#).unwrap_err();
    assert!(format!("{e:?}").contains("multiple"), "{e:?}");
    let e = BertClassifier::from_safetensors(config, b"not a checkpoint", 2, 0, 1)
        .map(|_| ())
        .unwrap_err();
    assert!(format!("{e:?}").contains("safetensors"), "{e:?}");
}

/// all-MiniLM-L6-v2 fp32 with a random head: the exported graph, served by the text runtime,
/// equals candle's forward pass to 1e-4 on real sentences of different lengths.
#[test]
fn minilm_export_matches_forward_pass() {
    require_ort!("minilm_export_matches_forward_pass");
    let Some(dir) = std::env::var_os("PERSONA_MINILM_DIR").map(std::path::PathBuf::from) else {
        eprintln!(
            "\n*** SKIPPED: minilm_export_matches_forward_pass: PERSONA_MINILM_DIR not set ***\n"
        );
        return;
    };
    let st = dir.join("model.safetensors");
    if !st.exists() {
        eprintln!("\n*** SKIPPED: minilm_export_matches_forward_pass: {} missing (run scripts/setup.sh) ***\n", st.display());
        return;
    }
    let config = BertConfig::from_json(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    let tokenizer = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let model =
        BertClassifier::from_safetensors(config, &std::fs::read(&st).unwrap(), 2, 0, 9).unwrap();
    let enc = TextEncoder::from_bytes(&tokenizer, 128).unwrap();
    let texts = [
        "A gripping, beautifully acted film.",
        "dull",
        "The plot goes nowhere and the dialogue is worse, but the score is lovely.",
    ];
    let bytes = onnx::export(&model, &[]).unwrap();
    let served =
        TextModel::from_bytes(&bytes, &tokenizer, spec(2, 128), SessionOptions::default()).unwrap();
    let got = served.logits(&texts).unwrap();
    let want = finetune::logits(&model, &encode(&enc, &texts)).unwrap();
    let d = max_abs_diff(&got, &want);
    assert!(d < 1e-4, "max |ONNX - candle| = {d}");
}
