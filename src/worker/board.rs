//! What the launcher, a database's worker and `run_worker_now()` tell each other, in shared
//! memory: no table, since the launcher has no database. Per database: a run asked for, when
//! its next pass is due (the worker computes it in its database's time zone rules and leaves
//! it here as it exits), and the launcher's answer to the last request.

use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory, PgLwLock};

use super::database_list::MAX_DATABASES;

/// The launcher's answer to a request, as `run_worker_now()` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// The database's worker runs (pid): started for this request, or already in a pass.
    Started(i32),
    /// Waiting for a background worker slot, behind this many databases.
    Queued(i32),
    /// No slot is free and no worker of pg_retention holds one that it would free.
    NoSlot,
}

#[derive(Clone, Copy, Default)]
struct Entry {
    database: pg_sys::Oid,
    /// A run asked for and not yet taken by a pass.
    requested: bool,
    /// Requests made, and the last one the launcher answered.
    asked: u64,
    answered: u64,
    /// 0 none, 1 started, 2 queued, 3 no slot; `detail` the pid or the place in the queue.
    answer: u8,
    detail: i32,
    /// When the next pass is due, as the last pass left it; `reported` says one did.
    next_due: pg_sys::TimestampTz,
    reported: bool,
}

#[derive(Clone, Copy)]
struct Board {
    launcher_pid: i32,
    entries: [Entry; MAX_DATABASES],
}

impl Default for Board {
    fn default() -> Self {
        Board { launcher_pid: 0, entries: [Entry::default(); MAX_DATABASES] }
    }
}

// SAFETY: plain numbers, no pointers: the same bytes mean the same in every process.
unsafe impl PGRXSharedMemory for Board {}

// SAFETY: the only lock of this name.
static BOARD: PgLwLock<Board> = unsafe { PgLwLock::new(c"pg_retention worker board") };

/// Asks for the shared memory (see `crate::shmem`).
#[allow(unexpected_cfgs)] // pg_shmem_init! names PostgreSQL majors this crate does not build for
pub fn init() {
    pg_shmem_init!(BOARD);
}

/// The entry of `database`, made if it has none (None when the board is full).
fn with_entry<R>(database: pg_sys::Oid, work: impl FnOnce(&mut Entry) -> R) -> Option<R> {
    let mut board = BOARD.exclusive();
    let at = match board.entries.iter().position(|e| e.database == database) {
        Some(at) => at,
        None => {
            let free = board.entries.iter().position(|e| e.database == pg_sys::InvalidOid)?;
            board.entries[free] = Entry { database, ..Entry::default() };
            free
        }
    };
    Some(work(&mut board.entries[at]))
}

/// The launcher, at its start: its pid, for requests to wake it, and no stale entries.
pub fn launcher_started(pid: i32) {
    let mut board = BOARD.exclusive();
    *board = Board { launcher_pid: pid, ..Board::default() };
}

/// `run_worker_now()`: asks for a run of `database`, wakes the launcher, and returns the
/// request's number to wait for its answer; None without a launcher.
pub fn request(database: pg_sys::Oid) -> Option<u64> {
    let launcher = BOARD.share().launcher_pid;
    if launcher == 0 {
        return None;
    }
    let asked = with_entry(database, |e| {
        e.requested = true;
        e.asked += 1;
        e.asked
    })?;
    // SAFETY: looks the launcher up in the proc array; setting a live process' latch is what
    // latches are for.
    unsafe {
        let proc = pg_sys::BackendPidGetProc(launcher);
        if !proc.is_null() {
            pg_sys::SetLatch(&mut (*proc).procLatch);
        }
    }
    Some(asked)
}

/// The launcher's answer to request `asked` of `database`, once it gave one.
pub fn answer(database: pg_sys::Oid, asked: u64) -> Option<Answer> {
    let board = BOARD.share();
    let entry = board.entries.iter().find(|e| e.database == database)?;
    (entry.answered >= asked).then(|| match entry.answer {
        1 => Answer::Started(entry.detail),
        2 => Answer::Queued(entry.detail),
        _ => Answer::NoSlot,
    })
}

/// The launcher: answers every request of `database` made so far.
pub fn reply(database: pg_sys::Oid, answer: Answer) {
    with_entry(database, |e| {
        (e.answer, e.detail) = match answer {
            Answer::Started(pid) => (1, pid),
            Answer::Queued(ahead) => (2, ahead),
            Answer::NoSlot => (3, 0),
        };
        e.answered = e.asked;
    });
}

/// Whether a run of `database` is asked for (the launcher starts its worker for it).
pub fn requested(database: pg_sys::Oid) -> bool {
    BOARD.share().entries.iter().any(|e| e.database == database && e.requested)
}

/// A pass takes the request it answers (one asked during its run waits for the next pass).
pub fn take_request(database: pg_sys::Oid) -> bool {
    with_entry(database, |e| std::mem::take(&mut e.requested)).unwrap_or(false)
}

/// A pass, as it ends: when the next one is due.
pub fn report(database: pg_sys::Oid, next_due: pg_sys::TimestampTz) {
    with_entry(database, |e| (e.next_due, e.reported) = (next_due, true));
}

/// The launcher, as a pass ends: when the next is due, if the pass said (a worker that was
/// terminated or crashed did not); clears it for the next pass.
pub fn take_report(database: pg_sys::Oid) -> Option<pg_sys::TimestampTz> {
    with_entry(database, |e| std::mem::take(&mut e.reported).then_some(e.next_due)).flatten()
}
