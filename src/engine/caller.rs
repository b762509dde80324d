//! Who started a run: the worker, pg_cron, or SQL.

use pgrx::prelude::*;

use crate::error::spi;
use crate::history::Trigger;

/// Who started this run. pg_cron's job workers say so in backend_type; its libpq sessions
/// call themselves `pg_cron`, as any client can, so they count only when pg_cron's run log in
/// this database (`cron.job_run_details`, written by its launcher before it sends the job's
/// command) has an unfinished run on this backend.
pub(super) fn trigger() -> Trigger {
    let (backend_type, application_name) = spi(Spi::get_two::<String, String>(
        "SELECT a.backend_type, pg_catalog.current_setting('application_name')
           FROM pg_catalog.pg_stat_get_activity(pg_catalog.pg_backend_pid()) a",
    ));
    let cron_job_here = application_name.as_deref() == Some("pg_cron")
        && crate::rights::as_extension_owner(|| {
            spi(Spi::get_one::<bool>("SELECT pg_catalog.to_regclass('cron.job_run_details') IS NOT NULL")) == Some(true)
                && spi(Spi::get_one::<bool>(
                    "SELECT EXISTS (SELECT FROM cron.job_run_details
                                     WHERE job_pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid() AND end_time IS NULL)",
                )) == Some(true)
        });
    Trigger::detect(backend_type.as_deref().unwrap_or(""), cron_job_here)
}
