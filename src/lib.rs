//! pg_persona: personalised-marketing analytics inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL layer: it converts SQL arguments, reads data through SPI with
//! the caller's privileges, keeps per-backend caches, maps errors to SQLSTATEs and delegates every
//! algorithm to the pure-Rust `persona-core` crate.
//!
//! SQL-facing modules, by capability:
//!
//! | module | SQL it defines |
//! |---|---|
//! | [`cf`] | `cf_train`, `cf_predict`, `cf_recommend`, `cf_similar_items`, `cf_similar_users`, `cf_evaluate`, `cf_deploy`, `cf_model_grant`, `cf_model_revoke` |
//! | [`campaign`] | `campaign_metrics`, `campaign_metrics_daily`, `campaign_audience`, `campaign_uplift` |
//! | [`bert`] | `bert_score`, `bert_classify`, `bert_embed`, `bert_register_model`, `bert_register_model_file`, `bert_drop_model`, `bert_register_defaults`, `bert_train_classifier`, `bert_model_grant`, `bert_model_revoke` |
//! | [`profile`] | `user_profile` |
//! | [`demo`] | `persona.load_demo` |
//!
//! PostgreSQL plumbing they share:
//!
//! | module | what |
//! |---|---|
//! | [`settings`] | every `persona.*` setting |
//! | [`options`] | the `options jsonb` argument and `k`, checked with SQLSTATEs and hints |
//! | [`json`] | `jsonb` arguments and columns as serde_json values (22023, not a panic, for what serde_json cannot hold) |
//! | [`error`] | raising ERRORs; SQLSTATE mapping of core errors by kind |
//! | [`spi`] | reading and writing the extension's own tables (SPI failures raise, never vanish) |
//! | [`source`] | reading a user's relation safely (quoted identifiers, caller's privileges, cursor batches) |
//! | [`monitor`] | interrupt checks and progress NOTICEs between the steps of long computations |
//! | [`txn_cache`] | what a per-backend cache resolved in the current transaction |
//! | [`model_acl`] | model owners and grants: who may create, replace, use and share a model |
//! | [`model_store`] | versioned cf model storage and the per-backend model cache |
//! | [`text_store`] | text-model storage, ONNX Runtime, the per-backend session cache, text error mapping |
//! | [`inference`] | the shared inference worker: shared memory, requests, dynamic batching, graph file cache |
//! | [`feedback`] | feedback texts and their mean sentiment, for campaign and user reports |

use pgrx::prelude::*;

pub mod bert;
pub mod campaign;
pub mod campaign_options;
pub mod campaign_report;
pub mod cf;
pub mod cf_cold;
pub mod cf_explain;
pub mod cf_fold;
pub mod citus;
pub mod demo;
pub mod error;
pub mod feedback;
pub mod inference;
pub mod json;
pub mod model_acl;
pub mod model_store;
pub mod monitor;
pub mod options;
pub mod profile;
pub mod profile_model;
pub mod settings;
pub mod source;
pub mod spi;
pub mod text_store;
pub mod txn_cache;

::pgrx::pg_module_magic!(name, version);

/// Schema `persona`: the extension's tables and views, and its internal functions
/// (`#[pg_extern(schema = "persona")]`). Created by the extension script, so dropped with it.
#[pg_schema]
mod persona {
    pgrx::extension_sql_file!("../sql/tables.sql", name = "tables");
}

// SQL-language wrappers, grants and comments; runs after every Rust function exists.
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Called once per backend when the library is loaded (and once in the postmaster when it is in
/// `shared_preload_libraries`). Only registers settings, a subtransaction callback and, when
/// preloaded, the inference worker and its shared memory: no threads, no model loading, nothing
/// that must not be inherited across fork.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
    txn_cache::init();
    inference::init();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
