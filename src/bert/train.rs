//! `bert_train_classifier`: a softmax head trained inside the database on a text encoder's
//! frozen embeddings of a relation's labelled texts, evaluated, and registered as a text model.
//!
//! The steps, in order, on the backend's thread: [`parse_options`] → [`resolve_encoder`] →
//! [`read_data`] (as the calling role) → [`check_memory`] → [`embed_all`] (ONNX Runtime, batched
//! by length; every pooling asked for from one inference pass) → `HeadSearch::run` (the grid
//! search and its choice rule are `persona_core::text::head`'s; the optimiser's passes run on
//! `persona.training_threads` threads) → [`store`] (evaluated, checked the way it will be
//! loaded, registered) with the report.

use std::collections::HashMap;
use std::time::Instant;

use persona_core::control::{Monitor, Progress, Threads};
use persona_core::text::{
    check_selectable, evaluate_head, head_grid, holdout_split, Candidate, Head, HeadChoice,
    HeadEvaluation, HeadSearch, HeadSetting, HeadTrainOptions, ModelSpec, PooledExamples, Pooling,
    Task, TextModel,
};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Map, Value};

use super::register::{check_may_store, check_replace, register_head};
use super::{check_name, positive_index};
use crate::error::{raise_hint, OrRaise};
use crate::json::Jsonb;
use crate::monitor::{Interrupts, ProgressNotices};
use crate::options::Options;
use crate::settings;
use crate::source::{checked_relation, for_each_row, ident, ColumnKind};
use crate::spi::{select_one, select_user, Columns};
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

/// The text and label columns of a training relation (options `text_column`, `label_column`).
pub(super) struct LabelColumns {
    pub(super) text: String,
    pub(super) label: String,
}

/// What `options` asks for.
struct TrainOptions {
    columns: LabelColumns,
    holdout: f64,
    seed: u64,
    /// `pooling` as given (`None`: the encoder's own).
    poolings: Option<Vec<Pooling>>,
    /// `max_length` as given (`None`: the encoder's own).
    max_length: Option<usize>,
    l2s: Vec<f64>,
    balances: Vec<bool>,
    max_iterations: u64,
    tolerance: f64,
    validation: Option<String>,
    positive_label: Option<Value>,
    replace: bool,
}

/// Reads and checks `options`; refuses a grid that cannot be chosen from before any work.
fn parse_options(options: &Value) -> TrainOptions {
    let o = Options::new(options, TRAIN_OPTIONS, "bert_train_classifier");
    let holdout = o.number("holdout_fraction").unwrap_or(0.2);
    if !(0.0..1.0).contains(&holdout) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("holdout_fraction must be in [0, 1), not {holdout}"),
            "0 trains on every row and reports no held-out metrics.",
        );
    }
    let defaults = HeadTrainOptions::default();
    let t = TrainOptions {
        columns: LabelColumns {
            text: o.string("text_column").unwrap_or_else(|| "text".into()),
            label: o.string("label_column").unwrap_or_else(|| "label".into()),
        },
        holdout,
        seed: o.integer("seed", 0, u64::MAX).unwrap_or(42),
        poolings: o.poolings(),
        max_length: o.integer("max_length", 2, 8192).map(|v| v as usize),
        l2s: o.numbers("l2", defaults.l2),
        balances: o.booleans("balanced", defaults.balanced),
        max_iterations: o
            .integer("max_iterations", 1, 100_000)
            .unwrap_or(defaults.max_iterations),
        tolerance: o.number("tolerance").unwrap_or(defaults.tolerance),
        validation: o.string("validation"),
        positive_label: o.get("positive_label").cloned(),
        replace: o.boolean("replace").unwrap_or(false),
    };
    // The grid's own checks (l2 > 0; held-out rows to choose among several settings), here
    // with the hints of this function's options.
    t.grid(1).or_raise_hint(
        "e.g. '{\"l2\": 0.001}', or a list to choose from: '{\"l2\": [0.0001, 0.001, 0.01]}'.",
    );
    let n_settings = t.l2s.len() * t.balances.len() * t.poolings.as_ref().map_or(1, Vec::len);
    check_selectable(n_settings, t.validation.is_some() || holdout > 0.0).or_raise_hint(
        "Set holdout_fraction above 0, or name a validation relation with the option \
         \"validation\".",
    );
    t
}

impl TrainOptions {
    fn grid(&self, n_poolings: usize) -> persona_core::Result<Vec<HeadSetting>> {
        head_grid(
            n_poolings,
            &self.l2s,
            &self.balances,
            self.max_iterations,
            self.tolerance,
        )
    }
}

/// The encoder a head is trained on: its graph row and what it gives.
struct Encoder {
    /// The row holding its ONNX graph (a head model's own encoder).
    graph: String,
    /// Its embedding width.
    dim: usize,
    pooling: Pooling,
    max_length: usize,
}

/// The encoder called `name`: any model with embeddings (for a head model, its encoder).
fn resolve_encoder(name: &str) -> Encoder {
    let base = text_store::model(name);
    let Some(dim) = base.model.dim() else {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{name}\" gives no embeddings (it is a logits classifier)"),
            "Train on an encoder, such as 'minilm'.",
        )
    };
    let graph = base.graph.clone();
    let max_length = select_one::<JsonB>(
        "SELECT spec FROM persona.bert_model_store WHERE name = $1",
        &[graph.as_str().into()],
        "persona.bert_model_store",
    )
    .and_then(|j| serde_json::from_value::<ModelSpec>(j.0).ok())
    .unwrap_or_default()
    .max_length;
    Encoder {
        graph,
        dim,
        pooling: base.model.spec().pooling,
        max_length,
    }
}

/// Labelled texts of one relation, labels as indices into the training labels.
pub(super) struct Labelled {
    pub(super) relname: String,
    pub(super) texts: Vec<String>,
    pub(super) y: Vec<usize>,
    pub(super) skipped_null: u64,
}

/// The training labels, the training rows and the validation rows, read as the calling role.
pub(super) fn read_data(
    source: pg_sys::Oid,
    validation: Option<pg_sys::Oid>,
    t: &LabelColumns,
) -> (Vec<String>, Labelled, Option<Labelled>) {
    Spi::connect(|client| {
        let columns = [
            (t.text.as_str(), ColumnKind::Text, "text_column"),
            (t.label.as_str(), ColumnKind::Label, "label_column"),
        ];
        let relname = checked_relation(client, source, &columns);
        let labels = distinct_labels(client, &relname, &t.text, &t.label);
        let index: HashMap<&str, usize> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i))
            .collect();
        let data = read_labelled(client, relname, t, &index);
        let valid = validation.map(|oid| {
            let relname = checked_relation(client, oid, &columns);
            read_labelled(client, relname, t, &index)
        });
        if valid.as_ref().is_some_and(|v| v.y.is_empty()) {
            raise_hint(
                ERRCODE_DATA_EXCEPTION,
                "the validation relation has no labelled texts",
                "Name a relation with rows of non-NULL text and label.",
            );
        }
        (labels, data, valid)
    })
}

/// Distinct non-NULL labels of rows with a text, in the label column's own order (numbers
/// numerically, booleans false first, text by collation): at least two, at most [`MAX_LABELS`].
fn distinct_labels(
    client: &SpiClient<'_>,
    rel: &str,
    text_col: &str,
    label_col: &str,
) -> Vec<String> {
    let query = format!(
        "SELECT s.l::pg_catalog.text FROM (SELECT DISTINCT {l} AS l FROM {rel} WHERE {l} IS NOT NULL AND {t} \
         IS NOT NULL) s \
         ORDER BY s.l LIMIT {}",
        MAX_LABELS + 1,
        l = ident(label_col),
        t = ident(text_col),
    );
    let labels: Vec<String> = select_user(client, &query, None, &[], rel)
        .map(|r| r.column::<String>(1, "label").unwrap_or_default())
        .collect();
    match labels.len() {
        0 => raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!("{rel} has no rows with a non-NULL \"{text_col}\" and \"{label_col}\""),
            "Train on a relation (or view) of labelled texts.",
        ),
        1 => raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!(
                "the label column \"{label_col}\" of {rel} holds one class only (\"{}\")",
                labels[0]
            ),
            "A classifier needs at least two labels: include rows of the other classes, or \
             check the view's WHERE clause and the option \"label_column\".",
        ),
        n if n > MAX_LABELS => raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!(
                "the label column \"{label_col}\" of {rel} holds more than {MAX_LABELS} distinct \
                 values"
            ),
            "Is it the right column? Name the class column with the option \"label_column\".",
        ),
        _ => labels,
    }
}

/// Reads `(text, label)` rows of `relname` as the calling role. `labels` maps label text →
/// index; a label outside it (possible in the validation relation only) is an error.
fn read_labelled(
    client: &SpiClient<'_>,
    relname: String,
    t: &LabelColumns,
    labels: &HashMap<&str, usize>,
) -> Labelled {
    let query = format!(
        "SELECT {}::pg_catalog.text, {}::pg_catalog.text FROM {relname}",
        ident(&t.text),
        ident(&t.label)
    );
    let (mut texts, mut y, mut skipped_null) = (Vec::new(), Vec::new(), 0u64);
    let mut unknown: Option<String> = None;
    for_each_row(client, &query, 10_000, |r| {
        match (
            r.column::<String>(1, "text"),
            r.column::<String>(2, "label"),
        ) {
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
        let mut known: Vec<&str> = labels.keys().copied().collect();
        known.sort_unstable();
        raise_hint(
            ERRCODE_DATA_EXCEPTION,
            format!("{relname} has the label \"{l}\", which the training relation does not have"),
            format!(
                "The validation relation must use the training labels ({}).",
                known.join(", ")
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
pub(super) fn validation_relation(name: &str) -> pg_sys::Oid {
    // Resolved on the caller's search path, as a regclass argument would be.
    Spi::connect(|client| {
        let t = select_user(
            client,
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            Some(1),
            &[name.into()],
            "the validation relation",
        );
        t.first().column::<pg_sys::Oid>(1, "oid")
    })
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_TABLE,
            format!("validation relation \"{name}\" does not exist"),
            "Name a table or view with the same text and label columns, e.g. '{\"validation\": \
             \"public.reviews_valid\"}'.",
        )
    })
}

/// Refuses (54000) a training whose embeddings (of every pooling, in f32: the optimiser reads
/// them in place) and texts would exceed `persona.max_training_memory`.
fn check_memory(data: &Labelled, valid: Option<&Labelled>, pooled_dims: usize) {
    let rows = data.texts.len() + valid.map_or(0, |v| v.texts.len());
    let text_bytes: usize = data.texts.iter().map(String::len).sum();
    let need = rows * pooled_dims * 4 + text_bytes;
    settings::check_training_memory(
        need,
        || {
            format!(
                "training on {rows} texts of {pooled_dims}-dimensional embeddings (all poolings)"
            )
        },
        "Raise persona.max_training_memory, or train on a sample (a view with TABLESAMPLE or \
         LIMIT).",
    );
}

/// Progress NOTICEs (at most every 5 s) and cancel checks while embedding.
struct EmbedMonitor {
    notices: ProgressNotices,
    what: &'static str,
    done: usize,
    chunk: usize,
    total: usize,
}

impl Monitor for EmbedMonitor {
    fn step(&mut self, p: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        if self.notices.due() {
            let done = self.done + self.chunk * p.step / p.steps.max(1);
            let secs = self.notices.elapsed();
            notice!(
                "pg_persona: bert_train_classifier: embedded {done} of {} {} texts ({:.0} \
                 texts/s, {secs:.0} s)",
                self.total,
                self.what,
                done as f64 / secs.max(1e-9)
            );
        }
        Ok(())
    }
    fn interrupted(&mut self) -> bool {
        crate::monitor::cancel_pending()
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
        notices: ProgressNotices::new(),
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

/// Row views `[pooling][row]` of embeddings `[pooling][row]`, for the rows `idx` (all: `None`).
fn views<'a>(emb: &'a [Vec<Vec<f32>>], idx: Option<&[usize]>) -> Vec<Vec<&'a [f32]>> {
    emb.iter()
        .map(|e| match idx {
            Some(idx) => idx.iter().map(|&i| e[i].as_slice()).collect(),
            None => e.iter().map(Vec::as_slice).collect(),
        })
        .collect()
}

pub(super) fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
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

/// A candidate as the report and the progress NOTICEs show it.
fn candidate_json(c: &Candidate, poolings: &[Pooling]) -> Value {
    let o = &c.setting.options;
    let mut row = json!({
        "pooling": poolings[c.setting.pooling],
        "l2": o.l2,
        "balanced": o.balanced,
        "iterations": c.iterations,
        "converged": c.converged,
    });
    if let (Some(e), Some(obj)) = (&c.selection, row.as_object_mut()) {
        obj.insert("accuracy".into(), json!(round4(e.accuracy)));
        obj.insert("log_loss".into(), json!(round4(e.log_loss)));
        obj.insert("macro_f1".into(), json!(round4(e.macro_f1)));
    }
    row
}

/// What one call trains: the settings the report needs from every step.
struct Run<'a> {
    name: &'a str,
    t: &'a TrainOptions,
    encoder: &'a Encoder,
    poolings: &'a [Pooling],
    labels: &'a [String],
    positive: Option<usize>,
    max_length: usize,
}

impl Run<'_> {
    /// The spec of a model on the encoder: an embedder without a head, a classifier with one.
    fn spec(&self, head: Option<Head>, pooling: Pooling) -> ModelSpec {
        let classifier = head.is_some();
        ModelSpec {
            task: if classifier {
                Task::Classification
            } else {
                Task::Embedding
            },
            pooling,
            max_length: self.max_length,
            labels: if classifier {
                self.labels.to_vec()
            } else {
                Vec::new()
            },
            positive_label: if classifier { self.positive } else { None },
            head,
        }
    }
}

/// Row views of one call's embeddings (`[pooling][row]`) and labels, split for training.
struct Split<'a> {
    train_x: Vec<Vec<&'a [f32]>>,
    train_y: Vec<usize>,
    test_x: Vec<Vec<&'a [f32]>>,
    test_y: Vec<usize>,
    /// The validation relation's rows, when there is one.
    valid_x: Option<Vec<Vec<&'a [f32]>>>,
}

/// Seconds spent in each step, for the report.
struct Timings {
    read: f64,
    embed: f64,
    train: f64,
    rows_per_second: f64,
}

/// Trains a classification head on `encoder`'s embeddings of `source`'s texts and registers it
/// as `name`. Implementation of `bert_train_classifier(text, regclass, text, jsonb)`
/// (sql/finalize.sql); the README lists the options.
#[pg_extern(schema = "persona", volatile, parallel_unsafe)]
fn bert_train_classifier_impl(
    name: &str,
    source: pg_sys::Oid,
    encoder: &str,
    options: Jsonb,
) -> JsonB {
    let t0 = Instant::now();
    check_name(name);
    check_may_store(name);
    let t = parse_options(&options.0);
    if name == encoder {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "a classifier cannot replace its own encoder",
            "Give the classifier another name.",
        );
    }
    check_replace(name, t.replace, false);
    let enc = resolve_encoder(encoder);
    // Every pooling asked for is computed from the same inference pass.
    let poolings = t.poolings.clone().unwrap_or_else(|| vec![enc.pooling]);
    let grid = t.grid(poolings.len()).or_raise();
    let validation_oid = t.validation.as_deref().map(validation_relation);

    let t_read = Instant::now();
    let (labels, data, valid) = read_data(source, validation_oid, &t.columns);
    let read = t_read.elapsed().as_secs_f64();
    check_memory(
        &data,
        valid.as_ref(),
        poolings.iter().map(|p| p.dim(enc.dim)).sum(),
    );
    let run = Run {
        name,
        t: &t,
        encoder: &enc,
        poolings: &poolings,
        labels: &labels,
        positive: t
            .positive_label
            .as_ref()
            .map(|v| positive_index(v, &labels, Some(labels.len()))),
        max_length: t.max_length.unwrap_or(enc.max_length),
    };
    let (train_idx, test_idx) = if t.holdout > 0.0 {
        holdout_split(&data.y, t.holdout, t.seed).or_raise_text(Phase::Train)
    } else {
        ((0..data.y.len()).collect(), Vec::new())
    };

    // Embed (the expensive part), under every pooling at once: emb[p][row].
    let embedder =
        text_store::model_on_graph(&enc.graph, run.spec(None, poolings[0]), Phase::Train);
    let t_embed = Instant::now();
    let emb = embed_all(&embedder, &enc.graph, &data.texts, &poolings, "training");
    let embed = t_embed.elapsed().as_secs_f64();
    let valid_emb = valid
        .as_ref()
        .map(|v| embed_all(&embedder, &enc.graph, &v.texts, &poolings, "validation"));
    pgrx::check_for_interrupts!();

    let labels_of = |idx: &[usize]| -> Vec<usize> { idx.iter().map(|&i| data.y[i]).collect() };
    let split = Split {
        train_x: views(&emb, Some(&train_idx)),
        train_y: labels_of(&train_idx),
        test_x: views(&emb, Some(&test_idx)),
        test_y: labels_of(&test_idx),
        valid_x: valid_emb.as_deref().map(|e| views(e, None)),
    };
    let t_train = Instant::now();
    let choice = choose(&run, &grid, &split, valid.as_ref());
    let timings = Timings {
        read,
        embed,
        train: t_train.elapsed().as_secs_f64(),
        rows_per_second: data.texts.len() as f64 / embed.max(1e-9),
    };
    let mut summary = store(
        &run,
        &grid,
        &choice,
        &split,
        &data,
        valid.as_ref(),
        &timings,
    );
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("seconds".into(), json!(round4(t0.elapsed().as_secs_f64())));
    }
    JsonB(summary)
}

/// Trains every setting of `grid` on the training rows and keeps the best on the validation
/// relation, else on the held-out rows (a progress NOTICE per setting when there are several).
fn choose(
    run: &Run<'_>,
    grid: &[HeadSetting],
    split: &Split<'_>,
    valid: Option<&Labelled>,
) -> HeadChoice {
    let threads = Threads::new(settings::training_threads()).or_raise_text(Phase::Train);
    let selection = match (&split.valid_x, valid) {
        (Some(x), Some(v)) => Some(PooledExamples { x, y: &v.y }),
        _ => (!split.test_y.is_empty()).then_some(PooledExamples {
            x: &split.test_x,
            y: &split.test_y,
        }),
    };
    let search = HeadSearch {
        grid,
        labels: run.labels,
        positive: run.positive,
    };
    let train = PooledExamples {
        x: &split.train_x,
        y: &split.train_y,
    };
    let mut progress = |i: usize, c: &Candidate| {
        if grid.len() > 1 {
            notice!(
                "pg_persona: bert_train_classifier: setting {} of {}: {}",
                i + 1,
                grid.len(),
                candidate_json(c, run.poolings)
            );
        }
    };
    search
        .run(train, selection, &threads, &mut Interrupts, &mut progress)
        .or_raise_text(Phase::Train)
}

/// Checks the chosen head the way it will be loaded, evaluates it, registers it as `run.name`
/// and returns the report (with the new version).
fn store(
    run: &Run<'_>,
    grid: &[HeadSetting],
    choice: &HeadChoice,
    split: &Split<'_>,
    data: &Labelled,
    valid: Option<&Labelled>,
    timings: &Timings,
) -> Value {
    let setting = &grid[choice.chosen];
    let p = setting.pooling;
    let spec = run.spec(Some(choice.fit.head.clone()), run.poolings[p]);
    let graph = &run.encoder.graph;
    let model = text_store::model_on_graph(graph, spec.clone(), Phase::Train);
    let positive = model.positive_label();
    let evaluate = |x: &[&[f32]], y: &[usize]| {
        let e = evaluate_head(&choice.fit.head, x, y, positive).or_raise_text(Phase::Train);
        metrics(&e)
    };
    let holdout = (!split.test_y.is_empty()).then(|| evaluate(&split.test_x[p], &split.test_y));
    let on_valid = match (&split.valid_x, valid) {
        (Some(x), Some(v)) => Some(evaluate(&x[p], &v.y)),
        _ => None,
    };
    let labels = run.labels;
    let mut counts = vec![0u64; labels.len()];
    for &c in &data.y {
        counts[c] += 1;
    }
    let class_counts: Map<String, Value> = labels
        .iter()
        .zip(&counts)
        .map(|(l, c)| (l.clone(), json!(c)))
        .collect();
    let t = run.t;
    let mut summary = json!({
        "model": run.name,
        "encoder": graph,
        "source": data.relname,
        "validation": valid.map(|v| v.relname.clone()),
        "text_column": t.columns.text,
        "label_column": t.columns.label,
        "labels": labels,
        "positive_label": positive.and_then(|p| labels.get(p)),
        "class_counts": class_counts,
        "rows_used": data.y.len(),
        "rows_skipped_null": data.skipped_null,
        "train_rows": split.train_y.len(),
        "holdout_rows": split.test_y.len(),
        "holdout_fraction": t.holdout,
        "seed": t.seed,
        "pooling": run.poolings[p],
        "max_length": run.max_length,
        "l2": setting.options.l2,
        "balanced": setting.options.balanced,
        "iterations": choice.fit.iterations,
        "converged": choice.fit.converged,
        "loss": round4(choice.fit.loss),
        "candidates": candidates(choice, run.poolings),
        "train": evaluate(&split.train_x[p], &split.train_y),
        "holdout": holdout,
        "validation_metrics": on_valid,
        "read_seconds": round4(timings.read),
        "embed_seconds": round4(timings.embed),
        "rows_per_second": timings.rows_per_second.round(),
        "train_seconds": round4(timings.train),
    });
    let version = register_head(run.name, graph, &model, &spec, summary.clone(), false);
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("version".into(), json!(version));
    }
    summary
}

/// Every candidate of a search over several settings (null for a single setting).
fn candidates(choice: &HeadChoice, poolings: &[Pooling]) -> Value {
    if choice.candidates.len() > 1 {
        Value::Array(
            choice
                .candidates
                .iter()
                .map(|c| candidate_json(c, poolings))
                .collect(),
        )
    } else {
        Value::Null
    }
}
