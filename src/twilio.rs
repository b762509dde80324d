//! The Twilio client: `DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json` with
//! HTTP Basic auth, and what each answer means for the row. No pgrx here: this runs on helper
//! threads that must never touch Postgres.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

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

fn has_sid_shape(sid: &str, prefix: &str) -> bool {
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
        }
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
        429 => {
            let wait = retry_after
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .unwrap_or(policy.default_backoff);
            Decision::RetryAfter(wait.min(policy.max_backoff))
        }
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

/// The request path for one recording, as the OpenAPI spec has it.
pub fn recording_path(account_sid: &str, recording_sid: &str) -> String {
    format!("/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}.json")
}

pub struct Client {
    agent: ureq::Agent,
    config: ClientConfig,
    authorization: String,
}

impl Client {
    pub fn new(config: ClientConfig) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None) // never a proxy from the environment
            .max_redirects(0)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("pg_retention/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        let token = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.credentials.username, config.credentials.password));
        Client { agent, config, authorization: format!("Basic {token}") }
    }

    /// Deletes one recording, retrying 429s as the retry policy allows.
    pub fn delete_recording(&self, recording_sid: &str) -> Answer {
        let url = format!(
            "{}{}",
            self.config.base_url.trim_end_matches('/'),
            recording_path(&self.config.credentials.account_sid, recording_sid)
        );
        let mut attempt = 1;
        loop {
            let response = self.agent.delete(&url).header("Authorization", &self.authorization).call();
            let decision = match response {
                Ok(mut response) => {
                    let status = response.status().as_u16();
                    let retry_after = response.headers().get("Retry-After").and_then(|v| v.to_str().ok()).map(str::to_string);
                    let body = response.body_mut().read_to_string().unwrap_or_default();
                    decide(status, retry_after.as_deref(), &body, &self.config.retry)
                }
                Err(ureq::Error::Timeout(_)) => Decision::Final(Answer::Timeout),
                Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut => Decision::Final(Answer::Timeout),
                Err(e) => Decision::Final(Answer::ConnectionError(e.to_string())),
            };
            match decision {
                Decision::Final(answer) => return answer,
                Decision::RetryAfter(_) if attempt >= self.config.retry.attempts => return Answer::RateLimited,
                Decision::RetryAfter(wait) => {
                    std::thread::sleep(wait);
                    attempt += 1;
                }
            }
        }
    }

    /// Deletes many recordings on at most `concurrency` threads; answers come back in input
    /// order. Stops starting new calls once Twilio refuses the credentials. The caller's thread
    /// only waits, asking `should_stop` every 20 ms; when it says stop, this returns at once
    /// (`Err(Stopped)`) and the calls still in flight finish on their own, answers unused.
    pub fn delete_all(self: &Arc<Self>, sids: Vec<String>, should_stop: &dyn Fn() -> bool) -> Result<Vec<Option<Answer>>, Stopped> {
        let total = sids.len();
        let work = Arc::new(Work {
            sids,
            answers: Mutex::new(vec![None; total]),
            next: AtomicUsize::new(0),
            finished_threads: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        });
        let threads = self.config.concurrency.clamp(1, total.max(1));
        for _ in 0..threads {
            let (client, work) = (self.clone(), work.clone());
            std::thread::spawn(move || {
                block_signals();
                loop {
                    let i = work.next.fetch_add(1, Ordering::Relaxed);
                    if i >= work.sids.len() || work.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let answer = client.delete_recording(&work.sids[i]);
                    if matches!(answer, Answer::Refused(_)) {
                        work.stop.store(true, Ordering::Relaxed);
                    }
                    work.answers.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(answer);
                }
                work.finished_threads.fetch_add(1, Ordering::Release);
            });
        }
        while work.finished_threads.load(Ordering::Acquire) < threads {
            if should_stop() {
                work.stop.store(true, Ordering::Relaxed);
                return Err(Stopped);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let answers = std::mem::take(&mut *work.answers.lock().unwrap_or_else(|p| p.into_inner()));
        Ok(answers)
    }
}

/// `delete_all` was told to stop before every answer was in.
#[derive(Debug, PartialEq, Eq)]
pub struct Stopped;

/// The calls of one `delete_all`, shared with its threads.
struct Work {
    sids: Vec<String>,
    answers: Mutex<Vec<Option<Answer>>>,
    next: AtomicUsize,
    finished_threads: AtomicUsize,
    stop: AtomicBool,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetryPolicy {
        RetryPolicy { attempts: 3, default_backoff: Duration::from_secs(1), max_backoff: Duration::from_secs(10) }
    }

    #[test]
    fn sid_shapes() {
        assert!(is_recording_sid("RE0123456789abcdef0123456789ABCDEF"));
        assert!(!is_recording_sid("RE0123456789abcdef0123456789ABCDE")); // 31 digits
        assert!(!is_recording_sid("RE0123456789abcdef0123456789ABCDEF0"));
        assert!(!is_recording_sid("CA0123456789abcdef0123456789ABCDEF"));
        assert!(!is_recording_sid("RE0123456789abcdef0123456789ABCDEG"));
        assert!(!is_recording_sid("RE../../Accounts/x/Calls/y.json?x"));
        assert!(!is_recording_sid(""));
        assert!(is_account_sid("AC0123456789abcdef0123456789abcdef"));
        assert!(is_api_key_sid("SK0123456789abcdef0123456789abcdef"));
    }

    #[test]
    fn status_table() {
        let r = retry();
        assert_eq!(decide(204, None, "", &r), Decision::Final(Answer::Deleted));
        assert_eq!(decide(404, None, "{\"code\":20404}", &r), Decision::Final(Answer::AlreadyGone));
        assert_eq!(decide(401, None, "", &r), Decision::Final(Answer::Refused(401)));
        assert_eq!(decide(403, None, "", &r), Decision::Final(Answer::Refused(403)));
        assert_eq!(decide(500, None, "", &r), Decision::Final(Answer::ServerError(500)));
        assert_eq!(decide(503, None, "", &r), Decision::Final(Answer::ServerError(503)));
        assert!(matches!(decide(400, None, "bad", &r), Decision::Final(Answer::BadRequest(400, _))));
        assert_eq!(decide(429, Some("2"), "", &r), Decision::RetryAfter(Duration::from_secs(2)));
        assert_eq!(decide(429, None, "", &r), Decision::RetryAfter(Duration::from_secs(1)));
        assert_eq!(decide(429, Some("3600"), "", &r), Decision::RetryAfter(Duration::from_secs(10)));
        assert_eq!(decide(429, Some("soon"), "", &r), Decision::RetryAfter(Duration::from_secs(1)));
    }

    #[test]
    fn only_204_and_404_confirm() {
        assert!(Answer::Deleted.confirms_deletion());
        assert!(Answer::AlreadyGone.confirms_deletion());
        for a in [Answer::Refused(401), Answer::RateLimited, Answer::ServerError(500), Answer::Timeout,
                  Answer::ConnectionError("reset".into()), Answer::BadRequest(400, String::new())] {
            assert!(!a.confirms_deletion(), "{a:?}");
        }
    }

    #[test]
    fn base_urls() {
        assert!(check_base_url("https://api.twilio.com").is_ok());
        assert!(check_base_url("http://127.0.0.1:8080").is_ok());
        assert!(check_base_url("http://localhost:8080/").is_ok());
        assert!(check_base_url("http://[::1]:9000").is_ok());
        assert!(check_base_url("http://127.9.9.9").is_ok());
        assert!(check_base_url("http://api.twilio.com").unwrap_err().contains("loopback"));
        assert!(check_base_url("http://127.0.0.1.evil.com").is_err());
        assert!(check_base_url("http://user@10.0.0.1").is_err());
        assert!(check_base_url("ftp://x").is_err());
        assert!(check_base_url("api.twilio.com").is_err());
    }

    #[test]
    fn credentials_never_printed() {
        let c = Credentials { account_sid: "AC1".into(), username: "AC1".into(), password: "s3cr3t".into() };
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }

    /// Twilio's own description of DeleteRecording, extracted from the OpenAPI spec.
    const SPEC: &str = include_str!("../tests/fixtures/twilio_delete_recording.json");

    /// Checks `value` against an OpenAPI pattern of the form `^XX[0-9a-fA-F]{N}$`.
    fn matches_sid_pattern(pattern: &str, value: &str) -> bool {
        let inner = pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')).expect("anchored pattern");
        let (prefix, rest) = inner.split_once("[0-9a-fA-F]{").expect("a hex-digits pattern");
        let count: usize = rest.strip_suffix('}').expect("{N}").parse().expect("N");
        value.len() == prefix.len() + count
            && value.starts_with(prefix)
            && value[prefix.len()..].bytes().all(|b| b.is_ascii_hexdigit())
    }

    /// Serves one request on a loopback port, answering `status`; returns the raw request head.
    fn one_request(status: &str) -> (String, std::thread::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let status = status.to_string();
        let handle = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte).unwrap();
                head.push(byte[0]);
            }
            write!(stream, "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").unwrap();
            String::from_utf8(head).unwrap()
        });
        (url, handle)
    }

    fn client(base_url: String, username: &str, password: &str) -> Client {
        Client::new(ClientConfig {
            base_url,
            credentials: Credentials {
                account_sid: "AC0123456789abcdef0123456789abcdef".into(),
                username: username.into(),
                password: password.into(),
            },
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            concurrency: 1,
            retry: retry(),
        })
    }

    #[test]
    fn requests_match_twilio_delete_recording_spec() {
        let spec: serde_json::Value = serde_json::from_str(SPEC).unwrap();
        assert_eq!(spec["operation"]["operationId"], "DeleteRecording");
        assert_eq!(spec["servers"][0]["url"], "https://api.twilio.com", "our default base URL is Twilio's server");
        let scheme = spec["operation"]["security"][0].as_object().unwrap().keys().next().unwrap().clone();
        assert_eq!(spec["securitySchemes"][&scheme]["scheme"], "basic");
        let template = spec["path"].as_str().unwrap();
        let method = spec["method"].as_str().unwrap();
        let pattern = |name: &str| -> String {
            let params = spec["operation"]["parameters"].as_array().unwrap();
            let param = params.iter().find(|p| p["name"] == name).unwrap();
            assert_eq!(param["in"], "path");
            param["schema"]["pattern"].as_str().unwrap().to_string()
        };
        let recording = "RE0123456789abcdef0123456789ABCDEF";

        // Both credential kinds: the auth token, and an API key with its secret.
        for (username, password) in [("AC0123456789abcdef0123456789abcdef", "token"), ("SK0123456789abcdef0123456789abcdef", "secret")] {
            let (url, server) = one_request("204 No Content");
            assert_eq!(client(url, username, password).delete_recording(recording), Answer::Deleted);
            let head = server.join().unwrap();
            let request_line = head.lines().next().unwrap();
            let mut parts = request_line.split(' ');
            assert_eq!(parts.next().unwrap().to_lowercase(), method, "{request_line}");
            let path = parts.next().unwrap();

            let expected: Vec<&str> = template.split('/').collect();
            let actual: Vec<&str> = path.split('/').collect();
            assert_eq!(expected.len(), actual.len(), "{path} against {template}");
            for (want, got) in expected.iter().zip(&actual) {
                if let Some(name) = want.strip_prefix('{') {
                    let (name, suffix) = name.split_once('}').unwrap();
                    let value = got.strip_suffix(suffix).unwrap_or_else(|| panic!("{got} should end with {suffix}"));
                    assert!(matches_sid_pattern(&pattern(name), value), "{name} = {value}");
                } else {
                    assert_eq!(want, got);
                }
            }
            let authorization = head
                .lines()
                .find_map(|l| l.strip_prefix("Authorization: ").or_else(|| l.strip_prefix("authorization: ")))
                .expect("an Authorization header");
            let decoded = base64::engine::general_purpose::STANDARD.decode(authorization.strip_prefix("Basic ").unwrap()).unwrap();
            assert_eq!(String::from_utf8(decoded).unwrap(), format!("{username}:{password}"));
        }
    }

    #[test]
    fn status_answers_over_http() {
        for (status, answer) in [
            ("404 Not Found", Answer::AlreadyGone),
            ("401 Unauthorized", Answer::Refused(401)),
            ("503 Service Unavailable", Answer::ServerError(503)),
        ] {
            let (url, server) = one_request(status);
            assert_eq!(client(url, "AC0123456789abcdef0123456789abcdef", "t").delete_recording("RE0123456789abcdef0123456789abcdef"), answer);
            server.join().unwrap();
        }
    }

    #[test]
    fn a_refused_connection_is_a_connection_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let answer = client(format!("http://127.0.0.1:{port}"), "AC0123456789abcdef0123456789abcdef", "t")
            .delete_recording("RE0123456789abcdef0123456789abcdef");
        assert!(matches!(answer, Answer::ConnectionError(_)), "{answer:?}");
    }

    #[test]
    fn delete_all_returns_at_once_when_told_to_stop() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // Accepts and never answers: every call would wait for the 5 s timeout.
        let _hold = std::thread::spawn(move || listener.incoming().take(4).collect::<Vec<_>>());
        let client = Arc::new(client(url, "AC0123456789abcdef0123456789abcdef", "t"));
        let started = std::time::Instant::now();
        let stop_after = started + Duration::from_millis(200);
        let result = client.delete_all(vec!["RE0123456789abcdef0123456789abcdef".into(); 2], &|| std::time::Instant::now() > stop_after);
        assert_eq!(result, Err(Stopped));
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    }
}
