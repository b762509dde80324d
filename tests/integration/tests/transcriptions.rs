//! Transcriptions (issue 24): a policy with `transcriptions` lists each recording's
//! transcriptions at Twilio, deletes each, then the recording, and marks the row only when all
//! of them are confirmed gone; each object's outcome is recorded, and a crash between the
//! deletions and the mark loses nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use fake_twilio::{Fault, FakeTwilio};
use pg_retention_it::{marked_ids, run_policy, connect, count, reconnect, secret_file, wait_for};
use postgres::Client;

const MAIN: &str = "AC00000000000000000000000000000025";
const TOKEN: &str = "it-transcriptions-token-83c1";

fn sid(n: u32) -> String {
    format!("RE{n:032x}")
}

fn tr(n: u32) -> String {
    format!("TR{n:032x}")
}

fn settings(fake: &FakeTwilio) -> String {
    format!(
        "SET pg_retention.twilio_account_sid = '{MAIN}'; SET pg_retention.twilio_secret_file = '{}';
         SET pg_retention.twilio_base_url = '{}'; SET pg_retention.twilio_timeout_ms = 5000;
         SET pg_retention.twilio_concurrency = 1;",
        secret_file("it-transcriptions.secret", TOKEN),
        fake.base_url()
    )
}

/// A fake Twilio, a session pointed at it, and policy `name` (with `transcriptions`) on a table
/// of rows `ids`, a hundred days old, each with recording `sid(id)` stored at the fake.
fn setup(name: &str, ids: &[u32]) -> (FakeTwilio, Client) {
    let fake = FakeTwilio::start(MAIN, vec![(MAIN.into(), TOKEN.into())]);
    let mut client = connect();
    client.batch_execute(&settings(&fake)).unwrap();
    client
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, deleted_at timestamptz);
             SELECT retention.add_policy('{name}', '{name}', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id', transcriptions => true);"
        ))
        .unwrap();
    for id in ids {
        client.execute(&format!("INSERT INTO {name} VALUES ($1, now() - interval '100 days', $2)"), &[&i64::from(*id), &sid(*id)]).unwrap();
    }
    fake.add_recordings(ids.iter().map(|id| sid(*id)));
    (fake, client)
}

/// (key, object, sid, outcome, http_status) of the policy's outcomes, in key and SID order.
fn outcomes(client: &mut Client, name: &str) -> Vec<(String, String, String, String, Option<i32>)> {
    client
        .query(
            &format!("SELECT key, object, sid, outcome, http_status FROM retention.recording_outcomes WHERE policy = '{name}' ORDER BY run_id, key, sid"),
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect()
}

fn row(key: u32, object: &str, sid: String, outcome: &str, status: i32) -> (String, String, String, String, Option<i32>) {
    (key.to_string(), object.to_string(), sid, outcome.to_string(), Some(status))
}

#[test]
fn every_transcription_is_deleted_before_its_recording_and_each_is_recorded() {
    let (fake, mut client) = setup("it_tr_all", &[1, 2, 3]);
    fake.add_transcriptions(MAIN, &sid(1), [tr(11), tr(12)]);
    fake.add_transcriptions(MAIN, &sid(2), [tr(21)]);

    let preview: String = client.query_one("SELECT retention.preview('it_tr_all')::text", &[]).unwrap().get(0);
    assert!(preview.contains("\"transcriptions\""), "preview says transcriptions go first: {preview}");
    let result = run_policy(&mut client, "it_tr_all");
    assert_eq!(marked_ids(&mut client, "it_tr_all"), BTreeSet::from([1, 2, 3]), "{result}");
    assert!(fake.transcriptions().is_empty() && fake.recordings().is_empty());
    assert_eq!((result["transcriptions_deleted"].as_i64(), result["transcriptions_failed"].as_i64()), (Some(3), Some(0)), "{result}");

    // At Twilio, each recording's DELETE came after every DELETE of its transcriptions.
    let order: Vec<String> = fake.requests().iter().filter(|r| r.method == "DELETE").map(|r| r.path.rsplit('/').next().unwrap().to_string()).collect();
    let at = |sid: String| order.iter().position(|p| *p == format!("{sid}.json")).unwrap();
    assert!(at(tr(11)) < at(sid(1)) && at(tr(12)) < at(sid(1)) && at(tr(21)) < at(sid(2)), "{order:?}");

    let expected = vec![
        row(1, "recording", sid(1), "deleted", 204),
        row(1, "transcription", tr(11), "deleted", 204),
        row(1, "transcription", tr(12), "deleted", 204),
        row(2, "recording", sid(2), "deleted", 204),
        row(2, "transcription", tr(21), "deleted", 204),
        row(3, "recording", sid(3), "deleted", 204),
    ];
    assert_eq!(outcomes(&mut client, "it_tr_all"), expected);
    let request_ids = count(&mut client, "SELECT count(DISTINCT request_id) FROM retention.recording_outcomes WHERE policy = 'it_tr_all' AND request_id LIKE 'RQ%'");
    assert_eq!(request_ids, 6, "every object's outcome names Twilio's request");

    // The run's record and ledger entry cover every object, and the certificate lists them.
    let run_id: i64 = client.query_one("SELECT max(id) FROM retention.runs WHERE policy = 'it_tr_all'", &[]).unwrap().get(0);
    let covered: i64 = client
        .query_one("SELECT (details->'recording_outcomes'->>'count')::int8 FROM retention.runs WHERE id = $1", &[&run_id])
        .unwrap()
        .get(0);
    assert_eq!(covered, 6);
    let certificate: String = client.query_one("SELECT retention.deletion_certificate($1)::text", &[&run_id]).unwrap().get(0);
    assert!(certificate.contains(&tr(21)) && certificate.contains("\"object\": \"transcription\""), "{certificate}");
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.ledger WHERE retention.verify_ledger() IS NOT NULL"), 0);
}

#[test]
fn a_transcription_twilio_did_not_delete_keeps_its_row_and_its_recording() {
    let (fake, mut client) = setup("it_tr_fail", &[1]);
    fake.add_transcriptions(MAIN, &sid(1), [tr(11), tr(12)]);
    // The second DELETE (of tr(12)) is answered 503.
    fake.set_every_nth(Some((2, Fault::Status(503))));
    let result = run_policy(&mut client, "it_tr_fail");
    assert!(marked_ids(&mut client, "it_tr_fail").is_empty(), "{result}");
    assert_eq!(fake.recordings(), BTreeSet::from([sid(1)]), "the recording was never sent");
    assert_eq!(fake.transcriptions(), BTreeSet::from([tr(12)]));
    assert_eq!((result["failed"].as_i64(), result["transcriptions_left"].as_i64()), (Some(1), Some(1)), "{result}");
    let reason: String = client
        .query_one("SELECT reason FROM retention.recording_outcomes WHERE policy = 'it_tr_fail' AND object = 'recording'", &[])
        .unwrap()
        .get(0);
    assert!(reason.starts_with("transcriptions_left: 1 of its 2"), "{reason}");

    fake.set_every_nth(None);
    let again = run_policy(&mut client, "it_tr_fail");
    assert_eq!(marked_ids(&mut client, "it_tr_fail"), BTreeSet::from([1]), "{again}");
    assert!(fake.transcriptions().is_empty() && fake.recordings().is_empty());
    let expected = vec![
        (1.to_string(), "recording".to_string(), sid(1), "failed".to_string(), None),
        row(1, "transcription", tr(11), "deleted", 204),
        row(1, "transcription", tr(12), "failed", 503),
        row(1, "recording", sid(1), "deleted", 204),
        row(1, "transcription", tr(12), "deleted", 204),
    ];
    assert_eq!(outcomes(&mut client, "it_tr_fail"), expected);
}

#[test]
fn a_listing_twilio_no_longer_answers_proves_nothing_and_marks_nothing() {
    let (fake, mut client) = setup("it_tr_404", &[1, 2]);
    // Both recordings were deleted outside pg_retention, their transcriptions left behind. For 2,
    // Twilio's 40 days of metadata have passed: its transcriptions can no longer be listed.
    fake.add_transcriptions(MAIN, &sid(1), [tr(11)]);
    fake.add_transcriptions(MAIN, &sid(2), [tr(21)]);
    fake.delete_recording_outside(MAIN, &sid(2));
    fake.forget_deleted_recordings();
    fake.delete_recording_outside(MAIN, &sid(1));

    let result = run_policy(&mut client, "it_tr_404");
    assert_eq!(marked_ids(&mut client, "it_tr_404"), BTreeSet::from([1]), "1's transcription listed and deleted, its recording already gone: {result}");
    assert_eq!(fake.transcriptions(), BTreeSet::from([tr(21)]), "2's transcription is still stored, and its row says so");
    let (status, reason): (Option<i32>, String) = client
        .query_one("SELECT http_status, reason FROM retention.recording_outcomes WHERE policy = 'it_tr_404' AND key = '2'", &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(status, Some(404));
    assert!(reason.starts_with("transcriptions_left: ") && reason.contains("40 days"), "{reason}");
    let one: Vec<_> = outcomes(&mut client, "it_tr_404").into_iter().filter(|o| o.0 == "1").collect();
    assert_eq!(one, vec![row(1, "recording", sid(1), "already_gone", 404), row(1, "transcription", tr(11), "deleted", 204)]);
}

/// The backend is SIGKILLed after the first row's transcriptions and recording were deleted at
/// Twilio, before its batch was marked: the next run finishes the row, `already_gone`.
#[test]
fn a_crash_between_the_deletions_and_the_mark_loses_nothing() {
    let (fake, mut client) = setup("it_tr_kill", &[1, 2]);
    fake.add_transcriptions(MAIN, &sid(1), [tr(11)]);
    fake.add_transcriptions(MAIN, &sid(2), [tr(21)]);
    fake.set_latency(Duration::from_millis(400));
    let setup_sql = format!("{} SET application_name = 'it_tr_kill';", settings(&fake));
    let runner = std::thread::spawn(move || {
        let mut session = connect();
        session.batch_execute(&setup_sql).unwrap();
        let _ = session.batch_execute("SELECT retention.run_policy('it_tr_kill')");
    });
    let first_gone = format!("/2010-04-01/Accounts/{MAIN}/Recordings/{}.json", sid(1));
    assert!(wait_for(Duration::from_secs(20), || fake.requests().iter().any(|r| r.path == first_gone && r.status == 204)));
    let pid: i32 = client.query_one("SELECT pid FROM pg_stat_activity WHERE application_name = 'it_tr_kill'", &[]).unwrap().get(0);
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let _ = runner.join();
    drop(client);
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    std::thread::sleep(Duration::from_millis(300));
    fake.set_latency(Duration::ZERO);
    assert!(!fake.recordings().contains(&sid(1)) && !fake.transcriptions().contains(&tr(11)), "row 1's objects were gone before the kill");

    let mut client = reconnect();
    client.batch_execute(&settings(&fake)).unwrap();
    assert!(marked_ids(&mut client, "it_tr_kill").is_empty(), "nothing was marked by the killed run");
    assert_eq!(count(&mut client, "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_tr_kill'"), 0, "nor any outcome");
    let result = run_policy(&mut client, "it_tr_kill");
    assert_eq!(marked_ids(&mut client, "it_tr_kill"), BTreeSet::from([1, 2]), "{result}");
    assert!(fake.recordings().is_empty() && fake.transcriptions().is_empty());
    let one: Vec<_> = outcomes(&mut client, "it_tr_kill").into_iter().filter(|o| o.0 == "1").collect();
    assert_eq!(one, vec![row(1, "recording", sid(1), "already_gone", 404)], "the next run names what happened: gone before it came");
    // A SELECT run is one transaction: the killed one left no history row, `running` or other.
    let runs = count(&mut client, "SELECT count(*) FROM retention.runs WHERE policy = 'it_tr_kill' AND status <> 'succeeded'");
    assert_eq!(runs, 0, "nothing of the killed run is left `running`");
}
