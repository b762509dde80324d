//! Every `pg_retention.*` setting: one static each, registered in `init()`.
//! Read them on the backend's main thread only; helper threads get plain Rust values.

use std::ffi::{CStr, CString};

use pgrx::{pg_sys, GucContext, GucFlags, GucRegistry, GucSetting};

use crate::limits::MAX_DAYS;
use crate::twilio;

/// Days of run history to keep in `retention.runs`; older rows are pruned at the start of each run.
pub static HISTORY_RETENTION_DAYS: GucSetting<i32> = GucSetting::<i32>::new(90);

/// The Twilio account whose recordings are deleted (`AC` + 32 hex digits).
pub static TWILIO_ACCOUNT_SID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The account's auth token. Secret: superuser-only, hidden from SHOW ALL and pg_settings.
pub static TWILIO_AUTH_TOKEN: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// An API key SID (`SK` + 32 hex digits), used with its secret instead of the auth token.
pub static TWILIO_API_KEY_SID: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// The API key's secret. Secret, like the auth token.
pub static TWILIO_API_KEY_SECRET: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

/// Where Twilio's API is. Plain http only to a loopback host (a test double).
pub static TWILIO_BASE_URL: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"https://api.twilio.com"));

/// Milliseconds to wait for a connection to Twilio.
pub static TWILIO_CONNECT_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(5_000);

/// Milliseconds one Twilio call may take in all, connection included.
pub static TWILIO_TIMEOUT_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

/// Twilio calls in flight at once.
pub static TWILIO_CONCURRENCY: GucSetting<i32> = GucSetting::<i32>::new(8);

/// Attempts per recording when Twilio answers 429, the first included.
pub static TWILIO_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);

/// Cap, in milliseconds, on a wait after a 429 (`Retry-After` included); also the wait when
/// a 429 carries no `Retry-After`, at a tenth of it.
pub static TWILIO_MAX_BACKOFF_MS: GucSetting<i32> = GucSetting::<i32>::new(30_000);

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
    GucRegistry::define_string_guc(
        c"pg_retention.twilio_account_sid",
        c"Twilio Account SID whose recordings are deleted.",
        c"AC followed by 32 hex digits.",
        &TWILIO_ACCOUNT_SID,
        GucContext::Suset,
        GucFlags::default(),
    );
    for (name, setting, description) in [
        (c"pg_retention.twilio_auth_token", &TWILIO_AUTH_TOKEN, c"Twilio auth token (secret)."),
        (c"pg_retention.twilio_api_key_secret", &TWILIO_API_KEY_SECRET, c"Twilio API key secret (secret)."),
    ] {
        GucRegistry::define_string_guc(
            name,
            description,
            c"Superuser-only; never shown by SHOW ALL or pg_settings.",
            setting,
            GucContext::Suset,
            GucFlags::SUPERUSER_ONLY | GucFlags::NO_SHOW_ALL,
        );
    }
    GucRegistry::define_string_guc(
        c"pg_retention.twilio_api_key_sid",
        c"Twilio API key SID, used with its secret instead of the auth token.",
        c"SK followed by 32 hex digits.",
        &TWILIO_API_KEY_SID,
        GucContext::Suset,
        GucFlags::default(),
    );
    define_base_url();
    for (name, setting, description, min, max) in [
        (c"pg_retention.twilio_connect_timeout_ms", &TWILIO_CONNECT_TIMEOUT_MS, c"Milliseconds to wait for a connection to Twilio.", 10, 600_000),
        (c"pg_retention.twilio_timeout_ms", &TWILIO_TIMEOUT_MS, c"Milliseconds one Twilio call may take in all.", 10, 600_000),
        (c"pg_retention.twilio_concurrency", &TWILIO_CONCURRENCY, c"Twilio calls in flight at once.", 1, 64),
        (c"pg_retention.twilio_max_attempts", &TWILIO_MAX_ATTEMPTS, c"Attempts per recording when Twilio answers 429.", 1, 10),
        (c"pg_retention.twilio_max_backoff_ms", &TWILIO_MAX_BACKOFF_MS, c"Cap on a wait after a 429, in milliseconds.", 0, 600_000),
    ] {
        GucRegistry::define_int_guc(name, description, c"", setting, min, max, GucContext::Suset, GucFlags::default());
    }
}

/// The base URL has a check hook, so a bad value is refused when it is set.
fn define_base_url() {
    // SAFETY: registering a GUC with a static setting and a check hook, as DefineCustomStringVariable expects.
    unsafe {
        pg_sys::DefineCustomStringVariable(
            c"pg_retention.twilio_base_url".as_ptr(),
            c"Base URL of Twilio's API.".as_ptr(),
            c"https://api.twilio.com unless testing; plain http only to a loopback host.".as_ptr(),
            TWILIO_BASE_URL.as_ptr().cast(),
            c"https://api.twilio.com".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            0,
            Some(check_base_url),
            None,
            None,
        );
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn check_base_url(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let value = if newval.is_null() || (*newval).is_null() { "" } else { CStr::from_ptr(*newval).to_str().unwrap_or("") };
    match twilio::check_base_url(value) {
        Ok(()) => true,
        Err(problem) => {
            let detail = CString::new(problem).unwrap_or_default();
            pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(detail.as_ptr());
            false
        }
    }
}

/// A string setting as Rust text; empty counts as unset.
pub fn text(setting: &GucSetting<Option<CString>>) -> Option<String> {
    setting.get().and_then(|s| s.into_string().ok()).filter(|s| !s.trim().is_empty())
}
