//! `bert_train_classifier`: a softmax head trained inside the database on a text encoder's
//! frozen embeddings of a relation's labelled texts, evaluated, and registered as a text model.
//!
//! Reading, embedding (ONNX Runtime, batched by length), training (L-BFGS) and evaluation
//! (accuracy, macro-F1, ROC AUC) run in this order on the backend's thread; the algorithms are
//! `persona_core::text`'s. Settings can be chosen on held-out data in the same call: `l2`,
//! `balanced` and `pooling` may be lists; one inference pass computes every pooling asked for,
//! every combination is trained on those embeddings and scored on the `validation` relation (or
//! the held-out split), and the best by accuracy is kept. The optimiser's passes over the
//! embeddings run on `persona.training_threads` threads (the same head on any number of them).

use std::collections::HashMap;
use std::time::Instant;

use persona_core::cf::{Monitor, Progress, Threads};
use persona_core::text::{
    evaluate_head, holdout_split, train_softmax_head_with, Head, HeadEvaluation, HeadTrainOptions,
    ModelSpec, Pooling, Task, TextModel,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Map, Value};

use crate::bert::{
    check_name, check_replace, check_store_privilege, positive_index, register_head, Options,
};
use crate::error::{raise, raise_hint};
use crate::settings;
use crate::source::{check_columns, for_each_row, ident, qualified_name, ColumnKind};
use crate::text_store::{self, OrRaiseText, Phase};

const TRAIN_OPTIONS: &[&str] = &[
    "text_column",
    "label_column",
    "holdout_fraction",
    "validation",
    "seed",
    "l2",
    "balanced",
    "max_iterations",
    "tolerance",
    "positive_label",
    "pooling",
    "max_length",
    "replace",
];

/// Most distinct labels a classifier may have.
const MAX_LABELS: usize = 1000;

/// Texts embedded per call of the core (progress is exact between chunks; token ids of one
/// chunk at a time are held).
const CHUNK: usize = 8192;

/// Progress NOTICEs (at most every 5 s) and cancel checks while embedding.
struct EmbedMonitor {
    started: Instant,
    last_notice: Instant,
    what: &'static str,
    done: usize,
    chunk: usize,
    total: usize,
}

impl Monitor for EmbedMonitor {
    fn step(&mut self, p: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        if self.last_notice.elapsed().as_secs_f64() >= 5.0 {
            self.last_notice = Instant::now();
            let done = self.done + self.chunk * p.step / p.steps.max(1);
            let secs = self.started.elapsed().as_secs_f64();
            notice!(
                "pg_persona: bert_train_classifier: embedded {done} of {} {} texts ({:.0} texts/s, {secs:.0} s)",
                self.total,
                self.what,
                done as f64 / secs.max(1e-9)
            );
        }
        Ok(())
    }
}

/// Embeds `texts` in chunks under each of `poolings` (one inference pass), with progress and
/// cancel: `result[p][row]`.
fn embed_all(
    model: &TextModel,
    graph: &str,
    texts: &[String],
    poolings: &[Pooling],
    what: &'static str,
) -> Vec<Vec<Vec<f32>>> {
    let mut monitor = EmbedMonitor {
        started: Instant::now(),
        last_notice: Instant::now(),
        what,
        done: 0,
        chunk: 0,
        total: texts.len(),
    };
    let mut out: Vec<Vec<Vec<f32>>> = vec![Vec::with_capacity(texts.len()); poolings.len()];
    for chunk in texts.chunks(CHUNK) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        monitor.chunk = chunk.len();
        let pooled = model
            .embed_poolings_with(&refs, poolings, &mut monitor)
            .or_raise_text(Phase::Infer(graph));
        for (o, p) in out.iter_mut().zip(pooled) {
            o.extend(p);
        }
        monitor.done += chunk.len();
    }
    out
}

/// Cancel checks between the head optimiser's evaluations (each a pass over the embeddings).
struct TrainMonitor;

impl Monitor for TrainMonitor {
    fn step(&mut self, _: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        Ok(())
    }
}

fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// A number or a non-empty list of numbers.
fn number_list(o: &Options<'_>, key: &str, default: f64) -> Vec<f64> {
    match o.get(key) {
        None => vec![default],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| match v.as_f64() {
                Some(x) if x.is_finite() => x,
                _ => o.bad(key, "a number or a list of numbers", v),
            })
            .collect(),
        Some(v) => match v.as_f64() {
            Some(x) if x.is_finite() => vec![x],
            _ => o.bad(key, "a number or a list of numbers", v),
        },
    }
}

/// A boolean or a non-empty list of booleans.
fn bool_list(o: &Options<'_>, key: &str, default: bool) -> Vec<bool> {
    match o.get(key) {
        None => vec![default],
        Some(Value::Bool(b)) => vec![*b],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| {
                v.as_bool()
                    .unwrap_or_else(|| o.bad(key, "true, false or a list of them", v))
            })
            .collect(),
        Some(v) => o.bad(key, "true, false or a list of them", v),
    }
}

/// Distinct non-NULL labels of rows with a text, in the label column's own order (numbers
/// numerically, booleans false first, text by collation).
fn distinct_labels(
    client: &SpiClient<'_>,
    rel: &str,
    text_col: &str,
    label_col: &str,
) -> Vec<String> {
    let query = format!(
        "SELECT s.l::text FROM (SELECT DISTINCT {l} AS l FROM {rel} WHERE {l} IS NOT NULL AND {t} IS NOT NULL) s \
         ORDER BY s.l LIMIT {}",
        MAX_LABELS + 1,
        l = ident(label_col),
        t = ident(text_col),
    );
    let rows = client.select(&query, None, &[]).unwrap_or_else(|e| {
        raise(
            ERRCODE_INTERNAL_ERROR,
            format!("reading the labels of {rel} failed: {e}"),
            None,
        )
    });
    rows.map(|r| r.get::<String>(1).ok().flatten().unwrap_or_default())
        .collect()
}

/// Labelled texts of one relation, labels as indices into the training labels.
struct Labelled {
    relname: String,
    texts: Vec<String>,
    y: Vec<usize>,
    skipped_null: u64,
}

/// Reads `(text, label)` rows of `relname` as the calling role. `labels` maps label text →
/// index; a label outside it (possible in the validation relation only) is an error.
fn read_labelled(
    client: &SpiClient<'_>,
    relname: String,
    text_col: &str,
    label_col: &str,
    labels: &HashMap<&str, usize>,
) -> Labelled {
    let query = format!(
        "SELECT {}::text, {}::text FROM {relname}",
        ident(text_col),
        ident(label_col)
    );
    let (mut texts, mut y, mut skipped_null) = (Vec::new(), Vec::new(), 0u64);
    let mut unknown: Option<String> = None;
    for_each_row(client, &query, 10_000, |r| {
        let t: Option<String> = r.get(1).ok().flatten();
        let l: Option<String> = r.get(2).ok().flatten();
        match (t, l) {
            (Some(t), Some(l)) => match labels.get(l.as_str()) {
                Some(&i) => {
                    texts.push(t);
                    y.push(i);
                }
                None => {
                    unknown.get_or_insert(l);
                }
            },
            _ => skipped_null += 1,
        }
    });
    if let Some(l) = unknown {
        let mut known: Vec<&&str> = labels.keys().collect();
        known.sort();
        raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!("{relname} has the label \"{l}\", which the training relation does not have"),
            format!(
                "The validation relation must use the training labels ({}).",
                known
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    Labelled {
        relname,
        texts,
        y,
        skipped_null,
    }
}

/// The OID of the relation named in the option "validation" (resolved like a regclass, with
/// the caller's search_path and privileges checked when it is read).
fn validation_relation(name: &str) -> pg_sys::Oid {
    text_store::select_one::<pg_sys::Oid>(
        "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
        &[name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_TABLE,
            format!("validation relation \"{name}\" does not exist"),
            "Name a table or view with the same text and label columns, e.g. '{\"validation\": \"public.reviews_valid\"}'.",
        )
    })
}

fn metrics(e: &HeadEvaluation) -> Value {
    json!({
        "n": e.n,
        "accuracy": round4(e.accuracy),
        "macro_f1": round4(e.macro_f1),
        "roc_auc": e.roc_auc.map(round4),
        "log_loss": round4(e.log_loss),
        "confusion": e.confusion,
    })
}

/// Trains a classification head on `encoder`'s embeddings of `source`'s texts and registers it
/// as `name`. Implementation of `bert_train_classifier(text, regclass, text, jsonb)`
/// (sql/finalize.sql); the README lists the options.
#[pg_extern(schema = "persona", volatile, parallel_unsafe)]
fn bert_train_classifier_impl(
    name: &str,
    source: pg_sys::Oid,
    encoder: &str,
    options: JsonB,
) -> JsonB {
    let t0 = Instant::now();
    check_name(name);
    check_store_privilege(name, "INSERT, UPDATE");
    let o = Options::new(&options.0, TRAIN_OPTIONS, "bert_train_classifier");
    let text_col = o.string("text_column").unwrap_or_else(|| "text".into());
    let label_col = o.string("label_column").unwrap_or_else(|| "label".into());
    let holdout = o.number("holdout_fraction").unwrap_or(0.2);
    if !(0.0..1.0).contains(&holdout) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("holdout_fraction must be in [0, 1), not {holdout}"),
            "0 trains on every row and reports no held-out metrics.",
        );
    }
    let seed = o.integer("seed", 0, u64::MAX).unwrap_or(42);
    let defaults = HeadTrainOptions::default();
    let l2s = number_list(&o, "l2", defaults.l2);
    if let Some(bad) = l2s.iter().find(|&&x| x <= 0.0) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("l2 must be positive, not {bad}"),
            "e.g. '{\"l2\": 0.001}', or a list to choose from: '{\"l2\": [0.0001, 0.001, 0.01]}'.",
        );
    }
    let balances = bool_list(&o, "balanced", defaults.balanced);
    let max_iterations = o
        .integer("max_iterations", 1, 100_000)
        .unwrap_or(defaults.max_iterations);
    let tolerance = o.number("tolerance").unwrap_or(defaults.tolerance);
    let validation = o.string("validation");
    let replace = o.boolean("replace").unwrap_or(false);
    let head_grid: Vec<HeadTrainOptions> = l2s
        .iter()
        .flat_map(|&l2| {
            balances.iter().map(move |&balanced| HeadTrainOptions {
                l2,
                max_iterations,
                balanced,
                tolerance,
            })
        })
        .collect();
    let asked_poolings = o.poolings();
    let n_settings = head_grid.len() * asked_poolings.as_ref().map_or(1, Vec::len);
    if n_settings > 1 && validation.is_none() && holdout == 0.0 {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "choosing among several settings needs held-out rows",
            "Set holdout_fraction above 0, or name a validation relation with the option \"validation\".",
        );
    }
    if name == encoder {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a classifier cannot replace its own encoder",
            "Give the classifier another name.",
        );
    }
    check_replace(name, replace, false);

    // The encoder: any model with embeddings; a head model's own encoder is used.
    let base = text_store::model(encoder);
    if base.model.dim().is_none() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{encoder}\" gives no embeddings (it is a logits classifier)"),
            "Train on an encoder, such as 'minilm'.",
        );
    }
    let graph = base.graph.clone();
    let dim = base.model.dim().unwrap_or(0);
    let base_pooling = base.model.spec().pooling;
    drop(base);
    let graph_max_length = text_store::select_one::<JsonB>(
        "SELECT spec FROM persona.bert_model_store WHERE name = $1",
        &[graph.as_str().into()],
    )
    .ok()
    .flatten()
    .and_then(|j| serde_json::from_value::<ModelSpec>(j.0).ok())
    .unwrap_or_default()
    .max_length;
    // Every pooling asked for is computed from the same inference pass.
    let poolings = asked_poolings.unwrap_or_else(|| vec![base_pooling]);
    let grid: Vec<(usize, HeadTrainOptions)> = (0..poolings.len())
        .flat_map(|p| head_grid.iter().map(move |h| (p, h.clone())))
        .collect();
    let pooled_dims: usize = poolings.iter().map(|p| p.dim(dim)).sum();
    let max_length = o
        .integer("max_length", 2, 8192)
        .map_or(graph_max_length, |v| v as usize);
    let validation_oid = validation.as_deref().map(validation_relation);

    // Read the labelled texts as the calling role.
    let t_read = Instant::now();
    let (labels, data, valid) = Spi::connect(|client| {
        let relname = qualified_name(client, source);
        let columns = [
            (text_col.as_str(), ColumnKind::Text, "text_column"),
            (label_col.as_str(), ColumnKind::Label, "label_column"),
        ];
        check_columns(client, source, &relname, &columns);
        let labels = distinct_labels(client, &relname, &text_col, &label_col);
        match labels.len() {
            0 => raise_hint(
                ERRCODE_DATA_EXCEPTION,
                format!("{relname} has no rows with a non-NULL \"{text_col}\" and \"{label_col}\""),
                "Train on a relation (or view) of labelled texts.",
            ),
            1 => raise_hint(
                ERRCODE_DATA_EXCEPTION,
                format!(
                    "the label column \"{label_col}\" of {relname} holds one class only (\"{}\")",
                    labels[0]
                ),
                "A classifier needs at least two labels: include rows of the other classes, or \
                 check the view's WHERE clause and the option \"label_column\".",
            ),
            n if n > MAX_LABELS => raise_hint(
                ERRCODE_DATA_EXCEPTION,
                format!(
                    "the label column \"{label_col}\" of {relname} holds more than {MAX_LABELS} distinct values"
                ),
                "Is it the right column? Name the class column with the option \"label_column\".",
            ),
            _ => {}
        }
        let index: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let data = read_labelled(client, relname, &text_col, &label_col, &index);
        let valid = validation_oid.map(|oid| {
            let relname = qualified_name(client, oid);
            check_columns(client, oid, &relname, &columns);
            read_labelled(client, relname, &text_col, &label_col, &index)
        });
        (labels, data, valid)
    });
    let read_seconds = t_read.elapsed().as_secs_f64();
    if valid.as_ref().is_some_and(|v| v.y.is_empty()) {
        raise_hint(
            ERRCODE_DATA_EXCEPTION,
            "the validation relation has no labelled texts",
            "Name a relation with rows of non-NULL text and label.",
        );
    }

    // Memory: the embeddings of every pooling in f32 (the optimiser reads them in place).
    let n_valid = valid.as_ref().map_or(0, |v| v.texts.len());
    let text_bytes: usize = data.texts.iter().map(String::len).sum();
    let need = (data.texts.len() + n_valid) * pooled_dims * 4 + text_bytes;
    let limit = settings::max_training_bytes();
    if need > limit {
        raise_hint(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "training on {} texts of {pooled_dims}-dimensional embeddings (all poolings) needs about {} MB, more than persona.max_training_memory ({} MB)",
                data.texts.len() + n_valid,
                need >> 20,
                limit >> 20
            ),
            "Raise persona.max_training_memory, or train on a sample (a view with TABLESAMPLE or LIMIT).",
        );
    }

    let positive = o
        .get("positive_label")
        .map(|v| positive_index(v, &labels, Some(labels.len())));
    let spec_for = |head: Option<Head>, pooling: Pooling| ModelSpec {
        task: if head.is_some() {
            Task::Classification
        } else {
            Task::Embedding
        },
        pooling,
        max_length,
        labels: if head.is_some() {
            labels.clone()
        } else {
            Vec::new()
        },
        positive_label: if head.is_some() { positive } else { None },
        head,
    };
    let embedder = text_store::model_on_graph(&graph, spec_for(None, poolings[0]), Phase::Train);
    let (train_idx, test_idx) = if holdout > 0.0 {
        holdout_split(&data.y, holdout, seed).or_raise_text(Phase::Train)
    } else {
        ((0..data.y.len()).collect(), Vec::new())
    };

    // Embed (the expensive part), under every pooling at once: emb[p][row].
    let t_embed = Instant::now();
    let emb = embed_all(&embedder, &graph, &data.texts, &poolings, "training");
    let embed_seconds = t_embed.elapsed().as_secs_f64();
    let valid_emb = valid
        .as_ref()
        .map(|v| embed_all(&embedder, &graph, &v.texts, &poolings, "validation"));
    let rows_per_second = data.texts.len() as f64 / embed_seconds.max(1e-9);
    pgrx::check_for_interrupts!();

    // Train each setting on the training part; keep the best on validation (or held-out) data.
    let t_train = Instant::now();
    let threads = Threads::new(settings::training_threads()).or_raise_text(Phase::Train);
    let view = |p: usize, idx: &[usize]| -> Vec<&[f32]> {
        idx.iter().map(|&i| emb[p][i].as_slice()).collect()
    };
    let labels_of = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| data.y[i]).collect() };
    let (train_y, test_y) = (labels_of(&train_idx), labels_of(&test_idx));
    // Row views of each pooling's embeddings (`[pooling][row]`), built once for every setting
    // and the report.
    type Views<'a> = Vec<Vec<&'a [f32]>>;
    let train_x: Views = (0..poolings.len()).map(|p| view(p, &train_idx)).collect();
    let test_x: Views = (0..poolings.len()).map(|p| view(p, &test_idx)).collect();
    let valid_x: Option<Views> = valid_emb.as_ref().map(|x| {
        x.iter()
            .map(|e| e.iter().map(Vec::as_slice).collect())
            .collect()
    });
    // Where settings are compared: the validation relation, else the held-out rows.
    let selection: Option<(&Views, &[usize])> = match (&valid_x, &valid) {
        (Some(x), Some(v)) => Some((x, &v.y)),
        _ => (!test_y.is_empty()).then_some((&test_x, &test_y)),
    };
    let positive_for_auc = positive.or((labels.len() == 2).then_some(1));
    let mut candidates = Vec::new();
    let mut best: Option<(usize, persona_core::text::TrainedHead, f64, f64)> = None;
    for (i, (p, opts)) in grid.iter().enumerate() {
        pgrx::check_for_interrupts!();
        let mut monitor = TrainMonitor;
        let fit = train_softmax_head_with(
            &train_x[*p],
            &train_y,
            &labels,
            opts,
            &threads,
            &mut monitor,
        )
        .or_raise_text(Phase::Train);
        let mut row = json!({"pooling": poolings[*p], "l2": opts.l2, "balanced": opts.balanced, "iterations": fit.iterations, "converged": fit.converged});
        if let Some((select_x, select_y)) = selection {
            let e = evaluate_head(&fit.head, &select_x[*p], select_y, positive_for_auc)
                .or_raise_text(Phase::Train);
            if let Some(obj) = row.as_object_mut() {
                obj.insert("accuracy".into(), json!(round4(e.accuracy)));
                obj.insert("log_loss".into(), json!(round4(e.log_loss)));
                obj.insert("macro_f1".into(), json!(round4(e.macro_f1)));
            }
            let better = best.as_ref().is_none_or(|(_, _, acc, ll)| {
                e.accuracy > *acc || (e.accuracy == *acc && e.log_loss < *ll)
            });
            if better {
                best = Some((i, fit, e.accuracy, e.log_loss));
            }
        } else {
            best = Some((i, fit, 0.0, 0.0));
        }
        candidates.push(row);
        if grid.len() > 1 {
            notice!(
                "pg_persona: bert_train_classifier: setting {} of {}: {}",
                i + 1,
                grid.len(),
                candidates.last().unwrap_or(&Value::Null)
            );
        }
    }
    let Some((chosen, fit, _, _)) = best else {
        raise(ERRCODE_INTERNAL_ERROR, "no setting was trained", None)
    };
    let (chosen_pooling, chosen_opts) = (grid[chosen].0, &grid[chosen].1);
    let pooling = poolings[chosen_pooling];
    let train_seconds = t_train.elapsed().as_secs_f64();

    // The final model, checked the way it will be loaded.
    let spec = spec_for(Some(fit.head.clone()), pooling);
    let model = text_store::model_on_graph(&graph, spec.clone(), Phase::Train);
    let positive = model.positive_label();
    let on_train = evaluate_head(&fit.head, &train_x[chosen_pooling], &train_y, positive)
        .or_raise_text(Phase::Train);
    let on_holdout = (!test_y.is_empty()).then(|| {
        evaluate_head(&fit.head, &test_x[chosen_pooling], &test_y, positive)
            .or_raise_text(Phase::Train)
    });
    let on_valid = match (&valid_emb, &valid) {
        (Some(x), Some(v)) => Some(
            evaluate_head(&fit.head, &x[chosen_pooling], &v.y, positive)
                .or_raise_text(Phase::Train),
        ),
        _ => None,
    };
    let mut counts = vec![0u64; labels.len()];
    for &c in &data.y {
        counts[c] += 1;
    }
    let mut summary = json!({
        "model": name,
        "encoder": graph,
        "source": data.relname,
        "validation": valid.as_ref().map(|v| v.relname.clone()),
        "text_column": text_col,
        "label_column": label_col,
        "labels": labels,
        "positive_label": positive.and_then(|p| labels.get(p)),
        "class_counts": labels.iter().zip(&counts).map(|(l, c)| (l.clone(), json!(c))).collect::<Map<String, Value>>(),
        "rows_used": data.y.len(),
        "rows_skipped_null": data.skipped_null,
        "train_rows": train_idx.len(),
        "holdout_rows": test_idx.len(),
        "holdout_fraction": holdout,
        "seed": seed,
        "pooling": pooling,
        "max_length": max_length,
        "l2": chosen_opts.l2,
        "balanced": chosen_opts.balanced,
        "iterations": fit.iterations,
        "converged": fit.converged,
        "loss": round4(fit.loss),
        "candidates": if grid.len() > 1 { Value::Array(candidates) } else { Value::Null },
        "train": metrics(&on_train),
        "holdout": on_holdout.as_ref().map(metrics),
        "validation_metrics": on_valid.as_ref().map(metrics),
        "read_seconds": round4(read_seconds),
        "embed_seconds": round4(embed_seconds),
        "rows_per_second": rows_per_second.round(),
        "train_seconds": round4(train_seconds),
    });
    let version = register_head(name, &graph, &model, &spec, summary.clone(), false);
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("version".into(), json!(version));
        obj.insert("seconds".into(), json!(round4(t0.elapsed().as_secs_f64())));
    }
    JsonB(summary)
}
