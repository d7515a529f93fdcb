//! Customer feedback (`persona.feedback`): the texts of a campaign or of a user, and their mean
//! sentiment under `persona.sentiment_model`, for campaign reports and user portraits.

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::spi::SpiClient;
use serde_json::{json, Value};

use crate::spi::{select, Columns};

/// Whose feedback to read.
#[derive(Clone, Copy)]
pub enum FeedbackOf<'a> {
    /// Everything written about a campaign.
    Campaign(&'a str),
    /// What a user wrote, up to `as_of` (default: now).
    User {
        user_id: i64,
        as_of: Option<TimestampWithTimeZone>,
    },
}

/// The non-NULL feedback texts of `of`, read with the caller's privileges.
pub fn texts(client: &SpiClient<'_>, of: FeedbackOf<'_>) -> Vec<String> {
    let (filter, args): (&str, Vec<DatumWithOid<'_>>) = match of {
        FeedbackOf::Campaign(campaign) => ("campaign = $1", vec![campaign.into()]),
        FeedbackOf::User { user_id, as_of } => (
            "user_id = $1 AND created_at <= COALESCE($2, pg_catalog.now())",
            vec![user_id.into(), as_of.into()],
        ),
    };
    let sql = format!("SELECT body FROM persona.feedback WHERE body IS NOT NULL AND {filter}");
    select(client, &sql, None, &args, "persona.feedback")
        .filter_map(|r| r.column::<String>(1, "body"))
        .collect()
}

/// `{"feedback_count", "mean_sentiment", "sentiment_model"}` for a set of feedback texts; the mean
/// is null (with `sentiment_unavailable` saying why) when the text model cannot be used.
pub fn satisfaction(texts: &[String]) -> Value {
    let model = crate::settings::sentiment_model();
    match crate::bert::mean_sentiment(texts) {
        Ok(mean) => {
            json!({"feedback_count": texts.len(), "mean_sentiment": mean, "sentiment_model": model})
        }
        Err(why) => json!({
            "feedback_count": texts.len(),
            "mean_sentiment": Value::Null,
            "sentiment_model": model,
            "sentiment_unavailable": why,
        }),
    }
}
