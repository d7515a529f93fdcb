//! Turning problems into PostgreSQL errors with a SQLSTATE, a message and, where the user can fix
//! something, a hint. A Rust panic that reaches SQL is a bug; user mistakes come through here.

use persona_core::CoreError;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

/// Raises an ERROR. Never returns.
#[track_caller]
pub fn raise(code: PgSqlErrorCode, message: impl Into<String>, hint: Option<String>) -> ! {
    let mut report = ErrorReport::new(code, message.into(), "pg_persona");
    if let Some(h) = hint {
        report = report.set_hint(h);
    }
    report.report(PgLogLevel::ERROR);
    unreachable!("ERROR does not return")
}

/// Raises an ERROR with a hint. Never returns.
#[track_caller]
pub fn raise_hint(code: PgSqlErrorCode, message: impl Into<String>, hint: impl Into<String>) -> ! {
    raise(code, message, Some(hint.into()))
}

/// Raises a core error with the SQLSTATE of its kind, and `hint` (else a default for the kind).
/// Text models map their errors with [`crate::text_store::raise_text`], which also knows the
/// phase (registering, loading, running) the error happened in.
#[track_caller]
pub fn core(e: CoreError, hint: Option<&str>) -> ! {
    use PgSqlErrorCode::*;
    let hint = hint.map(str::to_string);
    match e {
        CoreError::InvalidData(m)
        | CoreError::TokenizerMismatch(m)
        | CoreError::SequenceTooLong(m) => raise(ERRCODE_DATA_EXCEPTION, m, hint),
        CoreError::InvalidParameter(m) => raise(ERRCODE_INVALID_PARAMETER_VALUE, m, hint),
        CoreError::TooLarge(m) => raise(ERRCODE_PROGRAM_LIMIT_EXCEEDED, m, hint),
        CoreError::Cancelled => cancelled(),
        CoreError::Runtime(m) => raise(
            ERRCODE_SYSTEM_ERROR,
            m,
            Some(hint.unwrap_or_else(|| {
                "Check persona.onnxruntime_library and that ONNX Runtime \
                                         >= 1.17 is installed (make setup)."
                    .into()
            })),
        ),
        CoreError::CorruptModel(m) | CoreError::CorruptTokenizer(m) => raise(
            ERRCODE_DATA_CORRUPTED,
            m,
            Some(hint.unwrap_or_else(|| {
                "Retrain the model with cf_train, or activate another version with cf_deploy."
                    .into()
            })),
        ),
    }
}

/// Raises the interrupt that stopped a computation: PostgreSQL's own ERROR for it (query cancel,
/// statement timeout, termination), which also clears the pending flags; 57014 if none is
/// pending any more.
#[track_caller]
pub fn cancelled() -> ! {
    pgrx::check_for_interrupts!();
    raise(
        PgSqlErrorCode::ERRCODE_QUERY_CANCELED,
        "canceling statement due to user request",
        None,
    )
}

/// Unwraps a core result or raises its error.
pub trait OrRaise<T> {
    fn or_raise(self) -> T;
    fn or_raise_hint(self, hint: &str) -> T;
}

impl<T> OrRaise<T> for persona_core::Result<T> {
    #[track_caller]
    fn or_raise(self) -> T {
        self.unwrap_or_else(|e| core(e, None))
    }
    #[track_caller]
    fn or_raise_hint(self, hint: &str) -> T {
        self.unwrap_or_else(|e| core(e, Some(hint)))
    }
}
