//! Plain tests of the Twilio client: SID shapes, the status table, base URLs, the request.

use super::*;

pub(super) fn retry() -> RetryPolicy {
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
fn an_absurd_retry_after_is_capped_not_a_panic() {
    let r = retry();
    for huge in ["1e20", "1e300", "18446744073709551616", "99999999999999999999"] {
        assert_eq!(decide(429, Some(huge), "", &r), Decision::RetryAfter(Duration::from_secs(10)), "{huge}");
    }
    assert_eq!(decide(429, Some("-5"), "", &r), Decision::RetryAfter(Duration::from_secs(1)));
    assert_eq!(decide(429, Some("NaN"), "", &r), Decision::RetryAfter(Duration::from_secs(1)));
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
const SPEC: &str = include_str!("../../tests/fixtures/twilio_delete_recording.json");

/// Checks `value` against an OpenAPI pattern of the form `^XX[0-9a-fA-F]{N}$`.
pub(super) fn matches_sid_pattern(pattern: &str, value: &str) -> bool {
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

pub(super) const MAIN: &str = "AC0123456789abcdef0123456789abcdef";
pub(super) const RECORDING: &str = "RE0123456789abcdef0123456789abcdef";

/// A recording of the credentials' own account (a policy with no account column).
pub(super) fn main(sid: &str) -> Target {
    Target { sid: sid.into(), account: Account::Main }
}

pub(super) fn client(base_url: String, username: &str, password: &str) -> Client {
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
        bounds: Bounds::default(),
        transcriptions: false,
    })
}

#[test]
fn rate_limited_recordings_in_a_row_reach_the_bound_and_any_other_answer_resets_it() {
    let mut config = client("http://127.0.0.1:9".into(), "u", "p").config.clone();
    config.bounds.max_rate_limited = 2;
    let bounded = Client::new(config.clone());
    bounded.count_rate_limited(&Answer::RateLimited);
    assert_eq!(bounded.bound_reached(), None);
    bounded.count_rate_limited(&Answer::ServerError(503));
    bounded.count_rate_limited(&Answer::RateLimited);
    assert_eq!(bounded.bound_reached(), None, "a 503 between them breaks the row");
    bounded.count_rate_limited(&Answer::RateLimited);
    assert_eq!(bounded.bound_reached(), Some(BoundReached::RateLimited(2)));
    config.bounds = Bounds { max_rate_limited: 0, deadline: Some(std::time::Instant::now()) };
    assert_eq!(Client::new(config).bound_reached(), Some(BoundReached::Deadline));
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
        assert_eq!(client(url, username, password).delete_recording(&main(recording)).answer, Answer::Deleted);
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
fn each_answer_has_its_outcome_status_and_reason() {
    assert_eq!(outcome(&Answer::Deleted), ("deleted", Some(204), None));
    assert_eq!(outcome(&Answer::AlreadyGone), ("already_gone", Some(404), None));
    assert_eq!(outcome(&Answer::ServerError(503)), ("failed", Some(503), Some("server_error: HTTP 503".into())));
    assert_eq!(outcome(&Answer::Timeout), ("failed", None, Some("timeout".into())));
    assert_eq!(outcome(&Answer::RateLimited).1, Some(429));
    assert_eq!(outcome(&Answer::BadRequest(400, "bad".into())).2, Some("bad_request: HTTP 400: bad".into()));
    assert_eq!(outcome(&Answer::ConnectionError("reset".into())).0, "failed");
}

#[test]
fn status_answers_over_http() {
    for (status, answer) in [("401 Unauthorized", Answer::Refused(401)), ("503 Service Unavailable", Answer::ServerError(503))] {
        let (url, server) = one_request(status);
        assert_eq!(client(url, MAIN, "t").delete_recording(&main(RECORDING)).answer, answer);
        server.join().unwrap();
    }
}

#[test]
fn a_refused_connection_is_a_connection_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let answer = client(format!("http://127.0.0.1:{port}"), "AC0123456789abcdef0123456789abcdef", "t")
        .delete_recording(&main(RECORDING))
        .answer;
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
    let result = client.delete_all(vec![main(RECORDING); 2], &|| std::time::Instant::now() > stop_after);
    assert_eq!(result, Err(Stopped));
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

/// A Twilio that answers every call 429 with `Retry-After: 1e20` (issue 10, item 5): the run
/// must count the calls failed and go on, not panic a helper thread and wait for it forever.
#[test]
fn delete_all_finishes_when_twilio_asks_for_an_absurd_wait() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().take(8).flatten() {
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 1e20\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let mut config = client(url, "AC0123456789abcdef0123456789abcdef", "t").config.clone();
    config.retry = RetryPolicy { attempts: 2, default_backoff: Duration::from_millis(5), max_backoff: Duration::from_millis(20) };
    let client = Arc::new(Client::new(config));
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let answers = client.delete_all(vec![main(RECORDING); 2], &|| false);
        let _ = done.send(answers);
    });
    let answers = finished.recv_timeout(Duration::from_secs(10)).expect("delete_all must finish, not hang on a dead thread");
    let answers = answers.map(|replies| replies.into_iter().map(|r| r.map(|r| r.answer)).collect::<Vec<_>>());
    assert_eq!(answers, Ok(vec![Some(Answer::RateLimited), Some(Answer::RateLimited)]));
}

// Accounts: a subaccount's recording is a 404 under its parent's path (issue 24).

pub(super) const SUB: &str = "AC11111111111111111111111111111111";
const STRANGER: &str = "AC22222222222222222222222222222222";

/// Serves requests on a loopback port, one per connection, each answered by `answer(method,
/// path)` as (status line, body), until the client stops; returns the request lines seen.
pub(super) fn scripted(answer: impl Fn(&str, &str) -> (&'static str, String) + Send + 'static) -> (String, Arc<Mutex<Vec<String>>>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut header = String::new();
            while reader.read_line(&mut header).unwrap() > 2 {
                header.clear();
            }
            let mut parts = line.split(' ');
            let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("").to_string());
            log.lock().unwrap().push(format!("{method} {path}"));
            let (status, body) = answer(&method, &path);
            let _ = write!(stream, "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
        }
    });
    (url, seen)
}

pub(super) fn account_page(sids: &[&str], next: Option<&str>) -> String {
    let accounts: Vec<serde_json::Value> = sids.iter().map(|sid| serde_json::json!({ "sid": sid, "status": "active" })).collect();
    serde_json::json!({ "accounts": accounts, "next_page_uri": next, "page": 0, "page_size": 1000 }).to_string()
}

/// A Twilio where the recording is stored nowhere the request looks (every DELETE is a 404)
/// and the main account lists `listed`.
fn nowhere(listed: &'static [&'static str]) -> (String, Arc<Mutex<Vec<String>>>) {
    scripted(move |method, _| match method {
        "GET" => ("200 OK", account_page(listed, None)),
        _ => ("404 Not Found", "{\"code\":20404}".into()),
    })
}

pub(super) fn of_row(sid: &str, account: Option<&str>) -> Target {
    Target { sid: sid.into(), account: Account::Row(account.map(str::to_string)) }
}

#[test]
fn a_404_under_a_main_account_without_subaccounts_is_already_gone() {
    let (url, seen) = nowhere(&[MAIN]);
    assert_eq!(client(url, MAIN, "t").delete_recording(&main(RECORDING)).answer, Answer::AlreadyGone);
    let expected = [format!("DELETE /2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}.json"), format!("GET {}", accounts::FIRST_PAGE)];
    assert_eq!(*seen.lock().unwrap(), expected, "the accounts are listed on the first 404");
}

#[test]
fn a_404_under_a_main_account_with_subaccounts_proves_nothing() {
    let (url, _) = nowhere(&[MAIN, SUB]);
    let answer = client(url, MAIN, "t").delete_recording(&main(RECORDING)).answer;
    let Answer::AccountUnverified(Some(404), why) = &answer else { panic!("{answer:?}") };
    assert!(why.contains("1 subaccount(s)") && why.contains("account_column"), "{why}");
    assert!(!answer.confirms_deletion());
    assert_eq!(outcome(&answer).0, "failed");
}

#[test]
fn a_404_when_the_accounts_cannot_be_listed_proves_nothing() {
    // A standard API key may not list accounts: Twilio answers 401 to the listing only.
    let (url, seen) = scripted(|method, _| match method {
        "GET" => ("401 Unauthorized", "{\"code\":20003}".into()),
        _ => ("404 Not Found", "{\"code\":20404}".into()),
    });
    let client = client(url, "SK0123456789abcdef0123456789abcdef", "secret");
    for _ in 0..2 {
        let answer = client.delete_recording(&main(RECORDING)).answer;
        assert!(matches!(&answer, Answer::AccountUnverified(Some(404), why) if why.contains("HTTP 401")), "{answer:?}");
    }
    assert_eq!(seen.lock().unwrap().iter().filter(|r| r.starts_with("GET")).count(), 1, "listed once per client, not per recording");
}

#[test]
fn a_row_s_own_account_takes_its_path_and_its_404_is_already_gone() {
    let (url, seen) = nowhere(&[MAIN, SUB]);
    let client = client(url, MAIN, "t");
    assert_eq!(client.delete_recording(&of_row(RECORDING, Some(SUB))).answer, Answer::AlreadyGone);
    assert_eq!(client.delete_recording(&of_row(RECORDING, Some(MAIN))).answer, Answer::AlreadyGone);
    let deletes: Vec<String> = seen.lock().unwrap().iter().filter(|r| r.starts_with("DELETE")).cloned().collect();
    assert_eq!(deletes, [format!("DELETE /2010-04-01/Accounts/{SUB}/Recordings/{RECORDING}.json"), format!("DELETE /2010-04-01/Accounts/{MAIN}/Recordings/{RECORDING}.json")]);
}

#[test]
fn a_row_account_the_credentials_do_not_reach_is_never_sent() {
    let (url, seen) = nowhere(&[MAIN, SUB]);
    let client = client(url, MAIN, "t");
    let unsent = |account: Option<&str>, expected: &str| {
        let answer = client.delete_recording(&of_row(RECORDING, account)).answer;
        assert!(matches!(&answer, Answer::AccountUnverified(None, why) if why.contains(expected)), "{account:?}: {answer:?}");
    };
    unsent(Some(STRANGER), "neither the credentials' account");
    unsent(None, "NULL");
    unsent(Some("AC../../Accounts"), "not AC + 32 hex digits");
    unsent(Some("AC2222222222222222222222222222222G"), "not AC + 32 hex digits");
    assert!(seen.lock().unwrap().iter().all(|r| r.starts_with("GET")), "no DELETE at all: {:?}", seen.lock().unwrap());
}

#[test]
fn every_page_of_the_account_list_is_read() {
    let (url, seen) = scripted(|method, path| match (method, path.contains("Page=1")) {
        ("GET", false) => ("200 OK", account_page(&[MAIN], Some("/2010-04-01/Accounts.json?PageSize=1000&Page=1&PageToken=PAx"))),
        ("GET", true) => ("200 OK", account_page(&[SUB], None)),
        _ => ("404 Not Found", String::new()),
    });
    let answer = client(url, MAIN, "t").delete_recording(&main(RECORDING)).answer;
    assert!(matches!(&answer, Answer::AccountUnverified(Some(404), why) if why.contains("1 subaccount(s)")), "the subaccount on page 2 counts: {answer:?}");
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[test]
fn account_pages_that_prove_nothing_are_refused() {
    assert!(accounts::parse_page("not json").is_err());
    assert!(accounts::parse_page("{}").is_err());
    assert!(accounts::parse_page(&account_page(&["AC123"], None)).is_err(), "a malformed SID");
    assert!(accounts::parse_page(&account_page(&[MAIN], Some("https://elsewhere.example/2010-04-01/Accounts.json?Page=1"))).is_err(), "another host");
    assert!(accounts::parse_page(&account_page(&[MAIN], Some("/2010-04-01/Accounts/AC0/Calls.json?x"))).is_err(), "another resource");
    assert_eq!(accounts::parse_page(&account_page(&[MAIN, SUB], None)), Ok((vec![MAIN.to_string(), SUB.to_string()], None)));
}

#[test]
fn the_account_listing_matches_twilio_list_account_spec() {
    let spec: serde_json::Value = serde_json::from_str(include_str!("../../tests/fixtures/twilio_list_accounts.json")).unwrap();
    assert_eq!(spec["operation"]["operationId"], "ListAccount");
    assert_eq!(spec["method"], "get");
    let (path, query) = accounts::FIRST_PAGE.split_once('?').unwrap();
    assert_eq!(path, spec["path"].as_str().unwrap());
    let params = spec["operation"]["parameters"].as_array().unwrap();
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap();
        let param = params.iter().find(|p| p["name"] == name).unwrap_or_else(|| panic!("{name} is not a parameter of ListAccount"));
        assert_eq!(param["in"], "query");
        let value: i64 = value.parse().unwrap();
        assert!(value >= param["schema"]["minimum"].as_i64().unwrap() && value <= param["schema"]["maximum"].as_i64().unwrap(), "{name}={value}");
    }
    assert!(matches_sid_pattern(spec["account_schema"]["sid"]["pattern"].as_str().unwrap(), SUB));
}
