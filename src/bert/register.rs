//! Registering text models (`bert_register_model`, `bert_register_model_file`), storing heads
//! trained on an encoder, and dropping models (`bert_drop_model`). A model is loaded and run
//! once before it is stored, so a model that cannot work is refused at registration.

use persona_core::text::{ModelSpec, Task, TextModel, DEFAULT_MAX_LENGTH};
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use super::files::{check_file_privilege, model_files, read_model_file};
use super::{check_name, positive_index};
use crate::error::{raise, raise_hint};
use crate::json::Jsonb;
use crate::model_acl::{self, Store};
use crate::options::Options;
use crate::spi::{select_one, write_one};
use crate::text_store;

/// The table text models are stored in, as errors name it.
const STORE: &str = "persona.bert_model_store";

const REGISTER_OPTIONS: &[&str] = &[
    "pooling",
    "max_length",
    "labels",
    "positive_label",
    "replace",
];

/// What is stored for a model with its own graph.
pub(super) struct Registration {
    pub(super) name: String,
    pub(super) onnx: Vec<u8>,
    pub(super) tokenizer: Vec<u8>,
    pub(super) spec: ModelSpec,
    pub(super) source: Value,
    pub(super) replace: bool,
    /// Whether replacing keeps the models trained on this one (only for the default encoder,
    /// re-registered from the same files).
    pub(super) keep_dependents: bool,
    pub(super) builtin: bool,
}

/// Whether `name` exists and which models use it as their encoder, whoever owns them (a
/// decision about registering or dropping must see models the caller may not use).
pub(super) fn existing(name: &str) -> Option<Vec<String>> {
    model_acl::as_store_owner(|| existing_as_caller(name))
}

/// Whether `name` exists and which models use it, among those the current role may use.
pub(super) fn existing_as_caller(name: &str) -> Option<Vec<String>> {
    let exists = select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM persona.bert_model_store WHERE name = $1)",
        &[name.into()],
        STORE,
    )
    .unwrap_or(false);
    if !exists {
        return None;
    }
    let users = select_one::<Vec<String>>(
        "SELECT coalesce(pg_catalog.array_agg(name ORDER BY name), '{}') FROM \
         persona.bert_model_store WHERE encoder = $1",
        &[name.into()],
        STORE,
    )
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

/// Raises 42501 before any expensive work unless the current role may create text models and
/// `name` is new or its own.
pub(crate) fn check_may_store(name: &str) {
    model_acl::check_create(Store::Text);
    model_acl::check_owner(Store::Text, name, "replace");
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
pub(super) fn register(r: Registration) -> Value {
    check_name(&r.name);
    check_may_store(&r.name);
    check_replace(&r.name, r.replace, r.keep_dependents);
    let checked = text_store::check_model(&r.onnx, &r.tokenizer, r.spec.clone());
    let m = &checked.model;
    let (labels, positive) = label_info(m);
    let mut spec = m.spec().clone();
    // Store the model's own max_length, not one capped by persona.max_sequence_length.
    spec.max_length = r.spec.max_length;
    let tokenizer = String::from_utf8(r.tokenizer).unwrap_or_else(|_| {
        raise_hint(
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            "the tokenizer is not valid UTF-8",
            "Pass the tokenizer.json file's text.",
        )
    });
    let task = task_name(spec.task);
    let stamp = store(Row {
        name: &r.name,
        task: spec.task,
        encoder: None,
        spec: &spec,
        model: m,
        graph: Some((&r.onnx, &tokenizer)),
        source: r.source,
        builtin: r.builtin,
    });
    text_store::invalidate();
    let hash = persona_core::text::serve::sha256(&r.onnx);
    if crate::inference::use_worker() {
        // The worker loads graphs from the file cache: write it now, while the bytes are here.
        if let Err(e) = persona_core::text::serve::GraphFiles::new(crate::inference::cache_dir())
            .store(&hash, &r.onnx)
        {
            warning!("pg_persona: {e}");
        }
    }
    let version = stamp.version;
    text_store::remember_registered(
        &r.name,
        stamp,
        spec.task,
        tokenizer.into_bytes(),
        Some(hash),
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
    let stamp = store(Row {
        name,
        task: Task::Classification,
        encoder: Some(graph),
        spec,
        model,
        graph: None,
        source,
        builtin,
    });
    stamp.version
}

/// A row of `persona.bert_model_store` to insert or replace.
struct Row<'a> {
    name: &'a str,
    task: Task,
    /// The encoder a head model is trained on (`None`: a model with its own graph).
    encoder: Option<&'a str>,
    spec: &'a ModelSpec,
    /// The checked model, for its width and labels.
    model: &'a TextModel,
    /// ONNX bytes and tokenizer of a model with its own graph.
    graph: Option<(&'a [u8], &'a str)>,
    source: Value,
    builtin: bool,
}

fn task_name(task: Task) -> &'static str {
    match task {
        Task::Embedding => "embedding",
        Task::Classification => "classification",
    }
}

/// Inserts `row`, or replaces the model of that name with it under a new version. Returns the
/// version and the row's xmin.
fn store(row: Row<'_>) -> text_store::RowStamp {
    let (labels, positive) = label_info(row.model);
    // Checked by the caller; checked again here, right before the write, as the same statement
    // could otherwise replace a model another role registered meanwhile.
    check_may_store(row.name);
    let me = model_acl::current_role();
    let replaced_graph = model_acl::as_store_owner(|| text_store::graph_hash(row.name));
    // Written as the store's owner: the caller becomes the owner of a new model and is recorded
    // as created_by; a replacement keeps the owner and grants (built-in models stay usable by
    // every role).
    // The version is taken first and written as a value, and the upsert's SET clause names no
    // function: what Citus can replicate.
    let stamp = model_acl::as_store_owner(|| {
        let version = select_one::<i64>(
            "SELECT pg_catalog.nextval('persona.bert_model_version_seq')",
            &[],
            "persona.bert_model_version_seq",
        )
        .unwrap_or_else(|| {
            raise(
                ERRCODE_INTERNAL_ERROR,
                "the version sequence gave no number",
                None,
            )
        });
        write_one::<i64>(
            "INSERT INTO persona.bert_model_store AS s (name, task, encoder, spec, dim, labels, \
           positive_label, onnx, tokenizer, source, builtin, created_by, owner, usable_by_all, \
           version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
           $13::pg_catalog.regrole, $11, $14) \
         ON CONFLICT (name) DO UPDATE SET task = EXCLUDED.task, encoder = EXCLUDED.encoder, \
           spec = EXCLUDED.spec, dim = EXCLUDED.dim, labels = EXCLUDED.labels, \
           positive_label = EXCLUDED.positive_label, onnx = EXCLUDED.onnx, \
           tokenizer = EXCLUDED.tokenizer, source = EXCLUDED.source, builtin = EXCLUDED.builtin, \
           version = EXCLUDED.version, \
           created_at = EXCLUDED.created_at, created_by = EXCLUDED.created_by, \
           usable_by_all = s.usable_by_all OR EXCLUDED.usable_by_all \
         RETURNING xmin::text::int8",
            &[
                row.name.into(),
                task_name(row.task).into(),
                row.encoder.into(),
                JsonB(spec_value(row.spec)).into(),
                row.model.dim().map(|d| d as i32).into(),
                labels.into(),
                positive.into(),
                row.graph.map(|(onnx, _)| onnx).into(),
                row.graph.map(|(_, tokenizer)| tokenizer).into(),
                JsonB(row.source).into(),
                row.builtin.into(),
                me.name.as_str().into(),
                me.regrole_input().into(),
                version.into(),
            ],
            STORE,
        )
        .map(|xmin| text_store::RowStamp { version, xmin })
    })
    .unwrap_or_else(|| {
        raise(
            ERRCODE_INTERNAL_ERROR,
            "storing the model returned no version",
            None,
        )
    });
    if let Some(old) = replaced_graph {
        text_store::forget_unused_graphs(&[old]);
    }
    text_store::invalidate();
    stamp
}

/// Builds the spec of a model with its own graph from the SQL arguments.
fn graph_spec(task: &str, options: &Value) -> (ModelSpec, bool) {
    let task_kind = text_store::parse_task(task).unwrap_or_else(|| {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("unknown task \"{task}\""),
            "task is 'embedding' (an encoder with output last_hidden_state: bert_embed) or \
             'classification' (a fine-tuned classifier with output logits: bert_score, \
             bert_classify).",
        )
    });
    let o = Options::new(options, REGISTER_OPTIONS, "bert_register_model");
    let labels = o.strings("labels");
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
            "Pass the model's bytes (pg_read_binary_file) and its tokenizer.json's text \
             (pg_read_file).",
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
    options: default!(Option<Jsonb>, "'{}'"),
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
    options: default!(Jsonb, "'{}'"),
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
    if !model_acl::check_owner(Store::Text, name, "drop") {
        text_store::missing_model(name)
    }
    let users = existing(name).unwrap_or_default();
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
    // The graphs whose cached files may go with them.
    let graphs: Vec<_> = model_acl::as_store_owner(|| text_store::graph_hash(name))
        .into_iter()
        .collect();
    // One statement, so the model and its dependents go together. The owner of an
    // encoder drops the models trained on it with cascade, whoever owns them (as DROP ... CASCADE).
    let dropped = model_acl::as_store_owner(|| {
        write_one::<Vec<String>>(
            "WITH d AS (DELETE FROM persona.bert_model_store WHERE name = $1 OR encoder = $1 \
         RETURNING name) \
         SELECT pg_catalog.array_agg(name ORDER BY name) FROM d",
            &[name.into()],
            STORE,
        )
    })
    .unwrap_or_default();
    text_store::forget_unused_graphs(&graphs);
    text_store::invalidate();
    dropped
}

/// Lets `role` (a role name, or PUBLIC) use text model `name`: score, classify, embed, train
/// classifiers on it, read its row. Only its owner (or a member, or a superuser) may. Returns who
/// may use it now besides the owner.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn bert_model_grant(name: &str, role: &str) -> Vec<String> {
    let to = model_acl::change_use(Store::Text, name, role, true);
    text_store::invalidate();
    to
}

/// Takes back the use of text model `name` from `role` (or PUBLIC). Returns who may use it now
/// besides the owner.
#[pg_extern(volatile, strict, parallel_unsafe)]
fn bert_model_revoke(name: &str, role: &str) -> Vec<String> {
    let to = model_acl::change_use(Store::Text, name, role, false);
    text_store::invalidate();
    to
}
