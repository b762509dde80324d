//! pg_retention: data-retention policies enforced inside PostgreSQL.

use pgrx::prelude::*;

mod api;
mod bounds;
mod citus;
mod engine;
mod error;
mod history;
mod limits;
mod policy;
mod progress;
mod rights;
mod schedule;
mod settings;
mod shmem;
mod helper_threads;
mod s3;
mod store;
mod statement;
mod twilio;
mod version;
mod wait_events;
mod worker;

#[cfg(any(test, feature = "pg_test"))]
mod tests;

pgrx::pg_module_magic!();

// The catalog tables go into the schema that `api::retention` declares; the presets,
// trigger and procedure, which name Rust functions, come last.
extension_sql_file!("../sql/catalog.sql", name = "catalog", requires = [api::retention]);
extension_sql_file!("../sql/finalize.sql", name = "finalize", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    settings::init();
    // SAFETY: a flag Postgres sets while it loads shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        shmem::init();
        worker::register();
    }
}

/// Used by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
