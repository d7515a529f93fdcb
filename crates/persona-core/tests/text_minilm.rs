//! The real default encoder, all-MiniLM-L6-v2 (int8 ONNX), as installed by scripts/setup.sh.
//! Both tests are `#[ignore]` (they need the installed model and take seconds):
//!
//! ```sh
//! cargo test -p persona-core --release --test text_minilm -- --ignored --nocapture
//! ```
//!
//! `text_minilm_matches_python` compares embeddings with `tests/data/text/minilm_reference.json`
//! (Python onnxruntime 1.32 + tokenizers on the same files, by `scripts/make_test_onnx.py
//! --minilm`) to 1e-4. `text_minilm_throughput` prints sentences per second on 2 threads, batch 64.

mod text_common;

use std::path::{Path, PathBuf};
use std::time::Instant;

use persona_core::text::{ModelSpec, SessionOptions, TextModel};
use text_common::{floats, json, max_abs_diff};

fn minilm_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("PERSONA_MINILM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from("/usr/share/postgresql/15/extension/pg_persona/models/minilm")
        });
    if dir.join("model.onnx").exists() && dir.join("tokenizer.json").exists() {
        Some(dir)
    } else {
        eprintln!(
            "\n*** SKIPPED: MiniLM not installed at {} (run scripts/setup.sh) ***\n",
            dir.display()
        );
        None
    }
}

fn load(dir: &Path, max_length: usize, opts: SessionOptions) -> TextModel {
    let onnx = std::fs::read(dir.join("model.onnx")).unwrap();
    let tok = std::fs::read(dir.join("tokenizer.json")).unwrap();
    let spec = ModelSpec {
        max_length,
        ..Default::default()
    };
    TextModel::from_bytes(&onnx, &tok, spec, opts).unwrap()
}

#[test]
#[ignore]
fn text_minilm_matches_python() {
    require_ort!("text_minilm_matches_python");
    let Some(dir) = minilm_dir() else { return };
    let reference = json("minilm_reference.json");
    let max_length = reference["max_length"].as_u64().unwrap() as usize;
    let m = load(&dir, max_length, SessionOptions::default());
    assert_eq!(m.dim(), Some(384));
    let cases = reference["cases"].as_array().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let batch = m.embed(&texts).unwrap();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(
            m.tokenize(texts[i]).unwrap().len() as u64,
            case["n_tokens"].as_u64().unwrap()
        );
        let d = max_abs_diff(&batch[i], &floats(&case["embedding"]));
        eprintln!(
            "{:>3} tokens: max |diff| vs Python {d:.2e}",
            case["n_tokens"]
        );
        assert!(d <= 1e-4, "{:?}: {d}", texts[i]);
        let alone = m.embed(&[texts[i]]).unwrap();
        let d = max_abs_diff(&alone[0], &batch[i]);
        assert!(d <= 1e-5, "batch invariance {:?}: {d}", texts[i]);
    }
    // Similar sentences are closer than unrelated ones.
    let e = m
        .embed(&[
            "I love these shoes",
            "These shoes are great",
            "The invoice is overdue",
        ])
        .unwrap();
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    assert!(cos(&e[0], &e[1]) > cos(&e[0], &e[2]));
}

#[test]
#[ignore]
fn text_minilm_throughput() {
    require_ort!("text_minilm_throughput");
    let Some(dir) = minilm_dir() else { return };
    let opts = SessionOptions {
        threads: 2,
        batch_size: 64,
        max_batch_tokens: 64 * 256,
        spin: false,
        ..Default::default()
    };
    let m = load(&dir, 256, opts);
    let subjects = [
        "The delivery",
        "This jacket",
        "Customer support",
        "The new app",
        "Our order",
    ];
    let verbs = [
        "was surprisingly",
        "felt really",
        "is honestly",
        "seemed a bit",
    ];
    let adjectives = [
        "good and fast",
        "slow and frustrating",
        "cheap but reliable",
        "expensive",
    ];
    let texts: Vec<String> = (0..1024)
        .map(|i| {
            format!(
                "{} {} {}, and I would tell my friends about it ({i}).",
                subjects[i % 5],
                verbs[(i / 5) % 4],
                adjectives[(i / 20) % 4]
            )
        })
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let tokens: usize = refs.iter().map(|t| m.tokenize(t).unwrap().len()).sum();
    m.embed(&refs[..64]).unwrap(); // warm-up
    let start = Instant::now();
    let out = m.embed(&refs).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(out.len(), refs.len());
    eprintln!(
        "MiniLM-L6 int8, 2 threads, batch 64: {} sentences ({:.1} tokens each, tokenising included) \
         in {secs:.2} s = {:.0} sentences/s",
        refs.len(),
        tokens as f64 / refs.len() as f64,
        refs.len() as f64 / secs
    );
}
