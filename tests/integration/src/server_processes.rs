//! The server's own process kinds as `pg_stat_activity.backend_type` names them, on every
//! supported major. Every other process holds a background worker slot (extensions' workers,
//! parallel workers, logical replication), which is what `max_worker_processes` bounds.
//! The tests size that setting with it.

/// 17 added `slotsync worker` and `walsummarizer`, 18 `io worker`: none of them takes a slot.
pub const SERVER_PROCESS_TYPES: &[&str] = &[
    "archiver", "autovacuum launcher", "autovacuum worker", "background writer", "checkpointer",
    "client backend", "io worker", "logger", "slotsync worker", "standalone backend", "startup",
    "walreceiver", "walsender", "walsummarizer", "walwriter",
];
