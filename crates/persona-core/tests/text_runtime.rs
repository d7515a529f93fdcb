//! The text runtime on ONNX Runtime with the tiny graphs of `scripts/make_test_onnx.py`
//! (committed under tests/data/text): parity with Python onnxruntime + tokenizers to 1e-4,
//! batch invariance to 1e-5, and clear errors for bad models, tokenizers and options.
//!
//! Needs the ONNX Runtime library (`$PERSONA_ORT_LIB`, default
//! /usr/lib/postgresql/15/lib/pg_persona/libonnxruntime.so); without it each test prints
//! `SKIPPED` and passes.

mod text_common;

use persona_core::text::{
    init_runtime, runtime_info, Head, ModelSpec, Pooling, SessionOptions, Task, TextModel,
};
use persona_core::CoreError;
use serde_json::Value;
use text_common::{data, floats, json, max_abs_diff};

const PARITY: f32 = 1e-4;
const INVARIANCE: f32 = 1e-5;

fn reference() -> Value {
    json("reference.json")
}

fn max_length() -> usize {
    reference()["max_length"].as_u64().unwrap() as usize
}

fn sentences() -> Vec<String> {
    reference()["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap().to_string())
        .collect()
}

fn encoder_spec() -> ModelSpec {
    ModelSpec {
        max_length: max_length(),
        ..Default::default()
    }
}

fn reference_head() -> Head {
    serde_json::from_value(reference()["head"].clone()).unwrap()
}

fn load(onnx: &str, spec: ModelSpec, opts: SessionOptions) -> persona_core::Result<TextModel> {
    TextModel::from_bytes(&data(onnx), &data("tokenizer.json"), spec, opts)
}

fn encoder() -> TextModel {
    load("encoder.onnx", encoder_spec(), SessionOptions::default()).unwrap()
}

fn classifier() -> TextModel {
    let spec = ModelSpec {
        task: Task::Classification,
        ..encoder_spec()
    };
    load("classifier.onnx", spec, SessionOptions::default()).unwrap()
}

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

#[test]
fn text_tokenizer_matches_python_and_overrides_baked_settings() {
    require_ort!("text_tokenizer_matches_python_and_overrides_baked_settings");
    let m = encoder();
    for case in reference()["cases"].as_array().unwrap() {
        let ids: Vec<i64> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect();
        assert_eq!(
            m.tokenize(case["text"].as_str().unwrap()).unwrap(),
            ids,
            "{case}"
        );
    }
    // tokenizer.json truncates at 6 and pads to 16; the model truncates at max_length, no padding.
    assert_eq!(m.tokenize("good").unwrap().len(), 3);
    assert_eq!(
        m.tokenize(&"good ".repeat(100)).unwrap().len(),
        max_length()
    );
    // The empty text is [CLS] [SEP].
    assert_eq!(m.tokenize("").unwrap(), vec![2, 3]);
}

#[test]
fn text_encoder_embeddings_match_python() {
    require_ort!("text_encoder_embeddings_match_python");
    let m = encoder();
    assert_eq!(m.dim(), Some(reference()["dim"].as_u64().unwrap() as usize));
    assert!(m.labels().is_empty());
    let texts = sentences();
    let got = m.embed(&refs(&texts)).unwrap();
    for (case, emb) in reference()["cases"].as_array().unwrap().iter().zip(&got) {
        let want = floats(&case["embedding"]);
        let d = max_abs_diff(emb, &want);
        assert!(d <= PARITY, "{:?}: max diff {d}", case["text"]);
    }
    // A model without a head gives no class scores.
    assert!(matches!(
        m.logits(&["x"]),
        Err(CoreError::InvalidParameter(_))
    ));
    assert!(m.score(&["x"]).is_err());
}

#[test]
fn text_head_logits_match_python() {
    require_ort!("text_head_logits_match_python");
    let spec = ModelSpec {
        task: Task::Classification,
        head: Some(reference_head()),
        ..encoder_spec()
    };
    let m = load("encoder.onnx", spec, SessionOptions::default()).unwrap();
    assert_eq!(m.labels(), ["negative", "neutral", "positive"]);
    assert_eq!(m.positive_label(), Some(2)); // named "positive"
    let texts = sentences();
    let logits = m.logits(&refs(&texts)).unwrap();
    let scores = m.score(&refs(&texts)).unwrap();
    let classes = m.classify(&refs(&texts)).unwrap();
    for (i, case) in reference()["cases"].as_array().unwrap().iter().enumerate() {
        let want = floats(&case["head_logits"]);
        let d = max_abs_diff(&logits[i], &want);
        assert!(d <= PARITY, "{:?}: max diff {d}", case["text"]);
        let p = persona_core::text::math::softmax(&want);
        assert!((scores[i] - p[2]).abs() <= PARITY);
        let best = (0..3).max_by(|&a, &b| p[a].total_cmp(&p[b])).unwrap();
        assert_eq!(classes[i].index, best);
        assert_eq!(classes[i].label, m.labels()[best]);
        assert!((classes[i].probabilities.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

#[test]
fn text_classifier_logits_match_python() {
    require_ort!("text_classifier_logits_match_python");
    let m = classifier();
    assert_eq!(m.dim(), None);
    assert_eq!(m.labels(), ["LABEL_0", "LABEL_1", "LABEL_2"]);
    assert_eq!(m.io().inputs.len(), 2); // no token_type_ids fed
    let texts = sentences();
    let logits = m.logits(&refs(&texts)).unwrap();
    for (case, got) in reference()["cases"].as_array().unwrap().iter().zip(&logits) {
        let want = floats(&case["classifier_logits"]);
        let d = max_abs_diff(got, &want);
        assert!(d <= PARITY, "{:?}: max diff {d}", case["text"]);
    }
    // Three labels and none positive: no score, and a clear error.
    let e = m.score(&["good"]).unwrap_err();
    assert!(e.to_string().contains("positive_label"), "{e}");
    assert!(m.embed(&["good"]).is_err());
    // Designating a positive label makes score work.
    let spec = ModelSpec {
        task: Task::Classification,
        positive_label: Some(0),
        labels: vec!["a".into(), "b".into(), "c".into()],
        ..encoder_spec()
    };
    let m = load("classifier.onnx", spec, SessionOptions::default()).unwrap();
    let p = m.probabilities(&["good"]).unwrap();
    assert_eq!(m.score(&["good"]).unwrap(), vec![p[0][0]]);
}

fn mixed_texts() -> Vec<String> {
    let mut texts = sentences();
    texts.extend(
        [
            "a",
            "great great great film",
            "we love this cheap product and we buy it again and again",
            "",
            "?",
        ]
        .map(String::from),
    );
    texts
}

#[test]
fn text_batch_invariance() {
    require_ort!("text_batch_invariance");
    let texts = mixed_texts();
    let configs = [
        SessionOptions::default(),
        SessionOptions {
            batch_size: 3,
            max_batch_tokens: 24,
            ..Default::default()
        },
        SessionOptions {
            threads: 2,
            batch_size: 64,
            ..Default::default()
        },
    ];
    for opts in configs {
        let enc = load("encoder.onnx", encoder_spec(), opts.clone()).unwrap();
        let cls_spec = ModelSpec {
            task: Task::Classification,
            ..encoder_spec()
        };
        let cls = load("classifier.onnx", cls_spec, opts.clone()).unwrap();
        let cls_pooling = ModelSpec {
            pooling: Pooling::Cls,
            ..encoder_spec()
        };
        let enc_cls = load("encoder.onnx", cls_pooling, opts.clone()).unwrap();
        let batch_e = enc.embed(&refs(&texts)).unwrap();
        let batch_l = cls.logits(&refs(&texts)).unwrap();
        let batch_c = enc_cls.embed(&refs(&texts)).unwrap();
        for (i, t) in texts.iter().enumerate() {
            let e = enc.embed(&[t]).unwrap();
            let l = cls.logits(&[t]).unwrap();
            let c = enc_cls.embed(&[t]).unwrap();
            let (de, dl, dc) = (
                max_abs_diff(&e[0], &batch_e[i]),
                max_abs_diff(&l[0], &batch_l[i]),
                max_abs_diff(&c[0], &batch_c[i]),
            );
            assert!(
                de <= INVARIANCE && dl <= INVARIANCE && dc <= INVARIANCE,
                "{opts:?} {t:?}: {de} {dl} {dc}"
            );
        }
    }
}

#[test]
fn text_any_text_is_accepted() {
    require_ort!("text_any_text_is_accepted");
    let m = encoder();
    let long = "good ".repeat(20_000);
    let texts = [
        "",
        " \t\n ",
        "\u{0}\u{1}\u{7f}",
        "\u{FEFF}\u{200B}\u{202E}zero-width and bidi",
        "🎉🎉🎉 👩‍👩‍👧 ﷽",
        "مرحبا بالعالم",
        "日本語のテキスト",
        "\u{FFFD}\u{10FFFF}",
        long.as_str(),
    ];
    let out = m.embed(&texts).unwrap();
    assert_eq!(out.len(), texts.len());
    for e in &out {
        let norm = e.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4);
    }
    // The empty text equals whitespace-only (both [CLS] [SEP]).
    assert!(max_abs_diff(&out[0], &out[1]) < 1e-6);
}

#[test]
fn text_corrupt_or_incompatible_models_are_clear_errors() {
    require_ort!("text_corrupt_or_incompatible_models_are_clear_errors");
    let tok = data("tokenizer.json");
    let spec = encoder_spec();
    let opts = SessionOptions::default();
    let good = data("encoder.onnx");
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("garbage", b"this is not an onnx model".to_vec()),
        ("truncated", good[..good.len() / 2].to_vec()),
        ("zeros", vec![0u8; 4096]),
    ] {
        let e = TextModel::from_bytes(&bytes, &tok, spec.clone(), opts.clone()).unwrap_err();
        assert!(matches!(e, CoreError::CorruptModel(_)), "{what}: {e:?}");
    }
    let e = load("unexpected_input.onnx", spec.clone(), opts.clone()).unwrap_err();
    assert!(
        matches!(&e, CoreError::InvalidData(m) if m.contains("unexpected input \"position_ids\"")),
        "{e:?}"
    );
    let e = load("unexpected_output.onnx", spec.clone(), opts.clone()).unwrap_err();
    assert!(
        matches!(&e, CoreError::InvalidData(m) if m.contains("last_hidden_state") && m.contains("features")),
        "{e:?}"
    );
    let e = load("wrong_dtype.onnx", spec.clone(), opts.clone()).unwrap_err();
    assert!(
        matches!(&e, CoreError::InvalidData(m) if m.contains("int64")),
        "{e:?}"
    );
    // A classifier graph cannot serve as an encoder, nor carry a head.
    assert!(load("classifier.onnx", spec.clone(), opts.clone()).is_err());
    let with_head = ModelSpec {
        task: Task::Classification,
        head: Some(reference_head()),
        ..spec.clone()
    };
    assert!(load("classifier.onnx", with_head, opts.clone()).is_err());
    // An encoder cannot classify without a head; a head of the wrong size is refused.
    let no_head = ModelSpec {
        task: Task::Classification,
        ..spec.clone()
    };
    let e = load("encoder.onnx", no_head, opts.clone()).unwrap_err();
    assert!(
        matches!(&e, CoreError::InvalidData(m) if m.contains("without a trained head needs an output \"logits\"")),
        "{e:?}"
    );
    let mut head = reference_head();
    head.weights.truncate(head.weights.len() - 3);
    let bad_head = ModelSpec {
        head: Some(head),
        ..spec.clone()
    };
    assert!(matches!(
        load("encoder.onnx", bad_head, opts.clone()),
        Err(CoreError::InvalidParameter(_))
    ));
    // Wrong label count for the classifier.
    let labels = ModelSpec {
        task: Task::Classification,
        labels: vec!["neg".into(), "pos".into()],
        ..spec
    };
    assert!(matches!(
        load("classifier.onnx", labels, opts),
        Err(CoreError::InvalidParameter(_))
    ));
}

#[test]
fn text_bad_tokenizers_are_clear_errors() {
    require_ort!("text_bad_tokenizers_are_clear_errors");
    let onnx = data("encoder.onnx");
    let spec = encoder_spec();
    let opts = SessionOptions::default();
    for bytes in [
        b"".to_vec(),
        b"{ not json".to_vec(),
        b"{\"version\": \"1.0\"}".to_vec(),
        vec![0xff, 0xfe, 0x00],
    ] {
        let e = TextModel::from_bytes(&onnx, &bytes, spec.clone(), opts.clone()).unwrap_err();
        assert!(matches!(e, CoreError::CorruptTokenizer(_)), "{e:?}");
    }
    // A vocabulary larger than the embedding table: refused at load time, before any text.
    let e = TextModel::from_bytes(&onnx, &data("tokenizer_big.json"), spec, opts).unwrap_err();
    assert!(
        matches!(&e, CoreError::TokenizerMismatch(m) if m.contains("largest token id")),
        "{e:?}"
    );
}

#[test]
fn text_max_length_beyond_position_table_is_refused() {
    require_ort!("text_max_length_beyond_position_table_is_refused");
    let positions = reference()["max_positions"].as_u64().unwrap() as usize;
    let ok = ModelSpec {
        max_length: positions,
        ..Default::default()
    };
    assert!(load("encoder.onnx", ok, SessionOptions::default()).is_ok());
    let too_long = ModelSpec {
        max_length: positions + 1,
        ..Default::default()
    };
    let e = load("encoder.onnx", too_long, SessionOptions::default()).unwrap_err();
    assert!(
        matches!(&e, CoreError::SequenceTooLong(m) if m.contains("max_length")),
        "{e:?}"
    );
    let zero_batch = SessionOptions {
        batch_size: 0,
        ..Default::default()
    };
    assert!(matches!(
        load("encoder.onnx", encoder_spec(), zero_batch),
        Err(CoreError::InvalidParameter(_))
    ));
}

#[test]
fn text_runtime_is_loaded_once() {
    require_ort!("text_runtime_is_loaded_once");
    let info = runtime_info().unwrap();
    assert_eq!(init_runtime(&info.path).unwrap(), info);
    eprintln!("{:?} from {}", info.build_info, info.path.display());
    // Another library cannot replace it in this process.
    let other = std::env::current_exe().unwrap();
    let e = init_runtime(&other).unwrap_err();
    assert!(
        matches!(&e, CoreError::Runtime(m) if m.contains("already loaded")),
        "{e:?}"
    );
}

#[test]
fn text_trained_head_round_trip() {
    require_ort!("text_trained_head_round_trip");
    use persona_core::text::{evaluate_head, train_softmax_head, HeadTrainOptions};
    // Separate "good"-ish from "bad"-ish texts with a head on the tiny encoder's embeddings.
    let pos = [
        "good",
        "great",
        "very good",
        "great film",
        "love it",
        "good service",
    ];
    let neg = [
        "bad",
        "terrible",
        "very bad",
        "bad film",
        "hate it",
        "bad service",
    ];
    let texts: Vec<&str> = pos.iter().chain(&neg).copied().collect();
    let labels: Vec<usize> = (0..texts.len())
        .map(|i| usize::from(i < pos.len()))
        .collect();
    let mut m = encoder();
    let emb = m.embed(&texts).unwrap();
    let names = vec!["negative".to_string(), "positive".to_string()];
    let fit = train_softmax_head(&emb, &labels, &names, &HeadTrainOptions::default()).unwrap();
    let ev = evaluate_head(&fit.head, &emb, &labels, Some(1)).unwrap();
    assert_eq!(ev.accuracy, 1.0, "{ev:?}");
    m.set_head(Some(fit.head.clone())).unwrap();
    let scores = m.score(&texts).unwrap();
    for (s, y) in scores.iter().zip(&labels) {
        assert_eq!(*s > 0.5, *y == 1);
    }
    // The head serialises with the spec and loads back to the same scores.
    let spec_json = serde_json::to_string(m.spec()).unwrap();
    let spec: ModelSpec = serde_json::from_str(&spec_json).unwrap();
    let again = load("encoder.onnx", spec, SessionOptions::default()).unwrap();
    assert_eq!(again.score(&texts).unwrap(), scores);
}

#[test]
fn text_cuda_without_provider_is_a_runtime_error() {
    require_ort!("text_cuda_without_provider_is_a_runtime_error");
    use persona_core::text::{cuda_available, Device};
    let cuda = SessionOptions {
        device: Device::Cuda,
        ..Default::default()
    };
    if cuda_available().unwrap() {
        // A GPU build of ONNX Runtime: a session either works or says why it cannot.
        match load("encoder.onnx", encoder_spec(), cuda) {
            Ok(m) => assert!(m.embed(&["good"]).is_ok()),
            Err(e) => assert!(matches!(e, CoreError::Runtime(_)), "{e:?}"),
        }
        return;
    }
    let e = load("encoder.onnx", encoder_spec(), cuda).unwrap_err();
    assert!(
        matches!(&e, CoreError::Runtime(m) if m.contains("no CUDA execution provider")),
        "{e:?}"
    );
    // The CPU session still works in the same process.
    assert!(load("encoder.onnx", encoder_spec(), SessionOptions::default()).is_ok());
}
