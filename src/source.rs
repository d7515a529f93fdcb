//! Reading a user's relation: resolved from its OID to a quoted, schema-qualified name (so
//! search_path cannot redirect it), columns checked up front with errors that say what to change,
//! and rows read through SPI as the calling role (so privileges apply) in cursor batches with an
//! interrupt check between batches.

use pgrx::prelude::*;
use pgrx::spi::SpiClient;
use pgrx::PgSqlErrorCode::*;

use crate::error::{raise, raise_hint};
use crate::spi::{first, select, Columns};

/// The kinds of column a source may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Integer ids (smallint, integer, bigint).
    Id,
    /// Any numeric type (ratings, amounts).
    Number,
    /// Text.
    Text,
    /// A timestamp or date.
    Time,
    /// A class label: text, a number, a boolean or an enum (read as its text form).
    Label,
}

impl ColumnKind {
    fn accepts(self, type_name: &str, category: &str) -> bool {
        match self {
            ColumnKind::Id => matches!(type_name, "smallint" | "integer" | "bigint"),
            ColumnKind::Number => category == "N",
            ColumnKind::Text => category == "S",
            ColumnKind::Time => category == "D",
            ColumnKind::Label => matches!(category, "S" | "N" | "B" | "E"),
        }
    }
    fn describe(self) -> &'static str {
        match self {
            ColumnKind::Id => "an integer type (smallint, integer or bigint)",
            ColumnKind::Number => "a numeric type",
            ColumnKind::Text => "a text type",
            ColumnKind::Time => "a date or timestamp type",
            ColumnKind::Label => "a text, numeric, boolean or enum type",
        }
    }
}

/// `schema.relation`, each part quoted, for the relation with this OID.
pub fn qualified_name(client: &SpiClient<'_>, rel: pg_sys::Oid) -> String {
    let name = first(
        client,
        "SELECT pg_catalog.format('%I.%I', n.nspname, c.relname) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1",
        &[rel.into()],
        "pg_class",
    )
    .and_then(|r| r.column::<String>(1, "relname"));
    name.unwrap_or_else(|| {
        raise(
            ERRCODE_UNDEFINED_TABLE,
            format!("relation with OID {} does not exist", rel.to_u32()),
            None,
        )
    })
}

/// The quoted name of the relation `rel` ([`qualified_name`]) once it is checked to have each
/// `(column, kind, option)` of `wanted` ([`check_columns`]).
pub fn checked_relation(
    client: &SpiClient<'_>,
    rel: pg_sys::Oid,
    wanted: &[(&str, ColumnKind, &str)],
) -> String {
    let relname = qualified_name(client, rel);
    check_columns(client, rel, &relname, wanted);
    relname
}

/// Checks that `rel` has each `(column, kind)`; raises 42703 or 42804 naming the option to set.
pub fn check_columns(
    client: &SpiClient<'_>,
    rel: pg_sys::Oid,
    relname: &str,
    wanted: &[(&str, ColumnKind, &str)],
) {
    let rows = select(
        client,
        "SELECT a.attname::text, pg_catalog.format_type(a.atttypid, NULL), t.typcategory::text \
         FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid \
         WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        None,
        &[rel.into()],
        "pg_attribute",
    );
    let cols: Vec<(String, String, String)> = rows
        .map(|row| {
            let text = |i, name| row.column::<String>(i, name).unwrap_or_default();
            (text(1, "attname"), text(2, "type"), text(3, "typcategory"))
        })
        .collect();
    for &(col, kind, option) in wanted {
        match cols.iter().find(|(n, _, _)| n == col) {
            None => {
                let have: Vec<&str> = cols.iter().map(|(n, _, _)| n.as_str()).collect();
                raise_hint(
                    ERRCODE_UNDEFINED_COLUMN,
                    format!("column \"{col}\" does not exist in {relname}"),
                    format!(
                        "{relname} has columns {}; name the right one with the option \
                         \"{option}\", e.g. '{{\"{option}\": \"...\"}}'.",
                        have.join(", ")
                    ),
                )
            }
            Some((_, ty, cat)) if !kind.accepts(ty, cat) => raise_hint(
                ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "column \"{col}\" of {relname} has type {ty}, but it must be {}",
                    kind.describe()
                ),
                format!("Cast it in a view, or name another column with the option \"{option}\"."),
            ),
            Some(_) => {}
        }
    }
}

/// Quotes an identifier for SQL.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Runs `query` through a cursor, handing each row to `row` in batches of `batch` rows, checking
/// for interrupts between batches. For queries of a user's relation: planned on the caller's
/// search path, so `query` must qualify every operator, function and type it names (`spi.rs`).
pub fn for_each_row(
    client: &SpiClient<'_>,
    query: &str,
    batch: i64,
    mut row: impl FnMut(&pgrx::spi::SpiHeapTupleData<'_>),
) {
    let mut cursor = client.open_cursor(query, &[]);
    loop {
        pgrx::check_for_interrupts!();
        let table = cursor.fetch(batch as _).unwrap_or_else(|e| {
            raise(
                ERRCODE_INTERNAL_ERROR,
                format!("reading the source failed: {e}"),
                None,
            )
        });
        // The batch just fetched: pgrx leaves every fetched batch allocated until the SPI
        // connection ends, so a scan of N rows would hold all N tuples (about 100 bytes each with
        // their headers: 2.3 GB for 25 million ratings) next to what they were read into.
        // SAFETY: reading a global that SPI_cursor_fetch (in fetch above) has just set.
        let fetched = unsafe { pg_sys::SPI_tuptable };
        if table.is_empty() {
            break;
        }
        for r in table {
            row(&r);
        }
        // SAFETY: `fetched` is this batch's SPITupleTable, allocated by SPI for this cursor and
        // not freed yet; `table` and the rows borrowed from it were consumed by the loop above,
        // so nothing refers to its tuples any more (`row` copies what it keeps). SPI does not
        // free it again: SPI_freetuptable unlinks it from the connection's list.
        unsafe { pg_sys::SPI_freetuptable(fetched) };
    }
}
