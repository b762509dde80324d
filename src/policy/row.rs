//! A row of the extension's tables read by column name, whether an SPI row or a trigger's
//! tuple: the policies' and the stores'.

use pgrx::datum::UnboxDatum;
use pgrx::heap_tuple::PgHeapTuple;
use pgrx::spi::SpiHeapTupleData;
use pgrx::{AllocatedByRust, FromDatum, IntoDatum};

/// A value of a policy column: text, interval, integer or boolean.
pub trait ColumnValue: FromDatum + IntoDatum + for<'a> UnboxDatum<As<'a> = Self> + 'static {}
impl<T: FromDatum + IntoDatum + for<'a> UnboxDatum<As<'a> = T> + 'static> ColumnValue for T {}

/// A row of `retention.policies` or `retention.stores`, read by column name: an SPI row or a trigger's tuple.
pub trait PolicyRow {
    fn column<T: ColumnValue>(&self, name: &str) -> Result<Option<T>, String>;
    /// A `text[]` column (its NULL elements dropped).
    fn text_array(&self, name: &str) -> Option<Vec<String>>;
}

impl PolicyRow for SpiHeapTupleData<'_> {
    fn column<T: ColumnValue>(&self, name: &str) -> Result<Option<T>, String> {
        self.get_by_name(name).map_err(|e| e.to_string())
    }
    fn text_array(&self, name: &str) -> Option<Vec<String>> {
        self.get_by_name::<Vec<Option<String>>, _>(name).ok().flatten().map(|v| v.into_iter().flatten().collect())
    }
}

impl PolicyRow for PgHeapTuple<'_, AllocatedByRust> {
    fn column<T: ColumnValue>(&self, name: &str) -> Result<Option<T>, String> {
        self.get_by_name(name).map_err(|e| e.to_string())
    }
    fn text_array(&self, name: &str) -> Option<Vec<String>> {
        self.get_by_name::<pgrx::datum::Array<'_, String>>(name).ok().flatten().map(|a| a.iter().flatten().collect())
    }
}

