//! Every `pg_retention.*` setting: one static each, registered in `init()`.
//! Read them on the backend's main thread only; helper threads get plain Rust values.

use std::ffi::{CStr, CString};

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

use crate::limits::MAX_DAYS;
use crate::worker::database_list;
use crate::{schedule, twilio};

/// Defaults of the string settings that are never unset: also what an empty value means.
const DEFAULT_TWILIO_BASE_URL: &CStr = c"https://api.twilio.com";
const DEFAULT_DATABASE: &CStr = c"postgres";
const DEFAULT_TIMEZONE: &CStr = c"UTC";

/// Days of run history to keep in `retention.runs`; older rows are pruned at the start of each run.
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(90);

/// Days of deletion ledger to keep in `retention.ledger` (six years, HIPAA's period); older
/// entries are pruned when new ones are sealed.
pub static LEDGER_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(2190);

/// The Twilio account whose recordings are deleted (`AC` + 32 hex digits).
pub static TWILIO_ACCOUNT_SID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The file holding the Twilio secret: the auth token, or the API key's secret when
/// `twilio_api_key_sid` is set. Absolute, or relative to the data directory (see `twilio::secret`).
pub static TWILIO_SECRET_FILE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Retired in 0.3.0 (`pg_retention.twilio_auth_token`): defined only to refuse any value, with
/// an error that points at `twilio_secret_file` and never repeats the value.
static RETIRED_AUTH_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Retired in 0.3.0 (`pg_retention.twilio_api_key_secret`), like the auth token.
static RETIRED_API_KEY_SECRET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// An API key SID (`SK` + 32 hex digits), used with its secret instead of the auth token.
pub static TWILIO_API_KEY_SID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Where Twilio's API is. Plain http only to a loopback host (a test double).
pub static TWILIO_BASE_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_TWILIO_BASE_URL));

/// Milliseconds to wait for a connection to Twilio.
pub static TWILIO_CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);

/// Milliseconds one Twilio call may take in all, connection included.
pub static TWILIO_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// Twilio calls in flight at once.
pub static TWILIO_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(8);

/// Attempts per recording when Twilio answers 429, the first included.
pub static TWILIO_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);

/// Whether the background worker runs the enabled policies once a day. Off until a DBA says so.
pub static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(false);

/// The databases whose policies the worker runs, comma-separated: one worker each.
pub static DATABASE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_DATABASE));

/// The worker's time of day, `HH:MM`, in `pg_retention.timezone`.
pub static RUN_AT: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"03:00"));

/// The time zone `run_at` is read in.
pub static TIMEZONE: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(DEFAULT_TIMEZONE));

/// The worker's `lock_timeout`, in milliseconds: how long one of its batches waits for a row
/// an application holds locked (0: forever). A batch that times out is tried again later in
/// the run, then left for the next run.
pub static WORKER_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);

/// The `lock_timeout`, in milliseconds, of the statements that drop or detach a wholly expired
/// partition: they need an ACCESS EXCLUSIVE lock on the partition's parent, so they must not
/// queue live traffic behind them. A partition whose lock is not had in time is purged row by row.
pub static PARTITION_LOCK_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(1_000);

/// Cap, in milliseconds, on a wait after a 429 (`Retry-After` included); also the wait when
/// a 429 carries no `Retry-After`, at a tenth of it.
pub static TWILIO_MAX_BACKOFF_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// How many recordings in a row may end rate-limited (still 429 after every attempt) before a
/// run stops `failed` and leaves the rest for the next run (0: no limit).
pub static TWILIO_MAX_RATE_LIMITED: GucSetting<i32> = GucSetting::<i32>::new(100);

/// The longest a batched run (`CALL`, the worker) goes on, in seconds, before it stops
/// `failed` between batches and leaves the rest for the next run (0: no limit).
pub static MAX_RUN_DURATION_S: GucSetting<i32> = GucSetting::<i32>::new(12 * 3600);

pub fn init() {
    DEFINING.store(true, std::sync::atomic::Ordering::Relaxed);
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
    GucRegistry::define_int_guc(
        c"pg_retention.ledger_retention_days",
        c"Days of deletion ledger kept in retention.ledger.",
        c"Entries older than this are pruned when new ones are sealed; the first entry kept then names a pruned predecessor.",
        &LEDGER_RETENTION_DAYS,
        1,
        MAX_DAYS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_retention.twilio_account_sid",
        c"Twilio Account SID whose recordings are deleted.",
        c"AC followed by 32 hex digits.",
        &TWILIO_ACCOUNT_SID,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_string_guc(
        c"pg_retention.twilio_secret_file",
        c"File holding the Twilio auth token, or the API key secret when twilio_api_key_sid is set.",
        c"Absolute, or relative to the data directory; owned by the server's OS user, mode 0600. Read at each run.",
        &TWILIO_SECRET_FILE,
        GucContext::Suset,
        GucFlags::default(),
    );
    for (name, setting) in [
        (c"pg_retention.twilio_auth_token", &RETIRED_AUTH_TOKEN),
        (c"pg_retention.twilio_api_key_secret", &RETIRED_API_KEY_SECRET),
    ] {
        // SAFETY: the check hook is a #[pg_guard] function, as the registrar requires.
        unsafe {
            GucRegistry::define_string_guc_with_hooks(
                name,
                c"Retired: the Twilio secret is read from pg_retention.twilio_secret_file.",
                c"",
                setting,
                GucContext::Suset,
                GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
                Some(refuse_retired_secret),
                None,
                None,
            );
        }
    }
    GucRegistry::define_string_guc(
        c"pg_retention.twilio_api_key_sid",
        c"Twilio API key SID, used with its secret instead of the auth token.",
        c"SK followed by 32 hex digits.",
        &TWILIO_API_KEY_SID,
        GucContext::Suset,
        GucFlags::default(),
    );
    define_checked_string(
        c"pg_retention.twilio_base_url",
        c"Base URL of Twilio's API.",
        c"https://api.twilio.com unless testing; plain http only to a loopback host.",
        &TWILIO_BASE_URL,
        GucContext::Suset,
        check_base_url,
    );
    GucRegistry::define_bool_guc(
        c"pg_retention.worker_enabled",
        c"Whether the background worker runs the enabled policies once a day.",
        c"Needs pg_retention in shared_preload_libraries.",
        &WORKER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    define_checked_string(
        c"pg_retention.database",
        c"The databases whose retention policies the background worker runs (comma-separated).",
        c"One worker per database, started and stopped as the list changes on reload.",
        &DATABASE,
        GucContext::Sighup,
        check_database_list,
    );
    define_checked_string(
        c"pg_retention.run_at",
        c"Time of day (HH:MM, 24-hour) the background worker runs, in pg_retention.timezone.",
        c"",
        &RUN_AT,
        GucContext::Sighup,
        check_run_at,
    );
    define_checked_string(
        c"pg_retention.timezone",
        c"Time zone of pg_retention.run_at.",
        c"Any name Postgres knows, such as UTC or Europe/Paris.",
        &TIMEZONE,
        GucContext::Sighup,
        check_timezone,
    );
    for (name, setting, description, min, max) in [
        (c"pg_retention.twilio_connect_timeout_ms", &TWILIO_CONNECT_TIMEOUT_MS, c"Milliseconds to wait for a connection to Twilio.", 10, 600_000),
        (c"pg_retention.twilio_timeout_ms", &TWILIO_TIMEOUT_MS, c"Milliseconds one Twilio call may take in all.", 10, 600_000),
        (c"pg_retention.twilio_concurrency", &TWILIO_CONCURRENCY, c"Twilio calls in flight at once.", 1, 64),
        (c"pg_retention.twilio_max_attempts", &TWILIO_MAX_ATTEMPTS, c"Attempts per recording when Twilio answers 429.", 1, 10),
        (c"pg_retention.twilio_max_backoff_ms", &TWILIO_MAX_BACKOFF_MS, c"Cap on a wait after a 429, in milliseconds.", 0, 600_000),
        (c"pg_retention.twilio_max_rate_limited", &TWILIO_MAX_RATE_LIMITED, c"Recordings in a row still rate-limited after which a run stops (0: no limit).", 0, 1_000_000),
    ] {
        GucRegistry::define_int_guc(name, description, c"", setting, min, max, GucContext::Suset, GucFlags::default());
    }
    GucRegistry::define_int_guc(
        c"pg_retention.worker_lock_timeout",
        c"How long a batch of the background worker waits for a locked row (lock_timeout).",
        c"0 waits forever. A batch that times out is tried again later in the run, then left for the next run.",
        &WORKER_LOCK_TIMEOUT_MS,
        0,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_retention.partition_lock_timeout",
        c"How long dropping or detaching a wholly expired partition waits for its locks (lock_timeout).",
        c"A partition whose locks are not had in time is purged row by row instead, so live traffic never queues behind the run.",
        &PARTITION_LOCK_TIMEOUT_MS,
        1,
        600_000,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_retention.max_run_duration",
        c"How long a batched run may go on before it stops failed and leaves the rest (0: no limit).",
        c"Checked between batches and before each Twilio call; a run in one transaction is bounded by statement_timeout instead.",
        &MAX_RUN_DURATION_S,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    DEFINING.store(false, std::sync::atomic::Ordering::Relaxed);
}

type CheckHook = unsafe extern "C-unwind" fn(*mut *mut std::ffi::c_char, *mut *mut std::ffi::c_void, pg_sys::GucSource::Type) -> bool;

/// A string setting with a check hook, so a bad value is refused when it is set. Its boot
/// value is the static's own default.
fn define_checked_string(
    name: &'static CStr,
    short: &'static CStr,
    long: &'static CStr,
    setting: &'static GucSetting<Option<CString>>,
    context: GucContext,
    check: CheckHook,
) {
    // SAFETY: every check hook passed here is a #[pg_guard] function, as the registrar requires.
    unsafe {
        GucRegistry::define_string_guc_with_hooks(name, short, long, setting, context, GucFlags::default(), Some(check), None, None);
    }
}

/// # Safety
/// `newval` is what Postgres hands a string check hook: NULL, or a pointer to a C string
/// (or NULL) it owns.
/// Runs `check` on a new value; a problem becomes the DETAIL of Postgres' "invalid value" error.
unsafe fn check_with(newval: *mut *mut std::ffi::c_char, check: impl Fn(&str) -> Result<(), String>) -> bool {
    // SAFETY: per this function's contract, a non-NULL value is a valid C string.
    let value = unsafe { if newval.is_null() || (*newval).is_null() { "" } else { CStr::from_ptr(*newval).to_str().unwrap_or("") } };
    match check(value) {
        Ok(()) => true,
        Err(problem) => {
            let detail = CString::new(problem).unwrap_or_default();
            // SAFETY: GUC_check_errdetail_string takes a palloc'd string, which pstrdup makes.
            unsafe { pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr()) };
            false
        }
    }
}

const RETIRED_MESSAGE: &CStr = c"the Twilio secret is no longer a setting: it is read from the file named by pg_retention.twilio_secret_file";
const RETIRED_HINT: &CStr =
    c"Write the secret to a file owned by the server's OS user with mode 0600, set pg_retention.twilio_secret_file to its path, and remove this setting.";

/// True while `init` defines the settings: a retired setting's old value re-applied then only
/// warns, as Postgres does for any bad value at load.
static DEFINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Refuses any value of a retired secret setting, with a message of its own: Postgres' would
/// quote the value (the secret). Typed by a user (`SET`, `ALTER ROLE ... SET`, `ALTER SYSTEM`),
/// the refusal is raised here so that it can also keep the statement, which holds the secret,
/// out of the server log; elsewhere (a reload, a connection's stored settings) it is reported
/// by Postgres at its own level.
///
/// # Safety
/// Called by Postgres as a string setting's check hook.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn refuse_retired_secret(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    source: pg_sys::GucSource::Type,
) -> bool {
    use pg_sys::GucSource::{PGC_S_FILE, PGC_S_SESSION, PGC_S_TEST};
    // SAFETY: a non-NULL value from Postgres is a valid C string.
    if unsafe { newval.is_null() || (*newval).is_null() || *(*newval) == 0 } {
        return true; // unset: the boot value, or RESET
    }
    let typed = matches!(source, PGC_S_SESSION | PGC_S_TEST | PGC_S_FILE);
    // SAFETY: a plain read of this backend's transaction state.
    if typed && !DEFINING.load(std::sync::atomic::Ordering::Relaxed) && unsafe { pg_sys::IsTransactionState() } {
        // SAFETY: in a backend, in a transaction, as an ERROR from a check hook may be; this
        // frame holds nothing to drop.
        unsafe { raise_hiding_statement(RETIRED_MESSAGE, RETIRED_HINT) }
    }
    // SAFETY: GUC_check_errmsg_string and GUC_check_errhint_string take palloc'd strings.
    unsafe {
        pg_sys::GUC_check_errmsg_string = pg_sys::pstrdup(RETIRED_MESSAGE.as_ptr());
        pg_sys::GUC_check_errhint_string = pg_sys::pstrdup(RETIRED_HINT.as_ptr());
    }
    false
}

/// Raises ERROR `message` (invalid_parameter_value) with `hint`, marked so that the statement
/// that caused it is not written to the server log (`errhidestmt`). pgrx's reports cannot set
/// that mark, so this calls elog.c the way pgrx's own final report does.
///
/// # Safety
/// Must be called where an ERROR may be raised, from a frame with nothing left to drop: the
/// error leaves by longjmp.
unsafe fn raise_hiding_statement(message: &CStr, hint: &CStr) -> ! {
    unsafe extern "C-unwind" {
        fn errstart(elevel: std::ffi::c_int, domain: *const std::ffi::c_char) -> bool;
        fn errcode(sqlerrcode: std::ffi::c_int) -> std::ffi::c_int;
        fn errmsg(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
        fn errhint(fmt: *const std::ffi::c_char, ...) -> std::ffi::c_int;
        fn errhidestmt(hide_stmt: bool) -> std::ffi::c_int;
        fn errfinish(filename: *const std::ffi::c_char, lineno: std::ffi::c_int, funcname: *const std::ffi::c_char);
    }
    // SAFETY: elog.c's protocol: errstart, the fields, errfinish, which does not return for ERROR.
    unsafe {
        if errstart(pgrx::PgLogLevel::ERROR as std::ffi::c_int, std::ptr::null()) {
            errcode(pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE as std::ffi::c_int);
            errmsg(c"%s".as_ptr(), message.as_ptr());
            errhint(c"%s".as_ptr(), hint.as_ptr());
            errhidestmt(true);
            errfinish(c"settings.rs".as_ptr(), line!() as std::ffi::c_int, c"refuse_retired_secret".as_ptr());
        }
    }
    unreachable!("an ERROR report does not return")
}

/// # Safety
/// Called by Postgres as a string setting's check hook.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_base_url(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` comes from Postgres' GUC machinery.
    unsafe { check_with(newval, twilio::check_base_url) }
}

/// # Safety
/// Called by Postgres as a string setting's check hook.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_run_at(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` comes from Postgres' GUC machinery.
    unsafe { check_with(newval, |v| schedule::parse_run_at(v).map(|_| ())) }
}

/// # Safety
/// Called by Postgres as a string setting's check hook.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_timezone(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` comes from Postgres' GUC machinery.
    unsafe {
        check_with(newval, |v| {
        let name = CString::new(v).map_err(|_| "a time zone name has no NUL byte".to_string())?;
        // pg_tzset looks a name up in Postgres' time zone database; NULL if unknown.
        if !v.is_empty() && !pg_sys::pg_tzset(name.as_ptr()).is_null() {
            Ok(())
        } else {
            Err(format!("\"{v}\" is not a time zone Postgres knows (see pg_timezone_names)"))
        }
        })
    }
}

/// # Safety
/// Called by Postgres as a string setting's check hook.
#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_database_list(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    // SAFETY: `newval` comes from Postgres' GUC machinery.
    unsafe { check_with(newval, |v| if v.trim().is_empty() { Ok(()) } else { database_list::parse(v).map(|_| ()) }) }
}

/// A string setting as Rust text; empty counts as unset.
pub fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|s| s.into_string().ok()).filter(|s| !s.trim().is_empty())
}

fn text_or_default(setting: &GucSetting<Option<CString>>, default: &CStr) -> String {
    text(setting).unwrap_or_else(|| default.to_string_lossy().into_owned())
}

/// `pg_retention.twilio_base_url`.
pub fn twilio_base_url() -> String {
    text_or_default(&TWILIO_BASE_URL, DEFAULT_TWILIO_BASE_URL)
}

/// `pg_retention.database`: the databases the worker serves, in the order listed. Its check
/// hook refuses a list that does not parse.
pub fn databases() -> Vec<String> {
    database_list::parse(&text_or_default(&DATABASE, DEFAULT_DATABASE)).unwrap_or_default()
}

/// `pg_retention.timezone`.
pub fn timezone() -> String {
    text_or_default(&TIMEZONE, DEFAULT_TIMEZONE)
}

/// `pg_retention.run_at`; its check hook refuses a value that does not parse.
pub fn run_at() -> Option<chrono::NaiveTime> {
    text(&RUN_AT).and_then(|t| schedule::parse_run_at(&t).ok())
}
