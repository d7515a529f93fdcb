//! `jsonb` arguments and columns as `serde_json` values, with an ERROR a user can act on for what
//! `serde_json` cannot represent.
//!
//! pgrx's own `JsonB` panics (`XX000` "a text version of jsonb must be a valid json") when the
//! text of a jsonb value does not parse as serde_json's `Value`: a number beyond `f64`
//! (`{"lr": 1e400}` is valid jsonb, which keeps numbers as `numeric`), or nesting deeper than
//! serde_json's 128 levels. [`Jsonb`] reads the same value but raises `22023` naming the problem;
//! it is a `jsonb` in SQL, so a function's signature (and its C symbol) stay as they were.

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};
use pgrx::PgSqlErrorCode::*;
use pgrx::{FromDatum, IntoDatum};
use serde_json::Value;

use crate::error::raise_hint;

/// A `jsonb` value, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Jsonb(pub Value);

/// Parses the text of a jsonb value, or raises 22023.
pub fn parse(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| {
        // serde_json's position is in jsonb's own rendering (1e400 is written out in full),
        // not in what the user typed: leave it out.
        let full = e.to_string();
        let why = full.split(" at line ").next().unwrap_or(&full).to_string();
        let hint = if why.contains("number out of range") {
            "Numbers must fit a double precision value (about ±1.8e308)."
        } else if why.contains("recursion limit") {
            "JSON nested deeper than 128 levels is not accepted."
        } else {
            "Pass a JSON object such as '{\"seed\": 1}'."
        };
        raise_hint(
            ERRCODE_INVALID_PARAMETER_VALUE,
            format!("a jsonb value pg_persona cannot read: {why}"),
            hint,
        )
    })
}

impl FromDatum for Jsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _: pg_sys::Oid,
    ) -> Option<Jsonb> {
        if is_null {
            return None;
        }
        // SAFETY: the datum is a jsonb varlena (the argument's or column's declared type);
        // jsonb_out returns a palloc'd C string, freed once parsed.
        unsafe {
            let varlena = datum.cast_mut_ptr::<pg_sys::varlena>();
            let detoasted = pg_sys::pg_detoast_datum_packed(varlena);
            let out = pgrx::direct_function_call::<&core::ffi::CStr>(
                pg_sys::jsonb_out,
                &[Some(pg_sys::Datum::from(detoasted))],
            )
            .expect("jsonb_out returns a string");
            let text = out.to_string_lossy().into_owned();
            pg_sys::pfree(out.as_ptr() as *mut core::ffi::c_void);
            if detoasted != varlena {
                pg_sys::pfree(detoasted.cast());
            }
            Some(Jsonb(parse(&text)))
        }
    }
}

impl IntoDatum for Jsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        pgrx::JsonB(self.0).into_datum()
    }
    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

// SAFETY: read from the datum with FromDatum, as pgrx does for its own JsonB.
unsafe impl<'fcx> ArgAbi<'fcx> for Jsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: the caller guarantees the argument is a jsonb datum.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }
}

// SAFETY: the SQL type is jsonb, the datum type FromDatum/IntoDatum read and write.
unsafe impl SqlTranslatable for Jsonb {
    const TYPE_IDENT: &'static str = concat!(module_path!(), "::Jsonb");
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
