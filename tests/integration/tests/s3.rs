//! S3 stores (issue 24): a recordings policy deletes every S3 object its rows name, from a
//! real S3 server on loopback (s3s-fs, which checks each SigV4 signature; moto for versioned
//! and object-locked buckets), before the row's Twilio calls, and marks a row only when every
//! one is confirmed gone.

use std::collections::BTreeSet;
use std::time::Duration;

use fake_twilio::FakeTwilio;
use pg_retention_it::{marked_ids, run_policy, connect, count, reconnect, secret_file, wait_for};
use postgres::Client;
use s3_servers::{Server, ACCESS, SECRET};
use serde_json::Value;

const MAIN: &str = "AC00000000000000000000000000000053";
const TOKEN: &str = "it-s3-token-7f2a";

fn sid(n: u32) -> String {
    format!("RE{n:032x}")
}

/// Store `store` on bucket `bucket` of `server`, with a secret file holding `secret`.
fn add_store(client: &mut Client, server: &Server, store: &str, bucket: &str, secret: &str) {
    let file = secret_file(&format!("it-{store}.aws"), &format!("[default]\naws_access_key_id = {ACCESS}\naws_secret_access_key = {secret}"));
    client
        .execute(
            "INSERT INTO retention.stores (name, kind, endpoint, region, bucket, secret_file) VALUES ($1, 's3', $2, 'us-east-1', $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&store, &server.endpoint, &bucket, &file],
        )
        .unwrap();
}

/// A fake Twilio, a session pointed at it, and policy `name` on a table of rows (id, audio key,
/// transcript key), a hundred days old, each with recording `sid(id)` stored at the fake, whose
/// objects are in store `store`.
fn setup(name: &str, store: &str, rows: &[(u32, Option<&str>, Option<&str>)]) -> (FakeTwilio, Client) {
    let fake = FakeTwilio::start(MAIN, vec![(MAIN.into(), TOKEN.into())]);
    let mut client = connect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{MAIN}'; SET pg_retention.twilio_secret_file = '{}';
             SET pg_retention.twilio_base_url = '{}'; SET pg_retention.twilio_timeout_ms = 5000;
             DROP TABLE IF EXISTS {name};
             DELETE FROM retention.policies WHERE name = '{name}';
             CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, sid text, audio_key text, transcript_key varchar,
                                  deleted_at timestamptz);",
            secret_file("it-s3-twilio.secret", TOKEN),
            fake.base_url()
        ))
        .unwrap();
    for (id, audio, transcript) in rows {
        client
            .execute(&format!("INSERT INTO {name} VALUES ($1, now() - interval '100 days', $2, $3, $4)"), &[&i64::from(*id), &sid(*id), audio, transcript])
            .unwrap();
    }
    fake.add_recordings(rows.iter().map(|row| sid(row.0)));
    client
        .batch_execute(&format!(
            "SELECT retention.add_policy('{name}', '{name}', 'created_at', 'older_than', interval '90 days',
                                         action => 'twilio_recording', soft_delete_column => 'deleted_at',
                                         sid_column => 'sid', id_column => 'id', s3_store => '{store}',
                                         s3_key_columns => ARRAY['audio_key', 'transcript_key']);"
        ))
        .unwrap();
    (fake, client)
}

#[test]
fn every_s3_object_of_a_row_goes_before_the_row_is_marked() {
    let server = Server::s3s_fs(&["it-media"]);
    let keys = ["calls/1 a+b.wav", "calls/1.txt", "calls/ünï #2?.wav", "AC1/RE3%20x.wav"];
    server.put_files("it-media", &keys);
    server.put_files("it-media", &["calls/1 a+b.wav.kept", "calls/4.wav"]);
    let mut admin = connect();
    add_store(&mut admin, &server, "it_media", "it-media", SECRET);
    let rows = [(1, Some(keys[0]), Some(keys[1])), (2, Some(keys[2]), None), (3, Some(keys[3]), None), (4, None, None)];
    let (fake, mut client) = setup("it_s3_all", "it_media", &rows);

    let preview: String = client.query_one("SELECT retention.preview('it_s3_all')::text", &[]).unwrap().get(0);
    let preview: Value = serde_json::from_str(&preview).unwrap();
    assert_eq!((preview["s3_store"].as_str(), preview["s3_keys"].as_i64(), preview["would_send"].as_i64()), (Some("it_media"), Some(4), Some(4)), "{preview}");
    let result = run_policy(&mut client, "it_s3_all");
    assert_eq!(marked_ids(&mut client, "it_s3_all"), BTreeSet::from([1, 2, 3, 4]), "{result}");
    assert_eq!(server.stored("it-media"), ["calls/1 a+b.wav.kept", "calls/4.wav"], "only the keys the rows named went");
    assert!(fake.recordings().is_empty());
    assert_eq!((result["s3_objects_deleted"].as_i64(), result["s3_objects_failed"].as_i64()), (Some(4), Some(0)), "{result}");
    let objects: Vec<(String, String, String, String)> = client
        .query("SELECT key, sid, store, outcome FROM retention.recording_outcomes WHERE policy = 'it_s3_all' AND object = 's3_object' ORDER BY key, sid", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    let expected: Vec<(String, String, String, String)> = [("1", keys[0]), ("1", keys[1]), ("2", keys[2]), ("3", keys[3])]
        .iter()
        .map(|(k, s)| (k.to_string(), s.to_string(), "it_media".to_string(), "deleted".to_string()))
        .collect();
    assert_eq!(objects, expected);
}

#[test]
fn a_wrong_secret_is_refused_and_nothing_is_deleted_or_marked() {
    let server = Server::s3s_fs(&["it-refused"]);
    server.put_files("it-refused", &["calls/1.wav"]);
    let mut admin = connect();
    add_store(&mut admin, &server, "it_refused", "it-refused", "not-the-secret");
    let (fake, mut client) = setup("it_s3_refused", "it_refused", &[(1, Some("calls/1.wav"), None)]);
    let error = client.batch_execute("SELECT retention.run_policy('it_s3_refused')").unwrap_err();
    let message = error.as_db_error().map(|e| e.message().to_string()).unwrap_or_default();
    assert!(message.contains("store \"it_refused\" refused the credentials") && message.contains("403"), "{message}");
    assert!(!message.contains("not-the-secret"), "the secret is never in an error");
    assert!(marked_ids(&mut client, "it_s3_refused").is_empty());
    assert_eq!(server.stored("it-refused"), ["calls/1.wav"]);
    assert!(fake.requests().is_empty(), "Twilio never called");
}

#[test]
fn a_key_s3_will_not_delete_leaves_exactly_its_row() {
    let server = Server::moto();
    server.boto3(&["bucket", "it-locked", "locked"]);
    let held = server.boto3(&["put", "it-locked", "calls/held.wav"]);
    server.boto3(&["hold", "it-locked", "calls/held.wav", held[0].as_str().unwrap()]);
    server.boto3(&["put", "it-locked", "calls/free.wav", "2"]);
    let mut admin = connect();
    add_store(&mut admin, &server, "it_locked", "it-locked", SECRET);
    let (fake, mut client) = setup("it_s3_locked", "it_locked", &[(1, Some("calls/held.wav"), None), (2, Some("calls/free.wav"), None)]);

    let result = run_policy(&mut client, "it_s3_locked");
    assert_eq!(marked_ids(&mut client, "it_s3_locked"), BTreeSet::from([2]), "{result}");
    assert_eq!(fake.recordings(), BTreeSet::from([sid(1)]), "the held row's recording is kept at Twilio too");
    assert_eq!(result["objects_left"].as_i64(), Some(1), "{result}");
    let reason: String = client
        .query_one("SELECT reason FROM retention.recording_outcomes WHERE policy = 'it_s3_locked' AND key = '1' AND object = 'recording'", &[])
        .unwrap()
        .get(0);
    assert!(reason.starts_with("objects_left: 1 of its 1") && reason.contains("AccessDenied"), "{reason}");
    let left: Vec<String> = server.boto3(&["versions", "it-locked"]).as_array().unwrap().iter().map(|v| v[0].as_str().unwrap().to_string()).collect();
    assert_eq!(left, ["calls/held.wav"], "no version of the free key is left: a versioned bucket keeps none of it");
    let versions = count(&mut client, "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_s3_locked' AND key = '2' AND object = 's3_object' AND version IS NOT NULL");
    assert_eq!(versions, 2, "one outcome per version deleted");
    let named = count(&mut client, "SELECT count(*) FROM retention.recording_outcomes WHERE policy = 'it_s3_locked' AND object = 's3_object' AND request_id IS NOT NULL");
    assert_eq!(named, 3, "each S3 outcome names the store's request");
}

/// The backend is SIGKILLed after the first row's S3 object and recording were deleted, before
/// its batch was marked: the next run finishes the row.
#[test]
fn a_crash_between_the_deletions_and_the_mark_loses_nothing() {
    let server = Server::s3s_fs(&["it-kill"]);
    server.put_files("it-kill", &["calls/1.wav", "calls/2.wav"]);
    let mut admin = connect();
    add_store(&mut admin, &server, "it_kill", "it-kill", SECRET);
    let (fake, mut client) = setup("it_s3_kill", "it_kill", &[(1, Some("calls/1.wav"), None), (2, Some("calls/2.wav"), None)]);
    client.batch_execute("SET pg_retention.twilio_concurrency = 1").unwrap();
    fake.set_latency(Duration::from_millis(400));
    let settings = format!(
        "SET pg_retention.twilio_account_sid = '{MAIN}'; SET pg_retention.twilio_secret_file = '{}'; SET pg_retention.twilio_base_url = '{}';
         SET pg_retention.twilio_concurrency = 1; SET application_name = 'it_s3_kill';",
        secret_file("it-s3-twilio.secret", TOKEN),
        fake.base_url()
    );
    let runner = std::thread::spawn(move || {
        let mut session = connect();
        session.batch_execute(&settings).unwrap();
        let _ = session.batch_execute("SELECT retention.run_policy('it_s3_kill')");
    });
    let first = format!("/2010-04-01/Accounts/{MAIN}/Recordings/{}.json", sid(1));
    assert!(wait_for(Duration::from_secs(20), || fake.requests().iter().any(|r| r.path == first && r.status == 204)));
    let pid: i32 = client.query_one("SELECT pid FROM pg_stat_activity WHERE application_name = 'it_s3_kill'", &[]).unwrap().get(0);
    assert!(std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let _ = runner.join();
    drop((client, admin));
    assert!(wait_for(Duration::from_secs(10), || !std::path::Path::new(&format!("/proc/{pid}")).exists()));
    std::thread::sleep(Duration::from_millis(300));
    fake.set_latency(Duration::ZERO);
    assert!(server.stored("it-kill").is_empty(), "both objects were deleted before the kill");

    let mut client = reconnect();
    client
        .batch_execute(&format!(
            "SET pg_retention.twilio_account_sid = '{MAIN}'; SET pg_retention.twilio_secret_file = '{}'; SET pg_retention.twilio_base_url = '{}';",
            secret_file("it-s3-twilio.secret", TOKEN),
            fake.base_url()
        ))
        .unwrap();
    assert!(marked_ids(&mut client, "it_s3_kill").is_empty(), "nothing was marked by the killed run");
    let result = run_policy(&mut client, "it_s3_kill");
    assert_eq!(marked_ids(&mut client, "it_s3_kill"), BTreeSet::from([1, 2]), "{result}");
    let one: Vec<(String, String)> = client
        .query("SELECT object, outcome FROM retention.recording_outcomes WHERE policy = 'it_s3_kill' AND key = '1' ORDER BY object", &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(one, [("recording".to_string(), "already_gone".to_string()), ("s3_object".to_string(), "deleted".to_string())]);
}
