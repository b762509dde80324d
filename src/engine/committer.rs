//! How a run commits: the `SELECT` path never (the caller's transaction holds it all), the
//! batched path (`CALL`, the worker) after each batch; and how long its longest transaction was.

use std::cell::Cell;
use std::panic::AssertUnwindSafe;
use std::time::Instant;

use pgrx::pg_sys::panic::CaughtError;

use super::xact::in_subtransaction;
use crate::history::Mode;

/// How a run commits: never (the caller's transaction holds it all), or after each batch.
pub struct Committer<'a> {
    commit: Option<&'a dyn Fn()>,
    last_commit: Cell<Instant>,
    longest_ms: Cell<f64>,
}

impl<'a> Committer<'a> {
    /// `SELECT`: everything in the caller's transaction.
    pub fn callers_transaction() -> Committer<'static> {
        Committer { commit: None, last_commit: Cell::new(Instant::now()), longest_ms: Cell::new(0.0) }
    }

    /// `CALL` and the worker: `commit` ends the current transaction and starts the next.
    pub fn per_batch(commit: &'a dyn Fn()) -> Committer<'a> {
        Committer { commit: Some(commit), last_commit: Cell::new(Instant::now()), longest_ms: Cell::new(0.0) }
    }

    pub fn mode(&self) -> Mode {
        if self.commit.is_some() { Mode::Batched } else { Mode::Transaction }
    }

    /// Commits a batched run's work so far; every commit ends a transaction, so the longest
    /// gap between two is the run's longest transaction.
    pub(super) fn commit(&self) {
        if let Some(commit) = self.commit {
            commit();
            let elapsed = self.last_commit.get().elapsed().as_secs_f64() * 1000.0;
            self.longest_ms.set(self.longest_ms.get().max(elapsed));
            self.last_commit.set(Instant::now());
        }
    }

    /// Restarts the transaction clock: what came since the last commit held nothing (the
    /// Twilio calls of a batched run) and is no transaction to count.
    pub(super) fn idle_until_now(&self) {
        self.last_commit.set(Instant::now());
    }

    pub(super) fn longest_ms(&self) -> Option<f64> {
        self.commit.map(|_| self.longest_ms.get())
    }

    /// A step of a batched run runs in a subtransaction, so that its failure can be recorded
    /// and committed before the error goes on. In the caller's transaction an error simply
    /// goes up: the whole run is one subtransaction there (see `run`).
    pub(super) fn step<R>(&self, work: impl FnOnce() -> R) -> Result<R, Box<CaughtError>> {
        match self.commit {
            Some(_) => in_subtransaction(AssertUnwindSafe(work)),
            None => Ok(work()),
        }
    }
}
