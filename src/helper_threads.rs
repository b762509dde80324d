//! The helper threads of a run's external calls (Twilio's, S3's): they never touch Postgres and
//! have every signal blocked, while the backend's own thread waits for them, watching for a
//! cancel or shutdown request. No pgrx here.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The calls were told to stop before every answer was in.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

/// Runs `job` on `threads` helper threads and waits for them: woken as each ends (returned or
/// panicked: a dead thread is never waited for), asking `should_stop` at least every 20 ms.
/// When it says stop, `stop` is set for the helpers to see and this returns `Err(Stopped)` at
/// once; the calls still in flight finish on their own, their answers unused.
pub fn run(threads: usize, job: impl Fn() + Send + Sync + 'static, stop: Arc<AtomicBool>, should_stop: &dyn Fn() -> bool) -> Result<(), Stopped> {
    let job = Arc::new(job);
    let (waiter, ended) = (std::thread::current(), Arc::new(AtomicUsize::new(0)));
    let mut handles = Vec::with_capacity(threads);
    for _ in 0..threads {
        let (job, wake) = (job.clone(), Wake(waiter.clone(), ended.clone()));
        handles.push(std::thread::spawn(move || {
            let _wake = wake;
            block_signals();
            job();
        }));
    }
    while ended.load(Ordering::Acquire) < threads && !handles.iter().all(std::thread::JoinHandle::is_finished) {
        if should_stop() {
            stop.store(true, Ordering::Relaxed);
            return Err(Stopped);
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
    Ok(())
}

/// Counts a helper thread's end and wakes the waiting thread, whether it returns or panics.
struct Wake(std::thread::Thread, Arc<AtomicUsize>);

impl Drop for Wake {
    fn drop(&mut self) {
        self.1.fetch_add(1, Ordering::Release);
        self.0.unpark();
    }
}

/// Signals belong to the backend's main thread: a SIGTERM handled on a helper thread would
/// run Postgres code there.
fn block_signals() {
    // SAFETY: plain libc calls on a local signal set.
    unsafe {
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, std::ptr::null_mut());
    }
}
