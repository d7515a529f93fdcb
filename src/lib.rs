//! pg_persona: personalised-marketing analytics inside PostgreSQL.
//!
//! This crate is the thin PostgreSQL layer: it converts SQL arguments, reads data through SPI with
//! the caller's privileges, keeps per-backend caches, maps errors to SQLSTATEs and delegates every
//! algorithm to the pure-Rust `persona-core` crate.
//!
//! | module | SQL it defines |
//! |---|---|
//! | [`cf`] | `cf_train`, `cf_predict`, `cf_recommend`, `cf_similar_items`, `cf_similar_users`, `cf_evaluate`, `cf_deploy` |
//! | [`campaign`] | `campaign_metrics`, `campaign_metrics_daily`, `campaign_audience`, `campaign_uplift` |
//! | [`bert`] | `bert_score`, `bert_classify`, `bert_embed`, `bert_register_model`, `bert_drop_model`, `bert_register_defaults` |
//! | [`bert_train`] | `bert_train_classifier` |
//! | [`profile`] | `user_profile` |
//! | [`demo`] | `persona.load_demo` |
//! | [`settings`] | every `persona.*` setting |
//! | [`error`] | SQLSTATE mapping of core errors |
//! | [`model_store`] | versioned model storage and the per-backend model cache |
//! | [`source`] | reading a user's relation safely (quoted identifiers, caller's privileges, cursor batches) |
//! | [`text_store`] | text-model storage, ONNX Runtime loading and the per-backend session cache |

use pgrx::prelude::*;

pub mod bert;
pub mod bert_train;
pub mod campaign;
pub mod cf;
pub mod demo;
pub mod error;
pub mod model_store;
pub mod profile;
pub mod settings;
pub mod source;
pub mod text_store;

::pgrx::pg_module_magic!(name, version);

/// Schema `persona`: the extension's tables and views, and its internal functions
/// (`#[pg_extern(schema = "persona")]`). Created by the extension script, so dropped with it.
#[pg_schema]
mod persona {
    pgrx::extension_sql_file!("../sql/tables.sql", name = "tables");
}

// SQL-language wrappers, grants and comments; runs after every Rust function exists.
pgrx::extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

/// Called once per backend when the library is loaded. Only registers settings: no threads,
/// no model loading, nothing that must not be inherited across fork.
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
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
