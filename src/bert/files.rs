//! Model files on the server: who may register them, and the checks that keep every path inside
//! `persona.model_dir` (no `..`, no symbolic link out of it, a size limit).

use std::path::{Component, Path, PathBuf};

use pgrx::prelude::*;
use pgrx::PgSqlErrorCode::*;

use crate::error::raise_hint;
use crate::settings;

/// Raises 42501 unless the current role may read server files.
pub(super) fn check_file_privilege() {
    // SAFETY: plain catalog checks on the backend's thread.
    let allowed = unsafe {
        pg_sys::has_privs_of_role(
            pg_sys::GetUserId(),
            pg_sys::Oid::from(pg_sys::ROLE_PG_READ_SERVER_FILES),
        )
    };
    if !allowed {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            "permission denied to register a text model from a server file",
            "Only superusers and members of pg_read_server_files may register models from files; \
             others can pass the bytes: bert_register_model(name, onnx bytea, tokenizer text, \
             task).",
        );
    }
}

/// Resolves `given` (absolute, or relative to `persona.model_dir`) and makes sure that it stays
/// inside the model directory once symbolic links are followed.
fn model_path(given: &str) -> (PathBuf, PathBuf) {
    let dir = settings::model_dir();
    let root =
        std::fs::canonicalize(&dir).unwrap_or_else(|e| {
            raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("the model directory {} cannot be opened: {e}", dir.display()),
            "Create it, or set persona.model_dir (superuser) to the directory holding your models.",
        )
        });
    let path = Path::new(given);
    if path.components().any(|c| c == Component::ParentDir) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("the model path \"{given}\" must not contain \"..\""),
            format!("Give a path inside persona.model_dir ({}).", dir.display()),
        );
    }
    let full = if path.is_absolute() {
        path.to_path_buf()
    } else {
        dir.join(path)
    };
    let real = std::fs::canonicalize(&full).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model path {} cannot be opened: {e}", full.display()),
            format!(
                "Give a directory holding model.onnx and tokenizer.json, or an .onnx file with \
                 tokenizer.json beside it, inside persona.model_dir ({}).",
                dir.display()
            ),
        )
    });
    if !real.starts_with(&root) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "model path \"{given}\" is outside the model directory {}",
                dir.display()
            ),
            "Only files inside persona.model_dir (after following symbolic links) can be \
             registered; copy the model there, or pass its bytes instead.",
        );
    }
    (root, real)
}

/// Reads a model file under `root` (checked again: a file inside a directory may be a link out).
pub(super) fn read_model_file(root: &Path, path: &Path) -> Vec<u8> {
    let real = std::fs::canonicalize(path).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model file {} cannot be opened: {e}", path.display()),
            "A model directory holds model.onnx and tokenizer.json (as Hugging Face Optimum \
             exports them).",
        )
    });
    if !real.starts_with(root) {
        raise_hint(
            ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "model file {} links outside the model directory",
                path.display()
            ),
            "Copy the file into persona.model_dir instead of linking to it.",
        );
    }
    const MAX_BYTES: u64 = 1 << 30;
    match std::fs::metadata(&real) {
        Ok(m) if m.len() >= MAX_BYTES => raise_hint(
            ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            format!(
                "model file {} has {} bytes; at most 1 GB can be stored",
                real.display(),
                m.len()
            ),
            "Use a smaller (e.g. quantised) export of the model.",
        ),
        Ok(m) if !m.is_file() => raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("model path {} is not a file", real.display()),
            "Give a directory holding model.onnx and tokenizer.json, or an .onnx file.",
        ),
        _ => {}
    }
    std::fs::read(&real).unwrap_or_else(|e| {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!("cannot read model file {}: {e}", real.display()),
            "The file must be readable by the server's operating-system user (postgres).",
        )
    })
}

/// The ONNX and tokenizer files of a model path: a directory with `model.onnx` and
/// `tokenizer.json`, or an `.onnx` file with `tokenizer.json` in its directory.
pub(super) fn model_files(given: &str) -> (PathBuf, PathBuf, PathBuf) {
    let (root, real) = model_path(given);
    if real.is_dir() {
        (root, real.join("model.onnx"), real.join("tokenizer.json"))
    } else {
        let tok = real
            .parent()
            .map(|p| p.join("tokenizer.json"))
            .unwrap_or_else(|| PathBuf::from("tokenizer.json"));
        (root, real, tok)
    }
}

/// The fine-tuning checkpoint of encoder `name`: `persona.model_dir/<name>/` holding
/// `model.safetensors`, `config.json` and `tokenizer.json` (Hugging Face's layout), read with
/// the same checks as model files. `name` is a model name (no `/`), so any role that may create
/// text models reads only what the administrator installed there.
pub(super) fn checkpoint(name: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let dir = settings::model_dir().join(name);
    let weights = dir.join("model.safetensors");
    if !weights.is_file() {
        raise_hint(
            ERRCODE_UNDEFINED_FILE,
            format!(
                "encoder \"{name}\" has no fine-tuning checkpoint (model.safetensors) in \
                 persona.model_dir"
            ),
            format!(
                "bert_finetune starts from fp32 weights in persona.model_dir/<encoder>/ \
                 (model.safetensors, config.json, tokenizer.json): {} does not exist. \
                 scripts/setup.sh installs them for minilm; for another encoder copy a Hugging \
                 Face BERT checkpoint there.",
                weights.display()
            ),
        );
    }
    let (root, real) = model_path(name);
    let read = |file: &str| read_model_file(&root, &real.join(file));
    (
        read("model.safetensors"),
        read("config.json"),
        read("tokenizer.json"),
    )
}
