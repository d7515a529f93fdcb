//! `bert_finetune`: fine-tunes an encoder and a classification head on a relation's labelled
//! texts inside the database, and registers the result as an ONNX classifier that
//! `bert_score`/`bert_classify` serve like any other text model.
//!
//! Steps on the backend's thread: [`parse_options`] → the starting checkpoint from
//! `persona.model_dir/<encoder>/` → the rows, read as the calling role and sorted (so the same
//! rows in any physical order train the same model) → the memory estimate (54000 before any
//! weight is loaded) → `persona_core::text::finetune::finetune` on `persona.training_threads`
//! threads (progress NOTICEs, cancel between layers and steps) → the held-out or validation
//! evaluation → the ONNX export, loaded and checked like any registered model, then stored.
//! A cancel or an error at any point stores nothing and leaves an existing model intact.

use std::collections::HashMap;
use std::time::Instant;

use persona_core::control::{Monitor, Progress, Threads};
use persona_core::text::finetune::{
    self, onnx, BertClassifier, BertConfig, Example, FinetuneOptions, FinetuneReport,
};
use persona_core::text::{holdout_split, ModelSpec, Task, TextEncoder};
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use super::register::{check_may_store, check_replace, register, Registration};
use super::train::{read_data, round4, validation_relation, LabelColumns, Labelled};
use super::{check_name, files, positive_index};
use crate::error::{raise_hint, OrRaise};
use crate::json::Jsonb;
use crate::monitor::{cancel_pending, ProgressNotices};
use crate::options::Options;
use crate::settings;
use crate::text_store::{OrRaiseText, Phase};

const OPTIONS: &[&str] = &[
    "text_column",
    "label_column",
    "epochs",
    "batch_size",
    "learning_rate",
    "warmup_fraction",
    "weight_decay",
    "max_grad_norm",
    "dropout",
    "frozen_layers",
    "length_groups",
    "max_length",
    "holdout_fraction",
    "validation",
    "seed",
    "positive_label",
    "replace",
];

/// Default truncation for fine-tuning: short texts train much faster, and reviews and
/// feedback rarely need more (set `max_length` up to the encoder's positions).
const DEFAULT_MAX_LENGTH: usize = 128;

struct Parsed {
    columns: LabelColumns,
    train: FinetuneOptions,
    max_length: usize,
    holdout: f64,
    validation: Option<String>,
    positive_label: Option<Value>,
    replace: bool,
}

fn parse_options(options: &Value) -> Parsed {
    let o = Options::new(options, OPTIONS, "bert_finetune");
    let d = FinetuneOptions::default();
    let holdout = o.number("holdout_fraction").unwrap_or(0.1);
    if !(0.0..1.0).contains(&holdout) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("holdout_fraction must be in [0, 1), not {holdout}"),
            "0 trains on every row (name a validation relation to still see accuracy per epoch).",
        );
    }
    Parsed {
        columns: LabelColumns {
            text: o.string("text_column").unwrap_or_else(|| "text".into()),
            label: o.string("label_column").unwrap_or_else(|| "label".into()),
        },
        train: FinetuneOptions {
            epochs: o
                .integer("epochs", 1, 1000)
                .map_or(d.epochs, |v| v as usize),
            batch_size: o
                .integer("batch_size", 1, 4096)
                .map_or(d.batch_size, |v| v as usize),
            learning_rate: o.number("learning_rate").unwrap_or(d.learning_rate),
            warmup_fraction: o.number("warmup_fraction").unwrap_or(d.warmup_fraction),
            weight_decay: o.number("weight_decay").unwrap_or(d.weight_decay),
            max_grad_norm: o.number("max_grad_norm").unwrap_or(d.max_grad_norm),
            dropout: o.number("dropout").unwrap_or(d.dropout),
            frozen_layers: o
                .integer("frozen_layers", 0, 1000)
                .map_or(d.frozen_layers, |v| v as usize),
            length_groups: o
                .integer("length_groups", 1, 1_000_000)
                .map_or(d.length_groups, |v| v as usize),
            seed: o.integer("seed", 0, u64::MAX).unwrap_or(d.seed),
        },
        max_length: o
            .integer("max_length", 2, 8192)
            .map_or(DEFAULT_MAX_LENGTH, |v| v as usize),
        holdout,
        validation: o.string("validation"),
        positive_label: o.get("positive_label").cloned(),
        replace: o.boolean("replace").unwrap_or(false),
    }
}

/// Progress NOTICEs (at most every 5 s) with rows/s, each epoch's figures, cancel checks.
struct FinetuneMonitor {
    notices: ProgressNotices,
    batch: usize,
}

impl Monitor for FinetuneMonitor {
    fn step(&mut self, p: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        if self.notices.due() {
            let secs = self.notices.elapsed();
            notice!(
                "pg_persona: bert_finetune: step {}/{}, training loss {:.4}, {:.1} rows/s ({:.0} s)",
                p.step,
                p.steps,
                p.loss.unwrap_or(f64::NAN),
                (p.step * self.batch) as f64 / secs.max(1e-9),
                secs
            );
        }
        Ok(())
    }
    fn interrupted(&mut self) -> bool {
        cancel_pending()
    }
    fn note(&mut self, line: &str) {
        notice!("pg_persona: bert_finetune: {line}");
    }
}

/// The rows sorted by (text, label), so that neither the held-out split nor the training order
/// depends on the physical order of the table (or on the order Citus's shards answer in).
fn sorted(data: Labelled) -> Labelled {
    let mut rows: Vec<(String, usize)> = data.texts.into_iter().zip(data.y).collect();
    rows.sort_unstable();
    let (texts, y) = rows.into_iter().unzip();
    Labelled { texts, y, ..data }
}

/// Tokenised rows of a relation (all, or those of `idx`), in the rows' order.
fn examples(enc: &TextEncoder, data: &Labelled, idx: Option<&[usize]>) -> Vec<Example> {
    let rows: Vec<(&str, usize)> = match idx {
        Some(idx) => idx
            .iter()
            .map(|&i| (data.texts[i].as_str(), data.y[i]))
            .collect(),
        None => data
            .texts
            .iter()
            .map(String::as_str)
            .zip(data.y.iter().copied())
            .collect(),
    };
    rows.iter()
        .map(|&(t, y)| {
            let e = enc.encode(t).or_raise_text(Phase::Train);
            Example {
                ids: e.ids.iter().map(|&i| i as u32).collect(),
                type_ids: e.type_ids.iter().map(|&i| i as u32).collect(),
                label: y as u32,
            }
        })
        .collect()
}

/// Fine-tunes `encoder` on `source`'s labelled texts and registers the classifier as `name`.
/// Implementation of `bert_finetune(text, regclass, text, jsonb)` (sql/finalize.sql); the
/// README lists the options.
#[pg_extern(schema = "persona", volatile, parallel_unsafe)]
fn bert_finetune_impl(name: &str, source: pg_sys::Oid, encoder: &str, options: Jsonb) -> JsonB {
    let t0 = Instant::now();
    check_name(name);
    check_name(encoder);
    check_may_store(name);
    let p = parse_options(&options.0);
    if name == encoder {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a fine-tuned model cannot replace its own encoder",
            "Give the classifier another name.",
        );
    }
    check_replace(name, p.replace, false);
    let (weights, config_json, tokenizer) = files::checkpoint(encoder);
    let config = BertConfig::from_json(&config_json).or_raise_hint(
        "config.json must be a Hugging Face BERT config (model_type bert, absolute positions, gelu).",
    );
    p.train.check(&config).or_raise_hint(
        "See the README's bert_finetune options; e.g. '{\"epochs\": 2, \"learning_rate\": 5e-5}'.",
    );
    if p.max_length > config.max_position_embeddings {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "max_length {} is longer than encoder \"{encoder}\"'s {} positions",
                p.max_length, config.max_position_embeddings
            ),
            "Lower max_length.",
        );
    }
    let enc = TextEncoder::from_bytes(&tokenizer, p.max_length).or_raise_text(Phase::Train);
    if enc.vocab_size() > config.vocab_size {
        raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!(
                "the tokenizer of \"{encoder}\" has {} tokens, more than its checkpoint's {}",
                enc.vocab_size(),
                config.vocab_size
            ),
            "The checkpoint directory must hold the tokenizer of that model.",
        );
    }
    let validation_oid = p.validation.as_deref().map(validation_relation);

    let t_read = Instant::now();
    let (labels, data, valid) = read_data(source, validation_oid, &p.columns);
    let (data, valid) = (sorted(data), valid.map(sorted));
    let read_seconds = t_read.elapsed().as_secs_f64();
    let positive = p
        .positive_label
        .as_ref()
        .map(|v| positive_index(v, &labels, Some(labels.len())));
    let (train_idx, test_idx) = if p.holdout > 0.0 {
        holdout_split(&data.y, p.holdout, p.train.seed).or_raise_text(Phase::Train)
    } else {
        ((0..data.y.len()).collect(), Vec::new())
    };
    let train = examples(&enc, &data, Some(&train_idx));
    let held = examples(&enc, &data, Some(&test_idx));
    let valid_rows = valid.as_ref().map(|v| examples(&enc, v, None));
    let eval_rows: &[Example] = valid_rows.as_deref().unwrap_or(&held);

    let longest = train.iter().map(|e| e.ids.len()).max().unwrap_or(0);
    let need = finetune::estimate_bytes(&config, &p.train, longest, labels.len());
    settings::check_training_memory(
        usize::try_from(need).unwrap_or(usize::MAX),
        || {
            format!(
                "fine-tuning \"{encoder}\" with batches of {} texts of up to {longest} tokens",
                p.train.batch_size
            )
        },
        "Lower batch_size or max_length, freeze layers (frozen_layers), or raise \
         persona.max_training_memory.",
    );
    let mut model = BertClassifier::from_safetensors(
        config,
        &weights,
        labels.len(),
        p.train.frozen_layers,
        p.train.seed,
    )
    .or_raise_hint("model.safetensors must hold the encoder that config.json describes.");
    drop(weights);
    let threads = Threads::new(settings::training_threads()).or_raise_text(Phase::Train);
    let mut monitor = FinetuneMonitor {
        notices: ProgressNotices::new(),
        batch: p.train.batch_size,
    };
    let report = finetune::finetune(
        &mut model,
        &train,
        eval_rows,
        &p.train,
        &threads,
        &mut monitor,
    )
    .or_raise_text(Phase::Train);
    // The last epoch already measured the evaluation rows (the validation relation, else the
    // held-out rows); held-out rows beside a validation relation are measured once here.
    let last_epoch = report.epochs.last().and_then(|e| {
        Some(json!({
            "accuracy": round4(e.validation_accuracy?),
            "log_loss": round4(e.validation_loss?),
            "rows": eval_rows.len(),
        }))
    });
    let (holdout, on_valid) = if valid_rows.is_some() {
        let holdout = (!held.is_empty()).then(|| {
            let e = finetune::evaluate(&model, &held, 64, &threads, &mut monitor)
                .or_raise_text(Phase::Train);
            json!({"accuracy": round4(e.accuracy), "log_loss": round4(e.loss), "rows": held.len()})
        });
        (holdout, last_epoch)
    } else {
        (last_epoch, None)
    };

    let mut summary = summary_json(
        name, encoder, &p, &labels, positive, &data, &report, holdout, on_valid,
    );
    if let Some(obj) = summary.as_object_mut() {
        obj.insert(
            "validation".into(),
            json!(valid.as_ref().map(|v| v.relname.clone())),
        );
        obj.insert("read_seconds".into(), json!(round4(read_seconds)));
    }
    // Only what the weights depend on goes into the graph, so the same training gives the same
    // bytes (and onnx_sha256); the report with its timings is the row's `source`.
    let graph = onnx::export(
        &model,
        &[
            ("pg_persona_encoder", encoder.to_string()),
            ("pg_persona_labels", json!(labels).to_string()),
        ],
    )
    .or_raise_text(Phase::Train);
    drop(model);
    let spec = ModelSpec {
        task: Task::Classification,
        max_length: p.max_length,
        labels: labels.clone(),
        positive_label: positive,
        ..ModelSpec::default()
    };
    let registered = register(Registration {
        name: name.to_string(),
        onnx: graph,
        tokenizer,
        spec,
        source: summary.clone(),
        replace: p.replace,
        keep_dependents: false,
        builtin: false,
    });
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("version".into(), registered["version"].clone());
        obj.insert("onnx_bytes".into(), registered["onnx_bytes"].clone());
        obj.insert("seconds".into(), json!(round4(t0.elapsed().as_secs_f64())));
    }
    JsonB(summary)
}

#[allow(clippy::too_many_arguments)]
fn summary_json(
    name: &str,
    encoder: &str,
    p: &Parsed,
    labels: &[String],
    positive: Option<usize>,
    data: &Labelled,
    report: &FinetuneReport,
    holdout: Option<Value>,
    on_valid: Option<Value>,
) -> Value {
    let mut counts = vec![0u64; labels.len()];
    for &c in &data.y {
        counts[c] += 1;
    }
    let class_counts: HashMap<&str, u64> = labels
        .iter()
        .map(String::as_str)
        .zip(counts.iter().copied())
        .collect();
    let epochs: Vec<Value> = report
        .epochs
        .iter()
        .map(|e| {
            json!({
                "epoch": e.epoch,
                "steps": e.steps,
                "loss": round4(e.loss),
                "seconds": round4(e.seconds),
                "rows_per_second": round4(e.rows_per_second),
                "validation_accuracy": e.validation_accuracy.map(round4),
                "validation_loss": e.validation_loss.map(round4),
            })
        })
        .collect();
    json!({
        "model": name,
        "encoder": encoder,
        "method": "fine-tuned encoder + mean pooling + linear head (AdamW)",
        "source": data.relname,
        "text_column": p.columns.text,
        "label_column": p.columns.label,
        "labels": labels,
        "positive_label": positive.and_then(|i| labels.get(i)),
        "class_counts": class_counts,
        "rows_used": data.y.len(),
        "rows_skipped_null": data.skipped_null,
        "train_rows": report.rows,
        "holdout_fraction": p.holdout,
        "max_length": p.max_length,
        "options": report.options,
        "trainable_parameters": report.trainable_parameters,
        "steps": report.steps,
        "epochs": epochs,
        "train_seconds": round4(report.seconds),
        "rows_per_second": round4(
            (report.rows * report.options.epochs) as f64 / report.seconds.max(1e-9)
        ),
        "holdout": holdout,
        "validation_metrics": on_valid,
        "threads": settings::training_threads(),
    })
}
