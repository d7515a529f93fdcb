//! Cold-start items from SQL: `cf_train`'s `item_text` option embeds the items' texts with a
//! text model and adds the items nobody rated to the model with factors predicted from their
//! text (`persona_core::cf::coldstart` fits the map).
//!
//! `"item_text": {"relation": "persona.items", "id_column": "item_id", "text_columns":
//! ["title", "description"], "encoder": "minilm"}` (only `relation` is required). The texts are
//! read with the caller's privileges; a row's text is its non-NULL text columns joined with
//! ". "; rows without text are left out.

use persona_core::cf::{Algorithm, CfModel};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use serde_json::{json, Value};

use crate::error::{core, raise_hint};
use crate::monitor::Interrupts;
use crate::source::ident;
use crate::spi::{first, select_user, Columns};
use crate::text_store::{OrRaiseText, Phase};

/// Texts embedded per call of the encoder.
const CHUNK: usize = 256;

/// Where the item texts are, and the encoder.
pub struct ItemText {
    relation: pg_sys::Oid,
    relation_name: String,
    id_column: String,
    text_columns: Vec<String>,
    encoder: String,
}

const HINT: &str = "Give e.g. '{\"item_text\": {\"relation\": \"persona.items\", \"id_column\": \
                    \"item_id\", \"text_columns\": [\"title\", \"description\"], \"encoder\": \
                    \"minilm\"}}' (only relation is required).";

/// Reads and checks the `item_text` option of `cf_train` before any training: the algorithm
/// must have item factors, the relation and its columns must exist and be readable, the encoder
/// must exist.
pub fn parse(v: &Value, algo: Algorithm) -> ItemText {
    let bad = |what: String| -> ! { raise_hint(ERRCODE_INVALID_PARAMETER_VALUE, what, HINT) };
    let o = v
        .as_object()
        .unwrap_or_else(|| bad(format!("option \"item_text\" must be an object, not {v}")));
    for key in o.keys() {
        if !["relation", "id_column", "text_columns", "encoder"].contains(&key.as_str()) {
            bad(format!(
                "unknown key \"{key}\" in option \"item_text\" (valid: relation, id_column, \
                 text_columns, encoder)"
            ));
        }
    }
    if !matches!(algo, Algorithm::Svd | Algorithm::Svdpp | Algorithm::Als) {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("cold-start items (option \"item_text\") need item factors, and \"{algo}\" has none"),
            "Train svd, svdpp or als with item_text.",
        );
    }
    let text = |key: &str, default: &str| -> String {
        match o.get(key) {
            None => default.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(other) => bad(format!(
                "\"item_text\".\"{key}\" must be a name, not {other}"
            )),
        }
    };
    let relation_name = match o.get("relation") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => bad("option \"item_text\" needs \"relation\", the relation of the item texts".into()),
    };
    let text_columns: Vec<String> = match o.get("text_columns") {
        None => vec!["title".into()],
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|c| match c {
                Value::String(s) if !s.is_empty() => s.clone(),
                other => bad(format!(
                    "\"item_text\".\"text_columns\": {other} is not a column name"
                )),
            })
            .collect(),
        Some(other) => bad(format!(
            "\"item_text\".\"text_columns\" must be a column name or a list of them, not {other}"
        )),
    };
    let id_column = text("id_column", "item_id");
    let encoder = text("encoder", "minilm");
    // Resolved on the caller's search path, as a regclass argument would be.
    let relation = Spi::connect(|client| {
        select_user(
            client,
            "SELECT pg_catalog.to_regclass($1)::pg_catalog.oid",
            Some(1),
            &[relation_name.as_str().into()],
            "to_regclass",
        )
        .next()
        .and_then(|r| r.column::<pg_sys::Oid>(1, "oid"))
    })
    .unwrap_or_else(|| {
        raise_hint(
            ERRCODE_UNDEFINED_TABLE,
            format!("the item text relation \"{relation_name}\" does not exist"),
            HINT,
        )
    });
    let mut columns = text_columns.clone();
    columns.push(id_column.clone());
    Spi::connect(|client| {
        for c in &columns {
            let row = first(
                client,
                "SELECT pg_catalog.has_column_privilege($1, a.attname::pg_catalog.text, 'SELECT') \
                 FROM pg_catalog.pg_attribute a WHERE a.attrelid = $1 \
                 AND a.attname::pg_catalog.text = $2 AND a.attnum > 0 AND NOT a.attisdropped",
                &[relation.into(), c.as_str().into()],
                "pg_attribute",
            );
            match row.and_then(|r| r.column::<bool>(1, "privilege")) {
                None => raise_hint(
                    ERRCODE_UNDEFINED_COLUMN,
                    format!("column \"{c}\" of the item text relation \"{relation_name}\" does not exist"),
                    HINT,
                ),
                Some(false) => raise_hint(
                    ERRCODE_INSUFFICIENT_PRIVILEGE,
                    format!("permission denied for column \"{c}\" of \"{relation_name}\""),
                    "The item texts are read with your privileges.",
                ),
                Some(true) => {}
            }
        }
    });
    // The encoder must exist (and be usable by the caller) before the training starts.
    let _ = crate::bert::encoder(&encoder);
    ItemText {
        relation,
        relation_name,
        id_column,
        text_columns,
        encoder,
    }
}

/// The items' texts, read as the caller.
fn read(it: &ItemText) -> Vec<(i64, String)> {
    Spi::connect(|client| {
        let relname = crate::source::qualified_name(client, it.relation);
        let texts: Vec<String> = it
            .text_columns
            .iter()
            .map(|c| format!("{}::pg_catalog.text", ident(c)))
            .collect();
        let query = format!(
            "SELECT {}::pg_catalog.int8, pg_catalog.concat_ws('. ', {}) FROM {relname} \
             WHERE {} IS NOT NULL",
            ident(&it.id_column),
            texts.join(", "),
            ident(&it.id_column),
        );
        select_user(client, &query, None, &[], &relname)
            .filter_map(|row| {
                let id = row.column::<i64>(1, "item id")?;
                let text = row.column::<String>(2, "item text")?;
                (!text.trim().is_empty()).then_some((id, text))
            })
            .collect()
    })
}

/// The embeddings of `texts` (item id, text) by the encoder of `it`, in chunks of [`CHUNK`].
fn embed(it: &ItemText, texts: &[&(i64, String)]) -> Vec<(i64, Vec<f32>)> {
    let enc = crate::bert::encoder(&it.encoder);
    let mut embeddings = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(CHUNK) {
        let refs: Vec<&str> = chunk.iter().map(|(_, t)| t.as_str()).collect();
        let vectors = enc
            .model
            .embed_with(&refs, &mut Interrupts)
            .or_raise_text(Phase::Infer(&it.encoder));
        embeddings.extend(chunk.iter().map(|(id, _)| *id).zip(vectors));
    }
    embeddings
}

/// Embeds the item texts and adds the items the model does not know (see the module
/// documentation); the report for `cf_train`'s summary.
pub fn apply(model: &mut CfModel, it: &ItemText) -> Value {
    let texts = read(it);
    let embeddings = embed(it, &texts.iter().collect::<Vec<_>>());
    let report = model
        .add_cold_items(&embeddings, &it.encoder)
        .unwrap_or_else(|e| {
            core(
                e,
                Some("Give texts for more of the model's items (title, description)."),
            )
        });
    json!({
        "relation": it.relation_name,
        "id_column": it.id_column,
        "text_columns": it.text_columns,
        "encoder": it.encoder,
        "texts": texts.len(),
        "fitted_on": report.fitted_on,
        "added": report.added,
        "lambda": report.lambda,
        "cv_r2": (report.cv_r2 * 1e4).round() / 1e4,
    })
}

/// Adds the items of the model's item text relation that are new since training, with factors
/// from the map the model was trained with, as a new version of the model (no retraining).
#[pg_extern(volatile, parallel_unsafe)]
fn cf_add_items(model: default!(&str, "'default'")) -> pgrx::JsonB {
    let current = crate::model_store::active(model);
    if current.cold_start.is_none() {
        raise_hint(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("model \"{model}\" was trained without item texts: it has no map from text to factors"),
            "Train it with the option item_text, e.g. cf_train(algorithm => 'svd', options => \
             '{\"item_text\": {\"relation\": \"persona.items\"}}').",
        );
    }
    let (summary, base_version) = Spi::connect(|client| {
        let row = first(
            client,
            "SELECT v.summary, v.version FROM persona.cf_active a JOIN persona.cf_model_versions v \
               ON v.model = a.model AND v.version = a.version WHERE a.model = $1",
            &[model.into()],
            "persona.cf_model_versions",
        );
        row.map(|r| {
            (
                r.column::<pgrx::JsonB>(1, "summary")
                    .map_or(Value::Null, |j| j.0),
                r.column::<i32>(2, "version").unwrap_or(0),
            )
        })
    })
    .unwrap_or((Value::Null, 0));
    // Where the texts were at training (the report also holds figures, which parse refuses).
    let recorded = &summary["cold_start"];
    let spec: serde_json::Map<String, Value> = ["relation", "id_column", "text_columns", "encoder"]
        .iter()
        .filter_map(|k| recorded.get(*k).map(|v| (k.to_string(), v.clone())))
        .collect();
    let it = parse(&Value::Object(spec), current.algorithm);
    let texts = read(&it);
    let mut updated = (*current).clone();
    let new: Vec<&(i64, String)> = texts
        .iter()
        .filter(|(id, _)| updated.items.get(*id).is_none())
        .collect();
    let embeddings = embed(&it, &new);
    let added = updated
        .add_items_from_text(&embeddings)
        .unwrap_or_else(|e| core(e, Some("Retrain the model with item_text.")));
    if added == 0 {
        // Nothing new: no new version.
        return pgrx::JsonB(json!({
            "model": model,
            "version": base_version,
            "from_version": base_version,
            "added": 0,
            "items": updated.items.len(),
        }));
    }
    let mut summary = summary;
    if let Some(o) = summary.as_object_mut() {
        o.insert("items".into(), json!(updated.items.len()));
        o.insert(
            "items_added".into(),
            json!({"from_version": base_version, "added": added}),
        );
    }
    let version = crate::model_store::save(model, &updated, &summary);
    pgrx::JsonB(json!({
        "model": model,
        "version": version,
        "from_version": base_version,
        "added": added,
        "items": updated.items.len(),
    }))
}
