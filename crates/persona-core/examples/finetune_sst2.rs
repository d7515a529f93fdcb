//! Fine-tunes all-MiniLM-L6-v2 on SST-2 with the core trainer alone (no database): speed and
//! accuracy of `persona_core::text::finetune`, to choose defaults before the SQL function runs
//! the same recipe.
//!
//!   cargo run --release --example finetune_sst2 -- MINILM_DIR TRAIN_TSV DEV_TSV [key=value ...]
//!
//! MINILM_DIR holds model.safetensors, config.json and tokenizer.json (scripts/setup.sh installs
//! them). Keys: rows (training rows used, default all), epochs, batch, lr, frozen, threads,
//! max_length (default 128), seed, out (write the ONNX model there).
//! Prints each epoch's loss and rows/s, then the dev accuracy (dev is only measured).

use std::collections::HashMap;

use persona_core::control::{Monitor, Progress, Threads};
use persona_core::text::finetune::{
    self, onnx, BertClassifier, BertConfig, Example, FinetuneOptions,
};
use persona_core::text::TextEncoder;

struct Print(std::time::Instant);
impl Monitor for Print {
    fn step(&mut self, p: &Progress) -> persona_core::Result<()> {
        if p.step.is_multiple_of(20) {
            eprintln!(
                "step {}/{} loss {:.4} ({:.1} s)",
                p.step,
                p.steps,
                p.loss.unwrap_or(f64::NAN),
                self.0.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
    fn note(&mut self, line: &str) {
        eprintln!("{line}");
    }
}

fn read_tsv(path: &str, enc: &TextEncoder) -> Vec<Example> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (text, label) = l.rsplit_once('\t')?;
            let e = enc.encode(text.trim()).ok()?;
            Some(Example {
                ids: e.ids.iter().map(|&i| i as u32).collect(),
                type_ids: e.type_ids.iter().map(|&i| i as u32).collect(),
                label: label.trim().parse().ok()?,
            })
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (dir, train_tsv, dev_tsv) = (&args[0], &args[1], &args[2]);
    let kv: HashMap<&str, &str> = args[3..].iter().filter_map(|a| a.split_once('=')).collect();
    let get = |k: &str, d: f64| kv.get(k).map_or(d, |v| v.parse().unwrap());
    let max_length = get("max_length", 128.0) as usize;
    let enc = TextEncoder::from_bytes(
        &std::fs::read(format!("{dir}/tokenizer.json")).unwrap(),
        max_length,
    )
    .unwrap();
    let config =
        BertConfig::from_json(&std::fs::read(format!("{dir}/config.json")).unwrap()).unwrap();
    let mut train = read_tsv(train_tsv, &enc);
    let dev = read_tsv(dev_tsv, &enc);
    let rows = get("rows", train.len() as f64) as usize;
    train.truncate(rows);
    let opts = FinetuneOptions {
        epochs: get("epochs", 1.0) as usize,
        batch_size: get("batch", 32.0) as usize,
        learning_rate: get("lr", 5e-5),
        frozen_layers: get("frozen", 0.0) as usize,
        seed: get("seed", 42.0) as u64,
        ..FinetuneOptions::default()
    };
    let max_tokens = train.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    eprintln!(
        "{} training rows (longest {max_tokens} tokens), {} dev; estimate {:.0} MB",
        train.len(),
        dev.len(),
        finetune::estimate_bytes(&config, &opts, max_tokens, 2) as f64 / 1e6
    );
    let threads = Threads::new(get("threads", 2.0) as usize).unwrap();
    let st = std::fs::read(format!("{dir}/model.safetensors")).unwrap();
    let mut model =
        BertClassifier::from_safetensors(config, &st, 2, opts.frozen_layers, opts.seed).unwrap();
    drop(st);
    let mut mon = Print(std::time::Instant::now());
    let report = finetune::finetune(&mut model, &train, &[], &opts, &threads, &mut mon).unwrap();
    let e = finetune::evaluate(&model, &dev, 64, &threads, &mut mon).unwrap();
    println!(
        "rows {} epochs {} seconds {:.1} rows/s {:.1} dev accuracy {:.4} dev loss {:.4}",
        report.rows,
        opts.epochs,
        report.seconds,
        (report.rows * opts.epochs) as f64 / report.seconds,
        e.accuracy,
        e.loss
    );
    if let Some(out) = kv.get("out") {
        std::fs::write(out, onnx::export(&model, &[]).unwrap()).unwrap();
    }
}
