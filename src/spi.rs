//! Reading and writing the extension's own tables through SPI, where an SPI failure is a bug or
//! a broken installation, never a user mistake: every helper raises XX000 naming what it read,
//! instead of turning the failure into "no row". (PostgreSQL's own errors inside a query, such
//! as permission denied, propagate with their own SQLSTATE and never reach these helpers.)

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

/// The rows of a read-only query on an open connection.
pub fn select<'c>(
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
    Spi::get_one_with_args::<A>(query, args).unwrap_or_else(|e| match e {
        SpiError::InvalidPosition => None,
        e => failed(what, e),
    })
}

/// Runs a writing statement of the extension's own.
pub fn write(query: &str, args: &[DatumWithOid<'_>], what: &str) {
    Spi::run_with_args(query, args).unwrap_or_else(|e| failed(what, e));
}
