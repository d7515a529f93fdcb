//! SQLSTATEs and hints of the text runtime's errors. The code is chosen by the core error's
//! kind and the phase it happened in (registering, loading, running, training), never by its
//! message text.

use persona_core::CoreError;
use pgrx::PgSqlErrorCode::{self, *};

use crate::error::raise_hint;
use crate::settings;

/// Where a core error happened, which decides its SQLSTATE and hint.
#[derive(Debug, Clone, Copy)]
pub enum Phase<'a> {
    /// Loading the ONNX Runtime library.
    Runtime,
    /// Checking a model given to `bert_register_model` (or a default model).
    Register,
    /// Loading the stored model of this name.
    Load(&'a str),
    /// Running the model of this name.
    Infer(&'a str),
    /// Training a head (`bert_train_classifier`).
    Train,
}

/// Raises a core error of the text runtime with a SQLSTATE and a hint fit for `phase`.
#[track_caller]
pub fn raise_text(e: CoreError, phase: Phase<'_>) -> ! {
    let library = settings::onnxruntime_library();
    let library_hint = format!(
        "pg_persona needs ONNX Runtime 1.17 or newer at persona.onnxruntime_library (now {}); \
         scripts/setup.sh installs it. After changing the setting, reconnect.",
        library.display()
    );
    let (code, hint): (PgSqlErrorCode, String) = match (&e, phase) {
        (CoreError::Cancelled, _) => crate::error::cancelled(),
        (CoreError::Runtime(_), Phase::Runtime) => (ERRCODE_SYSTEM_ERROR, library_hint),
        (CoreError::Runtime(_), Phase::Infer(name)) => (
            ERRCODE_SYSTEM_ERROR,
            format!(
                "ONNX Runtime failed while running model \"{name}\"; the server log has its \
                 message. Lower persona.max_inference_memory (superuser) if it ran out of \
                 memory."
            ),
        ),
        (CoreError::Runtime(_), _) => (
            ERRCODE_SYSTEM_ERROR,
            "ONNX Runtime could not create a session for the model; the server log may say more. \
             With persona.device = cuda, check the GPU build of ONNX Runtime and its CUDA \
             libraries."
                .into(),
        ),
        (CoreError::CorruptTokenizer(_), Phase::Register) => (
            ERRCODE_INVALID_TEXT_REPRESENTATION,
            "Pass the tokenizer.json that was exported with the model (Hugging Face format), as \
             text, e.g. pg_read_file('.../tokenizer.json')."
                .into(),
        ),
        (CoreError::CorruptModel(_), Phase::Register) => (
            ERRCODE_INVALID_BINARY_REPRESENTATION,
            "Pass the bytes of an .onnx file (e.g. pg_read_binary_file('.../model.onnx')), as \
             exported by Hugging Face Optimum: optimum-cli export onnx --model <name> <dir>."
                .into(),
        ),
        (CoreError::CorruptModel(_) | CoreError::CorruptTokenizer(_), Phase::Load(name)) => (
            ERRCODE_DATA_CORRUPTED,
            format!(
                "The stored model \"{name}\" cannot be loaded. Register it again with \
                 bert_register_model(..., options => '{{\"replace\": true}}'), or drop it with \
                 bert_drop_model('{name}')."
            ),
        ),
        (CoreError::CorruptModel(_) | CoreError::CorruptTokenizer(_), _) => (
            ERRCODE_DATA_CORRUPTED,
            "Register the model again.".into(),
        ),
        (CoreError::TokenizerMismatch(_), Phase::Register | Phase::Load(_)) => (
            ERRCODE_DATA_EXCEPTION,
            "Use the tokenizer.json exported together with this ONNX graph: its vocabulary \
             must fit the graph's embedding table."
                .into(),
        ),
        (CoreError::SequenceTooLong(_), Phase::Register | Phase::Load(_)) => (
            ERRCODE_DATA_EXCEPTION,
            "Register the model with a smaller max_length, e.g. options => '{\"max_length\": 128}' \
             (BERT's position table holds 512 tokens, RoBERTa's 512 after its 2 offsets)."
                .into(),
        ),
        (CoreError::InvalidData(_), Phase::Register | Phase::Load(_)) => (
            ERRCODE_DATA_EXCEPTION,
            "pg_persona feeds the inputs input_ids, attention_mask and token_type_ids (int64 \
             [batch, sequence]) and reads the output last_hidden_state (task embedding) or logits \
             (task classification), as Hugging Face Optimum exports them. Re-export the model, or \
             register it with the other task."
                .into(),
        ),
        (
            CoreError::InvalidData(_)
            | CoreError::TokenizerMismatch(_)
            | CoreError::SequenceTooLong(_),
            _,
        ) => (ERRCODE_DATA_EXCEPTION, "Check the input data.".into()),
        (CoreError::InvalidParameter(_), Phase::Train) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            "See the README's table of bert_train_classifier options.".into(),
        ),
        (CoreError::InvalidParameter(_), _) => (
            ERRCODE_INVALID_PARAMETER_VALUE,
            "Check the model's options: task, labels, positive_label, pooling, max_length.".into(),
        ),
        (CoreError::TooLarge(_), Phase::Infer(_) | Phase::Register | Phase::Load(_)) => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "A superuser can raise persona.max_inference_memory; or lower \
             persona.max_sequence_length so texts are cut shorter."
                .into(),
        ),
        (CoreError::TooLarge(_), _) => (
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            "A superuser can raise persona.max_training_memory (the training's data) or \
             persona.max_inference_memory (one text's inference run); or use fewer rows, or a \
             lower persona.max_sequence_length."
                .into(),
        ),
    };
    raise_hint(code, e.to_string(), hint)
}

/// Unwraps a core result of the text runtime or raises its error for `phase`.
pub trait OrRaiseText<T> {
    fn or_raise_text(self, phase: Phase<'_>) -> T;
}

impl<T> OrRaiseText<T> for persona_core::Result<T> {
    #[track_caller]
    fn or_raise_text(self, phase: Phase<'_>) -> T {
        self.unwrap_or_else(|e| raise_text(e, phase))
    }
}
