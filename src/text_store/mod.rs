//! Text models in a backend: their rows in `persona.bert_model_store`, ONNX Runtime, the
//! per-backend cache of sessions and models, and the SQLSTATEs of their errors.
//!
//! | module | what |
//! |---|---|
//! | this one | reading the model rows, checking a model before it is stored |
//! | [`cache`] | the per-backend cache: name → loaded model, graph → sessions |
//! | [`runtime`] | loading ONNX Runtime, creating sessions, signal masks |
//! | [`errors`] | core errors → SQLSTATE and hint, by kind and phase |

pub mod cache;
pub mod errors;
pub mod runtime;

use std::sync::Arc;

use persona_core::text::serve::GraphHash;
use persona_core::text::{ModelSpec, OrtBackend, Task, TextModel};
use persona_core::CoreError;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

pub use cache::{invalidate, model, remember_registered, Loaded};
pub use errors::{raise_text, OrRaiseText, Phase};
pub use runtime::{runtime_ready, RunConfig};

use crate::error::raise_hint;
use crate::model_acl::{self, Store};
use crate::spi::{first, select_one, Columns};

/// Which stored row something was built from: its version (assigned once, the same on every
/// node the row is replicated to) and the transaction that last wrote it on this node, so that a
/// direct UPDATE of the row, which keeps the version, is noticed too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowStamp {
    pub version: i64,
    pub xmin: i64,
}

/// Which rows a loaded model was built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    model: RowStamp,
    /// The encoder's row, for a model on an encoder.
    encoder: Option<RowStamp>,
}

impl Stamp {
    /// The row holding the graph: the encoder's, or the model's own.
    fn graph(&self) -> RowStamp {
        self.encoder.unwrap_or(self.model)
    }
}

/// The table every read here names in its errors.
const STORE: &str = "persona.bert_model_store";

/// The registered model names, for hints.
pub fn known_models() -> Option<String> {
    select_one::<String>(
        "SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM persona.bert_model_store",
        &[],
        STORE,
    )
}

/// Raises 42704 for a model that is not registered (42501 for one this role may not use: row-level
/// security hides it).
pub fn missing_model(name: &str) -> ! {
    model_acl::check_usable(Store::Text, name);
    crate::citus::raise_if_missing_on_worker("text model", name);
    raise_hint(
        ERRCODE_UNDEFINED_OBJECT,
        format!("text model \"{name}\" does not exist"),
        match known_models() {
            Some(k) => format!(
                "Registered text models: {k}. Register one with bert_register_model or train one \
                 with bert_train_classifier."
            ),
            None => "No text model is registered: run SELECT bert_register_defaults(); (after \
                     scripts/setup.sh), or register one with bert_register_model."
                .into(),
        },
    )
}

/// The versions of model `name` and of its encoder, or 42704.
fn resolve(name: &str) -> Stamp {
    let row = Spi::connect(|client| {
        let r = first(
            client,
            "SELECT m.version, m.xmin::text::int8, e.version, e.xmin::text::int8, m.encoder \
             FROM persona.bert_model_store m \
             LEFT JOIN persona.bert_model_store e ON e.name = m.encoder WHERE m.name = $1",
            &[name.into()],
            STORE,
        )?;
        let encoder = match (
            r.column::<i64>(3, "encoder version"),
            r.column::<i64>(4, "xmin"),
        ) {
            (Some(version), Some(xmin)) => Some(RowStamp { version, xmin }),
            _ => None,
        };
        Some((
            RowStamp {
                version: r.column::<i64>(1, "version")?,
                xmin: r.column::<i64>(2, "xmin")?,
            },
            encoder,
            r.column::<String>(5, "encoder"),
        ))
    });
    match row {
        // A model on an encoder this role may not use (row-level security hides it), or one
        // whose encoder is gone (no foreign key keeps it, so that Citus can replicate the table).
        Some((_, None, Some(encoder))) => missing_model(&encoder),
        Some((model, encoder, _)) => Stamp { model, encoder },
        None => missing_model(name),
    }
}

/// Parses a task name as stored and as given to the SQL functions.
pub fn parse_task(task: &str) -> Option<Task> {
    serde_json::from_value(serde_json::Value::String(task.to_string())).ok()
}

/// The stored spec of model `name` and the name of the row holding its graph (itself, or its
/// encoder).
fn read_model_spec(name: &str) -> (ModelSpec, String) {
    let row = Spi::connect(|client| {
        let r = first(
            client,
            "SELECT m.spec::text, coalesce(m.encoder, m.name) FROM persona.bert_model_store m \
             WHERE m.name = $1",
            &[name.into()],
            STORE,
        )?;
        Some((
            r.column::<String>(1, "spec")?,
            r.column::<String>(2, "graph")?,
        ))
    });
    let Some((spec_json, graph)) = row else {
        missing_model(name)
    };
    let spec: ModelSpec = serde_json::from_str(&spec_json).unwrap_or_else(|e| {
        raise_text(
            CoreError::CorruptModel(format!(
                "the stored spec of model \"{name}\" is invalid: {e}"
            )),
            Phase::Load(name),
        )
    });
    (spec, graph)
}

/// The task, tokenizer and graph hash (SHA-256 of its ONNX bytes) of the graph row `graph` at
/// `graph_version`.
fn read_graph_meta(graph: &str, graph_version: RowStamp) -> (Task, Vec<u8>, Option<GraphHash>) {
    // A catalog older than 0.3.0 (before ALTER EXTENSION UPDATE) has no hashes: its graphs run
    // in the backend.
    let query = if has_graph_hashes() {
        "SELECT task, tokenizer, onnx_sha256 FROM persona.bert_model_store \
         WHERE name = $1 AND version = $2 AND xmin::text::int8 = $3"
    } else {
        "SELECT task, tokenizer, NULL::bytea FROM persona.bert_model_store \
         WHERE name = $1 AND version = $2 AND xmin::text::int8 = $3"
    };
    let row = Spi::connect(|client| {
        let params = [
            graph.into(),
            graph_version.version.into(),
            graph_version.xmin.into(),
        ];
        let r = first(client, query, &params, STORE)?;
        Some((
            r.column::<String>(1, "task")?,
            r.column::<String>(2, "tokenizer")?,
            r.column::<Vec<u8>>(3, "onnx_sha256"),
        ))
    });
    let Some((task, tokenizer, hash)) = row else {
        raise_hint(
            ERRCODE_UNDEFINED_OBJECT,
            format!("the graph of text model \"{graph}\" changed or is missing"),
            "Another session replaced or dropped it; retry the statement.",
        )
    };
    let task = parse_task(&task).unwrap_or_else(|| {
        raise_text(
            CoreError::CorruptModel(format!("model \"{graph}\" has an unknown task \"{task}\"")),
            Phase::Load(graph),
        )
    });
    let hash = hash.and_then(|h| GraphHash::try_from(h.as_slice()).ok());
    (task, tokenizer.into_bytes(), hash)
}

/// Whether the catalog has `bert_model_store.onnx_sha256` (0.3.0 or later).
fn has_graph_hashes() -> bool {
    crate::spi::catalog_has_column("persona.bert_model_store", "onnx_sha256")
}

/// The hash of the graph stored in row `name` (none for a model on an encoder, or on a catalog
/// older than 0.3.0). Call as the store's owner to see past row-level security.
pub fn graph_hash(name: &str) -> Option<GraphHash> {
    if !has_graph_hashes() {
        return None;
    }
    select_one::<Vec<u8>>(
        "SELECT onnx_sha256 FROM persona.bert_model_store WHERE name = $1",
        &[name.into()],
        STORE,
    )
    .and_then(|h| GraphHash::try_from(h.as_slice()).ok())
}

/// Removes the cached files of graphs no row of this database holds any more (after a drop or
/// a replacement). The files are a cache: one removed while another database still uses the
/// graph, or by a statement that then rolls back, is written again at its next use.
pub fn forget_unused_graphs(hashes: &[GraphHash]) {
    for hash in hashes {
        let used = model_acl::as_store_owner(|| {
            select_one::<bool>(
                "SELECT EXISTS (SELECT FROM persona.bert_model_store WHERE onnx_sha256 = $1)",
                &[hash.to_vec().into()],
                STORE,
            )
        })
        .unwrap_or(true);
        if !used {
            crate::inference::forget_file(hash);
        }
    }
}

/// The ONNX bytes of the graph row `graph`.
fn read_onnx(graph: &str) -> Vec<u8> {
    select_one::<Vec<u8>>(
        "SELECT onnx FROM persona.bert_model_store WHERE name = $1",
        &[graph.into()],
        STORE,
    )
    .unwrap_or_else(|| missing_model(graph))
}

/// A model to be registered, checked by [`check_model`].
pub struct Checked {
    /// The model, as it will be loaded later.
    pub model: TextModel,
    /// The session it runs on.
    pub session: Arc<OrtBackend>,
}

/// Loads `onnx` + `tokenizer` with `spec` as a registration would, raising registration errors.
pub fn check_model(onnx: &[u8], tokenizer: &[u8], spec: ModelSpec) -> Checked {
    let config = RunConfig::current();
    let session = runtime::create_session(onnx, spec.task, &config, Phase::Register);
    let model = cache::build(tokenizer, session.clone(), spec, &config, Phase::Register);
    Checked { model, session }
}

/// Builds a model with `spec` on the graph of the registered model `graph` (which must hold a
/// graph: no encoder of its own), for training and for checking a head before storing it.
pub fn model_on_graph(graph: &str, spec: ModelSpec, phase: Phase<'_>) -> TextModel {
    let stamp = resolve(graph);
    if stamp.encoder.is_some() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{graph}\" has no ONNX graph of its own"),
            "Name the encoder it is built on.",
        );
    }
    cache::assemble(graph, stamp.graph(), spec, &RunConfig::current(), phase)
}
