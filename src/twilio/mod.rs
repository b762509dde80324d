//! The Twilio client: `DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json` with
//! HTTP Basic auth, under the recording's own account (`accounts`), and what each answer means
//! for the row. No pgrx here: this runs on helper
//! threads that must never touch Postgres.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use base64::Engine as _;

pub use accounts::Account;
use accounts::Reachable;

/// `RE` + 32 hex digits, as in Twilio's OpenAPI spec (`^RE[0-9a-fA-F]{32}$`).
pub fn is_recording_sid(sid: &str) -> bool {
    has_sid_shape(sid, "RE")
}

/// `AC` + 32 hex digits.
pub fn is_account_sid(sid: &str) -> bool {
    has_sid_shape(sid, "AC")
}

/// `SK` + 32 hex digits: an API key, used with its secret instead of the auth token.
pub fn is_api_key_sid(sid: &str) -> bool {
    has_sid_shape(sid, "SK")
}

pub(crate) fn has_sid_shape(sid: &str, prefix: &str) -> bool {
    sid.len() == 34 && sid.starts_with(prefix) && sid[2..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// What one DELETE came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 204: deleted now.
    Deleted,
    /// 404: already gone (an earlier run deleted it, then died before marking the row).
    AlreadyGone,
    /// 401/403: wrong credentials or region. The whole run stops.
    Refused(u16),
    /// 429 after the retries the run allows.
    RateLimited,
    /// 5xx: try again next run.
    ServerError(u16),
    /// Connect or overall timeout.
    Timeout,
    /// Refused, reset or otherwise broken connection.
    ConnectionError(String),
    /// Any other status: a request Twilio will not take; logged.
    BadRequest(u16, String),
    /// Not sent, or a 404 that proves nothing, because of the account (`accounts`): the
    /// status if there was an answer, and why.
    AccountUnverified(Option<u16>, String),
    /// Not sent: the recording's transcriptions are not all confirmed gone (`transcriptions`);
    /// the status of the answer that decided it, if any, and why.
    TranscriptionsLeft(Option<u16>, String),
    /// Not sent: the row's S3 objects are not all confirmed gone (`s3_store`).
    ObjectsLeft(Option<u16>, String),
}

impl Answer {
    /// Twilio confirmed the media is gone: only these mark the row.
    pub fn confirms_deletion(&self) -> bool {
        matches!(self, Answer::Deleted | Answer::AlreadyGone)
    }

    /// The key of the failure count in a run's result (`rate_limited`, ...); None if not a failure.
    pub fn failure_kind(&self) -> Option<&'static str> {
        match self {
            Answer::Deleted | Answer::AlreadyGone | Answer::Refused(_) => None,
            Answer::RateLimited => Some("rate_limited"),
            Answer::ServerError(_) => Some("server_error"),
            Answer::Timeout => Some("timeout"),
            Answer::ConnectionError(_) => Some("connection_error"),
            Answer::BadRequest(..) => Some("bad_request"),
            Answer::AccountUnverified(..) => Some("account_unverified"),
            Answer::TranscriptionsLeft(..) => Some("transcriptions_left"),
            Answer::ObjectsLeft(..) => Some("objects_left"),
        }
    }
}

/// One recording's answer, with Twilio's id of the request that got it (`Twilio-Request-Id`,
/// when Twilio sent one: support can find the call by it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub answer: Answer,
    pub request_id: Option<String>,
    /// The account whose path the requests took (None: not sent).
    pub account: Option<String>,
    /// With `transcriptions`: each of the recording's transcriptions, as Twilio answered its DELETE.
    pub transcriptions: Vec<transcriptions::Deletion>,
}

/// A recording's outcome as `retention.recording_outcomes` records it: `deleted`,
/// `already_gone` or `failed`, the HTTP status if there was one, and why it failed.
pub fn outcome(answer: &Answer) -> (&'static str, Option<u16>, Option<String>) {
    match answer {
        Answer::Deleted => ("deleted", Some(204), None),
        Answer::AlreadyGone => ("already_gone", Some(404), None),
        Answer::Refused(status) => ("failed", Some(*status), Some("Twilio refused the credentials".into())),
        Answer::RateLimited => ("failed", Some(429), Some("rate_limited: still 429 after the attempts allowed".into())),
        Answer::ServerError(status) => ("failed", Some(*status), Some(format!("server_error: HTTP {status}"))),
        Answer::Timeout => ("failed", None, Some("timeout".into())),
        Answer::ConnectionError(message) => ("failed", None, Some(format!("connection_error: {message}"))),
        Answer::BadRequest(status, body) => ("failed", Some(*status), Some(format!("bad_request: HTTP {status}: {body}"))),
        Answer::AccountUnverified(status, why) => ("failed", *status, Some(format!("account_unverified: {why}"))),
        Answer::TranscriptionsLeft(status, why) => ("failed", *status, Some(format!("transcriptions_left: {why}"))),
        Answer::ObjectsLeft(status, why) => ("failed", *status, Some(format!("objects_left: {why}"))),
    }
}

/// What to do with an HTTP answer: a final answer, or wait and ask again (429).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Final(Answer),
    RetryAfter(Duration),
}

/// The product's status table. `retry_after` is the raw `Retry-After` header, if any.
pub fn decide(status: u16, retry_after: Option<&str>, body: &str, policy: &RetryPolicy) -> Decision {
    match status {
        204 | 200 => Decision::Final(Answer::Deleted),
        404 => Decision::Final(Answer::AlreadyGone),
        401 | 403 => Decision::Final(Answer::Refused(status)),
        429 => Decision::RetryAfter(policy.wait(retry_after, policy.default_backoff)),
        500..=599 => Decision::Final(Answer::ServerError(status)),
        _ => Decision::Final(Answer::BadRequest(status, body.chars().take(200).collect())),
    }
}

/// How a 429 is retried within one run.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts per recording, the first included.
    pub attempts: u32,
    /// Wait when a 429 carries no usable `Retry-After`.
    pub default_backoff: Duration,
    /// Cap on any wait, `Retry-After` included.
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// How long to wait before asking again: the raw `Retry-After` header's seconds if usable,
    /// `otherwise` if not, either capped at `max_backoff`.
    pub fn wait(&self, retry_after: Option<&str>, otherwise: Duration) -> Duration {
        // Capped before converting: Duration::from_secs_f64 panics past its range (1e20).
        let wait = retry_after
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(self.max_backoff.as_secs_f64())))
            .unwrap_or(otherwise);
        wait.min(self.max_backoff)
    }
}

/// HTTP Basic credentials: the Account SID with its auth token, or an API key SID with its secret.
#[derive(Clone)]
pub struct Credentials {
    pub account_sid: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    // Never print the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("account_sid", &self.account_sid).field("username", &self.username).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub base_url: String,
    pub credentials: Credentials,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    pub concurrency: usize,
    pub retry: RetryPolicy,
    pub bounds: Bounds,
    /// Delete each recording's transcriptions first (`transcriptions`).
    pub transcriptions: bool,
}

/// When a run's Twilio calls stop before the work is done, leaving the rest for the next run.
#[derive(Debug, Clone, Default)]
pub struct Bounds {
    /// After this many recordings in a row still rate-limited after every attempt (0: never).
    pub max_rate_limited: usize,
    /// No call starts after this instant.
    pub deadline: Option<std::time::Instant>,
}

/// Why a run's Twilio calls stopped early (`Client::bound_reached`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundReached {
    RateLimited(usize),
    Deadline,
}

/// Checks a base URL: https anywhere, plain http only to a loopback host.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| format!("\"{url}\" is not a URL (it needs https://)"))?;
    let host = host_of(rest);
    match scheme {
        "https" if !host.is_empty() => Ok(()),
        "http" if is_loopback(host) => Ok(()),
        "http" => Err(format!("plain http is only allowed to a loopback host (127.0.0.1, ::1, localhost), not \"{host}\"")),
        _ => Err(format!("\"{url}\" must start with https:// (or http:// to a loopback host)")),
    }
}

fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map(|(_, h)| h).unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    authority.split(':').next().unwrap_or("")
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

/// One recording to delete: its SID and whose it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub sid: String,
    pub account: Account,
}

/// The request path for one recording, as the OpenAPI spec has it.
pub fn recording_path(account_sid: &str, recording_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}.json")
}

pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    authorization: String,
    /// Recordings in a row, across the run's batches, that ended rate-limited.
    rate_limited_in_a_row: AtomicUsize,
    /// Requests sent and not yet answered, for `retention.progress`.
    in_flight: AtomicUsize,
    /// The accounts the credentials reach, listed the first time a decision needs them.
    reachable: OnceLock<Reachable>,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        let agent = agent(config.connect_timeout, config.timeout);
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.credentials.username, config.credentials.password));
        Client { agent, config, authorization: format!("Basic {token}"), rate_limited_in_a_row: AtomicUsize::new(0), in_flight: AtomicUsize::new(0), reachable: OnceLock::new() }
    }

    /// The account the credentials are of (its store's, or the settings').
    pub fn account_sid(&self) -> &str {
        &self.config.credentials.account_sid
    }

    /// Whether one of the run's bounds is reached: then no further call starts.
    pub fn bound_reached(&self) -> Option<BoundReached> {
        let in_a_row = self.rate_limited_in_a_row.load(Ordering::Relaxed);
        let max = self.config.bounds.max_rate_limited;
        if max > 0 && in_a_row >= max {
            Some(BoundReached::RateLimited(in_a_row))
        } else if self.config.bounds.deadline.is_some_and(|deadline| std::time::Instant::now() >= deadline) {
            Some(BoundReached::Deadline)
        } else {
            None
        }
    }

    fn count_rate_limited(&self, answer: &Answer) {
        if *answer == Answer::RateLimited {
            self.rate_limited_in_a_row.fetch_add(1, Ordering::Relaxed);
        } else {
            self.rate_limited_in_a_row.store(0, Ordering::Relaxed);
        }
    }

    /// Deletes one recording under its account, retrying 429s as the retry policy allows. A
    /// 404 counts as already gone only where it proves it (`accounts::not_found_is_gone`).
    pub fn delete_recording(&self, target: &Target) -> Reply {
        let main = &self.config.credentials.account_sid;
        let reachable = || self.reachable();
        let account = match accounts::route(main, &target.account, &reachable) {
            Ok(account) => account,
            Err(why) => return Reply { answer: Answer::AccountUnverified(None, why), request_id: None, account: None, transcriptions: Vec::new() },
        };
        let mut transcriptions = Vec::new();
        if self.config.transcriptions {
            if let Err((answer, request_id)) = self.delete_transcriptions(&account, target, &mut transcriptions) {
                return Reply { answer, request_id, account: Some(account), transcriptions };
            }
        }
        let (answer, request_id) = match self.exchange(Method::Delete, &recording_path(&account, &target.sid)) {
            Ok(http) => (http.answer, http.request_id),
            Err(failure) => failure,
        };
        let answer = match answer {
            Answer::AlreadyGone => match accounts::not_found_is_gone(main, &target.account, &reachable) {
                Ok(()) => Answer::AlreadyGone,
                Err(why) => Answer::AccountUnverified(Some(404), why),
            },
            answer => answer,
        };
        Reply { answer, request_id, account: Some(account), transcriptions }
    }

    /// One request, 429s retried as the retry policy allows: the final HTTP answer, or what
    /// ended it without one (a timeout, a broken connection, 429 after every attempt) with
    /// Twilio's id of the last request if it sent one.
    fn exchange(&self, method: Method, path: &str) -> Result<Http, (Answer, Option<String>)> {
        let url = format!("{}{path}", self.config.base_url.trim_end_matches('/'));
        let mut attempt = 1;
        loop {
            let request = match method {
                Method::Get => self.agent.get(&url).header("Authorization", &self.authorization).call(),
                Method::Delete => self.agent.delete(&url).header("Authorization", &self.authorization).call(),
            };
            let mut response = request.map_err(|error| (transport_failure(error), None))?;
            let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
            let request_id = header("Twilio-Request-Id").map(|v| v.chars().take(64).collect::<String>());
            let retry_after = header("Retry-After");
            let status = response.status().as_u16();
            let body = response.body_mut().read_to_string().unwrap_or_default();
            match decide(status, retry_after.as_deref(), &body, &self.config.retry) {
                Decision::RetryAfter(_) if attempt >= self.config.retry.attempts => return Err((Answer::RateLimited, request_id)),
                Decision::RetryAfter(wait) => {
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Decision::Final(answer) => return Ok(Http { status, body, request_id, answer }),
            }
        }
    }

    /// Deletes many recordings on at most `concurrency` helper threads (`helper_threads::run`);
    /// answers come back in input order. Stops starting new calls once Twilio refuses the
    /// credentials.
    pub fn delete_all(self: &Arc<Self>, targets: Vec<Target>, should_stop: &dyn Fn() -> bool) -> Result<Vec<Option<Reply>>, Stopped> {
        let total = targets.len();
        let stop = Arc::new(AtomicBool::new(false));
        let work = Arc::new(Work { targets, answers: Mutex::new(vec![None; total]), next: AtomicUsize::new(0), stop: stop.clone() });
        let threads = self.config.concurrency.clamp(1, total.max(1));
        let (client, shared) = (self.clone(), work.clone());
        // A thread that panicked leaves its recording without an answer: it counts as failed.
        crate::helper_threads::run(threads, move || client.delete_some(&shared), stop, should_stop)?;
        let answers = std::mem::take(&mut *work.answers.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(answers)
    }

    /// Recordings whose calls are under way now (helper threads are in them).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// One helper thread's share of `delete_all`: the next recording not taken, until none is
    /// left, a stop, or a bound reached (which leaves a suffix of `targets` unsent).
    fn delete_some(&self, work: &Work) {
        while !work.stop.load(Ordering::Relaxed) && self.bound_reached().is_none() {
            let i = work.next.fetch_add(1, Ordering::Relaxed);
            if i >= work.targets.len() {
                break;
            }
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            let reply = self.delete_recording(&work.targets[i]);
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            self.count_rate_limited(&reply.answer);
            if matches!(reply.answer, Answer::Refused(_)) {
                work.stop.store(true, Ordering::Relaxed);
            }
            work.answers.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(reply);
        }
    }
}

#[derive(Clone, Copy)]
enum Method {
    Get,
    Delete,
}

/// An HTTP answer, read whole, and what its status means for a recording (`decide`).
struct Http {
    status: u16,
    body: String,
    request_id: Option<String>,
    answer: Answer,
}

/// The HTTP agent of every external call (Twilio's, S3's): every status an answer, never a
/// proxy from the environment, never a redirect followed.
pub fn agent(connect_timeout: Duration, timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .timeout_connect(Some(connect_timeout))
        .timeout_global(Some(timeout))
        .user_agent(concat!("pg_retention/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent()
}

/// A request that got no HTTP answer.
fn transport_failure(error: ureq::Error) -> Answer {
    match error {
        ureq::Error::Timeout(_) => Answer::Timeout,
        ureq::Error::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => Answer::Timeout,
        e => Answer::ConnectionError(e.to_string()),
    }
}

pub use crate::helper_threads::Stopped;

/// The calls of one `delete_all`, shared with its threads.
struct Work {
    targets: Vec<Target>,
    answers: Mutex<Vec<Option<Reply>>>,
    next: AtomicUsize,
    stop: Arc<AtomicBool>,
}

pub mod accounts;
pub mod secret;
pub mod transcriptions;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transcription_tests;
