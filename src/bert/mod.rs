//! SQL API of text models: score, classify and embed texts with BERT-family ONNX models,
//! register and drop them, register the default models, train classifiers. Converts, checks and
//! stores; tokenisation, inference and heads are in `persona_core::text`, storage, sessions and
//! error mapping in [`crate::text_store`].
//!
//! | module | SQL it defines |
//! |---|---|
//! | [`score`] | `bert_score`, `bert_classify`, `bert_embed` |
//! | [`register`] | `bert_register_model`, `bert_register_model_file`, `bert_drop_model` |
//! | [`defaults`] | `bert_register_defaults`; the mean sentiment of campaign and user reports |
//! | [`train`] | `bert_train_classifier` |
//! | [`files`] | (model files: privilege and directory checks) |

pub mod defaults;
pub mod files;
pub mod finetune;
pub mod register;
pub mod score;
pub mod train;

use std::rc::Rc;

use persona_core::text::TextModel;
use pgrx::PgSqlErrorCode::*;
use serde_json::Value;

pub(crate) use defaults::mean_sentiment;

use crate::error::raise_hint;
use crate::monitor::Interrupts;
use crate::text_store::{self, OrRaiseText, Phase};

/// Default encoder and classifier names.
const MINILM: &str = "minilm";
const SENTIMENT: &str = "sentiment";

/// A model that gives class scores, or 42809 naming what to use instead.
pub(crate) fn classifier(name: &str) -> Rc<text_store::Loaded> {
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
pub(crate) fn encoder(name: &str) -> Rc<text_store::Loaded> {
    let m = text_store::model(name);
    if m.model.dim().is_none() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!("text model \"{name}\" is a classifier graph and gives no embeddings"),
            "Use bert_score or bert_classify with it, or bert_embed with an encoder such as \
             'minilm'.",
        );
    }
    m
}

pub(crate) fn scores(m: &TextModel, name: &str, texts: &[&str]) -> Vec<f32> {
    if m.positive_label().is_none() {
        raise_hint(
            ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "text model \"{name}\" has {} labels and no positive label, so it has no single \
                 score",
                m.labels().len()
            ),
            "Use bert_classify, or register the model with options => '{\"positive_label\": \
             \"...\"}'.",
        );
    }
    m.score_with(texts, &mut Interrupts)
        .or_raise_text(Phase::Infer(name))
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
            "Model names are 1 to 63 characters: letters, digits, _ . : - (not first), e.g. \
             'reviews_sentiment'.",
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
                "Give the labels with the option \"labels\", or the positive label's index \
                 (0-based)."
                    .to_string()
            } else {
                format!("The labels are: {}.", labels.join(", "))
            },
        )
    })
}
