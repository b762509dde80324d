//! What pg_retention's processes wait on, as `pg_stat_activity.wait_event` names it. From
//! PostgreSQL 17 an extension registers wait events of its own (`WaitEventExtensionNew`), so a
//! DBA sees `RetentionLauncherMain` rather than a bare `Extension`; before 17 every extension's
//! wait is the one `Extension` event, which is what 15 and 16 show.

use std::ffi::CStr;
use std::time::Duration;

use pgrx::prelude::*;

#[derive(Clone, Copy)]
pub enum WaitEvent {
    /// The launcher between its rounds over `pg_retention.database`.
    LauncherMain,
    /// A run pacing itself between batches (`pg_retention.batch_pause`, a Twilio back-off).
    Pace,
}

impl WaitEvent {
    fn name(self) -> &'static CStr {
        match self {
            WaitEvent::LauncherMain => c"RetentionLauncherMain",
            WaitEvent::Pace => c"RetentionPace",
        }
    }

    /// The event's id for `WaitLatch`: registered once per cluster, looked up in shared memory
    /// after that (a short shared lock; these waits last hundreds of milliseconds or more).
    #[cfg(any(feature = "pg17", feature = "pg18"))]
    pub fn id(self) -> u32 {
        // SAFETY: called in a backend or worker attached to shared memory; the name is static,
        // NUL-terminated and shorter than NAMEDATALEN.
        unsafe { pg_sys::WaitEventExtensionNew(self.name().as_ptr()) }
    }

    #[cfg(not(any(feature = "pg17", feature = "pg18")))]
    pub fn id(self) -> u32 {
        let _ = self.name();
        pg_sys::PG_WAIT_EXTENSION
    }
}

/// Sleeps for `timeout` or until the latch is set (every signal handler sets it), as `event`;
/// false when the postmaster has died.
pub fn sleep(event: WaitEvent, timeout: Duration) -> bool {
    let millis = timeout.as_millis().min(i32::MAX as u128) as std::ffi::c_long;
    let events = (pg_sys::WL_LATCH_SET | pg_sys::WL_TIMEOUT | pg_sys::WL_POSTMASTER_DEATH) as i32;
    // SAFETY: MyLatch is this process's own latch; it is reset after the wait as WaitLatch's
    // callers must, so the next set is not lost.
    let woke = unsafe {
        let woke = pg_sys::WaitLatch(pg_sys::MyLatch, events, millis, event.id());
        pg_sys::ResetLatch(pg_sys::MyLatch);
        woke
    };
    pgrx::check_for_interrupts!();
    woke & pg_sys::WL_POSTMASTER_DEATH as i32 == 0
}
