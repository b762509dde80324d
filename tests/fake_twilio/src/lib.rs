//! A fake Twilio for tests and the demo: `DELETE /2010-04-01/Accounts/{AccountSid}/Recordings/{Sid}.json`
//! on 127.0.0.1, with HTTP Basic auth, a set of existing recordings, injected faults, and a log
//! of every request. It never talks to anything but its own loopback socket.
//!
//! Subaccounts as at Twilio: the main account's credentials reach a subaccount's recordings
//! under the subaccount's path only; anywhere else the recording is a 404. `GET
//! /2010-04-01/Accounts.json` lists the main account and its subaccounts, in pages.
//! Transcriptions as at Twilio too (`transcriptions`).
//!
//! Control it in-process (the methods below) or over HTTP on the same port:
//! `POST /_fake/recordings` (JSON array of SIDs to add), `GET /_fake/recordings`,
//! `POST /_fake/faults` (JSON array of faults, one per coming request), `POST /_fake/latency_ms`
//! (a number), `POST /_fake/every_nth` (`{"n":3,"fault":{"status":503}}`), `GET /_fake/requests`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

mod transcriptions;
use serde_json::{json, Value};

/// What the next request gets instead of the normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// This HTTP status, with a Twilio-style JSON error body.
    Status(u16),
    /// 429, with this `Retry-After` header if any.
    TooManyRequests(Option<String>),
    /// No answer for this long, then the connection closes.
    Hang(Duration),
    /// The connection is reset (RST), no answer.
    Reset,
}

impl Fault {
    /// `{"status":500}`, `{"status":429,"retry_after":"1"}`, `{"hang_ms":3000}`, `{"reset":true}`.
    pub fn from_json(v: &Value) -> Option<Fault> {
        if let Some(ms) = v["hang_ms"].as_u64() {
            return Some(Fault::Hang(Duration::from_millis(ms)));
        }
        if v["reset"].as_bool() == Some(true) {
            return Some(Fault::Reset);
        }
        match v["status"].as_u64()? as u16 {
            429 => Some(Fault::TooManyRequests(v["retry_after"].as_str().map(str::to_string))),
            status => Some(Fault::Status(status)),
        }
    }
}

/// One request as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// The Basic user name, if the credentials were right.
    pub authenticated_as: Option<String>,
    /// The status the fake answered (0: no answer, a hang or a reset).
    pub status: u16,
    /// The `Twilio-Request-Id` it answered with (none without an answer).
    pub request_id: Option<String>,
}

#[derive(Default)]
struct State {
    recordings: BTreeSet<String>,
    /// Each subaccount's recordings.
    subaccounts: BTreeMap<String, BTreeSet<String>>,
    /// Account listings answered (never given a fault, nor logged in `requests`).
    listings: usize,
    /// Answer account listings 401, as Twilio does to a standard API key.
    refuse_listing: bool,
    transcriptions: transcriptions::Transcriptions,
    faults: VecDeque<Fault>,
    /// Every Nth DELETE gets this fault (rate-based injection).
    every_nth: Option<(u64, Fault)>,
    deletes_seen: u64,
    latency: Duration,
    requests: Vec<Request>,
    in_flight: usize,
    max_in_flight: usize,
}

pub struct FakeTwilio {
    pub account_sid: String,
    port: u16,
    state: Arc<Mutex<State>>,
}

impl FakeTwilio {
    /// Starts on 127.0.0.1 at a free port. `credentials` are the (user, password) pairs it accepts.
    pub fn start(account_sid: &str, credentials: Vec<(String, String)>) -> FakeTwilio {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("local address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let server = Server { account_sid: account_sid.to_string(), credentials, state: state.clone() };
        let server = Arc::new(server);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let server = server.clone();
                std::thread::spawn(move || server.serve(stream));
            }
        });
        FakeTwilio { account_sid: account_sid.to_string(), port, state }
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add_recordings<I: IntoIterator<Item = String>>(&self, sids: I) {
        self.state().recordings.extend(sids);
    }

    /// Every recording still stored, the subaccounts' included.
    pub fn recordings(&self) -> BTreeSet<String> {
        let state = self.state();
        state.recordings.iter().chain(state.subaccounts.values().flatten()).cloned().collect()
    }

    /// A subaccount of the main account, with these recordings.
    pub fn add_subaccount<I: IntoIterator<Item = String>>(&self, account_sid: &str, sids: I) {
        self.state().subaccounts.entry(account_sid.to_string()).or_default().extend(sids);
    }

    /// A subaccount's recordings still stored.
    pub fn recordings_of(&self, account_sid: &str) -> BTreeSet<String> {
        self.state().subaccounts.get(account_sid).cloned().unwrap_or_default()
    }

    /// Transcriptions of `recording` (under `account`, the main one or a subaccount).
    pub fn add_transcriptions<I: IntoIterator<Item = String>>(&self, account: &str, recording: &str, sids: I) {
        self.state().transcriptions.add(account, recording, sids);
    }

    /// Every transcription still stored.
    pub fn transcriptions(&self) -> BTreeSet<String> {
        self.state().transcriptions.remaining()
    }

    /// The recording deleted by someone else (the application, the console), its
    /// transcriptions left as Twilio leaves them.
    pub fn delete_recording_outside(&self, account: &str, sid: &str) {
        let mut state = self.state();
        let state = &mut *state;
        let recordings = if account == self.account_sid { Some(&mut state.recordings) } else { state.subaccounts.get_mut(account) };
        assert!(recordings.is_some_and(|recordings| recordings.remove(sid)), "{sid} is not stored under {account}");
        state.transcriptions.recording_deleted(account, sid);
    }

    /// Twilio's 40 days have passed: recordings deleted so far are unknown from now on, and
    /// listing their transcriptions is a 404.
    pub fn forget_deleted_recordings(&self) {
        self.state().transcriptions.forget_deleted();
    }

    /// Answer account listings 401 (a standard API key), or list again.
    pub fn refuse_account_listing(&self, refuse: bool) {
        self.state().refuse_listing = refuse;
    }

    /// Account listings answered so far.
    pub fn account_listings(&self) -> usize {
        self.state().listings
    }

    /// Queues faults: the next requests get them, one each, in order.
    pub fn push_faults<I: IntoIterator<Item = Fault>>(&self, faults: I) {
        self.state().faults.extend(faults);
    }

    /// Drops the queued faults.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Every `n`th DELETE from now on gets `fault` (None: stop).
    pub fn set_every_nth(&self, every: Option<(u64, Fault)>) {
        let mut state = self.state();
        state.every_nth = every;
        state.deletes_seen = 0;
    }

    pub fn set_latency(&self, latency: Duration) {
        self.state().latency = latency;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }

    /// The SIDs Twilio confirmed gone so far: answered 204 (deleted) or 404 (already gone).
    pub fn confirmed_sids(&self) -> BTreeSet<String> {
        self.state()
            .requests
            .iter()
            .filter(|r| r.method == "DELETE" && (r.status == 204 || r.status == 404))
            .filter_map(|r| r.path.rsplit('/').next().and_then(|f| f.strip_suffix(".json")).map(str::to_string))
            .collect()
    }

    pub fn clear_requests(&self) {
        let mut state = self.state();
        state.requests.clear();
        state.max_in_flight = 0;
    }

    /// Requests being answered right now.
    pub fn in_flight(&self) -> usize {
        self.state().in_flight
    }

    /// A handle that tells, from another thread, how many requests are being answered.
    pub fn in_flight_counter(&self) -> impl Fn() -> usize + Send + 'static {
        let state = self.state.clone();
        move || state.lock().unwrap_or_else(|p| p.into_inner()).in_flight
    }

    /// The most requests it was answering at once since the last `clear_requests`.
    pub fn max_in_flight(&self) -> usize {
        self.state().max_in_flight
    }
}

struct Server {
    account_sid: String,
    credentials: Vec<(String, String)>,
    state: Arc<Mutex<State>>,
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Server {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Serves requests on one connection until the client closes it.
    fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(match stream.try_clone() {
            Ok(s) => s,
            Err(_) => return,
        });
        let mut writer = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut parts = request_line.split_whitespace();
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            let (mut authorization, mut length) = (None, 0usize);
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                if let Some((name, value)) = line.split_once(':') {
                    match name.trim().to_ascii_lowercase().as_str() {
                        "authorization" => authorization = Some(value.trim().to_string()),
                        "content-length" => length = value.trim().parse().unwrap_or(0),
                        _ => {}
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let answer = if path.starts_with("/_fake/") {
                Some(self.control(&method, &path, &body))
            } else if let Some(query) = path.strip_prefix("/2010-04-01/Accounts.json") {
                Some(self.list_accounts(&method, query, authorization.as_deref()))
            } else {
                self.twilio(&method, &path, authorization.as_deref(), &writer)
            };
            let Some(answer) = answer else { return };
            let mut response = format!("HTTP/1.1 {} {}\r\nContent-Length: {}\r\n", answer.status, reason(answer.status), answer.body.len());
            for (name, value) in &answer.headers {
                response.push_str(&format!("{name}: {value}\r\n"));
            }
            if !answer.body.is_empty() {
                response.push_str("Content-Type: application/json\r\n");
            }
            response.push_str("\r\n");
            response.push_str(&answer.body);
            if writer.write_all(response.as_bytes()).is_err() {
                return;
            }
        }
    }

    fn authenticated(&self, authorization: Option<&str>) -> Option<String> {
        let encoded = authorization?.strip_prefix("Basic ")?;
        let decoded = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        self.credentials.iter().any(|(u, p)| u == user && p == password).then(|| user.to_string())
    }

    /// The Twilio side. None: no answer at all (a hang or a reset).
    fn twilio(&self, method: &str, path: &str, authorization: Option<&str>, stream: &TcpStream) -> Option<Answer> {
        let user = self.authenticated(authorization);
        let (latency, fault) = {
            let mut state = self.state();
            state.in_flight += 1;
            state.max_in_flight = state.max_in_flight.max(state.in_flight);
            let mut fault = state.faults.pop_front();
            if method == "DELETE" {
                state.deletes_seen += 1;
                if let Some((n, every_fault)) = &state.every_nth {
                    if fault.is_none() && state.deletes_seen % n == 0 {
                        fault = Some(every_fault.clone());
                    }
                }
            }
            (state.latency, fault)
        };
        std::thread::sleep(latency);
        let answer = match fault {
            Some(Fault::Hang(duration)) => {
                std::thread::sleep(duration);
                None
            }
            Some(Fault::Reset) => {
                reset(stream);
                None
            }
            Some(Fault::TooManyRequests(retry_after)) => Some(Answer {
                status: 429,
                headers: retry_after.map(|v| vec![("Retry-After".to_string(), v)]).unwrap_or_default(),
                body: error_body(20429, "Too Many Requests", 429),
            }),
            Some(Fault::Status(status)) => Some(Answer { status, headers: vec![], body: error_body(status as u32 * 10, "Injected fault", status) }),
            None => Some(self.answer(method, path, user.is_some())),
        };
        let mut answer = answer;
        let status = answer.as_ref().map(|a| a.status).unwrap_or(0);
        let mut state = self.state();
        state.in_flight -= 1;
        // Twilio names every request it answers, as real Twilio does in this header.
        let request_id = answer.as_ref().map(|_| format!("RQ{:032x}", state.requests.len() + 1));
        if let (Some(answer), Some(id)) = (answer.as_mut(), &request_id) {
            answer.headers.push(("Twilio-Request-Id".to_string(), id.clone()));
        }
        state.requests.push(Request { method: method.to_string(), path: path.to_string(), authenticated_as: user, status, request_id });
        answer
    }

    /// `GET /2010-04-01/Accounts.json?PageSize=N&Page=P`: the main account, then its
    /// subaccounts, N a page, with `next_page_uri` while more follow.
    fn list_accounts(&self, method: &str, query: &str, authorization: Option<&str>) -> Answer {
        let mut state = self.state();
        state.listings += 1;
        if method != "GET" {
            return Answer { status: 405, headers: vec![], body: error_body(20004, "Method not allowed", 405) };
        }
        if self.authenticated(authorization).is_none() || state.refuse_listing {
            return Answer { status: 401, headers: vec![], body: error_body(20003, "Authenticate", 401) };
        }
        let param = |name: &str| {
            query.trim_start_matches('?').split('&').find_map(|pair| pair.strip_prefix(name)?.strip_prefix('=')?.parse::<usize>().ok())
        };
        let (size, page) = (param("PageSize").unwrap_or(50).clamp(1, 1000), param("Page").unwrap_or(0));
        let all: Vec<&String> = std::iter::once(&self.account_sid).chain(state.subaccounts.keys()).collect();
        let accounts: Vec<Value> = all.iter().skip(page * size).take(size).map(|sid| json!({ "sid": sid, "status": "active" })).collect();
        let next = ((page + 1) * size < all.len()).then(|| format!("/2010-04-01/Accounts.json?PageSize={size}&Page={}&PageToken=PA{}", page + 1, page + 1));
        let body = json!({ "accounts": accounts, "next_page_uri": next, "page": page, "page_size": size });
        Answer { status: 200, headers: vec![], body: body.to_string() }
    }

    fn answer(&self, method: &str, path: &str, authenticated: bool) -> Answer {
        if !authenticated {
            return Answer { status: 401, headers: vec![], body: error_body(20003, "Authenticate", 401) };
        }
        let Some((account, resource)) = path.strip_prefix("/2010-04-01/Accounts/").and_then(|rest| rest.split_once('/')) else {
            return not_found(path);
        };
        let (resource, query) = resource.split_once('?').unwrap_or((resource, ""));
        let mut state = self.state();
        let state = &mut *state;
        let recordings = if account == self.account_sid { Some(&mut state.recordings) } else { state.subaccounts.get_mut(account) };
        let Some(recordings) = recordings else { return not_found(path) };
        if let Some(sid) = resource.strip_prefix("Transcriptions/").and_then(|r| r.strip_suffix(".json")) {
            return match method {
                "DELETE" if state.transcriptions.delete(account, sid) => Answer { status: 204, headers: vec![], body: String::new() },
                "DELETE" | "GET" => not_found(path),
                _ => Answer { status: 405, headers: vec![], body: error_body(20004, "Method not allowed", 405) },
            };
        }
        if let Some(recording) = resource.strip_prefix("Recordings/").and_then(|r| r.strip_suffix("/Transcriptions.json")) {
            let listed = (method == "GET").then(|| state.transcriptions.list(account, recording, recordings.contains(recording), query)).flatten();
            return match listed {
                Some(body) => Answer { status: 200, headers: vec![], body },
                None => not_found(path),
            };
        }
        let target = resource.strip_prefix("Recordings/").and_then(|r| r.strip_suffix(".json"));
        match (method, target) {
            ("DELETE", Some(sid)) if recordings.remove(sid) => {
                state.transcriptions.recording_deleted(account, sid);
                Answer { status: 204, headers: vec![], body: String::new() }
            }
            ("DELETE", _) | ("GET", _) => Answer {
                status: 404,
                headers: vec![],
                body: error_body(20404, &format!("The requested resource {path} was not found"), 404),
            },
            _ => Answer { status: 405, headers: vec![], body: error_body(20004, "Method not allowed", 405) },
        }
    }

    fn control(&self, method: &str, path: &str, body: &[u8]) -> Answer {
        let input: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut state = self.state();
        let output = match (method, path) {
            ("POST", "/_fake/recordings") => {
                let added: Vec<String> = input.as_array().into_iter().flatten().filter_map(|v| v.as_str().map(str::to_string)).collect();
                state.recordings.extend(added.iter().cloned());
                json!({ "added": added.len(), "recordings": state.recordings.len() })
            }
            ("GET", "/_fake/recordings") => json!(state.recordings),
            ("POST", "/_fake/faults") => {
                let faults: Vec<Fault> = input.as_array().into_iter().flatten().filter_map(Fault::from_json).collect();
                state.faults.extend(faults);
                json!({ "queued": state.faults.len() })
            }
            ("POST", "/_fake/every_nth") => {
                let n = input["n"].as_u64().filter(|n| *n > 0);
                state.every_nth = n.zip(Fault::from_json(&input["fault"]));
                state.deletes_seen = 0;
                json!({ "every_nth": n })
            }
            ("POST", "/_fake/latency_ms") => {
                state.latency = Duration::from_millis(input.as_u64().unwrap_or(0));
                json!({ "latency_ms": state.latency.as_millis() as u64 })
            }
            ("GET", "/_fake/requests") => Value::Array(
                state
                    .requests
                    .iter()
                    .map(|r| json!({ "method": r.method, "path": r.path, "authenticated_as": r.authenticated_as, "status": r.status }))
                    .collect(),
            ),
            _ => return Answer { status: 404, headers: vec![], body: json!({ "error": "unknown control path" }).to_string() },
        };
        Answer { status: 200, headers: vec![], body: output.to_string() }
    }
}

fn not_found(path: &str) -> Answer {
    Answer { status: 404, headers: vec![], body: error_body(20404, &format!("The requested resource {path} was not found"), 404) }
}

/// Twilio's JSON error body.
fn error_body(code: u32, message: &str, status: u16) -> String {
    json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status }).to_string()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        204 => "No Content",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Closes with RST: SO_LINGER on, zero seconds.
fn reset(stream: &TcpStream) {
    let linger = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a socket this process owns, with a correctly sized option.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}
