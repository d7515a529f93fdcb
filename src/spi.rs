//! Reading and writing the extension's own tables through SPI, where an SPI failure is a bug or
//! a broken installation, never a user mistake: every helper raises XX000 naming what it read,
//! instead of turning the failure into "no row". (PostgreSQL's own errors inside a query, such
//! as permission denied, propagate with their own SQLSTATE and never reach these helpers.)
//!
//! # search_path
//!
//! The extension runs inside the caller's session, often a superuser's, whose `search_path` may
//! hold schemas others can write. Every query here is parsed and planned with the search path
//! `pg_catalog, pg_temp` ([`catalog_path`]), so no function, operator, aggregate or type planted
//! on the caller's path can be picked for the extension's SQL. These helpers are for queries of
//! the extension's own tables and the system catalogs only. Queries of a user's relation (which
//! may be a view calling the user's own functions, resolved on the caller's path) go through
//! [`select_user`] or `source::for_each_row` instead, and qualify every operator, aggregate,
//! function and type they name themselves (`OPERATOR(pg_catalog.=)`, `pg_catalog.sum`,
//! `::pg_catalog.float8`).

use std::ffi::{c_int, CStr};

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::{SpiClient, SpiError, SpiHeapTupleData, SpiTupleTable};
use pgrx::PgSqlErrorCode::*;
use pgrx::{FromDatum, IntoDatum};

use crate::error::raise;

/// Raises XX000 for an SPI failure while reading or writing `what`.
#[track_caller]
pub fn failed(what: &str, e: SpiError) -> ! {
    raise(
        ERRCODE_INTERNAL_ERROR,
        format!("cannot read or write {what}: {e}"),
        None,
    )
}

/// While it lives, a setting holds a value, as a function's `SET` clause would give it; the
/// previous value comes back when it is dropped. An ERROR on the way unwinds past it: the
/// transaction's (or subtransaction's) abort restores the setting then, as for any `SET` inside
/// a function.
pub struct ScopedSetting {
    nest_level: c_int,
}

impl ScopedSetting {
    pub fn set(name: &CStr, value: &CStr) -> ScopedSetting {
        // SAFETY: backend thread; the same calls PostgreSQL makes for a function's SET clause.
        // A name no library defines becomes a placeholder setting, which nothing reads.
        let nest_level = unsafe {
            let level = pg_sys::NewGUCNestLevel();
            pg_sys::set_config_option(
                name.as_ptr(),
                value.as_ptr(),
                pg_sys::GucContext::PGC_USERSET,
                pg_sys::GucSource::PGC_S_SESSION,
                pg_sys::GucAction::GUC_ACTION_SAVE,
                true,
                0,
                false,
            );
            level
        };
        ScopedSetting { nest_level }
    }
}

/// While the returned guard lives, SQL this backend parses and plans sees the search path
/// `pg_catalog, pg_temp` (see [`ScopedSetting`]).
pub fn catalog_path() -> ScopedSetting {
    ScopedSetting::set(c"search_path", c"pg_catalog, pg_temp")
}

impl Drop for ScopedSetting {
    fn drop(&mut self) {
        // While an ERROR unwinds, the abort that follows restores the setting (and must: the
        // GUC state may be half-done).
        if !std::thread::panicking() {
            // SAFETY: pops the level pushed in `set`, on the backend thread.
            unsafe { pg_sys::AtEOXact_GUC(true, self.nest_level) };
        }
    }
}

/// The first column of the first row of a read-only query (`None`: no row, or NULL).
///
/// pgrx's `Spi::get_one*` run their query as a writing command, which assigns a transaction id:
/// that fails in parallel workers and on hot standbys, and costs an XID per read-only
/// transaction. Every read of the model tables goes through here or [`select`] instead.
pub fn select_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
    what: &str,
) -> Option<A> {
    Spi::connect(|client| first(client, query, args, what)?.column(1, what))
}

/// Whether `relation` (a qualified name) has a live column `column`: which catalog version a
/// database runs (a newer library reads an older catalog until `ALTER EXTENSION ... UPDATE`).
pub fn catalog_has_column(relation: &str, column: &str) -> bool {
    select_one::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute \
          WHERE attrelid = $1::pg_catalog.regclass AND attname = $2 AND NOT attisdropped)",
        &[relation.into(), column.into()],
        "pg_catalog.pg_attribute",
    )
    .unwrap_or(false)
}

/// The first row of a read-only query on an open connection (`None`: no row), as a table
/// positioned on it.
pub fn first<'c>(
    client: &'c SpiClient<'_>,
    query: &str,
    args: &[DatumWithOid<'_>],
    what: &str,
) -> Option<SpiTupleTable<'c>> {
    let t = select(client, query, Some(1), args, what);
    (!t.is_empty()).then(|| t.first())
}

/// The rows of a read-only query of the extension's tables or the catalogs, on an open
/// connection, planned with the search path `pg_catalog, pg_temp`.
pub fn select<'c>(
    client: &'c SpiClient<'_>,
    query: &str,
    limit: Option<i64>,
    args: &[DatumWithOid<'_>],
    what: &str,
) -> SpiTupleTable<'c> {
    let _path = catalog_path();
    // The same read, under the catalog path.
    select_user(client, query, limit, args, what)
}

/// The rows of a read-only query that names a user's relation, planned with the caller's search
/// path (the relation may be a view calling the user's functions). The query must qualify every
/// operator, aggregate, function and type it names itself.
pub fn select_user<'c>(
    client: &'c SpiClient<'_>,
    query: &str,
    limit: Option<i64>,
    args: &[DatumWithOid<'_>],
    what: &str,
) -> SpiTupleTable<'c> {
    client
        .select(query, limit, args)
        .unwrap_or_else(|e| failed(what, e))
}

/// Reading the columns of a row (an iterated row, or a table positioned on its first row).
pub trait Columns {
    /// pgrx's own read.
    fn read<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Result<Option<T>, SpiError>;

    /// Column `ordinal` (from 1); `None` for NULL. `name` names the column in the error raised
    /// when the value cannot be read as a `T`.
    fn column<T: FromDatum + IntoDatum>(&self, ordinal: usize, name: &str) -> Option<T> {
        self.read::<T>(ordinal).unwrap_or_else(|e| {
            raise(
                ERRCODE_INTERNAL_ERROR,
                format!("cannot read column {ordinal} ({name}) of an internal query: {e}"),
                None,
            )
        })
    }
}

impl Columns for SpiHeapTupleData<'_> {
    fn read<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Result<Option<T>, SpiError> {
        self.get::<T>(ordinal)
    }
}

impl Columns for SpiTupleTable<'_> {
    fn read<T: FromDatum + IntoDatum>(&self, ordinal: usize) -> Result<Option<T>, SpiError> {
        self.get::<T>(ordinal)
    }
}

/// Runs a writing statement of the extension's own, returning the first column of its first row.
pub fn write_one<A: FromDatum + IntoDatum>(
    query: &str,
    args: &[DatumWithOid<'_>],
    what: &str,
) -> Option<A> {
    let _path = catalog_path();
    Spi::get_one_with_args::<A>(query, args).unwrap_or_else(|e| match e {
        SpiError::InvalidPosition => None,
        e => failed(what, e),
    })
}

/// Runs a writing statement of the extension's own.
pub fn write(query: &str, args: &[DatumWithOid<'_>], what: &str) {
    let _path = catalog_path();
    Spi::run_with_args(query, args).unwrap_or_else(|e| failed(what, e));
}
