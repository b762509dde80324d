//! The settings of a run's external calls, read on this (the main) thread and handed to the
//! clients as plain values: the Twilio store's account, credentials and base URL (the
//! `pg_retention.twilio_*` settings for the store `twilio`, the store's own fields over them
//! otherwise), the S3 store's, and the limits every call of a run shares.

use std::time::Duration;

use crate::error::invalid;
use crate::settings;
use crate::store::{server_files, Store};
use crate::twilio;

/// Timeouts, concurrency and 429/503 retries of every external call of a run.
pub struct Limits {
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: twilio::RetryPolicy,
}

pub fn limits() -> Limits {
    let millis = |setting: &pgrx::GucSetting<i32>| Duration::from_millis(setting.get().max(0) as u64);
    let max_backoff = millis(&settings::TWILIO_MAX_BACKOFF_MS);
    Limits {
        connect_timeout: millis(&settings::TWILIO_CONNECT_TIMEOUT_MS),
        timeout: millis(&settings::TWILIO_TIMEOUT_MS),
        concurrency: settings::TWILIO_CONCURRENCY.get().max(1) as usize,
        retry: twilio::RetryPolicy { attempts: settings::TWILIO_MAX_ATTEMPTS.get().max(1) as u32, default_backoff: max_backoff / 10, max_backoff },
    }
}

/// The Twilio client's settings for a policy's Twilio store.
pub fn twilio_config(policy: &crate::policy::Policy, bounds: twilio::Bounds) -> twilio::ClientConfig {
    let store = Store::load(&policy.twilio_store, &policy.name);
    let missing = |setting: &str, what: &str| -> ! {
        invalid(
            format!("{setting} is not set: {what}"),
            Some("Set it in postgresql.conf or with ALTER SYSTEM, then SELECT pg_reload_conf(). Nothing was read or sent."),
        )
    };
    let account_sid = store
        .account_sid
        .clone()
        .or_else(|| settings::text(&settings::TWILIO_ACCOUNT_SID))
        .unwrap_or_else(|| missing("pg_retention.twilio_account_sid", "the Twilio Account SID whose recordings are deleted"));
    if !twilio::is_account_sid(&account_sid) {
        invalid("pg_retention.twilio_account_sid must be AC followed by 32 hex digits".into(), None)
    }
    let username = match store.api_key_sid.clone().or_else(|| settings::text(&settings::TWILIO_API_KEY_SID)) {
        Some(key_sid) => {
            if !twilio::is_api_key_sid(&key_sid) {
                invalid("pg_retention.twilio_api_key_sid must be SK followed by 32 hex digits".into(), None)
            }
            key_sid
        }
        None => account_sid.clone(),
    };
    let secret_file = store.secret_file.clone().or_else(|| settings::text(&settings::TWILIO_SECRET_FILE)).unwrap_or_else(|| {
        missing(twilio::secret::SETTING, "the file holding the account's auth token (or the API key's secret, with pg_retention.twilio_api_key_sid)")
    });
    let (data_dir, server_uid) = server_files();
    let password = twilio::secret::read(&secret_file, std::path::Path::new(&data_dir), server_uid).unwrap_or_else(|problem| {
        invalid(
            problem,
            Some("The file must be owned by the server's OS user with mode 0600 (chmod 0600), or by root with mode 0640. Nothing was read or sent."),
        )
    });
    let base_url = store.endpoint.clone().unwrap_or_else(settings::twilio_base_url);
    if let Err(problem) = twilio::check_base_url(&base_url) {
        invalid(format!("pg_retention.twilio_base_url: {problem}"), None)
    }
    let limits = limits();
    twilio::ClientConfig {
        base_url,
        credentials: twilio::Credentials { account_sid, username, password },
        connect_timeout: limits.connect_timeout,
        timeout: limits.timeout,
        concurrency: limits.concurrency,
        retry: limits.retry,
        bounds,
        transcriptions: policy.transcriptions,
    }
}
