//! Recordings against a fake Twilio on 127.0.0.1: what is marked, what is sent, what fails,
//! and that nothing is marked unless Twilio confirmed it, even across a crash.

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use fake_twilio::{Fault, FakeTwilio};
use pg_retention_it::{connect, count, secret_file, server_log, wait_for};
use postgres::Client;
use serde_json::Value;

const ACCOUNT: &str = "AC00000000000000000000000000000001";
const TOKEN: &str = "it-auth-token-7f3a";
const KEY_SID: &str = "SK00000000000000000000000000000002";
const KEY_SECRET: &str = "it-key-secret-91bc";

fn sid(n: u32) -> String {
    format!("RE{n:032x}")
}

fn fake() -> FakeTwilio {
    FakeTwilio::start(ACCOUNT, vec![(ACCOUNT.into(), TOKEN.into()), (KEY_SID.into(), KEY_SECRET.into())])
}

/// A session pointed at `fake` with the auth token, quick timeouts and small backoffs.
fn session(fake: &FakeTwilio) -> Client {
    let mut client = connect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{ACCOUNT}';
             SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}';
             SET pg_retention.twilio_timeout_ms = 700;
             SET pg_retention.twilio_max_backoff_ms = 2000;",
            secret_file("it-token.secret", TOKEN),
            fake.base_url()
        ))
        .unwrap();
    client
}

/// `voice_recordings`-shaped table `name` with rows 1..=old a hundred days old and
/// old+1..=old+young a day old, SIDs from `sid_of`, and a twilio_recording policy `name`.
fn recordings(client: &mut Client, name: &str, old: u32, young: u32, batch_size: i32, sid_of: impl Fn(u32) -> Option<String>) -> Vec<(u32, Option<String>)> {
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             DELETE FROM retention.runs WHERE policy = '{name}';
             CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL,
                                  twilio_recording_sid text, deleted_at timestamptz, deletion_reason text);
             SELECT retention.add_policy('{name}', '{name}', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason', sid_column => 'twilio_recording_sid',
                                         id_column => 'id', batch_size => {batch_size});"
        ))
        .unwrap();
    let rows: Vec<(u32, Option<String>)> = (1..=old + young).map(|i| (i, sid_of(i))).collect();
    for (i, sid) in &rows {
        let age = if *i <= old { "100 days" } else { "1 day" };
        client
            .execute(
                &format!("INSERT INTO {name} VALUES ($1, now() - interval '{age}', $2, NULL, NULL)"),
                &[&i64::from(*i), sid],
            )
            .unwrap();
    }
    rows
}

fn json(client: &mut Client, sql: &str) -> Value {
    let text: String = client.query_one(&format!("SELECT ({sql})::text"), &[]).unwrap().get(0);
    serde_json::from_str(&text).unwrap()
}

fn n(result: &Value, key: &str) -> i64 {
    result[key].as_i64().unwrap_or_else(|| panic!("{key} in {result}"))
}

fn assert_adds_up(result: &Value) {
    assert_eq!(n(result, "checked"), n(result, "deleted") + n(result, "failed") + n(result, "skipped"), "{result:?}");
}

fn marked(client: &mut Client, table: &str) -> BTreeSet<String> {
    client
        .query(&format!("SELECT twilio_recording_sid FROM {table} WHERE deleted_at IS NOT NULL"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

#[test]
fn a_normal_run_deletes_at_twilio_then_marks_the_rows() {
    let fake = fake();
    let mut client = session(&fake);
    let rows = recordings(&mut client, "it_rec_normal", 60, 5, 25, |i| Some(sid(i)));
    fake.add_recordings(rows.iter().filter_map(|(_, s)| s.clone()));
    fake.set_latency(Duration::from_millis(30)); // long enough for calls to overlap

    let result = json(&mut client, "retention.run_policy('it_rec_normal')");
    assert_eq!(n(&result, "checked"), 60);
    assert_eq!(n(&result, "deleted"), 60, "{result}");
    assert_eq!(n(&result, "failed"), 0);
    assert_eq!(n(&result, "skipped"), 0);
    assert_adds_up(&result);
    assert!(result["cutoff_date"].is_string(), "{result}");

    let young: BTreeSet<String> = (61..=65).map(sid).collect();
    assert_eq!(fake.recordings(), young, "the fake's set shrank by exactly the old SIDs");
    let old: BTreeSet<String> = (1..=60).map(sid).collect();
    assert_eq!(marked(&mut client, "it_rec_normal"), old);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_normal WHERE deletion_reason = 'retention_policy'"), 60);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_normal"), 65, "rows are soft-deleted, never deleted");
    let requests = fake.requests();
    assert_eq!(requests.len(), 60);
    assert!(requests.iter().all(|r| r.method == "DELETE" && r.authenticated_as.as_deref() == Some(ACCOUNT) && r.status == 204));
    assert!(fake.max_in_flight() <= 8, "default concurrency is 8, saw {}", fake.max_in_flight());
    assert!(fake.max_in_flight() > 1, "calls should run concurrently");

    // A second run finds nothing: marked rows are never sent again.
    fake.clear_requests();
    let again = json(&mut client, "retention.run_policy('it_rec_normal')");
    assert_eq!(n(&again, "checked"), 0);
    assert!(fake.requests().is_empty());
}

#[test]
fn held_recordings_are_never_sent_to_twilio_until_the_hold_is_released() {
    let fake = fake();
    let mut client = session(&fake);
    let rows = recordings(&mut client, "it_rec_hold", 30, 2, 8, |i| Some(sid(i)));
    fake.add_recordings(rows.iter().filter_map(|(_, s)| s.clone()));
    client.batch_execute("SELECT retention.add_hold('it_rec_hold', 'case-9', 'id % 3 = 0', 'litigation 9')").unwrap();
    let held: BTreeSet<String> = (1..=30).filter(|i| i % 3 == 0).map(sid).collect();

    let preview = json(&mut client, "retention.preview('it_rec_hold')");
    assert_eq!((n(&preview, "rows"), n(&preview, "held"), n(&preview, "would_send")), (20, 10, 20), "{preview}");
    client.batch_execute("CALL retention.run_batched('it_rec_hold')").unwrap();
    let sent: BTreeSet<String> = fake.requests().iter().map(|r| r.path.rsplit('/').next().unwrap_or("").trim_end_matches(".json").to_string()).collect();
    assert_eq!(sent.len(), 20);
    assert!(sent.is_disjoint(&held), "a held recording was sent to Twilio");
    assert!(marked(&mut client, "it_rec_hold").is_disjoint(&held));
    let details = json(&mut client, "(SELECT details FROM retention.runs WHERE policy = 'it_rec_hold' ORDER BY id DESC LIMIT 1)");
    assert_eq!((n(&details, "held"), details["holds"].clone()), (10, serde_json::json!(["case-9"])), "{details}");

    // Released: the next run takes them.
    fake.clear_requests();
    client.batch_execute("SELECT retention.release_hold('it_rec_hold', 'case-9')").unwrap();
    let result = json(&mut client, "retention.run_policy('it_rec_hold')");
    assert_eq!(n(&result, "deleted"), 10, "{result}");
    let sent: BTreeSet<String> = fake.requests().iter().map(|r| r.path.rsplit('/').next().unwrap_or("").trim_end_matches(".json").to_string()).collect();
    assert_eq!(sent, held);
    client.batch_execute("DROP TABLE it_rec_hold; SELECT retention.drop_policy('it_rec_hold');").unwrap();
}

#[test]
fn the_contract_function_runs_the_preset_on_voice_recordings() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "voice_recordings", 3, 1, 1000, |i| Some(sid(1000 + i)));
    client
        .batch_execute(
            "DELETE FROM retention.policies WHERE name = 'voice_recordings';
             SELECT retention.alter_policy('old_recordings', table_schema => 'public', table_name => 'voice_recordings');",
        )
        .unwrap();
    fake.add_recordings((1001..=1004).map(sid));
    let result = json(&mut client, "cleanup_old_recordings()");
    assert_eq!((n(&result, "checked"), n(&result, "deleted")), (3, 3));
    let none_left = json(&mut client, "cleanup_old_recordings(1)");
    assert_eq!(n(&none_left, "deleted"), 1, "days => 1 reaches the day-old row too");
}

#[test]
fn api_key_credentials_work_too() {
    let fake = fake();
    let mut client = session(&fake);
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_api_key_sid = '{KEY_SID}';
             SET pg_retention.twilio_secret_file = '{}';",
            secret_file("it-key.secret", KEY_SECRET)
        ))
        .unwrap();
    recordings(&mut client, "it_rec_apikey", 4, 0, 100, |i| Some(sid(2000 + i)));
    fake.add_recordings((2001..=2004).map(sid));
    let result = json(&mut client, "retention.run_policy('it_rec_apikey')");
    assert_eq!(n(&result, "deleted"), 4);
    assert!(fake.requests().iter().all(|r| r.authenticated_as.as_deref() == Some(KEY_SID)));
}

#[test]
fn a_404_means_already_gone_and_marks_the_row() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "it_rec_gone", 10, 0, 100, |i| Some(sid(3000 + i)));
    fake.add_recordings((3001..=3004).map(sid)); // 3005..3010 are already gone at Twilio
    let result = json(&mut client, "retention.run_policy('it_rec_gone')");
    assert_eq!(n(&result, "deleted"), 10);
    assert_eq!(n(&result, "already_gone"), 6);
    assert_eq!(marked(&mut client, "it_rec_gone").len(), 10);
}

#[test]
fn refused_credentials_stop_the_run_and_mark_nothing() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "it_rec_401", 12, 0, 5, |i| Some(sid(4000 + i)));
    fake.add_recordings((4001..=4012).map(sid));
    client.batch_execute(&format!("SET pg_retention.twilio_secret_file = '{}'", secret_file("it-wrong.secret", "wrong-token"))).unwrap();

    let error = client.query_one("SELECT retention.run_policy('it_rec_401')", &[]).unwrap_err();
    let message = error.as_db_error().unwrap().message().to_string();
    assert!(message.starts_with(&format!("Twilio refused the credentials for account {ACCOUNT} (HTTP 401)")), "{message}");
    assert!(!message.contains("wrong-token"));
    assert!(marked(&mut client, "it_rec_401").is_empty());
    assert_eq!(fake.recordings().len(), 12);
    let (status, error_text): (String, String) = {
        let row = client
            .query_one("SELECT status, error FROM retention.runs WHERE policy = 'it_rec_401' ORDER BY id DESC LIMIT 1", &[])
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(status, "failed");
    assert!(error_text.contains("HTTP 401"));

    // The batched path stops the same way, its failure recorded and its lock released.
    let error = client.batch_execute("CALL retention.run_batched('it_rec_401')").unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("HTTP 401"));
    assert!(marked(&mut client, "it_rec_401").is_empty());

    // A 403 (wrong region) too.
    client.batch_execute(&format!("SET pg_retention.twilio_secret_file = '{}'", secret_file("it-token.secret", TOKEN))).unwrap();
    fake.push_faults([Fault::Status(403)]);
    client.batch_execute("SET pg_retention.twilio_concurrency = 1").unwrap();
    let error = client.query_one("SELECT retention.run_policy('it_rec_401')", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("HTTP 403"));
    assert!(marked(&mut client, "it_rec_401").is_empty());

    // The secret is in no log line.
    let log = std::env::var("PGHOST").map(|dir| format!("{dir}/server.log")).unwrap();
    if let Ok(text) = std::fs::read_to_string(&log) {
        assert!(!text.contains(TOKEN) && !text.contains("wrong-token"), "the server log must not carry the secret");
    }
}

#[test]
fn a_429_with_retry_after_is_retried_and_succeeds() {
    let fake = fake();
    let mut client = session(&fake);
    client.batch_execute("SET pg_retention.twilio_concurrency = 1").unwrap();
    recordings(&mut client, "it_rec_429", 3, 0, 100, |i| Some(sid(5000 + i)));
    fake.add_recordings((5001..=5003).map(sid));
    fake.push_faults([Fault::TooManyRequests(Some("1".into())), Fault::TooManyRequests(None)]);
    let started = Instant::now();
    let result = json(&mut client, "retention.run_policy('it_rec_429')");
    assert!(started.elapsed() >= Duration::from_millis(1150), "waited Retry-After: 1 s, then 2000/10 ms");
    assert_eq!(n(&result, "deleted"), 3);
    assert_eq!(n(&result, "rate_limited"), 0);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![429, 429, 204, 204, 204]);

    // Still 429 after every attempt: counted failed (rate_limited), left for the next run.
    recordings(&mut client, "it_rec_429", 1, 0, 100, |i| Some(sid(5100 + i)));
    fake.add_recordings([sid(5101)]);
    fake.push_faults([Fault::TooManyRequests(Some("0".into())), Fault::TooManyRequests(Some("0".into())), Fault::TooManyRequests(Some("0".into()))]);
    let result = json(&mut client, "retention.run_policy('it_rec_429')");
    assert_eq!((n(&result, "failed"), n(&result, "rate_limited")), (1, 1));
    assert!(marked(&mut client, "it_rec_429").is_empty());
}

#[test]
fn server_errors_timeouts_and_resets_fail_the_row_and_the_next_run_retries() {
    let fake = fake();
    let mut client = session(&fake);
    client.batch_execute("SET pg_retention.twilio_concurrency = 1").unwrap();
    recordings(&mut client, "it_rec_5xx", 6, 0, 100, |i| Some(sid(6000 + i)));
    fake.add_recordings((6001..=6006).map(sid));
    fake.push_faults([Fault::Status(500), Fault::Status(503), Fault::Hang(Duration::from_millis(1500)), Fault::Reset, Fault::Status(400)]);

    let result = json(&mut client, "retention.run_policy('it_rec_5xx')");
    assert_adds_up(&result);
    assert_eq!(n(&result, "deleted"), 1);
    assert_eq!(n(&result, "failed"), 5);
    assert_eq!(n(&result, "server_error"), 2);
    assert_eq!(n(&result, "timeout"), 1);
    assert_eq!(n(&result, "connection_error"), 1);
    assert_eq!(n(&result, "bad_request"), 1);
    assert_eq!(marked(&mut client, "it_rec_5xx").len(), 1);

    // One outcome per recording: the failed ones name their SID, HTTP status and reason, and
    // Twilio's request id when it answered; the result names the failed SIDs.
    let run_id = n(&result, "run_id");
    let outcomes: Vec<(String, String, Option<i32>, Option<String>, Option<String>)> = client
        .query(
            "SELECT sid, outcome, http_status, reason, request_id FROM retention.recording_outcomes WHERE run_id = $1 ORDER BY key",
            &[&run_id],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    let failed: BTreeSet<String> = outcomes.iter().filter(|o| o.1 == "failed").map(|o| o.0.clone()).collect();
    assert_eq!(failed.len(), 5);
    assert!(outcomes.iter().filter(|o| o.1 == "failed").all(|o| o.3.is_some()), "{outcomes:?}");
    let reasons: BTreeSet<String> = outcomes.iter().filter_map(|o| o.3.clone()).map(|r| r.split(':').next().unwrap_or("").to_string()).collect();
    assert_eq!(reasons, ["bad_request", "connection_error", "server_error", "timeout"].map(String::from).into_iter().collect());
    let deleted: Vec<&(String, String, Option<i32>, Option<String>, Option<String>)> = outcomes.iter().filter(|o| o.1 == "deleted").collect();
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0].2, Some(204));
    assert_eq!(marked(&mut client, "it_rec_5xx"), [deleted[0].0.clone()].into_iter().collect());
    let ids: BTreeSet<String> = fake.requests().iter().filter_map(|r| r.request_id.clone()).collect();
    assert!(outcomes.iter().filter_map(|o| o.4.clone()).all(|id| ids.contains(&id)), "request ids are Twilio's");
    assert_eq!(outcomes.iter().filter(|o| o.4.is_some()).count(), 4, "the four that got an answer carry its request id");
    let failed_sids: BTreeSet<String> = result["failed_sids"].as_array().unwrap().iter().map(|s| s.as_str().unwrap().to_string()).collect();
    assert_eq!(failed_sids, failed);

    let retry = json(&mut client, "retention.run_policy('it_rec_5xx')");
    assert_eq!((n(&retry, "checked"), n(&retry, "deleted")), (5, 5));
    assert_eq!(marked(&mut client, "it_rec_5xx").len(), 6);
    assert!(fake.recordings().is_empty());
}

#[test]
fn faults_injected_by_rate_are_counted() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "it_rec_rate", 9, 0, 100, |i| Some(sid(9000 + i)));
    fake.add_recordings((9001..=9009).map(sid));
    fake.set_every_nth(Some((3, Fault::Status(503))));
    let result = json(&mut client, "retention.run_policy('it_rec_rate')");
    assert_eq!((n(&result, "deleted"), n(&result, "server_error")), (6, 3));
    assert_adds_up(&result);
    fake.set_every_nth(None);
    let retry = json(&mut client, "retention.run_policy('it_rec_rate')");
    assert_eq!(n(&retry, "deleted"), 3);
}

#[test]
fn rows_without_a_valid_sid_are_skipped_and_never_sent() {
    let fake = fake();
    let mut client = session(&fake);
    let bad = |i: u32| match i {
        1 => None,
        2 => Some("RE123".to_string()),
        3 => Some(format!("CA{:032x}", 7)),
        4 => Some("RE../../Calls/CA00000000000000000000000000000000".to_string()),
        _ => Some(sid(7000 + i)),
    };
    recordings(&mut client, "it_rec_skip", 6, 0, 100, bad);
    fake.add_recordings([sid(7005), sid(7006)]);
    // One row is already soft-deleted: it is never sent again.
    client.batch_execute("UPDATE it_rec_skip SET deleted_at = now() - interval '1 day', deletion_reason = 'manual' WHERE id = 6").unwrap();

    // The dry run says the same, sending nothing.
    let preview = json(&mut client, "retention.preview('it_rec_skip')");
    assert_eq!(n(&preview, "would_send"), 1, "{preview}");
    assert_eq!((preview["would_skip"]["no_sid"].as_i64(), preview["would_skip"]["malformed_sid"].as_i64()), (Some(1), Some(3)), "{preview}");
    assert!(fake.requests().is_empty());
    let result = json(&mut client, "retention.run_policy('it_rec_skip')");
    assert_eq!((n(&result, "checked"), n(&result, "skipped"), n(&result, "deleted")), (5, 4, 1));
    assert_adds_up(&result);
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(paths, vec![format!("/2010-04-01/Accounts/{ACCOUNT}/Recordings/{}.json", sid(7005))]);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_skip WHERE deletion_reason = 'manual'"), 1);
}

#[test]
fn rows_without_a_valid_sid_are_marked_without_a_call_when_missing_sid_is_mark() {
    let fake = fake();
    let mut client = session(&fake);
    let bad = |i: u32| match i {
        1 => None,
        2 => Some("RE123".to_string()),
        _ => Some(sid(7100 + i)),
    };
    recordings(&mut client, "it_rec_nosid", 4, 0, 100, bad);
    fake.add_recordings([sid(7103), sid(7104)]);
    client.batch_execute("SELECT retention.alter_policy('it_rec_nosid', missing_sid => 'mark')").unwrap();

    let result = json(&mut client, "retention.run_policy('it_rec_nosid')");
    assert_eq!((n(&result, "checked"), n(&result, "skipped"), n(&result, "deleted"), n(&result, "rows_deleted")), (4, 2, 2, 4), "{result}");
    assert_eq!(fake.requests().len(), 2, "no call for the rows without a valid SID");
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_nosid WHERE deletion_reason = 'no_recording_sid' AND deleted_at IS NOT NULL AND id IN (1, 2)"), 2);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_nosid WHERE deletion_reason = 'retention_policy'"), 2);
    assert_eq!(
        count(&mut client, "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_rec_nosid' AND outcome = 'skipped' AND reason LIKE '%marked without a Twilio call%'"),
        2
    );
    let preview = json(&mut client, "retention.preview('it_rec_nosid')");
    assert_eq!(n(&preview, "rows"), 0, "the backlog reaches 0: {preview}");
    assert_eq!(n(&preview, "would_send"), 0);
    client.batch_execute("DROP TABLE it_rec_nosid; SELECT retention.drop_policy('it_rec_nosid');").unwrap();
}

/// SIGKILL of the backend while calls are in flight: no row is marked whose DELETE Twilio did
/// not confirm, and the next run converges. The kill restarts the whole server (that is what
/// Postgres does when a backend dies hard), so this test reconnects afterwards.
#[test]
fn a_crash_mid_flight_marks_nothing_unconfirmed_and_the_next_run_converges() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "it_rec_crash", 40, 0, 10, |i| Some(sid(8000 + i)));
    fake.add_recordings((8001..=8040).map(sid));
    fake.set_latency(Duration::from_millis(150));

    let base_url = fake.base_url();
    let secret = secret_file("it-token.secret", TOKEN);
    let runner = thread::spawn(move || {
        let mut client = connect();
        client
            .batch_execute(&format!(
                "SET pg_retention.twilio_account_sid = '{ACCOUNT}'; SET pg_retention.twilio_secret_file = '{secret}';
                 SET pg_retention.twilio_base_url = '{base_url}'; SET pg_retention.twilio_concurrency = 2;
                 SET application_name = 'it_rec_crash';"
            ))
            .unwrap();
        client.batch_execute("CALL retention.run_batched('it_rec_crash')")
    });
    assert!(wait_for(Duration::from_secs(20), || fake.requests().len() >= 14), "calls should be under way");

    // While calls are in flight the batched run holds no snapshot, no xid and no row or table lock.
    let pid: i32 = client
        .query_one("SELECT pid FROM pg_stat_activity WHERE application_name = 'it_rec_crash'", &[])
        .unwrap()
        .get(0);
    let mut observed_idle_between = false;
    for _ in 0..20 {
        let row = client
            .query_one(
                "SELECT a.backend_xmin IS NULL AND a.backend_xid IS NULL,
                        (SELECT count(*) FROM pg_locks l WHERE l.pid = a.pid AND l.locktype NOT IN ('virtualxid', 'advisory')
                           AND NOT (l.locktype = 'object' AND l.classid = 'retention.policies'::regclass))
                   FROM pg_stat_activity a WHERE a.pid = $1",
                &[&pid],
            )
            .unwrap();
        if row.get::<_, bool>(0) && row.get::<_, i64>(1) == 0 {
            observed_idle_between = true;
            break;
        }
        thread::sleep(Duration::from_millis(20));
    }
    assert!(observed_idle_between, "calls in flight should hold no snapshot, xid or lock");

    let status = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    assert!(runner.join().unwrap().is_err());
    drop(client);
    // The postmaster starts its crash handling when it reaps the backend: connecting before that
    // could reach a backend about to be reset.
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()), "backend reaped");

    // The server restarts after a backend crash; wait for it.
    let mut client = None;
    assert!(wait_for(Duration::from_secs(60), || {
        client = std::panic::catch_unwind(|| session(&fake)).ok();
        client.is_some()
    }));
    let mut client = client.unwrap();

    let confirmed = fake.confirmed_sids();
    let marked_now = marked(&mut client, "it_rec_crash");
    assert!(!marked_now.is_empty(), "some batches should have committed before the kill");
    assert!(marked_now.is_subset(&confirmed), "marked rows must all be confirmed by Twilio");
    assert!(marked_now.len() < 40);
    // Outcomes and marks were committed together: a `deleted` outcome for exactly the marked rows.
    let outcomes: BTreeSet<String> = client
        .query("SELECT sid FROM retention.recording_outcomes WHERE policy = 'it_rec_crash' AND outcome IN ('deleted', 'already_gone')", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outcomes, marked_now, "after the kill, outcomes and marks agree");

    fake.set_latency(Duration::ZERO);
    client.batch_execute("CALL retention.run_batched('it_rec_crash')").unwrap();
    assert_eq!(marked(&mut client, "it_rec_crash").len(), 40);
    assert!(fake.recordings().is_empty());
    let statuses: Vec<String> = client
        .query("SELECT status FROM retention.runs WHERE policy = 'it_rec_crash' ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(statuses, vec!["interrupted", "succeeded"]);
    let details: String = client
        .query_one("SELECT details::text FROM retention.runs WHERE policy = 'it_rec_crash' AND status = 'succeeded'", &[])
        .unwrap()
        .get(0);
    let details: Value = serde_json::from_str(&details).unwrap();
    assert_adds_up(&details);
}

/// ALTER SYSTEM SET (or RESET, for None) each setting, then reload.
fn alter_system(client: &mut Client, settings: &[(&str, Option<&str>)]) {
    for (name, value) in settings {
        match value {
            Some(value) => client.batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'")).unwrap(),
            None => client.batch_execute(&format!("ALTER SYSTEM RESET {name}")).unwrap(),
        }
    }
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    thread::sleep(Duration::from_millis(500));
}

/// The secret is read from its file at each run (rotating it needs no reload), a changed file
/// setting logs a path, and the retired secret settings, set by ALTER SYSTEM or in the
/// configuration file and reloaded, are refused without their value reaching the log.
#[test]
fn the_secret_comes_from_a_file_read_at_each_run_and_never_reaches_the_log() {
    const OLD: &str = "rotated-away-secret-5d1e";
    const IN_ALTER_SYSTEM: &str = "legacy-alter-system-secret-0c4b";
    const IN_CONF_FILE: &str = "legacy-conf-file-secret-8e2a";
    let fake = fake();
    let mut admin = connect();
    let file = secret_file("it-rotate.secret", OLD);
    alter_system(
        &mut admin,
        &[
            ("pg_retention.twilio_account_sid", Some(ACCOUNT)),
            ("pg_retention.twilio_secret_file", Some(&file)),
            ("pg_retention.twilio_base_url", Some(&fake.base_url())),
        ],
    );
    let mut client = connect();
    recordings(&mut client, "it_rec_rotate", 6, 0, 100, |i| Some(sid(9000 + i)));
    fake.add_recordings((9001..=9006).map(sid));
    let error = client.query_one("SELECT retention.run_policy('it_rec_rotate')", &[]).unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("HTTP 401"), "{error}");
    assert!(marked(&mut client, "it_rec_rotate").is_empty());

    // Rotated in place, no reload: the next run reads the new secret.
    secret_file("it-rotate.secret", TOKEN);
    let result = json(&mut client, "retention.run_policy('it_rec_rotate')");
    assert_eq!(n(&result, "deleted"), 6);

    // A new file path is a changed setting like any other: its path is logged, not its secret.
    let other = secret_file("it-rotate-2.secret", TOKEN);
    alter_system(&mut admin, &[("pg_retention.twilio_secret_file", Some(&other))]);
    assert!(wait_for(Duration::from_secs(10), || server_log().contains(&other)), "the reload logs the new path");

    // The retired settings: refused by ALTER SYSTEM, and by a reload of the configuration file.
    let refused = admin.batch_execute(&format!("ALTER SYSTEM SET pg_retention.twilio_auth_token = '{IN_ALTER_SYSTEM}'")).unwrap_err();
    assert!(refused.as_db_error().unwrap().message().contains("pg_retention.twilio_secret_file"));
    let conf = format!("{}/pg_retention.conf", std::env::var("PGHOST").unwrap());
    let original = std::fs::read_to_string(&conf).unwrap();
    std::fs::write(&conf, format!("{original}\npg_retention.twilio_auth_token = '{IN_CONF_FILE}'\n")).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    // The postmaster's reload reports the refusal at LOG (the ALTER SYSTEM above was an ERROR).
    assert!(
        wait_for(Duration::from_secs(10), || server_log().contains("LOG:  the Twilio secret is no longer a setting")),
        "the reload refused it"
    );
    std::fs::write(&conf, original).unwrap();
    alter_system(
        &mut admin,
        &[("pg_retention.twilio_account_sid", None), ("pg_retention.twilio_secret_file", None), ("pg_retention.twilio_base_url", None)],
    );

    let log = server_log();
    for secret in [OLD, TOKEN, IN_ALTER_SYSTEM, IN_CONF_FILE] {
        assert!(!log.contains(secret), "the server log must not carry the secret {secret}");
    }
}

/// A secret file that group or others can read is refused before anything is read or sent,
/// with an error naming the file and the fix, as PostgreSQL refuses such an ssl_key_file.
#[test]
fn a_secret_file_others_can_read_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let fake = fake();
    let mut client = session(&fake);
    let file = secret_file("it-open.secret", TOKEN);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    client.batch_execute(&format!("SET pg_retention.twilio_secret_file = '{file}'")).unwrap();
    recordings(&mut client, "it_rec_open", 3, 0, 100, |i| Some(sid(9100 + i)));
    fake.add_recordings((9101..=9103).map(sid));
    let error = client.query_one("SELECT retention.run_policy('it_rec_open')", &[]).unwrap_err();
    let db = error.as_db_error().unwrap();
    assert_eq!(db.message(), format!("pg_retention.twilio_secret_file \"{file}\" has group or world access (mode 0644): it must be 0600 or less if owned by the server's OS user, 0640 or less if owned by root"));
    assert!(db.hint().unwrap_or_default().contains("chmod 0600"));
    assert!(fake.requests().is_empty(), "nothing is sent");
    assert!(marked(&mut client, "it_rec_open").is_empty());
    let error = client.batch_execute("CALL retention.run_batched('it_rec_open')").unwrap_err();
    assert!(error.as_db_error().unwrap().message().contains("has group or world access"));
    assert!(fake.requests().is_empty());
}

/// The operator hijack: a varchar SID column makes `sid = confirmed.sid` resolve
/// `varchar = text`, which pg_catalog has no exact operator for, so a role with CREATE on
/// public could define one and have a superuser's CALL run it. Every operator is qualified now.
#[test]
fn an_operator_planted_in_public_is_never_called_by_a_recordings_run() {
    let fake = fake();
    let mut client = session(&fake);
    client
        .batch_execute(
            "DROP TABLE IF EXISTS it_rec_varchar, it_hijacked;
             DELETE FROM retention.policies WHERE name = 'it_rec_varchar';
             DROP OPERATOR IF EXISTS public.= (varchar, text);
             DROP FUNCTION IF EXISTS public.it_hijack(varchar, text);
             CREATE TABLE it_hijacked (n int);
             GRANT INSERT ON it_hijacked TO PUBLIC;
             CREATE FUNCTION public.it_hijack(varchar, text) RETURNS boolean LANGUAGE sql AS
               'INSERT INTO public.it_hijacked VALUES (1); SELECT $1::text OPERATOR(pg_catalog.=) $2';
             CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = text, FUNCTION = public.it_hijack);
             CREATE TABLE it_rec_varchar (id bigint PRIMARY KEY, created_at timestamptz NOT NULL,
                                          twilio_recording_sid varchar(34), deleted_at timestamptz, deletion_reason text);
             CREATE INDEX ON it_rec_varchar (created_at);
             SELECT retention.add_policy('it_rec_varchar', 'it_rec_varchar', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         reason_column => 'deletion_reason', sid_column => 'twilio_recording_sid', id_column => 'id');",
        )
        .unwrap();
    for i in 1..=5u32 {
        client
            .execute("INSERT INTO it_rec_varchar VALUES ($1, now() - interval '100 days', $2, NULL, NULL)", &[&i64::from(i), &sid(9200 + i)])
            .unwrap();
    }
    fake.add_recordings((9201..=9205).map(sid));
    client.batch_execute("SET search_path = public, pg_catalog").unwrap();
    client.batch_execute("CALL retention.run_batched('it_rec_varchar')").unwrap();
    client.batch_execute("RESET search_path").unwrap();
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_rec_varchar WHERE deleted_at IS NOT NULL"), 5);
    assert_eq!(count(&mut client, "SELECT count(*) FROM it_hijacked"), 0, "the planted operator was called");
    client
        .batch_execute(
            "DROP OPERATOR public.= (varchar, text); DROP FUNCTION public.it_hijack(varchar, text); DROP TABLE it_hijacked;",
        )
        .unwrap();
}

/// Issue 10, item 17: while the Twilio calls are in flight a batched run holds no snapshot, xid
/// or lock, so the wait is not a transaction and must not count as the longest one.
#[test]
fn the_twilio_wait_is_not_counted_as_a_transaction() {
    let fake = fake();
    fake.set_latency(Duration::from_millis(300));
    let mut client = session(&fake);
    client.batch_execute("SET pg_retention.twilio_concurrency = 1").unwrap();
    recordings(&mut client, "it_rec_wait", 6, 0, 3, |i| Some(sid(9300 + i)));
    fake.add_recordings((9301..=9306).map(sid));
    client.batch_execute("CALL retention.run_batched('it_rec_wait')").unwrap();
    let details = json(&mut client, "(SELECT details FROM retention.runs WHERE policy = 'it_rec_wait' ORDER BY id DESC LIMIT 1)");
    assert_eq!(n(&details, "deleted"), 6);
    let longest = details["longest_transaction_ms"].as_f64().unwrap();
    assert!(longest < 300.0, "each batch waited 900 ms on Twilio, but no transaction was open then: {longest} ms");
}

/// Issue 10, item 6: a cancel or a statement_timeout while a batched run's Twilio calls are
/// in flight ends the run `failed`, with nothing of that batch marked, and leaves neither the
/// policy's lock nor a `running` row behind: the same session runs the policy again at once.
#[test]
fn a_cancel_or_timeout_during_twilio_calls_records_the_failure_and_frees_the_policy() {
    let fake = fake();
    let mut client = session(&fake);
    recordings(&mut client, "it_rec_cancel", 20, 0, 10, |i| Some(sid(9000 + i)));
    fake.add_recordings((9001..=9020).map(sid));
    client.batch_execute("SET pg_retention.twilio_timeout_ms = 20000; SET application_name = 'it_rec_cancel'").unwrap();
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let mut observer = connect();
    let lock_held = |observer: &mut Client| {
        count(observer, &format!("SELECT count(*) FROM pg_locks WHERE pid = {pid} AND locktype = 'object' AND classid = 'retention.policies'::regclass"))
    };

    let call = "CALL retention.run_batched('it_rec_cancel')";
    let select = "SELECT retention.run_policy('it_rec_cancel')";
    // (what, its setting, the statement, what the recorded error says). A batched run records
    // its own end; the SELECT path's failure is recorded out of band by the recorder.
    let cases = [
        ("cancel", "SET statement_timeout = 0", call, "no row of this batch was marked"),
        ("statement_timeout", "SET statement_timeout = '1500ms'", call, "no row of this batch was marked"),
        ("cancel of a SELECT", "SET statement_timeout = 0", select, "canceling statement due to user request"),
    ];
    for (run, (how, setup, statement, recorded)) in cases.into_iter().enumerate() {
        client.batch_execute(setup).unwrap();
        fake.set_latency(Duration::from_secs(10));
        fake.clear_requests();
        let in_flight = fake.in_flight_counter();
        let canceller = thread::spawn(move || {
            let mut observer = connect();
            if how.starts_with("cancel") {
                assert!(wait_for(Duration::from_secs(10), || in_flight() > 0), "{how}: calls in flight");
                thread::sleep(Duration::from_millis(300));
                observer.batch_execute(&format!("SELECT pg_cancel_backend({pid})")).unwrap();
            }
        });
        let error = client.batch_execute(statement).expect_err(how);
        canceller.join().unwrap();
        assert!(error.as_db_error().is_some_and(|e| e.message().contains("canceling statement")), "{how}: {error:?}");
        let runs = (run + 1) as i64;
        assert!(
            wait_for(Duration::from_secs(10), || count(&mut observer, "SELECT count(*) FROM retention.runs WHERE policy = 'it_rec_cancel'") == runs),
            "{how}: the run is recorded"
        );
        let row = observer
            .query_one("SELECT status, error FROM retention.runs WHERE policy = 'it_rec_cancel' ORDER BY id DESC LIMIT 1", &[])
            .unwrap();
        assert_eq!(row.get::<_, String>(0), "failed", "{how}: the run must not stay running");
        assert!(row.get::<_, String>(1).contains(recorded), "{how}: {:?}", row.get::<_, String>(1));
        assert_eq!(lock_held(&mut observer), 0, "{how}: the policy's lock must be released");
        assert!(marked(&mut observer, "it_rec_cancel").is_empty(), "{how}: nothing unconfirmed is marked");
    }
    client.batch_execute("SET statement_timeout = 0").unwrap();
    fake.set_latency(Duration::ZERO);
    client.batch_execute("CALL retention.run_batched('it_rec_cancel')").unwrap();
    assert_eq!(marked(&mut client, "it_rec_cancel").len(), 20);
    let statuses: Vec<String> =
        client.query("SELECT status FROM retention.runs WHERE policy = 'it_rec_cancel' ORDER BY id", &[]).unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(statuses, vec!["failed", "failed", "failed", "succeeded"]);
}

/// Issue 22, item 9: a Twilio that answers every DELETE with 429 and a huge Retry-After does
/// not keep a run (and its policy's lock) for days: after `pg_retention.twilio_max_rate_limited`
/// recordings in a row still rate-limited, the run stops `failed` and leaves the rest. And a
/// batched run stops at `pg_retention.max_run_duration`, with what Twilio confirmed marked.
#[test]
fn a_rate_limited_or_overlong_recordings_run_stops_failed_and_leaves_the_rest() {
    let fake = fake();
    let mut client = session(&fake);
    client
        .batch_execute("SET pg_retention.twilio_concurrency = 2; SET pg_retention.twilio_max_backoff_ms = 100; SET pg_retention.twilio_max_rate_limited = 4;")
        .unwrap();
    recordings(&mut client, "it_rec_bound", 40, 0, 10, |i| Some(sid(7000 + i)));
    fake.add_recordings((7001..=7040).map(sid));
    fake.set_every_nth(Some((1, Fault::TooManyRequests(Some("86400".into())))));
    let started = Instant::now();
    let error = client.batch_execute("CALL retention.run_batched('it_rec_bound')").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(20), "stopped in {:?}", started.elapsed());
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("429") && message.contains("twilio_max_rate_limited"), "{message}");
    let (status, error_text): (String, String) = {
        let row = client.query_one("SELECT status, error FROM retention.runs WHERE policy = 'it_rec_bound' ORDER BY id DESC LIMIT 1", &[]).unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status.as_str(), error_text.contains("left the rest")), ("failed", true), "{error_text}");
    let sent: BTreeSet<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(sent.len() <= 10, "no recording past the bound's batch was sent: {} of 40", sent.len());
    assert!(marked(&mut client, "it_rec_bound").is_empty(), "nothing confirmed, nothing marked");
    let free = "SELECT count(*) FROM pg_locks WHERE locktype = 'object' AND classid = 'retention.policies'::regclass";
    assert_eq!(count(&mut client, free), 0, "the policy's lock is released");

    // A slow Twilio that answers: the run stops at max_run_duration, every confirmed row marked.
    fake.set_every_nth(None);
    fake.set_latency(Duration::from_millis(300));
    client.batch_execute("SET pg_retention.twilio_concurrency = 1; SET pg_retention.max_run_duration = '2s';").unwrap();
    let started = Instant::now();
    let error = client.batch_execute("CALL retention.run_batched('it_rec_bound')").unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(6), "stopped in {:?}", started.elapsed());
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("max_run_duration"), "{message}");
    let confirmed = marked(&mut client, "it_rec_bound");
    assert!(!confirmed.is_empty() && confirmed.len() < 40, "some marked, the rest left: {}", confirmed.len());
    assert_eq!(confirmed, fake.confirmed_sids(), "marked exactly what Twilio confirmed");
    fake.set_latency(Duration::ZERO);
    client.batch_execute("RESET pg_retention.max_run_duration").unwrap();
    client.batch_execute("CALL retention.run_batched('it_rec_bound')").unwrap();
    assert_eq!(marked(&mut client, "it_rec_bound").len(), 40, "the next run goes on from there");
}
