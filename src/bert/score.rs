//! `bert_score`, `bert_classify` and `bert_embed`: one text per call, or an array in one call
//! (batched by length).

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;
use pgrx::{Array, JsonB};
use serde_json::{json, Map, Value};

use super::{classifier, encoder, scores};
use crate::error::raise;
use crate::monitor::Interrupts;
use crate::text_store::{OrRaiseText, Phase};

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
