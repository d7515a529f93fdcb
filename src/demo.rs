//! `persona.load_demo()`: fills the extension's tables with the deterministic demo data set of
//! `persona_core::demo`, so the demo and the tests run anywhere.

use persona_core::demo::{generate, Demo, DemoConfig, Event, EPOCH, ORGANIC};
use pgrx::prelude::*;
use pgrx::JsonB;
use pgrx::PgSqlErrorCode::*;
use serde_json::json;

use crate::error::raise_hint;

/// The demo's tables, in an order that deletes referencing rows first.
const TABLES: [&str; 6] = [
    "persona.feedback",
    "persona.campaign_events",
    "persona.campaigns",
    "persona.ratings",
    "persona.items",
    "persona.users",
];

fn run(sql: &str, args: Vec<pgrx::datum::DatumWithOid<'_>>) {
    crate::spi::write(sql, &args, "the demo data");
}

/// Loads `users` users, `items` items, their ratings, the `spring_outdoor` campaign with its events
/// and feedback, generated from `seed`. Refuses to touch tables that hold data unless `replace`.
#[pg_extern(schema = "persona", volatile, strict, parallel_unsafe)]
fn load_demo(
    users: default!(i32, 500),
    items: default!(i32, 120),
    seed: default!(i64, 42),
    replace: default!(bool, false),
) -> JsonB {
    if !(2..=1_000_000).contains(&users) || !(6..=100_000).contains(&items) || seed < 0 {
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            "users must be in [2, 1000000], items in [6, 100000] and seed non-negative",
            "e.g. SELECT persona.load_demo(users => 500, items => 120, seed => 42);",
        );
    }
    clear_or_refuse(replace);
    let d = generate(&DemoConfig {
        users: users as usize,
        items: items as usize,
        seed: seed as u64,
    });
    insert_catalogue(&d);
    insert_campaign(&d);
    insert_orders();
    JsonB(json!({
        "users": d.users.len(),
        "items": d.items.len(),
        "ratings": d.ratings.len(),
        "campaigns": 1,
        "campaign_events": d.events.len(),
        "organic_purchases": d.organic.len(),
        "feedback": d.feedback.len(),
        "seed": seed,
        "epoch": EPOCH,
    }))
}

/// Refuses (55000) to touch tables that hold data unless `replace`; with it, empties them.
fn clear_or_refuse(replace: bool) {
    let has_data = crate::spi::select_one::<bool>(
        "SELECT EXISTS (SELECT 1 FROM persona.users) OR EXISTS (SELECT 1 FROM persona.items) \
         OR EXISTS (SELECT 1 FROM persona.ratings) OR EXISTS (SELECT 1 FROM persona.campaigns) \
         OR EXISTS (SELECT 1 FROM persona.campaign_events) OR EXISTS (SELECT 1 FROM \
         persona.feedback)",
        &[],
        "the persona tables",
    )
    .unwrap_or(false);
    if has_data && !replace {
        raise_hint(
            ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            "the persona tables already hold data",
            "Call persona.load_demo(replace => true) to delete it and load the demo data instead.",
        );
    }
    if has_data {
        for t in TABLES {
            run(&format!("DELETE FROM {t}"), vec![]);
        }
    }
    if has_orders_table() {
        let orders = crate::spi::select_one::<bool>(
            "SELECT EXISTS (SELECT 1 FROM persona.orders)",
            &[],
            "persona.orders",
        )
        .unwrap_or(false);
        if orders && !replace {
            raise_hint(
                ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "persona.orders already holds data",
                "Call persona.load_demo(replace => true) to delete it and load the demo data \
                 instead.",
            );
        }
        run("DELETE FROM persona.orders", vec![]);
    }
}

/// Whether the catalog has `persona.orders` (0.3.0; a newer library serves older catalogs).
fn has_orders_table() -> bool {
    crate::spi::select_one::<bool>(
        "SELECT pg_catalog.to_regclass('persona.orders') IS NOT NULL",
        &[],
        "pg_class",
    )
    .unwrap_or(false)
}

/// The demo's purchases as orders: every conversion of a campaign and every purchase outside one.
fn insert_orders() {
    if has_orders_table() {
        run(
            "INSERT INTO persona.orders (user_id, occurred_at, value) \
             SELECT user_id, occurred_at, value FROM persona.campaign_events \
              WHERE event = 'conversion' AND value IS NOT NULL ORDER BY occurred_at, user_id",
            vec![],
        );
    }
}

/// A demo timestamp (seconds since the Unix epoch) as `to_timestamp` takes it.
fn ts(seconds: i64) -> f64 {
    seconds as f64
}

/// Users, items and ratings.
fn insert_catalogue(d: &Demo) {
    run(
        "INSERT INTO persona.users (user_id, name, country, signup_at) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], (SELECT \
         array_agg(pg_catalog.to_timestamp(x)) FROM unnest($4::float8[]) x))",
        vec![
            d.users.iter().map(|u| u.user_id).collect::<Vec<_>>().into(),
            d.users
                .iter()
                .map(|u| u.name.clone())
                .collect::<Vec<_>>()
                .into(),
            d.users
                .iter()
                .map(|u| u.country.to_string())
                .collect::<Vec<_>>()
                .into(),
            d.users
                .iter()
                .map(|u| ts(u.signup_at))
                .collect::<Vec<_>>()
                .into(),
        ],
    );
    run(
        "INSERT INTO persona.items (item_id, title, category, description, price) \
         SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], \
         $5::float8[]::numeric[])",
        vec![
            d.items.iter().map(|i| i.item_id).collect::<Vec<_>>().into(),
            d.items
                .iter()
                .map(|i| i.title.clone())
                .collect::<Vec<_>>()
                .into(),
            d.items
                .iter()
                .map(|i| i.category.to_string())
                .collect::<Vec<_>>()
                .into(),
            d.items
                .iter()
                .map(|i| i.description.clone())
                .collect::<Vec<_>>()
                .into(),
            d.items.iter().map(|i| i.price).collect::<Vec<_>>().into(),
        ],
    );
    run(
        "INSERT INTO persona.ratings (user_id, item_id, rating, rated_at) \
         SELECT u, i, r, pg_catalog.to_timestamp(t) FROM unnest($1::bigint[], $2::bigint[], \
         $3::real[], $4::float8[]) AS x(u, i, r, t)",
        vec![
            d.ratings
                .iter()
                .map(|r| r.user_id)
                .collect::<Vec<_>>()
                .into(),
            d.ratings
                .iter()
                .map(|r| r.item_id)
                .collect::<Vec<_>>()
                .into(),
            d.ratings
                .iter()
                .map(|r| r.rating)
                .collect::<Vec<_>>()
                .into(),
            d.ratings
                .iter()
                .map(|r| ts(r.rated_at))
                .collect::<Vec<_>>()
                .into(),
        ],
    );
}

/// Inserts events of `campaign`; an empty arm is NULL (purchases outside any campaign).
fn insert_events(campaign: &str, events: &[Event]) {
    run(
        "INSERT INTO persona.campaign_events (campaign, user_id, arm, event, value, occurred_at) \
         SELECT $1, u, NULLIF(a, ''), e, v::numeric, pg_catalog.to_timestamp(t) \
         FROM unnest($2::bigint[], $3::text[], $4::text[], $5::float8[], $6::float8[]) AS x(u, a, \
         e, v, t)",
        vec![
            campaign.into(),
            events.iter().map(|e| e.user_id).collect::<Vec<_>>().into(),
            events
                .iter()
                .map(|e| e.arm.to_string())
                .collect::<Vec<_>>()
                .into(),
            events
                .iter()
                .map(|e| e.event.to_string())
                .collect::<Vec<_>>()
                .into(),
            events
                .iter()
                .map(|e| e.value)
                .collect::<Vec<Option<f64>>>()
                .into(),
            events
                .iter()
                .map(|e| ts(e.occurred_at))
                .collect::<Vec<_>>()
                .into(),
        ],
    );
}

/// The campaign, its events and the feedback.
fn insert_campaign(d: &Demo) {
    let c = &d.campaign;
    run(
        "INSERT INTO persona.campaigns (campaign, channel, starts_at, ends_at, cost, control_arm, \
         planned_split, items) \
         VALUES ($1, $2, pg_catalog.to_timestamp($3), pg_catalog.to_timestamp($4), $5::numeric, \
         'control', \
                 '{\"treatment\": 0.5, \"control\": 0.5}', $6)",
        vec![
            c.campaign.into(),
            c.channel.into(),
            ts(c.starts_at).into(),
            ts(c.ends_at).into(),
            c.cost.into(),
            c.items.clone().into(),
        ],
    );
    insert_events(c.campaign, &d.events);
    insert_events(ORGANIC, &d.organic);
    run(
        "INSERT INTO persona.feedback (user_id, item_id, campaign, body, created_at) \
         SELECT u, i, c, b, pg_catalog.to_timestamp(t) FROM unnest($1::bigint[], $2::bigint[], \
         $3::text[], $4::text[], $5::float8[]) AS x(u, i, c, b, t)",
        vec![
            d.feedback
                .iter()
                .map(|f| f.user_id)
                .collect::<Vec<_>>()
                .into(),
            d.feedback
                .iter()
                .map(|f| f.item_id)
                .collect::<Vec<_>>()
                .into(),
            d.feedback
                .iter()
                .map(|f| f.campaign.map(str::to_string))
                .collect::<Vec<Option<String>>>()
                .into(),
            d.feedback
                .iter()
                .map(|f| f.body.clone())
                .collect::<Vec<_>>()
                .into(),
            d.feedback
                .iter()
                .map(|f| ts(f.created_at))
                .collect::<Vec<_>>()
                .into(),
        ],
    );
}
