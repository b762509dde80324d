//! Running one statement through SPI. The arguments are made by a closure called inside the
//! SPI connection, so the datums it allocates (a batch's arrays of keys and SIDs, a run's
//! details) are freed with the connection, not left in the memory of a `CALL` that lives
//! across every commit of a run.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum};

use crate::error::spi;

/// Runs a statement; returns how many rows it touched (or returned).
pub fn execute<'a>(sql: &str, args: impl FnOnce() -> Vec<DatumWithOid<'a>>) -> usize {
    spi(Spi::connect_mut(|client| client.update(sql, None, &args()).map(|rows| rows.len())))
}

/// The first column of a one-row statement.
pub fn one<'a, T: FromDatum + IntoDatum>(sql: &str, args: impl FnOnce() -> Vec<DatumWithOid<'a>>) -> Option<T> {
    spi(Spi::connect_mut(|client| client.update(sql, Some(1), &args())?.first().get_one::<T>()))
}
