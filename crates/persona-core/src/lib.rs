//! # persona-core
//!
//! The algorithms behind pg_persona, with no PostgreSQL dependency: everything here is plain Rust,
//! tested with `cargo test` and benchmarked with criterion. The pgrx extension crate at the top of
//! the workspace only converts arguments, reads data through SPI and delegates to this crate.
//!
//! | module | what |
//! |---|---|
//! | [`cf`] | collaborative filtering: data set, baselines, k-NN, matrix factorisation, implicit ALS, evaluation |
//! | [`stats`] | campaign statistics: proportions tests, Welch's t-test, sample-ratio checks, uplift curves |
//! | [`profile`] | churn risk and segment of a user portrait |
//! | [`demo`] | a deterministic generator of demo data (users, items, ratings, a campaign, feedback) |

pub mod cf;
pub mod demo;
pub mod profile;
pub mod stats;
pub mod text;

/// Errors the core reports to its caller. The extension maps each kind to a SQLSTATE.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CoreError {
    /// The input data cannot be used (empty, out of range, inconsistent). Maps to 22023/2200x.
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
    /// A stored model cannot be decoded (corrupt bytes, unknown format version). Maps to XX001-like data_corrupted.
    #[error("{0}")]
    CorruptModel(String),
    /// ONNX Runtime is unavailable (library missing, too old, not loaded) or failed while running
    /// a model. Maps to 58000 (system_error).
    #[error("{0}")]
    Runtime(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;
