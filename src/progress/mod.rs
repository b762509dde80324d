//! `retention.progress`: one row per run in progress in this database, from any path (a
//! `SELECT` in a transaction still open included), as `pg_stat_progress_vacuum` shows a VACUUM.
//! Each run owns a slot in shared memory while it runs and writes its phase and counts there;
//! readers see them at once, with no transaction in between. A slot is freed when its run ends
//! (or unwinds), when its backend exits (`before_shmem_exit`), and is ignored and reused once
//! its backend is gone; a crash of the server clears shared memory. Shared memory is allocated
//! only when `shared_preload_libraries` loads pg_retention.

mod phase;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

pub use phase::Phase;

/// Runs shown at once, all databases together: one per policy running, far more than a server
/// runs side by side. A run past it runs unseen, and says so once in the log.
const MAX_RUNS: usize = 64;

/// What a free slot's `pid` holds, and what `MINE` holds while this backend tracks no run.
const FREE: i32 = 0;
const NONE: usize = usize::MAX;

#[derive(Clone, Copy, Default)]
struct Slot {
    pid: i32,
    database: pg_sys::Oid,
    policy_id: i32,
    relid: pg_sys::Oid,
    /// 0 until the run's history row is written.
    run_id: i64,
    phase: u8,
    rows_done: i64,
    /// -1 until counted.
    rows_estimated: i64,
    batches: i64,
    requests_in_flight: i32,
    started_at: pg_sys::TimestampTz,
}

#[derive(Clone, Copy)]
struct Slots([Slot; MAX_RUNS]);

impl Default for Slots {
    fn default() -> Self {
        Slots([Slot::default(); MAX_RUNS])
    }
}

// SAFETY: plain numbers, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Slots {}

// SAFETY: the only lock of this name.
static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"pg_retention progress") };

/// This backend's slot while it runs a policy.
static MINE: AtomicUsize = AtomicUsize::new(NONE);
static EXIT_CALLBACK_SET: AtomicBool = AtomicBool::new(false);
static SAID_FULL: AtomicBool = AtomicBool::new(false);

/// Asks for the shared memory (see `crate::shmem`).
#[allow(unexpected_cfgs)] // pg_shmem_init! names PostgreSQL majors this crate does not build for
pub fn init() {
    pg_shmem_init!(SLOTS);
}

fn this_pid() -> i32 {
    // SAFETY: set once at process start.
    unsafe { pg_sys::MyProcPid }
}

/// Whether `pid` is a live backend or background worker.
fn alive(pid: i32) -> bool {
    // SAFETY: looks the pid up in the proc array under its own lock.
    !unsafe { pg_sys::BackendPidGetProc(pid) }.is_null()
}

/// A run's slot, freed when this is dropped (the run's end, or its error's unwinding).
pub struct Tracked {
    slot: usize,
    /// The slot of a run this one runs inside (a trigger's), restored after it.
    outer: usize,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.slot != NONE {
            SLOTS.exclusive().0[self.slot].pid = FREE;
        }
        MINE.store(self.outer, Ordering::Relaxed);
    }
}

/// Starts showing a run of `policy_id`, in phase `locking`.
pub fn track(policy_id: i32) -> Tracked {
    let outer = MINE.load(Ordering::Relaxed);
    if !crate::shmem::preloaded() {
        return Tracked { slot: NONE, outer };
    }
    if !EXIT_CALLBACK_SET.swap(true, Ordering::Relaxed) {
        // SAFETY: registers a plain function for this backend's exit; the list is this process's.
        unsafe { pg_sys::before_shmem_exit(Some(free_at_exit), pg_sys::Datum::from(0)) };
    }
    let slot = {
        let mut slots = SLOTS.exclusive();
        let free = slots.0.iter().position(|s| s.pid == FREE || !alive(s.pid));
        if let Some(i) = free {
            slots.0[i] = Slot {
                pid: this_pid(),
                // SAFETY: set once the backend has connected to its database.
                database: unsafe { pg_sys::MyDatabaseId },
                policy_id,
                rows_estimated: -1,
                phase: Phase::Locking.index(),
                // SAFETY: reads the clock.
                started_at: unsafe { pg_sys::GetCurrentTimestamp() },
                ..Slot::default()
            };
        }
        free
    };
    match slot {
        Some(i) => {
            MINE.store(i, Ordering::Relaxed);
            Tracked { slot: i, outer }
        }
        None => {
            if !SAID_FULL.swap(true, Ordering::Relaxed) {
                crate::error::say!(LOG, "pg_retention: {MAX_RUNS} runs are in progress; this one is not shown in retention.progress");
            }
            MINE.store(NONE, Ordering::Relaxed);
            Tracked { slot: NONE, outer }
        }
    }
}

/// Frees every slot of this backend as it exits (a FATAL error, `pg_terminate_backend`).
#[pg_guard]
unsafe extern "C-unwind" fn free_at_exit(_code: std::ffi::c_int, _arg: pg_sys::Datum) {
    let pid = this_pid();
    SLOTS.exclusive().0.iter_mut().filter(|s| s.pid == pid).for_each(|s| s.pid = FREE);
}

/// Changes this backend's run's slot, if it has one.
fn update(change: impl FnOnce(&mut Slot)) {
    let mine = MINE.load(Ordering::Relaxed);
    if mine != NONE {
        change(&mut SLOTS.exclusive().0[mine]);
    }
}

pub fn phase(phase: Phase) {
    update(|s| s.phase = phase.index());
}

pub fn relation(relid: pg_sys::Oid) {
    update(|s| s.relid = relid);
}

pub fn run_id(run_id: Option<i64>) {
    update(|s| s.run_id = run_id.unwrap_or(0));
}

pub fn estimated(rows: i64) {
    update(|s| s.rows_estimated = rows);
}

pub fn done(rows: i64, batches: i64) {
    update(|s| (s.rows_done, s.batches) = (rows, batches));
}

pub fn in_flight(requests: usize) {
    update(|s| s.requests_in_flight = i32::try_from(requests).unwrap_or(i32::MAX));
}

#[pg_schema]
mod retention {
    use pgrx::datum::TimestampWithTimeZone;
    use pgrx::prelude::*;

    use super::{alive, phase, Phase, FREE, SLOTS};

    /// The runs in progress in this database, read from shared memory (`retention.progress`).
    #[pg_extern(volatile, parallel_restricted)]
    #[search_path(pg_catalog, pg_temp)]
    fn progress_rows() -> TableIterator<
        'static,
        (
            name!(pid, i32),
            name!(policy_id, i32),
            name!(relid, pg_sys::Oid),
            name!(run_id, Option<i64>),
            name!(phase, Option<String>),
            name!(rows_done, i64),
            name!(rows_estimated, Option<i64>),
            name!(batches, i64),
            name!(requests_in_flight, i32),
            name!(started_at, Option<TimestampWithTimeZone>),
            name!(seconds_left, Option<f64>),
        ),
    > {
        if !crate::shmem::preloaded() {
            crate::error::raise(
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "retention.progress needs pg_retention in shared_preload_libraries".into(),
                Some("Add pg_retention to shared_preload_libraries and restart the server; runs work without it, unseen.".into()),
            )
        }
        // SAFETY: reads the clock and this backend's database, both set.
        let (now, database) = unsafe { (pg_sys::GetCurrentTimestamp(), pg_sys::MyDatabaseId) };
        let slots: Vec<super::Slot> = SLOTS.share().0.iter().filter(|s| s.pid != FREE && s.database == database).copied().collect();
        let rows: Vec<_> = slots
            .into_iter()
            .filter(|s| alive(s.pid))
            .map(|s| {
                let elapsed_s = (now - s.started_at) as f64 / 1e6;
                let estimated = (s.rows_estimated >= 0).then_some(s.rows_estimated);
                (
                    s.pid,
                    s.policy_id,
                    s.relid,
                    (s.run_id > 0).then_some(s.run_id),
                    Phase::from_index(s.phase).map(|p| p.as_str().to_string()),
                    s.rows_done,
                    estimated,
                    s.batches,
                    s.requests_in_flight,
                    TimestampWithTimeZone::try_from(s.started_at).ok(),
                    phase::seconds_left(elapsed_s, s.rows_done, estimated),
                )
            })
            .collect();
        TableIterator::new(rows)
    }
}
