//! # persona-core
//!
//! The algorithms behind pg_persona, with no PostgreSQL dependency: everything here is plain Rust,
//! tested with `cargo test` and benchmarked with criterion. The pgrx extension crate at the top of
//! the workspace only converts arguments, reads data through SPI and delegates to this crate.
//!
//! | module | what |
//! |---|---|
//! | [`cf`] | collaborative filtering: data set, baselines, k-NN, matrix factorisation, implicit ALS, evaluation |
//! | [`citus`] | where a function runs on a Citus cluster and what it may read there |
//! | [`stats`] | campaign statistics: proportions tests, Welch's t-test, sample-ratio checks, cost attribution, uplift curves |
//! | [`text`] | text models: ONNX Runtime and tokenizers, batching, pooling, classification heads and their training |
//! | [`profile`] | churn risk and segment of a user portrait |
//! | [`demo`] | a deterministic generator of demo data (users, items, ratings, a campaign, feedback) |
//! | [`control`] | progress, cancellation and thread pools of long computations |
//! | [`simd`] | hot loops run in a copy compiled for AVX2 when the CPU has it; prefetch hints |
//!
//! No `unsafe` code outside [`simd`] (`deny(unsafe_code)`; that module's call of a function
//! compiled for AVX2, after checking the CPU has it, and its prefetch hint are the exceptions):
//! everything else that needs it (signal masks, PostgreSQL's memory) is in the extension crate.

#![deny(unsafe_code)]

pub mod cf;
pub mod citus;
pub mod cluster;
pub mod control;
pub mod demo;
pub mod lifetime;
pub mod portrait;
pub mod profile;
pub mod rfm;
pub mod simd;
pub mod stats;
pub mod taste;
pub mod text;

/// Errors the core reports to its caller. The extension maps each kind to a SQLSTATE.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CoreError {
    /// The input data cannot be used (empty, out of range, inconsistent), or a model's graph does
    /// not have the inputs and outputs pg_persona needs. Maps to 22000 (data_exception).
    #[error("{0}")]
    InvalidData(String),
    /// An option or parameter has a bad value or is unknown. Maps to 22023 (invalid_parameter_value).
    #[error("{0}")]
    InvalidParameter(String),
    /// The operation would need more memory than allowed. Maps to 54000 (program_limit_exceeded).
    #[error("{0}")]
    TooLarge(String),
    /// The caller asked to stop (query cancel, statement timeout).
    #[error("cancelled")]
    Cancelled,
    /// A stored model cannot be decoded (corrupt bytes, unknown format version). Maps to XX001
    /// (data_corrupted), or 22P03 when the bytes were just given to be registered.
    #[error("{0}")]
    CorruptModel(String),
    /// A `tokenizer.json` cannot be parsed. Maps like [`CoreError::CorruptModel`], but 22P02
    /// (invalid_text_representation) when it was just given to be registered.
    #[error("{0}")]
    CorruptTokenizer(String),
    /// The tokenizer does not fit the graph: its ids reach beyond the graph's embedding table.
    /// Maps to 22000 (data_exception).
    #[error("{0}")]
    TokenizerMismatch(String),
    /// Texts of the model's `max_length` tokens do not fit the graph (its position table is
    /// shorter). Maps to 22000 (data_exception).
    #[error("{0}")]
    SequenceTooLong(String),
    /// ONNX Runtime is unavailable (library missing, too old, not loaded) or failed while running
    /// a model. Maps to 58000 (system_error).
    #[error("{0}")]
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;
