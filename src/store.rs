//! Every statement on `retention.stores`, and what a store is: a Twilio account or an S3 bucket
//! named once by a superuser, which recordings policies name. The store `twilio` is the
//! `pg_retention.twilio_*` settings and stays as `CREATE EXTENSION` made it. A store names its
//! secret file, never the secret: the file is read by each run under the secret-file rules.

use pgrx::prelude::*;

use crate::error::{invalid, raise, spi};
use crate::policy::{Policy, PolicyRow};
use crate::s3;
use crate::twilio;

/// The store every recordings policy names unless told otherwise: the settings.
pub const DEFAULT_TWILIO: &str = "twilio";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Twilio,
    S3,
}

impl std::str::FromStr for Kind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "twilio" => Ok(Kind::Twilio),
            "s3" => Ok(Kind::S3),
            other => Err(format!("kind must be 'twilio' or 's3', not '{other}'")),
        }
    }
}

/// A row of `retention.stores`.
#[derive(Debug, Clone)]
pub struct Store {
    pub name: String,
    pub kind: Kind,
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    pub addressing: s3::Addressing,
    pub account_sid: Option<String>,
    pub api_key_sid: Option<String>,
    pub secret_file: Option<String>,
}

impl Store {
    fn from_row(row: &impl PolicyRow) -> Store {
        let text = |column: &str| row.column::<String>(column).unwrap_or(None);
        let name = text("name").unwrap_or_default();
        let parsed = |column: &str, value: Option<String>| -> String {
            value.unwrap_or_else(|| invalid(format!("store \"{name}\": {column} must not be NULL"), None))
        };
        let kind = parsed("kind", text("kind")).parse().unwrap_or_else(|e: String| invalid(format!("store \"{name}\": {e}"), None));
        let addressing = parsed("addressing", text("addressing")).parse().unwrap_or_else(|e: String| invalid(format!("store \"{name}\": {e}"), None));
        Store {
            kind,
            endpoint: text("endpoint"),
            region: text("region"),
            bucket: text("bucket"),
            addressing,
            account_sid: text("account_sid"),
            api_key_sid: text("api_key_sid"),
            secret_file: text("secret_file"),
            name,
        }
    }

    /// The store named `name`, or an error naming the policy that names it.
    pub fn load(name: &str, policy: &str) -> Store {
        let found = spi(Spi::connect(|client| {
            let rows = client.select("SELECT * FROM retention.stores WHERE name OPERATOR(pg_catalog.=) $1", Some(1), &[name.into()])?;
            Ok::<_, pgrx::spi::Error>(rows.into_iter().next().map(|row| Store::from_row(&row)))
        }));
        found.unwrap_or_else(|| {
            raise(
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                format!("retention policy \"{policy}\": store \"{name}\" does not exist"),
                Some("SELECT name, kind FROM retention.stores lists the stores; a superuser adds one with INSERT INTO retention.stores.".into()),
            )
        })
    }

    /// Every field as its kind needs it. The secret file is not read here but by each run (and
    /// `preview`): a restore onto a host that does not have it yet must not fail.
    fn check(&self) {
        let name = &self.name;
        let problem = |message: String| -> ! { invalid(format!("store \"{name}\": {message}"), None) };
        if name.trim().is_empty() {
            invalid("a store's name must not be empty".into(), None);
        }
        if let Some(endpoint) = &self.endpoint {
            if let Err(why) = twilio::check_base_url(endpoint) {
                problem(format!("endpoint: {why}"));
            }
        }
        match self.kind {
            Kind::Twilio => {
                if self.region.is_some() || self.bucket.is_some() {
                    problem("region and bucket are for s3 stores".into());
                }
                if self.account_sid.as_deref().is_some_and(|sid| !twilio::is_account_sid(sid)) {
                    problem("account_sid must be AC followed by 32 hex digits".into());
                }
                if self.api_key_sid.as_deref().is_some_and(|sid| !twilio::is_api_key_sid(sid)) {
                    problem("api_key_sid must be SK followed by 32 hex digits".into());
                }
            }
            Kind::S3 => {
                if self.account_sid.is_some() || self.api_key_sid.is_some() {
                    problem("account_sid and api_key_sid are for twilio stores".into());
                }
                if self.endpoint.is_none() {
                    problem("an s3 store needs its endpoint, such as https://s3.eu-west-1.amazonaws.com".into());
                }
                match &self.region {
                    Some(region) if !region.is_empty() && region.len() <= 32 && region.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') => {}
                    _ => problem("an s3 store needs its region, such as eu-west-1".into()),
                }
                match &self.bucket {
                    Some(bucket) if is_bucket_name(bucket) => {}
                    _ => problem("bucket must be an S3 bucket name: 3 to 63 lowercase letters, digits, dots and hyphens".into()),
                }
                if self.secret_file.is_none() {
                    problem("an s3 store needs its secret_file, in the AWS shared-credentials format".into());
                }
            }
        }
    }

    /// The S3 credentials, read from the secret file now (a run reads them at its start, so a
    /// rotated temporary key is used once written).
    fn s3_credentials(&self) -> s3::Credentials {
        let name = &self.name;
        let Some(file) = &self.secret_file else { invalid(format!("store \"{name}\": an s3 store needs its secret_file"), None) };
        let (data_dir, uid) = server_files();
        let hint = Some("The file must be owned by the server's OS user with mode 0600, or by root with mode 0640, in the AWS shared-credentials format.");
        let text = twilio::secret::read_file(file, std::path::Path::new(&data_dir), uid, "secret_file")
            .unwrap_or_else(|why| invalid(format!("store \"{name}\": {why}"), hint));
        s3::credentials::parse(&text).unwrap_or_else(|why| invalid(format!("store \"{name}\": secret_file \"{file}\": {why}"), hint))
    }

    /// A run's S3 client settings: the store's, with the Twilio settings' timeouts, concurrency
    /// and retries (one set of settings paces every external call of a run).
    pub fn s3_config(&self, versions: s3::Versions) -> s3::Config {
        let twilio = crate::engine::twilio_limits();
        s3::Config {
            endpoint: self.endpoint.clone().unwrap_or_default(),
            region: self.region.clone().unwrap_or_default(),
            bucket: self.bucket.clone().unwrap_or_default(),
            addressing: self.addressing,
            credentials: self.s3_credentials(),
            connect_timeout: twilio.connect_timeout,
            timeout: twilio.timeout,
            concurrency: twilio.concurrency,
            retry: twilio.retry,
            versions,
        }
    }
}

/// S3's bucket naming rules (the DNS-compatible ones every region takes).
pub fn is_bucket_name(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !bucket.contains("..")
}

/// The data directory (where relative secret files are) and the server's OS user.
pub fn server_files() -> (String, u32) {
    // SAFETY: DataDir is set at server start and never changes; geteuid has no preconditions.
    unsafe { (std::ffi::CStr::from_ptr(pg_sys::DataDir).to_string_lossy().into_owned(), libc::geteuid()) }
}

/// The trigger on `retention.stores`: only a superuser writes a store (it names a file the
/// server reads); the default store stays as made; a store a policy names is neither removed
/// nor renamed.
pub fn validate(old: Option<&impl PolicyRow>, new: Option<&impl PolicyRow>) {
    // SAFETY: superuser() reads the current role's attributes; no preconditions.
    if !unsafe { pg_sys::superuser() } {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "only a superuser may add, change or remove a store: a store names a file the server reads".into(),
            None,
        )
    }
    if let Some(old) = old.map(Store::from_row) {
        if old.name == DEFAULT_TWILIO {
            invalid(
                format!("store \"{DEFAULT_TWILIO}\" is the pg_retention.twilio_* settings and cannot be changed or removed"),
                Some("Change the settings, or add a store of your own and name it in the policies' twilio_store."),
            );
        }
        let renamed_or_removed = new.map(|new| Store::from_row(new).name != old.name).unwrap_or(true);
        let named_by = spi(Spi::get_one_with_args::<String>(
            "SELECT pg_catalog.string_agg(name, ', ' ORDER BY name) FROM retention.policies
              WHERE twilio_store OPERATOR(pg_catalog.=) $1 OR s3_store OPERATOR(pg_catalog.=) $1",
            &[old.name.as_str().into()],
        ));
        if let (true, Some(policies)) = (renamed_or_removed, named_by) {
            invalid(format!("store \"{}\" is named by retention policies {policies}", old.name), Some("Point them at another store first (alter_policy)."));
        }
    }
    if let Some(new) = new {
        Store::from_row(new).check();
    }
}

/// A recordings policy's stores: its Twilio store is one, its S3 store (if any) is one, with
/// the key columns its rows' objects are named in.
pub fn check_policy(policy: &Policy) {
    let name = &policy.name;
    let twilio = Store::load(&policy.twilio_store, name);
    if twilio.kind != Kind::Twilio {
        invalid(format!("retention policy \"{name}\": twilio_store \"{}\" is an s3 store", twilio.name), None);
    }
    match (&policy.s3_store, policy.s3_key_columns.is_empty()) {
        (None, true) => {}
        (None, false) => invalid(format!("retention policy \"{name}\": s3_key_columns needs s3_store"), None),
        (Some(_), true) => invalid(
            format!("retention policy \"{name}\": s3_store needs s3_key_columns, the columns holding each row's object keys"),
            Some("For example s3_key_columns => ARRAY['recording_key']."),
        ),
        (Some(store), false) => {
            if Store::load(store, name).kind != Kind::S3 {
                invalid(format!("retention policy \"{name}\": s3_store \"{store}\" is a twilio store"), None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_follow_s3_s_rules() {
        for good in ["media", "acme-call-media", "call.media.example", "a1b"] {
            assert!(is_bucket_name(good), "{good}");
        }
        for bad in ["me", "Media", "media_bucket", "-media", "media-", "call..media", &"a".repeat(64), "media/x", "médià"] {
            assert!(!is_bucket_name(bad), "{bad}");
        }
    }

    #[test]
    fn kinds_are_parsed_with_errors_not_defaults() {
        assert_eq!("twilio".parse::<Kind>(), Ok(Kind::Twilio));
        assert_eq!("s3".parse::<Kind>(), Ok(Kind::S3));
        assert!("S3".parse::<Kind>().unwrap_err().contains("'twilio' or 's3'"));
        assert!("virtual".parse::<s3::Addressing>().is_ok() && "host".parse::<s3::Addressing>().is_err());
        assert!("markers".parse::<s3::Versions>().is_ok() && "none".parse::<s3::Versions>().is_err());
    }
}
