//! Every `pg_retention.*` setting: one static each, registered in `init()`.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::limits::MAX_DAYS;

/// Days of run history to keep in `retention.runs`; older rows are pruned at the start of each run.
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(90);

pub fn init() {
    GucRegistry::define_int_guc(
        c"pg_retention.history_retention_days",
        c"Days of run history kept in retention.runs.",
        c"Each run deletes history rows that started more than this many days ago.",
        &HISTORY_RETENTION_DAYS,
        1,
        MAX_DAYS,
        GucContext::Suset,
        GucFlags::default(),
    );
}
